use serde_json::json;

use super::*;
use crate::providers::{Observation, ProviderError, Resource, Unreadable};

fn res(kind: Kind, name: &str, fields: Json) -> Resource {
    Resource::new(kind, name, fields)
}

fn input(expected: Vec<Resource>, live: Vec<Resource>) -> ProviderInput {
    ProviderInput {
        provider: "kea".into(),
        expected: expected.into(),
        observed: Ok(Observation {
            provider: "kea".into(),
            observed_at: 0,
            resources: live,
            unobservable: vec![],
            details: Default::default(),
            declared_elsewhere: Default::default(),
            version: None,
            hosts: Vec::new(),
        }),
        can_apply: [Kind::DhcpReservation].into(),
        // As Kea says: the addresses matter most.
        severities: &[
            (
                Kind::DhcpReservation,
                &["ip", "mac", "subnet"],
                Severity::High,
            ),
            (Kind::DhcpReservation, &["options"], Severity::Medium),
        ],
    }
}

fn r(ip: &str) -> Json {
    json!({"subnet": "10.0.1.0/24", "mac": "bc:24:11:00:00:01", "ip": ip, "hostname": "a"})
}

fn apply_rules() -> Rules {
    Rules {
        policy: [(Kind::DhcpReservation, Policy::Apply)].into(),
        ..Default::default()
    }
}

#[test]
fn identical_state_has_no_drift() {
    let plan = diff(
        &[input(
            vec![res(Kind::DhcpReservation, "a", r("10.0.1.5"))],
            vec![res(Kind::DhcpReservation, "a", r("10.0.1.5"))],
        )],
        &Rules::default(),
    );
    assert!(plan.deviations.is_empty());
    assert!(!plan.has_drift());
}

#[test]
fn missing_unmanaged_and_drifted_field() {
    let plan = diff(
        &[input(
            vec![
                res(Kind::DhcpReservation, "a", r("10.0.1.5")),
                res(Kind::DhcpReservation, "b", r("10.0.1.6")),
            ],
            vec![
                res(Kind::DhcpReservation, "a", r("10.0.1.9")),
                res(Kind::DhcpReservation, "c", r("10.0.1.7")),
            ],
        )],
        &Rules::default(),
    );
    let summary: Vec<(String, &str, DeviationType, Severity)> = plan
        .deviations
        .iter()
        .map(|d| (d.name.clone(), d.field_path.as_str(), d.dtype, d.severity))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "a".into(),
                "spec.ip",
                DeviationType::Drifted,
                Severity::High
            ),
            ("b".into(), "", DeviationType::Missing, Severity::High),
            ("c".into(), "", DeviationType::Unmanaged, Severity::Medium),
        ]
    );
    assert_eq!(plan.deviations[0].expected, Some(json!("10.0.1.5")));
    assert_eq!(plan.deviations[0].actual, Some(json!("10.0.1.9")));
    // Observe policy: reported, nothing to change.
    assert!(plan.changes.is_empty());
    assert!(plan.deviations[0].remediation.contains("set policy apply"));
}

#[test]
fn apply_policy_plans_create_update_delete() {
    let plan = diff(
        &[input(
            vec![
                res(Kind::DhcpReservation, "a", r("10.0.1.5")),
                res(Kind::DhcpReservation, "b", r("10.0.1.6")),
            ],
            vec![
                res(Kind::DhcpReservation, "a", r("10.0.1.9")),
                res(Kind::DhcpReservation, "c", r("10.0.1.7")),
            ],
        )],
        &apply_rules(),
    );
    let changes = &plan.changes["kea"];
    assert_eq!(
        changes,
        &vec![
            Change::Delete {
                kind: Kind::DhcpReservation,
                name: "c".into(),
                key: None
            },
            Change::Update {
                kind: Kind::DhcpReservation,
                name: "a".into(),
                fields: r("10.0.1.5"),
                key: None
            },
            Change::Create {
                kind: Kind::DhcpReservation,
                name: "b".into(),
                fields: r("10.0.1.6")
            },
        ]
    );
    assert!(plan.deviations.iter().all(|d| d.auto_correctable));
}

