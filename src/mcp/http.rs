//! MCP over streamable HTTP: rmcp's [`StreamableHttpService`] (sessions kept by a
//! [`LocalSessionManager`]) mounted at `/mcp`, behind one small guard that, in order, checks
//! the client address, bounds requests in flight, verifies the bearer token, applies the
//! token's rate limit and caps open sessions. rmcp itself checks `Host` and `Origin` (against
//! DNS rebinding) and the request body size.
//!
//! The guard puts the verified caller (a [`Client`] with the token's name and scopes) into the
//! request's extensions; rmcp hands the request parts to the handler, which lists, allows and
//! audits each call as that caller.
//!
//! The older HTTP+SSE transport (`GET /sse`, `POST /messages`) is served beside it, behind the
//! same guard: see `sse.rs`.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use axum::Router;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::sync::Semaphore;

use super::auth::{Caller, Scope, Scopes, Tokens};
use super::oauth::{OAuth, Rejected};
use super::{Client, LabServer};
use crate::store::ActorKind;

#[path = "sse.rs"]
mod sse;

pub(crate) use sse::host_allowed;

/// How the HTTP face is exposed and bounded.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub tokens: Tokens,
    /// Browser origins allowed to call (`https://host:port`); a request with any other
    /// `Origin` is refused with 403. Requests without `Origin` (non-browser clients) pass.
    pub allow_origins: Vec<String>,
    /// Client networks allowed to connect; empty: any.
    pub allow_clients: Vec<Cidr>,
    /// `Host` values accepted besides loopback names and the listening address (a DNS name
    /// clients use, `name` or `name:port`); any other is refused with 403 (DNS rebinding).
    pub allow_hosts: Vec<String>,
    /// Largest request body (larger: 413).
    pub max_body_bytes: usize,
    /// Requests being handled at once (more: 503).
    pub max_in_flight: usize,
    /// Open MCP sessions (a new one beyond: 503).
    pub max_sessions: usize,
    /// Per token: sustained requests per second and burst (more: 429).
    pub rate_per_second: f64,
    pub rate_burst: f64,
    /// A request without a token is the anonymous caller with the `read` scope (a token, when
    /// presented, must still be valid). Only for a loopback listener (tests, conformance
    /// suites): [`serve`] refuses any other.
    pub insecure_no_auth: bool,
    /// OAuth access tokens from the lab's authorization server, besides the static tokens.
    pub oauth: Option<Arc<OAuth>>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            tokens: Tokens::default(),
            allow_origins: Vec::new(),
            allow_clients: Vec::new(),
            allow_hosts: Vec::new(),
            max_body_bytes: 1024 * 1024,
            max_in_flight: 512,
            max_sessions: 256,
            rate_per_second: 50.0,
            rate_burst: 100.0,
            insecure_no_auth: false,
            oauth: None,
        }
    }
}

/// Serves MCP at `http://<listener>/mcp` until `shutdown` completes; then open streams and
/// sessions are closed and in-flight requests finish.
pub async fn serve(
    server: LabServer,
    listener: tokio::net::TcpListener,
    options: HttpOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), super::ServeError> {
    serve_with(server, listener, options, Router::new(), shutdown).await
}

/// The `Host` values a listener on `local` accepts: loopback names, its own address, and
/// `allow_hosts`.
pub fn allowed_hosts(local: SocketAddr, allow_hosts: &[String]) -> Vec<String> {
    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    if !local.ip().is_unspecified() {
        hosts.push(local.ip().to_string());
    }
    hosts.extend(allow_hosts.iter().cloned());
    hosts
}

