//! Reads a plain directory (or a work tree with its uncommitted edits) as a snapshot.

use std::path::Path;

use std::io::Read;

use super::{is_hidden, is_yaml, Budget, Snapshot, SourceError, SourceFile};

pub(super) fn load(
    root: &Path,
    subdir: Option<&str>,
    budget: &mut Budget,
) -> Result<Snapshot, SourceError> {
    let base = match subdir {
        Some(sub) => root.join(sub),
        None => root.to_path_buf(),
    };
    if let Some(sub) = subdir {
        if !base.is_dir() {
            return Err(SourceError::MissingSubdir {
                subdir: sub.to_string(),
                origin: root.display().to_string(),
            });
        }
    }
    // Links may point anywhere inside the repository, never out of it.
    let inside = std::fs::canonicalize(root).map_err(|source| SourceError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    let mut files = Vec::new();
    walk(&base, "", &inside, budget, &mut files)?;
    Ok(Snapshot {
        revision: None,
        ..Snapshot::of(root.display().to_string(), files)
    })
}

fn walk(
    dir: &Path,
    prefix: &str,
    inside: &Path,
    budget: &mut Budget,
    out: &mut Vec<SourceFile>,
) -> Result<(), SourceError> {
    let io = |source| SourceError::Io {
        path: dir.to_path_buf(),
        source,
    };
    // In name order, as Git trees are: which files fit under the total limit must not depend
    // on the order the file system lists them in.
    let mut entries = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_hidden(&name) {
            continue;
        }
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let path = entry.path();
        let link = entry
            .file_type()
            .map_err(|source| SourceError::Io {
                path: path.clone(),
                source,
            })?
            .is_symlink();
        // Follow a file link the way an editor would, but only within the repository; a
        // dangling one is reported, not skipped.
        let meta = std::fs::metadata(&path).map_err(|source| SourceError::Io {
            path: path.clone(),
            source,
        })?;
        if link {
            let target = std::fs::canonicalize(&path).map_err(|source| SourceError::Io {
                path: path.clone(),
                source,
            })?;
            let refuse = |detail: &str| SourceError::Link {
                path: rel.clone(),
                detail: detail.into(),
            };
            if !target.starts_with(inside) && (meta.is_dir() || is_yaml(&rel)) {
                return Err(refuse(
                    "is a symbolic link out of the repository; labctl reads only the \
                     repository's own files: copy the file in",
                ));
            }
            if meta.is_dir() {
                return Err(refuse(
                    "is a symbolic link to a directory, which labctl does not walk (its \
                     documents would be read twice or from elsewhere): move the files here",
                ));
            }
        }
        if meta.is_dir() {
            walk(&path, &rel, inside, budget, out)?;
        } else if meta.is_file() && is_yaml(&rel) {
            super::printable_path(&rel)?;
            if !budget.admit(&rel, meta.len()) {
                continue;
            }
            // Sized up front: growing by doubling would hold up to twice the file.
            let mut bytes = Vec::with_capacity(meta.len().min(budget.read_cap()) as usize);
            std::fs::File::open(&path)
                .and_then(|f| f.take(budget.read_cap()).read_to_end(&mut bytes))
                .map_err(|source| SourceError::Io {
                    path: path.clone(),
                    source,
                })?;
            if bytes.len() as u64 != meta.len()
                && !budget.settle(&rel, meta.len(), bytes.len() as u64)
            {
                continue;
            }
            let text = super::utf8(&rel, bytes)?;
            out.push(SourceFile { path: rel, text });
        }
    }
    Ok(())
}
