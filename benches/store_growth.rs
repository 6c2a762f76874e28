//! How the state store grows when nothing changes: a 1,000-resource model and three providers'
//! observed snapshots of 1,000 objects each, recorded once, then N unchanged runs. Prints the
//! database size and row counts before and after, bytes and rows added per run, and runs/s.
//!
//! `cargo bench --bench store_growth [-- --runs N --pg-runs N --pg-seconds S]`
//! Defaults: 10,000 runs on SQLite (a temporary file); on PostgreSQL (LABCTL_TEST_POSTGRES, default
//! postgres://postgres@127.0.0.1:5432/test, in a database of its own, dropped afterwards) as many
//! of 10,000 runs as fit in 100 s. PostgreSQL is skipped when unreachable.

use std::time::{Duration, Instant};

use labctl::store::{ObservedSnapshot, Outcome, RunReport, Store, StoreStats};
use serde_json::{json, Value};
use sqlx::{Connection, Executor};

const RESOURCES: usize = 1_000;
const COMMIT: &str = "4f1c2e9a7b3d5f6e8a9b0c1d2e3f4a5b6c7d8e9f";

struct Options {
    runs: u64,
    pg_runs: u64,
    pg_budget: Duration,
}

fn options() -> Options {
    let mut o = Options {
        runs: 10_000,
        pg_runs: 10_000,
        pg_budget: Duration::from_secs(100),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |i: usize| -> u64 {
        args.get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{} needs a number", args[i]))
    };
    for (i, arg) in args.iter().enumerate() {
        match arg.as_str() {
            "--runs" => o.runs = value(i),
            "--pg-runs" => o.pg_runs = value(i),
            "--pg-seconds" => o.pg_budget = Duration::from_secs(value(i)),
            _ => {} // --bench and filters from cargo
        }
    }
    o
}

fn mac(i: usize) -> String {
    format!(
        "bc:24:11:{:02x}:{:02x}:{:02x}",
        i >> 16,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

fn ip(i: usize) -> String {
    format!("10.{}.{}.{}", 1 + i / 62_500, (i / 250) % 250, 2 + i % 250)
}

/// A Kea reservation, a Proxmox guest and a Traefik router per resource, as the APIs return them.
fn kea(i: usize) -> Value {
    json!({
        "hw-address": mac(i), "ip-address": ip(i), "hostname": format!("host-{i:04}"),
        "subnet-id": 1 + i / 250, "client-classes": [], "next-server": "0.0.0.0",
        "option-data": [{"name": "domain-name-servers", "code": 6, "space": "dhcp4",
                         "csv-format": true, "data": "10.0.1.1, 10.0.1.2", "always-send": false}],
        "user-context": {"managed-by": "labctl", "comment": format!("reservation of host-{i:04}")},
    })
}

fn proxmox(i: usize) -> Value {
    json!({
        "vmid": 100 + i, "name": format!("host-{i:04}"), "node": format!("pve-{:02}", 1 + i % 4),
        "type": if i.is_multiple_of(3) { "lxc" } else { "qemu" }, "status": "running", "cpus": 2 + i % 6,
        "maxmem": 4_294_967_296u64, "maxdisk": 34_359_738_368u64, "pool": "services",
        "tags": "labctl;managed", "template": 0, "uptime": 0,
        "net0": format!("virtio={},bridge=vmbr0,tag=10", mac(i).to_uppercase()),
        "scsi0": format!("local-lvm:vm-{}-disk-0,size=32G", 100 + i),
    })
}

fn traefik(i: usize) -> Value {
    json!({
        "name": format!("host-{i:04}@file"), "provider": "file", "status": "enabled",
        "entryPoints": ["websecure"], "service": format!("host-{i:04}@file"),
        "rule": format!("Host(`host-{i:04}.lab.example`)"), "priority": 36,
        "tls": {"certResolver": "letsencrypt"}, "middlewares": ["secure-headers@file"],
        "using": ["websecure"],
    })
}

fn desired(i: usize) -> Value {
    json!({
        "apiVersion": "labctl.dev/v1", "kind": "DhcpReservation",
        "metadata": {"name": format!("host-{i:04}"), "labels": {"tier": "services"}},
        "spec": {"subnet": "10.0.0.0/8", "mac": mac(i), "ip": ip(i), "hostname": format!("host-{i:04}")},
    })
}

/// The reconciled model: every resource in sync, its desired and observed state side by side.
fn model() -> Value {
    let resources: Vec<Value> = (0..RESOURCES)
        .map(|i| {
            json!({
                "kind": "DhcpReservation", "name": format!("host-{i:04}"),
                "desired": desired(i)["spec"], "observed": kea(i), "status": "in-sync",
            })
        })
        .collect();
    json!({ "commit": COMMIT, "resources": resources })
}

fn report() -> RunReport {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let observed = |provider: &str, body: Value| ObservedSnapshot {
        provider: provider.into(),
        body: body.into(),
        observed_at: now,
    };
    RunReport {
        commit_sha: Some(COMMIT.into()),
        desired: Some(json!({"documents": (0..RESOURCES).map(desired).collect::<Vec<_>>()}).into()),
        observed: vec![
            observed(
                "kea",
                json!({"reservations": (0..RESOURCES).map(kea).collect::<Vec<_>>()}),
            ),
            observed(
                "proxmox",
                json!({"guests": (0..RESOURCES).map(proxmox).collect::<Vec<_>>()}),
            ),
            observed(
                "traefik",
                json!({"routers": (0..RESOURCES).map(traefik).collect::<Vec<_>>()}),
            ),
        ],
        resources: RESOURCES as u64,
        model: Some(model().into()),
        ..RunReport::new(Outcome::Succeeded)
    }
}

fn rows(s: &StoreStats) -> i64 {
    s.runs
        + s.blobs
        + s.desired_snapshots
        + s.observed_snapshots
        + s.deviations
        + s.pull_requests
        + s.audit_log
}

struct Measured {
    backend: &'static str,
    first: StoreStats,
    after: StoreStats,
    runs: u64,
    elapsed: Duration,
    note: String,
}

/// One run, then up to `runs` unchanged runs (or until `budget` is spent).
async fn measure(backend: &'static str, store: &Store, runs: u64, budget: Duration) -> Measured {
    store.migrate().await.unwrap();
    let report = report();
    // Times the store's calls only, not the copy of the report each run takes.
    let record = |report: RunReport| async move {
        let start = Instant::now();
        let run = store.start_run("timer", "bench").await.unwrap();
        store.finish_run(run, report).await.unwrap();
        start.elapsed()
    };
    record(report.clone()).await;
    let first = store.stats().await.unwrap();
    let start = Instant::now();
    let mut elapsed = Duration::ZERO;
    let mut done = 0;
    while done < runs && start.elapsed() < budget {
        elapsed += record(report.clone()).await;
        done += 1;
    }
    let after = store.stats().await.unwrap();
    assert_eq!(after.blobs, first.blobs, "unchanged runs added blobs");
    assert_eq!(after.observed_snapshots, first.observed_snapshots);
    assert_eq!(after.runs, first.runs + done as i64);
    let note = if done < runs {
        format!("stopped after {done} of {runs} runs: the {budget:?} budget was spent")
    } else {
        String::new()
    };
    Measured {
        backend,
        first,
        after,
        runs: done,
        elapsed,
        note,
    }
}

async fn sqlite(runs: u64) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}/labctl.db", dir.path().display()))
        .await
        .unwrap();
    let m = measure("SQLite", &store, runs, Duration::MAX).await;
    store.close().await;
    m
}

async fn postgres(runs: u64, budget: Duration) -> Option<Measured> {
    sqlx::any::install_default_drivers();
    let admin_url = std::env::var("LABCTL_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut admin = match sqlx::AnyConnection::connect(&admin_url).await {
        Ok(c) => c,
        Err(e) => {
            println!("PostgreSQL skipped: {admin_url} is unreachable: {e}");
            return None;
        }
    };
    let name = format!("labctl_bench_{}", std::process::id());
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let server = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(s, _)| s);
    let store = Store::connect(&format!("{server}/{name}")).await.unwrap();
    let m = measure("PostgreSQL", &store, runs, budget).await;
    store.close().await;
    admin
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await
        .unwrap();
    Some(m)
}