/// [`serve`], with `beside` served on the same listener outside the bearer-token guard (the
/// status pages, which check their own sessions).
pub async fn serve_with(
    server: LabServer,
    listener: tokio::net::TcpListener,
    options: HttpOptions,
    beside: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), super::ServeError> {
    let local = listener.local_addr()?;
    if options.insecure_no_auth && !local.ip().is_loopback() {
        return Err(super::ServeError::Refused(format!(
            "--insecure-no-auth serves without tokens, so only on a loopback address, not {local}"
        )));
    }
    // A page served from this host (an Inspector, a local tool) may call a server that
    // listens only on loopback: a rebinding attacker's page has a foreign origin.
    let mut origins = options.allow_origins.clone();
    if local.ip().is_loopback() {
        origins.extend(LOOPBACK_ORIGINS.iter().map(|o| o.to_string()));
    }
    let sessions = Arc::new(LocalSessionManager::default());
    let hosts = allowed_hosts(local, &options.allow_hosts);
    let sse = sse::SseSessions::new(server.clone(), hosts.clone(), origins.clone());
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_allowed_origins(origins)
        .enforce_origin_validation()
        .with_max_request_body_bytes(options.max_body_bytes);
    let cancel = config.cancellation_token.clone();
    let last = server.clone();
    let service = StreamableHttpService::new(
        move || Ok(server.for_session()),
        Arc::clone(&sessions),
        config,
    );
    let app = Router::new()
        .route_service("/mcp", service)
        .merge(sse.router(options.max_body_bytes));
    let guard = Arc::new(Guard {
        in_flight: Arc::new(Semaphore::new(options.max_in_flight)),
        buckets: Mutex::new(HashMap::new()),
        sessions,
        sse: Arc::clone(&sse),
        owners: Mutex::new(HashMap::new()),
        options,
    });
    let metadata = guard.options.oauth.as_ref().map(|o| o.metadata());
    if guard.options.insecure_no_auth {
        tracing::warn!("serving without authentication (--insecure-no-auth): every local process may read the lab");
    } else if guard.options.tokens.is_empty() && guard.options.oauth.is_none() {
        tracing::warn!("the tokens file holds no token: every request will be refused");
    }
    let app = app
        .layer(axum::middleware::from_fn_with_state(guard, guard_request))
        .merge(beside);
    // RFC 9728: where a client finds the authorization server; public, as it must be before
    // the client has a token. Served at the root and under any resource path.
    let app = match metadata {
        Some(doc) => {
            let doc = Arc::new(doc);
            let serve_doc = move || {
                let doc = Arc::clone(&doc);
                async move { axum::Json((*doc).clone()) }
            };
            app.route(
                "/.well-known/oauth-protected-resource",
                axum::routing::get(serve_doc.clone()),
            )
            .route(
                "/.well-known/oauth-protected-resource/{*resource}",
                axum::routing::get(serve_doc),
            )
        }
        None => app,
    };
    tracing::info!(address = %local, "serving MCP over streamable HTTP at /mcp, HTTP+SSE at /sse");
    // Small answers go out at once: without TCP_NODELAY, Nagle's algorithm holds a response's
    // last segment until the client's delayed ACK (40 ms on Linux) on every keep-alive call.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: closing MCP sessions");
        cancel.cancel();
        sse.close_all();
    })
    .await?;
    // Reads are answered before their audit rows are committed: commit them before exiting.
    last.flush_audit().await;
    Ok(())
}

/// Browser origins of this host, accepted by a loopback listener (as the Python SDK does).
const LOOPBACK_ORIGINS: [&str; 3] = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"];

/// The caller of a request without a token under `insecure_no_auth`.
fn anonymous() -> Caller {
    Caller {
        name: "anonymous".into(),
        scopes: vec![Scope::Read],
    }
}

/// The server state an HTTP face needs besides rmcp's.
struct Guard {
    options: HttpOptions,
    in_flight: Arc<Semaphore>,
    buckets: Mutex<HashMap<String, Bucket>>,
    sessions: Arc<LocalSessionManager>,
    sse: Arc<sse::SseSessions>,
    /// The token name that opened each `/mcp` session.
    owners: Mutex<HashMap<String, String>>,
}

