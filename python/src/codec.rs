//! How Python values become the bytes a cache holds, and back.
//!
//! Text and bytes are stored as they are, so that Redis clients, `curl` and Rust nodes read
//! what Python wrote (and Python reads what they wrote). Every other object goes through the
//! cache's serializer and is stored behind a four-byte tag, `\xffLC` and `j` (JSON) or `p`
//! (pickle): `\xff` never begins UTF-8 text, so a tagged value is never mistaken for a string.
//! A pickled value is only unpickled by a cache configured with `serializer="pickle"`: a JSON
//! cache refuses it instead of running code a peer chose.

use bytes::Bytes;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyString};

const TAG: &[u8] = b"\xffLC";

/// The plain decimal text of a number Python stored (a JSON integer, or with `float` any JSON
/// number, behind the tag): what a counter counts from, so that `set("n", 0); incr("n")` counts
/// as it does over Redis. `None` for anything else.
pub fn stored_number(stored: &[u8], float: bool) -> Option<Bytes> {
    let payload = stored.strip_prefix(TAG)?.strip_prefix(b"j")?;
    let counts = leafcache::merge::parse_int(payload).is_some()
        || (float && leafcache::merge::parse_float(payload).is_some());
    counts.then(|| Bytes::copy_from_slice(payload))
}

/// Runs `incr` on `key` of `cache`; if it is refused because the key holds a number Python
/// stored (see [`stored_number`]), rewrites that number as its plain text, keeping the key's
/// expiry, and runs it again. (A write to the key between the read and the rewrite is lost to
/// it, as with any read-modify-write from outside the cache.)
pub fn counting<T>(
    cache: &leafcache::Cache,
    key: &[u8],
    float: bool,
    incr: impl Fn() -> Result<T, leafcache::Error>,
) -> Result<T, leafcache::Error> {
    let refused = match incr() {
        Err(leafcache::Error::NotCounted(leafcache::merge::NotCounted::NotANumber)) => {
            leafcache::Error::NotCounted(leafcache::merge::NotCounted::NotANumber)
        }
        other => return other,
    };
    let Some(info) = cache.peek(key) else {
        return Err(refused);
    };
    let Some(text) = stored_number(&info.value, float) else {
        return Err(refused);
    };
    let expiry = info
        .expires_at
        .map_or(leafcache::Expiry::Never, leafcache::Expiry::AtMs);
    cache.set_with_expiry(Bytes::copy_from_slice(key), text, expiry)?;
    incr()
}

/// The serializer of objects other than `str` and `bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `json.dumps` / `json.loads`: data any peer can read, nothing it can run.
    Json,
    /// `pickle` (protocol 5): any picklable object; only for peers that trust each other.
    Pickle,
}

