//! `labctl mcp --http` end to end: a store filled by a real reconcile (the real binary against
//! a real Kea and the Proxmox VE fixture), the real binary serving streamable HTTP with bearer
//! tokens, talked to by rmcp's streamable-HTTP client and by raw HTTP for what a client must
//! not get past: no token, a bad Origin, an oversized body.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::cli::write;
use crate::support::lab::{reconciled_lab, Lab, PVE_TOKEN, TOKEN_ENV};
use crate::support::mcp::audit_when;
use labctl::store::{ActorKind, Store};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value as Json};

pub(crate) const READ_TOKEN: &str = "lbl-read-6a1f0c3e9b7d4e21a8c5f0e2d9b1c7a4";
const ADMIN_TOKEN: &str = "lbl-admin-2e9d7c1b0a4f4c8e9d3b6a5f1e0c7d28";
const PROPOSE_TOKEN: &str = "lbl-propose-8c3e1a7f5d2b4e60b9a4c7d1e3f5a8b2";

/// `labctl mcp hash-token`: the token on stdin, its SHA-256 on stdout.
fn hash_token(token: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_labctl"))
        .args(["mcp", "hash-token"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{token}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let hex = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(hex.len(), 64, "{hex}");
    assert!(!hex.contains(token));
    hex
}

/// The server process; SIGTERM on drop if the test did not stop it.
pub(crate) struct Server {
    child: std::process::Child,
    pub(crate) url: String,
    log: std::path::PathBuf,
}

impl Server {
    /// `labctl mcp --http 127.0.0.1:0` over `db`, with the reader and ops tokens and `extra`
    /// arguments; the address it announces on stderr.
    pub(crate) fn start(db: &str, dir: &Path, extra: &[&str]) -> Server {
        let tokens = dir.join("tokens.yaml");
        write(
            dir,
            "tokens.yaml",
            &format!(
                "tokens:\n  - name: reader\n    sha256: {}\n    scopes: [read]\n  - name: ops\n    sha256: {}\n    scopes: [admin]\n  - name: proposer\n    sha256: {}\n    scopes: [propose]\n",
                hash_token(READ_TOKEN),
                hash_token(ADMIN_TOKEN),
                hash_token(PROPOSE_TOKEN)
            ),
        );
        let log = dir.join("stderr.log");
        let child = Command::new(env!("CARGO_BIN_EXE_labctl"))
            .args(["mcp", "--http", "127.0.0.1:0", "--tokens"])
            .arg(&tokens)
            .args(["--database-url", db])
            .args(extra)
            .env("LABCTL_LOG", "trace")
            .env(TOKEN_ENV, PVE_TOKEN)
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("labctl mcp --http starts");
        let mut server = Server {
            child,
            url: String::new(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.url.is_empty() {
            let text = server.logs();
            if let Some(line) = text.lines().find(|l| l.contains("listening on http://")) {
                server.url = line.rsplit(' ').next().unwrap().trim().to_string();
            } else {
                assert!(Instant::now() < deadline, "no address announced:\n{text}");
                if let Some(status) = server.child.try_wait().unwrap() {
                    panic!("labctl mcp exited with {status}:\n{text}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        server
    }

    pub(crate) fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status of a graceful shutdown.
    pub(crate) fn stop(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub(crate) async fn connect(url: &str, token: &str) -> RunningService<RoleClient, ()> {
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_string()).auth_header(token);
    let transport = StreamableHttpClientTransport::from_config(config);
    ().serve(transport).await.expect("MCP handshake over HTTP")
}

pub(crate) async fn call(
    client: &RunningService<RoleClient, ()>,
    tool: &str,
    args: Json,
) -> Result<CallToolResult, rmcp::ServiceError> {
    let Json::Object(args) = args else {
        panic!("arguments are an object")
    };
    client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args))
        .await
}

/// A raw POST of `body` to the MCP endpoint, with the headers a streamable-HTTP client sends.
pub(crate) async fn post(url: &str, headers: &[(&str, &str)], body: String) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(body).send().await.expect("the server answers")
}

pub(crate) fn initialize() -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}).to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_scopes_and_limits_over_streamable_http() {
    let Some(lab) = reconciled_lab().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let repo = lab.repo.path().to_str().unwrap();
    let mut server = Server::start(
        &lab.db,
        dir.path(),
        &["--repo", repo, "--max-body-bytes", "65536"],
    );
    let url = server.url.clone();
    let store = Store::connect(&lab.db).await.unwrap();
    let first_run = store
        .latest_run()
        .await
        .unwrap()
        .expect("the reconcile's run");

    // A read token: only read tools are listed; get_device answers; trigger_reconcile is
    // refused exactly as a tool that does not exist.
    let reader = connect(&url, READ_TOKEN).await;
    let tools = reader.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "get_device"));
    assert!(!tools.iter().any(|t| t.name == "trigger_reconcile"));
    assert!(!tools.iter().any(|t| t.name == "find_placement"));
    call(&reader, "find_placement", json!({"cores": 2}))
        .await
        .expect_err("not callable with a read token");
    assert!(!tools.iter().any(|t| t.name == "propose_change"));
    call(
        &reader,
        "propose_change",
        json!({"edits": [{"resource": "DhcpReservation/harbor", "field": "spec.ip",
                          "value": "10.0.1.99"}], "reason": "read token"}),
    )
    .await
    .expect_err("not callable with a read token");
    for t in &tools {
        let a = t.annotations.as_ref().expect("annotations");
        assert_eq!(a.read_only_hint, Some(true), "{}", t.name);
    }
    let got = call(&reader, "get_device", json!({"device": "harbor"}))
        .await
        .unwrap();
    assert_ne!(got.is_error, Some(true), "{got:?}");
    let v = got.structured_content.expect("structured content");
    assert_eq!(v["device"]["name"], "harbor", "{v}");
    assert_eq!(v["commit"], lab.commit.as_str());
    let refused = call(&reader, "trigger_reconcile", json!({}))
        .await
        .expect_err("not callable with a read token");
    let unknown = call(&reader, "no_such_tool", json!({}))
        .await
        .expect_err("unknown");
    let (refused, unknown) = (refused.to_string(), unknown.to_string());
    assert_eq!(
        refused.replace("trigger_reconcile", "X"),
        unknown.replace("no_such_tool", "X"),
        "a tool out of scope looks like one that does not exist"
    );
    reader.cancel().await.unwrap();

    // A propose token finds a place for a new guest (and cannot trigger runs). The lab's
    // pools declare no capacity: nothing is known to be free, and each answer says so.
    let proposer = connect(&url, PROPOSE_TOKEN).await;
    let tools = proposer.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "find_placement"));
    assert!(!tools.iter().any(|t| t.name == "trigger_reconcile"));
    let got = call(
        &proposer,
        "find_placement",
        json!({"cores": 2, "memoryMiB": 4096, "pathPrefix": "/lab/gpu-nodes"}),
    )
    .await
    .unwrap();
    assert_ne!(got.is_error, Some(true), "{got:?}");
    let v = got.structured_content.expect("structured content");
    assert_eq!(v["considered"], 1, "{v}");
    let gpu = &v["candidates"][0];
    assert_eq!(
        (
            &gpu["pool"],
            &gpu["path"],
            &gpu["fits"],
            &gpu["proxmoxPool"]
        ),
        (
            &json!("gpu-nodes"),
            &json!("/lab/gpu-nodes"),
            &json!(false),
            &json!("gpu")
        ),
        "{v}"
    );
    assert!(
        gpu["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("cores: the pool declares no capacity"),
        "{v}"
    );
    // The node reports its capacity: 32 threads and 128 GiB, of which harbor (8 cores,
    // 16 GiB) and whisper (12 cores, 48 GiB) use some.
    assert_eq!(
        v["nodes"],
        json!([{
            "provider": "pve", "node": "pve-01", "online": true, "fits": true,
            "free": {"cores": 12, "memoryMiB": 65536},
            "reasons": ["cores: 2 of 12 free (32 on the node)",
                        "memoryMiB: 4096 of 65536 free (131072 on the node)"]
        }]),
        "{v}"
    );
    let bad = call(&proposer, "find_placement", json!({})).await.unwrap();
    assert_eq!(bad.is_error, Some(true), "{bad:?}");
    proposer.cancel().await.unwrap();

    // An admin token sees and runs trigger_reconcile: a new run, recorded in the store.
    let admin = connect(&url, ADMIN_TOKEN).await;
    let tools = admin.list_all_tools().await.unwrap();
    let trigger = tools
        .iter()
        .find(|t| t.name == "trigger_reconcile")
        .expect("offered to admin");
    assert_eq!(
        trigger.annotations.as_ref().unwrap().read_only_hint,
        Some(false)
    );
    assert!(tools.iter().any(|t| t.name == "get_device"));
    let before = call(&admin, "get_device", json!({"device": "harbor"}))
        .await
        .unwrap();
    let before = before.structured_content.expect("structured content");
    let ran = call(&admin, "trigger_reconcile", json!({})).await.unwrap();
    assert_ne!(ran.is_error, Some(true), "{ran:?}");
    let v = ran.structured_content.expect("structured content");
    assert_eq!(v["outcome"], "succeeded", "{v}");
    assert_eq!(v["commit"], lab.commit.as_str(), "{v}");
    let run_id = v["runId"].as_i64().expect("runId");
    assert!(run_id > first_run.id, "{v}");
    let latest = store.latest_run().await.unwrap().unwrap();
    assert_eq!(latest.id, run_id);
    assert_eq!(latest.trigger, "mcp");
    // The caller's next question is answered from that run, not the one it last asked about.
    let after = call(&admin, "get_device", json!({"device": "harbor"}))
        .await
        .unwrap();
    let after = after.structured_content.expect("structured content");
    assert_eq!(after["run"], run_id, "{after}");
    assert!(before["run"].as_i64().unwrap() < run_id, "{before}");
    assert!(v["counts"]["drifted"].as_u64().unwrap() >= 1, "{v}");
    // Another controller holds the leader lock: a tool error at once, no run started.
    let leader = store.leader(false).await.unwrap();
    let busy = call(&admin, "trigger_reconcile", json!({})).await.unwrap();
    assert_eq!(busy.is_error, Some(true), "{busy:?}");
    let text = busy.content[0].as_text().unwrap().text.clone();
    assert!(text.contains("another controller is reconciling"), "{text}");
    assert_eq!(store.latest_run().await.unwrap().unwrap().id, run_id);
    leader.release().await.unwrap();
    admin.cancel().await.unwrap();

    // No token, an unknown token: 401 with a Bearer challenge, before anything else.
    for headers in [vec![], vec![("authorization", "Bearer not-a-token")]] {
        let r = post(&url, &headers, initialize()).await;
        assert_eq!(r.status(), 401, "{headers:?}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
    }
    let bearer = format!("Bearer {READ_TOKEN}");
    // A browser page from another origin (DNS rebinding): 403.
    let r = post(
        &url,
        &[
            ("authorization", &bearer),
            ("origin", "http://evil.example"),
        ],
        initialize(),
    )
    .await;
    assert_eq!(r.status(), 403);
    // A rebound DNS name pointing at loopback: its Host is not one of ours, 403.
    let r = post(
        &url,
        &[("authorization", &bearer), ("host", "evil.example")],
        initialize(),
    )
    .await;
    assert_eq!(r.status(), 403);
    // A body over --max-body-bytes: 413.
    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"pad": "x".repeat(70_000)}});
    let r = post(&url, &[("authorization", &bearer)], big.to_string()).await;
    assert_eq!(r.status(), 413);

    // Audit rows name the token and the client address; no token is written anywhere.
    let audit = audit_when(&store, 10_000, |rows| {
        ["get_device", "trigger_reconcile"].iter().all(|action| {
            rows.iter()
                .any(|a| a.entry.actor == "http:reader@127.0.0.1" && a.entry.action == *action)
        })
    })
    .await;
    let http: Vec<_> = audit
        .iter()
        .filter(|a| a.entry.actor_kind == ActorKind::Mcp)
        .collect();
    let outcomes = |actor: &str, action: &str| -> Vec<&str> {
        let mut o: Vec<&str> = http
            .iter()
            .filter(|a| a.entry.actor == actor && a.entry.action == action)
            .map(|a| a.entry.details["outcome"].as_str().unwrap())
            .collect();
        o.sort();
        o
    };
    assert_eq!(outcomes("http:reader@127.0.0.1", "get_device"), ["ok"]);
    assert_eq!(
        outcomes("http:reader@127.0.0.1", "trigger_reconcile"),
        ["unknown-tool"]
    );
    assert_eq!(
        outcomes("http:ops@127.0.0.1", "trigger_reconcile"),
        ["error", "ok"]
    );
    assert!(http.iter().all(|a| a.entry.actor.starts_with("http:")));
    let everything = format!("{audit:?}");
    let status = server.stop();
    let logs = server.logs();
    assert!(logs.contains("listening on"), "{logs}");
    for token in [READ_TOKEN, ADMIN_TOKEN, "not-a-token"] {
        assert!(!everything.contains(token), "a token in the audit log");
        assert!(!logs.contains(token), "a token in the logs:\n{logs}");
    }
    // SIGTERM: sessions closed, the server exits cleanly.
    assert!(status.success(), "{status:?}\n{logs}");
    store.close().await;
}

