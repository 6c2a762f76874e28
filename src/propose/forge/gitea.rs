//! Gitea and Forgejo through their shared REST API (`/api/v1`): a pull request by base and
//! head, create (409 when one is open for the same head), edit (201), issue comments, labels
//! by id, review requests. Token auth as both document it: `Authorization: token …`.

use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::{Forge, ForgeError, NewPull, Pull, PullState, Repo, MAX_BODY_BYTES};

pub(super) struct Gitea {
    http: reqwest::Client,
    repo: Repo,
    token: String,
    timeout: Duration,
}

/// The fields of Gitea's `PullRequest` labctl reads.
#[derive(Deserialize)]
struct ApiPull {
    number: u64,
    html_url: String,
    state: String,
    #[serde(default)]
    merged: bool,
    #[serde(default)]
    title: String,
    #[serde(default)]
    body: String,
}

impl From<ApiPull> for Pull {
    fn from(p: ApiPull) -> Pull {
        let state = match (p.merged, p.state.as_str()) {
            (true, _) => PullState::Merged,
            (false, "open") => PullState::Open,
            _ => PullState::Closed,
        };
        Pull {
            number: p.number,
            url: p.html_url,
            state,
            title: p.title,
            body: p.body,
        }
    }
}

impl Gitea {
    pub(super) fn new(repo: Repo, token: String, timeout: Duration) -> Result<Self, ForgeError> {
        let builder = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("labctl/", env!("CARGO_PKG_VERSION")));
        let http =
            crate::providers::http::build(builder, &|e| crate::providers::ProviderError::Config {
                provider: "gitea".into(),
                detail: e,
                source: None,
            })
            .map_err(|e| ForgeError::Config(e.to_string()))?;
        Ok(Gitea {
            http,
            repo,
            token,
            timeout,
        })
    }

    /// One API call: `expected` are the statuses that mean success; any other is an
    /// [`ForgeError::Api`] with the API's `message`.
    async fn call(
        &self,
        what: String,
        method: Method,
        rest: &str,
        body: Option<&Json>,
        expected: &[StatusCode],
    ) -> Result<(StatusCode, Json), ForgeError> {
        let repo = format!(
            "{}/repos/{}/{}",
            self.repo.api, self.repo.owner, self.repo.name
        );
        let url = if rest.is_empty() {
            repo
        } else {
            format!("{repo}/{rest}")
        };
        let mut request = self
            .http
            .request(method, &url)
            .header("Authorization", format!("token {}", self.token))
            .header("Accept", "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let limit = crate::providers::http::BodyLimit {
            provider: "gitea",
            url: &url,
            max_bytes: MAX_BODY_BYTES,
        };
        let reply = crate::providers::http::exchange(request, limit, |e| {
            crate::providers::http::transport_error(
                "gitea",
                &url,
                self.timeout,
                e,
                Default::default(),
            )
        })
        .await
        .map_err(|e| ForgeError::Transport {
            forge: "gitea",
            what: what.clone(),
            detail: e.to_string(),
        })?;
        let json: Json = if reply.body.is_empty() {
            Json::Null
        } else {
            serde_json::from_slice(&reply.body).map_err(|e| ForgeError::BadResponse {
                forge: "gitea",
                what: what.clone(),
                detail: format!("not JSON: {e}"),
            })?
        };
        if expected.contains(&reply.status) {
            return Ok((reply.status, json));
        }
        Err(ForgeError::Api {
            forge: "gitea",
            what,
            status: reply.status.as_u16(),
            message: json["message"].as_str().unwrap_or("").to_string(),
        })
    }

    fn pull(what: &str, json: Json) -> Result<Pull, ForgeError> {
        serde_json::from_value::<ApiPull>(json)
            .map(Pull::from)
            .map_err(|e| ForgeError::BadResponse {
                forge: "gitea",
                what: what.to_string(),
                detail: e.to_string(),
            })
    }

    /// The ids of the repository's labels named `names`; names it lacks are warnings.
    async fn label_ids(&self, names: &[String]) -> Result<(Vec<i64>, Vec<String>), ForgeError> {
        let (_, json) = self
            .call(
                "labels".into(),
                Method::GET,
                "labels?limit=50",
                None,
                &[StatusCode::OK],
            )
            .await?;
        let known: Vec<(String, i64)> = json
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| Some((l["name"].as_str()?.to_string(), l["id"].as_i64()?)))
            .collect();
        let mut ids = Vec::new();
        let mut missing = Vec::new();
        for name in names {
            match known.iter().find(|(n, _)| n == name) {
                Some((_, id)) => ids.push(*id),
                None => missing.push(format!(
                    "gitea: the repository has no label `{name}`; create it to have it set"
                )),
            }
        }
        Ok((ids, missing))
    }
}

impl Forge for Gitea {
    fn name(&self) -> &'static str {
        "gitea"
    }

    fn default_branch(&self) -> BoxFuture<'_, Result<String, ForgeError>> {
        async move {
            let what = format!("repository {}/{}", self.repo.owner, self.repo.name);
            let (_, json) = self
                .call(what.clone(), Method::GET, "", None, &[StatusCode::OK])
                .await?;
            json["default_branch"]
                .as_str()
                .map(str::to_string)
                .ok_or(ForgeError::BadResponse {
                    forge: "gitea",
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
            let what = format!("pull request from {branch}");
            let (status, json) = self
                .call(
                    what.clone(),
                    Method::GET,
                    &format!("pulls/{base}/{branch}"),
                    None,
                    &[StatusCode::OK, StatusCode::NOT_FOUND],
                )
                .await?;
            if status == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            Self::pull(&what, json).map(Some)
        }
        .boxed()
    }

    fn open<'a>(
        &'a self,
        new: &'a NewPull<'a>,
    ) -> BoxFuture<'a, Result<(Pull, Vec<String>), ForgeError>> {
        async move {
            let (labels, mut warnings) = if new.labels.is_empty() {
                (Vec::new(), Vec::new())
            } else {
                match self.label_ids(new.labels).await {
                    Ok(found) => found,
                    Err(e) => (Vec::new(), vec![e.to_string()]),
                }
            };
            let what = format!("opening a pull request from {}", new.branch);
            let body = json!({
                "title": new.title,
                "head": new.branch,
                "base": new.base,
                "body": new.body,
                "labels": labels,
            });
            let (_, json) = self
                .call(
                    what.clone(),
                    Method::POST,
                    "pulls",
                    Some(&body),
                    &[StatusCode::CREATED],
                )
                .await?;
            let pull = Self::pull(&what, json)?;
            if !new.reviewers.is_empty() {
                if let Err(e) = self
                    .call(
                        format!("reviewers of #{}", pull.number),
                        Method::POST,
                        &format!("pulls/{}/requested_reviewers", pull.number),
                        Some(&json!({ "reviewers": new.reviewers })),
                        &[StatusCode::CREATED],
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
                Method::PATCH,
                &format!("pulls/{number}"),
                Some(&json!({ "title": title, "body": body })),
                // Gitea answers an edit with 201.
                &[StatusCode::CREATED, StatusCode::OK],
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
                Method::POST,
                &format!("issues/{number}/comments"),
                Some(&json!({ "body": body })),
                &[StatusCode::CREATED],
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
                Method::PATCH,
                &format!("pulls/{number}"),
                Some(&json!({ "state": "closed" })),
                &[StatusCode::CREATED, StatusCode::OK],
            )
            .await
            .map(drop)
        }
        .boxed()
    }
}
