//! Loads desired state from real Git repositories built with the `git` CLI.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use labctl::source::{self, GitLocation, GitOptions, Snapshot, SourceError, SourceSpec};
use tempfile::TempDir;

use crate::support::cli::{exited, labctl_command, write};
use crate::support::git::{commit_all, git};

fn sample_repo() -> (TempDir, String) {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    git(root, &["init", "-q"]);
    write(root, "services.yaml", "services: v1\n");
    write(root, "hosts/a.yaml", "host: a\n");
    write(root, "hosts/nested/b.yml", "host: b\n");
    write(root, "hosts/.draft.yaml", "host: draft\n");
    write(root, ".github/workflows/ci.yaml", "on: push\n");
    write(root, "README.md", "# lab\n");
    write(root, "hosts/notes.txt", "not yaml\n");
    let head = commit_all(root, "first");
    (dir, head)
}

fn options(rev: Option<&str>) -> GitOptions {
    GitOptions {
        rev: rev.map(str::to_string),
        ..GitOptions::default()
    }
}

fn local(path: &Path, rev: Option<&str>) -> SourceSpec {
    SourceSpec::Git(GitLocation::Local {
        path: path.to_path_buf(),
        options: options(rev),
    })
}

fn paths(snapshot: &Snapshot) -> Vec<&str> {
    snapshot.files.iter().map(|f| f.path.as_str()).collect()
}

fn text<'a>(snapshot: &'a Snapshot, path: &str) -> &'a str {
    &snapshot
        .files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("{path} not in {:?}", paths(snapshot)))
        .text
}

fn commit_of(snapshot: &Snapshot) -> &str {
    &snapshot
        .revision
        .as_ref()
        .expect("a Git snapshot names its commit")
        .commit
}

#[test]
fn head_yields_committed_yaml_without_hidden_or_other_files() {
    let (dir, head) = sample_repo();
    let snapshot = source::load(&local(dir.path(), None), None).unwrap();
    assert_eq!(
        paths(&snapshot),
        ["hosts/a.yaml", "hosts/nested/b.yml", "services.yaml"]
    );
    assert_eq!(text(&snapshot, "hosts/nested/b.yml"), "host: b\n");
    let revision = snapshot.revision.as_ref().unwrap();
    assert_eq!(revision.commit, head);
    assert_eq!(revision.requested, "HEAD");
    assert_eq!(snapshot.origin, dir.path().display().to_string());
}

#[test]
fn explicit_sha_reads_the_older_commit() {
    let (dir, first) = sample_repo();
    write(dir.path(), "services.yaml", "services: v2\n");
    write(dir.path(), "added.yaml", "new: true\n");
    let second = commit_all(dir.path(), "second");

    let old = source::load(&local(dir.path(), Some(&first)), None).unwrap();
    assert_eq!(commit_of(&old), first);
    assert_eq!(text(&old, "services.yaml"), "services: v1\n");
    assert!(!paths(&old).contains(&"added.yaml"));
    assert_eq!(old.revision.as_ref().unwrap().requested, first);

    let abbreviated = source::load(&local(dir.path(), Some(&first[..8])), None).unwrap();
    assert_eq!(commit_of(&abbreviated), first);

    let new = source::load(&local(dir.path(), None), None).unwrap();
    assert_eq!(commit_of(&new), second);
    assert_eq!(text(&new, "services.yaml"), "services: v2\n");
}

#[test]
fn uncommitted_edits_are_invisible_to_git_but_seen_in_worktree_mode() {
    let (dir, head) = sample_repo();
    write(dir.path(), "services.yaml", "services: edited\n");
    write(dir.path(), "untracked.yaml", "x: 1\n");
    // Staged but uncommitted changes are not committed state either.
    write(dir.path(), "hosts/a.yaml", "host: staged\n");
    git(dir.path(), &["add", "hosts/a.yaml"]);

    let path = dir.path().to_str().unwrap();
    let spec = source::resolve(path, false, GitOptions::default());
    assert!(
        matches!(spec, SourceSpec::Git(GitLocation::Local { .. })),
        "{spec:?}"
    );
    let committed = source::load(&spec, None).unwrap();
    assert_eq!(commit_of(&committed), head);
    assert_eq!(text(&committed, "services.yaml"), "services: v1\n");
    assert_eq!(text(&committed, "hosts/a.yaml"), "host: a\n");
    assert!(!paths(&committed).contains(&"untracked.yaml"));

    let spec = source::resolve(path, true, GitOptions::default());
    assert!(matches!(spec, SourceSpec::Directory(_)), "{spec:?}");
    let worktree = source::load(&spec, None).unwrap();
    assert!(worktree.revision.is_none());
    assert_eq!(text(&worktree, "services.yaml"), "services: edited\n");
    assert_eq!(text(&worktree, "hosts/a.yaml"), "host: staged\n");
    assert!(paths(&worktree).contains(&"untracked.yaml"));
}

