//! MCP servers: whether each registered `McpServer` is up and offers the tools it should.
//!
//! For every `McpServer` document the provider connects with an MCP client over the
//! document's transport — streamable HTTP (rmcp's reqwest client), the legacy HTTP+SSE
//! transport of protocol 2024-11-05 (implemented here: rmcp has no SSE client), or stdio (rmcp
//! starts the command as a child process, with the document's `args` and `env`, and stops it
//! when done) — runs the `initialize` handshake, and lists the tools (`tools/list`, following
//! `nextCursor`).
//!
//! Fields, expected: `{"reachable": true, "expectedTools": [the expected tools, sorted]}`
//! (`expectedTools` left out when the document names none). Observed: `{"reachable": true,
//! "expectedTools": [those expected tools the server offers, sorted]}`, so a tool the server
//! lacks is drift on `spec.expectedTools` with both lists; extra tools are not drift. A server
//! that cannot be connected to, refuses the handshake, or does not answer within the timeout
//! is observed as `{"reachable": false}`: that is a fact about the server (it is down), drift on
//! `spec.reachable`, not unknown. So is a server that refuses the configured bearer token
//! (HTTP 401/403): the server is not usable with the credential labctl was given, and the
//! reason (`authentication refused`) is in [`McpProvider::observe_with_reports`] and the log.
//!
//! A server that completed the handshake but whose `tools/list` failed or answered what labctl
//! does not understand (`tools` not an array, a tool without a string `name`) is reachable, and
//! its `spec.expectedTools` is unknown: a lie about the tools is never read as "offers none".
//!
//! A server is unobservable (unknown, never concluded about) only when labctl's own side
//! fails: its credential is not declared or cannot be read, or the document lacks the `url` or
//! `command` its transport needs. A `stdio` server runs a command from Git on this host, so it
//! is started only when the host allows it (`allow_commands`); otherwise it is unobservable,
//! no process is started, and [`McpProvider::skipped_commands`] lists what was not run. A
//! started server gets a minimal environment (`PATH`, `HOME`, locale, …) plus the document's
//! `env`: labctl's own environment, which may hold credentials, is not passed on.
//!
//! Server name and version, the full tool list, the protocol version and the latency are
//! logged (tracing, debug) and kept in [`McpProvider::observe_with_reports`], never in the compared fields.
//! The bearer token is never logged or returned.
//!
//! The provider only observes (`can_apply` is false) and is not declared in `labctl.yaml`: it
//! covers every `McpServer` document.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{
    ClientCapabilities, ClientConfig, ClientJsonRpcMessage, Implementation, ProtocolVersion,
    ServerJsonRpcMessage,
};
use rmcp::service::{ClientInitializeError, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess, Transport};
use rmcp::{ClientLifecycleMode, RoleClient};
use serde::Serialize;
use serde_json::{json, Value as Json};
use tokio::sync::{mpsc, Semaphore};

use super::http;
use super::{
    BoxFuture, CallPolicy, Observation, Provider, ProviderError, Resource, Severities, Severity,
    Unreadable,
};
use crate::model::{DesiredState, Kind, McpServerSpec, McpTransport, SecretSource};

/// Servers probed at once.
const MAX_CONCURRENT: usize = 8;

/// Why a `stdio` server is not started unless the host allows it.
pub const COMMANDS_NOT_ALLOWED: &str =
    "not started: stdio MCP servers run a command from Git on this host; allow it with --allow-commands (LABCTL_ALLOW_COMMANDS=1)";

/// Variables of labctl's own environment a `stdio` server gets; everything else (which may
/// hold labctl's credentials) is withheld. The document's `env` comes on top.
const PASSED_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR",
];

/// Checks registered MCP servers.
pub struct McpProvider {
    name: String,
    credentials: BTreeMap<String, SecretSource>,
    allow_commands: bool,
    policy: CallPolicy,
    limit: Arc<Semaphore>,
}

