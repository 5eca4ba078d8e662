//! LinuxKit's dirty rule, computed in-process: a package is dirty when
//! `git diff --quiet HEAD -- DIR` fails (tracked content or mode differs from HEAD, staged or not,
//! including deletions) or `git ls-files --others --exclude-standard -- DIR` lists something.
//!
//! Only the package's own part of the index, of HEAD's tree and of the work tree is visited, so
//! many packages in one repository cost one pass over each package, not over the repository.
//! Like `git diff`, a file whose stat data matches its index entry (and is not racily clean) is
//! taken to hold the index's content; any other file is hashed, after the repository's clean
//! filters (`.gitattributes`), and compared with HEAD. Nothing is written: the index is not
//! refreshed, so a racily-clean index costs re-hashing on every run until git rewrites it.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use gix::ObjectId;
use gix::bstr::{BStr, BString, ByteSlice, ByteVec};
use gix::index::entry::{Flags, Mode, Stat};
use gix::worktree::stack::state::ignore::Source;

use crate::SourceError;
use crate::repo::{GitRepo, TREE_MODE};
use crate::tree::{blob_id, for_each_dirent, join, path_of, symlink_blob_id};

/// Whether any tracked path under `prefix` (repository-relative; empty for the whole work tree)
/// differs between HEAD and the work tree: `git diff --quiet HEAD -- prefix`. `head` is what
/// HEAD has at `prefix` (`(id, mode)`, see [`GitRepo::entry_at`]).
pub(crate) fn tracked_changed(
    git: &GitRepo,
    head: Option<(ObjectId, u32)>,
    prefix: &BStr,
) -> Result<bool, SourceError> {
    let state: &gix::index::State = &git.index;
    let mut filters = None;
    // When the index's cache tree records HEAD's tree for the prefix, index and HEAD agree on
    // every entry below it, and only the work tree can differ: HEAD's trees need not be read.
    if let Some((id, TREE_MODE)) = head
        && cache_tree_id(state, prefix) == Some(id)
    {
        for entry in entries_under(state, prefix) {
            if entry.stage_raw() != 0 {
                return Ok(true);
            }
            let path = entry.path(state);
            match worktree_entry(git, entry, path, &mut filters)? {
                Some((mode, id)) if mode == entry.mode.bits() && id == entry.id => {}
                _ => return Ok(true),
            }
        }
        return Ok(false);
    }
    let mut head = head_entries(git, head, prefix)?;
    for entry in entries_under(state, prefix) {
        let path = entry.path(state);
        if entry.stage_raw() != 0 {
            return Ok(true); // an unmerged path: git diff reports it
        }
        let in_head = head.remove(path);
        let worktree = worktree_entry(git, entry, path, &mut filters)?;
        let same = match (in_head, worktree) {
            (None, None) => true, // added to the index, then deleted: git diff shows nothing
            (Some(h), Some(w)) => h == w,
            _ => false,
        };
        if !same {
            return Ok(true);
        }
    }
    // What is left is in HEAD but not in the index: a staged deletion.
    Ok(!head.is_empty())
}

/// The tree id the index's cache-tree extension records for directory `prefix`, if it is valid.
fn cache_tree_id(state: &gix::index::State, prefix: &BStr) -> Option<ObjectId> {
    let mut node = state.tree()?;
    for component in prefix.split_str("/").filter(|c| !c.is_empty()) {
        node = node
            .children
            .iter()
            .find(|c| c.name.as_slice() == component)?;
    }
    node.num_entries.map(|_| node.id)
}

/// Index entries whose path starts with `prefix/` (all of them for the root), in index order,
/// every stage included: exactly the lines `git ls-files` prints from that directory.
pub(crate) fn entries_under<'a>(
    state: &'a gix::index::State,
    prefix: &BStr,
) -> impl Iterator<Item = &'a gix::index::Entry> + 'a {
    let mut dir = BString::from(prefix);
    if !dir.is_empty() {
        dir.push_byte(b'/');
    }
    let entries = state.entries();
    let start = entries.partition_point(|e| e.path(state) < dir.as_bstr());
    entries[start..]
        .iter()
        .take_while(move |e| e.path(state).starts_with(dir.as_slice()))
}

/// `(mode, id)` of every non-tree entry of `head` (HEAD's object at `prefix`), by
/// repository-relative path.
fn head_entries(
    git: &GitRepo,
    head: Option<(ObjectId, u32)>,
    prefix: &BStr,
) -> Result<HashMap<BString, (u32, ObjectId)>, SourceError> {
    let mut out = HashMap::new();
    match head {
        None => {}
        Some((id, TREE_MODE)) => collect_tree(git, id, &mut BString::from(prefix), &mut out)?,
        // The path is a file or a submodule link: one entry.
        Some((id, mode)) => {
            out.insert(BString::from(prefix), (canon_mode(mode), id));
        }
    }
    Ok(out)
}