#[test]
fn a_failed_observation_makes_everything_unknown_and_changes_nothing() {
    let mut i = input(vec![res(Kind::DhcpReservation, "a", r("10.0.1.5"))], vec![]);
    i.observed = Err(ProviderError::Unreachable {
        provider: "kea".into(),
        url: "http://127.0.0.1:1".into(),
        detail: "connection refused".into(),
        source: None,
    });
    let plan = diff(&[i], &apply_rules());
    assert_eq!(plan.deviations.len(), 1);
    assert_eq!(plan.deviations[0].dtype, DeviationType::Unknown);
    assert!(!plan.deviations[0].auto_correctable);
    assert!(plan.changes.is_empty());
    assert!(!plan.has_drift());
    assert!(plan.unobservable["kea"].contains("connection refused"));
}

#[test]
fn unreadable_resource_is_unknown_not_missing() {
    let mut i = input(vec![res(Kind::DhcpReservation, "a", r("10.0.1.5"))], vec![]);
    if let Ok(o) = &mut i.observed {
        o.unobservable.push(Unreadable::resource(
            Kind::DhcpReservation,
            "a",
            "config call failed",
        ));
    }
    let plan = diff(&[i], &apply_rules());
    assert_eq!(plan.deviations[0].dtype, DeviationType::Unknown);
    assert!(plan.changes.is_empty());
}

#[test]
fn ignored_fields_are_reported_and_kept_live_on_update() {
    let mut expected = r("10.0.1.5");
    expected["hostname"] = json!("a.lab");
    let mut live = r("10.0.1.9");
    live["hostname"] = json!("set-by-dhcp-client");
    let mut rules = apply_rules();
    rules.ignore.push(IgnoreRule {
        kind: Kind::DhcpReservation,
        name: None,
        fields: vec!["spec.hostname".into()],
        reason: "clients set their own names".into(),
    });
    let plan = diff(
        &[input(
            vec![res(Kind::DhcpReservation, "a", expected)],
            vec![res(Kind::DhcpReservation, "a", live)],
        )],
        &rules,
    );
    assert_eq!(plan.deviations.len(), 1);
    assert_eq!(plan.deviations[0].field_path, "spec.ip");
    assert_eq!(plan.ignored[0].field_path, "spec.hostname");
    assert_eq!(plan.ignored[0].reason, "clients set their own names");
    match &plan.changes["kea"][0] {
        Change::Update { fields, .. } => {
            assert_eq!(fields["ip"], json!("10.0.1.5"));
            assert_eq!(fields["hostname"], json!("set-by-dhcp-client"));
        }
        other => panic!("expected an update, got {other:?}"),
    }
}

#[test]
fn suspended_resources_are_reported_but_never_changed() {
    let mut rules = apply_rules();
    rules.suspend.push((
        Kind::DhcpReservation,
        Some("a".into()),
        "maintenance".into(),
    ));
    let plan = diff(
        &[input(
            vec![res(Kind::DhcpReservation, "a", r("10.0.1.5"))],
            vec![res(Kind::DhcpReservation, "a", r("10.0.1.9"))],
        )],
        &rules,
    );
    assert_eq!(plan.deviations.len(), 1);
    assert!(plan.deviations[0].suspended);
    assert!(plan.changes.is_empty());
}

#[test]
fn nested_objects_diff_per_field_and_empty_equals_absent() {
    let plan = diff(
        &[input(
            vec![res(
                Kind::DhcpReservation,
                "a",
                json!({"backend": {"urls": ["http://a"], "service": null}, "options": []}),
            )],
            vec![res(
                Kind::DhcpReservation,
                "a",
                json!({"backend": {"urls": ["http://b"]}}),
            )],
        )],
        &Rules::default(),
    );
    assert_eq!(plan.deviations.len(), 1);
    assert_eq!(plan.deviations[0].field_path, "spec.backend.urls");
}

#[test]
fn ignore_rule_covers_descendants_only() {
    assert!(covers("spec.options", "spec.options"));
    assert!(covers("spec.options", "spec.options.0"));
    assert!(covers("spec.options", "spec.options[1]"));
    assert!(!covers("spec.options", "spec.optionsx"));
}

