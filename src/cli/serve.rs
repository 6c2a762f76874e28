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
use labctl::serve::{self, http, triggers};
use labctl::source::{GitLocation, SourceSpec};
use labctl::store::Store;

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
    #[arg(long)]
    pub no_watch: bool,
    /// How long a burst of ref changes may last before it is looked at (one run per burst).
    #[arg(long, default_value_t = 200, value_name = "MS")]
    pub debounce_ms: u64,
    /// The shared secret of push webhooks, from a file. Else the variable
    /// LABCTL_WEBHOOK_SECRET, else the systemd credential `webhook-secret`; none: webhooks off.
    #[arg(long, value_name = "FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// The bearer token of POST /api/reconcile, from a file. Else LABCTL_ADMIN_TOKEN, else the
    /// systemd credential `admin-token`; none: the endpoint is off.
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// At SIGTERM or SIGINT, how long a run in progress may take to finish before it is
    /// abandoned (recorded as aborted; the leader lock goes with its session).
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub shutdown_grace: u64,
    #[command(flatten)]
    pub retention: super::RetentionArgs,
}

/// A secret from `file`, else the variable `env`, else the systemd credential `credential`;
/// `None` when none of them is there.
fn secret(file: Option<&PathBuf>, env: &str, credential: &str) -> Result<Option<Vec<u8>>, String> {
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
    if value.is_empty() {
        return Err(format!("the secret from {source:?} is empty"));
    }
    Ok(Some(value.into_bytes()))
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
        backoff: Default::default(),
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
        let router = http::router(
            Arc::clone(&ctx),
            Arc::clone(&state),
            triggers.clone(),
            secrets,
        );
        let mut http_stop = stop.clone();
        let http = tokio::spawn(http::serve(router, listener, async move {
            let _ = http_stop.wait_for(|s| *s).await;
        }));
        let watchdog = tokio::spawn(watchdog(stop.clone()));
        tokio::spawn(signals(stop_tx));
        tracing::info!(listen = %args.listen, schedule = %args.schedule, "serving");
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        serve::notify_status(&state);

        let options = serve::Options {
            grace: Duration::from_secs(args.shutdown_grace),
        };
        serve::run(Arc::clone(&ctx), queue, state, stop, options).await;
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        let _ = http.await;
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
