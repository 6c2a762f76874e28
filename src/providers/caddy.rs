//! Caddy: `Route`s as routes of one HTTP server, through the admin API.
//!
//! labctl writes each `Route` as one Caddy route in a fixed shape:
//!
//! ```json
//! {"@id": "labctl-grafana",
//!  "match": [{"host": ["grafana.lab.example"], "path": ["/api*"]}],
//!  "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": "10.0.1.220:3000"}]}],
//!  "terminal": true}
//! ```
//!
//! and reads every route of the server back into the fields shape
//! `{"host", "pathPrefix", "backend": {"urls"}}`. A route with parts labctl does not model is
//! still reported, with an extra `unrepresented` list naming those parts, so that the diff shows
//! them instead of labctl silently treating the route as fine (or dropping it).
//!
//! Changes are written as one `PATCH` of the server's whole `routes` array guarded by
//! `If-Match`: Caddy applies a config change all or nothing, so a batch of changes is atomic,
//! and a concurrent edit between our read and our write fails with 412 instead of being lost.
//! Addressing single routes (`/id/…`, array indexes) would give neither: a refused second
//! change would leave the first applied, indexes shift under concurrent edits, and Caddy 2.6
//! accepts duplicate `@id`s, which makes `/id/…` ambiguous.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Map, Value as Json};

use super::http;
use super::shape::{At, ShapeError};
use super::{
    derive_name, ApplyReport, BoxFuture, CallPolicy, Change, Factory, Observation, Provider,
    ProviderError, Resource, Severities, Severity,
};
use crate::model::{DesiredState, Kind, RouteSpec, ServiceProtocol};

/// `@id` prefix that marks a route as labctl's.
const ID_PREFIX: &str = "labctl-";
/// The answer routes are read from, as shape errors name it.
const ROUTES: &str = "Caddy routes";

settings! {
    /// A Caddy server, through its admin API (`url`).
    pub struct Settings {
        /// The HTTP server whose routes labctl manages (default `srv0`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub server: Option<String>,
    }
}

/// Builds [`CaddyProvider`]s.
pub struct Plugin;

impl Factory for Plugin {
    type Settings = Settings;

    const KINDS: &'static [Kind] = &[Kind::Route];

    const SEVERITIES: Severities = &[(
        Kind::Route,
        &["host", "pathPrefix", "backend"],
        Severity::High,
    )];

    fn expected(desired: &DesiredState) -> Vec<Resource> {
        desired
            .routes
            .iter()
            .filter_map(|r| {
                let fields = expected_fields(&r.doc.spec, desired)?;
                Some(Resource {
                    kind: Kind::Route,
                    name: r.doc.metadata.name.clone(),
                    fields: fields.into(),
                    key: None,
                })
            })
            .collect()
    }

    fn build(settings: &Settings) -> Result<Arc<dyn Provider>, ProviderError> {
        Ok(Arc::new(CaddyProvider::new(settings)?))
    }
}

/// A Caddy server's routes, reached through the admin API.
pub struct CaddyProvider {
    name: String,
    /// Admin API base, without a trailing `/`.
    url: String,
    server: String,
    policy: CallPolicy,
    client: reqwest::Client,
}

/// The server's `routes` array as read, with what is needed to write it back safely.
struct RoutesRead {
    /// `None` when the server (or the http app) does not exist.
    routes: Option<Vec<Json>>,
    /// The array is absent (`null`) although the server exists: it must be created, not patched.
    absent: bool,
    etag: Option<String>,
    body: Vec<u8>,
}

/// One live route read back into labctl's fields shape.
struct Parsed {
    /// `NAME` from an `@id` of `labctl-NAME`.
    managed: Option<String>,
    id: Option<String>,
    /// `(host, path prefix)` with `/` as the default prefix.
    key: Option<(String, String)>,
    fields: Json,
}

