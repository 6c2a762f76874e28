//! `labctl mcp` end to end: a store filled by a real reconcile (the real binary against a real
//! Kea and the Proxmox VE fixture), then the real binary serving MCP over stdio, talked to by
//! rmcp's client exactly as a desktop MCP client would.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::cli::labctl;
use crate::support::lab::reconciled_lab;
use crate::support::mcp::{audit_when, call, connect, error_text, names, ok};
use labctl::store::{ActorKind, Store};
use serde_json::{json, Value as Json};

const TOOLS: &[&str] = &[
    "explain_deviation",
    "get_device",
    "get_drift",
    "get_reconcile_status",
    "infrastructure_summary",
    "list_devices",
    "lookup_ip",
    "validate_definition",
];

/// Offered too, and called in tests/mcp_tools.rs (find_placement in tests/mcp_http.rs).
const MORE_TOOLS: &[&str] = &[
    "diff_snapshots",
    "find_placement",
    "get_pool",
    "list_dhcp_reservations",
    "list_mcp_servers",
    "list_pools",
    "list_routes",
    "list_snapshots",
];

/// A successful call's structured content, checked against the tool's output schema: every
/// required property present, no property the schema does not name.
#[tokio::test(flavor = "multi_thread")]
async fn every_tool_answers_from_the_reconciled_store_over_stdio() {
    let Some(lab) = reconciled_lab().await else {
        return;
    };
    let store = Store::connect(&lab.db).await.unwrap();
    let model = store.latest_model().await.unwrap().expect("a model");
    assert_eq!(model.commit_sha.as_deref(), Some(lab.commit.as_str()));

    let client = connect(&lab.db).await;
    let info = client.peer_info().expect("server info");
    let server = info.server_info.as_ref().expect("server implementation");
    assert_eq!(server.name, "labctl");
    assert_eq!(server.version, env!("CARGO_PKG_VERSION"));

    // tools/list: every tool, with schemas and read-only annotations.
    let tools = client.list_all_tools().await.unwrap();
    let listed: BTreeSet<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(listed, TOOLS.iter().chain(MORE_TOOLS).copied().collect());
    for t in &tools {
        assert!(
            t.description.as_ref().is_some_and(|d| d.len() > 60),
            "{}",
            t.name
        );
        assert_eq!(t.input_schema["type"], "object", "{}", t.name);
        assert_eq!(t.output_schema.as_ref().unwrap()["type"], "object");
        let a = t.annotations.as_ref().expect("annotations");
        assert_eq!(a.read_only_hint, Some(true), "{}", t.name);
        assert_eq!(a.open_world_hint, Some(false), "{}", t.name);
    }
    let get_device = tools.iter().find(|t| t.name == "get_device").unwrap();
    assert_eq!(get_device.input_schema["required"], json!(["device"]));
    let mut calls = 0;
    let basis = |v: &Json| {
        assert_eq!(v["commit"], lab.commit.as_str(), "{v}");
        assert_eq!(v["run"], model.run, "{v}");
        assert!(v["observedAt"].as_str().unwrap().ends_with('Z'), "{v}");
    };

    // infrastructure_summary
    let v = ok(
        &tools,
        "infrastructure_summary",
        call(&client, "infrastructure_summary", json!({})).await,
    );
    calls += 1;
    basis(&v);
    assert_eq!(v["byKind"]["Device"]["total"], 2, "{v}");
    assert_eq!(v["byKind"]["DhcpReservation"]["total"], 3, "{v}");
    // Every pool of Git is in the model; the root pool maps to no Proxmox pool: unobserved.
    assert_eq!(v["byKind"]["Pool"]["total"], 3, "{v}");
    assert_eq!(v["byKind"]["Pool"]["byStatus"]["unobserved"], 1, "{v}");
    let open = store.open_deviations(None, None).await.unwrap();
    assert_eq!(v["openDeviations"]["total"], open.len() as u64);
    assert_eq!(v["lastRun"]["outcome"], "succeeded");

    // list_devices: filters, fields, pagination.
    let v = ok(
        &tools,
        "list_devices",
        call(&client, "list_devices", json!({})).await,
    );
    calls += 1;
    basis(&v);
    assert_eq!(names(&v["devices"], "name"), ["harbor", "whisper"]);
    let harbor = &v["devices"][0];
    assert_eq!(harbor["type"], "vm");
    assert_eq!(harbor["ips"], json!(["10.0.1.202"]));
    assert_eq!(harbor["pools"], json!(["services"]));
    assert!(harbor.get("desired").is_none(), "not asked for: {harbor}");
    let v = ok(
        &tools,
        "list_devices",
        call(
            &client,
            "list_devices",
            json!({"pool": "/lab/gpu-nodes", "fields": ["desired", "status"]}),
        )
        .await,
    );
    calls += 1;
    assert_eq!(names(&v["devices"], "name"), ["whisper"]);
    let whisper = &v["devices"][0];
    assert_eq!(whisper["desired"]["cores"], 12, "{whisper}");
    assert!(whisper.get("ips").is_none(), "{whisper}");
    let page1 = ok(
        &tools,
        "list_devices",
        call(&client, "list_devices", json!({"limit": 1})).await,
    );
    calls += 1;
    assert_eq!(page1["total"], 2);
    let cursor = page1["nextCursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let page2 = ok(
        &tools,
        "list_devices",
        call(
            &client,
            "list_devices",
            json!({"limit": 1, "cursor": cursor}),
        )
        .await,
    );
    calls += 1;
    assert_eq!(names(&page1["devices"], "name"), ["harbor"]);
    assert_eq!(names(&page2["devices"], "name"), ["whisper"]);
    assert!(page2.get("nextCursor").is_none());
    let msg = error_text(
        "list_devices",
        call(&client, "list_devices", json!({"status": "in-sync"})).await,
    );
    calls += 1;
    assert!(msg.contains("synced, out-of-sync, unknown"), "{msg}");

    // get_device: by IP and by name in any case; a miss suggests the close name.
    let v = ok(
        &tools,
        "get_device",
        call(&client, "get_device", json!({"device": "10.0.1.202"})).await,
    );
    calls += 1;
    basis(&v);
    assert_eq!(v["device"]["name"], "harbor");
    assert_eq!(v["device"]["reservations"], json!(["harbor"]));
    let model_json = model.json().unwrap();
    let stored = model_json["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "Device" && r["name"] == "harbor")
        .unwrap();
    assert_eq!(v["device"]["desired"], stored["desired"]);
    assert_eq!(v["device"]["observed"], stored["observed"]);
    assert_eq!(v["device"]["status"], stored["status"]);
    let v = ok(
        &tools,
        "get_device",
        call(&client, "get_device", json!({"device": "WHISPER"})).await,
    );
    calls += 1;
    assert_eq!(v["device"]["name"], "whisper");
    let drifted: Vec<&Json> = v["openDeviations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == "DhcpReservation" && d["field"] == "spec.ip")
        .collect();
    assert_eq!(drifted.len(), 1, "{v}");
    let msg = error_text(
        "get_device",
        call(&client, "get_device", json!({"device": "harbr"})).await,
    );
    calls += 1;
    assert!(msg.contains("Did you mean `harbor`?"), "{msg}");

    // lookup_ip: used (in Git and live), used only live, free.
    let v = ok(
        &tools,
        "lookup_ip",
        call(&client, "lookup_ip", json!({"ip": "10.0.1.202"})).await,
    );
    calls += 1;
    basis(&v);
    assert_eq!(v["free"], false);
    let users: BTreeSet<String> = v["usedBy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            format!(
                "{}/{}",
                u["kind"].as_str().unwrap(),
                u["name"].as_str().unwrap()
            )
        })
        .collect();
    assert!(users.contains("DhcpReservation/harbor"), "{v}");
    assert!(users.contains("Device/harbor"), "{v}");
    let v = ok(
        &tools,
        "lookup_ip",
        call(&client, "lookup_ip", json!({"ip": "10.0.1.209"})).await,
    );
    calls += 1;
    assert_eq!(v["usedBy"][0]["name"], "whisper", "{v}");
    assert_eq!(v["usedBy"][0]["source"], "observed", "{v}");
    let v = ok(
        &tools,
        "lookup_ip",
        call(&client, "lookup_ip", json!({"ip": "10.0.1.77"})).await,
    );
    calls += 1;
    assert_eq!(v["free"], true);
    assert_eq!(v["subnet"], "10.0.1.0/24");
    assert_eq!(v["freeNearby"].as_array().unwrap().len(), 5);
    assert!(!v["freeNearby"]
        .as_array()
        .unwrap()
        .contains(&json!("10.0.1.77")));
    let msg = error_text(
        "lookup_ip",
        call(&client, "lookup_ip", json!({"ip": "10.0.1"})).await,
    );
    calls += 1;
    assert!(msg.contains("not an IPv4 address"), "{msg}");

    // get_drift: the drifted reservation with expected and actual, filters.
    let v = ok(
        &tools,
        "get_drift",
        call(&client, "get_drift", json!({})).await,
    );
    calls += 1;
    basis(&v);
    assert_eq!(v["total"], open.len() as u64);
    let whisper_ip = v["deviations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "whisper" && d["field"] == "spec.ip")
        .expect("the drifted reservation");
    assert_eq!(whisper_ip["expected"], "10.0.1.201");
    assert_eq!(whisper_ip["actual"], "10.0.1.209");
    assert_eq!(whisper_ip["type"], "drifted");
    let v = ok(
        &tools,
        "get_drift",
        call(
            &client,
            "get_drift",
            json!({"kind": "dhcpreservation", "minSeverity": "high", "since": "1h"}),
        )
        .await,
    );
    calls += 1;
    let want = store
        .open_deviations(Some("DhcpReservation"), Some(labctl::store::Severity::High))
        .await
        .unwrap();
    assert_eq!(v["total"], want.len() as u64, "{v}");
    assert!(v["deviations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["kind"] == "DhcpReservation"));
    let msg = error_text(
        "get_drift",
        call(&client, "get_drift", json!({"kind": "Devices"})).await,
    );
    calls += 1;
    assert!(msg.contains("Did you mean `Device`?"), "{msg}");

    // explain_deviation: the history the store keeps.
    let v = ok(
        &tools,
        "explain_deviation",
        call(
            &client,
            "explain_deviation",
            json!({"kind": "DhcpReservation", "name": "Whisper", "field": "spec.ip"}),
        )
        .await,
    );
    calls += 1;
    basis(&v);
    let history = store
        .deviation_history("DhcpReservation", "whisper", "spec.ip")
        .await
        .unwrap();
    assert_eq!(v["history"].as_array().unwrap().len(), history.len());
    assert_eq!(v["open"], true);
    assert_eq!(v["current"]["expected"], "10.0.1.201");
    assert_eq!(v["current"]["actual"], "10.0.1.209");
    assert_eq!(
        v["current"]["severity"],
        history[0].record.severity.as_str()
    );
    assert_eq!(
        v["remediation"],
        history[0].record.remediation.clone().unwrap().as_str()
    );
    assert!(v["whyItMatters"].as_str().unwrap().contains("spec.ip"));

    // get_reconcile_status: the run the store holds.
    let v = ok(
        &tools,
        "get_reconcile_status",
        call(&client, "get_reconcile_status", json!({})).await,
    );
    calls += 1;
    basis(&v);
    let latest = store.latest_run().await.unwrap().unwrap();
    assert_eq!(v["runs"][0]["id"], latest.id);
    assert_eq!(v["runs"][0]["commit"], lab.commit.as_str());
    let providers: BTreeSet<String> = names(&v["providers"], "provider").into_iter().collect();
    let observed: BTreeSet<String> = store
        .list_snapshots(None, 200)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.provider)
        .collect();
    assert_eq!(providers, observed);
    assert!(
        providers.contains("kea") && providers.contains("pve"),
        "{v}"
    );

    // validate_definition: a broken document gives the diagnostic with line:column.
    let broken = "apiVersion: labctl.dev/v1\nkind: DhcpReservation\nmetadata: {name: cam}\nspec:\n  subnet: 10.0.1.0/24\n  mac: \"aa:bb:cc:00:00:01\"\n  ip: 10.0.1.300\n  hostname: cam.lab.example\n";
    let v = ok(
        &tools,
        "validate_definition",
        call(
            &client,
            "validate_definition",
            json!({"yaml": broken, "file": "dhcp/cam.yaml"}),
        )
        .await,
    );
    calls += 1;
    let expected = labctl::validate::validate_text("dhcp/cam.yaml", broken);
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"], expected.errors() as u64);
    let first = &expected.diagnostics[0];
    let loc = first.location.as_ref().unwrap();
    assert_eq!(v["diagnostics"][0]["code"], first.code);
    assert_eq!(
        v["diagnostics"][0]["location"],
        format!("dhcp/cam.yaml:{}:{}", loc.line, loc.column)
    );
    assert_eq!(loc.line, 7, "{first:?}");
    let good = broken.replace("10.0.1.300", "10.0.1.30");
    let v = ok(
        &tools,
        "validate_definition",
        call(&client, "validate_definition", json!({"yaml": good})).await,
    );
    calls += 1;
    assert_eq!(v["valid"], true, "{v}");

    // Latency of get_device by IP over stdio (printed, not asserted).
    let mut times = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        let r = call(&client, "get_device", json!({"device": "10.0.1.201"})).await;
        times.push(started.elapsed());
        assert_ne!(r.is_error, Some(true));
        calls += 1;
    }
    times.sort();
    let pct = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)];
    eprintln!(
        "get_device over stdio, {} calls: p50 {:?}, p99 {:?}, max {:?}",
        times.len(),
        pct(50),
        pct(99),
        times[times.len() - 1]
    );

    client.cancel().await.unwrap();

    // One audit row per call, as the MCP client over stdio, secrets never written.
    let audit = audit_when(&store, 10_000, |rows| {
        rows.iter()
            .filter(|a| a.entry.actor_kind == ActorKind::Mcp)
            .count()
            >= calls
    })
    .await;
    let mcp: Vec<_> = audit
        .iter()
        .filter(|a| a.entry.actor_kind == ActorKind::Mcp)
        .collect();
    assert_eq!(mcp.len(), calls, "one row per call");
    assert!(mcp.iter().all(|a| a.entry.actor == "stdio"));
    let miss = mcp
        .iter()
        .find(|a| {
            a.entry.action == "get_device" && a.entry.details["arguments"]["device"] == "harbr"
        })
        .expect("the failed lookup is audited");
    assert_eq!(miss.entry.details["outcome"], "error");
    assert!(miss.entry.details["durationMs"].is_u64());
    let actions: BTreeSet<&str> = mcp.iter().map(|a| a.entry.action.as_str()).collect();
    assert_eq!(actions, TOOLS.iter().copied().collect());
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stdout_carries_only_protocol_messages_and_secrets_are_not_audited() {
    let db_dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", db_dir.path().join("state.db").display());
    let out = labctl(&["db", "migrate", "--database-url", &db]);
    assert!(out.status.success(), "{out:?}");

    // stderr to a file: an undrained pipe would fill up and stall the server.
    let log_path = db_dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    // As chatty as it gets: every log line must still go to stderr.
    let mut child = stdio_server(&db, log, "trace");
    let requests = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "get_drift", "arguments": {}}}),
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "validate_definition", "arguments": {"yaml": "kind: Nope\n", "apiToken": "s3cr3t-value"}}}),
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "no_such_tool", "arguments": {}}}),
        // A credential pasted into a definition: short, so no length rule hides it.
        json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call", "params": {"name": "validate_definition", "arguments": {"yaml": "kind: Nope\nspec: {password: hunter2-pasted}\n"}}}),
    ];
    let mut stdin = child.stdin.take().unwrap();
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut responses: Vec<Json> = Vec::new();
    for r in &requests {
        stdin.write_all(format!("{r}\n").as_bytes()).await.unwrap();
        if r.get("id").is_none() {
            continue;
        }
        // Each request is answered before the next is sent, so the audit rows are in order.
        loop {
            let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
                .await
                .expect("an answer in time")
                .unwrap()
                .expect("stdout open");
            let msg: Json = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
            assert_eq!(msg["jsonrpc"], "2.0", "{line}");
            let done = msg.get("id") == r.get("id");
            responses.push(msg);
            if done {
                break;
            }
        }
    }
    drop(stdin);
    // After stdin closes the server exits; anything else it printed is still checked.
    while let Some(line) = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("exit in time")
        .unwrap()
    {
        let msg: Json = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
        assert_eq!(msg["jsonrpc"], "2.0", "{line}");
    }
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    let stderr = std::fs::read_to_string(&log_path).unwrap();
    assert!(stderr.contains("TRACE"), "trace logging writes to stderr");

    let by_id = |id: i64| responses.iter().find(|m| m["id"] == id).unwrap();
    assert_eq!(by_id(1)["result"]["serverInfo"]["name"], "labctl");
    assert_eq!(
        by_id(2)["result"]["tools"].as_array().unwrap().len(),
        TOOLS.len() + MORE_TOOLS.len()
    );
    // Without a reconcile there is no model: a tool error that says what to do.
    assert_eq!(by_id(3)["result"]["isError"], true);
    let text = by_id(3)["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("labctl reconcile --once"), "{text}");
    // Unknown arguments are refused by the typed input.
    assert_eq!(by_id(4)["result"]["isError"], true, "{}", by_id(4));
    assert_eq!(by_id(5)["error"]["code"], -32602);

    let store = Store::connect(&db).await.unwrap();
    let audit = store.recent_audit(100).await.unwrap();
    let actions: Vec<&str> = audit
        .iter()
        .rev()
        .map(|a| a.entry.action.as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "get_drift",
            "validate_definition",
            "no_such_tool",
            "validate_definition"
        ]
    );
    // Neither the log (rmcp traces whole requests) nor the audit log holds what was sent.
    for secret in ["s3cr3t", "hunter2"] {
        assert!(!stderr.contains(secret), "{secret} logged:\n{stderr}");
        assert!(
            audit
                .iter()
                .all(|a| !a.entry.details.to_string().contains(secret)),
            "{secret} audited: {audit:?}"
        );
    }
    let yaml = "kind: Nope\nspec: {password: hunter2-pasted}\n";
    assert_eq!(
        audit[0].entry.details["arguments"]["yaml"],
        format!(
            "[{} bytes, sha256 {}]",
            yaml.len(),
            labctl::store::content_hash(yaml)
        )
    );
    let validate = audit
        .iter()
        .rev()
        .find(|a| a.entry.action == "validate_definition")
        .unwrap();
    assert_eq!(
        validate.entry.details["arguments"]["apiToken"],
        "[redacted]"
    );
    assert!(!validate.entry.details.to_string().contains("s3cr3t"));
    store.close().await;
}

