//! `labctl plan` and `labctl reconcile --once`.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::{load_valid, print_json, runtime, Format, SourceArgs};
use labctl::diff::{render_human, RenderOptions};
use labctl::reconcile::{self, HostOptions, Loaded, RunResult};
use labctl::store::{RetentionPolicy, Store, StoreError};

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
    #[arg(long, default_value_t = 30, value_name = "DAYS")]
    pub keep_runs_days: u32,
    /// Retention applied after the run: keep audit entries of this many days.
    #[arg(long, default_value_t = 365, value_name = "DAYS")]
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
    let providers = providers(&loaded, &args.host);
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let (plan, _) = rt.block_on(reconcile::plan(&loaded, &providers));
    match args.format {
        Format::Json => print_json(&json!({ "commit": loaded.commit(), "plan": plan })),
        Format::Human => print!("{}", render_human(&plan, render_options())),
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
    let Some(loaded) = load_valid(&args.source, args.format) else {
        return ExitCode::FAILURE;
    };
    let providers = providers(&loaded, &args.host);
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let url = super::db::database_url(args.database_url.as_deref());
    let result: Result<RunResult, StoreError> = rt.block_on(async {
        let store = Store::connect(&url).await?;
        store.migrate().await?;
        let leader = store.leader(!args.no_wait).await?;
        let controller = controller_id();
        let result = reconcile::run_once(&store, &loaded, &providers, &args.trigger, &controller).await;
        if result.is_ok() {
            // The controller applies retention, still holding the lock, after the run is safe.
            let policy = RetentionPolicy { keep_runs_days: args.keep_runs_days, keep_audit_days: args.keep_audit_days };
            match store.prune(policy).await {
                Ok(report) => tracing::debug!(?report, "retention applied"),
                Err(e) => tracing::warn!(error = %e, "retention could not be applied; the run is recorded"),
            }
        }
        if let Err(e) = leader.release().await {
            // Closing the connection releases the lock as well; say so and go on.
            tracing::warn!(error = %e, "could not release the leader lock explicitly");
        }
        store.close().await;
        result
    });
    match result {
        Ok(run) => {
            match args.format {
                Format::Json => print_json(&json!({ "commit": loaded.commit(), "run": run })),
                Format::Human => {
                    print!("{}", render_human(&run.plan, render_options()));
                    for a in &run.applied {
                        match (&a.report, &a.error) {
                            (Some(r), _) => println!(
                                "applied {} change(s) with {}",
                                r.applied.len(),
                                a.provider
                            ),
                            (_, Some(e)) => eprintln!("error: apply failed: {e}"),
                            _ => {}
                        }
                    }
                    println!(
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
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn providers(
    loaded: &Loaded,
    host: &HostArgs,
) -> Vec<std::sync::Arc<dyn labctl::providers::Provider>> {
    let options = HostOptions {
        probe: host.probe,
        allow_commands: host.allow_commands,
    };
    reconcile::providers_for(loaded.state.config.as_ref().map(|c| &c.doc.spec), options)
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

/// `user@host`, recorded with each run so a shared database shows who reconciled.
fn controller_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    let user = std::env::var("USER").unwrap_or_else(|_| "labctl".into());
    format!("{user}@{host}/{}", std::process::id())
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
    let providers = providers(&loaded, &args.host);
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let (plan, _) = rt.block_on(reconcile::plan(&loaded, &providers));
    if !plan.unobservable.is_empty() {
        // An import from a partial picture would look complete and not be.
        for (p, why) in &plan.unobservable {
            eprintln!("error: provider {p} could not be observed: {why}");
        }
        eprintln!("error: nothing was imported");
        return ExitCode::FAILURE;
    }
    let staged = reconcile::import::prepare(&loaded.snapshot, &plan);
    if !staged.validation.is_valid() {
        let mut all = loaded.snapshot.clone();
        all.files.extend(staged.files.iter().cloned());
        super::print_diagnostics(&staged.validation, &all);
        eprintln!("error: the imported documents would not validate with the repository; nothing was written");
        return ExitCode::FAILURE;
    }
    let root = std::path::Path::new(&args.repo);
    if !args.dry_run {
        if let Err(e) = write_all_new(root, &staged.files) {
            eprintln!("error: {e}; nothing was written");
            return ExitCode::FAILURE;
        }
    }
    match args.format {
        Format::Json => print_json(&json!({
            "written": !args.dry_run,
            "files": staged.files.iter().map(|f| &f.path).collect::<Vec<_>>(),
            "skipped": staged.skipped,
        })),
        Format::Human => {
            let verb = if args.dry_run { "would write" } else { "wrote" };
            for f in &staged.files {
                println!("{verb} {}", f.path);
            }
            for s in &staged.skipped {
                println!("skipped {}/{}: {}", s.kind, s.name, s.reason);
            }
            println!(
                "{verb} {} document(s), skipped {}",
                staged.files.len(),
                staged.skipped.len()
            );
        }
    }
    ExitCode::SUCCESS
}

/// Writes every file or none: all are first written to hidden temporary files beside their
/// targets, then linked into place (a link never replaces a file that appeared meanwhile).
fn write_all_new(
    root: &std::path::Path,
    files: &[labctl::source::SourceFile],
) -> Result<(), String> {
    use std::io::Write;
    let mut staged: Vec<(std::path::PathBuf, std::path::PathBuf)> = Vec::new();
    let cleanup = |staged: &[(std::path::PathBuf, std::path::PathBuf)]| {
        for (tmp, _) in staged {
            let _ = std::fs::remove_file(tmp);
        }
    };
    for f in files {
        let target = root.join(&f.path);
        let dir = target.parent().unwrap_or(root);
        let tmp = dir.join(format!(
            ".{}.labctl-import",
            target.file_name().unwrap_or_default().to_string_lossy()
        ));
        let written = std::fs::create_dir_all(dir)
            .and_then(|_| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&tmp)
            })
            .and_then(|mut out| {
                out.write_all(f.text.as_bytes())
                    .and_then(|_| out.sync_all())
            });
        if let Err(e) = written {
            cleanup(&staged);
            return Err(format!("cannot write {}: {e}", tmp.display()));
        }
        staged.push((tmp, target));
    }
    for (i, (tmp, target)) in staged.iter().enumerate() {
        if let Err(e) = std::fs::hard_link(tmp, target) {
            for (_, done) in &staged[..i] {
                let _ = std::fs::remove_file(done);
            }
            cleanup(&staged);
            return Err(format!("cannot create {}: {e}", target.display()));
        }
    }
    cleanup(&staged);
    Ok(())
}