/// What the last [`Provider::observe`] learnt about one server, beyond the compared fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct McpServerReport {
    /// `None`: not observed (see `reason`).
    pub reachable: Option<bool>,
    /// `serverInfo.name` and `.version` from `initialize`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// The negotiated protocol version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    /// Every tool the server offers, sorted.
    pub tools: Vec<String>,
    /// Why the tools of a server that answered the handshake are unknown: `tools/list` failed
    /// or answered what labctl does not understand. `tools` is then empty, and says nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools_unreadable: Option<String>,
    /// Connect, handshake and tool listing of the last attempt, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Why it is unreachable or was not observed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Where and how to reach one server, with everything read up front.
#[derive(Clone)]
struct Target {
    server: String,
    spec: McpServerSpec,
    /// The bearer token, when the document names a credential.
    token: Option<String>,
}

/// What one handshake and tool listing found.
struct Found {
    server_name: Option<String>,
    server_version: Option<String>,
    protocol_version: String,
    /// The tools, or why they could not be listed.
    tools: Result<Vec<String>, String>,
}

impl McpProvider {
    /// `credentials`: the named credentials of `labctl.yaml` (`auth.credential` refers to them).
    /// `allow_commands`: whether `stdio` servers (commands from Git) may be started on this
    /// host. `policy.timeout` bounds each attempt (connect, handshake, tool listing);
    /// `policy.retries` retries a server that could not be connected to.
    pub fn new(
        name: impl Into<String>,
        credentials: BTreeMap<String, SecretSource>,
        allow_commands: bool,
        policy: CallPolicy,
    ) -> Self {
        McpProvider {
            name: name.into(),
            credentials,
            allow_commands,
            policy,
            limit: Arc::new(Semaphore::new(MAX_CONCURRENT)),
        }
    }

    /// The `stdio` servers that are not started because the host does not allow commands:
    /// `(name, command line)`, for "not started: …" lines. Empty when commands are allowed.
    pub fn skipped_commands(&self, desired: &DesiredState) -> Vec<(String, String)> {
        if self.allow_commands {
            return Vec::new();
        }
        desired
            .mcp_servers
            .iter()
            .filter(|d| d.doc.spec.transport == McpTransport::Stdio)
            .map(|d| (d.doc.metadata.name.clone(), command_line(&d.doc.spec)))
            .collect()
    }

