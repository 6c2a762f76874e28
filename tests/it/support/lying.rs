//! Answers a real API never sends, to check that labctl does not read them as an empty lab.
//!
//! [`LyingKea`] stands in front of a real Kea Control Agent: it forwards every command and
//! records its name, and once told to lie it rewrites the `Dhcp4` of each config-get answer
//! into a shape Kea itself never produces (Kea validates its configuration, so the real one
//! cannot be made to send it). Everything else is the real Kea's answer, unchanged.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use serde_json::Value as Json;

use super::net::serve;

/// A rewrite of the `Dhcp4` object of a config-get answer.
type Lie = Box<dyn Fn(&mut Json) + Send + Sync>;

#[derive(Default)]
struct State {
    commands: Vec<String>,
    lie: Option<Lie>,
}

/// A proxy in front of a real Kea Control Agent that records commands and can lie.
pub struct LyingKea {
    /// The URL to give labctl instead of the real agent's.
    pub url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl LyingKea {
    /// Forwards to the agent at `upstream`, truthfully until [`LyingKea::lie`].
    pub async fn start(upstream: &str) -> LyingKea {
        let state = Arc::new(Mutex::new(State::default()));
        let (upstream, shared) = (upstream.to_string(), Arc::clone(&state));
        let client = reqwest::Client::new();
        let app = axum::Router::new().fallback(move |body: Bytes| {
            let (upstream, state, client) = (upstream.clone(), Arc::clone(&shared), client.clone());
            async move {
                let command = serde_json::from_slice::<Json>(&body)
                    .ok()
                    .and_then(|b| b["command"].as_str().map(str::to_string))
                    .unwrap_or_default();
                state.lock().unwrap().commands.push(command.clone());
                let answer = client
                    .post(&upstream)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap();
                let state = state.lock().unwrap();
                match (&state.lie, command.as_str()) {
                    (Some(lie), "config-get") => {
                        let mut answer: Json = serde_json::from_slice(&answer).unwrap();
                        lie(&mut answer[0]["arguments"]["Dhcp4"]);
                        answer.to_string()
                    }
                    _ => String::from_utf8_lossy(&answer).into_owned(),
                }
            }
        });
        let (port, task) = serve(app).await;
        LyingKea {
            url: format!("http://127.0.0.1:{port}/"),
            state,
            task,
        }
    }

    /// From now on, config-get answers carry `Dhcp4` rewritten by `lie`.
    pub fn lie(&self, lie: impl Fn(&mut Json) + Send + Sync + 'static) {
        self.state.lock().unwrap().lie = Some(Box::new(lie));
    }

    /// The commands received so far, in order.
    pub fn commands(&self) -> Vec<String> {
        self.state.lock().unwrap().commands.clone()
    }
}

impl Drop for LyingKea {
    fn drop(&mut self) {
        self.task.abort();
    }
}
