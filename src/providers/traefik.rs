//! Traefik v3: `Route`s as routers of the file provider, observed through Traefik's API.
//!
//! Traefik's API is read-only ("Traefik Proxy REST API … provides read-only HTTP endpoints",
//! <https://doc.traefik.io/traefik/operations/api/>): `GET /api/http/routers` and
//! `GET /api/http/services` list the runtime configuration of every provider, as JSON arrays,
//! paginated with `page` / `per_page` (default 100) and an `X-Next-Page` header that is `1` on
//! the last page (Traefik's `pkg/api/criterion.go`). Names are qualified with the provider
//! that declared them (`grafana@file`, `whoami@docker`, `api@internal`); a router's `service`
//! and `middlewares` are shown as written, so an unqualified name refers to the router's own
//! provider.
//!
//! labctl changes routes the only way Traefik allows: it owns ONE file of the file provider
//! (`dynamicConfigFile` in `labctl.yaml`; Traefik watches it and reloads on change, after its
//! `providersThrottleDuration`,
//! <https://doc.traefik.io/traefik/reference/routing-configuration/other-providers/file/>:
//! so after an apply the run observes again until Traefik serves the change, within
//! `settleSeconds`, and while the file is younger than that a route it holds that Traefik does
//! not serve yet is unknown, not missing),
//! holding for every `Route` it manages
//!
//! ```yaml
//! http:
//!   routers:
//!     labctl-grafana:
//!       entryPoints: [websecure]
//!       rule: Host(`grafana.lab.example`) && PathPrefix(`/api`)
//!       service: labctl-grafana
//!       middlewares: [auth]
//!       tls: {certResolver: letsencrypt}
//!   services:
//!     labctl-grafana:
//!       loadBalancer:
//!         servers:
//!           - url: http://10.0.1.220:3000
//! ```
//!
//! Mapping of the API's JSON to labctl's fields (`expected` and `observe` use this shape):
//!
//! | labctl field | Traefik API (`/api/http/routers`, `/api/http/services`) |
//! |---|---|
//! | name | router `name`: `labctl-NAME@file` → `NAME`; any other → `derive_name(name)` |
//! | `entryPoints` | router `entryPoints`; for labctl's routers only when the file names them (Traefik fills in the default entry points otherwise) |
//! | `rule` | router `rule` (labctl writes ``Host(`h`) && PathPrefix(`/p`)`` or the raw rule) |
//! | `backend.urls` | `loadBalancer.servers[].url` of the router's `service` |
//! | `tls.certResolver` | router `tls.certResolver` |
//! | `tls.options` | router `tls.options`: Traefik reports `default` for every TLS router without options (`pkg/api/handler_http.go`), so TLS on without a resolver is `{options: default}`, never an empty object the diff would take for "no TLS" |
//! | `middlewares` | router `middlewares`, `@file` stripped on file-provider routers |
//! | `status` | router `status`, only when not `enabled` (a router Traefik refused) |
//! | `errors` | router `error`: why Traefik disabled the router or warns about it |
//! | `serversDown` | the URLs of the router's service that its `serverStatus` does not hold `UP` (a health check failing) |
//! | `priority` | router `priority`, unless it is the rule's length in bytes, which Traefik reports for every router that declares none (v3 `pkg/muxer/http`) |
//! | `router` | router `name`, for a router labctl did not write: a `Route` with `router:` describes it |
//! | `unrepresented` | what labctl does not model: `ruleSyntax`, `tls.domains`, a service that is missing or not a load balancer |
//!
//! Routers labctl did not write (of other providers, `@docker`, …, of other files, or entries
//! of its own file not named `labctl-*`) are reported as unmanaged and declared elsewhere
//! ([`Observation::declared_elsewhere`]): the plan never removes them, and a `Delete` of one
//! is refused. `@internal` routers are Traefik's
//! own (API, dashboard, ping) and are not reported at all.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde_json::{json, Map, Value as Json};

use super::http::{self, excerpt_bytes, BasicAuth, BodyLimit, Pinning, Reply};
use super::shape::{At, ShapeError};
use super::{
    derive_name, ApplyReport, BoxFuture, CallPolicy, Change, Factory, Observation, Provider,
    ProviderError, Resource, Severities, Severity, Unreadable,
};
use crate::model::{DesiredState, Kind, RouteSpec, ServiceProtocol, Tls};

/// Prefix of the routers and services labctl writes.
const PREFIX: &str = "labctl-";
/// The file provider's name, as Traefik qualifies its routers (`x@file`).
const FILE_PROVIDER: &str = "file";
/// Traefik's own routers and services (`api@internal`, `dashboard@internal`).
const INTERNAL_PROVIDER: &str = "internal";
/// Page size asked of the API (Traefik's default too).
const PER_PAGE: u32 = 100;
/// The API's lists of HTTP routers and services.
const ROUTERS: &str = "/api/http/routers";
const SERVICES: &str = "/api/http/services";
/// More pages than this means the API keeps answering `X-Next-Page` wrongly.
const MAX_PAGES: u32 = 1000;
/// The version of a dynamic configuration file that does not exist.
const ABSENT: &str = "absent";
/// Placed above the YAML labctl writes. serde_yaml drops comments, so the file says so.
const HEADER: &str = "# Traefik dynamic configuration managed by labctl.\n\
# Routers and services named labctl-* are rewritten on every apply; other entries are kept,\n\
# but comments in this file are not preserved.\n";

