//! Read-through origins: where a cache run from a topology file (or built in Rust) loads a key that
//! missed — an HTTP URL or a file path with `{key}` in it — as a [`Loader`].

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

use super::loader::{Loader, Missing};
use crate::error::{BoxError, Error};

/// How long an origin may take to answer when not configured.
pub const DEFAULT_ORIGIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest value read from an origin (the cache may hold less; it refuses what does not
/// fit).
const MAX_ORIGIN_VALUE: u64 = 512 << 20;

/// Where a cache loads the keys it misses: `http://host:port/path/{key}` or `file:/dir/{key}`,
/// `{key}` once, replaced by the key URL-escaped (bytes other than `A-Z a-z 0-9 - . _ ~ /` as
/// `%XX`). A key with a `.` or `..` segment is refused, so no key leaves the directory (or the
/// path) the template names. A 404 (or 410), or a missing file, is a miss: nothing is cached.
/// Any other answer, an unreachable origin or one slower than the timeout is an error, and
/// nothing is cached either.
///
/// ```
/// use std::time::Duration;
/// let origin = leafcache::Origin::new("file:/srv/products/{key}.json", Duration::from_secs(2))?;
/// assert_eq!(origin.locate(b"shoe 42")?, "/srv/products/shoe%2042.json");
/// assert!(origin.locate(b"../etc/passwd").is_err());
/// let cache = leafcache::Cache::builder().origin(origin).build()?;
/// # let _ = cache;
/// # Ok::<(), leafcache::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    template: String,
    kind: Kind,
    /// What comes before and after `{key}` (for a file, without the `file:`).
    before: String,
    after: String,
    timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Http,
    File,
}

impl Origin {
    /// An origin from its template, answering within `timeout`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a template that is not `http://...` or `file:/...` with
    /// `{key}` exactly once (an `https://` origin is refused: this build speaks plain HTTP), or a
    /// zero timeout.
    pub fn new(template: &str, timeout: Duration) -> Result<Origin, Error> {
        let bad = |reason: String| Error::InvalidConfig {
            what: "origin",
            reason,
        };
        if timeout.is_zero() {
            return Err(Error::ZeroDuration {
                what: "origin_timeout",
            });
        }
        let (kind, rest) = if let Some(rest) = template.strip_prefix("file:") {
            if !rest.starts_with('/') {
                return Err(bad(format!(
                    "{template:?}: a file origin is an absolute path, \"file:/dir/{{key}}\""
                )));
            }
            (Kind::File, rest)
        } else if template.starts_with("http://") {
            (Kind::Http, template)
        } else if template.starts_with("https://") {
            return Err(bad(format!(
                "{template:?}: https origins are not supported by this build; use http:// (on a \
                 trusted network or through a local TLS proxy) or file:"
            )));
        } else {
            return Err(bad(format!(
                "{template:?} is neither \"http://host:port/path/{{key}}\" nor \"file:/dir/{{key}}\""
            )));
        };
        let Some((before, after)) = rest.split_once("{key}") else {
            return Err(bad(format!(
                "{template:?} has no {{key}} to put the key in"
            )));
        };
        if after.contains("{key}") {
            return Err(bad(format!("{template:?} has {{key}} more than once")));
        }
        if kind == Kind::Http && before.len() <= "http://".len() {
            return Err(bad(format!("{template:?} names no host")));
        }
        Ok(Origin {
            template: template.to_string(),
            kind,
            before: before.to_string(),
            after: after.to_string(),
            timeout,
        })
    }

