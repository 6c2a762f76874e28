//! The MCP provider against real MCP servers the tests start on loopback:
//!
//! - an rmcp server written here (three tools, listed two a page) behind rmcp's `StreamableHttpService`, with a
//!   bearer-token check in front (401 without the token): reachable with the right token, a
//!   missing expected tool is drift on `spec.expectedTools`, a wrong or absent token is
//!   `reachable: false` (the server is not usable with that credential; the report says
//!   "authentication refused"), a credential labctl cannot read is unknown, and a stopped
//!   server is drift on `spec.reachable`;
//! - `stdio` servers are not started unless the host allows commands (a command that would
//!   leave a marker file leaves none);
//! - the reference server `@modelcontextprotocol/server-everything` (npm, pinned in
//!   `tests/npm`) over stdio, streamable HTTP and the legacy HTTP+SSE transport. It needs
//!   Node.js and `npm ci --prefix tests/npm --no-audit --no-fund`: without them these tests
//!   fail under `CI=true` and are skipped otherwise. Only tools are listed; no tool is called.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use labctl::diff::{diff, DeviationType, Plan, ProviderInput, Rules, Severity};
use labctl::model::{
    DesiredState, Document, Kind, Located, McpServerDoc, McpServerSpec, Metadata, Origin,
    SecretSource,
};
use labctl::providers::mcp::{McpProvider, McpServerReport, COMMANDS_NOT_ALLOWED};
use labctl::providers::{CallPolicy, Fields, Observation, Provider};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    Implementation, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler};
use serde_json::{json, Value as Json};
use tempfile::TempDir;

use crate::support::net::{free_port, silent_server};

const TOKEN: &str = "s3cret-lab-token";

// ---------------------------------------------------------------------------------------------
// The rmcp test server.

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct HostArg {
    /// A host name.
    host: String,
}

#[derive(Debug, Clone)]
struct LabTools {
    tool_router: ToolRouter<Self>,
}

impl LabTools {
    fn new() -> Self {
        LabTools {
            tool_router: Self::tool_router(),
        }
    }
}

#[tool_router]
impl LabTools {
    #[tool(description = "Overall lab status")]
    fn get_status(&self) -> String {
        "all green".into()
    }

    #[tool(description = "Hosts in the lab")]
    fn list_hosts(&self) -> String {
        "nas, pve1".into()
    }

    #[tool(description = "Ping one host")]
    fn ping_host(&self, Parameters(HostArg { host }): Parameters<HostArg>) -> String {
        format!("{host} answers")
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for LabTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("lab-tools", "1.2.3"))
    }

    /// Two tools a page, so that a client must follow `nextCursor` to see them all.
    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut tools = self.tool_router.list_all();
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        let start: usize = request
            .and_then(|r| r.cursor)
            .map(|c| c.parse().unwrap())
            .unwrap_or(0);
        let end = (start + 2).min(tools.len());
        let mut page = ListToolsResult::with_all_items(tools[start..end].to_vec());
        page.next_cursor = (end < tools.len()).then(|| end.to_string());
        Ok(page)
    }
}

/// 401 without `Authorization: Bearer TOKEN`.
async fn require_bearer(request: Request, next: Next) -> Response {
    let expected = format!("Bearer {TOKEN}");
    let authorized = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(expected.as_str());
    if authorized {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "unauthorized",
        )
            .into_response()
    }
}

/// The rmcp server on a loopback port; stopped by [`RmcpServer::stop`] or on drop.
struct RmcpServer {
    url: String,
    task: tokio::task::JoinHandle<()>,
    config: StreamableHttpServerConfig,
}

impl RmcpServer {
    async fn start() -> RmcpServer {
        let config = StreamableHttpServerConfig::default().with_sse_keep_alive(None);
        let service: StreamableHttpService<LabTools, LocalSessionManager> =
            StreamableHttpService::new(|| Ok(LabTools::new()), Default::default(), config.clone());
        let app = axum::Router::new()
            .nest_service("/mcp", service)
            .layer(axum::middleware::from_fn(require_bearer));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        RmcpServer {
            url: format!("http://127.0.0.1:{port}/mcp"),
            task,
            config,
        }
    }

