//! The Kea provider against a real Kea DHCPv4 2.2 server and Control Agent, started per test on
//! free loopback ports (no root, no NIC: UDP sockets on `lo`). Without the Kea binaries the
//! tests print "skipped", unless CI=true, where they fail.

use std::net::TcpListener;
use std::time::Instant;

use crate::support::kea::Kea;
use crate::support::without_keys;
use labctl::model::{DesiredState, DhcpReservationDoc, Kind, Located, Origin, SecretSource};
use labctl::providers::kea::{KeaProvider, Settings};
use labctl::providers::{Change, Provider, ProviderError, Reobserved, Resource};
use serde_json::{json, Value as Json};

/// The provider under test, talking to this Kea.
trait KeaExt {
    fn provider(&self, write_config: bool) -> KeaProvider;
}

impl KeaExt for Kea {
    fn provider(&self, write_config: bool) -> KeaProvider {
        KeaProvider::new(&provider_config(&self.url, write_config, None)).unwrap()
    }
}
fn provider_config(url: &str, write_config: bool, token: Option<SecretSource>) -> Settings {
    Settings {
        name: "kea".into(),
        url: url.into(),
        token,
        tls: None,
        write_config,
        timeout_seconds: Some(2),
        max_body_bytes: None,
    }
}

fn reservation(
    name: &str,
    subnet: &str,
    mac: &str,
    ip: &str,
    hostname: &str,
    options: &[(&str, &str)],
) -> Located<DhcpReservationDoc> {
    let options: Vec<Json> = options
        .iter()
        .map(|(name, data)| json!({ "name": name, "data": data }))
        .collect();
    // Through serde, as a document is read: new optional metadata fields need no change here.
    let doc = serde_json::from_value(json!({
        "apiVersion": "labctl.dev/v1",
        "kind": "DhcpReservation",
        "metadata": { "name": name },
        "spec": { "subnet": subnet, "mac": mac, "ip": ip, "hostname": hostname,
                  "options": options }
    }))
    .unwrap();
    Located {
        doc,
        origin: Origin {
            file: format!("dhcp/{name}.yaml"),
            line: 1,
        },
    }
}

fn desired(reservations: Vec<Located<DhcpReservationDoc>>) -> DesiredState {
    DesiredState {
        reservations,
        ..Default::default()
    }
}

fn resource(name: &str, fields: Json) -> Resource {
    Resource::new(Kind::DhcpReservation, name, fields)
}

fn sorted(mut resources: Vec<Resource>) -> Vec<Resource> {
    resources.sort_by(|a, b| a.name.cmp(&b.name));
    resources
}

/// The changes that bring `observed` to `expected`, compared by name and fields (what the
/// generic diff does).
fn changes(expected: &[Resource], observed: &[Resource]) -> Vec<Change> {
    let mut out = Vec::new();
    for e in expected {
        match observed.iter().find(|o| o.name == e.name) {
            None => out.push(Change::Create {
                kind: e.kind,
                name: e.name.clone(),
                fields: e.fields.value(),
            }),
            Some(o) if o.fields != e.fields => out.push(Change::Update {
                kind: e.kind,
                name: e.name.clone(),
                fields: e.fields.value(),
                key: o.key.clone(),
            }),
            Some(_) => {}
        }
    }
    for o in observed {
        if !expected.iter().any(|e| e.name == o.name) {
            out.push(Change::Delete {
                kind: o.kind,
                name: o.name.clone(),
                key: o.key.clone(),
            });
        }
    }
    out
}

/// `dhcp4` without any subnet's reservations: what apply must leave as it was.
fn without_reservations(mut dhcp4: Json) -> Json {
    for subnet in dhcp4["subnet4"].as_array_mut().unwrap() {
        subnet.as_object_mut().unwrap().remove("reservations");
    }
    dhcp4
}

/// The live reservations of the standard lab: a NAS with an option, a printer.
fn lab_subnet1() -> Json {
    json!([
        { "hw-address": "BC:24:11:00:00:01", "ip-address": "10.0.1.10", "hostname": "nas",
          "option-data": [{ "name": "domain-name-servers", "data": "10.0.1.1, 10.0.1.2" }] },
        { "hw-address": "bc:24:11:00:00:02", "ip-address": "10.0.1.11", "hostname": "printer" }
    ])
}

/// A camera Kea does not have yet.
fn camera(options: &[(&str, &str)]) -> Located<DhcpReservationDoc> {
    reservation(
        "camera",
        "10.0.1.0/24",
        "bc:24:11:00:00:04",
        "10.0.1.30",
        "camera",
        options,
    )
}

