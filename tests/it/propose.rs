//! `labctl propose` end to end against a real Kea changed behind labctl's back: one change set
//! per resource, each edit leaves the rest of its file as it was, and the repository with the
//! changes applied (the printed patch, through `git apply`) validates and plans clean.

use crate::support::cli::{json_of, labctl, write};
use crate::support::git::git;
use crate::support::kea::Kea;
use crate::support::lab::{kea_config, kea_reservation, reservation, SUBNET};
use serde_json::{json, Value as Json};

/// Two documents in one file, with comments and mixed quoting, as people write them.
const DEVICES_FILE: &str = "\
# Reservations of the audio corner. Keep the comments!
apiVersion: labctl.dev/v1
kind: DhcpReservation
metadata:
  name: whisper   # the speech-to-text box
spec:
  subnet: 10.0.1.0/24
  mac: 'bc:24:11:5e:02:01'   # sticker on the case
  ip: 10.0.1.201             # moved in Kea by hand
  hostname: \"whisper.lab.example\"
---
apiVersion: labctl.dev/v1
kind: DhcpReservation
metadata: {name: speaker}
spec: {subnet: 10.0.1.0/24, mac: 'bc:24:11:5e:02:03', ip: 10.0.1.203, hostname: speaker.lab.example}
";

#[tokio::test(flavor = "multi_thread")]
async fn proposals_edit_only_the_values_and_the_result_plans_clean() {
    let Some(kea) = Kea::start(
        json!([
            kea_reservation("harbor", "bc:24:11:5e:02:02", "10.0.1.202"),
            kea_reservation("whisper", "bc:24:11:5e:02:01", "10.0.1.209"),
            kea_reservation("speaker", "bc:24:11:5e:02:03", "10.0.1.213"),
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
    kea_config(r, &kea.url, "propose");
    // Removals only where labctl.yaml opts in.
    let config = std::fs::read_to_string(r.join("labctl.yaml")).unwrap();
    write(
        r,
        "labctl.yaml",
        &format!("{config}  proposeRemovals:\n    DhcpReservation: true\n"),
    );
    reservation(r, "harbor", SUBNET, "bc:24:11:5e:02:02", "10.0.1.202");
    reservation(r, "grafana", SUBNET, "bc:24:11:5e:02:20", "10.0.1.220");
    write(r, "dhcp/audio.yaml", DEVICES_FILE);
    let repo_arg = r.to_str().unwrap();

    let out = labctl(&["propose", repo_arg, "--dry-run", "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = json_of(&out);
    let sets: Vec<(String, String, Vec<String>)> = json["changeSets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let files = s["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["path"].as_str().unwrap().to_string())
                .collect();
            (
                s["branch"].as_str().unwrap().to_string(),
                s["title"].as_str().unwrap().to_string(),
                files,
            )
        })
        .collect();
    assert_eq!(
        sets,
        vec![
            (
                "labctl/drift/dhcpreservation-grafana".into(),
                "labctl: remove DhcpReservation grafana, gone from kea".into(),
                vec!["dhcp/grafana.yaml".into()]
            ),
            (
                "labctl/drift/dhcpreservation-printer".into(),
                "labctl: add DhcpReservation printer, found in kea".into(),
                vec!["dhcp/printer.yaml".into()]
            ),
            (
                "labctl/drift/dhcpreservation-speaker".into(),
                "labctl: accept live spec.ip of DhcpReservation speaker from kea".into(),
                vec!["dhcp/audio.yaml".into()]
            ),
            (
                "labctl/drift/dhcpreservation-whisper".into(),
                "labctl: accept live spec.ip of DhcpReservation whisper from kea".into(),
                vec!["dhcp/audio.yaml".into()]
            ),
        ],
        "{json:#}"
    );
    assert_eq!(json["refused"], json!([]));
    let whisper = &json["changeSets"][3]["covers"][0];
    assert_eq!(
        (whisper["inGit"].clone(), whisper["live"].clone()),
        (json!("10.0.1.201"), json!("10.0.1.209"))
    );
    // Over the per-run limit, the rest wait for a later run.
    let out = labctl(&[
        "propose",
        repo_arg,
        "--dry-run",
        "--max",
        "1",
        "--format",
        "json",
    ]);
    let limited = json_of(&out);
    assert_eq!(limited["changeSets"].as_array().unwrap().len(), 1);
    let refused: Vec<&str> = limited["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(refused, vec!["over the limit of 1 change sets per run"; 3]);
    // A dry run changes nothing.
    assert_eq!(
        std::fs::read_to_string(r.join("dhcp/audio.yaml")).unwrap(),
        DEVICES_FILE
    );

    // One resource's patch, applied by hand: only that value moves; comments, quoting and
    // the other document stay byte for byte.
    let out = labctl(&["propose", repo_arg, "--patch"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let patch = String::from_utf8(out.stdout).unwrap();
    assert!(patch.contains("-  ip: 10.0.1.201             # moved in Kea by hand\n+  ip: 10.0.1.209             # moved in Kea by hand\n"), "{patch}");
    // Each change set alone validated and planned clean before it was shown; applied
    // together (the two of audio.yaml touch lines apart), they leave no drift at all.
    let expected_audio = DEVICES_FILE
        .replace("ip: 10.0.1.201 ", "ip: 10.0.1.209 ")
        .replace("ip: 10.0.1.203,", "ip: 10.0.1.213,");
    apply_all(r, &patch);
    assert_eq!(
        std::fs::read_to_string(r.join("dhcp/audio.yaml")).unwrap(),
        expected_audio
    );
    assert!(!r.join("dhcp/grafana.yaml").exists());
    let printer = std::fs::read_to_string(r.join("dhcp/printer.yaml")).unwrap();
    assert!(printer.contains("ip: 10.0.1.99"), "{printer}");
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
    let out = labctl(&["propose", repo_arg, "--dry-run", "--format", "json"]);
    assert_eq!(json_of(&out)["changeSets"], Json::Array(vec![]));
    drop(kea);
}

/// Applies each file's patch with `git apply` (which reads patches outside a repository),
/// one at a time: two change sets of one file are each a diff against Git.
fn apply_all(dir: &std::path::Path, patch: &str) {
    for one in patch.split("diff --git ").filter(|p| !p.is_empty()) {
        let file = dir.join("one.patch");
        std::fs::write(&file, format!("diff --git {one}")).unwrap();
        git(dir, &["apply", file.to_str().unwrap()]);
        std::fs::remove_file(&file).unwrap();
    }
}
