//! A run that finds the same commit, rules and observations as the run before records that
//! run's conclusions again (no diff, no new model); anything moved, and it does the whole run.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::confirm_tests::Inventory;
use super::*;
use crate::source::{Revision, Snapshot, SourceFile};

const CONFIG: &str = "apiVersion: labctl.dev/v1\nkind: Config\nmetadata: {name: lab}\nspec:\n  policy: {Device: observe}\n";

const DEVICES: &str = "apiVersion: labctl.dev/v1\nkind: Device\nmetadata: {name: nas}\nspec: {type: physical}\n---\napiVersion: labctl.dev/v1\nkind: Device\nmetadata: {name: scope}\nspec: {type: scpi}\n";

struct Lab {
    _dir: tempfile::TempDir,
    store: Store,
    loaded: Loaded,
    inventory: Arc<Inventory>,
}

impl Lab {
    /// Git says `nas` is physical and `scope` exists; live, `nas` is a VM and `scope` is
    /// missing. Policy `observe`: nothing is changed.
    async fn new() -> Lab {
        let file = |path: &str, text: &str| SourceFile {
            path: path.into(),
            text: text.into(),
        };
        let mut snapshot = Snapshot::of(
            "lab",
            vec![file("labctl.yaml", CONFIG), file("devices.yaml", DEVICES)],
        );
        snapshot.revision = Some(Revision {
            commit: "c0ffee".repeat(6) + "c0ff",
            requested: "HEAD".into(),
        });
        let state = crate::validate::validate(&snapshot)
            .state
            .expect("the lab is valid");
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("s.db").display()))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let live: BTreeMap<String, String> = [("nas".to_string(), "vm".to_string())].into();
        Lab {
            _dir: dir,
            store,
            loaded: Loaded::new(snapshot, state, vec![]),
            inventory: Arc::new(Inventory {
                live: Mutex::new(live),
                lying: false,
                asked_expected: Default::default(),
                handed_back: Default::default(),
            }),
        }
    }

    async fn run(
        &self,
        force: bool,
        previous: Option<&mut Concluded>,
    ) -> Result<RunResult, StoreError> {
        let mut leader = self.store.leader(false).await.unwrap();
        let run = self.store.start_run("test", "test").await.unwrap();
        let providers: Vec<Arc<dyn Provider>> = vec![self.inventory.clone()];
        let result = execute(
            &self.store,
            run,
            &mut leader,
            &self.loaded,
            &providers,
            force,
            previous,
        )
        .await;
        leader.release().await.unwrap();
        result
    }

    async fn stored_run(&self, id: store::RunId) -> store::Run {
        let runs = self.store.runs_between(0, i64::MAX).await.unwrap();
        runs.into_iter().find(|r| r.id == id).unwrap()
    }
}

fn counts(r: &RunResult) -> (i64, i64, i64) {
    (
        r.counts.deviations_open,
        r.counts.deviations_opened,
        r.counts.deviations_resolved,
    )
}

