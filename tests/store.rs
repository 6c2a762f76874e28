//! The state store against real databases: every case runs on SQLite (a temp file) and on
//! PostgreSQL (127.0.0.1:5432, a fresh database per test). Without PostgreSQL the PostgreSQL
//! cases print "skipped", unless CI=true, where they fail.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use labctl::store::{
    ActorKind, AuditEntry, DeviationRecord, DeviationType, ObservedSnapshot, Outcome,
    RetentionPolicy, RunReport, Severity, Store, StoreError, Unobservable,
};
use serde_json::json;
use sqlx::{Connection, Executor};

/// The server and the database used to create one database per test; override with
/// LABCTL_TEST_POSTGRES (a URL ending in the admin database).
fn pg_admin_url() -> String {
    std::env::var("LABCTL_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn on_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/state/labctl.db", dir.path().display());
    let store = Store::connect(&url).await.unwrap();
    case(store).await;
}

async fn on_postgres<F, Fut>(case: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    sqlx::any::install_default_drivers();
    let admin_url = pg_admin_url();
    let mut admin = match sqlx::AnyConnection::connect(&admin_url).await {
        Ok(conn) => conn,
        Err(e) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("PostgreSQL at {admin_url} is required when CI=true: {e}");
            }
            eprintln!("skipped: PostgreSQL at {admin_url} is unreachable: {e}");
            return;
        }
    };
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!(
        "labctl_t_{}_{}_{}",
        std::process::id(),
        nanos,
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let server = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(s, _)| s);
    let store = Store::connect(&format!("{server}/{name}")).await.unwrap();
    let outcome = tokio::spawn(case(store)).await;
    let _ = admin
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await;
    let _ = admin.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Generates `#[tokio::test]`s running one case on each backend.
macro_rules! on_both {
    ($($case:ident => $sqlite:ident, $postgres:ident;)+) => {$(
        #[tokio::test]
        async fn $sqlite() {
            on_sqlite($case).await;
        }
        #[tokio::test]
        async fn $postgres() {
            on_postgres($case).await;
        }
    )+};
}

on_both! {
    case_migrate => sqlite_migrate, postgres_migrate;
    case_run_round_trip => sqlite_run_round_trip, postgres_run_round_trip;
    case_deviation_life => sqlite_deviation_life, postgres_deviation_life;
    case_unobservable_keeps_open => sqlite_unobservable_keeps_open, postgres_unobservable_keeps_open;
    case_unchanged_observations => sqlite_unchanged_observations, postgres_unchanged_observations;
    case_failed_finish_stores_nothing => sqlite_failed_finish_stores_nothing, postgres_failed_finish_stores_nothing;
    case_unfinished_run_aborted => sqlite_unfinished_run_aborted, postgres_unfinished_run_aborted;
    case_leader_lock => sqlite_leader_lock, postgres_leader_lock;
    case_prune_keeps_open => sqlite_prune_keeps_open, postgres_prune_keeps_open;
    case_audit_and_stats => sqlite_audit_and_stats, postgres_audit_and_stats;
}

fn deviation(kind: &str, name: &str, field: &str, actual: serde_json::Value) -> DeviationRecord {
    DeviationRecord {
        kind: kind.into(),
        name: name.into(),
        field_path: field.into(),
        dtype: DeviationType::Drifted,
        severity: Severity::High,
        auto_correctable: true,
        remediation: Some("apply".into()),
        expected: Some(json!({"vlan": 10})),
        actual: Some(actual),
    }
}

fn report(commit: &str, deviations: Vec<DeviationRecord>) -> RunReport {
    RunReport {
        commit_sha: Some(commit.into()),
        deviations,
        ..RunReport::new(Outcome::Succeeded)
    }
}

async fn one_run(store: &Store, report: RunReport) -> labctl::store::RunCounts {
    let run = store.start_run("timer", "ctl-1").await.unwrap();
    store.finish_run(run, report).await.unwrap()
}

async fn case_migrate(store: Store) {
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!(
        stats.runs + stats.blobs + stats.deviations + stats.audit_log,
        0
    );
    assert!(stats.database_bytes > 0);
    assert!(!store.describe().is_empty());
}

