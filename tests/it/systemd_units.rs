//! The systemd units in systemd/ load cleanly (`systemd-analyze verify`, with the binary where
//! the units expect it), are hardened (`systemd-analyze security`), and run command lines
//! labctl accepts: each unit's own ExecStart, expanded as systemd would, is run for real.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::cli::{labctl, write};
use crate::support::git::{commit_all, git};
use crate::support::net::free_port;

const INSTALLED: &str = "/usr/local/bin/labctl";
const UNITS: [&str; 4] = [
    "labctl.service",
    "labctl-reconcile.service",
    "labctl-reconcile.timer",
    "labctl-mcp.service",
];

fn units() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd")
}

/// systemd-analyze, or `None` outside CI when it is not installed.
fn analyze() -> Option<&'static Path> {
    let analyze = Path::new("/usr/bin/systemd-analyze");
    if analyze.exists() {
        return Some(analyze);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "systemd-analyze is required under CI=true (Debian package systemd)"
    );
    eprintln!("skipped: systemd-analyze is not installed");
    None
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The units as installed: verify checks that ExecStart's binary exists, so the copies point
/// at the labctl this test run built.
fn installed_copies() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for unit in UNITS {
        let body = std::fs::read_to_string(units().join(unit)).unwrap();
        let body = body.replace(INSTALLED, env!("CARGO_BIN_EXE_labctl"));
        std::fs::write(dir.path().join(unit), body).unwrap();
    }
    dir
}

#[test]
fn units_verify() {
    let Some(analyze) = analyze() else { return };
    let dir = installed_copies();
    let out = Command::new(analyze)
        .args(["verify", "--man=no"])
        .args(UNITS.map(|u| dir.path().join(u)))
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        text(&out)
    );
}

/// The overall exposure `systemd-analyze security` gives a unit (0 best, 10 worst).
fn exposure(analyze: &Path, unit: &Path) -> f64 {
    let out = Command::new(analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit)
        .output()
        .unwrap();
    let all = text(&out);
    let line = all
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level in: {all}"));
    let value = line.rsplit(':').next().unwrap().split_whitespace().next();
    value
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unreadable exposure level: {line}"))
}

#[test]
fn services_are_hardened() {
    let Some(analyze) = analyze() else { return };
    let dir = installed_copies();
    for unit in [
        "labctl.service",
        "labctl-reconcile.service",
        "labctl-mcp.service",
    ] {
        let level = exposure(analyze, &dir.path().join(unit));
        // 1.0 is what a network client that keeps state can reach: what remains is the
        // network itself, the host's root directory and the real-time clock.
        assert!(level <= 1.0, "{unit}: exposure {level}, above 1.0");
    }
}

/// The arguments of the unit's ExecStart after the binary, with each `${NAME}` replaced as
/// systemd does (the whole value, within one argument).
fn exec_args(unit: &str, env: &HashMap<&str, String>) -> Vec<String> {
    let body = std::fs::read_to_string(units().join(unit)).unwrap();
    let exec = body.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    let rest = exec
        .strip_prefix(&format!("ExecStart={INSTALLED} "))
        .unwrap_or_else(|| panic!("{unit}: ExecStart does not run {INSTALLED} directly"));
    rest.split_whitespace()
        .map(|word| {
            let mut out = String::new();
            let mut rest = word;
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let end = rest[start..].find('}').expect("a closed ${…}") + start;
                let name = &rest[start + 2..end];
                out.push_str(
                    env.get(name)
                        .unwrap_or_else(|| panic!("{unit}: ${{{name}}} is not set by the test")),
                );
                rest = &rest[end + 1..];
            }
            assert!(!rest.contains('$') && !rest.contains('"'), "{unit}: {word}");
            out.push_str(rest);
            out
        })
        .collect()
}

/// A Git repository with an empty lab, and the variables systemd would set for the units:
/// the environment file's, the state and cache directories, and credentials that are all
/// present and empty (none of them is needed).
struct Host {
    env: HashMap<&'static str, String>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Host {
    fn new() -> Host {
        let repo = tempfile::tempdir().unwrap();
        git(repo.path(), &["init", "-q"]);
        write(
            repo.path(),
            "labctl.yaml",
            "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {name: lab}\nspec: {}\n",
        );
        commit_all(repo.path(), "lab");
        let [cache, state, credentials] = [(); 3].map(|_| tempfile::tempdir().unwrap());
        for name in ["pve-token", "git-token", "webhook-secret", "admin-token"] {
            std::fs::write(credentials.path().join(name), "").unwrap();
        }
        let path = |d: &tempfile::TempDir| d.path().to_str().unwrap().to_string();
        let env = HashMap::from([
            ("LABCTL_REPO", path(&repo)),
            ("CACHE_DIRECTORY", path(&cache)),
            ("CREDENTIALS_DIRECTORY", path(&credentials)),
            (
                "DATABASE_URL",
                format!("sqlite://{}", state.path().join("labctl.db").display()),
            ),
        ]);
        Host {
            env,
            _dirs: vec![repo, cache, state, credentials],
        }
    }

