//! Python arguments as the core's settings: durations, addresses and the secret rules.

use std::time::Duration;

use leafcache::CacheConfig;
use pyo3::exceptions::{PyRuntimeWarning, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyList, PyString, PyTuple};

/// A duration given as seconds (`int` or `float`) or as text (`"120s"`, `"30m"`, `"1d"`).
pub fn duration(what: &'static str, value: &Bound<'_, PyAny>) -> PyResult<Duration> {
    if let Ok(s) = value.cast::<PyString>() {
        let d = leafcache::parse_duration(what, &s.to_cow()?).map_err(crate::to_py)?;
        if d.is_zero() {
            return Err(PyValueError::new_err(format!(
                "{what} must be longer than zero"
            )));
        }
        return Ok(d);
    }
    if value.is_instance_of::<PyInt>() || value.is_instance_of::<PyFloat>() {
        if value.is_instance_of::<PyBool>() {
            return Err(PyTypeError::new_err(format!(
                "{what} is seconds (int or float) or text such as \"120s\", not bool"
            )));
        }
        let secs: f64 = value.extract()?;
        if !(secs.is_finite() && secs > 0.0) {
            return Err(PyValueError::new_err(format!(
                "{what} must be a positive number of seconds (got {secs})"
            )));
        }
        return Duration::try_from_secs_f64(secs)
            .map_err(|e| PyValueError::new_err(format!("{what}: {e}")));
    }
    Err(PyTypeError::new_err(format!(
        "{what} is seconds (int or float) or text such as \"120s\", not {}",
        value.get_type().name()?
    )))
}

/// [`duration`] for an optional argument.
pub fn optional_duration(
    what: &'static str,
    value: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<Duration>> {
    match value {
        Some(v) if !v.is_none() => duration(what, v).map(Some),
        _ => Ok(None),
    }
}

/// An address as the seed's `(host, port)` tuple — the port an `int` or a `str`, an empty host
/// all interfaces — or as the core's text (`"host:port"`, `"unix:/path"`).
pub fn address(what: &'static str, value: &Bound<'_, PyAny>, listen: bool) -> PyResult<String> {
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(s.to_cow()?.into_owned());
    }
    let parts: Vec<Bound<'_, PyAny>> = if let Ok(t) = value.cast::<PyTuple>() {
        t.iter().collect()
    } else if let Ok(l) = value.cast::<PyList>() {
        l.iter().collect()
    } else {
        return Err(PyTypeError::new_err(format!(
            "{what} is a (host, port) tuple or \"host:port\" text, not {}",
            value.get_type().name()?
        )));
    };
    let [host, port] = parts.as_slice() else {
        return Err(PyValueError::new_err(format!(
            "{what} is a (host, port) pair; got {} items",
            parts.len()
        )));
    };
    let host: String = host.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what}: the host is a str (\"\" for all interfaces)"
        ))
    })?;
    let port = port_number(what, port)?;
    let host = match host.as_str() {
        "" if listen => "0.0.0.0".to_string(),
        "" => {
            return Err(PyValueError::new_err(format!(
                "{what}: an empty host means all interfaces, which can be listened on but not dialed"
            )));
        }
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
        h => h.to_string(),
    };
    Ok(format!("{host}:{port}"))
}

fn port_number(what: &'static str, port: &Bound<'_, PyAny>) -> PyResult<u16> {
    let bad = || PyValueError::new_err(format!("{what}: the port is 0..65535, got {port}"));
    if let Ok(s) = port.cast::<PyString>() {
        return s.to_cow()?.trim().parse::<u16>().map_err(|_| bad());
    }
    if port.is_instance_of::<PyInt>() && !port.is_instance_of::<PyBool>() {
        return port.extract::<u16>().map_err(|_| bad());
    }
    Err(PyTypeError::new_err(format!(
        "{what}: the port is an int or a str, not {}",
        port.get_type().name()?
    )))
}

/// The cluster secret: the argument, else `LEAFCACHE_SECRET` (as the `leafcache` command). A node
/// that accepts leaves beyond this host must have one; dialing a hub beyond it without one
/// warns.
pub fn secret(
    py: Python<'_>,
    given: Option<String>,
    local: Option<&str>,
    remote: Option<&str>,
) -> PyResult<Option<String>> {
    let secret = given
        .or_else(|| std::env::var("LEAFCACHE_SECRET").ok())
        .filter(|s| !s.is_empty());
    if secret.is_some() {
        return Ok(secret);
    }
    if let Some(addr) = local
        && !leafcache::net::stays_on_host(addr)
    {
        return Err(PyValueError::new_err(format!(
            "local_address {addr} accepts leaves from other hosts, but no secret is set: anyone \
             who reaches the port could join and read and write every key. Pass secret=... (or \
             set LEAFCACHE_SECRET), or listen on 127.0.0.1"
        )));
    }
    if let Some(addr) = remote
        && !leafcache::net::stays_on_host(addr)
    {
        PyErr::warn(
            py,
            &py.get_type::<PyRuntimeWarning>(),
            &std::ffi::CString::new(format!(
                "remote_address {addr} is another host and no secret is set: the hub cannot \
                 prove who it is, nor this node; pass secret=... (or set LEAFCACHE_SECRET)"
            ))
            .expect("no NUL"),
            1,
        )?;
    }
    Ok(None)
}

