//! Reads desired state from the tree of one Git commit, straight from the object database.
//!
//! Local repositories are read in place; remote ones are mirrored into a bare clone under a cache
//! directory and fetched before every load, so a snapshot always names an exact commit.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use gix::bstr::{BStr, ByteSlice};
use gix::remote::fetch::{Outcome, Tags};
use gix::remote::Direction;
use gix::ObjectId;

use super::{is_hidden, is_yaml, Budget, Revision, Snapshot, SourceError, SourceFile};

/// How to read a Git repository.
#[derive(Debug, Clone, Default)]
pub struct GitOptions {
    /// Branch, tag, or (abbreviated) SHA; None = HEAD (for a remote: the remote's default branch).
    pub rev: Option<String>,
    /// Where remote repositories are cloned (bare) and fetched; one subdirectory per URL (a hash
    /// of the URL without credentials).
    pub cache_dir: PathBuf,
    /// Name of the environment variable holding an HTTPS token (e.g. "LABCTL_GIT_TOKEN"); None =
    /// no auth.
    pub token_env: Option<String>,
}

/// A Git repository to read: a local path (work tree or bare) or a URL.
#[derive(Debug, Clone)]
pub enum GitLocation {
    Local { path: PathBuf, options: GitOptions },
    Remote { url: String, options: GitOptions },
}

impl GitLocation {
    /// How the repository is read.
    pub fn options(&self) -> &GitOptions {
        match self {
            GitLocation::Local { options, .. } | GitLocation::Remote { options, .. } => options,
        }
    }
}

pub(super) fn load(
    loc: &GitLocation,
    subdir: Option<&str>,
    budget: &mut Budget,
) -> Result<Snapshot, SourceError> {
    match loc {
        GitLocation::Local { path, options } => load_local(path, options, subdir, budget),
        GitLocation::Remote { url, options } => load_remote(url, options, subdir, budget),
    }
}

fn load_local(
    path: &Path,
    options: &GitOptions,
    subdir: Option<&str>,
    budget: &mut Budget,
) -> Result<Snapshot, SourceError> {
    let (repo, origin) = open_local(path)?;
    let requested = options.rev.clone().unwrap_or_else(|| "HEAD".to_string());
    let commit = resolve_rev(&repo, &requested, &origin)?;
    read_commit(&repo, commit, requested, origin, subdir, budget)
}

/// The files of `revision` (a commit read before) again, from `loc`'s repository as it is now:
/// a local one opened, a remote one's clone in the cache, never fetched.
pub(super) fn read_again(
    loc: &GitLocation,
    revision: &Revision,
    subdir: Option<&str>,
    budget: &mut Budget,
) -> Result<Snapshot, SourceError> {
    let (repo, origin) = match loc {
        GitLocation::Local { path, .. } => open_local(path)?,
        GitLocation::Remote { url, options } => {
            let target = RemoteTarget::new(url, options)?;
            let dir = options.cache_dir.join(cache_key(&target.origin));
            let repo = open_cached(&dir, &target.url).ok_or_else(|| {
                SourceError::Git(format!(
                    "the clone of {} in {} is gone; the next run reads it again",
                    target.origin,
                    dir.display()
                ))
            })?;
            (repo, target.origin)
        }
    };
    let commit = ObjectId::from_hex(revision.commit.as_bytes())
        .map_err(|e| SourceError::Git(format!("`{}` is not a commit id: {e}", revision.commit)))?;
    read_commit(
        &repo,
        commit,
        revision.requested.clone(),
        origin,
        subdir,
        budget,
    )
}

/// The local repository at `path`, and its origin as snapshots name it.
fn open_local(path: &Path) -> Result<(gix::Repository, String), SourceError> {
    let origin = path.display().to_string();
    let repo = gix::open(path).map_err(|e| {
        SourceError::Git(format!("cannot open repository at {origin}: {}", chain(&e)))
    })?;
    Ok((repo, origin))
}

/// Resolves `rev` to a commit, peeling annotated tags.
fn resolve_rev(repo: &gix::Repository, rev: &str, origin: &str) -> Result<ObjectId, SourceError> {
    let not_found = |detail: String| SourceError::RevisionNotFound {
        rev: rev.to_string(),
        origin: origin.to_string(),
        detail,
    };
    let id = repo
        .rev_parse_single(rev)
        .map_err(|e| not_found(chain(&e)))?;
    let object = id.object().map_err(|e| {
        SourceError::Git(format!(
            "cannot read object {id} in {origin}: {}",
            chain(&e)
        ))
    })?;
    let kind = object.kind;
    let commit = object
        .peel_to_commit()
        .map_err(|_| not_found(format!("it names a {kind}, not a commit")))?;
    Ok(commit.id)
}

