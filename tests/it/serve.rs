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
use crate::support::ntfy::Ntfy;
use crate::support::postgres::TempDatabase;
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
    fn start(repo: &Path, extra: &[impl AsRef<std::ffi::OsStr>]) -> Daemon {
        Daemon::start_on(repo, None, extra, &[])
    }

    /// On the store at `db` (default: a SQLite file of its own), with `env` set.
    fn start_on(
        repo: &Path,
        db: Option<&str>,
        extra: &[impl AsRef<std::ffi::OsStr>],
        env: &[(&str, &str)],
    ) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let db = db.map_or_else(
            || format!("sqlite://{}", dir.path().join("state.db").display()),
            str::to_string,
        );
        let secret = dir.path().join("webhook.secret");
        std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
        let port = free_port();
        let child = labctl_command()
            .args(["serve", repo.to_str().unwrap(), "--database-url", &db])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--webhook-secret-file", secret.to_str().unwrap()])
            .args(["--debounce-ms", "100"])
            .args(extra)
            .envs(env.iter().copied())
            // Only the runs the test causes unless it sets a schedule: once a year.
            .env("LABCTL_SCHEDULE", "0 0 1 1 *")
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

    /// SIGKILL: the process dies holding whatever it held.
    fn kill(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
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

const MCP_TOKEN: &str = "serve-mcp-read-token-5a1f";
const MCP_ADMIN_TOKEN: &str = "serve-mcp-admin-token-93c0";

/// The MCP face `serve --mcp-http` adds: its address, a tokens file with one read token.
struct McpFace {
    port: u16,
    dir: tempfile::TempDir,
}

impl McpFace {
    fn new() -> McpFace {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tokens.yaml"),
            format!(
                "tokens:\n  - name: reader\n    sha256: {}\n    scopes: [read]\n\
                 \x20 - name: ops\n    sha256: {}\n    scopes: [admin]\n",
                labctl::mcp::sha256_hex(MCP_TOKEN),
                labctl::mcp::sha256_hex(MCP_ADMIN_TOKEN)
            ),
        )
        .unwrap();
        McpFace {
            port: free_port(),
            dir,
        }
    }

    fn args(&self) -> Vec<String> {
        let tokens = self.dir.path().join("tokens.yaml");
        vec![
            "--mcp-http".into(),
            format!("127.0.0.1:{}", self.port),
            "--tokens".into(),
            tokens.to_str().unwrap().into(),
        ]
    }

    /// The structured result of calling `tool` with `token` through tests/npm/sdk-client.mjs
    /// (the official TypeScript SDK); `None` (outside CI only) when Node.js or the SDK is
    /// missing.
    async fn call(&self, token: &str, tool: &str) -> Option<serde_json::Value> {
        let npm = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/npm");
        if !npm.join("node_modules/@modelcontextprotocol/sdk").is_dir() {
            let msg = "Node.js and the npm packages are needed (npm ci --prefix tests/npm)";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
            eprintln!("skipped: {msg}");
            return None;
        }
        let out = tokio::process::Command::new("node")
            .arg(npm.join("sdk-client.mjs"))
            .arg(format!("http://127.0.0.1:{}/mcp", self.port))
            .arg(json!([[tool, {}]]).to_string())
            .env("LABCTL_TEST_TOKEN", token)
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let call = &answer["calls"][tool];
        assert_eq!(call["isError"], false, "{answer}");
        Some(call["structured"].clone())
    }
}

/// `promtool check metrics` (Debian's prometheus package) accepts `text`: the exposition
/// parses and follows Prometheus' naming conventions.
fn promtool_check(text: &str) {
    use std::io::Write;
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "promtool is required under CI=true (apt-get install prometheus)"
        );
        eprintln!("skipped: promtool is not installed");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of the one sample named exactly `series` (name and labels) in `text`.
fn sample(text: &str, series: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| {
            l.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with(' '))
        })
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// A real Kea holding whisper at .201 and a committed repository that declares the same.
struct WhisperLab {
    kea: Kea,
    repo: tempfile::TempDir,
    commit: String,
}

