//! The Caddy provider against a real Caddy (Debian package `caddy`), one per test on its own
//! loopback ports, started and stopped here.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Instant;

use crate::support::caddy::{Caddy, ROUTES};
use crate::support::lying::Lying;
use crate::support::{key_of, without_keys};
use labctl::model::{DesiredState, Kind, Located, Origin};
use labctl::providers::caddy::{CaddyProvider, Settings};
use labctl::providers::{Change, Provider, ProviderError, Resource};
use serde_json::{json, Value as Json};

/// The provider under test, talking to this Caddy.
trait CaddyExt {
    fn provider(&self) -> CaddyProvider;
}

impl CaddyExt for Caddy {
    fn provider(&self) -> CaddyProvider {
        let cfg: Settings = serde_json::from_value(json!({
            "name": "caddy", "url": self.admin, "timeoutSeconds": 5
        }))
        .unwrap();
        CaddyProvider::new(&cfg).unwrap()
    }
}
/// The managed route of every test's initial config, as labctl writes it.
fn managed_grafana() -> Json {
    json!({
        "@id": "labctl-grafana",
        "match": [{"host": ["grafana.lab.example"], "path": ["/api*"]}],
        "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": "10.0.1.220:3000"}]}],
        "terminal": true
    })
}

/// A route someone wrote by hand: no `@id`, not terminal.
fn unmanaged_other() -> Json {
    json!({
        "match": [{"host": ["Other.Lab"], "path": ["/x*"]}],
        "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": "10.0.1.5:80"}]}]
    })
}

fn located<T>(doc: T) -> Located<T> {
    Located {
        doc,
        origin: Origin {
            file: "lab.yaml".into(),
            line: 1,
        },
    }
}

fn doc<T: serde::de::DeserializeOwned>(kind: &str, name: &str, spec: Json) -> Located<T> {
    located(
        serde_json::from_value(json!({
            "apiVersion": "labctl.dev/v1", "kind": kind,
            "metadata": {"name": name}, "spec": spec
        }))
        .unwrap(),
    )
}

/// Desired: `grafana` through a device's declared service, plus `routes` as given.
fn desired(routes: &[(&str, Json)]) -> DesiredState {
    let mut state = DesiredState::default();
    state.devices.push(doc(
        "Device",
        "grafana-vm",
        json!({
            "type": "lxc", "proxmox": {"node": "pve-01", "vmid": 120},
            "interfaces": [{"name": "eth0", "ip": "10.0.1.220"}],
            "services": [{"name": "web", "port": 3000, "protocol": "http"}]
        }),
    ));
    state.routes.push(doc(
        "Route",
        "grafana",
        json!({
            "entryPoints": ["websecure"], "host": "Grafana.Lab.Example", "pathPrefix": "/api",
            "backend": {"service": {"device": "grafana-vm", "service": "web"}},
            "tls": {"certResolver": "letsencrypt"}, "middlewares": ["auth"]
        }),
    ));
    for (name, spec) in routes {
        state.routes.push(doc("Route", name, spec.clone()));
    }
    state
}

fn sorted(mut r: Vec<Resource>) -> Vec<Resource> {
    r.sort_by(|a, b| a.name.cmp(&b.name));
    r
}

fn find<'a>(r: &'a [Resource], name: &str) -> Option<&'a Resource> {
    r.iter().find(|r| r.name == name)
}

#[tokio::test]
async fn observe_names_and_normalises_managed_and_unmanaged_routes() {
    let Some(caddy) = Caddy::start(json!([managed_grafana(), unmanaged_other()])).await else {
        return;
    };
    let provider = caddy.provider();
    let state = desired(&[
        // A simple raw rule is understood; a complex one cannot be a labctl Caddy route.
        (
            "ruled",
            json!({"rule": "Host(`Rule.Lab`) && PathPrefix(`/r`)",
                   "backend": {"urls": ["https://10.0.1.9/"]}}),
        ),
        (
            "complex",
            json!({"rule": "Host(`a.lab`) || Host(`b.lab`)",
                   "backend": {"urls": ["http://10.0.1.9:80"]}}),
        ),
    ]);
    let expected = provider.expected(&state);
    assert_eq!(
        expected,
        vec![
            Resource::new(
                Kind::Route,
                "grafana",
                json!({"host": "grafana.lab.example", "pathPrefix": "/api",
                       "backend": {"urls": ["http://10.0.1.220:3000"]}}),
            ),
            Resource::new(
                Kind::Route,
                "ruled",
                json!({"host": "rule.lab", "pathPrefix": "/r",
                       "backend": {"urls": ["https://10.0.1.9:443"]}}),
            ),
        ]
    );

    let started = Instant::now();
    let observed = provider.observe(&state).await.unwrap();
    eprintln!("observe took {:?}", started.elapsed());
    assert_eq!(observed.provider, "caddy");
    assert!(observed.unobservable.is_empty());
    assert_eq!(
        without_keys(&observed.resources),
        vec![
            expected[0].clone(),
            Resource::new(
                Kind::Route,
                "other-lab-x",
                json!({"host": "other.lab", "pathPrefix": "/x",
                       "backend": {"urls": ["http://10.0.1.5:80"]},
                       "unrepresented": ["not terminal"]}),
            ),
        ]
    );
    // Live keys: the unique `@id`, else the position in the routes array.
    assert_eq!(
        key_of(&observed, "grafana").as_deref(),
        Some("@id labctl-grafana")
    );
    assert_eq!(key_of(&observed, "other-lab-x").as_deref(), Some("#1"));
    assert!(observed.version.is_some(), "the ETag of the routes read");
}

