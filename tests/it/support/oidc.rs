//! An OAuth 2.0 authorization server for the tests, as the lab's identity provider (Authelia,
//! Authentik, Keycloak) presents itself to a resource server — not a real identity provider,
//! and doing nothing those do not:
//!
//! - `GET /.well-known/openid-configuration`: the discovery document (OpenID Connect Discovery
//!   1.0 §3: `issuer`, `jwks_uri`, `token_endpoint`, `grant_types_supported`, …);
//! - `GET /jwks`: its public keys as a JWK set (RFC 7517, RSA keys with `kid`, `use: sig`,
//!   `alg: RS256`);
//! - `POST /token`: the client credentials grant (RFC 6749 §4.4; the client authenticates with
//!   `client_id` and `client_secret` in the form), issuing a signed JWT access token (RFC 9068:
//!   `iss`, `sub`, `aud` from the `resource` parameter of RFC 8707, `client_id`, `scope`, `exp`,
//!   `iat`, `jti`); an unknown client gets 401 `invalid_client` (RFC 6749 §5.2).
//!
//! Keys are RSA 2048 made by `openssl` for each issuer. [`Issuer::mint`] signs any claims with
//! any of its keys, for the tokens a real issuer would never hand out (expired, for another
//! audience, from another issuer).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value as Json};

/// The one client the issuer knows.
pub const CLIENT_ID: &str = "assistant-connector";
pub const CLIENT_SECRET: &str = "cs-3f6a1d0b7e924c58a1b2";

/// An RSA key: the private half as PEM, the public half as JWK components.
pub struct Key {
    pub kid: String,
    pem: Vec<u8>,
    /// The modulus, base64url without padding.
    n: String,
}

impl Key {
    /// A new RSA 2048 key made by `openssl` in `dir`.
    pub fn generate(dir: &Path, kid: &str) -> Key {
        let path = dir.join(format!("{kid}.pem"));
        let out = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&path)
            .output()
            .expect("openssl runs");
        assert!(out.status.success(), "{out:?}");
        let out = Command::new("openssl")
            .args(["rsa", "-noout", "-modulus", "-in"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let hex = text.trim().strip_prefix("Modulus=").expect("Modulus=…");
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        Key {
            kid: kid.into(),
            pem: std::fs::read(&path).unwrap(),
            n: base64url(&bytes),
        }
    }

    fn jwk(&self) -> Json {
        json!({"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256", "n": self.n, "e": "AQAB"})
    }

    /// `claims` signed with this key (RS256, this key's kid).
    pub fn sign(&self, claims: &Json) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        let key = EncodingKey::from_rsa_pem(&self.pem).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }
}

/// Base64url without padding (RFC 7515 §2).
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A running issuer.
pub struct Issuer {
    /// The issuer identifier, `http://127.0.0.1:PORT`.
    pub url: String,
    /// The key its JWKS publishes and its tokens are signed with.
    pub key: Arc<Key>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Issuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Now, in seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Form fields (`application/x-www-form-urlencoded`), decoded.
fn form(body: &[u8]) -> Vec<(String, String)> {
    let decode = |s: &str| -> String {
        let bytes = s.replace('+', " ").into_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes.get(i + 1..i + 3).map(String::from_utf8_lossy);
            if let (b'%', Some(Ok(b))) = (bytes[i], hex.map(|h| u8::from_str_radix(&h, 16))) {
                out.push(b);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

impl Issuer {
    /// Starts an issuer on a free loopback port, its key made in `dir`.
    pub async fn start(dir: &Path) -> Issuer {
        let key = Arc::new(Key::generate(dir, "k1"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}");
        let discovery = json!({
            "issuer": url,
            "jwks_uri": format!("{url}/jwks"),
            "token_endpoint": format!("{url}/token"),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        let jwks = json!({"keys": [key.jwk()]});
        let (issuer, signer) = (url.clone(), Arc::clone(&key));
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { axum::Json(discovery) }),
            )
            .route("/jwks", get(move || async move { axum::Json(jwks) }))
            .route(
                "/token",
                post(move |body: Bytes| async move {
                    let fields = form(&body);
                    let field = |name: &str| {
                        fields
                            .iter()
                            .find(|(k, _)| k == name)
                            .map(|(_, v)| v.clone())
                    };
                    if field("grant_type").as_deref() != Some("client_credentials") {
                        return (
                            StatusCode::BAD_REQUEST,
                            axum::Json(json!({"error": "unsupported_grant_type"})),
                        )
                            .into_response();
                    }
                    if field("client_id").as_deref() != Some(CLIENT_ID)
                        || field("client_secret").as_deref() != Some(CLIENT_SECRET)
                    {
                        return (
                            StatusCode::UNAUTHORIZED,
                            axum::Json(json!({"error": "invalid_client"})),
                        )
                            .into_response();
                    }
                    let now = now();
                    let claims = json!({
                        "iss": issuer,
                        "sub": CLIENT_ID,
                        "client_id": CLIENT_ID,
                        "aud": field("resource").unwrap_or_default(),
                        "scope": field("scope").unwrap_or_default(),
                        "iat": now,
                        "exp": now + 300,
                        "jti": format!("t{now}"),
                    });
                    axum::Json(json!({
                        "access_token": signer.sign(&claims),
                        "token_type": "Bearer",
                        "expires_in": 300,
                    }))
                    .into_response()
                }),
            );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Issuer { url, key, task }
    }

    /// A token from the token endpoint, as a client with the client credentials grant gets
    /// one, for `resource` with `scope`.
    pub async fn token(&self, resource: &str, scope: &str) -> String {
        let body = format!(
            "grant_type=client_credentials&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}&scope={}&resource={}",
            scope.replace(' ', "+").replace(':', "%3A"),
            resource.replace(':', "%3A").replace('/', "%2F")
        );
        let r = reqwest::Client::new()
            .post(format!("{}/token", self.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let answer: Json = r.json().await.unwrap();
        answer["access_token"].as_str().unwrap().to_string()
    }
}
