//! The Traefik provider against a fixture of Traefik v3's API. What a real Traefik 3.7 does
//! (convergence, drift in labctl's file, other files' and providers' routers, paging, import,
//! disabled routers, a stopped Traefik) is tested in `traefik_live.rs`; the fixture stays for
//! what a real one cannot be made to do here — serve routers of its docker provider (no Docker
//! engine runs here), answer with the wrong shape, sit behind basic authentication, have its
//! file edited at an exact moment between an observation and an apply — and for the provider's
//! own file handling (atomic rewrites, a file it cannot parse), tested faster without waiting
//! for a reload.
//!
//! The fixture answers `GET /api/http/routers` and `GET /api/http/services` with the JSON
//! Traefik v3 documents and produces (<https://doc.traefik.io/traefik/operations/api/>;
//! `pkg/api/handler_http.go` and its `testdata/*.json`): arrays sorted by name, paginated with
//! `page` / `per_page` (default 100, `X-Next-Page` is `1` on the last page, a page past the end
//! is 400); routers carry `name`, `provider`, `rule`, `service` (as written, unqualified),
//! `entryPoints` (the default ones when the router names none), `middlewares`, `tls` (with
//! `options: default` filled in), `status` and `using`; services carry `name`, `provider`,
//! `loadBalancer.servers[].url`, `status`, `serverStatus`, `usedBy` and `type`.
//!
//! It mimics Traefik's file provider with `watch: true` (the default): Traefik watches the
//! dynamic configuration file and applies a change some time after it (after the file-system
//! event and the providers' throttle, `providers.providersThrottleDuration`, 2 s by default),
//! never during the request that reads the API. The fixture applies the file on a background
//! task that looks at it every 50 ms, so a client that writes the file and asks at once still
//! sees the old routers; the tests wait for the reload ([`Traefik::reloaded`]) before they
//! observe. Like Traefik it keeps the last valid configuration when the file does not parse,
//! drops the configuration of a file that disappears, and serves the file's routers and
//! services with the `@file` suffix. Routers of another provider are
//! held in memory as `@docker`, and Traefik's own `api@internal` / `dashboard@internal` are
//! always there. It has no write endpoint: Traefik's API is read-only, and the fixture does
//! nothing the real Traefik would not do.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use labctl::diff::{diff, DeviationType, Plan, ProviderInput, Rules};
use labctl::model::{DesiredState, DeviceDoc, Kind, Located, Origin, Policy, RouteDoc};
use labctl::providers::traefik::{Settings, TraefikProvider};
use labctl::providers::{CallPolicy, Change, Observation, Provider, ProviderError};
use serde::Deserialize;
use serde_json::{json, Value as Json};

use crate::support::lying::Lying;
use crate::support::net::{free_port, serve};

/// Traefik's default entry points in the fixture (those a router without any gets).
const DEFAULT_ENTRY_POINTS: [&str; 2] = ["web", "websecure"];

struct Fixture {
    file: PathBuf,
    /// Routers and services of the docker provider, unqualified as a provider declares them.
    docker_routers: BTreeMap<String, Json>,
    docker_services: BTreeMap<String, Json>,
    /// What the file provider has applied.
    applied: Mutex<Applied>,
}

/// The file as the watcher last saw it, and the configuration in force.
#[derive(Default)]
struct Applied {
    /// The file's content when last looked at (`None`: no file).
    seen: Option<String>,
    /// The last file-provider configuration that parsed (Traefik keeps it on a bad file).
    config: serde_yaml::Value,
}

/// How often the fixture's watcher looks at the file.
const WATCH_INTERVAL: Duration = Duration::from_millis(50);

#[derive(Deserialize)]
struct PageQuery {
    page: Option<String>,
    per_page: Option<String>,
}

impl Fixture {
    /// The watcher: applies the file if it changed since it was last seen.
    fn reload(&self) {
        let on_disk = std::fs::read_to_string(&self.file).ok();
        let mut applied = self.applied.lock().unwrap();
        if applied.seen == on_disk {
            return;
        }
        match &on_disk {
            Some(text) if text.trim().is_empty() => applied.config = serde_yaml::Value::Null,
            Some(text) => {
                if let Ok(v) = serde_yaml::from_str::<serde_yaml::Value>(text) {
                    applied.config = v;
                }
            }
            // Traefik drops a file-provider file that disappears.
            None => applied.config = serde_yaml::Value::Null,
        }
        applied.seen = on_disk;
    }

