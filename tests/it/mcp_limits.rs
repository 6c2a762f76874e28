//! What one MCP tool call may cost the server, through the real `labctl mcp` over stdio:
//! arguments measured before any work, a deadline per call, the CPU-heavy validation on the
//! blocking pool a few at a time (cheap calls are answered meanwhile), and audit rows of
//! bounded size within the retention's row limit.

use std::path::Path;

use crate::support::cli::{one_pool_lab, reconcile_worktree};
use crate::support::mcp::{audit_when, raw_error_text, RawSession};
use labctl::mcp::MAX_DEFINITION_BYTES;
use labctl::store::{canonical_json, ActorKind, AuditEntry, Store};
use serde_json::json;

/// A store holding one reconcile run of a one-pool repository (no providers).
fn reconciled(dir: &Path) -> String {
    let (repo, db) = one_pool_lab(dir);
    reconcile_worktree(&repo, &db);
    db
}

/// Valid pool chains, 64 levels deep, as many as fit in `bytes`: the most work a definition
/// of that size asks of the checks.
fn pool_chains(bytes: usize) -> (String, usize) {
    let mut text = String::new();
    let mut documents = 0;
    for chain in 0.. {
        for depth in 0..64 {
            let parent = if depth == 0 {
                String::new()
            } else {
                format!("  parent: c{chain}p{}\n", depth - 1)
            };
            let doc = format!(
                "apiVersion: labctl.dev/v1\nkind: Pool\nmetadata: {{name: c{chain}p{depth}}}\n\
                 spec:\n{parent}  type: compute\n  dimensions: {{d{depth}: x}}\n---\n"
            );
            if text.len() + doc.len() > bytes {
                return (text, documents);
            }
            text.push_str(&doc);
            documents += 1;
        }
    }
    unreachable!()
}

fn mcp(db: &str, extra: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_labctl"));
    cmd.args(["mcp", "--database-url", db]).args(extra);
    cmd
}

fn stderr_file(dir: &Path) -> std::fs::File {
    std::fs::File::create(dir.join("stderr.log")).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn cheap_calls_are_answered_while_big_validations_run() {
    let dir = tempfile::tempdir().unwrap();
    let db = reconciled(dir.path());
    let cmd = mcp(&db, &["--cpu-slots", "1", "--tool-deadline", "600"]);
    let mut session = RawSession::start(cmd, stderr_file(dir.path())).await;
    let (heavy, documents) = pool_chains(MAX_DEFINITION_BYTES);
    for id in 1..=4 {
        session
            .call(id, "validate_definition", json!({ "yaml": heavy }))
            .await;
    }
    session.call(10, "get_reconcile_status", json!({})).await;
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(session.next().await);
    }
    let order: Vec<i64> = answers.iter().map(|a| a["id"].as_i64().unwrap()).collect();
    // Sent last, answered first: it did not wait for a validation to end.
    assert_eq!(order[0], 10, "answer order {order:?}");
    let status = &answers[0]["result"]["structuredContent"];
    assert_eq!(status["runs"][0]["id"], 1, "{}", answers[0]);
    for answer in &answers[1..] {
        let result = &answer["result"]["structuredContent"];
        assert_eq!(result["valid"], true, "{answer}");
        assert_eq!(result["documents"], documents as u64);
    }
    assert!(session.close().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_arguments_and_late_calls_get_tool_errors_that_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let db = reconciled(dir.path());
    let cmd = mcp(&db, &["--cpu-slots", "1", "--tool-deadline", "0.05"]);
    let mut session = RawSession::start(cmd, stderr_file(dir.path())).await;

    session
        .call(1, "get_device", json!({ "device": "x".repeat(2000) }))
        .await;
    let e = raw_error_text(&session.next().await);
    assert!(
        e.contains("argument `device` of get_device is 2000 bytes")
            && e.contains("at most 1024 bytes"),
        "{e}"
    );
    let fields = vec!["name"; 65];
    session
        .call(2, "list_devices", json!({ "fields": fields }))
        .await;
    let e = raw_error_text(&session.next().await);
    assert!(e.contains("`fields`") && e.contains("65 items"), "{e}");
    let too_big = "#".repeat(MAX_DEFINITION_BYTES + 1);
    session
        .call(3, "validate_definition", json!({ "yaml": too_big }))
        .await;
    let e = raw_error_text(&session.next().await);
    assert!(
        e.contains("argument `yaml` of validate_definition is 262145 bytes")
            && e.contains("at most 262144 bytes"),
        "{e}"
    );
    // Within the limit but more work than 50 ms: the caller hears so, no answer is made up.
    let (heavy, _) = pool_chains(MAX_DEFINITION_BYTES);
    session
        .call(4, "validate_definition", json!({ "yaml": heavy }))
        .await;
    let e = raw_error_text(&session.next().await);
    assert!(
        e.contains("validate_definition did not finish within 0.05 s")
            && e.contains("--tool-deadline"),
        "{e}"
    );
    assert!(session.close().await);

    // Each row is small, whatever was sent; no document is kept, only its size and hash.
    let store = Store::connect(&db).await.unwrap();
    let audit = store.recent_audit(10).await.unwrap();
    assert_eq!(audit.len(), 4);
    for row in &audit {
        let size = canonical_json(&row.entry.details).len();
        assert!(size < 2048, "{} row: {size} bytes", row.entry.action);
    }
    let refused = &audit[1].entry;
    let kept = refused.details["arguments"]["yaml"].as_str().unwrap();
    assert!(kept.starts_with("[262145 bytes, sha256 "), "{kept}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_keeps_the_audit_log_within_its_row_limit() {
    let dir = tempfile::tempdir().unwrap();
    let db = reconciled(dir.path());
    let store = Store::connect(&db).await.unwrap();
    let earlier: Vec<AuditEntry> = (0..20)
        .map(|i| AuditEntry {
            actor_kind: ActorKind::Mcp,
            actor: "stdio".into(),
            action: format!("earlier-{i}"),
            target: None,
            details: json!({}),
        })
        .collect();
    store.audit_all(&earlier).await.unwrap();

    let cmd = mcp(&db, &["--keep-audit-rows", "5"]);
    let mut session = RawSession::start(cmd, stderr_file(dir.path())).await;
    session.call(1, "get_reconcile_status", json!({})).await;
    let answer = session.next().await;
    assert_ne!(answer["result"]["isError"], true, "{answer}");
    // Its row is committed, and the log is pruned to its limit with it.
    let kept = [
        "get_reconcile_status",
        "earlier-19",
        "earlier-18",
        "earlier-17",
        "earlier-16",
    ];
    audit_when(&store, 100, |rows| {
        rows.iter().map(|r| r.entry.action.as_str()).eq(kept)
    })
    .await;
    assert!(session.close().await);
    store.close().await;
}
