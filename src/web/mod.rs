//! The status pages: server-rendered HTML over the same store and read model MCP answers
//! from, served on MCP's HTTP face (`labctl mcp --http`, `labctl serve --mcp-http`). No
//! script is needed to read them; no font, script or image is loaded from anywhere else.
//!
//! Every page but the login form and the stylesheet needs a [`auth::Viewer`]: a session
//! cookie from the login form, a user header from a trusted proxy, or an open loopback
//! listener. The client-address and `Host` rules of the MCP face apply here too.

pub mod auth;
mod pages;
mod render;
mod trend;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Form, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use crate::mcp::http::{canonical, host_allowed, Cidr};
use crate::mcp::{Client, LabServer};
use crate::store::ActorKind;
use auth::{Access, AccessOptions, Viewer};

/// What the pages answer from and who may see them.
pub struct Web {
    server: LabServer,
    access: Access,
    /// `Host` values accepted (names, or `name:port`); empty: any.
    hosts: Vec<String>,
    /// Client networks allowed; empty: any.
    clients: Vec<Cidr>,
}

/// Longest form body accepted (the login form holds a token and two short fields).
const MAX_FORM_BYTES: usize = 16 * 1024;

impl Web {
    pub fn new(
        server: LabServer,
        access: AccessOptions,
        hosts: Vec<String>,
        clients: Vec<Cidr>,
    ) -> Self {
        Web {
            server,
            access: Access::new(access),
            hosts,
            clients,
        }
    }
}

/// The pages' routes, to merge into an HTTP face.
pub fn router(web: Arc<Web>) -> Router {
    let pages = Router::new()
        .route("/", get(pages::overview))
        .route("/drift", get(pages::drift))
        .route("/resources/{kind}/{name}", get(pages::resource))
        .route("/runs", get(pages::runs))
        .route("/runs/{id}", get(pages::run))
        .route("/pools", get(pages::pools))
        .route("/trend", get(pages::trend))
        .route("/logout", post(logout))
        // Only on these routes: a layer would also catch the fallback, and turn a browser's
        // /favicon.ico into a login form that replaces the one being filled in.
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&web),
            require_viewer,
        ));
    Router::new()
        .route("/login", get(login_form).post(login))
        .route("/static/style.css", get(stylesheet))
        .merge(pages)
        .route_layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&web),
            guard,
        ))
        .with_state(web)
}

/// The client address and `Host` rules, and headers every page carries.
async fn guard(
    State(web): State<Arc<Web>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let ip = canonical(peer.ip());
    if !web.clients.is_empty() && !web.clients.iter().any(|c| c.contains(ip)) {
        return (StatusCode::FORBIDDEN, "client address not allowed\n").into_response();
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !web.hosts.is_empty() && !host_allowed(&web.hosts, host) {
        // A page of another site that rebinds its name to this address gets nothing.
        return (StatusCode::FORBIDDEN, "this Host is not served here\n").into_response();
    }
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    // Nothing but this origin's own stylesheet and form posts; never framed.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Pages need a viewer: without one, the login form, which comes back here.
async fn require_viewer(
    State(web): State<Arc<Web>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    match web.access.viewer(canonical(peer.ip()), req.headers()) {
        Some(viewer) => {
            req.extensions_mut().insert(viewer);
            next.run(req).await
        }
        None => {
            let next = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            Redirect::to(&format!("/login?next={}", render::query_value(&next))).into_response()
        }
    }
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("style.css"),
    )
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// Where to go after logging in: a path of this site, never another origin, and nothing a
/// `Location` header cannot carry (a path from a request is percent-encoded already).
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && p.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            p.to_string()
        }
        _ => "/".into(),
    }
}

async fn login_form(
    State(web): State<Arc<Web>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<NextQuery>,
) -> Response {
    let next = local_path(q.next.as_deref());
    let ip = canonical(peer.ip());
    if web.access.viewer(ip, &headers).is_some() {
        return Redirect::to(&next).into_response();
    }
    login_page(&web, ip, &headers, &next, None, StatusCode::OK)
}

/// The login form with a fresh CSRF token in the form and its cookie.
fn login_page(
    web: &Web,
    ip: IpAddr,
    headers: &HeaderMap,
    next: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let csrf = auth::random_hex();
    let cookie = auth::set_cookie(
        auth::CSRF_COOKIE,
        &csrf,
        Duration::from_secs(3600),
        web.access.secure(ip, headers),
    );
    let page = pages::login(&csrf, next, error, web.access.has_tokens());
    (status, [(header::SET_COOKIE, cookie)], page).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    csrf: String,
    next: Option<String>,
}

