//! `labctl propose`: the changes to Git that policy `propose` asks for, one branch per
//! resource, each validated and planned clean before it is shown or pushed.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::{load_valid, print_json, runtime, Format, HostArgs, SourceArgs};
use labctl::controller;
use labctl::propose::{pulls, Proposals};
use labctl::source::SourceSpec;
use labctl::store::Store;

#[derive(Args)]
pub struct ProposeArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub host: HostArgs,
    /// Show each branch labctl would push, what it changes, and which pull requests it would
    /// open, update or close (the forge and the store are only read); write nothing. Without
    /// this or --patch, each change set is committed on its branch and pushed.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the changes as one patch (`git apply` reads it); push nothing.
    #[arg(long, conflicts_with = "format")]
    pub patch: bool,
    /// At most this many change sets per run (each validates the whole repository); the
    /// rest are listed as not proposed and come up in a later run.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub max: usize,
    /// State store that remembers labctl's pull requests: sqlite://PATH or
    /// postgres://USER@HOST/DB (default: see `labctl db`).
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: Format,
}

/// `propose`: 0 done (whether or not anything was proposed), 1 error, a branch or pull request
/// that could not be pushed or opened, or a provider that could not be observed (nothing is
/// proposed from a partial picture of it).
pub fn run(args: &ProposeArgs) -> ExitCode {
    let Some(loaded) = load_valid(&args.source, args.format) else {
        return ExitCode::FAILURE;
    };
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let (plan, proposals) =
        rt.block_on(controller::propose(&loaded, args.host.options(), args.max));
    let spec = args.source.spec();
    let location = match &spec {
        SourceSpec::Git(loc) => Some(loc),
        SourceSpec::Directory(_) => None,
    };
    // A dry run of a plain directory has no branches or pull requests to look up.
    let publish = !args.patch && (!args.dry_run || location.is_some());
    let report = if publish {
        let url = super::db::database_url(args.database_url.as_deref());
        let report = rt.block_on(async {
            // A dry run only reads the store, and creates none.
            let store = if args.dry_run {
                Store::open_reader(&url).await?
            } else {
                let store = Store::connect(&url).await?;
                store.migrate().await?;
                Some(store)
            };
            let target = pulls::Target {
                location,
                subdir: args.source.path.as_deref(),
                rev: args.source.rev.as_deref(),
                store: store.as_ref(),
                dry_run: args.dry_run,
            };
            let report = pulls::publish(&target, &loaded, &plan, &proposals).await;
            if let Some(store) = store {
                store.close().await;
            }
            Ok::<_, labctl::store::StoreError>(report)
        });
        match report {
            Ok(report) => Some(report),
            Err(e) => {
                errln!("error: the state store: {e}; nothing is pushed");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
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
                    "unobservable": plan.unobservable,
                });
                if let Some(report) = &report {
                    out["published"] = json!(report.outcomes);
                    out["settled"] = json!(report.settled);
                    out["errors"] = json!(report.errors);
                }
                print_json(&out)
            }
            Format::Human => print_human(&proposals, report.as_ref(), args.dry_run),
        }
    }
    for (p, why) in &plan.unobservable {
        errln!("error: provider {p} could not be observed: {why}; nothing of it is proposed");
    }
    if let Some(report) = &report {
        for e in &report.errors {
            errln!("error: {e}");
        }
    }
    if plan.unobservable.is_empty() && !report.as_ref().is_some_and(pulls::Report::failed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_human(proposals: &Proposals, report: Option<&pulls::Report>, dry_run: bool) {
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
        let Some(o) = report.and_then(|r| r.outcomes.iter().find(|o| o.branch == set.branch))
        else {
            continue;
        };
        if let Some(p) = &o.push {
            let commit = p.commit.as_deref().map_or("", |c| &c[..c.len().min(12)]);
            outln!("    branch {} {commit}", p.outcome);
        }
        match (o.number, &o.url) {
            (Some(n), Some(url)) => outln!("    pull request #{n} {}: {url}", o.pull),
            _ if o.pull != "none" => outln!("    pull request {}", o.pull),
            _ => {}
        }
        if let Some(detail) = &o.detail {
            outln!("    {detail}");
        }
        for w in &o.warnings {
            outln!("    warning: {w}");
        }
    }
    for r in &proposals.refused {
        outln!("not proposed {}/{}: {}", r.kind, r.name, r.reason);
        for d in &r.diagnostics {
            outln!("    {d}");
        }
    }
    for s in report.iter().flat_map(|r| &r.settled) {
        let number = s.number.map(|n| format!(" #{n}")).unwrap_or_default();
        outln!("{}{number}: {}", s.branch, s.state);
    }
    let Some(report) = report.filter(|_| !dry_run) else {
        let pulls = report.map_or(String::new(), |r| {
            let count = |what: &str| r.outcomes.iter().filter(|o| o.pull == what).count();
            format!(
                " (pull requests: {} would open, {} would update, {} unchanged, {} declined, \
                 {} capped)",
                count("would-open"),
                count("would-update"),
                count("unchanged"),
                count("declined"),
                count("capped")
            )
        });
        outln!(
            "{} change set(s) would be proposed{pulls}, {} not proposed",
            proposals.change_sets.len(),
            proposals.refused.len()
        );
        return;
    };
    let count =
        |f: &dyn Fn(&pulls::Outcome) -> bool| report.outcomes.iter().filter(|o| f(o)).count();
    let pushed = |what: &'static str| {
        move |o: &pulls::Outcome| o.push.as_ref().is_some_and(|p| p.outcome == what)
    };
    outln!(
        "branches: {} created, {} updated, {} unchanged, {} left alone; pull requests: {} \
         opened, {} updated, {} declined, {} capped; {} not proposed",
        count(&pushed("created")),
        count(&pushed("updated")),
        count(&pushed("unchanged")),
        count(&pushed("foreign")),
        count(&|o| o.pull == "opened"),
        count(&|o| o.pull == "updated"),
        count(&|o| o.pull == "declined"),
        count(&|o| o.pull == "capped"),
        proposals.refused.len()
    );
}
