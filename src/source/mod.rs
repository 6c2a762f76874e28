//! Where desired-state documents come from: an exact Git commit read from the object database,
//! a work tree (uncommitted files, on request), or a plain directory.
//!
//! A [`Snapshot`] is the complete set of YAML files of one revision. Loading either yields the
//! whole snapshot or an error: nothing downstream ever sees a partially loaded repository.

mod dir;
mod git;
mod push;

use std::path::{Path, PathBuf};

pub use git::{GitLocation, GitOptions};
pub use push::{push_branch, BranchCommit, Pushed, BRANCH_PREFIX};

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
    /// Files left unread because of a size limit, sorted by path. Validation reports each as
    /// an error, so a snapshot with any of them never becomes a desired state.
    pub refused: Vec<Refused>,
    /// The limits the snapshot was read under; validation applies the document counts.
    pub limits: Limits,
}

impl Snapshot {
    /// The text of the file at `path`, if the snapshot holds it.
    pub fn text(&self, path: &str) -> Option<&str> {
        self.files
            .iter()
            .find(|f| f.path == path)
            .map(|f| f.text.as_str())
    }

    /// A snapshot of `files` (any order) under the default limits, nothing refused.
    pub fn of(origin: impl Into<String>, mut files: Vec<SourceFile>) -> Self {
        // Paths are unique (one tree, one file system): an unstable sort needs no scratch.
        files.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        // Held as long as the commit is in force; a walk's list grows by doubling.
        files.shrink_to_fit();
        Snapshot {
            origin: origin.into(),
            revision: None,
            files,
            refused: Vec::new(),
            limits: Limits::default(),
        }
    }
}

/// How much one snapshot may hold. The byte limits are checked from the sizes the file system
/// or the object database reports, before a file is read, so a runaway file (a generated dump,
/// a mistaken commit) costs an error rather than the host's memory. The defaults are far above
/// what a large homelab writes (a 1,000-device repository is under 1 MB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one file.
    pub file_bytes: u64,
    /// Bytes of all files together.
    pub total_bytes: u64,
    /// YAML documents in one file.
    pub documents_per_file: usize,
    /// YAML documents in all files together.
    pub documents: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            file_bytes: 8 << 20,
            total_bytes: 64 << 20,
            documents_per_file: 10_000,
            // A lab of 100,000 reservations with its devices, routes and pools is 111,125
            // documents in 24 MB (benches/scale.rs); the byte limit bounds the memory.
            documents: 250_000,
        }
    }
}

impl Limits {
    /// The environment variable that overrides each limit, with the limit's description.
    pub const ENV: [(&'static str, &'static str); 4] = [
        ("LABCTL_MAX_FILE_BYTES", "bytes of one file"),
        ("LABCTL_MAX_TOTAL_BYTES", "bytes of all files together"),
        ("LABCTL_MAX_FILE_DOCUMENTS", "documents in one file"),
        ("LABCTL_MAX_DOCUMENTS", "documents in all files"),
    ];

    /// The defaults, each overridden by its variable in [`Limits::ENV`] when set.
    pub fn from_env() -> Result<Self, SourceError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, SourceError> {
        let mut limits = Limits::default();
        let [file, total, per_file, docs] = Self::ENV.map(|(name, _)| {
            var(name)
                .map(|text| match text.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(SourceError::BadLimit {
                        variable: name,
                        value: text,
                    }),
                })
                .transpose()
        });
        if let Some(n) = file? {
            limits.file_bytes = n;
        }
        if let Some(n) = total? {
            limits.total_bytes = n;
        }
        if let Some(n) = per_file? {
            limits.documents_per_file = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = docs? {
            limits.documents = usize::try_from(n).unwrap_or(usize::MAX);
        }
        Ok(limits)
    }
}

/// A file that was not read, and the limit it would have broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub path: String,
    /// Its size in bytes, as stored.
    pub bytes: u64,
    pub limit: Exceeded,
}

