//! The HTTP door (axum): the original `/get` and `/set`, the REST API under `/v1`, `/health` and
//! `/metrics`. Errors are JSON of one shape, `{"error": {"code": "...", "message": "..."}}`, with
//! the matching status code; bodies are bounded by `ServerLimits::max_http_body`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;
use tracing::warn;

use super::{count, metrics};
use crate::cache::{Cache, Expiry, Kind};
use crate::error::{Error, parse_duration};
use crate::node::Node;
use crate::replication::{Direction, LinkState};

/// Serves the HTTP door until the node shuts down.
pub(crate) async fn serve(node: Node, listener: TcpListener) {
    let shutdown = node.registry().shutdown.clone();
    let tls = node.door_tls_config();
    let timeout = node.replication_config().connection_timeout;
    let app = router(node);
    let stopped = async move { shutdown.cancelled().await };
    let served = match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
        }
        Some(tls) => {
            let listener = TlsListener::new(listener, tls, timeout);
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
        }
    };
    if let Err(e) = served {
        warn!(error = %e, "http door stopped");
    }
}

/// HTTPS: accepts TCP connections and hands on those whose TLS handshake completed. Each
/// handshake runs on its own task, bounded by the connection timeout, so a slow client does
/// not hold up the next.
struct TlsListener {
    tcp: TcpListener,
    tls: Arc<crate::net::Tls>,
    timeout: Duration,
    done_tx: tokio::sync::mpsc::Sender<(crate::net::Stream, std::net::SocketAddr)>,
    done_rx: tokio::sync::mpsc::Receiver<(crate::net::Stream, std::net::SocketAddr)>,
}

impl TlsListener {
    fn new(tcp: TcpListener, tls: Arc<crate::net::Tls>, timeout: Duration) -> Self {
        let (done_tx, done_rx) = tokio::sync::mpsc::channel(64);
        TlsListener {
            tcp,
            tls,
            timeout,
            done_tx,
            done_rx,
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = crate::net::Stream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                Some(done) = self.done_rx.recv() => return done,
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, addr)) => {
                        let _ = stream.set_nodelay(true);
                        let (tls, done, timeout) = (self.tls.clone(), self.done_tx.clone(), self.timeout);
                        tokio::spawn(async move {
                            let stream: crate::net::Stream = Box::pin(stream);
                            match tokio::time::timeout(timeout, tls.accept_door(stream)).await {
                                Ok(Ok(secured)) => {
                                    let _ = done.send((secured, addr)).await;
                                }
                                Ok(Err(reason)) => {
                                    tracing::debug!(peer = %addr, error = %reason, "https connection refused");
                                }
                                Err(_) => {}
                            }
                        });
                    }
                    Err(e) => {
                        warn!(error = %e, "http accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

fn router(node: Node) -> Router {
    let body_limit = node.doors().limits.max_http_body;
    Router::new()
        .route("/get", get(legacy_get))
        .route("/set", get(legacy_set).post(legacy_set))
        .route("/v1/caches", get(list_caches))
        .route("/v1/caches/{cache}", axum::routing::delete(purge_cache))
        .route(
            "/v1/caches/{cache}/keys/{*key}",
            put(put_key)
                .get(get_key)
                .head(head_key)
                .delete(delete_key)
                .post(post_key),
        )
        .route("/v1/stats", get(stats))
        .route("/v1/topology", get(topology))
        .route("/v1/cluster", get(cluster))
        .route("/v1/cluster/events", get(cluster_events))
        .route("/dashboard", get(dashboard))
        .route("/metrics", get(prometheus))
        .route("/health", get(health))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such endpoint") })
        .method_not_allowed_fallback(|method: Method| async move {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not allowed here"),
            )
        })
        .layer(middleware::from_fn_with_state(node.clone(), guard))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(node)
}

/// Counts requests and checks the bearer token (all but `/health`, which load balancers probe,
/// and `/dashboard`, a page without data whose script sends the token itself).
async fn guard(State(node): State<Node>, request: Request, next: Next) -> Response {
    count(&node.doors().stats.http_requests, 1);
    let open = matches!(request.uri().path(), "/health" | "/dashboard");
    if !open && node.doors().password.is_some() {
        let token = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        if !token.is_some_and(|t| node.doors().password_ok(t)) {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this node needs `Authorization: Bearer <password>`",
            )
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"leafcache\""),
            );
            return response;
        }
    }
    next.run(request).await
}

