//! A real Kea DHCPv4 server with its Control Agent, started on free loopback ports for a test
//! (no root, no NIC: UDP sockets on `lo`). Without the Kea binaries a test prints "skipped",
//! unless CI=true, where it fails.

use std::fs::File;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};

use super::net::free_port;

pub const KEA_DHCP4: &str = "/usr/sbin/kea-dhcp4";
pub const KEA_CTRL_AGENT: &str = "/usr/sbin/kea-ctrl-agent";

/// A running kea-dhcp4 + kea-ctrl-agent pair in its own short temp dir; both are killed (by
/// their child handles) on drop.
pub struct Kea {
    pub server: Child,
    pub agent: Child,
    pub url: String,
    pub conf: PathBuf,
    pub auth: Option<(String, String)>,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
}

impl Kea {
    /// Starts Kea with `subnet1` as the reservations of 10.0.1.0/24 and `subnet2` as those of
    /// 10.0.2.0/24; `None` when Kea is not installed (and CI is not set).
    pub async fn start(subnet1: Json, subnet2: Json) -> Option<Kea> {
        Kea::start_with(subnet1, subnet2, None).await
    }

    pub async fn start_with(
        subnet1: Json,
        subnet2: Json,
        auth: Option<(&str, &str)>,
    ) -> Option<Kea> {
        if !Path::new(KEA_DHCP4).exists() || !Path::new(KEA_CTRL_AGENT).exists() {
            let msg = format!(
                "{KEA_DHCP4} and {KEA_CTRL_AGENT} are needed \
                 (apt-get install kea-dhcp4-server kea-ctrl-agent)"
            );
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{msg}; they are required when CI=true");
            }
            eprintln!("skipped: {msg}");
            return None;
        }
        // The unix control socket's path must stay under ~100 bytes: a short dir under /tmp.
        let dir = tempfile::Builder::new()
            .prefix("kea")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        let socket = d.join("d4.sock");
        let conf = d.join("dhcp4.json");
        let dhcp4 = json!({ "Dhcp4": {
            "interfaces-config": { "interfaces": ["lo"], "dhcp-socket-type": "udp" },
            "lease-database": { "type": "memfile", "persist": true,
                                "name": d.join("leases4.csv") },
            "control-socket": { "socket-type": "unix", "socket-name": socket },
            "valid-lifetime": 4000,
            "subnet4": [
                { "id": 1, "subnet": "10.0.1.0/24",
                  "pools": [{ "pool": "10.0.1.100 - 10.0.1.200" }],
                  "reservations": subnet1 },
                { "id": 2, "subnet": "10.0.2.0/24", "reservations": subnet2 }
            ],
            "loggers": [{ "name": "kea-dhcp4", "severity": "INFO",
                          "output_options": [{ "output": d.join("dhcp4.log") }] }]
        }});
        std::fs::write(&conf, serde_json::to_vec_pretty(&dhcp4).unwrap()).unwrap();

        let http_port = free_port();
        let dhcp_port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut agent_conf = json!({ "Control-agent": {
            "http-host": "127.0.0.1",
            "http-port": http_port,
            "control-sockets": { "dhcp4": { "socket-type": "unix", "socket-name": socket } },
            "loggers": [{ "name": "kea-ctrl-agent", "severity": "INFO",
                          "output_options": [{ "output": d.join("agent.log") }] }]
        }});
        if let Some((user, password)) = auth {
            agent_conf["Control-agent"]["authentication"] = json!({
                "type": "basic", "realm": "kea",
                "clients": [{ "user": user, "password": password }]
            });
        }
        let agent_path = d.join("agent.json");
        std::fs::write(&agent_path, serde_json::to_vec_pretty(&agent_conf).unwrap()).unwrap();

        let spawn = |bin: &str, args: &[&std::ffi::OsStr], out: &str| {
            Command::new(bin)
                .args(args)
                .env("KEA_PIDFILE_DIR", d)
                .env("KEA_LOCKFILE_DIR", d)
                .stdin(Stdio::null())
                .stdout(File::create(d.join(format!("{out}.out"))).unwrap())
                .stderr(File::create(d.join(format!("{out}.err"))).unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"))
        };
        let port = dhcp_port.to_string();
        let server = spawn(
            KEA_DHCP4,
            &[
                "-c".as_ref(),
                conf.as_os_str(),
                "-p".as_ref(),
                port.as_ref(),
            ],
            "dhcp4",
        );
        let agent = spawn(
            KEA_CTRL_AGENT,
            &["-c".as_ref(), agent_path.as_os_str()],
            "agent",
        );
        let mut kea = Kea {
            server,
            agent,
            url: format!("http://127.0.0.1:{http_port}/"),
            conf,
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
            client: reqwest::Client::new(),
            dir,
        };
        kea.wait_ready().await;
        Some(kea)
    }

    /// Waits until `config-get` answers through the agent (the agent may be up before the
    /// server's control socket is).
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let exited = [
                ("kea-dhcp4", self.server.try_wait().unwrap()),
                ("kea-ctrl-agent", self.agent.try_wait().unwrap()),
            ];
            for (name, status) in exited {
                if let Some(status) = status {
                    panic!("{name} exited with {status}\n{}", self.logs());
                }
            }
            if let Ok(answer) = self.try_cmd("config-get", None).await {
                if answer[0]["result"] == 0 {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!("Kea did not answer config-get within 20 s\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for f in [
            "dhcp4.out",
            "dhcp4.err",
            "dhcp4.log",
            "agent.out",
            "agent.err",
            "agent.log",
        ] {
            let text = std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
            out.push_str(&format!("--- {f}\n{text}"));
        }
        out
    }

    pub async fn try_cmd(&self, command: &str, arguments: Option<Json>) -> reqwest::Result<Json> {
        let mut body = json!({ "command": command, "service": ["dhcp4"] });
        if let Some(a) = arguments {
            body["arguments"] = a;
        }
        let mut request = self.client.post(&self.url).json(&body);
        if let Some((user, password)) = &self.auth {
            request = request.basic_auth(user, Some(password));
        }
        request.send().await?.json().await
    }

    /// The running `Dhcp4` config, read directly (not through labctl).
    pub async fn config(&self) -> Json {
        let answer = self.try_cmd("config-get", None).await.unwrap();
        assert_eq!(answer[0]["result"], 0, "{answer}");
        answer[0]["arguments"]["Dhcp4"].clone()
    }

    /// Sets the `Dhcp4` config directly: an edit "behind labctl's back".
    pub async fn set_config(&self, dhcp4: Json) {
        let answer = self
            .try_cmd("config-set", Some(json!({ "Dhcp4": dhcp4 })))
            .await
            .unwrap();
        assert_eq!(answer[0]["result"], 0, "{answer}");
    }

    /// Stops both processes now (the drop does the same, later).
    pub fn stop(&mut self) {
        for child in [&mut self.agent, &mut self.server] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Kea {
    fn drop(&mut self) {
        self.stop();
    }
}
