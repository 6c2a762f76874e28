//! OAuth access tokens for MCP over HTTP (MCP authorization, RFC 9728, RFC 8725): labctl is
//! a resource server. A client that is not given a static token discovers the lab's own
//! authorization server (Authelia, Authentik, Keycloak, any OIDC issuer) from the protected
//! resource metadata at `/.well-known/oauth-protected-resource`, which the 401 challenge names,
//! and presents a JWT access token from it. The token is accepted only if it is signed by a key
//! of the issuer's JWKS with an asymmetric algorithm, names this issuer, names this server's
//! endpoint as its audience, and has not expired; its `scope`, `scp`, `groups` or `roles`
//! values map to labctl's scopes.
//!
//! The JWKS is fetched from the issuer's discovery document (or a configured URL) with a
//! deadline and a size limit, kept for ten minutes, and fetched again early (at most every 30
//! seconds) when a token names a key it does not hold, so the issuer may rotate keys.

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value as Json};

use super::auth::{Caller, Scope};

/// How long fetched keys are used before they are fetched again.
const KEYS_FOR: Duration = Duration::from_secs(600);
/// The soonest the keys are fetched again for a key id they do not hold.
const REFETCH_AFTER: Duration = Duration::from_secs(30);
/// Deadline of one call to the issuer.
const ISSUER_DEADLINE: Duration = Duration::from_secs(5);
/// The largest discovery document or JWKS read.
const MAX_ISSUER_BODY: usize = 256 * 1024;
/// The longest access token looked at.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 30;

/// What accepts OAuth tokens: whose, for what, and what they may do.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// The authorization server's issuer identifier, exactly as its tokens' `iss`.
    pub issuer: String,
    /// This MCP endpoint as clients reach it (`https://labctl.lab.example/mcp`): the `aud`
    /// tokens must carry, and the `resource` of the metadata.
    pub audience: String,
    /// The JWKS; default: `jwks_uri` of the issuer's discovery document.
    pub jwks_url: Option<String>,
    /// Claim values (of `scope`, `scp`, `groups`, `roles`) and the scope each grants.
    pub scopes: Vec<(String, Scope)>,
}

impl OAuthConfig {
    /// The claim values that grant labctl's scopes when none are configured.
    pub fn default_scopes() -> Vec<(String, Scope)> {
        vec![
            ("labctl:read".into(), Scope::Read),
            ("labctl:propose".into(), Scope::Propose),
            ("labctl:admin".into(), Scope::Admin),
        ]
    }

    /// Refuses an issuer or audience that is not an absolute URL, and plain HTTP to anything
    /// but loopback (a token's keys must not be fetched where they can be swapped).
    pub fn check(&self) -> Result<(), String> {
        for (what, url) in [
            ("--oauth-issuer", Some(&self.issuer)),
            ("--oauth-audience", Some(&self.audience)),
            ("--oauth-jwks-url", self.jwks_url.as_ref()),
        ] {
            let Some(url) = url else { continue };
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| format!("{what} `{url}` is not an absolute URL: {e}"))?;
            let host = parsed.host_str().unwrap_or_default();
            let loopback = host == "localhost"
                || host
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if parsed.scheme() != "https" && !(parsed.scheme() == "http" && loopback) {
                return Err(format!(
                    "{what} `{url}` must be https (plain http only on loopback)"
                ));
            }
        }
        if self.scopes.is_empty() {
            return Err("no claim value grants a scope (--oauth-scope VALUE=SCOPE)".into());
        }
        Ok(())
    }
}

/// Why a token (static or OAuth) was not accepted: each maps to a Bearer error (RFC 6750
/// §3.1).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejected {
    /// Expired, not yet valid, wrong issuer or audience, bad signature, unknown key,
    /// symmetric algorithm, malformed: 401 `invalid_token`.
    #[error("{0}")]
    Invalid(String),
    /// Valid, but no claim value maps to a scope: 403 `insufficient_scope`.
    #[error("the token grants none of labctl's scopes")]
    NoScope,
    /// The issuer could not be asked for its keys: 503, try again.
    #[error("the issuer's keys are not available: {0}")]
    Unavailable(String),
}

/// The keys as fetched, and when.
#[derive(Debug)]
struct Keys {
    set: JwkSet,
    at: Instant,
}