/// An error answered as JSON: `{"error": {"code", "message"}}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::UnknownCache(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_cache", e.to_string())
            }
            Error::ValueTooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "value_too_large",
                e.to_string(),
            ),
            Error::ZeroDuration { .. } | Error::InvalidDuration { .. } => {
                ApiError::bad_request(e.to_string())
            }
            Error::WrongType => ApiError::new(
                StatusCode::CONFLICT,
                "wrong_type",
                "the key holds a value of another type",
            ),
            Error::NotCounted(_) => {
                ApiError::new(StatusCode::CONFLICT, "not_counted", e.to_string())
            }
            // The origin failed or was too slow: a gateway's error, not this node's.
            Error::Load(_) => ApiError::new(StatusCode::BAD_GATEWAY, "origin_error", e.to_string()),
            Error::InvalidConfig { what: "key", .. } => ApiError::bad_request(e.to_string()),
            other => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                other.to_string(),
            ),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::bad_request(e.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        ApiError::bad_request(e.body_text())
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        let status = e.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "bad_request"
        };
        ApiError::new(status, code, e.body_text())
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn cache_of(node: &Node, name: Option<&str>) -> ApiResult<Cache> {
    Ok(node.cache(name.unwrap_or(crate::cache::DEFAULT_CACHE))?)
}

fn check_key(node: &Node, key: &str) -> ApiResult<()> {
    let limit = node.doors().limits.max_key;
    if key.is_empty() {
        return Err(ApiError::bad_request("the key is empty"));
    }
    if key.len() > limit {
        return Err(ApiError::bad_request(format!(
            "a key of {} bytes is over the {limit}-byte limit",
            key.len()
        )));
    }
    Ok(())
}

/// `ttl=120s`, `ttl=30m`, or a number of seconds.
fn expiry(ttl: Option<&str>) -> ApiResult<Expiry> {
    match ttl {
        None => Ok(Expiry::Default),
        Some(t) => {
            let d = match t.parse::<u64>() {
                Ok(secs) => Duration::from_secs(secs),
                Err(_) => parse_duration("ttl", t)?,
            };
            if d.is_zero() {
                return Err(ApiError::bad_request("ttl must be longer than zero"));
            }
            Ok(Expiry::After(d))
        }
    }
}

fn value_response(value: Bytes, expires_at: Option<u64>) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(at) = expires_at {
        headers.insert("x-expires-at-ms", HeaderValue::from(at));
    }
    (headers, value).into_response()
}

fn not_found(key: &str, cache: &Cache) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no key {key:?} in cache {:?}", cache.name()),
    )
}

#[derive(Deserialize)]
struct GetParams {
    key: String,
    cache: Option<String>,
}

/// `GET /get?key=a[&cache=c]`: the value, or 404.
async fn legacy_get(
    State(node): State<Node>,
    query: Result<Query<GetParams>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(p) = query?;
    let cache = cache_of(&node, p.cache.as_deref())?;
    match read_through(&cache, &p.key).await? {
        Some(v) => Ok(value_response(v, None)),
        None => Err(not_found(&p.key, &cache)),
    }
}

/// The value of `key`, read through the cache's origin (or its hub) on a miss when it has one.
async fn read_through(cache: &Cache, key: &str) -> ApiResult<Option<Bytes>> {
    match cache.get(key) {
        Some(v) => Ok(Some(v)),
        None => Ok(cache
            .after_miss(Bytes::copy_from_slice(key.as_bytes()))
            .await?),
    }
}

#[derive(Deserialize)]
struct SetParams {
    key: String,
    value: Option<String>,
    ttl: Option<String>,
    cache: Option<String>,
}

/// `GET|POST /set?key=a&value=b[&ttl=120s][&cache=c]` → `OK`; a POST without `value` stores its
/// body.
async fn legacy_set(
    State(node): State<Node>,
    query: Result<Query<SetParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<&'static str> {
    let Query(p) = query?;
    check_key(&node, &p.key)?;
    let value = match p.value {
        Some(v) => Bytes::from(v),
        None => {
            let body = body?;
            if body.is_empty() {
                return Err(ApiError::bad_request(
                    "missing `value`: pass it in the query or as the POST body",
                ));
            }
            body
        }
    };
    let cache = cache_of(&node, p.cache.as_deref())?;
    cache.set_with_expiry(p.key, value, expiry(p.ttl.as_deref())?)?;
    Ok("OK")
}

#[derive(Deserialize)]
struct TtlParams {
    ttl: Option<String>,
}

