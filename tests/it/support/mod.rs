//! What the test modules share: real servers they start and stop themselves on loopback
//! ports (Kea, Caddy, PostgreSQL databases), running the `labctl` binary, the MCP client, and
//! a reconciled lab (`lab`, with the Proxmox VE fixture).

pub mod caddy;
pub mod cli;
pub mod git;
pub mod kea;
pub mod lab;
pub mod mcp;
pub mod net;
pub mod postgres;