/// Checks OAuth access tokens against one issuer.
#[derive(Debug)]
pub struct OAuth {
    config: OAuthConfig,
    http: reqwest::Client,
    keys: tokio::sync::Mutex<Option<Keys>>,
}

impl OAuth {
    pub fn new(config: OAuthConfig) -> Result<OAuth, String> {
        config.check()?;
        let http = reqwest::Client::builder()
            .timeout(ISSUER_DEADLINE)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client for the issuer: {e}"))?;
        Ok(OAuth {
            config,
            http,
            keys: tokio::sync::Mutex::new(None),
        })
    }

    /// The protected resource metadata (RFC 9728 §2).
    pub fn metadata(&self) -> Json {
        let scopes: Vec<&str> = self.config.scopes.iter().map(|(v, _)| v.as_str()).collect();
        json!({
            "resource": self.config.audience,
            "authorization_servers": [self.config.issuer],
            "scopes_supported": scopes,
            "bearer_methods_supported": ["header"],
            "resource_name": "labctl",
        })
    }

    /// Where the metadata of this resource is (RFC 9728 §3.1: the well-known path inserted
    /// between the host and the resource's path).
    pub fn metadata_url(&self) -> String {
        match reqwest::Url::parse(&self.config.audience) {
            Ok(url) => {
                let path = url.path().trim_end_matches('/');
                let origin = url.origin().ascii_serialization();
                format!("{origin}/.well-known/oauth-protected-resource{path}")
            }
            Err(_) => "/.well-known/oauth-protected-resource".into(),
        }
    }

    /// Whether `token` looks like a JWT (three base64url parts) rather than a static token.
    pub fn looks_like_jwt(token: &str) -> bool {
        token.len() <= MAX_TOKEN_BYTES
            && token.split('.').count() == 3
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    }

