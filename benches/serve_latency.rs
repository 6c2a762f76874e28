//! Push-to-visible latency of `labctl serve`: the real binary watching a local Git repository
//! of 100 devices with their DHCP reservations (no providers, so the figure is labctl's own:
//! watch, debounce, load, validate, diff, record). Each round commits one changed file with
//! `git`, then polls the store (every 2 ms, read-only, as `labctl mcp` reads it) until the
//! latest reconciled model is that commit — the moment an MCP answer names it.
//!
//! With `--kea`, the same against a real Kea (started as tests/ start it): the repository
//! declares one reservation, each round commits it at another address, and a round ends when
//! MCP `get_drift` — asked over HTTP by a plain JSON-RPC client, not labctl's — shows the
//! deviation at the new address. `--webhook` turns the watch off and sends a signed GitHub
//! push webhook right after each commit instead.
//!
//! `--unchanged N` then asks for N runs over the admin API with nothing changed (the commit
//! reconciled, the same live state) and prints each run's recorded duration and the daemon's
//! CPU time a run: what a scheduled run costs when there is nothing to do.
//!
//! `cargo bench --bench serve_latency [-- --rounds N --debounce-ms MS --kea --webhook
//! --unchanged N]` (defaults: 30 rounds, the daemon's default 200 ms debounce). Prints min,
//! median, p90 and max.

#[path = "common/mod.rs"]
mod common;
use common::{arg, flag, percentile, write};

