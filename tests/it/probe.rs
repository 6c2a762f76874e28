//! `--probe`: the host opts in to probing declared services; without it labctl connects to no
//! device. Services on loopback: one listening, one closed.

use std::net::TcpListener;

use crate::support::cli::{dev, deviations, json_of, labctl, write};
use crate::support::net::free_port;

#[test]
fn probing_is_opt_in_and_reports_the_service_that_is_down() {
    let up = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_port = up.local_addr().unwrap().port();
    let closed_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(
        r,
        "labctl.yaml",
        "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {name: lab}\nspec: {}\n",
    );
    write(
        r,
        "devices/nas.yaml",
        &format!(
            "apiVersion: labctl.dev/v1\nkind: Device\nmetadata: {{name: nas}}\nspec:\n  type: physical\n  interfaces: [{{name: eth0, ip: 127.0.0.1}}]\n  services:\n    - {{name: smb, port: {up_port}, protocol: tcp}}\n    - {{name: nfs, port: {closed_port}, protocol: tcp}}\n"
        ),
    );
    let repo = r.to_str().unwrap();

    // Not asked to probe: nothing is observed, so nothing differs.
    let out = labctl(&["plan", repo, "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(deviations(&json_of(&out)["plan"]).is_empty());

    let out = labctl(&["plan", repo, "--probe", "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan = json_of(&out)["plan"].clone();
    assert_eq!(
        deviations(&plan),
        vec![dev("Device/nas", "spec.services.nfs.up", "drifted")]
    );
    assert_eq!(plan["deviations"][0]["expected"], true);
    assert_eq!(plan["deviations"][0]["actual"], false);
    drop(up);
}