#[test]
fn subdir_restricts_and_relativises_paths() {
    let (dir, head) = sample_repo();
    for subdir in ["hosts", "hosts/", "./hosts"] {
        let snapshot = source::load(&local(dir.path(), None), Some(subdir)).unwrap();
        assert_eq!(
            paths(&snapshot),
            ["a.yaml", "nested/b.yml"],
            "subdir {subdir}"
        );
        assert_eq!(commit_of(&snapshot), head);
    }
    let nested = source::load(&local(dir.path(), None), Some("hosts/nested")).unwrap();
    assert_eq!(paths(&nested), ["b.yml"]);

    for missing in [
        "nope",
        "services.yaml",
        "hosts/../hosts",
        "hosts/nested/deeper",
    ] {
        match source::load(&local(dir.path(), None), Some(missing)) {
            Err(SourceError::MissingSubdir { subdir, origin }) => {
                assert_eq!(subdir, missing);
                assert!(
                    origin.contains(&dir.path().display().to_string()),
                    "{origin}"
                );
            }
            other => panic!("subdir {missing}: expected MissingSubdir, got {other:?}"),
        }
    }
}

#[test]
fn tags_and_branches_resolve() {
    let (dir, first) = sample_repo();
    let root = dir.path();
    git(root, &["tag", "-a", "v1", "-m", "release 1"]);
    git(root, &["tag", "light"]);
    git(root, &["checkout", "-q", "-b", "feature"]);
    write(root, "services.yaml", "services: feature\n");
    let feature = commit_all(root, "feature work");
    git(root, &["checkout", "-q", "main"]);

    for (rev, commit, services) in [
        ("v1", &first, "services: v1\n"),
        ("refs/tags/v1", &first, "services: v1\n"),
        ("light", &first, "services: v1\n"),
        ("feature", &feature, "services: feature\n"),
        ("refs/heads/feature", &feature, "services: feature\n"),
        ("main", &first, "services: v1\n"),
        ("feature~1", &first, "services: v1\n"),
    ] {
        let snapshot = source::load(&local(root, Some(rev)), None).unwrap();
        assert_eq!(commit_of(&snapshot), commit.as_str(), "rev {rev}");
        assert_eq!(text(&snapshot, "services.yaml"), services, "rev {rev}");
        assert_eq!(snapshot.revision.as_ref().unwrap().requested, rev);
    }

    match source::load(&local(root, Some("no-such-branch")), None) {
        Err(SourceError::RevisionNotFound { rev, origin, .. }) => {
            assert_eq!(rev, "no-such-branch");
            assert_eq!(origin, root.display().to_string());
        }
        other => panic!("expected RevisionNotFound, got {other:?}"),
    }
    // A tree is not a commit.
    let tree = git(root, &["rev-parse", "HEAD^{tree}"]);
    assert!(matches!(
        source::load(&local(root, Some(&tree)), None),
        Err(SourceError::RevisionNotFound { .. })
    ));
}

#[test]
fn bare_repository_is_read_like_a_work_tree() {
    let (dir, head) = sample_repo();
    let bare = TempDir::new().unwrap();
    let bare_path = bare.path().join("state.git");
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            "--bare",
            dir.path().to_str().unwrap(),
            bare_path.to_str().unwrap(),
        ],
    );
    let spec = source::resolve(bare_path.to_str().unwrap(), false, GitOptions::default());
    assert!(
        matches!(spec, SourceSpec::Git(GitLocation::Local { .. })),
        "{spec:?}"
    );
    let snapshot = source::load(&spec, None).unwrap();
    assert_eq!(commit_of(&snapshot), head);
    assert_eq!(
        paths(&snapshot),
        ["hosts/a.yaml", "hosts/nested/b.yml", "services.yaml"]
    );
}

