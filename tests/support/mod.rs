//! Real servers the integration tests start and stop themselves, on loopback ports.
//! Each test binary uses some of them, so unused items are expected. `lab.rs` (a reconciled
//! lab with the Proxmox fixture) is opt-in: a test declares it with `#[path]`, beside
//! `mod fixture`, so other binaries do not compile the fixture.
#![allow(dead_code)]

pub mod caddy;
pub mod cli;
pub mod kea;
pub mod mcp;
pub mod postgres;