    /// The template it was made from.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// How long it may take to answer.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The URL or path `key` is read from.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a key with a `.` or `..` segment (one that could leave the
    /// directory), or for an empty key.
    pub fn locate(&self, key: &[u8]) -> Result<String, Error> {
        if key.is_empty()
            || key
                .split(|&b| b == b'/')
                .any(|seg| seg == b"." || seg == b"..")
        {
            return Err(Error::InvalidConfig {
                what: "key",
                reason: format!(
                    "{:?} would leave the origin's directory (a `.` or `..` segment), or is empty",
                    String::from_utf8_lossy(key)
                ),
            });
        }
        let mut out = String::with_capacity(self.before.len() + key.len() + self.after.len());
        out.push_str(&self.before);
        for &b in key {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out.push_str(&self.after);
        Ok(out)
    }

    /// The load callback that reads from this origin: blocking reads run on tokio's blocking
    /// pool, bounded by the timeout.
    pub fn loader(&self) -> Loader {
        let origin = self.clone();
        Loader::from_async(move |key: Bytes| {
            let origin = origin.clone();
            async move { origin.fetch(&key).await }
        })
    }

    async fn fetch(&self, key: &[u8]) -> Result<Bytes, BoxError> {
        let at = self.locate(key)?;
        let (kind, timeout) = (self.kind, self.timeout);
        let target = at.clone();
        let read = tokio::task::spawn_blocking(move || match kind {
            Kind::Http => fetch_http(&target, timeout),
            Kind::File => fetch_file(PathBuf::from(&target)),
        });
        match tokio::time::timeout(timeout, read).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(format!("origin read of {at} failed: {e}").into()),
            Err(_) => Err(format!("origin {at} did not answer within {timeout:?}").into()),
        }
    }
}

fn fetch_http(url: &str, timeout: Duration) -> Result<Bytes, BoxError> {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .new_agent();
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| format!("origin {url}: {e}"))?;
    match response.status().as_u16() {
        200 => {
            let body = response
                .body_mut()
                .with_config()
                .limit(MAX_ORIGIN_VALUE)
                .read_to_vec()
                .map_err(|e| format!("origin {url}: reading the body: {e}"))?;
            Ok(Bytes::from(body))
        }
        404 | 410 => Err(Box::new(Missing)),
        status => Err(format!("origin {url} answered {status}").into()),
    }
}

fn fetch_file(path: PathBuf) -> Result<Bytes, BoxError> {
    match std::fs::metadata(&path) {
        Ok(m) if m.len() > MAX_ORIGIN_VALUE => {
            return Err(format!(
                "origin {}: {} bytes, more than a value may be",
                path.display(),
                m.len()
            )
            .into());
        }
        Ok(m) if m.is_dir() => return Err(Box::new(Missing)),
        _ => {}
    }
    match std::fs::read(&path) {
        Ok(v) => Ok(Bytes::from(v)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Box::new(Missing)),
        Err(e) => Err(format!("origin {}: {e}", path.display()).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(1);

    #[test]
    fn templates_are_checked() {
        assert!(Origin::new("http://127.0.0.1:9/items/{key}", T).is_ok());
        assert!(Origin::new("file:/srv/{key}.json", T).is_ok());
        for bad in [
            "https://example.org/{key}",
            "ftp://x/{key}",
            "file:relative/{key}",
            "http://host/no-key",
            "http://host/{key}/{key}",
            "http://{key}",
        ] {
            assert!(Origin::new(bad, T).is_err(), "{bad}");
        }
        assert!(Origin::new("file:/srv/{key}", Duration::ZERO).is_err());
    }

    #[test]
    fn keys_are_escaped_and_cannot_leave_the_directory() {
        let o = Origin::new("http://h:1/v1/{key}?raw=1", T).unwrap();
        assert_eq!(o.locate(b"a/b c").unwrap(), "http://h:1/v1/a/b%20c?raw=1");
        assert_eq!(
            o.locate(b"\x00\xff?#%").unwrap(),
            "http://h:1/v1/%00%FF%3F%23%25?raw=1"
        );
        let f = Origin::new("file:/srv/{key}", T).unwrap();
        assert_eq!(f.locate(b"x..y/.z").unwrap(), "/srv/x..y/.z");
        for bad in [&b".."[..], b"../x", b"a/../../x", b"a/./b", b"", b"."] {
            assert!(f.locate(bad).is_err(), "{bad:?}");
        }
    }
}
