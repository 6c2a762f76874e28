//! Providers from `labctl.yaml`.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::json;

use crate::model::{ConfigSpec, DesiredState, Kind, ProviderConfig, ProviderKind};
use crate::providers::{
    caddy::CaddyProvider, kea::KeaProvider, mcp::McpProvider, proxmox::ProxmoxProvider,
    reachability::ReachabilityProvider, traefik::TraefikProvider, ApplyReport, BoxFuture,
    CallPolicy, Change, Observation, Provider, ProviderError, Resource,
};

/// What this host allows, beyond what the repository declares. Both are off by default: the
/// repository says what the lab should be, the host decides what may run and be touched from
/// where labctl runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostOptions {
    /// Probe every declared service (TCP connect, HTTP health GET): only from a host inside
    /// the lab's network.
    pub probe: bool,
    /// Start stdio MCP servers: commands written in Git, run on this host.
    pub allow_commands: bool,
}

/// Builds every provider the config declares, plus the host-enabled ones. One that cannot be
/// built (a credential that is not there, a bad TLS setting) does not stop the others: it
/// stands in as [`Unavailable`], and the plan shows its resources as unknown with the reason.
pub fn providers_for(config: Option<&ConfigSpec>, host: HostOptions) -> Vec<Arc<dyn Provider>> {
    let mut providers = declared(config);
    // MCP servers are checked by their registrations, not by a provider entry: every
    // McpServer document is covered, with the credentials labctl.yaml names.
    let credentials = config
        .map(|c| {
            c.credentials
                .iter()
                .map(|(name, c)| (name.clone(), c.source.clone()))
                .collect()
        })
        .unwrap_or_default();
    providers.push(Arc::new(McpProvider::new(
        "mcp",
        credentials,
        host.allow_commands,
        CallPolicy::default(),
    )));
    if host.probe {
        let policy = CallPolicy {
            retries: 1,
            ..CallPolicy::default()
        };
        match ReachabilityProvider::new("reachability", policy) {
            Ok(p) => providers.push(Arc::new(p)),
            Err(e) => tracing::warn!(error = %e, "reachability probes unavailable"),
        }
    }
    providers
}

fn declared(config: Option<&ConfigSpec>) -> Vec<Arc<dyn Provider>> {
    let Some(config) = config else {
        return Vec::new();
    };
    config
        .providers
        .iter()
        .map(|cfg| {
            let built: Result<Arc<dyn Provider>, ProviderError> = match cfg.kind {
                ProviderKind::Kea => KeaProvider::new(cfg).map(|p| Arc::new(p) as _),
                ProviderKind::Caddy => CaddyProvider::new(cfg).map(|p| Arc::new(p) as _),
                ProviderKind::Proxmox => ProxmoxProvider::new(cfg).map(|p| Arc::new(p) as _),
                ProviderKind::Traefik => TraefikProvider::new(cfg).map(|p| Arc::new(p) as _),
            };
            built.unwrap_or_else(|error| {
                tracing::warn!(provider = %cfg.name, %error, "provider unavailable");
                Arc::new(Unavailable::new(cfg, error)) as Arc<dyn Provider>
            })
        })
        .collect()
}

/// A provider that could not be set up: everything it would cover is `unknown`, never
/// `missing`, and nothing is applied through it.
struct Unavailable {
    name: String,
    kind: ProviderKind,
    error: ProviderError,
}

impl Unavailable {
    fn new(cfg: &ProviderConfig, error: ProviderError) -> Self {
        Unavailable {
            name: cfg.name.clone(),
            kind: cfg.kind,
            error,
        }
    }
}

impl Provider for Unavailable {
    fn name(&self) -> &str {
        &self.name
    }

    fn kinds(&self) -> BTreeSet<Kind> {
        match self.kind {
            ProviderKind::Proxmox => [Kind::Pool, Kind::Device].into(),
            ProviderKind::Kea => [Kind::DhcpReservation].into(),
            ProviderKind::Traefik | ProviderKind::Caddy => [Kind::Route].into(),
        }
    }

    /// The names the provider would cover, without fields: each becomes `unknown`.
    fn expected(&self, state: &DesiredState) -> Vec<Resource> {
        let resource = |kind, name: &str| Resource {
            kind,
            name: name.to_string(),
            fields: json!({}),
            key: None,
        };
        match self.kind {
            ProviderKind::Proxmox => state
                .pools
                .iter()
                .filter(|p| p.doc.spec.proxmox_pool.is_some())
                .map(|p| resource(Kind::Pool, &p.doc.metadata.name))
                .chain(
                    state
                        .devices
                        .iter()
                        .filter(|d| d.doc.spec.device_type.is_guest())
                        .map(|d| resource(Kind::Device, &d.doc.metadata.name)),
                )
                .collect(),
            ProviderKind::Kea => state
                .reservations
                .iter()
                .map(|r| resource(Kind::DhcpReservation, &r.doc.metadata.name))
                .collect(),
            ProviderKind::Traefik | ProviderKind::Caddy => state
                .routes
                .iter()
                .map(|r| resource(Kind::Route, &r.doc.metadata.name))
                .collect(),
        }
    }

    fn observe<'a>(
        &'a self,
        _: &'a DesiredState,
    ) -> BoxFuture<'a, Result<Observation, ProviderError>> {
        Box::pin(async move { Err(self.error.clone()) })
    }

    fn apply<'a>(
        &'a self,
        _: &'a Observation,
        _: &'a [Change],
    ) -> BoxFuture<'a, Result<ApplyReport, ProviderError>> {
        Box::pin(async move { Err(self.error.clone()) })
    }
}
