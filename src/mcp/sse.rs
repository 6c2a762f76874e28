//! MCP's older "HTTP+SSE" transport (protocol 2024-11-05), beside streamable HTTP, for clients
//! that predate it: `GET /sse` opens a session whose first event, `endpoint`, names the URL
//! (`/messages?sessionId=…`) the client POSTs each JSON-RPC message to (answered 202); every
//! message from the server comes back as a `message` event on the stream.
//!
//! Both routes sit behind the same guard as `/mcp` (client address, requests in flight, bearer
//! token, rate, session cap); the `Host` and `Origin` checks rmcp does for `/mcp` are done here.
//! A session is bound to the caller that opened it: its [`LabServer`] runs with that caller as
//! its own client, and a POST from any other caller finds no session (404).
//!
//! Each session is a pair of [`tokio::io::duplex`] pipes to and from a server speaking rmcp's
//! newline-delimited JSON: a POST writes its message as one line, and each line the server
//! writes becomes one event. Closing the stream drops the session; dropping the session closes
//! the pipe to the server, which ends the server and then the stream.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use futures::StreamExt;
use rmcp::ServiceExt;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};

use super::{Client, LabServer};

/// Open HTTP+SSE sessions and what opening one needs.
pub(super) struct SseSessions {
    /// Cloned per session, with the session's caller as its client.
    server: LabServer,
    /// `Host` values accepted (`name` or `name:port`), as for `/mcp`.
    hosts: Vec<String>,
    /// Browser origins accepted; a request with any other `Origin` is refused.
    origins: Vec<String>,
    sessions: Mutex<HashMap<String, Session>>,
}

struct Session {
    /// The caller that opened it (token name and client address).
    actor: String,
    /// The server's input; dropped, it closes, and the server stops.
    to_server: Arc<tokio::sync::Mutex<DuplexStream>>,
}

/// Removes its session when the event stream is dropped (the client went away).
struct Closer {
    sessions: Arc<SseSessions>,
    id: String,
}

impl Drop for Closer {
    fn drop(&mut self) {
        if self.sessions.lock().remove(&self.id).is_some() {
            tracing::debug!(session = %self.id, "HTTP+SSE session closed");
        }
    }
}

#[derive(Deserialize)]
struct SessionQuery {
    #[serde(rename = "sessionId")]
    session_id: String,
}