settings! {
    /// Traefik, read through its API (`url`; `token` is `USER:PASSWORD` when the API sits
    /// behind basic authentication) and written through a file of its file provider.
    pub struct Settings {
        /// The file provider's dynamic configuration file labctl writes routes to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub dynamic_config_file: Option<std::path::PathBuf>,
        /// How long Traefik may take to load a change to the file, in seconds (default 10):
        /// it applies one after its watcher's event and `providersThrottleDuration` (2 s by
        /// default). After an apply labctl observes again until the change shows or this
        /// has passed; only then is a change that does not show reported as unconfirmed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(max = 300))]
        pub settle_seconds: Option<u32>,
    }
}

/// How long Traefik is given to load a change by default: five times its default throttle.
const DEFAULT_SETTLE: Duration = Duration::from_secs(10);

/// Builds [`TraefikProvider`]s.
pub struct Plugin;

impl Factory for Plugin {
    type Settings = Settings;

    const KINDS: &'static [Kind] = &[Kind::Route];

    const SEVERITIES: Severities = &[
        (Kind::Route, &["rule", "backend", "tls"], Severity::High),
        // A router Traefik disabled serves nothing.
        (Kind::Route, &["status"], Severity::High),
        (
            Kind::Route,
            &["middlewares", "entryPoints", "errors", "serversDown"],
            Severity::Medium,
        ),
    ];

    fn expected(desired: &DesiredState) -> Vec<Resource> {
        desired
            .routes
            .iter()
            .map(|r| Resource {
                kind: Kind::Route,
                name: r.doc.metadata.name.clone(),
                fields: expected_fields(&r.doc.spec, desired).into(),
                key: None,
            })
            .collect()
    }

    fn build(settings: &Settings) -> Result<Arc<dyn Provider>, ProviderError> {
        Ok(Arc::new(TraefikProvider::new(settings)?))
    }
}

/// Traefik's HTTP routers, read from its API and written through one file-provider file.
pub struct TraefikProvider {
    name: String,
    /// API base, without a trailing `/`.
    url: String,
    file: Option<PathBuf>,
    /// See [`Settings::settle_seconds`].
    settle: Duration,
    client: reqwest::Client,
    policy: CallPolicy,
    /// `USER:PASSWORD` when the API sits behind basic authentication.
    basic_auth: Option<BasicAuth>,
}

impl TraefikProvider {
    pub fn new(cfg: &Settings) -> Result<Self, ProviderError> {
        let config_err = ProviderError::config(&cfg.name);
        let url = cfg.url.trim_end_matches('/').to_string();
        Url::parse(&url).map_err(|e| config_err(format!("invalid API URL `{url}`: {e}")))?;
        let policy = CallPolicy::with_timeout_seconds(cfg.timeout_seconds)
            .with_max_body_bytes(cfg.max_body_bytes);
        // The API is on the LAN or the management host: a proxy from the environment would
        // only stand in the way (and see the whole routing configuration).
        let builder = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(policy.timeout);
        let client = http::build_client(
            builder,
            cfg.tls.as_ref(),
            Pinning::Refused("Traefik"),
            &config_err,
        )?;
        let basic_auth = BasicAuth::from_token(cfg.token.as_ref(), "Traefik", &config_err)?;
        Ok(TraefikProvider {
            name: cfg.name.clone(),
            url,
            file: cfg.dynamic_config_file.clone(),
            settle: cfg
                .settle_seconds
                .map_or(DEFAULT_SETTLE, |s| Duration::from_secs(s.into())),
            client,
            policy,
            basic_auth,
        })
    }

    /// Replaces the call policy (timeout, retries, backoff).
    pub fn with_policy(mut self, policy: CallPolicy) -> Self {
        self.policy = policy;
        self
    }

    fn rejected(&self, detail: impl Into<String>) -> ProviderError {
        ProviderError::Rejected {
            provider: self.name.clone(),
            detail: detail.into(),
        }
    }

    fn config_error(&self, detail: impl Into<String>) -> ProviderError {
        ProviderError::Config {
            provider: self.name.clone(),
            detail: detail.into(),
            source: None,
        }
    }

    /// The dynamic file could not be read or written (`what`), with the I/O error as source.
    fn file_error(&self, what: &str, path: &Path, e: std::io::Error) -> ProviderError {
        ProviderError::Config {
            provider: self.name.clone(),
            detail: format!("cannot {what} {}: {e}", path.display()),
            source: Some(Arc::new(e)),
        }
    }

    fn bad_response(&self, url: &str, detail: impl Into<String>) -> ProviderError {
        ProviderError::BadResponse {
            provider: self.name.clone(),
            url: url.to_string(),
            detail: detail.into(),
            source: None,
        }
    }

    fn transport_error(&self, url: &str, e: reqwest::Error) -> ProviderError {
        let classify = http::Classify::default();
        http::transport_error(&self.name, url, self.policy.timeout, e, classify)
    }

    /// Every element of a paginated list endpoint (`/api/http/routers`, …), all pages; the
    /// pages together are held to `maxBodyBytes`.
    async fn get_all(&self, path: &str) -> Result<Vec<Json>, ProviderError> {
        let mut items = Vec::new();
        let mut page = 1;
        let mut left = self.policy.max_body_bytes;
        loop {
            let url = format!("{}{path}?per_page={PER_PAGE}&page={page}", self.url);
            let limit = BodyLimit {
                provider: &self.name,
                url: &url,
                max_bytes: left,
            };
            let (batch, next, read) = self
                .policy
                .run(&self.name, || self.get_page(&url, limit))
                .await?;
            left -= read;
            items.extend(batch);
            match next {
                Some(n) if n > page => page = n,
                _ => break,
            }
            if page > MAX_PAGES {
                return Err(self.bad_response(&url, "more than 1000 pages: X-Next-Page loops"));
            }
        }
        Ok(items)
    }