/// A token bucket: `tokens` refill at the configured rate up to the burst.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Guard {
    fn allow_rate(&self, token_name: &str) -> bool {
        let (rate, burst) = (self.options.rate_per_second, self.options.rate_burst);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let b = buckets.entry(token_name.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn refuse(status: StatusCode, message: &'static str) -> Response {
    (status, message).into_response()
}

async fn guard_request(
    State(g): State<Arc<Guard>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let ip = canonical(peer.ip());
    if !g.options.allow_clients.is_empty()
        && !g.options.allow_clients.iter().any(|c| c.contains(ip))
    {
        tracing::info!(client = %ip, status = 403, "refused: client address not allowed");
        return refuse(StatusCode::FORBIDDEN, "client address not allowed\n");
    }
    let Ok(_permit) = Arc::clone(&g.in_flight).try_acquire_owned() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests in flight\n",
        );
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::text::bearer);
    let caller = match authenticate(&g, presented).await {
        Ok(caller) => caller,
        Err(refusal) => return refusal.respond(&g, ip),
    };
    if !g.allow_rate(&caller.name) {
        tracing::info!(client = %ip, status = 429, token = %caller.name, "refused: rate limit exceeded");
        let mut response = refuse(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded\n");
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    // A POST to /mcp without a session id may open a session, a GET of /sse does: refuse
    // either when the cap (on both kinds together) is reached.
    let opens_session = match (req.method(), req.uri().path()) {
        (&Method::POST, "/mcp") => !req.headers().contains_key("mcp-session-id"),
        (&Method::GET, "/sse") => true,
        _ => false,
    };
    if opens_session
        && g.sessions.sessions.read().await.len() + g.sse.len() >= g.options.max_sessions
    {
        tracing::info!(client = %ip, status = 503, "refused: too many open MCP sessions");
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many open MCP sessions\n",
        );
    }
    // A session is its opener's: another token's request naming it is answered as if it did
    // not exist, so a session id seen elsewhere is worth nothing without its token.
    let session = req
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(id) = &session {
        let owner = g
            .owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned();
        if owner.is_some_and(|o| o != caller.name) {
            tracing::info!(client = %ip, status = 404, token = %caller.name, "refused: another token's session");
            return refuse(StatusCode::NOT_FOUND, "no such MCP session\n");
        }
    }
    let token = caller.name.clone();
    let closes = req.method() == Method::DELETE;
    req.extensions_mut().insert(Client {
        kind: ActorKind::Mcp,
        actor: format!("http:{}@{ip}", caller.name),
        scopes: Scopes::new(caller.scopes.iter().copied()),
    });
    let response = next.run(req).await;
    let opened = response
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if opens_session || closes {
        let live = g.sessions.sessions.read().await;
        let mut owners = g.owners.lock().unwrap_or_else(|e| e.into_inner());
        // Sessions rmcp has closed (ended, expired, deleted) need no owner any more.
        owners.retain(|id, _| live.keys().any(|k| k.as_ref() == id.as_str()));
        if let (true, Some(id)) = (opens_session, opened) {
            owners.insert(id, token);
        }
    }
    response
}

/// Why a request is refused before it reaches MCP.
enum Refusal {
    /// No token where one is needed (401).
    Missing,
    /// A token that was not accepted: 401 `invalid_token`, 403 `insufficient_scope`, or 503
    /// while the issuer's keys cannot be had.
    Token(Rejected),
}

impl Refusal {
    fn respond(self, g: &Guard, ip: IpAddr) -> Response {
        let (status, error, message, why) = match &self {
            Refusal::Missing => (
                StatusCode::UNAUTHORIZED,
                None,
                "a valid bearer token is required\n",
                "no token",
            ),
            Refusal::Token(Rejected::Invalid(why)) => (
                StatusCode::UNAUTHORIZED,
                Some("invalid_token"),
                "a valid bearer token is required\n",
                why.as_str(),
            ),
            Refusal::Token(Rejected::NoScope) => (
                StatusCode::FORBIDDEN,
                Some("insufficient_scope"),
                "the token grants none of labctl's scopes\n",
                "no scope granted",
            ),
            Refusal::Token(Rejected::Unavailable(why)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "the authorization server's keys are not available; try again\n",
                why.as_str(),
            ),
        };
        tracing::info!(client = %ip, status = status.as_u16(), why, "refused: no valid bearer token");
        let mut response = refuse(status, message);
        if status != StatusCode::SERVICE_UNAVAILABLE {
            // RFC 6750 §3 and RFC 9728 §5.1: what went wrong, and where to get a token.
            let mut challenge = String::from("Bearer realm=\"labctl\"");
            if let Some(error) = error {
                challenge.push_str(&format!(", error=\"{error}\""));
            }
            if let Some(oauth) = &g.options.oauth {
                challenge.push_str(&format!(", resource_metadata=\"{}\"", oauth.metadata_url()));
            }
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}

/// The caller a token (or its absence) makes: a static token, an OAuth access token, or the
/// anonymous reader of `--insecure-no-auth`.
async fn authenticate(g: &Guard, presented: Option<&str>) -> Result<Caller, Refusal> {
    let Some(token) = presented else {
        return match g.options.insecure_no_auth {
            true => Ok(anonymous()),
            false => Err(Refusal::Missing),
        };
    };
    if let Some(entry) = g.options.tokens.verify(token) {
        return Ok(entry.into());
    }
    let Some(oauth) = g
        .options
        .oauth
        .as_ref()
        .filter(|_| OAuth::looks_like_jwt(token))
    else {
        return Err(Refusal::Token(Rejected::Invalid(
            "not a known token".into(),
        )));
    };
    oauth.verify(token).await.map_err(Refusal::Token)
}

/// An IPv4 client seen through an IPv6 socket is the IPv4 address.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// An address block such as `10.0.0.0/8`, `192.168.1.7` or `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s.split_once('/').unwrap_or((s, ""));
        let network: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}`: not an address block such as 10.0.0.0/8"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0..={max}"))?
        };
        Ok(Cidr { network, prefix })
    }
}

/// For a server built with [`LabServer::new`] on HTTP: no scope until a request's verified
/// token supplies one.
pub fn http_client() -> Client {
    Client {
        kind: ActorKind::Mcp,
        actor: "http".into(),
        scopes: Scopes::none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_blocks() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!("::1/128"
            .parse::<Cidr>()
            .unwrap()
            .contains("::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert_eq!(
            canonical("::ffff:10.0.0.1".parse().unwrap()),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }
}