/// A cache's sizes and default time to live (`ttl_name`: what the caller calls it, the seed's
/// `expiration_time` or the module's `expires`).
pub fn cache_config(
    maximum_capacity: i64,
    ttl_name: &'static str,
    ttl: Option<&Bound<'_, PyAny>>,
    max_bytes: Option<i64>,
    eviction: &str,
) -> PyResult<CacheConfig> {
    let positive = |what: &str, n: i64| {
        u64::try_from(n)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| PyValueError::new_err(format!("{what} must be at least 1 (got {n})")))
    };
    let mut config =
        CacheConfig::new().max_entries(positive("maximum_capacity", maximum_capacity)?);
    if let Some(ttl) = optional_duration(ttl_name, ttl)? {
        config = config.ttl(ttl);
    }
    if let Some(b) = max_bytes {
        config = config.max_bytes(positive("max_bytes", b)?);
    }
    let eviction = eviction
        .parse::<leafcache::Eviction>()
        .map_err(crate::to_py)?;
    Ok(config.eviction(eviction))
}

/// An increment: `int` as INCRBY, `float` as INCRBYFLOAT (default 1).
pub enum Amount {
    Int(i64),
    Float(f64),
}

impl Amount {
    pub fn of(amount: Option<&Bound<'_, PyAny>>) -> PyResult<Amount> {
        let Some(a) = amount else {
            return Ok(Amount::Int(1));
        };
        if a.is_instance_of::<PyInt>() && !a.is_instance_of::<PyBool>() {
            return a
                .extract::<i64>()
                .map(Amount::Int)
                .map_err(|_| PyValueError::new_err("the increment does not fit in 64 bits"));
        }
        if a.is_instance_of::<PyFloat>() {
            return Ok(Amount::Float(a.extract()?));
        }
        Err(PyTypeError::new_err(format!(
            "the increment is an int or a float, not {}",
            a.get_type().name()?
        )))
    }
}

/// A sharded cluster's map as Python gives it: `shards` maps each shard's name to the RESP doors
/// of its nodes (its hub first), `shard` names this node's, and `name` is this node's name,
/// unique in the cluster. `None` without `shards`.
pub fn shards(
    shards: Option<&Bound<'_, pyo3::types::PyDict>>,
    shard: Option<&str>,
    name: Option<&str>,
) -> PyResult<Option<leafcache::partition::Shards>> {
    use leafcache::partition::{ShardNode, Shards};
    let Some(shards) = shards else {
        if shard.is_some() {
            return Err(PyValueError::new_err(
                "shard=... names a shard of shards=...: pass both",
            ));
        }
        return Ok(None);
    };
    let (Some(mine), Some(me)) = (shard, name) else {
        return Err(PyValueError::new_err(
            "shards=... needs shard=... (this node's) and name=... (unique in the cluster)",
        ));
    };
    let mut members = Vec::new();
    for (shard_name, doors) in shards.iter() {
        let shard_name: String = shard_name
            .extract()
            .map_err(|_| PyTypeError::new_err("a shard's name is text"))?;
        let doors: Vec<Bound<'_, PyAny>> = doors
            .try_iter()
            .map_err(|_| {
                PyTypeError::new_err(format!("shard {shard_name:?} maps to a list of doors"))
            })?
            .collect::<PyResult<_>>()?;
        let mut nodes = Vec::new();
        for (i, door) in doors.iter().enumerate() {
            nodes.push(ShardNode {
                name: format!("{shard_name}/{i}"),
                resp: Some(address("shards", door, false)?),
                primary: i == 0,
            });
        }
        if shard_name == mine {
            nodes.push(ShardNode {
                name: me.to_string(),
                resp: None,
                primary: false,
            });
        }
        members.push((shard_name, nodes));
    }
    if !members.iter().any(|(n, _)| n == mine) {
        return Err(PyValueError::new_err(format!(
            "shard={mine:?} is not one of shards=... ({})",
            members
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Shards::new(members, me)
        .map(Some)
        .map_err(|e| PyValueError::new_err(e.to_string()))
}
