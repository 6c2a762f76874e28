//! HTTP routes in front of web services (a Traefik router, or a Caddy route).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Reference to a service declared on a `Device`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceRef {
    pub device: String,
    pub service: String,
}

/// Where a route sends traffic: explicit URLs, or a device's declared service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Backend {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Tls {
    /// Traefik certificate resolver, e.g. `letsencrypt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_resolver: Option<String>,
    /// Traefik TLS options by name, e.g. `modern`; Traefik's own `default` when not given.
    #[serde(default, skip_serializing_if = "Tls::default_options")]
    pub options: Option<String>,
}

impl Tls {
    /// The TLS options Traefik uses when a router names none.
    pub const DEFAULT_OPTIONS: &'static str = "default";

    /// Whether `options` names Traefik's default TLS options (written as nothing).
    fn default_options(options: &Option<String>) -> bool {
        options
            .as_deref()
            .is_none_or(|o| o == Self::DEFAULT_OPTIONS)
    }
}

/// `spec` of a `Route`. Give either `host` (and optionally `pathPrefix`) or a raw Traefik
/// `rule`, not both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RouteSpec {
    /// Traefik entrypoints, e.g. `[websecure]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entry_points: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// A raw Traefik rule, e.g. ``Host(`a.lab`) || Host(`b.lab`)``.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub backend: Backend,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub middlewares: Vec<String>,
    /// Traefik's router priority; Traefik's own when not given (the rule's length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// A Traefik router declared elsewhere that this route describes, by its qualified name
    /// (`whoami@docker`, `grafana@file`): labctl compares it and reports its drift, but never
    /// writes, changes or removes it (`labctl import` writes this for routers it finds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<String>,
}

impl RouteSpec {
    /// `(host, path prefix)` this route matches, lowercased host and `/` as the default
    /// prefix. Raw rules of the simple `` Host(`x`) [&& PathPrefix(`/p`)] `` shape are
    /// understood too; anything more complex yields `None` (it is compared as text).
    pub fn match_key(&self) -> Option<(String, String)> {
        if let Some(host) = &self.host {
            let prefix = self.path_prefix.clone().unwrap_or_else(|| "/".into());
            return Some((host.to_ascii_lowercase(), prefix));
        }
        let rule = self.rule.as_deref()?.trim();
        let mut host = None;
        let mut prefix = "/".to_string();
        for part in rule.split("&&") {
            let part = part.trim();
            if let Some(arg) = backticked(part, "Host(") {
                host = Some(arg.to_ascii_lowercase());
            } else if let Some(arg) = backticked(part, "PathPrefix(") {
                prefix = arg.to_string();
            } else {
                return None;
            }
        }
        host.map(|h| (h, prefix))
    }
}

fn backticked<'a>(part: &'a str, func: &str) -> Option<&'a str> {
    let inner = part.strip_prefix(func)?.strip_suffix(')')?;
    let inner = inner.strip_prefix('`')?.strip_suffix('`')?;
    (!inner.contains('`')).then_some(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: Option<&str>, prefix: Option<&str>, rule: Option<&str>) -> RouteSpec {
        RouteSpec {
            entry_points: vec![],
            host: host.map(Into::into),
            path_prefix: prefix.map(Into::into),
            rule: rule.map(Into::into),
            backend: Backend {
                urls: vec![],
                service: None,
            },
            tls: None,
            middlewares: vec![],
            priority: None,
            router: None,
        }
    }

    #[test]
    fn match_key_from_host_and_simple_rule_agree() {
        let a = route(Some("Grafana.Lab.Example"), None, None);
        let b = route(
            None,
            None,
            Some("Host(`grafana.lab.example`) && PathPrefix(`/`)"),
        );
        assert_eq!(a.match_key(), b.match_key());
        assert_eq!(
            a.match_key().unwrap(),
            ("grafana.lab.example".into(), "/".into())
        );
    }

    #[test]
    fn complex_rule_has_no_key() {
        let r = route(None, None, Some("Host(`a`) || Host(`b`)"));
        assert_eq!(r.match_key(), None);
    }
}
