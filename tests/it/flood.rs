//! A provider that floods or stalls: every provider reads at most `maxBodyBytes` of an answer
//! (refused from its Content-Length before reading, or once the bytes read pass it), and its
//! timeout covers the whole call. The plan ends with that provider unknown and why; it does not
//! read on, and nothing runs out of memory.

use std::convert::Infallible;
use std::path::Path;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::IntoResponse;

use crate::support::cli::{exited, json_of, labctl_command, write};
use crate::support::lab::{reservation, PVE_TOKEN, SUBNET, TOKEN_ENV};
use crate::support::net::serve;

/// The providers that read an HTTP answer, with a document each makes it expect.
const PROVIDERS: [(&str, &str); 4] = [
    ("kea", "dhcp"),
    ("caddy", "route"),
    ("traefik", "route"),
    ("proxmox", "pool"),
];

/// A repository whose one provider, of `kind`, is at `url` with `extra` settings.
fn repo(dir: &Path, kind: &str, doc: &str, url: &str, extra: &str) {
    let token = if kind == "proxmox" {
        format!(", token: {{env: {TOKEN_ENV}}}")
    } else {
        String::new()
    };
    write(
        dir,
        "labctl.yaml",
        &format!(
            "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {{name: lab}}\nspec:\n  providers:\n    - {{name: {kind}, kind: {kind}, url: \"{url}\"{token}{extra}}}\n"
        ),
    );
    match doc {
        "dhcp" => reservation(dir, "a", SUBNET, "aa:bb:cc:00:00:01", "10.0.1.5"),
        "route" => write(
            dir,
            "routes/a.yaml",
            "apiVersion: labctl.dev/v1\nkind: Route\nmetadata: {name: a}\nspec:\n  host: a.lab.example\n  backend: {urls: [\"http://10.0.1.5:80\"]}\n",
        ),
        _ => write(
            dir,
            "pools/a.yaml",
            "apiVersion: labctl.dev/v1\nkind: Pool\nmetadata: {name: a}\nspec: {type: compute, proxmoxPool: a}\n",
        ),
    }
}

