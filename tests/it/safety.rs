//! Blast radius, against a real Kea: a commit that drops a third of the reservations from Git
//! is not applied in one run. The run applies nothing, fails saying why and how to proceed,
//! and `--force` applies it once.

use serde_json::{json, Value as Json};

use crate::support::cli::{exited, labctl, status_json, write};
use crate::support::kea::Kea;
use crate::support::lab::{kea_reservation, reservation, SUBNET};

fn host(i: usize) -> (String, String, String) {
    (
        format!("host-{i}"),
        format!("aa:bb:cc:00:00:{i:02x}"),
        format!("10.0.1.{}", 10 + i),
    )
}

async fn live_count(kea: &Kea) -> usize {
    kea.config().await["subnet4"][0]["reservations"]
        .as_array()
        .map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_would_delete_a_third_of_kea_applies_nothing_until_forced() {
    let live: Vec<Json> = (0..12)
        .map(|i| {
            let (name, mac, ip) = host(i);
            kea_reservation(&name, &mac, &ip)
        })
        .collect();
    let Some(kea) = Kea::start(json!(live), json!([])).await else {
        return;
    };
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    write(
        r,
        "labctl.yaml",
        &format!(
            "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {{name: lab}}\nspec:\n  providers:\n    - {{name: kea, kind: kea, url: \"{}\", timeoutSeconds: 2}}\n  policy:\n    DhcpReservation: apply\n",
            kea.url
        ),
    );
    // Git holds 8 of the 12: applying would delete 4 (33 %, over the default 30 %).
    for i in 0..8 {
        let (name, mac, ip) = host(i);
        reservation(r, &name, SUBNET, &mac, &ip);
    }
    let repo_arg = r.to_str().unwrap();
    let db_dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", db_dir.path().join("state.db").display());

    let out = labctl(&["reconcile", "--once", repo_arg, "--database-url", &db]);
    let stderr = exited(&out, 1);
    assert!(
        stderr.contains("changes to kea held back: this run would delete 4 of 12"),
        "{stderr}"
    );
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(live_count(&kea).await, 12, "nothing was deleted");
    let status = status_json(&db);
    assert_eq!(status["latestRun"]["outcome"], "failed", "{status}");
    assert!(
        status["latestRun"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("spec.safety.maxDeleteShare")),
        "{status}"
    );

    // A person reviewed the plan and goes ahead, once.
    let out = labctl(&[
        "reconcile",
        "--once",
        repo_arg,
        "--database-url",
        &db,
        "--force",
    ]);
    exited(&out, 0);
    assert_eq!(live_count(&kea).await, 8);
}