#[tokio::test]
async fn nothing_moved_records_the_run_before_again_and_any_move_does_the_whole_run() {
    let lab = Lab::new().await;
    let mut first = lab.run(false, None).await.unwrap();
    assert!(!first.recorded_again);
    assert_eq!(counts(&first), (2, 2, 0));
    assert_eq!(first.outcome, Outcome::Succeeded);

    let mut second = lab.run(false, first.concluded.as_mut()).await.unwrap();
    assert!(second.recorded_again, "nothing moved");
    assert_eq!(
        counts(&second),
        (2, 0, 0),
        "the same deviations, still open"
    );
    assert_eq!(second.plan.deviations.len(), 2);
    let (one, two) = (
        lab.stored_run(first.run_id).await,
        lab.stored_run(second.run_id).await,
    );
    assert_eq!(two.outcome, Outcome::Succeeded);
    assert_eq!(
        (two.resources, &two.commit_sha),
        (one.resources, &one.commit_sha)
    );
    assert_eq!(
        two.model_hash, one.model_hash,
        "the same model, not written again"
    );
    let latest = lab.store.latest_model().await.unwrap().unwrap();
    assert_eq!(latest.run, second.run_id, "its model is the latest");
    let stats = lab.store.stats().await.unwrap();
    assert_eq!(
        (
            stats.blobs,
            stats.observed_snapshots,
            stats.desired_snapshots
        ),
        (3, 1, 1),
        "one model, one observation and one desired state, each kept once"
    );

    // Resources that hash as the run before recorded them are named by that address, not
    // compressed again.
    let again = observed_snapshots(&second.inputs, first.concluded.as_ref(), &[]);
    let fresh = observed_snapshots(&second.inputs, None, &[]);
    let (again, fresh) = (
        &again[0].as_ref().unwrap().body,
        &fresh[0].as_ref().unwrap().body,
    );
    assert_eq!(again.hash(), fresh.hash());
    assert_eq!((again.size(), fresh.size().is_some()), (None, true));

    // Other rules this once: the whole run.
    let mut forced = lab.run(true, second.concluded.as_mut()).await.unwrap();
    assert!(!forced.recorded_again);
    assert_eq!(counts(&forced), (2, 0, 0));

    // Live moves: the whole run, which resolves what it no longer finds.
    lab.inventory
        .live
        .lock()
        .unwrap()
        .insert("nas".into(), "physical".into());
    let mut moved = lab.run(false, forced.concluded.as_mut()).await.unwrap();
    assert!(!moved.recorded_again);
    assert_eq!(counts(&moved), (1, 0, 1));
    let (three, four) = (
        lab.stored_run(forced.run_id).await,
        lab.stored_run(moved.run_id).await,
    );
    assert_ne!(four.model_hash, three.model_hash);

    // And settles again.
    let settled = lab.run(false, moved.concluded.as_mut()).await.unwrap();
    assert!(settled.recorded_again);
    assert_eq!(counts(&settled), (1, 0, 0));
    // Five runs of one commit: what the provider expects was made once.
    let asked = lab
        .inventory
        .asked_expected
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(asked, 1);
    lab.store.close().await;
}

#[tokio::test]
async fn a_run_naming_a_body_the_store_no_longer_holds_is_recorded_failed() {
    let lab = Lab::new().await;
    let first = lab.run(false, None).await.unwrap();
    let mut previous = first.concluded.clone().unwrap();
    // As if retention had removed the commit's desired state.
    previous.desired = "0".repeat(64);
    previous.again = None;
    let err = lab.run(false, Some(&mut previous)).await.unwrap_err();
    assert!(matches!(err, StoreError::BlobGone { .. }), "{err}");
    let failed = lab.store.latest_run().await.unwrap().unwrap();
    assert_eq!(failed.outcome, Outcome::Failed);
    assert!(
        failed.error.unwrap().contains("no longer holds"),
        "the run says why"
    );
    assert_eq!(
        failed.counts.deviations_open, 2,
        "it concluded nothing: the deviations stay open"
    );
    // With nothing kept, the next run writes every body out.
    let next = lab.run(false, None).await.unwrap();
    assert_eq!(next.outcome, Outcome::Succeeded);
    lab.store.close().await;
}

#[tokio::test]
async fn the_next_run_of_a_commit_hands_each_provider_its_last_observation_once() {
    let lab = Lab::new().await;
    let mut first = lab.run(false, None).await.unwrap();
    let mut concluded = first.concluded.take().unwrap();
    concluded.keep_observations(std::mem::take(&mut first.inputs));
    lab.run(false, Some(&mut concluded)).await.unwrap();
    assert_eq!(
        *lab.inventory.handed_back.lock().unwrap(),
        vec![vec!["nas".to_string()]],
        "what the run before saw live"
    );
    assert!(concluded.observations.is_empty(), "taken, not copied");

    // Of another commit, the names may mean other things: nothing is handed back.
    let mut second = lab.run(false, None).await.unwrap();
    let mut other = second.concluded.take().unwrap();
    other.keep_observations(std::mem::take(&mut second.inputs));
    other.commit = "0".repeat(40);
    lab.run(false, Some(&mut other)).await.unwrap();
    assert_eq!(lab.inventory.handed_back.lock().unwrap().len(), 1);
    assert!(other.observations.is_empty(), "dropped");
    lab.store.close().await;
}
