//! `labctl mcp`: serve MCP over stdio (trusted as the local user), or over streamable HTTP
//! with bearer tokens (`--http ADDR --tokens FILE`), answering from the state store.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};

use super::HostArgs;
use super::SourceArgs;
use labctl::controller::{self, Context, Settings};
use labctl::mcp::http::{self, Cidr, HttpOptions};
use labctl::mcp::oauth::{OAuth, OAuthConfig};
use labctl::mcp::{Client, LabServer, Limits, Scope, Scopes, Tokens};
use labctl::store::{ActorKind, RetentionPolicy, Store};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct McpArgs {
    #[command(subcommand)]
    pub command: Option<McpCommand>,
    /// State store (default: see `labctl db`).
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Serve streamable HTTP at this address (path /mcp) instead of stdio. Needs --tokens.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    #[command(flatten)]
    pub face: McpHttpArgs,
    /// Seconds one tool call may take; a call not answered by then gets a tool error.
    #[arg(long, default_value_t = Limits::new().deadline.as_secs_f64(), value_name = "SECONDS")]
    pub tool_deadline: f64,
    /// CPU-heavy tool calls (validate_definition) run at once; more wait (default: the cores
    /// but one, 1 to 4).
    #[arg(long, default_value_t = Limits::new().cpu_slots, value_name = "N")]
    pub cpu_slots: usize,
    #[command(flatten)]
    pub source: McpSourceArgs,
    #[command(flatten)]
    pub host: HostArgs,
    #[command(flatten)]
    pub retention: super::RetentionArgs,
}

/// How the MCP HTTP face is reached and bounded: shared by `labctl mcp --http` and
/// `labctl serve --mcp-http` (each names its address argument `http`).
#[derive(Args)]
pub struct McpHttpArgs {
    /// Bearer tokens accepted over HTTP: YAML `tokens: [{name, sha256, scopes}]`, scopes from
    /// read, propose, admin; each token kept as its SHA-256 (see `labctl mcp hash-token`).
    #[arg(
        long,
        env = "LABCTL_MCP_TOKENS",
        value_name = "FILE",
        requires = "http"
    )]
    pub tokens: Option<PathBuf>,
    /// A browser origin allowed to call over HTTP, e.g. https://app.example:443, or with port
    /// `*` for any (repeatable). Requests with any other Origin header are refused; a loopback
    /// listener also accepts this host's own pages (http://127.0.0.1:*, localhost, [::1]).
    #[arg(long = "allow-origin", value_name = "ORIGIN", requires = "http")]
    pub allow_origins: Vec<String>,
    /// A Host header accepted over HTTP besides loopback and the listening address: the name
    /// clients use, `name` or `name:port` (repeatable). Others are refused (DNS rebinding).
    #[arg(long = "allow-host", value_name = "HOST", requires = "http")]
    pub allow_hosts: Vec<String>,
    /// Only clients in this address block may connect over HTTP (repeatable; default: any).
    #[arg(long = "allow-client", value_name = "CIDR", requires = "http")]
    pub allow_clients: Vec<Cidr>,
    /// Accept OAuth access tokens (JWTs) issued by this authorization server (its issuer
    /// identifier: Authelia, Authentik, Keycloak, any OIDC issuer), checked against its JWKS.
    /// Clients find it through /.well-known/oauth-protected-resource.
    #[arg(long, env = "LABCTL_OAUTH_ISSUER", value_name = "URL", requires_all = ["http", "oauth_audience"])]
    pub oauth_issuer: Option<String>,
    /// This MCP endpoint as clients reach it, e.g. https://labctl.lab.example/mcp: the
    /// audience OAuth tokens must name.
    #[arg(
        long,
        env = "LABCTL_OAUTH_AUDIENCE",
        value_name = "URL",
        requires = "oauth_issuer"
    )]
    pub oauth_audience: Option<String>,
    /// The issuer's JWKS (default: jwks_uri of its /.well-known/openid-configuration).
    #[arg(
        long,
        env = "LABCTL_OAUTH_JWKS_URL",
        value_name = "URL",
        requires = "oauth_issuer"
    )]
    pub oauth_jwks_url: Option<String>,
    /// A value of the token's scope, scp, groups or roles claim and the labctl scope it grants
    /// (read, propose, admin), e.g. lab-admins=admin (repeatable; default labctl:read=read,
    /// labctl:propose=propose, labctl:admin=admin).
    #[arg(
        long = "oauth-scope",
        env = "LABCTL_OAUTH_SCOPES",
        value_name = "VALUE=SCOPE",
        value_delimiter = ',',
        requires = "oauth_issuer"
    )]
    pub oauth_scopes: Vec<String>,
    /// Serve HTTP to callers without a token too, each holding the read scope: for conformance
    /// suites and tests. Refused unless the address is loopback.
    #[arg(long, requires = "http")]
    pub insecure_no_auth: bool,
    /// Do not serve the status pages (/, /drift, /runs, /pools, /resources/…) beside MCP.
    #[arg(long, requires = "http")]
    pub no_pages: bool,
    /// The header a single-sign-on reverse proxy names its user in (Authelia and Authentik
    /// set Remote-User): the status pages take it as logged in, from --trusted-proxy only.
    #[arg(
        long,
        env = "LABCTL_WEB_USER_HEADER",
        value_name = "NAME",
        requires_all = ["http", "trusted_proxies"]
    )]
    pub user_header: Option<String>,
    /// A reverse proxy whose --user-header is believed, and whose X-Forwarded-Proto: https
    /// makes the session cookie Secure (repeatable).
    #[arg(
        long = "trusted-proxy",
        env = "LABCTL_WEB_TRUSTED_PROXIES",
        value_name = "CIDR",
        value_delimiter = ',',
        requires = "http"
    )]
    pub trusted_proxies: Vec<Cidr>,
    /// Largest HTTP request body in bytes.
    #[arg(long, default_value_t = 1024 * 1024, value_name = "BYTES")]
    pub max_body_bytes: usize,
    /// HTTP requests handled at once; more are refused with 503.
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub max_in_flight: usize,
    /// Open MCP sessions over HTTP; a new one beyond is refused with 503.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_sessions: usize,
    /// Requests per second each token may make on average (429 beyond).
    #[arg(long, default_value_t = 50.0, value_name = "N")]
    pub rate: f64,
    /// Requests a token may make in a burst.
    #[arg(long, default_value_t = 100.0, value_name = "N")]
    pub burst: f64,
}