async fn case_run_round_trip(store: Store) {
    store.migrate().await.unwrap();
    assert!(store.latest_run().await.unwrap().is_none());
    let run = store.start_run("webhook", "ctl-1").await.unwrap();
    let started = store.latest_run().await.unwrap().unwrap();
    assert_eq!(started.id, run);
    assert_eq!(started.outcome, Outcome::Running);
    assert_eq!(started.finished_at, None);

    let counts = store
        .finish_run(
            run,
            RunReport {
                desired: Some(json!({"pools": [{"name": "lan"}]})),
                resources: 7,
                error: Some("provider x: timeout".into()),
                ..report(
                    "abc123",
                    vec![deviation("Device", "sw1", "vlan", json!(20))],
                )
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (
            counts.deviations_open,
            counts.deviations_opened,
            counts.deviations_resolved
        ),
        (1, 1, 0)
    );
    let finished = store.latest_run().await.unwrap().unwrap();
    assert_eq!(finished.id, run);
    assert_eq!(finished.trigger, "webhook");
    assert_eq!(finished.controller, "ctl-1");
    assert_eq!(finished.outcome, Outcome::Succeeded);
    assert_eq!(finished.commit_sha.as_deref(), Some("abc123"));
    assert_eq!(finished.resources, 7);
    assert_eq!(finished.counts, counts);
    assert_eq!(finished.error.as_deref(), Some("provider x: timeout"));
    assert!(finished.finished_at.unwrap() >= finished.started_at);

    let runs = store.runs_between(0, i64::MAX).await.unwrap();
    assert_eq!(runs, vec![finished.clone()]);
    assert!(store
        .runs_between(0, finished.started_at)
        .await
        .unwrap()
        .is_empty());
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.desired_snapshots, stats.blobs), (1, 1));

    assert!(matches!(
        store.finish_run(run, report("abc123", vec![])).await,
        Err(StoreError::RunNotRunning(r)) if r == run
    ));
}

async fn case_deviation_life(store: Store) {
    store.migrate().await.unwrap();
    let c = one_run(
        &store,
        report("c1", vec![deviation("Device", "sw1", "vlan", json!(20))]),
    )
    .await;
    assert_eq!((c.deviations_open, c.deviations_opened), (1, 1));
    let first = store.open_deviations(None, None).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].seen_count, 1);

    let c = one_run(
        &store,
        report("c2", vec![deviation("Device", "sw1", "vlan", json!(30))]),
    )
    .await;
    assert_eq!(
        (
            c.deviations_open,
            c.deviations_opened,
            c.deviations_resolved
        ),
        (1, 0, 0)
    );
    let seen = store
        .open_deviations(Some("Device"), Some(Severity::High))
        .await
        .unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].id, first[0].id);
    assert_eq!(seen[0].seen_count, 2);
    assert_eq!(seen[0].record.actual, Some(json!(30)));
    assert_eq!(seen[0].record.expected, Some(json!({"vlan": 10})));
    assert_eq!(seen[0].opened_run, first[0].opened_run);
    assert!(seen[0].last_seen_run > first[0].last_seen_run);
    assert!(store
        .open_deviations(Some("Route"), None)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .open_deviations(None, Some(Severity::Critical))
        .await
        .unwrap()
        .is_empty());

    let resolving = store.start_run("timer", "ctl-1").await.unwrap();
    let c = store
        .finish_run(resolving, report("c3", vec![]))
        .await
        .unwrap();
    assert_eq!((c.deviations_open, c.deviations_resolved), (0, 1));
    assert!(store.open_deviations(None, None).await.unwrap().is_empty());

    one_run(
        &store,
        report("c4", vec![deviation("Device", "sw1", "vlan", json!(40))]),
    )
    .await;
    let history = store
        .deviation_history("Device", "sw1", "vlan")
        .await
        .unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].resolved_run, Some(resolving));
    assert_eq!(history[0].resolved_commit.as_deref(), Some("c3"));
    assert_eq!(history[0].seen_count, 2);
    assert!(!history[0].is_open());
    assert!(history[1].is_open());
    assert_eq!(history[1].seen_count, 1);
    assert_eq!(history[1].record.actual, Some(json!(40)));
}

async fn case_unobservable_keeps_open(store: Store) {
    store.migrate().await.unwrap();
    one_run(
        &store,
        report(
            "c1",
            vec![
                deviation("Device", "sw1", "vlan", json!(20)),
                deviation("Device", "sw2", "", json!(null)),
                deviation("DhcpReservation", "printer", "ip", json!("10.0.0.9")),
            ],
        ),
    )
    .await;
    let c = one_run(
        &store,
        RunReport {
            unobservable: vec![Unobservable::kind("Device")],
            ..report("c2", vec![])
        },
    )
    .await;
    assert_eq!((c.deviations_open, c.deviations_resolved), (2, 1));
    let open = store.open_deviations(None, None).await.unwrap();
    let names: Vec<_> = open.iter().map(|d| d.record.name.as_str()).collect();
    assert_eq!(names, ["sw1", "sw2"]);
    assert!(open.iter().all(|d| d.seen_count == 1));

    // One object unobservable: only that one stays.
    let c = one_run(
        &store,
        RunReport {
            unobservable: vec![Unobservable::object("Device", "sw2")],
            ..report("c3", vec![])
        },
    )
    .await;
    assert_eq!((c.deviations_open, c.deviations_resolved), (1, 1));
    let open = store.open_deviations(None, None).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].record.name, "sw2");
}

