//! Changes an assistant proposes: resource documents (new, or replacing the document of the
//! same kind and name) or field edits. Each is validated with the whole repository, planned
//! against the latest stored observation — no provider is asked, nothing in the lab changes —
//! committed on its own branch and, where a forge is configured, opened as a pull request a
//! person reviews and merges.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use super::forge::{self, NewPull, Pull, PullState};
use super::{yaml, FileChange};
use crate::diff::{self, Plan, ProviderInput};
use crate::model::Kind;
use crate::providers::{Observation, Provider, Resource};
use crate::reconcile::{import, Loaded};
use crate::source::{Pushed, Snapshot};
use crate::store::{Outcome, Store};
use crate::validate::{self, Diagnostic, Severity};

/// The most documents one proposal may hold.
pub const MAX_DOCUMENTS: usize = 50;

/// What an assistant asks to change.
#[derive(Debug, Clone)]
pub enum Change {
    /// YAML of one or more resource documents.
    Documents(String),
    /// Field edits of declared resources.
    Edits(Vec<FieldEdit>),
}

/// One field of one declared resource set to a value.
#[derive(Debug, Clone)]
pub struct FieldEdit {
    pub kind: Kind,
    pub name: String,
    /// `spec.ip`.
    pub field: String,
    pub value: Json,
}

/// Where the proposal goes.
pub struct Target<'a> {
    pub location: &'a crate::source::GitLocation,
    pub subdir: Option<&'a str>,
    pub rev: Option<&'a str>,
}

/// What a proposal came to.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Proposed {
    pub branch: String,
    pub commit: String,
    /// `created` or `unchanged` (the same proposal was made before).
    pub push: &'static str,
    pub files: Vec<ProposedFile>,
    /// The pull request (absent without a forge).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<Pull>,
    pub plan: PlanSummary,
    /// Validation warnings of the repository with the change.
    pub warnings: Vec<String>,
}

/// A file the proposal writes.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProposedFile {
    pub path: String,
    /// `added` or `modified`.
    pub action: &'static str,
}

/// What a plan of the repository with the proposal shows against the latest observation.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanSummary {
    /// The run whose observation it was planned against.
    pub run: i64,
    /// What labctl would do once it is merged, per the kinds' policies: one line per change
    /// to the proposed resources (`create DhcpReservation ollama with kea`).
    pub changes: Vec<String>,
    /// How the proposed resources would then differ from the lab, one line each.
    pub deviations: Vec<String>,
}

/// Why a proposal was not made.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The change does not validate: nothing was written.
    #[error("the repository with this change does not validate ({} error(s))", .0.len())]
    Invalid(Vec<Diagnostic>),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

