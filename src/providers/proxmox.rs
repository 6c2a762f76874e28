//! Proxmox VE through its REST API (`/api2/json`): guests (`Device` of type `vm` and `lxc`) and
//! resource pools (`Pool` with a `proxmoxPool`). Observe only for now.
//!
//! Pool membership is a guest's `spec.pool`, as in Git: a guest in the Proxmox VE pool that a
//! `Pool` maps (`proxmoxPool`) is observed with that pool's path; one in a pool no `Pool` maps
//! with `/NAME`, the path the imported `Pool` document will have. A `Pool` itself is observed
//! as `{proxmoxPool}` (and, unmanaged, with the `type` and `description` its document needs:
//! Proxmox VE pools have no type, so `storage` when they hold only storage, else `compute`).
//!
//! Field names and types follow the Proxmox VE API viewer
//! (<https://pve.proxmox.com/pve-docs/api-viewer/>) and the configuration references
//! `qm.conf(5)` (<https://pve.proxmox.com/wiki/Manual:_qm.conf>) and `pct.conf(5)`
//! (<https://pve.proxmox.com/wiki/Manual:_pct.conf>). Every answer is a JSON object whose
//! `data` member holds the result; errors carry `message` (and `errors` per parameter).
//!
//! | call | fields used |
//! |---|---|
//! | `GET /nodes` | `node` (string), `status` (`online` \| `offline` \| `unknown`) |
//! | `GET /pools` | `poolid` (string) |
//! | `GET /pools/{poolid}` | `members[]`: `id` (`qemu/202`), `type` (`qemu` \| `lxc` \| `storage`), `vmid` (integer), `node` |
//! | `GET /nodes/{node}/qemu`, `…/lxc` | `vmid` (integer), `name` (string) |
//! | `GET /nodes/{node}/qemu/{vmid}/config` | `cores` (integer, default 1), `memory` (MiB: integer before PVE 8.1, the string `[current=]<integer>` since), `netN`, `ideN`/`sataN`/`scsiN`/`virtioN` |
//! | `GET /nodes/{node}/lxc/{vmid}/config` | `cores` (integer, absent = all host cores), `memory` (integer MiB), `netN`, `rootfs`, `mpN` |
//!
//! The shapes of `GET /pools` and `GET /pools/{poolid}` (`{comment?, members: [{id, node, type,
//! vmid?, storage?, …}]}`) were checked against a client generated from the viewer's
//! `apidoc.js` (crate `clientapi-pve`, <https://docs.rs/crate/clientapi-pve>).
//!
//! Authentication is an API token, sent as `Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET`
//! (<https://pve.proxmox.com/wiki/Proxmox_VE_API#API_Tokens>); it needs `Sys.Audit`,
//! `VM.Audit` and `Pool.Audit` (the built-in `PVEAuditor` role).
//!
//! Every Proxmox VE install serves a self-signed certificate (or one from its own
//! `pve-root-ca`). Either pin that certificate's SHA-256 fingerprint (`tls.fingerprint`, as
//! shown under *Node → System → Certificates*) or trust the cluster CA (`tls.caFile`,
//! `/etc/pve/pve-root-ca.pem`); verification is never switched off.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use reqwest::header::{HeaderValue, AUTHORIZATION};
use serde_json::{json, Map, Value as Json};
use tokio::sync::Semaphore;

use super::http::{self, excerpt, excerpt_bytes, BodyLimit, Classify, Pinning, Reply};
use super::shape::{At, ShapeError};
use super::{
    derive_name, unique_name, BoxFuture, CallPolicy, Factory, Host, Observation, Provider,
    ProviderError, Resource, Severities, Severity, Unreadable,
};
use crate::model::{DesiredState, DeviceDoc, DeviceType, Kind, MacAddress, SecretSource};
pub use http::parse_fingerprint;

/// At most this many guest-config and pool calls are in flight at once.
pub const MAX_CONCURRENT_CALLS: usize = 8;

settings! {
    /// A Proxmox VE cluster, through its API (`url`, e.g. `https://10.0.1.10:8006`); `token`
    /// is the API token, `USER@REALM!TOKENID=SECRET`.
    pub struct Settings {}
}

/// Builds [`ProxmoxProvider`]s.
pub struct Plugin;

impl Factory for Plugin {
    type Settings = Settings;

    const KINDS: &'static [Kind] = &[Kind::Pool, Kind::Device];

    const SEVERITIES: Severities = &[
        (Kind::Device, &["type", "interfaces"], Severity::High),
        (
            Kind::Device,
            &["cores", "memoryMiB", "disks"],
            Severity::Medium,
        ),
        (Kind::Device, &["pool"], Severity::Medium),
    ];

    /// Pools with a `proxmoxPool` as `{"proxmoxPool"}`, and guests (`vm`, `lxc`) as `{"type",
    /// "proxmox": {"node", "vmid"}, "pool", "cores", "memoryMiB", "disks", "interfaces"}`, each
    /// only when declared (`pool` always: null for none). Interface IPs are left out:
    /// addresses are DHCP's business.
    fn expected(desired: &DesiredState) -> Vec<Resource> {
        let mut out = Vec::new();
        for pool in &desired.pools {
            let Some(id) = &pool.doc.spec.proxmox_pool else {
                continue;
            };
            out.push(Resource {
                kind: Kind::Pool,
                name: pool.doc.metadata.name.clone(),
                fields: json!({ "proxmoxPool": id }).into(),
                key: None,
            });
        }
        for doc in desired_guests(desired) {
            out.push(Resource {
                kind: Kind::Device,
                name: doc.metadata.name.clone(),
                fields: expected_guest(doc).into(),
                key: None,
            });
        }
        out
    }

    fn build(settings: &Settings) -> Result<Arc<dyn Provider>, ProviderError> {
        Ok(Arc::new(ProxmoxProvider::new(settings)?))
    }
}

/// The Proxmox VE provider: one API endpoint (any node of the cluster), one client.
pub struct ProxmoxProvider {
    api: Api,
    limit: Arc<Semaphore>,
}

/// What a call needs; cheap to clone into concurrent tasks.
#[derive(Clone)]
struct Api {
    provider: String,
    /// `https://host:8006`, without a trailing slash; paths below start with `/api2/json`.
    base: String,
    client: reqwest::Client,
    policy: CallPolicy,
    /// The `Authorization` header value, marked sensitive. Never formatted anywhere.
    auth: HeaderValue,
}

