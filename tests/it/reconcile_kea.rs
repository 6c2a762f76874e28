//! `labctl plan`, `reconcile --once` and `import` end to end: the real binary against a real
//! Kea, a temporary desired-state repository and a SQLite store.

use crate::support::cli::{dev, deviations, json_of, labctl};
use crate::support::kea::Kea;
use crate::support::lab::{kea_reservation, reservation, SUBNET};
use crate::support::mcp::{call, connect, ok};
use labctl::store::Store;
use serde_json::{json, Value as Json};

use crate::support::lab::kea_config as config;

#[tokio::test(flavor = "multi_thread")]
async fn drift_is_reported_on_the_exact_field_then_applied_then_gone() {
    let Some(mut kea) = Kea::start(
        json!([
            kea_reservation("harbor", "bc:24:11:5e:02:02", "10.0.1.202"),
            // Changed behind labctl's back: Git says .201.
            kea_reservation("whisper", "bc:24:11:5e:02:01", "10.0.1.209"),
            // Not in Git.
            kea_reservation("printer", "aa:bb:cc:00:00:99", "10.0.1.99"),
        ]),
        json!([]),
    )
    .await
    else {
        return;
    };
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    config(r, &kea.url, "observe");
    reservation(r, "harbor", SUBNET, "bc:24:11:5e:02:02", "10.0.1.202");
    reservation(r, "whisper", SUBNET, "bc:24:11:5e:02:01", "10.0.1.201");
    // In Git, deleted from Kea.
    reservation(r, "grafana", SUBNET, "bc:24:11:5e:02:20", "10.0.1.220");
    let repo_arg = r.to_str().unwrap();
    let db_dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", db_dir.path().join("state.db").display());

    // plan: drift, exit 2, nothing changed.
    let out = labctl(&["plan", repo_arg, "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan = json_of(&out)["plan"].clone();
    assert_eq!(
        deviations(&plan),
        vec![
            dev("DhcpReservation/grafana", "", "missing"),
            dev("DhcpReservation/printer", "", "unmanaged"),
            dev("DhcpReservation/whisper", "spec.ip", "drifted"),
        ]
    );
    let whisper = &plan["deviations"][2];
    assert_eq!(whisper["expected"], "10.0.1.201");
    assert_eq!(whisper["actual"], "10.0.1.209");
    assert_eq!(whisper["severity"], "high");
    assert!(
        plan["changes"].as_object().unwrap().is_empty(),
        "observe policy changes nothing"
    );

    // reconcile under observe: recorded, not applied.
    let out = labctl(&[
        "reconcile",
        "--once",
        repo_arg,
        "--database-url",
        &db,
        "--format",
        "json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let live = kea.config().await;
    assert_eq!(
        live["subnet4"][0]["reservations"].as_array().unwrap().len(),
        3
    );

    // What the store now says, as people and machines ask it.
    let out = labctl(&["status", "--database-url", &db]);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.contains("Open deviations: 3 (2 high, 1 medium)"),
        "{status}"
    );
    // Statuses counted from the typed model.
    let resources = status
        .lines()
        .find(|l| l.starts_with("Resources ("))
        .unwrap_or_default();
    assert!(resources.contains(" out-of-sync"), "{status}");
    let out = labctl(&[
        "drift",
        "--database-url",
        &db,
        "--severity",
        "high",
        "--format",
        "json",
    ]);
    let high = json_of(&out);
    assert_eq!(high.as_array().unwrap().len(), 2, "{high}");
    assert_eq!(high[0]["severity"], "high");
    let out = labctl(&[
        "drift",
        "--database-url",
        &db,
        "--history",
        "DhcpReservation/whisper:spec.ip",
    ]);
    let history = String::from_utf8_lossy(&out.stdout);
    assert!(
        history.contains("HIGH     drifted DhcpReservation/whisper spec.ip  live \"10.0.1.209\" → Git \"10.0.1.201\""),
        "{history}"
    );

    // Kea stopped: everything unknown, nothing applied, nothing resolved.
    kea.stop();
    let out = labctl(&["plan", repo_arg, "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "an incomplete plan is an error");
    let plan = json_of(&out)["plan"].clone();
    assert!(deviations(&plan).iter().all(|d| d.2 == "unknown"), "{plan}");
    assert_eq!(deviations(&plan).len(), 3);
    config(r, &kea.url, "apply");
    let out = labctl(&["reconcile", "--once", repo_arg, "--database-url", &db]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = Store::connect(&db).await.unwrap();
    let open = store.open_deviations(None, None).await.unwrap();
    assert_eq!(open.len(), 3, "a failed read resolves nothing: {open:?}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_restores_kea_and_the_same_run_records_and_resolves_what_it_changed() {
    let Some(kea) = Kea::start(
        json!([
            kea_reservation("harbor", "bc:24:11:5e:02:02", "10.0.1.202"),
            kea_reservation("whisper", "bc:24:11:5e:02:01", "10.0.1.209"),
            kea_reservation("printer", "aa:bb:cc:00:00:99", "10.0.1.99"),
        ]),
        json!([]),
    )
    .await
    else {
        return;
    };
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    config(r, &kea.url, "apply");
    reservation(r, "harbor", SUBNET, "bc:24:11:5e:02:02", "10.0.1.202");
    reservation(r, "whisper", SUBNET, "bc:24:11:5e:02:01", "10.0.1.201");
    reservation(r, "grafana", SUBNET, "bc:24:11:5e:02:20", "10.0.1.220");
    let repo_arg = r.to_str().unwrap();
    let db_dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", db_dir.path().join("state.db").display());

    let out = labctl(&[
        "reconcile",
        "--once",
        repo_arg,
        "--database-url",
        &db,
        "--format",
        "json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = json_of(&out)["run"].clone();
    assert_eq!(
        run["applied"][0]["report"]["applied"]
            .as_array()
            .unwrap()
            .len(),
        3,
        "{run}"
    );

    // Kea now holds exactly Git's reservations.
    let mut live: Vec<(String, String)> = kea.config().await["subnet4"][0]["reservations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["hw-address"].as_str().unwrap().to_string(),
                r["ip-address"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    live.sort();
    assert_eq!(
        live,
        vec![
            ("bc:24:11:5e:02:01".to_string(), "10.0.1.201".to_string()),
            ("bc:24:11:5e:02:02".to_string(), "10.0.1.202".to_string()),
            ("bc:24:11:5e:02:20".to_string(), "10.0.1.220".to_string()),
        ]
    );

    // The run observed Kea again after its apply: each change is confirmed, with the value
    // before and after, and the three deviations it found are resolved by the same run.
    let changes: Vec<(String, String, String)> = run["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let text = |k: &str| c[k].as_str().unwrap().to_string();
            (text("action"), text("name"), text("result"))
        })
        .collect();
    let expect = |a: &str, n: &str| (a.to_string(), n.to_string(), "applied".to_string());
    assert_eq!(
        changes,
        [
            expect("delete", "printer"),
            expect("update", "whisper"),
            expect("create", "grafana")
        ],
        "{run}"
    );
    let whisper = &run["changes"][1];
    assert_eq!(whisper["before"]["ip"], "10.0.1.209", "{whisper}");
    assert_eq!(whisper["after"]["ip"], "10.0.1.201", "{whisper}");
    let store = Store::connect(&db).await.unwrap();
    assert!(store.open_deviations(None, None).await.unwrap().is_empty());
    let out = labctl(&["status", "--database-url", &db]);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(status.contains("Open deviations: none"), "{status}");
    assert!(
        status.contains("changes made (3):")
            && status.contains("update DhcpReservation/whisper with kea: applied"),
        "{status}"
    );
    let out = labctl(&[
        "drift",
        "--database-url",
        &db,
        "--history",
        "DhcpReservation/whisper",
    ]);
    let history = String::from_utf8_lossy(&out.stdout);
    assert!(
        history.contains("resolved") && history.contains("which made the update with kea"),
        "{history}"
    );
    // No remediation is offered for what is resolved.
    assert!(!history.contains("reconcile will"), "{history}");
    // And an assistant asking over MCP hears the same.
    let client = connect(&db).await;
    let tools = client.list_all_tools().await.unwrap();
    let v = ok(
        &tools,
        "explain_deviation",
        call(
            &client,
            "explain_deviation",
            json!({"kind": "DhcpReservation", "name": "whisper", "field": "spec.ip"}),
        )
        .await,
    );
    assert_eq!(v["open"], false, "{v}");
    let by = &v["history"][0]["repairedBy"];
    assert_eq!(
        (&by["action"], &by["provider"], &by["result"]),
        (&json!("update"), &json!("kea"), &json!("applied")),
        "{v}"
    );
    let v = ok(
        &tools,
        "get_reconcile_status",
        call(&client, "get_reconcile_status", json!({})).await,
    );
    let recent = v["recentChanges"].as_array().unwrap();
    assert_eq!(recent.len(), 3, "{v}");
    assert!(recent
        .iter()
        .all(|c| c["result"] == "applied" && c["provider"] == "kea"));
    client.cancel().await.unwrap();

    // The next plan shows no drift, and the next run finds nothing to do.
    let out = labctl(&["plan", repo_arg]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("No drift"));
    let out = labctl(&["reconcile", "--once", repo_arg, "--database-url", &db]);
    assert_eq!(out.status.code(), Some(0));
    assert!(store.open_deviations(None, None).await.unwrap().is_empty());
    // An unchanged lab adds only the run's own row: observations and the model are
    // content-addressed and extended in place.
    let before = store.stats().await.unwrap();
    let out = labctl(&["reconcile", "--once", repo_arg, "--database-url", &db]);
    assert_eq!(out.status.code(), Some(0));
    let after = store.stats().await.unwrap();
    assert_eq!(after.runs, before.runs + 1);
    assert_eq!(
        (after.blobs, after.observed_snapshots, after.deviations),
        (before.blobs, before.observed_snapshots, before.deviations)
    );
    let history = store
        .deviation_history("DhcpReservation", "whisper", "spec.ip")
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert!(history[0].resolved_at.is_some());

    // Each reconcile applies retention: with a zero-day window only the latest run (which
    // holds the latest model) and nothing resolved survive.
    let out = labctl(&[
        "reconcile",
        "--once",
        repo_arg,
        "--database-url",
        &db,
        "--keep-runs-days",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let pruned = store.stats().await.unwrap();
    assert_eq!((pruned.runs, pruned.deviations), (1, 0), "{pruned:?}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn import_of_fifty_reservations_validates_and_plans_clean() {
    let live: Vec<Json> = (0..50)
        .map(|i| {
            kea_reservation(
                &format!("host-{i:02}"),
                &format!("aa:bb:cc:00:01:{i:02x}"),
                &format!("10.0.1.{}", 10 + i),
            )
        })
        .collect();
    let Some(kea) = Kea::start(Json::Array(live), json!([])).await else {
        return;
    };
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    config(r, &kea.url, "observe");
    let repo_arg = r.to_str().unwrap();

    let out = labctl(&["import", repo_arg]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("wrote 50 document(s), skipped 0"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(std::fs::read_dir(r.join("dhcp")).unwrap().count(), 50);

    let out = labctl(&["validate", repo_arg]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = labctl(&["plan", repo_arg]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A second import finds nothing new and writes nothing.
    let out = labctl(&["import", repo_arg]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("wrote 0 document(s)"));
    drop(kea);
}

/// The address Kea holds for `mac` in the first subnet.
async fn kea_ip(kea: &Kea, mac: &str) -> String {
    kea.config().await["subnet4"][0]["reservations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["hw-address"] == mac)
        .and_then(|r| r["ip-address"].as_str())
        .unwrap_or_else(|| panic!("Kea has no reservation for {mac}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runtime_suspension_stops_changes_without_a_commit_until_resumed() {
    let mac = "bc:24:11:5e:02:01";
    let Some(kea) = Kea::start(
        json!([kea_reservation("whisper", mac, "10.0.1.209")]),
        json!([]),
    )
    .await
    else {
        return;
    };
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    config(r, &kea.url, "apply");
    reservation(r, "whisper", SUBNET, mac, "10.0.1.201");
    let repo_arg = r.to_str().unwrap();
    let db_dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", db_dir.path().join("state.db").display());
    let reconcile = || {
        let out = labctl(&[
            "reconcile",
            "--once",
            repo_arg,
            "--database-url",
            &db,
            "--format",
            "json",
        ]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        json_of(&out)["run"].clone()
    };

    // A wrong kind is refused with the list; no reason is refused.
    let out = labctl(&["suspend", "dhcp", "--reason", "x", "--database-url", &db]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DhcpReservation"));
    let out = labctl(&[
        "suspend",
        "dhcpreservation",
        "--reason",
        " ",
        "--database-url",
        &db,
    ]);
    assert_eq!(out.status.code(), Some(1));

    let out = labctl(&[
        "suspend",
        "dhcpreservation",
        "--reason",
        "Kea maintenance",
        "--database-url",
        &db,
    ]);
    assert!(out.status.success(), "{out:?}");
    let run = reconcile();
    assert!(run["applied"].as_array().unwrap().is_empty(), "{run}");
    assert_eq!(kea_ip(&kea, mac).await, "10.0.1.209", "nothing changed");
    // The drift is recorded, with what holds it back.
    let drift = json_of(&labctl(&[
        "drift",
        "--database-url",
        &db,
        "--format",
        "json",
    ]));
    let text = drift.to_string();
    assert!(text.contains("suspended at runtime"), "{text}");
    // status and MCP show the suspension: who, why, and how to lift it.
    let status = json_of(&labctl(&[
        "status",
        "--database-url",
        &db,
        "--format",
        "json",
    ]));
    let s = &status["suspended"][0];
    assert_eq!(s["kind"], "DhcpReservation");
    assert_eq!(s["reason"], "Kea maintenance");
    let client = connect(&db).await;
    let tools = client.list_all_tools().await.unwrap();
    let answer = ok(
        &tools,
        "get_reconcile_status",
        call(&client, "get_reconcile_status", json!({})).await,
    );
    assert_eq!(
        answer["suspended"][0]["scope"], "DhcpReservation",
        "{answer}"
    );
    assert_eq!(
        answer["suspended"][0]["resume"],
        "labctl resume DhcpReservation"
    );
    client.cancel().await.unwrap();

    // Resuming something else is an error that lists what is suspended; the kind's resume
    // lets the next run act.
    let out = labctl(&["resume", "--database-url", &db]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DhcpReservation by "));
    let out = labctl(&["resume", "DhcpReservation", "--database-url", &db]);
    assert!(out.status.success(), "{out:?}");
    let run = reconcile();
    assert!(!run["applied"].as_array().unwrap().is_empty(), "{run}");
    assert_eq!(
        kea_ip(&kea, mac).await,
        "10.0.1.201",
        "restored after resume"
    );
}