/// The desired counterparts of [`lab_subnet1`]; the NAS document is not named after its
/// hostname, so only the MAC can match it.
fn lab_desired() -> Vec<Located<DhcpReservationDoc>> {
    vec![
        reservation(
            "storage-box",
            "10.0.1.0/24",
            "BC-24-11-00-00-01",
            "10.0.1.10",
            "nas",
            &[("domain-name-servers", "10.0.1.1, 10.0.1.2")],
        ),
        reservation(
            "printer",
            "10.0.1.0/24",
            "bc:24:11:00:00:02",
            "10.0.1.11",
            "printer",
            &[],
        ),
    ]
}

#[tokio::test]
async fn observe_normalises_and_names_live_reservations() {
    let mut subnet1 = lab_subnet1();
    let extra = subnet1.as_array_mut().unwrap();
    extra.push(
        json!({ "hw-address": "bc:24:11:00:00:05", "ip-address": "10.0.1.15",
                       "hostname": "Gamma.Lab" }),
    );
    // Same hostname as a desired document, different MAC: must not take that name.
    extra.push(
        json!({ "hw-address": "bc:24:11:00:00:06", "ip-address": "10.0.1.16",
                       "hostname": "printer" }),
    );
    let subnet2 = json!([{ "hw-address": "bc:24:11:00:00:07", "ip-address": "10.0.2.7" }]);
    let Some(kea) = Kea::start(subnet1, subnet2).await else {
        return;
    };
    let mut wanted = lab_desired();
    wanted.push(reservation(
        "missing-host",
        "10.0.1.0/24",
        "bc:24:11:00:00:09",
        "10.0.1.19",
        "missing",
        &[],
    ));
    let desired = desired(wanted);
    let provider = kea.provider(false);

    let started = Instant::now();
    let observation = provider.observe(&desired).await.unwrap();
    eprintln!("observe took {:?}", started.elapsed());
    assert_eq!(observation.provider, "kea");
    assert!(observation.unobservable.is_empty());
    assert!(observation.version.is_some());

    let expected = provider.expected(&desired);
    let want = sorted(vec![
        expected[0].clone(),
        expected[1].clone(),
        resource(
            "gamma",
            json!({ "subnet": "10.0.1.0/24", "mac": "bc:24:11:00:00:05", "ip": "10.0.1.15",
                    "hostname": "Gamma.Lab" }),
        ),
        resource(
            "printer-2",
            json!({ "subnet": "10.0.1.0/24", "mac": "bc:24:11:00:00:06", "ip": "10.0.1.16",
                    "hostname": "printer" }),
        ),
        resource(
            "bc-24-11-00-00-07",
            json!({ "subnet": "10.0.2.0/24", "mac": "bc:24:11:00:00:07", "ip": "10.0.2.7" }),
        ),
    ]);
    assert_eq!(without_keys(&observation.resources), want);
    // Exactly the expected shape: MAC lowercase with colons, Kea's defaults gone, options
    // reduced to name and data, no `options` where there are none.
    assert_eq!(
        expected[0],
        resource(
            "storage-box",
            json!({ "subnet": "10.0.1.0/24", "mac": "bc:24:11:00:00:01", "ip": "10.0.1.10",
                    "hostname": "nas",
                    "options": [{ "name": "domain-name-servers", "data": "10.0.1.1, 10.0.1.2" }] })
        )
    );
    assert!(!observation
        .resources
        .iter()
        .any(|r| r.name == "missing-host"));
    // Each live reservation carries its key in Kea, for changes to name what they target.
    let storage = observation
        .resources
        .iter()
        .find(|r| r.name == "storage-box")
        .unwrap();
    assert_eq!(
        storage.key.as_deref(),
        Some("10.0.1.0/24 hw-address bc:24:11:00:00:01")
    );
}