/// Limits that need a server of their own: per-token rate, open sessions, client addresses.
/// None of them needs a reconciled store.
#[tokio::test(flavor = "multi_thread")]
async fn rate_session_and_client_address_limits() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("state.db").display());
    let bearer = format!("Bearer {READ_TOKEN}");
    let auth = [("authorization", bearer.as_str())];

    // Burst of 3, next token in ~1000 s; one session at most.
    let a = dir.path().join("a");
    let mut server = Server::start(
        &db,
        &a,
        &["--rate", "0.001", "--burst", "3", "--max-sessions", "1"],
    );
    let first = post(&server.url, &auth, initialize()).await;
    assert_eq!(first.status(), 200);
    assert!(first.headers().contains_key("mcp-session-id"));
    let second = post(&server.url, &auth, initialize()).await;
    assert_eq!(second.status(), 503, "a second session is over the cap");
    let third = post(&server.url, &auth, initialize()).await;
    assert_eq!(third.status(), 503);
    let fourth = post(&server.url, &auth, initialize()).await;
    assert_eq!(fourth.status(), 429, "the burst is spent");
    assert_eq!(fourth.headers()["retry-after"], "1");
    // The limit is per token: another token still gets through to the session cap.
    let other = format!("Bearer {ADMIN_TOKEN}");
    let r = post(&server.url, &[("authorization", &other)], initialize()).await;
    assert_eq!(r.status(), 503);
    assert!(server.stop().success());

    // Only 10.0.0.0/8 may connect: loopback is refused before any token is looked at.
    let b = dir.path().join("b");
    let mut server = Server::start(&db, &b, &["--allow-client", "10.0.0.0/8"]);
    let r = post(&server.url, &auth, initialize()).await;
    assert_eq!(r.status(), 403);
    assert!(server.stop().success());
}