    /// The caller a valid access token is: named `oauth:` and its `preferred_username`,
    /// `email`, `client_id` or `sub`.
    pub async fn verify(&self, token: &str) -> Result<Caller, Rejected> {
        if !Self::looks_like_jwt(token) {
            return Err(Rejected::Invalid("not a JWT".into()));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Rejected::Invalid(format!("unreadable header: {e}")))?;
        // RFC 8725 §3.1: the algorithm comes from the key, never a shared secret.
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(Rejected::Invalid(format!(
                "{:?} is a shared-secret algorithm; only the issuer's public keys are accepted",
                header.alg
            )));
        }
        let key = self.key(header.kid.as_deref()).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;
        let data = jsonwebtoken::decode::<Json>(token, &key, &validation)
            .map_err(|e| Rejected::Invalid(format!("{e}")))?;
        let claims = data.claims;
        let mut granted: Vec<Scope> = Vec::new();
        for value in claim_values(&claims) {
            for (wanted, scope) in &self.config.scopes {
                if value == *wanted && !granted.contains(scope) {
                    granted.push(*scope);
                }
            }
        }
        if granted.is_empty() {
            return Err(Rejected::NoScope);
        }
        let who = ["preferred_username", "email", "client_id", "sub"]
            .iter()
            .find_map(|c| claims.get(*c).and_then(Json::as_str))
            .unwrap_or("unnamed");
        Ok(Caller {
            name: format!("oauth:{}", super::audit::prefix(who, 64)),
            scopes: granted,
        })
    }

    /// The key a token names, from the cached JWKS, fetched again when it is old or (at most
    /// every [`REFETCH_AFTER`]) lacks the key.
    async fn key(&self, kid: Option<&str>) -> Result<DecodingKey, Rejected> {
        let mut keys = self.keys.lock().await;
        let stale = keys.as_ref().is_none_or(|k| k.at.elapsed() > KEYS_FOR);
        let missing = keys
            .as_ref()
            .is_some_and(|k| find(&k.set, kid).is_none() && k.at.elapsed() > REFETCH_AFTER);
        if stale || missing {
            match self.fetch_keys().await {
                Ok(set) => {
                    *keys = Some(Keys {
                        set,
                        at: Instant::now(),
                    })
                }
                // Old keys still verify while the issuer is away; none at all cannot.
                Err(e) if keys.is_none() => return Err(e),
                Err(e) => tracing::warn!(error = %e, "cannot refresh the issuer's keys"),
            }
        }
        let set = &keys.as_ref().expect("fetched above").set;
        let jwk = find(set, kid).ok_or_else(|| {
            Rejected::Invalid(match kid {
                Some(kid) => format!(
                    "no key `{}` in the issuer's JWKS",
                    super::audit::prefix(kid, 64)
                ),
                None => "the token names no key and the issuer has several".into(),
            })
        })?;
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
            return Err(Rejected::Invalid(
                "a symmetric key is never accepted".into(),
            ));
        }
        DecodingKey::from_jwk(jwk).map_err(|e| Rejected::Invalid(format!("unusable key: {e}")))
    }

    async fn fetch_keys(&self) -> Result<JwkSet, Rejected> {
        let jwks_url = match &self.config.jwks_url {
            Some(url) => url.clone(),
            None => {
                let base = self.config.issuer.trim_end_matches('/');
                let discovery = self
                    .get_json(&format!("{base}/.well-known/openid-configuration"))
                    .await?;
                // OpenID Connect Discovery §4.3: the document must name the issuer it is for.
                if discovery.get("issuer").and_then(Json::as_str) != Some(&self.config.issuer) {
                    return Err(Rejected::Unavailable(format!(
                        "the discovery document of {} names another issuer",
                        self.config.issuer
                    )));
                }
                discovery
                    .get("jwks_uri")
                    .and_then(Json::as_str)
                    .ok_or_else(|| {
                        Rejected::Unavailable("the discovery document has no jwks_uri".into())
                    })?
                    .to_string()
            }
        };
        let body = self.get_json(&jwks_url).await?;
        serde_json::from_value::<JwkSet>(body)
            .map_err(|e| Rejected::Unavailable(format!("{jwks_url} is not a JWK set: {e}")))
    }

    async fn get_json(&self, url: &str) -> Result<Json, Rejected> {
        let unavailable = |e: String| Rejected::Unavailable(format!("{url}: {e}"));
        let mut response = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("HTTP {}", response.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| unavailable(e.to_string()))?
        {
            if body.len() + chunk.len() > MAX_ISSUER_BODY {
                return Err(unavailable(format!("over {MAX_ISSUER_BODY} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| unavailable(format!("not JSON: {e}")))
    }
}

/// The key named `kid`; without a kid, the only key there is.
fn find<'a>(set: &'a JwkSet, kid: Option<&str>) -> Option<&'a jsonwebtoken::jwk::Jwk> {
    match kid {
        Some(kid) => set.find(kid),
        None if set.keys.len() == 1 => set.keys.first(),
        None => None,
    }
}

/// The values of the claims that carry grants: `scope` (space-separated, RFC 8693), `scp`,
/// `groups` and `roles` (strings or arrays of strings).
fn claim_values(claims: &Json) -> Vec<String> {
    let mut out = Vec::new();
    for claim in ["scope", "scp", "groups", "roles"] {
        match claims.get(claim) {
            Some(Json::String(s)) => out.extend(s.split_whitespace().map(str::to_string)),
            Some(Json::Array(items)) => {
                out.extend(items.iter().filter_map(Json::as_str).map(str::to_string))
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_grant_scopes_and_urls_are_checked() {
        let claims = json!({"scope": "openid labctl:read", "groups": ["lab-admins"], "roles": "x"});
        assert_eq!(
            claim_values(&claims),
            ["openid", "labctl:read", "lab-admins", "x"]
        );
        let config = |issuer: &str| OAuthConfig {
            issuer: issuer.into(),
            audience: "https://labctl.lab.example/mcp".into(),
            jwks_url: None,
            scopes: OAuthConfig::default_scopes(),
        };
        assert!(config("https://auth.lab.example").check().is_ok());
        assert!(config("http://127.0.0.1:9000").check().is_ok());
        let plain = config("http://auth.lab.example").check().unwrap_err();
        assert!(plain.contains("must be https"), "{plain}");
        assert!(config("auth.lab.example").check().is_err());
        assert!(OAuth::looks_like_jwt("eyJhbGciOi.eyJzdWIiOi.c2ln"));
        assert!(!OAuth::looks_like_jwt("lbl-read-6a1f0c3e9b7d4e21"));
        assert!(!OAuth::looks_like_jwt("a.b.c d"));
    }
}
