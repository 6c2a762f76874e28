//! The Proxmox VE provider against a fixture server that answers like the Proxmox VE API
//! (`fixtures::proxmox`), over plain HTTP on loopback and, for the TLS tests, behind a
//! `socat` TLS proxy with certificates made by `openssl`. Without socat or openssl the TLS
//! tests print "skipped", unless CI=true, where they fail.

use crate::fixtures::proxmox as fixture;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use crate::fixtures::proxmox::{config, Fixture, Guest, Lab, Node, Pool};
use labctl::diff::{self, DeviationType, ProviderInput, Rules};
use labctl::model::{
    DesiredState, DeviceDoc, DeviceSpec, Document, Kind, Located, Metadata, Origin, PoolDoc,
    PoolSpec, SecretSource, TlsConfig,
};
use labctl::providers::proxmox::{ProxmoxProvider, Settings};
use labctl::providers::{CallPolicy, Fields, Observation, Provider, ProviderError};
use serde_json::{json, Value as Json};
use tempfile::TempDir;

use crate::support::net::free_port;
use crate::support::tls::tls_proxy;

const TOKEN: &str = "labctl@pve!observe=5f0c9a1e-7d2b-4c1a-9e3f-0b5c11aa02d7";
const SECRET: &str = "5f0c9a1e-7d2b-4c1a-9e3f-0b5c11aa02d7";

// ---------------------------------------------------------------------------------------------
// The lab: two nodes, three VMs and one container declared in Git, one VM that is not.

fn guest(node: &str, kind: &'static str, name: &str, cfg: &[(&str, Json)]) -> Guest {
    Guest {
        node: node.into(),
        kind,
        name: name.into(),
        status: "running",
        tags: None,
        config: config(cfg),
        broken_config: false,
    }
}

fn lab() -> Lab {
    let mut lab = Lab {
        token: TOKEN.into(),
        nodes: vec![
            Node {
                name: "pve-01".into(),
                online: true,
                maxcpu: 16,
                maxmem: 68719476736,
            },
            Node {
                name: "pve-02".into(),
                online: true,
                maxcpu: 32,
                maxmem: 137438953472,
            },
        ],
        ..Default::default()
    };
    let g = &mut lab.guests;
    g.insert(
        201,
        guest(
            "pve-01",
            "qemu",
            "nas",
            &[
                ("cores", json!(2)),
                ("sockets", json!(1)),
                ("memory", json!("4096")),
                ("ostype", json!("l26")),
                ("scsihw", json!("virtio-scsi-single")),
                ("boot", json!("order=scsi0;ide2;net0")),
                (
                    "scsi0",
                    json!("local-lvm:vm-201-disk-0,iothread=1,size=32G"),
                ),
                ("scsi1", json!("tank:vm-201-disk-1,backup=0,size=1T")),
                (
                    "ide2",
                    json!("local:iso/debian-12.5.0-amd64-netinst.iso,media=cdrom,size=629M"),
                ),
                (
                    "efidisk0",
                    json!("local-lvm:vm-201-disk-2,efitype=4m,size=4M"),
                ),
                (
                    "net0",
                    json!("virtio=BC:24:11:5E:02:01,bridge=vmbr0,firewall=1,tag=10"),
                ),
                (
                    "smbios1",
                    json!("uuid=7c1f1b7e-6f55-4f0a-a0a3-3c1a1d4e2b01"),
                ),
                ("vmgenid", json!("0b6c3e65-3c2f-4f1f-8c55-0f3f3c1d2a01")),
                ("meta", json!("creation-qemu=8.1.5,ctime=1716200000")),
            ],
        ),
    );
    g.insert(
        202,
        guest(
            "pve-02",
            "qemu",
            "gpu-node",
            &[
                ("cores", json!(8)),
                ("sockets", json!(1)),
                ("memory", json!("16384")),
                ("scsi0", json!("local-lvm:vm-202-disk-0,size=200G")),
                ("hostpci0", json!("0000:01:00,pcie=1")),
                (
                    "net0",
                    json!("virtio=BC:24:11:5E:02:02,bridge=vmbr0,tag=10"),
                ),
            ],
        ),
    );
    g.insert(
        203,
        guest(
            "pve-01",
            "qemu",
            "web",
            &[
                ("cores", json!(2)),
                ("memory", json!("2048")),
                ("virtio0", json!("local-lvm:vm-203-disk-0,size=20G")),
                ("net0", json!("e1000=BC:24:11:5E:02:03,bridge=vmbr0,tag=20")),
            ],
        ),
    );
    g.insert(
        251,
        guest(
            "pve-02",
            "lxc",
            "dns",
            &[
                ("arch", json!("amd64")),
                ("ostype", json!("debian")),
                ("cores", json!(1)),
                ("memory", json!(512)),
                ("swap", json!(512)),
                ("rootfs", json!("local-lvm:vm-251-disk-0,size=8G")),
                (
                    "net0",
                    json!("name=eth0,bridge=vmbr0,firewall=1,hwaddr=BC:24:11:AA:02:51,ip=dhcp,type=veth"),
                ),
                ("unprivileged", json!(1)),
            ],
        ),
    );
    g.insert(
        299,
        Guest {
            tags: Some("scratch;test".into()),
            ..guest(
                "pve-02",
                "qemu",
                "Scratch.Test",
                &[
                    ("cores", json!(1)),
                    ("memory", json!("1024")),
                    ("scsi0", json!("local-lvm:vm-299-disk-0,size=512M")),
                    ("net0", json!("virtio=BC:24:11:5E:02:99,bridge=vmbr0")),
                ],
            )
        },
    );
    lab.pools.insert(
        "compute".into(),
        Pool {
            comment: Some("GPU and batch".into()),
            vmids: vec![202],
            storage: vec![],
        },
    );
    lab.pools.insert(
        "services".into(),
        Pool {
            comment: None,
            vmids: vec![203, 201, 251],
            storage: vec![("pve-01".into(), "local-lvm".into())],
        },
    );
    lab.pools.insert(
        "scratch".into(),
        Pool {
            comment: None,
            vmids: vec![299],
            storage: vec![],
        },
    );
    lab
}

