//! Proposal branches: one commit on top of the tracked branch's head, built in the object
//! database with gix and sent with the `git` command line.
//!
//! gix has no client push yet, so the last step runs `git push`, as Renovate does. The token
//! reaches git through a credential helper that reads it from the child's environment: never a
//! URL, an argument or a line of output. The push is leased (`--force-with-lease` with the value
//! the last fetch saw), so a branch that moved on the remote in between is not overwritten, and
//! only branches below [`BRANCH_PREFIX`] are ever pushed.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gix::bstr::ByteSlice;
use gix::objs::tree::EntryKind;
use gix::ObjectId;

use super::git::{self, chain, scrub, Credentials, GitLocation};
use super::SourceError;

/// Branches labctl creates start with this; it never pushes to, or touches, any other.
pub const BRANCH_PREFIX: &str = "labctl/";

/// The trailer that marks a commit as labctl's own, naming the branch it was made for.
const TRAILER: &str = "Labctl-Branch";

/// Bytes of git's output kept for an error message.
const OUTPUT_LIMIT: u64 = 64 << 10;

/// One proposal branch to bring up to date.
#[derive(Debug, Clone)]
pub struct BranchCommit<'a> {
    /// The branch name below `refs/heads/`; starts with [`BRANCH_PREFIX`].
    pub branch: &'a str,
    /// The commit the change is based on: the tracked branch's head the snapshot was read from.
    pub base: &'a str,
    /// Paths relative to the desired-state root (`--path`), with their new text (`None`:
    /// deleted).
    pub files: Vec<(&'a str, Option<&'a str>)>,
    /// The commit message; labctl's trailer is added to it.
    pub message: &'a str,
    pub author_name: &'a str,
    pub author_email: &'a str,
    /// How long `git push` may take.
    pub deadline: Duration,
}

/// What [`push_branch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// The branch did not exist and now holds `commit`.
    Created { commit: String },
    /// labctl's branch held `previous` (another change, or an older base) and now holds `commit`.
    Updated { commit: String, previous: String },
    /// The branch already holds this change on this base: nothing was written.
    Unchanged { commit: String },
    /// The branch holds a commit labctl did not make; it is left as it is.
    Foreign { tip: String, why: String },
}

impl Pushed {
    /// The commit the branch holds now.
    pub fn commit(&self) -> &str {
        match self {
            Pushed::Created { commit }
            | Pushed::Updated { commit, .. }
            | Pushed::Unchanged { commit } => commit,
            Pushed::Foreign { tip, .. } => tip,
        }
    }

    /// `created`, `updated`, `unchanged` or `foreign`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Pushed::Created { .. } => "created",
            Pushed::Updated { .. } => "updated",
            Pushed::Unchanged { .. } => "unchanged",
            Pushed::Foreign { .. } => "foreign",
        }
    }
}

/// Commits `change` on top of its base and pushes it to its branch of the repository at `loc`
/// (a remote through its cached clone, which the load just fetched; a local repository in
/// place). `subdir` is the `--path` the desired state was read from.
pub fn push_branch(
    loc: &GitLocation,
    subdir: Option<&str>,
    change: &BranchCommit<'_>,
) -> Result<Pushed, SourceError> {
    check_branch(change.branch)?;
    let target = Target::open(loc)?;
    let fail = |what: &str, e: &gix::Error| {
        SourceError::Git(scrub(
            &format!("{what} in {}: {}", target.origin, chain(e)),
            &target.secrets,
        ))
    };
    let repo = &target.repo;
    let base = ObjectId::from_hex(change.base.as_bytes())
        .map_err(|e| SourceError::Git(format!("base commit `{}`: {e}", change.base)))?;
    let base_tree = repo
        .find_commit(base)
        .and_then(|c| c.tree_id().map(|id| id.detach()))
        .map_err(|e| fail(&format!("cannot read base commit {base}"), &e))?;

    let mut editor = repo
        .edit_tree(base_tree)
        .map_err(|e| fail("cannot edit the tree", &e))?;
    for (path, text) in &change.files {
        let full = join(subdir, path);
        match text {
            Some(text) => {
                let blob = repo
                    .write_blob(text.as_bytes())
                    .map_err(|e| fail(&format!("cannot write {full}"), &e))?;
                editor
                    .upsert(full.as_str(), EntryKind::Blob, blob)
                    .map_err(|e| fail(&format!("cannot place {full}"), &e))?;
            }
            None => {
                editor
                    .remove(full.as_str())
                    .map_err(|e| fail(&format!("cannot remove {full}"), &e))?;
            }
        }
    }
    let tree = editor
        .write()
        .map_err(|e| fail("cannot write the tree", &e))?
        .detach();

    let refname = format!("refs/heads/{}", change.branch);
    let tip = repo
        .try_find_reference(refname.as_str())
        .map_err(|e| SourceError::Git(format!("cannot read {refname} in {}: {e}", target.origin)))?
        .map(|mut r| r.peel_to_id().map(|id| id.detach()))
        .transpose()
        .map_err(|e| {
            SourceError::Git(format!("cannot read {refname} in {}: {e}", target.origin))
        })?;
    if let Some(tip) = tip {
        let commit = repo
            .find_commit(tip)
            .map_err(|e| fail(&format!("cannot read {refname}"), &e))?;
        if let Some(why) = foreign(&commit, change) {
            return Ok(Pushed::Foreign {
                tip: tip.to_string(),
                why,
            });
        }
        let same_base = commit.parent_ids().map(|id| id.detach()).eq([base]);
        let same_tree = commit.tree_id().map(|id| id.detach()).ok() == Some(tree);
        if same_base && same_tree {
            return Ok(Pushed::Unchanged {
                commit: tip.to_string(),
            });
        }
    }

    let time = gix::date::Time::now_local_or_utc();
    let signature = gix::actor::Signature {
        name: change.author_name.into(),
        email: change.author_email.into(),
        time,
    };
    let message = format!(
        "{}\n\n{TRAILER}: {}\n",
        change.message.trim_end(),
        change.branch
    );
    let (mut committer_time, mut author_time) = Default::default();
    let commit = repo
        .new_commit_as(
            signature.to_ref(&mut committer_time),
            signature.to_ref(&mut author_time),
            message,
            tree,
            [base],
        )
        .map_err(|e| fail("cannot write the commit", &e))?
        .id;
    target.push(commit, &refname, tip, change.deadline)?;
    Ok(match tip {
        None => Pushed::Created {
            commit: commit.to_string(),
        },
        Some(previous) => Pushed::Updated {
            commit: commit.to_string(),
            previous: previous.to_string(),
        },
    })
}