    /// The file provider's `http` section in force.
    fn file_http(&self) -> serde_yaml::Value {
        let applied = self.applied.lock().unwrap();
        applied
            .config
            .get("http")
            .cloned()
            .unwrap_or(serde_yaml::Value::Null)
    }

    /// `(qualified name, router as declared)` of every provider.
    fn routers(&self) -> Vec<(String, String, Json)> {
        let mut out = Vec::new();
        let http = self.file_http();
        if let Some(routers) = http.get("routers").and_then(|r| r.as_mapping()) {
            for (k, v) in routers {
                let name = k.as_str().unwrap().to_string();
                out.push((name, "file".into(), serde_json::to_value(v).unwrap()));
            }
        }
        for (k, v) in &self.docker_routers {
            out.push((k.clone(), "docker".into(), v.clone()));
        }
        out
    }

    fn services(&self) -> Vec<(String, String, Json)> {
        let mut out = Vec::new();
        let http = self.file_http();
        if let Some(services) = http.get("services").and_then(|r| r.as_mapping()) {
            for (k, v) in services {
                let name = k.as_str().unwrap().to_string();
                out.push((name, "file".into(), serde_json::to_value(v).unwrap()));
            }
        }
        for (k, v) in &self.docker_services {
            out.push((k.clone(), "docker".into(), v.clone()));
        }
        out
    }

    /// The routers as `/api/http/routers` shows them.
    fn router_list(&self) -> Vec<Json> {
        let services: Vec<String> = self
            .services()
            .into_iter()
            .map(|(n, p, _)| format!("{n}@{p}"))
            .collect();
        let mut list: Vec<Json> = self
            .routers()
            .into_iter()
            .map(|(name, provider, declared)| {
                let mut r = declared.clone();
                let eps = match declared.get("entryPoints").and_then(Json::as_array) {
                    Some(a) if !a.is_empty() => a.clone(),
                    _ => DEFAULT_ENTRY_POINTS.iter().map(|e| json!(e)).collect(),
                };
                r["entryPoints"] = json!(eps);
                r["using"] = json!(eps);
                r["name"] = json!(format!("{name}@{provider}"));
                r["provider"] = json!(provider);
                if let Some(tls) = r.get_mut("tls") {
                    if tls.is_null() {
                        *tls = json!({});
                    }
                    if tls.get("options").is_none() {
                        tls["options"] = json!("default");
                    }
                }
                let svc = declared
                    .get("service")
                    .and_then(Json::as_str)
                    .unwrap_or_default();
                let qualified = if svc.contains('@') {
                    svc.to_string()
                } else {
                    format!("{svc}@{provider}")
                };
                if services.contains(&qualified) {
                    r["status"] = json!("enabled");
                } else {
                    r["status"] = json!("disabled");
                    r["error"] = json!([format!("the service \"{qualified}\" does not exist")]);
                }
                r
            })
            .collect();
        for internal in ["api", "dashboard"] {
            list.push(json!({
                "entryPoints": ["traefik"], "using": ["traefik"],
                "service": format!("{internal}@internal"),
                "rule": if internal == "api" { "PathPrefix(`/api`)" } else { "PathPrefix(`/`)" },
                "priority": 9223372036854775806_i64 - i64::from(internal == "dashboard"),
                "status": "enabled",
                "name": format!("{internal}@internal"), "provider": "internal"
            }));
        }
        list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        list
    }