impl ProxmoxProvider {
    pub fn new(cfg: &Settings) -> Result<Self, ProviderError> {
        let config_err = ProviderError::config(&cfg.name);
        let source = cfg.token.as_ref().ok_or_else(|| {
            config_err(
                "Proxmox VE needs an API token (USER@REALM!TOKENID=SECRET): give `token` as \
                 {env: VAR}, {file: PATH} or {systemdCredential: NAME}"
                    .into(),
            )
        })?;
        let token = super::secret::read(source).map_err(&config_err)?;
        if token.is_empty() {
            return Err(config_err(format!("token: {} is empty", describe(source))));
        }
        check_token_shape(&token).map_err(|what| {
            config_err(format!(
                "the token from {} {what}; it must look like USER@REALM!TOKENID=SECRET",
                describe(source)
            ))
        })?;
        let mut auth = HeaderValue::from_str(&format!("PVEAPIToken={token}")).map_err(|_| {
            config_err(format!(
                "the token from {} contains characters not allowed in an HTTP header",
                describe(source)
            ))
        })?;
        auth.set_sensitive(true);

        let policy = CallPolicy::with_timeout_seconds(cfg.timeout_seconds)
            .with_max_body_bytes(cfg.max_body_bytes);
        // The API never redirects; not following keeps the token on the configured host.
        let builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(policy.timeout);
        // Every install has a self-signed certificate: pin it or trust the cluster CA.
        let client = http::build_client(builder, cfg.tls.as_ref(), Pinning::Allowed, &config_err)?;
        Ok(ProxmoxProvider {
            api: Api {
                provider: cfg.name.clone(),
                base: cfg.url.trim_end_matches('/').to_string(),
                client,
                policy,
                auth,
            },
            limit: Arc::new(Semaphore::new(MAX_CONCURRENT_CALLS)),
        })
    }

    /// Replaces the call policy (timeout, retries, backoff).
    pub fn with_policy(mut self, policy: CallPolicy) -> Self {
        self.api.policy = policy;
        self
    }

