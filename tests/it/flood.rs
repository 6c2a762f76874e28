//! A provider that floods or stalls: every provider reads at most `maxBodyBytes` of an answer
//! (refused from its Content-Length before reading, or once the bytes read pass it), and its
//! timeout covers the whole call. The plan ends with that provider unknown and why; it does not
//! read on, and nothing runs out of memory.

use std::convert::Infallible;
use std::path::Path;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::IntoResponse;

use crate::support::cli::{exited, json_of, labctl_command, write};
use crate::support::lab::{reservation, PVE_TOKEN, SUBNET, TOKEN_ENV};
use crate::support::net::serve;

/// The providers that read an HTTP answer, with a document each makes it expect.
const PROVIDERS: [(&str, &str); 4] = [
    ("kea", "dhcp"),
    ("caddy", "route"),
    ("traefik", "route"),
    ("proxmox", "pool"),
];

/// A repository whose one provider, of `kind`, is at `url` with `extra` settings.
fn repo(dir: &Path, kind: &str, doc: &str, url: &str, extra: &str) {
    let token = if kind == "proxmox" {
        format!(", token: {{env: {TOKEN_ENV}}}")
    } else {
        String::new()
    };
    write(
        dir,
        "labctl.yaml",
        &format!(
            "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {{name: lab}}\nspec:\n  providers:\n    - {{name: {kind}, kind: {kind}, url: \"{url}\"{token}{extra}}}\n"
        ),
    );
    match doc {
        "dhcp" => reservation(dir, "a", SUBNET, "aa:bb:cc:00:00:01", "10.0.1.5"),
        "route" => write(
            dir,
            "routes/a.yaml",
            "apiVersion: labctl.dev/v1\nkind: Route\nmetadata: {name: a}\nspec:\n  host: a.lab.example\n  backend: {urls: [\"http://10.0.1.5:80\"]}\n",
        ),
        _ => write(
            dir,
            "pools/a.yaml",
            "apiVersion: labctl.dev/v1\nkind: Pool\nmetadata: {name: a}\nspec: {type: compute, proxmoxPool: a}\n",
        ),
    }
}

/// `labctl plan` of `dir`: it must exit 1 with the provider `kind` unobservable; its reason.
async fn unknown_because(dir: &Path, kind: &str) -> String {
    let repo = dir.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        labctl_command()
            .args(["plan", &repo, "--format", "json"])
            .env(TOKEN_ENV, PVE_TOKEN)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    exited(&out, 1);
    let plan = json_of(&out)["plan"].clone();
    assert!(
        plan["deviations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["type"] == "unknown"),
        "{kind}: {plan}"
    );
    plan["unobservable"][kind]
        .as_str()
        .unwrap_or_else(|| panic!("{kind} is not unobservable: {plan}"))
        .to_string()
}

/// An endless `200 OK` body of JSON whitespace, sent as fast as it is read.
async fn endless() -> u16 {
    let app = axum::Router::new().fallback(|| async {
        let chunk = Bytes::from(vec![b' '; 64 << 10]);
        let body = futures::stream::repeat_with(move || Ok::<_, Infallible>(chunk.clone()));
        (
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(body),
        )
            .into_response()
    });
    serve(app).await.0
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_answer_is_cut_at_the_default_limit_not_read_on() {
    let port = endless().await;
    for (kind, doc) in PROVIDERS {
        let dir = tempfile::tempdir().unwrap();
        // A timeout far beyond what reading 64 MiB on loopback takes: the limit ends the call.
        let url = format!("http://127.0.0.1:{port}");
        repo(dir.path(), kind, doc, &url, ", timeoutSeconds: 60");
        let reason = unknown_because(dir.path(), kind).await;
        assert!(
            reason.contains("goes on beyond maxBodyBytes (67108864 bytes)"),
            "{kind}: {reason}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_over_a_configured_limit_is_refused_with_how_to_raise_it() {
    // Chunked, so the size shows only while reading; and one that declares its size.
    let chunked = serve(axum::Router::new().fallback(|| async {
        let parts = (0..4).map(|_| Ok::<_, Infallible>(Bytes::from(vec![b' '; 2000])));
        Body::from_stream(futures::stream::iter(parts))
    }))
    .await
    .0;
    let declared = serve(axum::Router::new().fallback(|| async { " ".repeat(5000) }))
        .await
        .0;
    for (port, says) in [
        (chunked, "goes on beyond maxBodyBytes (1000 bytes)"),
        (
            declared,
            "declares 5000 bytes beyond maxBodyBytes (1000 bytes)",
        ),
    ] {
        for (kind, doc) in PROVIDERS {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("http://labctl:hunter2@127.0.0.1:{port}");
            repo(dir.path(), kind, doc, &url, ", maxBodyBytes: 1000");
            let reason = unknown_because(dir.path(), kind).await;
            assert!(reason.contains(says), "{kind}: {reason}");
            assert!(
                reason.contains(&format!(
                    "raise `maxBodyBytes` of provider `{kind}` in labctl.yaml"
                )),
                "{kind}: {reason}"
            );
            assert!(reason.contains("http://***@127.0.0.1:"), "{kind}: {reason}");
            assert!(!reason.contains("hunter2"), "{kind}: {reason}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_then_a_stalled_body_end_at_the_deadline() {
    let app = axum::Router::new().fallback(|| async {
        use futures::StreamExt;
        let first = Ok::<_, Infallible>(Bytes::from_static(b"["));
        let body = futures::stream::iter([first]).chain(futures::stream::pending());
        (
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(body),
        )
            .into_response()
    });
    let port = serve(app).await.0;
    for (kind, doc) in PROVIDERS {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("http://127.0.0.1:{port}");
        repo(dir.path(), kind, doc, &url, ", timeoutSeconds: 1");
        let reason = unknown_because(dir.path(), kind).await;
        assert!(reason.contains("no answer within 1 s"), "{kind}: {reason}");
    }
}