fn meta(name: &str) -> Metadata {
    Metadata {
        name: name.into(),
        labels: Default::default(),
        annotations: Default::default(),
        reconcile: None,
    }
}

fn pool_doc(name: &str, spec: Json) -> Located<PoolDoc> {
    let spec: PoolSpec = serde_json::from_value(spec).unwrap();
    Located {
        doc: Document {
            api_version: "labctl.dev/v1".into(),
            kind: "Pool".into(),
            metadata: meta(name),
            spec,
        },
        origin: Origin {
            file: format!("pools/{name}.yaml"),
            line: 1,
        },
    }
}

fn device_doc(name: &str, spec: Json) -> Located<DeviceDoc> {
    let spec: DeviceSpec = serde_json::from_value(spec).unwrap();
    Located {
        doc: Document {
            api_version: "labctl.dev/v1".into(),
            kind: "Device".into(),
            metadata: meta(name),
            spec,
        },
        origin: Origin {
            file: format!("devices/{name}.yaml"),
            line: 1,
        },
    }
}

/// What Git says about the lab.
fn desired() -> DesiredState {
    DesiredState {
        pools: vec![
            pool_doc("homelab", json!({ "type": "compute" })),
            pool_doc(
                "compute",
                json!({ "type": "compute", "parent": "homelab", "proxmoxPool": "compute" }),
            ),
            pool_doc(
                "services",
                json!({ "type": "compute", "parent": "homelab", "proxmoxPool": "services" }),
            ),
        ],
        devices: vec![
            device_doc(
                "nas",
                json!({
                    "type": "vm", "pool": "/homelab/services",
                    "proxmox": { "node": "pve-01", "vmid": 201 },
                    "cores": 2, "memoryMiB": 4096,
                    "disks": [
                        { "name": "scsi1", "storage": "tank", "sizeGiB": 1024 },
                        { "name": "scsi0", "storage": "local-lvm", "sizeGiB": 32 }
                    ],
                    "interfaces": [{ "name": "net0", "mac": "bc:24:11:5e:02:01", "bridge": "vmbr0",
                                     "vlan": 10, "ip": "10.0.10.5" }],
                    "services": [{ "name": "smb", "port": 445, "protocol": "tcp" }]
                }),
            ),
            device_doc(
                "gpu-node",
                json!({
                    "type": "vm", "pool": "/homelab/compute",
                    "proxmox": { "node": "pve-02", "vmid": 202 },
                    "cores": 8, "memoryMiB": 16384,
                    "disks": [{ "name": "scsi0", "sizeGiB": 200 }]
                }),
            ),
            device_doc(
                "web",
                json!({
                    "type": "vm", "pool": "/homelab/services",
                    "proxmox": { "node": "pve-01", "vmid": 203 },
                    "cores": 2,
                    "interfaces": [{ "name": "net0", "vlan": 20, "ip": "10.0.20.7" }]
                }),
            ),
            device_doc(
                "dns",
                json!({
                    "type": "lxc", "pool": "/homelab/services",
                    "proxmox": { "node": "pve-02", "vmid": 251 },
                    "cores": 1, "memoryMiB": 512,
                    "disks": [{ "name": "rootfs", "storage": "local-lvm", "sizeGiB": 8 }],
                    "interfaces": [{ "name": "eth0", "mac": "bc:24:11:aa:02:51", "bridge": "vmbr0" }]
                }),
            ),
            device_doc(
                "core-switch",
                json!({ "type": "physical", "interfaces": [{ "name": "mgmt", "ip": "10.0.1.2" }] }),
            ),
        ],
        ..Default::default()
    }
}

