//! Forges: where labctl's branches become pull requests. One trait, [`Forge`], with GitHub
//! (octocrab; GitHub Enterprise through its API base URL) and Gitea/Forgejo (their REST API,
//! which the two share) behind it. A new forge is one more file here and one arm in
//! [`connect`].

mod gitea;
mod github;

use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;

use crate::model::{ForgeKind, ForgeSpec};

/// The state of a pull request as the forge reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PullState {
    Open,
    Closed,
    Merged,
}

/// A pull request on the forge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Pull {
    pub number: u64,
    /// The page a person opens.
    pub url: String,
    pub state: PullState,
    pub title: String,
    pub body: String,
}

/// A pull request to open.
#[derive(Debug, Clone)]
pub struct NewPull<'a> {
    pub branch: &'a str,
    pub base: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    pub labels: &'a [String],
    pub reviewers: &'a [String],
}

/// What went wrong talking to a forge.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error("forge settings: {0}")]
    Config(String),
    #[error("{forge} {what}: {status} {message}")]
    Api {
        forge: &'static str,
        what: String,
        status: u16,
        message: String,
    },
    #[error("{forge} {what}: {detail}")]
    Transport {
        forge: &'static str,
        what: String,
        detail: String,
    },
    #[error("{forge} {what}: the answer is not what its API documents: {detail}")]
    BadResponse {
        forge: &'static str,
        what: String,
        detail: String,
    },
}

impl ForgeError {
    /// The HTTP status of an API refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            ForgeError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A forge's pull requests, as labctl uses them.
pub trait Forge: Send + Sync {
    /// `github` or `gitea`.
    fn name(&self) -> &'static str;

    /// The repository's default branch.
    fn default_branch(&self) -> BoxFuture<'_, Result<String, ForgeError>>;

    /// The newest pull request from `branch` into `base`, in any state.
    fn find<'a>(
        &'a self,
        branch: &'a str,
        base: &'a str,
    ) -> BoxFuture<'a, Result<Option<Pull>, ForgeError>>;

    /// Opens a pull request; labels and reviewers that cannot be set are returned as
    /// warnings, the pull request stands.
    fn open<'a>(
        &'a self,
        new: &'a NewPull<'a>,
    ) -> BoxFuture<'a, Result<(Pull, Vec<String>), ForgeError>>;

    /// Replaces the title and body of pull request `number`.
    fn edit<'a>(
        &'a self,
        number: u64,
        title: &'a str,
        body: &'a str,
    ) -> BoxFuture<'a, Result<(), ForgeError>>;

    /// Comments on pull request `number`.
    fn comment<'a>(&'a self, number: u64, body: &'a str) -> BoxFuture<'a, Result<(), ForgeError>>;

    /// Closes pull request `number` without merging.
    fn close(&self, number: u64) -> BoxFuture<'_, Result<(), ForgeError>>;
}

/// The forge `spec` names, with its token read now.
pub fn connect(spec: &ForgeSpec) -> Result<Box<dyn Forge>, ForgeError> {
    let (owner, name) = spec.owner_and_name().ok_or_else(|| {
        ForgeError::Config(format!(
            "repository `{}` is not `owner/name`",
            spec.repository
        ))
    })?;
    let url = spec.api_url().ok_or_else(|| {
        ForgeError::Config("a Gitea or Forgejo forge needs `url` (https://HOST/api/v1)".into())
    })?;
    let token = crate::providers::secret::read(&spec.token)
        .map_err(|e| ForgeError::Config(format!("forge {e}")))?;
    let timeout = Duration::from_secs(spec.timeout_seconds.unwrap_or(30).clamp(1, 600));
    let at = Repo {
        api: url.to_string(),
        owner: owner.to_string(),
        name: name.to_string(),
    };
    Ok(match spec.kind {
        ForgeKind::Github => Box::new(github::GitHub::new(at, token, timeout)?),
        ForgeKind::Gitea => Box::new(gitea::Gitea::new(at, token, timeout)?),
    })
}

/// Where on a forge the repository is.
#[derive(Debug, Clone)]
struct Repo {
    api: String,
    owner: String,
    name: String,
}

/// The most of one forge answer that is read.
const MAX_BODY_BYTES: u64 = 8 << 20;