    /// One page: the array, the `X-Next-Page` header and the size of the body.
    async fn get_page(
        &self,
        url: &str,
        limit: BodyLimit<'_>,
    ) -> Result<(Vec<Json>, Option<u32>, u64), ProviderError> {
        let request = self.client.get(url);
        let request = BasicAuth::sign(self.basic_auth.as_ref(), request);
        let Reply {
            status,
            headers,
            body,
        } = http::exchange(request, limit, |e| self.transport_error(url, e)).await?;
        let next = headers
            .get("x-next-page")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        BasicAuth::check(&self.name, url, status, "the API's")?;
        if status == StatusCode::NOT_FOUND {
            return Err(self.bad_response(
                url,
                "HTTP 404: is this Traefik's API (`api` enabled in the static configuration)?",
            ));
        }
        if !status.is_success() {
            return Err(self.bad_response(url, format!("HTTP {status}: {}", excerpt_bytes(&body))));
        }
        let (body, value) = http::parse_json::<serde_json::Value>(body).await;
        let value = value.map_err(|e| self.bad_response(url, format!("not JSON: {e}")))?;
        match value {
            Json::Array(items) => Ok((items, next, body.len() as u64)),
            _ => Err(self.bad_response(
                url,
                format!("expected a JSON array, got {}", excerpt_bytes(&body)),
            )),
        }
    }

    fn dynamic_file(&self) -> Result<&Path, ProviderError> {
        let path = self.file.as_deref().ok_or_else(|| {
            self.config_error(
                "no dynamicConfigFile: Traefik's API is read-only, so labctl writes routes to \
                 a file of Traefik's file provider; set `dynamicConfigFile` for this provider \
                 in labctl.yaml",
            )
        })?;
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if !matches!(ext.as_deref(), Some("yml" | "yaml")) {
            return Err(self.config_error(format!(
                "dynamicConfigFile {} must end in .yml or .yaml: labctl writes YAML",
                path.display()
            )));
        }
        Ok(path)
    }

    /// Reads the dynamic configuration file as a YAML mapping (absent or empty is empty), with
    /// its version: the SHA-256 of its bytes, or `absent`.
    fn read_file(&self, path: &Path) -> Result<(serde_yaml::Mapping, String), ProviderError> {
        let (text, version) = match fs::read(path) {
            Ok(bytes) => {
                let version = crate::canonical::sha256_hex(&bytes);
                let text = String::from_utf8(bytes).map_err(|e| {
                    self.rejected(format!(
                        "{} is not UTF-8 ({e}); labctl does not overwrite a file it cannot read",
                        path.display()
                    ))
                })?;
                (text, version)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                (String::new(), ABSENT.to_string())
            }
            Err(e) => return Err(self.file_error("read", path, e)),
        };
        Ok((self.parse_file(path, &text)?, version))
    }

    fn parse_file(&self, path: &Path, text: &str) -> Result<serde_yaml::Mapping, ProviderError> {
        let value: serde_yaml::Value = if text.trim().is_empty() {
            serde_yaml::Value::Null
        } else {
            serde_yaml::from_str(text).map_err(|e| {
                self.rejected(format!(
                    "{} is not valid YAML ({e}); labctl does not overwrite a file it cannot read",
                    path.display()
                ))
            })?
        };
        match value {
            serde_yaml::Value::Null => Ok(serde_yaml::Mapping::new()),
            serde_yaml::Value::Mapping(m) => Ok(m),
            _ => Err(self.rejected(format!(
                "{} is not a YAML mapping; labctl does not overwrite it",
                path.display()
            ))),
        }
    }

    /// The dynamic configuration file and its version, when one is configured and readable.
    fn observe_file(&self) -> Option<(serde_yaml::Mapping, String)> {
        self.read_file(self.file.as_deref()?).ok()
    }

    /// The routers of the dynamic configuration file `root`: every name, and whether it names
    /// an entry point.
    fn file_routers(mut root: serde_yaml::Mapping) -> BTreeMap<String, bool> {
        let routers = take_mapping(&mut root, "http")
            .and_then(|mut http| take_mapping(&mut http, "routers"))
            .unwrap_or_default();
        routers
            .iter()
            .filter_map(|(k, v)| {
                let declared = v
                    .get("entryPoints")
                    .and_then(serde_yaml::Value::as_sequence)
                    .is_some_and(|s| !s.is_empty());
                Some((k.as_str()?.to_string(), declared))
            })
            .collect()
    }

    /// How long ago labctl's file was written, if less than the settle time: Traefik may not
    /// have loaded it yet.
    fn fresh_file(&self) -> Option<Duration> {
        let modified = fs::metadata(self.file.as_ref()?).and_then(|m| m.modified());
        let age = modified.ok()?.elapsed().ok()?;
        (age < self.settle).then_some(age)
    }

    /// Routes labctl wrote to its file, `age` ago, that Traefik does not serve yet, and its
    /// routers Traefik still serves (`served`) though the file no longer holds them: Traefik
    /// may still be loading the file, so they are unknown, neither missing nor unmanaged,
    /// until the settle time has passed (and a plan right after an apply says so).
    fn not_loaded_yet(
        &self,
        age: Duration,
        in_file: &BTreeMap<String, bool>,
        desired: &HashSet<&str>,
        served: &HashSet<&str>,
    ) -> Vec<Unreadable> {
        let Some(path) = &self.file else {
            return Vec::new();
        };
        let unknown = |name: &str, what: &str| {
            Unreadable::resource(
                Kind::Route,
                name,
                format!(
                    "{} {what}, and was written {:.1} s ago: Traefik loads a changed file after \
                     its providersThrottleDuration, so nothing is concluded until it has had {} \
                     s (settleSeconds)",
                    path.display(),
                    age.as_secs_f64(),
                    self.settle.as_secs()
                ),
            )
        };
        let written = in_file
            .keys()
            .filter_map(|key| key.strip_prefix(PREFIX))
            .filter(|name| desired.contains(name) && !served.contains(name))
            .map(|name| unknown(name, "holds it, Traefik does not serve it yet"));
        // A removal that does not show yet, or a router of the same name in another file.
        let removed = served
            .iter()
            .filter(|name| !in_file.contains_key(&format!("{PREFIX}{name}")))
            .map(|name| unknown(name, "no longer holds it, Traefik still serves it"));
        written.chain(removed).collect()
    }

