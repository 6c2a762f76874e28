//! Answers a real API never sends, to check that labctl does not read them as an empty lab.
//!
//! [`Lying`] stands in front of a real server (a Kea Control Agent, the Proxmox VE fixture):
//! it forwards every request and records it, and once told to lie it rewrites the JSON of the
//! answers it picks into a shape the real API never produces (Kea validates its configuration
//! and the fixture answers only with documented JSON, so neither can be made to send it).
//! Everything else is the real server's answer, unchanged.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use serde_json::Value as Json;

use super::net::serve;

/// One request the proxy received.
#[derive(Debug, Clone)]
pub struct Heard {
    pub method: String,
    /// The path and query.
    pub path: String,
    /// The `command` of a Kea Control Agent request (empty otherwise).
    pub command: String,
}

/// A rewrite of an answer to a request; it leaves alone the answers it does not pick.
type Lie = Box<dyn Fn(&Heard, &mut Json) + Send + Sync>;

#[derive(Default)]
struct State {
    heard: Vec<Heard>,
    lie: Option<Lie>,
}

/// A proxy in front of a real server that records requests and can lie.
pub struct Lying {
    /// The URL to give labctl instead of the real server's (no trailing `/`).
    pub url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Lying {
    /// Forwards to the server at `upstream` (no trailing `/`), truthfully until
    /// [`Lying::lie`].
    pub async fn start(upstream: &str) -> Lying {
        let state = Arc::new(Mutex::new(State::default()));
        let (upstream, shared) = (upstream.to_string(), Arc::clone(&state));
        let client = reqwest::Client::new();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (upstream, state, client) =
                    (upstream.clone(), Arc::clone(&shared), client.clone());
                async move {
                    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
                    let command = serde_json::from_slice::<Json>(&body)
                        .ok()
                        .and_then(|b| b["command"].as_str().map(str::to_string))
                        .unwrap_or_default();
                    let heard = Heard {
                        method: method.to_string(),
                        path,
                        command,
                    };
                    state.lock().unwrap().heard.push(heard.clone());
                    let mut request = client.request(method, format!("{upstream}{}", heard.path));
                    for (name, value) in &headers {
                        if name != "host" && name != "content-length" {
                            request = request.header(name, value);
                        }
                    }
                    let answer = request.body(body).send().await.unwrap();
                    let status = answer.status();
                    let answer = answer.bytes().await.unwrap();
                    let state = state.lock().unwrap();
                    let body = match (&state.lie, serde_json::from_slice::<Json>(&answer)) {
                        (Some(lie), Ok(mut json)) => {
                            lie(&heard, &mut json);
                            json.to_string()
                        }
                        _ => String::from_utf8_lossy(&answer).into_owned(),
                    };
                    (status, body)
                }
            },
        );
        let (port, task) = serve(app).await;
        Lying {
            url: format!("http://127.0.0.1:{port}"),
            state,
            task,
        }
    }

    /// From now on, answers pass through `lie` (which rewrites those it picks).
    pub fn lie(&self, lie: impl Fn(&Heard, &mut Json) + Send + Sync + 'static) {
        self.state.lock().unwrap().lie = Some(Box::new(lie));
    }

    /// The requests received so far, in order.
    pub fn heard(&self) -> Vec<Heard> {
        self.state.lock().unwrap().heard.clone()
    }
}

impl Drop for Lying {
    fn drop(&mut self) {
        self.task.abort();
    }
}