    /// Observes, and returns beside the observation what it learnt per server: name, version,
    /// tools, latency, and why a server was unreachable or not observed. The reports travel
    /// with the observation they belong to; nothing is kept on the provider.
    pub async fn observe_with_reports(
        &self,
        desired: &DesiredState,
    ) -> (Observation, BTreeMap<String, McpServerReport>) {
        let mut reports = BTreeMap::new();
        let mut unobservable = Vec::new();
        let mut tasks = tokio::task::JoinSet::new();
        // One client for every HTTP server: building one reads the host's trust store, which
        // cost more than the probes themselves at a hundred servers.
        let client = http_client(&self.name, self.policy);
        for doc in &desired.mcp_servers {
            let server = doc.doc.metadata.name.clone();
            let target = match self.target(&server, &doc.doc.spec) {
                Ok(t) => t,
                Err(reason) => {
                    if reason == COMMANDS_NOT_ALLOWED {
                        // The host's decision, not a fault.
                        tracing::info!(
                            provider = %self.name,
                            server = %server,
                            %reason,
                            "MCP server not started"
                        );
                    } else {
                        tracing::warn!(
                            provider = %self.name,
                            server = %server,
                            %reason,
                            "MCP server not observed"
                        );
                    }
                    unobservable.push(Unreadable::resource(
                        Kind::McpServer,
                        server.clone(),
                        reason.clone(),
                    ));
                    reports.insert(
                        server,
                        McpServerReport {
                            reason: Some(reason),
                            ..Default::default()
                        },
                    );
                    continue;
                }
            };
            let (provider, policy, limit) = (self.name.clone(), self.policy, self.limit.clone());
            let client = client.clone();
            tasks.spawn(async move {
                // The semaphore is never closed, so acquiring only waits.
                let _permit = limit.acquire_owned().await.ok();
                let report = check(&provider, policy, &target, &client).await;
                (target, report)
            });
        }
        let mut resources = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (target, report) = match joined {
                Ok(r) => r,
                Err(e) => {
                    // A probe that panicked says nothing about the server.
                    tracing::error!(provider = %self.name, error = %e, "MCP probe failed");
                    continue;
                }
            };
            let fields = observed_fields(&target.spec, &report);
            if let (Some(why), false) = (
                &report.tools_unreadable,
                target.spec.expected_tools.is_empty(),
            ) {
                // It answered, but what it said of its tools was not understood: unknown, not
                // "offers none".
                unobservable.push(Unreadable::field(
                    Kind::McpServer,
                    target.server.clone(),
                    "spec.expectedTools",
                    format!("the server answered, but its tools could not be read: {why}"),
                ));
            }
            if fields["reachable"] == Json::Bool(false) && !target.spec.expected_tools.is_empty() {
                // A server that does not answer shows no tools: they are unknown, not gone.
                unobservable.push(Unreadable::field(
                    Kind::McpServer,
                    target.server.clone(),
                    "spec.expectedTools",
                    "the server did not answer, so its tools could not be listed",
                ));
            }
            resources.push(Resource {
                kind: Kind::McpServer,
                name: target.server.clone(),
                fields: fields.into(),
                key: None,
            });
            reports.insert(target.server, report);
        }
        // A probe that panicked left its server out: unknown, not missing.
        for doc in &desired.mcp_servers {
            let name = &doc.doc.metadata.name;
            if !reports.contains_key(name) {
                unobservable.push(Unreadable::resource(
                    Kind::McpServer,
                    name.clone(),
                    "the check of this server failed inside labctl",
                ));
            }
        }
        resources.sort_by(|a, b| a.name.cmp(&b.name));
        let mut observation = Observation::now(&self.name, resources);
        observation.unobservable = unobservable;
        // What each server said about itself, for the model (latency stays in the log:
        // it changes every run and observations are content-addressed).
        observation.details = reports
            .iter()
            .filter(|(_, r)| r.reachable == Some(true))
            .map(|(name, r)| {
                let details = json!({
                    "serverName": r.server_name,
                    "serverVersion": r.server_version,
                    "protocolVersion": r.protocol_version,
                    "tools": r.tools_unreadable.is_none().then_some(&r.tools),
                });
                (format!("{}/{name}", Kind::McpServer), details)
            })
            .collect();
        (observation, reports)
    }

    /// Reads what a server needs from labctl's side; `Err` (why) makes it unobservable.
    fn target(&self, server: &str, spec: &McpServerSpec) -> Result<Target, String> {
        match spec.transport {
            McpTransport::Stdio => {
                if !self.allow_commands {
                    return Err(COMMANDS_NOT_ALLOWED.to_string());
                }
                if spec.command.as_deref().is_none_or(str::is_empty) {
                    return Err("a stdio server needs spec.command".to_string());
                }
            }
            McpTransport::StreamableHttp | McpTransport::Sse => {
                let url = spec.url.as_deref().unwrap_or_default();
                if url.is_empty() {
                    return Err(format!(
                        "a {} server needs spec.url",
                        transport_name(spec.transport)
                    ));
                }
                reqwest::Url::parse(url).map_err(|e| format!("spec.url `{url}`: {e}"))?;
            }
        }
        let token = match (&spec.auth, spec.transport) {
            (Some(auth), McpTransport::StreamableHttp | McpTransport::Sse) => {
                let source = self.credentials.get(&auth.credential).ok_or_else(|| {
                    format!(
                        "credential `{}` is not declared under credentials in labctl.yaml",
                        auth.credential
                    )
                })?;
                let token = super::secret::read(source)
                    .map_err(|e| format!("credential `{}`: {e}", auth.credential))?;
                Some(token)
            }
            _ => None,
        };
        Ok(Target {
            server: server.to_string(),
            spec: spec.clone(),
            token,
        })
    }
}

