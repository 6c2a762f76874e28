//! Where desired-state documents come from: an exact Git commit read from the object database,
//! a work tree (uncommitted files, on request), or a plain directory.
//!
//! A [`Snapshot`] is the complete set of YAML files of one revision. Loading either yields the
//! whole snapshot or an error: nothing downstream ever sees a partially loaded repository.

mod dir;
mod git;

use std::path::{Path, PathBuf};

pub use git::{GitLocation, GitOptions};

/// One YAML file of the desired state, with its path relative to the repository root
/// (always `/`-separated, so diagnostics read the same on every platform).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub path: String,
    pub text: String,
}

/// The Git revision a snapshot was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// Full hex SHA of the commit whose tree was read.
    pub commit: String,
    /// What the user asked for (`HEAD`, a branch, a tag or a SHA), for messages.
    pub requested: String,
}

/// All desired-state files of one revision.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Human-readable origin: a path or a URL (never with credentials in it).
    pub origin: String,
    /// The commit read; `None` for a plain directory or a work tree.
    pub revision: Option<Revision>,
    /// Files sorted by path.
    pub files: Vec<SourceFile>,
}

/// What to load.
#[derive(Debug, Clone)]
pub enum SourceSpec {
    /// A local directory read as files (not a Git repository, or `--worktree`).
    Directory(PathBuf),
    /// A Git repository, local or remote, read at an exact revision.
    Git(GitLocation),
}

/// Errors while loading a snapshot. All are I/O-level: the content is not judged here.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid UTF-8; desired-state files must be UTF-8 text")]
    NotUtf8 { path: String },
    #[error("subdirectory `{subdir}` does not exist in {origin}")]
    MissingSubdir { subdir: String, origin: String },
    #[error("git: {0}")]
    Git(String),
    /// A desired-state file whose name a terminal would act on (a newline, an ESC, a
    /// bidirectional override): shown escaped, never read.
    #[error("{path}: the file name holds control characters, which could forge or hide output; rename the file")]
    UnprintableName { path: String },
    /// A symbolic link that labctl will not follow: in a commit, out of the repository, or to
    /// a directory.
    #[error("{path} {detail}")]
    Link { path: String, detail: String },
    #[error("revision `{rev}` not found in {origin}: {detail}")]
    RevisionNotFound {
        rev: String,
        origin: String,
        detail: String,
    },
}

/// `Err` for a path a terminal would act on (see [`crate::text::printable`]).
pub(crate) fn printable_path(path: &str) -> Result<(), SourceError> {
    match crate::text::printable(path, false) {
        std::borrow::Cow::Borrowed(_) => Ok(()),
        std::borrow::Cow::Owned(escaped) => Err(SourceError::UnprintableName { path: escaped }),
    }
}

/// True for files that hold desired-state documents.
pub fn is_yaml(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml")
}

/// True for path components that are never read: hidden directories such as `.git` or
/// `.github`, whose YAML is not ours.
pub fn is_hidden(component: &str) -> bool {
    component.starts_with('.')
}

/// Loads a snapshot from `spec`, restricted to `subdir` when given.
pub fn load(spec: &SourceSpec, subdir: Option<&str>) -> Result<Snapshot, SourceError> {
    match spec {
        SourceSpec::Directory(path) => dir::load(path, subdir),
        SourceSpec::Git(loc) => git::load(loc, subdir),
    }
}

/// Decides how to read a local path or URL: a URL or the top of a Git repository is read as Git
/// (committed state) unless `worktree` is set; anything else is a plain directory.
pub fn resolve(target: &str, worktree: bool, git: GitOptions) -> SourceSpec {
    let path = Path::new(target);
    let is_url = target.contains("://") || target.starts_with("git@");
    if is_url {
        return SourceSpec::Git(GitLocation::Remote {
            url: target.to_string(),
            options: git,
        });
    }
    if !worktree
        && (path.join(".git").exists()
            || path.join("HEAD").is_file() && path.join("objects").is_dir())
    {
        return SourceSpec::Git(GitLocation::Local {
            path: path.to_path_buf(),
            options: git,
        });
    }
    SourceSpec::Directory(path.to_path_buf())
}
