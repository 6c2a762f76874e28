//! A small lab for the MCP tests: a real Kea and the Proxmox VE fixture, its desired state
//! committed to a real Git repository, and a SQLite store holding one `labctl reconcile --once`
//! run of it (made by the real binary).

use std::path::Path;

use serde_json::{json, Value as Json};

use crate::fixtures::proxmox as fixture;
use crate::support::cli::{labctl_command, write};
use crate::support::git::{commit_all, git};
use crate::support::kea::Kea;

/// The Proxmox API token the fixture accepts, and the variable labctl reads it from.
pub const PVE_TOKEN: &str = "labctl@pve!observe=5f0c9a1e-7d2b-4c1a-9e3f-0b5c11aa02d7";
pub const TOKEN_ENV: &str = "LABCTL_TEST_MCP_PVE_TOKEN";
/// The subnet of the lab's reservations.
pub const SUBNET: &str = "10.0.1.0/24";

pub fn kea_reservation(name: &str, mac: &str, ip: &str) -> Json {
    json!({ "hw-address": mac, "ip-address": ip, "hostname": format!("{name}.lab.example") })
}

pub fn guest(name: &str, cores: u32, memory: &str, mac: &str) -> fixture::Guest {
    fixture::Guest {
        node: "pve-01".into(),
        kind: "qemu",
        name: name.into(),
        status: "running",
        tags: None,
        config: fixture::config(&[
            ("cores", json!(cores)),
            ("memory", json!(memory)),
            ("net0", json!(format!("virtio={mac},bridge=vmbr0"))),
        ]),
        broken_config: false,
    }
}

/// The Proxmox VE side of the lab: node pve-01 with harbor (202, pool `services`) and whisper
/// (201, pool `gpu`).
pub fn proxmox_lab() -> fixture::Lab {
    let mut lab = fixture::Lab {
        token: PVE_TOKEN.into(),
        nodes: vec![fixture::Node {
            name: "pve-01".into(),
            online: true,
            maxcpu: 32,
            maxmem: 137438953472,
        }],
        ..Default::default()
    };
    lab.guests
        .insert(202, guest("harbor", 8, "16384", "BC:24:11:5E:02:02"));
    lab.guests
        .insert(201, guest("whisper", 12, "49152", "BC:24:11:5E:02:01"));
    lab.pools.insert(
        "gpu".into(),
        fixture::Pool {
            vmids: vec![201],
            ..Default::default()
        },
    );
    lab.pools.insert(
        "services".into(),
        fixture::Pool {
            vmids: vec![202],
            ..Default::default()
        },
    );
    lab
}

/// Writes `devices/<name>.yaml`: a VM on pve-01 in `pool` with one interface.
pub fn device(
    dir: &Path,
    name: &str,
    pool: &str,
    (vmid, cores, mem): (u32, u32, u32),
    mac: &str,
    ip: &str,
) {
    write(
        dir,
        &format!("devices/{name}.yaml"),
        &format!(
            "apiVersion: labctl.dev/v1\nkind: Device\nmetadata:\n  name: {name}\n  labels: {{role: {name}}}\nspec:\n  type: vm\n  pool: {pool}\n  proxmox: {{node: pve-01, vmid: {vmid}}}\n  cores: {cores}\n  memoryMiB: {mem}\n  interfaces:\n    - {{name: net0, mac: \"{mac}\", ip: {ip}, bridge: vmbr0}}\n"
        ),
    );
}

/// Writes the Proxmox VE side of [`proxmox_lab`] as documents: the pools `lab`, `gpu-nodes`
/// (Proxmox pool `gpu`) and `services`, and the guests harbor (202) and whisper (201) in them.
pub fn proxmox_documents(r: &Path) {
    write(
        r,
        "pools/lab.yaml",
        "apiVersion: labctl.dev/v1\nkind: Pool\nmetadata: {name: lab}\nspec: {type: compute}\n---\napiVersion: labctl.dev/v1\nkind: Pool\nmetadata: {name: gpu-nodes}\nspec: {parent: lab, type: compute, proxmoxPool: gpu}\n---\napiVersion: labctl.dev/v1\nkind: Pool\nmetadata: {name: services}\nspec: {parent: lab, type: compute, proxmoxPool: services}\n",
    );
    device(
        r,
        "harbor",
        "/lab/services",
        (202, 8, 16384),
        "bc:24:11:5e:02:02",
        "10.0.1.202",
    );
    device(
        r,
        "whisper",
        "/lab/gpu-nodes",
        (201, 12, 49152),
        "bc:24:11:5e:02:01",
        "10.0.1.201",
    );
}