/// Validates, plans, commits and opens `change` for `by`, who gives `reason`.
pub async fn propose(
    store: &Store,
    loaded: &Loaded,
    providers: &[Arc<dyn Provider>],
    target: &Target<'_>,
    change: &Change,
    reason: &str,
    by: &str,
) -> Result<Proposed, AgentError> {
    let base = loaded
        .commit()
        .ok_or_else(|| AgentError::Refused("the desired state is not a Git commit".into()))?;
    let held = loaded.files().map_err(|e| {
        AgentError::Failed(format!("the commit's files could not be read again: {e}"))
    })?;
    let (files, touched) = edits(loaded, &held, change).map_err(AgentError::Refused)?;
    let snapshot = super::with_files(&held, &files);
    drop(held);
    let validation = validate::validate(&snapshot);
    let Some(state) = validation.state else {
        return Err(AgentError::Invalid(
            validation
                .diagnostics
                .into_iter()
                .filter(|d| d.severity == Severity::Error)
                .collect(),
        ));
    };
    let warnings: Vec<String> = validation
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .map(|d| d.summary())
        .collect();
    let proposed = Loaded::new(snapshot, state, Vec::new());
    let plan = plan_stored(store, &proposed, providers)
        .await
        .map_err(AgentError::Refused)?;
    let summary = summarize(&plan.1, plan.0, &touched);

    // One branch per distinct proposal: the same one made twice lands on the same branch.
    let mut hash = Sha256::new();
    for f in &files {
        hash.update(f.path.as_bytes());
        hash.update([0]);
        hash.update(f.after.as_deref().unwrap_or("").as_bytes());
        hash.update([0]);
    }
    let digest: String = hash
        .finalize()
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    let (kind, name) = touched
        .iter()
        .next()
        .cloned()
        .expect("a change touches a resource");
    let slug = super::branch_name(kind, &name);
    let slug = slug.trim_start_matches("labctl/drift/");
    let branch = format!("labctl/proposal/{slug}-{digest}");
    let title = match touched.len() {
        1 => format!("labctl: proposed change to {kind} {name}"),
        n => format!("labctl: proposed change to {n} resources"),
    };
    let message = format!(
        "{title}\n\n{}\n\nProposed over MCP by {by}; labctl changed nothing in the lab.\n",
        reason.trim()
    );
    let (author_name, author_email) = super::publish::author(loaded);
    let commit = super::publish::Commit {
        location: target.location.clone(),
        subdir: target.subdir.map(str::to_string),
        branch: branch.clone(),
        base: base.to_string(),
        files: files
            .iter()
            .map(|f| (f.path.clone(), f.after.clone()))
            .collect(),
        message,
        author: (author_name.to_string(), author_email.to_string()),
    }
    .push()
    .await
    .map_err(AgentError::Failed)?;
    let push = match &commit {
        Pushed::Created { .. } | Pushed::Updated { .. } => "created",
        Pushed::Unchanged { .. } => "unchanged",
        Pushed::Foreign { why, .. } => {
            return Err(AgentError::Refused(format!(
                "branch {branch} holds someone else's commit ({why}); it is left alone"
            )))
        }
    };

    let spec = super::publish::settings(loaded);
    let pull_request = match spec.forge.as_ref() {
        None => None,
        Some(f) => {
            let forge = forge::connect(f).map_err(|e| AgentError::Failed(e.to_string()))?;
            let base_branch = super::pulls::base_branch(forge.as_ref(), &spec, target.rev)
                .await
                .map_err(|e| AgentError::Failed(e.to_string()))?;
            let failed = |e: forge::ForgeError| AgentError::Failed(e.to_string());
            match forge
                .find(&branch, &base_branch)
                .await
                .map_err(failed)?
                .filter(|p| p.state == PullState::Open)
            {
                Some(open) => Some(open),
                None => {
                    let body = body(&files, reason, by, &summary, &warnings, base);
                    let new = NewPull {
                        branch: &branch,
                        base: &base_branch,
                        title: &title,
                        body: &body,
                        labels: &spec.labels,
                        reviewers: &spec.reviewers,
                    };
                    Some(forge.open(&new).await.map_err(failed)?.0)
                }
            }
        }
    };
    Ok(Proposed {
        branch,
        commit: commit.commit().to_string(),
        push,
        files: files
            .iter()
            .map(|f| ProposedFile {
                path: f.path.clone(),
                action: f.action(),
            })
            .collect(),
        pull_request,
        plan: summary,
        warnings,
    })
}

/// The resources a change touches.
type Touched = BTreeSet<(Kind, String)>;

