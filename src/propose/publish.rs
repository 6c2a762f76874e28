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

/// One commit to push, owned, so that it can go to the blocking pool.
pub struct Commit {
    pub location: GitLocation,
    /// `--path`.
    pub subdir: Option<String>,
    pub branch: String,
    pub base: String,
    /// Paths below `subdir`, with their new text (`None`: deleted).
    pub files: Vec<(String, Option<String>)>,
    pub message: String,
    /// Name and email.
    pub author: (String, String),
}

impl Commit {
    /// Commits and pushes on the blocking pool (`git push` blocks).
    pub async fn push(self) -> Result<Pushed, String> {
        tokio::task::spawn_blocking(move || {
            let change = BranchCommit {
                branch: &self.branch,
                base: &self.base,
                files: self
                    .files
                    .iter()
                    .map(|(p, t)| (p.as_str(), t.as_deref()))
                    .collect(),
                message: &self.message,
                author_name: &self.author.0,
                author_email: &self.author.1,
                deadline: PUSH_DEADLINE,
            };
            push_branch(&self.location, self.subdir.as_deref(), &change).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("the push task failed: {e}"))?
    }
}

/// Commits `set` on top of the commit `loaded` was read from and pushes it to its branch of
/// `loc` (read at `subdir`). A desired state read as plain files has no commit to build on, so
/// nothing is pushed and the result says so.
pub async fn push_set(
    loc: Option<&GitLocation>,
    subdir: Option<&str>,
    loaded: &Loaded,
    set: &ChangeSet,
) -> Published {
    let result = match (loc, loaded.commit()) {
        (Some(location), Some(base)) => {
            let (name, email) = author(loaded);
            Commit {
                location: location.clone(),
                subdir: subdir.map(str::to_string),
                branch: set.branch.clone(),
                base: base.to_string(),
                files: set
                    .files
                    .iter()
                    .map(|f| (f.path.clone(), f.after.clone()))
                    .collect(),
                message: set.message(),
                author: (name.to_string(), email.to_string()),
            }
            .push()
            .await
        }
        _ => Err(
            "the desired state was not read from a Git commit, so there is nothing to base a \
             branch on; use --patch"
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