#[tokio::test]
async fn changes_behind_labctls_back_are_observed() {
    let Some(caddy) = Caddy::start(json!([managed_grafana(), unmanaged_other()])).await else {
        return;
    };
    let provider = caddy.provider();
    let state = desired(&[]);

    // Someone points grafana elsewhere, over TLS.
    let mut changed = managed_grafana();
    changed["handle"][0]["upstreams"][0]["dial"] = json!("10.0.1.221:3443");
    changed["handle"][0]["transport"] = json!({"protocol": "http", "tls": {}});
    caddy
        .call("PATCH", "/id/labctl-grafana", Some(changed))
        .await;
    let observed = provider.observe(&state).await.unwrap();
    let grafana = find(&observed.resources, "grafana").expect("grafana observed");
    assert_eq!(
        grafana.fields.value()["backend"],
        json!({"urls": ["https://10.0.1.221:3443"]})
    );

    // ... then deletes it.
    caddy.call("DELETE", "/id/labctl-grafana", None).await;
    let observed = provider.observe(&state).await.unwrap();
    assert!(find(&observed.resources, "grafana").is_none());
    assert_eq!(observed.resources.len(), 1);

    // ... and adds one of their own, which is not even a proxy: reported, not dropped.
    caddy
        .call(
            "POST",
            ROUTES,
            Some(json!({"match": [{"host": ["new.lab"]}],
                        "handle": [{"handler": "static_response", "body": "hi"}],
                        "terminal": true})),
        )
        .await;
    let observed = provider.observe(&state).await.unwrap();
    let new = find(&observed.resources, "new-lab").expect("new route observed");
    assert_eq!(
        new.fields,
        json!({"host": "new.lab",
               "unrepresented": ["handler `static_response`", "no reverse_proxy handler"]})
    );
}

/// A one-answer-per-connection HTTP backend on loopback.
fn tiny_backend(body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    port
}

#[tokio::test]
async fn apply_creates_updates_and_deletes_then_proxies() {
    let Some(caddy) = Caddy::start(json!([managed_grafana(), unmanaged_other()])).await else {
        return;
    };
    let provider = caddy.provider();
    assert!(provider.can_apply(Kind::Route));
    let backend = tiny_backend("hello from the backend");

    // Git now says: grafana on another port, a new route `app` to the backend, and the
    // hand-written route is to go.
    let mut state = desired(&[(
        "app",
        json!({"host": "app.test", "backend": {"urls": [format!("http://127.0.0.1:{backend}")]}}),
    )]);
    state.devices[0].doc.spec.services[0].port = 3001;
    let expected = provider.expected(&state);
    let base = provider.observe(&state).await.unwrap();
    let changes = vec![
        Change::Update {
            kind: Kind::Route,
            name: "grafana".into(),
            fields: expected[0].fields.value(),
            key: key_of(&base, "grafana"),
        },
        Change::Create {
            kind: Kind::Route,
            name: "app".into(),
            fields: expected[1].fields.value(),
        },
        Change::Delete {
            kind: Kind::Route,
            name: "other-lab-x".into(),
            key: key_of(&base, "other-lab-x"),
        },
    ];
    let started = Instant::now();
    // Planning and applying apart: an instance that never observed applies the plan.
    let report = caddy.provider().apply(&base, &changes).await.unwrap();
    eprintln!("apply took {:?}", started.elapsed());
    assert_eq!(report.applied, changes);

    let observed = provider.observe(&state).await.unwrap();
    assert_eq!(
        sorted(without_keys(&observed.resources)),
        sorted(expected.clone())
    );
    // Written in labctl's shape, grafana kept its place.
    let raw = caddy.routes().await;
    assert_eq!(raw[0]["@id"], "labctl-grafana");
    assert_eq!(
        raw[1],
        json!({"@id": "labctl-app", "match": [{"host": ["app.test"]}],
               "handle": [{"handler": "reverse_proxy",
                           "upstreams": [{"dial": format!("127.0.0.1:{backend}")}]}],
               "terminal": true})
    );

    // The created route really proxies.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = client
        .get(format!("http://127.0.0.1:{}/anything", caddy.http_port))
        .header(reqwest::header::HOST, "app.test")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "hello from the backend");

    // Deleting a managed route; nothing left but `app`.
    let delete = [Change::Delete {
        kind: Kind::Route,
        name: "grafana".into(),
        key: key_of(&observed, "grafana"),
    }];
    provider.apply(&observed, &delete).await.unwrap();
    let observed = provider.observe(&state).await.unwrap();
    assert_eq!(without_keys(&observed.resources), vec![expected[1].clone()]);
}