impl McpHttpArgs {
    /// The HTTP options, with the tokens file read; an unreadable or malformed file is a
    /// usage error that names it.
    pub fn options(&self) -> Result<HttpOptions, String> {
        let oauth = self.oauth()?;
        let tokens = match (&self.tokens, self.insecure_no_auth || oauth.is_some()) {
            (Some(path), _) => Tokens::load(path).map_err(|e| e.to_string())?,
            (None, true) => Tokens::default(),
            (None, false) => {
                return Err(
                    "serving MCP over HTTP needs --tokens FILE (labctl mcp hash-token helps \
                     write it) or --oauth-issuer"
                        .into(),
                )
            }
        };
        Ok(HttpOptions {
            tokens,
            oauth,
            insecure_no_auth: self.insecure_no_auth,
            allow_origins: self.allow_origins.clone(),
            allow_clients: self.allow_clients.clone(),
            allow_hosts: self.allow_hosts.clone(),
            max_body_bytes: self.max_body_bytes,
            max_in_flight: self.max_in_flight,
            max_sessions: self.max_sessions,
            rate_per_second: self.rate,
            rate_burst: self.burst,
        })
    }
}

impl McpHttpArgs {
    /// The status pages for a face on `local` with `options`, answering from `server`; an
    /// empty router under --no-pages.
    pub fn pages(
        &self,
        server: &LabServer,
        options: &HttpOptions,
        local: std::net::SocketAddr,
    ) -> Result<axum::Router, String> {
        if self.no_pages {
            return Ok(axum::Router::new());
        }
        let user_header = self
            .user_header
            .as_deref()
            .map(|h| {
                axum::http::HeaderName::try_from(h.trim())
                    .map_err(|_| format!("--user-header `{h}` is not an HTTP header name"))
            })
            .transpose()?;
        let access = labctl::web::auth::AccessOptions {
            tokens: options.tokens.clone(),
            open: options.insecure_no_auth,
            user_header,
            proxies: self.trusted_proxies.clone(),
            ..Default::default()
        };
        let web = labctl::web::Web::new(
            server.clone(),
            access,
            http::allowed_hosts(local, &options.allow_hosts),
            options.allow_clients.clone(),
        );
        Ok(labctl::web::router(Arc::new(web)))
    }

    /// The OAuth settings, checked; `None` without --oauth-issuer.
    fn oauth(&self) -> Result<Option<Arc<OAuth>>, String> {
        let (Some(issuer), Some(audience)) = (&self.oauth_issuer, &self.oauth_audience) else {
            return Ok(None);
        };
        let scopes = if self.oauth_scopes.is_empty() {
            OAuthConfig::default_scopes()
        } else {
            self.oauth_scopes
                .iter()
                .map(|pair| {
                    let (value, scope) = pair.split_once('=').ok_or_else(|| {
                        format!("--oauth-scope `{pair}`: write VALUE=SCOPE, e.g. lab-admins=admin")
                    })?;
                    let scope = match scope.trim() {
                        "read" => Scope::Read,
                        "propose" => Scope::Propose,
                        "admin" => Scope::Admin,
                        other => {
                            return Err(format!(
                                "--oauth-scope `{pair}`: `{other}` is not a scope (read, propose, admin)"
                            ))
                        }
                    };
                    Ok((value.trim().to_string(), scope))
                })
                .collect::<Result<Vec<_>, String>>()?
        };
        OAuth::new(OAuthConfig {
            issuer: issuer.clone(),
            audience: audience.clone(),
            jwks_url: self.oauth_jwks_url.clone(),
            scopes,
        })
        .map(|o| Some(Arc::new(o)))
    }
}

