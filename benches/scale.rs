//! labctl at 1k, 10k and 100k resources, end to end (issue 13): the release `labctl` binary
//! against a real Kea holding the reservations and the Proxmox VE fixture holding the guests,
//! each with a share drifted. For each size and layout it times `validate` and `plan`, then,
//! for each store, a first `reconcile --once` and a second one with nothing changed, and reads
//! each command's peak RSS from the kernel (`wait4`, in a small spawner: see `measure`). Kea's
//! own `config-get` time is measured apart.
//!
//! `cargo bench --bench scale -- [--reservations 1000,10000,100000] [--layout per-file|grouped|both]
//! [--store sqlite|postgres|both] [--drift-permille 10] [--keep DIR] [--wrap 'PROFILER ARGS']
//! [--write DIR] [--unchanged-runs 10] [--perf-serve FILE]`
//!
//! The stores: SQLite, a file in the lab's temporary directory; PostgreSQL, a database created
//! for each size, layout and store on the server `LABCTL_TEST_POSTGRES` names (default
//! `postgres://postgres@127.0.0.1:5432/test`, as the tests) and dropped after. Both start
//! empty, so the first reconcile also creates the schema. A PostgreSQL figure is labctl's
//! alone: the server's own CPU and memory are not in it.
//!
//! `LABCTL_BENCH_BIN` names another labctl binary to measure (say, one built with
//! `CARGO_PROFILE_RELEASE_DEBUG=line-tables-only` for a profile with line numbers).
//! `--wrap` runs the first reconcile under a profiler (`heaptrack -o /tmp/h`, `perf record -g
//! -o /tmp/p`); its peak RSS is then the profiler's and the program's. `--write DIR` only
//! writes each repository (committed, with no providers) below DIR, for profiling `labctl
//! validate` by hand.
//!
//! Then `labctl serve` on the same lab (`--unchanged-runs 0` leaves it out): its first run,
//! and ten runs (`--unchanged-runs`) asked for over HTTP with nothing changed (the daemon
//! keeps what a run concluded, so these record it again); each run's CPU time is the
//! daemon's (`/proc/PID/stat`: every thread, at 10 ms resolution), from the request until
//! the run is recorded, and its peak RSS is `VmHWM` (after the first run, and at the end).
//! `--perf-serve FILE` records a CPU profile of the daemon (`perf record --call-graph
//! dwarf`) over those runs.
//!
//! Loopback only: Kea's control agent and the fixture listen on 127.0.0.1.

#[path = "common/mod.rs"]
mod common;
#[path = "common/synth.rs"]
mod synth;

#[allow(dead_code)]
#[path = "../tests/it/support/net.rs"]
mod net;

#[allow(dead_code)]
#[path = "../tests/it/support/kea.rs"]
mod kea;

#[allow(dead_code)]
#[path = "../tests/it/fixtures/proxmox.rs"]
mod proxmox;

#[path = "common/live.rs"]
mod live;

#[path = "../tests/it/support/postgres.rs"]
mod postgres;

/// What the shared PostgreSQL support calls when the server cannot be reached: the bench was
/// asked to measure PostgreSQL, so it stops rather than leave it out.
fn absent(what: &str) {
    panic!("{what}; --store sqlite leaves PostgreSQL out")
}

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use synth::{Layout, Spec};

/// What one command cost.
struct Cost {
    wall: Duration,
    peak_rss_kb: i64,
    cpu: Duration,
    code: i32,
}

/// Runs `cmd` to its end, its output in `log`, and reads its peak RSS and CPU time from the
/// kernel as it is reaped.
///
/// Not spawned from this process: a child runs in its parent's memory until it execs, and the
/// kernel counts that memory's peak into the child's `ru_maxrss`. At 100k this harness holds
/// about 370 MB (the lab it wrote, Kea's configuration), which then stood in for the figure
/// of every command that used less. So this binary is started again as a small spawner
/// ([`spawner`]), which runs `cmd` and reports what `wait4` said of it.
fn measure(cmd: &Command, log: &Path) -> Cost {
    let out = std::fs::File::create(log).unwrap();
    let report = log.with_extension("rusage");
    let mut spawner = Command::new(std::env::current_exe().unwrap());
    spawner
        .arg(SPAWNER)
        .arg(&report)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => spawner.env(key, v),
            None => spawner.env_remove(key),
        };
    }
    let status = spawner
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .status()
        .expect("the spawner starts");
    assert!(status.success(), "the spawner failed: {status}");
    let text = std::fs::read_to_string(&report).expect("the spawner's report");
    let [rss, cpu_us, code, wall_us]: [i64; 4] = text
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .expect("four numbers");
    Cost {
        wall: Duration::from_micros(wall_us as u64),
        peak_rss_kb: rss,
        cpu: Duration::from_micros(cpu_us as u64),
        code: code as i32,
    }
}