impl CaddyProvider {
    pub fn new(cfg: &Settings) -> Result<Self, ProviderError> {
        let config_err = ProviderError::config(&cfg.name);
        let url = cfg.url.trim_end_matches('/').to_string();
        Url::parse(&url).map_err(|e| config_err(format!("invalid admin URL `{url}`: {e}")))?;
        let policy = CallPolicy::with_timeout_seconds(cfg.timeout_seconds)
            .with_max_body_bytes(cfg.max_body_bytes);
        let builder = reqwest::Client::builder()
            // The admin API is on the management host or the LAN; a proxy from the
            // environment would only stand in the way (and see the whole config).
            .no_proxy()
            // Caddy restarts its admin listener when it loads a config (even one it then
            // refuses), so a pooled connection goes stale after any change by anyone.
            .pool_max_idle_per_host(0)
            .connect_timeout(policy.timeout);
        let client = http::build(builder, &config_err)?;
        Ok(CaddyProvider {
            name: cfg.name.clone(),
            url,
            server: cfg.server.clone().unwrap_or_else(|| "srv0".into()),
            policy,
            client,
        })
    }

    fn routes_path(&self) -> String {
        format!("/config/apps/http/servers/{}/routes", self.server)
    }

    /// Refused, reset or closed mid-answer: all may pass, so all are transient.
    fn transport_error(&self, url: &str, e: reqwest::Error) -> ProviderError {
        let classify = http::Classify::default();
        http::transport_error(&self.name, url, self.policy.timeout, e, classify)
    }

    fn bad_response(&self, url: &str, detail: String) -> ProviderError {
        ProviderError::BadResponse {
            provider: self.name.clone(),
            url: url.to_string(),
            detail,
            source: None,
        }
    }

    /// The most of an answer from `url` that is read.
    fn limit<'a>(&'a self, url: &'a str) -> http::BodyLimit<'a> {
        http::BodyLimit {
            provider: &self.name,
            url,
            max_bytes: self.policy.max_body_bytes,
        }
    }

    /// Routes of a shape labctl does not understand: none of them is known.
    fn shape_error(&self, e: ShapeError) -> ProviderError {
        e.into_provider_error(&self.name, &format!("{}{}", self.url, self.routes_path()))
    }

    fn stale(&self) -> ProviderError {
        ProviderError::Stale {
            provider: self.name.clone(),
            detail: format!(
                "the routes of server `{}` changed concurrently, run again",
                self.server
            ),
        }
    }

    fn rejected(&self, detail: String) -> ProviderError {
        ProviderError::Rejected {
            provider: self.name.clone(),
            detail,
        }
    }

    /// GET the server's routes. Caddy answers 200 `null` when the array is absent and 400
    /// "invalid traversal path" when the server or the http app is.
    async fn read_routes(&self) -> Result<RoutesRead, ProviderError> {
        let path = self.routes_path();
        let url = format!("{}{}", self.url, path);
        self.policy
            .run(&self.name, || async {
                let http::Reply {
                    status,
                    headers,
                    body,
                } = http::exchange(self.client.get(&url), self.limit(&url), |e| {
                    self.transport_error(&url, e)
                })
                .await?;
                let header_etag = headers
                    .get(reqwest::header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                if let Some(e) = self.auth_error(&url, status, &body) {
                    return Err(e);
                }
                if status == StatusCode::BAD_REQUEST
                    && caddy_message(&body).contains("invalid traversal path")
                {
                    return Ok(RoutesRead {
                        routes: None,
                        absent: true,
                        etag: None,
                        body,
                    });
                }
                if status != StatusCode::OK {
                    return Err(
                        self.bad_response(&url, format!("HTTP {status}: {}", caddy_message(&body)))
                    );
                }
                let (body, value) = http::parse_json::<serde_json::Value>(body).await;
                let value = value.map_err(|e| self.bad_response(&url, format!("not JSON: {e}")))?;
                let (routes, absent) = match value {
                    Json::Null => (Vec::new(), true),
                    Json::Array(a) => (a, false),
                    other => {
                        let what = super::shape::type_name(&other);
                        return Err(self
                            .bad_response(&url, format!("`routes` is {what}, expected an array")));
                    }
                };
                // Caddy 2.6 sends the ETag as an HTTP trailer, which reqwest does not expose.
                // Its value is the path and the FNV-1a 32 hash of exactly the body it sent, so
                // it can be recomputed; later Caddy versions send it as a header.
                let etag =
                    header_etag.or_else(|| Some(format!("\"{path} {:08x}\"", fnv1a32(&body))));
                Ok(RoutesRead {
                    routes: Some(routes),
                    absent,
                    etag,
                    body,
                })
            })
            .await
    }

    fn auth_error(&self, url: &str, status: StatusCode, body: &[u8]) -> Option<ProviderError> {
        matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN).then(|| {
            ProviderError::Authentication {
                provider: self.name.clone(),
                url: url.to_string(),
                detail: {
                    let msg = caddy_message(body);
                    // Caddy guards its admin API against DNS rebinding by the Host header.
                    let hint = if msg.contains("host not allowed") {
                        " (Caddy accepts only its `admin.listen` address or `admin.origins` as Host)"
                    } else {
                        ""
                    };
                    format!("HTTP {status}: {msg}{hint}")
                },
                source: None,
            }
        })
    }