    async fn observe_inner(&self, desired: &DesiredState) -> Result<Observation, ProviderError> {
        let api = &self.api;
        let observed_at = crate::time::now_ms();

        // Every node, then every guest on each online node. A node that cannot be listed
        // makes its guests unknowable: nothing is concluded about where they went.
        let nodes = api.get("/nodes").await?;
        let nodes = read_nodes(&nodes).map_err(|e| api.shape_error("/nodes", e))?;
        let mut unreadable_nodes: BTreeSet<String> = BTreeSet::new();
        let mut listed: Vec<Listed> = Vec::new();
        for (name, status, _) in &nodes {
            let name = name.as_str();
            if status.as_deref() != Some("online") {
                tracing::warn!(provider = %api.provider, node = name, "node is not online; its guests are unknown");
                unreadable_nodes.insert(name.to_string());
                continue;
            }
            for kind in [GuestKind::Qemu, GuestKind::Lxc] {
                let path = format!("/nodes/{}/{}", segment(name), kind.path());
                let read = api.get(&path).await.and_then(|list| {
                    read_guests(&path, name, kind, &list).map_err(|e| api.shape_error(&path, e))
                });
                match read {
                    Ok(guests) => listed.extend(guests),
                    Err(e @ ProviderError::Authentication { .. }) => return Err(e),
                    Err(e) => {
                        tracing::warn!(provider = %api.provider, node = name, error = %e, "cannot list guests; they are unknown");
                        unreadable_nodes.insert(name.to_string());
                    }
                }
            }
        }
        let pool_ids =
            read_pool_ids(&api.get("/pools").await?).map_err(|e| api.shape_error("/pools", e))?;

        // Guest configs and pool details, at most MAX_CONCURRENT_CALLS at a time.
        let mut tasks = tokio::task::JoinSet::new();
        for (i, guest) in listed.iter().enumerate() {
            let (api, limit) = (api.clone(), self.limit.clone());
            let path = format!(
                "/nodes/{}/{}/{}/config",
                segment(&guest.node),
                guest.kind.path(),
                guest.vmid
            );
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                Fetched::Config(i, api.get(&path).await)
            });
        }
        for (i, poolid) in pool_ids.iter().enumerate() {
            let (api, limit) = (api.clone(), self.limit.clone());
            let path = format!("/pools/{}", segment(poolid));
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let detail = api.get(&path).await.and_then(|detail| {
                    read_pool(&path, &detail).map_err(|e| api.shape_error(&path, e))
                });
                Fetched::Pool(i, detail)
            });
        }
        let mut configs: BTreeMap<usize, Result<Json, ProviderError>> = BTreeMap::new();
        let mut pools: BTreeMap<usize, Result<PoolDetail, ProviderError>> = BTreeMap::new();
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Fetched::Config(i, r)) => {
                    configs.insert(i, r);
                }
                Ok(Fetched::Pool(i, r)) => {
                    pools.insert(i, r);
                }
                Err(e) => {
                    return Err(ProviderError::BadResponse {
                        provider: api.provider.clone(),
                        url: api.base.clone(),
                        detail: format!("a concurrent call failed: {e}"),
                        source: None,
                    })
                }
            }
        }
        // A token that lost its rights half way is not a per-guest problem.
        let errors = configs.values().filter_map(|r| r.as_ref().err());
        let mut errors = errors.chain(pools.values().filter_map(|r| r.as_ref().err()));
        if let Some(e) = errors.find(|e| matches!(e, ProviderError::Authentication { .. })) {
            return Err(e.clone());
        }

        let mut found = Found::default();
        let membership = Membership::new(desired, &pool_ids, &pools);
        self.guests(
            desired,
            &listed,
            configs,
            &unreadable_nodes,
            &membership,
            &mut found,
        );
        self.pools(desired, &pool_ids, pools, &membership, &mut found);
        let Found {
            mut resources,
            mut unobservable,
        } = found;
        resources.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        unobservable.sort();
        unobservable.dedup();
        Ok(Observation {
            provider: api.provider.clone(),
            observed_at,
            resources,
            unobservable,
            details: Default::default(),
            declared_elsewhere: Default::default(),
            version: None,
            hosts: nodes.into_iter().map(|(_, _, host)| host).collect(),
        })
    }

    /// Guests as `Device` resources, matched to desired devices by vmid.
    fn guests(
        &self,
        desired: &DesiredState,
        listed: &[Listed],
        mut configs: BTreeMap<usize, Result<Json, ProviderError>>,
        unreadable_nodes: &BTreeSet<String>,
        membership: &Membership,
        found: &mut Found,
    ) {
        let provider = &self.api.provider;
        let wanted: BTreeMap<u32, &DeviceDoc> = desired_guests(desired)
            .map(|d| {
                (
                    d.spec.proxmox.as_ref().map(|p| p.vmid).unwrap_or_default(),
                    d,
                )
            })
            .collect();
        let mut taken: BTreeSet<String> = desired
            .devices
            .iter()
            .map(|d| d.doc.metadata.name.clone())
            .collect();
        let mut seen: BTreeSet<u32> = BTreeSet::new();
        for (i, guest) in listed.iter().enumerate() {
            if !seen.insert(guest.vmid) {
                continue;
            }
            let doc = wanted.get(&guest.vmid).copied();
            let name = match doc {
                Some(d) => d.metadata.name.clone(),
                None => {
                    let base = match guest.name.as_deref() {
                        Some(n) if !n.trim().is_empty() => derive_name(n),
                        _ => format!("vm-{}", guest.vmid),
                    };
                    let name = unique_name(&base, &taken);
                    taken.insert(name.clone());
                    name
                }
            };
            let config = match configs.remove(&i) {
                Some(Ok(config)) => config,
                Some(Err(e)) => {
                    tracing::warn!(provider = %provider, guest = %name, vmid = guest.vmid, error = %e, "cannot read the guest's config; it is unknown");
                    let reason = format!("cannot read the config of vmid {}: {e}", guest.vmid);
                    self.unreadable_guest(doc, guest, name, reason, found);
                    continue;
                }
                None => continue,
            };
            let pool = match membership.pool_of(guest, doc) {
                Ok(pool) => pool,
                Err(reason) => {
                    if doc.is_some() {
                        found.unobservable.push(Unreadable::field(
                            Kind::Device,
                            name.clone(),
                            "spec.pool",
                            reason,
                        ));
                    }
                    None
                }
            };
            let fields = match guest_fields(guest, doc, pool, &config) {
                Ok(fields) => fields,
                Err(reason) => {
                    tracing::warn!(provider = %provider, guest = %name, vmid = guest.vmid, reason = %reason, "cannot interpret the guest's config; it is unknown");
                    let reason = format!(
                        "cannot interpret the config of vmid {}: {reason}",
                        guest.vmid
                    );
                    self.unreadable_guest(doc, guest, name, reason, found);
                    continue;
                }
            };
            found.resources.push(Resource {
                kind: Kind::Device,
                name,
                fields: fields.into(),
                key: None,
            });
        }
        // A desired guest that was not listed is missing, unless a node could not be listed:
        // it may be there (or have migrated there).
        if !unreadable_nodes.is_empty() {
            for (vmid, doc) in &wanted {
                if !seen.contains(vmid) {
                    found.unobservable.push(Unreadable::resource(
                        Kind::Device,
                        doc.metadata.name.clone(),
                        "not listed, and a node could not be listed: it may be there",
                    ));
                }
            }
        }
    }

    /// A guest whose config could not be read or understood: unknown when desired; when
    /// unmanaged, still reported with what the listing showed (its existence is certain).
    fn unreadable_guest(
        &self,
        doc: Option<&DeviceDoc>,
        guest: &Listed,
        name: String,
        reason: String,
        found: &mut Found,
    ) {
        if doc.is_some() {
            found
                .unobservable
                .push(Unreadable::resource(Kind::Device, name, reason));
        } else {
            found.resources.push(Resource {
                kind: Kind::Device,
                name,
                fields: json!({
                    "type": guest.kind.device_type(),
                    "proxmox": { "node": guest.node, "vmid": guest.vmid },
                })
                .into(),
                key: None,
            });
        }
    }

    /// Pools as `Pool` resources, matched to desired pools by `proxmoxPool`.
    fn pools(
        &self,
        desired: &DesiredState,
        pool_ids: &[String],
        mut details: BTreeMap<usize, Result<PoolDetail, ProviderError>>,
        membership: &Membership,
        found: &mut Found,
    ) {
        let wanted: BTreeSet<&str> = desired
            .pools
            .iter()
            .filter_map(|p| p.doc.spec.proxmox_pool.as_deref())
            .collect();
        for (i, poolid) in pool_ids.iter().enumerate() {
            let name = membership.names[i].clone();
            match details.remove(&i) {
                Some(Ok(detail)) => {
                    let mut fields = Map::new();
                    fields.insert("proxmoxPool".into(), json!(poolid));
                    if !wanted.contains(poolid.as_str()) {
                        fields.insert("type".into(), json!(detail.pool_type()));
                        if let Some(comment) = &detail.comment {
                            fields.insert("description".into(), json!(comment));
                        }
                    }
                    found.resources.push(Resource {
                        kind: Kind::Pool,
                        name,
                        fields: Json::Object(fields).into(),
                        key: None,
                    });
                }
                Some(Err(e)) => {
                    tracing::warn!(provider = %self.api.provider, pool = %poolid, error = %e, "cannot read the pool; it is unknown");
                    if wanted.contains(poolid.as_str()) {
                        let reason = format!("cannot read pool {poolid}: {e}");
                        found
                            .unobservable
                            .push(Unreadable::resource(Kind::Pool, name, reason));
                    }
                }
                None => {}
            }
        }
    }
}

impl Provider for ProxmoxProvider {
    fn name(&self) -> &str {
        &self.api.provider
    }

    from_factory!(Plugin);

    fn observe<'a>(
        &'a self,
        desired: &'a DesiredState,
    ) -> BoxFuture<'a, Result<Observation, ProviderError>> {
        Box::pin(self.observe_inner(desired))
    }

    fn read_only_reason(&self) -> &str {
        "the Proxmox VE provider observes only; change guests and pools in Proxmox VE or in \
             Git"
    }
}

impl Api {
    /// `GET /api2/json{path}` with timeout and retries; the `data` member of the answer.
    async fn get(&self, path: &str) -> Result<Json, ProviderError> {
        self.policy
            .run(&self.provider, || self.get_once(path))
            .await
    }