    /// Where the router `full` of `provider` is declared, in words, when labctl did not write
    /// it: somewhere labctl cannot remove it from.
    fn declared_in(&self, full: &str, provider: &str, in_file: &BTreeMap<String, bool>) -> String {
        let local = full.rsplit_once('@').map_or(full, |(n, _)| n);
        match (provider, &self.file) {
            (FILE_PROVIDER, Some(path)) if in_file.contains_key(local) => format!(
                "{} as router `{local}`, kept there because labctl writes only its own \
                 `{PREFIX}*` routers",
                path.display()
            ),
            (FILE_PROVIDER, _) => {
                format!("another file of Traefik's file provider (router `{full}`)")
            }
            _ => format!("Traefik's {provider} provider (router `{full}`)"),
        }
    }

    /// Applies `changes` to the file's content, without any I/O.
    fn edit(
        &self,
        mut root: serde_yaml::Mapping,
        changes: &[Change],
    ) -> Result<serde_yaml::Mapping, ProviderError> {
        let mut http = take_mapping(&mut root, "http").map_err(|e| self.rejected(e))?;
        let mut routers = take_mapping(&mut http, "routers").map_err(|e| self.rejected(e))?;
        let mut services = take_mapping(&mut http, "services").map_err(|e| self.rejected(e))?;
        for change in changes {
            let name = change.name();
            if change.kind() != Kind::Route {
                return Err(self.rejected(format!(
                    "{}/{name}: Traefik only holds Routes",
                    change.kind()
                )));
            }
            let key = serde_yaml::Value::String(format!("{PREFIX}{name}"));
            match change {
                Change::Create { fields, .. } | Change::Update { fields, .. } => {
                    let (router, service) = self.build(name, fields)?;
                    routers.insert(key.clone(), router);
                    services.insert(key, service);
                }
                Change::Delete { .. } => {
                    // The live key is the router's qualified name: only `labctl-…@file` can be
                    // in labctl's file.
                    let entry = change
                        .key()
                        .and_then(|k| k.strip_suffix("@file"))
                        .filter(|k| k.starts_with(PREFIX))
                        .map(|k| serde_yaml::Value::String(k.to_string()));
                    let removed = entry.as_ref().and_then(|e| routers.shift_remove(e));
                    if removed.is_none() {
                        let origin = match change.key() {
                            Some(router) => format!("router `{router}`"),
                            None => format!("no router `{PREFIX}{name}` in the file"),
                        };
                        return Err(self.rejected(format!(
                            "Route/{name} ({origin}) is not in labctl's dynamic configuration \
                             file: Traefik's API is read-only and labctl only writes its own \
                             file, so routers of other providers (docker labels, other files) \
                             must be removed where they are declared"
                        )));
                    }
                    if let Some(entry) = entry {
                        services.shift_remove(&entry);
                    }
                }
            }
        }
        put_mapping(&mut http, "routers", routers);
        put_mapping(&mut http, "services", services);
        put_mapping(&mut root, "http", http);
        Ok(root)
    }

    /// The router and service labctl writes for a `Route` with `fields` (the expected shape).
    fn build(
        &self,
        name: &str,
        fields: &Json,
    ) -> Result<(serde_yaml::Value, serde_yaml::Value), ProviderError> {
        let bad = |what: String| self.rejected(format!("Route/{name}: {what}"));
        if let Some(router) = fields.get("router").and_then(Json::as_str) {
            return Err(bad(format!(
                "it describes the router `{router}`, declared elsewhere: labctl does not write it"
            )));
        }
        let rule = fields
            .get("rule")
            .and_then(Json::as_str)
            .filter(|r| !r.trim().is_empty())
            .ok_or_else(|| bad("no `rule`: give `host` or `rule`".into()))?;
        if let Some(why) = fields.pointer("/backend/unresolved").and_then(Json::as_str) {
            return Err(bad(format!("backend: {why}")));
        }
        let urls: Vec<&str> = fields
            .pointer("/backend/urls")
            .and_then(Json::as_array)
            .map(|a| a.iter().filter_map(Json::as_str).collect())
            .unwrap_or_default();
        if urls.is_empty() {
            return Err(bad("no backend URL".into()));
        }
        for u in &urls {
            // Traefik loads any string and fails only when proxying; check what is written.
            let url = Url::parse(u).map_err(|e| bad(format!("backend URL `{u}`: {e}")))?;
            if !matches!(url.scheme(), "http" | "https" | "h2c") || url.host_str().is_none() {
                return Err(bad(format!(
                    "backend URL `{u}`: Traefik needs http://, https:// or h2c:// and a host"
                )));
            }
        }
        let mut router = Map::new();
        let entry_points = strings(fields, "entryPoints");
        if !entry_points.is_empty() {
            router.insert("entryPoints".into(), json!(entry_points));
        }
        router.insert("rule".into(), json!(rule));
        if let Some(p) = fields.get("priority").and_then(Json::as_i64) {
            router.insert("priority".into(), json!(p));
        }
        router.insert("service".into(), json!(format!("{PREFIX}{name}")));
        let middlewares = strings(fields, "middlewares");
        if !middlewares.is_empty() {
            router.insert("middlewares".into(), json!(middlewares));
        }
        if let Some(tls) = fields.get("tls").filter(|t| !t.is_null()) {
            let mut out = Map::new();
            if let Some(r) = tls.get("certResolver").and_then(Json::as_str) {
                out.insert("certResolver".into(), json!(r));
            }
            if let Some(o) = tls
                .get("options")
                .and_then(Json::as_str)
                .filter(|o| *o != Tls::DEFAULT_OPTIONS)
            {
                out.insert("options".into(), json!(o));
            }
            router.insert("tls".into(), Json::Object(out));
        }
        let servers: Vec<Json> = urls.iter().map(|u| json!({ "url": u })).collect();
        let service = json!({ "loadBalancer": { "servers": servers } });
        let to_yaml = |v: &Json| {
            serde_yaml::to_value(v).map_err(|e| bad(format!("cannot write as YAML: {e}")))
        };
        Ok((to_yaml(&Json::Object(router))?, to_yaml(&service)?))
    }

