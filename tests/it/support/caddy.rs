//! A real Caddy, started with its admin API on a free loopback port for a test. Without the
//! `caddy` binary a test prints "skipped", unless CI=true, where it fails.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};

use super::net::free_port;

pub const ROUTES: &str = "/config/apps/http/servers/srv0/routes";

/// A running Caddy; killed on drop.
pub struct Caddy {
    pub child: Option<Child>,
    pub admin: String,
    pub http_port: u16,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
}

impl Caddy {
    /// Starts Caddy with `routes` on server `srv0`, or `None` (skipped) when Caddy is not
    /// installed outside CI.
    pub async fn start(routes: Json) -> Option<Caddy> {
        Self::start_in(tempfile::tempdir().unwrap(), routes).await
    }

    pub async fn start_in(dir: tempfile::TempDir, routes: Json) -> Option<Caddy> {
        if !super::runs("caddy", "version") {
            super::absent("caddy is not installed (Debian package `caddy`)");
            return None;
        }
        let admin_port = free_port();
        let http_port = free_port();
        let config = json!({
            "admin": {"listen": format!("127.0.0.1:{admin_port}"), "config": {"persist": false}},
            "apps": {"http": {"servers": {"srv0": {
                "listen": [format!("127.0.0.1:{http_port}")],
                "automatic_https": {"disable": true},
                "routes": routes,
            }}}}
        });
        let file = dir.path().join("caddy.json");
        std::fs::write(&file, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let mut caddy = Caddy {
            child: None,
            admin: format!("http://127.0.0.1:{admin_port}"),
            http_port,
            dir,
            // No pooling: Caddy restarts its admin listener on every config load.
            client: reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
        };
        caddy.restart().await;
        Some(caddy)
    }

    /// Starts Caddy (again, after [`Caddy::stop`]) from its configuration file, on the same
    /// ports, and waits for its admin API.
    pub async fn restart(&mut self) {
        let dir = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("caddy.log"))
            .unwrap();
        let child = Command::new("caddy")
            .arg("run")
            .arg("--config")
            .arg(dir.join("caddy.json"))
            .env("XDG_DATA_HOME", dir)
            .env("XDG_CONFIG_HOME", dir)
            .env("HOME", dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn caddy");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(r) = self
                .client
                .get(format!("{}/config/", self.admin))
                .send()
                .await
            {
                if r.status().is_success() {
                    break;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("caddy exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "caddy admin API not up:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("caddy.log")).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The raw routes array, as Caddy holds it.
    pub async fn routes(&self) -> Json {
        self.call("GET", ROUTES, None).await
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Json>) -> Json {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        // Caddy restarts its admin listener after every config load (even a refused one), so
        // a request right after one can meet a closed socket: try again briefly. Only a
        // transport failure is retried; any HTTP answer is final.
        let mut attempt = 0;
        let (status, text) = loop {
            let mut req = self
                .client
                .request(method.clone(), format!("{}{path}", self.admin));
            if let Some(b) = &body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    match resp.text().await {
                        Ok(text) => break (status, text),
                        Err(e) if attempt < 10 => eprintln!("retrying {method} {path}: {e}"),
                        Err(e) => panic!("{method} {path}: {e}"),
                    }
                }
                Err(e) if attempt < 10 => eprintln!("retrying {method} {path}: {e}"),
                Err(e) => panic!("{method} {path}: {e}"),
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        if text.trim().is_empty() {
            Json::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        self.stop();
    }
}
