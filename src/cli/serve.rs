//! `labctl serve`: the controller as a daemon (see `labctl::serve`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::{runtime, HostArgs, SourceArgs};
use labctl::controller::{self, Context, Reason, Settings};
use labctl::model::SecretSource;
use labctl::serve::{self, http, notify, triggers};
use labctl::source::{GitLocation, SourceSpec};
use labctl::store::{Severity, Store};

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub host: HostArgs,
    /// State store: sqlite://PATH or postgres://USER@HOST/DB (default: see `labctl db`).
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Where /healthz, /readyz, /hooks/<forge> and /api/reconcile are served.
    #[arg(
        long,
        env = "LABCTL_LISTEN",
        default_value = "127.0.0.1:8420",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,
    /// Serve MCP over streamable HTTP (path /mcp, HTTP+SSE at /sse) at this address too,
    /// answering from the store this daemon writes. Needs --tokens.
    #[arg(long = "mcp-http", env = "LABCTL_MCP_LISTEN", value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    #[command(flatten)]
    pub mcp: super::mcp::McpHttpArgs,
    /// Full runs on this cron schedule (minute hour day month weekday), which observe the
    /// providers again even when Git did not change, so live drift is found.
    #[arg(
        long,
        env = "LABCTL_SCHEDULE",
        default_value = "*/5 * * * *",
        value_name = "CRON"
    )]
    pub schedule: String,
    /// How often a remote repository is fetched to see whether its branch moved.
    #[arg(
        long,
        env = "LABCTL_POLL_SECONDS",
        default_value_t = 60,
        value_name = "SECONDS"
    )]
    pub poll_seconds: u64,
    /// Do not watch a local repository's refs (runs then come from the schedule, webhooks and
    /// requests only).
    #[arg(long, env = "LABCTL_NO_WATCH")]
    pub no_watch: bool,
    /// How long a burst of ref changes may last before it is looked at (one run per burst).
    #[arg(
        long,
        env = "LABCTL_DEBOUNCE_MS",
        default_value_t = 200,
        value_name = "MS"
    )]
    pub debounce_ms: u64,
    /// The shared secret of push webhooks, from a file. Else the variable
    /// LABCTL_WEBHOOK_SECRET, else the systemd credential `webhook-secret`; none: webhooks off.
    #[arg(long, env = "LABCTL_WEBHOOK_SECRET_FILE", value_name = "FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// The bearer token of POST /api/reconcile, from a file. Else LABCTL_ADMIN_TOKEN, else the
    /// systemd credential `admin-token`; none: the endpoint is off.
    #[arg(long, env = "LABCTL_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Send notifications to this ntfy topic URL (https://ntfy.example/labctl); its access
    /// token, if the topic is protected, from LABCTL_NTFY_TOKEN or the credential ntfy-token.
    #[arg(
        long,
        env = "LABCTL_NOTIFY_NTFY",
        value_name = "URL",
        hide_env_values = true
    )]
    pub notify_ntfy: Option<String>,
    /// Send notifications as JSON POSTs to this URL.
    #[arg(
        long,
        env = "LABCTL_NOTIFY_WEBHOOK",
        value_name = "URL",
        hide_env_values = true
    )]
    pub notify_webhook: Option<String>,
    /// Announce new deviations of at least this severity (low, medium, high, critical);
    /// failed runs are always announced.
    #[arg(long, env = "LABCTL_NOTIFY_MIN_SEVERITY", default_value = "high", value_name = "SEVERITY", value_parser = severity)]
    pub notify_min_severity: Severity,
    /// At SIGTERM or SIGINT, how long a run in progress may take to finish before it is
    /// abandoned (recorded as aborted; the leader lock goes with its session).
    #[arg(
        long,
        env = "LABCTL_SHUTDOWN_GRACE",
        default_value_t = 30,
        value_name = "SECONDS"
    )]
    pub shutdown_grace: u64,
    /// First delay before a failed run, or a provider that did not answer, is tried again;
    /// it doubles with each failure in a row (with ±20 % jitter) up to --backoff-max.
    #[arg(long, env = "LABCTL_BACKOFF_BASE", default_value_t = 10, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub backoff_base: u64,
    /// Longest delay between retries.
    #[arg(long, env = "LABCTL_BACKOFF_MAX", default_value_t = 600, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub backoff_max: u64,
    #[command(flatten)]
    pub retention: super::RetentionArgs,
}