    async fn get_once(&self, path: &str) -> Result<Json, ProviderError> {
        let url = format!("{}/api2/json{path}", self.base);
        let request = self
            .client
            .get(&url)
            .header(AUTHORIZATION, self.auth.clone());
        let Reply {
            status,
            body: bytes,
            ..
        } = http::exchange(request, self.limit(&url), |e| self.transport_error(&url, e)).await?;
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(ProviderError::Authentication {
                provider: self.provider.clone(),
                url,
                detail: "HTTP 401: Proxmox VE refused the API token; check USER@REALM!TOKENID \
                         and the secret"
                    .into(),
                source: None,
            });
        }
        if status == reqwest::StatusCode::FORBIDDEN {
            return Err(ProviderError::Authentication {
                provider: self.provider.clone(),
                url,
                detail: format!(
                    "HTTP 403: the token lacks a permission (it needs Sys.Audit, VM.Audit and \
                     Pool.Audit, e.g. the PVEAuditor role): {}",
                    pve_message(&bytes)
                ),
                source: None,
            });
        }
        if !status.is_success() {
            let detail = format!("HTTP {status}: {}", pve_message(&bytes));
            // 595/596 are pveproxy's "cannot reach that node": worth another try.
            return Err(if status.as_u16() >= 595 {
                ProviderError::Unreachable {
                    provider: self.provider.clone(),
                    url,
                    detail,
                    source: None,
                }
            } else {
                ProviderError::BadResponse {
                    provider: self.provider.clone(),
                    url,
                    detail,
                    source: None,
                }
            });
        }
        let (bytes, parsed) = http::parse_json::<serde_json::Value>(bytes).await;
        let mut parsed = parsed.map_err(|e| ProviderError::BadResponse {
            provider: self.provider.clone(),
            url: url.clone(),
            detail: format!("the answer is not JSON: {e}"),
            source: None,
        })?;
        match parsed.get_mut("data").map(Json::take) {
            Some(data) if !data.is_null() => Ok(data),
            _ => Err(ProviderError::BadResponse {
                provider: self.provider.clone(),
                url,
                detail: format!("expected {{\"data\": …}}, got {}", excerpt_bytes(&bytes)),
                source: None,
            }),
        }
    }

    /// The most of an answer from `url` that is read.
    fn limit<'a>(&'a self, url: &'a str) -> BodyLimit<'a> {
        BodyLimit {
            provider: &self.provider,
            url,
            max_bytes: self.policy.max_body_bytes,
        }
    }

    /// The answer of `path` is of a shape labctl does not understand.
    fn shape_error(&self, path: &str, e: ShapeError) -> ProviderError {
        e.into_provider_error(&self.provider, &format!("{}/api2/json{path}", self.base))
    }

    fn transport_error(&self, url: &str, e: reqwest::Error) -> ProviderError {
        let classify = Classify {
            certificate_is_authentication: true,
            body_is_bad_response: true,
        };
        http::transport_error(&self.provider, url, self.policy.timeout, e, classify)
    }
}

/// Which API collection a guest is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GuestKind {
    Qemu,
    Lxc,
}

impl GuestKind {
    fn path(self) -> &'static str {
        match self {
            GuestKind::Qemu => "qemu",
            GuestKind::Lxc => "lxc",
        }
    }

    fn device_type(self) -> &'static str {
        match self {
            GuestKind::Qemu => "vm",
            GuestKind::Lxc => "lxc",
        }
    }
}

/// A guest from a node's listing.
#[derive(Debug, Clone)]
struct Listed {
    node: String,
    vmid: u32,
    kind: GuestKind,
    name: Option<String>,
}

/// Which pool each guest is in, as a labctl pool path: read from every pool's `members`.
struct Membership {
    /// The resource name of each Proxmox VE pool, by its index in the pool list: the desired
    /// pool that maps it, or a name derived from its id.
    names: Vec<String>,
    /// `qemu/202` → the path standing for its pool.
    paths: BTreeMap<String, String>,
    /// Desired pool paths that map a Proxmox VE pool.
    mapped_paths: BTreeSet<String>,
    /// Why membership is unknown: a pool could not be read, or a guest is listed in two.
    unknown: BTreeMap<String, String>,
    unknown_all: Option<String>,
}

impl Membership {
    fn new(
        desired: &DesiredState,
        pool_ids: &[String],
        details: &BTreeMap<usize, Result<PoolDetail, ProviderError>>,
    ) -> Self {
        let tree = desired.pool_tree().unwrap_or_default();
        let mut by_id: BTreeMap<&str, (&str, String)> = BTreeMap::new();
        for pool in &desired.pools {
            if let Some(id) = pool.doc.spec.proxmox_pool.as_deref() {
                let name = pool.doc.metadata.name.as_str();
                let path = tree
                    .get(name)
                    .map_or_else(|| format!("/{name}"), |p| p.path.clone());
                by_id.insert(id, (name, path));
            }
        }
        let mut taken: BTreeSet<String> = desired
            .pools
            .iter()
            .map(|p| p.doc.metadata.name.clone())
            .collect();
        let mut m = Membership {
            names: Vec::new(),
            paths: BTreeMap::new(),
            mapped_paths: by_id.values().map(|(_, p)| p.clone()).collect(),
            unknown: BTreeMap::new(),
            unknown_all: None,
        };
        for (i, poolid) in pool_ids.iter().enumerate() {
            let (name, path) = match by_id.get(poolid.as_str()) {
                Some((name, path)) => (name.to_string(), path.clone()),
                None => {
                    let name = unique_name(&derive_name(poolid), &taken);
                    taken.insert(name.clone());
                    let path = format!("/{name}");
                    (name, path)
                }
            };
            m.names.push(name);
            let detail = match details.get(&i) {
                Some(Ok(detail)) => detail,
                Some(Err(e)) => {
                    m.unknown_all = Some(format!("pool {poolid} could not be read: {e}"));
                    continue;
                }
                None => continue,
            };
            for member in detail.members.iter().cloned() {
                if let Some(other) = m.paths.insert(member.clone(), path.clone()) {
                    if other != path {
                        let reason = format!(
                            "{member} is listed as a member of two pools ({other}, {path})"
                        );
                        m.unknown.insert(member, reason);
                    }
                }
            }
        }
        m
    }

    /// The `pool` of `guest` as observed: the path of its pool; for a desired guest whose
    /// declared pool maps no Proxmox VE pool, that declared path when the guest is in no pool
    /// or one labctl does not map (nothing contradicts it). `Err` when it cannot be known.
    fn pool_of(&self, guest: &Listed, doc: Option<&DeviceDoc>) -> Result<Option<String>, String> {
        let key = format!("{}/{}", guest.kind.path(), guest.vmid);
        if let Some(reason) = self.unknown.get(&key).or(self.unknown_all.as_ref()) {
            return Err(reason.clone());
        }
        let live = self.paths.get(&key);
        let Some(doc) = doc else {
            return Ok(live.cloned());
        };
        let declared = doc.spec.pool.as_deref();
        let in_mapped = live.is_some_and(|p| self.mapped_paths.contains(p));
        let declared_maps = declared.is_some_and(|d| self.mapped_paths.contains(d));
        if in_mapped || declared_maps {
            Ok(live.cloned())
        } else {
            Ok(declared.map(str::to_string))
        }
    }
}

