//! A package's source hash, as LinuxKit's `NewFromConfig` computes it:
//!
//! - clean: the git tree id of the package directory (or `--hash-path`) in the commit
//!   (`git rev-parse COMMIT:DIR`; the commit's own tree for the repository root);
//! - with `extra-sources`: `hex(sha1(TREE + SRC1TREE + SRC2TREE...))`;
//! - dirty (only checked against `HEAD`, or forced): `HASH-dirty-` and the first 7 hex digits
//!   of [`crate::content`]'s hash over the package directory;
//! - outside git: the tree id the directory would get if committed ([`crate::tree_id_of_dir`]),
//!   where LinuxKit falls back to the tag `latest`.
//!
//! Repositories are opened once and shared by every package inside them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::bstr::{BStr, BString, ByteSlice};

use crate::SourceError;
use crate::content::content_hash;
use crate::repo::{Discovered, GitRepo, discover};
use crate::tree::dir_tree_id;
use crate::worktree::{entries_under, tracked_changed, untracked};

/// What to hash for one package. All paths are absolute and canonical.
pub(crate) struct HashRequest<'a> {
    /// The package directory: the dirty suffix hashes its files.
    pub(crate) dir: &'a Path,
    /// The directory whose tree id is the hash and whose state decides dirtiness (`--hash-path`,
    /// else `dir`).
    pub(crate) hash_dir: &'a Path,
    /// `extra-sources` directories (or files).
    pub(crate) extra_sources: &'a [PathBuf],
    /// The revision to hash (`--hash-commit`); dirtiness is only checked for `HEAD`, as LinuxKit.
    pub(crate) rev: &'a str,
    pub(crate) force_dirty: bool,
    /// Whether to compute the hash at all (not when `--hash` or `--dev` supplies one); dirtiness
    /// and the commit are still reported.
    pub(crate) want_hash: bool,
    /// The build file, named in errors about `extra-sources`.
    pub(crate) build_yml: &'a Path,
}

/// The result of hashing one package's sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceHash {
    /// The hash, with `-dirty-XXXXXXX` when dirty; `None` when not asked for.
    pub(crate) hash: Option<String>,
    pub(crate) dirty: bool,
    /// The commit hashed, when the package is in a git repository.
    pub(crate) commit: Option<ObjectId>,
}

/// Opened repositories by canonical work-tree root.
#[derive(Default)]
pub(crate) struct Repos {
    map: HashMap<PathBuf, GitRepo>,
}

impl Repos {
    /// The repository whose work tree holds `path` (a directory, or a file whose parent is
    /// used), opened on first use; `None` outside git.
    fn for_path(&mut self, path: &Path) -> Result<Option<&mut GitRepo>, SourceError> {
        let start = if path.is_dir() {
            path
        } else {
            path.parent().unwrap_or(path)
        };
        let root = match self.known_root(start) {
            Some(root) => root,
            None => {
                let Discovered::WorkTree(root) = discover(start)? else {
                    return Ok(None);
                };
                root
            }
        };
        if !self.map.contains_key(&root) {
            tracing::debug!("opening git repository {}", root.display());
            let repo = GitRepo::open(&root)?;
            self.map.insert(root.clone(), repo);
        }
        Ok(self.map.get_mut(&root))
    }

    /// The root of an open work tree holding `dir` with no `.git` in between (no nested
    /// repository): the answer discovery would give, for one `lstat` per level instead of
    /// opening files.
    fn known_root(&self, dir: &Path) -> Option<PathBuf> {
        let root = self.map.keys().find(|root| dir.starts_with(root))?;
        let nested = dir
            .ancestors()
            .take_while(|d| d != root)
            .any(|d| std::fs::symlink_metadata(d.join(".git")).is_ok());
        (!nested).then(|| root.clone())
    }
}

