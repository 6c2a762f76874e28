//! What the test modules share: real servers they start and stop themselves on loopback
//! ports (Kea, Caddy, PostgreSQL databases), running the `labctl` binary, the MCP client, and
//! a reconciled lab (`lab`, with the Proxmox VE fixture).

pub mod caddy;
pub mod cli;
pub mod forge;
pub mod git;
pub mod git_http;
pub mod kea;
pub mod lab;
pub mod lying;
pub mod mcp;
pub mod net;
pub mod ntfy;
pub mod oidc;
pub mod pg_cluster;
pub mod postgres;
pub mod tls;
pub mod traefik;

use labctl::providers::{Observation, Resource};

/// A real component a test needs is missing (`what`, and how to get it): under CI=true that
/// fails the test, never passes it; elsewhere the test is skipped, saying so.
pub fn absent(what: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what}; it is required when CI=true");
    }
    eprintln!("skipped: {what}");
}

/// Whether `program ARG` runs and exits 0: the component is installed.
pub fn runs(program: &str, arg: &str) -> bool {
    std::process::Command::new(program)
        .arg(arg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `resources` without their live keys: names and fields, as `expected` gives them.
pub fn without_keys(resources: &[Resource]) -> Vec<Resource> {
    resources
        .iter()
        .map(|r| Resource::new(r.kind, r.name.clone(), r.fields.value()))
        .collect()
}

/// The live key `observation` gave the resource `name` (any kind).
pub fn key_of(observation: &Observation, name: &str) -> Option<String> {
    observation
        .resources
        .iter()
        .find(|r| r.name == name)
        .and_then(|r| r.key.clone())
}
