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
const UNITS: [&str; 3] = [
    "labctl.service",
    "labctl-reconcile.service",
    "labctl-reconcile.timer",
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
    for unit in ["labctl.service", "labctl-reconcile.service"] {
        let level = exposure(analyze, &dir.path().join(unit));
        // 1.0 is what a network client that keeps state can reach: what remains is the
        // network itself, the host's root directory and the real-time clock.
        assert!(level <= 1.0, "{unit}: exposure {level}, above 1.0");
    }
}

/// The arguments of the unit's ExecStart after the binary, with `${NAME}` replaced as systemd
/// does (the whole value, one argument).
fn exec_args(unit: &str, env: &HashMap<&str, String>) -> Vec<String> {
    let body = std::fs::read_to_string(units().join(unit)).unwrap();
    let exec = body.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    let rest = exec
        .strip_prefix(&format!("ExecStart={INSTALLED} "))
        .unwrap_or_else(|| panic!("{unit}: ExecStart does not run {INSTALLED} directly"));
    rest.split_whitespace()
        .map(|word| match word.strip_prefix("${") {
            Some(name) => {
                let name = name.strip_suffix('}').unwrap();
                env.get(name)
                    .unwrap_or_else(|| panic!("{unit}: ${{{name}}} is not set by the test"))
                    .clone()
            }
            None => {
                assert!(!word.contains('$') && !word.contains('"'), "{unit}: {word}");
                word.to_string()
            }
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
    let port = free_port();
    host.env
        .insert("LABCTL_LISTEN", format!("127.0.0.1:{port}"));
    let mut child = host
        .command("labctl.service")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
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
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}