    /// Writes the whole routes array, guarded by the ETag of the read it was computed from.
    async fn write_routes(
        &self,
        read: &RoutesRead,
        routes: Vec<Json>,
    ) -> Result<(), ProviderError> {
        let url = format!("{}{}", self.url, self.routes_path());
        // PATCH replaces an existing value; an absent key must be created with PUT.
        let method = if read.absent {
            Method::PUT
        } else {
            Method::PATCH
        };
        let body = Json::Array(routes);
        let (status, answer) = self
            .policy
            .run(&self.name, || async {
                let mut req = self.client.request(method.clone(), &url).json(&body);
                if let Some(etag) = &read.etag {
                    req = req.header(reqwest::header::IF_MATCH, etag);
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| self.transport_error(&url, e))?;
                let status = resp.status();
                let answer =
                    http::read_body(resp, self.limit(&url), |e| self.transport_error(&url, e))
                        .await?;
                Ok((status, answer))
            })
            .await?;
        if let Some(e) = self.auth_error(&url, status, &answer) {
            return Err(e);
        }
        match status {
            StatusCode::OK => Ok(()),
            StatusCode::PRECONDITION_FAILED => {
                // Tell a real concurrent edit from an ETag we computed wrongly (a Caddy whose
                // ETag scheme differs): in the latter case the routes are still as we read them.
                if let Ok(again) = self.read_routes().await {
                    if again.body == read.body && read.etag.is_some() {
                        return Err(self.bad_response(
                            &url,
                            "Caddy refused our If-Match although the routes did not change: \
                             this Caddy's ETag scheme is not understood"
                                .into(),
                        ));
                    }
                }
                Err(self.stale())
            }
            // Caddy answers 500 (sometimes 400) for a config it will not load and keeps the
            // old one.
            s if s.is_client_error() || s.is_server_error() => Err(self.rejected(format!(
                "Caddy did not load the new routes (HTTP {}): {}",
                s.as_u16(),
                caddy_message(&answer)
            ))),
            s => Err(self.bad_response(&url, format!("HTTP {s}: {}", caddy_message(&answer)))),
        }
    }

    /// The Caddy route labctl writes for a `Route` with `fields` (the expected shape).
    fn build_route(&self, name: &str, fields: &Json) -> Result<Json, ProviderError> {
        let bad = |what: String| self.rejected(format!("Route/{name}: {what}"));
        let host = fields
            .get("host")
            .and_then(Json::as_str)
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no `host`: Caddy routes are matched by host".into()))?;
        let mut matcher = Map::new();
        matcher.insert("host".into(), json!([host]));
        if let Some(prefix) = fields.get("pathPrefix").and_then(Json::as_str) {
            if prefix != "/" {
                if !prefix.starts_with('/') {
                    return Err(bad(format!(
                        "pathPrefix `{prefix}` does not start with `/`"
                    )));
                }
                matcher.insert("path".into(), json!([format!("{prefix}*")]));
            }
        }
        let urls: Vec<&str> = fields
            .pointer("/backend/urls")
            .and_then(Json::as_array)
            .map(|a| a.iter().filter_map(Json::as_str).collect())
            .unwrap_or_default();
        if urls.is_empty() {
            return Err(bad("no backend URL".into()));
        }
        let mut tls = None;
        let mut upstreams = Vec::new();
        for u in urls {
            // Caddy 2.6 accepts any string as a dial address when loading and fails only
            // when proxying, so labctl checks what it writes itself.
            let (https, dial) =
                url_to_dial(u).map_err(|e| bad(format!("backend URL `{u}`: {e}")))?;
            if tls.is_some_and(|t| t != https) {
                return Err(bad(
                    "mixes http and https backends: one Caddy transport serves all upstreams"
                        .into(),
                ));
            }
            tls = Some(https);
            upstreams.push(json!({ "dial": dial }));
        }
        let mut handler = json!({ "handler": "reverse_proxy", "upstreams": upstreams });
        if tls == Some(true) {
            handler["transport"] = json!({ "protocol": "http", "tls": {} });
        }
        Ok(json!({
            "@id": format!("{ID_PREFIX}{name}"),
            "match": [Json::Object(matcher)],
            "handle": [handler],
            "terminal": true,
        }))
    }

