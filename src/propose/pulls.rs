//! Pull requests for labctl's branches, as Renovate keeps them at its best: one per change set,
//! found by branch name on the forge as well as in the store (so a lost database does not
//! duplicate), updated in place when the set changes, closed with a comment when what it
//! proposed resolved by itself, and never reopened after a person closed it until the lab
//! changes again. Caps bound how many are open and how many are opened per hour.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::forge::{self, Forge, NewPull, Pull, PullState};
use super::publish::{self, Published};
use super::{ChangeSet, Proposals};
use crate::diff::{DeviationType, Plan};
use crate::model::{Kind, ProposeSpec};
use crate::reconcile::Loaded;
use crate::source::GitLocation;
use crate::store::{PullRequestState, Store};

/// Default of `propose.maxOpen`.
pub const DEFAULT_MAX_OPEN: u32 = 10;
/// Default of `propose.maxPerHour`.
pub const DEFAULT_MAX_PER_HOUR: u32 = 5;
/// Lines of the change's diff a pull request body shows.
const EXCERPT_LINES: usize = 80;
const MARKER: &str = "<!-- labctl:fingerprint=";

/// What became of one change set.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub branch: String,
    pub title: String,
    /// The branch, when it was pushed (not for a declined or capped set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<Published>,
    /// `opened`, `updated`, `unchanged`, `declined` (a person closed it for this very
    /// change), `capped`, `left` (the branch is someone else's), `none` (no forge) or
    /// `failed`; in a dry run `would-open` and `would-update`.
    pub pull: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A pull request of an earlier run that is no longer open.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settled {
    pub branch: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<u64>,
    /// `merged`, `closed` (by a person) or `resolved` (labctl closed it: nothing left to
    /// propose); in a dry run `would-resolve`.
    pub state: &'static str,
}

/// What the publishing step of one run did.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub outcomes: Vec<Outcome>,
    pub settled: Vec<Settled>,
    /// Failures that stopped the step or part of it.
    pub errors: Vec<String>,
}

impl Report {
    /// Whether anything failed.
    pub fn failed(&self) -> bool {
        !self.errors.is_empty()
            || self.outcomes.iter().any(|o| {
                o.pull == "failed" || o.push.as_ref().is_some_and(|p| p.outcome == "failed")
            })
    }
}

/// Where the change sets go.
pub struct Target<'a> {
    /// The repository read (`None`: a plain directory, nothing can be pushed).
    pub location: Option<&'a GitLocation>,
    /// `--path`.
    pub subdir: Option<&'a str>,
    /// `--rev`: the branch pull requests merge into when labctl.yaml names none.
    pub rev: Option<&'a str>,
    pub store: Option<&'a Store>,
    /// Say what would be pushed, opened, updated and closed; write nothing anywhere (the forge
    /// and the store are only read).
    pub dry_run: bool,
}

/// The store key of a deviation: `Kind/name` and its field path, if any.
pub fn deviation_key(kind: Kind, name: &str, field_path: &str) -> String {
    crate::store::deviation_key(kind.as_str(), name, field_path)
}

/// The resource of a [`deviation_key`].
fn key_resource(key: &str) -> (&str, &str) {
    let resource = key.split_once(' ').map_or(key, |(r, _)| r);
    resource.split_once('/').unwrap_or((resource, ""))
}