#[tokio::test]
async fn apply_adopts_a_hand_written_route_with_the_desired_host() {
    let Some(caddy) = Caddy::start(json!([unmanaged_other()])).await else {
        return;
    };
    let provider = caddy.provider();
    let state = desired(&[(
        "other",
        json!({"host": "other.lab", "pathPrefix": "/x", "backend": {"urls": ["http://10.0.1.5"]}}),
    )]);
    let observed = provider.observe(&state).await.unwrap();
    // Matched by host and path: named as desired, drift shown.
    let other = find(&observed.resources, "other").expect("matched by key");
    assert_eq!(
        other.fields.value()["unrepresented"],
        json!(["not terminal"])
    );
    let expected = provider.expected(&state);
    let update = [Change::Update {
        kind: Kind::Route,
        name: "other".into(),
        fields: expected[1].fields.value(),
        key: other.key.clone(),
    }];
    provider.apply(&observed, &update).await.unwrap();
    assert_eq!(caddy.routes().await[0]["@id"], "labctl-other");
    let observed = provider.observe(&state).await.unwrap();
    assert_eq!(without_keys(&observed.resources), vec![expected[1].clone()]);
}

#[tokio::test]
async fn refused_changes_leave_the_routes_unchanged() {
    // Caddy 2.6.2 loads any string as a dial address (it fails only when proxying), so labctl
    // checks backend URLs itself; Caddy's own refusal is provoked with a route of someone
    // else's whose CA file disappears after start: Caddy re-provisions the whole server on
    // every change, fails, answers 500 and keeps the running config.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "").unwrap();
    let theirs = json!({
        "match": [{"host": ["legacy.lab"]}],
        "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": "10.0.1.7:443"}],
                    "transport": {"protocol": "http",
                                  "tls": {"root_ca_pem_files": [ca.to_str().unwrap()]}}}],
        "terminal": true
    });
    let Some(caddy) = Caddy::start_in(dir, json!([managed_grafana(), theirs])).await else {
        return;
    };
    let provider = caddy.provider();
    let before = caddy.routes().await;
    let base = provider.observe(&desired(&[])).await.unwrap();
    let grafana = key_of(&base, "grafana");

    // labctl refuses what Caddy cannot hold, before sending anything.
    let bad_url = [Change::Update {
        kind: Kind::Route,
        name: "grafana".into(),
        fields: json!({"host": "grafana.lab.example",
                       "backend": {"urls": ["http://10.0.1.220:3000/sub"]}}),
        key: grafana.clone(),
    }];
    let err = provider.apply(&base, &bad_url).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Rejected { detail, .. } if detail.contains("/sub")),
        "{err}"
    );
    assert_eq!(caddy.routes().await, before);

    // Caddy refuses; the batch (a good create and a delete) is all or none.
    std::fs::remove_file(&ca).unwrap();
    let batch = [
        Change::Create {
            kind: Kind::Route,
            name: "app".into(),
            fields: json!({"host": "app.test", "backend": {"urls": ["http://127.0.0.1:9"]}}),
        },
        Change::Delete {
            kind: Kind::Route,
            name: "grafana".into(),
            key: grafana,
        },
    ];
    let err = provider.apply(&base, &batch).await.unwrap_err();
    eprintln!("refused: {err}");
    assert!(
        matches!(&err, ProviderError::Rejected { detail, .. } if detail.contains("ca cert")),
        "{err}"
    );
    assert_eq!(caddy.routes().await, before);

    // A Create of a name that is already live means the diff is stale.
    let dup = [Change::Create {
        kind: Kind::Route,
        name: "grafana".into(),
        fields: json!({"host": "g.lab", "backend": {"urls": ["http://10.0.0.1:1"]}}),
    }];
    let err = provider.apply(&base, &dup).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Rejected { detail, .. } if detail.contains("run again")),
        "{err}"
    );
}