fn collect_tree(
    git: &GitRepo,
    id: ObjectId,
    path: &mut BString,
    out: &mut HashMap<BString, (u32, ObjectId)>,
) -> Result<(), SourceError> {
    let tree = git
        .repo
        .find_tree(id)
        .map_err(|e| SourceError::git(&git.root, format!("reading tree {id} ({path})"), e))?;
    let decoded = tree
        .decode()
        .map_err(|e| SourceError::git(&git.root, format!("decoding tree {id} ({path})"), e))?;
    for entry in decoded.entries {
        let saved = path.len();
        if !path.is_empty() {
            path.push_byte(b'/');
        }
        path.push_str(entry.filename);
        let mode = u32::from(entry.mode.value());
        if mode == TREE_MODE {
            collect_tree(git, entry.oid.to_owned(), path, out)?;
        } else {
            out.insert(path.clone(), (canon_mode(mode), entry.oid.to_owned()));
        }
        path.truncate(saved);
    }
    Ok(())
}

/// Old git wrote modes such as `100664`; git's diff compares them as `100644`/`100755`.
fn canon_mode(mode: u32) -> u32 {
    if mode & 0o170000 == 0o100000 {
        if mode & 0o100 != 0 {
            0o100755
        } else {
            0o100644
        }
    } else {
        mode
    }
}

/// The `(mode, id)` git's diff sees in the work tree for an index entry, or `None` when the path
/// counts as deleted there (missing, or a directory where a file was).
fn worktree_entry<'repo>(
    git: &'repo GitRepo,
    entry: &gix::index::Entry,
    path: &BStr,
    filters: &mut Option<Filters<'repo>>,
) -> Result<Option<(u32, ObjectId)>, SourceError> {
    let index_mode = entry.mode.bits();
    // Submodules are out of scope: compare the recorded commit, as `git diff --ignore-submodules`.
    if entry.mode.is_submodule() || entry.mode.is_sparse() {
        return Ok(Some((index_mode, entry.id)));
    }
    // git trusts the index for these without looking at the file.
    if entry
        .flags
        .intersects(Flags::ASSUME_VALID | Flags::SKIP_WORKTREE)
    {
        return Ok(Some((index_mode, entry.id)));
    }
    let abs = join(&git.root, path);
    let meta = match gix::index::fs::Metadata::from_path_no_follow(&abs) {
        Ok(m) => m,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(SourceError::io(&abs, e)),
    };
    if meta.is_dir() {
        return Ok(None);
    }
    let index_is_link = entry.mode == Mode::SYMLINK;
    // The mode git's diff records for the work tree (ce_mode_from_stat).
    let mode = if meta.is_symlink() || (index_is_link && !git.caps.symlink && meta.is_file()) {
        Mode::SYMLINK.bits()
    } else if !git.caps.executable_bit && !index_is_link {
        index_mode
    } else if meta.is_executable() {
        Mode::FILE_EXECUTABLE.bits()
    } else {
        Mode::FILE.bits()
    };
    if stat_clean(git, entry, &meta, mode) {
        return Ok(Some((mode, entry.id)));
    }
    let id = if mode == Mode::SYMLINK.bits() && meta.is_symlink() {
        symlink_blob_id(&abs)?
    } else if meta.is_file() {
        let filters = match filters {
            Some(f) => f,
            None => filters.insert(Filters::new(git)?),
        };
        filters.blob_id(git, &abs, path)?
    } else {
        // A FIFO, socket or device where a file was: git cannot read it as a file either.
        return Ok(None);
    };
    Ok(Some((mode, id)))
}

/// Whether the work-tree file is known to hold the index's content without reading it: same stat
/// data, same type and executable bit, and not racily clean (git's ie_match_stat).
fn stat_clean(
    git: &GitRepo,
    entry: &gix::index::Entry,
    meta: &gix::index::fs::Metadata,
    mode: u32,
) -> bool {
    if entry.flags.contains(Flags::INTENT_TO_ADD) || mode != entry.mode.bits() {
        return false;
    }
    // git writes size 0 for entries it found racy ("smudged"); only an empty blob may keep it.
    if entry.stat.size == 0 && !entry.id.is_empty_blob() {
        return false;
    }
    let Ok(stat) = Stat::from_fs(meta) else {
        return false;
    };
    entry.stat.matches(&stat, git.stat) && !entry.stat.is_racy(git.index.timestamp(), git.stat)
}

/// The repository's clean filters (`.gitattributes`: eol conversion, `filter=` drivers), set up
/// only when a file actually has to be hashed.
struct Filters<'repo> {
    pipeline: gix::filter::Pipeline<'repo>,
    index: gix::worktree::IndexPersistedOrInMemory,
}

impl<'repo> Filters<'repo> {
    fn new(git: &'repo GitRepo) -> Result<Self, SourceError> {
        let (pipeline, index) = git
            .repo
            .filter_pipeline(None)
            .map_err(|e| SourceError::git(&git.root, "reading .gitattributes filters", e))?;
        Ok(Self { pipeline, index })
    }

