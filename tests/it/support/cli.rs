//! Running the `labctl` binary and reading its JSON, for the end-to-end tests.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value as Json;

/// Runs the labctl binary built for these tests, without colour or an inherited database.
pub fn labctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_labctl"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("DATABASE_URL")
        .output()
        .expect("labctl runs")
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
