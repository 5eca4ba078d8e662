//! One opened git repository, shared by every package inside it: the repository handle, its index
//! (read once), the settings that decide how the work tree is compared with it, and the commits
//! already resolved.
//!
//! This module reads git state; it never writes it (no index refresh, no lock files) and never
//! runs `git`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::bstr::{BStr, BString, ByteSlice};

use crate::SourceError;
use crate::tree::bytes_of;

/// The tree-entry mode of a directory.
pub(crate) const TREE_MODE: u32 = 0o040000;

/// A commit chosen by `--hash-commit` (or `HEAD`) and its root tree.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Commit {
    pub(crate) id: ObjectId,
    pub(crate) tree: ObjectId,
}

pub(crate) struct GitRepo {
    pub(crate) repo: gix::Repository,
    /// The work tree root, canonical (symlinks resolved) so package paths can be made relative.
    pub(crate) root: PathBuf,
    pub(crate) index: gix::worktree::Index,
    pub(crate) stat: gix::index::entry::stat::Options,
    pub(crate) caps: gix::fs::Capabilities,
    /// `core.quotePath`: whether `git ls-files` quotes bytes >= 0x80 (it matters to LinuxKit's
    /// content hash, see [`crate::content`]).
    pub(crate) quote_path: bool,
    /// The ignore rules (`.gitignore`, `info/exclude`, `core.excludesFile`), set up on first use.
    pub(crate) excludes: Option<gix::worktree::Stack>,
    commits: HashMap<String, Commit>,
}

/// Where discovery found a repository for a directory.
pub(crate) enum Discovered {
    /// Not inside any git repository.
    None,
    /// Inside the work tree whose canonical root is given.
    WorkTree(PathBuf),
}

/// Finds the work tree containing `dir` (which must exist) without opening the repository:
/// a few `stat` calls, cheap enough to run for every package.
pub(crate) fn discover(dir: &Path) -> Result<Discovered, SourceError> {
    use gix::discover::upwards::Error as Upwards;
    match gix::discover::upwards(dir) {
        Ok((path, _trust)) => {
            let (_git_dir, work_tree) = path.into_repository_and_work_tree_directories();
            let work_tree = work_tree.ok_or_else(|| SourceError::NoWorkTree {
                dir: dir.to_path_buf(),
            })?;
            let root =
                std::fs::canonicalize(&work_tree).map_err(|e| SourceError::io(&work_tree, e))?;
            Ok(Discovered::WorkTree(root))
        }
        Err(e) => match e.downcast_any_ref::<Upwards>() {
            Some(
                Upwards::NoGitRepository { .. }
                | Upwards::NoGitRepositoryWithinCeiling { .. }
                | Upwards::NoGitRepositoryWithinFs { .. },
            ) => Ok(Discovered::None),
            _ => Err(SourceError::git(dir, "looking for a git repository", e)),
        },
    }
}

impl GitRepo {
    /// Opens the repository whose work tree is `root` and reads its index.
    pub(crate) fn open(root: &Path) -> Result<Self, SourceError> {
        let git = |action: &str| {
            let action = action.to_string();
            move |e| SourceError::git(root, action, e)
        };
        let mut repo = gix::open(root).map_err(git("opening the repository"))?;
        // Every package looks up paths from the root tree down: keep the upper trees in memory.
        repo.object_cache_size_if_unset(16 * 1024 * 1024);
        let index = repo.index_or_empty().map_err(git("reading the index"))?;
        let stat = repo
            .stat_options()
            .map_err(git("reading core.checkStat/core.trustctime"))?;
        let caps = repo
            .filesystem_options()
            .map_err(git("reading core.filemode/core.symlinks"))?;
        let quote_path = repo
            .config_snapshot()
            .boolean("core.quotePath")
            .unwrap_or(true);
        Ok(Self {
            repo,
            root: root.to_path_buf(),
            index,
            stat,
            caps,
            quote_path,
            excludes: None,
            commits: HashMap::new(),
        })
    }

    /// `dir` (canonical) relative to the work tree root, `/`-separated; empty for the root.
    pub(crate) fn relative(&self, dir: &Path) -> Option<BString> {
        let rel = dir.strip_prefix(&self.root).ok()?;
        Some(bytes_of(rel).to_owned())
    }

    /// Resolves `rev` (anything `git rev-parse` takes) to a commit and its tree, once per `rev`.
    pub(crate) fn commit(&mut self, rev: &str) -> Result<Commit, SourceError> {
        if let Some(c) = self.commits.get(rev) {
            return Ok(*c);
        }
        let resolved = resolve_commit(&self.repo, &self.root, rev)?;
        self.commits.insert(rev.to_string(), resolved);
        Ok(resolved)
    }

    /// The object at `rel` in `tree` (`tree` itself for the root) and its tree-entry mode, or
    /// `None` if there is none. This is `git rev-parse TREE:REL`: a tree for a directory, a blob
    /// for a file.
    pub(crate) fn entry_at(
        &self,
        tree: ObjectId,
        rel: &BStr,
    ) -> Result<Option<(ObjectId, u32)>, SourceError> {
        entry_at(&self.repo, &self.root, tree, rel)
    }
}

fn resolve_commit(repo: &gix::Repository, at: &Path, rev: &str) -> Result<Commit, SourceError> {
    let no_commit = |reason: String| SourceError::NoCommit {
        repo: at.to_path_buf(),
        rev: rev.to_string(),
        reason,
    };
    let commit = repo
        .rev_parse_single(rev)
        .and_then(|id| id.object())
        .and_then(|object| object.peel_to_commit())
        .map_err(|e| no_commit(e.to_string()))?;
    let tree = commit.tree_id().map_err(|e| no_commit(e.to_string()))?;
    Ok(Commit {
        id: commit.id,
        tree: tree.detach(),
    })
}

fn entry_at(
    repo: &gix::Repository,
    at: &Path,
    tree: ObjectId,
    rel: &BStr,
) -> Result<Option<(ObjectId, u32)>, SourceError> {
    if rel.is_empty() {
        return Ok(Some((tree, TREE_MODE)));
    }
    let tree = repo
        .find_tree(tree)
        .map_err(|e| SourceError::git(at, format!("reading tree {tree}"), e))?;
    let entry = tree
        .lookup_entry(rel.split_str("/"))
        .map_err(|e| SourceError::git(at, format!("looking up {rel}"), e))?;
    Ok(entry.map(|e| (e.object_id(), u32::from(e.mode().value()))))
}

/// `git rev-parse REV:PATH` for each of `paths` (`/`-separated, relative to the repository
/// root; empty for the root tree) in the repository at `repo`, which may be bare: the ids a
/// clean package at each path is tagged with. `None` where the commit has no such path.
pub fn committed_tree_ids(
    repo: &Path,
    rev: &str,
    paths: &[&str],
) -> Result<Vec<Option<String>>, SourceError> {
    let opened =
        gix::open(repo).map_err(|e| SourceError::git(repo, "opening the repository", e))?;
    let commit = resolve_commit(&opened, repo, rev)?;
    paths
        .iter()
        .map(|p| {
            let rel = p.trim_matches('/');
            Ok(entry_at(&opened, repo, commit.tree, rel.into())?.map(|(id, _)| id.to_string()))
        })
        .collect()
}
