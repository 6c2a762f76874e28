//! `labctl plan` and `reconcile --once` end to end against a real Caddy: a route changed,
//! deleted and added behind labctl's back is reported on the exact field, restored under the
//! apply policy, and the next plan is clean.

use std::path::Path;

use crate::support::caddy::Caddy;
use crate::support::cli::{dev, deviations, json_of, labctl, write};
use serde_json::json;

fn repo(dir: &Path, admin: &str, policy: &str) {
    write(
        dir,
        "labctl.yaml",
        &format!(
            "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {{name: lab}}\nspec:\n  providers:\n    - {{name: caddy, kind: caddy, url: \"{admin}\", timeoutSeconds: 5}}\n  policy:\n    Route: {policy}\n"
        ),
    );
    for (name, host, backend) in [
        ("grafana", "grafana.lab.example", "http://127.0.0.1:3000"),
        ("wiki", "wiki.lab.example", "http://127.0.0.1:3001"),
    ] {
        write(
            dir,
            &format!("routes/{name}.yaml"),
            &format!(
                "apiVersion: labctl.dev/v1\nkind: Route\nmetadata: {{name: {name}}}\nspec:\n  host: {host}\n  backend:\n    urls: [\"{backend}\"]\n"
            ),
        );
    }
}

/// A route as labctl writes it into Caddy.
fn managed(name: &str, host: &str, dial: &str) -> serde_json::Value {
    json!({
        "@id": format!("labctl-{name}"),
        "match": [{"host": [host]}],
        "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": dial}]}],
        "terminal": true
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn caddy_drift_is_reported_then_restored_then_clean() {
    let Some(caddy) = Caddy::start(json!([
        // Changed behind labctl's back: Git says port 3000.
        managed("grafana", "grafana.lab.example", "127.0.0.1:3999"),
        // Added by hand, not in Git. (`wiki` was deleted by hand: missing.)
        {"match": [{"host": ["adhoc.lab.example"]}],
         "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": "127.0.0.1:4000"}]}],
         "terminal": true}
    ]))
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    repo(r, &caddy.admin, "observe");
    let repo_arg = r.to_str().unwrap();

    let out = labctl(&["plan", repo_arg, "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan = json_of(&out)["plan"].clone();
    assert_eq!(
        deviations(&plan),
        vec![
            dev("Route/adhoc-lab-example", "", "unmanaged"),
            dev("Route/grafana", "spec.backend.urls", "drifted"),
            dev("Route/wiki", "", "missing"),
        ]
    );
    assert_eq!(
        plan["deviations"][1]["expected"],
        json!(["http://127.0.0.1:3000"])
    );
    assert_eq!(
        plan["deviations"][1]["actual"],
        json!(["http://127.0.0.1:3999"])
    );

    repo(r, &caddy.admin, "apply");
    let db_dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", db_dir.path().join("state.db").display());
    let out = labctl(&["reconcile", "--once", repo_arg, "--database-url", &db]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let ids: Vec<String> = caddy
        .routes()
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["@id"].as_str().unwrap_or("(none)").to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(
        ids.contains(&"labctl-grafana".to_string()) && ids.contains(&"labctl-wiki".to_string())
    );

    let out = labctl(&["plan", repo_arg]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
