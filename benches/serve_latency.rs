//! Push-to-visible latency of `labctl serve`: the real binary watching a local Git repository
//! of 100 devices with their DHCP reservations (no providers, so the figure is labctl's own:
//! watch, debounce, load, validate, diff, record). Each round commits one changed file with
//! `git`, then polls the store (every 2 ms, read-only, as `labctl mcp` reads it) until the
//! latest reconciled model is that commit — the moment an MCP answer names it.
//!
//! `cargo bench --bench serve_latency [-- --rounds N --debounce-ms MS]` (defaults: 30 rounds,
//! the daemon's default 200 ms debounce). Prints min, median, p90 and max.

#[path = "common/mod.rs"]
mod common;
use common::{arg, percentile, write};

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use labctl::store::Store;

const DEVICES: usize = 100;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=bench", "-c", "user.email=bench@localhost"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn lab(dir: &Path) {
    write(
        dir,
        "labctl.yaml",
        "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {name: lab}\nspec: {}\n",
    );
    for i in 0..DEVICES {
        let (mac, ip) = (
            format!("bc:24:11:00:00:{i:02x}"),
            format!("10.0.1.{}", i + 10),
        );
        write(
            dir,
            &format!("devices/host-{i:03}.yaml"),
            &format!(
                "apiVersion: labctl.dev/v1\nkind: Device\nmetadata: {{name: host-{i:03}}}\n\
                 spec:\n  type: physical\n  interfaces:\n    - {{name: eth0, mac: \"{mac}\", ip: {ip}}}\n\
                 ---\napiVersion: labctl.dev/v1\nkind: DhcpReservation\n\
                 metadata: {{name: host-{i:03}}}\nspec: {{subnet: 10.0.1.0/24, mac: \"{mac}\", ip: {ip}, hostname: host-{i:03}}}\n"
            ),
        );
    }
}

/// The daemon, stopped with SIGTERM when the bench ends, also when it panics.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

fn main() {
    let rounds = arg("--rounds", 30) as usize;
    let debounce = arg("--debounce-ms", 200);
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    lab(repo.path());
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "lab"]);
    let state = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", state.path().join("labctl.db").display());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let daemon = Command::new(env!("CARGO_BIN_EXE_labctl"))
        .args([
            "serve",
            repo.path().to_str().unwrap(),
            "--database-url",
            &db,
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--schedule",
            "0 0 1 1 *",
            "--debounce-ms",
            &debounce.to_string(),
        ])
        .env("LABCTL_LOG", "labctl=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Stopped(daemon);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let latest = |store: &Store| {
        runtime
            .block_on(store.latest_model())
            .unwrap()
            .and_then(|m| m.commit_sha)
    };
    let wait_for = |commit: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // Until the daemon has created and migrated the store, there is nothing to read.
            if let Ok(Some(store)) = runtime.block_on(Store::open_reader(&db)) {
                if latest(&store).as_deref() == Some(commit) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "commit {commit} never reconciled"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    wait_for(&git(repo.path(), &["rev-parse", "HEAD"]));

    let mut took = Vec::with_capacity(rounds);
    for round in 0..rounds {
        write(
            repo.path(),
            "devices/host-000.yaml",
            &format!(
                "apiVersion: labctl.dev/v1\nkind: Device\nmetadata: {{name: host-000}}\n\
                 spec: {{type: physical, properties: {{round: \"{round}\"}}}}\n"
            ),
        );
        git(repo.path(), &["add", "-A"]);
        let start = Instant::now();
        git(
            repo.path(),
            &["commit", "-q", "-m", &format!("round {round}")],
        );
        wait_for(&git(repo.path(), &["rev-parse", "HEAD"]));
        took.push(start.elapsed());
    }
    drop(daemon);

    took.sort();
    let at = |p: f64| percentile(&took, p);
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    println!(
        "commit → reconciled and visible, {rounds} rounds, {DEVICES} devices, debounce {debounce} ms: \
         min {}, median {}, p90 {}, max {}",
        ms(took[0]),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(took[took.len() - 1])
    );
}
