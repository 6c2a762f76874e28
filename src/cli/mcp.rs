//! `labctl mcp`: serve MCP over stdio, answering from the state store.

use std::process::ExitCode;

use clap::Args;

use labctl::mcp::{Client, LabServer};
use labctl::store::{ActorKind, Store};

#[derive(Args)]
pub struct McpArgs {
    /// State store (default: see `labctl db`).
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

/// Serves until the client closes stdin. stdout carries only MCP messages; logs go to stderr.
pub fn run(args: &McpArgs) -> ExitCode {
    let url = super::db::database_url(args.database_url.as_deref());
    let Some(rt) = super::runtime() else {
        return ExitCode::FAILURE;
    };
    let result = rt.block_on(async {
        let store = Store::connect(&url).await?;
        // A new database answers "nothing recorded yet" rather than "no such table".
        store.migrate().await?;
        tracing::info!(store = %store.describe(), "serving MCP on stdio");
        let client = Client {
            kind: ActorKind::Mcp,
            actor: "stdio".into(),
        };
        let served = LabServer::new(store.clone(), client).serve_stdio().await;
        store.close().await;
        served
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
