//! A forge for the tests: the pull-request endpoints of GitHub's REST API (as octocrab calls
//! them) and of Gitea/Forgejo's (`/api/v1`), over one bare Git repository on disk.
//!
//! GitHub and Gitea cannot run here, so this answers with the JSON their API documentation
//! gives — field names and status codes from docs.github.com/rest (pulls, issues/comments,
//! issues/labels, pulls/review-requests) and Gitea's swagger (`repoCreatePullRequest`,
//! `repoGetPullRequestByBaseHead`, `repoEditPullRequest`, …) — and does nothing the real API
//! would not: a token other than its own is 401; an unknown repository is 404; a pull request
//! whose head branch is not in the repository is refused (GitHub 422, Gitea 404); a second
//! open pull request for the same head is refused (GitHub 422 "A pull request already exists",
//! Gitea 409); GitHub lists only open pull requests unless asked for `state=all`; Gitea
//! answers an edit with 201 and refuses to change the state of a merged one (412). It records
//! every request it hears.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{json, Value as Json};

use super::net::serve;

/// One request the forge heard.
#[derive(Debug, Clone)]
pub struct Heard {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: String,
}

/// A pull request as the forge holds it.
#[derive(Debug, Clone)]
pub struct Pr {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub head: String,
    pub base: String,
    pub open: bool,
    pub merged: bool,
    pub labels: Vec<String>,
    pub reviewers: Vec<String>,
    pub comments: Vec<String>,
}

#[derive(Default)]
struct State {
    prs: Vec<Pr>,
    heard: Vec<Heard>,
}

/// The forge, serving `owner/name` from a bare repository.
pub struct Forge {
    port: u16,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Forge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Labels the Gitea repository has (GitHub creates a label on first use).
const GITEA_LABELS: [(i64, &str); 2] = [(1, "labctl"), (2, "drift")];

impl Forge {
    /// Serves the repository `repository` (`owner/name`) held in the bare repository `bare`,
    /// to requests with `token`.
    pub async fn start(repository: &str, bare: &Path, token: &str) -> Forge {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let (repository, bare, token) = (
            repository.to_string(),
            bare.to_path_buf(),
            token.to_string(),
        );
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = Arc::clone(&shared);
                let (repository, bare, token) = (repository.clone(), bare.clone(), token.clone());
                async move {
                    let authorization = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let heard = Heard {
                        method: method.to_string(),
                        path: uri.path_and_query().map_or("/", |p| p.as_str()).to_string(),
                        authorization: authorization.clone(),
                        body: String::from_utf8_lossy(&body).into_owned(),
                    };
                    let mut state = state.lock().unwrap();
                    state.heard.push(heard);
                    let request = Request {
                        method,
                        path: uri.path().to_string(),
                        query: uri.query().unwrap_or("").to_string(),
                        body: serde_json::from_slice(&body).unwrap_or(Json::Null),
                    };
                    let (status, json) = answer(
                        &mut state,
                        &request,
                        authorization.as_deref(),
                        &token,
                        &repository,
                        &bare,
                    );
                    (
                        status,
                        [("content-type", "application/json; charset=utf-8")],
                        json.to_string(),
                    )
                }
            },
        );
        let (port, task) = serve(app).await;
        Forge { port, state, task }
    }

    /// GitHub's API base URL (as `https://api.github.com`).
    pub fn github_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Gitea's API base URL (as `https://gitea.example/api/v1`).
    pub fn gitea_url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1", self.port)
    }

    pub fn prs(&self) -> Vec<Pr> {
        self.state.lock().unwrap().prs.clone()
    }

    pub fn heard(&self) -> Vec<Heard> {
        self.state.lock().unwrap().heard.clone()
    }

    /// How many requests with `method` went to a path ending in `suffix`.
    pub fn count(&self, method: &str, suffix: &str) -> usize {
        self.heard()
            .iter()
            .filter(|h| h.method == method && h.path.split('?').next().unwrap().ends_with(suffix))
            .count()
    }

    /// A person closes pull request `number` without merging.
    pub fn close(&self, number: u64) {
        let mut state = self.state.lock().unwrap();
        let pr = state.prs.iter_mut().find(|p| p.number == number).unwrap();
        pr.open = false;
    }

    /// A person merges pull request `number` (the caller moves the base branch in Git).
    pub fn merge(&self, number: u64) {
        let mut state = self.state.lock().unwrap();
        let pr = state.prs.iter_mut().find(|p| p.number == number).unwrap();
        pr.open = false;
        pr.merged = true;
    }
}