#[test]
fn human_rendering_reads_like_a_plan() {
    let plan = diff(
        &[input(
            vec![
                res(Kind::DhcpReservation, "a", r("10.0.1.5")),
                res(Kind::DhcpReservation, "b", r("10.0.1.6")),
            ],
            vec![res(Kind::DhcpReservation, "a", r("10.0.1.9"))],
        )],
        &apply_rules(),
    );
    let text = render_human(&plan, RenderOptions::default());
    assert!(text.contains("  ~ DhcpReservation/a has drifted"), "{text}");
    assert!(
        text.contains("      ~ spec.ip: live \"10.0.1.9\" → Git \"10.0.1.5\" (high)"),
        "{text}"
    );
    assert!(
        text.contains("  + DhcpReservation/b is in Git but not live (missing, high)"),
        "{text}"
    );
    assert!(
        text.contains(
            "Plan: 1 missing, 0 unmanaged, 1 drifted, 0 unknown; 2 change(s) under policy apply."
        ),
        "{text}"
    );
    assert!(!text.contains('\x1b'));
}

#[test]
fn multiline_values_render_as_a_line_diff() {
    let plan = diff(
        &[input(
            vec![res(
                Kind::DhcpReservation,
                "a",
                json!({"options": [{"name": "x", "data": "1"}, {"name": "domain-search", "data": "lab.example"}, {"name": "domain-name-servers", "data": "10.0.1.1, 10.0.1.2"}]}),
            )],
            vec![res(
                Kind::DhcpReservation,
                "a",
                json!({"options": [{"name": "x", "data": "2"}, {"name": "domain-search", "data": "lab.example"}, {"name": "domain-name-servers", "data": "10.0.1.1, 10.0.1.2"}]}),
            )],
        )],
        &Rules::default(),
    );
    let text = render_human(&plan, RenderOptions::default());
    assert!(text.contains("-     \"data\": \"2\","), "{text}");
    assert!(text.contains("+     \"data\": \"1\","), "{text}");
}

#[test]
fn a_field_absent_on_one_side_says_so() {
    let long: Vec<String> = (0..12).map(|i| format!("middleware-{i}")).collect();
    let plan = diff(
        &[input(
            vec![res(Kind::Route, "a", json!({"rule": "Host(`a`)"}))],
            vec![res(
                Kind::Route,
                "a",
                json!({"rule": "Host(`a`)", "unrepresented": ["priority"], "middlewares": long}),
            )],
        )],
        &Rules::default(),
    );
    let text = render_human(&plan, RenderOptions::default());
    assert!(
        text.contains("~ spec.unrepresented: live [\"priority\"] → Git (absent)"),
        "{text}"
    );
    // Too long for one line: a line diff, headed by which side is absent.
    assert!(
        text.contains("~ spec.middlewares: live → Git (absent)\n"),
        "{text}"
    );
    assert!(text.contains("-   \"middleware-11\""), "{text}");
}

#[test]
fn an_unreadable_field_is_unknown_not_drifted_and_blocks_changes() {
    let expected = json!({"reachable": true, "expectedTools": ["a", "b"], "url": "http://x"});
    let live = json!({"reachable": false, "url": "http://y"});
    let mut i = input(
        vec![res(Kind::DhcpReservation, "s", expected)],
        vec![res(Kind::DhcpReservation, "s", live)],
    );
    if let Ok(o) = &mut i.observed {
        o.unobservable.push(Unreadable::field(
            Kind::DhcpReservation,
            "s",
            "spec.expectedTools",
            "the server did not answer",
        ));
    }
    let plan = diff(&[i], &apply_rules());
    let summary: Vec<(&str, DeviationType)> = plan
        .deviations
        .iter()
        .map(|d| (d.field_path.as_str(), d.dtype))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("spec.expectedTools", DeviationType::Unknown),
            ("spec.reachable", DeviationType::Drifted),
            ("spec.url", DeviationType::Drifted),
        ]
    );
    assert!(plan.deviations[0]
        .remediation
        .contains("the server did not answer"));
    assert!(
        plan.changes.is_empty(),
        "nothing is changed on a partial observation"
    );
}

