//! MCP over stdio with a front that answers what rmcp's line reader would not: a line longer
//! than the limit is refused after reading at most the limit (not buffered whole), a line that
//! is not JSON gets a JSON-RPC parse error, and a standard request whose params do not fit its
//! method (`arguments` as an array, say) gets "invalid params" rather than "method not found".
//! Every error message is bounded: it never echoes a large input back.
//!
//! The front reads stdin and writes stdout; rmcp serves the lines it lets through over an
//! in-process pipe, and one writer puts rmcp's messages and the front's errors on stdout, whole
//! lines each.

use std::time::{Duration, Instant};

use rmcp::model::{ClientJsonRpcMessage, ClientRequest, JsonRpcMessage};
use rmcp::ServiceExt;
use serde_json::{json, Value as Json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::{LabServer, ServeError};

/// The longest message line read; longer ones are answered with an error and skipped.
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;
/// Error answers to lines that are not JSON-RPC at all, per second at most: a peer that
/// answers our errors with more garbage must not start an endless exchange.
const GARBAGE_ANSWERS_PER_SECOND: u32 = 10;
/// How much of an input an error message may quote.
const QUOTED_BYTES: usize = 120;

/// JSON-RPC error codes.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const INVALID_PARAMS: i64 = -32602;

/// One line of input.
#[derive(Debug, PartialEq)]
enum Line {
    Text(Vec<u8>),
    /// Longer than the limit: its length as far as read (all of it was consumed).
    TooLong(usize),
    Eof,
}

/// Reads one line of at most `max` bytes (without its newline); a longer one is consumed to
/// its end but not kept.
async fn read_line(reader: &mut (impl AsyncBufRead + Unpin), max: usize) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut seen = 0usize;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(match (seen, seen > max) {
                (0, _) => Line::Eof,
                (n, true) => Line::TooLong(n),
                _ => Line::Text(line),
            });
        }
        let (chunk, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        seen += chunk.len();
        if seen <= max {
            line.extend_from_slice(chunk);
        } else {
            line = Vec::new();
        }
        let used = done.unwrap_or(buf.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(if seen > max {
                Line::TooLong(seen)
            } else {
                Line::Text(line)
            });
        }
    }
}

/// What to do with one line.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// Pass it to rmcp.
    Forward,
    /// Answer it with this error, and do not pass it on.
    Answer(Json),
    /// Nothing to say (an empty line).
    Skip,
}

fn error(id: Json, code: i64, message: String) -> Json {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// Bounds a message that may quote its input.
fn bounded(message: String) -> String {
    super::audit::prefix(&message, 2 * QUOTED_BYTES).into_owned()
}

/// The MCP request methods a client sends: one of these parsed as a custom request means its
/// params did not fit.
const STANDARD_REQUESTS: &[&str] = &[
    "initialize",
    "ping",
    "completion/complete",
    "logging/setLevel",
    "prompts/get",
    "prompts/list",
    "resources/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "resources/templates/list",
    "subscriptions/listen",
    "tools/call",
    "tools/list",
];

/// Why params do not fit their method, in serde's words (which name types and positions, not
/// values).
fn params_error(method: &str, params: &Json) -> String {
    use rmcp::model::*;
    fn why<T: serde::de::DeserializeOwned>(params: &Json) -> Option<String> {
        serde_json::from_value::<T>(params.clone())
            .err()
            .map(|e| e.to_string())
    }
    let detail = match method {
        "tools/call" => why::<CallToolRequestParams>(params),
        "prompts/get" => why::<GetPromptRequestParams>(params),
        "resources/read" => why::<ReadResourceRequestParams>(params),
        "resources/subscribe" => why::<SubscribeRequestParams>(params),
        "resources/unsubscribe" => why::<UnsubscribeRequestParams>(params),
        "completion/complete" => why::<CompleteRequestParams>(params),
        "initialize" => why::<InitializeRequestParams>(params),
        _ => None,
    };
    let detail = detail.map(|d| format!(": {d}")).unwrap_or_default();
    bounded(format!("invalid params for `{method}`{detail}"))
}

/// Judges one line.
fn judge(line: &[u8]) -> Verdict {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Verdict::Skip;
    }
    // The usual line is a well-formed message: read once here, as rmcp will read it.
    // `None`: a standard method read as a custom request (its params did not fit).
    let problem: Option<serde_json::Error> = match serde_json::from_slice(line) {
        Ok::<ClientJsonRpcMessage, _>(JsonRpcMessage::Request(r)) => match &r.request {
            ClientRequest::CustomRequest(c) if STANDARD_REQUESTS.contains(&c.method.as_str()) => {
                None
            }
            _ => return Verdict::Forward,
        },
        Ok(_) => return Verdict::Forward,
        Err(e) => Some(e),
    };
    let value: Json = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => {
            return Verdict::Answer(error(
                Json::Null,
                PARSE_ERROR,
                bounded(format!(
                    "parse error: not JSON ({e}); send one JSON-RPC message per line"
                )),
            ))
        }
    };
    let (Some(method), Some(id)) = (value.get("method").and_then(Json::as_str), value.get("id"))
    else {
        // Notifications, responses and shapes rmcp answers itself.
        return Verdict::Forward;
    };
    if !STANDARD_REQUESTS.contains(&method) {
        return Verdict::Forward;
    }
    match problem {
        None => {
            let params = value.get("params").unwrap_or(&Json::Null);
            Verdict::Answer(error(
                id.clone(),
                INVALID_PARAMS,
                params_error(method, params),
            ))
        }
        Some(e) => Verdict::Answer(error(
            id.clone(),
            INVALID_REQUEST,
            bounded(format!("invalid request: {e}")),
        )),
    }
}

