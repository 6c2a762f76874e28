//! `labctl db migrate` and `labctl db stats` through the binary, on SQLite.

use std::process::Command;

fn labctl() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_labctl"));
    for var in [
        "DATABASE_URL",
        "STATE_DIRECTORY",
        "XDG_STATE_HOME",
        "LABCTL_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

#[test]
fn migrate_then_stats_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/db/labctl.db", dir.path().display());
    for _ in 0..2 {
        let out = labctl()
            .args(["db", "migrate", "--database-url", &url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("up to date"));
    }
    let out = labctl()
        .args(["db", "stats", "--format", "json"])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["rows"]["runs"], 0);
    assert!(stats["database_bytes"].as_i64().unwrap() > 0);
}

#[test]
fn default_database_is_in_the_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = labctl()
        .args(["db", "migrate"])
        .env("STATE_DIRECTORY", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("labctl.db").is_file());

    let xdg = tempfile::tempdir().unwrap();
    let out = labctl()
        .args(["db", "migrate"])
        .env("XDG_STATE_HOME", xdg.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(xdg.path().join("labctl/labctl.db").is_file());
}

#[test]
fn stats_before_migrate_hints_and_unknown_scheme_is_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/new.db", dir.path().display());
    let out = labctl()
        .args(["db", "stats", "--database-url", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("labctl db migrate"));

    let out = labctl()
        .args([
            "db",
            "stats",
            "--database-url",
            "mysql://root:hunter2@db/lab",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`mysql`") && !stderr.contains("hunter2"),
        "{stderr}"
    );
}
