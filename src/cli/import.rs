//! `labctl import`: adopt a live lab into the repository.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::{load_valid, print_json, runtime, Format, HostArgs, SourceArgs};
use labctl::controller::{self, ImportError};

#[derive(Args)]
pub struct ImportArgs {
    /// The repository work tree to write into (read with its uncommitted files).
    #[arg(default_value = ".")]
    pub repo: String,
    /// Show what would be written, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub host: HostArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
}

/// `import`: 0 written (or nothing to import), 1 error or the result would not validate.
pub fn run(args: &ImportArgs) -> ExitCode {
    let source = SourceArgs {
        repo: args.repo.clone(),
        rev: None,
        worktree: true,
        path: None,
        cache_dir: None,
        token_env: "LABCTL_GIT_TOKEN".into(),
    };
    let Some(loaded) = load_valid(&source, args.format) else {
        return ExitCode::FAILURE;
    };
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let root = std::path::Path::new(&args.repo);
    let target = (!args.dry_run).then_some(root);
    let imported = match rt.block_on(controller::import(&loaded, args.host.options(), target)) {
        Ok(imported) => imported,
        Err(e) => {
            match &e {
                ImportError::Unobservable(providers) => {
                    for (p, why) in providers {
                        errln!("error: provider {p} could not be observed: {why}");
                    }
                    errln!("error: nothing was imported");
                }
                ImportError::Invalid(staged) => {
                    // The files were read again to stage the import: they can be again.
                    let mut all = match loaded.files() {
                        Ok(held) => held.into_owned(),
                        Err(_) => labctl::source::Snapshot::of(loaded.origin(), Vec::new()),
                    };
                    all.files.extend(staged.files.iter().cloned());
                    super::print_diagnostics(&staged.validation.diagnostics, &all);
                    errln!("error: {e}");
                }
                ImportError::Write(_) | ImportError::Reread(_) => errln!("error: {e}"),
            }
            return ExitCode::FAILURE;
        }
    };
    match args.format {
        Format::Json => print_json(&json!({
            "written": !args.dry_run,
            "files": imported.files.iter().map(|f| &f.path).collect::<Vec<_>>(),
            "skipped": imported.skipped,
            "adopted": imported.adopted,
        })),
        Format::Human => {
            let verb = if args.dry_run { "would write" } else { "wrote" };
            for f in &imported.files {
                match imported.adopted.iter().find(|a| a.path == f.path) {
                    Some(a) => outln!(
                        "{verb} {}, adopted from {}: labctl will declare it itself once Git \
                         has it, so remove the old declaration there",
                        f.path,
                        a.declared_in
                    ),
                    None => outln!("{verb} {}", f.path),
                }
            }
            for s in &imported.skipped {
                outln!("skipped {}/{}: {}", s.kind, s.name, s.reason);
            }
            outln!(
                "{verb} {} document(s), skipped {}",
                imported.files.len(),
                imported.skipped.len()
            );
        }
    }
    ExitCode::SUCCESS
}
