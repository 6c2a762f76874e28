//! Talking to `labctl mcp` over stdio with rmcp's client, as a desktop MCP client would.

use std::process::Stdio;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value as Json;

/// Starts `labctl mcp` over `db` and completes the MCP handshake.
pub async fn connect(db: &str) -> RunningService<RoleClient, ()> {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_labctl"));
    cmd.args(["mcp", "--database-url", db])
        .env("NO_COLOR", "1")
        .env_remove("DATABASE_URL");
    let (transport, _stderr) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::null())
        .spawn()
        .expect("labctl mcp starts");
    ().serve(transport).await.expect("MCP handshake")
}

/// Calls `tool` with `args` (an object); a protocol error fails the test.
pub async fn call(
    client: &RunningService<RoleClient, ()>,
    tool: &str,
    args: Json,
) -> CallToolResult {
    let Json::Object(args) = args else {
        panic!("arguments are an object")
    };
    client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

/// The text of a call that must be a tool error.
pub fn error_text(tool: &str, result: CallToolResult) -> String {
    assert_eq!(
        result.is_error,
        Some(true),
        "{tool} should fail: {result:?}"
    );
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `key` of every object in a JSON list.
pub fn names(list: &Json, key: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|d| d[key].as_str().unwrap().to_string())
        .collect()
}
