//! Publishing change sets: each one a commit on its own branch of the desired-state
//! repository, based on the head the plan was made from.

use std::time::Duration;

use serde::Serialize;

use super::ChangeSet;
use crate::model::ProposeSpec;
use crate::reconcile::Loaded;
use crate::source::{push_branch, BranchCommit, GitLocation, Pushed};

/// How long one `git push` may take.
pub const PUSH_DEADLINE: Duration = Duration::from_secs(60);

/// What became of one change set's branch.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Published {
    pub branch: String,
    pub title: String,
    /// `created`, `updated`, `unchanged`, `foreign` (left alone) or `failed`.
    pub outcome: &'static str,
    /// The commit the branch holds (absent when the push failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Why a branch was left alone or could not be pushed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Commits and pushes each change set to its branch of `loc` (read at `subdir`). Blocking: it
/// runs `git`. A repository read as plain files has no commit to build on, so nothing is
/// pushed and every set says so.
pub fn push(
    loc: Option<&GitLocation>,
    subdir: Option<&str>,
    loaded: &Loaded,
    sets: &[ChangeSet],
) -> Vec<Published> {
    let author = author(loaded);
    sets.iter()
        .map(|set| push_set(loc, subdir, loaded.commit(), author, set))
        .collect()
}

/// The name and email labctl commits as, from labctl.yaml.
pub fn author(loaded: &Loaded) -> (&str, &str) {
    ProposeSpec::author(spec(loaded))
}

/// labctl.yaml's `propose` settings (the defaults where it has none).
pub fn settings(loaded: &Loaded) -> ProposeSpec {
    spec(loaded).cloned().unwrap_or_default()
}

fn spec(loaded: &Loaded) -> Option<&ProposeSpec> {
    loaded
        .state
        .config
        .as_ref()
        .and_then(|c| c.doc.spec.propose.as_ref())
}

/// Commits `set` on top of `base` and pushes it to its branch of `loc`. Blocking.
pub fn push_set(
    loc: Option<&GitLocation>,
    subdir: Option<&str>,
    base: Option<&str>,
    (name, email): (&str, &str),
    set: &ChangeSet,
) -> Published {
    let result = match (loc, base) {
        (Some(loc), Some(base)) => {
            let message = set.message();
            let change = BranchCommit {
                branch: &set.branch,
                base,
                files: set
                    .files
                    .iter()
                    .map(|f| (f.path.as_str(), f.after.as_deref()))
                    .collect(),
                message: &message,
                author_name: name,
                author_email: email,
                deadline: PUSH_DEADLINE,
            };
            push_branch(loc, subdir, &change).map_err(|e| e.to_string())
        }
        _ => Err(
            "the desired state was not read from a Git commit, so there is \
                  nothing to base a branch on; use --patch"
                .to_string(),
        ),
    };
    let (outcome, commit, detail) = match result {
        Ok(Pushed::Foreign { tip, why }) => ("foreign", Some(tip), Some(why)),
        Ok(p) => (p.as_str(), Some(p.commit().to_string()), None),
        Err(e) => ("failed", None, Some(e)),
    };
    if let Some(why) = &detail {
        tracing::warn!(branch = %set.branch, outcome, detail = %why, "proposal branch not pushed");
    } else {
        tracing::info!(branch = %set.branch, outcome, "proposal branch");
    }
    Published {
        branch: set.branch.clone(),
        title: set.title.clone(),
        outcome,
        commit,
        detail,
    }
}
