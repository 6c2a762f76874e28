//! Command-line interface. Thin: every decision lives in the library.

/// `print!` for command output. A reader that went away (`labctl status | head -1`) ends the
/// process quietly with status 141, as SIGPIPE ends Unix tools, instead of a panic. (SIGPIPE
/// itself stays ignored: a provider closing its socket must not kill a reconcile.)
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::write_stdout(format_args!($($arg)*)) };
}

/// `eprintln!` for messages: one line each, whatever the text it quotes (a provider's answer,
/// a file name) holds — see [`labctl::text::printable`].
macro_rules! errln {
    ($($arg:tt)*) => { $crate::cli::write_stderr_line(format_args!($($arg)*)) };
}

/// `println!` for command output; see [`out!`].
macro_rules! outln {
    () => { $crate::cli::write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::cli::write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

mod config;
mod db;
mod import;
mod mcp;
mod plan;
mod propose;
mod reconcile;
mod serve;
mod status;
mod suspend;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use std::io::IsTerminal;

use codespan_reporting::term::termcolor::Buffer;
use serde_json::json;

use labctl::controller::{self, Invalid};
use labctl::diff::RenderOptions;
use labctl::reconcile::{HostOptions, Loaded};
use labctl::source::{self, GitOptions, Snapshot, SourceError, SourceSpec};
use labctl::store::RetentionPolicy;
use labctl::validate::{self as checks, Diagnostic};

/// Exit code when the command could not do its job: bad arguments, unreadable repository.
/// (`validate`: 0 valid, 1 invalid, 2 this.)
pub const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "labctl",
    version,
    about = "Keep a homelab in line with Git: validate, observe, diff, reconcile",
    long_about = "labctl reads the desired state of a homelab (pools, devices, DHCP reservations, \
routes, MCP servers) from YAML in a Git repository, compares it with the live lab and reports \
or repairs the drift."
)]
struct Cli {
    /// The host configuration: a YAML file of `labctl serve`'s settings (see `labctl config`).
    /// Default: LABCTL_CONFIG (empty: none), else /etc/labctl/config.yaml if it exists.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check the desired-state repository and report every problem with its file:line.
    ///
    /// Exit status: 0 valid (warnings allowed), 1 invalid, 2 usage or I/O error.
    Validate(validate::ValidateArgs),
    /// Manage the state store: `migrate` the schema, show `stats`.
    Db(db::DbArgs),
    /// Compare Git with the live lab and show what differs, changing nothing.
    ///
    /// Exit status, as `terraform plan -detailed-exitcode`: 0 no drift, 1 error (or anything
    /// could not be observed: a provider, a resource or a field), 2 drift.
    Plan(plan::PlanArgs),
    /// Run one reconcile: plan, apply what the policy allows, record the run in the store.
    ///
    /// Exit status: 0 the run completed (drift or not), 1 it failed.
    Reconcile(reconcile::ReconcileArgs),
    /// Run as a daemon: reconcile when the repository moves (a watch of a local repository,
    /// a poll of a remote), on a schedule, on a push webhook or on request; serve /healthz,
    /// /readyz and the webhooks. Stops cleanly on SIGTERM or SIGINT.
    Serve(serve::ServeArgs),
    /// The last runs, resources by status and open deviations, from the store.
    Status(status::StatusArgs),
    /// Open deviations (or one deviation's history), worst first, from the store.
    Drift(status::DriftArgs),
    /// Adopt a live lab: write a document for every resource the providers have that Git
    /// does not, after checking the repository with them validates.
    Import(import::ImportArgs),
    /// Propose changes to Git for what policy `propose` covers: one branch per resource that
    /// makes Git say what the lab says, validated and planned clean first.
    ///
    /// Exit status: 0 done, 1 error or a provider could not be observed.
    Propose(propose::ProposeArgs),
    /// Serve MCP for assistants — on stdio, or streamable HTTP with bearer tokens (--http):
    /// the lab's state, drift and runs, answered from the store.
    Mcp(mcp::McpArgs),
    /// Stop labctl acting on everything, a kind or one resource, without a commit (a
    /// maintenance window): runs still observe and record it, and change nothing of it.
    Suspend(suspend::SuspendArgs),
    /// Lift a suspension made by `labctl suspend`; the next run acts on it again.
    Resume(suspend::ResumeArgs),
    /// Show the settings `labctl serve` would run with, each with where it came from (a flag's
    /// variable, the host configuration file and line, the default), secrets masked.
    ///
    /// Exit status: 0 serve would accept them, 2 it would not (the error names the field).
    Config(config::ConfigArgs),
    /// Write the JSON Schemas of every kind to a directory (default: schemas/).
    Schemas {
        /// Directory to write into.
        #[arg(default_value = "schemas")]
        dir: PathBuf,
    },
}