#[tokio::test]
async fn edits_behind_labctls_back_are_observed() {
    let Some(kea) = Kea::start(lab_subnet1(), json!([])).await else {
        return;
    };
    let desired = desired(lab_desired());
    let provider = kea.provider(false);
    let before = provider.observe(&desired).await.unwrap();
    assert_eq!(
        without_keys(&before.resources),
        sorted(provider.expected(&desired))
    );
    assert!(changes(&provider.expected(&desired), &before.resources).is_empty());

    // Handed back while Kea holds the same configuration, the last observation is the
    // answer, not read again: one doctored here comes back as it is, observed now.
    let mut doctored = before.clone();
    doctored.resources.truncate(1);
    doctored.observed_at = 0;
    let again = match provider.observe_again(&desired, doctored.clone()).await {
        Ok(Reobserved::Unchanged(again)) => again,
        other => panic!("expected the observation back, unchanged: {other:?}"),
    };
    assert_eq!(
        (&again.resources, &again.version),
        (&doctored.resources, &before.version)
    );
    assert!(again.observed_at >= before.observed_at);

    // Someone changes the printer's address, deletes the NAS and adds a laptop.
    let mut dhcp4 = kea.config().await;
    let list = dhcp4["subnet4"][0]["reservations"].as_array_mut().unwrap();
    list.retain(|r| r["hw-address"] != "bc:24:11:00:00:01");
    for r in list.iter_mut() {
        if r["hw-address"] == "bc:24:11:00:00:02" {
            r["ip-address"] = json!("10.0.1.12");
        }
    }
    list.push(
        json!({ "hw-address": "bc:24:11:00:00:08", "ip-address": "10.0.1.18",
                      "hostname": "laptop" }),
    );
    kea.set_config(dhcp4).await;

    let after = provider.observe(&desired).await.unwrap();
    // Another configuration: what was handed back is not the answer.
    let again = match provider.observe_again(&desired, doctored).await {
        Ok(Reobserved::Fresh(again)) => again,
        other => panic!("expected a fresh observation: {other:?}"),
    };
    assert_eq!(
        (&again.resources, &again.version),
        (&after.resources, &after.version)
    );
    assert_ne!(after.version, before.version);
    assert_eq!(
        without_keys(&after.resources),
        vec![
            resource(
                "laptop",
                json!({ "subnet": "10.0.1.0/24", "mac": "bc:24:11:00:00:08", "ip": "10.0.1.18",
                        "hostname": "laptop" })
            ),
            resource(
                "printer",
                json!({ "subnet": "10.0.1.0/24", "mac": "bc:24:11:00:00:02", "ip": "10.0.1.12",
                        "hostname": "printer" })
            ),
        ]
    );
}

#[tokio::test]
async fn apply_creates_updates_and_deletes_and_leaves_the_rest() {
    let mut subnet1 = lab_subnet1();
    subnet1.as_array_mut().unwrap().push(json!({
        "hw-address": "bc:24:11:00:00:03", "ip-address": "10.0.1.13", "hostname": "old-box" }));
    let Some(kea) = Kea::start(subnet1, json!([])).await else {
        return;
    };
    let desired = desired(vec![
        // Update: new address, hostname and options.
        reservation(
            "storage-box",
            "10.0.1.0/24",
            "bc:24:11:00:00:01",
            "10.0.1.20",
            "nas2",
            &[
                ("domain-name-servers", "10.0.1.1"),
                ("domain-name", "lab.example"),
            ],
        ),
        // Unchanged.
        reservation(
            "printer",
            "10.0.1.0/24",
            "bc:24:11:00:00:02",
            "10.0.1.11",
            "printer",
            &[],
        ),
        // Create, in each subnet.
        camera(&[("routers", "10.0.1.1")]),
        reservation(
            "backup",
            "10.0.2.0/24",
            "bc:24:11:00:00:0a",
            "10.0.2.5",
            "backup",
            &[],
        ),
        // old-box is not desired: Delete.
    ]);
    let provider = kea.provider(true);
    let config_before = kea.config().await;
    let observed = provider.observe(&desired).await.unwrap();
    let expected = provider.expected(&desired);
    let plan = changes(&expected, &observed.resources);
    assert_eq!(plan.len(), 4, "{plan:#?}");
    assert!(plan
        .iter()
        .any(|c| matches!(c, Change::Delete { name, .. } if name == "old-box")));

    let started = Instant::now();
    let report = provider.apply(&observed, &plan).await.unwrap();
    eprintln!(
        "apply of {} changes took {:?}",
        plan.len(),
        started.elapsed()
    );
    assert_eq!(report.applied, plan);

    // The observation is out of date now: applying against it again is refused.
    let err = provider.apply(&observed, &plan).await.unwrap_err();
    assert!(matches!(&err, ProviderError::Stale { .. }), "{err}");

    // No drift: the live state is now exactly the expected one.
    let again = provider.observe(&desired).await.unwrap();
    assert_eq!(without_keys(&again.resources), sorted(expected.clone()));
    assert!(changes(&expected, &again.resources).is_empty());

    // Everything but the reservations is as it was: the second subnet, valid-lifetime, …
    let config_after = kea.config().await;
    assert_eq!(
        without_reservations(config_after.clone()),
        without_reservations(config_before)
    );
    assert_eq!(config_after["valid-lifetime"], 4000);
    assert_eq!(config_after["subnet4"][1]["subnet"], "10.0.2.0/24");

    // write_config: the file Kea was started from now holds the new reservations.
    let on_disk = std::fs::read_to_string(&kea.conf).unwrap();
    assert!(on_disk.contains("bc:24:11:00:00:04"), "{on_disk}");
    assert!(!on_disk.contains("bc:24:11:00:00:03"), "{on_disk}");
}