    /// The services as `/api/http/services` shows them.
    fn service_list(&self) -> Vec<Json> {
        let routers = self.routers();
        let mut list: Vec<Json> = self
            .services()
            .into_iter()
            .map(|(name, provider, declared)| {
                let mut s = declared.clone();
                let qualified = format!("{name}@{provider}");
                let used_by: Vec<String> = routers
                    .iter()
                    .filter(|(_, p, r)| {
                        let svc = r.get("service").and_then(Json::as_str).unwrap_or_default();
                        svc == qualified || (svc == name && *p == provider)
                    })
                    .map(|(n, p, _)| format!("{n}@{p}"))
                    .collect();
                s["name"] = json!(qualified);
                s["provider"] = json!(provider);
                s["status"] = json!("enabled");
                s["usedBy"] = json!(used_by);
                if let Some(lb) = s.get_mut("loadBalancer") {
                    if lb.get("passHostHeader").is_none() {
                        lb["passHostHeader"] = json!(true);
                    }
                    let status: serde_json::Map<String, Json> = lb["servers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|srv| srv["url"].as_str())
                        .map(|u| (u.to_string(), json!("UP")))
                        .collect();
                    s["serverStatus"] = Json::Object(status);
                    s["type"] = json!("loadbalancer");
                }
                s
            })
            .collect();
        for internal in ["api", "dashboard", "noop"] {
            list.push(json!({
                "status": "enabled", "usedBy": [format!("{internal}@internal")],
                "name": format!("{internal}@internal"), "provider": "internal"
            }));
        }
        list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        list
    }
}

/// Traefik's pagination (`pkg/api/criterion.go`).
fn paginate(items: Vec<Json>, q: &PageQuery) -> Response {
    let int = |raw: &Option<String>, default: usize| -> Result<usize, String> {
        match raw.as_deref() {
            None | Some("") => Ok(default),
            Some(s) => match s.parse::<usize>() {
                Ok(v) if v > 0 => Ok(v),
                _ => Err(format!("invalid request: {s}")),
            },
        }
    };
    let (per_page, page) = match (int(&q.per_page, 100), int(&q.page, 1)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            return (StatusCode::BAD_REQUEST, axum::Json(json!({ "message": e }))).into_response()
        }
    };
    let start = (page - 1) * per_page;
    if start != 0 && start >= items.len() {
        let msg = format!("invalid request: page: {page}, per_page: {per_page}");
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "message": msg })),
        )
            .into_response();
    }
    let end = (start + per_page).min(items.len());
    let next = if page * per_page < items.len() {
        page + 1
    } else {
        1
    };
    (
        [("x-next-page", next.to_string())],
        axum::Json(Json::Array(items[start..end].to_vec())),
    )
        .into_response()
}

async fn routers(State(fx): State<Arc<Fixture>>, Query(q): Query<PageQuery>) -> Response {
    paginate(fx.router_list(), &q)
}

async fn services(State(fx): State<Arc<Fixture>>, Query(q): Query<PageQuery>) -> Response {
    paginate(fx.service_list(), &q)
}

/// A running fixture.
struct Traefik {
    url: String,
    fixture: Arc<Fixture>,
}