pub(crate) fn hash_source(
    repos: &mut Repos,
    req: &HashRequest<'_>,
) -> Result<SourceHash, SourceError> {
    // Extra sources first, as LinuxKit: their errors win even when --hash makes them unused.
    let mut source_trees = String::new();
    for src in req.extra_sources {
        let git = repos
            .for_path(src)?
            .ok_or_else(|| SourceError::ExtraSourceNotInGit {
                build_yml: req.build_yml.to_path_buf(),
                source_dir: src.clone(),
            })?;
        let rel = relative(git, src)?;
        let commit = git.commit(req.rev)?;
        let (id, _mode) =
            git.entry_at(commit.tree, rel.as_bstr())?
                .ok_or_else(|| SourceError::NotInCommit {
                    path: src.clone(),
                    commit: req.rev.to_string(),
                })?;
        source_trees.push_str(&id.to_string());
    }
    let combine = |tree: ObjectId| -> Result<String, SourceError> {
        if source_trees.is_empty() {
            return Ok(tree.to_string());
        }
        let joined = format!("{tree}{source_trees}");
        let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
        hasher.update(joined.as_bytes());
        let id = hasher
            .try_finalize()
            .map_err(|e| SourceError::git(req.dir, "hashing extra sources", e))?;
        Ok(id.to_string())
    };

    let Some(git) = repos.for_path(req.dir)? else {
        let hash = if req.want_hash {
            Some(combine(dir_tree_id(req.hash_dir)?)?)
        } else {
            None
        };
        return Ok(SourceHash {
            hash,
            dirty: false,
            commit: None,
        });
    };

    let dir_rel = relative(git, req.dir)?;
    let hash_rel = relative(git, req.hash_dir)?;
    let commit = match git.commit(req.rev) {
        Ok(c) => c,
        // With the hash given (--hash, --dev) LinuxKit never needs the commit, and its
        // `git diff REV` failing counts as "dirty" (for HEAD; other revisions are not checked).
        Err(_) if !req.want_hash => {
            return Ok(SourceHash {
                hash: None,
                dirty: req.force_dirty || req.rev == "HEAD",
                commit: None,
            });
        }
        Err(e) => return Err(e),
    };
    let in_commit = git.entry_at(commit.tree, hash_rel.as_bstr())?;
    let hash_untracked = if req.rev == "HEAD" {
        Some(untracked(git, hash_rel.as_bstr())?)
    } else {
        None
    };
    let dirty = req.force_dirty
        || match &hash_untracked {
            Some(list) => !list.is_empty() || tracked_changed(git, in_commit, hash_rel.as_bstr())?,
            None => false,
        };

    let mut hash = None;
    if req.want_hash {
        let (tree, _mode) = in_commit.ok_or_else(|| SourceError::NotInCommit {
            path: req.hash_dir.to_path_buf(),
            commit: req.rev.to_string(),
        })?;
        let mut h = combine(tree)?;
        if dirty {
            let pkg_untracked = match hash_untracked {
                Some(list) if hash_rel == dir_rel => list,
                Some(list) => list
                    .into_iter()
                    .filter(|p| under(p.as_bstr(), dir_rel.as_bstr()))
                    .collect(),
                None => untracked(git, dir_rel.as_bstr())?,
            };
            let state: &gix::index::State = &git.index;
            let tracked = entries_under(state, dir_rel.as_bstr())
                .map(|e| strip(e.path(state), dir_rel.as_bstr()));
            let others = pkg_untracked
                .iter()
                .map(|p| strip(p.as_bstr(), dir_rel.as_bstr()));
            let digest = content_hash(req.dir, tracked, others, git.quote_path)?;
            h.push_str("-dirty-");
            h.push_str(&digest.hex()[..7]);
        }
        hash = Some(h);
    }
    tracing::debug!(
        "{}: commit {}, dirty {dirty}, hash {hash:?}",
        req.dir.display(),
        commit.id
    );
    Ok(SourceHash {
        hash,
        dirty,
        commit: Some(commit.id),
    })
}

/// `path` relative to the repository's work tree.
fn relative(git: &GitRepo, path: &Path) -> Result<BString, SourceError> {
    git.relative(path)
        .ok_or_else(|| SourceError::OutsideWorkTree {
            path: path.to_path_buf(),
            root: git.root.clone(),
        })
}

/// Whether repository-relative `path` lies under directory `dir` (everything does under the root).
fn under(path: &BStr, dir: &BStr) -> bool {
    dir.is_empty() || (path.starts_with(dir.as_bytes()) && path.get(dir.len()) == Some(&b'/'))
}

/// `path` relative to `dir`, which it lies under.
fn strip<'p>(path: &'p BStr, dir: &BStr) -> &'p BStr {
    if dir.is_empty() {
        path
    } else {
        path.get(dir.len() + 1..).unwrap_or_default().as_bstr()
    }
}

#[cfg(test)]
#[path = "hash_tests.rs"]
mod tests;