#[tokio::test]
async fn apply_is_refused_when_kea_changed_since_observe() {
    let Some(kea) = Kea::start(lab_subnet1(), json!([])).await else {
        return;
    };
    let mut wanted = lab_desired();
    wanted.push(camera(&[]));
    let desired = desired(wanted);
    let provider = kea.provider(false);
    let observed = provider.observe(&desired).await.unwrap();
    let plan = changes(&provider.expected(&desired), &observed.resources);
    assert_eq!(plan.len(), 1);

    // Someone else edits Kea in between (not even a reservation).
    let mut dhcp4 = kea.config().await;
    dhcp4["valid-lifetime"] = json!(5000);
    kea.set_config(dhcp4).await;

    // Applied by another instance, as a separate process would: only the observation travels.
    let err = kea
        .provider(false)
        .apply(&observed, &plan)
        .await
        .unwrap_err();
    match &err {
        ProviderError::Stale { detail, .. } => assert!(
            detail.contains(observed.version.as_deref().unwrap()) && detail.contains("run again"),
            "{detail}"
        ),
        other => panic!("expected Stale, got {other:?}"),
    }
    let now = kea.config().await;
    assert_eq!(now["valid-lifetime"], 5000);
    assert!(!now.to_string().contains("bc:24:11:00:00:04"));

    // Against a fresh observation the same plan goes through.
    let fresh = provider.observe(&desired).await.unwrap();
    provider.apply(&fresh, &plan).await.unwrap();
    assert!(kea.config().await.to_string().contains("bc:24:11:00:00:04"));
}

#[tokio::test]
async fn a_fresh_instance_applies_given_only_the_observation() {
    let Some(kea) = Kea::start(lab_subnet1(), json!([])).await else {
        return;
    };
    // The NAS moves, the printer is no longer wanted, a camera is new.
    let mut nas = lab_desired().remove(0);
    nas.doc.spec.ip = "10.0.1.20".parse().unwrap();
    let desired = desired(vec![nas, camera(&[])]);
    let observed = kea.provider(false).observe(&desired).await.unwrap();
    let expected = kea.provider(false).expected(&desired);
    let plan = changes(&expected, &observed.resources);
    assert_eq!(plan.len(), 3, "{plan:#?}");

    // Planning and applying apart: an instance that never observed applies the plan.
    let applier = kea.provider(false);
    let report = applier.apply(&observed, &plan).await.unwrap();
    assert_eq!(report.applied, plan);
    let after = applier.observe(&desired).await.unwrap();
    assert_eq!(without_keys(&after.resources), sorted(expected.clone()));
    let live = kea.config().await.to_string();
    assert!(!live.contains("bc:24:11:00:00:02"), "{live}");
}

#[tokio::test]
async fn a_bad_change_is_refused_by_config_test_and_nothing_changes() {
    let Some(kea) = Kea::start(lab_subnet1(), json!([])).await else {
        return;
    };
    let mut wanted = lab_desired();
    wanted.push(camera(&[]));
    // Outside its subnet: only Kea's config-test can say so.
    wanted.push(reservation(
        "stray",
        "10.0.1.0/24",
        "bc:24:11:00:00:0b",
        "10.0.2.50",
        "stray",
        &[],
    ));
    let desired = desired(wanted);
    let provider = kea.provider(false);
    let config_before = kea.config().await;
    let observed = provider.observe(&desired).await.unwrap();
    let plan = changes(&provider.expected(&desired), &observed.resources);
    assert_eq!(plan.len(), 2);

    let err = provider.apply(&observed, &plan).await.unwrap_err();
    match &err {
        ProviderError::Rejected { detail, .. } => assert!(
            detail.contains("specified reservation '10.0.2.50' is not within the IPv4 subnet"),
            "{detail}"
        ),
        other => panic!("expected Rejected, got {other:?}"),
    }
    // All or nothing: not even the good reservation was set.
    assert_eq!(kea.config().await, config_before);

    // A subnet Kea does not serve is refused before Kea is asked.
    let far = Change::Create {
        kind: Kind::DhcpReservation,
        name: "far".into(),
        fields: json!({ "subnet": "10.9.0.0/24", "mac": "bc:24:11:00:00:0c", "ip": "10.9.0.2",
                        "hostname": "far" }),
    };
    let err = provider.apply(&observed, &[far]).await.unwrap_err();
    assert!(err.to_string().contains("no subnet 10.9.0.0/24"), "{err}");
    assert_eq!(kea.config().await, config_before);
}