    /// Writes the whole file atomically.
    fn write_file(&self, path: &Path, root: &serde_yaml::Mapping) -> Result<(), ProviderError> {
        let yaml = if root.is_empty() {
            String::new()
        } else {
            serde_yaml::to_string(root)
                .map_err(|e| self.rejected(format!("cannot write YAML: {e}")))?
        };
        let text = format!("{HEADER}{yaml}");
        write_atomically(path, text.as_bytes()).map_err(|e| self.file_error("write", path, e))
    }
}

impl Provider for TraefikProvider {
    fn name(&self) -> &str {
        &self.name
    }

    from_factory!(Plugin);

    fn observe<'a>(
        &'a self,
        desired: &'a DesiredState,
    ) -> BoxFuture<'a, Result<Observation, ProviderError>> {
        Box::pin(async move {
            let routers = Json::Array(self.get_all(ROUTERS).await?);
            let services = Json::Array(self.get_all(SERVICES).await?);
            let shape = |path: &str, e: ShapeError| {
                e.into_provider_error(&self.name, &format!("{}{path}", self.url))
            };
            let services_answer = format!("Traefik {SERVICES}");
            let services_at = At::root(&services_answer, "", &services);
            let services = services_at
                .items()
                .and_then(|list| list.map(|s| read_service(&s)).collect())
                .map_err(|e| shape(SERVICES, e))?;
            let routers_answer = format!("Traefik {ROUTERS}");
            let routers_at = At::root(&routers_answer, "", &routers);
            let routers: Vec<At> = routers_at.items().map_err(|e| shape(ROUTERS, e))?.collect();
            let desired_names: HashSet<&str> = desired
                .routes
                .iter()
                .map(|r| r.doc.metadata.name.as_str())
                .collect();
            let mut live: Vec<(&str, &str, &At)> = Vec::new();
            for router in &routers {
                let full = router
                    .req("name")
                    .and_then(|n| n.str())
                    .map_err(|e| shape(ROUTERS, e))?;
                let provider = router
                    .opt_str("provider")
                    .map_err(|e| shape(ROUTERS, e))?
                    .or_else(|| full.rsplit_once('@').map(|(_, p)| p))
                    .unwrap_or_default();
                if provider == INTERNAL_PROVIDER {
                    continue;
                }
                live.push((full, provider, router));
            }
            live.sort_by_key(|(full, _, _)| *full);

            let (in_file, version) = match self.observe_file() {
                Some((root, version)) => (Self::file_routers(root), Some(version)),
                None => (BTreeMap::new(), None),
            };
            let fresh = self.fresh_file();
            // Routers declared elsewhere that a Route describes (`router:`), by qualified name.
            let described: HashMap<&str, &str> = desired
                .routes
                .iter()
                .filter_map(|r| Some((r.doc.spec.router.as_deref()?, r.doc.metadata.name.as_str())))
                .collect();
            // labctl's own routers first, then those Routes describe, so that derived names
            // never take theirs.
            let mut names: Vec<Option<String>> = vec![None; live.len()];
            let mut ours = vec![false; live.len()];
            let mut taken: HashSet<String> = HashSet::new();
            for (i, (full, provider, _)) in live.iter().enumerate() {
                // A `labctl-*` router is labctl's when its file holds it, or while Traefik may
                // still be loading the file without it (a removal that does not show yet);
                // one declared in another file is not, and is never removed.
                let mine =
                    |n: &str| fresh.is_some() || in_file.contains_key(&format!("{PREFIX}{n}"));
                if let Some(n) = managed_name(full, provider).filter(|n| mine(n)) {
                    if taken.insert(n.to_string()) {
                        names[i] = Some(n.to_string());
                        ours[i] = true;
                    }
                }
            }
            for (i, (full, _, _)) in live.iter().enumerate() {
                if let Some(n) = described.get(full).filter(|_| names[i].is_none()) {
                    if taken.insert(n.to_string()) {
                        names[i] = Some(n.to_string());
                    }
                }
            }
            // Traefik gives a router that names no entry point the default ones (v3
            // `pkg/server/aggregator.go`), so the API cannot tell "none declared" from "all
            // declared". For labctl's own routers the file can: their entryPoints are reported
            // only when the file names them, or a Route without entryPoints would drift forever.
            let mut resources = Vec::new();
            let mut declared_elsewhere = BTreeMap::new();
            for (i, (full, provider, router)) in live.iter().enumerate() {
                let mut fields =
                    router_fields(router, provider, &services).map_err(|e| shape(ROUTERS, e))?;
                if let Json::Object(map) = &mut fields {
                    let key = names[i].as_ref().map(|n| format!("{PREFIX}{n}"));
                    if !ours[i] {
                        map.insert("router".into(), json!(full));
                    } else if key.and_then(|k| in_file.get(&k).copied()) == Some(false) {
                        map.remove("entryPoints");
                    }
                }
                let name = match names[i].take() {
                    Some(n) if ours[i] => n,
                    Some(n) => {
                        declared_elsewhere.insert(
                            format!("{}/{n}", Kind::Route),
                            self.declared_in(full, provider, &in_file),
                        );
                        n
                    }
                    None => {
                        // An unmanaged router never takes a desired name: it would be compared
                        // with, and "repaired" into, a route it is not.
                        let base = derive_name(full);
                        let mut n = base.clone();
                        let mut k = 2;
                        while desired_names.contains(n.as_str()) || !taken.insert(n.clone()) {
                            n = format!("{base}-{k}");
                            k += 1;
                        }
                        declared_elsewhere.insert(
                            format!("{}/{n}", Kind::Route),
                            self.declared_in(full, provider, &in_file),
                        );
                        n
                    }
                };
                resources.push(Resource::new(Kind::Route, name, fields).with_key(*full));
            }
            // A described router that is not there is missing, and still not labctl's to make.
            for (full, name) in described {
                let provider = full.rsplit_once('@').map_or("", |(_, p)| p);
                declared_elsewhere
                    .entry(format!("{}/{name}", Kind::Route))
                    .or_insert_with(|| self.declared_in(full, provider, &in_file));
            }
            let waiting = match fresh {
                Some(age) => {
                    let served = resources
                        .iter()
                        .zip(&ours)
                        .filter(|(_, ours)| **ours)
                        .map(|(r, _)| r.name.as_str())
                        .collect();
                    self.not_loaded_yet(age, &in_file, &desired_names, &served)
                }
                None => Vec::new(),
            };
            let mut observation = Observation::now(&self.name, resources);
            observation.version = version;
            observation.declared_elsewhere = declared_elsewhere;
            observation.unobservable = waiting;
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
            let path = self.dynamic_file()?.to_path_buf();
            // File I/O is blocking, but one small file; not worth a blocking-pool hop.
            let (root, live) = self.read_file(&path)?;
            // The whole file is rewritten: one planned against other contents would undo
            // whatever was written since.
            if planned != Some(live.as_str()) {
                return Err(ProviderError::Stale {
                    provider: self.name.clone(),
                    detail: format!(
                        "{} is not the version the changes were planned against ({}, now {live}); \
                         run again",
                        path.display(),
                        planned.unwrap_or("not read")
                    ),
                });
            }
            let root = self.edit(root, changes)?;
            self.write_file(&path, &root)?;
            Ok(ApplyReport {
                applied: changes.to_vec(),
            })
        })
    }

    fn can_apply(&self, kind: Kind) -> bool {
        kind == Kind::Route
    }

    fn settle(&self) -> Duration {
        self.settle
    }
}