    /// Applies `changes` to the routes as read, without any I/O.
    fn plan(&self, routes: &[Json], changes: &[Change]) -> Result<Vec<Json>, ProviderError> {
        let parsed = parse_routes(routes).map_err(|e| self.shape_error(e))?;
        let naming = Naming::new(&parsed);
        let concurrently = |name: &str, what: &str| {
            self.rejected(format!(
                "Route/{name} {what} on server `{}`: the routes changed concurrently, run again",
                self.server
            ))
        };
        let mut slots: Vec<Option<Json>> = routes.iter().cloned().map(Some).collect();
        for change in changes {
            if change.kind() != Kind::Route {
                return Err(self.rejected(format!(
                    "{}/{}: Caddy only holds Routes",
                    change.kind(),
                    change.name()
                )));
            }
            let name = change.name();
            match change {
                Change::Create { fields, .. } => {
                    // Live by id or by host and path means observe saw something else: the
                    // diff this change came from is stale.
                    let key = fields_key(fields);
                    if naming.find_desired(&parsed, name, key.as_ref()).is_some() {
                        return Err(concurrently(name, "already exists"));
                    }
                    slots.push(Some(self.build_route(name, fields)?));
                }
                Change::Update { fields, .. } => {
                    let i = live_index(routes, change).ok_or_else(|| {
                        concurrently(name, "is not live under the key it was observed with")
                    })?;
                    slots[i] = Some(self.build_route(name, fields)?);
                }
                Change::Delete { .. } => {
                    let i = live_index(routes, change).ok_or_else(|| {
                        concurrently(name, "is not live under the key it was observed with")
                    })?;
                    slots[i] = None;
                }
            }
        }
        Ok(slots.into_iter().flatten().collect())
    }
}

impl Provider for CaddyProvider {
    fn name(&self) -> &str {
        &self.name
    }

    from_factory!(Plugin);

    fn observe<'a>(
        &'a self,
        desired: &'a DesiredState,
    ) -> BoxFuture<'a, Result<Observation, ProviderError>> {
        Box::pin(async move {
            let read = self.read_routes().await?;
            // A server that is not there is a wrong `server:` (or a Caddy that is not the one
            // meant), not a lab without routes: its routes are unknown, never missing.
            let Some(routes) = read.routes else {
                return Err(ProviderError::config(&self.name)(format!(
                    "Caddy has no HTTP server `{}` (no {}); check `server:` of this provider \
                     in labctl.yaml (Caddy names them srv0, srv1, … unless its config does)",
                    self.server,
                    self.routes_path()
                )));
            };
            let parsed = parse_routes(&routes).map_err(|e| self.shape_error(e))?;
            let keys: Vec<(String, (String, String))> = desired
                .routes
                .iter()
                .filter_map(|r| Some((r.doc.metadata.name.clone(), r.doc.spec.match_key()?)))
                .collect();
            let names = Naming::new(&parsed).observed(&parsed, &keys);
            let resources = parsed
                .into_iter()
                .zip(names)
                .zip(live_keys(&routes))
                .map(|((p, name), key)| Resource::new(Kind::Route, name, p.fields).with_key(key))
                .collect();
            let mut observation = Observation::now(&self.name, resources);
            observation.version = read.etag;
            Ok(observation)
        })
    }

    fn apply<'a>(
        &'a self,
        base: &'a Observation,
        changes: &'a [Change],
    ) -> BoxFuture<'a, Result<ApplyReport, ProviderError>> {
        Box::pin(async move {
            if changes.is_empty() {
                return Ok(ApplyReport::default());
            }
            let planned = super::planned_version(&self.name, base)?;
            let read = self.read_routes().await?;
            let Some(routes) = &read.routes else {
                return Err(self.rejected(format!(
                    "Caddy has no HTTP server `{}` (no {}); labctl manages the routes of an \
                     existing server and does not create servers or the http app",
                    self.server,
                    self.routes_path()
                )));
            };
            // The write is guarded by this ETag too (If-Match), so a change between this read
            // and the write is refused by Caddy itself.
            if read.etag.as_deref() != planned {
                return Err(self.stale());
            }
            let new_routes = self.plan(routes, changes)?;
            self.write_routes(&read, new_routes).await?;
            Ok(ApplyReport {
                applied: changes.to_vec(),
            })
        })
    }

    fn can_apply(&self, kind: Kind) -> bool {
        kind == Kind::Route
    }
}

