//! The topology file as written: every table refuses unknown keys, so a typo is an error at its
//! position; durations and sizes take numbers or human strings.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) cluster: Option<Spanned<RawCluster>>,
    pub(super) defaults: Option<RawCache>,
    #[serde(default)]
    pub(super) caches: BTreeMap<Spanned<String>, RawCache>,
    #[serde(default)]
    pub(super) node: Vec<Spanned<RawNode>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub(super) name: Option<Spanned<String>>,
    pub(super) secret: Option<Spanned<String>>,
    pub(super) secret_env: Option<Spanned<String>>,
    pub(super) secret_file: Option<Spanned<String>>,
    pub(super) tls: Option<Spanned<RawTls>>,
}

/// `[cluster.tls]`: the cluster CA, the certificate and key every node uses unless it names its
/// own, and whether the front doors speak TLS too.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) ca: Option<Spanned<String>>,
    pub(super) cert: Option<Spanned<String>>,
    pub(super) key: Option<Spanned<String>>,
    pub(super) doors: Option<Spanned<bool>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    pub(super) capacity: Option<Spanned<u64>>,
    pub(super) max_bytes: Option<Size>,
    pub(super) ttl: Option<Human>,
    pub(super) tombstone_ttl: Option<Human>,
    pub(super) eviction: Option<Spanned<String>>,
    pub(super) origin: Option<Spanned<String>>,
    pub(super) origin_timeout: Option<Human>,
    pub(super) connection_timeout: Option<Spanned<Human>>,
    pub(super) anti_entropy: Option<Spanned<Every>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub(super) name: Spanned<String>,
    pub(super) shard: Option<Spanned<String>>,
    pub(super) listen: Option<Spanned<String>>,
    pub(super) hub: Option<Spanned<Hubs>>,
    pub(super) resp: Option<Spanned<String>>,
    pub(super) http: Option<Spanned<String>>,
    pub(super) unix: Option<Spanned<String>>,
    pub(super) root: Option<Spanned<String>>,
    pub(super) snapshot: Option<Spanned<Human>>,
    pub(super) flush: Option<Spanned<String>>,
    pub(super) loglevel: Option<Spanned<String>>,
    pub(super) advertise: Option<Spanned<String>>,
    pub(super) tls_cert: Option<Spanned<String>>,
    pub(super) tls_key: Option<Spanned<String>>,
}

/// `hub = "eu-1"` or `hub = ["eu-1", "eu-2"]`: one hub, or several in order of preference.
pub(super) struct Hubs(pub(super) Vec<String>);

impl<'de> Deserialize<'de> for Hubs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct HubsVisitor;
        impl<'de> Visitor<'de> for HubsVisitor {
            type Value = Hubs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a hub (a node's name or host:port) or a list of them")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Hubs, E> {
                Ok(Hubs(vec![s.to_string()]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Hubs, A::Error> {
                let mut hubs = Vec::new();
                while let Some(h) = seq.next_element::<String>()? {
                    hubs.push(h);
                }
                if hubs.is_empty() {
                    return Err(de::Error::custom(
                        "an empty hub list: name at least one hub, or remove `hub`",
                    ));
                }
                Ok(Hubs(hubs))
            }
        }
        d.deserialize_any(HubsVisitor)
    }
}

/// A human duration (`"120s"`, `"30m"`, `"1d"`) or whole seconds; never zero.
pub(super) struct Human(pub(super) Duration);

/// A byte size: a number of bytes or a string such as `"256MiB"`, `"1GB"`; never zero.
pub(super) struct Size(pub(super) u64);

/// A quantity written as a whole number or as text, never zero: what durations and sizes share.
pub(super) trait Quantity: Sized {
    /// "duration", "size".
    const WHAT: &'static str;
    /// Valid spellings, for the error message.
    const EXAMPLES: &'static str;
    fn from_number(n: u64) -> Self;
    fn from_text(s: &str) -> Result<Self, String>;
    fn is_zero(&self) -> bool;
}

impl Quantity for Human {
    const WHAT: &'static str = "duration";
    const EXAMPLES: &'static str = "\"120s\", \"30m\", \"1h 30m\", \"1d\" or 120 (seconds)";
    fn from_number(n: u64) -> Self {
        Human(Duration::from_secs(n))
    }
    fn from_text(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s.trim())
            .map(Human)
            .map_err(|e| e.to_string())
    }
    fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

impl Quantity for Size {
    const WHAT: &'static str = "size";
    const EXAMPLES: &'static str = "\"64MiB\", \"1GB\" or 1048576 (bytes)";
    fn from_number(n: u64) -> Self {
        Size(n)
    }
    fn from_text(s: &str) -> Result<Self, String> {
        s.trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| Size(b.as_u64()))
    }
    fn is_zero(&self) -> bool {
        self.0 == 0
    }
}

pub(super) struct QuantityVisitor<T>(pub(super) std::marker::PhantomData<T>);

impl<T: Quantity> Visitor<'_> for QuantityVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {} such as {}", T::WHAT, T::EXAMPLES)
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<T, E> {
        let q = u64::try_from(n).map_or_else(|_| T::from_number(0), T::from_number);
        if q.is_zero() {
            return Err(E::custom(format!(
                "invalid {} {n}: must be more than zero",
                T::WHAT
            )));
        }
        Ok(q)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
        match T::from_text(s) {
            Ok(q) if q.is_zero() => Err(E::custom(format!(
                "invalid {} {s:?}: must be more than zero",
                T::WHAT
            ))),
            Ok(q) => Ok(q),
            Err(e) => Err(E::custom(format!(
                "invalid {} {s:?}: {e} (examples: {})",
                T::WHAT,
                T::EXAMPLES
            ))),
        }
    }
}

/// `anti_entropy = "60s"` (a period, as [`Human`]) or `"off"`.
pub(super) struct Every(pub(super) Option<Duration>);

impl<'de> Deserialize<'de> for Every {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EveryVisitor;
        impl Visitor<'_> for EveryVisitor {
            type Value = Every;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a period such as \"60s\", or \"off\"")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Every, E> {
                let h: Human = QuantityVisitor(std::marker::PhantomData).visit_i64(n)?;
                Ok(Every(Some(h.0)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Every, E> {
                if s == "off" {
                    return Ok(Every(None));
                }
                let h: Human = QuantityVisitor(std::marker::PhantomData).visit_str(s)?;
                Ok(Every(Some(h.0)))
            }
        }
        d.deserialize_any(EveryVisitor)
    }
}

impl<'de> Deserialize<'de> for Human {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(QuantityVisitor(std::marker::PhantomData))
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(QuantityVisitor(std::marker::PhantomData))
    }
}
