//! `labctl status` and `labctl drift`: what the store knows, for people and machines.

use std::process::ExitCode;

use clap::Args;
use serde_json::{json, Value as Json};

use super::{runtime, Format};
use labctl::readmodel::{Entry, ReconciledModel};
use labctl::store::{
    AppliedChange, ChangeRecord, Deviation, PullRequest, Severity, Store, StoreError,
};
use labctl::time::{now_ms, utc};

#[derive(Args)]
pub struct StatusArgs {
    /// State store (default: see `labctl db`).
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// How many recent runs to list.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
}

#[derive(Args)]
pub struct DriftArgs {
    /// State store (default: see `labctl db`).
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Only this kind (Pool, Device, DhcpReservation, Route, McpServer).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only at least this severity.
    #[arg(long, value_parser = ["low", "medium", "high", "critical"])]
    pub severity: Option<String>,
    /// Only deviations opened within this long ago: `30m`, `24h`, `7d`.
    #[arg(long, value_parser = labctl::time::parse_age, value_name = "AGE")]
    pub since: Option<i64>,
    /// The whole history of one deviation: `Kind/name` or `Kind/name:spec.field`.
    #[arg(long, value_name = "KIND/NAME[:FIELD]", conflicts_with_all = ["kind", "severity", "since"])]
    pub history: Option<String>,
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
}

/// Runs `f` on the store opened read-only (see [`Store::open_reader`]); `empty` is the answer
/// where nothing has been recorded yet (no store is created for a reader).
fn with_store<T>(
    url: Option<&str>,
    empty: T,
    f: impl AsyncFnOnce(&Store) -> Result<T, StoreError>,
) -> Result<T, String> {
    let url = super::db::database_url(url);
    let rt = runtime().ok_or("cannot start the async runtime")?;
    rt.block_on(async {
        let Some(store) = Store::open_reader(&url).await.map_err(|e| e.to_string())? else {
            return Ok(empty);
        };
        let out = f(&store).await.map_err(|e| e.to_string());
        store.close().await;
        out
    })
}

/// Changes of the last run listed by `status` for people; JSON has them all.
const SHOWN_CHANGES: usize = 20;

