//! `labctl validate`.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::{load_snapshot, print_diagnostics, Format, SourceArgs, EXIT_USAGE};
use labctl::validate;

#[derive(Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
}

pub fn run(args: &ValidateArgs) -> ExitCode {
    let Some(snapshot) = load_snapshot(&args.source, args.format) else {
        return ExitCode::from(EXIT_USAGE);
    };
    let result = validate::validate(&snapshot);
    let commit = snapshot.revision.as_ref().map(|r| r.commit.as_str());
    match args.format {
        Format::Json => {
            let out = json!({
                "valid": result.is_valid(),
                "origin": snapshot.origin,
                "commit": commit,
                "documents": result.documents,
                "errors": result.errors(),
                "warnings": result.warnings(),
                "diagnostics": result.diagnostics,
            });
            outln!(
                "{}",
                serde_json::to_string_pretty(&out).expect("JSON serialises")
            );
        }
        Format::Human => {
            if !print_diagnostics(&result.diagnostics, &snapshot) {
                return ExitCode::from(EXIT_USAGE);
            }
            let verdict = if result.is_valid() {
                "valid"
            } else {
                "invalid"
            };
            outln!(
                "{}: {verdict}: {} documents in {} files, {} errors, {} warnings",
                labctl::controller::describe(&snapshot),
                result.documents,
                snapshot.files.len(),
                result.errors(),
                result.warnings()
            );
        }
    }
    if result.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
