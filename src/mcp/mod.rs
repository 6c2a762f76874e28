//! The MCP server: assistants ask about the lab, answered from the store's latest reconciled
//! model and deviation tables — never from a live provider call, so an answer is fast and
//! consistent, and each says which commit and which observation it reflects.
//!
//! Served with rmcp over stdio (`labctl mcp`); stdout carries nothing but protocol messages.
//! Every tool call is appended to the audit log with its arguments (secret-looking keys
//! redacted), its outcome and its duration.

mod model;
mod tools;
mod types;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rmcp::handler::server::tool::{schema_for_input, schema_for_output};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value as Json};

use crate::store::{ActorKind, AuditEntry, Store, StoreError};

/// A tool call that ran and did not work: shown to the caller as a tool error (never a
/// protocol error), with a message an agent can act on.
#[derive(Debug, Clone)]
pub struct ToolError {
    pub message: String,
}

impl ToolError {
    pub fn new(message: impl Into<String>) -> Self {
        ToolError {
            message: message.into(),
        }
    }
}

impl From<StoreError> for ToolError {
    fn from(e: StoreError) -> Self {
        // Store errors name the redacted URL and what was being done: no secret, no trace.
        ToolError::new(format!("the state store could not answer: {e}"))
    }
}

/// Who is asking, for the audit log.
#[derive(Debug, Clone)]
pub struct Client {
    pub kind: ActorKind,
    /// `stdio`, or the client's address and token name on HTTP.
    pub actor: String,
}

/// The labctl MCP server over one store.
#[derive(Clone)]
pub struct LabServer {
    store: Store,
    client: Client,
    tools: Arc<Vec<Tool>>,
    /// The parsed model of the latest run that recorded one, keyed by run id.
    cache: Arc<Mutex<Option<Arc<model::Model>>>>,
}

impl LabServer {
    pub fn new(store: Store, client: Client) -> Self {
        LabServer {
            store,
            client,
            tools: Arc::new(tool_list()),
            cache: Arc::new(Mutex::new(None)),
        }
    }

    /// Serves MCP on stdin/stdout until the client closes the connection.
    pub async fn serve_stdio(self) -> anyhow::Result<()> {
        let running = self
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| anyhow::anyhow!("MCP initialisation failed: {e}"))?;
        let reason = running.waiting().await?;
        tracing::info!(?reason, "MCP client disconnected");
        Ok(())
    }

    /// The tools this server offers, as `tools/list` shows them.
    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }

    /// The latest reconciled model. While the latest run is the one that recorded the cached
    /// model, one small query answers; otherwise the model is read again (and parsed only
    /// when it is another run's). The lock is never held across a query.
    async fn model(&self) -> Result<Arc<model::Model>, ToolError> {
        let latest = self.store.latest_run().await?;
        if let Some(run) = &latest {
            if let Some(cached) = self.cached().filter(|c| c.run == run.id) {
                return Ok(cached);
            }
        }
        let Some(latest) = self.store.latest_model().await? else {
            return Err(ToolError::new(
                "no reconciled model yet: no reconcile run has succeeded on this store. \
                 Run `labctl reconcile --once REPO` (with the same --database-url) first",
            ));
        };
        if let Some(cached) = self.cached().filter(|c| c.run == latest.run) {
            return Ok(cached);
        }
        let parsed = Arc::new(model::Model::from_latest(latest));
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.as_ref().is_none_or(|c| c.run < parsed.run) {
            *cache = Some(Arc::clone(&parsed));
        }
        Ok(parsed)
    }

    fn cached(&self) -> Option<Arc<model::Model>> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(Arc::clone)
    }

    /// Runs one tool; `None` when there is no such tool.
    async fn dispatch(&self, name: &str, args: Json) -> Option<Result<Json, ToolError>> {
        let result = match name {
            "infrastructure_summary" => {
                self.with_model(args, |s, m, _: types::SummaryInput| async move {
                    tools::infrastructure_summary(&s.store, &m).await
                })
                .await
            }
            "list_devices" => {
                self.with_model(args, |_, m, i| async move { tools::list_devices(&m, i) })
                    .await
            }
            "get_device" => {
                self.with_model(args, |s, m, i| async move {
                    tools::get_device(&s.store, &m, i).await
                })
                .await
            }
            "lookup_ip" => {
                self.with_model(args, |_, m, i| async move { tools::lookup_ip(&m, i) })
                    .await
            }
            "get_drift" => {
                self.with_model(args, |s, m, i| async move {
                    tools::get_drift(&s.store, &m, i).await
                })
                .await
            }
            "explain_deviation" => {
                self.with_model(args, |s, m, i| async move {
                    tools::explain_deviation(&s.store, &m, i).await
                })
                .await
            }
            "get_reconcile_status" => {
                self.with_model(args, |s, m, i| async move {
                    tools::get_reconcile_status(&s.store, &m, i).await
                })
                .await
            }
            "validate_definition" => parse::<types::ValidateInput>(args)
                .map(tools::validate_definition)
                .and_then(to_json),
            _ => return None,
        };
        Some(result)
    }

    async fn with_model<I, O, F, Fut>(&self, args: Json, f: F) -> Result<Json, ToolError>
    where
        I: DeserializeOwned,
        O: Serialize,
        F: FnOnce(LabServer, Arc<model::Model>, I) -> Fut,
        Fut: std::future::Future<Output = Result<O, ToolError>>,
    {
        let input = parse::<I>(args)?;
        let model = self.model().await?;
        to_json(f(self.clone(), model, input).await?)
    }

    async fn audit(&self, tool: &str, args: &Json, outcome: &str, error: Option<&str>, ms: u128) {
        let mut details = json!({
            "arguments": redact(args),
            "outcome": outcome,
            "durationMs": ms as u64,
        });
        if let Some(e) = error {
            details["error"] = json!(e);
        }
        let entry = AuditEntry {
            actor_kind: self.client.kind,
            actor: self.client.actor.clone(),
            action: tool.to_string(),
            target: None,
            details,
        };
        if let Err(e) = self.store.audit(&entry).await {
            tracing::warn!(tool, error = %e, "cannot write the audit log");
        }
    }
}