impl Traefik {
    /// Waits until the watcher has applied the file as it is on disk now.
    async fn reloaded(&self) {
        loop {
            let on_disk = std::fs::read_to_string(&self.fixture.file).ok();
            if self.fixture.applied.lock().unwrap().seen == on_disk {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Starts the fixture on a free loopback port with the file as it is now applied, and its
/// watcher.
async fn start(file: &Path, docker: Vec<(&str, Json, Json)>) -> Traefik {
    let fixture = Arc::new(Fixture {
        file: file.to_path_buf(),
        docker_routers: docker
            .iter()
            .map(|(n, r, _)| (n.to_string(), r.clone()))
            .collect(),
        docker_services: docker
            .iter()
            .filter(|(_, _, s)| !s.is_null())
            .map(|(n, _, s)| (n.to_string(), s.clone()))
            .collect(),
        applied: Mutex::new(Applied::default()),
    });
    // Traefik reads the file at startup, then watches it.
    fixture.reload();
    let watched = Arc::downgrade(&fixture);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(WATCH_INTERVAL).await;
            let Some(fixture) = watched.upgrade() else {
                return;
            };
            fixture.reload();
        }
    });
    let app = axum::Router::new()
        .route("/api/http/routers", get(routers))
        .route("/api/http/services", get(services))
        .with_state(fixture.clone());
    let (port, _) = serve(app).await;
    Traefik {
        url: format!("http://127.0.0.1:{port}"),
        fixture,
    }
}

fn whoami() -> (&'static str, Json, Json) {
    (
        "whoami",
        json!({"rule": "Host(`whoami.lab.example`)", "service": "whoami",
               "entryPoints": ["web"], "middlewares": ["auth@file"]}),
        json!({"loadBalancer": {"servers": [{"url": "http://127.0.0.1:9001"}]}}),
    )
}

fn policy() -> CallPolicy {
    CallPolicy {
        timeout: Duration::from_secs(2),
        retries: 0,
        backoff: Duration::from_millis(1),
        ..CallPolicy::default()
    }
}

fn provider(url: &str, file: Option<&Path>) -> TraefikProvider {
    let cfg: Settings = serde_json::from_value(json!({
        "name": "traefik", "url": url,
        "dynamicConfigFile": file,
    }))
    .unwrap();
    TraefikProvider::new(&cfg).unwrap().with_policy(policy())
}

fn located<T>(doc: T, file: &str) -> Located<T> {
    Located {
        doc,
        origin: Origin {
            file: file.into(),
            line: 1,
        },
    }
}

fn route(name: &str, spec: Json) -> Located<RouteDoc> {
    let doc = serde_json::from_value(json!({
        "apiVersion": "labctl.dev/v1", "kind": "Route",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap();
    located(doc, &format!("routes/{name}.yaml"))
}

/// grafana: host + path, TLS with a resolver, middlewares, a device's service as backend;
/// wiki: a raw rule, explicit URL, TLS without a resolver, no entry points.
fn desired() -> DesiredState {
    let device: DeviceDoc = serde_json::from_value(json!({
        "apiVersion": "labctl.dev/v1", "kind": "Device", "metadata": {"name": "monitoring"},
        "spec": {"type": "physical",
                 "interfaces": [{"name": "eth0", "ip": "127.0.0.20"}],
                 "services": [{"name": "grafana", "port": 3000, "protocol": "http"}]}
    }))
    .unwrap();
    DesiredState {
        devices: vec![located(device, "devices/monitoring.yaml")],
        routes: vec![
            route(
                "grafana",
                json!({"entryPoints": ["websecure"], "host": "grafana.lab.example",
                       "pathPrefix": "/grafana",
                       "backend": {"service": {"device": "monitoring", "service": "grafana"}},
                       "tls": {"certResolver": "letsencrypt"},
                       "middlewares": ["auth@file", "compress"]}),
            ),
            route(
                "wiki",
                json!({"rule": "Host(`wiki.lab.example`) || Host(`kb.lab.example`)",
                       "backend": {"urls": ["https://127.0.0.30:8443"]},
                       "tls": {}}),
            ),
        ],
        ..DesiredState::default()
    }
}

/// Content of the file that is not labctl's, which every apply must keep.
const FOREIGN: &str = "\
http:
  middlewares:
    auth:
      basicAuth:
        users: ['admin:$apr1$H6uskkkW$IgXLP6ewTrSuBkTrqE8wj/']
  routers:
    legacy:
      rule: Host(`legacy.lab.example`)
      service: legacy
  services:
    legacy:
      loadBalancer:
        servers:
          - url: http://127.0.0.40:80
tls:
  options:
    modern:
      minVersion: VersionTLS13
";

async fn plan_of(p: &TraefikProvider, state: &DesiredState, policy: Option<Policy>) -> Plan {
    plan_with_base(p, state, policy).await.0
}

/// The plan and the observation it was made from, which apply needs.
async fn plan_with_base(
    p: &TraefikProvider,
    state: &DesiredState,
    policy: Option<Policy>,
) -> (Plan, Observation) {
    let mut rules = Rules::default();
    if let Some(pol) = policy {
        rules.policy.insert(Kind::Route, pol);
    }
    let input = ProviderInput {
        provider: p.name().into(),
        expected: p.expected(state).into(),
        observed: p.observe(state).await,
        can_apply: [Kind::Route]
            .into_iter()
            .filter(|k| p.can_apply(*k))
            .collect(),
        severities: p.severities(),
    };
    let plan = diff(std::slice::from_ref(&input), &rules);
    // An unobservable Traefik gets an empty base: the plan then has no changes to apply.
    let base = input
        .observed
        .unwrap_or_else(|_| Observation::now(p.name(), Vec::new()));
    (plan, base)
}

fn deviations(plan: &Plan) -> Vec<(String, String, DeviationType)> {
    plan.deviations
        .iter()
        .map(|d| (d.name.clone(), d.field_path.clone(), d.dtype))
        .collect()
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "dynamic.yml")
        .collect()
}

/// Creates labctl's routes through `apply` from the diff's own changes, and waits until
/// Traefik has applied the file.
async fn create_all(p: &TraefikProvider, state: &DesiredState, traefik: &Traefik) {
    let (plan, base) = plan_with_base(p, state, Some(Policy::Apply)).await;
    let changes: Vec<Change> = plan.changes["traefik"]
        .iter()
        .filter(|c| matches!(c, Change::Create { .. }))
        .cloned()
        .collect();
    assert_eq!(changes.len(), 2, "{changes:?}");
    p.apply(&base, &changes).await.unwrap();
    traefik.reloaded().await;
}

#[tokio::test]
async fn observe_reports_managed_and_unmanaged_routers_but_not_traefiks_own() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dynamic.yml");
    std::fs::write(&file, FOREIGN).unwrap();
    let traefik = start(&file, vec![whoami()]).await;
    let url = &traefik.url;
    let p = provider(url, Some(&file));
    let state = desired();
    create_all(&p, &state, &traefik).await;

    let obs = p.observe(&state).await.unwrap();
    let by_name: BTreeMap<&str, Json> = obs
        .resources
        .iter()
        .map(|r| (r.name.as_str(), r.fields.value()))
        .collect();
    assert_eq!(
        by_name.keys().copied().collect::<Vec<_>>(),
        ["grafana", "legacy-file", "whoami-docker", "wiki"]
    );
    assert_eq!(
        by_name["grafana"],
        json!({"entryPoints": ["websecure"],
               "rule": "Host(`grafana.lab.example`) && PathPrefix(`/grafana`)",
               "backend": {"urls": ["http://127.0.0.20:3000"]},
               "tls": {"certResolver": "letsencrypt", "options": "default"},
               "middlewares": ["auth", "compress"]})
    );
    // No entry points declared: Traefik reports its defaults, labctl reports none.
    assert_eq!(
        by_name["wiki"],
        json!({"rule": "Host(`wiki.lab.example`) || Host(`kb.lab.example`)",
               "backend": {"urls": ["https://127.0.0.30:8443"]},
               "tls": {"options": "default"}})
    );
    // Another provider's router: its unqualified service is its own provider's, and its
    // middleware keeps the qualification (it is not labctl's file provider).
    assert_eq!(
        by_name["whoami-docker"],
        json!({"entryPoints": ["web"], "rule": "Host(`whoami.lab.example`)",
               "backend": {"urls": ["http://127.0.0.1:9001"]},
               "middlewares": ["auth@file"], "router": "whoami@docker"})
    );
    assert!(by_name["legacy-file"]["entryPoints"] == json!(["web", "websecure"]));
    // Routers labctl did not write are declared where it never writes: in its own file under
    // a name that is not its own, or by another provider.
    let file_name = file.display().to_string();
    assert_eq!(
        obs.declared_elsewhere,
        BTreeMap::from([
            (
                "Route/legacy-file".to_string(),
                format!(
                    "{file_name} as router `legacy`, kept there because labctl writes only its \
                     own `labctl-*` routers"
                )
            ),
            (
                "Route/whoami-docker".to_string(),
                "Traefik's docker provider (router `whoami@docker`)".to_string()
            ),
        ])
    );

    let plan = plan_of(&p, &state, None).await;
    assert_eq!(
        deviations(&plan),
        [
            (
                "legacy-file".into(),
                String::new(),
                DeviationType::Unmanaged
            ),
            (
                "whoami-docker".into(),
                String::new(),
                DeviationType::Unmanaged
            ),
        ]
    );
}

#[tokio::test]
async fn routers_are_read_across_pages() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dynamic.yml");
    let names: Vec<String> = (0..230).map(|i| format!("app{i:03}")).collect();
    let docker = names
        .iter()
        .map(|n| {
            (
                n.as_str(),
                json!({"rule": format!("Host(`{n}.lab`)"), "service": n}),
                json!({"loadBalancer": {"servers": [{"url": "http://127.0.0.1:80"}]}}),
            )
        })
        .collect();
    let traefik = start(&file, docker).await;
    let url = &traefik.url;
    let obs = provider(url, Some(&file))
        .observe(&DesiredState::default())
        .await
        .unwrap();
    assert_eq!(obs.resources.len(), 230);
    assert!(obs
        .resources
        .iter()
        .all(|r| r.fields.value()["backend"]["urls"] == json!(["http://127.0.0.1:80"])));
}

#[tokio::test]
async fn edits_behind_labctls_back_are_drift_on_the_exact_field_and_deletion_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dynamic.yml");
    let traefik = start(&file, vec![whoami()]).await;
    let url = &traefik.url;
    let p = provider(url, Some(&file));
    let state = desired();
    create_all(&p, &state, &traefik).await;
    assert_eq!(
        deviations(&plan_of(&p, &state, None).await),
        [(
            "whoami-docker".into(),
            String::new(),
            DeviationType::Unmanaged
        )]
    );