/// Which size limit a refused file would have broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    /// [`Limits::file_bytes`].
    FileBytes(u64),
    /// [`Limits::total_bytes`]: the files read before it already hold `read` bytes.
    TotalBytes { limit: u64, read: u64 },
}

/// Counts the bytes of a snapshot as it is read, and decides which files are too large.
#[derive(Debug)]
pub(crate) struct Budget {
    pub(crate) limits: Limits,
    read: u64,
    pub(crate) refused: Vec<Refused>,
    /// A commit the caller has already read: resolving to it reads no file.
    pub(crate) known: Option<String>,
    /// Set when the revision resolved to `known`.
    pub(crate) unchanged: Option<Revision>,
}

impl Budget {
    pub(crate) fn new(limits: Limits) -> Self {
        Budget {
            limits,
            read: 0,
            refused: Vec::new(),
            known: None,
            unchanged: None,
        }
    }

    /// True when a file of `bytes` may be read; otherwise it is recorded as refused. A file
    /// over the total is refused on its own: the files after it may still fit, and each
    /// refused one is reported.
    pub(crate) fn admit(&mut self, path: &str, bytes: u64) -> bool {
        let limit = if bytes > self.limits.file_bytes {
            Exceeded::FileBytes(self.limits.file_bytes)
        } else if self.read.saturating_add(bytes) > self.limits.total_bytes {
            Exceeded::TotalBytes {
                limit: self.limits.total_bytes,
                read: self.read,
            }
        } else {
            self.read += bytes;
            return true;
        };
        self.refused.push(Refused {
            path: path.to_string(),
            bytes,
            limit,
        });
        false
    }

    /// Records that the file at `path`, admitted at its reported size, held `bytes` when read
    /// (it grew in between); false when that breaks the file limit, and it is then refused.
    /// Reads are capped at [`Limits::file_bytes`] + 1, so this bounds what a read may hold.
    pub(crate) fn settle(&mut self, path: &str, admitted: u64, bytes: u64) -> bool {
        self.read = self.read.saturating_sub(admitted);
        self.admit(path, bytes)
    }