impl WhisperLab {
    /// `None` (outside CI only) when Kea is not installed.
    async fn start() -> Option<WhisperLab> {
        let kea = Kea::start(
            json!([kea_reservation("whisper", MAC, "10.0.1.201")]),
            json!([]),
        )
        .await?;
        let repo = tempfile::tempdir().unwrap();
        lab_repo(repo.path(), &kea.url, "10.0.1.201");
        let commit = commit_all(repo.path(), "whisper at .201");
        Some(WhisperLab { kea, repo, commit })
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
async fn commits_webhooks_and_requests_are_reconciled_and_served_over_mcp_and_metrics() {
    let Some(WhisperLab {
        kea: _kea,
        repo,
        commit: first,
    }) = WhisperLab::start().await
    else {
        return;
    };
    let mcp = McpFace::new();
    let admin = mcp.dir.path().join("admin-token");
    std::fs::write(&admin, "admin-token-for-tests\n").unwrap();
    let mut args = mcp.args();
    args.extend(["--admin-token-file".into(), admin.to_str().unwrap().into()]);
    let mut daemon = Daemon::start(repo.path(), &args);
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
    // The same process answers MCP from the run it just recorded: asked with the official
    // TypeScript SDK client, get_drift names the new commit and the moved reservation.
    if let Some(drift) = mcp.call(MCP_TOKEN, "get_drift").await {
        assert_eq!(drift["commit"], second.as_str(), "{drift}");
        let found: Vec<_> = drift["deviations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["kind"].as_str(), d["name"].as_str(), d["field"].as_str()))
            .collect();
        assert_eq!(
            found,
            [(Some("DhcpReservation"), Some("whisper"), Some("spec.ip"))],
            "{drift}"
        );
    }
    // The same face serves the status pages: a person logs in with the token and sees it.
    let base = format!("http://127.0.0.1:{}", mcp.port);
    let cookie = crate::web::session(&base, MCP_TOKEN).await;
    let r = crate::web::get(&format!("{base}/drift"), &[("cookie", cookie.as_str())]).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("DhcpReservation/whisper") && html.contains("10.0.1.202"),
        "{html}"
    );

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

    // A person asks the daemon for a run from the command line, with the admin token.
    let now = |token_file: &Path| {
        labctl_command()
            .args(["reconcile", "--now", "--daemon", &daemon.base])
            .arg("--admin-token-file")
            .arg(token_file)
            .env("USER", "alice")
            .output()
            .unwrap()
    };
    let wrong = mcp.dir.path().join("wrong-token");
    std::fs::write(&wrong, "not-the-admin-token").unwrap();
    let refused = now(&wrong);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("401"),
        "{refused:?}"
    );
    let queued = now(&admin);
    assert_eq!(queued.status.code(), Some(0), "{queued:?}");
    let asked = daemon
        .run_where("asked for with reconcile --now", |r| r.trigger == "http")
        .await;
    assert_eq!(asked.reason.as_ref().unwrap()["by"], "alice", "{asked:?}");

    // An assistant with an admin token asks for a run over MCP: the daemon's next run
    // answers it, under the lock the daemon holds.
    if let Some(triggered) = mcp.call(MCP_ADMIN_TOKEN, "trigger_reconcile").await {
        let run = daemon
            .run_where("asked for over MCP", |r| r.trigger == "mcp")
            .await;
        assert_eq!(triggered["runId"], run.id, "{triggered}");
        assert_eq!(triggered["outcome"], "succeeded", "{triggered}");
        assert_eq!(
            run.reason.as_ref().unwrap()["by"],
            "http:ops@127.0.0.1",
            "{run:?}"
        );
    }

    // The metrics pass promtool and agree with the store.
    let (status, text) = daemon.get("/metrics").await.unwrap();
    assert_eq!(status, 200);
    promtool_check(&text);
    let finished = daemon
        .runs()
        .await
        .iter()
        .filter(|r| r.outcome != Outcome::Running)
        .count();
    assert_eq!(
        sample(&text, "labctl_runs_total{outcome=\"succeeded\"}"),
        finished as f64
    );
    assert_eq!(sample(&text, "labctl_provider_up{provider=\"kea\"}"), 1.0);
    assert_eq!(sample(&text, "labctl_store_up"), 1.0);
    assert_eq!(
        sample(&text, "labctl_triggers_total{trigger=\"webhook\"}"),
        1.0
    );
    assert!(sample(&text, "labctl_last_successful_run_timestamp_seconds") > 1.7e9);
    let open: f64 = text
        .lines()
        .filter(|l| l.starts_with("labctl_deviations_open{kind=\"DhcpReservation\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(open, 1.0, "{text}");

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

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_on_the_same_postgres_takes_over_when_the_leader_is_killed() {
    let Some(WhisperLab {
        kea: _kea, repo, ..
    }) = WhisperLab::start().await
    else {
        return;
    };
    let Some(db) = TempDatabase::create().await else {
        return;
    };
    let none: [&str; 0] = [];
    let mut leader = Daemon::start_on(repo.path(), Some(&db.url), &none, &[]);
    leader.ready().await;
    let standby = Daemon::start_on(repo.path(), Some(&db.url), &none, &[]);
    standby.ready().await;
    let (_, said) = standby.get("/readyz").await.unwrap();
    assert!(said.starts_with("standby"), "{said}");
    let (_, metrics) = standby.get("/metrics").await.unwrap();
    assert_eq!(sample(&metrics, "labctl_leader"), 0.0);
    // A webhook-free commit seen by both: only the leader runs.
    reservation(repo.path(), "whisper", SUBNET, MAC, "10.0.1.202");
    let second = commit_all(repo.path(), "whisper to .202");
    leader
        .run_where("for the second commit", |r| {
            r.commit_sha.as_deref() == Some(&second)
        })
        .await;
    let leader_pid = format!("/{}", leader.pid());
    assert!(
        leader
            .runs()
            .await
            .iter()
            .all(|r| r.controller.ends_with(&leader_pid)),
        "only the leader reconciles: {:?}",
        leader.runs().await
    );

    leader.kill();
    let killed_at = Instant::now();
    let standby_pid = format!("/{}", standby.pid());
    let took_over = standby
        .run_where("by the standby", |r| r.controller.ends_with(&standby_pid))
        .await;
    eprintln!(
        "leader killed → standby's run recorded: {:?}",
        killed_at.elapsed()
    );
    assert_eq!(took_over.outcome, Outcome::Succeeded, "{took_over:?}");
    assert_eq!(took_over.commit_sha.as_deref(), Some(second.as_str()));
    let (_, said) = standby.get("/readyz").await.unwrap();
    assert!(!said.starts_with("standby"), "{said}");
    let (_, metrics) = standby.get("/metrics").await.unwrap();
    assert_eq!(sample(&metrics, "labctl_leader"), 1.0);
    drop(standby);
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn new_deviations_are_announced_once_per_life_cycle_and_a_failing_target_blocks_nothing() {
    let Some(WhisperLab {
        kea: _kea, repo, ..
    }) = WhisperLab::start().await
    else {
        return;
    };
    let ntfy = Ntfy::start(Some("tk_fixture_token")).await;
    // A generic webhook target that is broken: every POST answers 500.
    let broken = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async { axum::http::StatusCode::INTERNAL_SERVER_ERROR }),
    );
    let (broken_port, _broken) = crate::support::net::serve(broken).await;
    let args = [
        "--notify-ntfy".to_string(),
        ntfy.url("lab-alerts"),
        "--notify-webhook".into(),
        format!("http://127.0.0.1:{broken_port}/hook"),
        "--notify-min-severity".into(),
        "low".into(),
    ];
    let daemon = Daemon::start_on(
        repo.path(),
        None,
        &args,
        &[("LABCTL_NTFY_TOKEN", "tk_fixture_token")],
    );
    daemon.ready().await;

    let commit = |ip: &str, message: &str| {
        reservation(repo.path(), "whisper", SUBNET, MAC, ip);
        commit_all(repo.path(), message)
    };
    // Opened: announced, with the command that shows its history.
    let moved = commit("10.0.1.202", "whisper to .202");
    daemon
        .run_where("for the move", |r| r.commit_sha.as_deref() == Some(&moved))
        .await;
    let first = ntfy.wait_for(1).await;
    assert_eq!(first[0].topic, "lab-alerts");
    assert!(
        first[0]
            .message
            .contains("DhcpReservation/whisper spec.ip drifted")
            && first[0]
                .message
                .contains("labctl drift --history DhcpReservation/whisper:spec.ip"),
        "{first:?}"
    );
    assert_eq!(
        first[0].title.as_deref(),
        Some("labctl: 1 new deviation(s)")
    );

    // Still open in the next runs: not announced again. Resolved, then reopened: a new life
    // cycle, announced again. The notifier handles runs in order, so when the second message
    // is there, the runs between were looked at and sent nothing.
    write(repo.path(), "README.md", "the lab\n");
    let unrelated = commit_all(repo.path(), "a README");
    daemon
        .run_where("for the README", |r| {
            r.commit_sha.as_deref() == Some(&unrelated)
        })
        .await;
    let back = commit("10.0.1.201", "whisper back to .201");
    daemon
        .run_where("for the way back", |r| {
            r.commit_sha.as_deref() == Some(&back)
        })
        .await;
    let again = commit("10.0.1.202", "whisper to .202 again");
    daemon
        .run_where("for the second move", |r| {
            r.commit_sha.as_deref() == Some(&again)
        })
        .await;
    let all = ntfy.wait_for(2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ntfy.published().len(), 2, "{all:?}");
    assert!(all[1].message.contains(&again[..12]), "{all:?}");

    // The broken target was tried for each message and counted, and the runs went on.
    let (_, metrics) = daemon.get("/metrics").await.unwrap();
    assert_eq!(
        sample(
            &metrics,
            "labctl_notifications_total{target=\"ntfy\",result=\"sent\"}"
        ),
        2.0
    );
    assert_eq!(
        sample(
            &metrics,
            "labctl_notifications_total{target=\"webhook\",result=\"failed\"}"
        ),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_made_in_kea_behind_labctls_back_is_found_by_the_next_scheduled_run() {
    let Some(WhisperLab { kea, repo, commit }) = WhisperLab::start().await else {
        return;
    };
    // Six fields: the cron crate's seconds first, so the test waits a second, not a minute.
    let mut daemon = Daemon::start(repo.path(), &["--schedule", "* * * * * *"]);
    daemon.ready().await;
    let runs = daemon.runs().await;
    assert_eq!(runs[0].counts.deviations_open, 0, "{runs:?}");

    // Someone moves whisper in Kea itself; Git does not change.
    let mut dhcp4 = kea.config().await;
    dhcp4["subnet4"][0]["reservations"][0]["ip-address"] = json!("10.0.1.209");
    kea.set_config(dhcp4).await;
    let found = daemon
        .run_where("that finds the live change", |r| {
            r.counts.deviations_opened == 1
        })
        .await;
    assert_eq!(found.trigger, "schedule", "{found:?}");
    assert_eq!(found.commit_sha.as_deref(), Some(commit.as_str()));
    let store = Store::open_reader(&daemon.db).await.unwrap().unwrap();
    let open = store.open_deviations(None, None).await.unwrap();
    store.close().await;
    assert_eq!(
        open.iter()
            .map(|d| (d.record.name.as_str(), d.record.field_path.as_str()))
            .collect::<Vec<_>>(),
        [("whisper", "spec.ip")],
        "{open:?}"
    );
    // The next scheduled run finds nothing moved: it records the same again.
    let again = daemon
        .run_where("after the change was found", |r| r.id > found.id)
        .await;
    assert_eq!(again.counts.deviations_open, 1, "{again:?}");
    assert_eq!(again.model_hash, found.model_hash);
    let (code, log) = daemon.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("\"recorded_again\":true"), "{log}");
    // Kea's last observation was handed back each run of the commit: read afresh once Kea's
    // configuration had changed, returned as it was when it had not.
    let unchanged = unchanged_by_run(&log);
    let first = runs.iter().map(|r| r.id).min().unwrap();
    assert_eq!(unchanged.get(&first).map(String::as_str), Some(""));
    assert_eq!(unchanged.get(&found.id).map(String::as_str), Some(""));
    assert_eq!(unchanged.get(&again.id).map(String::as_str), Some("kea"));
}

/// Each finished run's `unchanged` providers, from the daemon's JSON log lines.
fn unchanged_by_run(log: &str) -> std::collections::BTreeMap<i64, String> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["fields"]["message"] == "run finished")
        .filter_map(|line| {
            let fields = &line["fields"];
            Some((
                fields["run"].as_i64()?,
                fields["unchanged"].as_str()?.to_string(),
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_down_rests_in_its_backoff_while_the_others_are_reconciled() {
    let Some(WhisperLab {
        kea: _kea, repo, ..
    }) = WhisperLab::start().await
    else {
        return;
    };
    let Some(mut caddy) = crate::support::caddy::Caddy::start(json!([])).await else {
        return;
    };
    let config = std::fs::read_to_string(repo.path().join("labctl.yaml")).unwrap();
    write(
        repo.path(),
        "labctl.yaml",
        &format!(
            "{config}    - {{name: caddy, kind: caddy, url: \"{}\", timeoutSeconds: 5}}\n",
            caddy.admin
        ),
    );
    let with_caddy = commit_all(repo.path(), "caddy too");
    // A run every second; a failing provider is asked again after 2 s, then 4 s (± 20 %).
    let daemon = Daemon::start(
        repo.path(),
        &[
            "--schedule",
            "* * * * * *",
            "--backoff-base",
            "2",
            "--backoff-max",
            "4",
        ],
    );
    daemon.ready().await;
    let both = daemon
        .run_where("with both providers up", |r| {
            r.commit_sha.as_deref() == Some(&with_caddy) && r.outcome == Outcome::Succeeded
        })
        .await;

    caddy.stop();
    let failed = daemon
        .run_where("that finds Caddy down", |r| {
            r.id > both.id
                && r.error
                    .as_deref()
                    .is_some_and(|e| e.contains("caddy: cannot reach"))
        })
        .await;
    let rested = daemon
        .run_where("that leaves Caddy out", |r| {
            r.id > failed.id
                && r.error
                    .as_deref()
                    .is_some_and(|e| e.contains("caddy: not asked this run: it failed 1 run(s)"))
        })
        .await;
    assert_eq!(rested.outcome, Outcome::Partial, "{rested:?}");
    let again = daemon
        .run_where("that asks Caddy again and fails a second time", |r| {
            r.id > rested.id
                && r.error
                    .as_deref()
                    .is_some_and(|e| e.contains("not asked this run: it failed 2 run(s)"))
        })
        .await;

    // The others go on: Kea's live change is found while Caddy rests.
    let mut dhcp4 = _kea.config().await;
    dhcp4["subnet4"][0]["reservations"][0]["ip-address"] = json!("10.0.1.209");
    _kea.set_config(dhcp4).await;
    let found = daemon
        .run_where("that finds Kea's change with Caddy down", |r| {
            r.id > again.id && r.counts.deviations_opened == 1
        })
        .await;
    assert!(
        found.error.as_deref().is_some_and(|e| e.contains("caddy")),
        "{found:?}"
    );
    let (_, metrics) = daemon.get("/metrics").await.unwrap();
    promtool_check(&metrics);
    assert_eq!(
        sample(&metrics, "labctl_provider_up{provider=\"kea\"}"),
        1.0
    );
    assert_eq!(
        sample(&metrics, "labctl_provider_up{provider=\"caddy\"}"),
        0.0
    );
    assert!(
        sample(
            &metrics,
            "labctl_provider_consecutive_failures{provider=\"caddy\"}"
        ) >= 2.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "labctl_provider_consecutive_failures{provider=\"kea\"}"
        ),
        0.0
    );
    let resting_s = sample(
        &metrics,
        "labctl_provider_backoff_seconds{provider=\"caddy\"}",
    );
    assert!(
        resting_s > 0.0 && resting_s <= 4.8,
        "{resting_s}\n{metrics}"
    );

    // Back: the next run that asks it sees it, and its backoff ends.
    caddy.restart().await;
    let back = daemon
        .run_where("with Caddy back", |r| {
            r.id > found.id && r.error.is_none() && r.outcome != Outcome::Failed
        })
        .await;
    let (_, metrics) = daemon.get("/metrics").await.unwrap();
    assert_eq!(
        sample(&metrics, "labctl_provider_up{provider=\"caddy\"}"),
        1.0,
        "{back:?}"
    );
    assert_eq!(
        sample(
            &metrics,
            "labctl_provider_consecutive_failures{provider=\"caddy\"}"
        ),
        0.0
    );
    let mut daemon = daemon;
    let (code, log) = daemon.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("provider failing") && log.contains("provider answers again"),
        "{log}"
    );
}
