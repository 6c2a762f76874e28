//! The state store against real databases: every case runs on SQLite (a temp file) and on
//! PostgreSQL (127.0.0.1:5432, a fresh database per test). Without PostgreSQL the PostgreSQL
//! cases print "skipped", unless CI=true, where they fail.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use labctl::store::{
    ActorKind, AuditEntry, ChangeAction, ChangeKind, ChangeRecord, ChangeResult, DeviationRecord,
    DeviationType, ObservedSnapshot, Outcome, ProviderRecord, PullRequestState, RetentionPolicy,
    RunReport, Severity, Store, StoreError, Unobservable,
};
use labctl::time::ManualClock;
use serde_json::json;
use sqlx::{Connection, Executor, Row};

use crate::support::postgres::{self, TempDatabase};

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
    let Some(db) = TempDatabase::create().await else {
        return;
    };
    let store = Store::connect(&db.url).await.unwrap();
    let outcome = tokio::spawn(case(store)).await;
    db.drop_database().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Makes as many empty databases of one backend as a case needs.
#[derive(Clone)]
enum Databases {
    /// Files in one temporary directory.
    Sqlite(Arc<tempfile::TempDir>),
    /// Databases on the test server, dropped when the case ends.
    Postgres(Arc<Mutex<Vec<TempDatabase>>>),
}

impl Databases {
    async fn fresh(&self) -> Store {
        self.fresh_url().await.0
    }

    /// A fresh database and its URL, for writing rows as an older labctl did.
    async fn fresh_url(&self) -> (Store, String) {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let url = match self {
            Databases::Sqlite(dir) => {
                let n = SEQ.fetch_add(1, Ordering::Relaxed);
                format!("sqlite://{}/db{n}.db", dir.path().display())
            }
            Databases::Postgres(created) => {
                let db = TempDatabase::create()
                    .await
                    .expect("PostgreSQL is reachable");
                let url = db.url.clone();
                created.lock().unwrap().push(db);
                url
            }
        };
        (Store::connect(&url).await.unwrap(), url)
    }
}

async fn on_sqlite_databases<F, Fut>(case: F)
where
    F: FnOnce(Databases) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    case(Databases::Sqlite(Arc::new(dir))).await;
}

async fn on_postgres_databases<F, Fut>(case: F)
where
    F: FnOnce(Databases) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    if postgres::admin().await.is_none() {
        return;
    }
    let created = Arc::new(Mutex::new(Vec::new()));
    let outcome = tokio::spawn(case(Databases::Postgres(created.clone()))).await;
    let databases = std::mem::take(&mut *created.lock().unwrap());
    for db in databases {
        db.drop_database().await;
    }
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
    case_suspensions => sqlite_suspensions, postgres_suspensions;
    case_run_round_trip => sqlite_run_round_trip, postgres_run_round_trip;
    case_deviation_life => sqlite_deviation_life, postgres_deviation_life;
    case_unobservable_keeps_open => sqlite_unobservable_keeps_open, postgres_unobservable_keeps_open;
    case_unchanged_observations => sqlite_unchanged_observations, postgres_unchanged_observations;
    case_failed_finish_stores_nothing => sqlite_failed_finish_stores_nothing, postgres_failed_finish_stores_nothing;
    case_unfinished_run_aborted => sqlite_unfinished_run_aborted, postgres_unfinished_run_aborted;
    case_leader_lock => sqlite_leader_lock, postgres_leader_lock;
    case_prune_keeps_open => sqlite_prune_keeps_open, postgres_prune_keeps_open;
    case_audit_and_stats => sqlite_audit_and_stats, postgres_audit_and_stats;
    case_audit_bounded_by_rows => sqlite_audit_bounded_by_rows, postgres_audit_bounded_by_rows;
    case_latest_model => sqlite_latest_model, postgres_latest_model;
    case_prune_keeps_latest_model => sqlite_prune_keeps_latest_model, postgres_prune_keeps_latest_model;
    case_snapshots => sqlite_snapshots, postgres_snapshots;
    case_pull_requests => sqlite_pull_requests, postgres_pull_requests;
    case_changes_and_repairs => sqlite_changes_and_repairs, postgres_changes_and_repairs;
}

