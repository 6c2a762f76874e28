//! `labctl plan` and `labctl reconcile --once`.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::{load_valid, print_json, runtime, Format, SourceArgs};
use labctl::controller::{self, Context, ImportError, Reason, Request, Settings};
use labctl::diff::{render_human, RenderOptions};
use labctl::reconcile::HostOptions;
use labctl::store::{RetentionPolicy, Store};

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub host: HostArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
}

#[derive(Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub host: HostArgs,
    /// Run once and exit (for a systemd timer or cron). Required until the daemon exists.
    #[arg(long, required = true)]
    pub once: bool,
    /// State store: sqlite://PATH or postgres://USER@HOST/DB (default: see `labctl db`).
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// If another controller holds the leader lock, exit at once instead of waiting.
    #[arg(long)]
    pub no_wait: bool,
    /// Retention applied after the run: keep runs, snapshots and resolved deviations of this
    /// many days (open deviations are always kept).
    #[arg(long, default_value_t = RetentionPolicy::DEFAULT.keep_runs_days, value_name = "DAYS")]
    pub keep_runs_days: u32,
    /// Retention applied after the run: keep audit entries of this many days.
    #[arg(long, default_value_t = RetentionPolicy::DEFAULT.keep_audit_days, value_name = "DAYS")]
    pub keep_audit_days: u32,
    /// What started this run, recorded with it.
    #[arg(long, default_value = "cli", value_name = "WHAT")]
    pub trigger: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
}

/// `plan`: 0 no drift, 1 error (including a provider that could not be observed), 2 drift.
pub fn run_plan(args: &PlanArgs) -> ExitCode {
    let Some(loaded) = load_valid(&args.source, args.format) else {
        return ExitCode::FAILURE;
    };
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let plan = rt.block_on(controller::plan(&loaded, args.host.options()));
    match args.format {
        Format::Json => print_json(&json!({ "commit": loaded.commit(), "plan": plan })),
        Format::Human => out!("{}", render_human(&plan, render_options())),
    }
    if !plan.unobservable.is_empty() {
        // An incomplete plan must not pass a gate as "no drift".
        eprintln!(
            "error: {} provider(s) could not be observed; the plan is incomplete",
            plan.unobservable.len()
        );
        ExitCode::FAILURE
    } else if plan.has_drift() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// `reconcile --once`: 0 the run completed, 1 it failed.
pub fn run_reconcile(args: &ReconcileArgs) -> ExitCode {
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let url = super::db::database_url(args.database_url.as_deref());
    let settings = Settings {
        source: args.source.spec(),
        path: args.source.path.clone(),
        host: args.host.options(),
        controller: controller::identity(),
        retention: RetentionPolicy {
            keep_runs_days: args.keep_runs_days,
            keep_audit_days: args.keep_audit_days,
        },
        backoff: Default::default(),
    };
    let request = Request {
        reason: Reason::manual(&args.trigger, settings.controller.clone()),
        wait: !args.no_wait,
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
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let run = &done.run;
    match args.format {
        Format::Json => print_json(&json!({ "commit": done.loaded.commit(), "run": run })),
        Format::Human => {
            super::print_warnings(&done.loaded);
            out!("{}", render_human(&run.plan, render_options()));
            for a in &run.applied {
                match (&a.report, &a.error) {
                    (Some(r), _) => {
                        outln!("applied {} change(s) with {}", r.applied.len(), a.provider)
                    }
                    (_, Some(e)) => eprintln!("error: apply failed: {e}"),
                    _ => {}
                }
            }
            outln!(
                "recorded run {} in {}",
                run.run_id,
                labctl::store::redact(&url)
            );
        }
    }
    if run.apply_failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// What this host allows; off unless asked for.
#[derive(Args, Clone, Debug)]
pub struct HostArgs {
    /// Probe every declared device service (TCP connect, HTTP health GET). Only from a host
    /// inside the lab's network: it connects to the devices' addresses.
    #[arg(long, env = "LABCTL_PROBE")]
    pub probe: bool,
    /// Start stdio MCP servers to check them: commands written in Git, run on this host.
    #[arg(long, env = "LABCTL_ALLOW_COMMANDS")]
    pub allow_commands: bool,
}

impl HostArgs {
    pub fn options(&self) -> HostOptions {
        HostOptions {
            probe: self.probe,
            allow_commands: self.allow_commands,
        }
    }
}

fn render_options() -> RenderOptions {
    use std::io::IsTerminal;
    RenderOptions {
        color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    }
}

#[derive(Args)]
pub struct ImportArgs {
    /// The repository work tree to write into (read with its uncommitted files).
    #[arg(default_value = ".")]
    pub repo: String,
    /// Show what would be written, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub host: HostArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
}

/// `import`: 0 written (or nothing to import), 1 error or the result would not validate.
pub fn run_import(args: &ImportArgs) -> ExitCode {
    let source = SourceArgs {
        repo: args.repo.clone(),
        rev: None,
        worktree: true,
        path: None,
        cache_dir: None,
        token_env: "LABCTL_GIT_TOKEN".into(),
    };
    let Some(loaded) = load_valid(&source, args.format) else {
        return ExitCode::FAILURE;
    };
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let root = std::path::Path::new(&args.repo);
    let target = (!args.dry_run).then_some(root);
    let imported = match rt.block_on(controller::import(&loaded, args.host.options(), target)) {
        Ok(imported) => imported,
        Err(e) => {
            match &e {
                ImportError::Unobservable(providers) => {
                    for (p, why) in providers {
                        eprintln!("error: provider {p} could not be observed: {why}");
                    }
                    eprintln!("error: nothing was imported");
                }
                ImportError::Invalid(staged) => {
                    let mut all = loaded.snapshot.clone();
                    all.files.extend(staged.files.iter().cloned());
                    super::print_diagnostics(&staged.validation.diagnostics, &all);
                    eprintln!("error: {e}");
                }
                ImportError::Write(_) => eprintln!("error: {e}"),
            }
            return ExitCode::FAILURE;
        }
    };
    match args.format {
        Format::Json => print_json(&json!({
            "written": !args.dry_run,
            "files": imported.files.iter().map(|f| &f.path).collect::<Vec<_>>(),
            "skipped": imported.skipped,
        })),
        Format::Human => {
            let verb = if args.dry_run { "would write" } else { "wrote" };
            for f in &imported.files {
                outln!("{verb} {}", f.path);
            }
            for s in &imported.skipped {
                outln!("skipped {}/{}: {}", s.kind, s.name, s.reason);
            }
            outln!(
                "{verb} {} document(s), skipped {}",
                imported.files.len(),
                imported.skipped.len()
            );
        }
    }
    ExitCode::SUCCESS
}
