//! The MCP server: assistants ask about the lab, answered from the store's latest reconciled
//! model and deviation tables — never from a live provider call, so an answer is fast and
//! consistent, and each says which commit and which observation it reflects.
//!
//! Served with rmcp over stdio (`labctl mcp`); stdout carries nothing but protocol messages.
//! Every tool call is size-checked ([`limits`]), answered within a deadline, and appended to
//! the audit log with its arguments (secret-looking keys redacted, documents reduced to their
//! size and hash, the whole capped: [`audit`]), its outcome and its duration.

mod audit;
mod auth;
pub mod http;
mod limits;
pub(crate) mod model;
mod notify;
pub mod oauth;
pub(crate) mod page;
mod prompts;
mod propose;
mod resources;
mod stdio;
pub(crate) mod tools;
mod trigger;
pub(crate) mod types;

pub use auth::{sha256_hex, Scope, Scopes, Tokens, TokensError};
pub use limits::{Limits, MAX_DEFINITION_BYTES};

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rmcp::handler::server::tool::{schema_for_input, schema_for_output};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value as Json};

use crate::controller;
use crate::store::{ActorKind, AuditEntry, RetentionPolicy, Store, StoreError};

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

impl From<crate::readmodel::ReadModelError> for ToolError {
    fn from(e: crate::readmodel::ReadModelError) -> Self {
        ToolError::new(e.to_string())
    }
}

impl From<StoreError> for ToolError {
    fn from(e: StoreError) -> Self {
        // Store errors name the redacted URL and what was being done: no secret, no trace.
        ToolError::new(format!("the state store could not answer: {e}"))
    }
}

