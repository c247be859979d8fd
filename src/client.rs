//! The command-line client: `leafcache get|set|del|stats|topology` against a node's HTTP door.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use ureq::Agent;
use ureq::http::Response;

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

    fn auth(&self) -> Option<String> {
        self.password.as_ref().map(|p| format!("Bearer {p}"))
    }

    /// Turns a transport failure into one line naming the node.
    fn unreachable(&self, e: ureq::Error) -> Box<dyn std::error::Error> {
        format!("cannot reach the node at {}: {e}", self.base()).into()
    }
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
fn failure(mut response: Response<ureq::Body>) -> Box<dyn std::error::Error> {
    let status = response.status();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or(body);
    format!("the node answered {status}: {message}").into()
}

pub fn get(target: &Target, key: &str) -> CliResult {
    let mut request = target.agent()?.get(target.key_url(key));
    if let Some(a) = target.auth() {
        request = request.header("authorization", a);
    }
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
        404 => {
            let err = failure(response);
            eprintln!("leafcache: {err}");
            // Like grep: 1 for "not found", 2 for errors.
            Ok(ExitCode::from(1))
        }
        _ => Err(failure(response)),
    }
}

pub fn set(target: &Target, key: &str, value: &str, ttl: Option<&str>) -> CliResult {
    let mut url = target.key_url(key);
    if let Some(t) = ttl {
        url.push_str(&format!("?ttl={}", encode(t)));
    }
    let mut request = target.agent()?.put(url);
    if let Some(a) = target.auth() {
        request = request.header("authorization", a);
    }
    let response = request
        .send(value.as_bytes())
        .map_err(|e| target.unreachable(e))?;
    if response.status().is_success() {
        println!("OK");
        Ok(ExitCode::SUCCESS)
    } else {
        Err(failure(response))
    }
}

pub fn del(target: &Target, key: &str) -> CliResult {
    let mut request = target.agent()?.delete(target.key_url(key));
    if let Some(a) = target.auth() {
        request = request.header("authorization", a);
    }
    let mut response = request.call().map_err(|e| target.unreachable(e))?;
    if !response.status().is_success() {
        return Err(failure(response));
    }
    let body: serde_json::Value = serde_json::from_str(&response.body_mut().read_to_string()?)?;
    println!(
        "{}",
        if body["deleted"] == true {
            "deleted"
        } else {
            "not found"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints a JSON endpoint, pretty.
pub fn show(target: &Target, path: &str) -> CliResult {
    let mut request = target.agent()?.get(format!("{}{path}", target.base()));
    if let Some(a) = target.auth() {
        request = request.header("authorization", a);
    }
    let mut response = request.call().map_err(|e| target.unreachable(e))?;
    if !response.status().is_success() {
        return Err(failure(response));
    }
    let body: serde_json::Value = serde_json::from_str(&response.body_mut().read_to_string()?)?;
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(ExitCode::SUCCESS)
}
