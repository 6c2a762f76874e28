//! `labctl serve` as a real daemon: the binary against a real Git repository and a real Kea,
//! commits made with git while it runs, webhooks signed right, wrong and not at all, and
//! SIGTERM while idle and mid-run.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::leader::HeldServer;
use crate::support::cli::{labctl_command, write};
use crate::support::git::{commit_all, git};
use crate::support::kea::Kea;
use crate::support::lab::{kea_reservation, reservation, SUBNET};
use crate::support::net::free_port;
use labctl::serve::webhook::github_signature;
use labctl::store::{Outcome, Run, Store};

const MAC: &str = "bc:24:11:5e:02:01";
const SECRET: &str = "webhook-secret-for-tests";

/// A running `labctl serve`, stopped with SIGTERM (and waited for) when dropped.
struct Daemon {
    child: Option<Child>,
    base: String,
    db: String,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(repo: &Path, extra: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("state.db").display());
        let secret = dir.path().join("webhook.secret");
        std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
        let port = free_port();
        let child = labctl_command()
            .args(["serve", repo.to_str().unwrap(), "--database-url", &db])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--webhook-secret-file", secret.to_str().unwrap()])
            // Only the runs the test causes: the schedule fires once a year.
            .args(["--schedule", "0 0 1 1 *", "--debounce-ms", "100"])
            .args(extra)
            .env("LABCTL_LOG", "labctl=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Daemon {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            db,
            _dir: dir,
        }
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let r = reqwest::get(format!("{}{path}", self.base)).await.ok()?;
        Some((r.status().as_u16(), r.text().await.unwrap_or_default()))
    }

    /// Waits until /readyz says 200 (the first run finished).
    async fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((200, _)) = self.get("/readyz").await {
                return;
            }
            assert!(Instant::now() < deadline, "serve never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn runs(&self) -> Vec<Run> {
        let store = Store::open_reader(&self.db).await.unwrap().unwrap();
        let runs = store.runs_between(0, i64::MAX).await.unwrap();
        store.close().await;
        runs
    }

    /// Waits for a finished run that `matches`; returns it.
    async fn run_where(&self, what: &str, matches: impl Fn(&Run) -> bool) -> Run {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(run) = self
                .runs()
                .await
                .into_iter()
                .find(|r| r.outcome != Outcome::Running && matches(r))
            {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "no run {what}: {:?}",
                self.runs().await
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGTERM, then the exit status and everything it logged.
    fn terminate(&mut self) -> (Option<i32>, String) {
        let child = self.child.take().unwrap();
        let pid = child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn hook(&self, forge: &str, headers: &[(&str, String)], body: &str) -> u16 {
        let mut req = reqwest::Client::new()
            .post(format!("{}/hooks/{forge}", self.base))
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        req.send().await.unwrap().status().as_u16()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.terminate();
        }
    }
}

fn lab_repo(dir: &Path, kea_url: &str, ip: &str) {
    git(dir, &["init", "-q"]);
    write(
        dir,
        "labctl.yaml",
        &format!(
            "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {{name: lab}}\nspec:\n  providers:\n    - {{name: kea, kind: kea, url: \"{kea_url}\", timeoutSeconds: 5}}\n"
        ),
    );
    reservation(dir, "whisper", SUBNET, MAC, ip);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_commit_and_a_signed_webhook_are_reconciled_and_sigterm_stops_cleanly() {
    let Some(kea) = Kea::start(
        json!([kea_reservation("whisper", MAC, "10.0.1.201")]),
        json!([]),
    )
    .await
    else {
        return;
    };
    let repo = tempfile::tempdir().unwrap();
    lab_repo(repo.path(), &kea.url, "10.0.1.201");
    let first = commit_all(repo.path(), "whisper at .201");
    let mut daemon = Daemon::start(repo.path(), &[]);
    daemon.ready().await;
    let start = daemon
        .run_where("at the first commit", |r| {
            r.commit_sha.as_deref() == Some(&first)
        })
        .await;
    assert_eq!(
        (start.trigger.as_str(), start.outcome),
        ("serve", Outcome::Succeeded)
    );

    // A commit that moves whisper: the watch sees the ref move, one run records the drift.
    reservation(repo.path(), "whisper", SUBNET, MAC, "10.0.1.202");
    let committed_at = Instant::now();
    let second = commit_all(repo.path(), "whisper to .202");
    let run = daemon
        .run_where("for the second commit", |r| {
            r.commit_sha.as_deref() == Some(&second)
        })
        .await;
    eprintln!("commit → recorded run: {:?}", committed_at.elapsed());
    assert_eq!(run.trigger, "commit", "{run:?}");
    assert_eq!(
        run.reason.as_ref().unwrap()["from"],
        first.as_str(),
        "{run:?}"
    );
    assert_eq!(run.counts.deviations_opened, 1, "{run:?}");

    // Webhooks: unsigned and wrongly signed are refused and run nothing; signed runs once.
    let body = r#"{"ref":"refs/heads/main"}"#;
    let before = daemon.runs().await.len();
    let push = ("x-github-event", "push".to_string());
    assert_eq!(
        daemon
            .hook("github", std::slice::from_ref(&push), body)
            .await,
        401
    );
    let wrong = (
        "x-hub-signature-256",
        github_signature(b"not the secret", body.as_bytes()),
    );
    assert_eq!(
        daemon.hook("github", &[push.clone(), wrong], body).await,
        401
    );
    let ping = ("x-github-event", "ping".to_string());
    let signed = (
        "x-hub-signature-256",
        github_signature(SECRET.as_bytes(), body.as_bytes()),
    );
    assert_eq!(
        daemon.hook("github", &[ping, signed.clone()], body).await,
        200
    );
    assert_eq!(daemon.hook("github", &[push, signed], body).await, 202);
    let hooked = daemon
        .run_where("from the webhook", |r| r.trigger == "webhook")
        .await;
    assert_eq!(hooked.reason.as_ref().unwrap()["source"], "github");
    assert_eq!(
        daemon.runs().await.len(),
        before + 1,
        "the refused webhooks ran nothing"
    );
    assert_eq!(daemon.get("/healthz").await.unwrap().0, 200);
    assert_eq!(daemon.get("/hooks/github").await.unwrap().0, 405);

    let (code, log) = daemon.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("SIGTERM"), "{log}");
    // The lock is free and nothing is left running.
    let store = Store::connect(&daemon.db).await.unwrap();
    let lock = store
        .leader(false)
        .await
        .expect("the leader lock was released");
    lock.release().await.unwrap();
    assert!(daemon
        .runs()
        .await
        .iter()
        .all(|r| r.outcome != Outcome::Running));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_mid_run_abandons_it_after_the_grace_and_releases_the_lock() {
    // A provider that never answers: the first run waits there, lock held.
    let mut held = HeldServer::start().await;
    let repo = tempfile::tempdir().unwrap();
    lab_repo(
        repo.path(),
        &format!("http://127.0.0.1:{}/", held.port),
        "10.0.1.201",
    );
    commit_all(repo.path(), "a lab whose Kea hangs");
    let mut daemon = Daemon::start(repo.path(), &["--shutdown-grace", "1"]);
    held.arrival().await;
    assert_eq!(daemon.get("/readyz").await.unwrap().0, 503);

    let (code, log) = daemon.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("abandoned at shutdown"), "{log}");
    let runs = daemon.runs().await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].outcome, Outcome::Aborted, "{runs:?}");
    assert!(
        runs[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("shut down"),
        "{runs:?}"
    );
    let store = Store::connect(&daemon.db).await.unwrap();
    let lock = store
        .leader(false)
        .await
        .expect("the leader lock was released");
    lock.release().await.unwrap();
    store.close().await;
    held.release().await;
}