async fn get_key(
    State(node): State<Node>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Response> {
    let Path((cache, key)) = path?;
    let cache = cache_of(&node, Some(&cache))?;
    if cache.kind(&key) == Some(Kind::Hash) {
        return hash_response(&cache, &key);
    }
    // `get` first, so that a miss counts as one (and a hit refreshes LRU order); then `peek`
    // for the expiry header.
    match read_through(&cache, &key).await? {
        Some(v) => {
            let at = cache.peek(&key).and_then(|e| e.expires_at);
            Ok(value_response(v, at))
        }
        None => Err(not_found(&key, &cache)),
    }
}

/// A hash as a JSON object of its fields (fields and values that are not UTF-8 are shown with
/// U+FFFD in place of the bytes that are not).
fn hash_response(cache: &Cache, key: &str) -> ApiResult<Response> {
    let fields = cache.hgetall(key)?;
    let object: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                serde_json::Value::String(String::from_utf8_lossy(v).into_owned()),
            )
        })
        .collect();
    let mut response = Json(object).into_response();
    if let Some(at) = cache.peek(key).and_then(|e| e.expires_at) {
        response
            .headers_mut()
            .insert("x-expires-at-ms", HeaderValue::from(at));
    }
    Ok(response)
}

#[derive(Deserialize)]
struct IncrParams {
    by: Option<String>,
}

/// `POST /v1/caches/{cache}/keys/{key}/incr[?by=N]`: adds `by` (default 1; an integer, or a
/// float) to the key's counter and answers the new value as text. Increments made on every node
/// add up, also across a partition.
async fn post_key(
    State(node): State<Node>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<IncrParams>, QueryRejection>,
) -> ApiResult<Response> {
    let Path((cache, key)) = path?;
    let Query(p) = query?;
    let Some(key) = key.strip_suffix("/incr") else {
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "POST takes an operation on the key: /v1/caches/{cache}/keys/{key}/incr?by=N",
        ));
    };
    check_key(&node, key)?;
    let cache = cache_of(&node, Some(&cache))?;
    let by = p.by.as_deref().unwrap_or("1");
    let text = if let Ok(n) = by.parse::<i64>() {
        cache.incr(key, n)?.to_string()
    } else if let Some(f) = crate::cache::merge::parse_float(by.as_bytes()) {
        crate::cache::merge::format_float(cache.incr_float(key, f)?)
    } else {
        return Err(ApiError::bad_request(format!(
            "`by` must be an integer or a finite number, not {by:?}"
        )));
    };
    Ok(([(header::CONTENT_TYPE, "text/plain")], text).into_response())
}

async fn head_key(
    State(node): State<Node>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<StatusCode> {
    let Path((cache, key)) = path?;
    let cache = cache_of(&node, Some(&cache))?;
    Ok(if cache.contains(&key) {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    })
}

async fn put_key(
    State(node): State<Node>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<TtlParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<StatusCode> {
    let Path((cache, key)) = path?;
    let Query(q) = query?;
    let value = body?;
    check_key(&node, &key)?;
    let limit = node.doors().limits.max_value;
    if value.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "value_too_large",
            format!(
                "a value of {} bytes is over the {limit}-byte limit",
                value.len()
            ),
        ));
    }
    let cache = cache_of(&node, Some(&cache))?;
    cache.set_with_expiry(key, value, expiry(q.ttl.as_deref())?)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_key(
    State(node): State<Node>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Path((cache, key)) = path?;
    let cache = cache_of(&node, Some(&cache))?;
    let deleted = cache.delete(&key).is_some();
    Ok(Json(json!({ "deleted": deleted })))
}