async fn case_unchanged_observations(store: Store) {
    store.migrate().await.unwrap();
    let observed = |body: serde_json::Value| ObservedSnapshot {
        provider: "unifi".into(),
        body,
        observed_at: 1_700_000_000_000,
    };
    for _ in 0..100 {
        one_run(
            &store,
            RunReport {
                observed: vec![observed(json!({"b": [1, 2], "a": {"y": 1, "x": 2}}))],
                ..RunReport::new(Outcome::Succeeded)
            },
        )
        .await;
    }
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.runs, stats.observed_snapshots, stats.blobs),
        (100, 1, 1)
    );

    one_run(
        &store,
        RunReport {
            observed: vec![observed(json!({"b": [1, 2, 3]}))],
            ..RunReport::new(Outcome::Succeeded)
        },
    )
    .await;
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.runs, stats.observed_snapshots, stats.blobs),
        (101, 2, 2)
    );
}

async fn case_failed_finish_stores_nothing(store: Store) {
    store.migrate().await.unwrap();
    one_run(
        &store,
        report("c1", vec![deviation("Device", "sw1", "vlan", json!(20))]),
    )
    .await;
    let before = store.stats().await.unwrap();

    let run = store.start_run("timer", "ctl-1").await.unwrap();
    let bad = RunReport {
        desired: Some(json!({"new": true})),
        observed: vec![ObservedSnapshot {
            provider: "unifi".into(),
            body: json!({"x": 1}),
            observed_at: 1,
        }],
        // The empty kind violates a CHECK constraint after everything else was written.
        ..report(
            "c2",
            vec![
                deviation("Route", "r1", "gw", json!("10.0.0.1")),
                deviation("", "nameless", "", json!(1)),
            ],
        )
    };
    let err = store.finish_run(run, bad).await.unwrap_err();
    assert!(matches!(err, StoreError::Query { .. }), "{err}");

    let after = store.stats().await.unwrap();
    assert_eq!(after.runs, before.runs + 1);
    assert_eq!(
        (
            after.blobs,
            after.desired_snapshots,
            after.observed_snapshots,
            after.deviations
        ),
        (
            before.blobs,
            before.desired_snapshots,
            before.observed_snapshots,
            before.deviations
        )
    );
    let open = store.open_deviations(None, None).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(
        (open[0].record.name.as_str(), open[0].seen_count),
        ("sw1", 1)
    );
    let latest = store.latest_run().await.unwrap().unwrap();
    assert_eq!((latest.id, latest.outcome), (run, Outcome::Running));

    // The run can still be finished properly.
    store.finish_run(run, report("c2", vec![])).await.unwrap();
    assert!(store.open_deviations(None, None).await.unwrap().is_empty());
}

async fn case_unfinished_run_aborted(store: Store) {
    store.migrate().await.unwrap();
    let crashed = store.start_run("timer", "ctl-old").await.unwrap();
    let next = store.start_run("timer", "ctl-new").await.unwrap();
    let runs = store.runs_between(0, i64::MAX).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!((runs[0].id, runs[0].outcome), (crashed, Outcome::Aborted));
    assert!(runs[0].finished_at.is_some());
    assert_eq!((runs[1].id, runs[1].outcome), (next, Outcome::Running));
    assert!(matches!(
        store.finish_run(crashed, report("c1", vec![])).await,
        Err(StoreError::RunNotRunning(_))
    ));
    assert!(matches!(
        store
            .finish_run(next, RunReport::new(Outcome::Running))
            .await,
        Err(StoreError::InvalidReport(_))
    ));
}

async fn case_leader_lock(store: Store) {
    store.migrate().await.unwrap();
    let first = store.leader(false).await.unwrap();
    let err = store.leader(false).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaderBusy { .. }), "{err}");
    assert!(err.to_string().contains("leader lock"), "{err}");
    first.release().await.unwrap();
    let second = store.leader(false).await.unwrap();

    // A waiting candidate gets it once it is released.
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.leader(true).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished());
    second.release().await.unwrap();
    let third = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the waiting candidate never got the lock")
        .unwrap()
        .unwrap();
    third.release().await.unwrap();
}