/// Reads the YAML files of `commit`'s tree (optionally below `subdir`) into a snapshot.
fn read_commit(
    repo: &gix::Repository,
    commit: ObjectId,
    requested: String,
    origin: String,
    subdir: Option<&str>,
    budget: &mut Budget,
) -> Result<Snapshot, SourceError> {
    if budget.known.as_deref() == Some(commit.to_string().as_str()) {
        // The caller has this commit's files already; it gets no snapshot, only this.
        budget.unchanged = Some(Revision {
            commit: commit.to_string(),
            requested,
        });
        return Ok(Snapshot::of(origin, Vec::new()));
    }
    let git = |what: &str, e: &gix::Error| {
        SourceError::Git(format!(
            "cannot read {what} of commit {commit} in {origin}: {}",
            chain(e)
        ))
    };
    let mut tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(|e| git("the tree", &e))?;
    if let Some(sub) = subdir {
        let components: Vec<&str> = sub
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        if !components.is_empty() {
            let missing = || SourceError::MissingSubdir {
                subdir: sub.to_string(),
                origin: format!("{origin} at {commit}"),
            };
            let entry = tree
                .lookup_entry(components.iter().copied())
                .map_err(|e| git(&format!("directory `{sub}`"), &e))?
                .ok_or_else(missing)?;
            if !entry.mode().is_tree() {
                return Err(missing());
            }
            tree = repo
                .find_tree(entry.object_id())
                .map_err(|e| git(&format!("directory `{sub}`"), &e))?;
        }
    }
    let mut files = Vec::new();
    walk_tree(repo, &tree, "", budget, &mut files).map_err(|e| match e {
        WalkError::Source(e) => e,
        WalkError::Git(path, e) => git(&path, &e),
    })?;
    Ok(Snapshot {
        revision: Some(Revision {
            commit: commit.to_string(),
            requested,
        }),
        ..Snapshot::of(origin, files)
    })
}

enum WalkError {
    Source(SourceError),
    Git(String, gix::Error),
}

fn walk_tree(
    repo: &gix::Repository,
    tree: &gix::Tree<'_>,
    prefix: &str,
    budget: &mut Budget,
    out: &mut Vec<SourceFile>,
) -> Result<(), WalkError> {
    let location = |name: &str| {
        if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        }
    };
    for entry in tree.iter() {
        let entry = entry.map_err(|e| WalkError::Git(format!("directory `{prefix}`"), e))?;
        let raw_name = entry.filename();
        let name = raw_name.to_str_lossy();
        if is_hidden(&name) {
            continue;
        }
        let rel = location(&name);
        let mode = entry.mode();
        if mode.is_tree() {
            let sub = repo
                .find_tree(entry.object_id())
                .map_err(|e| WalkError::Git(format!("directory `{rel}`"), e))?;
            walk_tree(repo, &sub, &rel, budget, out)?;
        } else if mode.is_blob() && is_yaml(&rel) {
            super::printable_path(&rel).map_err(WalkError::Source)?;
            if raw_name.to_str().is_err() {
                return Err(WalkError::Source(SourceError::NotUtf8 { path: rel }));
            }
            // The size from the object's header: a blob over the limit is never inflated.
            let size = repo
                .find_header(entry.object_id())
                .map_err(|e| WalkError::Git(format!("file `{rel}`"), e))?
                .size();
            if !budget.admit(&rel, size) {
                continue;
            }
            let data = repo
                .find_blob(entry.object_id())
                .map_err(|e| WalkError::Git(format!("file `{rel}`"), e))?
                .take_data();
            let text = super::utf8(&rel, data).map_err(WalkError::Source)?;
            out.push(SourceFile { path: rel, text });
        } else if mode.is_link() && (is_yaml(&rel) || !name.contains('.')) {
            // A symlink blob holds its target path, not content. Following it would read either
            // the work tree (not this commit) or another tree path whose meaning depends on the
            // checkout; skipping it would drop what it declares, and under apply delete it live.
            // So it stops the load. (A link without an extension may stand for a directory.)
            return Err(WalkError::Source(SourceError::Link {
                path: rel,
                detail: "is a symbolic link in the commit; labctl reads committed files only: \
                         commit the file (or directory) itself"
                    .into(),
            }));
        }
        // Submodule entries (commits) point into another repository, which is not desired state
        // of this one.
    }
    Ok(())
}

