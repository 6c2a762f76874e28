//! `labctl suspend` and `labctl resume`: stop labctl acting on the whole lab, a kind or one
//! resource without a commit (a maintenance window), and let it act again. Written to the
//! store; the controller reads it at the start of every run.

use std::process::ExitCode;

use clap::Args;

use super::{runtime, EXIT_USAGE};
use labctl::model::Kind;
use labctl::store::{Store, StoreError, Suspension};
use labctl::time::utc;

#[derive(Args)]
pub struct SuspendArgs {
    /// The kind to suspend (Pool, Device, DhcpReservation, Route, McpServer, any case);
    /// none: everything.
    pub kind: Option<String>,
    /// One resource of the kind; none: all of them.
    pub name: Option<String>,
    /// Why, for whoever finds it suspended (shown by `labctl status` and MCP).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// State store (default: see `labctl db`).
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

#[derive(Args)]
pub struct ResumeArgs {
    /// The kind whose suspension to lift; none: the suspension of everything.
    pub kind: Option<String>,
    /// The resource whose own suspension to lift.
    pub name: Option<String>,
    /// State store (default: see `labctl db`).
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

pub fn run_suspend(args: &SuspendArgs) -> ExitCode {
    let kind = match kind(args.kind.as_deref()) {
        Ok(k) => k,
        Err(code) => return code,
    };
    let actor = whoami();
    let done = with_store(args.database_url.as_deref(), async |store| {
        store
            .suspend(kind, args.name.as_deref(), &args.reason, &actor)
            .await
    });
    match done {
        Ok(s) => {
            outln!(
                "suspended {} ({}): runs observe and record it, and change nothing of it until \
                 `{}`",
                s.scope(),
                s.reason,
                s.resume_command()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            errln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

pub fn run_resume(args: &ResumeArgs) -> ExitCode {
    let kind = match kind(args.kind.as_deref()) {
        Ok(k) => k,
        Err(code) => return code,
    };
    let done = with_store(args.database_url.as_deref(), async |store| {
        let lifted = store.resume(kind, args.name.as_deref()).await?;
        Ok((lifted, store.suspensions().await?))
    });
    let scope = Suspension {
        kind: kind.map(str::to_string),
        name: args.name.clone(),
        reason: String::new(),
        actor: String::new(),
        since: 0,
    }
    .scope();
    match done {
        Ok((true, left)) => {
            outln!("resumed {scope}: the next run acts on it again");
            if !left.is_empty() {
                outln!("still suspended:");
                print_suspensions(&left);
            }
            ExitCode::SUCCESS
        }
        Ok((false, left)) => {
            errln!("error: there is no suspension of {scope} to lift");
            if !left.is_empty() {
                errln!("suspended now:");
                for s in &left {
                    errln!("  {}", line(s));
                }
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            errln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The suspensions, a line each, for `status`.
pub fn print_suspensions(list: &[Suspension]) {
    for s in list {
        outln!("  {}", line(s));
    }
}

fn line(s: &Suspension) -> String {
    format!(
        "{} by {} since {}: {} (`{}`)",
        s.scope(),
        s.actor,
        utc(s.since),
        s.reason,
        s.resume_command()
    )
}

/// The kind as the store keeps it, from any case; a wrong one is a usage error listing them.
fn kind(given: Option<&str>) -> Result<Option<&'static str>, ExitCode> {
    let Some(given) = given else {
        return Ok(None);
    };
    let kinds = Kind::ALL.iter().filter(|k| **k != Kind::Config);
    match kinds
        .clone()
        .find(|k| k.as_str().eq_ignore_ascii_case(given))
    {
        Some(k) => Ok(Some(k.as_str())),
        None => {
            let names: Vec<&str> = kinds.map(|k| k.as_str()).collect();
            errln!(
                "error: `{given}` is not a kind; use one of {}",
                names.join(", ")
            );
            Err(ExitCode::from(EXIT_USAGE))
        }
    }
}

/// Who runs this command, as the audit trail names a person.
fn whoami() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("LOGNAME"))
        .map(|u| format!("user {u}"))
        .unwrap_or_else(|_| format!("uid {}", real_uid()))
}

/// The real user id, from /proc (no libc call needed).
fn real_uid() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(str::to_string))
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Runs `f` on the store (created and migrated if needed: suspending before the first run is
/// allowed, as a maintenance window may start before the daemon does).
fn with_store<T>(
    url: Option<&str>,
    f: impl AsyncFnOnce(&Store) -> Result<T, StoreError>,
) -> Result<T, String> {
    let url = super::db::database_url(url);
    let rt = runtime().ok_or("cannot start the async runtime")?;
    rt.block_on(async {
        let store = Store::connect(&url).await.map_err(|e| e.to_string())?;
        store.migrate().await.map_err(|e| e.to_string())?;
        let out = f(&store).await.map_err(|e| e.to_string());
        store.close().await;
        out
    })
}
