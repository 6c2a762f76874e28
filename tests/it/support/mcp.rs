//! Talking to `labctl mcp` over stdio with rmcp's client, as a desktop MCP client would.

use std::process::Stdio;

use rmcp::model::{CallToolRequestParams, CallToolResult, Tool};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value as Json};

/// Starts `labctl mcp` over `db` and completes the MCP handshake.
pub async fn connect(db: &str) -> RunningService<RoleClient, ()> {
    connect_with(db, &[], &[]).await
}

/// [`connect`] with more arguments (`--repo …`) and environment variables.
pub async fn connect_with(
    db: &str,
    args: &[&str],
    envs: &[(&str, &str)],
) -> RunningService<RoleClient, ()> {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_labctl"));
    cmd.args(["mcp", "--database-url", db])
        .args(args)
        .envs(envs.iter().copied())
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

/// Checks `value` against `schema` as far as these tests need: types, required properties,
/// no property the schema does not name, down through objects, arrays and local `$ref`s.
pub fn conforms(root: &Json, schema: &Json, value: &Json, at: &str) {
    let schema = match schema.get("$ref").and_then(Json::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap();
            root["$defs"]
                .get(name)
                .or_else(|| root["definitions"].get(name))
                .unwrap_or_else(|| panic!("{at}: unresolved {r}"))
        }
        None => schema,
    };
    if let Some(any) = schema.get("anyOf").or_else(|| schema.get("oneOf")) {
        let options = any.as_array().unwrap();
        // Option<T>: null or T.
        if value.is_null()
            && options
                .iter()
                .any(|o| o.get("type") == Some(&json!("null")))
        {
            return;
        }
        let non_null: Vec<&Json> = options
            .iter()
            .filter(|o| o.get("type") != Some(&json!("null")))
            .collect();
        if non_null.len() == 1 {
            return conforms(root, non_null[0], value, at);
        }
        return;
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Json::String(t)) => vec![t.as_str()],
        Some(Json::Array(ts)) => ts.iter().filter_map(Json::as_str).collect(),
        _ => vec![],
    };
    if !types.is_empty() {
        let ok = types.iter().any(|t| match *t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            _ => true,
        });
        assert!(ok, "{at}: {value} is not {types:?}");
    }
    if let (Some(obj), Some(props)) = (
        value.as_object(),
        schema.get("properties").and_then(Json::as_object),
    ) {
        for req in schema
            .get("required")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            let req = req.as_str().unwrap();
            assert!(obj.contains_key(req), "{at}: `{req}` missing in {value}");
        }
        for (k, v) in obj {
            let sub = props
                .get(k)
                .unwrap_or_else(|| panic!("{at}: `{k}` not in the schema"));
            conforms(root, sub, v, &format!("{at}/{k}"));
        }
    }
    if let (Some(items), Some(item_schema)) = (value.as_array(), schema.get("items")) {
        for (i, v) in items.iter().enumerate() {
            conforms(root, item_schema, v, &format!("{at}/{i}"));
        }
    }
}

/// The structured content of a call that must succeed, checked against the tool's output
/// schema.
pub fn ok(tools: &[Tool], tool: &str, result: CallToolResult) -> Json {
    assert_ne!(result.is_error, Some(true), "{tool}: {result:?}");
    let value = result.structured_content.expect("structured content");
    let schema = tools
        .iter()
        .find(|t| t.name == tool)
        .and_then(|t| t.output_schema.clone())
        .expect("output schema");
    let schema = Json::Object((*schema).clone());
    conforms(&schema, &schema, &value, tool);
    value
}

/// `labctl mcp` over stdio driven with raw JSON-RPC lines, as the protocol is written: the
/// order in which answers arrive on stdout is the order in which the server finished them.
pub struct RawSession {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl RawSession {
    /// Starts `cmd` (a `labctl mcp` command line) with stdin and stdout piped, stderr to
    /// `stderr`, and completes the handshake.
    pub async fn start(mut cmd: tokio::process::Command, stderr: std::fs::File) -> RawSession {
        use tokio::io::AsyncBufReadExt;
        let mut child = cmd
            .env("NO_COLOR", "1")
            .env_remove("DATABASE_URL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("labctl mcp starts");
        let mut session = RawSession {
            stdin: child.stdin.take(),
            lines: tokio::io::BufReader::new(child.stdout.take().unwrap()).lines(),
            child,
        };
        session
            .send(json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}))
            .await;
        let init = session.next().await;
        assert_eq!(init["result"]["serverInfo"]["name"], "labctl", "{init}");
        session
            .send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        session
    }

    /// Sends one message.
    pub async fn send(&mut self, message: Json) {
        use tokio::io::AsyncWriteExt;
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{message}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// Sends a `tools/call` with this id.
    pub async fn call(&mut self, id: i64, tool: &str, args: Json) {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}}))
            .await;
    }

    /// The next message on stdout (each must be JSON-RPC).
    pub async fn next(&mut self) -> Json {
        let line =
            tokio::time::timeout(std::time::Duration::from_secs(120), self.lines.next_line())
                .await
                .expect("an answer in time")
                .unwrap()
                .expect("stdout open");
        let message: Json = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
        assert_eq!(message["jsonrpc"], "2.0", "{line}");
        message
    }

    /// Closes stdin and waits for the server to exit; whether it exited cleanly.
    pub async fn close(mut self) -> bool {
        drop(self.stdin.take());
        while tokio::time::timeout(std::time::Duration::from_secs(60), self.lines.next_line())
            .await
            .expect("exit in time")
            .unwrap()
            .is_some()
        {}
        self.child.wait().await.unwrap().success()
    }
}

/// The text of a `tools/call` answer that must be a tool error.
pub fn raw_error_text(answer: &Json) -> String {
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The latest `limit` audit rows once `done` holds of them. A read is answered before its row
/// is committed (the writer commits within milliseconds), so a test waits for it, at most 10 s.
pub async fn audit_when(
    store: &labctl::store::Store,
    limit: u32,
    done: impl Fn(&[labctl::store::AuditRecord]) -> bool,
) -> Vec<labctl::store::AuditRecord> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let rows = store.recent_audit(limit).await.unwrap();
        if done(&rows) {
            return rows;
        }
        let actions: Vec<&str> = rows.iter().map(|r| r.entry.action.as_str()).collect();
        assert!(
            std::time::Instant::now() < deadline,
            "the audit log did not reach the expected rows within 10 s: {actions:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