/// Refspecs of the cache: a mirror of branches and tags, force-updated so rewritten history is
/// seen as the remote has it.
const MIRROR_REFSPECS: [&str; 2] = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"];

/// Credentials for HTTPS, kept out of every URL so they never reach disk or messages.
#[derive(Clone)]
pub(super) struct Credentials {
    pub(super) username: String,
    pub(super) password: String,
}

impl Credentials {
    fn helper(
        self,
    ) -> impl FnMut(
        gix::credentials::helper::Action,
    ) -> gix::Result<Option<gix::credentials::protocol::Outcome>>
           + 'static {
        move |action| match action {
            gix::credentials::helper::Action::Get(context) => {
                Ok(Some(gix::credentials::protocol::Outcome {
                    identity: gix::sec::identity::Account {
                        username: self.username.clone(),
                        password: self.password.clone(),
                        oauth_refresh_token: None,
                    },
                    next: context.into(),
                }))
            }
            // Nothing is stored, so there is nothing to approve or erase.
            gix::credentials::helper::Action::Store(_)
            | gix::credentials::helper::Action::Erase(_) => Ok(None),
        }
    }
}

/// A remote URL split into what may be shown or stored and what must stay in memory.
pub(super) struct RemoteTarget {
    /// For messages and `Snapshot::origin`: no user information at all.
    pub(super) origin: String,
    /// What gix connects to and what the cache's config records: no password.
    pub(super) url: gix::Url,
    pub(super) credentials: Option<Credentials>,
    /// Strings scrubbed from every error message, in case a library echoes them.
    pub(super) secrets: Vec<String>,
}

impl RemoteTarget {
    pub(super) fn new(raw: &str, options: &GitOptions) -> Result<Self, SourceError> {
        let origin = strip_userinfo(raw);
        let url_secret = url_password(raw);
        let mut secrets: Vec<String> = url_secret.into_iter().collect();
        let mut url = gix::url::parse(raw.as_bytes().as_bstr()).map_err(|e| {
            SourceError::Git(scrub(
                &format!("invalid repository URL {origin}: {}", chain(&e)),
                &secrets,
            ))
        })?;
        let user = url.user().map(str::to_string);
        let url_pass = url.set_password(None);
        // The variable, else the systemd credential `git-token` (LoadCredential=): a unit
        // needs no shell to move the token into the environment.
        let token = options
            .token_env
            .as_deref()
            .and_then(|name| std::env::var(name).ok())
            .or_else(|| {
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY")?;
                std::fs::read_to_string(Path::new(&dir).join("git-token")).ok()
            })
            .map(|token| token.trim().to_string())
            .filter(|token| !token.is_empty());
        let credentials = match (token, url_pass) {
            (Some(token), _) => Some(Credentials {
                // Forges accept any user name with a token; this one is what GitHub documents.
                username: user.unwrap_or_else(|| "x-access-token".to_string()),
                password: token,
            }),
            (None, Some(password)) => Some(Credentials {
                username: user.unwrap_or_default(),
                password,
            }),
            (None, None) => None,
        };
        if let Some(c) = &credentials {
            secrets.push(c.password.clone());
        }
        Ok(RemoteTarget {
            origin,
            url,
            credentials,
            secrets,
        })
    }

    fn git_error(&self, what: &str, err: &gix::Error) -> SourceError {
        SourceError::Git(scrub(
            &format!("{what} {}: {}", self.origin, chain(err)),
            &self.secrets,
        ))
    }
}

