//! The daemon's own HTTP face: `/healthz` (alive), `/readyz` (store reachable and a run
//! finished), push webhooks at `/hooks/<forge>`, and `POST /api/reconcile` for a person with
//! the admin token. Every answer is small and every body capped.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;

use super::metrics::{self as m, Metrics};
use super::webhook::{self, Forge, Verdict};
use super::{State, Triggers};
use crate::controller::{Context, Reason};

/// Webhook payloads larger than this are refused (GitHub caps its own at 25 MB; a push
/// notification needs far less, and the body is only hashed).
pub const MAX_BODY_BYTES: usize = 5 * 1024 * 1024;

/// Secrets of the HTTP face; each `None` switches its endpoint off (404).
#[derive(Default, Clone)]
pub struct Secrets {
    /// The shared secret of push webhooks (every forge).
    pub webhook: Option<Vec<u8>>,
    /// The bearer token of `POST /api/reconcile`.
    pub admin: Option<Vec<u8>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the values.
        f.debug_struct("Secrets")
            .field("webhook", &self.webhook.is_some())
            .field("admin", &self.admin.is_some())
            .finish()
    }
}

/// What the daemon's endpoints answer from.
#[derive(Clone)]
pub struct App {
    pub ctx: Arc<Context>,
    pub state: Arc<State>,
    pub triggers: Triggers,
    pub secrets: Secrets,
    pub metrics: Arc<Metrics>,
}

/// The router of the daemon's endpoints.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/hooks/{forge}", post(hook))
        .route("/api/reconcile", post(manual))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(app)
}

/// Prometheus' scrape: what this process counted, and what the store knows now.
async fn metrics(
    AxumState(app): AxumState<App>,
    headers: HeaderMap,
) -> impl axum::response::IntoResponse {
    let accept = header(&headers, axum::http::header::ACCEPT.as_str());
    let format = m::negotiate(accept.as_deref());
    let text = app.metrics.encode(app.ctx.store()).await;
    let text = if format == m::OPENMETRICS {
        text
    } else {
        m::classic_text(&text)
    };
    ([(axum::http::header::CONTENT_TYPE, format)], text)
}

/// Serves `router` on `listener` until `shutdown`.
pub async fn serve(
    router: Router,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// 200 when the store answers and a run has finished since the start; 503 with why otherwise.
async fn ready(AxumState(app): AxumState<App>) -> (StatusCode, String) {
    if let Err(e) = app.ctx.store().latest_run().await {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the store does not answer: {e}\n"),
        );
    }
    let progress = app.state.progress();
    // A standby answers MCP and health from the store; it has no run of its own to wait for.
    if progress.leader && progress.last_outcome.is_none() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no run has finished yet\n".into(),
        );
    }
    (StatusCode::OK, format!("{}\n", app.state.status_line()))
}

async fn hook(
    AxumState(app): AxumState<App>,
    Path(forge): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let Some(forge) = Forge::from_path(&forge) else {
        return (
            StatusCode::NOT_FOUND,
            "no such webhook; use /hooks/github, /hooks/gitea, /hooks/forgejo or /hooks/generic\n"
                .into(),
        );
    };
    let Some(secret) = &app.secrets.webhook else {
        return (
            StatusCode::NOT_FOUND,
            "webhooks are not configured (give serve a webhook secret)\n".into(),
        );
    };
    let header = |name: &str| header(&headers, name);
    match webhook::verify(forge, secret, header, &body) {
        Verdict::Push => {
            tracing::info!(forge = forge.name(), "push webhook: reconciling");
            app.triggers.send(Reason::Webhook {
                source: forge.name().to_string(),
            });
            (StatusCode::ACCEPTED, "reconcile queued\n".into())
        }
        Verdict::Ignored(event) => (
            StatusCode::OK,
            format!(
                "event `{}` changes no branch; nothing to do\n",
                crate::text::printable(&event, false)
            ),
        ),
        Verdict::Unauthorized(why) => {
            tracing::warn!(forge = forge.name(), why, "webhook refused");
            (StatusCode::UNAUTHORIZED, format!("{why}\n"))
        }
    }
}

/// The text of header `name`, if it is there and text.
fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn manual(AxumState(app): AxumState<App>, headers: HeaderMap) -> (StatusCode, String) {
    let Some(secret) = &app.secrets.admin else {
        return (
            StatusCode::NOT_FOUND,
            "manual runs over HTTP are not configured (give serve an admin token)\n".into(),
        );
    };
    let header = |name: &str| header(&headers, name);
    match webhook::verify(Forge::Generic, secret, header, b"") {
        Verdict::Push => {
            // Recorded with the run: printable, and short.
            let by = header("x-labctl-user").unwrap_or_else(|| "admin token".into());
            let by: String = crate::text::printable(&by, false)
                .chars()
                .take(64)
                .collect();
            app.triggers.send(Reason::manual("http", by));
            (StatusCode::ACCEPTED, "reconcile queued\n".into())
        }
        Verdict::Ignored(_) | Verdict::Unauthorized(_) => (
            StatusCode::UNAUTHORIZED,
            "a valid admin bearer token is required\n".into(),
        ),
    }
}