    /// The most bytes worth reading of one file: one past the limit shows it was broken.
    pub(crate) fn read_cap(&self) -> u64 {
        self.limits.file_bytes.saturating_add(1)
    }
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
    /// A limit variable that does not hold a positive whole number.
    #[error("{variable}=`{value}` is not a positive whole number; unset it for the default")]
    BadLimit {
        variable: &'static str,
        value: String,
    },
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

/// Loads a snapshot from `spec`, restricted to `subdir` when given, under the limits of
/// [`Limits::from_env`].
pub fn load(spec: &SourceSpec, subdir: Option<&str>) -> Result<Snapshot, SourceError> {
    load_with(spec, subdir, Limits::from_env()?)
}

/// Loads a snapshot from `spec` under `limits`.
pub fn load_with(
    spec: &SourceSpec,
    subdir: Option<&str>,
    limits: Limits,
) -> Result<Snapshot, SourceError> {
    match load_inner(spec, subdir, limits, None)? {
        Fetched::Fresh(snapshot) => Ok(snapshot),
        // Only a known commit can be unchanged, and none was given.
        Fetched::Unchanged(revision) => Err(SourceError::Git(format!(
            "commit {} was reported unchanged although no commit was known",
            revision.commit
        ))),
    }
}

/// What [`load_unless`] found.
#[derive(Debug)]
pub enum Fetched {
    /// A commit other than the known one (or a directory): every file read.
    Fresh(Snapshot),
    /// The revision still resolves to the known commit; no file was read.
    Unchanged(Revision),
}

/// Like [`load`], but when the revision resolves to `known` (a commit the caller has read
/// and validated already) nothing more is read: a daemon's scheduled run of an unchanged
/// repository costs a ref lookup (and, for a remote, the fetch), not every file again.
pub fn load_unless(
    spec: &SourceSpec,
    subdir: Option<&str>,
    known: Option<&str>,
) -> Result<Fetched, SourceError> {
    load_inner(spec, subdir, Limits::from_env()?, known)
}

fn load_inner(
    spec: &SourceSpec,
    subdir: Option<&str>,
    limits: Limits,
    known: Option<&str>,
) -> Result<Fetched, SourceError> {
    let mut budget = Budget::new(limits);
    budget.known = known.map(str::to_string);
    let snapshot = match spec {
        SourceSpec::Directory(path) => dir::load(path, subdir, &mut budget),
        SourceSpec::Git(loc) => git::load(loc, subdir, &mut budget),
    }?;
    if let Some(revision) = budget.unchanged.take() {
        return Ok(Fetched::Unchanged(revision));
    }
    Ok(Fetched::Fresh(settled(snapshot, budget)))
}

/// `snapshot` as read under `budget`: its files and what was refused sorted by path, and the
/// limits it was read under.
fn settled(mut snapshot: Snapshot, mut budget: Budget) -> Snapshot {
    snapshot.files.sort_by(|a, b| a.path.cmp(&b.path));
    budget.refused.sort_by(|a, b| a.path.cmp(&b.path));
    snapshot.refused = budget.refused;
    snapshot.limits = budget.limits;
    snapshot
}

/// How to read a snapshot's files again: the commit it was read from, in the repository it
/// came from. A commit's files never change, so what is read again is what was validated; a
/// directory's can, so a directory has none.
#[derive(Debug, Clone)]
pub struct Reread {
    location: GitLocation,
    subdir: Option<String>,
    revision: Revision,
    origin: String,
    limits: Limits,
}

impl Reread {
    /// For `snapshot`, read from `spec` below `subdir`; `None` unless it is a Git commit.
    pub fn of(spec: &SourceSpec, subdir: Option<&str>, snapshot: &Snapshot) -> Option<Self> {
        match (spec, &snapshot.revision) {
            (SourceSpec::Git(location), Some(revision)) => Some(Reread {
                location: location.clone(),
                subdir: subdir.map(str::to_string),
                revision: revision.clone(),
                origin: snapshot.origin.clone(),
                limits: snapshot.limits,
            }),
            _ => None,
        }
    }

    /// The commit's files, read again from the repository (for a remote, its local clone:
    /// nothing is fetched), under the limits they were first read under.
    pub fn read(&self) -> Result<Snapshot, SourceError> {
        let mut budget = Budget::new(self.limits);
        let mut snapshot = git::read_again(
            &self.location,
            &self.revision,
            self.subdir.as_deref(),
            &mut budget,
        )?;
        snapshot.origin = self.origin.clone();
        Ok(settled(snapshot, budget))
    }
}

/// A snapshot of files given as bytes (`path`, content), read the way the loaders read a
/// directory or a commit: file names checked, sizes within `limits`, content UTF-8. For
/// input that arrives whole (the fuzz target; text an MCP client sends).
pub fn from_memory(
    origin: &str,
    files: impl IntoIterator<Item = (String, Vec<u8>)>,
    limits: Limits,
) -> Result<Snapshot, SourceError> {
    let mut budget = Budget::new(limits);
    let mut read = Vec::new();
    for (path, bytes) in files {
        printable_path(&path)?;
        if budget.admit(&path, bytes.len() as u64) {
            read.push(SourceFile {
                text: utf8(&path, bytes)?,
                path,
            });
        }
    }
    budget.refused.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Snapshot {
        refused: budget.refused,
        limits,
        ..Snapshot::of(origin, read)
    })
}