#[tokio::test]
async fn sqlite_migrations_from_every_prefix() {
    on_sqlite_databases(case_migrations_from_every_prefix).await;
}

#[tokio::test]
async fn postgres_migrations_from_every_prefix() {
    on_postgres_databases(case_migrations_from_every_prefix).await;
}

#[tokio::test]
async fn sqlite_runs_survive_the_partial_outcome_migration() {
    on_sqlite_databases(case_runs_survive_the_partial_outcome_migration).await;
}

#[tokio::test]
async fn postgres_runs_survive_the_partial_outcome_migration() {
    on_postgres_databases(case_runs_survive_the_partial_outcome_migration).await;
}

/// Migration 4 rebuilds SQLite's runs table to allow `partial` and add `reason`: runs and
/// their models recorded before it are kept as they were, and new runs use both. Bodies
/// written before migration 9 (plain text) are read as they were; new ones are compressed.
async fn case_runs_survive_the_partial_outcome_migration(databases: Databases) {
    let (store, url) = databases.fresh_url().await;
    store.migrate_to(3).await.unwrap();
    // A run with its model, written as labctl wrote them before migration 4.
    let hash = "ab".repeat(32);
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    conn.execute(
        format!(
            "INSERT INTO blobs (hash, body, size, created_at) \
             VALUES ('{hash}', '{{\"resources\":[]}}', 16, 1); \
             INSERT INTO runs (trigger, controller, started_at, finished_at, commit_sha, \
             outcome, resources, error, model_blob) \
             VALUES ('timer', 'ctl-1', 1, 2, 'c1', 'succeeded', 3, NULL, '{hash}')"
        )
        .as_str(),
    )
    .await
    .unwrap();
    conn.close().await.unwrap();

    store.migrate().await.unwrap();
    let kept = store.latest_run().await.unwrap().unwrap();
    assert_eq!(
        (kept.trigger.as_str(), kept.outcome, kept.resources),
        ("timer", Outcome::Succeeded, 3)
    );
    assert_eq!((kept.finished_at, kept.reason), (Some(2), None));
    assert_eq!(kept.model_hash.as_deref(), Some(hash.as_str()));
    // Its body, plain text as bodies were before migration 9, reads as it was written.
    let old = store.latest_model().await.unwrap().unwrap();
    assert_eq!(
        (old.run, old.json().unwrap()),
        (kept.id, json!({"resources": []}))
    );

    let reason = json!({"type": "manual", "via": "mcp", "by": "stdio"});
    let new = store
        .start_run_because("mcp", Some(&reason), "ctl-1")
        .await
        .unwrap();
    let mut partial = report("c2", vec![]);
    partial.outcome = Outcome::Partial;
    partial.model = Some(model(3, "unknown").into());
    store.finish_run(new, partial).await.unwrap();
    let latest = store.latest_run().await.unwrap().unwrap();
    assert_eq!(
        (latest.id, latest.outcome, latest.reason),
        (new, Outcome::Partial, Some(reason))
    );
    // A partial run's model is the latest model: it says what is unknown.
    let latest_model = store.latest_model().await.unwrap().unwrap();
    assert_eq!(
        (latest_model.run, latest_model.json().unwrap()),
        (new, model(3, "unknown"))
    );
    // Written since migration 9: compressed, with the text's length; a body that does not
    // inflate to that length is an error, never a model read short.
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    let hash = latest.model_hash.unwrap();
    let row = sqlx::query("SELECT body, size, packed FROM blobs WHERE hash = $1")
        .bind(&hash)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let (body, size, packed): (String, i64, Option<Vec<u8>>) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(body, "");
    let text = labctl::canonical::canonical_json(&model(3, "unknown"));
    assert_eq!(size, text.len() as i64);
    assert!(packed.unwrap().len() < text.len() / 2, "compressed");
    sqlx::query("UPDATE blobs SET size = size + 1 WHERE hash = $1")
        .bind(&hash)
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let err = store.latest_model().await.unwrap_err().to_string();
    assert!(err.contains("inflates to"), "{err}");
    store.close().await;
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
                desired: Some(json!({"pools": [{"name": "lan"}]}).into()),
                resources: 7,
                error: Some("provider x: timeout".into()),
                providers: vec![
                    ProviderRecord {
                        provider: "x".into(),
                        asked: true,
                        answered: false,
                        observe_ms: 2000,
                        error: Some("timeout".into()),
                    },
                    ProviderRecord {
                        provider: "kea".into(),
                        asked: true,
                        answered: true,
                        observe_ms: 12,
                        error: None,
                    },
                ],
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
    // What the status pages read back: the run by id and by page, its providers (by name),
    // the deviations it opened, its point on the trend.
    assert_eq!(
        store.run_by_id(run).await.unwrap().as_ref(),
        Some(&finished)
    );
    assert_eq!(store.run_by_id(run + 1).await.unwrap(), None);
    assert_eq!(
        store.runs_before(None, 10).await.unwrap(),
        vec![finished.clone()]
    );
    assert!(store.runs_before(Some(run), 10).await.unwrap().is_empty());
    let providers = store.run_providers(run).await.unwrap();
    assert_eq!(
        providers
            .iter()
            .map(|p| (
                p.provider.as_str(),
                p.answered,
                p.observe_ms,
                p.error.as_deref()
            ))
            .collect::<Vec<_>>(),
        vec![("kea", true, 12, None), ("x", false, 2000, Some("timeout"))]
    );
    let opened = store.run_deviations(run).await.unwrap();
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].record.name, "sw1");
    assert_eq!(
        store.run_points(0).await.unwrap(),
        vec![(finished.started_at, finished.finished_at, 1)]
    );
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
        body: body.into(),
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
        desired: Some(json!({"new": true}).into()),
        observed: vec![ObservedSnapshot {
            provider: "unifi".into(),
            body: json!({"x": 1}).into(),
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
    let clock = Arc::new(ManualClock::at(labctl::time::now_ms()));
    let store = store.with_clock(clock.clone());
    store.migrate().await.unwrap();
    let observed = |n: i64| ObservedSnapshot {
        provider: "unifi".into(),
        body: json!({ "n": n }).into(),
        observed_at: 1,
    };
    let provider = ProviderRecord {
        provider: "unifi".into(),
        asked: true,
        answered: true,
        observe_ms: 5,
        error: None,
    };
    one_run(
        &store,
        RunReport {
            observed: vec![observed(1)],
            providers: vec![provider.clone()],
            desired: Some(json!({"rev": 1}).into()),
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
            providers: vec![provider.clone()],
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
    clock.advance(20);

    let pruned = store
        .prune(RetentionPolicy {
            keep_runs_days: 0,
            keep_audit_days: 0,
            ..RetentionPolicy::DEFAULT
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
    // A run's provider rows go with it.
    let kept = store.latest_run().await.unwrap().unwrap().id;
    assert!(store.run_providers(kept - 1).await.unwrap().is_empty());
    assert_eq!(store.run_providers(kept).await.unwrap(), vec![provider]);
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
    let pruned = store.prune(RetentionPolicy::DEFAULT).await.unwrap();
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

/// The audit log keeps the newest `keep_audit_rows` entries whatever their age: callers
/// decide how fast it grows.
async fn case_audit_bounded_by_rows(store: Store) {
    store.migrate().await.unwrap();
    let entries: Vec<AuditEntry> = (0..10)
        .map(|i| AuditEntry {
            actor_kind: ActorKind::Mcp,
            actor: "token:ci".into(),
            action: format!("call-{i}"),
            target: None,
            details: json!({}),
        })
        .collect();
    store.audit_all(&entries).await.unwrap();
    let keep = |rows| RetentionPolicy {
        keep_audit_rows: rows,
        ..RetentionPolicy::DEFAULT
    };
    let actions = async || -> Vec<String> {
        let rows = store.recent_audit(100).await.unwrap();
        rows.into_iter().map(|r| r.entry.action).collect()
    };
    assert_eq!(store.prune_audit(keep(10)).await.unwrap(), 0);
    assert_eq!(store.prune_audit(keep(3)).await.unwrap(), 7);
    assert_eq!(actions().await, ["call-9", "call-8", "call-7"]);
    // The whole prune applies the same bound, and counts what it deleted.
    store.audit_all(&entries[..2]).await.unwrap();
    let pruned = store.prune(keep(4)).await.unwrap();
    assert_eq!(pruned.audit_log, 1);
    assert_eq!(actions().await, ["call-1", "call-0", "call-9", "call-8"]);
    assert_eq!(store.prune_audit(keep(0)).await.unwrap(), 4);
    assert_eq!(store.stats().await.unwrap().audit_log, 0);
    assert_eq!(store.prune_audit(keep(0)).await.unwrap(), 0);
}

/// For every prefix of the embedded migrations (none, the first, …, all): applied to an empty
/// database, then brought up to date, the schema is the one of a database migrated in one go.
async fn case_migrations_from_every_prefix(databases: Databases) {
    let reference = databases.fresh().await;
    reference.migrate().await.unwrap();
    let expected = reference.schema().await.unwrap();
    assert!(
        expected.iter().any(|l| l.contains("runs.model_blob")),
        "{expected:#?}"
    );
    let versions: Vec<i64> = reference.migrations().iter().map(|m| m.0).collect();
    assert!(!versions.is_empty());
    reference.close().await;

    for k in 0..=versions.len() {
        let store = databases.fresh().await;
        let target = if k == 0 { 0 } else { versions[k - 1] };
        store.migrate_to(target).await.unwrap();
        if k == 0 {
            let empty = store.schema().await.unwrap();
            assert!(!empty.iter().any(|l| l.contains(" runs.")), "{empty:#?}");
        }
        store.migrate().await.unwrap();
        assert_eq!(
            store.schema().await.unwrap(),
            expected,
            "schema after the first {k} migrations, then the rest"
        );
        // And the migrated database works.
        one_run(&store, report("c1", vec![])).await;
        store.close().await;
    }
}

fn model(resources: usize, status: &str) -> serde_json::Value {
    let items: Vec<_> = (0..resources)
        .map(|i| {
            json!({
                "kind": "DhcpReservation",
                "name": format!("host-{i}"),
                "desired": {"ip": format!("10.0.1.{i}")},
                "observed": {"ip": format!("10.0.1.{i}")},
                "status": status,
            })
        })
        .collect();
    json!({ "resources": items })
}

async fn case_latest_model(store: Store) {
    store.migrate().await.unwrap();
    assert!(store.latest_model().await.unwrap().is_none());
    // A run without a model leaves none.
    one_run(&store, report("c0", vec![])).await;
    assert!(store.latest_model().await.unwrap().is_none());

    let run = store.start_run("timer", "ctl-1").await.unwrap();
    store
        .finish_run(
            run,
            RunReport {
                model: Some(model(3, "in-sync").into()),
                ..report("c1", vec![])
            },
        )
        .await
        .unwrap();
    let latest = store.latest_model().await.unwrap().unwrap();
    assert_eq!(latest.run, run);
    assert_eq!(latest.commit_sha.as_deref(), Some("c1"));
    assert_eq!(latest.json().unwrap(), model(3, "in-sync"));
    let finished = store.latest_run().await.unwrap().unwrap();
    assert_eq!(Some(latest.finished_at), finished.finished_at);
    let hash = finished.model_hash.clone().unwrap();
    assert_eq!(hash.len(), 64);
    let blobs = store.stats().await.unwrap().blobs;

    // Unchanged models add no blob.
    for _ in 0..20 {
        one_run(
            &store,
            RunReport {
                model: Some(model(3, "in-sync").into()),
                ..report("c1", vec![])
            },
        )
        .await;
    }
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.runs, stats.blobs), (22, blobs));
    let latest = store.latest_model().await.unwrap().unwrap();
    assert_eq!(latest.run, store.latest_run().await.unwrap().unwrap().id);
    assert_eq!(
        store.latest_run().await.unwrap().unwrap().model_hash,
        Some(hash)
    );
    let last_good = latest.run;

    // A failed run's model and a run without a model do not replace it.
    one_run(
        &store,
        RunReport {
            model: Some(model(1, "partial").into()),
            ..RunReport::new(Outcome::Failed)
        },
    )
    .await;
    one_run(&store, report("c2", vec![])).await;
    let latest = store.latest_model().await.unwrap().unwrap();
    assert_eq!(latest.run, last_good);
    assert_eq!(latest.json().unwrap(), model(3, "in-sync"));

    // A changed model is one more blob and the new latest.
    let run = store.start_run("timer", "ctl-1").await.unwrap();
    store
        .finish_run(
            run,
            RunReport {
                model: Some(model(4, "drifted").into()),
                ..report("c3", vec![])
            },
        )
        .await
        .unwrap();
    let latest = store.latest_model().await.unwrap().unwrap();
    assert_eq!(
        (latest.run, latest.json().unwrap()),
        (run, model(4, "drifted"))
    );
    assert_eq!(latest.commit_sha.as_deref(), Some("c3"));
    assert_eq!(store.stats().await.unwrap().blobs, blobs + 2);
}

async fn case_prune_keeps_latest_model(store: Store) {
    let clock = Arc::new(ManualClock::at(labctl::time::now_ms()));
    let store = store.with_clock(clock.clone());
    store.migrate().await.unwrap();
    for status in ["old", "kept"] {
        one_run(
            &store,
            RunReport {
                model: Some(model(2, status).into()),
                ..report("c1", vec![])
            },
        )
        .await;
    }
    let with_model = store.latest_model().await.unwrap().unwrap().run;
    one_run(&store, report("c2", vec![])).await;
    clock.advance(20);
    let pruned = store
        .prune(RetentionPolicy {
            keep_runs_days: 0,
            keep_audit_days: 0,
            ..RetentionPolicy::DEFAULT
        })
        .await
        .unwrap();
    // The first run and its model go; the run with the latest model and the latest run stay.
    assert_eq!((pruned.runs, pruned.blobs), (1, 1));
    let latest = store.latest_model().await.unwrap().unwrap();
    assert_eq!(
        (latest.run, latest.json().unwrap()),
        (with_model, model(2, "kept"))
    );
    assert_eq!(store.stats().await.unwrap().runs, 2);
}

async fn case_snapshots(store: Store) {
    store.migrate().await.unwrap();
    let observed = |provider: &str, body: serde_json::Value| ObservedSnapshot {
        provider: provider.into(),
        body: body.into(),
        observed_at: 1_700_000_000_000,
    };
    let kea = |last_ip: &str| {
        json!({"reservations": [
            {"hw-address": "aa:00:00:00:00:01", "ip": "10.0.1.10"},
            {"hw-address": "aa:00:00:00:00:02", "ip": "10.0.1.11"},
            {"hw-address": "aa:00:00:00:00:03", "ip": "10.0.1.12"},
            {"hw-address": "aa:00:00:00:00:04", "ip": last_ip},
        ]})
    };
    assert!(store.list_snapshots(None, 10).await.unwrap().is_empty());
    let mut runs = Vec::new();
    for (kea_body, traefik_body) in [
        (
            kea("10.0.1.13"),
            json!({"routers": {"grafana": {"rule": "Host(`g`)"}}}),
        ),
        (
            kea("10.0.1.13"),
            json!({"routers": {"grafana": {"rule": "Host(`g`)"}}}),
        ),
        (
            kea("10.0.1.99"),
            json!({"routers": {"wiki": {"rule": "Host(`w`)"}}}),
        ),
    ] {
        let run = store.start_run("timer", "ctl-1").await.unwrap();
        store
            .finish_run(
                run,
                RunReport {
                    observed: vec![observed("kea", kea_body), observed("traefik", traefik_body)],
                    ..RunReport::new(Outcome::Succeeded)
                },
            )
            .await
            .unwrap();
        runs.push(run);
    }

    let all = store.list_snapshots(None, 10).await.unwrap();
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let kea_rows = store.list_snapshots(Some("kea"), 10).await.unwrap();
    assert_eq!(kea_rows.len(), 2);
    let (new, old) = (&kea_rows[0], &kea_rows[1]);
    assert!(kea_rows.iter().all(|s| s.provider == "kea"));
    assert_eq!((old.first_run, old.last_run), (runs[0], runs[1]));
    assert_eq!((new.first_run, new.last_run), (runs[2], runs[2]));
    assert_eq!(old.first_seen_at, 1_700_000_000_000);
    assert_ne!(old.blob_hash, new.blob_hash);
    let body = store.snapshot(old.id).await.unwrap().unwrap();
    assert_eq!(body, kea("10.0.1.13"));
    assert_eq!(old.size, labctl::store::canonical_json(&body).len() as i64);
    assert_eq!(
        store.list_snapshots(Some("kea"), 1).await.unwrap(),
        vec![new.clone()]
    );
    assert!(store
        .list_snapshots(Some("caddy"), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.snapshot(9_999).await.unwrap().is_none());

    let changes = store.diff_snapshots(old.id, new.id).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].path, "/reservations/3/ip");
    assert_eq!(changes[0].kind, ChangeKind::Changed);
    assert_eq!(changes[0].before, Some(json!("10.0.1.13")));
    assert_eq!(changes[0].after, Some(json!("10.0.1.99")));
    assert!(store
        .diff_snapshots(new.id, new.id)
        .await
        .unwrap()
        .is_empty());

    let traefik = store.list_snapshots(Some("traefik"), 10).await.unwrap();
    let changes = store
        .diff_snapshots(traefik[1].id, traefik[0].id)
        .await
        .unwrap();
    let summary: Vec<_> = changes.iter().map(|c| (c.path.as_str(), c.kind)).collect();
    assert_eq!(
        summary,
        [
            ("/routers/grafana", ChangeKind::Removed),
            ("/routers/wiki", ChangeKind::Added)
        ]
    );

    let err = store.diff_snapshots(old.id, 9_999).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { id: 9_999, .. }),
        "{err}"
    );
}

async fn case_pull_requests(store: Store) {
    let clock = Arc::new(ManualClock::at(labctl::time::now_ms()));
    let store = store.with_clock(clock.clone());
    store.migrate().await.unwrap();
    assert!(store.open_pull_requests().await.unwrap().is_empty());
    let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let first = store
        .record_pull_request(
            "labctl/fix-abc",
            None,
            None,
            &keys(&["Device/sw1/vlan", "Device/sw1/vlan", "DhcpReservation/a/ip"]),
            Some("f1"),
        )
        .await
        .unwrap();
    let other = store
        .record_pull_request(
            "labctl/fix-def",
            Some("https://git.lab/pr/8"),
            Some(8),
            &[],
            Some("f2"),
        )
        .await
        .unwrap();
    assert_ne!(first, other);
    let open = store.open_pull_requests().await.unwrap();
    assert_eq!(open.len(), 2);
    assert_eq!(open[0].id, first);
    assert_eq!(open[0].branch, "labctl/fix-abc");
    assert_eq!((open[0].url.as_deref(), open[0].number), (None, None));
    assert_eq!(open[0].state, PullRequestState::Open);
    assert_eq!(
        open[0].deviation_keys,
        keys(&["Device/sw1/vlan", "DhcpReservation/a/ip"])
    );
    assert_eq!(open[1].number, Some(8));
    let created_at = open[0].created_at;

    // The same branch again: the same row, updated in place.
    clock.advance(5);
    let again = store
        .record_pull_request(
            "labctl/fix-abc",
            Some("https://git.lab/pr/7"),
            Some(7),
            &keys(&["Device/sw1/vlan"]),
            Some("f3"),
        )
        .await
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(store.stats().await.unwrap().pull_requests, 2);
    let open = store.open_pull_requests().await.unwrap();
    assert_eq!(open[0].url.as_deref(), Some("https://git.lab/pr/7"));
    assert_eq!(open[0].number, Some(7));
    assert_eq!(open[0].deviation_keys, keys(&["Device/sw1/vlan"]));
    assert_eq!(open[0].fingerprint.as_deref(), Some("f3"));
    assert_eq!(open[0].created_at, created_at);
    // Counted once, when first recorded.
    assert_eq!(
        store.pull_requests_created_since(created_at).await.unwrap(),
        2
    );
    assert_eq!(
        store
            .pull_requests_created_since(created_at + 1)
            .await
            .unwrap(),
        0
    );
    assert!(open[0].updated_at > created_at);

    store
        .set_pull_request_state(first, PullRequestState::Merged, false)
        .await
        .unwrap();
    let open = store.open_pull_requests().await.unwrap();
    assert_eq!(open.iter().map(|p| p.id).collect::<Vec<_>>(), [other]);
    store
        .set_pull_request_state(other, PullRequestState::Closed, false)
        .await
        .unwrap();
    assert!(store.open_pull_requests().await.unwrap().is_empty());
    // Closed by a person: what it proposed is remembered; closed as resolved: forgotten.
    let closed = store
        .pull_request_by_branch("labctl/fix-def")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (closed.state, closed.fingerprint.as_deref()),
        (PullRequestState::Closed, Some("f2"))
    );
    store
        .set_pull_request_state(other, PullRequestState::Closed, true)
        .await
        .unwrap();
    let closed = store
        .pull_request_by_branch("labctl/fix-def")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(closed.fingerprint, None);
    assert!(store
        .pull_request_by_branch("labctl/none")
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        store
            .set_pull_request_state(9_999, PullRequestState::Open, false)
            .await,
        Err(StoreError::NotFound { id: 9_999, .. })
    ));

    // Recorded again (the change set came back): open again, still one row.
    let reopened = store
        .record_pull_request("labctl/fix-abc", None, Some(7), &[], None)
        .await
        .unwrap();
    assert_eq!(reopened, first);
    assert_eq!(store.open_pull_requests().await.unwrap().len(), 1);
    assert_eq!(store.stats().await.unwrap().pull_requests, 2);
    assert!(store
        .record_pull_request("", None, None, &[], None)
        .await
        .is_err());
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

