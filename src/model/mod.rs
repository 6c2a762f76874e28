//! The desired-state document model: pure data, no I/O.
//!
//! Every document is Kubernetes-shaped (`apiVersion`, `kind`, `metadata`, `spec`). Field names
//! are camelCase in YAML. Unknown fields are refused (`deny_unknown_fields`), so a typo never
//! silently drops a setting.

mod config;
mod device;
mod dhcp;
mod mcp;
mod net;
mod pool;
mod route;
pub mod schema;
mod value;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use config::parse_fingerprint;
pub use config::{
    AuthorSpec, ConfigSpec, Credential, ForgeKind, ForgeSpec, IgnoreSpec, Policy, ProposeSpec,
    ProviderConfig, SafetySpec, SecretSource, SuspendSpec, TlsConfig,
};
pub use device::{
    DeviceSpec, DeviceType, Disk, NetworkInterface, ProxmoxGuest, Service, ServiceProtocol,
};
pub use dhcp::{DhcpOption, DhcpReservationSpec};
pub use mcp::{McpAuth, McpServerSpec, McpTransport};
pub use net::{Ipv4Cidr, MacAddress};
pub use pool::{Capacity, PoolSpec, PoolType};
pub use route::{Backend, RouteSpec, ServiceRef, Tls};
pub use value::Value;

/// The one `apiVersion` this build understands.
pub const API_VERSION: &str = "labctl.dev/v1";

/// The file at the repository root that holds the [`Kind::Config`] document.
pub const CONFIG_FILE: &str = "labctl.yaml";

text_enum! {
    /// The kinds of document, as `kind:` names them.
    serde Kind {
        Pool = "Pool",
        Device = "Device",
        DhcpReservation = "DhcpReservation",
        Route = "Route",
        McpServer = "McpServer",
        Config = "Config",
    }
}

impl Kind {
    /// Fields a provider reports about a live object's condition rather than its
    /// configuration (a route its proxy disabled, and why): never in Git, so never written;
    /// a difference in one is reported, but no write can put it right.
    pub fn state_fields(self) -> &'static [&'static str] {
        match self {
            Kind::Route => &["status", "errors", "serversDown"],
            _ => &[],
        }
    }
}

/// Identity and free-form labels of a document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    /// Unique among documents of the same kind: lowercase letters, digits and `-`.
    pub name: String,
    /// Selector labels (`role: inference`), matched by `list_devices` and friends.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Notes for people and tools; never interpreted as configuration.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// How labctl treats this resource: suspend it, or leave some fields alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile: Option<ReconcileOptions>,
}

/// Per-resource reconcile options. A reason is required: the plan shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReconcileOptions {
    /// Observe and report, but never apply or propose changes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// Field paths (`spec.hostname`) another system legitimately changes; a path covers
    /// everything below it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_fields: Vec<String>,
    pub reason: String,
}

/// A document of one kind, as written in YAML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Document<S> {
    /// Always `labctl.dev/v1`.
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: S,
}

pub type PoolDoc = Document<PoolSpec>;
pub type DeviceDoc = Document<DeviceSpec>;
pub type DhcpReservationDoc = Document<DhcpReservationSpec>;
pub type RouteDoc = Document<RouteSpec>;
pub type McpServerDoc = Document<McpServerSpec>;
pub type ConfigDoc = Document<ConfigSpec>;

/// Where a document was read from: a file and the 1-based line its document starts on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Origin {
    pub file: String,
    pub line: usize,
}

/// A document together with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub doc: T,
    pub origin: Origin,
}

/// The whole desired state of a lab, as loaded from one revision. Only ever built from a
/// snapshot that validated without errors.
#[derive(Debug, Clone, Default)]
pub struct DesiredState {
    pub config: Option<Located<ConfigDoc>>,
    pub pools: Vec<Located<PoolDoc>>,
    pub devices: Vec<Located<DeviceDoc>>,
    pub reservations: Vec<Located<DhcpReservationDoc>>,
    pub routes: Vec<Located<RouteDoc>>,
    pub mcp_servers: Vec<Located<McpServerDoc>>,
}

impl DesiredState {
    /// Number of documents of each kind, in [`Kind::ALL`] order.
    pub fn counts(&self) -> Vec<(Kind, usize)> {
        vec![
            (Kind::Pool, self.pools.len()),
            (Kind::Device, self.devices.len()),
            (Kind::DhcpReservation, self.reservations.len()),
            (Kind::Route, self.routes.len()),
            (Kind::McpServer, self.mcp_servers.len()),
            (Kind::Config, usize::from(self.config.is_some())),
        ]
    }