#[test]
fn non_utf8_yaml_is_an_error_naming_the_file() {
    let (dir, _) = sample_repo();
    fs::write(dir.path().join("hosts/latin1.yaml"), b"name: caf\xe9\n").unwrap();
    commit_all(dir.path(), "latin-1");
    match source::load(&local(dir.path(), None), None) {
        Err(SourceError::NotUtf8 { path }) => assert_eq!(path, "hosts/latin1.yaml"),
        other => panic!("expected NotUtf8, got {other:?}"),
    }
    match source::load(&local(dir.path(), None), Some("hosts")) {
        Err(SourceError::NotUtf8 { path }) => assert_eq!(path, "latin1.yaml"),
        other => panic!("expected NotUtf8, got {other:?}"),
    }
}

#[test]
fn submodules_are_skipped() {
    let (dir, _) = sample_repo();
    let root = dir.path();
    // A gitlink entry, as `git submodule add` would record it.
    let other = git(root, &["rev-parse", "HEAD"]);
    git(
        root,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{other},vendor.yaml"),
        ],
    );
    // Not `commit_all`: `git add -A` would drop the gitlink, which has no directory behind it.
    git(root, &["commit", "-q", "-m", "submodule"]);
    let head = git(root, &["rev-parse", "HEAD"]);
    assert!(git(root, &["ls-tree", "HEAD"]).contains("160000"));

    let snapshot = source::load(&local(root, None), None).unwrap();
    assert_eq!(commit_of(&snapshot), head);
    assert_eq!(
        paths(&snapshot),
        ["hosts/a.yaml", "hosts/nested/b.yml", "services.yaml"]
    );
}

/// A committed symlink would be read from the work tree (not the commit) or dropped — and what
/// it declared deleted live under apply. Either way the picture is wrong: the load fails and
/// names the link.
#[test]
fn a_symlink_in_the_commit_is_an_error_naming_it() {
    for (link, target) in [("alias.yaml", "services.yaml"), ("more", "hosts")] {
        let (dir, _) = sample_repo();
        let root = dir.path();
        std::os::unix::fs::symlink(target, root.join(link)).unwrap();
        commit_all(root, "a link");
        assert!(git(root, &["ls-tree", "HEAD"]).contains("120000"));
        match source::load(&local(root, None), None) {
            Err(e @ SourceError::Link { .. }) => {
                let text = e.to_string();
                assert!(
                    text.starts_with(&format!("{link} is a symbolic link in the commit")),
                    "{text}"
                );
            }
            other => panic!("expected a link error for {link}, got {other:?}"),
        }
    }
    // A link that cannot hold documents (README.md) is no error.
    let (dir, _) = sample_repo();
    std::os::unix::fs::symlink("README.md", dir.path().join("INDEX.md")).unwrap();
    commit_all(dir.path(), "a doc link");
    assert!(source::load(&local(dir.path(), None), None).is_ok());
}

/// A directory (or `--worktree`) follows file links inside the repository, and refuses links
/// out of it (whose target it must not read, let alone print) and links to directories.
#[test]
fn worktree_links_stay_inside_the_repository() {
    let (dir, _) = sample_repo();
    let root = dir.path();
    std::os::unix::fs::symlink("services.yaml", root.join("alias.yaml")).unwrap();
    let snapshot = source::load(&SourceSpec::Directory(root.to_path_buf()), None).unwrap();
    assert_eq!(text(&snapshot, "alias.yaml"), "services: v1\n");

    let outside = TempDir::new().unwrap();
    write(
        outside.path(),
        "secret.yaml",
        "root:x:0:0:root:/root:/bin/bash\n",
    );
    std::os::unix::fs::symlink(outside.path().join("secret.yaml"), root.join("x.yaml")).unwrap();
    let err = source::load(&SourceSpec::Directory(root.to_path_buf()), None).unwrap_err();
    assert!(
        matches!(&err, SourceError::Link { path, .. } if path == "x.yaml"),
        "{err:?}"
    );
    assert!(err.to_string().contains("out of the repository"), "{err}");
    let out = crate::support::cli::labctl(&["validate", root.to_str().unwrap(), "--worktree"]);
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(2), "{printed}");
    assert!(!printed.contains("root:x"), "{printed}");
    fs::remove_file(root.join("x.yaml")).unwrap();

    std::os::unix::fs::symlink("hosts", root.join("more")).unwrap();
    let err = source::load(&SourceSpec::Directory(root.to_path_buf()), None).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("more is a symbolic link to a directory"),
        "{err}"
    );
}

