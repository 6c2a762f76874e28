//! `labctl db migrate`, `labctl db stats` and `labctl db prune` through the binary, on SQLite.

use crate::support::cli::labctl_command;

#[test]
fn migrate_then_stats_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/db/labctl.db", dir.path().display());
    for _ in 0..2 {
        let out = labctl_command()
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
    let out = labctl_command()
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
    let out = labctl_command()
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
    let out = labctl_command()
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
    let out = labctl_command()
        .args(["db", "stats", "--database-url", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("labctl db migrate"));

    let out = labctl_command()
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

/// Two runs with different observations and an audit entry, recorded through the library.
async fn history(url: &str) {
    use labctl::store::{ActorKind, AuditEntry, ObservedSnapshot, Outcome, RunReport, Store};
    // Written a second ago, so that pruning with 0 days of retention deletes it.
    let then = labctl::time::ManualClock::at(labctl::time::now_ms() - 1_000);
    let store = Store::connect(url)
        .await
        .unwrap()
        .with_clock(std::sync::Arc::new(then));
    store.migrate().await.unwrap();
    for n in 0..2 {
        let run = store.start_run("timer", "ctl-1").await.unwrap();
        store
            .finish_run(
                run,
                RunReport {
                    observed: vec![ObservedSnapshot {
                        provider: "kea".into(),
                        body: serde_json::json!({ "n": n }).into(),
                        observed_at: std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap()
                            .as_millis() as i64,
                    }],
                    ..RunReport::new(Outcome::Succeeded)
                },
            )
            .await
            .unwrap();
    }
    store
        .audit(&AuditEntry {
            actor_kind: ActorKind::Cli,
            actor: "alice".into(),
            action: "apply".into(),
            target: None,
            details: serde_json::json!({}),
        })
        .await
        .unwrap();
    store.close().await;
}

#[test]
fn prune_prints_what_it_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/labctl.db", dir.path().display());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(history(&url));

    // The defaults (30 and 365 days) keep everything this young.
    let out = labctl_command()
        .args(["db", "prune", "--database-url", &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("kept 30 days of runs, 365 days and at most 500000 entries of audit"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["runs", "0", "deleted"]),
        "{stdout}"
    );

    let out = labctl_command()
        .args([
            "db",
            "prune",
            "--keep-runs-days",
            "0",
            "--keep-audit-days",
            "0",
            "--format",
            "json",
        ])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["policy"]["keep_runs_days"], 0);
    let deleted = &report["deleted"];
    assert_eq!(deleted["runs"], 1, "{report}");
    assert_eq!(deleted["observed_snapshots"], 1, "{report}");
    assert_eq!(deleted["blobs"], 1, "{report}");
    // The seeded entry and the first prune's own entry.
    assert_eq!(deleted["audit_log"], 2, "{report}");

    let out = labctl_command()
        .args(["db", "stats", "--format", "json", "--database-url", &url])
        .output()
        .unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["rows"]["runs"], 1);
    assert_eq!(stats["rows"]["observed_snapshots"], 1);
    // Each prune is audited.
    assert_eq!(stats["rows"]["audit_log"], 1);

    let out = labctl_command()
        .args([
            "db",
            "prune",
            "--keep-runs-days",
            "x",
            "--database-url",
            &url,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `status` and `drift` only read: they work on a state directory the caller cannot write
/// (the controller's, owned by another user), and create nothing where no store exists.
/// Run as `nobody` (root writes anywhere), on a store the controller wrote.
#[test]
fn readers_need_no_write_access() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let url = format!("sqlite://{}/labctl.db", state.display());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(history(&url));
    // The writer's files: the database and, until sqlx's worker threads have closed its
    // connections (after `close` returns) and the last one has checkpointed, the WAL and its
    // index. That cleanup only ever removes files.
    let names = || -> std::collections::BTreeSet<String> {
        std::fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    for (path, mode) in [(dir.path().to_path_buf(), 0o755), (state.clone(), 0o755)] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let before = names();
    for name in &before {
        // Gone already if the writer's cleanup finished meanwhile.
        let _ = std::fs::set_permissions(state.join(name), std::fs::Permissions::from_mode(0o644));
    }
    let as_nobody = |args: &[&str]| {
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_labctl"))
            .args(args)
            .env_remove("DATABASE_URL")
            .env("NO_COLOR", "1")
            .output()
            .expect("setpriv runs");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "labctl {args:?}: {stderr}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let status: serde_json::Value = serde_json::from_str(&as_nobody(&[
        "status",
        "--database-url",
        &url,
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(
        status["recentRuns"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );
    as_nobody(&["drift", "--database-url", &url]);
    let created: Vec<String> = names().difference(&before).cloned().collect();
    assert!(created.is_empty(), "a reader created {created:?}");

    // Where no store exists yet, a reader says so and creates none.
    let missing = format!("sqlite://{}/none/labctl.db", dir.path().display());
    let text = as_nobody(&["status", "--database-url", &missing]);
    assert!(text.contains("No run recorded yet"), "{text}");
    assert!(!dir.path().join("none").exists());
}

/// `drift --history Kind/name` (no field) lists every field's history of the resource, with
/// the runs and the commit that resolved each; a resolved entry no longer says what to do.
#[test]
fn history_of_a_resource_names_runs_and_commits() {
    use labctl::store::{DeviationRecord, DeviationType, Outcome, RunReport, Severity, Store};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/labctl.db", dir.path().display());
    let record = |field: &str| DeviationRecord {
        kind: "Device".into(),
        name: "sw1".into(),
        field_path: field.into(),
        dtype: DeviationType::Drifted,
        severity: Severity::Medium,
        auto_correctable: true,
        remediation: Some("reconcile will restore the field (policy apply)".into()),
        expected: Some(serde_json::json!(10)),
        actual: Some(serde_json::json!(20)),
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let store = Store::connect(&url).await.unwrap();
            store.migrate().await.unwrap();
            for (commit, deviations) in [
                (
                    "a".repeat(40),
                    vec![record("spec.vlan"), record("spec.cores")],
                ),
                ("b".repeat(40), vec![record("spec.cores")]),
            ] {
                let run = store.start_run("timer", "ctl-1").await.unwrap();
                let report = RunReport {
                    commit_sha: Some(commit),
                    deviations,
                    ..RunReport::new(Outcome::Succeeded)
                };
                store.finish_run(run, report).await.unwrap();
            }
            store.close().await;
        });

    let out = labctl_command()
        .args(["drift", "--database-url", &url, "--history", "Device/sw1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].contains("Device/sw1 spec.vlan"), "{text}");
    assert!(
        lines[1].contains("(run 1), resolved")
            && lines[1].contains("by run 2, commit bbbbbbbbbbbb"),
        "{text}"
    );
    assert!(
        !lines[1].contains("reconcile will"),
        "a resolved entry says nothing to do: {text}"
    );
    assert!(lines[2].contains("Device/sw1 spec.cores"), "{text}");
    assert!(
        lines[3].contains("open since") && lines[3].contains("(run 1), seen 2×; reconcile will"),
        "{text}"
    );
}
