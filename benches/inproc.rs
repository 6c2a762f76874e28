//! The in-process parts at 1k, 10k and 100k resources (issue 13), with criterion: loading the
//! commit, validating it, diffing it against an observation, a whole run recorded in the store,
//! and the MCP tools `get_device` (by name and by address), `lookup_ip`, `get_drift`,
//! `list_dhcp_reservations` and `list_devices` (with `fields`)
//! as a client calls them, minus the transport.
//!
//! `cargo bench --bench inproc [-- FILTER]`; `LABCTL_BENCH_SIZES=1000,10000` for fewer sizes
//! (default 1000,10000,100000).
//!
//! The lab is the one `benches/scale.rs` measures end to end (`common/synth.rs`, 1 % drifted),
//! reconciled once against a real Kea and the Proxmox VE fixture on loopback to fill an SQLite
//! store. What is timed then talks to no provider: the diff and the recorded run use that first
//! observation again (a provider that answers with it), so they measure labctl alone. Criterion
//! reports each tool's mean; the p50/p99/max of every call timed are printed after it.

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

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use futures::future::BoxFuture;
use labctl::mcp::{Client, LabServer, Scopes};
use labctl::model::{DesiredState, Kind};
use labctl::providers::{Observation, Provider, ProviderError, Resource};
use labctl::reconcile::{self, HostOptions, Loaded};
use labctl::source::{self, GitOptions, SourceSpec};
use labctl::store::{ActorKind, Store};
use serde_json::{json, Value as Json};
use synth::{Layout, Spec};

/// A provider that answers every observation with one it was given: the real provider's
/// expectations and abilities, its first real answer, no I/O.
struct Replay {
    inner: Arc<dyn Provider>,
    observation: Observation,
}

impl Provider for Replay {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn kinds(&self) -> BTreeSet<Kind> {
        self.inner.kinds()
    }
    fn expected(&self, desired: &DesiredState) -> Vec<Resource> {
        self.inner.expected(desired)
    }
    fn observe<'a>(
        &'a self,
        _: &'a DesiredState,
    ) -> BoxFuture<'a, Result<Observation, ProviderError>> {
        Box::pin(std::future::ready(Ok(self.observation.clone())))
    }
    fn can_apply(&self, kind: Kind) -> bool {
        self.inner.can_apply(kind)
    }
    fn severities(&self) -> labctl::providers::Severities {
        self.inner.severities()
    }
}

/// A tool's arguments for its `i`th call.
type Args = Box<dyn Fn(usize) -> Json>;

/// One size of the lab, reconciled once.
struct Bench {
    label: String,
    spec: SourceSpec,
    loaded: Loaded,
    replays: Vec<Arc<dyn Provider>>,
    store: Store,
    server: LabServer,
    devices: usize,
    _live: live::Live,
    _dir: tempfile::TempDir,
}