async fn case_prune_keeps_open(store: Store) {
    store.migrate().await.unwrap();
    let observed = |n: i64| ObservedSnapshot {
        provider: "unifi".into(),
        body: json!({ "n": n }),
        observed_at: 1,
    };
    one_run(
        &store,
        RunReport {
            observed: vec![observed(1)],
            desired: Some(json!({"rev": 1})),
            ..report(
                "c1",
                vec![
                    deviation("Device", "sw1", "vlan", json!(20)),
                    deviation("Device", "sw2", "vlan", json!(20)),
                ],
            )
        },
    )
    .await;
    one_run(
        &store,
        RunReport {
            observed: vec![observed(2)],
            ..report("c2", vec![deviation("Device", "sw1", "vlan", json!(20))])
        },
    )
    .await;
    store
        .audit(&AuditEntry {
            actor_kind: ActorKind::Cli,
            actor: "alice".into(),
            action: "db.prune".into(),
            target: None,
            details: json!({}),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let pruned = store
        .prune(RetentionPolicy {
            keep_runs_days: 0,
            keep_audit_days: 0,
        })
        .await
        .unwrap();
    assert_eq!(pruned.runs, 1);
    assert_eq!(pruned.observed_snapshots, 1);
    assert_eq!(pruned.desired_snapshots, 1);
    assert_eq!(pruned.deviations, 1);
    assert_eq!(pruned.blobs, 2);
    assert_eq!(pruned.audit_log, 1);

    let open = store.open_deviations(None, None).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].record.name, "sw1");
    assert!(store
        .deviation_history("Device", "sw2", "vlan")
        .await
        .unwrap()
        .is_empty());
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (
            stats.runs,
            stats.observed_snapshots,
            stats.blobs,
            stats.audit_log
        ),
        (1, 1, 1, 0)
    );
    assert_eq!(
        store
            .latest_run()
            .await
            .unwrap()
            .unwrap()
            .commit_sha
            .as_deref(),
        Some("c2")
    );

    // Keeping everything deletes nothing.
    let pruned = store
        .prune(RetentionPolicy {
            keep_runs_days: 30,
            keep_audit_days: 365,
        })
        .await
        .unwrap();
    assert_eq!(pruned, Default::default());
}

async fn case_audit_and_stats(store: Store) {
    store.migrate().await.unwrap();
    for (kind, action) in [(ActorKind::Controller, "apply"), (ActorKind::Mcp, "query")] {
        store
            .audit(&AuditEntry {
                actor_kind: kind,
                actor: "bob".into(),
                action: action.into(),
                target: Some("Device/sw1".into()),
                details: json!({"z": 1, "a": [true, null]}),
            })
            .await
            .unwrap();
    }
    let recent = store.recent_audit(10).await.unwrap();
    assert_eq!(recent.len(), 2);
    assert_eq!(recent[0].entry.action, "query");
    assert_eq!(recent[0].entry.actor_kind, ActorKind::Mcp);
    assert_eq!(recent[1].entry.target.as_deref(), Some("Device/sw1"));
    assert_eq!(recent[1].entry.details, json!({"a": [true, null], "z": 1}));
    assert!(recent[0].id > recent[1].id && recent[0].at >= recent[1].at);

    one_run(
        &store,
        report("c1", vec![deviation("Device", "sw1", "vlan", json!(1))]),
    )
    .await;
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.audit_log, 2);
    assert_eq!(stats.runs, 1);
    assert_eq!((stats.deviations, stats.open_deviations), (1, 1));
    assert_eq!(stats.pull_requests, 0);
    assert!(stats.database_bytes > 0);
}

#[tokio::test]
async fn sqlite_uses_wal_and_creates_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/labctl.db");
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    assert!(path.is_file());
    let mut conn = sqlx::AnyConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let mode: String = sqlx::Row::get(&conn.fetch_one("PRAGMA journal_mode").await.unwrap(), 0);
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn unknown_scheme_is_named_without_password() {
    let err = Store::connect("mysql://root:hunter2@db/lab")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("`mysql`"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test]
async fn postgres_describe_and_errors_redact_the_password() {
    // No such role (or no server): either way the message names the URL without the password.
    let err = Store::connect("postgres://nobody:hunter2@127.0.0.1:5432/lab")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("postgres://***@127.0.0.1:5432/lab"), "{text}");
}