/// What an observation found so far: resources, and what could not be read.
#[derive(Default)]
struct Found {
    resources: Vec<Resource>,
    unobservable: Vec<Unreadable>,
}

enum Fetched {
    Config(usize, Result<Json, ProviderError>),
    Pool(usize, Result<PoolDetail, ProviderError>),
}

fn desired_guests(desired: &DesiredState) -> impl Iterator<Item = &DeviceDoc> {
    desired
        .devices
        .iter()
        .map(|d| &d.doc)
        .filter(|d| d.spec.device_type.is_guest() && d.spec.proxmox.is_some())
}

/// A desired guest in the shape [`guest_fields`] observes.
fn expected_guest(doc: &DeviceDoc) -> Json {
    let spec = &doc.spec;
    let mut fields = Map::new();
    fields.insert(
        "type".into(),
        json!(match spec.device_type {
            DeviceType::Lxc => "lxc",
            _ => "vm",
        }),
    );
    if let Some(px) = &spec.proxmox {
        fields.insert(
            "proxmox".into(),
            json!({ "node": px.node, "vmid": px.vmid }),
        );
    }
    fields.insert("pool".into(), json!(spec.pool));
    if let Some(cores) = spec.cores {
        fields.insert("cores".into(), json!(cores));
    }
    if let Some(memory) = spec.memory_mib {
        fields.insert("memoryMiB".into(), json!(memory));
    }
    if !spec.disks.is_empty() {
        let mut disks: Vec<Json> = spec
            .disks
            .iter()
            .map(|d| {
                let mut disk = Map::new();
                disk.insert("name".into(), json!(d.name));
                if let Some(storage) = &d.storage {
                    disk.insert("storage".into(), json!(storage));
                }
                disk.insert("sizeGiB".into(), json!(d.size_gib));
                Json::Object(disk)
            })
            .collect();
        sort_by_name(&mut disks);
        fields.insert("disks".into(), Json::Array(disks));
    }
    if !spec.interfaces.is_empty() {
        let mut interfaces: Vec<Json> = spec
            .interfaces
            .iter()
            .map(|i| {
                let mut nic = Map::new();
                nic.insert("name".into(), json!(i.name));
                if let Some(mac) = &i.mac {
                    nic.insert("mac".into(), json!(mac.to_string()));
                }
                if let Some(bridge) = &i.bridge {
                    nic.insert("bridge".into(), json!(bridge));
                }
                if let Some(vlan) = i.vlan {
                    nic.insert("vlan".into(), json!(vlan));
                }
                Json::Object(nic)
            })
            .collect();
        sort_by_name(&mut interfaces);
        fields.insert("interfaces".into(), Json::Array(interfaces));
    }
    Json::Object(fields)
}

/// A live guest in the shape of [`expected_guest`]. For a desired guest only what its
/// document declares is kept (a field Git does not declare is never drift); an unmanaged
/// guest shows everything. `Err` says why the config could not be understood.
fn guest_fields(
    guest: &Listed,
    doc: Option<&DeviceDoc>,
    pool: Option<String>,
    config: &Json,
) -> Result<Json, String> {
    let config = config
        .as_object()
        .ok_or_else(|| "the config is not a JSON object".to_string())?;
    let mut fields = Map::new();
    fields.insert("type".into(), json!(guest.kind.device_type()));
    fields.insert(
        "proxmox".into(),
        json!({ "node": guest.node, "vmid": guest.vmid }),
    );
    if let Some(pool) = pool {
        fields.insert("pool".into(), json!(pool));
    }
    // cores: qm.conf `cores` (integer, default 1: cores per socket; `sockets` is not
    // modelled); pct.conf `cores` (integer, absent means every host core, shown as absent).
    match config.get("cores") {
        Some(v) => {
            let cores = as_u64(v).ok_or_else(|| format!("`cores` is not an integer: {v}"))?;
            fields.insert("cores".into(), json!(cores));
        }
        None if guest.kind == GuestKind::Qemu => {
            fields.insert("cores".into(), json!(1));
        }
        None => {}
    }
    // memory: MiB; qm.conf default 512, since PVE 8.1 the property string
    // `[current=]<integer>`; pct.conf integer, default 512.
    let memory = match config.get("memory") {
        None => 512,
        Some(v) => parse_memory(v).ok_or_else(|| format!("`memory` is not understood: {v}"))?,
    };
    fields.insert("memoryMiB".into(), json!(memory));

    let mut disks = Vec::new();
    let mut nics = Vec::new();
    for (key, value) in config {
        let disk = is_data_disk(guest.kind, key);
        if !disk && !is_indexed(key, "net") {
            continue;
        }
        // A disk or NIC that is not a property string is not understood, never left out.
        let text = value.as_str().ok_or_else(|| {
            format!(
                "`{key}` is {}, expected a string",
                super::shape::type_name(value)
            )
        })?;
        if disk {
            if let Some(disk) = parse_disk(key, text)? {
                disks.push(disk);
            }
        } else {
            nics.push(parse_net(guest.kind, key, text)?);
        }
    }
    // lxc: the interface is named as in the container (`name=eth0`), unless the document
    // names its interfaces by config key (`net0`).
    if guest.kind == GuestKind::Lxc {
        let by_key = doc.is_some_and(|d| {
            !d.spec.interfaces.is_empty()
                && d.spec.interfaces.iter().all(|i| is_indexed(&i.name, "net"))
        });
        for (key, nic) in nics.iter_mut() {
            if by_key {
                nic.insert("name".into(), json!(key));
            }
        }
    }
    let mut disks: Vec<Json> = disks.into_iter().map(Json::Object).collect();
    let mut nics: Vec<Json> = nics.into_iter().map(|(_, n)| Json::Object(n)).collect();
    sort_by_name(&mut disks);
    sort_by_name(&mut nics);
    fields.insert("disks".into(), Json::Array(disks));
    fields.insert("interfaces".into(), Json::Array(nics));

    let mut fields = Json::Object(fields);
    if let Some(doc) = doc {
        fields = prune(fields, &expected_guest(doc));
    }
    Ok(fields)
}

