//! Two controllers on one database: one reconciles, the other waits (or, told not to wait,
//! exits saying why). A controller killed mid-run leaves the store consistent, and the next
//! start marks its run aborted. Real processes, on SQLite and on the machine's PostgreSQL.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use sqlx::Connection;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::support::cli::{labctl_command, write};
use crate::support::git::{commit_all, git};
use crate::support::postgres::TempDatabase;
use labctl::store::{Outcome, Store};

/// A Kea that holds every request without answering until released, like a hung API, and
/// says when a request has arrived: a controller whose provider call has arrived holds the
/// leader lock and is mid-run, for as long as the test wants. Released, it drops the held
/// connections and stops listening, so every later call fails at once (unreachable).
pub(crate) struct HeldServer {
    pub port: u16,
    arrived: mpsc::UnboundedReceiver<()>,
    release: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl HeldServer {
    pub async fn start() -> HeldServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (arrived_tx, arrived) = mpsc::unbounded_channel();
        let (release, mut released) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                tokio::select! {
                    _ = &mut released => break,
                    accepted = listener.accept() => {
                        let Ok((mut stream, _)) = accepted else { break };
                        // The whole request head: the provider has made its call.
                        let mut head = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        let _ = arrived_tx.send(());
                        held.push(stream);
                    }
                }
            }
        });
        HeldServer {
            port,
            arrived,
            release: Some(release),
            task,
        }
    }

    /// Waits until a provider call has arrived (and is being held).
    pub async fn arrival(&mut self) {
        self.arrived.recv().await.expect("the server runs");
    }

    /// Lets go of the held calls; from now on nothing listens on the port.
    pub async fn release(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
            (&mut self.task).await.unwrap();
        }
    }
}

fn repo(dir: &Path, port: u16) {
    write(
        dir,
        "labctl.yaml",
        &format!(
            "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {{name: lab}}\nspec:\n  providers:\n    - {{name: kea, kind: kea, url: \"http://127.0.0.1:{port}/\", timeoutSeconds: 120}}\n"
        ),
    );
    write(
        dir,
        "dhcp/a.yaml",
        "apiVersion: labctl.dev/v1\nkind: DhcpReservation\nmetadata: {name: a}\nspec: {subnet: 10.0.1.0/24, mac: \"aa:bb:cc:00:00:01\", ip: 10.0.1.5, hostname: a}\n",
    );
}