impl Provider for McpProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn kinds(&self) -> BTreeSet<Kind> {
        BTreeSet::from([Kind::McpServer])
    }

    fn expected(&self, desired: &DesiredState) -> Vec<Resource> {
        desired
            .mcp_servers
            .iter()
            .map(|d| {
                let expected: BTreeSet<&str> = d
                    .doc
                    .spec
                    .expected_tools
                    .iter()
                    .map(String::as_str)
                    .collect();
                let mut fields = json!({"reachable": true});
                if !expected.is_empty() {
                    fields["expectedTools"] = json!(expected);
                }
                Resource {
                    kind: Kind::McpServer,
                    name: d.doc.metadata.name.clone(),
                    fields: fields.into(),
                    key: None,
                }
            })
            .collect()
    }

    fn observe<'a>(
        &'a self,
        desired: &'a DesiredState,
    ) -> BoxFuture<'a, Result<Observation, ProviderError>> {
        Box::pin(async move { Ok(self.observe_with_reports(desired).await.0) })
    }

    fn severities(&self) -> Severities {
        &[(
            Kind::McpServer,
            &["reachable", "expectedTools", "url", "transport"],
            Severity::High,
        )]
    }

    fn read_only_reason(&self) -> &str {
        "MCP servers are observed only; fix or start the server where it runs"
    }
}

/// The compared fields of what `report` found.
fn observed_fields(spec: &McpServerSpec, report: &McpServerReport) -> Json {
    if report.reachable != Some(true) {
        return json!({"reachable": false});
    }
    if report.tools_unreadable.is_some() {
        return json!({"reachable": true});
    }
    let expected: BTreeSet<&str> = spec.expected_tools.iter().map(String::as_str).collect();
    let mut fields = json!({"reachable": true});
    if !expected.is_empty() {
        let offered: Vec<&str> = expected
            .into_iter()
            .filter(|t| report.tools.iter().any(|o| o == t))
            .collect();
        fields["expectedTools"] = json!(offered);
    }
    fields
}

/// Connects to one server (retrying per `policy`) and reports what it found.
async fn check(
    provider: &str,
    policy: CallPolicy,
    target: &Target,
    client: &Result<reqwest::Client, ProviderError>,
) -> McpServerReport {
    // The latency of the last attempt that finished (a timed-out one leaves it unset).
    let last = Mutex::new(None::<Duration>);
    let result = policy
        .run(provider, || {
            let start = Instant::now();
            let attempt = probe(provider, policy, target, client);
            let last = &last;
            async move {
                let r = attempt.await;
                if let Ok(mut l) = last.lock() {
                    *l = Some(start.elapsed());
                }
                r
            }
        })
        .await;
    let latency = last.into_inner().ok().flatten().unwrap_or_default();
    let latency_ms = Some(latency.as_millis() as u64).filter(|_| !latency.is_zero());
    match result {
        Ok(found) => {
            tracing::debug!(
                provider,
                server = %target.server,
                transport = transport_name(target.spec.transport),
                server_name = found.server_name.as_deref().unwrap_or(""),
                server_version = found.server_version.as_deref().unwrap_or(""),
                protocol_version = %found.protocol_version,
                tools = ?found.tools,
                latency_ms = latency.as_secs_f64() * 1000.0,
                "MCP server reachable"
            );
            McpServerReport {
                reachable: Some(true),
                server_name: found.server_name,
                server_version: found.server_version,
                protocol_version: Some(found.protocol_version),
                tools: found.tools.clone().unwrap_or_default(),
                tools_unreadable: found.tools.err(),
                latency_ms,
                reason: None,
            }
        }
        Err(error) => {
            let reason = error.to_string();
            tracing::debug!(
                provider,
                server = %target.server,
                transport = transport_name(target.spec.transport),
                %reason,
                "MCP server unreachable"
            );
            McpServerReport {
                reachable: Some(false),
                latency_ms,
                reason: Some(reason),
                ..Default::default()
            }
        }
    }
}