    // Someone edits the file: another backend for grafana, no certificate resolver, and
    // wiki's router is removed (its service stays).
    let text = std::fs::read_to_string(&file).unwrap();
    let mut yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let http = &mut yaml["http"];
    http["services"]["labctl-grafana"]["loadBalancer"]["servers"][0]["url"] =
        "http://127.0.0.21:3000".into();
    http["routers"]["labctl-grafana"]["tls"] = serde_yaml::from_str("{}").unwrap();
    http["routers"]
        .as_mapping_mut()
        .unwrap()
        .remove("labctl-wiki");
    std::fs::write(&file, serde_yaml::to_string(&yaml).unwrap()).unwrap();
    traefik.reloaded().await;

    let plan = plan_of(&p, &state, None).await;
    assert_eq!(
        deviations(&plan),
        [
            (
                "grafana".into(),
                "spec.backend.urls".into(),
                DeviationType::Drifted
            ),
            (
                "grafana".into(),
                "spec.tls.certResolver".into(),
                DeviationType::Drifted
            ),
            (
                "whoami-docker".into(),
                String::new(),
                DeviationType::Unmanaged
            ),
            ("wiki".into(), String::new(), DeviationType::Missing),
        ]
    );
    let urls = plan
        .deviations
        .iter()
        .find(|d| d.field_path == "spec.backend.urls")
        .unwrap();
    assert_eq!(urls.expected, Some(json!(["http://127.0.0.20:3000"])));
    assert_eq!(urls.actual, Some(json!(["http://127.0.0.21:3000"])));
}

