//! GitHub and GitHub Enterprise Server through octocrab: the REST endpoints for pull requests
//! (list by head, create, update), issue comments and labels, and review requests.

use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use octocrab::models::pulls::PullRequest;
use octocrab::models::IssueState;
use octocrab::Octocrab;

use super::{Forge, ForgeError, NewPull, Pull, PullState, Repo};

pub(super) struct GitHub {
    crab: Octocrab,
    repo: Repo,
    timeout: Duration,
}

impl GitHub {
    pub(super) fn new(repo: Repo, token: String, timeout: Duration) -> Result<Self, ForgeError> {
        let crab = Octocrab::builder()
            .base_uri(repo.api.as_str())
            .map_err(|e| ForgeError::Config(format!("GitHub API URL `{}`: {e}", repo.api)))?
            .personal_token(token)
            .set_connect_timeout(Some(timeout))
            .set_read_timeout(Some(timeout))
            .set_write_timeout(Some(timeout))
            .build()
            .map_err(|e| ForgeError::Config(format!("cannot build the GitHub client: {e}")))?;
        Ok(GitHub {
            crab,
            repo,
            timeout,
        })
    }

    /// Runs one call under the forge's deadline, its error as a [`ForgeError`] about `what`.
    async fn call<T>(
        &self,
        what: impl Into<String>,
        call: impl std::future::Future<Output = octocrab::Result<T>>,
    ) -> Result<T, ForgeError> {
        let what = what.into();
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(error(what, e)),
            Err(_) => Err(ForgeError::Transport {
                forge: "github",
                what,
                detail: format!("no answer in {} s", self.timeout.as_secs()),
            }),
        }
    }

    fn route(&self, rest: &str) -> String {
        format!("/repos/{}/{}/{rest}", self.repo.owner, self.repo.name)
    }
}

fn error(what: String, e: octocrab::Error) -> ForgeError {
    match e {
        octocrab::Error::GitHub { source, .. } => ForgeError::Api {
            forge: "github",
            what,
            status: source.status_code.as_u16(),
            message: source.message,
        },
        octocrab::Error::Serde { source, .. } => ForgeError::BadResponse {
            forge: "github",
            what,
            detail: source.to_string(),
        },
        octocrab::Error::Json { source, .. } => ForgeError::BadResponse {
            forge: "github",
            what,
            detail: source.to_string(),
        },
        other => ForgeError::Transport {
            forge: "github",
            what,
            detail: crate::providers::http::error_chain(&other),
        },
    }
}

fn pull(p: PullRequest) -> Pull {
    let state = match (p.merged_at.is_some(), p.state) {
        (true, _) => PullState::Merged,
        (false, Some(IssueState::Open)) => PullState::Open,
        _ => PullState::Closed,
    };
    Pull {
        number: p.number,
        url: p.html_url.map_or(p.url, |u| u.to_string()),
        state,
        title: p.title.unwrap_or_default(),
        body: p.body.unwrap_or_default(),
    }
}

impl Forge for GitHub {
    fn name(&self) -> &'static str {
        "github"
    }

    fn default_branch(&self) -> BoxFuture<'_, Result<String, ForgeError>> {
        async move {
            let what = format!("repository {}/{}", self.repo.owner, self.repo.name);
            let repo: serde_json::Value = self
                .call(
                    what.clone(),
                    self.crab
                        .get(self.route("").trim_end_matches('/'), None::<&()>),
                )
                .await?;
            repo["default_branch"]
                .as_str()
                .map(str::to_string)
                .ok_or(ForgeError::BadResponse {
                    forge: "github",
                    what,
                    detail: "no `default_branch`".into(),
                })
        }
        .boxed()
    }

    fn find<'a>(
        &'a self,
        branch: &'a str,
        base: &'a str,
    ) -> BoxFuture<'a, Result<Option<Pull>, ForgeError>> {
        async move {
            let pulls = self.crab.pulls(&self.repo.owner, &self.repo.name);
            let page = self
                .call(
                    format!("pull requests from {branch}"),
                    pulls
                        .list()
                        .state(octocrab::params::State::All)
                        .head(format!("{}:{branch}", self.repo.owner))
                        .base(base)
                        .per_page(100u8)
                        .send(),
                )
                .await?;
            // The API filters by head already; checked again, a filter it ignored would
            // otherwise hand labctl someone else's pull request.
            Ok(page
                .items
                .into_iter()
                .filter(|p| p.head.ref_field == branch)
                .max_by_key(|p| p.number)
                .map(pull))
        }
        .boxed()
    }

    fn open<'a>(
        &'a self,
        new: &'a NewPull<'a>,
    ) -> BoxFuture<'a, Result<(Pull, Vec<String>), ForgeError>> {
        async move {
            let created = self
                .call(
                    format!("opening a pull request from {}", new.branch),
                    self.crab
                        .pulls(&self.repo.owner, &self.repo.name)
                        .create(new.title, new.branch, new.base)
                        .body(new.body)
                        .send(),
                )
                .await?;
            let pull = pull(created);
            let mut warnings = Vec::new();
            if !new.labels.is_empty() {
                let route = self.route(&format!("issues/{}/labels", pull.number));
                let body = serde_json::json!({ "labels": new.labels });
                if let Err(e) = self
                    .call::<serde_json::Value>(
                        format!("labels of #{}", pull.number),
                        self.crab.post(route, Some(&body)),
                    )
                    .await
                {
                    warnings.push(e.to_string());
                }
            }
            if !new.reviewers.is_empty() {
                let route = self.route(&format!("pulls/{}/requested_reviewers", pull.number));
                let body = serde_json::json!({ "reviewers": new.reviewers });
                if let Err(e) = self
                    .call::<serde_json::Value>(
                        format!("reviewers of #{}", pull.number),
                        self.crab.post(route, Some(&body)),
                    )
                    .await
                {
                    warnings.push(e.to_string());
                }
            }
            Ok((pull, warnings))
        }
        .boxed()
    }

    fn edit<'a>(
        &'a self,
        number: u64,
        title: &'a str,
        body: &'a str,
    ) -> BoxFuture<'a, Result<(), ForgeError>> {
        async move {
            self.call(
                format!("updating #{number}"),
                self.crab
                    .pulls(&self.repo.owner, &self.repo.name)
                    .update(number)
                    .title(title)
                    .body(body)
                    .send(),
            )
            .await
            .map(drop)
        }
        .boxed()
    }

    fn comment<'a>(&'a self, number: u64, body: &'a str) -> BoxFuture<'a, Result<(), ForgeError>> {
        async move {
            self.call(
                format!("commenting on #{number}"),
                self.crab
                    .issues(&self.repo.owner, &self.repo.name)
                    .create_comment(number, body),
            )
            .await
            .map(drop)
        }
        .boxed()
    }

    fn close(&self, number: u64) -> BoxFuture<'_, Result<(), ForgeError>> {
        async move {
            self.call(
                format!("closing #{number}"),
                self.crab
                    .pulls(&self.repo.owner, &self.repo.name)
                    .update(number)
                    .state(octocrab::params::pulls::State::Closed)
                    .send(),
            )
            .await
            .map(drop)
        }
        .boxed()
    }
}