/// The file edits of `change`, and the resources it touches.
/// `held` is `loaded`'s files.
fn edits(
    loaded: &Loaded,
    held: &Snapshot,
    change: &Change,
) -> Result<(Vec<FileChange>, Touched), String> {
    let mut files: Vec<FileChange> = Vec::new();
    let mut touched = BTreeSet::new();
    // The text of `path` with the edits so far.
    let current = |files: &[FileChange], path: &str| -> Option<String> {
        files
            .iter()
            .find(|f| f.path == path)
            .and_then(|f| f.after.clone())
            .or_else(|| held.text(path).map(str::to_string))
    };
    let write = |files: &mut Vec<FileChange>, path: String, after: String| match files
        .iter_mut()
        .find(|f| f.path == path)
    {
        Some(f) => f.after = Some(after),
        None => {
            let before = held.text(&path).map(str::to_string);
            files.push(FileChange {
                path,
                before,
                after: Some(after),
            });
        }
    };
    match change {
        Change::Documents(text) => {
            let docs = split_documents(text)?;
            if docs.is_empty() {
                return Err("no document given".into());
            }
            if docs.len() > MAX_DOCUMENTS {
                return Err(format!(
                    "{} documents; at most {MAX_DOCUMENTS} in one proposal",
                    docs.len()
                ));
            }
            for (kind, name, doc) in docs {
                if kind == Kind::Config {
                    return Err("labctl.yaml (Config) is not changed through proposals".into());
                }
                if !touched.insert((kind, name.clone())) {
                    return Err(format!("{kind} {name} is given twice"));
                }
                match loaded.state.origin(kind, &name) {
                    Some(origin) => {
                        let path = origin.file.clone();
                        let text = current(&files, &path)
                            .ok_or_else(|| format!("{path} is not in the repository"))?;
                        let after = yaml::replace_document(&text, kind.as_str(), &name, &doc)
                            .map_err(|e| format!("{path}: {e}"))?;
                        write(&mut files, path, after);
                    }
                    None => {
                        let path = import::path(kind, &name);
                        if current(&files, &path).is_some() {
                            return Err(format!(
                                "{path} already exists and does not declare {kind} {name}"
                            ));
                        }
                        let mut doc = doc.trim_start_matches("---\n").to_string();
                        if !doc.ends_with('\n') {
                            doc.push('\n');
                        }
                        write(&mut files, path, doc);
                    }
                }
            }
        }
        Change::Edits(edits) => {
            if edits.is_empty() {
                return Err("no edit given".into());
            }
            for e in edits {
                let origin = loaded.state.origin(e.kind, &e.name).ok_or_else(|| {
                    format!(
                        "{} {} is not declared in Git; propose a document for it instead",
                        e.kind, e.name
                    )
                })?;
                let path = origin.file.clone();
                let text = current(&files, &path)
                    .ok_or_else(|| format!("{path} is not in the repository"))?;
                let after =
                    yaml::set_field(&text, e.kind.as_str(), &e.name, &e.field, Some(&e.value))
                        .map_err(|err| format!("{path}: {err}"))?;
                touched.insert((e.kind, e.name.clone()));
                write(&mut files, path, after);
            }
        }
    }
    files.retain(|f| f.before != f.after);
    if files.is_empty() {
        return Err("the change leaves every file as it is".into());
    }
    Ok((files, touched))
}

/// Each document of `text` with its kind and name, as its own text.
fn split_documents(text: &str) -> Result<Vec<(Kind, String, String)>, String> {
    let mut out = Vec::new();
    let mut chunk = String::new();
    let mut chunks = Vec::new();
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "---" {
            chunks.push(std::mem::take(&mut chunk));
        } else {
            chunk.push_str(line);
        }
    }
    chunks.push(chunk);
    for (i, chunk) in chunks.into_iter().enumerate() {
        if chunk.lines().all(|l| {
            let t = l.trim();
            t.is_empty() || t.starts_with('#')
        }) {
            continue;
        }
        let doc: Json = serde_yaml::from_str(&chunk)
            .map_err(|e| format!("document {}: not YAML: {e}", i + 1))?;
        let kind = doc["kind"]
            .as_str()
            .and_then(Kind::parse)
            .ok_or_else(|| format!("document {}: `kind` is not a labctl kind", i + 1))?;
        let name = doc["metadata"]["name"]
            .as_str()
            .ok_or_else(|| format!("document {}: `metadata.name` is missing", i + 1))?
            .to_string();
        out.push((kind, name, chunk));
    }
    Ok(out)
}