fn load_remote(
    raw_url: &str,
    options: &GitOptions,
    subdir: Option<&str>,
    budget: &mut Budget,
) -> Result<Snapshot, SourceError> {
    let target = RemoteTarget::new(raw_url, options)?;
    let cache_dir = &options.cache_dir;
    if cache_dir.as_os_str().is_empty() {
        // An empty path would put clones into whatever the current directory happens to be.
        return Err(SourceError::Git(format!(
            "no cache directory configured for cloning {}",
            target.origin
        )));
    }
    std::fs::create_dir_all(cache_dir).map_err(|source| SourceError::Io {
        path: cache_dir.clone(),
        source,
    })?;
    sweep_leftovers(cache_dir);
    let dir = cache_dir.join(cache_key(&target.origin));

    let (repo, outcome, fresh) = match open_cached(&dir, &target.url) {
        Some(repo) => match fetch(&repo, &target) {
            Ok(outcome) => (repo, outcome, false),
            Err(err) if cache_is_intact(&repo) => return Err(err),
            Err(_) => {
                tracing::warn!(cache = %dir.display(), "cached clone is damaged; cloning again");
                drop(repo);
                discard(&dir)?;
                let (repo, outcome) = clone(&dir, &target)?;
                (repo, outcome, true)
            }
        },
        None => {
            discard(&dir)?;
            let (repo, outcome) = clone(&dir, &target)?;
            (repo, outcome, true)
        }
    };

    match read_remote(&repo, &outcome, options, &target, subdir, budget) {
        // The fetch just succeeded, so the remote is reachable and every object reachable from
        // its refs should be here: a failure to read one means the cache is damaged.
        Err(SourceError::Git(msg)) if !fresh => {
            tracing::warn!(cache = %dir.display(), error = %msg, "cached clone is damaged; cloning again");
            drop(repo);
            discard(&dir)?;
            let (repo, outcome) = clone(&dir, &target)?;
            *budget = Budget::new(budget.limits);
            read_remote(&repo, &outcome, options, &target, subdir, budget)
        }
        other => other,
    }
}

fn read_remote(
    repo: &gix::Repository,
    outcome: &Outcome,
    options: &GitOptions,
    target: &RemoteTarget,
    subdir: Option<&str>,
    budget: &mut Budget,
) -> Result<Snapshot, SourceError> {
    let origin = target.origin.clone();
    let (requested, commit) = match options.rev.as_deref() {
        // The cache's own HEAD is only what the remote's default branch was at clone time.
        None | Some("HEAD") => ("HEAD".to_string(), remote_head(repo, outcome, &origin)?),
        Some(rev) => (rev.to_string(), resolve_rev(repo, rev, &origin)?),
    };
    read_commit(repo, commit, requested, origin, subdir, budget)
}

/// The commit the remote's HEAD pointed to during the fetch that just happened.
fn remote_head(
    repo: &gix::Repository,
    outcome: &Outcome,
    origin: &str,
) -> Result<ObjectId, SourceError> {
    let not_found = |detail: &str| SourceError::RevisionNotFound {
        rev: "HEAD".to_string(),
        origin: origin.to_string(),
        detail: detail.to_string(),
    };
    let head = outcome
        .ref_map
        .remote_refs
        .iter()
        .map(|r| r.unpack())
        .find(|(name, _, _)| *name == "HEAD")
        .ok_or_else(|| not_found("the remote did not advertise a HEAD"))?;
    let id = match head {
        (_, _, Some(peeled)) => peeled.to_owned(),
        (_, Some(id), None) => id.to_owned(),
        (_, None, _) => return Err(not_found("the remote repository has no commits")),
    };
    let commit = repo
        .find_object(id)
        .and_then(|o| o.peel_to_commit())
        .map_err(|e| {
            SourceError::Git(format!(
                "cannot read HEAD commit {id} of {origin}: {}",
                chain(&e)
            ))
        })?;
    Ok(commit.id)
}

/// Opens the cached clone at `dir` if it is a readable repository cloned from `url`.
pub(super) fn open_cached(dir: &Path, url: &gix::Url) -> Option<gix::Repository> {
    if !dir.exists() {
        return None;
    }
    let repo = match gix::open_opts(dir, cache_open_options()) {
        Ok(repo) => repo,
        Err(err) => {
            tracing::warn!(cache = %dir.display(), error = %chain(&err), "cannot open cached clone; cloning again");
            return None;
        }
    };
    let cached = repo
        .find_remote("origin")
        .ok()
        .and_then(|remote| remote.url(Direction::Fetch).cloned());
    match cached {
        Some(cached) if same_location(&cached, url) && repo.is_bare() => Some(repo),
        _ => {
            tracing::warn!(cache = %dir.display(), "cached clone is of another repository; cloning again");
            None
        }
    }
}

/// Settings for every fetch into the cache.
const CACHE_CONFIG: [&str; 3] = [
    // Two labctl processes may fetch into the same clone; wait for the other's ref locks
    // instead of failing after git's default of 100ms.
    "core.filesRefLockTimeout=10000",
    "core.packedRefsTimeout=10000",
    // A controller has nobody at the terminal: fail instead of waiting for a password.
    "gitoxide.credentials.terminalPrompt=false",
];

fn cache_open_options() -> gix::open::Options {
    gix::open::Options::default().config_overrides(CACHE_CONFIG)
}

