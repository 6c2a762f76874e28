//! The host configuration file (`--config`) and `labctl config`: precedence, sources, masking,
//! errors at their line, and a real daemon and `labctl status` run from the file alone.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::cli::{json_of, labctl_command, write};
use crate::support::git::{commit_all, git};
use crate::support::net::free_port;

/// Writes `text` as `config.yaml` in `dir`; returns its path.
fn config(dir: &Path, text: &str) -> String {
    write(dir, "config.yaml", text);
    dir.join("config.yaml").display().to_string()
}

fn field<'a>(fields: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    fields["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == key)
        .unwrap_or_else(|| panic!("no field {key} in {fields}"))
}

#[test]
fn config_shows_each_value_with_its_source_and_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        "# the controller on mgmt-01\nrepo: /srv/lab.git\n\
         databaseUrl: postgres://labctl:hunter2@db.lab.test/labctl\n\
         pollSeconds: 30\nnoWatch: true\nschedule: \"*/10 * * * *\"\n",
    );
    let out = labctl_command()
        .args(["config", "--config", &path, "--format", "json"])
        .env("LABCTL_SCHEDULE", "0 * * * *")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("hunter2"), "{text}");
    let json = json_of(&out);
    assert_eq!(json["valid"], true);
    let repo = field(&json, "repo");
    assert_eq!(repo["value"], "/srv/lab.git");
    assert_eq!(repo["source"], format!("{path}:2"));
    assert_eq!(field(&json, "pollSeconds")["source"], format!("{path}:4"));
    // The variable wins over the file; the default stands where neither speaks.
    let schedule = field(&json, "schedule");
    assert_eq!(schedule["value"], "0 * * * *");
    assert_eq!(schedule["source"], "environment LABCTL_SCHEDULE");
    assert_eq!(field(&json, "debounceMs")["source"], "default");
    assert_eq!(field(&json, "debounceMs")["value"], "200");
    assert_eq!(
        field(&json, "databaseUrl")["value"],
        "postgres://***@db.lab.test/labctl"
    );
    // Every field has a LABCTL_ variable, also the one whose argument reads DATABASE_URL.
    let out = labctl_command()
        .args(["config", "--format", "json"])
        .env("LABCTL_DATABASE_URL", "sqlite:///var/lib/labctl/labctl.db")
        .output()
        .unwrap();
    let json = json_of(&out);
    assert_eq!(json["file"], serde_json::Value::Null);
    let db = field(&json, "databaseUrl");
    assert_eq!(db["source"], "environment LABCTL_DATABASE_URL");
    assert_eq!(db["value"], "sqlite:///var/lib/labctl/labctl.db");
}

#[test]
fn a_wrong_field_or_value_is_an_error_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "repo: /srv/lab\n\npollSecond: 30\n");
    let out = labctl_command()
        .args(["serve", "--config", &path])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{path}:3:1: unknown field `pollSecond`; did you mean `pollSeconds`?"
        )),
        "{err}"
    );

    let path = config(dir.path(), "repo: /srv/lab\nbackoffMax: 0\n");
    for args in [
        vec!["serve", "--config", &path],
        vec!["config", "--config", &path],
    ] {
        let out = labctl_command().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--backoff-max"), "{err}");
        assert!(
            err.contains(&format!("`backoffMax` at {path}:2")),
            "{args:?}: {err}"
        );
    }

    let out = labctl_command()
        .args(["status", "--config", "/nonexistent/labctl/config.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("cannot read the host configuration /nonexistent/labctl/config.yaml"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_runs_from_the_file_alone_and_the_cli_reads_its_store() {
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q"]);
    write(
        repo.path(),
        "labctl.yaml",
        "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {name: lab}\nspec: {}\n",
    );
    write(
        repo.path(),
        "devices/nas.yaml",
        "apiVersion: labctl.dev/v1\nkind: Device\nmetadata: {name: nas}\nspec: {type: physical}\n",
    );
    let commit = commit_all(repo.path(), "lab");
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = config(
        state.path(),
        &format!(
            "repo: {}\nstateDir: {}\nlisten: 127.0.0.1:{port}\nschedule: \"0 0 1 1 *\"\nnoWatch: true\n",
            repo.path().display(),
            state.path().display()
        ),
    );
    let mut daemon = labctl_command()
        .args(["serve", "--config", &path])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            daemon.try_wait().unwrap().is_none(),
            "serve exited: {daemon:?}"
        );
        assert!(Instant::now() < deadline, "serve never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The store is in stateDir, and `labctl status` with the same file finds it.
    assert!(state.path().join("labctl.db").exists());
    let out = labctl_command()
        .args(["status", "--config", &path, "--format", "json"])
        .output()
        .unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let exit = daemon.wait().unwrap();
    assert!(out.status.success(), "{out:?}");
    let status = json_of(&out);
    assert!(
        status.to_string().contains(&commit),
        "status names the daemon's run at {commit}: {status}"
    );
    assert!(exit.success(), "serve stopped cleanly on SIGTERM: {exit:?}");
}

#[test]
fn the_example_host_configuration_is_accepted() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/config.yaml.example");
    let out = labctl_command()
        .args(["config", "--config", example, "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let json = json_of(&out);
    assert_eq!(field(&json, "stateDir")["value"], "/var/lib/labctl");
    // The line of `schedule:`, wherever comments move it.
    let text = std::fs::read_to_string(example).unwrap();
    let line = 1 + text
        .lines()
        .position(|l| l.starts_with("schedule:"))
        .unwrap();
    let source = field(&json, "schedule")["source"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        source.ends_with(&format!("config.yaml.example:{line}")),
        "{source}"
    );
}
