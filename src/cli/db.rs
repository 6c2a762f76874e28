//! `labctl db`: the state store (`migrate`, `stats`, `prune`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::{Format, EXIT_USAGE};
use labctl::store::{ActorKind, AuditEntry, RetentionPolicy, Store, StoreError, StoreStats};

#[derive(Args)]
pub struct DbArgs {
    #[command(subcommand)]
    pub command: DbCommand,
    /// State store: sqlite://PATH or postgres://USER@HOST/DB. Default: labctl.db in
    /// $LABCTL_STATE_DIR, else $STATE_DIRECTORY, else $XDG_STATE_HOME/labctl, else
    /// ~/.local/state/labctl.
    #[arg(
        long,
        env = "DATABASE_URL",
        global = true,
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
}

#[derive(Subcommand)]
pub enum DbCommand {
    /// Create the schema or bring it up to date (safe to repeat).
    Migrate,
    /// Row counts per table and the database size.
    Stats {
        /// Output format.
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Delete old history: finished runs, snapshots and resolved deviations older than
    /// --keep-runs-days, audit entries older than --keep-audit-days or beyond the newest
    /// --keep-audit-rows. Open deviations, the latest run and each provider's latest snapshot
    /// always stay.
    Prune {
        #[command(flatten)]
        retention: super::RetentionArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
}

pub fn run(args: &DbArgs) -> ExitCode {
    let url = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", default_database_path().display()));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let result = runtime.block_on(async {
        let store = Store::connect(&url).await?;
        let out = match &args.command {
            DbCommand::Migrate => {
                store.migrate().await?;
                outln!("the schema of {} is up to date", store.describe());
                Ok(())
            }
            DbCommand::Stats { format } => {
                let stats = store.stats().await;
                stats.map(|s| print_stats(&store.describe(), &s, *format))
            }
            DbCommand::Prune { retention, format } => {
                prune(&store, retention.policy(), *format).await
            }
        };
        store.close().await;
        out
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("error: {e}");
            if matches!(e, StoreError::Query { .. }) {
                errln!("hint: run `labctl db migrate` first if the database is new");
            }
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Prunes, records who did it in the audit log, and prints what was deleted.
async fn prune(store: &Store, policy: RetentionPolicy, format: Format) -> Result<(), StoreError> {
    let deleted = store.prune(policy).await?;
    let rows = [
        ("runs", deleted.runs),
        ("applied_changes", deleted.applied_changes),
        ("observed_snapshots", deleted.observed_snapshots),
        ("desired_snapshots", deleted.desired_snapshots),
        ("deviations", deleted.deviations),
        ("blobs", deleted.blobs),
        ("audit_log", deleted.audit_log),
    ];
    let deleted_json: serde_json::Map<String, serde_json::Value> = rows
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let RetentionPolicy {
        keep_runs_days,
        keep_audit_days,
        keep_audit_rows,
    } = policy;
    let policy = json!({
        "keep_runs_days": keep_runs_days,
        "keep_audit_days": keep_audit_days,
        "keep_audit_rows": keep_audit_rows,
    });
    store
        .audit(&AuditEntry {
            actor_kind: ActorKind::Cli,
            actor: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
            action: "db.prune".into(),
            target: None,
            details: json!({"policy": policy, "deleted": deleted_json}),
        })
        .await?;
    match format {
        Format::Json => {
            let out = json!({
                "database": store.describe(),
                "policy": policy,
                "deleted": deleted_json,
            });
            outln!(
                "{}",
                serde_json::to_string_pretty(&out).expect("JSON serialises")
            );
        }
        Format::Human => {
            outln!(
                "pruned {}: kept {keep_runs_days} days of runs, {keep_audit_days} days and at \
                 most {keep_audit_rows} entries of audit",
                store.describe()
            );
            for (name, count) in rows {
                outln!("  {name:<20} {count:>12} deleted");
            }
        }
    }
    Ok(())
}

/// `labctl.db` in LABCTL_STATE_DIR (the host configuration's `stateDir`), the systemd state
/// directory, the XDG state home or ~/.local/state.
fn default_database_path() -> PathBuf {
    if let Some(dir) = std::env::var_os(super::config::STATE_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("labctl.db");
    }
    if let Some(dir) = std::env::var_os("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
        // systemd lists several directories separated by colons; the first is ours.
        let first = dir
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or("")
            .to_string();
        return PathBuf::from(first).join("labctl.db");
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("labctl").join("labctl.db")
}

fn print_stats(database: &str, s: &StoreStats, format: Format) {
    let rows = [
        ("runs", s.runs),
        ("applied_changes", s.applied_changes),
        ("blobs", s.blobs),
        ("desired_snapshots", s.desired_snapshots),
        ("observed_snapshots", s.observed_snapshots),
        ("deviations", s.deviations),
        ("open_deviations", s.open_deviations),
        ("pull_requests", s.pull_requests),
        ("audit_log", s.audit_log),
    ];
    match format {
        Format::Json => {
            let tables: serde_json::Map<String, serde_json::Value> = rows
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            let out = json!({
                "database": database,
                "rows": tables,
                "database_bytes": s.database_bytes,
            });
            outln!(
                "{}",
                serde_json::to_string_pretty(&out).expect("JSON serialises")
            );
        }
        Format::Human => {
            outln!("{database}");
            for (name, count) in rows {
                outln!("  {name:<20} {count:>12}");
            }
            outln!("  {:<20} {:>12} bytes", "size", s.database_bytes);
        }
    }
}

/// The database URL to use: the one given, or SQLite at the default path.
pub(super) fn database_url(given: Option<&str>) -> String {
    given
        .map(str::to_string)
        .unwrap_or_else(|| format!("sqlite://{}", default_database_path().display()))
}