impl ServerHandler for LabServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("labctl", env!("CARGO_PKG_VERSION"))
                    .with_title("labctl homelab state"),
            )
            .with_instructions(
                "labctl answers questions about a homelab kept in Git: devices, pools, DHCP \
                 reservations, routes, MCP servers, drift between Git and the live lab, and \
                 reconcile runs. Answers come from the latest reconcile run recorded in the \
                 state store (each names its commit and observedAt), never from live calls. \
                 Start with infrastructure_summary; use get_drift for what is wrong and \
                 explain_deviation for one problem; lookup_ip before picking an address.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.to_vec()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let started = Instant::now();
        let name = request.name.to_string();
        let args = Json::Object(request.arguments.unwrap_or_default());
        let Some(result) = self.dispatch(&name, args.clone()).await else {
            let known: Vec<&str> = self.tools.iter().map(|t| t.name.as_ref()).collect();
            let hint = crate::validate::did_you_mean(&name, known.iter().copied())
                .map(|s| format!(" Did you mean `{s}`?"))
                .unwrap_or_default();
            let message = format!("no tool `{name}`.{hint} Tools: {}", known.join(", "));
            self.audit(
                &name,
                &args,
                "unknown-tool",
                Some(&message),
                started.elapsed().as_millis(),
            )
            .await;
            return Err(ErrorData::invalid_params(message, None));
        };
        let elapsed = started.elapsed().as_millis();
        match result {
            Ok(value) => {
                self.audit(&name, &args, "ok", None, elapsed).await;
                Ok(CallToolResult::structured(value).into())
            }
            Err(e) => {
                self.audit(&name, &args, "error", Some(&e.message), elapsed)
                    .await;
                Ok(CallToolResult::error(vec![ContentBlock::text(e.message)]).into())
            }
        }
    }
}

fn parse<I: DeserializeOwned>(args: Json) -> Result<I, ToolError> {
    serde_json::from_value(args).map_err(|e| ToolError::new(format!("invalid arguments: {e}")))
}

fn to_json<O: Serialize>(value: O) -> Result<Json, ToolError> {
    serde_json::to_value(value)
        .map_err(|e| ToolError::new(format!("cannot encode the answer: {e}")))
}

/// A read tool: only reads the store, talks to nothing outside it.
fn read_tool<I, O>(name: &'static str, title: &str, description: &'static str) -> Tool
where
    I: JsonSchema + 'static,
    O: JsonSchema + 'static,
{
    let input = schema_for_input::<I>().expect("tool inputs are objects");
    Tool::new(name, description, input)
        .with_title(title)
        .with_raw_output_schema(schema_for_output::<O>())
        .with_annotations(
            ToolAnnotations::with_title(title)
                .read_only(true)
                .destructive(false)
                .idempotent(true)
                .open_world(false),
        )
}

