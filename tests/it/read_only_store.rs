//! Readers on a state directory they may not write (the controller's, owned by another
//! user): `labctl status` and `labctl mcp` run as `nobody` against a store root owns, once
//! with no writer about and once while a writer holds the newest run in SQLite's WAL only.
//! Needs root (to run as nobody); elsewhere it prints "skipped", unless CI=true.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::support::cli::{one_pool_lab, reconcile_worktree};
use crate::support::mcp::RawSession;
use labctl::store::Store;
use serde_json::json;

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id runs");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// `labctl ARGS` as the user nobody.
fn as_nobody(args: &[&str]) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "nobody", "--", env!("CARGO_BIN_EXE_labctl")])
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("DATABASE_URL")
        .env_remove("LABCTL_LOG");
    cmd
}

/// `labctl status` and one `get_reconcile_status` over `labctl mcp`, both as nobody, both
/// naming `run` as the latest.
async fn read_as_nobody(dir: &Path, db: &str, run: i64) {
    let out = as_nobody(&["status", "--database-url", db])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.starts_with(&format!("Last run {run} succeeded")),
        "{out:?}"
    );

    let log = dir.join(format!("mcp-{run}.log"));
    let std_cmd = as_nobody(&["mcp", "--database-url", db]);
    let mut session = RawSession::start(std_cmd.into(), std::fs::File::create(&log).unwrap()).await;
    session.call(1, "get_reconcile_status", json!({})).await;
    let answer = session.next().await;
    assert_eq!(
        answer["result"]["structuredContent"]["runs"][0]["id"], run,
        "{answer}"
    );
    assert!(session.close().await);
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(stderr.contains("read-only for this user"), "{stderr}");
    // The call is audited where it can be: on stderr (JSON lines, as it is not a terminal).
    assert!(
        stderr.contains(r#""target":"labctl::audit""#)
            && stderr.contains(r#""action":"get_reconcile_status""#),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn status_and_mcp_read_a_store_they_cannot_write() {
    if !is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "needs root to run labctl as nobody"
        );
        eprintln!("skipped: needs root to run labctl as nobody");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (repo, db) = one_pool_lab(dir.path());
    let db_path = dir.path().join("state.db");
    reconcile_worktree(&repo, &db);
    let mode = std::fs::metadata(&db_path).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o644,
        "nobody may read the store, not write it"
    );

    read_as_nobody(dir.path(), &db, 1).await;

    // A writer holds the store open, so the next run stays in the WAL until a checkpoint:
    // a reader that skipped the WAL would answer with run 1.
    let writer = Store::connect(&db).await.unwrap();
    reconcile_worktree(&repo, &db);
    let wal = std::fs::metadata(dir.path().join("state.db-wal")).unwrap();
    assert!(wal.len() > 0, "run 2 is in the WAL");
    read_as_nobody(dir.path(), &db, 2).await;

    // Nothing was written by the readers.
    assert!(writer.recent_audit(10).await.unwrap().is_empty());
    writer.close().await;
}