impl SseSessions {
    pub(super) fn new(server: LabServer, hosts: Vec<String>, origins: Vec<String>) -> Arc<Self> {
        Arc::new(SseSessions {
            server,
            hosts,
            origins,
            sessions: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sessions open now.
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Drops every session: their servers stop and their streams end (shutdown).
    pub(super) fn close_all(&self) {
        self.lock().clear();
    }

    /// `GET /sse` and `POST /messages`, bodies limited to `max_body_bytes` (larger: 413).
    pub(super) fn router(self: &Arc<Self>, max_body_bytes: usize) -> Router {
        Router::new()
            .route("/sse", get(open))
            .route("/messages", post(message))
            .layer(DefaultBodyLimit::max(max_body_bytes))
            .with_state(Arc::clone(self))
    }

    /// Refuses (403, with why) a `Host` that is not ours or an `Origin` not allowed (DNS
    /// rebinding), as rmcp does for `/mcp`.
    fn check_host_and_origin(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), &'static str> {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()));
        if !host.is_some_and(|h| host_allowed(&self.hosts, h)) {
            tracing::warn!("refused: Host header not allowed (possible DNS rebinding)");
            return Err("Host header not allowed\n");
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().ok().and_then(parse_origin);
            if !origin.is_some_and(|o| self.origins.iter().any(|a| origin_matches(a, &o))) {
                tracing::warn!("refused: Origin not allowed");
                return Err("Origin not allowed\n");
            }
        }
        Ok(())
    }
}

/// `GET /sse`: a new session, its endpoint first, then the server's messages.
async fn open(
    State(sessions): State<Arc<SseSessions>>,
    Extension(client): Extension<Client>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let Err(why) = sessions.check_host_and_origin(&uri, &headers) {
        return (StatusCode::FORBIDDEN, why).into_response();
    }
    let id = rmcp::transport::common::server_side_http::session_id().to_string();
    // One pipe each way, so that dropping the session's end of the first ends the server.
    let (to_server, server_in) = tokio::io::duplex(64 * 1024);
    let (server_out, from_server) = tokio::io::duplex(64 * 1024);
    let mut server = sessions.server.for_session();
    server.client = client.clone();
    let session = id.clone();
    tokio::spawn(async move {
        match server.serve((server_in, server_out)).await {
            Ok(running) => {
                let reason = running.waiting().await;
                tracing::debug!(%session, ?reason, "HTTP+SSE session ended");
            }
            Err(e) => tracing::debug!(%session, "HTTP+SSE session not initialised: {e}"),
        }
    });
    sessions.lock().insert(
        id.clone(),
        Session {
            actor: client.actor.clone(),
            to_server: Arc::new(tokio::sync::Mutex::new(to_server)),
        },
    );
    tracing::info!(session = %id, actor = %client.actor, "HTTP+SSE session opened");
    let endpoint = Event::default()
        .event("endpoint")
        .data(format!("/messages?sessionId={id}"));
    let closer = Closer {
        sessions: Arc::clone(&sessions),
        id,
    };
    let lines = BufReader::new(from_server).lines();
    let messages = futures::stream::unfold((lines, closer), |(mut lines, closer)| async move {
        let line = lines.next_line().await.ok().flatten()?;
        let event = Event::default().event("message").data(line);
        Some((Ok::<_, Infallible>(event), (lines, closer)))
    });
    let events = futures::stream::once(async { Ok(endpoint) }).chain(messages);
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `POST /messages?sessionId=…`: one JSON-RPC message to the session's server; 202.
async fn message(
    State(sessions): State<Arc<SseSessions>>,
    Extension(client): Extension<Client>,
    Query(query): Query<SessionQuery>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(why) = sessions.check_host_and_origin(&uri, &headers) {
        return (StatusCode::FORBIDDEN, why).into_response();
    }
    // Another caller's session is answered exactly as one that does not exist.
    let pipe = sessions
        .lock()
        .get(&query.session_id)
        .filter(|s| s.actor == client.actor)
        .map(|s| Arc::clone(&s.to_server));
    let Some(pipe) = pipe else {
        return (StatusCode::NOT_FOUND, "no such session\n").into_response();
    };
    // Re-serialised: one line, whatever whitespace the client sent.
    let Ok(message) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            "the body must be a JSON-RPC message\n",
        )
            .into_response();
    };
    let mut line = message.to_string();
    line.push('\n');
    if pipe.lock().await.write_all(line.as_bytes()).await.is_err() {
        return (StatusCode::NOT_FOUND, "no such session\n").into_response();
    }
    StatusCode::ACCEPTED.into_response()
}

/// Whether `host` (a `Host` header: `name`, `name:port`, `[v6]:port`) is one of `allowed`
/// (each a name, any port, or `name:port`), names compared without case.
pub(crate) fn host_allowed(allowed: &[String], host: &str) -> bool {
    let Ok(h) = host.parse::<axum::http::uri::Authority>() else {
        return false;
    };
    allowed.iter().any(|allowed| {
        let (name, port) = match allowed.parse::<axum::http::uri::Authority>() {
            Ok(a) => (normal_host(a.host()), a.port_u16()),
            Err(_) => (normal_host(allowed), None),
        };
        name == normal_host(h.host()) && port.is_none_or(|p| h.port_u16() == Some(p))
    })
}

fn normal_host(host: &str) -> String {
    host.trim_matches(['[', ']']).to_ascii_lowercase()
}

/// An `Origin` as (scheme, host, port), the port implied by the scheme when left out.
fn parse_origin(value: &str) -> Option<(String, String, Option<u16>)> {
    let uri: Uri = value.trim().parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    let port = authority.port_u16().or(match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    });
    Some((scheme, normal_host(authority.host()), port))
}

/// Whether an allowed origin (`scheme://host[:port]`, port `*` for any, none for any) admits
/// `origin`, as rmcp matches them for `/mcp`.
fn origin_matches(allowed: &str, origin: &(String, String, Option<u16>)) -> bool {
    let (allowed, any_port) = match allowed.trim().strip_suffix(":*") {
        Some(base) => (base, true),
        None => (allowed.trim(), false),
    };
    let Ok(uri) = allowed.parse::<Uri>() else {
        return false;
    };
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return false;
    };
    scheme.eq_ignore_ascii_case(&origin.0)
        && normal_host(authority.host()) == origin.1
        && (any_port || authority.port_u16().is_none_or(|p| origin.2 == Some(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_as_for_streamable_http() {
        let o = |s| parse_origin(s).unwrap();
        assert!(origin_matches(
            "https://app.example:443",
            &o("https://app.example")
        ));
        assert!(origin_matches(
            "http://localhost:*",
            &o("http://LOCALHOST:5173")
        ));
        assert!(!origin_matches(
            "https://app.example:443",
            &o("http://app.example")
        ));
        assert!(!origin_matches(
            "https://app.example:8443",
            &o("https://app.example")
        ));
        assert!(parse_origin("null").is_none());
    }
}