    /// The blob id `git add` would record for the file at `abs`.
    fn blob_id(&mut self, git: &GitRepo, abs: &Path, path: &BStr) -> Result<ObjectId, SourceError> {
        use gix::filter::plumbing::pipeline::convert::ToGitOutcome;
        let file = std::fs::File::open(abs).map_err(|e| SourceError::io(abs, e))?;
        let outcome = self
            .pipeline
            .convert_to_git(file, path_of(path), &self.index)
            .map_err(|e| SourceError::git(&git.root, format!("filtering {path}"), e))?;
        let mut data = Vec::new();
        match outcome {
            ToGitOutcome::Unchanged(mut r) => {
                r.read_to_end(&mut data)
                    .map_err(|e| SourceError::io(abs, e))?;
            }
            ToGitOutcome::Process(mut r) => {
                r.read_to_end(&mut data)
                    .map_err(|e| SourceError::io(abs, e))?;
            }
            ToGitOutcome::Buffer(b) => data.extend_from_slice(b),
        }
        blob_id(&data, abs)
    }
}

/// Untracked, non-ignored paths under `prefix` (repository-relative, sorted as git sorts them):
/// `git ls-files --others --exclude-standard -- prefix`. A nested repository is listed as one
/// `dir/` entry, as git lists it.
pub(crate) fn untracked(git: &mut GitRepo, prefix: &BStr) -> Result<Vec<BString>, SourceError> {
    let GitRepo {
        repo,
        root,
        index,
        excludes,
        ..
    } = git;
    let state: &gix::index::State = index;
    // Built once per repository: setting it up scans the whole index for `.gitignore` files.
    let excludes = match excludes {
        Some(stack) => stack,
        None => excludes.insert(
            repo.excludes(state, None, Source::WorktreeThenIdMappingIfNotSkipped)
                .map_err(|e| SourceError::git(&*root, "reading ignore rules", e))?
                .detach(),
        ),
    };
    let mut walk = Untracked {
        repo,
        root,
        state,
        excludes,
        found: Vec::new(),
    };
    // git looks no further when the directory itself, or one above it, is ignored.
    let mut leading = BString::default();
    for component in prefix.split_str("/").filter(|c| !c.is_empty()) {
        if !leading.is_empty() {
            leading.push_byte(b'/');
        }
        leading.push_str(component);
        if walk.is_excluded(leading.as_bstr(), true)? {
            return Ok(Vec::new());
        }
    }
    walk.dir(&mut BString::from(prefix))?;
    let mut found = walk.found;
    found.sort();
    Ok(found)
}

struct Untracked<'a> {
    repo: &'a gix::Repository,
    root: &'a Path,
    state: &'a gix::index::State,
    excludes: &'a mut gix::worktree::Stack,
    found: Vec<BString>,
}

impl Untracked<'_> {
    fn is_excluded(&mut self, rel: &BStr, is_dir: bool) -> Result<bool, SourceError> {
        let mode = if is_dir { Mode::DIR } else { Mode::FILE };
        let platform = self
            .excludes
            .at_entry(rel, Some(mode), &self.repo.objects)
            .map_err(|e| SourceError::io(join(self.root, rel), e))?;
        Ok(platform.is_excluded())
    }

    fn dir(&mut self, rel: &mut BString) -> Result<(), SourceError> {
        let abs = join(self.root, rel.as_bstr());
        let read = match std::fs::read_dir(&abs) {
            Ok(r) => r,
            // The package directory may be gone from the work tree; the tracked diff reports it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(SourceError::io(&abs, e)),
        };
        for_each_dirent(&abs, read, rel, |rel, path, _name, file_type| {
            self.entry(rel, path, file_type)
        })
    }

    fn entry(
        &mut self,
        rel: &mut BString,
        abs: &Path,
        file_type: std::fs::FileType,
    ) -> Result<(), SourceError> {
        if file_type.is_dir() {
            if let Some(e) = self.state.entry_by_path(rel.as_bstr())
                && e.mode.is_submodule()
            {
                return Ok(());
            }
            if self.is_excluded(rel.as_bstr(), true)? {
                return Ok(());
            }
            let has_tracked = entries_under(self.state, rel.as_bstr()).next().is_some();
            if !has_tracked && gix::discover::is_git(&abs.join(".git")).is_ok() {
                let mut listed = rel.clone();
                listed.push_byte(b'/');
                self.found.push(listed);
                return Ok(());
            }
            self.dir(rel)
        } else if file_type.is_file() || file_type.is_symlink() {
            if self.state.entry_by_path(rel.as_bstr()).is_some()
                || self.is_excluded(rel.as_bstr(), false)?
            {
                return Ok(());
            }
            self.found.push(rel.clone());
            Ok(())
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
#[path = "worktree_tests.rs"]
mod tests;