/// `NAME` of a router labctl wrote (`labctl-NAME@file`).
fn managed_name<'a>(full: &'a str, provider: &str) -> Option<&'a str> {
    if provider != FILE_PROVIDER {
        return None;
    }
    let base = full.strip_suffix("@file").unwrap_or(full);
    base.strip_prefix(PREFIX).filter(|n| !n.is_empty())
}

/// The rule labctl writes for a route: the raw `rule`, or built from host and path prefix the
/// way Traefik's documentation writes it.
fn rule_of(spec: &RouteSpec) -> Option<String> {
    if let Some(rule) = &spec.rule {
        return Some(rule.clone());
    }
    let host = spec.host.as_ref()?;
    Some(match &spec.path_prefix {
        Some(p) => format!("Host(`{host}`) && PathPrefix(`{p}`)"),
        None => format!("Host(`{host}`)"),
    })
}

/// `priority` unless it is the one Traefik gives a router that declares none: zero, or the
/// length of its rule in bytes.
fn declared_priority(priority: i64, rule: Option<&str>) -> Option<i64> {
    let computed = rule.map_or(0, |r| r.len() as i64);
    (priority != 0 && priority != computed).then_some(priority)
}

/// A route as Traefik would show it (see the module documentation for the shape).
fn expected_fields(spec: &RouteSpec, desired: &DesiredState) -> Json {
    let mut fields = Map::new();
    if !spec.entry_points.is_empty() {
        fields.insert("entryPoints".into(), json!(spec.entry_points));
    }
    let rule = rule_of(spec);
    if let Some(p) = spec
        .priority
        .and_then(|p| declared_priority(p, rule.as_deref()))
    {
        fields.insert("priority".into(), json!(p));
    }
    if let Some(router) = &spec.router {
        fields.insert("router".into(), json!(router));
    }
    if let Some(rule) = rule {
        fields.insert("rule".into(), json!(rule));
    }
    let mut urls = spec.backend.urls.clone();
    let mut backend = Map::new();
    if let Some(svc) = &spec.backend.service {
        match resolve_service(desired, &svc.device, &svc.service) {
            Ok(url) => urls.push(url),
            // Validation guarantees the device and service exist; an interface without an IP
            // remains possible. Say so in the fields: the diff shows it and apply refuses it.
            Err(why) => {
                backend.insert("unresolved".into(), json!(why));
            }
        }
    }
    backend.insert("urls".into(), json!(urls));
    fields.insert("backend".into(), Json::Object(backend));
    if let Some(tls) = &spec.tls {
        let mut t = Map::new();
        if let Some(r) = &tls.cert_resolver {
            t.insert("certResolver".into(), json!(r));
        }
        let options = tls.options.as_deref().unwrap_or(Tls::DEFAULT_OPTIONS);
        t.insert("options".into(), json!(strip_file(options)));
        fields.insert("tls".into(), Json::Object(t));
    }
    let middlewares: Vec<String> = spec
        .middlewares
        .iter()
        .map(|m| strip_file(m).to_string())
        .collect();
    if !middlewares.is_empty() {
        fields.insert("middlewares".into(), json!(middlewares));
    }
    Json::Object(fields)
}