#[test]
fn http_needs_a_tokens_file() {
    let out = crate::support::cli::labctl(&["mcp", "--http", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tokens"));
}

/// A client of another implementation — the official TypeScript SDK, run with Node — lists
/// the tools over streamable HTTP and calls every read tool. The SDK validates each structured
/// result against the tool's output schema, so a mismatch fails the call.
#[tokio::test(flavor = "multi_thread")]
async fn the_typescript_sdk_client_lists_and_calls_every_read_tool() {
    let Some((npm, _lab, _dir, server)) = sdk_and_lab(false).await else {
        return;
    };
    let calls = json!([
        ["infrastructure_summary", {}],
        ["list_pools", {}],
        ["get_pool", {"pool": "services"}],
        ["list_devices", {}],
        ["get_device", {"device": "HARBOR"}],
        ["lookup_ip", {"ip": "10.0.1.202"}],
        ["list_dhcp_reservations", {"subnet": "10.0.1.0/24"}],
        ["list_routes", {}],
        ["list_mcp_servers", {}],
        ["get_drift", {"minSeverity": "medium"}],
        ["explain_deviation", {"kind": "DhcpReservation", "name": "whisper", "field": "spec.ip"}],
        ["get_reconcile_status", {}],
        ["list_snapshots", {}],
        ["diff_snapshots", {}],
        ["validate_definition", {"yaml": "apiVersion: labctl.dev/v1\nkind: Device\nmetadata: {name: x}\nspec: {type: vmm}\n"}]
    ]);
    let report = sdk_client(&npm, &server.url, READ_TOKEN, &calls, &[], &server);
    assert_eq!(report["server"]["name"], "labctl");
    let listed: Vec<&str> = report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for t in report["tools"].as_array().unwrap() {
        assert_eq!(t["readOnly"], true, "{t}");
        assert_eq!(t["hasOutputSchema"], true, "{t}");
    }
    for [name, _] in calls
        .as_array()
        .unwrap()
        .iter()
        .map(|c| [c[0].clone(), c[1].clone()])
    {
        let name = name.as_str().unwrap();
        assert!(
            listed.contains(&name),
            "{name} is not listed for a read token: {listed:?}"
        );
        let call = &report["calls"][name];
        assert!(call.get("thrown").is_none(), "{name}: {call}");
        // With one recorded run there is nothing to diff yet: a tool error, not a failure.
        if name != "diff_snapshots" {
            assert_eq!(call["isError"], false, "{name}: {call}");
            assert!(call["structured"].is_object(), "{name}: {call}");
        }
    }
    assert_eq!(
        report["calls"]["get_device"]["structured"]["device"]["name"],
        "harbor"
    );
    assert_eq!(
        report["calls"]["lookup_ip"]["structured"]["free"], false,
        "{}",
        report["calls"]["lookup_ip"]
    );
    let diags = &report["calls"]["validate_definition"]["structured"];
    assert_eq!(diags["valid"], false, "{diags}");
}

// The older HTTP+SSE transport (`GET /sse`, `POST /messages?sessionId=…`), served beside
// streamable HTTP behind the same guard.

/// The server's address without the `/mcp` path.
pub(crate) fn base(server: &Server) -> String {
    server.url.trim_end_matches("/mcp").to_string()
}

/// A raw `GET /sse`.
async fn get_sse(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .get(url)
        .header("accept", "text/event-stream");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("the server answers")
}

/// An open HTTP+SSE stream, read one event at a time.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    async fn open(base: &str, token: &str) -> Events {
        let bearer = format!("Bearer {token}");
        let response = get_sse(&format!("{base}/sse"), &[("authorization", &bearer)]).await;
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        Events {
            response,
            buffer: String::new(),
        }
    }

    /// The next event's name and data (keep-alive comments skipped).
    async fn next(&mut self) -> (String, String) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut event, mut data) = ("message".to_string(), None::<String>);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.get_or_insert_default().push_str(v.trim_start());
                    }
                }
                match data {
                    Some(data) => return (event, data),
                    None => continue,
                }
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("an event in time")
                .expect("the stream reads")
                .expect("the stream is open");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next `message` event's JSON-RPC message.
    async fn message(&mut self) -> Json {
        let (event, data) = self.next().await;
        assert_eq!(event, "message", "{data}");
        serde_json::from_str(&data).unwrap()
    }
}