/// A run's changes are stored with it, read back per run, per resource and newest first, and
/// pruned with it; a deviation it found and repaired is one life cycle opened and resolved by
/// that run, named as repaired by its change.
async fn case_changes_and_repairs(store: Store) {
    let clock = Arc::new(ManualClock::at(labctl::time::now_ms()));
    let store = store.with_clock(clock.clone());
    store.migrate().await.unwrap();
    let change = |name: &str, result: ChangeResult, error: Option<&str>| ChangeRecord {
        provider: "kea".into(),
        action: ChangeAction::Update,
        kind: "DhcpReservation".into(),
        name: name.into(),
        before: Some(json!({"ip": "10.0.1.209"})),
        after: Some(json!({"ip": "10.0.1.201"})),
        result,
        error: error.map(str::to_string),
    };
    // sw1 was open from an earlier run; this one repairs it and whisper (new), and fails on
    // harbor, which stays open.
    one_run(
        &store,
        report(
            "c1",
            vec![deviation("DhcpReservation", "sw1", "spec.ip", json!(1))],
        ),
    )
    .await;
    let counts = one_run(
        &store,
        RunReport {
            repaired: vec![
                deviation("DhcpReservation", "sw1", "spec.ip", json!(1)),
                deviation("DhcpReservation", "whisper", "spec.ip", json!(2)),
            ],
            changes: vec![
                change("sw1", ChangeResult::Applied, None),
                change("whisper", ChangeResult::Applied, None),
                change(
                    "harbor",
                    ChangeResult::Failed,
                    Some("kea: config-set refused"),
                ),
            ],
            ..report(
                "c2",
                vec![deviation("DhcpReservation", "harbor", "spec.ip", json!(3))],
            )
        },
    )
    .await;
    assert_eq!(
        (
            counts.deviations_open,
            counts.deviations_opened,
            counts.deviations_resolved
        ),
        (1, 2, 2),
        "harbor opened and open; whisper opened and resolved; sw1 resolved"
    );
    let run = store.latest_run().await.unwrap().unwrap().id;
    let changes = store.run_changes(run).await.unwrap();
    assert_eq!(changes.len(), 3);
    assert_eq!(
        changes[0].change,
        change("sw1", ChangeResult::Applied, None)
    );
    assert_eq!(
        changes[2].change.error.as_deref(),
        Some("kea: config-set refused")
    );
    let whisper = store
        .deviation_history("DhcpReservation", "whisper", "spec.ip")
        .await
        .unwrap();
    assert_eq!(whisper.len(), 1);
    assert_eq!(
        (
            whisper[0].opened_run,
            whisper[0].resolved_run,
            whisper[0].resolved_commit.as_deref()
        ),
        (run, Some(run), Some("c2"))
    );
    let of_whisper = store
        .resource_changes("DhcpReservation", "whisper")
        .await
        .unwrap();
    assert_eq!(
        labctl::store::repaired_by(&whisper[0], &of_whisper).map(|c| c.id),
        Some(changes[1].id)
    );
    let recent = store.recent_changes(2).await.unwrap();
    assert_eq!(
        recent
            .iter()
            .map(|c| c.change.name.as_str())
            .collect::<Vec<_>>(),
        ["harbor", "whisper"]
    );
    assert_eq!(store.stats().await.unwrap().applied_changes, 3);

    // Kept as long as their run: a newer run keeps this one's rows until it is pruned.
    one_run(&store, report("c3", vec![])).await;
    clock.advance(20);
    let pruned = store
        .prune(RetentionPolicy {
            keep_runs_days: 0,
            keep_audit_days: 0,
            ..RetentionPolicy::DEFAULT
        })
        .await
        .unwrap();
    assert_eq!(pruned.applied_changes, 3);
    assert!(store.run_changes(run).await.unwrap().is_empty());
    store.close().await;
}

