//! Running the `labctl` binary and reading its JSON, for the end-to-end tests.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value as Json;

/// The labctl binary built for these tests, without colour and without the caller's database,
/// state directory, log filter or host configuration.
pub fn labctl_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_labctl"));
    cmd.env("NO_COLOR", "1");
    for var in [
        "DATABASE_URL",
        "STATE_DIRECTORY",
        "XDG_STATE_HOME",
        "LABCTL_LOG",
    ] {
        cmd.env_remove(var);
    }
    // No host configuration (/etc/labctl/config.yaml) unless a test names one.
    cmd.env("LABCTL_CONFIG", "");
    cmd
}

/// Runs [`labctl_command`] with `args` to the end.
pub fn labctl(args: &[&str]) -> Output {
    labctl_command().args(args).output().expect("labctl runs")
}

pub fn json_of(out: &Output) -> Json {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

pub fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// (kind/name, field, type) of each deviation in a JSON plan.
pub fn deviations(plan: &Json) -> Vec<(String, String, String)> {
    plan["deviations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                format!(
                    "{}/{}",
                    d["kind"].as_str().unwrap(),
                    d["name"].as_str().unwrap()
                ),
                d["field_path"].as_str().unwrap().to_string(),
                d["type"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub fn dev(resource: &str, field: &str, dtype: &str) -> (String, String, String) {
    (resource.into(), field.into(), dtype.into())
}

/// Asserts the command exited with `code`, showing its stdout and stderr otherwise; returns
/// the stderr.
pub fn exited(out: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// `labctl status --format json` of the store at `db`.
pub fn status_json(db: &str) -> Json {
    json_of(&labctl(&[
        "status",
        "--database-url",
        db,
        "--format",
        "json",
    ]))
}

/// A repository of one pool (no providers) in `dir/repo`, and the SQLite URL of
/// `dir/state.db`: the least a store needs to hold a reconciled model.
pub fn one_pool_lab(dir: &Path) -> (std::path::PathBuf, String) {
    write(
        dir,
        "repo/pool.yaml",
        "apiVersion: labctl.dev/v1\nkind: Pool\nmetadata: {name: lab}\nspec: {type: compute}\n",
    );
    let db = format!("sqlite://{}", dir.join("state.db").display());
    (dir.join("repo"), db)
}

/// `labctl reconcile --once` of `repo`'s work tree into `db`, which must succeed.
pub fn reconcile_worktree(repo: &Path, db: &str) {
    let out = labctl(&[
        "reconcile",
        "--once",
        repo.to_str().unwrap(),
        "--worktree",
        "--database-url",
        db,
    ]);
    assert!(out.status.success(), "{out:?}");
}