/// List cursors name the model's content: a run that found the lab as it was leaves them
/// valid; a change to the model makes them stale, with a message that says what to do.
#[tokio::test(flavor = "multi_thread")]
async fn cursors_outlive_runs_that_change_nothing() {
    let Some(lab) = reconciled_lab().await else {
        return;
    };
    let client = connect(&lab.db).await;
    let tools = client.list_all_tools().await.unwrap();
    let first = |client| async move {
        let page = call(client, "list_devices", json!({"limit": 1})).await;
        page.structured_content.unwrap()["nextCursor"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let cursor = first(&client).await;
    crate::support::lab::reconcile_once(lab.repo.path(), &lab.db).await;
    let page2 = ok(
        &tools,
        "list_devices",
        call(
            &client,
            "list_devices",
            json!({"limit": 1, "cursor": cursor}),
        )
        .await,
    );
    assert_eq!(names(&page2["devices"], "name"), ["whisper"]);

    // Git changes: the model does, and so the cursor goes stale.
    let harbor = lab.repo.path().join("devices/harbor.yaml");
    let text = std::fs::read_to_string(&harbor).unwrap();
    std::fs::write(&harbor, text.replace("role: harbor", "role: registry")).unwrap();
    crate::support::git::commit_all(lab.repo.path(), "relabel harbor");
    crate::support::lab::reconcile_once(lab.repo.path(), &lab.db).await;
    let stale = error_text(
        "list_devices",
        call(
            &client,
            "list_devices",
            json!({"limit": 1, "cursor": cursor}),
        )
        .await,
    );
    assert!(stale.contains("earlier reconciled model"), "{stale}");
    client.cancel().await.unwrap();
}

/// The snippet `labctl mcp config` prints starts a server that answers from the intended
/// store even with a desktop client's bare environment; a store without a run says which
/// store it opened.
#[tokio::test(flavor = "multi_thread")]
async fn the_printed_desktop_config_works_with_a_bare_environment() {
    let Some(lab) = reconciled_lab().await else {
        return;
    };
    let printed = labctl(&["mcp", "config", "claude", "--database-url", &lab.db]);
    assert!(printed.status.success(), "{printed:?}");
    let config: Json = serde_json::from_slice(&printed.stdout).unwrap();
    let server = &config["mcpServers"]["labctl"];
    assert_eq!(server["command"], json!(env!("CARGO_BIN_EXE_labctl")));
    let start = |server: &Json| {
        let mut cmd = tokio::process::Command::new(server["command"].as_str().unwrap());
        for a in server["args"].as_array().unwrap() {
            cmd.arg(a.as_str().unwrap());
        }
        // What Claude Desktop passes: hardly anything.
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", "/nonexistent");
        let (transport, _) = rmcp::transport::TokioChildProcess::builder(cmd)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        transport
    };
    use rmcp::ServiceExt;
    let client = ().serve(start(server)).await.unwrap();
    let v = call(&client, "infrastructure_summary", json!({})).await;
    assert_ne!(v.is_error, Some(true), "{v:?}");
    client.cancel().await.unwrap();

    let empty = tempfile::tempdir().unwrap();
    let empty_db = format!("sqlite://{}", empty.path().join("empty.db").display());
    let printed = labctl(&["mcp", "config", "cursor", "--database-url", &empty_db]);
    let config: Json = serde_json::from_slice(&printed.stdout).unwrap();
    let client = ().serve(start(&config["mcpServers"]["labctl"])).await.unwrap();
    let text = error_text(
        "infrastructure_summary",
        call(&client, "infrastructure_summary", json!({})).await,
    );
    assert!(text.contains(&empty_db), "{text}");
    client.cancel().await.unwrap();
}

/// `labctl mcp` on stdio over `db`, logging at `level` to `log`; stdin and stdout piped.
fn stdio_server(db: &str, log: std::fs::File, level: &str) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_labctl"))
        .args(["mcp", "--database-url", db])
        .env("LABCTL_LOG", level)
        .env_remove("DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// The next stdout line as JSON; an error answer must be short.
async fn next(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
) -> Json {
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("an answer in time")
        .unwrap()
        .expect("stdout open");
    let msg: Json = serde_json::from_str(&line).unwrap();
    if msg.get("error").is_some() {
        assert!(line.len() < 2048, "a short error: {} bytes", line.len());
    }
    msg
}

/// What foreign clients found on stdio: a 50 MB line, a line that is not JSON, `arguments` as
/// an array and a megabyte tool name each get an answer — an error that says what is wrong,
/// without quoting the input back — and the session goes on serving.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_stdio_input_is_answered_briefly_and_the_session_goes_on() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let db_dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", db_dir.path().join("state.db").display());
    let log = std::fs::File::create(db_dir.path().join("stderr.log")).unwrap();
    let mut child = stdio_server(&db, log, "info");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    stdin
        .write_all(format!("{init}\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(next(&mut lines).await["id"], 1);
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
        .await
        .unwrap();

    // 50 MB on one line, written while the answer is read.
    let big = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{{\"name\":\"get_device\",\"arguments\":{{\"device\":\"{}\"}}}}}}\n",
        "x".repeat(50 * 1024 * 1024)
    );
    let writer = tokio::spawn(async move {
        stdin.write_all(big.as_bytes()).await.unwrap();
        stdin
    });
    let answer = next(&mut lines).await;
    let mut stdin = writer.await.unwrap();
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("over 4194304 bytes"),
        "{answer}"
    );

    stdin.write_all(b"this is not json\n").await.unwrap();
    let answer = next(&mut lines).await;
    assert_eq!(answer["error"]["code"], -32700, "{answer}");
    assert!(answer["id"].is_null());

    let array = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "get_device", "arguments": [1, 2]}});
    stdin
        .write_all(format!("{array}\n").as_bytes())
        .await
        .unwrap();
    let answer = next(&mut lines).await;
    assert_eq!(answer["id"], 3);
    assert_eq!(answer["error"]["code"], -32602, "{answer}");

    let long_name = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "n".repeat(1024 * 1024), "arguments": {}}});
    stdin
        .write_all(format!("{long_name}\n").as_bytes())
        .await
        .unwrap();
    let answer = next(&mut lines).await;
    assert_eq!(answer["id"], 4);
    let long_uri = json!({"jsonrpc": "2.0", "id": 5, "method": "resources/read", "params": {"uri": format!("labctl://Device/{}", "u".repeat(1024 * 1024))}});
    stdin
        .write_all(format!("{long_uri}\n").as_bytes())
        .await
        .unwrap();
    let answer = next(&mut lines).await;
    assert_eq!(answer["id"], 5);
    assert!(answer.get("error").is_some(), "{answer}");

    // Still serving.
    let list = json!({"jsonrpc": "2.0", "id": 6, "method": "tools/list"});
    stdin
        .write_all(format!("{list}\n").as_bytes())
        .await
        .unwrap();
    let answer = next(&mut lines).await;
    assert_eq!(answer["id"], 6);
    assert!(answer["result"]["tools"].is_array(), "{answer}");
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}
