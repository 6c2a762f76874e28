//! Answers of a shape a provider does not fully understand are unknown, never an empty lab:
//! `plan` exits 1 with the resources unknown and the reason, open deviations stay open, and
//! nothing is applied from such a picture.

use serde_json::{json, Value as Json};

use crate::fixtures::proxmox as pve_fixture;
use crate::support::cli::{deviations, exited, json_of, labctl, labctl_command};
use crate::support::kea::Kea;
use crate::support::lab::{
    kea_config, kea_reservation, proxmox_config, proxmox_documents, proxmox_lab, reservation,
    PVE_TOKEN, SUBNET, TOKEN_ENV,
};
use crate::support::lying::Lying;
use labctl::store::Store;

/// A rewrite of a real Kea's `Dhcp4` into a shape Kea never sends.
type Lie = fn(&mut Json);

/// Lies, each with what the reason then says.
fn kea_lies() -> Vec<(&'static str, Lie)> {
    vec![
        ("Dhcp4.subnet4 is an object, expected an array", |d| {
            d["subnet4"] = json!({ "0": d["subnet4"][0].take() });
        }),
        (
            "Dhcp4.subnet4[1].reservations is a string, expected an array",
            |d| d["subnet4"][1]["reservations"] = json!("none"),
        ),
        (
            "Dhcp4.subnet4[0].reservations[0].hw-address is a number, expected a string",
            |d| d["subnet4"][0]["reservations"][0]["hw-address"] = json!(188),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kea_answer_of_the_wrong_shape_is_unknown_resolves_nothing_and_applies_nothing() {
    let Some(kea) = Kea::start(
        json!([
            kea_reservation("harbor", "bc:24:11:5e:02:02", "10.0.1.202"),
            // Changed behind labctl's back: Git says .201.
            kea_reservation("whisper", "bc:24:11:5e:02:01", "10.0.1.209"),
        ]),
        json!([kea_reservation("far", "bc:24:11:5e:03:01", "10.0.2.31")]),
    )
    .await
    else {
        return;
    };
    let proxy = Lying::start(kea.url.trim_end_matches('/')).await;
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    kea_config(r, &proxy.url, "observe");
    reservation(r, "harbor", SUBNET, "bc:24:11:5e:02:02", "10.0.1.202");
    reservation(r, "whisper", SUBNET, "bc:24:11:5e:02:01", "10.0.1.201");
    reservation(r, "far", "10.0.2.0/24", "bc:24:11:5e:03:01", "10.0.2.31");
    // In Git, not in Kea.
    reservation(r, "grafana", SUBNET, "bc:24:11:5e:02:20", "10.0.1.220");
    let repo_arg = r.to_str().unwrap();
    let db_dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", db_dir.path().join("state.db").display());

    // The truth, recorded: two open deviations.
    let out = labctl(&["reconcile", "--once", repo_arg, "--database-url", &db]);
    exited(&out, 0);
    let store = Store::connect(&db).await.unwrap();
    assert_eq!(store.open_deviations(None, None).await.unwrap().len(), 2);
    let before = kea.config().await;

    kea_config(r, &proxy.url, "apply");
    for (says, lie) in kea_lies() {
        proxy.lie(move |heard, answer| {
            if heard.command == "config-get" {
                lie(&mut answer[0]["arguments"]["Dhcp4"]);
            }
        });
        let out = labctl(&["plan", repo_arg, "--format", "json"]);
        exited(&out, 1);
        let plan = json_of(&out)["plan"].clone();
        let found = deviations(&plan);
        assert_eq!(found.len(), 4, "{plan}");
        assert!(found.iter().all(|d| d.2 == "unknown"), "{says}: {plan}");
        let reason = plan["unobservable"]["kea"].as_str().unwrap_or_default();
        assert!(reason.contains(says), "{says}: {plan}");

        let heard = proxy.heard().len();
        let out = labctl(&["reconcile", "--once", repo_arg, "--database-url", &db]);
        exited(&out, 0);
        let sent = proxy.heard()[heard..].to_vec();
        assert!(
            sent.iter().all(|h| h.command == "config-get"),
            "{says}: {sent:?}"
        );
        let open = store.open_deviations(None, None).await.unwrap();
        assert_eq!(
            open.len(),
            2,
            "{says}: a doubtful read resolves nothing: {open:?}"
        );
    }
    assert_eq!(kea.config().await, before, "Kea was not changed");
    store.close().await;
}

/// A lie about one Proxmox VE answer: the request path it picks, the rewrite of `data`, the
/// resources then unknown, and what the reason says.
struct PveLie {
    path: &'static str,
    rewrite: Lie,
    unknown: &'static [&'static str],
    says: &'static str,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxmox_answer_of_the_wrong_shape_makes_what_it_covers_unknown() {
    let pve = pve_fixture::serve(proxmox_lab()).await;
    let proxy = Lying::start(&pve.url()).await;
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    proxmox_config(r, &proxy.url);
    proxmox_documents(r);
    let repo_arg = r.to_str().unwrap();
    let plan = || {
        labctl_command()
            .args(["plan", repo_arg, "--format", "json"])
            .env(TOKEN_ENV, PVE_TOKEN)
            .output()
            .unwrap()
    };
    // The truth: in sync.
    let out = tokio::task::block_in_place(plan);
    exited(&out, 0);

    let all = &["gpu-nodes", "harbor", "services", "whisper"];
    let lies = [
        PveLie {
            path: "/api2/json/nodes",
            rewrite: |data| *data = json!({ "pve-01": data[0].take() }),
            unknown: all,
            says: "Proxmox VE /nodes: data is an object, expected an array",
        },
        PveLie {
            path: "/api2/json/nodes/pve-01/qemu",
            rewrite: |data| data[0]["vmid"] = json!(true),
            unknown: &["harbor", "whisper"],
            says: "not listed, and a node could not be listed",
        },
        PveLie {
            path: "/api2/json/pools",
            rewrite: |data| data[0]["poolid"] = json!(7),
            unknown: all,
            says: "Proxmox VE /pools: data[0].poolid is a number, expected a string",
        },
        PveLie {
            path: "/api2/json/pools/gpu",
            rewrite: |data| data["members"] = json!("201"),
            // The pool, and every guest's spec.pool: any guest might be in it.
            unknown: &["gpu-nodes", "harbor", "whisper"],
            says: "Proxmox VE /pools/gpu: data.members is a string, expected an array",
        },
        PveLie {
            path: "/api2/json/nodes/pve-01/qemu/201/config",
            rewrite: |data| data["net0"] = json!(1),
            unknown: &["whisper"],
            says: "`net0` is a number, expected a string",
        },
    ];
    for PveLie {
        path,
        rewrite,
        unknown,
        says,
    } in lies
    {
        proxy.lie(move |heard, answer| {
            if heard.path == path {
                rewrite(&mut answer["data"]);
            }
        });
        let out = tokio::task::block_in_place(plan);
        exited(&out, 1);
        let plan = json_of(&out)["plan"].clone();
        let mut found: Vec<String> = deviations(&plan)
            .into_iter()
            .map(|(resource, _, dtype)| {
                assert_eq!(dtype, "unknown", "{path}: {plan}");
                resource.split_once('/').unwrap().1.to_string()
            })
            .collect();
        found.sort();
        assert_eq!(found, unknown, "{path}: {plan}");
        assert!(plan.to_string().contains(says), "{path}: {plan}");
    }
}
