//! The `labctl` binary as users and scripts run it: exit codes, human and JSON output.

use std::path::{Path, PathBuf};

use crate::support::cli::{labctl, write};

fn repo_layout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("repo-layout")
}

#[test]
fn example_repository_is_valid() {
    let out = labctl(&["validate", repo_layout().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(": valid: "), "{stdout}");
    assert!(stdout.contains("0 errors"), "{stdout}");
}

#[test]
fn json_output_lists_every_error_with_location_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "labctl.yaml",
        "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {name: lab}\nspec: {}\n",
    );
    write(
        dir.path(),
        "dhcp/a.yaml",
        "apiVersion: labctl.dev/v1\nkind: DhcpReservation\nmetadata: {name: a}\nspec:\n  subnet: 10.0.1.0/24\n  mac: bc:24:11:00:00:01\n  ip: 10.0.2.5\n  hostname: a\n",
    );
    write(
        dir.path(),
        "devices/b.yaml",
        "apiVersion: labctl.dev/v1\nkind: Device\nmetadata: {name: b}\nspec:\n  type: physical\n  colour: red\n",
    );
    let out = labctl(&["validate", dir.path().to_str().unwrap(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is one JSON document");
    assert_eq!(json["valid"], false);
    assert_eq!(json["errors"], 2);
    assert_eq!(json["commit"], serde_json::Value::Null);
    let diags = json["diagnostics"].as_array().unwrap();
    // Sorted by file, then line: devices/ before dhcp/.
    assert_eq!(diags[0]["code"], "unknown-field");
    assert_eq!(diags[0]["location"]["file"], "devices/b.yaml");
    assert_eq!(diags[0]["location"]["line"], 6);
    assert_eq!(diags[0]["field"], "spec.colour");
    assert_eq!(diags[1]["code"], "ip-outside-subnet");
    assert_eq!(diags[1]["location"]["file"], "dhcp/a.yaml");
    assert_eq!(diags[1]["location"]["line"], 7);
    assert_eq!(diags[1]["location"]["column"], 7);
    assert_eq!(diags[1]["document"], "DhcpReservation/a");
    assert_eq!(diags[1]["field"], "spec.ip");
}

#[test]
fn human_output_shows_the_offending_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "devices/b.yaml",
        "apiVersion: labctl.dev/v1\nkind: Device\nmetadata: {name: b}\nspec:\n  type: vm\n  cores: four\n  proxmox: {node: pve-01, vmid: 300}\n",
    );
    let out = labctl(&["validate", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("devices/b.yaml:6:10"), "{stderr}");
    assert!(stderr.contains("  cores: four"), "{stderr}");
    assert!(stderr.contains("Device/b, field spec.cores"), "{stderr}");
    // A missing labctl.yaml is a warning, not an error.
    assert!(stderr.contains("warning[no-config]"), "{stderr}");
}

#[test]
fn usage_and_io_errors_exit_2() {
    let out = labctl(&["validate", "/nonexistent/labctl-repo"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/labctl-repo"));
    let out = labctl(&["validate", "--format", "xml"]);
    assert_eq!(out.status.code(), Some(2));
    let out = labctl(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn empty_directory_is_an_error_not_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let out = labctl(&["validate", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error[no-documents]"));
}

#[test]
fn schemas_command_writes_one_file_per_kind() {
    let dir = tempfile::tempdir().unwrap();
    let out = labctl(&["schemas", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "config.schema.json",
            "device.schema.json",
            "dhcpreservation.schema.json",
            "mcpserver.schema.json",
            "pool.schema.json",
            "route.schema.json"
        ]
    );
}

/// `labctl validate | head -1` where head has already gone: the write fails with EPIPE, and
/// labctl ends quietly as Unix tools do (141, as if killed by SIGPIPE), not with a panic.
#[test]
fn a_closed_stdout_ends_quietly() {
    for format in ["human", "json"] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_labctl"))
            .args([
                "validate",
                repo_layout().to_str().unwrap(),
                "--format",
                format,
            ])
            .env("NO_COLOR", "1")
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("labctl runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{format}: {stderr}");
        assert!(!stderr.contains("panicked"), "{format}: {stderr}");
        assert!(stderr.is_empty(), "{format}: {stderr}");
    }
}

/// A run of a commit lets go of its files once validated; a warning is still shown on the
/// line it is about, from the files read again from that commit.
#[test]
fn warnings_after_a_run_of_a_commit_point_at_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("lab");
    write(
        &repo,
        "labctl.yaml",
        "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {name: lab}\nspec: {}\n",
    );
    write(
        &repo,
        "mcp/probe.yaml",
        "apiVersion: labctl.dev/v1\nkind: McpServer\nmetadata: {name: probe}\n\
         spec:\n  transport: sse\n  url: http://127.0.0.1:9/sse\n",
    );
    crate::support::git::git(&repo, &["init", "-q"]);
    crate::support::git::commit_all(&repo, "a server at an undeclared host");
    let db = format!("sqlite://{}", dir.path().join("state.db").display());
    let out = labctl(&[
        "reconcile",
        "--once",
        repo.to_str().unwrap(),
        "--database-url",
        &db,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning[unknown-host]"), "{stderr}");
    assert!(stderr.contains("mcp/probe.yaml:6"), "{stderr}");
    assert!(stderr.contains("url: http://127.0.0.1:9/sse"), "{stderr}");
}

/// Logs on a pipe (a journal, a file) are plain text: no ANSI colour codes.
#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "lab/labctl.yaml",
        "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {name: lab}\nspec: {}\n",
    );
    let db = format!("sqlite://{}", dir.path().join("state.db").display());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_labctl"))
        .args(["reconcile", "--once"])
        .arg(dir.path().join("lab"))
        .args(["--database-url", &db])
        .env("LABCTL_LOG", "info")
        .env_remove("NO_COLOR")
        .output()
        .expect("labctl runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("reconciling"),
        "the run is logged: {stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}

/// What a repository holds cannot forge output or drive the terminal: a file name with a
/// newline is refused and shown escaped, and ESC, BEL and U+202E in a value are shown as
/// `\u{..}` in the diagnostic that quotes them.
#[test]
fn file_names_and_values_cannot_forge_lines_or_drive_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "labctl.yaml",
        "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {name: lab}\nspec: {}\n",
    );
    write(dir.path(), "dhcp/a\nerror[forged]: all good.yaml", "x: 1\n");
    let out = labctl(&["validate", dir.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        !stderr.lines().any(|l| l.starts_with("error[forged]")),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "dhcp/a\\nerror[forged]: all good.yaml: the file name holds control characters"
        ),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "labctl.yaml",
        "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {name: lab}\nspec: {}\n",
    );
    write(
        dir.path(),
        "dhcp/a.yaml",
        // YAML's own escapes make the control characters; the message quotes the kind.
        "apiVersion: labctl.dev/v1\nkind: \"Pool\\e]0;pwned\\a\\u202E\"\nmetadata: {name: a}\nspec: {}\n",
    );
    let out = labctl(&["validate", dir.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for raw in ['\u{1b}', '\u{7}', '\u{202e}'] {
        assert!(
            !stderr.contains(raw),
            "{raw:?} reached the terminal: {stderr:?}"
        );
    }
    assert!(
        stderr.contains("\\u{1b}]0;pwned\\u{7}\\u{202e}"),
        "{stderr}"
    );
}