/// Keeps only what `expected` declares: its keys, and within the `disks` and `interfaces`
/// lists, the keys of the declared element of the same name (live elements Git does not
/// declare stay whole, so an extra disk is drift).
fn prune(live: Json, expected: &Json) -> Json {
    let (Json::Object(live), Some(exp)) = (live, expected.as_object()) else {
        return Json::Null;
    };
    let mut out = Map::new();
    for (key, value) in live {
        let Some(declared) = exp.get(&key) else {
            continue;
        };
        let value = match (key.as_str(), value) {
            ("disks" | "interfaces", Json::Array(items)) => {
                let declared: BTreeMap<&str, &Map<String, Json>> = declared
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|d| Some((d.get("name")?.as_str()?, d.as_object()?)))
                    .collect();
                Json::Array(
                    items
                        .into_iter()
                        .map(|item| {
                            let name = item.get("name").and_then(Json::as_str).unwrap_or("");
                            match (declared.get(name), item) {
                                (Some(d), Json::Object(m)) => Json::Object(
                                    m.into_iter().filter(|(k, _)| d.contains_key(k)).collect(),
                                ),
                                (_, item) => item,
                            }
                        })
                        .collect(),
                )
            }
            (_, value) => value,
        };
        out.insert(key, value);
    }
    Json::Object(out)
}

/// `scsi0`, `virtio3`, `sata1`, `ide0` (qemu) or `rootfs`, `mp0` (lxc). Left out on purpose:
/// `efidisk0` and `tpmstate0` (firmware state of a few MiB), `unusedN` (detached volumes),
/// and CD-ROM drives (`media=cdrom`, skipped in [`parse_disk`]).
fn is_data_disk(kind: GuestKind, key: &str) -> bool {
    match kind {
        GuestKind::Qemu => ["ide", "sata", "scsi", "virtio"]
            .iter()
            .any(|p| is_indexed(key, p)),
        GuestKind::Lxc => key == "rootfs" || is_indexed(key, "mp"),
    }
}

/// `key` is `prefix` followed by a decimal index.
fn is_indexed(key: &str, prefix: &str) -> bool {
    key.strip_prefix(prefix)
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Splits a Proxmox property string (`a=b,c=d`, first element possibly without a key).
fn properties(text: &str) -> Vec<(Option<&str>, &str)> {
    text.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (Some(k.trim()), v.trim()),
            None => (None, p.trim()),
        })
        .collect()
}

/// A disk, `[file=]<volume>[,size=<DiskSize>][,…]`, as `{name, storage, sizeGiB}`; `None` for a
/// CD-ROM drive. The storage is the part of the volume id before `:`; a pass-through device
/// (`/dev/…`) has none.
fn parse_disk(key: &str, text: &str) -> Result<Option<Map<String, Json>>, String> {
    let props = properties(text);
    if props
        .iter()
        .any(|(k, v)| *k == Some("media") && *v == "cdrom")
    {
        return Ok(None);
    }
    let volume = props
        .iter()
        .find(|(k, _)| k.is_none() || *k == Some("file") || *k == Some("volume"))
        .map(|(_, v)| *v)
        .ok_or_else(|| format!("disk `{key}` names no volume: `{text}`"))?;
    let size = props
        .iter()
        .find(|(k, _)| *k == Some("size"))
        .map(|(_, v)| *v)
        .ok_or_else(|| format!("disk `{key}` has no size: `{text}`"))?;
    let size = parse_size_gib(size)
        .ok_or_else(|| format!("disk `{key}` has a size labctl does not understand: `{size}`"))?;
    let mut disk = Map::new();
    disk.insert("name".into(), json!(key));
    if let Some((storage, _)) = volume.split_once(':') {
        if !storage.is_empty() && !volume.starts_with('/') {
            disk.insert("storage".into(), json!(storage));
        }
    }
    disk.insert("sizeGiB".into(), size);
    Ok(Some(disk))
}