    /// Writes the whole desired state as one canonical JSON document (documents per kind, in
    /// load order), for desired-state snapshots: document by document, never the whole state
    /// as one value.
    pub fn write_canonical<W: std::io::Write>(&self, w: &mut crate::canonical::Writer<W>) {
        fn docs<T: Serialize, W: std::io::Write>(
            w: &mut crate::canonical::Writer<W>,
            key: &str,
            list: &[Located<T>],
        ) {
            w.key(key);
            w.begin_array();
            for d in list {
                w.serialize(&d.doc);
            }
            w.end();
        }
        // Keys in sorted order, as canonical JSON has them.
        w.begin_object();
        w.key("config");
        w.serialize(&self.config.as_ref().map(|c| &c.doc));
        docs(w, "devices", &self.devices);
        docs(w, "dhcpReservations", &self.reservations);
        docs(w, "mcpServers", &self.mcp_servers);
        docs(w, "pools", &self.pools);
        docs(w, "routes", &self.routes);
        w.end();
    }

    /// Every resource document (not the Config): kind, metadata and spec, in load order.
    pub fn documents(&self) -> impl Iterator<Item = (Kind, &Metadata, SpecRef<'_>)> {
        fn each<'a, S>(
            list: &'a [Located<Document<S>>],
            spec: fn(&'a S) -> SpecRef<'a>,
        ) -> impl Iterator<Item = (Kind, &'a Metadata, SpecRef<'a>)> {
            list.iter().map(move |d| {
                let spec = spec(&d.doc.spec);
                (spec.kind(), &d.doc.metadata, spec)
            })
        }
        each(&self.pools, SpecRef::Pool)
            .chain(each(&self.devices, SpecRef::Device))
            .chain(each(&self.reservations, SpecRef::DhcpReservation))
            .chain(each(&self.routes, SpecRef::Route))
            .chain(each(&self.mcp_servers, SpecRef::McpServer))
    }

    /// Where the document `kind`/`name` was read from.
    pub fn origin(&self, kind: Kind, name: &str) -> Option<&Origin> {
        fn find<'a, S>(list: &'a [Located<Document<S>>], name: &str) -> Option<&'a Origin> {
            list.iter()
                .find(|d| d.doc.metadata.name == name)
                .map(|d| &d.origin)
        }
        match kind {
            Kind::Pool => find(&self.pools, name),
            Kind::Device => find(&self.devices, name),
            Kind::DhcpReservation => find(&self.reservations, name),
            Kind::Route => find(&self.routes, name),
            Kind::McpServer => find(&self.mcp_servers, name),
            Kind::Config => self.config.as_ref().map(|c| &c.origin),
        }
    }

    /// The metadata of every resource document (not the Config), with its kind.
    pub fn metadata(&self) -> impl Iterator<Item = (Kind, &Metadata)> {
        self.documents().map(|(k, m, _)| (k, m))
    }

    pub fn pool(&self, name: &str) -> Option<&Located<PoolDoc>> {
        self.pools.iter().find(|p| p.doc.metadata.name == name)
    }

    /// The resolved hierarchy of pools (paths and inherited properties).
    pub fn pool_tree(&self) -> Result<pool::PoolTree, pool::PoolTreeError> {
        pool::PoolTree::build(self.pools.iter().map(|p| &p.doc))
    }
}

/// The `spec` of one resource document, of whichever kind: serialises as the spec itself.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(untagged)]
pub enum SpecRef<'a> {
    Pool(&'a PoolSpec),
    Device(&'a DeviceSpec),
    DhcpReservation(&'a DhcpReservationSpec),
    Route(&'a RouteSpec),
    McpServer(&'a McpServerSpec),
}

impl SpecRef<'_> {
    pub fn kind(&self) -> Kind {
        match self {
            SpecRef::Pool(_) => Kind::Pool,
            SpecRef::Device(_) => Kind::Device,
            SpecRef::DhcpReservation(_) => Kind::DhcpReservation,
            SpecRef::Route(_) => Kind::Route,
            SpecRef::McpServer(_) => Kind::McpServer,
        }
    }
}

pub use pool::{PoolTree, PoolTreeError, ResolvedPool, MAX_DEPTH as MAX_POOL_DEPTH};