/// `labctl plan` of `dir`: it must exit 1 with the provider `kind` unobservable; its reason.
async fn unknown_because(dir: &Path, kind: &str) -> String {
    let repo = dir.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        labctl_command()
            .args(["plan", &repo, "--format", "json"])
            .env(TOKEN_ENV, PVE_TOKEN)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    exited(&out, 1);
    let plan = json_of(&out)["plan"].clone();
    assert!(
        plan["deviations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["type"] == "unknown"),
        "{kind}: {plan}"
    );
    plan["unobservable"][kind]
        .as_str()
        .unwrap_or_else(|| panic!("{kind} is not unobservable: {plan}"))
        .to_string()
}

/// An endless `200 OK` body of JSON whitespace, sent as fast as it is read.
async fn endless() -> u16 {
    let app = axum::Router::new().fallback(|| async {
        let chunk = Bytes::from(vec![b' '; 64 << 10]);
        let body = futures::stream::repeat_with(move || Ok::<_, Infallible>(chunk.clone()));
        (
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(body),
        )
            .into_response()
    });
    serve(app).await.0
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_answer_is_cut_at_the_default_limit_not_read_on() {
    let port = endless().await;
    for (kind, doc) in PROVIDERS {
        let dir = tempfile::tempdir().unwrap();
        // A timeout far beyond what reading 64 MiB on loopback takes: the limit ends the call.
        let url = format!("http://127.0.0.1:{port}");
        repo(dir.path(), kind, doc, &url, ", timeoutSeconds: 60");
        let reason = unknown_because(dir.path(), kind).await;
        assert!(
            reason.contains("goes on beyond maxBodyBytes (67108864 bytes)"),
            "{kind}: {reason}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_over_a_configured_limit_is_refused_with_how_to_raise_it() {
    // Chunked, so the size shows only while reading; and one that declares its size.
    let chunked = serve(axum::Router::new().fallback(|| async {
        let parts = (0..4).map(|_| Ok::<_, Infallible>(Bytes::from(vec![b' '; 2000])));
        Body::from_stream(futures::stream::iter(parts))
    }))
    .await
    .0;
    let declared = serve(axum::Router::new().fallback(|| async { " ".repeat(5000) }))
        .await
        .0;
    for (port, says) in [
        (chunked, "goes on beyond maxBodyBytes (1000 bytes)"),
        (
            declared,
            "declares 5000 bytes beyond maxBodyBytes (1000 bytes)",
        ),
    ] {
        for (kind, doc) in PROVIDERS {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("http://labctl:hunter2@127.0.0.1:{port}");
            repo(dir.path(), kind, doc, &url, ", maxBodyBytes: 1000");
            let reason = unknown_because(dir.path(), kind).await;
            assert!(reason.contains(says), "{kind}: {reason}");
            assert!(
                reason.contains(&format!(
                    "raise `maxBodyBytes` of provider `{kind}` in labctl.yaml"
                )),
                "{kind}: {reason}"
            );
            assert!(reason.contains("http://***@127.0.0.1:"), "{kind}: {reason}");
            assert!(!reason.contains("hunter2"), "{kind}: {reason}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_then_a_stalled_body_end_at_the_deadline() {
    let app = axum::Router::new().fallback(|| async {
        use futures::StreamExt;
        let first = Ok::<_, Infallible>(Bytes::from_static(b"["));
        let body = futures::stream::iter([first]).chain(futures::stream::pending());
        (
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(body),
        )
            .into_response()
    });
    let port = serve(app).await.0;
    for (kind, doc) in PROVIDERS {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("http://127.0.0.1:{port}");
        repo(dir.path(), kind, doc, &url, ", timeoutSeconds: 1");
        let reason = unknown_because(dir.path(), kind).await;
        assert!(reason.contains("no answer within 1 s"), "{kind}: {reason}");
    }
}

/// An answer within the limit made of millions of small values is read in one pass that keeps
/// none of them, wherever they are: as elements of the answer, as members of its first
/// element, or within `Dhcp4`, as subnets or as members of it. The plan's peak memory stays
/// near the body's size. A list or a map of them (16 bytes an element, a name and a node a
/// member; a path and a slice each, within `Dhcp4`) was several times it.
#[tokio::test(flavor = "multi_thread")]
async fn millions_of_values_in_keas_answer_cost_a_pass_not_memory() {
    const BYTES: usize = 60 << 20;
    let elements = {
        let mut s = String::with_capacity(BYTES + 16);
        s.push('[');
        while s.len() < BYTES {
            s.push_str("0,");
        }
        s.push_str("0]");
        s
    };
    let members = {
        let mut s = String::with_capacity(BYTES + 32);
        s.push_str("[{");
        let mut i = 0u64;
        while s.len() < BYTES {
            s.push_str(&format!("\"m{i:08}\":0,"));
            i += 1;
        }
        s.push_str("\"result\":0}]");
        s
    };
    // Within `Dhcp4`: millions of subnets, which are not, and millions of members before a
    // `subnet4` whose first subnet is not one either.
    let config = |inner: &str| format!(r#"[{{"result":0,"arguments":{{"Dhcp4":{inner}}}}}]"#);
    let subnets = config(&format!("{{\"subnet4\":{elements}}}"));
    let dhcp4_members = config(&format!(
        "{{{}\"subnet4\":[0]}}",
        // The member list, each with its comma: without `[{` and `"result":0}]`.
        &members[2..members.len() - 12]
    ));
    for (body, says) in [
        (elements, "expected a JSON array of answers"),
        (members, "returned no `Dhcp4` object"),
        (subnets, "Dhcp4.subnet4[0] is a number, expected an object"),
        (
            dhcp4_members,
            "Dhcp4.subnet4[0] is a number, expected an object",
        ),
    ] {
        let body = Bytes::from(body);
        let port = serve(axum::Router::new().fallback(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }))
        .await
        .0;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("http://127.0.0.1:{port}");
        repo(dir.path(), "kea", "dhcp", &url, ", timeoutSeconds: 60");
        let repo_arg = dir.path().to_str().unwrap().to_string();
        let (out, peak_kib) = tokio::task::spawn_blocking(move || {
            let mut cmd = labctl_command();
            cmd.args(["plan", &repo_arg, "--format", "json"]);
            peak_rss(cmd)
        })
        .await
        .unwrap();
        exited(&out, 1);
        let plan = json_of(&out)["plan"].clone();
        let reason = plan["unobservable"]["kea"].as_str().unwrap_or_default();
        assert!(reason.contains(says), "{plan}");
        eprintln!("{says}: peak RSS {} MiB", peak_kib >> 10);
        assert!(
            peak_kib < 200 << 10,
            "{says}: peak RSS {} MiB for a {} MiB answer",
            peak_kib >> 10,
            BYTES >> 20
        );
    }
}

/// Runs `cmd` to its end, its output captured, and the peak RSS (KiB) the kernel reports for
/// it as it is reaped. Through a small spawner (Python's, which every test machine has): a
/// child counts its parent's memory into its peak until it execs, and this test process holds
/// the answers it serves.
fn peak_rss(cmd: std::process::Command) -> (std::process::Output, i64) {
    const SPAWNER: &str = "import os, subprocess, sys\n\
        p = subprocess.Popen(sys.argv[1:])\n\
        _, status, usage = os.wait4(p.pid, 0)\n\
        sys.stderr.write(f'\\npeak-rss-kib {usage.ru_maxrss}\\n')\n\
        sys.exit(os.waitstatus_to_exitcode(status))\n";
    let mut spawner = std::process::Command::new("python3");
    spawner
        .args(["-c", SPAWNER])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => spawner.env(k, v),
            None => spawner.env_remove(k),
        };
    }
    let out = spawner.output().expect("python3 runs (the spawner)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let peak = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("peak-rss-kib "))
        .and_then(|kib| kib.trim().parse().ok())
        .unwrap_or_else(|| panic!("the spawner reported no peak: {stderr}"));
    (out, peak)
}