/// At most `per_second` events in any one-second window.
struct Budget {
    window: Instant,
    used: u32,
    per_second: u32,
}

impl Budget {
    fn allow(&mut self) -> bool {
        if self.window.elapsed() >= Duration::from_secs(1) {
            self.window = Instant::now();
            self.used = 0;
        }
        self.used += 1;
        self.used <= self.per_second
    }
}

/// Reads `input` line by line: forwards what rmcp should see to `to_server`, sends the answers
/// of the rest to `out`; ends at end of input (closing `to_server`, which ends the session).
async fn front(
    input: impl tokio::io::AsyncRead + Unpin,
    mut to_server: impl AsyncWrite + Unpin,
    out: mpsc::Sender<Vec<u8>>,
    max: usize,
) -> std::io::Result<()> {
    let mut reader = BufReader::with_capacity(64 * 1024, input);
    let mut garbage = Budget {
        window: Instant::now(),
        used: 0,
        per_second: GARBAGE_ANSWERS_PER_SECOND,
    };
    loop {
        let answer = match read_line(&mut reader, max).await? {
            Line::Eof => break,
            Line::TooLong(n) => {
                tracing::warn!(bytes = n, max, "refused an MCP message line over the limit");
                error(
                    Json::Null,
                    INVALID_REQUEST,
                    format!(
                        "the message line is over {max} bytes ({n} read); it was not processed"
                    ),
                )
            }
            Line::Text(line) => match judge(&line) {
                Verdict::Forward => {
                    to_server.write_all(&line).await?;
                    to_server.write_all(b"\n").await?;
                    continue;
                }
                Verdict::Skip => continue,
                Verdict::Answer(answer) => answer,
            },
        };
        // An id-less answer goes to input we could not read as a request at all.
        if answer["id"].is_null() && !garbage.allow() {
            continue;
        }
        let mut line = serde_json::to_vec(&answer).unwrap_or_default();
        line.push(b'\n');
        if out.send(line).await.is_err() {
            break;
        }
    }
    to_server.shutdown().await
}

/// Serves `server` on stdin/stdout until the client closes stdin.
pub async fn serve(server: LabServer) -> Result<(), ServeError> {
    let mut output = tokio::io::stdout();
    let (to_server, server_in) = tokio::io::duplex(256 * 1024);
    let (server_out, from_server) = tokio::io::duplex(256 * 1024);
    let (out, mut lines) = mpsc::channel::<Vec<u8>>(64);
    // One writer: whole lines from rmcp and from the front, never interleaved.
    let writer = tokio::spawn(async move {
        while let Some(line) = lines.recv().await {
            if output.write_all(&line).await.is_err() || output.flush().await.is_err() {
                break;
            }
        }
    });
    let relay = {
        let out = out.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(from_server);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).await.unwrap_or(0) > 0 {
                if out.send(std::mem::take(&mut line)).await.is_err() {
                    break;
                }
            }
        })
    };
    let front = tokio::spawn(front(tokio::io::stdin(), to_server, out, MAX_LINE_BYTES));
    let last = server.clone();
    let running = server
        .serve((server_in, server_out))
        .await
        .map_err(|e| ServeError::Initialize(Box::new(e)))?;
    let reason = running.waiting().await?;
    tracing::info!(?reason, "MCP client disconnected");
    front.abort();
    let _ = relay.await;
    let _ = writer.await;
    // Reads are answered before their audit rows are committed: commit them before exiting.
    last.flush_audit().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_over_the_limit_are_consumed_not_kept() {
        let input = b"short\nxxxxxxxxxxxxxxxxxxxx\n\nlast".to_vec();
        let mut reader = BufReader::with_capacity(4, &input[..]);
        assert_eq!(
            read_line(&mut reader, 8).await.unwrap(),
            Line::Text(b"short".to_vec())
        );
        assert_eq!(read_line(&mut reader, 8).await.unwrap(), Line::TooLong(20));
        assert_eq!(
            read_line(&mut reader, 8).await.unwrap(),
            Line::Text(Vec::new())
        );
        assert_eq!(
            read_line(&mut reader, 8).await.unwrap(),
            Line::Text(b"last".to_vec())
        );
        assert_eq!(read_line(&mut reader, 8).await.unwrap(), Line::Eof);
    }

    #[test]
    fn garbage_bad_params_and_good_requests() {
        let Verdict::Answer(a) = judge(b"hello there") else {
            panic!()
        };
        assert_eq!(a["error"]["code"], PARSE_ERROR);
        assert!(a["id"].is_null());
        let huge = format!("{{\"x\": \"{}", "y".repeat(100_000));
        let Verdict::Answer(a) = judge(huge.as_bytes()) else {
            panic!()
        };
        assert!(a.to_string().len() < 1000, "{a}");
        let call = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_device","arguments":[1,2]}}"#;
        let Verdict::Answer(a) = judge(call) else {
            panic!()
        };
        assert_eq!(a["error"]["code"], INVALID_PARAMS, "{a}");
        assert_eq!(a["id"], 7);
        assert!(
            a["error"]["message"]
                .as_str()
                .unwrap()
                .contains("tools/call"),
            "{a}"
        );
        let ok = br#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"get_device","arguments":{"device":"x"}}}"#;
        assert_eq!(judge(ok), Verdict::Forward);
        let note = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        assert_eq!(judge(note), Verdict::Forward);
        assert_eq!(judge(b"   "), Verdict::Skip);
    }
}