    /// Stops listening (new connections are refused) and ends the MCP sessions.
    async fn stop(&self) {
        self.task.abort();
        self.config.cancellation_token.cancel();
        let port = self
            .url
            .split(':')
            .nth(2)
            .unwrap()
            .split('/')
            .next()
            .unwrap();
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the server at {} did not stop", self.url);
    }
}

impl Drop for RmcpServer {
    fn drop(&mut self) {
        self.task.abort();
        self.config.cancellation_token.cancel();
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn mcp_doc(name: &str, spec: Json) -> Located<McpServerDoc> {
    let spec: McpServerSpec = serde_json::from_value(spec).unwrap();
    Located {
        doc: Document {
            api_version: "labctl.dev/v1".into(),
            kind: "McpServer".into(),
            metadata: Metadata {
                name: name.into(),
                labels: Default::default(),
                annotations: Default::default(),
                reconcile: None,
            },
            spec,
        },
        origin: Origin {
            file: format!("mcp/{name}.yaml"),
            line: 1,
        },
    }
}

fn state(docs: Vec<Located<McpServerDoc>>) -> DesiredState {
    DesiredState {
        mcp_servers: docs,
        ..Default::default()
    }
}

fn policy() -> CallPolicy {
    CallPolicy {
        timeout: Duration::from_secs(10),
        retries: 1,
        backoff: Duration::from_millis(20),
        ..CallPolicy::default()
    }
}

/// A secret in a file of its own (with the trailing newline editors add).
fn secret_file(dir: &TempDir, name: &str, value: &str) -> SecretSource {
    let path = dir.path().join(name);
    std::fs::write(&path, format!("{value}\n")).unwrap();
    SecretSource::File(path)
}

fn fields<'a>(obs: &'a Observation, name: &str) -> &'a Fields {
    &obs.resources
        .iter()
        .find(|r| r.kind == Kind::McpServer && r.name == name)
        .unwrap_or_else(|| panic!("McpServer/{name} not observed: {:#?}", obs.resources))
        .fields
}

/// Expected × observed through the generic diff.
/// The observation, its diff, and the per-server reports that came with the observation.
async fn observe_and_diff(
    provider: &McpProvider,
    state: &DesiredState,
) -> (Observation, Plan, BTreeMap<String, McpServerReport>) {
    let (obs, reports) = provider.observe_with_reports(state).await;
    let input = ProviderInput {
        provider: provider.name().to_string(),
        expected: provider.expected(state).into(),
        observed: Ok(obs.clone()),
        can_apply: Default::default(),
        severities: provider.severities(),
    };
    (obs, diff(&[input], &Rules::from_state(state)), reports)
}

/// `(name, field path, type)` of every deviation.
fn summary(plan: &Plan) -> Vec<(String, String, DeviationType)> {
    plan.deviations
        .iter()
        .map(|d| (d.name.clone(), d.field_path.clone(), d.dtype))
        .collect()
}

fn dev(name: &str, path: &str, dtype: DeviationType) -> (String, String, DeviationType) {
    (name.into(), path.into(), dtype)
}

// ---------------------------------------------------------------------------------------------
// The rmcp server over streamable HTTP.

