//! `labctl validate`.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Args;
use codespan_reporting::term::termcolor::{ColorChoice, StandardStream};
use serde_json::json;

use super::{Format, SourceArgs, EXIT_USAGE};
use labctl::source;
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
    let snapshot = match source::load(&args.source.spec(), args.source.path.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            match args.format {
                Format::Json => println!("{}", json!({ "valid": false, "error": e.to_string() })),
                Format::Human => eprintln!("error: {e}"),
            }
            return ExitCode::from(EXIT_USAGE);
        }
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
            println!(
                "{}",
                serde_json::to_string_pretty(&out).expect("JSON serialises")
            );
        }
        Format::Human => {
            let color = if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            {
                ColorChoice::Auto
            } else {
                ColorChoice::Never
            };
            let mut err = StandardStream::stderr(color);
            if let Err(e) = validate::render(&result.diagnostics, &snapshot, &mut err) {
                eprintln!("error: cannot write diagnostics: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
            let at = match commit {
                Some(c) => format!("{} at {}", snapshot.origin, &c[..c.len().min(12)]),
                None => snapshot.origin.clone(),
            };
            let verdict = if result.is_valid() {
                "valid"
            } else {
                "invalid"
            };
            println!(
                "{at}: {verdict}: {} documents in {} files, {} errors, {} warnings",
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