fn provider_config(url: &str, token: SecretSource, tls: Option<TlsConfig>) -> Settings {
    Settings {
        name: "pve".into(),
        url: url.into(),
        token: Some(token),
        tls,
        timeout_seconds: Some(5),
        max_body_bytes: None,
    }
}

/// A token in a file of its own (with the trailing newline editors add).
fn token_file(dir: &TempDir, token: &str) -> SecretSource {
    let path = dir.path().join("pve.token");
    std::fs::write(&path, format!("{token}\n")).unwrap();
    SecretSource::File(path)
}

fn quick() -> CallPolicy {
    CallPolicy {
        timeout: Duration::from_secs(5),
        retries: 1,
        backoff: Duration::from_millis(10),
        ..CallPolicy::default()
    }
}

async fn provider_for(fixture: &Fixture, dir: &TempDir) -> ProxmoxProvider {
    let cfg = provider_config(&fixture.url(), token_file(dir, TOKEN), None);
    ProxmoxProvider::new(&cfg).unwrap().with_policy(quick())
}

fn fields<'a>(obs: &'a Observation, kind: Kind, name: &str) -> &'a Fields {
    &obs.resources
        .iter()
        .find(|r| r.kind == kind && r.name == name)
        .unwrap_or_else(|| panic!("{kind}/{name} not observed: {:#?}", obs.resources))
        .fields
}

fn run_diff(
    provider: &ProxmoxProvider,
    state: &DesiredState,
    obs: Result<Observation, ProviderError>,
) -> diff::Plan {
    let input = ProviderInput {
        provider: provider.name().to_string(),
        expected: provider.expected(state).into(),
        observed: obs,
        can_apply: provider
            .kinds()
            .into_iter()
            .filter(|k| provider.can_apply(*k))
            .collect(),
        severities: provider.severities(),
    };
    diff::diff(&[input], &Rules::from_state(state))
}

/// `(kind, name, field path, type)` of every deviation.
fn summary(plan: &diff::Plan) -> Vec<(Kind, String, String, DeviationType)> {
    plan.deviations
        .iter()
        .map(|d| (d.kind, d.name.clone(), d.field_path.clone(), d.dtype))
        .collect()
}