fn spawn(repo: &Path, db: &str, extra: &[&str]) -> Child {
    labctl_command()
        .args([
            "reconcile",
            "--once",
            repo.to_str().unwrap(),
            "--database-url",
            db,
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Whether the store shows a run in progress.
async fn running(db: &str) -> bool {
    let store = Store::connect(db).await.unwrap();
    let running = store
        .latest_run()
        .await
        .unwrap()
        .is_some_and(|r| r.outcome == Outcome::Running);
    store.close().await;
    running
}

/// Waits until the controller `pid` is waiting for the leader lock on `db`: on SQLite it has
/// opened the lock file (and tries it every 500 ms), on PostgreSQL a second session has asked
/// for the advisory lock.
async fn wait_until_waiting(db: &str, pid: u32) {
    loop {
        let waiting = if db.starts_with("sqlite:") {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .into_iter()
                .flatten()
                .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .any(|target| target.to_string_lossy().ends_with(".db.lock"))
        } else {
            let mut conn = sqlx::AnyConnection::connect(db).await.unwrap();
            let asking: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND pid <> pg_backend_pid() AND query LIKE '%pg_try_advisory_lock%'",
            )
            .fetch_one(&mut conn)
            .await
            .unwrap();
            let _ = conn.close().await;
            // The first controller's session (holding the lock) is the other one.
            asking >= 2
        };
        if waiting {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn one_reconciles_the_other_waits(db: &str) {
    let mut server = HeldServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    repo(dir.path(), server.port);
    let first = spawn(dir.path(), db, &[]);
    // Its provider call has arrived: the first controller holds the lock, mid-run, until the
    // server lets go.
    server.arrival().await;
    assert!(
        running(db).await,
        "the first controller's run is in progress"
    );

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
    wait_until_waiting(db, waiting.id()).await;
    server.release().await;
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
    // The provider never answers: each run finishes, but partial (its resources unknown).
    assert!(
        runs.iter().all(|r| r.outcome == Outcome::Partial),
        "{runs:?}"
    );
    assert!(
        runs[1].started_at >= runs[0].finished_at.unwrap(),
        "the runs overlapped: {runs:?}"
    );
}

/// A controller that waited for the lock reconciles the commit Git holds when it gets the
/// lock, not the one it read before waiting: otherwise it would apply an older commit over a
/// newer one another run had already applied.
async fn a_run_that_waited_reconciles_the_newest_commit(db: &str) {
    let mut server = HeldServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    repo(dir.path(), server.port);
    let before = commit_all(dir.path(), "one reservation");
    let first = spawn(dir.path(), db, &[]);
    server.arrival().await;
    let waiting = spawn(dir.path(), db, &[]);
    wait_until_waiting(db, waiting.id()).await;

    // A push lands while the second controller waits.
    write(
        dir.path(),
        "dhcp/b.yaml",
        "apiVersion: labctl.dev/v1\nkind: DhcpReservation\nmetadata: {name: b}\nspec: {subnet: 10.0.1.0/24, mac: \"aa:bb:cc:00:00:02\", ip: 10.0.1.6, hostname: b}\n",
    );
    let after = commit_all(dir.path(), "a second reservation");
    server.release().await;
    for child in [first, waiting] {
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let store = Store::connect(db).await.unwrap();
    let runs = store.runs_between(0, i64::MAX).await.unwrap();
    store.close().await;
    let commits: Vec<Option<&str>> = runs.iter().map(|r| r.commit_sha.as_deref()).collect();
    assert_eq!(commits, [Some(before.as_str()), Some(after.as_str())]);
    assert_eq!((runs[0].resources, runs[1].resources), (1, 2));
}

async fn killed_mid_run_leaves_an_aborted_run(db: &str) {
    let mut server = HeldServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    repo(dir.path(), server.port);
    let mut victim = spawn(dir.path(), db, &[]);
    // Mid-run: its provider call is being held.
    server.arrival().await;
    assert!(running(db).await, "the victim's run is in progress");
    victim.kill().unwrap();
    victim.wait().unwrap();
    server.release().await;

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
    assert_eq!(runs[1].outcome, Outcome::Partial);
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
async fn sqlite_a_run_that_waited_reconciles_the_newest_commit() {
    let dir = tempfile::tempdir().unwrap();
    a_run_that_waited_reconciles_the_newest_commit(&format!(
        "sqlite://{}",
        dir.path().join("s.db").display()
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_a_run_that_waited_reconciles_the_newest_commit() {
    let Some(db) = TempDatabase::create().await else {
        return;
    };
    a_run_that_waited_reconciles_the_newest_commit(&db.url).await;
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

/// PostgreSQL drops the leader's session mid-run (a restart, a cut connection, here
/// `pg_terminate_backend`): its advisory lock is gone and another controller may take it. The
/// run notices before applying, changes nothing, and is recorded as aborted.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_a_run_that_lost_the_lock_applies_nothing() {
    use crate::support::kea::Kea;
    use crate::support::lab::{kea_reservation, reservation, SUBNET};
    let Some(db) = TempDatabase::create().await else {
        return;
    };
    // Kea holds .209 where Git says .201: policy apply would restore it.
    let Some(kea) = Kea::start(
        serde_json::json!([kea_reservation(
            "whisper",
            "bc:24:11:5e:02:01",
            "10.0.1.209"
        )]),
        serde_json::json!([]),
    )
    .await
    else {
        return;
    };
    // A second provider that holds its call: the run waits there, lock held, until released.
    let mut held = HeldServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "labctl.yaml",
        &format!(
            "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {{name: lab}}\nspec:\n  providers:\n    - {{name: kea, kind: kea, url: \"{}\", timeoutSeconds: 5}}\n    - {{name: held, kind: kea, url: \"http://127.0.0.1:{}/\", timeoutSeconds: 120}}\n  policy:\n    DhcpReservation: apply\n",
            kea.url, held.port
        ),
    );
    reservation(
        dir.path(),
        "whisper",
        SUBNET,
        "bc:24:11:5e:02:01",
        "10.0.1.201",
    );
    let run = spawn(dir.path(), &db.url, &[]);
    held.arrival().await;

    // The lock's session ends.
    let mut admin = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    let _ = admin.close().await;
    assert_eq!(cut, [true], "the leader's session was found and ended");
    held.release().await;

    let out = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("lost the leader lock before applying"),
        "{stderr}"
    );
    let live = kea.config().await["subnet4"][0]["reservations"][0]["ip-address"].clone();
    assert_eq!(live, "10.0.1.209", "nothing was applied");
    let store = Store::connect(&db.url).await.unwrap();
    let runs = store.runs_between(0, i64::MAX).await.unwrap();
    let open = store.open_deviations(None, None).await.unwrap();
    store.close().await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].outcome, Outcome::Aborted, "{runs:?}");
    assert!(open.is_empty(), "nothing was concluded: {open:?}");
    db.drop_database().await;
}

/// PostgreSQL restarts under a running controller (a cluster of the test's own, made with
/// `initdb` and restarted with `pg_ctl`): the leader's session and its advisory lock are gone.
/// A second controller started meanwhile takes the lock and applies its commit; the first,
/// when its slow provider answers, notices before applying and changes nothing — it does not
/// overwrite the newer run's change.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_restarted_under_a_run_the_run_applies_nothing() {
    use crate::support::kea::Kea;
    use crate::support::lab::{kea_reservation, reservation, SUBNET};
    use crate::support::pg_cluster::Cluster;
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let db = cluster.url();
    let Some(kea) = Kea::start(
        serde_json::json!([kea_reservation(
            "whisper",
            "bc:24:11:5e:02:01",
            "10.0.1.209"
        )]),
        serde_json::json!([]),
    )
    .await
    else {
        return;
    };
    let config = |dir: &Path, held: Option<u16>| {
        let held = held
            .map(|port| {
                format!(
                    "    - {{name: held, kind: kea, url: \"http://127.0.0.1:{port}/\", timeoutSeconds: 120}}\n"
                )
            })
            .unwrap_or_default();
        write(
            dir,
            "labctl.yaml",
            &format!(
                "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {{name: lab}}\nspec:\n  providers:\n    - {{name: kea, kind: kea, url: \"{}\", timeoutSeconds: 5}}\n{held}  policy:\n    DhcpReservation: apply\n",
                kea.url
            ),
        );
    };
    // The first controller's commit says .201 and waits on a held provider, lock taken.
    let mut held = HeldServer::start().await;
    let first_repo = tempfile::tempdir().unwrap();
    config(first_repo.path(), Some(held.port));
    let mac = "bc:24:11:5e:02:01";
    reservation(first_repo.path(), "whisper", SUBNET, mac, "10.0.1.201");
    let first = spawn(first_repo.path(), &db, &[]);
    held.arrival().await;

    cluster.restart();

    // The second controller's commit says .202; the lock is free, so it runs and applies.
    let second_repo = tempfile::tempdir().unwrap();
    config(second_repo.path(), None);
    reservation(second_repo.path(), "whisper", SUBNET, mac, "10.0.1.202");
    let out = spawn(second_repo.path(), &db, &["--no-wait"])
        .wait_with_output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let live =
        || async { kea.config().await["subnet4"][0]["reservations"][0]["ip-address"].clone() };
    assert_eq!(live().await, "10.0.1.202");

    held.release().await;
    let out = first.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("lost the leader lock before applying"),
        "{stderr}"
    );
    assert_eq!(live().await, "10.0.1.202", "the first run changed nothing");
    let store = Store::connect(&db).await.unwrap();
    let outcomes: Vec<Outcome> = store
        .runs_between(0, i64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|r| r.outcome)
        .collect();
    store.close().await;
    assert_eq!(outcomes, [Outcome::Aborted, Outcome::Succeeded]);
}