struct Request {
    method: Method,
    path: String,
    query: String,
    body: Json,
}

/// The answer of the API the path belongs to.
fn answer(
    state: &mut State,
    request: &Request,
    authorization: Option<&str>,
    token: &str,
    repository: &str,
    bare: &Path,
) -> (StatusCode, Json) {
    let (gitea, rest) = match request.path.strip_prefix("/api/v1") {
        Some(rest) => (true, rest),
        None => (false, request.path.as_str()),
    };
    let accepted = [format!("token {token}"), format!("Bearer {token}")];
    if !authorization.is_some_and(|a| accepted.iter().any(|t| t == a)) {
        return if gitea {
            (
                StatusCode::UNAUTHORIZED,
                json!({"message": "user does not exist [uid: 0, name: ]", "url": ""}),
            )
        } else {
            (
                StatusCode::UNAUTHORIZED,
                json!({"message": "Bad credentials",
                       "documentation_url": "https://docs.github.com/rest", "status": "401"}),
            )
        };
    }
    let prefix = format!("/repos/{repository}");
    let Some(rest) = rest.strip_prefix(&prefix) else {
        return not_found(gitea);
    };
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    let api = Api {
        gitea,
        repository,
        bare,
    };
    match (&request.method, parts.as_slice()) {
        (&Method::GET, []) => (StatusCode::OK, api.repo()),
        (&Method::GET, ["pulls"]) if !gitea => api.list(state, &request.query),
        (&Method::POST, ["pulls"]) => api.create(state, &request.body),
        (&Method::GET, ["pulls", base, head @ ..]) if gitea && !head.is_empty() => {
            let head = head.join("/");
            match state
                .prs
                .iter()
                .filter(|p| p.head == head && p.base == *base)
                .max_by_key(|p| p.number)
            {
                Some(p) => (StatusCode::OK, api.pull(p)),
                None => not_found(gitea),
            }
        }
        (&Method::PATCH, ["pulls", n]) => api.edit(state, n, &request.body),
        (&Method::POST, ["issues", n, "comments"]) => {
            let Some(pr) = find(state, n) else {
                return not_found(gitea);
            };
            let text = request.body["body"].as_str().unwrap_or("").to_string();
            pr.comments.push(text.clone());
            let id = pr.comments.len();
            (StatusCode::CREATED, api.comment(id, &text))
        }
        (&Method::POST, ["issues", n, "labels"]) if !gitea => {
            let Some(pr) = find(state, n) else {
                return not_found(gitea);
            };
            for l in request.body["labels"].as_array().into_iter().flatten() {
                pr.labels.push(l.as_str().unwrap_or("").to_string());
            }
            let labels: Vec<Json> = pr.labels.iter().map(|l| api.label(0, l)).collect();
            (StatusCode::OK, Json::Array(labels))
        }
        (&Method::GET, ["labels"]) if gitea => (
            StatusCode::OK,
            Json::Array(
                GITEA_LABELS
                    .iter()
                    .map(|(id, name)| api.label(*id, name))
                    .collect(),
            ),
        ),
        (&Method::POST, ["pulls", n, "requested_reviewers"]) => {
            let Some(pr) = find(state, n) else {
                return not_found(gitea);
            };
            for r in request.body["reviewers"].as_array().into_iter().flatten() {
                pr.reviewers.push(r.as_str().unwrap_or("").to_string());
            }
            let pr = pr.clone();
            if gitea {
                // Gitea answers with the review requests it made (PullReview objects).
                let reviews: Vec<Json> = pr
                    .reviewers
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        json!({"id": i + 1, "user": api.user(r), "state": "REQUEST_REVIEW",
                                         "pull_request_url": api.html(pr.number)})
                    })
                    .collect();
                (StatusCode::CREATED, Json::Array(reviews))
            } else {
                (StatusCode::CREATED, api.pull(&pr))
            }
        }
        _ => not_found(gitea),
    }
}

