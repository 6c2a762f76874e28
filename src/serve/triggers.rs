//! Where runs come from besides a person: a watch of a local repository's refs, a poll of a
//! remote, and a cron schedule. Each sends a [`Reason`] to the loop and decides nothing else.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::{State, Triggers};
use crate::controller::{self, Context, Reason};

/// Why a trigger could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("cannot watch {path}: {detail}; serve needs a Git repository (or use --no-watch)")]
    Watch { path: PathBuf, detail: String },
    #[error("schedule `{expr}` is not a cron expression ({detail}); e.g. `*/5 * * * *` (minute hour day month weekday)")]
    Schedule { expr: String, detail: String },
}

/// A cron schedule of five fields (minute hour day-of-month month day-of-week), as crontab
/// has it, or six with seconds first.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    cron: cron::Schedule,
}

impl Schedule {
    pub fn parse(expr: &str) -> Result<Schedule, TriggerError> {
        let fields = expr.split_whitespace().count();
        // The cron crate counts seconds first; crontab's five fields run at second 0.
        let full = if fields == 5 {
            format!("0 {expr}")
        } else {
            expr.to_string()
        };
        let cron = cron::Schedule::from_str(&full).map_err(|e| TriggerError::Schedule {
            expr: expr.to_string(),
            detail: e.to_string(),
        })?;
        Ok(Schedule {
            expr: expr.to_string(),
            cron,
        })
    }

    /// How long from now until it next fires.
    pub fn until_next(&self) -> Option<Duration> {
        let now = chrono::Utc::now();
        let next = self.cron.after(&now).next()?;
        (next - now).to_std().ok()
    }
}

/// Sends a [`Reason::Schedule`] each time `schedule` fires, until `stop`.
pub async fn schedule(schedule: Schedule, triggers: Triggers, mut stop: watch::Receiver<bool>) {
    while let Some(wait) = schedule.until_next() {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(wait) => triggers.send(Reason::Schedule { schedule: schedule.expr.clone() }),
        }
    }
}

/// The commit the repository's tracked revision points at now, read through the controller
/// (a remote is fetched). An invalid commit is still a commit: the run will record it refused.
async fn tracked_commit(ctx: &Context) -> Option<String> {
    match ctx.load().await {
        Ok(loaded) => loaded.commit().map(str::to_string),
        Err(controller::Error::Invalid(invalid)) => {
            invalid.snapshot.revision.as_ref().map(|r| r.commit.clone())
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the repository to see whether it changed");
            None
        }
    }
}

/// Sends [`Reason::CommitChanged`] when the tracked commit is not the one the daemon last
/// reconciled (a trigger for a commit already reconciled is dropped).
async fn check(ctx: &Context, triggers: &Triggers, state: &State) {
    match tracked_commit(ctx).await {
        Some(to) if !state.reconciled(&to) => {
            let from = state.progress().commit;
            tracing::info!(from = ?from, to = %to, "the tracked commit moved");
            triggers.send(Reason::CommitChanged { from, to });
        }
        _ => {}
    }
}

/// The Git directory of the repository at `repo` (a work tree's `.git`, or a bare repository).
fn git_dir(repo: &Path) -> PathBuf {
    let dot_git = repo.join(".git");
    if dot_git.is_dir() {
        dot_git
    } else {
        repo.to_path_buf()
    }
}

/// Whether a change at `path` (inside `git_dir`) can move the tracked commit: HEAD, a ref, or
/// packed-refs. Lock files are git's scratch; their rename into place is the change.
fn moves_a_ref(git_dir: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(git_dir) else {
        return false;
    };
    if rel.extension().is_some_and(|e| e == "lock") {
        return false;
    }
    rel == Path::new("HEAD") || rel == Path::new("packed-refs") || rel.starts_with("refs")
}

/// Watches the refs of the local repository at `repo`: a commit, a branch switch or a
/// `git pull` is seen in one debounced check (a burst of ref updates is one run); the run is
/// asked for only when the tracked commit is not the one seen last. The watch lives as long as
/// the returned guard.
pub fn watch_repository(
    repo: &Path,
    ctx: Arc<Context>,
    state: Arc<State>,
    triggers: Triggers,
    debounce: Duration,
    stop: watch::Receiver<bool>,
) -> Result<notify::RecommendedWatcher, TriggerError> {
    use notify::{RecursiveMode, Watcher};
    let git_dir = git_dir(repo);
    let err = |e: notify::Error| TriggerError::Watch {
        path: git_dir.clone(),
        detail: e.to_string(),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let filter_dir = git_dir.clone();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if event.paths.iter().any(|p| moves_a_ref(&filter_dir, p)) => {
                let _ = tx.send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "repository watch error"),
        })
        .map_err(err)?;
    watcher
        .watch(&git_dir, RecursiveMode::NonRecursive)
        .map_err(err)?;
    let refs = git_dir.join("refs");
    if refs.is_dir() {
        watcher
            .watch(&refs, RecursiveMode::Recursive)
            .map_err(err)?;
    }
    tokio::spawn(debounced(rx, ctx, state, triggers, debounce, stop));
    Ok(watcher)
}

async fn debounced(
    mut events: mpsc::UnboundedReceiver<()>,
    ctx: Arc<Context>,
    state: Arc<State>,
    triggers: Triggers,
    debounce: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            event = events.recv() => if event.is_none() { return },
        }
        // Let the burst end (git writes a ref, its log, maybe packed-refs), then look once.
        tokio::time::sleep(debounce).await;
        while events.try_recv().is_ok() {}
        check(&ctx, &triggers, &state).await;
    }
}

/// Fetches the remote every `interval` (± 10 %, so several controllers do not fetch in step)
/// and asks for a run when the tracked commit moved.
pub async fn poll(
    ctx: Arc<Context>,
    state: Arc<State>,
    triggers: Triggers,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(crate::controller::jittered(interval, 10)) => {}
        }
        check(&ctx, &triggers, &state).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crontab_schedules_parse_and_nonsense_is_named() {
        let every_five = Schedule::parse("*/5 * * * *").unwrap();
        let wait = every_five.until_next().unwrap();
        assert!(wait <= Duration::from_secs(300), "{wait:?}");
        assert!(Schedule::parse("0 */5 * * * *").is_ok());
        let e = Schedule::parse("every five minutes")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`every five minutes`") && e.contains("*/5 * * * *"),
            "{e}"
        );
    }

    #[test]
    fn only_ref_changes_count() {
        let g = Path::new("/r/.git");
        assert!(moves_a_ref(g, Path::new("/r/.git/HEAD")));
        assert!(moves_a_ref(g, Path::new("/r/.git/refs/heads/main")));
        assert!(moves_a_ref(g, Path::new("/r/.git/packed-refs")));
        assert!(!moves_a_ref(g, Path::new("/r/.git/refs/heads/main.lock")));
        assert!(!moves_a_ref(g, Path::new("/r/.git/index")));
        assert!(!moves_a_ref(g, Path::new("/r/.git/objects/ab/cdef")));
        assert!(!moves_a_ref(g, Path::new("/elsewhere/HEAD")));
    }
}