#[tokio::test]
async fn a_stopped_kea_is_unreachable_quickly() {
    let Some(mut kea) = Kea::start(lab_subnet1(), json!([])).await else {
        return;
    };
    let desired = desired(lab_desired());
    let mut cfg = provider_config(&kea.url, false, None);
    cfg.timeout_seconds = Some(1);
    let provider = KeaProvider::new(&cfg).unwrap();
    provider.observe(&desired).await.unwrap();

    kea.stop();
    let err = provider.observe(&desired).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unreachable { .. }), "{err:?}");
    assert!(err.is_transient());
    // Quick because the refused connection is the answer: no attempt waits for its timeout.
    assert!(format!("{err}").contains("Connection refused"), "{err}");
}

#[tokio::test]
async fn basic_auth_is_sent_from_the_token_source() {
    let Some(kea) = Kea::start_with(lab_subnet1(), json!([]), Some(("labctl", "s3cret"))).await
    else {
        return;
    };
    let desired = desired(lab_desired());

    let anonymous = kea.provider(false);
    let err = anonymous.observe(&desired).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Authentication { .. }),
        "{err:?}"
    );

    let token = kea.dir.path().join("kea.token");
    std::fs::write(&token, "labctl:s3cret\n").unwrap();
    let cfg = provider_config(&kea.url, false, Some(SecretSource::File(token.clone())));
    let provider = KeaProvider::new(&cfg).unwrap();
    let observed = provider.observe(&desired).await.unwrap();
    assert_eq!(observed.resources.len(), 2);

    std::fs::write(&token, "labctl:wrong").unwrap();
    let wrong = KeaProvider::new(&provider_config(
        &kea.url,
        false,
        Some(SecretSource::File(token)),
    ))
    .unwrap();
    let err = wrong.observe(&desired).await.unwrap_err();
    assert!(
        !err.to_string().contains("wrong"),
        "the secret leaked: {err}"
    );
    assert!(
        matches!(err, ProviderError::Authentication { .. }),
        "{err:?}"
    );
}

/// A stand-in for something that is not a Kea Control Agent: answers every request with
/// `status` and `body`.
fn canned(status: &'static str, body: &'static str) -> String {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            // Read the whole request first, or the client may see a reset instead of the answer.
            let mut request = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stream.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let answer = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    url
}

#[tokio::test]
async fn answers_that_are_not_keas_are_bad_responses() {
    let desired = desired(lab_desired());
    let cases = [
        ("200 OK", "<html>not json</html>", "not JSON"),
        (
            "200 OK",
            r#"{"result": 400, "text": "Bad Request"}"#,
            "JSON array",
        ),
        (
            "200 OK",
            r#"[{"result": 1, "text": "boom"}]"#,
            "result 1: boom",
        ),
        (
            "200 OK",
            r#"[{"result": 0, "arguments": {}}]"#,
            "no `Dhcp4`",
        ),
        ("500 Internal Server Error", "oops", "HTTP 500"),
    ];
    for (status, body, says) in cases {
        let url = canned(status, body);
        let provider = KeaProvider::new(&provider_config(&url, false, None)).unwrap();
        let err = provider.observe(&desired).await.unwrap_err();
        assert!(
            matches!(&err, ProviderError::BadResponse { detail, .. } if detail.contains(says)),
            "{body}: {err:?}"
        );
        assert!(!err.is_transient());
    }
    let url = canned("403 Forbidden", "");
    let provider = KeaProvider::new(&provider_config(&url, false, None)).unwrap();
    let err = provider.observe(&desired).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Authentication { .. }),
        "{err:?}"
    );
}
