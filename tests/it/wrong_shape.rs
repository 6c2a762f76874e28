//! Answers of a shape a provider does not fully understand are unknown, never an empty lab:
//! `plan` exits 1 with the resources unknown and the reason, open deviations stay open, and
//! nothing is applied from such a picture.

use std::path::Path;

use serde_json::{json, Value as Json};

use crate::support::cli::{deviations, exited, json_of, labctl, write};
use crate::support::kea::Kea;
use crate::support::lab::{kea_reservation, reservation, SUBNET};
use crate::support::lying::LyingKea;
use labctl::store::Store;

fn kea_config(dir: &Path, kea_url: &str, policy: &str) {
    write(
        dir,
        "labctl.yaml",
        &format!(
            "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {{name: lab}}\nspec:\n  providers:\n    - {{name: kea, kind: kea, url: \"{kea_url}\", timeoutSeconds: 2}}\n  policy:\n    DhcpReservation: {policy}\n"
        ),
    );
}

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
    let proxy = LyingKea::start(&kea.url).await;
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
        proxy.lie(lie);
        let out = labctl(&["plan", repo_arg, "--format", "json"]);
        exited(&out, 1);
        let plan = json_of(&out)["plan"].clone();
        let found = deviations(&plan);
        assert_eq!(found.len(), 4, "{plan}");
        assert!(found.iter().all(|d| d.2 == "unknown"), "{says}: {plan}");
        let reason = plan["unobservable"]["kea"].as_str().unwrap_or_default();
        assert!(reason.contains(says), "{says}: {plan}");

        let heard = proxy.commands().len();
        let out = labctl(&["reconcile", "--once", repo_arg, "--database-url", &db]);
        exited(&out, 0);
        let sent = proxy.commands()[heard..].to_vec();
        assert!(sent.iter().all(|c| c == "config-get"), "{says}: {sent:?}");
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