/// The fields Caddy can represent of a desired route, or `None` when Caddy cannot hold it:
/// a raw Traefik rule beyond `Host && PathPrefix` (e.g. `Host(a) || Host(b)`) has no single
/// host/prefix for a labctl-shaped Caddy route, and translating Traefik's rule language is out
/// of scope. Traefik-only settings (entryPoints, tls.certResolver, middlewares) are left out.
fn expected_fields(spec: &RouteSpec, desired: &DesiredState) -> Option<Json> {
    let (host, prefix) = spec.match_key()?;
    let mut urls: Vec<String> = spec.backend.urls.iter().map(|u| normalize_url(u)).collect();
    if let Some(svc) = &spec.backend.service {
        // Validation guarantees the reference resolves; a route that does not cannot be
        // written to Caddy anyway.
        let device = desired
            .devices
            .iter()
            .find(|d| d.doc.metadata.name == svc.device)?;
        let ip = device.doc.spec.ips().next()?;
        let service = device
            .doc
            .spec
            .services
            .iter()
            .find(|s| s.name == svc.service)?;
        let scheme = match service.protocol {
            ServiceProtocol::Https => "https",
            _ => "http",
        };
        urls.push(format!("{scheme}://{ip}:{}", service.port));
    }
    let mut fields = Map::new();
    fields.insert("host".into(), json!(host));
    if prefix != "/" {
        fields.insert("pathPrefix".into(), json!(prefix));
    }
    fields.insert("backend".into(), json!({ "urls": urls }));
    Some(Json::Object(fields))
}

/// `scheme://host:port` as observe reports it: Caddy dials need a port, so the default one
/// is made explicit, and a root path is dropped. Anything else stays as written (and is
/// refused when applied).
fn normalize_url(raw: &str) -> String {
    match url_to_dial(raw) {
        Ok((https, dial)) => format!("{}://{dial}", if https { "https" } else { "http" }),
        Err(_) => raw.to_string(),
    }
}

/// `(https, dial)` for a backend URL; Caddy upstreams carry neither paths nor queries.
fn url_to_dial(raw: &str) -> Result<(bool, String), String> {
    let url = Url::parse(raw).map_err(|e| e.to_string())?;
    let https = match url.scheme() {
        "http" => false,
        "https" => true,
        other => return Err(format!("scheme `{other}` is neither http nor https")),
    };
    let host = url.host_str().ok_or("no host")?;
    let port = url.port_or_known_default().ok_or("no port")?;
    if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
        return Err("Caddy upstreams hold only a host and a port".into());
    }
    Ok((https, format!("{host}:{port}")))
}

/// `(host, prefix)` of expected fields, as [`RouteSpec::match_key`] gives it.
fn fields_key(fields: &Json) -> Option<(String, String)> {
    let host = fields.get("host")?.as_str()?.to_ascii_lowercase();
    let prefix = fields
        .get("pathPrefix")
        .and_then(Json::as_str)
        .unwrap_or("/");
    Some((host, prefix.to_string()))
}

/// The live routes read back into the fields shape. A route part of another type than Caddy
/// documents is an error, never left out: the whole array is written back on apply, and a
/// route that cannot be read cannot be named or kept with certainty.
fn parse_routes(routes: &[Json]) -> Result<Vec<Parsed>, ShapeError> {
    routes
        .iter()
        .enumerate()
        .map(|(i, route)| parse_route(&At::root(ROUTES, &format!("routes[{i}]"), route)))
        .collect()
}