#[derive(Subcommand)]
pub enum McpCommand {
    /// Read a token on stdin and print its SHA-256, for the --tokens file.
    HashToken,
    /// Print the configuration that starts this labctl as a stdio MCP server in a desktop
    /// client, with this binary's path and the store (--database-url) spelled out: desktop
    /// clients pass almost no environment, so nothing may be left to it.
    Config {
        /// The client: claude (Claude Desktop), vscode (.vscode/mcp.json) or cursor.
        #[arg(value_enum)]
        client: DesktopClient,
        /// The store the server reads (default: this host's, as `labctl db` says).
        #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
        database_url: Option<String>,
    },
}

/// A desktop MCP client whose configuration `labctl mcp config` prints.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum DesktopClient {
    Claude,
    Vscode,
    Cursor,
}

/// `mcp config`: 0 printed, 1 this binary's path is unknown.
fn print_config(client: DesktopClient, database_url: Option<&str>) -> ExitCode {
    let command = match std::env::current_exe() {
        Ok(path) => path.display().to_string(),
        Err(e) => {
            errln!("error: cannot tell where this labctl is: {e}");
            return ExitCode::FAILURE;
        }
    };
    let url = super::db::database_url(database_url);
    let args = serde_json::json!(["mcp", "--database-url", url]);
    let server = serde_json::json!({ "command": command, "args": args });
    let config = match client {
        DesktopClient::Claude | DesktopClient::Cursor => {
            serde_json::json!({ "mcpServers": { "labctl": server } })
        }
        DesktopClient::Vscode => serde_json::json!({
            "servers": { "labctl": { "type": "stdio", "command": command, "args": args } }
        }),
    };
    if url.contains('@') && !url.starts_with("sqlite:") {
        errln!(
            "warning: the store URL holds credentials; prefer a URL without a password and \
             PGPASSFILE, since this file is read by the desktop client"
        );
    }
    outln!(
        "{}",
        serde_json::to_string_pretty(&config).expect("plain JSON")
    );
    ExitCode::SUCCESS
}

/// The repository `trigger_reconcile` reconciles; without `--repo` the tool is not offered.
#[derive(Args)]
pub struct McpSourceArgs {
    /// Repository to reconcile on `trigger_reconcile` (a path or Git URL, as for `reconcile`).
    #[arg(long, value_name = "REPO")]
    pub repo: Option<String>,
    /// Branch, tag or commit SHA to read.
    #[arg(long, value_name = "REV", requires = "repo")]
    pub rev: Option<String>,
    /// Read the work tree, uncommitted edits included, instead of a commit.
    #[arg(long, conflicts_with = "rev", requires = "repo")]
    pub worktree: bool,
    /// Subdirectory of the repository that holds the desired state.
    #[arg(long, value_name = "DIR", requires = "repo")]
    pub path: Option<String>,
    /// Where remote repositories are cloned.
    #[arg(long, env = "LABCTL_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Environment variable that holds an HTTPS token for the Git remote.
    #[arg(long, default_value = "LABCTL_GIT_TOKEN", value_name = "VAR")]
    pub token_env: String,
}

impl McpSourceArgs {
    /// What `trigger_reconcile` runs with; `None` without `--repo`.
    fn settings(&self, host: &HostArgs, retention: RetentionPolicy) -> Option<Settings> {
        let repo = self.repo.clone()?;
        let source = SourceArgs {
            repo,
            rev: self.rev.clone(),
            worktree: self.worktree,
            path: self.path.clone(),
            cache_dir: self.cache_dir.clone(),
            token_env: self.token_env.clone(),
        };
        Some(Settings {
            source: source.spec(),
            path: source.path.clone(),
            host: host.options(),
            controller: controller::identity(),
            retention,
            backoff: Default::default(),
        })
    }
}