/// The text of the file at `path`, which must be UTF-8, held at exactly its size: a snapshot
/// lives as long as its commit is in force, and gix hands a blob decoded through deltas over
/// in a buffer sized for its chain (at 100k documents one per file, 53 MB held for 23 MB).
pub(crate) fn utf8(path: &str, mut bytes: Vec<u8>) -> Result<String, SourceError> {
    bytes.shrink_to_fit();
    String::from_utf8(bytes).map_err(|_| SourceError::NotUtf8 {
        path: path.to_string(),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(file_bytes: u64, total_bytes: u64) -> Limits {
        Limits {
            file_bytes,
            total_bytes,
            ..Limits::default()
        }
    }

    #[test]
    fn a_text_is_held_at_its_size() {
        let mut bytes = Vec::with_capacity(4096);
        bytes.extend_from_slice(b"kind: Pool\n");
        let text = utf8("pools/a.yaml", bytes).unwrap();
        assert_eq!((text.as_str(), text.capacity()), ("kind: Pool\n", 11));
        assert!(matches!(
            utf8("pools/b.yaml", vec![0xff]),
            Err(SourceError::NotUtf8 { path }) if path == "pools/b.yaml"
        ));
    }

    #[test]
    fn the_budget_refuses_big_files_and_what_crosses_the_total() {
        let mut b = Budget::new(limits(100, 250));
        assert!(b.admit("a", 100));
        assert!(!b.admit("big", 101));
        assert!(b.admit("b", 100));
        assert!(!b.admit("c", 60), "would make 260");
        assert!(b.admit("d", 50), "a later file that fits is read");
        assert_eq!(
            b.refused,
            vec![
                Refused {
                    path: "big".into(),
                    bytes: 101,
                    limit: Exceeded::FileBytes(100)
                },
                Refused {
                    path: "c".into(),
                    bytes: 60,
                    limit: Exceeded::TotalBytes {
                        limit: 250,
                        read: 200
                    }
                },
            ]
        );
    }

    #[test]
    fn a_file_that_grew_after_its_size_was_taken_is_settled_at_what_was_read() {
        let mut b = Budget::new(limits(100, 250));
        assert!(b.admit("a", 40));
        assert_eq!(b.read_cap(), 101);
        // Read whole at 101 bytes (the cap): over the file limit, refused.
        assert!(!b.settle("a", 40, 101));
        assert_eq!(b.refused[0].limit, Exceeded::FileBytes(100));
        // A file that shrank is counted at its new size.
        assert!(b.admit("b", 90));
        assert!(b.settle("b", 90, 10));
        assert!(b.admit("c", 100));
        assert!(b.admit("d", 100));
    }

    #[test]
    fn files_from_memory_are_read_like_files_on_disk() {
        let files = |big: usize| {
            vec![
                ("b.yaml".to_string(), b"kind: Pool\n".to_vec()),
                ("a.yaml".to_string(), vec![b'#'; big]),
            ]
        };
        let s = from_memory("fuzz", files(10), limits(100, 1000)).unwrap();
        let paths: Vec<&str> = s.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a.yaml", "b.yaml"]);
        let s = from_memory("fuzz", files(101), limits(100, 1000)).unwrap();
        assert_eq!(s.refused[0].path, "a.yaml");
        assert_eq!(s.files.len(), 1);
        let bad = vec![("x.yaml".to_string(), vec![0xff, 0xfe])];
        assert!(matches!(
            from_memory("fuzz", bad, Limits::default()),
            Err(SourceError::NotUtf8 { .. })
        ));
        let odd = vec![("x\u{1b}.yaml".to_string(), vec![])];
        assert!(matches!(
            from_memory("fuzz", odd, Limits::default()),
            Err(SourceError::UnprintableName { .. })
        ));
    }

    #[test]
    fn limits_come_from_the_environment_names() {
        let vars = |name: &str| match name {
            "LABCTL_MAX_FILE_BYTES" => Some("1024".to_string()),
            "LABCTL_MAX_DOCUMENTS" => Some(" 7 ".to_string()),
            _ => None,
        };
        let l = Limits::from_vars(vars).unwrap();
        assert_eq!(
            l,
            Limits {
                file_bytes: 1024,
                documents: 7,
                ..Limits::default()
            }
        );
        for bad in ["0", "-1", "8MiB", ""] {
            let err = Limits::from_vars(|n| (n == "LABCTL_MAX_TOTAL_BYTES").then(|| bad.into()))
                .unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("LABCTL_MAX_TOTAL_BYTES=`{bad}` is not")),
                "{err}"
            );
        }
    }
}