/// Reads one HTTP/1.1 request (headers and a `Content-Length` body) from `stream`.
fn read_request(stream: &mut std::net::TcpStream) -> Vec<u8> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if data.len() >= end + 4 + len {
                return data;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return data,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends `request` to `port` on a connection it closes, and returns the whole answer.
fn forward(port: u16, request: &[u8]) -> Vec<u8> {
    let mut upstream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head_end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&request[..head_end]);
    let mut lines = head.split("\r\n");
    let mut out = format!("{}\r\n", lines.next().unwrap());
    for line in lines {
        let lower = line.to_ascii_lowercase();
        if !lower.starts_with("host:") && !lower.starts_with("connection:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    // Caddy's admin API refuses Host headers other than its listen address; asking it to
    // close after answering makes the answer end at EOF.
    out.push_str(&format!(
        "Host: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    ));
    upstream.write_all(out.as_bytes()).unwrap();
    upstream.write_all(&request[head_end + 4..]).unwrap();
    let mut answer = Vec::new();
    upstream.read_to_end(&mut answer).unwrap();
    answer
}

/// A proxy in front of Caddy's admin API that, just before forwarding the first PATCH, lets
/// "someone else" append `theirs` to the routes: the race a lost update comes from.
fn racing_proxy(admin_port: u16, theirs: Json) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut raced = false;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let request = read_request(&mut stream);
            if request.starts_with(b"PATCH ") && !raced {
                raced = true;
                let body = theirs.to_string();
                let post = format!(
                    "POST {ROUTES} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let answer = forward(admin_port, post.as_bytes());
                assert!(answer.starts_with(b"HTTP/1.1 200"));
            }
            let answer = forward(admin_port, &request);
            let _ = stream.write_all(&answer);
        }
    });
    port
}

#[tokio::test]
async fn a_concurrent_edit_is_not_lost() {
    let Some(caddy) = Caddy::start(json!([managed_grafana()])).await else {
        return;
    };
    let admin_port: u16 = caddy.admin.rsplit(':').next().unwrap().parse().unwrap();
    let theirs = json!({"@id": "theirs", "match": [{"host": ["theirs.lab"]}],
                        "handle": [{"handler": "static_response"}], "terminal": true});
    let proxy = racing_proxy(admin_port, theirs.clone());
    let cfg: Settings = serde_json::from_value(json!({
        "name": "caddy", "url": format!("http://127.0.0.1:{proxy}")
    }))
    .unwrap();
    let provider = CaddyProvider::new(&cfg).unwrap();
    let create = [Change::Create {
        kind: Kind::Route,
        name: "app".into(),
        fields: json!({"host": "app.test", "backend": {"urls": ["http://127.0.0.1:9"]}}),
    }];
    let state = desired(&[]);
    let base = provider.observe(&state).await.unwrap();
    let err = provider.apply(&base, &create).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Stale { detail, .. } if detail.contains("changed concurrently, run again")),
        "{err}"
    );
    // Their route survived and ours was not written over it.
    assert_eq!(caddy.routes().await, json!([managed_grafana(), theirs]));
    // Run again: the proxy no longer races, and the create goes through.
    let base = provider.observe(&state).await.unwrap();
    provider.apply(&base, &create).await.unwrap();
    assert_eq!(caddy.routes().await[2]["@id"], "labctl-app");
}

#[tokio::test]
async fn an_edit_between_observe_and_apply_is_refused_not_overwritten() {
    let Some(caddy) = Caddy::start(json!([managed_grafana(), unmanaged_other()])).await else {
        return;
    };
    let state = desired(&[]);
    let base = caddy.provider().observe(&state).await.unwrap();
    let delete = [Change::Delete {
        kind: Kind::Route,
        name: "other-lab-x".into(),
        key: key_of(&base, "other-lab-x"),
    }];
    // Someone else puts a route first: `#1` is now grafana, not their old route.
    let theirs = json!({"@id": "theirs", "match": [{"host": ["theirs.lab"]}],
                        "handle": [{"handler": "static_response"}], "terminal": true});
    caddy
        .call("PUT", &format!("{ROUTES}/0"), Some(theirs.clone()))
        .await;
    let before = caddy.routes().await;
    let err = caddy.provider().apply(&base, &delete).await.unwrap_err();
    assert!(matches!(&err, ProviderError::Stale { .. }), "{err}");
    assert_eq!(caddy.routes().await, before);
    assert_eq!(before[0], theirs);
}