/// The real Kea of the integration tests (its `super::net` is this crate's `net`).
#[allow(dead_code)]
#[path = "../tests/it/support/kea.rs"]
mod kea;
#[allow(dead_code)]
#[path = "../tests/it/support/net.rs"]
mod net;

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
    let (kea_mode, webhook) = (flag("--kea"), flag("--webhook"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let kea = kea_mode.then(|| {
        runtime
            .block_on(kea::Kea::start(
                serde_json::json!([{"hw-address": MAC, "ip-address": "10.0.1.201", "hostname": "whisper"}]),
                serde_json::json!([]),
            ))
            .expect("Kea is needed for --kea (apt-get install kea-dhcp4-server kea-ctrl-agent)")
    });
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    match &kea {
        Some(kea) => kea_lab(repo.path(), &kea.url, "10.0.1.201"),
        None => lab(repo.path()),
    }
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "lab"]);
    let state = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", state.path().join("labctl.db").display());
    let (port, mcp_port) = (free_port(), free_port());
    std::fs::write(state.path().join("webhook.secret"), WEBHOOK_SECRET).unwrap();
    std::fs::write(state.path().join("admin.token"), ADMIN_TOKEN).unwrap();
    std::fs::write(
        state.path().join("tokens.yaml"),
        format!(
            "tokens:\n  - name: bench\n    sha256: {}\n    scopes: [read]\n",
            labctl::mcp::sha256_hex(MCP_TOKEN)
        ),
    )
    .unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_labctl"));
    daemon
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
        .arg("--mcp-http")
        .arg(format!("127.0.0.1:{mcp_port}"))
        .arg("--tokens")
        .arg(state.path().join("tokens.yaml"))
        // The poll below asks MCP every few milliseconds; it is not the load being limited.
        .args(["--rate", "1000000", "--burst", "1000000"])
        .arg("--admin-token-file")
        .arg(state.path().join("admin.token"))
        .arg("--webhook-secret-file")
        .arg(state.path().join("webhook.secret"))
        .env("LABCTL_LOG", "labctl=warn")
        .stdout(Stdio::null());
    if std::env::var_os("BENCH_DEBUG").is_none() {
        daemon.stderr(Stdio::null());
    }
    if webhook {
        daemon.arg("--no-watch");
    }
    let daemon = Stopped(daemon.spawn().unwrap());

    let latest = |store: &Store| {
        runtime
            .block_on(store.latest_model())
            .unwrap()
            .and_then(|m| m.commit_sha)
    };
    // Without Kea: the store names the commit. With Kea: MCP shows whisper at `ip`.
    let visible = |commit: &str, ip: &str| -> bool {
        match &kea {
            None => runtime
                .block_on(Store::open_reader(&db))
                .ok()
                .flatten()
                .is_some_and(|store| latest(&store).as_deref() == Some(commit)),
            Some(_) => {
                let drift = runtime.block_on(mcp_get_drift(mcp_port));
                let Some(drift) = drift else { return false };
                if drift["commit"] != commit {
                    return false;
                }
                let items = drift["deviations"].as_array().cloned().unwrap_or_default();
                if std::env::var_os("BENCH_DEBUG").is_some() {
                    eprintln!("{drift}");
                }
                ip == "10.0.1.201" && items.is_empty()
                    || items
                        .iter()
                        .any(|d| d["name"] == "whisper" && d["expected"] == ip)
            }
        }
    };
    let wait_for = |commit: &str, ip: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        // Until the daemon has created and migrated the store, there is nothing to read.
        while !visible(commit, ip) {
            assert!(
                Instant::now() < deadline,
                "commit {commit} never reconciled and visible"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    wait_for(&git(repo.path(), &["rev-parse", "HEAD"]), "10.0.1.201");

    let mut took = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let ip = format!("10.0.1.{}", 10 + round % 200);
        match &kea {
            Some(kea) => kea_lab(repo.path(), &kea.url, &ip),
            None => write(
                repo.path(),
                "devices/host-000.yaml",
                &format!(
                    "apiVersion: labctl.dev/v1\nkind: Device\nmetadata: {{name: host-000}}\n\
                     spec: {{type: physical, properties: {{round: \"{round}\"}}}}\n"
                ),
            ),
        }
        git(repo.path(), &["add", "-A"]);
        let start = Instant::now();
        git(
            repo.path(),
            &["commit", "-q", "-m", &format!("round {round}")],
        );
        if webhook {
            runtime.block_on(push_webhook(port));
        }
        wait_for(&git(repo.path(), &["rev-parse", "HEAD"]), &ip);
        took.push(start.elapsed());
    }
    let unchanged = arg("--unchanged", 0) as usize;
    let unchanged = (unchanged > 0).then(|| {
        let pid = daemon.0.id();
        let store = runtime
            .block_on(Store::open_reader(&db))
            .unwrap()
            .expect("the daemon made the store");
        let last = || runtime.block_on(store.latest_run()).unwrap().unwrap();
        let cpu_before = cpu_ticks(pid);
        let mut runs = Vec::with_capacity(unchanged);
        for _ in 0..unchanged {
            let before = last().id;
            runtime.block_on(manual_run(port));
            let deadline = Instant::now() + Duration::from_secs(60);
            let run = loop {
                let run = last();
                if run.id != before && run.finished_at.is_some() {
                    break run;
                }
                assert!(Instant::now() < deadline, "the manual run never finished");
                std::thread::sleep(Duration::from_millis(2));
            };
            assert_eq!(run.outcome.to_string(), "succeeded", "{run:?}");
            let ms = run.finished_at.unwrap() - run.started_at;
            runs.push(Duration::from_millis(ms as u64));
        }
        let cpu = (cpu_ticks(pid) - cpu_before) as f64 * 1000.0 / clock_ticks() / unchanged as f64;
        runs.sort();
        (runs, cpu)
    });
    drop(daemon);
    drop(kea);

    if let Some((runs, cpu)) = unchanged {
        println!(
            "unchanged run (same commit, same live state; manual trigger), {} runs: \
             recorded duration min {} ms, median {} ms, max {} ms; daemon CPU {cpu:.1} ms a run",
            runs.len(),
            runs[0].as_millis(),
            percentile(&runs, 0.5).as_millis(),
            runs[runs.len() - 1].as_millis(),
        );
    }
    took.sort();
    let at = |p: f64| percentile(&took, p);
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    println!(
        "commit → reconciled and visible ({}, {}), {rounds} rounds, debounce {debounce} ms: \
         min {}, median {}, p90 {}, max {}",
        if kea_mode {
            "real Kea, MCP get_drift".to_string()
        } else {
            format!("{DEVICES} devices, store")
        },
        if webhook { "webhook" } else { "watch" },
        ms(took[0]),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(took[took.len() - 1])
    );
}