/// Output format.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// For people: source excerpts, colour on a terminal.
    Human,
    /// One JSON object on stdout, for hooks and CI.
    Json,
}

/// Where the desired state comes from; shared by every command that loads it.
#[derive(Args, Debug, Clone)]
pub struct SourceArgs {
    /// Repository: a local path, or a Git URL (file://, https://). A local Git repository is
    /// read at its committed state; a plain directory is read as files.
    #[arg(default_value = ".", env = "LABCTL_REPO")]
    pub repo: String,
    /// Branch, tag or commit SHA to read (default: HEAD, or the remote's default branch).
    #[arg(long, env = "LABCTL_REV", value_name = "REV")]
    pub rev: Option<String>,
    /// Read the work tree, uncommitted edits included, instead of a commit.
    #[arg(long, conflicts_with = "rev")]
    pub worktree: bool,
    /// Subdirectory of the repository that holds the desired state.
    #[arg(long, env = "LABCTL_PATH", value_name = "DIR")]
    pub path: Option<String>,
    /// Where remote repositories are cloned.
    #[arg(long, env = "LABCTL_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Environment variable that holds an HTTPS token for the Git remote.
    #[arg(
        long,
        env = "LABCTL_TOKEN_ENV",
        default_value = "LABCTL_GIT_TOKEN",
        value_name = "VAR"
    )]
    pub token_env: String,
}

impl SourceArgs {
    pub fn spec(&self) -> SourceSpec {
        let options = GitOptions {
            rev: self.rev.clone(),
            cache_dir: self.cache_dir.clone().unwrap_or_else(default_cache_dir),
            token_env: Some(self.token_env.clone()),
        };
        source::resolve(&self.repo, self.worktree, options)
    }
}

fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("labctl").join("repos")
}

pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Err(e) = config::apply(&args) {
        errln!("error: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            // clap's own exit (status 2, or 0 for --help), with the file and line of a value
            // that came from the host configuration.
            if let Some(note) = config::blame(&e) {
                let _ = e.print();
                errln!("{note}");
                return ExitCode::from(EXIT_USAGE);
            }
            e.exit()
        }
    };
    // Colour only for a person at a terminal, as for diagnostics and plans: a journal or a
    // log file gets plain text.
    let terminal = std::io::stderr().is_terminal();
    let color = colour_on(terminal);
    {
        use tracing_subscriber::layer::{Layer, SubscriberExt};
        use tracing_subscriber::util::SubscriberInitExt;
        let safe = || {
            tracing_subscriber::filter::filter_fn(|meta| safe_to_log(meta.target(), *meta.level()))
        };
        let fmt = tracing_subscriber::fmt::layer().with_writer(|| RedactingStderr);
        // One JSON object per line for a journal or a log collector (with the run's span and
        // its reason in each line); lines for a person at a terminal.
        let logs = if json_logs(terminal) {
            fmt.json()
                .with_current_span(true)
                .with_span_list(false)
                .with_filter(log_filter())
                .with_filter(safe())
                .boxed()
        } else {
            fmt.with_ansi(color)
                .with_filter(log_filter())
                .with_filter(safe())
                .boxed()
        };
        tracing_subscriber::registry().with(logs).init();
    }
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Reconcile(args) => reconcile::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Import(args) => import::run(&args),
        Command::Propose(args) => propose::run(&args),
        Command::Status(args) => status::run_status(&args),
        Command::Drift(args) => status::run_drift(&args),
        Command::Schemas { dir } => write_schemas(&dir),
        Command::Config(args) => config::run(&args),
        Command::Suspend(args) => suspend::run_suspend(&args),
        Command::Resume(args) => suspend::run_resume(&args),
        Command::Db(args) => db::run(&args),
        Command::Mcp(args) => mcp::run(&args),
    }
}

/// Logs as JSON lines: LABCTL_LOG_FORMAT=json or human, else JSON unless stderr is a terminal.
fn json_logs(terminal: bool) -> bool {
    match std::env::var("LABCTL_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("human") => false,
        _ => !terminal,
    }
}