/// A Proxmox `DiskSize` (`\d+(\.\d+)?[KMGT]?`, bytes without a unit) in GiB: an integer when
/// it is whole (`200G` → 200, `1T` → 1024), else the exact fraction (`512M` → 0.5). `None` for
/// anything else.
pub fn parse_size_gib(raw: &str) -> Option<Json> {
    let raw = raw.trim();
    let (number, shift) = match raw.as_bytes().last()? {
        b'K' | b'k' => (&raw[..raw.len() - 1], 10u32),
        b'M' | b'm' => (&raw[..raw.len() - 1], 20),
        b'G' | b'g' => (&raw[..raw.len() - 1], 30),
        b'T' | b't' => (&raw[..raw.len() - 1], 40),
        b'0'..=b'9' => (raw, 0),
        _ => return None,
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 9 {
        return None;
    }
    if number.contains('.') && fraction.is_empty() {
        return None;
    }
    // Exact arithmetic: bytes = mantissa * 2^shift / 10^scale.
    let mantissa: u128 = format!("{whole}{fraction}").parse().ok()?;
    let scale = 10u128.pow(fraction.len() as u32);
    let numerator = mantissa.checked_mul(1u128 << shift)?;
    let denominator = scale.checked_mul(1u128 << 30)?;
    if numerator % denominator == 0 {
        Some(json!(u64::try_from(numerator / denominator).ok()?))
    } else {
        Some(json!(numerator as f64 / denominator as f64))
    }
}

/// MiB from qm.conf/pct.conf `memory`: an integer, a numeric string, or `current=<integer>`.
fn parse_memory(v: &Json) -> Option<u64> {
    if let Some(n) = as_u64(v) {
        return Some(n);
    }
    let text = v.as_str()?;
    properties(text).into_iter().find_map(|(k, v)| match k {
        None | Some("current") => v.parse().ok(),
        _ => None,
    })
}

/// The qemu network models of qm.conf `netN` (`<model>=<macaddr>` shorthand).
const QEMU_NIC_MODELS: [&str; 13] = [
    "e1000",
    "e1000-82540em",
    "e1000-82544gc",
    "e1000-82545em",
    "e1000e",
    "i82551",
    "i82557b",
    "i82559er",
    "ne2k_isa",
    "ne2k_pci",
    "pcnet",
    "rtl8139",
    "virtio",
];

/// A `netN` entry as `(key, {name, mac, bridge, vlan})`.
///
/// qemu: `[model=]<enum>[,macaddr=<mac>]` or `<model>=<mac>`, `bridge=<bridge>`,
/// `tag=<integer>`; e.g. `virtio=BC:24:11:5E:02:02,bridge=vmbr0,tag=10`.
/// lxc: `name=<string>,bridge=<bridge>,hwaddr=<mac>,tag=<integer>,ip=…`; `ip` is left out.
fn parse_net(
    kind: GuestKind,
    key: &str,
    text: &str,
) -> Result<(String, Map<String, Json>), String> {
    let mut nic = Map::new();
    nic.insert("name".into(), json!(key));
    for (k, v) in properties(text) {
        let mac = |v: &str| {
            v.parse::<MacAddress>()
                .map(|m| json!(m.to_string()))
                .map_err(|_| format!("`{key}` has an invalid MAC address `{v}`"))
        };
        match (kind, k) {
            (_, Some("bridge")) => {
                nic.insert("bridge".into(), json!(v));
            }
            (_, Some("tag")) => {
                let vlan: u16 = v
                    .parse()
                    .map_err(|_| format!("`{key}` has an invalid VLAN tag `{v}`"))?;
                nic.insert("vlan".into(), json!(vlan));
            }
            (GuestKind::Qemu, Some("macaddr")) => {
                nic.insert("mac".into(), mac(v)?);
            }
            (GuestKind::Qemu, Some(model)) if QEMU_NIC_MODELS.contains(&model) => {
                nic.insert("mac".into(), mac(v)?);
            }
            (GuestKind::Lxc, Some("hwaddr")) => {
                nic.insert("mac".into(), mac(v)?);
            }
            (GuestKind::Lxc, Some("name")) => {
                nic.insert("name".into(), json!(v));
            }
            _ => {}
        }
    }
    Ok((key.to_string(), nic))
}

/// `GET /nodes`: each node's name and status (`online`, `offline`, `unknown`), with its
/// capacity where the answer gives it (`maxcpu` threads, `maxmem` bytes; anything else there
/// leaves the capacity unknown).
fn read_nodes(data: &Json) -> Result<Vec<(String, Option<String>, Host)>, ShapeError> {
    At::root("Proxmox VE /nodes", "data", data)
        .items()?
        .map(|node| {
            let name = node.req("node")?.str()?.to_string();
            let status = node.opt_str("status")?.map(str::to_string);
            let number = |key: &str| -> Result<Option<u64>, ShapeError> {
                Ok(node.get(key)?.and_then(|v| as_u64(v.value())))
            };
            let host = Host {
                name: name.clone(),
                online: status.as_deref() == Some("online"),
                cores: number("maxcpu")?,
                memory_mib: number("maxmem")?.map(|bytes| bytes / (1 << 20)),
            };
            Ok((name, status, host))
        })
        .collect()
}

/// `GET /nodes/{node}/{qemu,lxc}` (at `path`): the guests of `node`.
fn read_guests(
    path: &str,
    node: &str,
    kind: GuestKind,
    data: &Json,
) -> Result<Vec<Listed>, ShapeError> {
    let answer = format!("Proxmox VE {path}");
    let root = At::root(&answer, "data", data);
    let guests = root.items()?;
    guests
        .map(|guest| {
            let vmid = guest.req("vmid")?;
            let vmid = as_u32(vmid.value()).ok_or_else(|| vmid.error("is not a VM id"))?;
            Ok(Listed {
                node: node.to_string(),
                vmid,
                kind,
                name: guest.opt_str("name")?.map(str::to_string),
            })
        })
        .collect()
}

/// `GET /pools`: every pool id.
fn read_pool_ids(data: &Json) -> Result<Vec<String>, ShapeError> {
    At::root("Proxmox VE /pools", "data", data)
        .items()?
        .map(|pool| Ok(pool.req("poolid")?.str()?.to_string()))
        .collect()
}

/// What `GET /pools/{poolid}` says of a pool.
#[derive(Debug, Clone, PartialEq)]
struct PoolDetail {
    /// Its guests, as `qemu/202` or `lxc/251`.
    members: Vec<String>,
    /// It holds storage and no guest.
    storage_only: bool,
    /// Its comment, trimmed; `None` when empty.
    comment: Option<String>,
}

impl PoolDetail {
    /// The `type` of an imported pool: `storage` for one that holds only storage.
    fn pool_type(&self) -> &'static str {
        if self.storage_only {
            "storage"
        } else {
            "compute"
        }
    }
}

/// `GET /pools/{poolid}` (at `path`), read strictly: a member whose shape is not Proxmox VE's
/// makes the whole pool unreadable, never a guest silently out of it.
fn read_pool(path: &str, data: &Json) -> Result<PoolDetail, ShapeError> {
    let answer = format!("Proxmox VE {path}");
    let root = At::root(&answer, "data", data);
    let mut members = Vec::new();
    let mut storage = false;
    for member in root.opt_items("members")? {
        let kind = member.req("type")?.str()?;
        if kind != "qemu" && kind != "lxc" {
            storage |= kind == "storage";
            continue;
        }
        let vmid = match member.get("vmid")? {
            Some(v) => as_u32(v.value()).ok_or_else(|| v.error("is not a VM id"))?,
            None => {
                let id = member.req("id")?;
                id.str()?
                    .strip_prefix(kind)
                    .and_then(|rest| rest.strip_prefix('/'))
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| id.error(format!("is not `{kind}/VMID`")))?
            }
        };
        members.push(format!("{kind}/{vmid}"));
    }
    members.sort();
    members.dedup();
    let comment = root
        .opt_str("comment")?
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    Ok(PoolDetail {
        storage_only: storage && members.is_empty(),
        members,
        comment,
    })
}

fn sort_by_name(items: &mut [Json]) {
    items.sort_by(|a, b| {
        let name = |v: &Json| {
            v.get("name")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_string()
        };
        name(a).cmp(&name(b))
    });
}

fn as_u64(v: &Json) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

fn as_u32(v: &Json) -> Option<u32> {
    as_u64(v).and_then(|n| u32::try_from(n).ok())
}

/// A path segment: node names and pool ids are `[A-Za-z0-9_.-]` in Proxmox VE, anything
/// else is percent-encoded.
fn segment(raw: &str) -> String {
    let mut out = String::new();
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn describe(source: &SecretSource) -> String {
    match source {
        SecretSource::Env(var) => format!("the environment variable {var}"),
        SecretSource::File(path) => format!("the file {}", path.display()),
        SecretSource::SystemdCredential(name) => format!("the systemd credential {name}"),
    }
}

/// Says what is wrong with the shape of `USER@REALM!TOKENID=SECRET`, without quoting it.
fn check_token_shape(token: &str) -> Result<(), &'static str> {
    let (id, secret) = token.split_once('=').ok_or("has no `=SECRET` part")?;
    let (user, token_id) = id.split_once('!').ok_or("has no `!TOKENID` part")?;
    if !user.contains('@') {
        return Err("has no `@REALM` in the user");
    }
    if token_id.is_empty() || secret.is_empty() {
        return Err("has an empty token id or secret");
    }
    if token.chars().any(char::is_whitespace) {
        return Err("contains whitespace");
    }
    Ok(())
}