const MAC: &str = "bc:24:11:5e:02:01";
const WEBHOOK_SECRET: &str = "bench-webhook-secret";
const MCP_TOKEN: &str = "bench-mcp-token";
const ADMIN_TOKEN: &str = "bench-admin-token";

/// `labctl reconcile --now` over the admin API.
async fn manual_run(port: u16) {
    let status = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/reconcile"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "POST /api/reconcile answered {status}");
}

/// User plus system CPU time of process `pid`, in clock ticks (`/proc/PID/stat` fields 14, 15).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name may hold spaces; the fields are counted after its closing parenthesis.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Clock ticks a second.
fn clock_ticks() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn free_port() -> u16 {
    net::free_port()
}

/// A repository with Kea as its provider and whisper's reservation at `ip`.
fn kea_lab(dir: &Path, kea_url: &str, ip: &str) {
    write(
        dir,
        "labctl.yaml",
        &format!(
            "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {{name: lab}}\nspec:\n  providers:\n    - {{name: kea, kind: kea, url: \"{kea_url}\", timeoutSeconds: 5}}\n"
        ),
    );
    write(
        dir,
        "dhcp/whisper.yaml",
        &format!(
            "apiVersion: labctl.dev/v1\nkind: DhcpReservation\nmetadata: {{name: whisper}}\nspec:\n  subnet: 10.0.1.0/24\n  mac: \"{MAC}\"\n  ip: {ip}\n  hostname: whisper\n"
        ),
    );
}

/// A GitHub push webhook, signed.
async fn push_webhook(port: u16) {
    let body = r#"{"ref":"refs/heads/main"}"#;
    let status = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/hooks/github"))
        .header("x-github-event", "push")
        .header(
            "x-hub-signature-256",
            labctl::serve::webhook::github_signature(WEBHOOK_SECRET.as_bytes(), body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "webhook answered {status}");
}

/// MCP `get_drift`'s structured result over streamable HTTP, with a plain JSON-RPC client (a
/// session per call, as a short-lived assistant tool would open); `None` until the face
/// answers.
async fn mcp_get_drift(port: u16) -> Option<serde_json::Value> {
    let url = format!("http://127.0.0.1:{port}/mcp");
    let client = reqwest::Client::new();
    let post = |body: serde_json::Value, session: Option<&str>| {
        let mut req = client
            .post(&url)
            .bearer_auth(MCP_TOKEN)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        req.send()
    };
    let init = post(
        serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "bench", "version": "0"}}}),
        None,
    )
    .await
    .ok()?;
    let session = init
        .headers()
        .get("mcp-session-id")?
        .to_str()
        .ok()?
        .to_string();
    init.bytes().await.ok()?;
    post(
        serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        Some(&session),
    )
    .await
    .ok()?;
    let answer = post(
        serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "get_drift", "arguments": {}}}),
        Some(&session),
    )
    .await
    .ok()?
    .text()
    .await
    .ok()?;
    let _ = client
        .delete(&url)
        .bearer_auth(MCP_TOKEN)
        .header("mcp-session-id", &session)
        .send()
        .await;
    // A JSON body, or server-sent events whose non-empty `data:` line holds it (the first
    // event is an empty priming one, for resumption).
    let json = answer
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .find(|d| !d.trim().is_empty())
        .unwrap_or(&answer);
    if std::env::var_os("BENCH_DEBUG").is_some() {
        eprintln!("{answer}");
    }
    let reply: serde_json::Value = serde_json::from_str(json.trim()).ok()?;
    let result = &reply["result"];
    (result["isError"] != true).then(|| result["structuredContent"].clone())
}