#[tokio::test]
async fn apply_rewrites_only_labctls_entries_atomically_and_converges() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dynamic.yml");
    // labctl's file as a previous run left it, plus someone else's entries: grafana has
    // drifted, `old` is no longer in Git, wiki does not exist yet.
    let mut yaml: serde_yaml::Value = serde_yaml::from_str(FOREIGN).unwrap();
    let extra: serde_yaml::Value = serde_yaml::from_str(
        "routers:
  labctl-grafana:
    entryPoints: [web]
    rule: Host(`grafana.lab.example`) && PathPrefix(`/grafana`)
    service: labctl-grafana
    middlewares: [auth, compress]
    tls: {certResolver: letsencrypt}
  labctl-old:
    rule: Host(`old.lab.example`)
    service: labctl-old
services:
  labctl-grafana:
    loadBalancer:
      servers: [{url: 'http://127.0.0.20:3000'}]
  labctl-old:
    loadBalancer:
      servers: [{url: 'http://127.0.0.50:80'}]
",
    )
    .unwrap();
    for section in ["routers", "services"] {
        for (k, v) in extra[section].as_mapping().unwrap() {
            yaml["http"][section]
                .as_mapping_mut()
                .unwrap()
                .insert(k.clone(), v.clone());
        }
    }
    std::fs::write(&file, serde_yaml::to_string(&yaml).unwrap()).unwrap();
    let traefik = start(&file, vec![whoami()]).await;
    let url = &traefik.url;
    let p = provider(url, Some(&file));
    let state = desired();

    let (plan, base) = plan_with_base(&p, &state, Some(Policy::Apply)).await;
    assert_eq!(
        deviations(&plan),
        [
            (
                "grafana".into(),
                "spec.entryPoints".into(),
                DeviationType::Drifted
            ),
            (
                "legacy-file".into(),
                String::new(),
                DeviationType::Unmanaged
            ),
            ("old".into(), String::new(), DeviationType::Unmanaged),
            (
                "whoami-docker".into(),
                String::new(),
                DeviationType::Unmanaged
            ),
            ("wiki".into(), String::new(), DeviationType::Missing),
        ]
    );
    // The routers of others are left to their owners: labctl applies its own changes only.
    let changes: Vec<Change> = plan.changes["traefik"]
        .iter()
        .filter(|c| !matches!(c.name(), "legacy-file" | "whoami-docker"))
        .cloned()
        .collect();
    let actions: Vec<(&str, &str)> = changes
        .iter()
        .map(|c| {
            let action = match c {
                Change::Create { .. } => "create",
                Change::Update { .. } => "update",
                Change::Delete { .. } => "delete",
            };
            (action, c.name())
        })
        .collect();
    assert_eq!(
        actions,
        [("delete", "old"), ("update", "grafana"), ("create", "wiki")]
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let inode = std::fs::metadata(&file).unwrap().ino();
    // Planning and applying apart: an instance that never observed applies the plan.
    let report = provider(url, Some(&file))
        .apply(&base, &changes)
        .await
        .unwrap();
    assert_eq!(report.applied, changes);

    // Rewritten whole, by rename (a new inode, the same permissions): nothing of the temporary
    // file is left behind.
    let meta = std::fs::metadata(&file).unwrap();
    assert_ne!(meta.ino(), inode);
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("# Traefik dynamic configuration managed by labctl."));
    let after: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let before: serde_yaml::Value = serde_yaml::from_str(FOREIGN).unwrap();
    assert_eq!(after["tls"], before["tls"]);
    assert_eq!(after["http"]["middlewares"], before["http"]["middlewares"]);
    assert_eq!(
        after["http"]["routers"]["legacy"],
        before["http"]["routers"]["legacy"]
    );
    assert_eq!(
        after["http"]["services"]["legacy"],
        before["http"]["services"]["legacy"]
    );
    let routers: Vec<&str> = after["http"]["routers"]
        .as_mapping()
        .unwrap()
        .keys()
        .filter_map(|k| k.as_str())
        .collect();
    assert_eq!(routers, ["legacy", "labctl-grafana", "labctl-wiki"]);
    assert!(after["http"]["services"].get("labctl-old").is_none());

    // Observed again once Traefik has reloaded the file: no drift.
    traefik.reloaded().await;
    let plan = plan_of(&p, &state, None).await;
    assert_eq!(
        deviations(&plan),
        [
            (
                "legacy-file".into(),
                String::new(),
                DeviationType::Unmanaged
            ),
            (
                "whoami-docker".into(),
                String::new(),
                DeviationType::Unmanaged
            ),
        ]
    );
}

