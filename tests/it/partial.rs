//! A picture with a hole in it: the Proxmox VE API answers, but one guest's config cannot be
//! read. `plan` must not pass a CI gate (exit 1, not 0 or 2), and the run is recorded as
//! partial, not succeeded — in the store and in `status`.

use crate::fixtures::proxmox as fixture;
use crate::support::cli::{exited, json_of, labctl_command, status_json, write};
use crate::support::git::{commit_all, git};
use crate::support::lab::{device, proxmox_lab, PVE_TOKEN, TOKEN_ENV};

#[tokio::test(flavor = "multi_thread")]
async fn one_unreadable_guest_fails_plan_and_makes_the_run_partial() {
    let mut lab = proxmox_lab();
    lab.guests.get_mut(&201).unwrap().broken_config = true;
    let pve = fixture::serve(lab).await;
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    write(
        r,
        "labctl.yaml",
        &format!(
            "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {{name: lab}}\nspec:\n  providers:\n    - {{name: pve, kind: proxmox, url: \"{}\", token: {{env: {TOKEN_ENV}}}, timeoutSeconds: 2}}\n",
            pve.url()
        ),
    );
    write(
        r,
        "pools/lab.yaml",
        "apiVersion: labctl.dev/v1\nkind: Pool\nmetadata: {name: lab}\nspec: {type: compute}\n---\napiVersion: labctl.dev/v1\nkind: Pool\nmetadata: {name: gpu-nodes}\nspec: {parent: lab, type: compute, proxmoxPool: gpu}\n---\napiVersion: labctl.dev/v1\nkind: Pool\nmetadata: {name: services}\nspec: {parent: lab, type: compute, proxmoxPool: services}\n",
    );
    let harbor = (202, 8, 16384);
    device(
        r,
        "harbor",
        "/lab/services",
        harbor,
        "bc:24:11:5e:02:02",
        "10.0.1.202",
    );
    let whisper = (201, 12, 49152);
    device(
        r,
        "whisper",
        "/lab/gpu-nodes",
        whisper,
        "bc:24:11:5e:02:01",
        "10.0.1.201",
    );
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
