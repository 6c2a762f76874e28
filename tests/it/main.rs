//! labctl's integration tests, in one binary (one link against the library instead of one
//! per file): `cargo test --test it`, or `cargo test kea::` for one module.
//!
//! `support` and `fixtures` are shared by the test modules; every other module is the tests of
//! one component or command. Data the tests read stays outside this directory: the broken
//! repositories in `tests/broken/`, the pinned npm MCP servers in `tests/npm/`.

mod fixtures;
mod support;

mod broken_repos;
mod caddy;
mod cli;
mod config;
mod db_cli;
mod flood;
mod git_source;
mod kea;
mod leader;
mod limits;
mod mcp_conformance;
mod mcp_http;
mod mcp_limits;
mod mcp_oauth;
mod mcp_provider;
mod mcp_server;
mod mcp_tools;
mod partial;
mod probe;
mod propose;
mod proxmox;
mod pulls;
mod reachability;
mod read_only_store;
mod reconcile_caddy;
mod reconcile_kea;
mod redirects;
mod refused;
mod safety;
mod schemas;
mod secrets;
mod serve;
mod store;
mod systemd_units;
mod traefik;
mod traefik_live;
mod web;
mod wrong_shape;
