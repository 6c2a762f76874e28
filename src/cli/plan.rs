//! `labctl plan`: what differs between Git and the live lab, changing nothing.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::{load_valid, print_json, render_options, runtime, Format, HostArgs, SourceArgs};
use labctl::controller;
use labctl::diff::{render_human, DeviationType};

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub host: HostArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
}

/// `plan`: 0 no drift, 1 error (including anything that could not be observed: a provider, a
/// resource or a field), 2 drift.
pub fn run(args: &PlanArgs) -> ExitCode {
    let Some(loaded) = load_valid(&args.source, args.format) else {
        return ExitCode::FAILURE;
    };
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let plan = rt.block_on(controller::plan(&loaded, args.host.options()));
    match args.format {
        Format::Json => print_json(&json!({ "commit": loaded.commit(), "plan": plan })),
        Format::Human => out!("{}", render_human(&plan, render_options())),
    }
    let unknown = plan.count(DeviationType::Unknown);
    if !plan.unobservable.is_empty() {
        // An incomplete plan must not pass a gate as "no drift".
        errln!(
            "error: {} provider(s) could not be observed; the plan is incomplete",
            plan.unobservable.len()
        );
        ExitCode::FAILURE
    } else if unknown > 0 {
        // So must one where a node, a guest or a field could not be read.
        errln!(
            "error: {unknown} resource(s) or field(s) could not be observed; the plan is incomplete"
        );
        ExitCode::FAILURE
    } else if plan.has_drift() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}