/// Writes `labctl.yaml` with one Proxmox VE provider, `pve` at `url`, its token from
/// [`TOKEN_ENV`].
pub fn proxmox_config(dir: &Path, url: &str) {
    write(
        dir,
        "labctl.yaml",
        &format!(
            "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {{name: lab}}\nspec:\n  providers:\n    - {{name: pve, kind: proxmox, url: \"{url}\", token: {{env: {TOKEN_ENV}}}, timeoutSeconds: 2}}\n"
        ),
    );
}

/// Writes `labctl.yaml` with one Kea provider at `kea_url` and `policy` for reservations.
pub fn kea_config(dir: &Path, kea_url: &str, policy: &str) {
    write(
        dir,
        "labctl.yaml",
        &format!(
            "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {{name: lab}}\nspec:\n  providers:\n    - {{name: kea, kind: kea, url: \"{kea_url}\", timeoutSeconds: 2}}\n  policy:\n    DhcpReservation: {policy}\n"
        ),
    );
}

/// Writes `dhcp/<name>.yaml`: a DhcpReservation of `ip` for `mac` in `subnet`.
pub fn reservation(dir: &Path, name: &str, subnet: &str, mac: &str, ip: &str) {
    write(
        dir,
        &format!("dhcp/{name}.yaml"),
        &format!(
            "apiVersion: labctl.dev/v1\nkind: DhcpReservation\nmetadata: {{name: {name}}}\nspec:\n  subnet: {subnet}\n  mac: \"{mac}\"\n  ip: {ip}\n  hostname: {name}.lab.example\n"
        ),
    );
}

/// A lab with a real Kea and the Proxmox fixture, its desired state committed to Git, and a
/// store holding one reconcile run of it.
pub struct Lab {
    _kea: Kea,
    _pve: fixture::Fixture,
    pub repo: tempfile::TempDir,
    _db_dir: tempfile::TempDir,
    pub db: String,
    pub commit: String,
}

/// The lab, or `None` (skipped) when Kea is not installed outside CI.
pub async fn reconciled_lab() -> Option<Lab> {
    let kea = Kea::start(
        json!([
            kea_reservation("harbor", "bc:24:11:5e:02:02", "10.0.1.202"),
            // Changed behind labctl's back: Git says .201.
            kea_reservation("whisper", "bc:24:11:5e:02:01", "10.0.1.209"),
            // Not in Git.
            kea_reservation("printer", "aa:bb:cc:00:00:99", "10.0.1.99"),
        ]),
        json!([]),
    )
    .await?;
    let pve = fixture::serve(proxmox_lab()).await;
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    write(
        r,
        "labctl.yaml",
        &format!(
            "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {{name: lab}}\nspec:\n  providers:\n    - {{name: kea, kind: kea, url: \"{}\", timeoutSeconds: 2}}\n    - {{name: pve, kind: proxmox, url: \"{}\", token: {{env: {TOKEN_ENV}}}, timeoutSeconds: 2}}\n  policy:\n    DhcpReservation: observe\n",
            kea.url,
            pve.url()
        ),
    );
    proxmox_documents(r);
    reservation(r, "harbor", SUBNET, "bc:24:11:5e:02:02", "10.0.1.202");
    reservation(r, "whisper", SUBNET, "bc:24:11:5e:02:01", "10.0.1.201");
    git(r, &["init", "-q", "-b", "main"]);
    let commit = commit_all(r, "lab");

    let db_dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", db_dir.path().join("state.db").display());
    reconcile_once(r, &db).await;
    Some(Lab {
        _kea: kea,
        _pve: pve,
        repo,
        _db_dir: db_dir,
        db,
        commit,
    })
}

/// Runs `labctl reconcile --once` of `repo` into `db` with the Proxmox token in the environment;
/// it must exit 0.
pub async fn reconcile_once(repo: &Path, db: &str) {
    let mut cmd = labctl_command();
    cmd.args([
        "reconcile",
        "--once",
        repo.to_str().unwrap(),
        "--database-url",
        db,
    ])
    .env(TOKEN_ENV, PVE_TOKEN);
    let out = tokio::process::Command::from(cmd)
        .output()
        .await
        .expect("labctl runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