/// Why the MCP server stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("MCP initialisation failed: {0}")]
    Initialize(#[source] Box<rmcp::service::ServerInitializeError>),
    #[error("the MCP session ended abnormally: {0}")]
    Session(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The configuration is not one the server may serve with.
    #[error("{0}")]
    Refused(String),
}

/// Who is asking, for the audit log.
#[derive(Debug, Clone)]
pub struct Client {
    pub kind: ActorKind,
    /// `stdio`, or the client's address and token name on HTTP.
    pub actor: String,
    /// What the client may do: every scope on stdio, its token's on HTTP.
    pub scopes: Scopes,
}

/// A run as (id, finished at): a new run, or the latest one finishing, changes it.
type RunKey = (i64, Option<i64>);

/// How long the latest run, once read, is taken as the latest without asking the store again.
/// Asking is a round trip to the store's worker on every call (a sixth of a read's latency);
/// so an answer may miss a run recorded by another process in the last [`FRESH_FOR`]. A run
/// this process asks for (`trigger_reconcile`) is seen by the next call.
const FRESH_FOR: Duration = Duration::from_millis(50);

/// The latest run as last read (and when it was asked for), and the open deviations read
/// while it was the latest.
#[derive(Debug, Default)]
struct OpenCache {
    seen: Option<RunKey>,
    asked: Option<Instant>,
    list: Option<(RunKey, Arc<Vec<crate::store::Deviation>>)>,
}

/// The labctl MCP server over one store.
#[derive(Clone)]
pub struct LabServer {
    store: Store,
    client: Client,
    /// This server's tools (see [`tool_table`]).
    tools: Arc<Vec<ToolDef>>,
    /// The parsed model of the latest run that recorded one, keyed by run id.
    cache: Arc<Mutex<Option<Arc<model::Model>>>>,
    /// The latest run as last read (id, finished), and the open deviations read under it.
    open: Arc<Mutex<OpenCache>>,
    /// Where `trigger_reconcile` gets runs; without it the tool is not offered.
    controller: Option<trigger::Runner>,
    /// The repository `propose_change` proposes to; without it the tool is not offered.
    proposer: Option<Arc<controller::Context>>,
    /// Audit rows, committed in groups (a call that changes something waits for its own).
    audit_log: audit::AuditWriter,
    /// The deadline of every call and the slots for CPU-heavy ones.
    budget: limits::Budget,
    /// This MCP session's subscriptions, log level and peer (see [`LabServer::for_session`]).
    session: Arc<notify::Session>,
    /// Snapshots of the store, shared by every session of this server.
    feed: Arc<notify::Feed>,
    /// Set on the clone a tool call runs with, when its client wants progress.
    call: Option<notify::Call>,
}

impl LabServer {
    /// Must be called inside a tokio runtime: it starts the audit writer, which keeps the
    /// audit log within [`RetentionPolicy::DEFAULT`] (see [`LabServer::with_retention`]).
    pub fn new(store: Store, client: Client) -> Self {
        LabServer {
            audit_log: audit::AuditWriter::start(store.clone(), RetentionPolicy::DEFAULT),
            store,
            client,
            tools: Arc::new(tool_table(false, false)),
            cache: Arc::new(Mutex::new(None)),
            open: Arc::default(),
            controller: None,
            proposer: None,
            budget: limits::Budget::new(Limits::new()),
            session: Arc::default(),
            feed: notify::Feed::new(),
            call: None,
        }
    }

    /// This server for a new MCP session: the same store, tools and feed, with the session's
    /// own subscriptions and log level.
    pub fn for_session(&self) -> Self {
        LabServer {
            session: Arc::default(),
            ..self.clone()
        }
    }

    /// The audit log kept within `retention` (its days and rows of audit entries).
    pub fn with_retention(mut self, retention: RetentionPolicy) -> Self {
        self.audit_log = audit::AuditWriter::start(self.store.clone(), retention);
        self
    }

    /// Tool calls audited to the log (target `labctl::audit`, level info) instead of the
    /// store: for a store this process may only read.
    pub fn with_audit_to_log(mut self) -> Self {
        self.audit_log = audit::AuditWriter::to_log();
        self
    }

    /// Calls answered within `limits` (default [`Limits::new`]).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.budget = limits::Budget::new(limits);
        self
    }

    /// Offers `trigger_reconcile` (admin scope): runs requested from `controller`; and
    /// `propose_change` (propose scope) to its repository.
    pub fn with_controller(self, controller: Arc<controller::Context>) -> Self {
        self.with_proposer(Arc::clone(&controller))
            .with_runner(trigger::Runner::Controller(controller))
    }

    /// Offers `propose_change` (propose scope): branches and pull requests to the repository
    /// `ctx` tracks.
    pub fn with_proposer(mut self, ctx: Arc<controller::Context>) -> Self {
        self.proposer = Some(ctx);
        self.tools = Arc::new(tool_table(self.controller.is_some(), true));
        self
    }

    /// Offers `trigger_reconcile` (admin scope): runs asked of the daemon through `triggers`.
    pub fn with_daemon(self, triggers: crate::serve::Triggers) -> Self {
        self.with_runner(trigger::Runner::Daemon(triggers))
    }

    fn with_runner(mut self, runner: trigger::Runner) -> Self {
        self.tools = Arc::new(tool_table(true, self.proposer.is_some()));
        self.controller = Some(runner);
        self
    }

    /// The caller of one request: on HTTP the client the guard verified (see [`http`]),
    /// otherwise this server's own client (stdio).
    fn caller(&self, context: &RequestContext<RoleServer>) -> Client {
        context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Client>())
            .cloned()
            .unwrap_or_else(|| self.client.clone())
    }

    /// The tools `client` may see and call.
    fn tools_for<'a>(&'a self, client: &'a Client) -> impl Iterator<Item = &'a ToolDef> + 'a {
        self.tools.iter().filter(|t| client.scopes.allows(t.scope))
    }

    /// Serves MCP on stdin/stdout until the client closes the connection (see [`stdio`]).
    pub async fn serve_stdio(self) -> Result<(), ServeError> {
        stdio::serve(self).await
    }

    /// The store it answers from.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The tools this server offers, as `tools/list` shows them to a caller with every scope.
    pub fn tools(&self) -> impl Iterator<Item = &Tool> {
        self.tools.iter().map(|t| &t.tool)
    }

    /// The latest reconciled model. Within [`FRESH_FOR`] of the last look at the latest run,
    /// the cached model answers if that run recorded it; then one small query; the model is
    /// read again only when another run is the latest (and parsed only when it is another
    /// run's). The lock is never held across a query.
    pub(crate) async fn model(&self) -> Result<Arc<model::Model>, ToolError> {
        let fresh = {
            let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            let recent = open.asked.is_some_and(|at| at.elapsed() < FRESH_FOR);
            open.seen.filter(|_| recent)
        };
        if let Some((run, _)) = fresh {
            if let Some(cached) = self.cached().filter(|c| c.run == run) {
                return Ok(cached);
            }
        }
        let asked = Instant::now();
        let latest = self.store.latest_run_key().await?;
        {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            open.seen = latest;
            open.asked = Some(asked);
        }
        if let Some((run, _)) = latest {
            if let Some(cached) = self.cached().filter(|c| c.run == run) {
                return Ok(cached);
            }
        }
        let Some(latest) = self.store.latest_model().await? else {
            // A desktop client passes few environment variables, so a store other than the
            // intended one is easy to open by mistake: name the one opened.
            return Err(ToolError::new(format!(
                "no reconciled model yet: no reconcile run has succeeded on the store {}. \
                 Run `labctl reconcile --once REPO --database-url {0}` first, or start \
                 `labctl mcp` with the --database-url of the store your runs write",
                self.store.redacted_url()
            )));
        };
        if let Some(cached) = self.cached().filter(|c| c.run == latest.run) {
            return Ok(cached);
        }
        let parsed = Arc::new(model::Model::from_latest(latest)?);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.as_ref().is_none_or(|c| c.run < parsed.run) {
            *cache = Some(Arc::clone(&parsed));
        }
        Ok(parsed)
    }

    /// The open deviations, worst first, read once per run. They change only when a run
    /// finishes, in the transaction that sets its `finished_at`: so while the latest run
    /// [`LabServer::model`] last read is the same, the list read under it is current (it was
    /// read after that run was seen, and nothing else changes it).
    pub(crate) async fn open_deviations(
        &self,
    ) -> Result<Arc<Vec<crate::store::Deviation>>, ToolError> {
        let seen = {
            let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            if let (Some(seen), Some((key, list))) = (open.seen, &open.list) {
                if seen == *key {
                    return Ok(Arc::clone(list));
                }
            }
            open.seen
        };
        let list = Arc::new(self.store.open_deviations(None, None).await?);
        if let Some(seen) = seen {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            open.list = Some((seen, Arc::clone(&list)));
        }
        Ok(list)
    }

    /// The next call asks the store for the latest run: after a run this process made.
    fn look_again(&self) {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).asked = None;
    }

    fn cached(&self) -> Option<Arc<model::Model>> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(Arc::clone)
    }

    /// Appends the call to the audit log (`details` from [`audit::details`]). A call that
    /// changes something waits for its row's commit; a read only queues it (see [`audit`]).
    pub(crate) async fn audit(&self, client: &Client, tool: &str, details: Json, changes: bool) {
        let entry = AuditEntry {
            actor_kind: client.kind,
            actor: client.actor.clone(),
            action: audit::prefix(tool, audit::MAX_ACTION_BYTES).into_owned(),
            target: None,
            details,
        };
        if changes {
            self.audit_log.write(entry).await
        } else {
            self.audit_log.record(entry).await
        }
    }

    /// Waits until every audit row queued so far is committed: before the process ends.
    pub(crate) async fn flush_audit(&self) {
        self.audit_log.flush().await
    }
}