/// The first argument that makes this binary the spawner of [`measure`].
const SPAWNER: &str = "--spawn-and-report";

/// `SPAWNER REPORT PROGRAM ARGS...`: runs the program, reaps it with `wait4` and writes its
/// peak RSS (KiB), CPU time (µs), exit code and wall time (µs, from its start to its reaping:
/// the spawner's own start-up is not in it) to REPORT.
// The child is reaped by wait4, which std's `Child::wait` cannot do with its rusage.
#[allow(clippy::zombie_processes)]
fn spawner(mut args: impl Iterator<Item = String>) -> ! {
    let report = args.next().expect("a report path");
    let program = args.next().expect("a program");
    let started = Instant::now();
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .expect("the measured program starts");
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value to be written into; the pid is our child's.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let wall = started.elapsed().as_micros();
    assert_eq!(reaped, child.id() as i32, "wait4");
    let us = |t: libc::timeval| t.tv_sec * 1_000_000 + t.tv_usec;
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let cpu = us(usage.ru_utime) + us(usage.ru_stime);
    std::fs::write(&report, format!("{} {cpu} {code} {wall}", usage.ru_maxrss)).unwrap();
    std::process::exit(0)
}

fn list(name: &str, default: &str) -> Vec<String> {
    let args: Vec<String> = std::env::args().collect();
    let value = args
        .iter()
        .position(|a| a == name)
        .map(|i| args[i + 1].clone())
        .unwrap_or_else(|| default.to_string());
    value.split(',').map(str::to_string).collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some(SPAWNER) {
        spawner(args);
    }
    tokio::runtime::Runtime::new().unwrap().block_on(bench());
}