#[test]
fn local_errors_say_where() {
    let dir = TempDir::new().unwrap();
    match source::load(&local(dir.path(), None), None) {
        Err(SourceError::Git(msg)) => {
            assert!(msg.contains("cannot open repository"), "{msg}");
            assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        }
        other => panic!("expected Git error, got {other:?}"),
    }
    // A repository without commits has no HEAD commit to read.
    git(dir.path(), &["init", "-q"]);
    assert!(matches!(
        source::load(&local(dir.path(), None), None),
        Err(SourceError::RevisionNotFound { .. })
    ));
}

// --- remote repositories ---------------------------------------------------------------------

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

fn remote(url: &str, cache: &Path, rev: Option<&str>) -> SourceSpec {
    SourceSpec::Git(GitLocation::Remote {
        url: url.to_string(),
        options: GitOptions {
            rev: rev.map(str::to_string),
            cache_dir: cache.to_path_buf(),
            token_env: None,
        },
    })
}

/// Entries of the cache directory, so tests can see what was left behind.
fn cache_entries(cache: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    entries
}

#[test]
fn remote_clone_then_fetch_sees_new_and_rewritten_commits() {
    let (origin, first) = sample_repo();
    let cache = TempDir::new().unwrap();
    let url = file_url(origin.path());

    let snapshot = source::load(&remote(&url, cache.path(), None), None).unwrap();
    assert_eq!(commit_of(&snapshot), first);
    assert_eq!(snapshot.origin, url);
    assert_eq!(
        paths(&snapshot),
        ["hosts/a.yaml", "hosts/nested/b.yml", "services.yaml"]
    );
    let entries = cache_entries(cache.path());
    assert_eq!(
        entries.len(),
        1,
        "one bare clone and no temporary leftovers: {entries:?}"
    );
    assert!(entries[0].join("HEAD").is_file() && !entries[0].join(".git").exists());

    // A new commit on the origin is fetched.
    write(origin.path(), "services.yaml", "services: v2\n");
    let second = commit_all(origin.path(), "second");
    let snapshot = source::load(&remote(&url, cache.path(), None), None).unwrap();
    assert_eq!(commit_of(&snapshot), second);
    assert_eq!(text(&snapshot, "services.yaml"), "services: v2\n");

    // Rewritten history (a force-push) is followed.
    git(origin.path(), &["reset", "-q", "--hard", &first]);
    write(origin.path(), "services.yaml", "services: rewritten\n");
    let rewritten = commit_all(origin.path(), "rewritten");
    let snapshot = source::load(&remote(&url, cache.path(), Some("main")), None).unwrap();
    assert_eq!(commit_of(&snapshot), rewritten);
    assert_eq!(text(&snapshot, "services.yaml"), "services: rewritten\n");

    // An older commit is still reachable by SHA, and subdir works remotely too.
    let snapshot = source::load(&remote(&url, cache.path(), Some(&first)), Some("hosts")).unwrap();
    assert_eq!(commit_of(&snapshot), first);
    assert_eq!(paths(&snapshot), ["a.yaml", "nested/b.yml"]);
    assert_eq!(cache_entries(cache.path()).len(), 1);
}

/// A commit's files let go of after validation are read again as they were, whatever the
/// branch did since: from a local repository and from a remote's clone (never fetched).
#[test]
fn a_commits_files_are_read_again_as_they_were() {
    let (origin, first) = sample_repo();
    let cache = TempDir::new().unwrap();
    let url = file_url(origin.path());
    let specs = [
        (local(origin.path(), None), None),
        (local(origin.path(), None), Some("hosts")),
        (remote(&url, cache.path(), None), None),
        (remote(&url, cache.path(), None), Some("hosts")),
    ];
    let read: Vec<(Snapshot, source::Reread)> = specs
        .iter()
        .map(|(spec, subdir)| {
            let snapshot = source::load(spec, *subdir).unwrap();
            let reread = source::Reread::of(spec, *subdir, &snapshot).unwrap();
            (snapshot, reread)
        })
        .collect();
    // The branch moves on, in the origin and in the remote's clone.
    write(origin.path(), "hosts/a.yaml", "host: moved\n");
    write(origin.path(), "hosts/c.yaml", "host: c\n");
    let second = commit_all(origin.path(), "second");
    let fetched = source::load(&specs[2].0, None).unwrap();
    assert_eq!(commit_of(&fetched), second);

    for (snapshot, reread) in &read {
        let again = reread.read().unwrap();
        assert_eq!(commit_of(&again), first);
        assert_eq!(again.files, snapshot.files);
        assert_eq!(again.origin, snapshot.origin);
        assert_eq!(again.revision, snapshot.revision);
    }
    assert_eq!(text(&read[1].0, "a.yaml"), "host: a\n");

    // A directory can change under it: nothing to read again.
    let dir = source::load(&SourceSpec::Directory(origin.path().into()), None).unwrap();
    let directory = SourceSpec::Directory(origin.path().into());
    assert!(source::Reread::of(&directory, None, &dir).is_none());

    // The clone gone: an error that says so, never another commit's files.
    fs::remove_dir_all(cache.path()).unwrap();
    let e = read[2].1.read().unwrap_err().to_string();
    assert!(e.contains("is gone"), "{e}");
}

