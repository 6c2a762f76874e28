//! MCP over HTTP with OAuth access tokens from the lab's own authorization server (the OIDC
//! issuer fixture of tests/it/support/oidc.rs): the real `labctl mcp --http` publishes its
//! protected resource metadata, points its 401 challenge at it, lets a token from the issuer's
//! token endpoint reach a tool — through rmcp's client and the official TypeScript SDK's — and
//! refuses expired, wrong-audience, wrong-issuer, wrongly signed, shared-secret and scopeless
//! tokens. Static tokens keep working beside them.

use serde_json::{json, Value as Json};

use crate::mcp_http::{initialize, post, Server};
use crate::support::lab::reconciled_lab;
use crate::support::oidc::{now, Issuer, Key, CLIENT_ID};

/// The MCP endpoint as clients reach it (through a proxy): the audience tokens must name.
const AUDIENCE: &str = "https://labctl.lab.example/mcp";

#[tokio::test(flavor = "multi_thread")]
async fn an_issued_token_reaches_a_tool_and_a_wrong_one_does_not() {
    let Some(lab) = reconciled_lab().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let issuer = Issuer::start(dir.path()).await;
    let server = Server::start(
        &lab.db,
        dir.path(),
        &[
            "--oauth-issuer",
            &issuer.url,
            "--oauth-audience",
            AUDIENCE,
            "--oauth-scope",
            "labctl:read=read",
            "--oauth-scope",
            "lab-admins=admin",
        ],
    );
    let url = server.url.clone();
    let base = url.trim_end_matches("/mcp").to_string();

    // Discovery (RFC 9728): at the root and under the resource's path, without a token.
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let r = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let doc: Json = r.json().await.unwrap();
        assert_eq!(doc["resource"], AUDIENCE, "{doc}");
        assert_eq!(doc["authorization_servers"], json!([issuer.url]), "{doc}");
        assert!(doc["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("labctl:read")));
    }
    let r = post(&url, &[], initialize()).await;
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.contains(
            "resource_metadata=\"https://labctl.lab.example/.well-known/oauth-protected-resource/mcp\""
        ),
        "{challenge}"
    );

    // A token from the token endpoint reaches a tool, as its client.
    let token = issuer.token(AUDIENCE, "openid labctl:read").await;
    let client = crate::mcp_http::connect(&url, &token).await;
    let got = crate::mcp_http::call(&client, "get_device", json!({"device": "harbor"}))
        .await
        .unwrap();
    assert_eq!(got.is_error, Some(false), "{got:?}");
    client.cancel().await.unwrap();
    let store = labctl::store::Store::connect(&lab.db).await.unwrap();
    crate::support::mcp::audit_when(&store, 100, |rows| {
        rows.iter().any(|a| {
            a.entry.actor == format!("http:oauth:{CLIENT_ID}@127.0.0.1")
                && a.entry.action == "get_device"
        })
    })
    .await;
    store.close().await;

    // The official TypeScript SDK client with the same token.
    if let Some(npm) = crate::mcp_http::node_and_sdk() {
        let calls = json!([["get_device", {"device": "harbor"}]]);
        let report = crate::mcp_http::sdk_client(&npm, &url, &token, &calls, &[], &server);
        assert_eq!(report["calls"]["get_device"]["isError"], false, "{report}");
    }

    // Groups map to scopes too.
    let claims = |over: Json| {
        let mut c = json!({
            "iss": issuer.url, "sub": "alice", "preferred_username": "alice",
            "aud": AUDIENCE, "iat": now(), "exp": now() + 300, "groups": ["lab-admins"],
        });
        for (k, v) in over.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let bearer = |t: &str| format!("Bearer {t}");
    let admin = issuer.key.sign(&claims(json!({})));
    let r = post(&url, &[("authorization", &bearer(&admin))], initialize()).await;
    assert_eq!(r.status(), 200);

    // Every wrong token: 401 invalid_token, or 403 insufficient_scope when only the scope is
    // missing; nothing reaches MCP.
    let other_key = Key::generate(dir.path(), "k1");
    let unknown_kid = Key::generate(dir.path(), "k9");
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims(json!({})),
        &jsonwebtoken::EncodingKey::from_secret(b"guessable"),
    )
    .unwrap();
    let cases = [
        (
            "expired",
            issuer
                .key
                .sign(&claims(json!({"exp": now() - 600, "iat": now() - 900}))),
            401,
        ),
        (
            "for another audience",
            issuer
                .key
                .sign(&claims(json!({"aud": "https://other.example/mcp"}))),
            401,
        ),
        (
            "from another issuer",
            issuer
                .key
                .sign(&claims(json!({"iss": "https://evil.example"}))),
            401,
        ),
        (
            "signed by another key",
            other_key.sign(&claims(json!({}))),
            401,
        ),
        (
            "naming an unknown key",
            unknown_kid.sign(&claims(json!({}))),
            401,
        ),
        ("with a shared secret", hs256, 401),
        (
            "granting no scope",
            issuer
                .key
                .sign(&claims(json!({"groups": ["family"], "scope": "openid"}))),
            403,
        ),
    ];
    for (what, token, status) in cases {
        let r = post(&url, &[("authorization", &bearer(&token))], initialize()).await;
        assert_eq!(r.status(), status, "a token {what}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap();
        let error = if status == 401 {
            "invalid_token"
        } else {
            "insufficient_scope"
        };
        assert!(challenge.contains(error), "{what}: {challenge}");
    }

    // The static tokens keep working.
    let r = post(
        &url,
        &[("authorization", &bearer(crate::mcp_http::READ_TOKEN))],
        initialize(),
    )
    .await;
    assert_eq!(r.status(), 200);
    let logs = server.logs();
    assert!(!logs.contains(&token), "a token was logged");
}
