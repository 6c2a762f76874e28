//! `get_device` latency over streamable HTTP on loopback: a store holding one reconcile run of
//! a 100-device repository, `labctl`'s HTTP MCP server (bearer token, limits, sessions — the
//! real `labctl::mcp::http::serve`), and N rmcp streamable-HTTP clients, each with its own
//! session, calling `get_device` back to back for a bounded time. Prints p50/p90/p99/max and
//! calls per second.
//!
//! `cargo bench --bench mcp_latency [-- --clients N --seconds S --interval-ms MS]` (defaults:
//! 200 clients, 10 s after 2 s of warm-up). Without `--interval-ms` each client calls again as
//! soon as it has its answer (closed loop: the server is saturated and latency is clients ÷
//! throughput); with it, each client calls once every MS milliseconds (phases spread evenly),
//! which measures latency at a given load. Server and clients share this process and its cores.

#[path = "common/mod.rs"]
mod common;
use common::{arg, percentile, write};

use std::time::{Duration, Instant};

use labctl::mcp::http::{self, HttpOptions};
use labctl::mcp::{sha256_hex, LabServer, Tokens};
use labctl::source::SourceSpec;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::json;

const TOKEN: &str = "bench-token-0d6c1f2e9a8b7c6d5e4f3a2b1c0d9e8f";
const DEVICES: usize = 100;

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let clients = arg("--clients", 200) as usize;
    let seconds = arg("--seconds", 10);
    let interval = Duration::from_millis(arg("--interval-ms", 0));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(clients, Duration::from_secs(seconds), interval));
}

async fn run(clients: usize, measure: Duration, interval: Duration) {
    // The store: one reconcile run of a plain directory (no providers declared).
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    write(
        &repo,
        "pools/lab.yaml",
        "apiVersion: labctl.dev/v1\nkind: Pool\nmetadata: {name: lab}\nspec: {type: compute}\n",
    );
    for i in 0..DEVICES {
        write(
            &repo,
            &format!("devices/vm{i:03}.yaml"),
            &format!(
                "apiVersion: labctl.dev/v1\nkind: Device\nmetadata:\n  name: vm{i:03}\n  labels: {{role: bench}}\nspec:\n  type: vm\n  pool: /lab\n  proxmox: {{node: pve-01, vmid: {}}}\n  cores: 4\n  memoryMiB: 8192\n  interfaces:\n    - {{name: net0, mac: \"bc:24:11:00:{:02x}:{:02x}\", ip: 10.0.{}.{}}}\n",
                1000 + i,
                i / 256,
                i % 256,
                1 + i / 200,
                10 + i % 200
            ),
        );
    }
    let store =
        common::reconciled_store(&dir.path().join("state.db"), SourceSpec::Directory(repo)).await;

    // The server, with limits that do not get in the way of the measurement.
    let tokens = Tokens::parse(&format!(
        "tokens: [{{name: bench, sha256: {}, scopes: [read]}}]",
        sha256_hex(TOKEN)
    ))
    .unwrap();
    let options = HttpOptions {
        tokens,
        max_in_flight: clients * 4,
        max_sessions: clients * 2,
        rate_per_second: 1e9,
        rate_burst: 1e9,
        ..HttpOptions::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/mcp", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = LabServer::new(store.clone(), http::http_client());
    let serving = tokio::spawn(http::serve(server, listener, options, async {
        let _ = stopped.await;
    }));

    let mut sessions = Vec::new();
    for _ in 0..clients {
        let config =
            StreamableHttpClientTransportConfig::with_uri(endpoint.clone()).auth_header(TOKEN);
        let transport = StreamableHttpClientTransport::from_config(config);
        sessions.push(().serve(transport).await.expect("MCP handshake"));
    }
    let started = Instant::now();
    let warm_until = started + Duration::from_secs(2);
    let until = warm_until + measure;
    let mut tasks = Vec::new();
    for (c, client) in sessions.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut errors = 0u64;
            let mut i = c;
            let mut next = started + interval.mul_f64(c as f64 / clients as f64);
            loop {
                if !interval.is_zero() {
                    tokio::time::sleep_until(next.into()).await;
                    next += interval;
                }
                let now = Instant::now();
                if now >= until {
                    break;
                }
                let mut args = serde_json::Map::new();
                args.insert("device".into(), json!(format!("vm{:03}", i % DEVICES)));
                i += 1;
                let result = client
                    .call_tool(CallToolRequestParams::new("get_device").with_arguments(args))
                    .await;
                let took = now.elapsed();
                match result {
                    Ok(r) if r.is_error != Some(true) => {
                        if now >= warm_until {
                            samples.push(took);
                        }
                    }
                    _ => errors += 1,
                }
            }
            let _ = client.cancel().await;
            (samples, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (s, e) = t.await.unwrap();
        all.extend(s);
        errors += e;
    }
    let _ = stop.send(());
    let _ = serving.await;
    store.close().await;

    all.sort();
    assert!(!all.is_empty(), "no successful call");
    let rate = all.len() as f64 / measure.as_secs_f64();
    let pacing = if interval.is_zero() {
        "closed loop".to_string()
    } else {
        format!("every {} ms", interval.as_millis())
    };
    println!(
        "get_device over streamable HTTP, {clients} clients, {} s measured after 2 s warm-up",
        measure.as_secs()
    );
    println!("| clients | each calls | calls | errors | calls/s | p50 | p90 | p99 | max |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {clients} | {pacing} | {} | {errors} | {rate:.0} | {} | {} | {} | {} |",
        all.len(),
        ms(percentile(&all, 0.50)),
        ms(percentile(&all, 0.90)),
        ms(percentile(&all, 0.99)),
        ms(*all.last().unwrap()),
    );
}