/// Missing b, drifted a (ip), unmanaged c: one of each, for the policy tests.
fn one_of_each() -> ProviderInput {
    input(
        vec![
            res(Kind::DhcpReservation, "a", r("10.0.1.5")),
            res(Kind::DhcpReservation, "b", r("10.0.1.6")),
        ],
        vec![
            res(Kind::DhcpReservation, "a", r("10.0.1.9")),
            res(Kind::DhcpReservation, "c", r("10.0.1.7")),
        ],
    )
}

#[test]
fn propose_policy_proposes_git_changes_and_applies_nothing() {
    let rules = Rules {
        policy: [(Kind::DhcpReservation, Policy::Propose)].into(),
        ..Default::default()
    };
    let plan = diff(&[one_of_each()], &rules);
    assert!(plan.changes.is_empty());
    // Every repair is known; the policy chose none of them.
    assert_eq!(plan.repairs["kea"].len(), 3);
    let proposed: Vec<(&str, &str, Option<&Json>)> = plan
        .proposals
        .iter()
        .map(|p| (p.name.as_str(), p.field_path.as_str(), p.value.as_ref()))
        .collect();
    assert_eq!(
        proposed,
        vec![
            ("a", "spec.ip", Some(&json!("10.0.1.9"))),
            ("c", "", Some(&r("10.0.1.7"))),
        ]
    );
    let decisions = decide(&plan, &rules);
    assert_eq!(
        decisions.report,
        vec![Reported {
            kind: Kind::DhcpReservation,
            name: "b".into(),
            field_path: String::new(),
            why: Why::RemovalNotProposed,
        }]
    );
    // The text no longer promises a pull request labctl does not open.
    assert!(plan
        .deviations
        .iter()
        .all(|d| !d.remediation.contains("a pull request will")));
    assert!(plan.deviations[2].remediation.contains("labctl propose"));

    // labctl.yaml's proposeRemovals opts the kind's removals in.
    let rules = Rules {
        propose_removals: [Kind::DhcpReservation].into(),
        ..rules
    };
    let plan = diff(&[one_of_each()], &rules);
    let removal = plan.proposals.iter().find(|p| p.name == "b").unwrap();
    assert_eq!(
        (removal.dtype, &removal.value),
        (DeviationType::Missing, &None)
    );
    assert!(decide(&plan, &rules).report.is_empty());
}

#[test]
fn decide_is_the_one_apply_decision() {
    let mut rules = apply_rules();
    rules.suspend.push((
        Kind::DhcpReservation,
        Some("c".into()),
        "being migrated".into(),
    ));
    let plan = diff(&[one_of_each()], &rules);
    let decisions = decide(&plan, &rules);
    assert_eq!(decisions.apply, plan.changes);
    assert_eq!(
        decisions.each,
        vec![
            Decision::Apply,
            Decision::Apply,
            Decision::Report(Why::Suspended)
        ]
    );
    let names: Vec<&str> = plan.changes["kea"].iter().map(Change::name).collect();
    assert_eq!(names, ["a", "b"], "the suspended resource is not deleted");
    assert_eq!(
        plan.deviations[2].remediation,
        "suspended in Git: reported only"
    );
}

#[test]
fn a_partly_unreadable_resource_is_reported_as_incomplete_not_promised() {
    let mut i = input(
        vec![res(
            Kind::DhcpReservation,
            "s",
            json!({"ip": "10.0.1.5", "options": []}),
        )],
        vec![res(Kind::DhcpReservation, "s", json!({"ip": "10.0.1.9"}))],
    );
    if let Ok(o) = &mut i.observed {
        o.unobservable.push(Unreadable::field(
            Kind::DhcpReservation,
            "s",
            "spec.options",
            "unknown option shape",
        ));
    }
    let rules = apply_rules();
    let plan = diff(&[i], &rules);
    assert!(plan.changes.is_empty());
    let drifted = plan
        .deviations
        .iter()
        .find(|d| d.dtype == DeviationType::Drifted)
        .unwrap();
    assert_eq!(
        Decision::of(drifted, &rules, false),
        Decision::Report(Why::Incomplete)
    );
    assert!(
        drifted
            .remediation
            .starts_with("not changed while part of it cannot be read"),
        "{}",
        drifted.remediation
    );
}