pub fn run_status(args: &StatusArgs) -> ExitCode {
    let result = with_store(
        args.database_url.as_deref(),
        Default::default(),
        async |store| {
            let latest = store.latest_run().await?;
            let model = store.latest_model().await?;
            let open = store.open_deviations(None, None).await?;
            let runs = store.runs_between(0, i64::MAX).await?;
            let changes = match &latest {
                Some(run) => store.run_changes(run.id).await?,
                None => Vec::new(),
            };
            let suspended = store.suspensions().await?;
            let pulls = store.open_pull_requests().await?;
            Ok((latest, model, open, runs, changes, suspended, pulls))
        },
    );
    let (latest, model, open, runs, changes, suspended, pulls) = match result {
        Ok(r) => r,
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    let resources: Vec<Entry> = match model.as_ref().map(|m| ReconciledModel::from_text(&m.text)) {
        Some(Ok(m)) => m.entries,
        Some(Err(e)) => {
            eprintln!("warning: {e}");
            Vec::new()
        }
        None => Vec::new(),
    };
    for r in &resources {
        *statuses.entry(r.status.to_string()).or_default() += 1;
    }
    let mut by_severity = std::collections::BTreeMap::<&str, usize>::new();
    for d in &open {
        *by_severity.entry(d.record.severity.as_str()).or_default() += 1;
    }
    let recent: Vec<_> = runs.iter().rev().take(args.runs).collect();
    match args.format {
        Format::Json => super::print_json(&json!({
            "latestRun": latest.as_ref().map(run_json),
            "latestRunChanges": changes.iter().map(change_json).collect::<Vec<_>>(),
            "model": model.as_ref().map(|m| json!({"run": m.run, "commit": m.commit_sha, "finishedAt": m.finished_at})),
            "resources": statuses,
            "openDeviations": by_severity,
            "recentRuns": recent.iter().map(|r| run_json(r)).collect::<Vec<_>>(),
            "suspended": suspended,
            "pullRequests": pulls.iter().map(pull_request_json).collect::<Vec<_>>(),
        })),
        Format::Human => {
            if !suspended.is_empty() {
                outln!("Suspended (observed and recorded, nothing changed):");
                super::suspend::print_suspensions(&suspended);
            }
            let Some(last) = &latest else {
                outln!("No run recorded yet: run `labctl reconcile --once`.");
                return ExitCode::SUCCESS;
            };
            outln!(
                "Last run {} {} at {}{}",
                last.id,
                last.outcome,
                utc(last.started_at),
                commit_text(last.commit_sha.as_deref())
            );
            if let Some(e) = &last.error {
                outln!("  problems: {e}");
            }
            if !changes.is_empty() {
                outln!("  changes made ({}):", changes.len());
                for c in changes.iter().take(SHOWN_CHANGES) {
                    outln!("    {}", change_line(&c.change));
                }
                if changes.len() > SHOWN_CHANGES {
                    outln!(
                        "    … and {} more (`labctl status --format json` lists them)",
                        changes.len() - SHOWN_CHANGES
                    );
                }
            }
            if let Some(m) = model.as_ref().filter(|m| m.run != last.id) {
                // The last run did not replace the model: say which commit is still in force.
                outln!(
                    "  in force: run {} at {}{}",
                    m.run,
                    utc(m.finished_at),
                    commit_text(m.commit_sha.as_deref())
                );
            }
            if let Some(m) = &model {
                let parts: Vec<String> = statuses.iter().map(|(s, n)| format!("{n} {s}")).collect();
                outln!(
                    "Resources ({} as of run {}): {}",
                    resources.len(),
                    m.run,
                    parts.join(", ")
                );
            }
            if open.is_empty() {
                outln!("Open deviations: none");
            } else {
                let parts: Vec<String> = ["critical", "high", "medium", "low"]
                    .iter()
                    .filter_map(|s| by_severity.get(s).map(|n| format!("{n} {s}")))
                    .collect();
                outln!(
                    "Open deviations: {} ({}); `labctl drift` lists them",
                    open.len(),
                    parts.join(", ")
                );
            }
            if !pulls.is_empty() {
                outln!("Open pull requests ({}):", pulls.len());
                for pr in &pulls {
                    outln!(
                        "  {} {}{}",
                        pr.summary(),
                        pr.branch,
                        pr.url
                            .as_deref()
                            .map(|u| format!("  {u}"))
                            .unwrap_or_default()
                    );
                }
            }
            outln!("Recent runs:");
            for r in recent {
                let took = r
                    .finished_at
                    .map(|f| format!(" in {} ms", f - r.started_at))
                    .unwrap_or_default();
                outln!(
                    "  {:>5} {:<9} {}{took}  {} by {}, {} opened, {} resolved",
                    r.id,
                    r.outcome.as_str(),
                    utc(r.started_at),
                    r.trigger,
                    r.controller,
                    r.counts.deviations_opened,
                    r.counts.deviations_resolved
                );
            }
        }
    }
    ExitCode::SUCCESS
}

/// One change a run asked for, on one line: `update DhcpReservation/whisper with kea: applied`
/// and why, when it did not take.
pub(super) fn change_line(c: &ChangeRecord) -> String {
    let why = c
        .error
        .as_deref()
        .map(|e| format!(" ({e})"))
        .unwrap_or_default();
    format!(
        "{} {}/{} with {}: {}{why}",
        c.action, c.kind, c.name, c.provider, c.result
    )
}

fn commit_text(commit: Option<&str>) -> String {
    commit
        .map(|c| format!(", commit {}", &c[..c.len().min(12)]))
        .unwrap_or_default()
}

fn run_json(r: &labctl::store::Run) -> Json {
    json!({
        "id": r.id, "trigger": r.trigger, "controller": r.controller, "outcome": r.outcome.as_str(),
        "startedAt": r.started_at, "finishedAt": r.finished_at, "commit": r.commit_sha,
        "resources": r.resources, "opened": r.counts.deviations_opened, "resolved": r.counts.deviations_resolved,
        "open": r.counts.deviations_open, "error": r.error, "reason": r.reason,
    })
}

pub fn run_drift(args: &DriftArgs) -> ExitCode {
    let history = match args.history.as_deref().map(parse_identity).transpose() {
        Ok(h) => h,
        Err(e) => {
            errln!("error: --history: {e}");
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    let min = args.severity.as_deref().and_then(Severity::parse);
    let result = with_store(
        args.database_url.as_deref(),
        (Vec::new(), Vec::new(), Default::default()),
        async |store| {
            let list = match &history {
                Some((kind, name, Some(field))) => {
                    store.deviation_history(kind, name, field).await?
                }
                Some((kind, name, None)) => store.resource_history(kind, name).await?,
                None => store.open_deviations(args.kind.as_deref(), min).await?,
            };
            let changes = match &history {
                Some((kind, name, _)) => store.resource_changes(kind, name).await?,
                None => Vec::new(),
            };
            let pulls = store.open_pull_requests_by_deviation().await?;
            Ok((list, changes, pulls))
        },
    );
    let (mut list, changes, pulls) = match result {
        Ok(l) => l,
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(age) = args.since {
        let cutoff = now_ms() - age;
        list.retain(|d| d.opened_at >= cutoff);
    }
    match args.format {
        Format::Json => super::print_json(&Json::Array(
            list.iter()
                .map(|d| {
                    let mut j = deviation_json(d);
                    if let Some(pr) = pull_of(d, &pulls) {
                        j["pullRequest"] = pull_request_json(pr);
                    }
                    if let Some(c) = labctl::store::repaired_by(d, &changes) {
                        j["repairedBy"] = change_json(c);
                    }
                    j
                })
                .collect(),
        )),
        Format::Human => {
            if list.is_empty() {
                outln!(
                    "{}",
                    if history.is_some() {
                        "No such deviation recorded."
                    } else {
                        "No open deviations."
                    }
                );
            }
            for d in &list {
                let r = &d.record;
                let field = if r.field_path.is_empty() {
                    String::new()
                } else {
                    format!(" {}", r.field_path)
                };
                let values = match (&r.actual, &r.expected, r.dtype.as_str()) {
                    (Some(a), Some(e), "drifted") => format!("  live {a} → Git {e}"),
                    _ => String::new(),
                };
                let opened = format!("{} (run {})", utc(d.opened_at), d.opened_run);
                let life = match (d.resolved_at, d.resolved_run) {
                    (Some(at), run) => format!(
                        "opened {opened}, resolved {}{}{}{}",
                        utc(at),
                        run.map(|r| format!(" by run {r}")).unwrap_or_default(),
                        commit_text(d.resolved_commit.as_deref()),
                        labctl::store::repaired_by(d, &changes)
                            .map(|c| format!(
                                ", which made the {} with {}",
                                c.change.action, c.change.provider
                            ))
                            .unwrap_or_default()
                    ),
                    (None, _) => format!("open since {opened}, seen {}×", d.seen_count),
                };
                // What to do is said of an open deviation only.
                let remediation = r
                    .remediation
                    .as_deref()
                    .filter(|_| d.is_open())
                    .map(|x| format!("; {x}"))
                    .unwrap_or_default();
                outln!(
                    "{:<8} {} {}/{}{field}{values}",
                    r.severity.as_str().to_uppercase(),
                    r.dtype,
                    r.kind,
                    r.name
                );
                let pull = pull_of(d, &pulls)
                    .map(|pr| {
                        format!(
                            "; {}{}",
                            pr.summary(),
                            pr.url
                                .as_deref()
                                .map(|u| format!(": {u}"))
                                .unwrap_or_default()
                        )
                    })
                    .unwrap_or_default();
                outln!("         {life}{remediation}{pull}");
            }
            if !changes.is_empty() {
                outln!("Changes labctl asked for:");
                for c in &changes {
                    outln!("  {} (run {}) {}", utc(c.at), c.run, change_line(&c.change));
                }
            }
        }
    }
    ExitCode::SUCCESS
}

/// `Kind/name` (every field) or `Kind/name:spec.field` (one; empty for the whole resource).
fn parse_identity(text: &str) -> Result<(String, String, Option<String>), String> {
    let (resource, field) = match text.split_once(':') {
        Some((resource, field)) => (resource, Some(field.to_string())),
        None => (text, None),
    };
    let (kind, name) = resource
        .split_once('/')
        .ok_or_else(|| format!("`{text}` is not Kind/name or Kind/name:field"))?;
    Ok((kind.to_string(), name.to_string(), field))
}

/// labctl's open pull request covering `d`, while `d` is open.
fn pull_of<'a>(
    d: &Deviation,
    pulls: &'a std::collections::BTreeMap<String, PullRequest>,
) -> Option<&'a PullRequest> {
    let r = &d.record;
    pulls
        .get(&labctl::store::deviation_key(
            &r.kind,
            &r.name,
            &r.field_path,
        ))
        .filter(|_| d.is_open())
}

fn pull_request_json(pr: &PullRequest) -> Json {
    json!({
        "number": pr.number, "url": pr.url, "branch": pr.branch, "state": pr.state.as_str(),
        "summary": pr.summary(), "deviations": pr.deviation_keys,
    })
}

fn change_json(c: &AppliedChange) -> Json {
    serde_json::to_value(c).expect("a change serialises")
}

fn deviation_json(d: &Deviation) -> Json {
    let r = &d.record;
    json!({
        "kind": r.kind, "name": r.name, "field": r.field_path, "type": r.dtype.as_str(),
        "severity": r.severity.as_str(), "autoCorrectable": r.auto_correctable,
        "remediation": r.remediation, "expected": r.expected, "actual": r.actual,
        "openedAt": d.opened_at, "lastSeenAt": d.last_seen_at, "seenCount": d.seen_count,
        "resolvedAt": d.resolved_at, "resolvedCommit": d.resolved_commit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_parse() {
        assert_eq!(
            parse_identity("DhcpReservation/whisper:spec.ip"),
            Ok((
                "DhcpReservation".into(),
                "whisper".into(),
                Some("spec.ip".into())
            ))
        );
        assert_eq!(
            parse_identity("Route/wiki"),
            Ok(("Route".into(), "wiki".into(), None))
        );
        assert_eq!(
            parse_identity("Route/wiki:"),
            Ok(("Route".into(), "wiki".into(), Some(String::new())))
        );
        assert!(parse_identity("wiki").is_err());
    }
}