fn sizes() -> Vec<usize> {
    std::env::var("LABCTL_BENCH_SIZES")
        .unwrap_or_else(|_| "1000,10000,100000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("LABCTL_BENCH_SIZES takes numbers"))
        .collect()
}

async fn setup(reservations: usize) -> Bench {
    let lab = synth::generate(Spec {
        reservations,
        layout: Layout::Grouped,
        drift_permille: 10,
    });
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let live = live::Live::start(&lab, &repo).await;
    let spec = source::resolve(
        repo.to_str().unwrap(),
        false,
        GitOptions {
            rev: None,
            cache_dir: dir.path().join("cache"),
            token_env: None,
        },
    );
    let store = common::reconciled_store(&dir.path().join("state.db"), spec.clone()).await;

    let snapshot = source::load(&spec, None).unwrap();
    let report = labctl::validate::validate(&snapshot);
    let state = report.state.expect("the generated lab is valid");
    let loaded = Loaded::new(snapshot, state, vec![]);
    let providers = reconcile::providers_for(
        loaded.state.config.as_ref().map(|c| &c.doc.spec),
        HostOptions::default(),
    );
    let inputs = reconcile::observe(&loaded.state, &providers).await;
    let replays = providers
        .iter()
        .zip(inputs)
        .map(|(p, input)| {
            let observation = input
                .observed
                .unwrap_or_else(|e| panic!("{} did not answer: {e}", p.name()));
            Arc::new(Replay {
                inner: Arc::clone(p),
                observation,
            }) as Arc<dyn Provider>
        })
        .collect();
    let client = Client {
        kind: ActorKind::Mcp,
        actor: "bench".into(),
        scopes: Scopes::all(),
    };
    let server = LabServer::new(store.clone(), client).with_audit_to_log();
    Bench {
        label: format!("{}", lab.counts.documents()),
        spec,
        loaded,
        replays,
        store,
        server,
        devices: lab.counts.devices,
        _live: live,
        _dir: dir,
    }
}

fn benches(c: &mut Criterion) {
    // The PVE token is read from the environment, as labctl.yaml says.
    std::env::set_var("LABCTL_BENCH_PVE_TOKEN", live::PVE_TOKEN);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let labs: Vec<Bench> = sizes().into_iter().map(|n| rt.block_on(setup(n))).collect();

    let mut group = c.benchmark_group("pipeline");
    group.sample_size(10);
    for b in &labs {
        group.bench_function(BenchmarkId::new("load", &b.label), |t| {
            t.iter(|| source::load(&b.spec, None).unwrap())
        });
        let held = b.loaded.files().unwrap();
        group.bench_function(BenchmarkId::new("validate", &b.label), |t| {
            t.iter(|| labctl::validate::validate(&held))
        });
        drop(held);
        let rules = reconcile::rules(&b.loaded, false, &[]);
        let inputs = rt.block_on(reconcile::observe(&b.loaded.state, &b.replays));
        group.bench_function(BenchmarkId::new("diff", &b.label), |t| {
            t.iter(|| labctl::diff::diff(&inputs, &rules))
        });
        group.bench_function(BenchmarkId::new("run", &b.label), |t| {
            t.iter(|| {
                rt.block_on(async {
                    let mut leader = b.store.leader(false).await.unwrap();
                    let run = b.store.start_run("bench", "bench").await.unwrap();
                    let result = reconcile::execute(
                        &b.store,
                        run,
                        &mut leader,
                        &b.loaded,
                        &b.replays,
                        false,
                        None,
                    )
                    .await
                    .unwrap();
                    leader.release().await.unwrap();
                    result
                })
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("mcp");
    for b in &labs {
        let n = b.devices.max(1);
        let calls: [(&str, Args); 6] = [
            (
                "get_device",
                Box::new(move |i| json!({"device": format!("host-{}", (i * 7919) % n)})),
            ),
            (
                "get_device_by_ip",
                Box::new(move |i| json!({"device": synth::ip((i * 7919) % n)})),
            ),
            (
                "lookup_ip",
                Box::new(move |i| json!({"ip": synth::ip((i * 7919) % (n * 10))})),
            ),
            ("get_drift", Box::new(|_| json!({"limit": 50}))),
            (
                "list_dhcp_reservations",
                Box::new(|_| json!({"status": "out-of-sync"})),
            ),
            (
                "list_devices",
                Box::new(|_| json!({"status": "out-of-sync", "fields": ["name", "status", "ips"]})),
            ),
        ];
        for (name, args) in &calls {
            let tool = name.trim_end_matches("_by_ip");
            let samples = Mutex::new(Vec::new());
            group.bench_function(BenchmarkId::new(*name, &b.label), |t| {
                t.iter_custom(|iters| {
                    rt.block_on(timed(
                        iters,
                        &samples,
                        |i| b.server.call(tool, args(i)),
                        |answer| {
                            if let Err(e) = answer {
                                panic!("{tool} failed: {e}");
                            }
                        },
                    ))
                })
            });
            let Some(all) = sorted(samples) else {
                continue; // left out by a filter
            };
            println!(
                "mcp/{name}/{}: {} calls, p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
                b.label,
                all.len(),
                common::percentile(&all, 0.5).as_secs_f64() * 1e6,
                common::percentile(&all, 0.99).as_secs_f64() * 1e6,
                all.last().unwrap().as_secs_f64() * 1e6,
            );
        }
    }
    group.finish();

    // The status pages, rendered in process: the router called as the HTTP face calls it.
    let mut group = c.benchmark_group("web");
    for b in &labs {
        let web = labctl::web::Web::new(
            b.server.clone(),
            labctl::web::auth::AccessOptions {
                open: true,
                ..Default::default()
            },
            Vec::new(),
            Vec::new(),
        );
        let router = labctl::web::router(Arc::new(web));
        for path in ["/", "/drift", "/pools", "/runs", "/trend"] {
            let samples = Mutex::new(Vec::new());
            let bytes = Mutex::new(0usize);
            group.bench_function(BenchmarkId::new(path, &b.label), |t| {
                t.iter_custom(|iters| {
                    rt.block_on(timed(
                        iters,
                        &samples,
                        |_| get_page(&router, path),
                        |(status, body)| {
                            assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
                            *bytes.lock().unwrap() = body.len();
                        },
                    ))
                })
            });
            let Some(all) = sorted(samples) else {
                continue; // left out by a filter
            };
            println!(
                "web{path}/{}: {} renders, {} bytes, p50 {:.2} ms, p99 {:.2} ms",
                b.label,
                all.len(),
                bytes.into_inner().unwrap(),
                common::percentile(&all, 0.5).as_secs_f64() * 1e3,
                common::percentile(&all, 0.99).as_secs_f64() * 1e3,
            );
        }
    }
    group.finish();
}

/// Runs `call(i)` for `iters` iterations, timing each call alone (what it answers is judged by
/// `check` outside the timing): the total time, and each call's in `samples`.
async fn timed<T, F: std::future::Future<Output = T>>(
    iters: u64,
    samples: &Mutex<Vec<Duration>>,
    mut call: impl FnMut(usize) -> F,
    mut check: impl FnMut(T),
) -> Duration {
    let mut taken = Vec::with_capacity(iters as usize);
    for i in 0..iters as usize {
        let started = Instant::now();
        let answer = call(i).await;
        taken.push(started.elapsed());
        check(answer);
    }
    let total = taken.iter().sum();
    samples.lock().unwrap().extend(taken);
    total
}

/// Every time taken, sorted; `None` when nothing ran (a filter left it out).
fn sorted(samples: Mutex<Vec<Duration>>) -> Option<Vec<Duration>> {
    let mut all = samples.into_inner().unwrap();
    all.sort();
    (!all.is_empty()).then_some(all)
}

/// GET `path` of `router` from a loopback client: status and body.
async fn get_page(router: &axum::Router, path: &str) -> (u16, Vec<u8>) {
    use tower::ServiceExt;
    let mut req = axum::http::Request::get(path)
        .header("host", "127.0.0.1")
        .body(axum::body::Body::empty())
        .unwrap();
    let peer: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    let response = router.clone().oneshot(req).await.unwrap();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, body.to_vec())
}

criterion_group!(inproc, benches);
criterion_main!(inproc);