impl ServerHandler for LabServer {
    #[allow(deprecated)]
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_resources()
                .enable_resources_subscribe()
                .enable_resources_list_changed()
                .enable_logging()
                .enable_completions()
                .enable_prompts()
                .enable_tools()
                .build(),
        )
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
                 explain_deviation for one problem; lookup_ip before picking an address. \
                 Resources: each Git document as labctl://<Kind>/<name>, the open deviations \
                 as labctl://plan/latest, recent runs as labctl://status, JSON Schemas as \
                 labctl://schemas/<kind>; subscribe to one to hear when a run changes it.",
        )
    }

    /// Desired-state documents, the latest plan and the schemas; read scope, like the tools.
    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourcesResult, ErrorData> {
        if !self.caller(&context).scopes.allows(Scope::Read) {
            return Ok(rmcp::model::ListResourcesResult::default());
        }
        self.resource_page(request.and_then(|r| r.cursor)).await
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListResourceTemplatesResult, ErrorData> {
        if !self.caller(&context).scopes.allows(Scope::Read) {
            return Ok(rmcp::model::ListResourceTemplatesResult::default());
        }
        Ok(resources::templates())
    }

    async fn read_resource(
        &self,
        request: rmcp::model::ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ReadResourceResponse, ErrorData> {
        if !self.caller(&context).scopes.allows(Scope::Read) {
            return Err(ErrorData::resource_not_found(
                format!("no resource `{}`", request.uri),
                None,
            ));
        }
        self.read_uri(&request.uri)
            .await
            .map(Into::into)
            .map_err(|mut e| {
                // A message names the URI asked for: never a megabyte of it.
                e.message = audit::prefix(&e.message, 512).into_owned().into();
                e
            })
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: rmcp::model::SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if !self.caller(&context).scopes.allows(Scope::Read) {
            return Err(ErrorData::resource_not_found(
                "no resource to subscribe to",
                None,
            ));
        }
        self.subscribe(&request.uri)
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: rmcp::model::UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        LabServer::unsubscribe(self, &request.uri);
        Ok(())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &rmcp::model::SubscriptionFilter,
    ) -> Option<rmcp::model::SubscriptionFilter> {
        Some(notify::accepted_filter(requested))
    }

    async fn listen(&self, context: rmcp::service::SubscriptionContext) -> Result<(), ErrorData> {
        if !self
            .caller(context.request_context())
            .scopes
            .allows(Scope::Read)
        {
            return Err(ErrorData::resource_not_found("nothing to listen to", None));
        }
        LabServer::listen(self, context).await;
        Ok(())
    }

    #[allow(deprecated)]
    async fn set_level(
        &self,
        request: rmcp::model::SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.set_log_level(request.level);
        Ok(())
    }

    async fn on_initialized(&self, context: rmcp::service::NotificationContext<RoleServer>) {
        self.start_following(context.peer);
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListPromptsResult, ErrorData> {
        Ok(prompts::list(&self.caller(&context)))
    }

    async fn get_prompt(
        &self,
        request: rmcp::model::GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::GetPromptResponse, ErrorData> {
        let client = self.caller(&context);
        self.prompt(&client, &request.name, request.arguments)
            .await
            .map(Into::into)
    }

    async fn complete(
        &self,
        request: rmcp::model::CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CompleteResult, ErrorData> {
        use rmcp::model::Reference;
        let client = self.caller(&context);
        let given = request.context.as_ref().and_then(|c| c.arguments.as_ref());
        Ok(match &request.r#ref {
            Reference::Prompt(p) => {
                self.complete_prompt(&client, &p.name, &request.argument, given)
                    .await
            }
            Reference::Resource(r) => {
                self.complete_resource(&client, &r.uri, &request.argument)
                    .await
            }
            _ => rmcp::model::CompleteResult::default(),
        })
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let client = self.caller(&context);
        Ok(ListToolsResult::with_all_items(
            self.tools_for(&client).map(|t| t.tool.clone()).collect(),
        ))
    }

    /// Without a request to say who asks: only what this server's own client may see (on
    /// HTTP nothing, so no tool's existence shows through rmcp's header checks).
    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools_for(&self.client)
            .find(|t| t.tool.name == name)
            .map(|t| t.tool.clone())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let client = self.caller(&context);
        let args = Json::Object(request.arguments.unwrap_or_default());
        let mut server = self.clone();
        server.call = context.meta.get_progress_token().map(|token| notify::Call {
            peer: context.peer.clone(),
            token,
        });
        match server.invoke(&client, &request.name, args).await {
            Ok(value) => Ok(CallToolResult::structured(value).into()),
            Err(Invoked::Unknown(message)) => Err(ErrorData::invalid_params(message, None)),
            Err(Invoked::Failed(e)) => {
                Ok(CallToolResult::error(vec![ContentBlock::text(e.message)]).into())
            }
        }
    }
}

/// Why a tool gave no answer.
enum Invoked {
    /// No such tool for this caller (a protocol error).
    Unknown(String),
    /// The tool ran and failed, or its arguments were refused (a tool error).
    Failed(ToolError),
}

impl LabServer {
    /// Calls the tool `name` as this server's own client, in process: what `tools/call`
    /// does without a transport (scope, argument limits, deadline, audit). For embedding and
    /// for measuring the tools apart from the protocol. The error is the tool's message.
    pub async fn call(&self, name: &str, args: Json) -> Result<Json, String> {
        self.invoke(&self.client, name, args)
            .await
            .map_err(|e| match e {
                Invoked::Unknown(message) => message,
                Invoked::Failed(e) => e.message,
            })
    }

    /// Calls the tool `name` as `client` would over `tools/call`: a tool outside its scope is
    /// answered as one that does not exist; arguments are measured before any work, the work
    /// has a deadline, and the call is audited. Prompts gather their data through here too.
    async fn invoke(&self, client: &Client, name: &str, args: Json) -> Result<Json, Invoked> {
        let started = Instant::now();
        let tool = self
            .tools_for(client)
            .find(|t| t.tool.name == name)
            .map(|t| (Arc::clone(&t.handler), t.documents, t.scope));
        let Some((handler, documents, scope)) = tool else {
            let known: Vec<&str> = self
                .tools_for(client)
                .map(|t| t.tool.name.as_ref())
                .collect();
            let hint = crate::validate::did_you_mean(name, known.iter().copied())
                .map(|s| format!(" Did you mean `{s}`?"))
                .unwrap_or_default();
            let message = format!(
                "no tool `{}`.{hint} Tools: {}",
                audit::prefix(name, audit::MAX_ACTION_BYTES),
                known.join(", ")
            );
            let ms = started.elapsed().as_millis();
            let details = audit::details(&args, &[], "unknown-tool", Some(&message), ms);
            self.audit(client, name, details, false).await;
            return Err(Invoked::Unknown(message));
        };
        let result = match limits::check_arguments(name, &args, documents) {
            Ok(()) => {
                let call = handler(self.clone(), args.clone(), client.clone());
                self.budget.within(name, call).await
            }
            Err(e) => Err(e),
        };
        let elapsed = started.elapsed().as_millis();
        let (outcome, error) = match &result {
            Ok(_) => ("ok", None),
            Err(e) => ("error", Some(e.message.as_str())),
        };
        let details = audit::details(&args, documents, outcome, error, elapsed);
        self.audit(client, name, details, scope != Scope::Read)
            .await;
        result.map_err(Invoked::Failed)
    }
}

fn parse<I: DeserializeOwned>(args: Json) -> Result<I, ToolError> {
    serde_json::from_value(args).map_err(|e| ToolError::new(format!("invalid arguments: {e}")))
}

fn to_json<O: Serialize>(value: O) -> Result<Json, ToolError> {
    serde_json::to_value(value)
        .map_err(|e| ToolError::new(format!("cannot encode the answer: {e}")))
}

/// How one tool is answered: the server, the arguments and the caller in, the JSON answer out.
type Handler = Arc<
    dyn Fn(LabServer, Json, Client) -> BoxFuture<'static, Result<Json, ToolError>> + Send + Sync,
>;

/// One tool: what `tools/list` shows, the scope a caller needs to see and call it, and how it
/// is answered. [`tool_table`] is the only place a tool is declared.
struct ToolDef {
    tool: Tool,
    scope: Scope,
    handler: Handler,
    /// Arguments that are documents (name, largest size in bytes): exempt from the limit on
    /// strings ([`limits::MAX_STRING_BYTES`]), and audited as their size and hash only.
    documents: &'static [(&'static str, usize)],
}