    fn command(&self, unit: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_labctl"));
        cmd.args(exec_args(unit, &self.env))
            .env_remove("LABCTL_GIT_TOKEN")
            .envs(&self.env);
        cmd
    }

    /// Starts `unit`'s command with a free loopback port in the variable `listen`.
    fn listen(&mut self, unit: &str, listen: &'static str) -> (u16, std::process::Child) {
        let port = free_port();
        self.env.insert(listen, format!("127.0.0.1:{port}"));
        let child = self
            .command(unit)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        (port, child)
    }

    fn latest_trigger(&self) -> serde_json::Value {
        let out = labctl(&[
            "status",
            "--database-url",
            &self.env["DATABASE_URL"],
            "--format",
            "json",
        ]);
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        status["latestRun"]["trigger"].clone()
    }
}

#[test]
fn the_oneshot_command_line_is_one_labctl_accepts() {
    let host = Host::new();
    let out = host.command("labctl-reconcile.service").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(host.latest_trigger(), "timer");
}

#[tokio::test]
async fn the_daemon_command_line_serves_with_its_empty_credentials_switched_off() {
    let mut host = Host::new();
    let (port, mut child) = host.listen("labctl.service", "LABCTL_LISTEN");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = reqwest::get(format!("{base}/readyz")).await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "serve never became ready");
        assert!(child.try_wait().unwrap().is_none(), "serve exited early");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Empty webhook-secret and admin-token credentials mean those endpoints are off.
    let client = reqwest::Client::new();
    for path in ["/hooks/github", "/api/reconcile"] {
        let r = client.post(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    assert_eq!(host.latest_trigger(), "serve");
    stops_cleanly(child);
}

/// SIGTERM, as systemd stops a service: it must exit 0.
fn stops_cleanly(child: std::process::Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// The units that share the store run as one dynamic user with one state directory, so the
/// MCP unit can read (and audit into) what the reconcile unit wrote.
#[test]
fn every_unit_that_keeps_state_shares_the_user_and_state_directory() {
    for unit in [
        "labctl.service",
        "labctl-reconcile.service",
        "labctl-mcp.service",
    ] {
        let body = std::fs::read_to_string(units().join(unit)).unwrap();
        for line in ["User=labctl", "DynamicUser=yes", "StateDirectory=labctl"] {
            assert!(body.lines().any(|l| l == line), "{unit}: no {line}");
        }
    }
}

/// The MCP unit's own command line, after the oneshot recorded a run into the store: it
/// serves streamable HTTP with the tokens credential and answers from that run.
#[tokio::test(flavor = "multi_thread")]
async fn the_mcp_command_line_answers_from_the_reconciled_store() {
    use crate::mcp_http::{initialize, post};
    let mut host = Host::new();
    let out = host.command("labctl-reconcile.service").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let token = "lbl-unit-5a0c2f7e91d84b6f";
    let hash = labctl::mcp::sha256_hex(token);
    std::fs::write(
        Path::new(&host.env["CREDENTIALS_DIRECTORY"]).join("mcp-tokens"),
        format!("tokens: [{{name: assistant, sha256: {hash}, scopes: [read]}}]\n"),
    )
    .unwrap();
    let (port, mut child) = host.listen("labctl-mcp.service", "LABCTL_MCP_LISTEN");
    let url = format!("http://127.0.0.1:{port}/mcp");
    let bearer = format!("Bearer {token}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let opened = loop {
        let r = reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("authorization", &bearer)
            .body(initialize())
            .send()
            .await;
        if let Ok(r) = r {
            break r;
        }
        assert!(Instant::now() < deadline, "labctl mcp never listened");
        assert!(
            child.try_wait().unwrap().is_none(),
            "labctl mcp exited early"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(opened.status(), 200);
    let session = opened.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let proto = ("mcp-protocol-version", "2025-06-18");
    let r = post(
        &url,
        &[
            ("authorization", &bearer),
            ("mcp-session-id", &session),
            proto,
        ],
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.into(),
    )
    .await;
    assert_eq!(r.status(), 202);
    let r = post(
        &url,
        &[
            ("authorization", &bearer),
            ("mcp-session-id", &session),
            proto,
        ],
        r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"labctl://status"}}"#
            .into(),
    )
    .await;
    let body = r.text().await.unwrap();
    assert!(body.contains("\\\"trigger\\\": \\\"timer\\\""), "{body}");
    let r = post(&url, &[], initialize()).await;
    assert_eq!(r.status(), 401, "no token, no answer");
    stops_cleanly(child);
}