/// A `server:` Caddy does not have is a configuration error that makes every route unknown —
/// never "no routes", which would report every live route missing.
#[tokio::test]
async fn missing_server_is_unknown_and_cannot_be_applied_to() {
    let Some(caddy) = Caddy::start(json!([])).await else {
        return;
    };
    let cfg: Settings = serde_json::from_value(json!({
        "name": "caddy", "url": caddy.admin, "server": "nope"
    }))
    .unwrap();
    let provider = CaddyProvider::new(&cfg).unwrap();
    let state = desired(&[]);
    let err = provider.observe(&state).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Config { detail, .. } if detail.contains("no HTTP server `nope`") && detail.contains("check `server:`")),
        "{err}"
    );
    let create = [Change::Create {
        kind: Kind::Route,
        name: "app".into(),
        fields: json!({"host": "app.test", "backend": {"urls": ["http://127.0.0.1:9"]}}),
    }];
    // Even given an observation of the real server, apply to `nope` refuses.
    let base = caddy.provider().observe(&state).await.unwrap();
    let err = provider.apply(&base, &create).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Rejected { detail, .. } if detail.contains("no HTTP server `nope`")),
        "{err}"
    );
    // The real server has an empty routes array: a create goes through.
    let provider = caddy.provider();
    let base = provider.observe(&state).await.unwrap();
    provider.apply(&base, &create).await.unwrap();
    assert_eq!(provider.observe(&state).await.unwrap().resources.len(), 1);
}

#[tokio::test]
async fn stopped_caddy_is_unreachable_quickly() {
    let Some(mut caddy) = Caddy::start(json!([managed_grafana()])).await else {
        return;
    };
    let provider = caddy.provider();
    caddy.stop();
    let err = provider.observe(&desired(&[])).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unreachable { .. }), "{err}");
    assert!(err.is_transient());
    // Quick because the refused connection is the answer: no attempt waits for its timeout.
    assert!(format!("{err}").contains("Connection refused"), "{err}");
}

/// A rewrite of the first route of a routes answer.
type Lie = fn(&mut Json);

#[tokio::test]
async fn routes_of_the_wrong_shape_are_unknown_and_never_written_back() {
    let Some(caddy) = Caddy::start(json!([managed_grafana(), unmanaged_other()])).await else {
        return;
    };
    let proxy = Lying::start(caddy.admin.trim_end_matches('/')).await;
    let cfg: Settings = serde_json::from_value(json!({
        "name": "caddy", "url": proxy.url, "timeoutSeconds": 5
    }))
    .unwrap();
    let p = CaddyProvider::new(&cfg).unwrap();
    let state = desired(&[]);
    let base = p.observe(&state).await.expect("the truth reads");
    let lies: [(Lie, &str); 3] = [
        (
            |r| r["match"] = json!({"host": ["grafana.lab.example"]}),
            "Caddy routes: routes[0].match is an object, expected an array",
        ),
        (
            |r| r["match"][0]["host"] = json!("grafana.lab.example"),
            "routes[0].match[0].host is a string, expected an array",
        ),
        (
            |r| r["handle"][0]["upstreams"][0]["dial"] = json!(3000),
            "routes[0].handle[0].upstreams[0].dial is a number, expected a string",
        ),
    ];
    let create = Change::Create {
        kind: Kind::Route,
        name: "new".into(),
        fields: json!({"host": "new.lab.example", "backend": {"urls": ["http://10.0.1.9:80"]}}),
    };
    for (lie, says) in lies {
        proxy.lie(move |heard, answer| {
            if heard.path.ends_with("/routes") {
                lie(&mut answer[0]);
            }
        });
        let err = p.observe(&state).await.unwrap_err();
        assert!(
            matches!(&err, ProviderError::BadResponse { detail, .. } if detail.contains(says)),
            "{says}: {err}"
        );
        let before = proxy.heard().len();
        assert!(p.apply(&base, std::slice::from_ref(&create)).await.is_err());
        let sent = proxy.heard()[before..].to_vec();
        assert!(sent.iter().all(|h| h.method == "GET"), "{says}: {sent:?}");
    }
    assert_eq!(
        caddy.routes().await,
        json!([managed_grafana(), unmanaged_other()])
    );
}