fn tool_list() -> Vec<Tool> {
    use types::*;
    vec![
        read_tool::<SummaryInput, SummaryOutput>(
            "infrastructure_summary",
            "Lab overview",
            "Overview of the whole lab from the latest reconcile run: how many resources of \
             each kind (Pool, Device, DhcpReservation, Route, McpServer) are synced, \
             out-of-sync or unknown, open deviations by severity, and the last run. Start here.",
        ),
        read_tool::<ListDevicesInput, ListDevicesOutput>(
            "list_devices",
            "List devices",
            "Devices (VMs, containers, hosts) in the reconciled model, sorted by name, with \
             their status and addresses. Filter by pool (name or path), type (vm, lxc), status \
             (synced, out-of-sync, unknown) or label (key=value). Paginated: pass nextCursor \
             back as cursor. Use `fields` to return only what you need (add desired/observed \
             for full details).",
        ),
        read_tool::<GetDeviceInput, GetDeviceOutput>(
            "get_device",
            "Get one device",
            "One device by name (case-insensitive) or by one of its IPv4 addresses: what Git \
             declares, what was observed live, its status, its DHCP reservations and their \
             open deviations. An unknown name gives an error listing close names.",
        ),
        read_tool::<LookupIpInput, LookupIpOutput>(
            "lookup_ip",
            "Who uses an IP",
            "Which DHCP reservation, device, route backend or MCP server uses an IPv4 address, \
             in Git or live — or that it is free — plus the free addresses nearest to it in its \
             /24. Use before choosing an address for something new.",
        ),
        read_tool::<GetDriftInput, GetDriftOutput>(
            "get_drift",
            "Open drift",
            "Open deviations between Git and the live lab, worst first: missing (in Git, not \
             live), unmanaged (live, not in Git), drifted (a field differs, with expected and \
             actual values). Filter by kind, minSeverity (low, medium, high, critical) and \
             since (opened within e.g. 24h, 7d). Paginated with cursor.",
        ),
        read_tool::<ExplainDeviationInput, ExplainDeviationOutput>(
            "explain_deviation",
            "Explain a deviation",
            "The whole story of one deviation (kind, name, optional field such as spec.ip): \
             expected vs actual, severity, why it matters, the suggested remediation, and \
             every time it opened and was resolved.",
        ),
        read_tool::<ReconcileStatusInput, ReconcileStatusOutput>(
            "get_reconcile_status",
            "Reconcile runs",
            "Recent reconcile runs, newest first (outcome, commit, counts, errors such as \
             unreachable providers), and when each provider was last observed.",
        ),
        read_tool::<ValidateInput, ValidateOutput>(
            "validate_definition",
            "Validate YAML",
            "Check desired-state YAML (one or more documents: Pool, Device, DhcpReservation, \
             Route, McpServer, Config) exactly as `labctl validate` would, without writing \
             anything: every error with file:line:column, the document, the field and what to \
             do. Checks the text on its own, not against the rest of the repository.",
        ),
    ]
}

/// Arguments for the audit log: values under secret-looking keys replaced, long strings
/// (definitions) reduced to their size and hash.
pub fn redact(value: &Json) -> Json {
    const SECRET: &[&str] = &[
        "token",
        "password",
        "passwd",
        "secret",
        "key",
        "credential",
        "authorization",
    ];
    match value {
        Json::Object(map) => Json::Object(
            map.iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    if SECRET.iter().any(|s| lower.contains(s)) {
                        (k.clone(), json!("[redacted]"))
                    } else {
                        (k.clone(), redact(v))
                    }
                })
                .collect::<Map<_, _>>(),
        ),
        Json::Array(items) => Json::Array(items.iter().map(redact).collect()),
        Json::String(s) if s.len() > 256 => json!(format!(
            "[{} bytes, sha256 {}]",
            s.len(),
            &crate::store::content_hash(s)[..16]
        )),
        other => other.clone(),
    }
}

impl std::fmt::Debug for LabServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabServer")
            .field("store", &self.store)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_definitions_shortened() {
        let args = json!({
            "device": "harbor",
            "apiToken": "t0k3n",
            "nested": {"Password": "p", "keys": ["a"], "ok": 1},
            "yaml": "x".repeat(300),
        });
        let r = redact(&args);
        assert_eq!(r["device"], "harbor");
        assert_eq!(r["apiToken"], "[redacted]");
        assert_eq!(r["nested"]["Password"], "[redacted]");
        assert_eq!(r["nested"]["keys"], "[redacted]");
        assert_eq!(r["nested"]["ok"], 1);
        assert!(r["yaml"]
            .as_str()
            .unwrap()
            .starts_with("[300 bytes, sha256 "));
    }

    #[test]
    fn every_tool_has_schemas_and_read_only_annotations() {
        let tools = tool_list();
        assert_eq!(tools.len(), 8);
        for t in &tools {
            assert!(t.description.as_ref().is_some_and(|d| d.len() > 40));
            assert_eq!(t.input_schema.get("type"), Some(&json!("object")));
            assert!(t.output_schema.is_some(), "{}", t.name);
            let a = t.annotations.as_ref().unwrap();
            assert_eq!(a.read_only_hint, Some(true));
            assert_eq!(a.open_world_hint, Some(false));
        }
    }
}
