//! A picture with a hole in it: the Proxmox VE API answers, but one guest's config cannot be
//! read. `plan` must not pass a CI gate (exit 1, not 0 or 2), and the run is recorded as
//! partial, not succeeded — in the store and in `status`.

use crate::fixtures::proxmox as fixture;
use crate::support::cli::{exited, json_of, labctl_command, status_json};
use crate::support::git::{commit_all, git};
use crate::support::lab::{proxmox_config, proxmox_documents, proxmox_lab, PVE_TOKEN, TOKEN_ENV};

#[tokio::test(flavor = "multi_thread")]
async fn one_unreadable_guest_fails_plan_and_makes_the_run_partial() {
    let mut lab = proxmox_lab();
    lab.guests.get_mut(&201).unwrap().broken_config = true;
    let pve = fixture::serve(lab).await;
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    proxmox_config(r, &pve.url());
    proxmox_documents(r);
    git(r, &["init", "-q", "-b", "main"]);
    commit_all(r, "lab");
    let repo_arg = r.to_str().unwrap();
    let run = |args: &[&str]| {
        labctl_command()
            .args(args)
            .env(TOKEN_ENV, PVE_TOKEN)
            .output()
            .expect("labctl runs")
    };

    let out = run(&["plan", repo_arg, "--format", "json"]);
    let stderr = exited(&out, 1);
    assert!(
        stderr.contains("could not be observed; the plan is incomplete"),
        "{stderr}"
    );
    let plan = json_of(&out)["plan"].clone();
    let unknown: Vec<&str> = plan["deviations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["type"] == "unknown")
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(unknown, ["whisper"], "{plan}");
    assert!(
        plan["unobservable"].as_object().unwrap().is_empty(),
        "{plan}"
    );

    let db_dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", db_dir.path().join("state.db").display());
    let out = run(&["reconcile", "--once", repo_arg, "--database-url", &db]);
    exited(&out, 0);
    let status = status_json(&db);
    assert_eq!(status["latestRun"]["outcome"], "partial", "{status}");
    assert_eq!(status["latestRun"]["trigger"], "cli", "{status}");
}