fn dev(
    kind: Kind,
    name: &str,
    path: &str,
    dtype: DeviationType,
) -> (Kind, String, String, DeviationType) {
    (kind, name.into(), path.into(), dtype)
}

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_lab_is_observed_in_the_expected_shape() {
    let fixture = fixture::serve(lab()).await;
    let dir = TempDir::new().unwrap();
    let pve = provider_for(&fixture, &dir).await;
    let state = desired();

    assert_eq!(pve.kinds(), BTreeSet::from([Kind::Pool, Kind::Device]));
    assert!(!pve.can_apply(Kind::Device) && !pve.can_apply(Kind::Pool));
    let expected = pve.expected(&state);
    let names: Vec<(Kind, &str)> = expected.iter().map(|r| (r.kind, r.name.as_str())).collect();
    assert_eq!(
        names,
        vec![
            (Kind::Pool, "compute"),
            (Kind::Pool, "services"),
            (Kind::Device, "nas"),
            (Kind::Device, "gpu-node"),
            (Kind::Device, "web"),
            (Kind::Device, "dns"),
        ],
        "no physical device, no pool without proxmoxPool"
    );
    let nas = &expected[2].fields;
    assert_eq!(
        nas,
        &json!({
            "type": "vm", "proxmox": { "node": "pve-01", "vmid": 201 },
            "pool": "/homelab/services",
            "cores": 2, "memoryMiB": 4096,
            "disks": [{ "name": "scsi0", "storage": "local-lvm", "sizeGiB": 32 },
                      { "name": "scsi1", "storage": "tank", "sizeGiB": 1024 }],
            "interfaces": [{ "name": "net0", "mac": "bc:24:11:5e:02:01", "bridge": "vmbr0",
                             "vlan": 10 }]
        }),
        "IPs and services are not Proxmox's business"
    );
    // Membership is each guest's `pool`, a Device field, not a list on the pool.
    assert_eq!(expected[1].fields, json!({ "proxmoxPool": "services" }));

    let obs = pve.observe(&state).await.unwrap();
    assert_eq!(obs.provider, "pve");
    assert!(obs.unobservable.is_empty(), "{:?}", obs.unobservable);
    // Every declared guest and pool reads back exactly as expected: normalised sizes, MACs,
    // memory from the PVE 8.1 string form, the lxc interface by its in-container name, and
    // nothing Git does not declare (web has no memory, gpu-node's disk no storage).
    for r in &expected {
        assert_eq!(
            fields(&obs, r.kind, &r.name),
            &r.fields,
            "{}/{}",
            r.kind,
            r.name
        );
    }
    assert_eq!(
        fields(&obs, Kind::Device, "scratch-test"),
        &json!({
            "type": "vm", "proxmox": { "node": "pve-02", "vmid": 299 },
            "pool": "/scratch",
            "cores": 1, "memoryMiB": 1024,
            "disks": [{ "name": "scsi0", "storage": "local-lvm", "sizeGiB": 0.5 }],
            "interfaces": [{ "name": "net0", "mac": "bc:24:11:5e:02:99", "bridge": "vmbr0" }]
        }),
        "an unmanaged guest shows everything, named after its Proxmox name"
    );
    assert_eq!(
        fields(&obs, Kind::Pool, "scratch"),
        &json!({ "proxmoxPool": "scratch", "type": "compute" }),
        "an unmanaged pool shows what its document needs; its guest says it is in `/scratch`"
    );
    assert_eq!(obs.resources.len(), 8, "{:#?}", obs.resources);

    let plan = run_diff(&pve, &state, Ok(obs));
    assert_eq!(
        summary(&plan),
        vec![
            dev(Kind::Pool, "scratch", "", DeviationType::Unmanaged),
            dev(Kind::Device, "scratch-test", "", DeviationType::Unmanaged),
        ]
    );
    // Observing only reads.
    let requests = fixture.with(|lab| lab.requests.clone());
    assert!(
        requests.iter().all(|p| p.starts_with("/api2/json/")),
        "{requests:?}"
    );
}