/// A plan of `loaded` against what the latest run observed, from the store: only when that
/// run observed every provider (nothing is proposed from a partial picture). Returns the run.
async fn plan_stored(
    store: &Store,
    loaded: &Loaded,
    providers: &[Arc<dyn Provider>],
) -> Result<(i64, Plan), String> {
    let store_err = |e: crate::store::StoreError| format!("the store: {e}");
    let latest = store
        .latest_run()
        .await
        .map_err(store_err)?
        .ok_or("no run is recorded yet, so there is no observation to plan against")?;
    if latest.outcome != Outcome::Succeeded {
        return Err(format!(
            "the latest run ({}) is {}: it did not observe everything, and nothing is proposed \
             from a partial picture; propose again after a complete run",
            latest.id, latest.outcome
        ));
    }
    let mut inputs = Vec::new();
    for p in providers {
        let snapshot = store
            .list_snapshots(Some(p.name()), 1)
            .await
            .map_err(store_err)?
            .into_iter()
            .next()
            .filter(|s| s.last_run == latest.id)
            .ok_or_else(|| {
                format!(
                    "provider {} was not observed by the latest run ({}); propose again after \
                     a run that observes it",
                    p.name(),
                    latest.id
                )
            })?;
        let body = store
            .snapshot(snapshot.id)
            .await
            .map_err(store_err)?
            .ok_or("the latest observation is gone from the store")?;
        let resources: Vec<Resource> = serde_json::from_value(body["resources"].clone())
            .map_err(|e| format!("the stored observation of {}: {e}", p.name()))?;
        inputs.push(ProviderInput {
            provider: p.name().to_string(),
            expected: loaded.expected(p.as_ref()),
            observed: Ok(Observation {
                observed_at: snapshot.last_seen_at,
                ..Observation::now(p.name(), resources)
            }),
            can_apply: p.kinds().into_iter().filter(|k| p.can_apply(*k)).collect(),
            severities: p.severities(),
        });
    }
    let rules = crate::reconcile::rules(loaded, false, &[]);
    Ok((latest.id, diff::diff(&inputs, &rules)))
}

fn summarize(plan: &Plan, run: i64, touched: &Touched) -> PlanSummary {
    let hit = |kind: Kind, name: &str| touched.contains(&(kind, name.to_string()));
    let changes = plan
        .changes
        .iter()
        .flat_map(|(provider, changes)| {
            changes
                .iter()
                .filter(|c| hit(c.kind(), c.name()))
                .map(move |c| format!("{} {} {} with {provider}", c.action(), c.kind(), c.name()))
        })
        .collect();
    let deviations = plan
        .deviations
        .iter()
        .filter(|d| hit(d.kind, &d.name))
        .map(|d| {
            let field = if d.field_path.is_empty() {
                String::new()
            } else {
                format!(" {}", d.field_path)
            };
            format!("{} {}{field}: {}", d.kind, d.name, d.dtype.as_str())
        })
        .collect();
    PlanSummary {
        run,
        changes,
        deviations,
    }
}

fn body(
    files: &[FileChange],
    reason: &str,
    by: &str,
    plan: &PlanSummary,
    warnings: &[String],
    base: &str,
) -> String {
    let mut out = String::from(
        "An assistant proposed this change over MCP; labctl changed nothing in the lab.\n\n",
    );
    out.push_str("### Reason\n\n");
    for line in reason.trim().lines() {
        out.push_str(&format!("> {line}\n"));
    }
    out.push_str(&format!(
        "\nProposed by `{by}`, based on commit `{base}`.\n\n"
    ));
    out.push_str("### Validation\n\n");
    out.push_str(&format!(
        "The repository with this change validates with no errors ({} warning(s)).\n",
        warnings.len()
    ));
    for w in warnings {
        out.push_str(&format!("- {w}\n"));
    }
    out.push_str(&format!(
        "\n### Plan against the observation of run {}\n\n",
        plan.run
    ));
    if plan.changes.is_empty() && plan.deviations.is_empty() {
        out.push_str("Merged, it would leave Git and the lab in agreement for these resources.\n");
    }
    for c in &plan.changes {
        out.push_str(&format!("- would {c}\n"));
    }
    for d in &plan.deviations {
        out.push_str(&format!("- would then show {d}\n"));
    }
    out.push_str("\n### The change\n\n```diff\n");
    for f in files {
        out.push_str(&f.patch());
    }
    out.push_str("```\n");
    out
}