/// Reads one live route back into the fields shape, noting whatever labctl does not model.
fn parse_route(route: &At) -> Result<Parsed, ShapeError> {
    let mut unrepresented: Vec<String> = Vec::new();
    let mut note = |s: String| unrepresented.push(s);
    let obj = route.object()?;
    let id = route.opt_str("@id")?.map(str::to_string);
    let managed = id
        .as_deref()
        .and_then(|i| i.strip_prefix(ID_PREFIX))
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    for k in obj.keys() {
        if !matches!(k.as_str(), "@id" | "match" | "handle" | "terminal") {
            note(format!("route field `{k}`"));
        }
    }
    if let Some(terminal) = route.get("terminal")? {
        terminal.bool()?;
    }
    if obj.get("terminal") != Some(&Json::Bool(true)) {
        note("not terminal".into());
    }

    let mut host = None;
    let mut prefix = None;
    let sets = route.opt_items("match")?;
    match sets.as_slice() {
        [] => note("no host matcher".into()),
        sets => {
            if sets.len() > 1 {
                note(format!("{} matcher sets", sets.len()));
            }
            for k in sets[0].object()?.keys() {
                if k != "host" && k != "path" {
                    note(format!("matcher `{k}`"));
                }
            }
            match sets[0].opt_strings("host")?.as_slice() {
                [] => note("no host matcher".into()),
                [h] => host = Some(h.to_ascii_lowercase()),
                hs => {
                    note(format!("{} hosts", hs.len()));
                    host = Some(hs[0].to_ascii_lowercase());
                }
            }
            if sets[0].get("path")?.is_some() {
                match sets[0].opt_strings("path")?.as_slice() {
                    [p] if p.ends_with('*') => prefix = Some(p[..p.len() - 1].to_string()),
                    ps => {
                        note("a path matcher other than one `PREFIX*`".into());
                        prefix = ps.first().map(|p| p.to_string());
                    }
                }
            }
        }
    }

    let mut urls: Option<Vec<String>> = None;
    for (i, h) in route.opt_items("handle")?.iter().enumerate() {
        let kind = h.req("handler")?.str()?;
        if kind != "reverse_proxy" || i > 0 {
            note(format!("handler `{kind}`"));
            continue;
        }
        urls = Some(parse_proxy(h, &mut note)?);
    }
    if urls.is_none() {
        note("no reverse_proxy handler".into());
    }

    let mut fields = Map::new();
    if let Some(h) = &host {
        fields.insert("host".into(), json!(h));
    }
    if let Some(p) = prefix.as_deref().filter(|p| !p.is_empty() && *p != "/") {
        fields.insert("pathPrefix".into(), json!(p));
    }
    if let Some(urls) = urls {
        fields.insert("backend".into(), json!({ "urls": urls }));
    }
    if !unrepresented.is_empty() {
        fields.insert("unrepresented".into(), json!(unrepresented));
    }
    let key = host.map(|h| {
        let p = prefix
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into());
        (h, p)
    });
    Ok(Parsed {
        managed,
        id,
        key,
        fields: Json::Object(fields),
    })
}

