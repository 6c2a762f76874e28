//! A fixture of ntfy's publish API (ntfy cannot run here): `POST /<topic>` with the message
//! as the body and `Title`, `Priority`, `Tags` and `Authorization: Bearer` headers, answered
//! as docs.ntfy.sh/publish documents: 200 with the message as JSON (`id`, `time`, `expires`,
//! `event: "message"`, `topic`, `message`, plus `title`, `priority` and `tags` when given), and
//! 401 with ntfy's JSON error when the topic needs a token and the request has another. It
//! does nothing else ntfy does (no subscriptions, caching or attachments). It records every
//! accepted message.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// One accepted message: its topic, headers of interest and body.
#[derive(Debug, Clone)]
pub struct Published {
    pub topic: String,
    pub title: Option<String>,
    pub priority: Option<String>,
    pub tags: Option<String>,
    pub message: String,
}

/// The fixture's address and what it has accepted.
pub struct Ntfy {
    pub port: u16,
    published: Arc<Mutex<Vec<Published>>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Fixture {
    token: Option<String>,
    published: Arc<Mutex<Vec<Published>>>,
}

impl Ntfy {
    /// Starts the fixture; with `token`, every topic needs `Authorization: Bearer <token>`.
    pub async fn start(token: Option<&str>) -> Ntfy {
        let published = Arc::new(Mutex::new(Vec::new()));
        let fixture = Fixture {
            token: token.map(str::to_string),
            published: Arc::clone(&published),
        };
        let app = Router::new()
            .route("/{topic}", post(publish).put(publish))
            .with_state(fixture);
        let (port, task) = super::net::serve(app).await;
        Ntfy {
            port,
            published,
            task,
        }
    }

    /// The topic URL of `topic`.
    pub fn url(&self, topic: &str) -> String {
        format!("http://127.0.0.1:{}/{topic}", self.port)
    }

    pub fn published(&self) -> Vec<Published> {
        self.published.lock().unwrap().clone()
    }

    /// Waits (up to 30 s) until `n` messages were accepted; all accepted so far.
    pub async fn wait_for(&self, n: usize) -> Vec<Published> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.published().len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{n} messages expected: {:?}",
                self.published()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self.published()
    }
}

impl Drop for Ntfy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn publish(
    State(fixture): State<Fixture>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, Json<Value>) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    if let Some(token) = &fixture.token {
        if header("authorization") != Some(format!("Bearer {token}")) {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({
                    "code": 40101,
                    "http": 401,
                    "error": "unauthorized",
                    "link": "https://ntfy.sh/docs/publish/#authentication"
                })),
            );
        }
    }
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let published = Published {
        topic: topic.clone(),
        title: header("title"),
        priority: header("priority"),
        tags: header("tags"),
        message: body.clone(),
    };
    let mut answer = json!({
        "id": format!("fx{:010}", fixture.published.lock().unwrap().len()),
        "time": time,
        "expires": time + 43_200,
        "event": "message",
        "topic": topic,
        "message": body,
    });
    if let Some(title) = &published.title {
        answer["title"] = json!(title);
    }
    if let Some(priority) = published
        .priority
        .as_deref()
        .and_then(|p| p.parse::<u8>().ok())
    {
        answer["priority"] = json!(priority);
    }
    if let Some(tags) = &published.tags {
        answer["tags"] = json!(tags.split(',').collect::<Vec<_>>());
    }
    fixture.published.lock().unwrap().push(published);
    (StatusCode::OK, Json(answer))
}
