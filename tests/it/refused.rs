//! A commit that does not validate leaves a trace: the run is recorded as failed with the
//! commit and the first errors, the model of the last good commit stays in force, and nothing
//! is concluded about the lab (open deviations stay open).

use crate::support::cli::{exited, labctl, status_json, write};
use crate::support::git::{commit_all, git};

#[test]
fn an_invalid_commit_is_a_failed_run_that_changes_nothing_else() {
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    // A server on a port nothing listens on: drift on spec.reachable, one open deviation.
    let port = crate::support::net::free_port();
    write(
        r,
        "labctl.yaml",
        "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {name: lab}\nspec: {}\n",
    );
    write(
        r,
        "mcp/tools.yaml",
        &format!(
            "apiVersion: labctl.dev/v1\nkind: McpServer\nmetadata: {{name: tools}}\nspec:\n  transport: streamable-http\n  url: http://127.0.0.1:{port}/mcp\n"
        ),
    );
    git(r, &["init", "-q", "-b", "main"]);
    let good = commit_all(r, "one MCP server");
    let db_dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", db_dir.path().join("state.db").display());
    let repo_arg = r.to_str().unwrap();
    let out = labctl(&["reconcile", "--once", repo_arg, "--database-url", &db]);
    exited(&out, 0);
    let before = status_json(&db);
    assert_eq!(before["openDeviations"]["high"], 1, "{before}");

    // A password in a provider URL, and an error elsewhere in the same commit.
    write(
        r,
        "labctl.yaml",
        "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {name: lab}\nspec:\n  providers:\n    - {name: kea, kind: kea, url: \"ftp://admin:hunter2@kea.lab/\"}\n",
    );
    let bad = commit_all(r, "a broken provider URL");
    let out = labctl(&["reconcile", "--once", repo_arg, "--database-url", &db]);
    exited(&out, 1);

    let status = status_json(&db);
    let last = &status["latestRun"];
    assert_eq!(last["outcome"], "failed", "{status}");
    assert_eq!(last["commit"], bad.as_str(), "{status}");
    let error = last["error"].as_str().unwrap();
    assert!(error.contains("is invalid (1 errors)"), "{error}");
    assert!(error.contains("is not an http(s) URL"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
    // The last good commit's model is still what MCP answers from.
    assert_eq!(status["model"]["commit"], good.as_str(), "{status}");
    assert_eq!(
        status["openDeviations"], before["openDeviations"],
        "{status}"
    );

    let human = labctl(&["status", "--database-url", &db]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("in force: run 1 at"), "{text}");
    assert!(text.contains(&good[..12]), "{text}");
}