#[tokio::test]
async fn an_rmcp_server_over_streamable_http_with_a_bearer_token() {
    let server = RmcpServer::start().await;
    let dir = TempDir::new().unwrap();
    let credentials = BTreeMap::from([
        ("lab-token".to_string(), secret_file(&dir, "lab", TOKEN)),
        ("old-token".to_string(), secret_file(&dir, "old", "expired")),
        (
            "unreadable".to_string(),
            SecretSource::File(dir.path().join("does-not-exist")),
        ),
    ]);
    let provider = McpProvider::new("mcp", credentials, false, policy());
    let url = &server.url;
    let desired = state(vec![
        mcp_doc(
            "lab-tools",
            json!({"transport": "streamable-http", "url": url,
                   "expectedTools": ["list_hosts", "get_status"],
                   "auth": {"credential": "lab-token"}}),
        ),
        mcp_doc(
            "lab-tools-reboot",
            json!({"transport": "streamable-http", "url": url,
                   "expectedTools": ["get_status", "reboot_host"],
                   "auth": {"credential": "lab-token"}}),
        ),
        mcp_doc(
            "wrong-token",
            json!({"transport": "streamable-http", "url": url,
                   "auth": {"credential": "old-token"}}),
        ),
        mcp_doc(
            "no-token",
            json!({"transport": "streamable-http", "url": url}),
        ),
        mcp_doc(
            "undeclared-credential",
            json!({"transport": "streamable-http", "url": url,
                   "auth": {"credential": "nobody-declared-this"}}),
        ),
        mcp_doc(
            "unreadable-credential",
            json!({"transport": "streamable-http", "url": url,
                   "auth": {"credential": "unreadable"}}),
        ),
    ]);

    // Expected: reachable, and the expected tools sorted.
    let expected = provider.expected(&desired);
    assert_eq!(
        expected[0].fields,
        json!({"reachable": true, "expectedTools": ["get_status", "list_hosts"]})
    );
    assert_eq!(expected[2].fields, json!({"reachable": true}));
    assert!(!provider.can_apply(Kind::McpServer));

    let (obs, plan, reports) = observe_and_diff(&provider, &desired).await;
    assert_eq!(
        fields(&obs, "lab-tools"),
        &json!({"reachable": true, "expectedTools": ["get_status", "list_hosts"]})
    );
    assert_eq!(
        fields(&obs, "lab-tools-reboot"),
        &json!({"reachable": true, "expectedTools": ["get_status"]})
    );
    // A refused token: the server is not usable with that credential.
    assert_eq!(fields(&obs, "wrong-token"), &json!({"reachable": false}));
    assert_eq!(fields(&obs, "no-token"), &json!({"reachable": false}));
    // labctl's own side failed: unknown, never concluded about.
    assert_eq!(
        whole_unknowns(&obs),
        vec![
            (Kind::McpServer, "undeclared-credential".to_string()),
            (Kind::McpServer, "unreadable-credential".to_string()),
        ]
    );

    assert_eq!(
        summary(&plan),
        vec![
            dev(
                "lab-tools-reboot",
                "spec.expectedTools",
                DeviationType::Drifted
            ),
            dev("no-token", "spec.reachable", DeviationType::Drifted),
            dev("undeclared-credential", "", DeviationType::Unknown),
            dev("unreadable-credential", "", DeviationType::Unknown),
            dev("wrong-token", "spec.reachable", DeviationType::Drifted),
        ]
    );
    let tools = &plan.deviations[0];
    assert_eq!(tools.severity, Severity::High);
    assert!(!tools.auto_correctable);
    assert_eq!(
        tools.expected,
        Some(json!(["get_status", "reboot_host"])),
        "{tools:#?}"
    );
    assert_eq!(tools.actual, Some(json!(["get_status"])));
    assert_eq!(plan.deviations[1].severity, Severity::High);

    // The side channel: who answered, with what, and why the others did not.
    let lab = &reports["lab-tools"];
    assert_eq!(lab.reachable, Some(true));
    assert_eq!(lab.server_name.as_deref(), Some("lab-tools"));
    assert_eq!(lab.server_version.as_deref(), Some("1.2.3"));
    assert_eq!(lab.tools, ["get_status", "list_hosts", "ping_host"]);
    assert!(lab.latency_ms.is_some());
    let wrong = &reports["wrong-token"];
    assert_eq!(wrong.reachable, Some(false));
    let reason = wrong.reason.as_deref().unwrap();
    assert!(reason.contains("authentication refused"), "{reason}");
    assert!(!reason.contains("expired"), "the token leaked: {reason}");
    let undeclared = reports["undeclared-credential"].reason.as_deref().unwrap();
    assert!(undeclared.contains("nobody-declared-this"), "{undeclared}");
    assert_eq!(reports["undeclared-credential"].reachable, None);
    let all = serde_json::to_string(&reports).unwrap();
    assert!(!all.contains(TOKEN), "the token leaked: {all}");

    // The server goes down: an observed fact (drift on spec.reachable), not unknown.
    server.stop().await;
    let (obs, plan, reports) = observe_and_diff(&provider, &desired).await;
    assert_eq!(fields(&obs, "lab-tools"), &json!({"reachable": false}));
    let down = plan
        .deviations
        .iter()
        .find(|d| d.name == "lab-tools" && d.field_path == "spec.reachable")
        .unwrap_or_else(|| panic!("no reachable drift: {:#?}", plan.deviations));
    assert_eq!(down.dtype, DeviationType::Drifted);
    assert_eq!(down.severity, Severity::High);
    assert_eq!(down.expected, Some(json!(true)));
    assert_eq!(down.actual, Some(json!(false)));
    assert!(reports["lab-tools"].reason.is_some());
}