#[tokio::test]
async fn drift_missing_and_unmanaged_come_out_of_the_generic_diff() {
    let fixture = fixture::serve(lab()).await;
    let dir = TempDir::new().unwrap();
    let pve = provider_for(&fixture, &dir).await;
    let state = desired();

    // Behind labctl's back: gpu-node loses cores, web is destroyed (and so leaves its pool).
    fixture.with(|lab| {
        lab.guests
            .get_mut(&202)
            .unwrap()
            .config
            .insert("cores".into(), json!(4));
        lab.guests.remove(&203);
        lab.pools
            .get_mut("services")
            .unwrap()
            .vmids
            .retain(|v| *v != 203);
    });
    let plan = run_diff(&pve, &state, pve.observe(&state).await);
    assert_eq!(
        summary(&plan),
        vec![
            dev(Kind::Pool, "scratch", "", DeviationType::Unmanaged),
            dev(
                Kind::Device,
                "gpu-node",
                "spec.cores",
                DeviationType::Drifted
            ),
            dev(Kind::Device, "scratch-test", "", DeviationType::Unmanaged),
            dev(Kind::Device, "web", "", DeviationType::Missing),
        ]
    );
    let cores = plan
        .deviations
        .iter()
        .find(|d| d.field_path == "spec.cores")
        .unwrap();
    assert_eq!(
        (cores.expected.clone(), cores.actual.clone()),
        (Some(json!(8)), Some(json!(4)))
    );
    assert!(!cores.auto_correctable, "observe only");
    assert!(plan.changes.is_empty());

    // A guest moved to another pool has drifted in its own `spec.pool`.
    fixture.with(|lab| {
        lab.pools
            .get_mut("services")
            .unwrap()
            .vmids
            .retain(|v| *v != 201);
        lab.pools.get_mut("compute").unwrap().vmids.push(201);
    });
    let plan = run_diff(&pve, &state, pve.observe(&state).await);
    let pool: Vec<_> = plan
        .deviations
        .iter()
        .filter(|d| d.name == "nas")
        .map(|d| (d.field_path.as_str(), d.expected.clone(), d.actual.clone()))
        .collect();
    assert_eq!(
        pool,
        vec![(
            "spec.pool",
            Some(json!("/homelab/services")),
            Some(json!("/homelab/compute"))
        )]
    );
    // Out of every pool: its `pool` is gone.
    fixture.with(|lab| {
        lab.pools
            .get_mut("compute")
            .unwrap()
            .vmids
            .retain(|v| *v != 201)
    });
    let plan = run_diff(&pve, &state, pve.observe(&state).await);
    let nas = plan.deviations.iter().find(|d| d.name == "nas").unwrap();
    assert_eq!(
        (nas.field_path.as_str(), nas.actual.clone()),
        ("spec.pool", None)
    );

    // A guest migrated to the other node is the same guest, drifted in placement only.
    fixture.with(|lab| lab.guests.get_mut(&202).unwrap().node = "pve-01".into());
    let plan = run_diff(&pve, &state, pve.observe(&state).await);
    let gpu: Vec<_> = summary(&plan)
        .into_iter()
        .filter(|d| d.1 == "gpu-node")
        .collect();
    assert_eq!(
        gpu,
        vec![
            dev(
                Kind::Device,
                "gpu-node",
                "spec.cores",
                DeviationType::Drifted
            ),
            dev(
                Kind::Device,
                "gpu-node",
                "spec.proxmox.node",
                DeviationType::Drifted
            ),
        ]
    );
}

#[tokio::test]
async fn a_guest_whose_config_fails_is_unknown_not_missing() {
    let fixture = fixture::serve(lab()).await;
    let dir = TempDir::new().unwrap();
    let pve = provider_for(&fixture, &dir).await;
    let state = desired();
    fixture.with(|lab| {
        lab.guests.get_mut(&201).unwrap().broken_config = true;
        lab.guests.get_mut(&299).unwrap().broken_config = true;
    });
    let obs = pve.observe(&state).await.unwrap();
    let unknown: Vec<(Kind, &str, Option<&str>)> = obs
        .unobservable
        .iter()
        .map(|u| (u.kind, u.name.as_str(), u.field.as_deref()))
        .collect();
    assert_eq!(unknown, vec![(Kind::Device, "nas", None)]);
    assert!(
        obs.unobservable[0].reason.contains("vmid"),
        "{:?}",
        obs.unobservable
    );
    // The unmanaged guest still exists; only its sizing is unknown.
    assert_eq!(
        fields(&obs, Kind::Device, "scratch-test"),
        &json!({ "type": "vm", "proxmox": { "node": "pve-02", "vmid": 299 } })
    );
    let plan = run_diff(&pve, &state, Ok(obs));
    let nas: Vec<_> = summary(&plan)
        .into_iter()
        .filter(|d| d.1 == "nas")
        .collect();
    assert_eq!(
        nas,
        vec![dev(Kind::Device, "nas", "", DeviationType::Unknown)]
    );
    assert_eq!(plan.count(DeviationType::Missing), 0);

    // A config labctl cannot interpret (a size in an unknown unit) is unknown too.
    fixture.with(|lab| {
        let g = lab.guests.get_mut(&201).unwrap();
        g.broken_config = false;
        g.config
            .insert("scsi1".into(), json!("tank:vm-201-disk-1,size=1P"));
    });
    let obs = pve.observe(&state).await.unwrap();
    let unknown: Vec<(Kind, &str, Option<&str>)> = obs
        .unobservable
        .iter()
        .map(|u| (u.kind, u.name.as_str(), u.field.as_deref()))
        .collect();
    assert_eq!(unknown, vec![(Kind::Device, "nas", None)]);
    assert!(
        obs.unobservable[0].reason.contains("vmid"),
        "{:?}",
        obs.unobservable
    );

    // A node that is down: its guests are unknown, never missing.
    fixture.with(|lab| {
        lab.guests.get_mut(&201).unwrap().config.remove("scsi1");
        lab.nodes[0].online = false;
    });
    let obs = pve.observe(&state).await.unwrap();
    let unknown: Vec<(Kind, &str)> = obs
        .unobservable
        .iter()
        .map(|u| (u.kind, u.name.as_str()))
        .collect();
    assert_eq!(unknown, vec![(Kind::Device, "nas"), (Kind::Device, "web")]);
    let plan = run_diff(&pve, &state, Ok(obs));
    assert_eq!(
        plan.count(DeviationType::Missing),
        0,
        "{:#?}",
        plan.deviations
    );
    assert_eq!(plan.count(DeviationType::Unknown), 2);
}