/// A secret from `file`, else the variable `env`, else the systemd credential `credential`;
/// `None` when none of them is there, or the credential is empty.
pub(super) fn secret(
    file: Option<&PathBuf>,
    env: &str,
    credential: &str,
) -> Result<Option<Vec<u8>>, String> {
    let source = match file {
        Some(path) => SecretSource::File(path.clone()),
        None if std::env::var_os(env).is_some() => SecretSource::Env(env.into()),
        None => {
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
            match dir.filter(|d| d.join(credential).exists()) {
                Some(_) => SecretSource::SystemdCredential(credential.into()),
                None => return Ok(None),
            }
        }
    };
    let value = labctl::providers::read_secret(&source)?;
    if !value.is_empty() {
        return Ok(Some(value.into_bytes()));
    }
    match source {
        // A unit names every credential it may use (LoadCredential= fails on a missing
        // file), so an empty credential is how an operator says "none".
        SecretSource::SystemdCredential(_) => Ok(None),
        _ => Err(format!("the secret from {source:?} is empty")),
    }
}

fn severity(text: &str) -> Result<Severity, String> {
    Severity::parse(&text.to_ascii_lowercase())
        .ok_or_else(|| format!("`{text}` is not a severity; use low, medium, high or critical"))
}

/// The notification targets the flags name; a URL that is not http(s) is an error.
fn notify_settings(args: &ServeArgs) -> Result<notify::Settings, String> {
    let checked = |flag: &str, url: &String| {
        let parsed = reqwest::Url::parse(url).map_err(|e| {
            format!(
                "{flag}: `{}` is not a URL: {e}",
                labctl::redact::userinfo(url)
            )
        })?;
        match parsed.scheme() {
            "http" | "https" => Ok(url.clone()),
            other => Err(format!("{flag}: scheme `{other}` is not http or https")),
        }
    };
    let mut targets = Vec::new();
    if let Some(url) = &args.notify_ntfy {
        let token = secret(None, "LABCTL_NTFY_TOKEN", "ntfy-token")?
            .map(|t| String::from_utf8_lossy(&t).into_owned());
        targets.push(notify::Target::Ntfy {
            url: checked("--notify-ntfy", url)?,
            token,
        });
    }
    if let Some(url) = &args.notify_webhook {
        targets.push(notify::Target::Webhook {
            url: checked("--notify-webhook", url)?,
        });
    }
    Ok(notify::Settings {
        targets,
        min_severity: args.notify_min_severity,
    })
}