async fn bench() {
    let sizes: Vec<usize> = list("--reservations", "1000,10000,100000")
        .iter()
        .map(|s| s.parse().expect("--reservations takes numbers"))
        .collect();
    let layouts: Vec<Layout> = match list("--layout", "per-file")[0].as_str() {
        "per-file" => vec![Layout::PerFile],
        "grouped" => vec![Layout::Grouped],
        "both" => vec![Layout::PerFile, Layout::Grouped],
        other => panic!("--layout per-file|grouped|both, not {other}"),
    };
    let stores: &[&str] = match list("--store", "both")[0].as_str() {
        "sqlite" => &["SQLite"],
        "postgres" => &["PostgreSQL"],
        "both" => &["SQLite", "PostgreSQL"],
        other => panic!("--store sqlite|postgres|both, not {other}"),
    };
    let drift = common::arg("--drift-permille", 10) as usize;
    let keep = list("--keep", "")[0].clone();
    // Writes each repository below this directory (no provider, no run) instead.
    let write_only = list("--write", "")[0].clone();
    // A profiler the first reconcile runs under: `--wrap 'heaptrack -o /tmp/h'`.
    let wrap: Vec<String> = std::env::args()
        .skip_while(|a| a != "--wrap")
        .nth(1)
        .map(|w| w.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default();
    // Another build of labctl (one with debug line tables, for a profile) may be measured.
    let labctl_bin = std::env::var("LABCTL_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_labctl").to_string());
    let labctl = labctl_bin.as_str();

    println!(
        "| resources (reservations + devices + routes + others) | layout | store | drifted | Kea config-get | validate | plan | reconcile | unchanged reconcile | peak RSS validate / plan / reconcile / unchanged |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|---|");
    let mut daemon_rows = Vec::new();
    for &reservations in &sizes {
        for &layout in &layouts {
            let lab = synth::generate(Spec {
                reservations,
                layout,
                drift_permille: drift,
            });
            let dir = tempfile::tempdir().unwrap();
            let repo = dir.path().join("repo");
            if !write_only.is_empty() {
                // The repository alone, for profiling `labctl validate`: no provider runs.
                let to = Path::new(&write_only).join(format!("{reservations}-{layout:?}"));
                let _ = std::fs::remove_dir_all(&to);
                for (path, text) in &lab.files {
                    common::write(&to, path, text);
                }
                common::write(
                    &to,
                    "labctl.yaml",
                    "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {name: lab}\nspec: {}\n",
                );
                live::commit(&to);
                println!("wrote {}", to.display());
                continue;
            }

            // Kea and Proxmox VE with the live state, and the repository naming them.
            let live = live::Live::start(&lab, &repo).await;
            let mut gets = Vec::new();
            for _ in 0..3 {
                let t = Instant::now();
                let _ = live.kea.config().await;
                gets.push(t.elapsed());
            }
            gets.sort();

            let repo_arg = repo.to_str().unwrap();
            let run = |args: &[&str], name: &str| {
                let mut cmd = match wrap.split_first() {
                    Some((profiler, args)) if name.starts_with("reconcile") => {
                        let mut cmd = Command::new(profiler);
                        cmd.args(args).arg(labctl);
                        cmd
                    }
                    _ => Command::new(labctl),
                };
                cmd.args(args)
                    .env("LABCTL_BENCH_PVE_TOKEN", live::PVE_TOKEN)
                    .env("NO_COLOR", "1")
                    .env_remove("DATABASE_URL");
                let log = dir.path().join(format!("{name}.log"));
                let cost = measure(&cmd, &log);
                (cost, log)
            };
            let (validate, vlog) = run(&["validate", repo_arg], "validate");
            assert_eq!(
                validate.code,
                0,
                "validate failed:\n{}",
                std::fs::read_to_string(&vlog).unwrap_or_default()
            );
            let (plan, plog) = run(&["plan", repo_arg], "plan");
            // plan exits 2 when it finds drift.
            assert!(
                plan.code == 0 || plan.code == 2,
                "plan exited {}:\n{}",
                plan.code,
                std::fs::read_to_string(&plog).unwrap_or_default()
            );
            let c = lab.counts;
            let layout_name = if layout == Layout::PerFile {
                "per file"
            } else {
                "1,000 per file"
            };
            let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
            let cost = |c: &Cost| format!("{} (cpu {})", secs(c.wall), secs(c.cpu));
            for &store in stores {
                // Each store starts empty: the first reconcile creates its schema.
                let (db, pg) = if store == "PostgreSQL" {
                    let db = postgres::TempDatabase::create()
                        .await
                        .expect("PostgreSQL is reachable");
                    (db.url.clone(), Some(db))
                } else {
                    let path = dir.path().join("state.db");
                    (format!("sqlite://{}", path.display()), None)
                };
                let (first, rlog) = run(
                    &["reconcile", "--once", repo_arg, "--database-url", &db],
                    &format!("reconcile-{store}"),
                );
                // reconcile exits 0 for a run that finished.
                assert_eq!(
                    first.code,
                    0,
                    "reconcile ({store}) failed:\n{}",
                    std::fs::read_to_string(&rlog).unwrap_or_default()
                );
                let (again, _) = run(
                    &["reconcile", "--once", repo_arg, "--database-url", &db],
                    &format!("unchanged-{store}"),
                );
                println!(
                    "| {} ({} + {} + {} + {}) | {layout_name} | {store} | {} | {:.3} s | {} | {} | {} | {} | {} / {} / {} / {} MB |",
                    c.documents(),
                    c.reservations,
                    c.devices,
                    c.routes,
                    c.pools + c.mcp_servers,
                    lab.drifted,
                    gets[1].as_secs_f64(),
                    cost(&validate),
                    cost(&plan),
                    cost(&first),
                    cost(&again),
                    validate.peak_rss_kb / 1024,
                    plan.peak_rss_kb / 1024,
                    first.peak_rss_kb / 1024,
                    again.peak_rss_kb / 1024,
                );
                // No runs asked for: the command-line rows only.
                let runs = common::arg("--unchanged-runs", 10) as usize;
                if runs > 0 {
                    let served = serve(labctl, repo_arg, &db, dir.path(), runs, store).await;
                    let mut unchanged = served.unchanged_cpu.clone();
                    unchanged.sort();
                    daemon_rows.push(format!(
                        "| {} | {layout_name} | {store} | {} (cpu {}) | {:.0} ms | {} – {} ms | {}/{} | {} / {} MB |",
                        c.documents(),
                        secs(served.first_wall),
                        secs(served.first_cpu),
                        unchanged[unchanged.len() / 2].as_secs_f64() * 1000.0,
                        unchanged[0].as_millis(),
                        unchanged[unchanged.len() - 1].as_millis(),
                        served.recorded_again,
                        unchanged.len(),
                        served.first_peak_rss_kb / 1024,
                        served.peak_rss_kb / 1024,
                    ));
                }
                if let Some(pg) = pg {
                    pg.drop_database().await;
                }
            }
            if !keep.is_empty() {
                let to = Path::new(&keep).join(format!("{reservations}-{layout:?}"));
                let _ = std::fs::remove_dir_all(&to);
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                let status = Command::new("cp")
                    .args(["-r", dir.path().to_str().unwrap(), to.to_str().unwrap()])
                    .status()
                    .unwrap();
                assert!(status.success());
            }
            drop(live);
        }
    }
    if !daemon_rows.is_empty() {
        println!();
        println!("| resources | layout | store | `serve`: first run | unchanged run, cpu (median) | min – max | recorded again | peak RSS after the first run / all |");
        println!("|---|---|---|---:|---:|---:|---:|---:|");
        for row in daemon_rows {
            println!("{row}");
        }
    }
}