async fn login(
    State(web): State<Arc<Web>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let ip = canonical(peer.ip());
    let next = local_path(form.next.as_deref());
    let csrf_ok = !form.csrf.is_empty()
        && auth::cookie(&headers, auth::CSRF_COOKIE).is_some_and(|c| auth::same(c, &form.csrf))
        && same_origin(&headers, web.access.trusted(ip));
    if !csrf_ok {
        return login_page(
            &web,
            ip,
            &headers,
            &next,
            Some("The form had expired or came from another site; log in again."),
            StatusCode::FORBIDDEN,
        );
    }
    let Some((session, name)) = web.access.login(&form.token) else {
        audit(
            &web,
            &format!("web:?@{ip}"),
            "web.login",
            json!({"ok": false}),
        )
        .await;
        tracing::info!(client = %ip, "status pages: a login with an unknown token");
        return login_page(
            &web,
            ip,
            &headers,
            &next,
            Some("That token is not accepted."),
            StatusCode::UNAUTHORIZED,
        );
    };
    audit(
        &web,
        &format!("web:{name}@{ip}"),
        "web.login",
        json!({"ok": true}),
    )
    .await;
    let secure = web.access.secure(ip, &headers);
    let mut response = Redirect::to(&next).into_response();
    let h = response.headers_mut();
    for cookie in [
        auth::set_cookie(auth::SESSION_COOKIE, &session, web.access.ttl(), secure),
        auth::set_cookie(auth::CSRF_COOKIE, "", Duration::ZERO, secure),
    ] {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            h.append(header::SET_COOKIE, v);
        }
    }
    response
}

/// A browser's `Origin`, when it sends one, names this site: the `Host` asked for, or behind
/// a trusted proxy (`via_proxy`) the `X-Forwarded-Host` it names, as a proxy that rewrites
/// `Host` for its upstream (nginx's default) sends.
fn same_origin(headers: &HeaderMap, via_proxy: bool) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let value = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let forwarded = value(header::HeaderName::from_static("x-forwarded-host"))
        .filter(|_| via_proxy)
        .and_then(|f| f.split(',').next())
        .map(str::trim);
    let host = forwarded.or(value(header::HOST)).unwrap_or("");
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
}

#[derive(Deserialize)]
struct LogoutForm {
    csrf: String,
}

async fn logout(
    State(web): State<Arc<Web>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    let ip = canonical(peer.ip());
    if !same_origin(&headers, web.access.trusted(ip)) {
        return (StatusCode::FORBIDDEN, "a form of another site\n").into_response();
    }
    let Some(name) = web.access.logout(&headers, &form.csrf) else {
        return (
            StatusCode::FORBIDDEN,
            "no session of yours to end here; reload the page and try again\n",
        )
            .into_response();
    };
    audit(&web, &format!("web:{name}@{ip}"), "web.logout", json!({})).await;
    let mut response = Redirect::to("/login").into_response();
    let cookie = auth::set_cookie(
        auth::SESSION_COOKIE,
        "",
        Duration::ZERO,
        web.access.secure(ip, &headers),
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// Logins and logouts are audited (page views are not), committed before the answer.
async fn audit(web: &Web, actor: &str, action: &str, details: serde_json::Value) {
    let client = Client {
        kind: ActorKind::Web,
        actor: actor.to_string(),
        scopes: crate::mcp::Scopes::none(),
    };
    web.server.audit(&client, action, details, true).await;
}

/// The viewer a page is shown to, put there by [`require_viewer`].
type ViewerExt = axum::Extension<Viewer>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_next_paths_are_checked() {
        let allowed = vec!["localhost".to_string(), "lab.example:8443".to_string()];
        assert!(host_allowed(&allowed, "localhost:9000"));
        assert!(host_allowed(&allowed, "LAB.example:8443"));
        assert!(!host_allowed(&allowed, "evil.example"));
        assert!(host_allowed(&["::1".to_string()], "[::1]:80"));
        assert_eq!(local_path(Some("/drift?kind=Route")), "/drift?kind=Route");
        assert_eq!(local_path(Some("//evil.example/")), "/");
        assert_eq!(local_path(Some("https://evil.example/")), "/");
        assert_eq!(local_path(Some("/\\evil")), "/");
        assert_eq!(local_path(Some("/drift\r\nSet-Cookie: x=1")), "/");
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn a_form_from_another_origin_is_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&h, false));
        let origin = |h: &mut HeaderMap, o: &'static str| {
            h.insert(header::ORIGIN, HeaderValue::from_static(o));
        };
        origin(&mut h, "http://127.0.0.1:8080");
        assert!(same_origin(&h, false));
        origin(&mut h, "http://evil.example");
        assert!(!same_origin(&h, false));
        origin(&mut h, "null");
        assert!(!same_origin(&h, false));
        // Behind a proxy that rewrites Host: its X-Forwarded-Host, believed from it only.
        origin(&mut h, "https://labctl.lab.example");
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("labctl.lab.example"),
        );
        assert!(same_origin(&h, true));
        assert!(!same_origin(&h, false));
    }
}