/// One attempt: connect, handshake, list the tools, disconnect.
async fn probe(
    provider: &str,
    policy: CallPolicy,
    target: &Target,
    client: &Result<reqwest::Client, ProviderError>,
) -> Result<Found, ProviderError> {
    let spec = &target.spec;
    match spec.transport {
        McpTransport::StreamableHttp => {
            let url = spec.url.clone().unwrap_or_default();
            let client = client.clone()?;
            let mut config = StreamableHttpClientTransportConfig::with_uri(url.clone());
            if let Some(token) = &target.token {
                // rmcp sends it as `Authorization: Bearer <token>`.
                config = config.auth_header(token.clone());
            }
            let transport = StreamableHttpClientTransport::with_client(client, config);
            session(
                provider,
                &url,
                transport,
                ProtocolVersion::LATEST_WITH_INITIALIZE,
                policy,
            )
            .await
        }
        McpTransport::Sse => {
            let url = spec.url.clone().unwrap_or_default();
            let client = client.clone()?;
            let transport =
                SseClientTransport::connect(provider, client, &url, target.token.clone()).await?;
            // The HTTP+SSE transport belongs to protocol 2024-11-05.
            session(
                provider,
                &url,
                transport,
                ProtocolVersion::V_2024_11_05,
                policy,
            )
            .await
        }
        McpTransport::Stdio => {
            let shown = command_line(spec);
            let (transport, stderr) = spawn(spec).map_err(|e| ProviderError::BadResponse {
                provider: provider.to_string(),
                url: shown.clone(),
                detail: format!("cannot start the command: {e}"),
                source: None,
            })?;
            let pid = transport.id();
            tracing::debug!(
                provider,
                server = %target.server,
                pid,
                command = %shown,
                "started stdio MCP server"
            );
            let result = session(
                provider,
                &shown,
                transport,
                ProtocolVersion::LATEST_WITH_INITIALIZE,
                policy,
            )
            .await;
            // A server that died on start says why on stderr.
            result.map_err(|e| with_stderr(e, &stderr))
        }
    }
}

/// The HTTP client of one observation. No overall request timeout: event streams stay open;
/// each attempt as a whole is bounded by the call policy.
fn http_client(provider: &str, policy: CallPolicy) -> Result<reqwest::Client, ProviderError> {
    let config_err = ProviderError::config(provider);
    http::build(
        reqwest::Client::builder().connect_timeout(policy.timeout),
        &config_err,
    )
}

/// Initialises a client over `transport`, lists every tool, and closes the session (for
/// stdio: stops the process).
async fn session<T, E, A>(
    provider: &str,
    endpoint: &str,
    transport: T,
    version: ProtocolVersion,
    policy: CallPolicy,
) -> Result<Found, ProviderError>
where
    T: rmcp::transport::IntoTransport<RoleClient, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    let config = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("labctl", env!("CARGO_PKG_VERSION")),
    )
    .with_protocol_version(version);
    let mut client: RunningService<RoleClient, ClientConfig> =
        rmcp::serve_client_with_lifecycle(config, transport, ClientLifecycleMode::Initialize)
            .await
            .map_err(|e| init_error(provider, endpoint, &e))?;
    let info = client.peer_info();
    let offers_tools = info
        .as_ref()
        .is_some_and(|i| i.capabilities.tools.is_some());
    // After a handshake the server is reachable; a tools/list that fails or answers what rmcp
    // cannot decode leaves its tools unknown, never "none".
    let tools = if offers_tools {
        client
            .list_all_tools()
            .await
            .map_err(|e| format!("tools/list failed: {}", http::error_chain(&e)))
    } else {
        Ok(Vec::new())
    };
    // Stops a child process: stdin closed, then SIGTERM, then kill.
    let _ = client.close_with_timeout(policy.timeout).await;
    let tools = tools.map(|tools| {
        let mut names: Vec<String> = tools.into_iter().map(|t| t.name.into_owned()).collect();
        names.sort();
        names.dedup();
        names
    });
    let server = info.as_ref().and_then(|i| i.server_info.clone());
    Ok(Found {
        server_name: server.as_ref().map(|s| s.name.clone()),
        server_version: server.map(|s| s.version),
        protocol_version: info
            .map(|i| i.protocol_version.to_string())
            .unwrap_or_default(),
        tools,
    })
}