/// Refuses any branch labctl does not own by name, and names git would read as something else.
fn check_branch(branch: &str) -> Result<(), SourceError> {
    let rest = branch.strip_prefix(BRANCH_PREFIX).unwrap_or("");
    let ok = !rest.is_empty()
        && branch
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/' | b'.'))
        && !branch.contains("..")
        && !branch.contains("//")
        && !branch.ends_with(['/', '.'])
        && !branch.ends_with(".lock");
    if ok {
        Ok(())
    } else {
        Err(SourceError::Git(format!(
            "refusing to push `{branch}`: labctl pushes only branches of its own, named \
             `{BRANCH_PREFIX}…` with letters, digits, `-`, `_`, `.` and `/`"
        )))
    }
}

/// Why the branch's tip is not labctl's commit for this branch, if it is not.
fn foreign(commit: &gix::Commit<'_>, change: &BranchCommit<'_>) -> Option<String> {
    let Ok(decoded) = commit.decode() else {
        return Some("its tip cannot be read as a commit".into());
    };
    let trailer = format!("{TRAILER}: {}", change.branch);
    if !decoded
        .message
        .lines()
        .any(|l| l.trim_end() == trailer.as_bytes())
    {
        return Some(format!(
            "its tip has no `{trailer}` trailer: someone else committed"
        ));
    }
    let committer = decoded.committer().ok()?;
    if committer.email != change.author_email.as_bytes().as_bstr() {
        return Some(format!(
            "its tip was committed by {} <{}>, not labctl's {}",
            committer.name, committer.email, change.author_email
        ));
    }
    if decoded.parents().count() != 1 {
        return Some("its tip is not a single commit on the tracked branch".into());
    }
    None
}

fn join(subdir: Option<&str>, path: &str) -> String {
    match subdir
        .map(|s| s.trim_matches('/'))
        .filter(|s| !s.is_empty() && *s != ".")
    {
        Some(sub) => format!("{sub}/{path}"),
        None => path.to_string(),
    }
}

/// The repository objects are written to and the place they are pushed.
struct Target {
    repo: gix::Repository,
    /// The directory git runs in.
    git_dir: PathBuf,
    /// What git pushes to: the remote URL without credentials, or the repository itself.
    url: String,
    /// For messages: never with credentials.
    origin: String,
    credentials: Option<Credentials>,
    secrets: Vec<String>,
}

impl Target {
    fn open(loc: &GitLocation) -> Result<Self, SourceError> {
        match loc {
            GitLocation::Remote { url, options } => {
                let remote = git::RemoteTarget::new(url, options)?;
                let dir = options.cache_dir.join(git::cache_key(&remote.origin));
                let repo = git::open_cached(&dir, &remote.url).ok_or_else(|| {
                    SourceError::Git(format!(
                        "no fetched copy of {} under {}: load the repository before pushing",
                        remote.origin,
                        options.cache_dir.display()
                    ))
                })?;
                Ok(Target {
                    repo,
                    git_dir: dir,
                    url: remote.url.to_bstring().to_string(),
                    origin: remote.origin,
                    credentials: remote.credentials,
                    secrets: remote.secrets,
                })
            }
            GitLocation::Local { path, .. } => {
                let origin = path.display().to_string();
                let repo = gix::open(path).map_err(|e| {
                    SourceError::Git(format!("cannot open repository at {origin}: {}", chain(&e)))
                })?;
                let git_dir = repo.git_dir().to_path_buf();
                Ok(Target {
                    url: git_dir.display().to_string(),
                    git_dir,
                    repo,
                    origin,
                    credentials: None,
                    secrets: Vec::new(),
                })
            }
        }
    }