fn print(results: &[Measured]) {
    println!(
        "\n{:<11} {:>7} {:>8} {:>8} {:>13} {:>13} {:>10} {:>10} {:>10} {:>9}",
        "backend",
        "runs",
        "store s",
        "runs/s",
        "bytes@1 run",
        "bytes after",
        "bytes/run",
        "rows@1 run",
        "rows after",
        "rows/run"
    );
    for m in results {
        let secs = m.elapsed.as_secs_f64();
        let per = |a: i64, b: i64| (b - a) as f64 / m.runs.max(1) as f64;
        println!(
            "{:<11} {:>7} {:>8.1} {:>8.1} {:>13} {:>13} {:>10.1} {:>10} {:>10} {:>9.2}",
            m.backend,
            m.runs,
            secs,
            m.runs as f64 / secs,
            m.first.database_bytes,
            m.after.database_bytes,
            per(m.first.database_bytes, m.after.database_bytes),
            rows(&m.first),
            rows(&m.after),
            per(rows(&m.first), rows(&m.after)),
        );
    }
    for m in results {
        println!(
            "{}: after the first run {:?}; after {} more {:?}",
            m.backend, m.first, m.runs, m.after
        );
        if !m.note.is_empty() {
            println!("{}: {}", m.backend, m.note);
        }
    }
}

fn main() {
    let o = options();
    let r = report();
    let size = |b: &labctl::store::Blob| b.size().unwrap_or(0) as usize;
    println!(
        "model {} bytes ({RESOURCES} resources), desired {} bytes, observed {} bytes (3 providers)",
        size(r.model.as_ref().unwrap()),
        size(r.desired.as_ref().unwrap()),
        r.observed.iter().map(|o| size(&o.body)).sum::<usize>()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut results = vec![rt.block_on(sqlite(o.runs))];
    print(&results);
    if let Some(m) = rt.block_on(postgres(o.pg_runs, o.pg_budget)) {
        results.push(m);
    }
    print(&results);
}