#[test]
fn remote_branches_tags_default_branch_and_unknown_revisions() {
    let (origin, first) = sample_repo();
    let root = origin.path();
    let cache = TempDir::new().unwrap();
    let url = file_url(root);
    source::load(&remote(&url, cache.path(), None), None).unwrap();

    // Refs created after the clone are fetched.
    git(root, &["tag", "-a", "v1", "-m", "release 1"]);
    git(root, &["checkout", "-q", "-b", "feature"]);
    write(root, "services.yaml", "services: feature\n");
    let feature = commit_all(root, "feature");
    git(root, &["checkout", "-q", "main"]);

    let tagged = source::load(&remote(&url, cache.path(), Some("v1")), None).unwrap();
    assert_eq!(commit_of(&tagged), first);
    let branch = source::load(&remote(&url, cache.path(), Some("feature")), None).unwrap();
    assert_eq!(commit_of(&branch), feature);
    assert_eq!(text(&branch, "services.yaml"), "services: feature\n");

    // The default is the remote's HEAD, even when it changes after the clone.
    git(root, &["symbolic-ref", "HEAD", "refs/heads/feature"]);
    let default = source::load(&remote(&url, cache.path(), None), None).unwrap();
    assert_eq!(commit_of(&default), feature);
    assert_eq!(default.revision.as_ref().unwrap().requested, "HEAD");
    git(root, &["symbolic-ref", "HEAD", "refs/heads/main"]);

    // A branch deleted on the remote is not served from the cache.
    git(root, &["branch", "-q", "-D", "feature"]);
    match source::load(&remote(&url, cache.path(), Some("feature")), None) {
        Err(SourceError::RevisionNotFound { rev, .. }) => assert_eq!(rev, "feature"),
        other => panic!("expected RevisionNotFound for a deleted branch, got {other:?}"),
    }

    match source::load(&remote(&url, cache.path(), Some("no-such-rev")), None) {
        Err(SourceError::RevisionNotFound { rev, origin, .. }) => {
            assert_eq!(rev, "no-such-rev");
            assert_eq!(origin, url);
        }
        other => panic!("expected RevisionNotFound, got {other:?}"),
    }
    match source::load(&remote(&url, cache.path(), None), Some("nope")) {
        Err(SourceError::MissingSubdir { subdir, .. }) => assert_eq!(subdir, "nope"),
        other => panic!("expected MissingSubdir, got {other:?}"),
    }
}