/// LABCTL_LOG's filter, with `labctl mcp`'s audit lines for a read-only store (target
/// `labctl::audit`) always on: they are the audit log then.
fn log_filter() -> tracing_subscriber::EnvFilter {
    let filter = tracing_subscriber::EnvFilter::from_env("LABCTL_LOG");
    match "labctl::audit=info".parse() {
        Ok(audit) => filter.add_directive(audit),
        Err(_) => filter,
    }
}

/// Whether an event or span may be logged at all, whatever LABCTL_LOG asks for: rmcp's debug
/// and trace events carry whole requests, responses and raw protocol lines (tool arguments,
/// secrets a caller pasted into them), which the audit log redacts; its info and above do not.
fn safe_to_log(target: &str, level: tracing::Level) -> bool {
    let rmcp = target == "rmcp" || target.starts_with("rmcp::");
    !rmcp || level <= tracing::Level::INFO
}

fn write_schemas(dir: &std::path::Path) -> ExitCode {
    let result = std::fs::create_dir_all(dir).and_then(|_| {
        for (name, text) in labctl::model::schema::all() {
            std::fs::write(dir.join(&name), text)?;
        }
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("error: cannot write schemas to {}: {e}", dir.display());
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Loads the snapshot `source` names, reporting a failure in `format`.
pub fn load_snapshot(source: &SourceArgs, format: Format) -> Option<Snapshot> {
    match source::load(&source.spec(), source.path.as_deref()) {
        Ok(s) => Some(s),
        Err(e) => {
            report_load_error(&e, format);
            None
        }
    }
}

/// Says that the repository could not be read, in `format`.
pub fn report_load_error(error: &SourceError, format: Format) {
    match format {
        Format::Json => outln!("{}", json!({ "valid": false, "error": error.to_string() })),
        Format::Human => errln!("error: {error}"),
    }
}

/// Renders diagnostics on stderr, in colour on a terminal. False if stderr is gone. What the
/// files put in messages (a key with a newline, an ESC in a value) is shown escaped, so a
/// repository cannot forge a line or drive the terminal.
pub fn print_diagnostics(diagnostics: &[Diagnostic], snapshot: &Snapshot) -> bool {
    use std::io::Write;
    let color = colour_on(std::io::stderr().is_terminal());
    let one_line = |text: &str| labctl::text::printable(text, false).into_owned();
    let safe: Vec<Diagnostic> = diagnostics
        .iter()
        .map(|d| {
            let mut d = d.clone();
            d.message = one_line(&d.message);
            d.help = d.help.as_deref().map(one_line);
            for r in &mut d.related {
                r.message = one_line(&r.message);
            }
            d
        })
        .collect();
    let mut buffer = if color {
        Buffer::ansi()
    } else {
        Buffer::no_color()
    };
    let rendered = checks::render(&safe, snapshot, &mut buffer).and_then(|()| {
        let text = labctl::redact::userinfo(&String::from_utf8_lossy(buffer.as_slice()));
        let text = if color {
            labctl::text::printable_keeping_colour(&text)
        } else {
            labctl::text::printable(&text, true)
        };
        std::io::stderr().lock().write_all(text.as_bytes())
    });
    match rendered {
        Ok(()) => true,
        Err(e) => {
            errln!("error: cannot write diagnostics: {e}");
            false
        }
    }
}

/// Says why a desired state was refused, every diagnostic included, in `format`.
pub fn report_invalid(invalid: &Invalid, format: Format) {
    match format {
        Format::Json => outln!(
            "{}",
            json!({ "valid": false, "error": "the desired state is invalid", "diagnostics": invalid.validation.diagnostics })
        ),
        Format::Human => {
            print_diagnostics(&invalid.validation.diagnostics, &invalid.snapshot);
            errln!("error: {invalid}");
        }
    }
}

/// Validation warnings of a desired state that is in force, for people.
pub fn print_warnings(loaded: &Loaded) {
    if loaded.warnings.is_empty() {
        return;
    }
    match loaded.files() {
        Ok(held) => {
            print_diagnostics(&loaded.warnings, &held);
        }
        // Said without the lines they point at.
        Err(e) => {
            errln!("note: the commit's files could not be read again to show where: {e}");
            print_diagnostics(&loaded.warnings, &Snapshot::of(loaded.origin(), Vec::new()));
        }
    }
}

/// Loads and validates; on any problem prints it and returns `None`. Used by every command
/// that acts on the desired state, so none of them ever acts on an invalid one.
pub fn load_valid(source: &SourceArgs, format: Format) -> Option<Loaded> {
    let snapshot = load_snapshot(source, format)?;
    match controller::validated(snapshot) {
        Ok(mut loaded) => {
            if format == Format::Human {
                print_warnings(&loaded);
            }
            // As the daemon does: what comes next needs the validated state, not the texts.
            loaded.let_go_of_files(&source.spec(), source.path.as_deref());
            Some(loaded)
        }
        Err(controller::Error::Invalid(invalid)) => {
            report_invalid(&invalid, format);
            None
        }
        Err(e) => {
            errln!("error: {e}");
            None
        }
    }
}

/// A tokio runtime for one command.
pub fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            None
        }
    }
}

