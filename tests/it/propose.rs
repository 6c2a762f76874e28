//! `labctl propose` end to end against a real Kea changed behind labctl's back: one change set
//! per resource, each edit leaves the rest of its file as it was, and the repository with the
//! changes applied (the printed patch, through `git apply`) validates and plans clean; pushed,
//! each change set is one commit on its own branch, written once and never over someone else's.

use std::path::Path;

use crate::support::cli::{json_of, labctl, labctl_command, write};
use crate::support::git::{commit_all, git};
use crate::support::git_http;
use crate::support::kea::Kea;
use crate::support::lab::{kea_config, kea_reservation, reservation, SUBNET};
use crate::support::tls::tls_proxy;
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

/// `(outcome, branch)` of each published branch of a `propose --format json` run.
fn published(out: &std::process::Output) -> Vec<(String, String)> {
    let json = json_of(out);
    json["published"]
        .as_array()
        .unwrap_or_else(|| panic!("{json:#}"))
        .iter()
        .map(|p| {
            (
                p["push"]["outcome"].as_str().unwrap().to_string(),
                p["branch"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

const WHISPER: &str = "labctl/drift/dhcpreservation-whisper";
const PRINTER: &str = "labctl/drift/dhcpreservation-printer";

fn pair(outcome: &str, branch: &str) -> (String, String) {
    (outcome.to_string(), branch.to_string())
}

/// `git` in the bare repository `bare`.
fn bare_git(bare: &Path, args: &[&str]) -> String {
    let dir = format!("--git-dir={}", bare.display());
    git(
        bare.parent().unwrap(),
        &[&[dir.as_str()][..], args].concat(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn branches_are_pushed_once_updated_when_live_moves_and_never_over_a_person() {
    let Some(kea) = Kea::start(
        json!([
            kea_reservation("whisper", "bc:24:11:5e:02:01", "10.0.1.209"),
            kea_reservation("speaker", "bc:24:11:5e:02:03", "10.0.1.203"),
            kea_reservation("printer", "aa:bb:cc:00:00:99", "10.0.1.99"),
        ]),
        json!([]),
    )
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q"]);
    kea_config(&work, &kea.url, "propose");
    write(&work, "dhcp/audio.yaml", DEVICES_FILE);
    let head = commit_all(&work, "lab");
    let bare = dir.path().join("remote.git");
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            "remote.git",
        ],
    );
    let url = format!("file://{}", bare.display());
    let cache = dir.path().join("cache");
    let db = format!("sqlite://{}", dir.path().join("state.db").display());
    let propose = |extra: &[&str]| {
        labctl_command()
            .args(["propose", &url, "--cache-dir", cache.to_str().unwrap()])
            .args(["--database-url", &db, "--format", "json"])
            .args(extra)
            .output()
            .unwrap()
    };

    // First run: one branch per resource, one commit each on the tracked head.
    let out = propose(&[]);
    assert_eq!(
        published(&out),
        vec![pair("created", PRINTER), pair("created", WHISPER)]
    );
    let tip = |branch: &str| bare_git(&bare, &["rev-parse", &format!("refs/heads/{branch}")]);
    let whisper = tip(WHISPER);
    let header = bare_git(
        &bare,
        &["log", "-1", "--format=%P|%an <%ae>|%cn <%ce>", &whisper],
    );
    assert_eq!(
        header,
        format!("{head}|labctl <labctl@localhost>|labctl <labctl@localhost>")
    );
    let message = bare_git(&bare, &["log", "-1", "--format=%B", &whisper]);
    assert!(
        message.starts_with(
            "labctl: accept live spec.ip of DhcpReservation whisper from kea\n\n\
             - DhcpReservation/whisper spec.ip: drifted\n"
        ) && message.ends_with("Labctl-Branch: labctl/drift/dhcpreservation-whisper"),
        "{message}"
    );
    // Only the value moved: comments, quoting and the other document are as they were.
    assert_eq!(
        bare_git(&bare, &["show", &format!("{whisper}:dhcp/audio.yaml")]) + "\n",
        DEVICES_FILE.replace("ip: 10.0.1.201 ", "ip: 10.0.1.209 ")
    );
    assert_eq!(
        bare_git(&bare, &["diff", "--name-only", &head, &tip(PRINTER)]),
        "dhcp/printer.yaml"
    );
    // The tracked branch is untouched; each branch, read as labctl reads Git, plans clean for
    // what it covers and still shows what it does not.
    assert_eq!(bare_git(&bare, &["rev-parse", "main"]), head);
    let plan = labctl(&[
        "plan",
        &url,
        "--rev",
        WHISPER,
        "--cache-dir",
        cache.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let plan = json_of(&plan)["plan"].clone();
    assert_eq!(
        crate::support::cli::deviations(&plan),
        vec![crate::support::cli::dev(
            "DhcpReservation/printer",
            "",
            "unmanaged"
        )]
    );

    // Nothing changed: nothing is written.
    let out = propose(&[]);
    assert_eq!(
        published(&out),
        vec![pair("unchanged", PRINTER), pair("unchanged", WHISPER)]
    );
    assert_eq!(tip(WHISPER), whisper);

    // Someone commits on the printer branch; whisper moves again in Kea behind labctl's back.
    let person = dir.path().join("person");
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            "-b",
            PRINTER,
            bare.to_str().unwrap(),
            "person",
        ],
    );
    let printer = std::fs::read_to_string(person.join("dhcp/printer.yaml")).unwrap();
    write(
        &person,
        "dhcp/printer.yaml",
        &format!("{printer}# the laser one\n"),
    );
    let theirs = commit_all(&person, "name the printer");
    git(&person, &["push", "-q", "origin", PRINTER]);
    let mut dhcp4 = kea.config().await;
    for r in dhcp4["subnet4"][0]["reservations"].as_array_mut().unwrap() {
        if r["hw-address"] == "bc:24:11:5e:02:01" {
            r["ip-address"] = json!("10.0.1.219");
        }
    }
    kea.set_config(dhcp4).await;
    let out = propose(&[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = json_of(&out);
    assert_eq!(
        published(&out),
        vec![pair("foreign", PRINTER), pair("updated", WHISPER)]
    );
    assert!(
        json["published"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("no `Labctl-Branch: labctl/drift/dhcpreservation-printer` trailer"),
        "{json:#}"
    );
    assert_eq!(tip(PRINTER), theirs);
    let updated = tip(WHISPER);
    assert_ne!(updated, whisper);
    assert_eq!(
        bare_git(&bare, &["rev-parse", &format!("{updated}^")]),
        head
    );
    assert!(
        bare_git(&bare, &["show", &format!("{updated}:dhcp/audio.yaml")])
            .contains("ip: 10.0.1.219             # moved in Kea by hand")
    );

    // A directory is not a commit: nothing to base a branch on, said per change set.
    let out = labctl_command()
        .args(["propose", work.to_str().unwrap()])
        .args(["--worktree", "--database-url", &db, "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(json_of(&out)["published"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("not read from a Git commit"));
    drop(kea);
}

#[tokio::test(flavor = "multi_thread")]
async fn branches_reach_an_https_remote_with_a_token_that_is_never_written_anywhere() {
    let Some(kea) = Kea::start(
        json!([kea_reservation(
            "whisper",
            "bc:24:11:5e:02:01",
            "10.0.1.209"
        )]),
        json!([]),
    )
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q"]);
    kea_config(&work, &kea.url, "propose");
    reservation(&work, "whisper", SUBNET, "bc:24:11:5e:02:01", "10.0.1.201");
    commit_all(&work, "lab");
    let served = dir.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    git(
        &served,
        &["clone", "-q", "--bare", work.to_str().unwrap(), "lab.git"],
    );
    let token = "ghp-push-5e1f0c9a7d";
    let server = git_http::serve(&served, "x-access-token", token);
    let Some(proxy) = tls_proxy(server.port) else {
        return;
    };
    let url = format!("https://127.0.0.1:{}/lab.git", proxy.port);
    // A `git` first on PATH that records every argument list it is given.
    let shim = dir.path().join("shim");
    std::fs::create_dir_all(&shim).unwrap();
    let real = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let log = dir.path().join("git-args.log");
    write(
        &shim,
        "git",
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real.trim()
        ),
    );
    std::fs::set_permissions(
        shim.join("git"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!("{}:{}", shim.display(), std::env::var("PATH").unwrap());
    let certs = &proxy.ca;
    let out = labctl_command()
        .args(["propose", &url, "--cache-dir"])
        .arg(dir.path().join("cache"))
        .arg("--database-url")
        .arg(format!(
            "sqlite://{}",
            dir.path().join("state.db").display()
        ))
        .args(["--format", "json"])
        .env("LABCTL_GIT_TOKEN", token)
        .env("LABCTL_LOG", "debug")
        .env("PATH", &path)
        // labctl's fetch (gix) trusts the CA through the platform verifier; the push through
        // git's own CA setting, as a host would have it in its git configuration.
        .env("SSL_CERT_FILE", certs)
        .env("GIT_SSL_CAINFO", certs)
        .output()
        .unwrap();
    assert_eq!(
        published(&out),
        vec![pair("created", WHISPER)],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bare = served.join("lab.git");
    let pushed = bare_git(&bare, &["log", "-p", "--all"]);
    assert!(pushed.contains("+  ip: 10.0.1.209"), "{pushed}");
    let args = std::fs::read_to_string(&log).unwrap();
    assert!(args.contains("push"), "{args}");
    for (what, text) in [
        ("stdout", String::from_utf8_lossy(&out.stdout).into_owned()),
        ("stderr", String::from_utf8_lossy(&out.stderr).into_owned()),
        ("git's arguments", args),
        ("the pushed history", pushed),
        (
            "the cached clone's config",
            std::fs::read_to_string(
                std::fs::read_dir(dir.path().join("cache"))
                    .unwrap()
                    .next()
                    .unwrap()
                    .unwrap()
                    .path()
                    .join("config"),
            )
            .unwrap(),
        ),
    ] {
        assert!(!text.contains(token), "the token is in {what}:\n{text}");
    }
    // Without the token the server refuses the push, so the push above carried it.
    let seen = server.seen.lock().unwrap().clone();
    assert!(seen.iter().any(|a| a.is_some()), "{seen:?}");
    drop(kea);
}