/// Opens an HTTP+SSE session as `token`, initialises it and lists the tools, by raw HTTP.
async fn sse_tools(base: &str, token: &str) -> Vec<String> {
    let mut events = Events::open(base, token).await;
    let (event, endpoint) = events.next().await;
    assert_eq!(event, "endpoint");
    let messages = format!("{base}{endpoint}");
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", bearer.as_str())];
    let r = post(&messages, &auth, initialize()).await;
    assert_eq!(r.status(), 202);
    assert_eq!(events.message().await["id"], 1);
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(post(&messages, &auth, note.to_string()).await.status(), 202);
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    assert_eq!(post(&messages, &auth, list.to_string()).await.status(), 202);
    let listed = events.message().await;
    assert_eq!(listed["id"], 2, "{listed}");
    listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

/// Raw HTTP+SSE: the guard applies (token, Origin, Host, body size, session cap), a session
/// answers only the token that opened it, and shutdown closes open streams.
#[tokio::test(flavor = "multi_thread")]
async fn http_sse_sessions_are_guarded_and_bound_to_their_token() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("state.db").display());
    let mut server = Server::start(
        &db,
        &dir.path().join("a"),
        &["--max-sessions", "1", "--max-body-bytes", "65536"],
    );
    let base = base(&server);
    let sse = format!("{base}/sse");
    let read = format!("Bearer {READ_TOKEN}");
    let admin = format!("Bearer {ADMIN_TOKEN}");

    // No token, an unknown token: 401 with a Bearer challenge.
    for headers in [vec![], vec![("authorization", "Bearer not-a-token")]] {
        let r = get_sse(&sse, &headers).await;
        assert_eq!(r.status(), 401, "{headers:?}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
    }
    // Another origin, a rebound DNS name: 403.
    let r = get_sse(
        &sse,
        &[("authorization", &read), ("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(r.status(), 403);
    let r = get_sse(&sse, &[("authorization", &read), ("host", "evil.example")]).await;
    assert_eq!(r.status(), 403);

    let mut events = Events::open(&base, READ_TOKEN).await;
    let (event, endpoint) = events.next().await;
    assert_eq!(event, "endpoint");
    assert!(endpoint.starts_with("/messages?sessionId="), "{endpoint}");
    let messages = format!("{base}{endpoint}");

    // The one session allowed is open: no other of either transport.
    assert_eq!(
        get_sse(&sse, &[("authorization", &admin)]).await.status(),
        503
    );
    assert_eq!(
        post(&server.url, &[("authorization", &admin)], initialize())
            .await
            .status(),
        503
    );

    // Only the token that opened the session may post to it.
    assert_eq!(post(&messages, &[], initialize()).await.status(), 401);
    let other = post(&messages, &[("authorization", &admin)], initialize()).await;
    assert_eq!(other.status(), 404);
    let r = post(
        &messages,
        &[("authorization", &read), ("origin", "http://evil.example")],
        initialize(),
    )
    .await;
    assert_eq!(r.status(), 403);
    let nowhere = format!("{base}/messages?sessionId=no-such-session");
    assert_eq!(
        post(&nowhere, &[("authorization", &read)], initialize())
            .await
            .status(),
        404
    );
    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"pad": "x".repeat(70_000)}});
    let r = post(&messages, &[("authorization", &read)], big.to_string()).await;
    assert_eq!(r.status(), 413);
    let r = post(&messages, &[("authorization", &read)], "{not json".into()).await;
    assert_eq!(r.status(), 400);

    // The owner: 202, and the answer arrives on the stream.
    let r = post(&messages, &[("authorization", &read)], initialize()).await;
    assert_eq!(r.status(), 202);
    let answer = events.message().await;
    assert_eq!(answer["id"], 1, "{answer}");
    assert_eq!(answer["result"]["serverInfo"]["name"], "labctl", "{answer}");

    // Closing the stream ends the session: its endpoint is gone and the cap has room again.
    drop(events);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut events = loop {
        let r = get_sse(&sse, &[("authorization", &admin)]).await;
        if r.status() == 200 {
            break Events {
                response: r,
                buffer: String::new(),
            };
        }
        assert_eq!(r.status(), 503);
        assert!(Instant::now() < deadline, "a closed session still counts");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(events.next().await.0, "endpoint");
    assert_eq!(
        post(&messages, &[("authorization", &read)], initialize())
            .await
            .status(),
        404
    );

    // SIGTERM with the stream open: it is closed and the server exits cleanly.
    let status = server.stop();
    assert!(status.success(), "{status:?}\n{}", server.logs());
    let logs = server.logs();
    for token in [READ_TOKEN, ADMIN_TOKEN] {
        assert!(!logs.contains(token), "a token in the logs:\n{logs}");
    }
}

/// Each scope over both transports: read sees exactly the read tools, propose those and
/// find_placement and propose_change, admin those and trigger_reconcile.
#[tokio::test(flavor = "multi_thread")]
async fn each_scope_sees_its_tools_over_both_transports() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("state.db").display());
    // trigger_reconcile is offered (to admins) with --repo; nothing is reconciled here.
    let repo = dir.path().to_str().unwrap();
    let mut server = Server::start(&db, &dir.path().join("a"), &["--repo", repo]);
    let base = base(&server);
    let mut read_tools = None;
    for (token, propose, admin) in [
        (READ_TOKEN, false, false),
        (PROPOSE_TOKEN, true, false),
        (ADMIN_TOKEN, true, true),
    ] {
        let client = connect(&server.url, token).await;
        let tools = client.list_all_tools().await.unwrap();
        client.cancel().await.unwrap();
        let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
        let mut over_sse = sse_tools(&base, token).await;
        names.sort();
        over_sse.sort();
        assert_eq!(names, over_sse, "the same tools over both transports");
        assert!(names.iter().any(|n| n == "get_device"), "{names:?}");
        assert_eq!(
            names.iter().any(|n| n == "trigger_reconcile"),
            admin,
            "{names:?}"
        );
        for proposing in ["find_placement", "propose_change"] {
            assert_eq!(names.iter().any(|n| n == proposing), propose, "{names:?}");
        }
        let read_only: Vec<String> = tools
            .iter()
            .filter(|t| t.annotations.as_ref().and_then(|a| a.read_only_hint) == Some(true))
            .filter(|t| t.name != "find_placement")
            .map(|t| t.name.to_string())
            .collect();
        assert_eq!(
            names.len(),
            read_only.len() + 2 * usize::from(propose) + usize::from(admin),
            "{names:?}"
        );
        let read = read_tools.get_or_insert_with(|| read_only.clone());
        let mut read_only = read_only;
        read_only.sort();
        read.sort();
        assert_eq!(&read_only, read, "every scope sees the read tools");
    }
    assert!(server.stop().success());
}