impl ToolDef {
    /// A read tool (read scope): only reads the store, talks to nothing outside it.
    fn read<I, O>(
        name: &'static str,
        title: &str,
        description: &'static str,
        handler: Handler,
    ) -> ToolDef
    where
        I: JsonSchema + 'static,
        O: JsonSchema + 'static,
    {
        let input = schema_for_input::<I>().expect("tool inputs are objects");
        let tool = Tool::new(name, description, input)
            .with_title(title)
            .with_raw_output_schema(schema_for_output::<O>())
            .with_annotations(
                ToolAnnotations::with_title(title)
                    .read_only(true)
                    .destructive(false)
                    .idempotent(true)
                    .open_world(false),
            );
        ToolDef {
            tool,
            scope: Scope::Read,
            handler,
            documents: &[],
        }
    }

    /// Declares the arguments that are documents (see [`ToolDef::documents`]).
    fn with_documents(mut self, documents: &'static [(&'static str, usize)]) -> Self {
        self.documents = documents;
        self
    }
}

/// A tool answered from the latest reconciled model (and the store): arguments parsed, the
/// model read (or taken from the cache), `f` asked.
fn on_model<I, O, F, Fut>(f: F) -> Handler
where
    I: DeserializeOwned + Send + 'static,
    O: Serialize + 'static,
    F: Fn(LabServer, Arc<model::Model>, I) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, ToolError>> + Send + 'static,
{
    let f = Arc::new(f);
    Arc::new(move |server: LabServer, args: Json, _: Client| {
        let f = Arc::clone(&f);
        let answer: BoxFuture<'static, Result<Json, ToolError>> = Box::pin(async move {
            let input = parse::<I>(args)?;
            let model = server.model().await?;
            to_json(f(server, model, input).await?)
        });
        answer
    })
}

