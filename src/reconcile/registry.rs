//! Providers from `labctl.yaml`.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::json;

use crate::model::{ConfigSpec, DesiredState, Kind, ProviderConfig};
use crate::providers::{
    mcp::McpProvider, reachability::ReachabilityProvider, ApplyReport, BoxFuture, CallPolicy,
    Change, Observation, Provider, ProviderError, Resource, Severities,
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
            cfg.build().unwrap_or_else(|error| {
                tracing::warn!(provider = %cfg.name(), %error, "provider unavailable");
                Arc::new(Unavailable::new(cfg, error)) as Arc<dyn Provider>
            })
        })
        .collect()
}

/// A provider that could not be set up: everything it would cover is `unknown`, never
/// `missing`, and nothing is applied through it. What it covers comes from the same factory
/// as the real provider's, so the two cannot disagree.
struct Unavailable {
    config: ProviderConfig,
    error: ProviderError,
}

impl Unavailable {
    fn new(cfg: &ProviderConfig, error: ProviderError) -> Self {
        Unavailable {
            config: cfg.clone(),
            error,
        }
    }
}

impl Provider for Unavailable {
    fn name(&self) -> &str {
        self.config.name()
    }

    fn kinds(&self) -> BTreeSet<Kind> {
        self.config.kinds().iter().copied().collect()
    }

    /// Nothing is compared: every resource is unknown.
    fn severities(&self) -> Severities {
        &[]
    }

    /// The resources the provider would cover, without fields: each becomes `unknown`.
    fn expected(&self, state: &DesiredState) -> Vec<Resource> {
        self.config
            .expected(state)
            .into_iter()
            .map(|r| Resource::new(r.kind, r.name, json!({})))
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{self, DeviationType, Rules, Severity};
    use crate::validate::validate_text;

    /// Two entries of the test-only `fixture` provider: one that works, one whose credential
    /// is not there.
    const LAB: &str = r#"apiVersion: labctl.dev/v1
kind: Config
metadata: {name: lab}
spec:
  providers:
    - {name: inventory, kind: fixture, url: "http://127.0.0.1:1", devices: {nas: vm}}
    - name: broken
      kind: fixture
      url: "http://127.0.0.1:1"
      token: {env: LABCTL_TEST_TOKEN_THAT_IS_NOT_SET}
"#;

    const NAS: &str = r#"apiVersion: labctl.dev/v1
kind: Device
metadata: {name: nas}
spec: {type: physical, interfaces: [{name: eth0, ip: 10.0.1.40}]}
"#;

    fn names(resources: &[Resource]) -> Vec<(Kind, String)> {
        resources.iter().map(|r| (r.kind, r.name.clone())).collect()
    }

    #[tokio::test]
    async fn a_new_provider_needs_only_its_module_and_a_line_in_the_list() {
        // Through validation, as a repository is read: the entries are plain labctl.yaml.
        let config = validate_text("labctl.yaml", LAB).state.expect("valid");
        let mut state = validate_text("devices/nas.yaml", NAS).state.expect("valid");
        state.config = config.config;
        let config = &state.config.as_ref().unwrap().doc.spec;
        let providers = providers_for(Some(config), HostOptions::default());
        let listed: Vec<&str> = providers.iter().map(|p| p.name()).collect();
        assert_eq!(listed, ["inventory", "broken", "mcp"]);

        let inputs = crate::reconcile::observe(&Arc::new(state), &providers).await;
        let plan = diff::diff(&inputs, &Rules::default());
        let found: Vec<(&str, &str, DeviationType, Severity)> = plan
            .deviations
            .iter()
            .map(|d| {
                (
                    d.provider.as_str(),
                    d.field_path.as_str(),
                    d.dtype,
                    d.severity,
                )
            })
            .collect();
        // The drift's severity is the one the fixture gives its field.
        assert_eq!(
            found,
            [
                ("broken", "", DeviationType::Unknown, Severity::Medium),
                (
                    "inventory",
                    "spec.type",
                    DeviationType::Drifted,
                    Severity::High
                ),
            ]
        );
        assert!(plan.unobservable["broken"].contains("LABCTL_TEST_TOKEN_THAT_IS_NOT_SET"));
    }

    #[test]
    fn an_unavailable_provider_covers_exactly_what_the_real_one_would() {
        let text = r#"apiVersion: labctl.dev/v1
kind: Route
metadata: {name: plain}
spec: {host: plain.lab, backend: {urls: ["http://10.0.1.9"]}}
---
apiVersion: labctl.dev/v1
kind: Route
metadata: {name: either}
spec: {rule: "Host(`a.lab`) || Host(`b.lab`)", backend: {urls: ["http://10.0.1.9"]}}
"#;
        let state = validate_text("routes.yaml", text)
            .state
            .expect("the routes validate");
        // Caddy holds no route with a rule beyond one host and prefix; Traefik holds both.
        for (kind, covered) in [
            ("caddy", vec!["plain"]),
            ("traefik", vec!["either", "plain"]),
        ] {
            let cfg: ProviderConfig =
                serde_json::from_value(json!({"name": kind, "kind": kind, "url": "not a URL"}))
                    .unwrap();
            let error = cfg.build().err().expect("an invalid URL is refused");
            let stand_in = Unavailable::new(&cfg, error);
            let expected = stand_in.expected(&state);
            assert_eq!(names(&expected), names(&cfg.expected(&state)), "{kind}");
            let mut got: Vec<&str> = expected.iter().map(|r| r.name.as_str()).collect();
            got.sort();
            assert_eq!(got, covered, "{kind}");
        }
    }
}