pub fn run(args: &ServeArgs) -> ExitCode {
    let spec = args.source.spec();
    let local_repo = match &spec {
        SourceSpec::Git(GitLocation::Local { path, .. }) => Some(path.clone()),
        SourceSpec::Git(GitLocation::Remote { .. }) => None,
        SourceSpec::Directory(path) => {
            errln!(
                "error: {} is not a Git repository (or --worktree was given): serve reconciles \
                 commits; point it at a repository",
                path.display()
            );
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    let schedule = match triggers::Schedule::parse(&args.schedule) {
        Ok(s) => s,
        Err(e) => {
            errln!("error: --schedule: {e}");
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    let secrets = match (
        secret(
            args.webhook_secret_file.as_ref(),
            "LABCTL_WEBHOOK_SECRET",
            "webhook-secret",
        ),
        secret(
            args.admin_token_file.as_ref(),
            "LABCTL_ADMIN_TOKEN",
            "admin-token",
        ),
    ) {
        (Ok(webhook), Ok(admin)) => http::Secrets { webhook, admin },
        (Err(e), _) | (_, Err(e)) => {
            errln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mcp_options = match args.http.map(|_| args.mcp.options()).transpose() {
        Ok(options) => options,
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    let notify_settings = match notify_settings(args) {
        Ok(settings) => settings,
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let url = super::db::database_url(args.database_url.as_deref());
    let settings = Settings {
        source: spec,
        path: args.source.path.clone(),
        host: args.host.options(),
        controller: controller::identity(),
        retention: args.retention.policy(),
        backoff: controller::Backoff {
            base: Duration::from_secs(args.backoff_base),
            max: Duration::from_secs(args.backoff_max.max(args.backoff_base)),
        },
    };
    let result: Result<(), String> = rt.block_on(async {
        let store = Store::connect(&url).await.map_err(|e| e.to_string())?;
        store.migrate().await.map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let ctx = Arc::new(Context::new(store, settings));
        let state = Arc::new(serve::State::default());
        let (triggers, queue) = serve::queue();
        let (stop_tx, stop) = tokio::sync::watch::channel(false);

        // The first run: whatever Git and the lab say now.
        triggers.send(Reason::manual("serve", ctx.settings().controller.clone()));
        let _watcher = match (&local_repo, args.no_watch) {
            (Some(repo), false) => Some(
                triggers::watch_repository(
                    repo,
                    Arc::clone(&ctx),
                    Arc::clone(&state),
                    triggers.clone(),
                    Duration::from_millis(args.debounce_ms),
                    stop.clone(),
                )
                .map_err(|e| e.to_string())?,
            ),
            (None, _) => {
                tokio::spawn(triggers::poll(
                    Arc::clone(&ctx),
                    Arc::clone(&state),
                    triggers.clone(),
                    Duration::from_secs(args.poll_seconds.max(1)),
                    stop.clone(),
                ));
                None
            }
            _ => None,
        };
        tokio::spawn(triggers::schedule(schedule, triggers.clone(), stop.clone()));
        let metrics = Arc::new(serve::metrics::Metrics::default());
        let router = http::router(http::App {
            ctx: Arc::clone(&ctx),
            state: Arc::clone(&state),
            triggers: triggers.clone(),
            secrets,
            metrics: Arc::clone(&metrics),
        });
        let mut http_stop = stop.clone();
        let http = tokio::spawn(http::serve(router, listener, async move {
            let _ = http_stop.wait_for(|s| *s).await;
        }));
        let mcp = match (args.http, mcp_options) {
            (Some(addr), Some(options)) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| format!("cannot listen on {addr} for MCP: {e}"))?;
                let server = labctl::mcp::LabServer::new(
                    ctx.store().clone(),
                    labctl::mcp::http::http_client(),
                );
                // The daemon's own retention; the default per-call limits of `labctl mcp`.
                let server = server
                    .with_daemon(triggers.clone())
                    .with_proposer(Arc::clone(&ctx))
                    .with_retention(args.retention.policy())
                    .with_limits(labctl::mcp::Limits::new());
                let local = listener
                    .local_addr()
                    .map_err(|e| format!("cannot listen on {addr} for MCP: {e}"))?;
                let pages = args.mcp.pages(&server, &options, local)?;
                let mut mcp_stop = stop.clone();
                Some(tokio::spawn(labctl::mcp::http::serve_with(
                    server,
                    listener,
                    options,
                    pages,
                    async move {
                        let _ = mcp_stop.wait_for(|s| *s).await;
                    },
                )))
            }
            _ => None,
        };
        let watchdog = tokio::spawn(watchdog(stop.clone()));
        tokio::spawn(signals(stop_tx));
        tracing::info!(listen = %args.listen, schedule = %args.schedule, "serving");
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        serve::notify_status(&state);

        let notifier =
            notify::Notifier::start(notify_settings, ctx.store().clone(), Arc::clone(&metrics));
        let options = serve::Options {
            grace: Duration::from_secs(args.shutdown_grace),
            metrics,
            notifier,
        };
        serve::run(Arc::clone(&ctx), queue, state, stop, options).await;
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        let _ = http.await;
        if let Some(mcp) = mcp {
            if let Ok(Err(e)) = mcp.await {
                tracing::warn!(error = %e, "the MCP face stopped with an error");
            }
        }
        watchdog.abort();
        ctx.store().close().await;
        tracing::info!("stopped");
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Turns SIGTERM or SIGINT into the stop signal.
async fn signals(stop: tokio::sync::watch::Sender<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot listen for SIGTERM/SIGINT");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
    let _ = stop.send(true);
}

/// Pings systemd's watchdog (WatchdogSec=) at half its interval while the process lives.
async fn watchdog(mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let every = Duration::from_micros(usec / 2);
    loop {
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