impl Format {
    pub fn parse(name: &str) -> PyResult<Format> {
        match name {
            "json" => Ok(Format::Json),
            "pickle" => Ok(Format::Pickle),
            other => Err(PyValueError::new_err(format!(
                "serializer must be \"json\" or \"pickle\", not {other:?}"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Pickle => "pickle",
        }
    }

    fn letter(self) -> u8 {
        match self {
            Format::Json => b'j',
            Format::Pickle => b'p',
        }
    }
}

/// One cache's value codec.
pub struct Codec {
    pub format: Format,
    /// Untagged values that are valid UTF-8 read as `str` (else always `bytes`).
    pub decode: bool,
    dumps: Py<PyAny>,
    loads: Py<PyAny>,
    json_loads: Py<PyAny>,
}

impl Codec {
    pub fn new(py: Python<'_>, format: Format, decode: bool) -> PyResult<Codec> {
        let (dumps, loads) = match format {
            Format::Json => {
                let json = py.import("json")?;
                let kwargs = pyo3::types::PyDict::new(py);
                kwargs.set_item("separators", (",", ":"))?;
                kwargs.set_item("ensure_ascii", false)?;
                let encoder = json.getattr("JSONEncoder")?.call((), Some(&kwargs))?;
                (encoder.getattr("encode")?, json.getattr("loads")?)
            }
            Format::Pickle => {
                let pickle = py.import("pickle")?;
                let partial = py.import("functools")?.getattr("partial")?;
                let kwargs = pyo3::types::PyDict::new(py);
                kwargs.set_item("protocol", 5)?;
                let dumps = partial.call((pickle.getattr("dumps")?,), Some(&kwargs))?;
                (dumps, pickle.getattr("loads")?)
            }
        };
        Ok(Codec {
            format,
            decode,
            dumps: dumps.unbind(),
            loads: loads.unbind(),
            json_loads: py.import("json")?.getattr("loads")?.unbind(),
        })
    }

    /// The bytes stored for `value`.
    pub fn encode(&self, value: &Bound<'_, PyAny>) -> PyResult<Bytes> {
        if let Ok(s) = value.cast::<PyString>() {
            return text(s);
        }
        if let Ok(b) = value.cast::<PyBytes>() {
            return Ok(Bytes::copy_from_slice(b.as_bytes()));
        }
        if let Ok(b) = value.cast::<PyByteArray>() {
            return Ok(Bytes::from(b.to_vec()));
        }
        let out = self.dumps.bind(value.py()).call1((value,))?;
        let mut stored = Vec::with_capacity(TAG.len() + 1 + 16);
        stored.extend_from_slice(TAG);
        stored.push(self.format.letter());
        if let Ok(s) = out.cast::<PyString>() {
            stored.extend_from_slice(s.to_cow()?.as_bytes());
        } else {
            stored.extend_from_slice(out.cast::<PyBytes>()?.as_bytes());
        }
        Ok(Bytes::from(stored))
    }

    /// The Python value of stored bytes.
    pub fn decode(&self, py: Python<'_>, stored: &[u8]) -> PyResult<Py<PyAny>> {
        if let Some(rest) = stored.strip_prefix(TAG)
            && let Some((&letter, payload)) = rest.split_first()
        {
            match letter {
                b'j' => {
                    if let Ok(text) = std::str::from_utf8(payload) {
                        return Ok(self.json_loads.bind(py).call1((text,))?.unbind());
                    }
                }
                b'p' if self.format == Format::Pickle => {
                    return Ok(self
                        .loads
                        .bind(py)
                        .call1((PyBytes::new(py, payload),))?
                        .unbind());
                }
                b'p' => {
                    return Err(PyValueError::new_err(
                        "the value was stored by a cache with serializer=\"pickle\"; this cache \
                         (serializer=\"json\") does not unpickle what peers wrote",
                    ));
                }
                _ => {}
            }
        }
        if self.decode
            && let Ok(text) = std::str::from_utf8(stored)
        {
            return Ok(PyString::new(py, text).into_any().unbind());
        }
        Ok(PyBytes::new(py, stored).into_any().unbind())
    }
}

/// The bytes of a key: `str` (as UTF-8) or `bytes`.
pub fn key(value: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(s) = value.cast::<PyString>() {
        return text(s);
    }
    if let Ok(b) = value.cast::<PyBytes>() {
        return Ok(Bytes::copy_from_slice(b.as_bytes()));
    }
    Err(PyTypeError::new_err(format!(
        "keys are str or bytes, not {}",
        value.get_type().name()?
    )))
}

/// The key as a load callback receives it: `str` when it is UTF-8, else `bytes`.
pub fn key_object<'py>(py: Python<'py>, key: &[u8]) -> Bound<'py, PyAny> {
    match std::str::from_utf8(key) {
        Ok(s) => PyString::new(py, s).into_any(),
        Err(_) => PyBytes::new(py, key).into_any(),
    }
}

/// The UTF-8 bytes of a `str`. (`to_str` would borrow them, but the stable ABI has it only from
/// Python 3.10; the package supports 3.9.)
fn text(s: &Bound<'_, PyString>) -> PyResult<Bytes> {
    Ok(match s.to_cow()? {
        std::borrow::Cow::Borrowed(b) => Bytes::copy_from_slice(b.as_bytes()),
        std::borrow::Cow::Owned(o) => Bytes::from(o.into_bytes()),
    })
}
