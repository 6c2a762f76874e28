//! Two controllers on one database: one reconciles, the other waits (or, told not to wait,
//! exits saying why). A controller killed mid-run leaves the store consistent, and the next
//! start marks its run aborted. Real processes, on SQLite and on the machine's PostgreSQL.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::cli::write;
use crate::support::postgres::TempDatabase;
use labctl::store::{Outcome, Store};

/// A server that accepts connections and never answers, like a hung API: a run against it
/// lasts for the provider's timeout and retries (about 3.5 s with `timeoutSeconds: 1`).
fn hung_server() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

fn repo(dir: &Path, port: u16) {
    write(
        dir,
        "labctl.yaml",
        &format!(
            "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {{name: lab}}\nspec:\n  providers:\n    - {{name: kea, kind: kea, url: \"http://127.0.0.1:{port}/\", timeoutSeconds: 1}}\n"
        ),
    );
    write(
        dir,
        "dhcp/a.yaml",
        "apiVersion: labctl.dev/v1\nkind: DhcpReservation\nmetadata: {name: a}\nspec: {subnet: 10.0.1.0/24, mac: \"aa:bb:cc:00:00:01\", ip: 10.0.1.5, hostname: a}\n",
    );
}

fn spawn(repo: &Path, db: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_labctl"))
        .args([
            "reconcile",
            "--once",
            repo.to_str().unwrap(),
            "--database-url",
            db,
        ])
        .args(extra)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the store shows a run in progress (the first controller holds the lock).
async fn wait_for_running(db: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(store) = Store::connect(db).await {
            let running = store
                .latest_run()
                .await
                .ok()
                .flatten()
                .is_some_and(|r| r.outcome == Outcome::Running);
            store.close().await;
            if running {
                return;
            }
        }
        assert!(Instant::now() < deadline, "no run started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn one_reconciles_the_other_waits(db: &str) {
    let (_hung, port) = hung_server();
    let dir = tempfile::tempdir().unwrap();
    repo(dir.path(), port);
    let first = spawn(dir.path(), db, &[]);
    wait_for_running(db).await;

    // Told not to wait, a second controller exits at once and says why.
    let busy = spawn(dir.path(), db, &["--no-wait"])
        .wait_with_output()
        .unwrap();
    assert_eq!(busy.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&busy.stderr);
    assert!(
        stderr.contains("another labctl controller holds the leader lock"),
        "{stderr}"
    );

    // A waiting one runs after the first has finished.
    let waiting = spawn(dir.path(), db, &[]);
    let first = first.wait_with_output().unwrap();
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let waiting = waiting.wait_with_output().unwrap();
    assert_eq!(
        waiting.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&waiting.stderr)
    );

    let store = Store::connect(db).await.unwrap();
    let runs = store.runs_between(0, i64::MAX).await.unwrap();
    store.close().await;
    assert_eq!(
        runs.len(),
        2,
        "the --no-wait controller never started a run: {runs:?}"
    );
    assert!(
        runs.iter().all(|r| r.outcome == Outcome::Succeeded),
        "{runs:?}"
    );
    assert!(
        runs[1].started_at >= runs[0].finished_at.unwrap(),
        "the runs overlapped: {runs:?}"
    );
}

async fn killed_mid_run_leaves_an_aborted_run(db: &str) {
    let (_hung, port) = hung_server();
    let dir = tempfile::tempdir().unwrap();
    repo(dir.path(), port);
    let mut victim = spawn(dir.path(), db, &[]);
    wait_for_running(db).await;
    victim.kill().unwrap();
    victim.wait().unwrap();

    let next = spawn(dir.path(), db, &[]).wait_with_output().unwrap();
    assert_eq!(
        next.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&next.stderr)
    );
    let store = Store::connect(db).await.unwrap();
    let runs = store.runs_between(0, i64::MAX).await.unwrap();
    let open = store.open_deviations(None, None).await.unwrap();
    store.close().await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0].outcome, Outcome::Aborted);
    assert!(runs[0].finished_at.is_some());
    assert_eq!(runs[1].outcome, Outcome::Succeeded);
    assert!(
        open.is_empty(),
        "nothing was concluded from the unreachable provider: {open:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_one_reconciles_the_other_waits() {
    let dir = tempfile::tempdir().unwrap();
    one_reconciles_the_other_waits(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_one_reconciles_the_other_waits() {
    let Some(db) = TempDatabase::create().await else {
        return;
    };
    one_reconciles_the_other_waits(&db.url).await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_killed_mid_run_leaves_an_aborted_run() {
    let dir = tempfile::tempdir().unwrap();
    killed_mid_run_leaves_an_aborted_run(&format!(
        "sqlite://{}",
        dir.path().join("s.db").display()
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_killed_mid_run_leaves_an_aborted_run() {
    let Some(db) = TempDatabase::create().await else {
        return;
    };
    killed_mid_run_leaves_an_aborted_run(&db.url).await;
    db.drop_database().await;
}