fn find<'a>(state: &'a mut State, n: &str) -> Option<&'a mut Pr> {
    let n: u64 = n.parse().ok()?;
    state.prs.iter_mut().find(|p| p.number == n)
}

fn not_found(gitea: bool) -> (StatusCode, Json) {
    if gitea {
        (
            StatusCode::NOT_FOUND,
            json!({"errors": [], "message": "The target couldn't be found.", "url": ""}),
        )
    } else {
        (
            StatusCode::NOT_FOUND,
            json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest",
                   "status": "404"}),
        )
    }
}

struct Api<'a> {
    gitea: bool,
    repository: &'a str,
    bare: &'a Path,
}

impl Api<'_> {
    fn web(&self) -> String {
        format!("https://forge.example/{}", self.repository)
    }

    fn html(&self, number: u64) -> String {
        format!("{}/pull/{number}", self.web())
    }

    fn sha(&self, branch: &str) -> Option<String> {
        let out = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(PathBuf::from(self.bare))
            .args([
                "rev-parse",
                "--verify",
                "-q",
                &format!("refs/heads/{branch}"),
            ])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn owner(&self) -> &str {
        self.repository.split('/').next().unwrap()
    }

    /// A user as each API shows one (GitHub's simple-user has every URL field).
    fn user(&self, login: &str) -> Json {
        if self.gitea {
            return json!({"id": 1, "login": login, "full_name": "", "email": "",
                          "avatar_url": "", "username": login});
        }
        let api = format!("https://api.github.com/users/{login}");
        json!({
            "login": login, "id": 1, "node_id": "MDQ6VXNlcjE=",
            "avatar_url": "https://avatars.githubusercontent.com/u/1?v=4", "gravatar_id": "",
            "url": api, "html_url": format!("https://github.com/{login}"),
            "followers_url": format!("{api}/followers"),
            "following_url": format!("{api}/following{{/other_user}}"),
            "gists_url": format!("{api}/gists{{/gist_id}}"),
            "starred_url": format!("{api}/starred{{/owner}}{{/repo}}"),
            "subscriptions_url": format!("{api}/subscriptions"),
            "organizations_url": format!("{api}/orgs"), "repos_url": format!("{api}/repos"),
            "events_url": format!("{api}/events{{/privacy}}"),
            "received_events_url": format!("{api}/received_events"),
            "type": "User", "site_admin": false
        })
    }

    fn repo(&self) -> Json {
        let name = self.repository.split('/').nth(1).unwrap();
        json!({"id": 1, "name": name, "full_name": self.repository, "private": true,
               "default_branch": "main", "html_url": self.web(),
               "owner": self.user(self.owner())})
    }

    fn label(&self, id: i64, name: &str) -> Json {
        let mut label = json!({"id": id, "name": name, "color": "ededed", "description": "",
                               "default": false, "url": format!("{}/labels/{name}", self.web())});
        if !self.gitea {
            label["node_id"] = json!("LA_kwDOAAAAAc8AAAABAAAAAQ");
        }
        label
    }

    fn comment(&self, id: usize, body: &str) -> Json {
        let url = format!("{}/issues/comments/{id}", self.web());
        json!({"id": id, "node_id": "IC_1", "url": url, "html_url": url, "body": body,
               "user": self.user("labctl-bot"), "created_at": "2026-12-04T00:00:00Z",
               "updated_at": "2026-12-04T00:00:00Z"})
    }

    fn pull(&self, p: &Pr) -> Json {
        let sha = self.sha(&p.head).unwrap_or_default();
        let base_sha = self.sha(&p.base).unwrap_or_default();
        let state = if p.open { "open" } else { "closed" };
        let merged_at = p.merged.then_some("2026-12-04T00:00:00Z");
        let closed_at = (!p.open).then_some("2026-12-04T00:00:00Z");
        let labels: Vec<Json> = p.labels.iter().map(|l| self.label(0, l)).collect();
        let api = if self.gitea {
            format!(
                "{}/api/v1/repos/{}/pulls/{}",
                self.web(),
                self.repository,
                p.number
            )
        } else {
            format!(
                "https://api.github.com/repos/{}/pulls/{}",
                self.repository, p.number
            )
        };
        let mut pull = json!({
            "id": p.number + 1000, "number": p.number, "url": api,
            "html_url": self.html(p.number), "state": state, "title": p.title, "body": p.body,
            "user": self.user("labctl-bot"), "labels": labels,
            "head": {"label": format!("{}:{}", self.owner(), p.head), "ref": p.head, "sha": sha},
            "base": {"label": format!("{}:{}", self.owner(), p.base), "ref": p.base, "sha": base_sha},
            "created_at": "2026-12-04T00:00:00Z", "updated_at": "2026-12-04T00:00:00Z",
            "closed_at": closed_at, "merged_at": merged_at,
        });
        if self.gitea {
            pull["merged"] = json!(p.merged);
            pull["mergeable"] = json!(p.open);
        } else {
            pull["node_id"] = json!("PR_1");
            pull["locked"] = json!(false);
            pull["draft"] = json!(false);
        }
        pull
    }

    /// GitHub's list: `state` (default open), `head` (`owner:branch`), `base`.
    fn list(&self, state: &State, query: &str) -> (StatusCode, Json) {
        let param = |name: &str| {
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.replace("%3A", ":").replace("%2F", "/"))
        };
        let wanted = param("state").unwrap_or_else(|| "open".into());
        let head = param("head");
        let base = param("base");
        let pulls: Vec<Json> = state
            .prs
            .iter()
            .rev()
            .filter(|p| match wanted.as_str() {
                "all" => true,
                "closed" => !p.open,
                _ => p.open,
            })
            .filter(|p| {
                head.as_ref()
                    .is_none_or(|h| *h == format!("{}:{}", self.owner(), p.head))
            })
            .filter(|p| base.as_ref().is_none_or(|b| *b == p.base))
            .map(|p| self.pull(p))
            .collect();
        (StatusCode::OK, Json::Array(pulls))
    }

    fn create(&self, state: &mut State, body: &Json) -> (StatusCode, Json) {
        let text = |k: &str| body[k].as_str().unwrap_or("").to_string();
        let (head, base) = (text("head"), text("base"));
        if self.sha(&head).is_none() || self.sha(&base).is_none() {
            return if self.gitea {
                not_found(true)
            } else {
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"message": "Validation Failed",
                           "errors": [{"resource": "PullRequest", "field": "head", "code": "invalid"}],
                           "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
                           "status": "422"}),
                )
            };
        }
        if state
            .prs
            .iter()
            .any(|p| p.open && p.head == head && p.base == base)
        {
            return if self.gitea {
                (
                    StatusCode::CONFLICT,
                    json!({"message": format!("pull request already exists for these targets [head_branch: {head}, base_branch: {base}]"), "url": ""}),
                )
            } else {
                (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"message": "Validation Failed",
                           "errors": [{"resource": "PullRequest", "code": "custom",
                                       "message": format!("A pull request already exists for {}:{head}.", self.owner())}],
                           "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
                           "status": "422"}),
                )
            };
        }
        // Gitea takes label ids at creation; GitHub sets labels through the issue.
        let labels = body["labels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|id| {
                GITEA_LABELS
                    .iter()
                    .find(|(i, _)| Some(*i) == id.as_i64())
                    .map(|(_, n)| n.to_string())
            })
            .collect();
        let pr = Pr {
            number: state.prs.len() as u64 + 1,
            title: text("title"),
            body: text("body"),
            head,
            base,
            open: true,
            merged: false,
            labels,
            reviewers: Vec::new(),
            comments: Vec::new(),
        };
        let json = self.pull(&pr);
        state.prs.push(pr);
        (StatusCode::CREATED, json)
    }

    fn edit(&self, state: &mut State, n: &str, body: &Json) -> (StatusCode, Json) {
        let gitea = self.gitea;
        let Some(pr) = find(state, n) else {
            return not_found(gitea);
        };
        if let Some(state) = body["state"].as_str() {
            if pr.merged && gitea {
                return (
                    StatusCode::PRECONDITION_FAILED,
                    json!({"message": "cannot change state of this pull request, it was already merged", "url": ""}),
                );
            }
            pr.open = state == "open";
        }
        if let Some(title) = body["title"].as_str() {
            pr.title = title.to_string();
        }
        if let Some(text) = body["body"].as_str() {
            pr.body = text.to_string();
        }
        let pr = pr.clone();
        let status = if gitea {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        (status, self.pull(&pr))
    }
}