fn same_location(a: &gix::Url, b: &gix::Url) -> bool {
    a.scheme == b.scheme && a.host() == b.host() && a.port == b.port && a.path == b.path
}

/// Fetches branches, tags and HEAD from the remote into the cache, then removes branches and
/// tags the remote no longer has, so a deleted branch cannot be deployed from a stale copy.
fn fetch(repo: &gix::Repository, target: &RemoteTarget) -> Result<Outcome, SourceError> {
    let failed = |e: gix::Error| target.git_error("cannot fetch from", &e);
    let remote = repo
        .remote_at(target.url.clone())
        .and_then(|r| r.with_refspecs(MIRROR_REFSPECS, Direction::Fetch))
        .map_err(failed)?
        .with_fetch_tags(Tags::None);
    let mut connection = remote.connect(Direction::Fetch).map_err(failed)?;
    if let Some(credentials) = &target.credentials {
        connection.set_credentials(credentials.clone().helper());
    }
    let outcome = connection
        .prepare_fetch(gix::progress::Discard, ref_map_options())
        .and_then(|prepare| prepare.receive(gix::progress::Discard, &AtomicBool::new(false)))
        .map_err(failed)?;
    prune(repo, &outcome)
        .map_err(|e| target.git_error("cannot prune stale refs in the cache of", &e))?;
    Ok(outcome)
}

fn ref_map_options() -> gix::remote::ref_map::Options {
    // HEAD is listed without a destination: it is only needed to learn the default branch.
    let head = gix::refspec::parse("HEAD".into(), gix::refspec::parse::Operation::Fetch)
        .expect("HEAD is a valid refspec")
        .to_owned();
    gix::remote::ref_map::Options {
        extra_refspecs: vec![head],
        ..Default::default()
    }
}

fn prune(repo: &gix::Repository, outcome: &Outcome) -> gix::Result<()> {
    let advertised: HashSet<&BStr> = outcome
        .ref_map
        .remote_refs
        .iter()
        .map(|r| r.unpack().0)
        .collect();
    let platform = repo.references()?;
    let stale: Vec<gix::Reference<'_>> = platform
        .local_branches()?
        .chain(platform.tags()?)
        .filter_map(Result::ok)
        .filter(|r| !advertised.contains(r.name().as_bstr()))
        .collect();
    for reference in stale {
        if let Err(err) = reference.delete() {
            // Another labctl fetching at the same time may have pruned it first.
            if repo.try_find_reference(reference.name())?.is_some() {
                return Err(err);
            }
        }
    }
    Ok(())
}

/// True if every branch and tag of the cache points to an object that is present, i.e. a failed
/// fetch is the network's fault and recloning would not help.
fn cache_is_intact(repo: &gix::Repository) -> bool {
    let Ok(platform) = repo.references() else {
        return false;
    };
    let Ok(refs) = platform.all() else {
        return false;
    };
    for reference in refs {
        let Ok(mut reference) = reference else {
            return false;
        };
        match reference.peel_to_id() {
            Ok(id) if repo.has_object(id) => {}
            _ => return false,
        }
    }
    true
}

/// A unique hidden path next to the cache entry `dir` (`.TAG-NAME-SUFFIX`), on the same file
/// system so a rename into or out of place is atomic.
fn sibling(dir: &Path, tag: &str) -> PathBuf {
    let parent = dir
        .parent()
        .expect("cache entries live in the cache directory");
    let name = dir
        .file_name()
        .expect("cache entries have a name")
        .to_string_lossy();
    parent.join(format!(".{tag}-{name}-{}", unique_suffix()))
}