#[tokio::test]
async fn config_calls_run_concurrently_but_at_most_eight_at_once() {
    let mut lab = lab();
    for vmid in 1000..1024 {
        lab.guests.insert(
            vmid,
            guest(
                "pve-01",
                "qemu",
                &format!("batch-{vmid}"),
                &[("cores", json!(1)), ("memory", json!("512"))],
            ),
        );
    }
    lab.config_delay = Duration::from_millis(40);
    let fixture = fixture::serve(lab).await;
    let dir = TempDir::new().unwrap();
    let pve = provider_for(&fixture, &dir).await;
    let obs = pve.observe(&desired()).await.unwrap();
    assert_eq!(obs.resources.len(), 8 + 24);
    let max = fixture.with(|lab| lab.max_in_flight);
    assert!((2..=8).contains(&max), "max in flight {max}");
}

#[tokio::test]
async fn tokens_come_from_env_file_or_credential_and_never_show() {
    let fixture = fixture::serve(lab()).await;
    let dir = TempDir::new().unwrap();
    let state = desired();

    // From the environment.
    std::env::set_var("LABCTL_TEST_PVE_TOKEN_OK", TOKEN);
    let cfg = provider_config(
        &fixture.url(),
        SecretSource::Env("LABCTL_TEST_PVE_TOKEN_OK".into()),
        None,
    );
    let pve = ProxmoxProvider::new(&cfg).unwrap().with_policy(quick());
    assert!(pve.observe(&state).await.is_ok());

    // From a file (trimmed).
    let cfg = provider_config(&fixture.url(), token_file(&dir, TOKEN), None);
    let pve = ProxmoxProvider::new(&cfg).unwrap().with_policy(quick());
    assert!(pve.observe(&state).await.is_ok());

    // From a systemd credential.
    let creds = TempDir::new().unwrap();
    std::fs::write(creds.path().join("pve-token"), TOKEN).unwrap();
    std::env::set_var("CREDENTIALS_DIRECTORY", creds.path());
    let cfg = provider_config(
        &fixture.url(),
        SecretSource::SystemdCredential("pve-token".into()),
        None,
    );
    let pve = ProxmoxProvider::new(&cfg).unwrap().with_policy(quick());
    assert!(pve.observe(&state).await.is_ok());

    // The header carries the token exactly as PVEAPIToken=USER@REALM!TOKENID=SECRET.
    assert!(fixture.with(|lab| lab.requests.len()) > 3);

    // A wrong secret: an authentication error that never echoes what was sent.
    let wrong_secret = "00000000-dead-beef-0000-000000000000";
    std::env::set_var(
        "LABCTL_TEST_PVE_TOKEN_WRONG",
        format!("labctl@pve!observe={wrong_secret}"),
    );
    let cfg = provider_config(
        &fixture.url(),
        SecretSource::Env("LABCTL_TEST_PVE_TOKEN_WRONG".into()),
        None,
    );
    let pve = ProxmoxProvider::new(&cfg).unwrap().with_policy(quick());
    let err = pve.observe(&state).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Authentication { .. }),
        "{err:?}"
    );
    let shown = format!("{err} {err:?} {}", serde_json::to_string(&err).unwrap());
    assert!(
        !shown.contains(wrong_secret) && !shown.contains(SECRET),
        "{shown}"
    );
    assert!(shown.contains("401"), "{shown}");
    // The unknown-everything plan from that error does not show it either.
    let plan = run_diff(&pve, &state, Err(err));
    let rendered = serde_json::to_string(&plan).unwrap();
    assert!(!rendered.contains(wrong_secret), "{rendered}");
    assert_eq!(plan.count(DeviationType::Unknown), 6);

    // The right token against a server that expects another one.
    fixture.with(|lab| lab.token = "labctl@pve!observe=rotated".into());
    let cfg = provider_config(&fixture.url(), token_file(&dir, TOKEN), None);
    let pve = ProxmoxProvider::new(&cfg).unwrap().with_policy(quick());
    let err = pve.observe(&state).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Authentication { .. }),
        "{err:?}"
    );
    assert!(!format!("{err:?}").contains(SECRET));

    // Configuration errors name the source, never the value.
    let unset = provider_config(
        &fixture.url(),
        SecretSource::Env("LABCTL_TEST_PVE_TOKEN_UNSET".into()),
        None,
    );
    match ProxmoxProvider::new(&unset) {
        Err(ProviderError::Config {
            provider, detail, ..
        }) => {
            assert_eq!(provider, "pve");
            assert!(detail.contains("LABCTL_TEST_PVE_TOKEN_UNSET"), "{detail}");
        }
        Err(other) => panic!("expected a configuration error, got {other:?}"),
        Ok(_) => panic!("expected a configuration error"),
    }
    let missing = provider_config(
        &fixture.url(),
        SecretSource::File(dir.path().join("nope.token")),
        None,
    );
    match ProxmoxProvider::new(&missing) {
        Err(ProviderError::Config { detail, .. }) => {
            assert!(detail.contains("nope.token"), "{detail}")
        }
        Err(other) => panic!("expected a configuration error, got {other:?}"),
        Ok(_) => panic!("expected a configuration error"),
    }
    let malformed_secret = "d3adb33f-no-user-part";
    let malformed = provider_config(&fixture.url(), token_file(&dir, malformed_secret), None);
    match ProxmoxProvider::new(&malformed) {
        Err(e @ ProviderError::Config { .. }) => {
            let text = format!("{e} {e:?}");
            assert!(text.contains("USER@REALM!TOKENID=SECRET"), "{text}");
            assert!(!text.contains(malformed_secret), "{text}");
        }
        Err(other) => panic!("expected a configuration error, got {other:?}"),
        Ok(_) => panic!("expected a configuration error"),
    }
    let mut none = provider_config(&fixture.url(), token_file(&dir, TOKEN), None);
    none.token = None;
    assert!(matches!(
        ProxmoxProvider::new(&none),
        Err(ProviderError::Config { .. })
    ));
}

