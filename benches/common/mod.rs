//! What the benchmark binaries share: their command-line numbers, files, and percentiles.

use std::path::Path;
use std::time::Duration;

use labctl::controller::{self, Context, Reason, Request, Settings};
use labctl::reconcile::HostOptions;
use labctl::source::SourceSpec;
use labctl::store::{RetentionPolicy, Store};

/// The number after `name` on the command line, or `default`.
#[allow(dead_code)]
pub fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .map(|i| {
            args.get(i + 1)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        })
        .unwrap_or(default)
}

/// Whether `name` is on the command line.
#[allow(dead_code)]
pub fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

/// Writes `text` at `rel` below `dir`, creating directories.
pub fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The `p` quantile (0 to 1) of `sorted`, nearest rank.
#[allow(dead_code)]
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A new SQLite store at `path` with one reconcile run of `source` recorded in it, as the
/// controller makes one (the providers labctl.yaml names, default host options).
#[allow(dead_code)]
pub async fn reconciled_store(path: &Path, source: SourceSpec) -> Store {
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let ctx = Context::new(
        store.clone(),
        Settings {
            source,
            path: None,
            host: HostOptions::default(),
            controller: "bench".into(),
            retention: RetentionPolicy::DEFAULT,
            backoff: Default::default(),
        },
    );
    let request = Request {
        reason: Reason::manual("bench", "bench"),
        wait: true,
        force: false,
    };
    if let Err(e) = controller::reconcile(&ctx, &request).await {
        panic!("the bench lab did not reconcile: {e}");
    }
    store
}
