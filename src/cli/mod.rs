//! Command-line interface. Thin: every decision lives in the library.

mod db;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use labctl::source::{self, GitOptions, SourceSpec};

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
    #[arg(default_value = ".")]
    pub repo: String,
    /// Branch, tag or commit SHA to read (default: HEAD, or the remote's default branch).
    #[arg(long, value_name = "REV")]
    pub rev: Option<String>,
    /// Read the work tree, uncommitted edits included, instead of a commit.
    #[arg(long, conflicts_with = "rev")]
    pub worktree: bool,
    /// Subdirectory of the repository that holds the desired state.
    #[arg(long, value_name = "DIR")]
    pub path: Option<String>,
    /// Where remote repositories are cloned.
    #[arg(long, env = "LABCTL_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Environment variable that holds an HTTPS token for the Git remote.
    #[arg(long, default_value = "LABCTL_GIT_TOKEN", value_name = "VAR")]
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
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("LABCTL_LOG"))
        .init();
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Schemas { dir } => write_schemas(&dir),
        Command::Db(args) => db::run(&args),
    }
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
            eprintln!("error: cannot write schemas to {}: {e}", dir.display());
            ExitCode::from(EXIT_USAGE)
        }
    }
}