#[tokio::test]
async fn silent_refusing_and_non_mcp_servers_are_unreachable() {
    // Accepts connections, never answers.
    let silent_port = silent_server().await;
    // An HTTP server that is no MCP server.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web_port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/private/sse",
            axum::routing::get(|| async { StatusCode::UNAUTHORIZED }),
        );
        let _ = axum::serve(listener, app).await;
    });
    let desired = state(vec![
        mcp_doc(
            "silent",
            json!({"transport": "streamable-http",
                   "url": format!("http://127.0.0.1:{silent_port}/mcp")}),
        ),
        mcp_doc(
            "silent-sse",
            json!({"transport": "sse", "url": format!("http://127.0.0.1:{silent_port}/sse")}),
        ),
        mcp_doc(
            "web",
            json!({"transport": "streamable-http",
                   "url": format!("http://127.0.0.1:{web_port}/mcp")}),
        ),
        mcp_doc(
            "web-sse",
            json!({"transport": "sse", "url": format!("http://127.0.0.1:{web_port}/sse")}),
        ),
        mcp_doc(
            "private-sse",
            json!({"transport": "sse",
                   "url": format!("http://127.0.0.1:{web_port}/private/sse")}),
        ),
    ]);
    let quick = CallPolicy {
        timeout: Duration::from_millis(400),
        retries: 0,
        backoff: Duration::from_millis(10),
        ..CallPolicy::default()
    };
    let provider = McpProvider::new("mcp", BTreeMap::new(), false, quick);
    let (obs, plan, reports) = observe_and_diff(&provider, &desired).await;
    for name in ["silent", "silent-sse", "web", "web-sse", "private-sse"] {
        assert_eq!(fields(&obs, name), &json!({"reachable": false}), "{name}");
    }
    assert!(obs.unobservable.is_empty());
    assert_eq!(
        summary(&plan),
        vec![
            dev("private-sse", "spec.reachable", DeviationType::Drifted),
            dev("silent", "spec.reachable", DeviationType::Drifted),
            dev("silent-sse", "spec.reachable", DeviationType::Drifted),
            dev("web", "spec.reachable", DeviationType::Drifted),
            dev("web-sse", "spec.reachable", DeviationType::Drifted),
        ]
    );
    let silent = reports["silent"].reason.as_deref().unwrap();
    assert!(silent.contains("no answer within"), "{silent}");
    let web = reports["web-sse"].reason.as_deref().unwrap();
    assert!(web.contains("404"), "{web}");
    let private = reports["private-sse"].reason.as_deref().unwrap();
    assert!(private.contains("authentication refused"), "{private}");
}

// ---------------------------------------------------------------------------------------------
// stdio servers and the host setting.

/// The child processes of this test process whose environment holds `entry` (`NAME=value`).
fn children_with_env(entry: &str) -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("children")).ok())
        .flat_map(|pids| {
            pids.split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|e| e == entry.as_bytes()))
        })
        .collect()
}

