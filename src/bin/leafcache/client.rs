//! The command-line client: `leafcache get|set|del|stats|topology` against a node's HTTP door.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use ureq::http::Response;
use ureq::typestate::WithoutBody;
use ureq::{Agent, RequestBuilder};

/// Which node to talk to, and how.
#[derive(Args, Clone, Debug)]
pub struct Target {
    /// The node's HTTP door: host:port or http://host:port.
    #[arg(long, env = "LEAFCACHE_NODE", default_value = "127.0.0.1:8400")]
    node: String,
    /// The cache to use.
    #[arg(long, default_value = "default")]
    cache: String,
    /// The node's front-door password.
    #[arg(long, env = "LEAFCACHE_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Give up after this long: "5s".
    #[arg(long, default_value = "5s")]
    timeout: String,
}

type CliResult = Result<ExitCode, Box<dyn std::error::Error>>;

impl Target {
    fn base(&self) -> String {
        let node = self.node.trim_end_matches('/');
        if node.starts_with("http://") || node.starts_with("https://") {
            node.to_string()
        } else {
            format!("http://{node}")
        }
    }

    fn agent(&self) -> Result<Agent, Box<dyn std::error::Error>> {
        let timeout = leafcache::parse_duration("--timeout", &self.timeout)?;
        Ok(Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout.max(Duration::from_millis(1))))
            .build()
            .into())
    }

    fn key_url(&self, key: &str) -> String {
        format!(
            "{}/v1/caches/{}/keys/{}",
            self.base(),
            encode(&self.cache),
            encode(key)
        )
    }

    /// Adds the bearer token, if a password was given.
    fn authed<B>(&self, request: RequestBuilder<B>) -> RequestBuilder<B> {
        match &self.password {
            Some(p) => request.header("authorization", format!("Bearer {p}")),
            None => request,
        }
    }

    /// Sends a bodiless request and reads a JSON answer, or the node's error.
    fn json(
        &self,
        request: RequestBuilder<WithoutBody>,
    ) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
        let mut response = self
            .authed(request)
            .call()
            .map_err(|e| self.unreachable(e))?;
        if !response.status().is_success() {
            return Err(failure(response));
        }
        Ok(serde_json::from_str(
            &response.body_mut().read_to_string()?,
        )?)
    }

    /// Turns a transport failure into one line naming the node.
    fn unreachable(&self, e: ureq::Error) -> Box<dyn std::error::Error> {
        let host_port = self.base();
        let host_port = host_port.split("://").nth(1).unwrap_or(&host_port);
        if speaks_resp(host_port) {
            return format!(
                "{host_port} is a RESP (Redis protocol) door, not the node's HTTP door: give \
                 --node the address of its --http door, or talk to this one with redis-cli"
            )
            .into();
        }
        format!("cannot reach the node at {}: {e}", self.base()).into()
    }
}

/// Whether `host_port` answers a RESP `PING` (a node's RESP door, or a Redis server): what a
/// failed HTTP request checks before calling the node unreachable.
fn speaks_resp(host_port: &str) -> bool {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let Some(addr) = host_port.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return false;
    };
    let Ok(mut conn) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
    let mut reply = [0u8; 16];
    conn.write_all(b"PING\r\n").is_ok()
        && conn
            .read(&mut reply)
            .is_ok_and(|n| reply[..n].starts_with(b"+PONG") || reply[..n].starts_with(b"-NOAUTH"))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The error message of a non-2xx answer: the JSON error's message, else the body.
fn failure(response: Response<ureq::Body>) -> Box<dyn std::error::Error> {
    failure_code(response).1
}

/// [`failure`], with the JSON error's code (`not_found`, `unknown_cache`, ...) if it has one.
fn failure_code(mut response: Response<ureq::Body>) -> (String, Box<dyn std::error::Error>) {
    let status = response.status();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    let json = serde_json::from_str::<serde_json::Value>(&body).ok();
    let code = json
        .as_ref()
        .and_then(|v| v["error"]["code"].as_str())
        .unwrap_or_default()
        .to_string();
    let message = json
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or(body);
    (
        code,
        format!("the node answered {status}: {message}").into(),
    )
}

pub fn get(target: &Target, key: &str) -> CliResult {
    let request = target.authed(target.agent()?.get(target.key_url(key)));
    let mut response = request.call().map_err(|e| target.unreachable(e))?;
    match response.status().as_u16() {
        200 => {
            use std::io::Write;
            let value = response
                .body_mut()
                .with_config()
                .limit(u64::MAX)
                .read_to_vec()?;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&value)?;
            if !value.ends_with(b"\n") {
                stdout.write_all(b"\n")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        404 => match failure_code(response) {
            // Like grep: 1 for "not found", 2 for errors (a cache the node does not have is one).
            (code, err) if code == "not_found" => {
                eprintln!("leafcache: {err}");
                Ok(ExitCode::from(1))
            }
            (_, err) => Err(err),
        },
        _ => Err(failure(response)),
    }
}

pub fn set(target: &Target, key: &str, value: &str, ttl: Option<&str>) -> CliResult {
    let mut url = target.key_url(key);
    if let Some(t) = ttl {
        url.push_str(&format!("?ttl={}", encode(t)));
    }
    let response = target
        .authed(target.agent()?.put(url))
        .send(value.as_bytes())
        .map_err(|e| target.unreachable(e))?;
    if response.status().is_success() {
        println!("OK");
        Ok(ExitCode::SUCCESS)
    } else {
        Err(failure(response))
    }
}

/// Deletes a key: 0 if it was there, 1 if it was not (as `get`), 2 on errors.
pub fn del(target: &Target, key: &str) -> CliResult {
    let body = target.json(target.agent()?.delete(target.key_url(key)))?;
    if body["deleted"] == true {
        println!("deleted");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("leafcache: no key {key:?}");
        Ok(ExitCode::from(1))
    }
}

/// Prints a JSON endpoint, pretty.
pub fn show(target: &Target, path: &str) -> CliResult {
    let body = target.json(target.agent()?.get(format!("{}{path}", target.base())))?;
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(ExitCode::SUCCESS)
}