/// A failed handshake as a [`ProviderError`]: refused credentials are `Authentication` (not
/// retried), a connection that failed or closed `Unreachable` (retried), anything else
/// `BadResponse`.
fn init_error(provider: &str, endpoint: &str, e: &ClientInitializeError) -> ProviderError {
    // rmcp's transport error names the transport's type; what failed and why is inside.
    let chain = match e {
        ClientInitializeError::TransportError { error, context } => {
            format!("{context}: {}", http::error_chain(error.error.as_ref()))
        }
        other => http::error_chain(other),
    };
    let (provider, url) = (provider.to_string(), endpoint.to_string());
    if e.is_authorization_required() || is_auth_refusal(&chain) {
        return ProviderError::Authentication {
            provider,
            url,
            detail: "authentication refused: the server rejected the credential \
                     (HTTP 401/403)"
                .to_string(),
            source: None,
        };
    }
    match e {
        ClientInitializeError::TransportError { .. }
        | ClientInitializeError::ConnectionClosed(_) => ProviderError::Unreachable {
            provider,
            url,
            detail: chain,
            source: None,
        },
        _ => ProviderError::BadResponse {
            provider,
            url,
            detail: chain,
            source: None,
        },
    }
}

fn is_auth_refusal(chain: &str) -> bool {
    chain.contains("401 Unauthorized")
        || chain.contains("403 Forbidden")
        || chain.contains(AUTH_REFUSED)
}

/// Adds the last lines the server wrote to stderr to the error's detail.
fn with_stderr(e: ProviderError, stderr: &Arc<Mutex<Vec<String>>>) -> ProviderError {
    let lines = stderr.lock().map(|l| l.join(" | ")).unwrap_or_default();
    if lines.is_empty() {
        return e;
    }
    let tail = format!(" (stderr: {})", http::excerpt(&lines));
    match e {
        ProviderError::Unreachable {
            provider,
            url,
            detail,
            source,
        } => ProviderError::Unreachable {
            provider,
            url,
            detail: detail + &tail,
            source,
        },
        ProviderError::BadResponse {
            provider,
            url,
            detail,
            source,
        } => ProviderError::BadResponse {
            provider,
            url,
            detail: detail + &tail,
            source,
        },
        other => other,
    }
}

/// Starts a stdio server: the command with the document's args, a minimal environment plus
/// the document's `env`, killed when the transport is dropped. Its stderr goes to the debug
/// log; the last lines are kept for error messages.
fn spawn(spec: &McpServerSpec) -> std::io::Result<(TokioChildProcess, Arc<Mutex<Vec<String>>>)> {
    let mut command = tokio::process::Command::new(spec.command.as_deref().unwrap_or_default());
    command.args(&spec.args).env_clear().kill_on_drop(true);
    for var in PASSED_ENV {
        if let Some(value) = std::env::var_os(var) {
            command.env(var, value);
        }
    }
    command.envs(&spec.env);
    let (transport, stderr) = TokioChildProcess::builder(command)
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let tail = Arc::new(Mutex::new(Vec::new()));
    if let Some(stderr) = stderr {
        let tail = tail.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(target: "labctl::providers::mcp::stderr", "{line}");
                if let Ok(mut t) = tail.lock() {
                    t.push(line);
                    let excess = t.len().saturating_sub(3);
                    t.drain(..excess);
                }
            }
        });
    }
    Ok((transport, tail))
}