/// Upstream URLs of a `reverse_proxy` handler; the scheme comes from the transport's TLS.
fn parse_proxy(h: &At, note: &mut impl FnMut(String)) -> Result<Vec<String>, ShapeError> {
    for k in h.object()?.keys() {
        if !matches!(k.as_str(), "handler" | "upstreams" | "transport") {
            note(format!("reverse_proxy `{k}`"));
        }
    }
    let transport = h.get("transport")?;
    let tls = match &transport {
        Some(t) => t.get("tls")?,
        None => None,
    };
    if let Some(t) = &transport {
        let plain = t.opt_str("protocol")? == Some("http")
            && t.object()?.keys().all(|k| k == "protocol" || k == "tls")
            && match &tls {
                Some(tls) => tls.object()?.is_empty(),
                None => true,
            };
        if !plain {
            note("reverse_proxy transport settings".into());
        }
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut urls = Vec::new();
    for u in h.opt_items("upstreams")? {
        if u.object()?.keys().any(|k| k != "dial") {
            note("upstream settings other than `dial`".into());
        }
        match u.opt_str("dial")? {
            Some(dial) => urls.push(format!("{scheme}://{dial}")),
            None => note("an upstream without `dial`".into()),
        }
    }
    Ok(urls)
}

/// How live routes are named. Derived names come from the live routes alone, so that apply,
/// which never sees the desired state, finds the routes observe named.
struct Naming {
    /// `NAME` for the first route with `@id` `labctl-NAME` (Caddy 2.6 accepts duplicate ids;
    /// a second copy is treated as unmanaged).
    managed: Vec<Option<String>>,
    /// For every other route: the name derived from host and path (made unique in live
    /// order), and the `unmanaged-…` form used when a desired or managed route has that name.
    derived: Vec<Option<(String, String)>>,
}

impl Naming {
    fn new(parsed: &[Parsed]) -> Naming {
        let mut seen = HashSet::new();
        let managed: Vec<Option<String>> = parsed
            .iter()
            .map(|p| p.managed.clone().filter(|n| seen.insert(n.clone())))
            .collect();
        let mut counts: HashMap<String, usize> = HashMap::new();
        let derived = parsed
            .iter()
            .zip(&managed)
            .map(|(p, m)| {
                if m.is_some() {
                    return None;
                }
                let raw = match (&p.key, &p.id) {
                    (Some((h, pre)), _) => format!("{h}{}", if pre == "/" { "" } else { pre }),
                    (None, Some(id)) => id.clone(),
                    (None, None) => String::new(),
                };
                let base = derive_name(&raw);
                let n = counts.entry(base.clone()).or_insert(0);
                *n += 1;
                let suffix = if *n == 1 {
                    String::new()
                } else {
                    format!("-{n}")
                };
                let alt = derive_name(&format!("unmanaged-{raw}"));
                Some((format!("{base}{suffix}"), format!("{alt}{suffix}")))
            })
            .collect();
        Naming { managed, derived }
    }

    fn is_managed(&self, name: &str) -> bool {
        self.managed.iter().flatten().any(|n| n == name)
    }

    /// Names as observe reports them: `labctl-NAME` ids, then routes whose host and path
    /// match a desired route that is not live under its id, then derived names.
    fn observed(&self, parsed: &[Parsed], desired: &[(String, (String, String))]) -> Vec<String> {
        let mut claimed: HashSet<&str> = HashSet::new();
        (0..parsed.len())
            .map(|i| {
                if let Some(n) = &self.managed[i] {
                    return n.clone();
                }
                if let Some(key) = &parsed[i].key {
                    let adopt = desired.iter().find(|(n, k)| {
                        k == key && !self.is_managed(n) && !claimed.contains(n.as_str())
                    });
                    if let Some((n, _)) = adopt {
                        claimed.insert(n);
                        return n.clone();
                    }
                }
                let (plain, alt) = self.derived[i].clone().unwrap_or_default();
                if self.is_managed(&plain) || desired.iter().any(|(n, _)| *n == plain) {
                    alt
                } else {
                    plain
                }
            })
            .collect()
    }

    /// The route a Create or Update of `name` with host and path `key` refers to, the way
    /// observe adopts routes: by id, else the first unmanaged route with that key.
    fn find_desired(
        &self,
        parsed: &[Parsed],
        name: &str,
        key: Option<&(String, String)>,
    ) -> Option<usize> {
        self.managed
            .iter()
            .position(|n| n.as_deref() == Some(name))
            .or_else(|| {
                let key = key?;
                (0..parsed.len())
                    .find(|&i| self.managed[i].is_none() && parsed[i].key.as_ref() == Some(key))
            })
    }
}

/// The live key of each route ([`Resource::key`]): `@id NAME` for a route whose `@id` is
/// unique, else `#INDEX`, its position in the array. Either names one route exactly in the
/// routes of the ETag it was read at, which apply checks before using it.
fn live_keys(routes: &[Json]) -> Vec<String> {
    let id = |r: &Json| r.get("@id").and_then(Json::as_str).map(str::to_string);
    let mut counts: HashMap<String, usize> = HashMap::new();
    for r in routes {
        if let Some(id) = id(r) {
            *counts.entry(id).or_insert(0) += 1;
        }
    }
    routes
        .iter()
        .enumerate()
        .map(|(i, r)| match id(r) {
            Some(id) if counts[&id] == 1 => format!("@id {id}"),
            _ => format!("#{i}"),
        })
        .collect()
}

/// The position in `routes` of the route `change` targets, by its live key.
fn live_index(routes: &[Json], change: &Change) -> Option<usize> {
    let key = change.key()?;
    live_keys(routes).iter().position(|k| k == key)
}

/// Caddy's `{"error": "..."}` message, or the body as text.
fn caddy_message(body: &[u8]) -> String {
    serde_json::from_slice::<Json>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Json::as_str).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string())
}