async fn case_suspensions(store: Store) {
    store.migrate().await.unwrap();
    assert!(store.suspensions().await.unwrap().is_empty());
    store
        .suspend(None, None, "move the rack", "user ann")
        .await
        .unwrap();
    store
        .suspend(
            Some("DhcpReservation"),
            Some("whisper"),
            "first",
            "user bob",
        )
        .await
        .unwrap();
    // Again for the same scope: replaced, not a second row.
    store
        .suspend(
            Some("DhcpReservation"),
            Some("whisper"),
            "Kea upgrade",
            "user bob",
        )
        .await
        .unwrap();
    let all = store.suspensions().await.unwrap();
    let scopes: Vec<(String, &str)> = all.iter().map(|s| (s.scope(), s.reason.as_str())).collect();
    assert_eq!(
        scopes,
        [
            ("everything".to_string(), "move the rack"),
            ("DhcpReservation/whisper".to_string(), "Kea upgrade"),
        ]
    );
    assert_eq!(
        all[1].resume_command(),
        "labctl resume DhcpReservation whisper"
    );
    // Bad input is refused and stores nothing.
    let long = "x".repeat(labctl::store::MAX_SUSPEND_REASON + 1);
    for (kind, name, reason) in [
        (Some("Device"), None, "  "),
        (Some("Device"), None, long.as_str()),
        (None, Some("whisper"), "a name without its kind"),
    ] {
        let err = store
            .suspend(kind, name, reason, "user ann")
            .await
            .unwrap_err();
        assert!(err.to_string().starts_with("cannot suspend: "), "{err}");
    }
    assert_eq!(store.suspensions().await.unwrap().len(), 2);
    // Resume lifts exactly its scope.
    assert!(!store.resume(Some("DhcpReservation"), None).await.unwrap());
    assert!(store.resume(None, None).await.unwrap());
    assert!(!store.resume(None, None).await.unwrap());
    let left = store.suspensions().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].actor, "user bob");
}