    /// `git push` of `commit` to `refname`, leased on the value the last fetch saw (`None`:
    /// the branch must not exist yet).
    fn push(
        &self,
        commit: ObjectId,
        refname: &str,
        expected: Option<ObjectId>,
        deadline: Duration,
    ) -> Result<(), SourceError> {
        let lease = format!(
            "--force-with-lease={refname}:{}",
            expected.map(|id| id.to_string()).unwrap_or_default()
        );
        let mut cmd = Command::new("git");
        cmd.arg("--git-dir")
            .arg(&self.git_dir)
            // Only labctl's helper: none of the host's, and no prompt.
            .args(["-c", "credential.helper="])
            .args(["-c", HELPER])
            .args(["-c", "core.askPass="])
            .args(["push", "--porcelain", "--no-verify", &lease])
            .arg(&self.url)
            .arg(format!("{commit}:{refname}"))
            .env("GIT_TERMINAL_PROMPT", "0")
            .env_remove("GIT_ASKPASS")
            .env_remove("SSH_ASKPASS")
            .env_remove(USER_VAR)
            .env_remove(PASSWORD_VAR)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(c) = &self.credentials {
            cmd.env(USER_VAR, &c.username)
                .env(PASSWORD_VAR, &c.password);
        }
        let output = run(cmd, deadline).map_err(|e| {
            SourceError::Git(scrub(
                &format!("git push to {}: {e}", self.origin),
                &self.secrets,
            ))
        })?;
        if output.success {
            return Ok(());
        }
        let text = scrub(&output.text, &self.secrets);
        let why = if text.contains("stale info") || text.contains("fetch first") {
            format!(
                "{refname} changed on {} since labctl fetched it; the next run sees the new \
                 state",
                self.origin
            )
        } else {
            format!("git push to {} failed: {}", self.origin, text.trim())
        };
        Err(SourceError::Git(why))
    }
}

const USER_VAR: &str = "LABCTL_PUSH_USERNAME";
const PASSWORD_VAR: &str = "LABCTL_PUSH_PASSWORD";
/// Answers git's `get` with the user and token from the child's environment; nothing is kept.
const HELPER: &str = "credential.helper=!f() { test \"$1\" = get || exit 0; \
                      test -n \"$LABCTL_PUSH_PASSWORD\" || exit 0; \
                      printf 'username=%s\\npassword=%s\\n' \
                      \"$LABCTL_PUSH_USERNAME\" \"$LABCTL_PUSH_PASSWORD\"; }; f";

struct Output {
    success: bool,
    /// stdout then stderr, each at most [`OUTPUT_LIMIT`] bytes.
    text: String,
}

/// Runs `cmd` to its end or to `deadline`, whichever comes first (then it is killed).
fn run(mut cmd: Command, deadline: Duration) -> Result<Output, String> {
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            "the `git` command is needed to push proposal branches (gix cannot push yet): \
             install git on this host"
                .to_string()
        } else {
            format!("cannot start git: {e}")
        }
    })?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(pipe) = pipe {
                let mut pipe = pipe;
                let _ = pipe.by_ref().take(OUTPUT_LIMIT).read_to_end(&mut buf);
                // Keep reading so git never blocks on a full pipe.
                let _ = std::io::copy(&mut pipe, &mut std::io::sink());
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("did not finish in {} s", deadline.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("cannot wait for git: {e}")),
        }
    };
    let mut text = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    text.push_str(&String::from_utf8_lossy(&err.join().unwrap_or_default()));
    Ok(Output {
        success: status.success(),
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_labctl_branches_with_plain_names_are_pushed() {
        for ok in ["labctl/drift/dhcpreservation-whisper", "labctl/x.y_z"] {
            assert!(check_branch(ok).is_ok(), "{ok}");
        }
        for bad in [
            "main",
            "labctl/",
            "labctlx/drift",
            "refs/heads/labctl/x",
            "labctl/a..b",
            "labctl/a b",
            "labctl/x.lock",
            "labctl/-x:refs/heads/main",
            "labctl/x/",
        ] {
            assert!(check_branch(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_go_below_the_desired_state_directory() {
        assert_eq!(join(None, "dhcp/a.yaml"), "dhcp/a.yaml");
        assert_eq!(join(Some("lab/"), "dhcp/a.yaml"), "lab/dhcp/a.yaml");
        assert_eq!(join(Some("."), "a.yaml"), "a.yaml");
    }
}