/// Proxmox VE's own explanation of an error answer: `message`, then per-parameter `errors`.
fn pve_message(body: &[u8]) -> String {
    let Ok(parsed) = serde_json::from_slice::<Json>(body) else {
        return excerpt_bytes(body);
    };
    let mut parts = Vec::new();
    if let Some(message) = parsed.get("message").and_then(Json::as_str) {
        parts.push(message.trim().to_string());
    }
    if let Some(errors) = parsed.get("errors").and_then(Json::as_object) {
        for (param, why) in errors {
            parts.push(format!(
                "{param}: {}",
                why.as_str().unwrap_or_default().trim()
            ));
        }
    }
    if parts.is_empty() {
        excerpt_bytes(body)
    } else {
        excerpt(&parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_to_gib_exactly() {
        assert_eq!(parse_size_gib("200G"), Some(json!(200)));
        assert_eq!(parse_size_gib("1T"), Some(json!(1024)));
        assert_eq!(parse_size_gib("512M"), Some(json!(0.5)));
        assert_eq!(parse_size_gib("2048M"), Some(json!(2)));
        assert_eq!(parse_size_gib("1.5G"), Some(json!(1.5)));
        assert_eq!(parse_size_gib("1073741824"), Some(json!(1)));
        assert_eq!(parse_size_gib("4M"), Some(json!(4.0 / 1024.0)));
        for bad in ["", "G", "12X", "1.G", ".5G", "-1G", "1e3G", "twoG"] {
            assert_eq!(parse_size_gib(bad), None, "{bad}");
        }
    }

    #[test]
    fn qemu_and_lxc_network_strings() {
        let (_, nic) = parse_net(
            GuestKind::Qemu,
            "net0",
            "virtio=BC:24:11:5E:02:02,bridge=vmbr0,tag=10,firewall=1",
        )
        .unwrap();
        assert_eq!(
            Json::Object(nic),
            json!({ "name": "net0", "mac": "bc:24:11:5e:02:02", "bridge": "vmbr0", "vlan": 10 })
        );
        let (_, nic) = parse_net(
            GuestKind::Qemu,
            "net1",
            "model=e1000,macaddr=BC:24:11:00:00:01,bridge=vmbr1",
        )
        .unwrap();
        assert_eq!(nic["mac"], "bc:24:11:00:00:01");
        let (_, nic) = parse_net(
            GuestKind::Lxc,
            "net0",
            "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:AA:00:01,ip=dhcp,type=veth",
        )
        .unwrap();
        assert_eq!(
            Json::Object(nic),
            json!({ "name": "eth0", "mac": "bc:24:11:aa:00:01", "bridge": "vmbr0" })
        );
        assert!(parse_net(GuestKind::Qemu, "net0", "virtio=nope,bridge=vmbr0").is_err());
        assert!(parse_net(GuestKind::Qemu, "net0", "virtio=BC:24:11:5E:02:02,tag=x").is_err());
    }

    #[test]
    fn disks_and_cdroms() {
        let disk = parse_disk("scsi0", "local-lvm:vm-202-disk-0,iothread=1,size=200G")
            .unwrap()
            .unwrap();
        assert_eq!(
            Json::Object(disk),
            json!({ "name": "scsi0", "storage": "local-lvm", "sizeGiB": 200 })
        );
        assert_eq!(
            parse_disk("ide2", "local:iso/debian.iso,media=cdrom").unwrap(),
            None
        );
        assert!(parse_disk("scsi1", "local-lvm:vm-202-disk-1").is_err());
        assert!(parse_disk("scsi1", "local-lvm:vm-202-disk-1,size=lots").is_err());
        assert!(is_data_disk(GuestKind::Qemu, "virtio12"));
        assert!(!is_data_disk(GuestKind::Qemu, "efidisk0"));
        assert!(!is_data_disk(GuestKind::Qemu, "unused0"));
        assert!(is_data_disk(GuestKind::Lxc, "mp3"));
    }

    #[test]
    fn memory_in_both_api_shapes() {
        assert_eq!(parse_memory(&json!(4096)), Some(4096));
        assert_eq!(parse_memory(&json!("4096")), Some(4096));
        assert_eq!(parse_memory(&json!("current=2048")), Some(2048));
        assert_eq!(parse_memory(&json!("lots")), None);
    }

    #[test]
    fn fingerprints_and_token_shapes() {
        let fp = "ab:".repeat(31) + "AB";
        assert_eq!(parse_fingerprint(&fp), Some([0xab; 32]));
        assert_eq!(parse_fingerprint(&"ab".repeat(32)), Some([0xab; 32]));
        assert_eq!(parse_fingerprint("AB:CD"), None);
        // A sign is not a hex digit, though `u8::from_str_radix` would take `+f`.
        assert_eq!(parse_fingerprint(&"+f".repeat(32)), None);
        assert!(check_token_shape("labctl@pve!observe=0b5c-11").is_ok());
        assert!(check_token_shape("labctl@pve!observe").is_err());
        assert!(check_token_shape("labctl!observe=x").is_err());
        assert!(check_token_shape("labctl@pve=x").is_err());
    }

    #[test]
    fn pool_members_from_either_field_type_and_comment() {
        let detail = json!({ "comment": " GPU nodes ", "members": [
            { "id": "qemu/202", "type": "qemu", "vmid": 202, "node": "a" },
            { "id": "lxc/251", "type": "lxc", "node": "a" },
            { "id": "storage/a/local", "type": "storage", "node": "a" },
        ] });
        let pool = read_pool("/pools/p", &detail).unwrap();
        assert_eq!(pool.members, ["lxc/251", "qemu/202"]);
        assert_eq!(
            (pool.pool_type(), pool.comment.as_deref()),
            ("compute", Some("GPU nodes"))
        );
        let storage = json!({ "members": [{ "id": "storage/a/local", "type": "storage" }] });
        assert_eq!(
            read_pool("/pools/p", &storage).unwrap().pool_type(),
            "storage"
        );
        assert!(read_pool("/pools/p", &json!({}))
            .unwrap()
            .members
            .is_empty());
        let bad = json!({ "members": [{ "id": "qemu/x", "type": "qemu" }] });
        assert_eq!(
            read_pool("/pools/p", &bad).unwrap_err().to_string(),
            "Proxmox VE /pools/p: data.members[0].id is not `qemu/VMID`"
        );
        let comment = json!({ "comment": 7, "members": [] });
        assert!(read_pool("/pools/p", &comment).is_err());
    }
}