/// Clones `target` bare into `dir`. The clone is made in a temporary directory and renamed into
/// place, so a concurrent labctl never sees a half-made clone; if another process wins the
/// race, its clone is used.
fn clone(dir: &Path, target: &RemoteTarget) -> Result<(gix::Repository, Outcome), SourceError> {
    let tmp = sibling(dir, "tmp");
    let failed = |e: gix::Error| target.git_error("cannot clone", &e);

    let mut prepare = gix::prepare_clone_bare(target.url.clone(), &tmp)
        .map_err(failed)?
        .configure_remote(|remote| {
            Ok(remote
                .with_refspecs(MIRROR_REFSPECS, Direction::Fetch)?
                .with_fetch_tags(Tags::None))
        })
        .with_fetch_options(ref_map_options())
        .with_in_memory_config_overrides(CACHE_CONFIG);
    if let Some(credentials) = target.credentials.clone() {
        prepare = prepare.configure_connection(move |connection| {
            connection.set_credentials(credentials.clone().helper());
            Ok(())
        });
    }
    // On failure `prepare` removes the temporary directory when dropped.
    let (repo, outcome) = prepare
        .fetch_only(gix::progress::Discard, &AtomicBool::new(false))
        .map_err(failed)?;
    drop(repo);

    if let Err(err) = std::fs::rename(&tmp, dir) {
        let _ = std::fs::remove_dir_all(&tmp);
        if !dir.exists() {
            return Err(SourceError::Io {
                path: dir.to_path_buf(),
                source: err,
            });
        }
        // Another process put its clone in place first; it is as fresh as ours.
    }
    let repo = gix::open_opts(dir, cache_open_options()).map_err(|e| {
        SourceError::Git(format!(
            "cannot open cached clone at {}: {}",
            dir.display(),
            chain(&e)
        ))
    })?;
    Ok((repo, outcome))
}

/// Removes a cache entry. It is first renamed aside so that another process never opens a
/// half-deleted clone.
fn discard(dir: &Path) -> Result<(), SourceError> {
    if !dir.exists() {
        return Ok(());
    }
    let aside = sibling(dir, "stale");
    match std::fs::rename(dir, &aside) {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&aside);
            Ok(())
        }
        // Another process moved it first.
        Err(_) if !dir.exists() => Ok(()),
        Err(source) => Err(SourceError::Io {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Removes temporary clones and discarded entries left by processes that were killed; a day is
/// far longer than any clone takes.
fn sweep_leftovers(cache_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(cache_dir) else {
        return;
    };
    let cutoff = SystemTime::now() - Duration::from_secs(24 * 60 * 60);
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(".tmp-") || name.starts_with(".stale-")) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < cutoff);
        if old {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{nanos}-{n}", std::process::id())
}

/// Name of a URL's cache entry: stable across runs and Rust versions, unlike `DefaultHasher`.
pub(super) fn cache_key(origin: &str) -> String {
    let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
    hasher.update(origin.as_bytes());
    let id = hasher
        .try_finalize()
        .expect("a URL is no SHA-1 collision attack");
    id.to_hex_with_len(20).to_string()
}

/// `scheme://user:pass@host/path` → `scheme://host/path`; other forms are returned unchanged.
fn strip_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}{}", &url[..scheme_end + 3], &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// The password of `scheme://user:pass@host/...`, as written.
fn url_password(url: &str) -> Option<String> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then(|| password.to_string())
}

pub(super) fn scrub(message: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(message.to_string(), |m, s| m.replace(s.as_str(), "***"))
}

/// An error and its causes on one line; gix's top-level message alone rarely says why.
pub(super) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_stripped_and_password_found() {
        let url = "https://bob:s3cret@git.example.com/lab/state.git";
        assert_eq!(strip_userinfo(url), "https://git.example.com/lab/state.git");
        assert_eq!(url_password(url).as_deref(), Some("s3cret"));
        assert_eq!(
            strip_userinfo("git@host:lab/state.git"),
            "git@host:lab/state.git"
        );
        assert_eq!(url_password("https://host/a@b"), None);
    }

    #[test]
    fn url_password_becomes_credentials_not_url() {
        let options = GitOptions::default();
        let target =
            RemoteTarget::new("https://bob:s3cret@git.example.com/lab/state.git", &options)
                .unwrap();
        assert_eq!(target.origin, "https://git.example.com/lab/state.git");
        assert!(!target.url.to_bstring().to_string().contains("s3cret"));
        let creds = target.credentials.as_ref().unwrap();
        assert_eq!(
            (creds.username.as_str(), creds.password.as_str()),
            ("bob", "s3cret")
        );
    }

    #[test]
    fn token_is_offered_for_get_only() {
        let creds = Credentials {
            username: "x-access-token".into(),
            password: "tok".into(),
        };
        let mut helper = creds.helper();
        let outcome = helper(gix::credentials::helper::Action::get_for_url(
            "https://h/r.git",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(outcome.identity.username, "x-access-token");
        assert_eq!(outcome.identity.password, "tok");
        assert!(helper(gix::credentials::helper::Action::Erase("x".into()))
            .unwrap()
            .is_none());
    }

    #[test]
    fn cache_key_ignores_credentials() {
        let a = cache_key(&strip_userinfo("https://u:p@h/r.git"));
        assert_eq!(a, cache_key("https://h/r.git"));
        assert_eq!(a.len(), 20);
    }
}