/// What `labctl serve` cost on one lab.
struct Served {
    /// From the start until its first run is recorded (/readyz).
    first_wall: Duration,
    first_cpu: Duration,
    /// Each run asked for afterwards, nothing changed: from the request to the run recorded.
    unchanged_cpu: Vec<Duration>,
    /// How many of those the daemon said it recorded again.
    recorded_again: usize,
    /// `VmHWM` after the first run, and at the end.
    first_peak_rss_kb: i64,
    peak_rss_kb: i64,
}

/// The peak RSS of process `pid` so far (`VmHWM`), in kB.
fn peak_rss_kb(pid: u32) -> i64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time (user and system) of process `pid` so far, threads that have exited included:
/// `/proc/PID/stat`, in clock ticks (10 ms here), so a run's figure is good to about 10 ms.
fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// `labctl serve` on the lab in `repo` (store `db`, called `store`): its first run, then `n`
/// runs asked for over HTTP with nothing changed; stopped with SIGTERM.
async fn serve(labctl: &str, repo: &str, db: &str, dir: &Path, n: usize, store: &str) -> Served {
    const ADMIN: &str = "scale-bench-admin-token";
    let token_file = dir.join("admin-token");
    std::fs::write(&token_file, ADMIN).unwrap();
    let port = net::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let log_path = dir.join(format!("serve-{store}.log"));
    let started = Instant::now();
    let mut child = Command::new(labctl)
        .args(["serve", repo, "--database-url", db, "--no-watch"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-token-file", token_file.to_str().unwrap()])
        // No scheduled run: only the first and those asked for.
        .args(["--schedule", "0 0 1 1 *"])
        .env("LABCTL_BENCH_PVE_TOKEN", live::PVE_TOKEN)
        .env("LABCTL_LOG", "labctl=info")
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("labctl serve starts");
    let pid = child.id();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let ready = http.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(Instant::now() < deadline, "serve never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (first_wall, first_cpu) = (started.elapsed(), cpu_of(pid));
    let first_peak_rss_kb = peak_rss_kb(pid);
    let store = labctl::store::Store::open_reader(db)
        .await
        .unwrap()
        .unwrap();
    let finished = |runs: &[labctl::store::Run]| {
        runs.iter()
            .filter(|r| r.outcome != labctl::store::Outcome::Running)
            .count()
    };
    // `--perf-serve FILE`: a CPU profile of the daemon over the unchanged runs. Stacks are
    // unwound from DWARF: a release build keeps no frame pointers, and `-g` alone would give
    // every sample a stack one or two frames deep.
    let perf_to = list("--perf-serve", "")[0].clone();
    let perf = (!perf_to.is_empty()).then(|| {
        let child = Command::new("perf")
            .args([
                "record",
                "-F",
                "999",
                "--call-graph",
                "dwarf,16384",
                "-o",
                &perf_to,
                "-p",
                &pid.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("perf starts");
        std::thread::sleep(Duration::from_millis(500));
        child
    });
    let mut unchanged_cpu = Vec::new();
    for _ in 0..n {
        let before = finished(&store.runs_between(0, i64::MAX).await.unwrap());
        let cpu = cpu_of(pid);
        let asked = http
            .post(format!("{base}/api/reconcile"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(asked.status().as_u16(), 202, "the run is queued");
        while finished(&store.runs_between(0, i64::MAX).await.unwrap()) == before {
            assert!(
                Instant::now() < deadline,
                "the run asked for never finished"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        unchanged_cpu.push(cpu_of(pid) - cpu);
    }
    if let Some(mut perf) = perf {
        // SAFETY: signalling our own child, which has not been reaped.
        unsafe { libc::kill(perf.id() as i32, libc::SIGINT) };
        perf.wait().unwrap();
    }
    store.close().await;
    let peak_rss_kb = peak_rss_kb(pid);
    // SAFETY: signalling our own child, which has not been reaped.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    child.wait().unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    Served {
        first_wall,
        first_cpu,
        unchanged_cpu,
        recorded_again: log.matches("\"recorded_again\":true").count(),
        first_peak_rss_kb,
        peak_rss_kb,
    }
}
