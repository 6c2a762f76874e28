//! A password written into a provider URL (`http://admin:hunter2@kea/`) is warned about at
//! validate and redacted everywhere labctl writes: output, messages, logs, the store, and so
//! MCP answers.

use crate::support::cli::{exited, labctl, labctl_command, status_json, write};
use crate::support::net::free_port;

#[test]
fn a_password_in_a_provider_url_is_warned_about_and_never_written() {
    let port = free_port();
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    write(
        r,
        "labctl.yaml",
        &format!(
            "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {{name: lab}}\nspec:\n  providers:\n    - {{name: kea, kind: kea, url: \"http://admin:hunter2@127.0.0.1:{port}/\", timeoutSeconds: 1}}\n"
        ),
    );
    write(
        r,
        "dhcp/a.yaml",
        "apiVersion: labctl.dev/v1\nkind: DhcpReservation\nmetadata: {name: a}\nspec: {subnet: 10.0.1.0/24, mac: \"aa:bb:cc:00:00:01\", ip: 10.0.1.5, hostname: a}\n",
    );
    let repo_arg = r.to_str().unwrap();
    let shown = |out: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };

    let out = labctl(&["validate", repo_arg]);
    let stderr = exited(&out, 0);
    assert!(stderr.contains("warning[secret-in-url]"), "{stderr}");
    assert!(!shown(&out).contains("hunter2"), "{}", shown(&out));

    // The provider cannot be reached: its error quotes the URL.
    for format in ["human", "json"] {
        let out = labctl(&["plan", repo_arg, "--format", format]);
        exited(&out, 1);
        assert!(shown(&out).contains("127.0.0.1"), "{}", shown(&out));
        assert!(!shown(&out).contains("hunter2"), "{}", shown(&out));
    }

    let db_dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", db_dir.path().join("state.db").display());
    let out = labctl_command()
        .args(["reconcile", "--once", repo_arg, "--database-url", &db])
        .env("LABCTL_LOG", "debug")
        .output()
        .unwrap();
    exited(&out, 0);
    assert!(!shown(&out).contains("hunter2"), "{}", shown(&out));
    let status = status_json(&db);
    let error = status["latestRun"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("127.0.0.1"), "{status}");
    assert!(!status.to_string().contains("hunter2"), "{status}");
}