async fn purge_cache(
    State(node): State<Node>,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<serde_json::Value>> {
    let Path(cache) = path?;
    let cache = cache_of(&node, Some(&cache))?;
    cache.purge();
    Ok(Json(json!({ "purged": cache.name() })))
}

#[derive(Serialize)]
struct CacheReport {
    name: String,
    #[serde(flatten)]
    stats: crate::cache::CacheStats,
    hit_ratio: f64,
}

fn cache_reports(node: &Node) -> Vec<CacheReport> {
    node.caches()
        .iter()
        .map(|c| {
            let stats = c.stats();
            CacheReport {
                name: c.name().to_string(),
                stats,
                hit_ratio: stats.hit_ratio(),
            }
        })
        .collect()
}

async fn list_caches(State(node): State<Node>) -> Json<Vec<CacheReport>> {
    Json(cache_reports(&node))
}

fn node_summary(node: &Node) -> serde_json::Value {
    let settings = node.replication_config();
    json!({
        "name": node.name(),
        "id": node.id().to_string(),
        "role": node.role().to_string(),
        "cluster": settings.cluster,
        "incarnation": node.incarnation().to_string(),
        "seq": node.current_seq(),
        "listen": node.local_addr(),
        "hub": settings.remote_address,
        "resp": node.resp_addr(),
        "http": node.http_addr(),
        "unix": node.unix_socket().map(|p| p.display().to_string()),
    })
}

async fn stats(State(node): State<Node>) -> Json<serde_json::Value> {
    use std::sync::atomic::Ordering::Relaxed;
    let s = &node.doors().stats;
    Json(json!({
        "node": node_summary(&node),
        "caches": cache_reports(&node),
        "server": {
            "uptime_seconds": node.doors().started.elapsed().as_secs(),
            "connections_open": s.connections_open.load(Relaxed),
            "connections_received": s.connections_received.load(Relaxed),
            "connections_rejected": s.connections_rejected.load(Relaxed),
            "commands": s.commands.load(Relaxed),
            "protocol_errors": s.protocol_errors.load(Relaxed),
            "http_requests": s.http_requests.load(Relaxed),
        },
    }))
}

#[derive(Serialize)]
struct Topology {
    node: serde_json::Value,
    links: Vec<crate::replication::LinkStatus>,
}

/// Serialized by `Json`, which answers 500 rather than panicking if a value cannot be.
async fn topology(State(node): State<Node>) -> Json<Topology> {
    Json(Topology {
        node: node_summary(&node),
        links: node.links(),
    })
}

/// The tree as this node sees it (see `Node::cluster`).
async fn cluster(State(node): State<Node>) -> Json<serde_json::Value> {
    Json(cluster_json(&node))
}

/// The tree as this node sees it and, on a sharded node, every shard's health.
fn cluster_json(node: &Node) -> serde_json::Value {
    let mut view =
        serde_json::to_value(node.cluster()).unwrap_or_else(|e| json!({"error": e.to_string()}));
    let shards = node.shard_health();
    if !shards.is_empty() {
        view["shards"] = json!(shards);
    }
    view
}

/// How often `/v1/cluster/events` sends the tree.
const CLUSTER_EVENTS_EVERY: Duration = Duration::from_secs(1);

/// The tree as server-sent events: a `cluster` event with `/v1/cluster`'s JSON at once and then
/// every second, until the client goes or the node shuts down.
async fn cluster_events(
    State(node): State<Node>,
) -> axum::response::sse::Sse<
    impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let shutdown = node.registry().shutdown.clone();
    let mut tick = tokio::time::interval(CLUSTER_EVENTS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let events = futures_util::stream::unfold(
        (node, tick, shutdown),
        |(node, mut tick, shutdown)| async move {
            tokio::select! {
                _ = shutdown.cancelled() => None,
                _ = tick.tick() => {
                    let data = cluster_json(&node).to_string();
                    let event = Event::default().event("cluster").data(data);
                    Some((Ok(event), (node, tick, shutdown)))
                }
            }
        },
    );
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// The live dashboard: one self-contained page (no external assets) that draws the tree from
/// `/v1/cluster/events`.
async fn dashboard() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                     connect-src 'self'; img-src data:",
                ),
            ),
        ],
        include_str!("dashboard.html"),
    )
}

/// 200 while the node serves, which it does whatever its links do; `ok` when every link it
/// makes (to its hub) is up and its persistence is healthy, else `degraded`, with the reasons.
/// A leaf that went away is not a fault of this node: closed downstream links are history
/// (`/v1/topology` lists them, one per peer), not reasons.
async fn health(State(node): State<Node>) -> Json<serde_json::Value> {
    let down: Vec<serde_json::Value> = node
        .links()
        .into_iter()
        .filter(|l| l.state != LinkState::Up && l.direction == Direction::Upstream)
        .map(|l| {
            json!({
                "link": l.id,
                "direction": l.direction,
                "peer": l.peer_name,
                "address": l.address,
                "state": l.state,
                "down_ms": l.down_ms,
                "last_error": l.last_error,
            })
        })
        .collect();
    let persistence = node.persistence();
    let mut reasons: Vec<String> = down
        .iter()
        .map(|l| {
            format!(
                "link to {} is {}",
                l["peer"].as_str().or(l["address"].as_str()).unwrap_or("?"),
                l["state"].as_str().unwrap_or("?")
            )
        })
        .collect();
    reasons.extend(persistence.iter().flat_map(|p| p.problems()));
    let shards = node.shard_health();
    reasons.extend(shards.iter().filter(|s| !s.reachable).map(|s| {
        format!(
            "shard {} ({} slots) is unreachable: its keys read as misses, its writes fail",
            s.name, s.slots
        )
    }));
    let mut body = json!({
        "status": if reasons.is_empty() { "ok" } else { "degraded" },
        "node": node.name(),
        "role": node.role().to_string(),
        "reasons": reasons,
        "links_down": down,
        "persistence": persistence,
    });
    if !shards.is_empty() {
        body["shards"] = json!(shards);
    }
    Json(body)
}

async fn prometheus(State(node): State<Node>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        metrics::prometheus(&node),
    )
}