/// Pretty JSON on stdout.
pub fn print_json(value: &serde_json::Value) {
    outln!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON serialises")
    );
}

/// Writes command output to stdout; see [`out!`]. Text a terminal would act on is shown
/// escaped; colour passes only where labctl colours (a terminal, NO_COLOR unset).
pub fn write_stdout(args: std::fmt::Arguments) {
    use std::io::Write;
    static COLOUR: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let colour = *COLOUR.get_or_init(|| colour_on(std::io::stdout().is_terminal()));
    let text = labctl::redact::userinfo(&args.to_string());
    let safe = if colour {
        labctl::text::printable_keeping_colour(&text)
    } else {
        labctl::text::printable(&text, true)
    };
    if let Err(e) = std::io::stdout().lock().write_all(safe.as_bytes()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        errln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// How much history the store keeps: applied after each run, and by `labctl mcp` to the audit
/// rows it writes. Open deviations, the latest run and each provider's latest snapshot always
/// stay.
#[derive(Args, Clone, Debug)]
pub struct RetentionArgs {
    /// Keep finished runs, snapshots and resolved deviations of this many days.
    #[arg(long, env = "LABCTL_KEEP_RUNS_DAYS", default_value_t = RetentionPolicy::DEFAULT.keep_runs_days, value_name = "DAYS")]
    pub keep_runs_days: u32,
    /// Keep audit entries of this many days.
    #[arg(long, env = "LABCTL_KEEP_AUDIT_DAYS", default_value_t = RetentionPolicy::DEFAULT.keep_audit_days, value_name = "DAYS")]
    pub keep_audit_days: u32,
    /// Keep at most this many audit entries, the newest, whatever their age.
    #[arg(long, env = "LABCTL_KEEP_AUDIT_ROWS", default_value_t = RetentionPolicy::DEFAULT.keep_audit_rows, value_name = "N")]
    pub keep_audit_rows: u64,
}

impl RetentionArgs {
    pub fn policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            keep_runs_days: self.keep_runs_days,
            keep_audit_days: self.keep_audit_days,
            keep_audit_rows: self.keep_audit_rows,
        }
    }
}

/// What this host allows; off unless asked for.
#[derive(Args, Clone, Debug)]
pub struct HostArgs {
    /// Probe every declared device service (TCP connect, HTTP health GET). Only from a host
    /// inside the lab's network: it connects to the devices' addresses.
    #[arg(long, env = "LABCTL_PROBE")]
    pub probe: bool,
    /// Start stdio MCP servers to check them: commands written in Git, run on this host.
    #[arg(long, env = "LABCTL_ALLOW_COMMANDS")]
    pub allow_commands: bool,
}

impl HostArgs {
    pub fn options(&self) -> HostOptions {
        HostOptions {
            probe: self.probe,
            allow_commands: self.allow_commands,
        }
    }
}

/// Plan rendering for stdout: colour on a terminal unless NO_COLOR.
pub fn render_options() -> RenderOptions {
    use std::io::IsTerminal;
    RenderOptions {
        color: colour_on(std::io::stdout().is_terminal()),
    }
}

/// Writes one message line to stderr; see [`errln!`]. A closed stderr is ignored: there is
/// nowhere left to say anything.
pub fn write_stderr_line(args: std::fmt::Arguments) {
    use std::io::Write;
    let text = labctl::redact::userinfo(&args.to_string());
    let line = labctl::text::printable(&text, false);
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The log writer: each event is written whole, so URL passwords in it (a provider's error
/// quoting its URL) are redacted before they reach the journal.
struct RedactingStderr;

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(labctl::redact::userinfo(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Colour for a person at a terminal, unless NO_COLOR says otherwise: one rule for output,
/// diagnostics and logs.
pub fn colour_on(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none()
}