/// What a change set proposes: its deviations and their live values. The same fingerprint
/// means the same proposal.
pub fn fingerprint(set: &ChangeSet) -> String {
    let mut lines: Vec<String> = set
        .covers
        .iter()
        .map(|c| {
            format!(
                "{} {} {}",
                deviation_key(set.kind, &set.name, &c.field_path),
                c.dtype.as_str(),
                c.live.as_ref().map(|v| v.to_string()).unwrap_or_default()
            )
        })
        .collect();
    lines.sort();
    let digest = Sha256::digest(lines.join("\n").as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The fingerprint a pull request body carries, if it is one of labctl's.
fn marker(body: &str) -> Option<&str> {
    let start = body.find(MARKER)? + MARKER.len();
    let rest = &body[start..];
    Some(&rest[..rest.find(" -->")?])
}

/// Pushes each change set and opens, updates or leaves its pull request; then settles the
/// pull requests of earlier runs whose change sets are gone. Nothing is opened or closed
/// from a plan that could not observe every provider.
pub async fn publish(
    target: &Target<'_>,
    loaded: &Loaded,
    plan: &Plan,
    proposals: &Proposals,
) -> Report {
    let spec = publish::settings(loaded);
    let mut report = Report::default();
    let forge = match spec.forge.as_ref().map(forge::connect) {
        None => None,
        Some(Ok(f)) => Some(f),
        Some(Err(e)) => {
            // Branches without their pull requests would be opened later, unreviewed in
            // between: nothing is pushed until the forge can be reached.
            report.errors.push(format!("{e}; nothing is pushed"));
            return report;
        }
    };
    let base = match &forge {
        Some(f) => match base_branch(f.as_ref(), &spec, target.rev).await {
            Ok(b) => Some(b),
            Err(e) => {
                report.errors.push(format!("{e}; nothing is pushed"));
                return report;
            }
        },
        None => None,
    };
    // Only pull request bodies show when a deviation was first seen.
    let first_seen = match forge {
        Some(_) => first_seen(target.store).await,
        None => BTreeMap::new(),
    };
    let mut opened = 0u32;
    let (mut open_now, mut recent) = match target.store {
        Some(store) => {
            let hour_ago = crate::time::now_ms() - 3_600_000;
            match (
                store.open_pull_requests().await,
                store.pull_requests_created_since(hour_ago).await,
            ) {
                (Ok(open), Ok(recent)) => (open.len() as u32, recent as u32),
                (Err(e), _) | (_, Err(e)) => {
                    report
                        .errors
                        .push(format!("the store: {e}; nothing is pushed"));
                    return report;
                }
            }
        }
        None => (0, 0),
    };
    let max_open = spec.max_open.unwrap_or(DEFAULT_MAX_OPEN);
    let max_per_hour = spec.max_per_hour.unwrap_or(DEFAULT_MAX_PER_HOUR);

    for set in &proposals.change_sets {
        let fp = fingerprint(set);
        let mut out = Outcome {
            branch: set.branch.clone(),
            title: set.title.clone(),
            push: None,
            pull: "none",
            number: None,
            url: None,
            detail: None,
            warnings: Vec::new(),
        };
        let known = match target.store {
            Some(store) => match store.pull_request_by_branch(&set.branch).await {
                Ok(k) => k,
                Err(e) => {
                    out.pull = "failed";
                    out.detail = Some(format!("the store: {e}"));
                    report.outcomes.push(out);
                    continue;
                }
            },
            None => None,
        };
        let found = match (&forge, &base) {
            (Some(f), Some(base)) => match f.find(&set.branch, base).await {
                Ok(p) => p,
                Err(e) => {
                    out.pull = "failed";
                    out.detail = Some(e.to_string());
                    report.outcomes.push(out);
                    continue;
                }
            },
            _ => None,
        };
        let open = found.as_ref().filter(|p| p.state == PullState::Open);
        // A person closed this very proposal: not again until the lab changes.
        let declined_on_forge = found
            .as_ref()
            .is_some_and(|p| p.state == PullState::Closed && marker(&p.body) == Some(&fp));
        let declined_in_store = known.as_ref().is_some_and(|k| {
            k.state == PullRequestState::Closed && k.fingerprint.as_deref() == Some(&fp)
        });
        if open.is_none() && (declined_on_forge || declined_in_store) {
            out.pull = "declined";
            out.number = found.as_ref().map(|p| p.number);
            out.url = found.as_ref().map(|p| p.url.clone());
            out.detail = Some(
                "a person closed this proposal without merging; it comes back when the live \
                 value changes"
                    .into(),
            );
            if let (Some(store), Some(p), false, false) =
                (target.store, &found, declined_in_store, target.dry_run)
            {
                remember_closed(store, set, p, &fp, &mut report).await;
            }
            report.outcomes.push(out);
            continue;
        }
        if forge.is_some() && open.is_none() {
            let why = if open_now >= max_open {
                Some(format!(
                    "{max_open} of labctl's pull requests are open (maxOpen)"
                ))
            } else if recent >= max_per_hour {
                Some(format!(
                    "{max_per_hour} pull requests were opened in the last hour (maxPerHour)"
                ))
            } else {
                None
            };
            if let Some(why) = why {
                out.pull = "capped";
                out.detail = Some(format!("{why}; it comes up again in a later run"));
                report.outcomes.push(out);
                continue;
            }
        }

        if target.dry_run {
            out.pull = match (&forge, open) {
                (None, _) => "none",
                (Some(_), None) => "would-open",
                (Some(_), Some(p)) => {
                    let body = body(set, loaded, plan, &fp, &first_seen);
                    out.number = Some(p.number);
                    out.url = Some(p.url.clone());
                    if p.body == body && p.title == set.title {
                        "unchanged"
                    } else {
                        "would-update"
                    }
                }
            };
            if out.pull == "would-open" {
                open_now += 1;
                recent += 1;
            }
            report.outcomes.push(out);
            continue;
        }
        let pushed = publish::push_set(target.location, target.subdir, loaded, set).await;
        let push_ok = matches!(pushed.outcome, "created" | "updated" | "unchanged");
        out.push = Some(pushed.clone());
        if !push_ok {
            out.pull = if pushed.outcome == "foreign" {
                "left"
            } else {
                "failed"
            };
            out.detail = pushed.detail.clone();
            report.outcomes.push(out);
            continue;
        }
        let (Some(f), Some(base)) = (&forge, &base) else {
            report.outcomes.push(out);
            continue;
        };
        let body = body(set, loaded, plan, &fp, &first_seen);
        let result = match open {
            Some(p) if p.body == body && p.title == set.title => Ok(("unchanged", p.clone())),
            Some(p) => f
                .edit(p.number, &set.title, &body)
                .await
                .map(|()| ("updated", p.clone())),
            None => {
                let new = NewPull {
                    branch: &set.branch,
                    base,
                    title: &set.title,
                    body: &body,
                    labels: &spec.labels,
                    reviewers: &spec.reviewers,
                };
                match f.open(&new).await {
                    Ok((p, warnings)) => {
                        out.warnings = warnings;
                        opened += 1;
                        open_now += 1;
                        recent += 1;
                        Ok(("opened", p))
                    }
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            Ok((what, p)) => {
                out.pull = what;
                out.number = Some(p.number);
                out.url = Some(p.url.clone());
                if let Some(store) = target.store {
                    let keys: Vec<String> = set
                        .covers
                        .iter()
                        .map(|c| deviation_key(set.kind, &set.name, &c.field_path))
                        .collect();
                    if let Err(e) = store
                        .record_pull_request(
                            &set.branch,
                            Some(&p.url),
                            Some(p.number as i64),
                            &keys,
                            Some(&fp),
                        )
                        .await
                    {
                        report.errors.push(format!("recording #{}: {e}", p.number));
                    }
                }
            }
            Err(e) => {
                out.pull = "failed";
                out.detail = Some(match e.status() {
                    Some(409 | 422) => format!(
                        "{e}; the forge holds a pull request for this branch that labctl did \
                         not find; the next run looks again"
                    ),
                    _ => e.to_string(),
                });
            }
        }
        report.outcomes.push(out);
    }
    tracing::info!(opened, "pull requests");

    if let (Some(store), Some(f), Some(base)) = (target.store, &forge, &base) {
        settle(
            store,
            f.as_ref(),
            base,
            plan,
            proposals,
            target.dry_run,
            &mut report,
        )
        .await;
    }
    report
}

/// The branch pull requests merge into: labctl.yaml's, else the tracked branch, else the
/// repository's default.
pub(crate) async fn base_branch(
    forge: &dyn Forge,
    spec: &ProposeSpec,
    rev: Option<&str>,
) -> Result<String, forge::ForgeError> {
    if let Some(base) = spec.forge.as_ref().and_then(|f| f.base.clone()) {
        return Ok(base);
    }
    let is_commit = |r: &str| r.len() >= 7 && r.bytes().all(|b| b.is_ascii_hexdigit());
    match rev.map(|r| r.strip_prefix("refs/heads/").unwrap_or(r)) {
        Some(r) if r != "HEAD" && !is_commit(r) => Ok(r.to_string()),
        _ => forge.default_branch().await,
    }
}

/// Records that a person closed `p` for the change set fingerprinted `fp`.
async fn remember_closed(store: &Store, set: &ChangeSet, p: &Pull, fp: &str, report: &mut Report) {
    let keys: Vec<String> = set
        .covers
        .iter()
        .map(|c| deviation_key(set.kind, &set.name, &c.field_path))
        .collect();
    let recorded = async {
        let id = store
            .record_pull_request(
                &set.branch,
                Some(&p.url),
                Some(p.number as i64),
                &keys,
                Some(fp),
            )
            .await?;
        store
            .set_pull_request_state(id, PullRequestState::Closed, false)
            .await
    };
    if let Err(e) = recorded.await {
        report.errors.push(format!("recording #{}: {e}", p.number));
    }
}

/// Settles the open pull requests of earlier runs whose branch has no change set now: merged
/// or closed by a person is recorded; one whose deviations are all gone from a complete plan
/// is commented on and closed.
async fn settle(
    store: &Store,
    forge: &dyn Forge,
    base: &str,
    plan: &Plan,
    proposals: &Proposals,
    dry_run: bool,
    report: &mut Report,
) {
    let open = match store.open_pull_requests().await {
        Ok(open) => open,
        Err(e) => {
            report.errors.push(format!("the store: {e}"));
            return;
        }
    };
    let current: BTreeSet<&str> = proposals
        .change_sets
        .iter()
        .map(|s| s.branch.as_str())
        .collect();
    let deviating: BTreeSet<(String, &str)> = plan
        .deviations
        .iter()
        .map(|d| (d.kind.to_string(), d.name.as_str()))
        .collect();
    for pr in open {
        if current.contains(pr.branch.as_str()) {
            continue;
        }
        let found = match forge.find(&pr.branch, base).await {
            Ok(found) => found,
            Err(e) => {
                report.errors.push(e.to_string());
                continue;
            }
        };
        let settled = match found {
            Some(p) if p.state == PullState::Merged => {
                Some((PullRequestState::Merged, false, "merged", Some(p.number)))
            }
            Some(p) if p.state == PullState::Closed => {
                Some((PullRequestState::Closed, false, "closed", Some(p.number)))
            }
            // Open: closed by labctl only once a complete plan shows nothing of it.
            open => {
                let resolved = plan.unobservable.is_empty()
                    && pr.deviation_keys.iter().all(|k| {
                        let (kind, name) = key_resource(k);
                        !deviating.contains(&(kind.to_string(), name))
                    });
                match (resolved, open) {
                    (false, _) => None,
                    (true, Some(p)) if dry_run => Some((
                        PullRequestState::Closed,
                        true,
                        "would-resolve",
                        Some(p.number),
                    )),
                    (true, None) => Some((PullRequestState::Closed, true, "resolved", None)),
                    (true, Some(p)) => {
                        let comment = resolved_comment(&pr.deviation_keys);
                        let closed = async {
                            forge.comment(p.number, &comment).await?;
                            forge.close(p.number).await
                        };
                        match closed.await {
                            Ok(()) => {
                                Some((PullRequestState::Closed, true, "resolved", Some(p.number)))
                            }
                            Err(e) => {
                                report.errors.push(e.to_string());
                                None
                            }
                        }
                    }
                }
            }
        };
        if let Some((state, forget, what, number)) = settled {
            if dry_run {
                report.settled.push(Settled {
                    branch: pr.branch.clone(),
                    number,
                    state: what,
                });
                continue;
            }
            if let Err(e) = store.set_pull_request_state(pr.id, state, forget).await {
                report.errors.push(format!("recording {}: {e}", pr.branch));
            }
            report.settled.push(Settled {
                branch: pr.branch.clone(),
                number,
                state: what,
            });
        }
    }
}

fn resolved_comment(keys: &[String]) -> String {
    let mut out = String::from(
        "labctl no longer sees what this pull request proposed: the live lab and Git agree \
         again for\n\n",
    );
    for k in keys {
        out.push_str(&format!("- `{k}`\n"));
    }
    out.push_str("\nClosing it. If the difference comes back, labctl proposes it again.\n");
    out
}

/// When each open deviation was first seen, by key (empty without a store).
async fn first_seen(store: Option<&Store>) -> BTreeMap<String, i64> {
    let Some(store) = store else {
        return BTreeMap::new();
    };
    match store.open_deviations(None, None).await {
        Ok(open) => open
            .into_iter()
            .filter_map(|d| {
                let kind = Kind::parse(&d.record.kind)?;
                Some((
                    deviation_key(kind, &d.record.name, &d.record.field_path),
                    d.opened_at,
                ))
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "first-seen times of deviations not read");
            BTreeMap::new()
        }
    }
}

/// A table cell: one line, no pipe, code-formatted.
fn cell(value: Option<&serde_json::Value>) -> String {
    match value {
        None => "—".into(),
        Some(v) => {
            let mut text = v.to_string().replace('|', "\\|").replace('\n', " ");
            if text.chars().count() > 120 {
                text = text.chars().take(117).collect::<String>() + "…";
            }
            format!("`{}`", text.replace('`', "'"))
        }
    }
}

/// The pull request body: what differs (one row per deviation), the change, the checks it
/// passed, how to make labctl stop proposing it, and the fingerprint that identifies it.
pub fn body(
    set: &ChangeSet,
    loaded: &Loaded,
    plan: &Plan,
    fp: &str,
    first_seen: &BTreeMap<String, i64>,
) -> String {
    let mut out = format!(
        "labctl found that the live lab and Git differ for **{} {}** (provider `{}`) and \
         proposes this change so that Git says what the lab says. Merge it to accept the live \
         state; close it to decline.\n\n",
        set.kind, set.name, set.provider
    );
    out.push_str("| Resource | Field | In Git | Live | First seen | Severity |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    for c in &set.covers {
        let key = deviation_key(set.kind, &set.name, &c.field_path);
        let seen = first_seen
            .get(&key)
            .map_or_else(|| "this run".to_string(), |ms| crate::time::utc(*ms));
        out.push_str(&format!(
            "| {}/{} | {} | {} | {} | {} | {} |\n",
            set.kind,
            set.name,
            if c.field_path.is_empty() {
                "(whole resource)"
            } else {
                &c.field_path
            },
            cell(c.in_git.as_ref()),
            cell(c.live.as_ref()),
            seen,
            c.severity.as_str()
        ));
    }
    let patch = set.patch();
    let lines: Vec<&str> = patch.lines().collect();
    out.push_str("\n### The change\n\n```diff\n");
    for line in lines.iter().take(EXCERPT_LINES) {
        out.push_str(line);
        out.push('\n');
    }
    if lines.len() > EXCERPT_LINES {
        out.push_str(&format!(
            "… {} more lines in the branch\n",
            lines.len() - EXCERPT_LINES
        ));
    }
    out.push_str("```\n\n### Checked before it was proposed\n\n");
    out.push_str(&format!(
        "- The repository with this change validates with no errors ({} warning(s)).\n",
        set.warnings.len()
    ));
    out.push_str(&format!(
        "- A plan of it against the same observation of `{}` no longer shows the {} \
         deviation(s) above, and nothing new about {} {}.\n",
        set.provider,
        set.covers.len(),
        set.kind,
        set.name
    ));
    let others = plan
        .deviations
        .iter()
        .filter(|d| !(d.kind == set.kind && d.name == set.name))
        .count();
    out.push_str(&format!(
        "- Based on commit `{}`; {others} other deviation(s) in the lab are not part of it.\n",
        loaded.commit().unwrap_or("(none)")
    ));
    let fields: Vec<&str> = set
        .covers
        .iter()
        .filter(|c| c.dtype == DeviationType::Drifted)
        .map(|c| c.field_path.as_str())
        .collect();
    out.push_str("\n### To make labctl stop proposing this\n\n");
    if fields.is_empty() {
        out.push_str(&format!(
            "Close this pull request: labctl does not propose it again while the lab stays as \
             it is. To stop proposals for every {} for good, set its policy in labctl.yaml to \
             `observe`:\n\n```yaml\npolicy:\n  {}: observe\n```\n",
            set.kind, set.kind
        ));
    } else {
        out.push_str(&format!(
            "Close this pull request, or add this rule to labctl.yaml to leave these fields \
             alone for good:\n\n```yaml\nignore:\n  - kind: {}\n    name: {}\n    fields: [{}]\n    \
             reason: \"set live on purpose\"\n```\n",
            set.kind,
            set.name,
            fields.join(", ")
        ));
    }
    out.push_str(&format!("\n{MARKER}{fp} -->\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_markers_read_back() {
        let key = deviation_key(Kind::DhcpReservation, "whisper", "spec.ip");
        assert_eq!(key, "DhcpReservation/whisper spec.ip");
        assert_eq!(key_resource(&key), ("DhcpReservation", "whisper"));
        assert_eq!(
            key_resource(&deviation_key(Kind::Device, "nas", "")),
            ("Device", "nas")
        );
        assert_eq!(
            marker(&format!("text\n{MARKER}0123abcd -->\n")),
            Some("0123abcd")
        );
        assert_eq!(marker("a body without one"), None);
    }

    #[test]
    fn cells_stay_in_their_column() {
        let v = serde_json::json!("a|b`c\nd");
        assert_eq!(cell(Some(&v)), "`\"a\\|b'c\\nd\"`");
        assert_eq!(cell(None), "—");
    }
}
