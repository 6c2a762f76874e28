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

/// `resources` without their live keys: names and fields, as `expected` gives them.
pub fn without_keys(resources: &[Resource]) -> Vec<Resource> {
    resources
        .iter()
        .map(|r| Resource::new(r.kind, r.name.clone(), r.fields.clone()))
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
