//! `labctl propose`: the changes to Git that policy `propose` asks for, one branch per
//! resource, each validated and planned clean before it is shown or pushed.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::{load_valid, print_json, runtime, Format, HostArgs, SourceArgs};
use labctl::controller;
use labctl::propose::publish::{self, Published};
use labctl::propose::Proposals;
use labctl::source::SourceSpec;

#[derive(Args)]
pub struct ProposeArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub host: HostArgs,
    /// Show each branch labctl would push and what it changes; push nothing. Without this
    /// or --patch, each change set is committed on its branch and pushed.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the changes as one patch (`git apply` reads it); push nothing.
    #[arg(long, conflicts_with = "format")]
    pub patch: bool,
    /// At most this many change sets per run (each validates the whole repository); the
    /// rest are listed as not proposed and come up in a later run.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub max: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
}

/// `propose`: 0 done (whether or not anything was proposed), 1 error, a branch that could not
/// be pushed, or a provider that could not be observed (nothing is proposed from a partial
/// picture of it).
pub fn run(args: &ProposeArgs) -> ExitCode {
    let Some(loaded) = load_valid(&args.source, args.format) else {
        return ExitCode::FAILURE;
    };
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let (proposals, unobservable) =
        rt.block_on(controller::propose(&loaded, args.host.options(), args.max));
    let push = !args.dry_run && !args.patch;
    let published = if push {
        let spec = args.source.spec();
        let loc = match &spec {
            SourceSpec::Git(loc) => Some(loc),
            SourceSpec::Directory(_) => None,
        };
        publish::push(
            loc,
            args.source.path.as_deref(),
            &loaded,
            &proposals.change_sets,
        )
    } else {
        Vec::new()
    };
    if args.patch {
        for set in &proposals.change_sets {
            out!("{}", set.patch());
        }
    } else {
        match args.format {
            Format::Json => {
                let mut out = json!({
                    "commit": loaded.commit(),
                    "changeSets": proposals.change_sets,
                    "refused": proposals.refused,
                    "unobservable": unobservable,
                });
                if push {
                    out["published"] = json!(published);
                }
                print_json(&out)
            }
            Format::Human => print_human(&proposals, &published, push),
        }
    }
    for (p, why) in &unobservable {
        errln!("error: provider {p} could not be observed: {why}; nothing of it is proposed");
    }
    let failed = published.iter().any(|p| p.outcome == "failed");
    if unobservable.is_empty() && !failed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_human(proposals: &Proposals, published: &[Published], pushed: bool) {
    for set in &proposals.change_sets {
        outln!("{}  {}", set.branch, set.title);
        for c in &set.covers {
            let show = |v: &Option<serde_json::Value>| {
                v.as_ref()
                    .map_or_else(|| "-".to_string(), |v| v.to_string())
            };
            outln!(
                "    {:<24} {:<9} Git {} → live {}",
                if c.field_path.is_empty() {
                    "(resource)"
                } else {
                    &c.field_path
                },
                c.dtype.as_str(),
                show(&c.in_git),
                show(&c.live)
            );
        }
        for f in &set.files {
            outln!("    {} {}", f.action(), f.path);
        }
        if let Some(p) = published.iter().find(|p| p.branch == set.branch) {
            let commit = p.commit.as_deref().map_or("", |c| &c[..c.len().min(12)]);
            outln!("    branch {} {commit}", p.outcome);
            if let Some(detail) = &p.detail {
                outln!("    {detail}");
            }
        }
    }
    for r in &proposals.refused {
        outln!("not proposed {}/{}: {}", r.kind, r.name, r.reason);
        for d in &r.diagnostics {
            outln!("    {d}");
        }
    }
    if pushed {
        let count = |o: &str| published.iter().filter(|p| p.outcome == o).count();
        outln!(
            "{} branch(es) created, {} updated, {} unchanged, {} left alone, {} failed; {} not \
             proposed",
            count("created"),
            count("updated"),
            count("unchanged"),
            count("foreign"),
            count("failed"),
            proposals.refused.len()
        );
    } else {
        outln!(
            "{} change set(s) would be proposed, {} not proposed",
            proposals.change_sets.len(),
            proposals.refused.len()
        );
    }
}
