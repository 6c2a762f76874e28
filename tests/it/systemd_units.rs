//! The systemd units in systemd/ load cleanly (`systemd-analyze verify`), and the command line
//! the service runs is one labctl accepts.

use std::path::Path;
use std::process::Command;

use crate::support::cli::{labctl, write};

fn units() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd")
}

#[test]
fn units_verify() {
    let analyze = Path::new("/usr/bin/systemd-analyze");
    if !analyze.exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "systemd-analyze is required under CI=true (Debian package systemd)"
        );
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let out = Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(units().join("labctl-reconcile.service"))
        .arg(units().join("labctl-reconcile.timer"))
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_service_command_line_is_one_labctl_accepts() {
    let unit = std::fs::read_to_string(units().join("labctl-reconcile.service")).unwrap();
    let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    let args = exec
        .split("/usr/local/bin/labctl ")
        .nth(1)
        .unwrap()
        .trim_end_matches('\'');
    assert_eq!(
        args,
        "reconcile --once \"$LABCTL_REPO\" --trigger timer --cache-dir \"$CACHE_DIRECTORY\""
    );
    // Run exactly those arguments, with the variables systemd would set.
    let repo = tempfile::tempdir().unwrap();
    write(
        repo.path(),
        "labctl.yaml",
        "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {name: lab}\nspec: {}\n",
    );
    let cache = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", state.path().join("labctl.db").display());
    let out = labctl(&[
        "reconcile",
        "--once",
        repo.path().to_str().unwrap(),
        "--trigger",
        "timer",
        "--cache-dir",
        cache.path().to_str().unwrap(),
        "--database-url",
        &db,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = labctl(&["status", "--database-url", &db, "--format", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["latestRun"]["trigger"], "timer");
}