/// Every tool, in the order `tools/list` shows them; `propose_change` only when there is a
/// repository to propose to, `trigger_reconcile` only when runs can be requested from a
/// controller.
fn tool_table(with_controller: bool, with_proposer: bool) -> Vec<ToolDef> {
    use types::*;
    let mut tools = vec![
        ToolDef::read::<SummaryInput, SummaryOutput>(
            "infrastructure_summary",
            "Lab overview",
            "Overview of the whole lab from the latest reconcile run: how many resources of \
             each kind (Pool, Device, DhcpReservation, Route, McpServer) are synced, \
             out-of-sync or unknown, open deviations by severity, and the last run. Start here.",
            on_model(|s, m, _: SummaryInput| async move {
                tools::infrastructure_summary(&s.store, &m, &s.open_deviations().await?).await
            }),
        ),
        ToolDef::read::<ListDevicesInput, ListDevicesOutput>(
            "list_devices",
            "List devices",
            "Devices (VMs, containers, hosts) in the reconciled model, sorted by name, with \
             their status, addresses, pool path and labels. Filter by pool (name or path: the \
             devices in it and in the pools below it; a trailing * matches a path prefix), type \
             (vm, lxc, physical…), status (synced, out-of-sync, unknown, unobserved), label \
             (key=value, e.g. role=inference) or dimension (key=value, inherited from pools, \
             e.g. gpu=true). Paginated: pass nextCursor back as cursor. Use `fields` to return \
             only what you need (add services, dimensions, desired/observed for details).",
            on_model(|_, m, i| async move { tools::list_devices(&m, i) }),
        ),
        ToolDef::read::<GetDeviceInput, GetDeviceOutput>(
            "get_device",
            "Get one device",
            "One device by name (case-insensitive) or by one of its IPv4 addresses: its \
             labels, pool path, services and effective dimensions from Git, what providers \
             expected and observed live, its status, its DHCP reservations and their open \
             deviations. An unknown name gives an error listing close names.",
            on_model(|s, m, i| async move {
                tools::get_device(&s.store, &m, &s.open_deviations().await?, i).await
            }),
        ),
        ToolDef::read::<LookupIpInput, LookupIpOutput>(
            "lookup_ip",
            "Who uses an IP",
            "Which DHCP reservation, device, route backend or MCP server uses an IPv4 address, \
             in Git or live — or that it is free — plus the free addresses nearest to it in its \
             /24. Use before choosing an address for something new.",
            on_model(|_, m, i| async move { tools::lookup_ip(&m, i) }),
        ),
        ToolDef::read::<GetDriftInput, GetDriftOutput>(
            "get_drift",
            "Open drift",
            "Open deviations between Git and the live lab, worst first: missing (in Git, not \
             live), unmanaged (live, not in Git), drifted (a field differs, with expected and \
             actual values). Filter by kind, minSeverity (low, medium, high, critical) and \
             since (opened within e.g. 24h, 7d). Paginated with cursor.",
            on_model(|s, m, i| async move {
                tools::get_drift(&s.store, &m, &s.open_deviations().await?, i).await
            }),
        ),
        ToolDef::read::<ExplainDeviationInput, ExplainDeviationOutput>(
            "explain_deviation",
            "Explain a deviation",
            "The whole story of one deviation (kind, name, optional field such as spec.ip): \
             expected vs actual, severity, why it matters, the suggested remediation, and \
             every time it opened and was resolved.",
            on_model(|s, m, i| async move { tools::explain_deviation(&s.store, &m, i).await }),
        ),
        ToolDef::read::<ReconcileStatusInput, ReconcileStatusOutput>(
            "get_reconcile_status",
            "Reconcile runs",
            "Recent reconcile runs, newest first (outcome, commit, counts, errors such as \
             unreachable providers), and when each provider was last observed.",
            on_model(|s, m, i| async move { tools::get_reconcile_status(&s.store, &m, i).await }),
        ),
        ToolDef::read::<ValidateInput, ValidateOutput>(
            "validate_definition",
            "Validate YAML",
            "Check desired-state YAML (one or more documents: Pool, Device, DhcpReservation, \
             Route, McpServer, Config) exactly as `labctl validate` would, without writing \
             anything: every error with file:line:column, the document, the field and what to \
             do. Checks the text on its own, not against the rest of the repository.",
            // Needs no model: it answers even before the first run. Its work grows with the
            // caller's text, so it runs on the blocking pool, a few at a time.
            Arc::new(|server: LabServer, args: Json, _: Client| {
                Box::pin(async move {
                    let input = parse::<ValidateInput>(args)?;
                    server
                        .budget
                        .cpu(move || to_json(tools::validate_definition(input)))
                        .await
                })
            }),
        )
        .with_documents(&[("yaml", limits::MAX_DEFINITION_BYTES)]),
        ToolDef::read::<ListPoolsInput, ListPoolsOutput>(
            "list_pools",
            "List pools",
            "Resource pools of the hierarchy (e.g. /homelab/compute/gpu-nodes), sorted by path, \
             with declared capacity and usage (cores, memoryMiB and storageGiB of the guests \
             (vm, lxc) among the pool's members and its child pools' members, from their Git \
             specs, and the count of all those members); overCapacity names what usage \
             exceeds. Filter by pathPrefix, type \
             (compute, storage, network) or dimensions [\"gpu=true\"] (effective, i.e. \
             inherited). Paginated with cursor; `fields` picks what to return.",
            on_model(|_, m, i| async move { tools::list_pools(&m, i) }),
        ),
        ToolDef::read::<GetPoolInput, GetPoolOutput>(
            "get_pool",
            "Get one pool",
            "One pool by name or path (case-insensitive): its resolved path and ancestors, \
             every effective property and dimension with the pool it is inherited from, its \
             child pools, direct members and all members below it, capacity against usage, and \
             the open deviations of the pool and its member devices. An unknown pool gives an \
             error with the closest path.",
            on_model(|s, m, i| async move {
                tools::get_pool(&s.store, &m, &s.open_deviations().await?, i).await
            }),
        ),
        ToolDef {
            // A step of proposing a change (then propose_change): propose scope.
            scope: Scope::Propose,
            ..ToolDef::read::<FindPlacementInput, FindPlacementOutput>(
                "find_placement",
                "Find a pool for a new guest",
                "Where a new VM or container needing cores, memoryMiB and/or storageGiB (and \
                 pool dimensions such as [\"gpu=true\"], a pathPrefix, a pool type, default \
                 compute) could go: candidate pools ranked by what is left after it, from each \
                 pool's declared capacity less what its guests use per Git (as list_pools \
                 counts it). Each says whether it fits and why, amount by amount; an amount a \
                 pool declares no capacity for is not known to be free, so that pool does not \
                 fit. Proxmox VE nodes are ranked the same way from the cores and memory they \
                 report less what their guests use. Use the pool's path and proxmoxPool, and the \
                 node, in a new Device document.",
                on_model(|_, m, i| async move { tools::find_placement(&m, i) }),
            )
        },
        ToolDef::read::<ListReservationsInput, ListReservationsOutput>(
            "list_dhcp_reservations",
            "List DHCP reservations",
            "DHCP reservations, in Git and live-only (unmanaged), sorted by address: subnet, \
             IP, MAC, hostname, the device each belongs to, status, and the live address when \
             it differs from Git's. Filter by subnet (10.0.1.0/24) or status. Paginated with \
             cursor. Use lookup_ip for one address.",
            on_model(|_, m, i| async move { tools::list_dhcp_reservations(&m, i) }),
        ),
        ToolDef::read::<ListRoutesInput, ListRoutesOutput>(
            "list_routes",
            "List routes",
            "Reverse-proxy routes (Traefik, Caddy), sorted by host: host, path prefix, backend \
             URLs or device/service, entry points, middlewares, TLS resolver, which providers \
             serve it and its status. Filter by host (case-insensitive substring, e.g. \
             `grafana`) or status. Paginated with cursor.",
            on_model(|_, m, i| async move { tools::list_routes(&m, i) }),
        ),
        ToolDef::read::<ListMcpServersInput, ListMcpServersOutput>(
            "list_mcp_servers",
            "List MCP servers",
            "MCP servers registered in Git with their observed health: whether each answered, \
             what it calls itself, the tools Git expects against those it offered \
             (missingTools), and status. Filter by status or reachable (true/false). \
             Paginated with cursor; `fields` adds offeredTools, serverVersion and more.",
            on_model(|_, m, i| async move { tools::list_mcp_servers(&m, i) }),
        ),
        ToolDef::read::<ListSnapshotsInput, ListSnapshotsOutput>(
            "list_snapshots",
            "List observed snapshots",
            "What each provider observed, as stored snapshots, newest first: a snapshot spans \
             the runs (firstRun..lastRun) that saw the same thing, so a new one means the live \
             lab changed. Filter by provider. Pass two ids to diff_snapshots. Paginated with \
             cursor.",
            on_model(|s, m, i| async move { tools::list_snapshots(&s.store, &m, i).await }),
        ),
        ToolDef::read::<DiffSnapshotsInput, DiffSnapshotsOutput>(
            "diff_snapshots",
            "Diff two snapshots",
            "What changed in the live lab between two observed snapshots of one provider: \
             every added, removed or changed value as a JSON Pointer with before and after, \
             and the resource (Kind/name) it belongs to. Give from and to ids, or only from \
             (compared to that provider's latest), or only provider (its two latest). \
             Filter by pathPrefix. Paginated with cursor.",
            on_model(|s, m, i| async move { tools::diff_snapshots(&s.store, &m, i).await }),
        ),
    ];
    if with_proposer {
        let title = "Propose a change to Git";
        let input = schema_for_input::<propose::ProposeChangeInput>().expect("an object");
        let tool = Tool::new(
            "propose_change",
            "Propose a change to the lab's desired state as a pull request a person reviews \
             and merges; nothing in the lab changes. Give `documents` (YAML of new resources, or \
             of declared ones to replace) or `edits` (resource Kind/name, field path, value), \
             and a `reason`. labctl validates the repository with the change (an invalid \
             change comes back with its diagnostics: file:line, field, help, and nothing is \
             written), plans it against the latest run's observation, commits it on a \
             `labctl/proposal/…` branch and opens the pull request. The answer names the \
             branch, the pull request URL and what labctl would do once it is merged. The \
             same proposal twice lands on the same branch and pull request. Use lookup_ip \
             and find_placement first to pick addresses and pools.",
            input,
        )
        .with_title(title)
        .with_raw_output_schema(schema_for_output::<propose::ProposeChangeOutput>())
        .with_annotations(
            ToolAnnotations::with_title(title)
                .read_only(false)
                .destructive(false)
                .idempotent(true)
                .open_world(true),
        );
        tools.push(ToolDef {
            tool,
            scope: Scope::Propose,
            documents: &[("documents", limits::MAX_DEFINITION_BYTES)],
            handler: Arc::new(|server: LabServer, args: Json, client: Client| {
                Box::pin(async move {
                    let input = parse::<propose::ProposeChangeInput>(args)?;
                    let Some(ctx) = server.proposer.clone() else {
                        return Err(ToolError::new(
                            "this server has no repository to propose changes to",
                        ));
                    };
                    to_json(propose::propose_change(&ctx, input, &client.actor).await?)
                })
            }),
        });
    }
    if with_controller {
        tools.push(ToolDef {
            tool: trigger::tool(),
            // It changes what the controller does.
            scope: Scope::Admin,
            documents: &[],
            handler: Arc::new(|server: LabServer, args: Json, client: Client| {
                Box::pin(async move {
                    parse::<trigger::TriggerInput>(args)?;
                    let Some(controller) = server.controller.clone() else {
                        return Err(ToolError::new(
                            "this server has no controller to ask for a run",
                        ));
                    };
                    to_json(trigger::trigger(&server, &controller, &client.actor).await?)
                })
            }),
        });
    }
    for t in &mut tools {
        t.tool.input_schema = Arc::new(standard_schema(&t.tool.input_schema, true));
        if let Some(out) = &t.tool.output_schema {
            t.tool.output_schema = Some(Arc::new(standard_schema(out, false)));
        }
    }
    tools
}