#[tokio::test]
async fn an_edit_of_the_file_between_observe_and_apply_is_refused_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dynamic.yml");
    std::fs::write(&file, FOREIGN).unwrap();
    let traefik = start(&file, vec![whoami()]).await;
    let p = provider(&traefik.url, Some(&file));
    let (plan, base) = plan_with_base(&p, &desired(), Some(Policy::Apply)).await;
    assert!(base.version.is_some(), "the file's hash");
    let creates: Vec<Change> = plan.changes["traefik"]
        .iter()
        .filter(|c| matches!(c, Change::Create { .. }))
        .cloned()
        .collect();
    assert!(!creates.is_empty());
    // Someone edits the file by hand in between.
    let edited = format!("{FOREIGN}# a note by hand\n");
    std::fs::write(&file, &edited).unwrap();
    let err = p.apply(&base, &creates).await.unwrap_err();
    assert!(matches!(err, ProviderError::Stale { .. }), "{err:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), edited);
}

#[tokio::test]
async fn another_providers_router_is_never_planned_for_removal_and_a_delete_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dynamic.yml");
    std::fs::write(&file, FOREIGN).unwrap();
    let traefik = start(&file, vec![whoami()]).await;
    let url = &traefik.url;
    let p = provider(url, Some(&file));
    let state = desired();
    let (plan, base) = plan_with_base(&p, &state, Some(Policy::Apply)).await;
    // Under policy apply the plan creates both routes and removes nothing.
    let mut changes: Vec<Change> = plan.changes["traefik"].clone();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(changes.iter().all(|c| matches!(c, Change::Create { .. })));
    // A delete of the docker router asked for anyway, in one batch with the creates: apply
    // is all or none.
    changes.insert(
        0,
        Change::Delete {
            kind: Kind::Route,
            name: "whoami-docker".into(),
            key: Some("whoami@docker".into()),
        },
    );
    let err = p.apply(&base, &changes).await.unwrap_err();
    match &err {
        ProviderError::Rejected { detail, .. } => {
            assert!(detail.contains("whoami@docker"), "{detail}");
            assert!(detail.contains("read-only"), "{detail}");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), FOREIGN);
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
}

