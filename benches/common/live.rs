//! The live side of a synthetic lab ([`crate::synth`]) on loopback: a real Kea holding its
//! reservations, loaded through Kea's control agent, and the Proxmox VE fixture holding its
//! guests; and the lab's repository, with a labctl.yaml that names both, committed.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::{kea, proxmox, synth};

/// The Proxmox VE API token the fixture accepts; labctl.yaml reads it from
/// `LABCTL_BENCH_PVE_TOKEN`.
pub const PVE_TOKEN: &str = "labctl@pve!bench=2f9d3c1e-5a7b-4e0d-9c61-3b8a0f4e7d21";

/// Kea and the Proxmox VE fixture, serving one lab until dropped.
#[allow(dead_code)]
pub struct Live {
    pub kea: kea::Kea,
    pub pve: proxmox::Fixture,
}

impl Live {
    /// Starts both with `lab`'s live state and writes its repository at `repo`, committed.
    pub async fn start(lab: &synth::Lab, repo: &Path) -> Live {
        let kea = kea::Kea::start(json!([]), json!([]))
            .await
            .expect("Kea is installed (apt-get install kea-dhcp4-server kea-ctrl-agent)");
        let mut dhcp4 = kea.config().await;
        dhcp4["subnet4"] = lab.subnet4.clone();
        kea.set_config(dhcp4).await;

        let mut pve = proxmox::Lab {
            token: PVE_TOKEN.into(),
            ..Default::default()
        };
        for n in 0..synth::NODES {
            pve.nodes.push(proxmox::Node {
                name: format!("pve-{:02}", n + 1),
                online: true,
                maxcpu: 64,
                maxmem: 512 << 30,
            });
        }
        for g in &lab.guests {
            pve.guests.insert(
                g.vmid,
                proxmox::Guest {
                    node: g.node.clone(),
                    kind: "qemu",
                    name: g.name.clone(),
                    status: "running",
                    tags: None,
                    config: proxmox::config(&[
                        ("cores", json!(g.cores)),
                        ("memory", json!(g.memory_mib.to_string())),
                        ("net0", json!(format!("virtio={},bridge=vmbr0", g.mac))),
                    ]),
                    broken_config: false,
                },
            );
        }
        for (id, vmids) in &lab.pve_pools {
            pve.pools.insert(
                id.clone(),
                proxmox::Pool {
                    vmids: vmids.clone(),
                    ..Default::default()
                },
            );
        }
        let pve = proxmox::serve(pve).await;

        for (path, text) in &lab.files {
            crate::common::write(repo, path, text);
        }
        crate::common::write(
            repo,
            "labctl.yaml",
            &format!(
                "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {{name: lab}}\nspec:\n  providers:\n    - {{name: kea, kind: kea, url: \"{}\", timeoutSeconds: 60}}\n    - {{name: pve, kind: proxmox, url: \"{}\", token: {{env: LABCTL_BENCH_PVE_TOKEN}}, timeoutSeconds: 60}}\n",
                kea.url,
                pve.url()
            ),
        );
        commit(repo);
        Live { kea, pve }
    }
}

/// Makes `dir` a Git repository whose one commit holds every file in it.
pub fn commit(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "generated lab"]);
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@lab.example",
        ])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}