/// `schema` in standard, compact JSON Schema: schemars' integer formats (`uint32`, `uint64`, …)
/// replaced by the keywords they mean (JSON Schema defines no such formats, and validators such
/// as Ajv warned about every one: 86 per `tools/list`), an unsigned one keeping `minimum: 0`;
/// no `$schema` (2020-12 is MCP's default dialect). With `docs: false` the descriptions go too:
/// for output schemas, which clients validate results with but do not show a model (the tool's
/// description says what it returns); they were 19 KB of a 60 KB `tools/list`.
fn standard_schema(
    schema: &serde_json::Map<String, Json>,
    docs: bool,
) -> serde_json::Map<String, Json> {
    fn fix(value: &mut Json, docs: bool) {
        match value {
            Json::Object(map) => {
                let unsigned = match map.get("format").and_then(Json::as_str) {
                    Some(f) if f.starts_with("uint") => Some(true),
                    Some(f) if f.starts_with("int") => Some(false),
                    _ => None,
                };
                if let Some(unsigned) = unsigned {
                    map.remove("format");
                    if unsigned && !map.contains_key("minimum") {
                        map.insert("minimum".into(), json!(0));
                    }
                }
                map.remove("$schema");
                if !docs {
                    map.remove("description");
                }
                for (keyword, v) in map.iter_mut() {
                    match keyword.as_str() {
                        // Maps of name → schema: the names are data.
                        "properties" | "$defs" | "definitions" | "patternProperties" => {
                            if let Json::Object(schemas) = v {
                                schemas.values_mut().for_each(|s| fix(s, docs));
                            }
                        }
                        // Values, not schemas.
                        "enum" | "const" | "default" | "examples" | "required" => {}
                        _ => fix(v, docs),
                    }
                }
            }
            Json::Array(items) => items.iter_mut().for_each(|s| fix(s, docs)),
            _ => {}
        }
    }
    let mut value = Json::Object(schema.clone());
    fix(&mut value, docs);
    match value {
        Json::Object(map) => map,
        _ => unreachable!("an object stays an object"),
    }
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
        Json::String(s) if s.len() > 256 => json!(audit::fingerprint(s)),
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
    fn schemas_are_standard_and_output_schemas_compact() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "description": "top",
            "properties": {
                "description": {"type": "string", "description": "a field named description"},
                "n": {"type": "integer", "format": "uint32", "description": "a count"},
                "kind": {"enum": ["description"], "default": {"description": "data"}}
            },
            "$defs": {"X": {"description": "x", "items": {"description": "i"}}}
        });
        let map = schema.as_object().unwrap();
        let output = Json::Object(standard_schema(map, false));
        assert_eq!(
            output,
            json!({
                "properties": {
                    "description": {"type": "string"},
                    "n": {"type": "integer", "minimum": 0},
                    "kind": {"enum": ["description"], "default": {"description": "data"}}
                },
                "$defs": {"X": {"items": {}}}
            })
        );
        let input = Json::Object(standard_schema(map, true));
        assert_eq!(input["description"], "top");
        assert_eq!(input["properties"]["n"]["description"], "a count");
        assert!(input.get("$schema").is_none());
        // What every tool costs a client to list (60,350 bytes before output schemas lost
        // their descriptions).
        let all = tool_table(true, true);
        let bytes = serde_json::to_vec(&all.iter().map(|t| &t.tool).collect::<Vec<_>>())
            .unwrap()
            .len();
        assert!(bytes < 45_000, "tools/list is {bytes} bytes");
    }

    #[test]
    fn every_tool_has_schemas_and_read_only_annotations() {
        let defs = tool_table(true, false);
        assert_eq!(defs.len(), 17);
        assert_eq!(tool_table(false, false).len(), 16);
        assert_eq!(tool_table(true, true).len(), 18);
        let names: std::collections::BTreeSet<_> = defs.iter().map(|d| &d.tool.name).collect();
        assert_eq!(names.len(), defs.len(), "a tool is declared twice");
        let last = defs.last().unwrap();
        assert_eq!(
            (last.tool.name.as_ref(), last.scope),
            ("trigger_reconcile", Scope::Admin)
        );
        for d in defs.iter().filter(|d| d.tool.name != "trigger_reconcile") {
            let t = &d.tool;
            let scope = match t.name.as_ref() {
                "find_placement" => Scope::Propose,
                _ => Scope::Read,
            };
            assert_eq!(d.scope, scope, "{}", t.name);
            assert!(t.description.as_ref().is_some_and(|d| d.len() > 40));
            assert_eq!(t.input_schema.get("type"), Some(&json!("object")));
            assert!(t.output_schema.is_some(), "{}", t.name);
            let a = t.annotations.as_ref().unwrap();
            assert_eq!(a.read_only_hint, Some(true));
            assert_eq!(a.open_world_hint, Some(false));
        }
    }
}
