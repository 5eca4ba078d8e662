//! Git object ids computed from files on disk: blob ids of files and symlinks, and the tree id a
//! directory outside any repository would get if it were committed.
//!
//! LinuxKit tags a package that is not in a git repository `latest`. oxkit computes instead the
//! id `git init && git add -A && git write-tree` would give inside the directory, so the tag
//! still changes exactly when the content does. That id must depend on the directory alone: this
//! module reads `.gitignore` files inside the directory but no repository, no global git
//! configuration (`core.excludesFile`) and no `.gitattributes` filters, and never runs `git`.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::bstr::{BStr, BString, ByteSlice, ByteVec};
use gix::objs::tree::{Entry, EntryKind};
use gix::objs::{Tree, WriteTo};
use gix::worktree::stack::State;
use gix::worktree::stack::state::Ignore;
use gix::worktree::stack::state::ignore::Source;

use crate::SourceError;

/// The id git gives a directory with no committable content (`git write-tree` of an empty index).
const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

/// The tree id `dir` would have if it were committed as the root of a fresh git repository
/// (`git init && git add -A && git write-tree`).
///
/// Honoured: `.gitignore` files at every level (negations, directory patterns, anchoring),
/// executable bits (`100755` when the owner may execute), symlinks (`120000`, the link target
/// as the blob), git's entry order. Left out, as git leaves them out: `.git` entries, empty
/// directories and directories whose content is all ignored, sockets, FIFOs and devices.
/// Deliberately not consulted, so the id is the same on every machine: global excludes
/// (`core.excludesFile`), `.gitattributes` filters. A subdirectory that is itself a git
/// repository is hashed as a plain directory (git would record a submodule link).
pub fn tree_id_of_dir(dir: &Path) -> Result<String, SourceError> {
    dir_tree_id(dir).map(|id| id.to_string())
}

/// [`tree_id_of_dir`] as an object id.
pub(crate) fn dir_tree_id(dir: &Path) -> Result<ObjectId, SourceError> {
    let ignore = Ignore::new(
        Default::default(),
        Default::default(),
        None,
        Source::WorktreeThenIdMappingIfNotSkipped,
        gix::ignore::search::Ignore::default(),
    );
    let mut excludes = gix::worktree::Stack::new(
        dir,
        State::IgnoreStack(ignore),
        gix::glob::pattern::Case::Sensitive,
        Vec::new(),
        Vec::new(),
    );
    let mut walk = Walk {
        root: dir,
        excludes: &mut excludes,
    };
    match walk.tree(&mut BString::default())? {
        Some(id) => Ok(id),
        None => ObjectId::from_hex(EMPTY_TREE.as_bytes())
            .map_err(|e| SourceError::git(dir, "encoding the empty tree id", e)),
    }
}

struct Walk<'a> {
    root: &'a Path,
    excludes: &'a mut gix::worktree::Stack,
}

impl Walk<'_> {
    /// The tree id of the directory at `rel` (repository-relative, `/`-separated; empty for
    /// the root), or `None` when nothing in it would be committed.
    fn tree(&mut self, rel: &mut BString) -> Result<Option<ObjectId>, SourceError> {
        let abs = join(self.root, rel.as_bstr());
        let read = std::fs::read_dir(&abs).map_err(|e| SourceError::io(&abs, e))?;
        let mut entries = Vec::new();
        for_each_dirent(&abs, read, rel, |rel, path, filename, file_type| {
            if let Some((kind, oid)) = self.entry(rel, path, file_type)? {
                entries.push(Entry {
                    mode: kind.into(),
                    filename,
                    oid,
                });
            }
            Ok(())
        })?;
        if entries.is_empty() {
            return Ok(None);
        }
        entries.sort();
        tree_id(&Tree { entries }).map(Some)
    }

    fn entry(
        &mut self,
        rel: &mut BString,
        abs: &Path,
        file_type: std::fs::FileType,
    ) -> Result<Option<(EntryKind, ObjectId)>, SourceError> {
        let is_dir = file_type.is_dir();
        if !(is_dir || file_type.is_file() || file_type.is_symlink()) {
            return Ok(None);
        }
        let mode = if is_dir {
            gix::index::entry::Mode::DIR
        } else {
            gix::index::entry::Mode::FILE
        };
        let excluded = self
            .excludes
            .at_entry(rel.as_bstr(), Some(mode), &gix::objs::find::Never)
            .map_err(|e| SourceError::io(abs, e))?
            .is_excluded();
        if excluded {
            return Ok(None);
        }
        if is_dir {
            Ok(self.tree(rel)?.map(|id| (EntryKind::Tree, id)))
        } else if file_type.is_symlink() {
            Ok(Some((EntryKind::Link, symlink_blob_id(abs)?)))
        } else {
            let (id, executable) = file_blob_id(abs)?;
            let kind = if executable {
                EntryKind::BlobExecutable
            } else {
                EntryKind::Blob
            };
            Ok(Some((kind, id)))
        }
    }
}