#[tokio::test]
async fn an_unreachable_api_is_reported_quickly() {
    let port = free_port();
    let dir = TempDir::new().unwrap();
    let url = format!("https://127.0.0.1:{port}");
    let cfg = provider_config(&url, token_file(&dir, TOKEN), None);
    // The default policy: three attempts with backoff.
    let pve = ProxmoxProvider::new(&cfg).unwrap();
    let err = pve.observe(&desired()).await.unwrap_err();
    // Quick because the refused connection is the answer: no attempt waits for its timeout.
    assert!(format!("{err}").contains("Connection refused"), "{err}");
    match &err {
        ProviderError::Unreachable {
            provider, url: at, ..
        } => {
            assert_eq!(provider, "pve");
            assert!(at.starts_with(&url), "{at}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(!format!("{err:?}").contains(SECRET));
}

// ---------------------------------------------------------------------------------------------
fn tls(ca_file: Option<&Path>, fingerprint: Option<&str>) -> Option<TlsConfig> {
    Some(TlsConfig {
        ca_file: ca_file.map(Path::to_path_buf),
        fingerprint: fingerprint.map(str::to_string),
    })
}

#[tokio::test]
async fn tls_fingerprint_pin_and_ca_file() {
    let fixture = fixture::serve(lab()).await;
    let Some(proxy) = tls_proxy(fixture.port) else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let url = format!("https://127.0.0.1:{}", proxy.port);
    let state = desired();
    let connect = |tls: Option<TlsConfig>| {
        ProxmoxProvider::new(&provider_config(&url, token_file(&dir, TOKEN), tls))
            .unwrap()
            .with_policy(quick())
    };

    // The pinned fingerprint, as openssl (and the Proxmox GUI) print it: accepted.
    let pinned = connect(tls(None, Some(&proxy.fingerprint)));
    let obs = pinned.observe(&state).await.unwrap();
    assert_eq!(fields(&obs, Kind::Device, "gpu-node").value()["cores"], 8);
    // Lowercase works as well.
    let lower = connect(tls(None, Some(&proxy.fingerprint.to_lowercase())));
    assert!(lower.observe(&state).await.is_ok());

    // Any other fingerprint: refused, and the error says which certificate was presented.
    let mut other = proxy.fingerprint.clone();
    let flipped = if other.starts_with('0') { "1" } else { "0" };
    other.replace_range(0..1, flipped);
    let refused = connect(tls(None, Some(&other)));
    let result = refused.observe(&state).await;
    match &result {
        Err(ProviderError::Authentication { detail, .. }) => {
            assert!(
                detail.contains("does not match tls.fingerprint"),
                "{detail}"
            );
            assert!(detail.contains(&proxy.fingerprint), "{detail}");
        }
        other => panic!("expected a refused certificate, got {other:?}"),
    }
    // A refused certificate is final: the policy's retries are for transient errors only.
    assert!(!result.unwrap_err().is_transient(), "not retried");

    // The CA file: trusted; the certificate's name (IP 127.0.0.1) is checked as usual.
    let with_ca = connect(tls(Some(&proxy.ca), None));
    let obs = with_ca.observe(&state).await.unwrap();
    assert!(obs.unobservable.is_empty());

    // Without either, the system roots do not know the lab CA.
    let system = connect(None);
    match system.observe(&state).await {
        Err(ProviderError::Authentication { detail, .. }) => {
            assert!(detail.contains("certificate"), "{detail}")
        }
        other => panic!("expected an untrusted certificate, got {other:?}"),
    }

    // Bad TLS settings are configuration errors.
    for bad in [
        tls(Some(&proxy.ca), Some(&proxy.fingerprint)),
        tls(None, Some("AB:CD:EF")),
        tls(Some(&dir.path().join("missing.pem")), None),
    ] {
        let result = ProxmoxProvider::new(&provider_config(&url, token_file(&dir, TOKEN), bad));
        assert!(matches!(result, Err(ProviderError::Config { .. })));
    }
}

/// `import` then `plan` through the binary: the imported pools carry no membership (a Pool has
/// no such field) and each imported guest names its pool in `spec.pool`, so the repository the
/// import wrote is in sync with the lab it came from.
#[tokio::test(flavor = "multi_thread")]
async fn import_writes_pools_and_guest_membership_then_plan_is_clean() {
    use crate::support::cli::{exited, labctl_command, write};
    let mut lab = lab();
    // A Device's disk is a whole number of GiB; the 512M disk of 299 could not be imported
    // (a limit of the model, not of pools).
    lab.guests
        .get_mut(&299)
        .unwrap()
        .config
        .insert("scsi0".into(), json!("local-lvm:vm-299-disk-0,size=1G"));
    let fixture = fixture::serve(lab).await;
    let repo = TempDir::new().unwrap();
    let r = repo.path();
    write(
        r,
        "labctl.yaml",
        &format!(
            "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {{name: lab}}\nspec:\n  providers:\n    - name: pve\n      kind: proxmox\n      url: \"{}\"\n      token: {{env: LABCTL_TEST_PVE_TOKEN}}\n      timeoutSeconds: 5\n",
            fixture.url()
        ),
    );
    let run = |args: &[&str]| {
        labctl_command()
            .args(args)
            .env("LABCTL_TEST_PVE_TOKEN", TOKEN)
            .output()
            .unwrap()
    };
    let repo_arg = r.to_str().unwrap();
    let out = run(&["import", repo_arg]);
    exited(&out, 0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("skipped 0"), "{stdout}");
    let pool = std::fs::read_to_string(r.join("pools/compute.yaml")).unwrap();
    assert!(
        pool.contains("proxmoxPool: compute") && pool.contains("description: GPU and batch"),
        "{pool}"
    );
    assert!(!pool.contains("members"), "{pool}");
    let guest = std::fs::read_to_string(r.join("devices/gpu-node.yaml")).unwrap();
    assert!(guest.contains("pool: /compute"), "{guest}");

    exited(&run(&["validate", repo_arg]), 0);
    exited(&run(&["plan", repo_arg]), 0);
}
