//! `labctl reconcile --once`: one run, recorded in the store.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::{print_json, render_options, runtime, Format, HostArgs, SourceArgs};
use labctl::controller::{self, Context, Reason, Request, Settings};
use labctl::diff::render_human;
use labctl::store::Store;

#[derive(Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub host: HostArgs,
    /// Run once and exit (for a systemd timer or cron).
    #[arg(long, required_unless_present = "now", conflicts_with = "now")]
    pub once: bool,
    /// Ask the running `labctl serve` for a run now (POST /api/reconcile with the admin
    /// token from --admin-token-file, LABCTL_ADMIN_TOKEN or the credential admin-token).
    #[arg(long)]
    pub now: bool,
    /// Where the daemon's HTTP face listens (its --listen), for --now.
    #[arg(
        long,
        env = "LABCTL_DAEMON",
        default_value = "http://127.0.0.1:8420",
        value_name = "URL",
        requires = "now"
    )]
    pub daemon: String,
    /// The daemon's admin token, from a file, for --now.
    #[arg(long, value_name = "FILE", requires = "now")]
    pub admin_token_file: Option<std::path::PathBuf>,
    /// State store: sqlite://PATH or postgres://USER@HOST/DB (default: see `labctl db`).
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// If another controller holds the leader lock, exit at once instead of waiting.
    #[arg(long)]
    pub no_wait: bool,
    /// Apply even when the run changes more of a provider than labctl.yaml's `safety`
    /// allows (by default 30 % of its resources), this once, after reviewing the plan.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub retention: super::RetentionArgs,
    /// What started this run, recorded with it.
    #[arg(long, default_value = "cli", value_name = "WHAT")]
    pub trigger: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
}

/// `reconcile --once`: 0 the run completed, 1 it failed (an apply failed, a change did not
/// show when observed again, or changes were held back by `safety`).
pub fn run(args: &ReconcileArgs) -> ExitCode {
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    if args.now {
        return rt.block_on(ask_daemon(args));
    }
    let url = super::db::database_url(args.database_url.as_deref());
    let settings = Settings {
        source: args.source.spec(),
        path: args.source.path.clone(),
        host: args.host.options(),
        controller: controller::identity(),
        retention: args.retention.policy(),
        backoff: Default::default(),
    };
    let request = Request {
        reason: Reason::manual(&args.trigger, settings.controller.clone()),
        wait: !args.no_wait,
        force: args.force,
    };
    let result = rt.block_on(async {
        let store = Store::connect(&url).await?;
        store.migrate().await?;
        let ctx = Context::new(store, settings);
        let result = controller::reconcile(&ctx, &request).await;
        ctx.store().close().await;
        result
    });
    let done = match result {
        Ok(done) => done,
        Err(controller::Error::Invalid(invalid)) => {
            super::report_invalid(&invalid, args.format);
            return ExitCode::FAILURE;
        }
        Err(controller::Error::Source(e)) => {
            super::report_load_error(&e, args.format);
            return ExitCode::FAILURE;
        }
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let run = &done.run;
    match args.format {
        Format::Json => print_json(&json!({
            "commit": done.loaded.commit(),
            "run": run,
            "published": done.published,
        })),
        Format::Human => {
            super::print_warnings(&done.loaded);
            out!("{}", render_human(&run.plan, render_options()));
            for a in &run.applied {
                match (&a.report, &a.error) {
                    (Some(r), _) => {
                        outln!("applied {} change(s) with {}", r.applied.len(), a.provider)
                    }
                    (_, Some(e)) => errln!("error: apply failed: {e}"),
                    _ => {}
                }
            }
            // What observing again after the apply showed, change by change.
            for c in &run.changes {
                outln!("  {}", super::status::change_line(c));
            }
            for (provider, why) in &run.plan.held {
                errln!("error: changes to {provider} held back: {why}");
            }
            outln!(
                "recorded run {} in {}",
                run.run_id,
                labctl::store::redact(&url)
            );
        }
    }
    if run.outcome == labctl::store::Outcome::Failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `reconcile --now`: queues a run in the daemon at `--daemon`. 0 queued, 1 refused or not
/// reachable, 2 no admin token.
async fn ask_daemon(args: &ReconcileArgs) -> ExitCode {
    let token = match super::serve::secret(
        args.admin_token_file.as_ref(),
        "LABCTL_ADMIN_TOKEN",
        "admin-token",
    ) {
        Ok(Some(token)) => token,
        Ok(None) => {
            errln!(
                "error: --now needs the daemon's admin token: --admin-token-file FILE, \
                 LABCTL_ADMIN_TOKEN or the systemd credential admin-token"
            );
            return ExitCode::from(super::EXIT_USAGE);
        }
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    let endpoint = format!("{}/api/reconcile", args.daemon.trim_end_matches('/'));
    let by = std::env::var("USER").unwrap_or_else(|_| "cli".into());
    // The token goes to exactly the address given: no redirect is followed.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build();
    let answer = match client {
        Ok(client) => {
            client
                .post(&endpoint)
                .bearer_auth(String::from_utf8_lossy(&token))
                .header("x-labctl-user", by)
                .send()
                .await
        }
        Err(e) => Err(e),
    };
    match answer {
        Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED => {
            outln!("reconcile queued in the daemon at {}", args.daemon);
            outln!("follow it with `labctl status`");
            ExitCode::SUCCESS
        }
        Ok(r) => {
            let status = r.status();
            let body: String = r
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect();
            errln!("error: {endpoint} answered {status}: {}", body.trim());
            ExitCode::FAILURE
        }
        Err(e) => {
            errln!("error: cannot reach the daemon at {endpoint}: {e} (is `labctl serve` running there?)");
            ExitCode::FAILURE
        }
    }
}