#[test]
fn damaged_or_foreign_cache_entries_are_recloned() {
    let (origin_a, head_a) = sample_repo();
    let (origin_b, _) = sample_repo();
    write(origin_b.path(), "services.yaml", "services: b\n");
    let head_b = commit_all(origin_b.path(), "b");
    let cache = TempDir::new().unwrap();
    let (url_a, url_b) = (file_url(origin_a.path()), file_url(origin_b.path()));

    source::load(&remote(&url_a, cache.path(), None), None).unwrap();
    let entry_a = cache_entries(cache.path()).remove(0);

    // Objects gone: refs point nowhere.
    for pack in fs::read_dir(entry_a.join("objects/pack")).unwrap() {
        fs::remove_file(pack.unwrap().path()).unwrap();
    }
    let snapshot = source::load(&remote(&url_a, cache.path(), None), None).unwrap();
    assert_eq!(commit_of(&snapshot), head_a);

    // Only the objects of the latest fetch gone: the fetch finds nothing new to get, and the
    // damage shows when the commit is read.
    let packs = |entry: &Path| -> Vec<PathBuf> {
        fs::read_dir(entry.join("objects/pack"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    };
    let before = packs(&entry_a);
    write(origin_a.path(), "services.yaml", "services: v2\n");
    let second_a = commit_all(origin_a.path(), "second");
    source::load(&remote(&url_a, cache.path(), None), None).unwrap();
    let fetched: Vec<PathBuf> = packs(&entry_a)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(!fetched.is_empty(), "the fetch wrote a pack");
    for pack in fetched {
        fs::remove_file(pack).unwrap();
    }
    let snapshot = source::load(&remote(&url_a, cache.path(), None), None).unwrap();
    assert_eq!(commit_of(&snapshot), second_a);
    assert_eq!(text(&snapshot, "services.yaml"), "services: v2\n");

    // One blob missing while every commit is present: the fetch has nothing to do and the
    // damage shows only when the tree is read.
    let loose = TempDir::new().unwrap();
    for pack in packs(&entry_a) {
        fs::rename(&pack, loose.path().join(pack.file_name().unwrap())).unwrap();
    }
    for pack in fs::read_dir(loose.path())
        .unwrap()
        .map(|e| e.unwrap().path())
    {
        if pack.extension().is_some_and(|e| e == "pack") {
            let status = Command::new("git")
                .args(["unpack-objects", "-q"])
                .current_dir(&entry_a)
                .stdin(fs::File::open(&pack).unwrap())
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
    let blob = git(origin_a.path(), &["rev-parse", "HEAD:hosts/a.yaml"]);
    fs::remove_file(entry_a.join("objects").join(&blob[..2]).join(&blob[2..])).unwrap();
    let snapshot = source::load(&remote(&url_a, cache.path(), None), None).unwrap();
    assert_eq!(commit_of(&snapshot), second_a);
    assert_eq!(text(&snapshot, "hosts/a.yaml"), "host: a\n");

    // Not a repository at all.
    fs::remove_dir_all(&entry_a).unwrap();
    fs::create_dir_all(&entry_a).unwrap();
    fs::write(entry_a.join("junk"), "junk").unwrap();
    let snapshot = source::load(&remote(&url_a, cache.path(), None), None).unwrap();
    assert_eq!(commit_of(&snapshot), second_a);

    // A clone of another repository sitting where A's belongs.
    source::load(&remote(&url_b, cache.path(), None), None).unwrap();
    let entry_b = cache_entries(cache.path())
        .into_iter()
        .find(|e| *e != entry_a)
        .unwrap();
    fs::remove_dir_all(&entry_a).unwrap();
    fs::rename(&entry_b, &entry_a).unwrap();
    let snapshot = source::load(&remote(&url_a, cache.path(), None), None).unwrap();
    assert_eq!(commit_of(&snapshot), second_a);
    assert_eq!(text(&snapshot, "services.yaml"), "services: v2\n");
    let snapshot = source::load(&remote(&url_b, cache.path(), None), None).unwrap();
    assert_eq!(commit_of(&snapshot), head_b);

    let leftovers: Vec<_> = cache_entries(cache.path())
        .into_iter()
        .filter(|e| e.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn unreachable_remote_is_an_error_and_keeps_the_cache() {
    let (origin, head) = sample_repo();
    let cache = TempDir::new().unwrap();
    let url = file_url(origin.path());
    source::load(&remote(&url, cache.path(), None), None).unwrap();
    let entry = cache_entries(cache.path()).remove(0);
    fs::write(entry.join("labctl-test-marker"), "kept").unwrap();

    let moved = origin.path().with_extension("moved");
    fs::rename(origin.path(), &moved).unwrap();
    let result = source::load(&remote(&url, cache.path(), None), None);
    fs::rename(&moved, origin.path()).unwrap();
    match result {
        Err(SourceError::Git(msg)) => {
            assert!(
                msg.contains("cannot fetch from") && msg.contains(&url),
                "{msg}"
            );
        }
        other => panic!("expected a fetch error, got {other:?}"),
    }
    // An intact clone is not thrown away because the network failed.
    assert!(entry.join("labctl-test-marker").is_file());
    let snapshot = source::load(&remote(&url, cache.path(), None), None).unwrap();
    assert_eq!(commit_of(&snapshot), head);
    assert!(entry.join("labctl-test-marker").is_file());
}

#[test]
fn concurrent_loads_share_one_cache_entry() {
    let (origin, head) = sample_repo();
    let cache = TempDir::new().unwrap();
    let url = file_url(origin.path());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let spec = remote(&url, cache.path(), None);
            std::thread::spawn(move || source::load(&spec, None))
        })
        .collect();
    for thread in threads {
        let snapshot = thread.join().unwrap().unwrap();
        assert_eq!(commit_of(&snapshot), head);
    }
    assert_eq!(cache_entries(cache.path()).len(), 1);
}

#[test]
fn token_is_never_written_to_the_cache() {
    let (origin, head) = sample_repo();
    let cache = TempDir::new().unwrap();
    let var = "LABCTL_TEST_GIT_TOKEN_NEVER_WRITTEN";
    std::env::set_var(var, "tok-3f9a-never-on-disk");
    let spec = SourceSpec::Git(GitLocation::Remote {
        url: file_url(origin.path()),
        options: GitOptions {
            rev: None,
            cache_dir: cache.path().to_path_buf(),
            token_env: Some(var.to_string()),
        },
    });
    let snapshot = source::load(&spec, None).unwrap();
    assert_eq!(commit_of(&snapshot), head);
    let output = Command::new("grep")
        .args(["-r", "-l", "tok-3f9a-never-on-disk"])
        .arg(cache.path())
        .output()
        .unwrap();
    assert!(
        output.stdout.is_empty(),
        "token found in {}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn credentials_in_urls_stay_out_of_origin_errors_and_disk() {
    let cache = TempDir::new().unwrap();
    // Nothing listens on port 1 of the loopback interface, so the connection is refused at once.
    let url = "https://deploy:pw-7c1e-secret@127.0.0.1:1/lab/state.git";
    match source::load(&remote(url, cache.path(), None), None) {
        Err(SourceError::Git(msg)) => {
            assert!(!msg.contains("pw-7c1e-secret"), "{msg}");
            assert!(msg.contains("https://127.0.0.1:1/lab/state.git"), "{msg}");
        }
        other => panic!("expected a Git error, got {other:?}"),
    }
    let output = Command::new("grep")
        .args(["-r", "-l", "pw-7c1e-secret"])
        .arg(cache.path())
        .output()
        .unwrap();
    assert!(
        output.stdout.is_empty(),
        "password found in {}",
        String::from_utf8_lossy(&output.stdout)
    );
}

// --- HTTP with a token ---------------------------------------------------------------------------

use crate::support::git_http as http;
use crate::support::tls::tls_proxy;

/// A bare copy of `origin` under a fresh directory, as a server would hold it.
fn served_copy(origin: &Path) -> (TempDir, PathBuf) {
    let served = TempDir::new().unwrap();
    let bare = served.path().join("state.git");
    git(
        origin,
        &[
            "clone",
            "-q",
            "--bare",
            origin.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    (served, bare)
}

fn remote_with_token(url: &str, cache: &Path, token_env: &str) -> SourceSpec {
    SourceSpec::Git(GitLocation::Remote {
        url: url.to_string(),
        options: GitOptions {
            rev: None,
            cache_dir: cache.to_path_buf(),
            token_env: Some(token_env.to_string()),
        },
    })
}

fn grep_dir(dir: &Path, needle: &str) -> String {
    let output = Command::new("grep")
        .args(["-r", "-l", needle])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn credentials_are_never_sent_over_plain_http() {
    let (origin, _) = sample_repo();
    let (served, _bare) = served_copy(origin.path());
    let token = "tok-plain-http-0b7c";
    let server = http::serve(served.path(), "x-access-token", token);
    let url = format!("http://127.0.0.1:{}/state.git", server.port);
    let cache = TempDir::new().unwrap();
    std::env::set_var("LABCTL_TEST_TOKEN_PLAIN_HTTP", token);
    match source::load(
        &remote_with_token(&url, cache.path(), "LABCTL_TEST_TOKEN_PLAIN_HTTP"),
        None,
    ) {
        Err(SourceError::Git(msg)) => {
            assert!(msg.contains(&url) && !msg.contains(token), "{msg}");
        }
        other => panic!("expected gix to refuse credentials over http, got {other:?}"),
    }
    let seen = server.seen.lock().unwrap();
    assert!(
        !seen.is_empty() && seen.iter().all(Option::is_none),
        "{seen:?}"
    );
}

#[test]
fn https_token_from_environment_is_sent_as_basic_auth() {
    let (origin, first) = sample_repo();
    let (served, bare) = served_copy(origin.path());
    let token = "ghp-test-7d2b9e";
    let server = http::serve(served.path(), "x-access-token", token);
    let Some(proxy) = tls_proxy(server.port) else {
        return;
    };
    // gix's HTTPS client (reqwest, platform verifier) trusts the CA through this variable.
    std::env::set_var("SSL_CERT_FILE", &proxy.ca);
    let url = format!("https://127.0.0.1:{}/state.git", proxy.port);
    let cache = TempDir::new().unwrap();

    // Without the token (variable unset) the server refuses, and nobody is prompted.
    match source::load(
        &remote_with_token(&url, cache.path(), "LABCTL_TEST_TOKEN_UNSET"),
        None,
    ) {
        Err(SourceError::Git(msg)) => assert!(msg.contains(&url), "{msg}"),
        other => panic!("expected an authentication failure, got {other:?}"),
    }

    std::env::set_var("LABCTL_TEST_TOKEN_HTTPS", token);
    let spec = remote_with_token(&url, cache.path(), "LABCTL_TEST_TOKEN_HTTPS");
    let snapshot = source::load(&spec, None).unwrap();
    assert_eq!(commit_of(&snapshot), first);
    assert_eq!(snapshot.origin, url);

    // Fetching into the existing clone authenticates the same way.
    write(origin.path(), "services.yaml", "services: v2\n");
    let second = commit_all(origin.path(), "second");
    git(
        origin.path(),
        &["push", "-q", bare.to_str().unwrap(), "main"],
    );
    let snapshot = source::load(&spec, None).unwrap();
    assert_eq!(commit_of(&snapshot), second);
    assert_eq!(text(&snapshot, "services.yaml"), "services: v2\n");

    // A wrong token fails without echoing it.
    std::env::set_var("LABCTL_TEST_TOKEN_WRONG", "wrong-token-51aa");
    match source::load(
        &remote_with_token(&url, cache.path(), "LABCTL_TEST_TOKEN_WRONG"),
        None,
    ) {
        Err(SourceError::Git(msg)) => assert!(!msg.contains("wrong-token-51aa"), "{msg}"),
        other => panic!("expected an authentication failure, got {other:?}"),
    }
    assert_eq!(
        grep_dir(cache.path(), token),
        "",
        "token written to the cache"
    );

    // Under systemd the token arrives as the credential `git-token` (LoadCredential=), with
    // no variable set: the unit needs no shell. The files are not labctl documents, so a
    // repository that was read fails validation (1); one that was not fails to load (2).
    let validate = |credentials: Option<&Path>| {
        let mut cmd = labctl_command();
        cmd.args(["validate", &url, "--cache-dir"])
            .arg(cache.path())
            .env_remove("LABCTL_GIT_TOKEN")
            .env_remove("CREDENTIALS_DIRECTORY");
        if let Some(dir) = credentials {
            cmd.env("CREDENTIALS_DIRECTORY", dir);
        }
        cmd.output().unwrap()
    };
    let credentials = TempDir::new().unwrap();
    fs::write(credentials.path().join("git-token"), format!("{token}\n")).unwrap();
    let read = validate(Some(credentials.path()));
    exited(&read, 1);
    let refused = validate(None);
    exited(&refused, 2);
    let printed = [read.stdout, read.stderr, refused.stdout, refused.stderr].concat();
    assert!(!String::from_utf8_lossy(&printed).contains(token));
}

#[test]
fn remote_without_cache_dir_is_refused() {
    let (origin, _) = sample_repo();
    let spec = remote(&file_url(origin.path()), Path::new(""), None);
    match source::load(&spec, None) {
        Err(SourceError::Git(msg)) => assert!(msg.contains("no cache directory"), "{msg}"),
        other => panic!("expected a Git error, got {other:?}"),
    }
}

#[test]
fn a_known_commit_is_not_read_again() {
    let (dir, head) = sample_repo();
    let spec = local(dir.path(), None);
    // The blob of one file is gone: reading the commit's files now fails, so an answer shows
    // that nothing was read.
    let blob = git(dir.path(), &["rev-parse", "HEAD:services.yaml"]);
    let object = dir
        .path()
        .join(".git/objects")
        .join(&blob[..2])
        .join(&blob[2..]);
    fs::remove_file(&object).unwrap();
    match source::load_unless(&spec, None, Some(&head)).unwrap() {
        source::Fetched::Unchanged(revision) => assert_eq!(revision.commit, head),
        other => panic!("expected the known commit to be unchanged, got {other:?}"),
    }
    assert!(source::load_unless(&spec, None, Some("0000")).is_err());
    assert!(source::load(&spec, None).is_err());
}