/// `n` reservations `h0`… in Kea's shape.
fn hosts(range: std::ops::Range<usize>) -> Vec<Resource> {
    range
        .map(|i| {
            res(
                Kind::DhcpReservation,
                &format!("h{i}"),
                r(&format!("10.0.1.{}", 10 + i)),
            )
        })
        .collect()
}

#[test]
fn too_many_deletes_hold_back_every_change_of_the_provider() {
    // Git lost 4 of 12 reservations (a third): under apply that is 4 deletes of 12 existing.
    let plan = diff(&[input(hosts(0..8), hosts(0..12))], &apply_rules());
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    let why = &plan.held["kea"];
    assert!(
        why.contains("delete 4 of 12 existing resources (33 %"),
        "{why}"
    );
    assert!(why.contains("--force"), "{why}");
    assert!(plan
        .deviations
        .iter()
        .all(|d| d.remediation.starts_with("held: reconcile would remove it")));

    // Within the limit (3 of 12 = 25 %), or told to go ahead, it applies.
    let plan = diff(&[input(hosts(0..9), hosts(0..12))], &apply_rules());
    assert_eq!(plan.changes["kea"].len(), 3);
    let mut forced = apply_rules();
    forced.safety.force = true;
    let plan = diff(&[input(hosts(0..8), hosts(0..12))], &forced);
    assert_eq!(plan.changes["kea"].len(), 4);
    assert!(plan.held.is_empty());
    // Below min_existing the share is not checked: 2 deletes of 3.
    let plan = diff(&[input(hosts(0..1), hosts(0..3))], &apply_rules());
    assert_eq!(plan.changes["kea"].len(), 2);
}

#[test]
fn prune_false_keeps_unmanaged_resources_and_repairs_the_rest() {
    let mut rules = apply_rules();
    rules.no_prune.insert(Kind::DhcpReservation);
    let plan = diff(&[one_of_each()], &rules);
    let actions: Vec<(&str, &str)> = plan.changes["kea"]
        .iter()
        .map(|c| (c.action(), c.name()))
        .collect();
    assert_eq!(actions, [("update", "a"), ("create", "b")]);
    assert!(plan.deviations[2].remediation.contains("prune: false"));
}

#[test]
fn runtime_suspensions_are_reported_but_never_changed_and_git_is_named_first() {
    let input_of = || {
        [input(
            vec![
                res(Kind::DhcpReservation, "a", r("10.0.1.5")),
                res(Kind::DhcpReservation, "b", r("10.0.1.6")),
            ],
            vec![
                res(Kind::DhcpReservation, "a", r("10.0.1.9")),
                res(Kind::DhcpReservation, "b", r("10.0.1.8")),
            ],
        )]
    };
    // One resource: only it is held back.
    let mut rules = apply_rules();
    rules
        .runtime_suspend
        .push((Some(Kind::DhcpReservation), Some("a".into())));
    let plan = diff(&input_of(), &rules);
    let held: Vec<(&str, bool)> = plan
        .deviations
        .iter()
        .map(|d| (d.name.as_str(), d.suspended))
        .collect();
    assert_eq!(held, [("a", true), ("b", false)]);
    assert_eq!(plan.changes.values().flatten().count(), 1);
    // Everything: nothing changes, and the remediation says it is a runtime suspension.
    let mut rules = apply_rules();
    rules.runtime_suspend.push((None, None));
    let plan = diff(&input_of(), &rules);
    assert!(plan.changes.is_empty());
    assert!(plan.deviations.iter().all(|d| d.suspended));
    let d = &plan.deviations[0];
    let why = Decision::of(d, &rules, true);
    assert_eq!(why, Decision::Report(Why::SuspendedAtRuntime));
    assert!(why
        .remediation(d)
        .unwrap()
        .starts_with("suspended at runtime"));
    // Suspended in Git as well: Git's reason is the one given.
    rules
        .suspend
        .push((Kind::DhcpReservation, None, "in Git".into()));
    assert_eq!(
        Decision::of(d, &rules, true),
        Decision::Report(Why::Suspended)
    );
}