#[tokio::test]
async fn an_api_that_does_not_answer_is_unreachable_and_routes_are_unknown() {
    let port = free_port();
    let p = provider(&format!("http://127.0.0.1:{port}"), None);
    let state = desired();
    let err = p.observe(&state).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unreachable { .. }), "{err:?}");
    let plan = plan_of(&p, &state, Some(Policy::Apply)).await;
    assert_eq!(plan.count(DeviationType::Unknown), 2);
    assert!(plan.changes.is_empty());
}

#[tokio::test]
async fn apply_without_a_dynamic_config_file_is_a_config_error() {
    let p = provider("http://127.0.0.1:9", None);
    let state = desired();
    let change = Change::Create {
        kind: Kind::Route,
        name: "grafana".into(),
        fields: p.expected(&state)[0].fields.value(),
    };
    let base = Observation::now("traefik", Vec::new());
    let err = p.apply(&base, &[change]).await.unwrap_err();
    assert!(matches!(err, ProviderError::Config { .. }), "{err:?}");
}

#[tokio::test]
async fn an_api_behind_authentication_is_an_authentication_error() {
    // Traefik's API exposed through a router with a basicAuth middleware answers 401.
    let app = axum::Router::new().route(
        "/api/http/routers",
        get(|| async { (StatusCode::UNAUTHORIZED, "401 Unauthorized\n") }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let err = provider(&format!("http://{addr}"), None)
        .observe(&desired())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::Authentication { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_file_that_does_not_parse_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dynamic.yml");
    let broken = "http:\n  routers: [unclosed\n";
    std::fs::write(&file, broken).unwrap();
    let p = provider("http://127.0.0.1:9", Some(&file));
    let state = desired();
    let change = Change::Create {
        kind: Kind::Route,
        name: "grafana".into(),
        fields: p.expected(&state)[0].fields.value(),
    };
    let base = Observation::now("traefik", Vec::new());
    let err = p.apply(&base, &[change]).await.unwrap_err();
    assert!(matches!(err, ProviderError::Rejected { .. }), "{err:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), broken);
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
}

/// A rewrite of the `whoami` element of one list of the API.
type Lie = fn(&mut Json);

#[tokio::test]
async fn an_api_answer_of_the_wrong_shape_is_unknown_not_absent() {
    let dir = tempfile::tempdir().unwrap();
    let traefik = start(&dir.path().join("dynamic.yml"), vec![whoami()]).await;
    let proxy = Lying::start(&traefik.url).await;
    let p = provider(&proxy.url, None);
    let state = DesiredState::default();
    assert!(p.observe(&state).await.is_ok(), "the truth reads");
    let lies: [(&str, Lie, &str); 5] = [
        (
            "/api/http/routers",
            |r| r["entryPoints"] = json!("web"),
            "Traefik /api/http/routers: [2].entryPoints is a string, expected an array",
        ),
        (
            "/api/http/routers",
            |r| r["tls"] = json!("yes"),
            "[2].tls is a string, expected an object",
        ),
        (
            "/api/http/routers",
            |r| r["middlewares"] = json!([{"name": "auth"}]),
            "[2].middlewares[0] is an object, expected a string",
        ),
        (
            "/api/http/services",
            |s| s["loadBalancer"]["servers"] = json!({"url": "http://127.0.0.1:9001"}),
            ".loadBalancer.servers is an object, expected an array",
        ),
        (
            "/api/http/services",
            |s| s["name"] = json!(null),
            "].name is null, expected a string",
        ),
    ];
    for (list, lie, says) in lies {
        proxy.lie(move |heard, answer| {
            if heard.path.starts_with(list) {
                for item in answer.as_array_mut().into_iter().flatten() {
                    if item["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("whoami"))
                    {
                        lie(item);
                    }
                }
            }
        });
        let err = p.observe(&state).await.unwrap_err();
        assert!(
            matches!(&err, ProviderError::BadResponse { detail, url, .. }
                if detail.contains(says) && detail.starts_with(&format!("Traefik {list}: "))
                    && url.ends_with(list)),
            "{says}: {err}"
        );
    }
}