/// Node and the SDK, or (outside CI) nothing: the test is skipped.
pub(crate) fn node_and_sdk() -> Option<std::path::PathBuf> {
    let npm = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/npm");
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node_ok || !npm.join("node_modules/@modelcontextprotocol/sdk").is_dir() {
        let msg = "Node.js and the npm packages are needed (npm ci --prefix tests/npm)";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{msg}; required when CI=true"
        );
        eprintln!("skipped: {msg}");
        return None;
    }
    Some(npm)
}

/// Runs tests/npm/sdk-client.mjs (the official TypeScript SDK's client) against `url` with
/// `token`, calling `calls` (`[[tool, args], …]`), with `env` for its other modes; its report.
pub(crate) fn sdk_client(
    npm: &Path,
    url: &str,
    token: &str,
    calls: &Json,
    env: &[(&str, String)],
    server: &Server,
) -> Json {
    let mut env: Vec<(&str, String)> = env.to_vec();
    env.push(("LABCTL_TEST_TOKEN", token.to_string()));
    node_report(
        npm,
        "sdk-client.mjs",
        &[url, &calls.to_string()],
        &env,
        server,
    )
}

/// Runs the script `script` of tests/npm with `args` and `env`; the JSON it prints. A failed
/// run fails the test with the script's output and the server's log.
pub(crate) fn node_report(
    npm: &Path,
    script: &str,
    args: &[&str],
    env: &[(&str, String)],
    server: &Server,
) -> Json {
    let out = Command::new("node")
        .arg(npm.join(script))
        .args(args)
        .current_dir(npm)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.logs()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Node with the SDK, the reconciled lab, and a server over it, with `--repo` (which offers
/// trigger_reconcile) if `with_repo`; `None` (skipped) outside CI without them.
async fn sdk_and_lab(
    with_repo: bool,
) -> Option<(std::path::PathBuf, Lab, tempfile::TempDir, Server)> {
    let npm = node_and_sdk()?;
    let lab = reconciled_lab().await?;
    let dir = tempfile::tempdir().unwrap();
    let repo = lab.repo.path().to_str().unwrap();
    let args: &[&str] = if with_repo { &["--repo", repo] } else { &[] };
    let server = Server::start(&lab.db, dir.path(), args);
    Some((npm, lab, dir, server))
}

/// The TypeScript SDK's HTTP+SSE client: a read token lists the tools without
/// trigger_reconcile, cannot call it, and calls get_device as its own caller; an admin token
/// is offered trigger_reconcile.
#[tokio::test(flavor = "multi_thread")]
async fn the_typescript_sdk_sse_client_calls_as_its_token() {
    let Some((npm, lab, _dir, server)) = sdk_and_lab(true).await else {
        return;
    };
    let sse = format!("{}/sse", base(&server));
    let sdk = |token: &str, calls: Json| -> Json {
        let env = [("LABCTL_TEST_TRANSPORT", "sse".to_string())];
        sdk_client(&npm, &sse, token, &calls, &env, &server)
    };
    let names = |report: &Json| -> Vec<String> {
        report["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };

    let report = sdk(
        READ_TOKEN,
        json!([["get_device", {"device": "harbor"}], ["trigger_reconcile", {}]]),
    );
    assert_eq!(report["server"]["name"], "labctl");
    let listed = names(&report);
    assert!(listed.iter().any(|n| n == "get_device"), "{listed:?}");
    assert!(
        !listed.iter().any(|n| n == "trigger_reconcile"),
        "{listed:?}"
    );
    for t in report["tools"].as_array().unwrap() {
        assert_eq!(t["readOnly"], true, "{t}");
    }
    let got = &report["calls"]["get_device"];
    assert_eq!(got["isError"], false, "{got}");
    assert_eq!(got["structured"]["device"]["name"], "harbor", "{got}");
    assert_eq!(got["structured"]["commit"], lab.commit.as_str(), "{got}");
    let refused = &report["calls"]["trigger_reconcile"];
    assert!(refused.get("thrown").is_some(), "{refused}");

    let report = sdk(ADMIN_TOKEN, json!([]));
    assert!(names(&report).iter().any(|n| n == "trigger_reconcile"));

    // Audited as the token and address that opened the session.
    let store = Store::connect(&lab.db).await.unwrap();
    let audit = audit_when(&store, 10_000, |rows| {
        ["get_device", "trigger_reconcile"].iter().all(|action| {
            rows.iter()
                .any(|a| a.entry.actor == "http:reader@127.0.0.1" && a.entry.action == *action)
        })
    })
    .await;
    let outcome = |action: &str| -> Vec<String> {
        audit
            .iter()
            .filter(|a| a.entry.actor == "http:reader@127.0.0.1" && a.entry.action == action)
            .map(|a| a.entry.details["outcome"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(outcome("get_device"), ["ok"]);
    assert_eq!(outcome("trigger_reconcile"), ["unknown-tool"]);
    store.close().await;
}

/// Fixes found by clients this project did not write: the `Bearer` scheme in any case, a
/// session only its own token can use or end, `limit: 0` refused rather than read as 1, and
/// schemas without the non-standard integer formats Ajv warns about.
#[tokio::test(flavor = "multi_thread")]
async fn bearer_in_any_case_sessions_bound_to_their_token_and_standard_schemas() {
    let Some(lab) = reconciled_lab().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&lab.db, dir.path(), &[]);
    let url = server.url.clone();

    let upper = format!("BEARER {READ_TOKEN}");
    let opened = post(&url, &[("authorization", &upper)], initialize()).await;
    assert_eq!(
        opened.status(),
        200,
        "RFC 7235: the scheme is case-insensitive"
    );
    let session = opened.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();

    // Another token can neither use nor end the reader's session.
    let other = format!("Bearer {PROPOSE_TOKEN}");
    let delete = |token: String| {
        let (url, session) = (url.clone(), session.clone());
        async move {
            reqwest::Client::new()
                .delete(&url)
                .header("authorization", token)
                .header("mcp-session-id", session)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(delete(other.clone()).await, 404);
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}).to_string();
    let used = post(
        &url,
        &[("authorization", &other), ("mcp-session-id", &session)],
        ping.clone(),
    )
    .await;
    assert_eq!(used.status(), 404);
    assert!(server.logs().contains("refused: another token's session"));
    // Its own token still can, then ends it.
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string();
    let own = format!("Bearer {READ_TOKEN}");
    let headers = [
        ("authorization", own.as_str()),
        ("mcp-session-id", &session),
    ];
    assert_eq!(post(&url, &headers, initialized).await.status(), 202);
    assert_eq!(post(&url, &headers, ping).await.status(), 200);
    assert!(delete(own).await.is_success());

    // limit 0 is refused, and says what to do; no schema uses a uint format.
    let reader = connect(&url, READ_TOKEN).await;
    let got = call(&reader, "list_devices", json!({"limit": 0}))
        .await
        .unwrap();
    assert_eq!(got.is_error, Some(true), "{got:?}");
    assert!(
        format!("{:?}", got.content).contains("`limit` must be at least 1"),
        "{got:?}"
    );
    let tools = reader.list_all_tools().await.unwrap();
    let listed = serde_json::to_string(&tools).unwrap();
    assert!(!listed.contains("\"format\":\"uint"), "{listed}");
    let list_devices = tools.iter().find(|t| t.name == "list_devices").unwrap();
    assert_eq!(
        list_devices.input_schema["properties"]["limit"]["minimum"],
        json!(1)
    );
    reader.cancel().await.unwrap();
    assert!(server.stop().success());
}

/// The TypeScript SDK client follows the lab: it sets the log level and subscribes to the
/// status, the plan and a document, then runs trigger_reconcile asking for progress. It hears
/// the run's progress and log messages, and resources/updated for the status once the run is
/// recorded; the document, which the run did not change, is not said to be updated.
#[tokio::test(flavor = "multi_thread")]
async fn the_typescript_sdk_client_hears_runs_it_subscribed_to() {
    let Some((npm, _lab, _dir, server)) = sdk_and_lab(true).await else {
        return;
    };
    let follow = json!({
        "level": "info",
        "subscribe": ["labctl://status", "labctl://plan/latest", "labctl://Device/harbor"],
        "waitFor": "labctl://status",
    });
    let report = sdk_client(
        &npm,
        &server.url,
        ADMIN_TOKEN,
        &json!([["trigger_reconcile", {}]]),
        &[("LABCTL_TEST_FOLLOW", follow.to_string())],
        &server,
    );
    let caps = &report["capabilities"];
    assert_eq!(caps["resources"]["subscribe"], true, "{caps}");
    assert_eq!(caps["resources"]["listChanged"], true, "{caps}");
    assert!(caps["logging"].is_object(), "{caps}");
    let ran = &report["calls"]["trigger_reconcile"];
    assert_eq!(ran["isError"], false, "{ran}");
    let run_id = ran["structured"]["runId"].as_i64().unwrap();
    let heard = &report["heard"];
    let updated: Vec<&str> = heard["updated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert!(updated.contains(&"labctl://status"), "{heard}");
    assert!(!updated.contains(&"labctl://Device/harbor"), "{heard}");
    let progress = heard["progress"].as_array().unwrap();
    assert_eq!(progress.len(), 2, "{heard}");
    assert_eq!(progress[1]["progress"], 2);
    assert_eq!(progress[1]["total"], 2);
    let last = progress[1]["message"].as_str().unwrap();
    assert!(last.starts_with(&format!("run {run_id} ")), "{last}");
    let logs: Vec<&str> = heard["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["data"].as_str().unwrap())
        .collect();
    assert!(
        logs.iter().any(|l| l.starts_with("reconcile started")),
        "{heard}"
    );
    assert!(logs.contains(&last), "{heard}");
}

/// The TypeScript SDK client lists the prompts its token may use, gets each with arguments
/// (each carries labctl's answer from the store), is refused a prompt without its required
/// argument, and completes a deviation's name from the open deviations.
#[tokio::test(flavor = "multi_thread")]
async fn the_typescript_sdk_client_gets_prompts_with_the_labs_answers() {
    let Some((npm, _lab, _dir, server)) = sdk_and_lab(false).await else {
        return;
    };
    let ask = |token: &str, prompts: Json| -> Json {
        let env = [("LABCTL_TEST_PROMPTS", prompts.to_string())];
        sdk_client(&npm, &server.url, token, &json!([]), &env, &server)["prompts"].clone()
    };
    let names = |prompts: &Json| -> Vec<String> {
        prompts["listed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    let got = |prompts: &Json, i: usize| -> String {
        let g = &prompts["got"][i];
        assert!(g.get("thrown").is_none(), "{g}");
        g["text"].as_str().unwrap().to_string()
    };

    let read = ask(
        READ_TOKEN,
        json!({
            "get": [
                ["is_ip_free", {"ip": "10.0.1.202"}],
                ["explain_deviation", {"kind": "DhcpReservation", "name": "whisper", "field": "spec.ip"}],
                ["drift_since", {"since": "7d"}],
                ["last_failed_run", {}],
                ["drift_since", {}],
                ["place_new_vm", {"cores": "2"}]
            ],
            "complete": [
                ["explain_deviation", "name", "WH", {"kind": "DhcpReservation"}],
                ["drift_since", "min_severity", "h", null]
            ]
        }),
    );
    assert_eq!(
        names(&read),
        [
            "drift_since",
            "explain_deviation",
            "is_ip_free",
            "last_failed_run"
        ]
    );
    for p in read["listed"].as_array().unwrap() {
        assert!(p["description"].as_str().unwrap().len() > 40, "{p}");
    }
    let ip = got(&read, 0);
    assert!(ip.contains("Is 10.0.1.202 free"), "{ip}");
    assert!(
        ip.contains("\"free\": false") && ip.contains("harbor"),
        "{ip}"
    );
    let explained = got(&read, 1);
    assert!(explained.contains("10.0.1.209"), "{explained}");
    assert!(explained.contains("\"remediation\""), "{explained}");
    let drift = got(&read, 2);
    assert!(
        drift.contains("last 7d") && drift.contains("whisper"),
        "{drift}"
    );
    let failed = got(&read, 3);
    assert!(failed.contains("\"run\""), "{failed}");
    let missing = read["got"][4]["thrown"].as_str().unwrap();
    assert!(missing.contains("needs the argument `since`"), "{missing}");
    // A prompt whose tool is outside the token's scope does not exist for it.
    let hidden = read["got"][5]["thrown"].as_str().unwrap();
    assert!(hidden.contains("no prompt `place_new_vm`"), "{hidden}");
    assert_eq!(read["completions"][0], json!(["whisper"]));
    assert_eq!(read["completions"][1], json!(["high"]));

    let propose = ask(
        PROPOSE_TOKEN,
        json!({"get": [["place_new_vm", {"cores": "2", "memory_mib": "2048"}]]}),
    );
    assert!(names(&propose).contains(&"place_new_vm".to_string()));
    let placed = got(&propose, 0);
    assert!(
        placed.contains("2 cores, 2048 MiB of memory") && placed.contains("\"candidates\""),
        "{placed}"
    );
}

/// The open deviations get_device names for whisper, as `Kind/name field`.
async fn whisper_deviations(client: &RunningService<RoleClient, ()>) -> Vec<String> {
    let got = call(client, "get_device", json!({"device": "whisper"}))
        .await
        .unwrap();
    let v = got.structured_content.unwrap();
    v["openDeviations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| format!("{}/{} {}", d["kind"], d["name"], d["field"]))
        .collect()
}

/// A server that keeps answering while runs are recorded by another process: get_device and
/// get_pool name the deviations of the latest run, not those of the run they first read (the
/// server caches them per run), and the status resource names the new run.
#[tokio::test(flavor = "multi_thread")]
async fn answers_follow_runs_recorded_by_another_process() {
    use crate::support::git::commit_all;
    use crate::support::lab::{reconcile_once, reservation, SUBNET};
    let Some(lab) = reconciled_lab().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&lab.db, dir.path(), &[]);
    let client = connect(&server.url, READ_TOKEN).await;
    let before = whisper_deviations(&client).await;
    assert!(
        before.iter().any(|d| d.contains("DhcpReservation")),
        "{before:?}"
    );
    // Git now says what the lab has: the next run resolves the deviation.
    reservation(
        lab.repo.path(),
        "whisper",
        SUBNET,
        "bc:24:11:5e:02:01",
        "10.0.1.209",
    );
    let device = lab.repo.path().join("devices/whisper.yaml");
    let text = std::fs::read_to_string(&device).unwrap();
    std::fs::write(&device, text.replace("10.0.1.201", "10.0.1.209")).unwrap();
    commit_all(lab.repo.path(), "whisper is at .209");
    reconcile_once(lab.repo.path(), &lab.db).await;
    let after = whisper_deviations(&client).await;
    assert!(
        !after.iter().any(|d| d.contains("DhcpReservation")),
        "{after:?}"
    );
    let store = Store::connect(&lab.db).await.unwrap();
    let latest = store.latest_run().await.unwrap().unwrap();
    let status = client
        .read_resource(rmcp::model::ReadResourceRequestParams::new(
            "labctl://status",
        ))
        .await
        .unwrap();
    let rmcp::model::ResourceContents::TextResourceContents { text, .. } = &status.contents[0]
    else {
        panic!("text")
    };
    let status: Json = serde_json::from_str(text).unwrap();
    assert_eq!(status["runs"][0]["id"], latest.id);
    store.close().await;
}