/// The command line of a stdio server, for messages (arguments with spaces quoted).
fn command_line(spec: &McpServerSpec) -> String {
    std::iter::once(spec.command.as_deref().unwrap_or_default())
        .chain(spec.args.iter().map(String::as_str))
        .map(|part| {
            if part.is_empty() || part.contains(char::is_whitespace) {
                format!("'{}'", part.replace('\'', r"'\''"))
            } else {
                part.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn transport_name(t: McpTransport) -> &'static str {
    match t {
        McpTransport::StreamableHttp => "streamable-http",
        McpTransport::Sse => "sse",
        McpTransport::Stdio => "stdio",
    }
}

// ---------------------------------------------------------------------------------------------
// The HTTP+SSE transport of protocol 2024-11-05 (client side), which rmcp no longer ships:
// `GET` the SSE URL; the server's first event, `endpoint`, names the URL to `POST` JSON-RPC
// messages to; the answers come back as `message` events on the stream.

/// Marks a refused credential in the transport's errors.
const AUTH_REFUSED: &str = "credential refused";

/// A failure of the SSE transport.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SseError(String);

/// The client side of one SSE session.
struct SseClientTransport {
    client: reqwest::Client,
    /// Where messages are posted (absolute).
    endpoint: reqwest::Url,
    token: Option<String>,
    incoming: mpsc::Receiver<ServerJsonRpcMessage>,
    reader: tokio::task::JoinHandle<()>,
}

impl SseClientTransport {
    /// Opens the event stream and waits for the `endpoint` event.
    async fn connect(
        provider: &str,
        client: reqwest::Client,
        url: &str,
        token: Option<String>,
    ) -> Result<Self, ProviderError> {
        let unreachable = |detail: String| ProviderError::Unreachable {
            provider: provider.to_string(),
            url: url.to_string(),
            detail,
            source: None,
        };
        let bad = |detail: String| ProviderError::BadResponse {
            provider: provider.to_string(),
            url: url.to_string(),
            detail,
            source: None,
        };
        let base = reqwest::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        let mut request = client
            .get(base.clone())
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|e| unreachable(http::error_chain(&e)))?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(ProviderError::Authentication {
                provider: provider.to_string(),
                url: url.to_string(),
                detail: format!(
                    "authentication refused: the server rejected the credential (HTTP {status})"
                ),
                source: None,
            });
        }
        if status.is_server_error() {
            return Err(unreachable(format!("HTTP {status}")));
        }
        if !status.is_success() {
            return Err(bad(format!("HTTP {status} for the event stream")));
        }
        let mut events = SseReader::new(response);
        let endpoint = loop {
            match events.next_event().await {
                Ok(Some(event)) if event.event == "endpoint" => {
                    break base.join(event.data.trim()).map_err(|e| {
                        bad(format!("the endpoint event `{}`: {e}", event.data.trim()))
                    })?;
                }
                Ok(Some(_)) => continue,
                Ok(None) => {
                    return Err(unreachable(
                        "the event stream ended before the endpoint event".to_string(),
                    ))
                }
                Err(e) => return Err(unreachable(e)),
            }
        };
        let (tx, incoming) = mpsc::channel(32);
        let reader = tokio::spawn(async move {
            loop {
                match events.next_event().await {
                    Ok(Some(event)) if event.event == "message" => {
                        match serde_json::from_str::<ServerJsonRpcMessage>(&event.data) {
                            Ok(message) => {
                                if tx.send(message).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "ignoring an unreadable SSE message")
                            }
                        }
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => return,
                    Err(e) => {
                        tracing::debug!(error = %e, "SSE stream broke off");
                        return;
                    }
                }
            }
        });
        Ok(SseClientTransport {
            client,
            endpoint,
            token,
            incoming,
            reader,
        })
    }
}

impl Drop for SseClientTransport {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Transport<RoleClient> for SseClientTransport {
    type Error = SseError;

    fn name() -> Cow<'static, str> {
        "SseClientTransport".into()
    }

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let mut request = self.client.post(self.endpoint.clone()).json(&item);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request
                .send()
                .await
                .map_err(|e| SseError(http::error_chain(&e)))?;
            let status = response.status();
            if status == reqwest::StatusCode::UNAUTHORIZED
                || status == reqwest::StatusCode::FORBIDDEN
            {
                return Err(SseError(format!("{AUTH_REFUSED} (HTTP {status})")));
            }
            if !status.is_success() {
                let body = http::read_prefix(response, 1024).await;
                return Err(SseError(format!(
                    "HTTP {status} posting a message: {}",
                    http::excerpt_bytes(&body)
                )));
            }
            Ok(())
        }
    }

    fn receive(&mut self) -> impl Future<Output = Option<ServerJsonRpcMessage>> + Send {
        self.incoming.recv()
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.reader.abort();
        self.incoming.close();
        Ok(())
    }
}

/// One server-sent event.
#[derive(Debug, Default, PartialEq)]
struct SseEvent {
    /// `message` when the event names no type.
    event: String,
    data: String,
}

/// Largest event accepted, in bytes.
const MAX_EVENT: usize = 4 << 20;

