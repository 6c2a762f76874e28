//! A run confirms its own changes by observing again: what took is recorded as applied and
//! its deviations resolved in the same run; what a provider accepted but did not do is not.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::*;
use crate::model::DesiredState;
use crate::providers::fixture::Plugin as Fixture;
use crate::providers::{BoxFuture, Change, Factory, Observation, Resource};
use crate::source::Snapshot;
use crate::store::{ChangeAction, ChangeResult};

/// An inventory of device types held in memory; a `lying` one answers every apply with
/// success and changes nothing.
pub(super) struct Inventory {
    pub(super) live: Mutex<BTreeMap<String, String>>,
    pub(super) lying: bool,
    /// How often it was asked what it expects.
    pub(super) asked_expected: std::sync::atomic::AtomicUsize,
    /// The observations it was handed back ([`Provider::observe_again`]): their resources.
    pub(super) handed_back: Mutex<Vec<Vec<String>>>,
}

impl Provider for Inventory {
    fn name(&self) -> &str {
        "inventory"
    }

    // Kinds, severities and what it expects: the fixture provider's (device types).
    fn kinds(&self) -> std::collections::BTreeSet<Kind> {
        Fixture::KINDS.iter().copied().collect()
    }

    fn expected(&self, desired: &DesiredState) -> Vec<Resource> {
        self.asked_expected
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Fixture::expected(desired)
    }

    fn severities(&self) -> crate::providers::Severities {
        Fixture::SEVERITIES
    }

    fn observe<'a>(
        &'a self,
        _: &'a DesiredState,
    ) -> BoxFuture<'a, Result<Observation, ProviderError>> {
        let resources = self
            .live
            .lock()
            .unwrap()
            .iter()
            .map(|(name, t)| Resource::new(Kind::Device, name.clone(), json!({ "type": t })))
            .collect();
        Box::pin(std::future::ready(Ok(Observation::now(
            "inventory",
            resources,
        ))))
    }

    fn observe_again<'a>(
        &'a self,
        desired: &'a DesiredState,
        previous: Observation,
    ) -> BoxFuture<'a, Result<Reobserved, ProviderError>> {
        let names = previous.resources.into_iter().map(|r| r.name).collect();
        self.handed_back.lock().unwrap().push(names);
        Box::pin(async move { self.observe(desired).await.map(Reobserved::Fresh) })
    }

    fn apply<'a>(
        &'a self,
        _: &'a Observation,
        changes: &'a [Change],
    ) -> BoxFuture<'a, Result<ApplyReport, ProviderError>> {
        if !self.lying {
            let mut live = self.live.lock().unwrap();
            for c in changes {
                match c {
                    Change::Create { name, fields, .. } | Change::Update { name, fields, .. } => {
                        live.insert(name.clone(), fields["type"].as_str().unwrap().into());
                    }
                    Change::Delete { name, .. } => {
                        live.remove(name);
                    }
                }
            }
        }
        let report = ApplyReport {
            applied: changes.to_vec(),
        };
        Box::pin(std::future::ready(Ok(report)))
    }

    fn can_apply(&self, _: Kind) -> bool {
        true
    }
}

const CONFIG: &str = "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {name: lab}\nspec:\n  policy: {Device: apply}\n";

const DEVICES: &str = "apiVersion: labctl.dev/v1\nkind: Device\nmetadata: {name: nas}\nspec: {type: physical}\n---\napiVersion: labctl.dev/v1\nkind: Device\nmetadata: {name: scope}\nspec: {type: scpi}\n";

/// One run of the lab against an inventory where `nas` is a VM and `scope` is missing, and an
/// unmanaged `old` is live.
async fn run_once(lying: bool) -> (tempfile::TempDir, Store, RunResult, Arc<Inventory>) {
    let file = |path: &str, text: &str| crate::source::SourceFile {
        path: path.into(),
        text: text.into(),
    };
    let snapshot = Snapshot::of(
        "lab",
        vec![file("labctl.yaml", CONFIG), file("devices.yaml", DEVICES)],
    );
    let validation = crate::validate::validate(&snapshot);
    let state = validation.state.expect("the lab is valid");
    let loaded = Loaded::new(snapshot, state, vec![]);
    let inventory = Arc::new(Inventory {
        live: Mutex::new(
            [("nas", "vm"), ("old", "physical")]
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .into(),
        ),
        lying,
        asked_expected: Default::default(),
        handed_back: Default::default(),
    });
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let mut leader = store.leader(false).await.unwrap();
    let run = store.start_run("test", "test").await.unwrap();
    let providers: Vec<Arc<dyn Provider>> = vec![inventory.clone()];
    let result = execute(&store, run, &mut leader, &loaded, &providers, true, None)
        .await
        .unwrap();
    (dir, store, result, inventory)
}

#[tokio::test]
async fn changes_that_took_are_recorded_and_their_deviations_resolved_in_the_same_run() {
    let (_dir, store, result, inventory) = run_once(false).await;
    assert_eq!(
        inventory.live.lock().unwrap().get("nas").unwrap(),
        "physical"
    );
    assert_eq!(result.outcome, Outcome::Succeeded);
    // Found three, repaired three, none left open.
    assert_eq!(
        (
            result.counts.deviations_opened,
            result.counts.deviations_resolved,
            result.counts.deviations_open
        ),
        (3, 3, 0)
    );
    assert!(store.open_deviations(None, None).await.unwrap().is_empty());

    let changes = store.run_changes(result.run_id).await.unwrap();
    let summary: Vec<(ChangeAction, &str, ChangeResult)> = changes
        .iter()
        .map(|c| (c.change.action, c.change.name.as_str(), c.change.result))
        .collect();
    assert_eq!(
        summary,
        [
            (ChangeAction::Delete, "old", ChangeResult::Applied),
            (ChangeAction::Update, "nas", ChangeResult::Applied),
            (ChangeAction::Create, "scope", ChangeResult::Applied),
        ]
    );
    let nas = &changes[1].change;
    assert_eq!(nas.before, Some(json!({"type": "vm"})));
    assert_eq!(nas.after, Some(json!({"type": "physical"})));
    assert_eq!(changes[0].change.after, None);
    assert_eq!(changes[2].change.before, None);

    // The deviation's history names the change that repaired it.
    let history = store
        .deviation_history("Device", "nas", "spec.type")
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].resolved_run, Some(result.run_id));
    let resource = store.resource_changes("Device", "nas").await.unwrap();
    let by = crate::store::repaired_by(&history[0], &resource).expect("repaired by labctl");
    assert_eq!(by.change.action, ChangeAction::Update);
    store.close().await;
}

#[tokio::test]
async fn a_change_the_provider_accepted_but_did_not_make_fails_the_run_and_stays_open() {
    let (_dir, store, result, _) = run_once(true).await;
    assert_eq!(result.outcome, Outcome::Failed);
    let changes = store.run_changes(result.run_id).await.unwrap();
    assert_eq!(changes.len(), 3);
    for c in &changes {
        assert_eq!(c.change.result, ChangeResult::Unconfirmed, "{c:?}");
        let why = c.change.error.as_deref().unwrap();
        assert!(why.contains("still differs from Git"), "{why}");
    }
    assert_eq!(store.open_deviations(None, None).await.unwrap().len(), 3);
    let run = store.latest_run().await.unwrap().unwrap();
    assert!(
        run.error.unwrap().contains("inventory accepted the change"),
        "the run says why it failed"
    );
    store.close().await;
}