/// `http(s)://IP:PORT` of a device's service: its first interface address.
fn resolve_service(desired: &DesiredState, device: &str, service: &str) -> Result<String, String> {
    let doc = desired
        .devices
        .iter()
        .find(|d| d.doc.metadata.name == device)
        .ok_or_else(|| format!("Device/{device} does not exist"))?;
    let svc = doc
        .doc
        .spec
        .services
        .iter()
        .find(|s| s.name == service)
        .ok_or_else(|| format!("Device/{device} has no service `{service}`"))?;
    let ip = doc
        .doc
        .spec
        .ips()
        .next()
        .ok_or_else(|| format!("Device/{device} has no interface with an IP"))?;
    let scheme = match svc.protocol {
        ServiceProtocol::Https => "https",
        _ => "http",
    };
    Ok(format!("{scheme}://{ip}:{}", svc.port))
}

/// The strings of the array `key` of `object` (none when it is absent or no array).
fn strings(object: &Json, key: &str) -> Vec<String> {
    object
        .get(key)
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Json::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// `auth@file` → `auth`: within the file provider both name the same middleware.
fn strip_file(name: &str) -> &str {
    name.strip_suffix("@file").unwrap_or(name)
}

/// A load balancer's servers: their URLs, and those Traefik's health check holds down.
struct Servers<'a> {
    urls: Vec<&'a str>,
    down: Vec<&'a str>,
}

/// A service of the API: its qualified name and, for a load balancer, its servers.
fn read_service<'a>(service: &At<'a>) -> Result<(&'a str, Option<Servers<'a>>), ShapeError> {
    let name = service.req("name")?.str()?;
    let Some(servers) = service
        .get("loadBalancer")?
        .map(|lb| lb.get("servers"))
        .transpose()?
        .flatten()
    else {
        return Ok((name, None));
    };
    let urls = servers
        .items()?
        .map(|s| s.req("url")?.str())
        .collect::<Result<Vec<&str>, ShapeError>>()?;
    // `serverStatus`: URL → `UP` or `DOWN` (`pkg/config/runtime`); anything but `UP` is down.
    let mut down = Vec::new();
    if let Some(status) = service.get("serverStatus")? {
        for (url, _) in status.object()? {
            if status.req(url)?.str()? != "UP" {
                down.push(url.as_str());
            }
        }
    }
    Ok((name, Some(Servers { urls, down })))
}

/// One router of the API read back into labctl's fields; a part of another type than
/// Traefik's is an error, never left out.
fn router_fields(
    router: &At,
    provider: &str,
    services: &BTreeMap<&str, Option<Servers>>,
) -> Result<Json, ShapeError> {
    let mut fields = Map::new();
    let mut unrepresented: Vec<String> = Vec::new();
    let entry_points = router.opt_strings("entryPoints")?;
    if !entry_points.is_empty() {
        fields.insert("entryPoints".into(), json!(entry_points));
    }
    if let Some(rule) = router.opt_str("rule")? {
        fields.insert("rule".into(), json!(rule));
    }
    match router.opt_str("service")? {
        None => unrepresented.push("no service".into()),
        Some(svc) => {
            let full = if svc.contains('@') {
                svc.to_string()
            } else {
                format!("{svc}@{provider}")
            };
            match services.get(full.as_str()) {
                None => unrepresented.push(format!("service `{full}` not found")),
                Some(s) => match s {
                    Some(servers) => {
                        fields.insert("backend".into(), json!({ "urls": servers.urls }));
                        if !servers.down.is_empty() {
                            fields.insert("serversDown".into(), json!(servers.down));
                        }
                    }
                    None => unrepresented.push(format!(
                        "service `{full}` is not a load balancer of URLs \
                         (weighted, mirroring, failover or internal)"
                    )),
                },
            }
        }
    }
    if let Some(tls) = router.get("tls")? {
        let mut t = Map::new();
        if let Some(r) = tls.opt_str("certResolver")? {
            t.insert("certResolver".into(), json!(r));
        }
        let options = tls
            .opt_str("options")?
            .filter(|o| !o.is_empty())
            .unwrap_or("default");
        t.insert("options".into(), json!(strip_file(options)));
        if !tls.opt_items("domains")?.is_empty() {
            unrepresented.push("tls.domains".into());
        }
        fields.insert("tls".into(), Json::Object(t));
    }
    let mut middlewares: Vec<String> = router
        .opt_strings("middlewares")?
        .into_iter()
        .map(str::to_string)
        .collect();
    if provider == FILE_PROVIDER {
        for m in &mut middlewares {
            *m = strip_file(m).to_string();
        }
    }
    if !middlewares.is_empty() {
        fields.insert("middlewares".into(), json!(middlewares));
    }
    if let Some(status) = router.opt_str("status")? {
        if status != "enabled" {
            fields.insert("status".into(), json!(status));
        }
    }
    // Why Traefik disabled the router, or warns about it (`error` in `pkg/config/runtime`).
    let errors = router.opt_strings("error")?;
    if !errors.is_empty() {
        fields.insert("errors".into(), json!(errors));
    }
    // Traefik reports a priority for every router: the one declared, or else the length of
    // its rule (v3 `pkg/muxer/http`), which is Traefik's, not the user's.
    let rule = router.opt_str("rule")?;
    if let Some(p) = router.get("priority")?.map(|p| p.i64()).transpose()? {
        if declared_priority(p, rule).is_some() {
            fields.insert("priority".into(), json!(p));
        }
    }
    if router.opt_str("ruleSyntax")?.is_some_and(|s| !s.is_empty()) {
        unrepresented.push("ruleSyntax".into());
    }
    if !unrepresented.is_empty() {
        fields.insert("unrepresented".into(), json!(unrepresented));
    }
    Ok(Json::Object(fields))
}