/// Serves until the client closes stdin, or (HTTP) until Ctrl-C or SIGTERM. On stdio, stdout
/// carries only MCP messages; logs always go to stderr.
pub fn run(args: &McpArgs) -> ExitCode {
    match &args.command {
        Some(McpCommand::HashToken) => return hash_token(),
        Some(McpCommand::Config {
            client,
            database_url,
        }) => return print_config(*client, database_url.as_deref()),
        None => {}
    }
    let options = match args.http {
        Some(_) => match args.face.options() {
            Ok(options) => Some(options),
            Err(e) => {
                errln!("error: {e}");
                return ExitCode::from(super::EXIT_USAGE);
            }
        },
        None => None,
    };
    let limits = match limits(args) {
        Ok(l) => l,
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    let url = super::db::database_url(args.database_url.as_deref());
    let Some(rt) = super::runtime() else {
        return ExitCode::FAILURE;
    };
    let retention = args.retention.policy();
    let settings = args.source.settings(&args.host, retention);
    // Only a stdio server that starts no run may serve a store it cannot write.
    let may_read_only = args.http.is_none() && settings.is_none();
    let result = rt.block_on(async {
        let (store, writable) = open(&url, may_read_only).await?;
        let controller = settings.map(|s| Arc::new(Context::new(store.clone(), s)));
        let served = match (args.http, options) {
            (Some(addr), Some(options)) => {
                let server = with(
                    LabServer::new(store.clone(), http::http_client()).with_retention(retention),
                    controller,
                )
                .with_limits(limits);
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
                let local = listener.local_addr()?;
                let pages = args
                    .face
                    .pages(&server, &options, local)
                    .map_err(anyhow::Error::msg)?;
                // Always said, whatever LABCTL_LOG: the port chosen for :0 is needed.
                errln!("labctl mcp: listening on http://{local}/mcp");
                http::serve_with(server, listener, options, pages, shutdown_signal()).await
            }
            _ => {
                tracing::info!(store = %store.describe(), "serving MCP on stdio");
                let client = Client {
                    kind: ActorKind::Mcp,
                    actor: "stdio".into(),
                    scopes: Scopes::all(),
                };
                let server = LabServer::new(store.clone(), client);
                let server = if writable {
                    server.with_retention(retention)
                } else {
                    server.with_audit_to_log()
                };
                with(server, controller)
                    .with_limits(limits)
                    .serve_stdio()
                    .await
            }
        };
        store.close().await;
        served.map_err(anyhow::Error::from)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The store, and whether this process may write it. A stdio server (`may_read_only`) that
/// cannot write it opens it read-only, as `labctl status` does, and says so: its tool calls
/// are then audited to stderr. Over HTTP or with `--repo` the store must be writable, for the
/// audit log of remote callers and for the runs.
async fn open(url: &str, may_read_only: bool) -> anyhow::Result<(Store, bool)> {
    let writable = async {
        let store = Store::connect(url).await?;
        // A new database answers "nothing recorded yet" rather than "no such table".
        store.migrate().await?;
        store.check_writable().await?;
        Ok::<_, labctl::store::StoreError>(store)
    };
    let cannot_write = match writable.await {
        Ok(store) => return Ok((store, true)),
        Err(e) if !may_read_only => return Err(e.into()),
        Err(e) => e,
    };
    match Store::open_reader(url).await {
        Ok(Some(store)) => {
            errln!(
                "labctl mcp: {} is read-only for this user ({cannot_write}); serving it \
                 read-only, each tool call audited to stderr (log target labctl::audit)",
                store.describe()
            );
            Ok((store, false))
        }
        // Nothing to read there either: the first error says what went wrong.
        Ok(None) | Err(_) => Err(cannot_write.into()),
    }
}

/// The per-call limits from `--tool-deadline` and `--cpu-slots`.
fn limits(args: &McpArgs) -> Result<Limits, String> {
    let deadline = std::time::Duration::try_from_secs_f64(args.tool_deadline)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            format!(
                "--tool-deadline {} is not a positive number of seconds",
                args.tool_deadline
            )
        })?;
    if args.cpu_slots == 0 {
        return Err("--cpu-slots must be at least 1".into());
    }
    Ok(Limits {
        deadline,
        cpu_slots: args.cpu_slots,
    })
}

fn with(server: LabServer, controller: Option<Arc<Context>>) -> LabServer {
    match controller {
        Some(c) => server.with_controller(c),
        None => server,
    }
}

/// Ctrl-C or SIGTERM (systemd's stop).
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; stop with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// `labctl mcp hash-token`: the token from stdin (one line, surrounding whitespace ignored)
/// to its SHA-256 hex on stdout; the token is never echoed.
fn hash_token() -> ExitCode {
    let mut text = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
        errln!("error: cannot read the token from stdin: {e}");
        return ExitCode::from(super::EXIT_USAGE);
    }
    let token = text.trim();
    if token.is_empty() {
        errln!("error: no token on stdin");
        return ExitCode::from(super::EXIT_USAGE);
    }
    outln!("{}", labctl::mcp::sha256_hex(token));
    ExitCode::SUCCESS
}