#[tokio::test]
async fn stdio_servers_are_not_started_unless_the_host_allows_commands() {
    let dir = TempDir::new().unwrap();
    let marker = dir.path().join("started");
    let desired = state(vec![mcp_doc(
        "local-tools",
        json!({"transport": "stdio", "command": "sh",
               "args": ["-c", "touch \"$MARKER\""],
               "env": {"MARKER": marker.to_str().unwrap()},
               "expectedTools": ["echo"]}),
    )]);
    let provider = McpProvider::new("mcp", BTreeMap::new(), false, policy());
    assert_eq!(
        provider.skipped_commands(&desired),
        vec![(
            "local-tools".to_string(),
            "sh -c 'touch \"$MARKER\"'".to_string()
        )]
    );
    let (obs, plan, reports) = observe_and_diff(&provider, &desired).await;
    assert!(obs.resources.is_empty(), "{:#?}", obs.resources);
    assert_eq!(
        whole_unknowns(&obs),
        vec![(Kind::McpServer, "local-tools".to_string())]
    );
    assert!(obs.unobservable[0].reason.contains("--allow-commands"));
    assert_eq!(
        summary(&plan),
        vec![dev("local-tools", "", DeviationType::Unknown)]
    );
    assert_eq!(
        reports["local-tools"].reason.as_deref(),
        Some(COMMANDS_NOT_ALLOWED)
    );
    // Had observe started the command, it would still be a child of this process, or have
    // left its marker on the way out.
    let env = format!("MARKER={}", marker.display());
    assert!(
        children_with_env(&env).is_empty(),
        "the command runs although not allowed"
    );
    assert!(!marker.exists(), "the command ran although not allowed");

    // Allowed: the same command runs; it is no MCP server, so the server is unreachable.
    let allowed = McpProvider::new("mcp", BTreeMap::new(), true, policy());
    assert!(allowed.skipped_commands(&desired).is_empty());
    let (obs, _, _) = observe_and_diff(&allowed, &desired).await;
    assert_eq!(fields(&obs, "local-tools"), &json!({"reachable": false}));
    assert!(marker.exists(), "the allowed command did not run");
}

// ---------------------------------------------------------------------------------------------
// @modelcontextprotocol/server-everything.

/// The server's entry point, when Node.js and the npm packages are installed. Under `CI=true`
/// their absence fails the test, naming what to install; otherwise the test is skipped.
fn everything(test: &str) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script =
        root.join("tests/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success());
    let missing = if node.is_none() {
        Some("Node.js 20 or later (`node` on PATH; e.g. apt-get install nodejs)".to_string())
    } else if !script.exists() {
        Some(format!(
            "the npm packages in tests/npm: run `npm ci --prefix tests/npm --no-audit --no-fund` \
             ({} is missing)",
            script.display()
        ))
    } else {
        None
    };
    match missing {
        None => Some(script),
        Some(what) => {
            crate::support::absent(&format!("{test} needs {what}"));
            None
        }
    }
}

/// server-everything in an HTTP mode (`sse`, `streamableHttp`), bound to 127.0.0.1 by the
/// preload script, killed on drop.
struct NodeServer {
    child: tokio::process::Child,
    port: u16,
}