/// `root` joined with a repository-relative `/`-separated path.
pub(crate) fn join(root: &Path, rel: &BStr) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(path_of(rel))
    }
}

/// Calls `visit` for each entry of the directory `abs` (listed by `read`) except `.git`, with
/// `rel`, the directory's repository-relative path, extended by `/NAME` for the call and
/// restored after it. `visit` gets `rel`, the entry's path on disk, its name and its file type
/// (symlinks not followed); the first error stops the listing.
pub(crate) fn for_each_dirent(
    abs: &Path,
    read: std::fs::ReadDir,
    rel: &mut BString,
    mut visit: impl FnMut(&mut BString, &Path, BString, std::fs::FileType) -> Result<(), SourceError>,
) -> Result<(), SourceError> {
    for dirent in read {
        let dirent = dirent.map_err(|e| SourceError::io(abs, e))?;
        let name = BString::from(dirent.file_name().as_bytes());
        if name == ".git" {
            continue;
        }
        let path = dirent.path();
        let file_type = dirent.file_type().map_err(|e| SourceError::io(&path, e))?;
        let saved = rel.len();
        if !rel.is_empty() {
            rel.push_byte(b'/');
        }
        rel.push_str(&name);
        let result = visit(rel, &path, name, file_type);
        rel.truncate(saved);
        result?;
    }
    Ok(())
}

/// A `/`-separated repository path as a file-system path (Unix paths are bytes).
pub(crate) fn path_of(rel: &[u8]) -> &Path {
    Path::new(std::ffi::OsStr::from_bytes(rel))
}

/// A file-system path's bytes.
pub(crate) fn bytes_of(path: &Path) -> &BStr {
    path.as_os_str().as_bytes().as_bstr()
}

/// The id of a serialised tree object.
pub(crate) fn tree_id(tree: &Tree) -> Result<ObjectId, SourceError> {
    let mut buf = Vec::with_capacity(tree.entries.len() * 48);
    tree.write_to(&mut buf)
        .map_err(|e| SourceError::io("<tree object>", e))?;
    let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
    hasher.update(&gix::objs::encode::loose_header(
        gix::objs::Kind::Tree,
        buf.len() as u64,
    ));
    hasher.update(&buf);
    hasher
        .try_finalize()
        .map_err(|e| SourceError::git("<tree object>", "hashing a tree", e))
}

/// The blob id of bytes held in memory (a symlink target, filtered file content).
pub(crate) fn blob_id(data: &[u8], what: &Path) -> Result<ObjectId, SourceError> {
    let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
    hasher.update(&gix::objs::encode::loose_header(
        gix::objs::Kind::Blob,
        data.len() as u64,
    ));
    hasher.update(data);
    hasher
        .try_finalize()
        .map_err(|e| SourceError::git(what, "hashing a blob", e))
}

/// The blob id of a symlink: git stores the link target's bytes.
pub(crate) fn symlink_blob_id(path: &Path) -> Result<ObjectId, SourceError> {
    let target = std::fs::read_link(path).map_err(|e| SourceError::io(path, e))?;
    blob_id(target.as_os_str().as_bytes(), path)
}

/// The blob id of a regular file's raw content, streamed, and whether its owner may execute it
/// (git's rule for `100755`).
pub(crate) fn file_blob_id(path: &Path) -> Result<(ObjectId, bool), SourceError> {
    use std::os::unix::fs::PermissionsExt;
    let mut file = std::fs::File::open(path).map_err(|e| SourceError::io(path, e))?;
    let meta = file.metadata().map_err(|e| SourceError::io(path, e))?;
    let executable = meta.permissions().mode() & 0o100 != 0;
    let len = meta.len();
    let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
    hasher.update(&gix::objs::encode::loose_header(gix::objs::Kind::Blob, len));
    let mut buf = vec![0u8; 64 * 1024];
    let mut seen = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| SourceError::io(path, e))?;
        if n == 0 {
            break;
        }
        seen += n as u64;
        hasher.update(&buf[..n]);
    }
    if seen != len {
        return Err(SourceError::io(
            path,
            std::io::Error::other(format!(
                "the file changed while it was hashed ({len} bytes expected, {seen} read); retry when it is no longer being written"
            )),
        ));
    }
    let id = hasher
        .try_finalize()
        .map_err(|e| SourceError::git(path, "hashing a blob", e))?;
    Ok((id, executable))
}

#[cfg(test)]
#[path = "tree_tests.rs"]
mod tests;