/// Routes under policy apply on a provider that can write them.
fn route_input(expected: Vec<Resource>, live: Vec<Resource>) -> (ProviderInput, Rules) {
    let mut i = input(expected, live);
    i.can_apply = [Kind::Route].into();
    let rules = Rules {
        policy: [(Kind::Route, Policy::Apply)].into(),
        ..Default::default()
    };
    (i, rules)
}

#[test]
fn what_is_declared_elsewhere_is_reported_but_never_created_changed_or_removed() {
    let route = |rule: &str| json!({"rule": rule, "router": "x@docker"});
    let (mut i, rules) = route_input(
        vec![
            res(Kind::Route, "drifted", route("Host(`a`)")),
            res(Kind::Route, "gone", route("Host(`g`)")),
            res(Kind::Route, "ours", json!({"rule": "Host(`o`)"})),
        ],
        vec![
            res(Kind::Route, "drifted", route("Host(`b`)")),
            res(Kind::Route, "foreign", route("Host(`f`)")),
        ],
    );
    if let Ok(o) = &mut i.observed {
        for name in ["drifted", "gone", "foreign"] {
            o.declared_elsewhere
                .insert(format!("Route/{name}"), "Traefik's docker provider".into());
        }
    }
    let plan = diff(&[i], &rules);
    // Only what labctl writes is changed: the one route of its own.
    let changes: Vec<(&str, &str)> = plan.changes["kea"]
        .iter()
        .map(|c| (c.action(), c.name()))
        .collect();
    assert_eq!(changes, [("create", "ours")]);
    let text = |name: &str| {
        let d = plan.deviations.iter().find(|d| d.name == name).unwrap();
        assert!(!d.auto_correctable, "{d:?}");
        assert_eq!(d.declared_in.as_deref(), Some("Traefik's docker provider"));
        d.remediation.clone()
    };
    let lead = "declared in Traefik's docker provider, which labctl does not write: ";
    assert_eq!(
        text("drifted"),
        format!("{lead}change it there, or change Git to match")
    );
    assert_eq!(
        text("gone"),
        format!("{lead}declare it there again, or remove it from Git")
    );
    assert_eq!(
        text("foreign"),
        format!("{lead}remove it there, or describe it in Git (`labctl import`)")
    );
}

#[test]
fn a_field_the_live_object_reports_of_itself_is_drift_that_no_write_repairs() {
    let (i, rules) = route_input(
        vec![
            res(Kind::Route, "a", json!({"rule": "Host(`a`)"})),
            res(Kind::Route, "b", json!({"rule": "Host(`b`)"})),
        ],
        vec![
            res(
                Kind::Route,
                "a",
                json!({"rule": "Host(`a`)", "status": "disabled", "errors": ["no service"]}),
            ),
            // Disabled and drifted: the rule is still put right.
            res(
                Kind::Route,
                "b",
                json!({"rule": "Host(`c`)", "status": "disabled"}),
            ),
        ],
    );
    let plan = diff(&[i], &rules);
    let changes: Vec<(&str, &str)> = plan.changes["kea"]
        .iter()
        .map(|c| (c.action(), c.name()))
        .collect();
    assert_eq!(changes, [("update", "b")]);
    let state: Vec<(&str, &str, bool)> = plan
        .deviations
        .iter()
        .map(|d| (d.name.as_str(), d.field_path.as_str(), d.auto_correctable))
        .collect();
    assert_eq!(
        state,
        [
            ("a", "spec.errors", false),
            ("a", "spec.status", false),
            ("b", "spec.rule", true),
            ("b", "spec.status", false),
        ]
    );
    assert!(plan.deviations[1]
        .remediation
        .contains("writing it again would not change it"));
}

#[test]
fn a_live_resource_that_cannot_be_read_is_unknown_never_removed() {
    let mut i = input(vec![], vec![res(Kind::DhcpReservation, "x", r("10.0.1.7"))]);
    if let Ok(o) = &mut i.observed {
        o.unobservable.push(Unreadable::resource(
            Kind::DhcpReservation,
            "x",
            "being reloaded",
        ));
    }
    let plan = diff(&[i], &apply_rules());
    assert_eq!(plan.count(DeviationType::Unknown), 1);
    assert_eq!(plan.count(DeviationType::Unmanaged), 0);
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    assert!(plan.deviations[0].remediation.contains("being reloaded"));
}