impl NodeServer {
    /// Starts the server on a free port. All tests share one process, so another test may
    /// bind the port between `free_port` and node's bind: the server counts as started only
    /// when the listening socket is node's own, and node failing to bind means another port.
    async fn start(script: &Path, mode: &str) -> NodeServer {
        let preload = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/npm/loopback.cjs");
        for _ in 0..5 {
            let port = free_port();
            let mut child = tokio::process::Command::new("node")
                .arg("--require")
                .arg(&preload)
                .arg(script)
                .arg(mode)
                .env("PORT", port.to_string())
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("node starts");
            for _ in 0..200 {
                if child.id().is_some_and(|pid| listens(pid, port)) {
                    return NodeServer { child, port };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("server-everything {mode} did not start listening on a loopback port");
    }

    /// Whether the server listens on 127.0.0.1 only (not on all interfaces): the kernel's
    /// socket table has the port bound to 127.0.0.1 and nowhere else.
    fn listens_on_loopback_only(&self) -> bool {
        let local = listeners(self.port);
        !local.is_empty()
            && local
                .iter()
                .all(|(address, _)| *address == format!("0100007F:{:04X}", self.port))
    }
}

/// The sockets listening on `port`: (local address as /proc writes it, inode).
fn listeners(port: u16) -> Vec<(String, String)> {
    let port = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|t| std::fs::read_to_string(t).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(|line| {
                    let cols: Vec<&str> = line.split_whitespace().collect();
                    // Column 3 is the state (0A is LISTEN), column 9 the inode.
                    (cols.len() > 9 && cols[1].ends_with(&port) && cols[3] == "0A")
                        .then(|| (cols[1].to_string(), cols[9].to_string()))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Whether process `pid` holds a socket listening on `port`: the socket's inode is among the
/// process's file descriptors.
fn listens(pid: u32, port: u16) -> bool {
    let sockets: Vec<String> = listeners(port)
        .into_iter()
        .map(|(_, inode)| format!("socket:[{inode}]"))
        .collect();
    !sockets.is_empty()
        && std::fs::read_dir(format!("/proc/{pid}/fd"))
            .into_iter()
            .flatten()
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .any(|target| sockets.iter().any(|s| target.to_string_lossy() == *s))
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Tools the reference server has offered for a long time (only listed, never called).
const EVERYTHING_TOOLS: [&str; 2] = ["echo", "get-sum"];

fn everything_doc(name: &str, mut spec: Json) -> Located<McpServerDoc> {
    spec["expectedTools"] = json!(["get-sum", "echo", "no-such-tool"]);
    mcp_doc(name, spec)
}

/// Observed reachable, offering the long-standing tools; `no-such-tool` is drift.
fn assert_everything(
    obs: &Observation,
    plan: &Plan,
    reports: &BTreeMap<String, McpServerReport>,
    name: &str,
) {
    assert_eq!(
        fields(obs, name),
        &json!({"reachable": true, "expectedTools": EVERYTHING_TOOLS}),
        "{:#?}",
        reports.get(name)
    );
    let drift: Vec<_> = plan.deviations.iter().filter(|d| d.name == name).collect();
    assert_eq!(drift.len(), 1, "{drift:#?}");
    assert_eq!(drift[0].field_path, "spec.expectedTools");
    assert_eq!(
        drift[0].expected,
        Some(json!(["echo", "get-sum", "no-such-tool"]))
    );
    assert_eq!(drift[0].actual, Some(json!(EVERYTHING_TOOLS)));
    let report = &reports[name];
    assert_eq!(
        report.server_name.as_deref(),
        Some("mcp-servers/everything")
    );
    assert!(report.server_version.is_some());
    for tool in EVERYTHING_TOOLS {
        assert!(report.tools.iter().any(|t| t == tool), "{report:#?}");
    }
    assert!(report.tools.len() > 5, "{report:#?}");
}

#[tokio::test]
async fn server_everything_over_stdio_is_started_and_stopped() {
    let Some(script) = everything("server_everything_over_stdio_is_started_and_stopped") else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let pid_file = dir.path().join("pid");
    // The shell records its pid and becomes node (exec), so the pid is the server's.
    let desired = state(vec![everything_doc(
        "everything-stdio",
        json!({"transport": "stdio", "command": "sh",
               "args": ["-c", "echo $$ > \"$PID_FILE\"; exec node \"$SERVER\" stdio"],
               "env": {"PID_FILE": pid_file.to_str().unwrap(),
                       "SERVER": script.to_str().unwrap()}}),
    )]);
    let provider = McpProvider::new("mcp", BTreeMap::new(), true, policy());
    let (obs, plan, reports) = observe_and_diff(&provider, &desired).await;
    assert_everything(&obs, &plan, &reports, "everything-stdio");

    // The server process is gone once observing is done.
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    let mut gone = false;
    for _ in 0..100 {
        // Gone, or a zombie waiting to be reaped: either way not running.
        gone = std::fs::read_to_string(&stat)
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true);
        if gone {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the stdio server (pid {}) still runs", pid.trim());
}

#[tokio::test]
async fn server_everything_over_streamable_http() {
    let Some(script) = everything("server_everything_over_streamable_http") else {
        return;
    };
    let server = NodeServer::start(&script, "streamableHttp").await;
    assert!(server.listens_on_loopback_only());
    let desired = state(vec![everything_doc(
        "everything-http",
        json!({"transport": "streamable-http",
               "url": format!("http://127.0.0.1:{}/mcp", server.port)}),
    )]);
    let provider = McpProvider::new("mcp", BTreeMap::new(), false, policy());
    let (obs, plan, reports) = observe_and_diff(&provider, &desired).await;
    assert_everything(&obs, &plan, &reports, "everything-http");
}

#[tokio::test]
async fn server_everything_over_legacy_sse() {
    let Some(script) = everything("server_everything_over_legacy_sse") else {
        return;
    };
    let server = NodeServer::start(&script, "sse").await;
    assert!(server.listens_on_loopback_only());
    let desired = state(vec![everything_doc(
        "everything-sse",
        json!({"transport": "sse", "url": format!("http://127.0.0.1:{}/sse", server.port)}),
    )]);
    let provider = McpProvider::new("mcp", BTreeMap::new(), false, policy());
    let (obs, plan, reports) = observe_and_diff(&provider, &desired).await;
    assert_everything(&obs, &plan, &reports, "everything-sse");
    assert_eq!(
        reports["everything-sse"].protocol_version.as_deref(),
        Some("2024-11-05")
    );
}

/// The resources that are wholly unknown, sorted.
fn whole_unknowns(obs: &labctl::providers::Observation) -> Vec<(Kind, String)> {
    let mut out: Vec<(Kind, String)> = obs
        .unobservable
        .iter()
        .filter(|u| u.field.is_none())
        .map(|u| (u.kind, u.name.clone()))
        .collect();
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// A server that answers, but not in MCP's shape.

/// A streamable-HTTP endpoint that completes the MCP handshake (JSON answers, as the
/// transport allows) and then answers `tools/list` with `result`, a shape no MCP server sends.
/// Deliberately not a faithful server: it checks that a lie is not read as "no tools".
async fn lying_mcp(result: Json) -> String {
    let app = axum::Router::new().fallback(move |request: Request| {
        let result = result.clone();
        async move {
            if request.method() != axum::http::Method::POST {
                return StatusCode::METHOD_NOT_ALLOWED.into_response();
            }
            let body = axum::body::to_bytes(request.into_body(), 1 << 20)
                .await
                .unwrap();
            let message: Json = serde_json::from_slice(&body).unwrap();
            let answer = match message["method"].as_str() {
                Some("initialize") => json!({
                    "protocolVersion": message["params"]["protocolVersion"],
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "liar", "version": "1.0.0"}
                }),
                Some("tools/list") => result,
                _ => return StatusCode::ACCEPTED.into_response(),
            };
            axum::Json(json!({"jsonrpc": "2.0", "id": message["id"], "result": answer}))
                .into_response()
        }
    });
    let (port, _) = crate::support::net::serve(app).await;
    format!("http://127.0.0.1:{port}/mcp")
}

#[tokio::test]
async fn a_tools_list_of_the_wrong_shape_leaves_the_tools_unknown_not_missing() {
    let cases = [
        json!({"tools": "get_status"}),
        json!({"tools": [{"name": 7, "inputSchema": {"type": "object"}}]}),
        json!({"tools": [{"description": "no name"}]}),
    ];
    for result in cases {
        let url = lying_mcp(result.clone()).await;
        let state = state(vec![mcp_doc(
            "liar",
            json!({"transport": "streamable-http", "url": url,
                   "expectedTools": ["get_status"]}),
        )]);
        let provider = McpProvider::new("mcp", BTreeMap::new(), false, policy());
        let (obs, plan, reports) = observe_and_diff(&provider, &state).await;
        assert_eq!(
            fields(&obs, "liar"),
            &json!({"reachable": true}),
            "{result}"
        );
        assert_eq!(
            summary(&plan),
            [dev("liar", "spec.expectedTools", DeviationType::Unknown)],
            "{result}"
        );
        let why = reports["liar"]
            .tools_unreadable
            .as_deref()
            .unwrap_or_default();
        assert!(why.starts_with("tools/list failed"), "{result}: {why}");
        assert!(
            obs.unobservable[0]
                .reason
                .contains("its tools could not be read"),
            "{result}: {obs:?}"
        );
    }
}