/// FNV-1a, 32 bits: Caddy 2.6's ETag hash.
fn fnv1a32(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5, |h: u32, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_hash_matches_caddy() {
        // Observed on Caddy 2.6.2: body `null\n` at this path has ETag `… 0e7c22ea`.
        assert_eq!(fnv1a32(b"null\n"), 0x0e7c_22ea);
    }

    #[test]
    fn labctl_shape_round_trips() {
        let cfg: Settings = serde_json::from_value(json!({
            "name": "caddy", "url": "http://127.0.0.1:2019/"
        }))
        .unwrap();
        let p = CaddyProvider::new(&cfg).unwrap();
        let fields = json!({"host": "a.lab", "pathPrefix": "/api",
                            "backend": {"urls": ["https://10.0.0.1:8443"]}});
        let route = p.build_route("a", &fields).unwrap();
        assert_eq!(
            route["match"],
            json!([{"host": ["a.lab"], "path": ["/api*"]}])
        );
        let parsed = &parse_routes(&[route]).unwrap()[0];
        assert_eq!(parsed.fields, fields);
        assert_eq!(parsed.managed.as_deref(), Some("a"));
    }

    #[test]
    fn unknown_parts_are_reported_not_dropped() {
        let parsed = &parse_routes(&[json!({
            "match": [{"host": ["X.lab"], "path": ["/exact"]}],
            "handle": [{"handler": "static_response", "body": "hi"}]
        })])
        .unwrap()[0];
        assert_eq!(parsed.fields["host"], "x.lab");
        let notes = parsed.fields["unrepresented"].as_array().unwrap();
        assert_eq!(notes.len(), 4, "{notes:?}");
    }

    #[test]
    fn names_prefer_ids_then_keys_then_derived_unique() {
        let raw = [
            json!({"@id": "labctl-a", "match": [{"host": ["a.lab"]}]}),
            json!({"match": [{"host": ["b.lab"]}]}),
            json!({"match": [{"host": ["c.lab"], "path": ["/x*"]}]}),
            json!({"match": [{"host": ["c.lab"], "path": ["/x*"]}]}),
            json!({"@id": "labctl-a", "match": [{"host": ["d.lab"]}]}),
            json!({"handle": []}),
            json!({"@id": "edge", "match": [{"host": ["e.lab"]}]}),
        ];
        let routes = parse_routes(&raw).unwrap();
        let naming = Naming::new(&routes);
        let key = |h: &str| (h.to_string(), "/".to_string());
        let desired = vec![
            ("bee".to_string(), key("b.lab")),
            // Someone else's route derives to a desired name: it must not pose as it.
            ("c-lab-x".to_string(), key("elsewhere.lab")),
        ];
        let names = naming.observed(&routes, &desired);
        assert_eq!(
            names,
            [
                "a",
                "bee",
                "unmanaged-c-lab-x",
                "c-lab-x-2",
                "d-lab",
                "unnamed",
                "e-lab"
            ]
        );
        // Apply finds each route by the live key observe gave it, without the desired state.
        let keys = live_keys(&raw);
        assert_eq!(keys[0], "#0", "a duplicated @id names no route");
        assert_eq!(keys[6], "@id edge");
        for (i, key) in keys.iter().enumerate() {
            let delete = Change::Delete {
                kind: Kind::Route,
                name: names[i].clone(),
                key: Some(key.clone()),
            };
            assert_eq!(live_index(&raw, &delete), Some(i), "{key}");
        }
        assert_eq!(
            naming.find_desired(&routes, "bee", Some(&key("b.lab"))),
            Some(1)
        );
        assert_eq!(naming.find_desired(&routes, "a", None), Some(0));
    }

    #[test]
    fn urls_become_dials() {
        assert_eq!(url_to_dial("http://h"), Ok((false, "h:80".into())));
        assert_eq!(
            url_to_dial("https://10.0.0.1:8443/"),
            Ok((true, "10.0.0.1:8443".into()))
        );
        assert!(url_to_dial("http://h/sub").is_err());
        assert!(url_to_dial("ftp://h").is_err());
        assert_eq!(normalize_url("http://h/"), "http://h:80");
    }
}