/// Reads server-sent events from a response body.
struct SseReader {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl SseReader {
    fn new(response: reqwest::Response) -> Self {
        SseReader {
            response,
            buffer: Vec::new(),
        }
    }

    /// The next event; `None` at the end of the stream.
    async fn next_event(&mut self) -> Result<Option<SseEvent>, String> {
        loop {
            if let Some(event) = take_event(&mut self.buffer) {
                match event {
                    Some(e) => return Ok(Some(e)),
                    // Only comments or empty lines: read on.
                    None => continue,
                }
            }
            if self.buffer.len() > MAX_EVENT {
                return Err(format!("an SSE event exceeds {MAX_EVENT} bytes"));
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk),
                Ok(None) => return Ok(None),
                Err(e) => return Err(http::error_chain(&e)),
            }
        }
    }
}

/// Takes one complete event block (up to a blank line) off the front of `buffer`:
/// `None` when no block is complete yet; `Some(None)` for a block without data.
fn take_event(buffer: &mut Vec<u8>) -> Option<Option<SseEvent>> {
    let text = buffer.as_slice();
    // The end of the first blank line: "\n\n", "\r\n\r\n" or "\r\r".
    let mut end = None;
    let mut i = 0;
    let mut line_start = 0;
    while i < text.len() {
        let len = match text[i] {
            b'\r' if text.get(i + 1) == Some(&b'\n') => 2,
            b'\r' | b'\n' => 1,
            _ => {
                i += 1;
                continue;
            }
        };
        if i == line_start {
            end = Some((line_start, i + len));
            break;
        }
        i += len;
        line_start = i;
    }
    let (block_end, consumed) = end?;
    let block = String::from_utf8_lossy(&text[..block_end]).into_owned();
    buffer.drain(..consumed);
    let mut event = SseEvent::default();
    let mut data: Vec<&str> = Vec::new();
    for line in block.split(['\n', '\r']).filter(|l| !l.is_empty()) {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event.event = value.to_string(),
            "data" => data.push(value),
            _ => {}
        }
    }
    if data.is_empty() {
        return Some(None);
    }
    event.data = data.join("\n");
    if event.event.is_empty() {
        event.event = "message".to_string();
    }
    Some(Some(event))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_at_blank_lines_in_any_line_ending() {
        let mut buf = b"event: endpoint\r\ndata: /message?sessionId=1\r\n\r\n: ping\n\ndata: {\"a\":\ndata: 1}\n\nevent: mess"
            .to_vec();
        assert_eq!(
            take_event(&mut buf),
            Some(Some(SseEvent {
                event: "endpoint".into(),
                data: "/message?sessionId=1".into()
            }))
        );
        assert_eq!(take_event(&mut buf), Some(None));
        assert_eq!(
            take_event(&mut buf),
            Some(Some(SseEvent {
                event: "message".into(),
                data: "{\"a\":\n1}".into()
            }))
        );
        assert_eq!(take_event(&mut buf), None);
        assert_eq!(buf, b"event: mess");
    }

    #[test]
    fn command_lines_quote_arguments_with_spaces() {
        let spec: McpServerSpec = serde_json::from_value(json!({
            "transport": "stdio", "command": "node", "args": ["server.js", "a b", "it's"]
        }))
        .unwrap();
        assert_eq!(command_line(&spec), "node server.js 'a b' it's");
    }

    #[test]
    fn observed_fields_list_only_the_expected_tools_offered() {
        let spec: McpServerSpec = serde_json::from_value(json!({
            "transport": "sse", "url": "http://127.0.0.1:1/sse", "expectedTools": ["b", "a", "z"]
        }))
        .unwrap();
        let report = McpServerReport {
            reachable: Some(true),
            tools: vec!["a".into(), "b".into(), "c".into()],
            ..Default::default()
        };
        assert_eq!(
            observed_fields(&spec, &report),
            json!({"reachable": true, "expectedTools": ["a", "b"]})
        );
        let down = McpServerReport {
            reachable: Some(false),
            ..Default::default()
        };
        assert_eq!(observed_fields(&spec, &down), json!({"reachable": false}));
    }
}