/// Takes the mapping under `key` out of `map` (empty when absent or null), leaving the key in
/// place so that [`put_mapping`] keeps the file's order.
fn take_mapping(map: &mut serde_yaml::Mapping, key: &str) -> Result<serde_yaml::Mapping, String> {
    let Some(slot) = map.get_mut(key) else {
        return Ok(serde_yaml::Mapping::new());
    };
    match std::mem::take(slot) {
        serde_yaml::Value::Null => Ok(serde_yaml::Mapping::new()),
        serde_yaml::Value::Mapping(m) => Ok(m),
        other => {
            *slot = other;
            Err(format!(
                "`{key}` in the dynamic configuration file is not a mapping; labctl does not \
                 overwrite it"
            ))
        }
    }
}

/// Puts `value` back under `key` where it was, leaving the key out when it is empty.
fn put_mapping(map: &mut serde_yaml::Mapping, key: &str, value: serde_yaml::Mapping) {
    if value.is_empty() {
        map.shift_remove(key);
    } else if let Some(slot) = map.get_mut(key) {
        *slot = value.into();
    } else {
        map.insert(serde_yaml::Value::String(key.to_string()), value.into());
    }
}

/// Replaces `path` with `contents` all at once: a temporary file in the same directory (so the
/// rename cannot cross file systems), written and fsynced, renamed over `path`, then the
/// directory fsynced so the rename itself survives a crash. Traefik never sees a half-written
/// file, and the temporary name ends in `.tmp`, which Traefik's file provider skips even when
/// it watches the whole directory (it loads only `.toml`, `.yaml` and `.yml`). The file keeps
/// the permissions it had.
fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the path names no file"))?
        .to_string_lossy();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(
        ".{file_name}.labctl-{}-{nanos}.tmp",
        std::process::id()
    ));
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        if let Ok(meta) = fs::metadata(path) {
            file.set_permissions(meta.permissions())?;
        }
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Backend;

    fn spec(host: Option<&str>, prefix: Option<&str>, rule: Option<&str>) -> RouteSpec {
        RouteSpec {
            entry_points: vec!["websecure".into()],
            host: host.map(Into::into),
            path_prefix: prefix.map(Into::into),
            rule: rule.map(Into::into),
            backend: Backend {
                urls: vec!["http://127.0.0.1:3000".into()],
                service: None,
            },
            tls: Some(Tls {
                cert_resolver: Some("le".into()),
                options: None,
            }),
            middlewares: vec!["auth@file".into(), "ratelimit@docker".into()],
            priority: None,
            router: None,
        }
    }

    #[test]
    fn rules_are_written_as_traefik_documents_them() {
        assert_eq!(
            rule_of(&spec(Some("g.lab"), None, None)).unwrap(),
            "Host(`g.lab`)"
        );
        assert_eq!(
            rule_of(&spec(Some("g.lab"), Some("/api"), None)).unwrap(),
            "Host(`g.lab`) && PathPrefix(`/api`)"
        );
        let raw = "Host(`a`) || Host(`b`)";
        assert_eq!(rule_of(&spec(None, None, Some(raw))).unwrap(), raw);
    }

    #[test]
    fn written_router_reads_back_as_expected() {
        let cfg: Settings = serde_json::from_value(json!({
            "name": "traefik", "url": "http://127.0.0.1:8080/"
        }))
        .unwrap();
        let p = TraefikProvider::new(&cfg).unwrap();
        let expected = expected_fields(
            &spec(Some("g.lab"), Some("/api"), None),
            &DesiredState::default(),
        );
        assert_eq!(expected["middlewares"], json!(["auth", "ratelimit@docker"]));
        let (router, service) = p.build("g", &expected).unwrap();
        // What Traefik's API would show for them.
        let mut router: Json = serde_json::to_value(&router).unwrap();
        router["name"] = json!("labctl-g@file");
        router["provider"] = json!("file");
        router["status"] = json!("enabled");
        router["tls"]["options"] = json!("default");
        let mut service: Json = serde_json::to_value(&service).unwrap();
        service["name"] = json!("labctl-g@file");
        let service = At::root("Traefik services", "", &service);
        let services = BTreeMap::from([read_service(&service).unwrap()]);
        let router = At::root("Traefik routers", "", &router);
        assert_eq!(router_fields(&router, "file", &services).unwrap(), expected);
        assert_eq!(managed_name("labctl-g@file", "file"), Some("g"));
        assert_eq!(managed_name("labctl-g@docker", "docker"), None);
    }

    #[test]
    fn a_delete_of_a_foreign_router_is_refused_and_nothing_else_happens() {
        let cfg: Settings = serde_json::from_value(json!({
            "name": "traefik", "url": "http://127.0.0.1:8080"
        }))
        .unwrap();
        let p = TraefikProvider::new(&cfg).unwrap();
        let root: serde_yaml::Mapping =
            serde_yaml::from_str("http:\n  routers:\n    other: {rule: 'Host(`o`)'}\n").unwrap();
        let err = p
            .edit(
                root,
                &[Change::Delete {
                    kind: Kind::Route,
                    name: "whoami-docker".into(),
                    key: Some("whoami@docker".into()),
                }],
            )
            .unwrap_err();
        assert!(matches!(err, ProviderError::Rejected { .. }), "{err}");
    }
}
