//! Layer entries: what the layer writer takes and the layer visitor hands out, so an entry
//! read from one layer can be written into another unchanged.
//!
//! Paths are relative, `/`-separated, normalised (no `.`/`..` components, no leading `/`);
//! [`normalize_path`] is the one place that decides what is acceptable.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The whiteout prefix: `dir/.wh.NAME` deletes `dir/NAME` from lower layers.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The opaque marker: `dir/.wh..wh..opq` hides everything lower layers put in `dir`.
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// Ownership, permissions, time and extended attributes of an entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryMeta {
    /// Permission bits including setuid (0o4000), setgid (0o2000) and sticky (0o1000);
    /// file-type bits are ignored.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the Unix epoch (the layer writer clamps it to its epoch).
    pub mtime: i64,
    /// Extended attributes by full name (`security.capability`, `user.foo`).
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl EntryMeta {
    /// `mode`, owned by root, at time 0, no xattrs.
    pub fn mode(mode: u32) -> Self {
        Self {
            mode,
            ..Self::default()
        }
    }

    /// The same metadata with another owner.
    pub fn owner(mut self, uid: u64, gid: u64) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }
}

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    /// A regular file of `size` bytes (its content is passed separately).
    File {
        size: u64,
    },
    /// A symbolic link; the target is stored as is (it may be absolute or climb with `..`).
    Symlink {
        target: PathBuf,
    },
    /// A hard link to an earlier entry of the same layer (a normalised path).
    Hardlink {
        target: PathBuf,
    },
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
    /// Deletes `path` from lower layers (written as `.wh.NAME` in the parent directory).
    Whiteout,
    /// Hides everything lower layers put in the directory `path` (written as
    /// `path/.wh..wh..opq`).
    Opaque,
}

impl EntryKind {
    /// The kind of the file at `path`, whose `lstat` metadata is `md`: a directory, a
    /// regular file of its length, a symlink (its target read from `path`), a character or
    /// block device (major and minor of its `rdev`) or a fifo. `None` for what a layer
    /// cannot store (a socket). Never a hard link: telling those apart is the caller's job.
    ///
    /// The only I/O is reading a symlink's target; its error is returned as is, for the
    /// caller to give it context.
    pub fn from_metadata(path: &Path, md: &Metadata) -> io::Result<Option<Self>> {
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            Self::Dir
        } else if ft.is_file() {
            Self::File { size: md.len() }
        } else if ft.is_symlink() {
            Self::Symlink {
                target: fs::read_link(path)?,
            }
        } else if ft.is_char_device() {
            Self::CharDevice {
                major: rustix::fs::major(md.rdev()),
                minor: rustix::fs::minor(md.rdev()),
            }
        } else if ft.is_block_device() {
            Self::BlockDevice {
                major: rustix::fs::major(md.rdev()),
                minor: rustix::fs::minor(md.rdev()),
            }
        } else if ft.is_fifo() {
            Self::Fifo
        } else {
            return Ok(None);
        };
        Ok(Some(kind))
    }
}

/// One entry of a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Normalised relative path (see [`normalize_path`]).
    pub path: PathBuf,
    pub kind: EntryKind,
    pub meta: EntryMeta,
}

impl Entry {
    pub fn dir(path: impl Into<PathBuf>, meta: EntryMeta) -> Self {
        Self {
            path: path.into(),
            kind: EntryKind::Dir,
            meta,
        }
    }

    pub fn file(path: impl Into<PathBuf>, size: u64, meta: EntryMeta) -> Self {
        Self {
            path: path.into(),
            kind: EntryKind::File { size },
            meta,
        }
    }

    pub fn symlink(path: impl Into<PathBuf>, target: impl Into<PathBuf>, meta: EntryMeta) -> Self {
        Self {
            path: path.into(),
            kind: EntryKind::Symlink {
                target: target.into(),
            },
            meta,
        }
    }

    pub fn hardlink(path: impl Into<PathBuf>, target: impl Into<PathBuf>, meta: EntryMeta) -> Self {
        Self {
            path: path.into(),
            kind: EntryKind::Hardlink {
                target: target.into(),
            },
            meta,
        }
    }

    /// A whiteout for `path` (mode 0, root, time 0: the form containerd writes).
    pub fn whiteout(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            kind: EntryKind::Whiteout,
            meta: EntryMeta::default(),
        }
    }

    /// An opaque marker for the directory `dir`.
    pub fn opaque(dir: impl Into<PathBuf>) -> Self {
        Self {
            path: dir.into(),
            kind: EntryKind::Opaque,
            meta: EntryMeta::default(),
        }
    }
}

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPath(pub &'static str);

/// Normalises a tar path: a leading `/` or `./` and `.` components are dropped, empty
/// components collapse; `..` anywhere is refused (a layer has no business naming it). The
/// root itself normalises to an empty path.
pub fn normalize_path(raw: &[u8]) -> Result<PathBuf, BadPath> {
    if raw.contains(&0) {
        return Err(BadPath("the path contains a NUL byte"));
    }
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err(BadPath("the path contains a '..' component")),
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(PathBuf::from(OsStr::from_bytes(&out)))
}

/// The tar name for an entry: whiteouts and opaque markers get their `.wh.` form.
pub(crate) fn tar_name(entry: &Entry) -> Result<Vec<u8>, BadPath> {
    let path = entry.path.as_os_str().as_bytes();
    match entry.kind {
        EntryKind::Whiteout => {
            let (parent, name) = split_parent(path);
            if name.is_empty() {
                return Err(BadPath("a whiteout needs a file name"));
            }
            let mut out = parent.to_vec();
            if !out.is_empty() {
                out.push(b'/');
            }
            out.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
            out.extend_from_slice(name);
            Ok(out)
        }
        EntryKind::Opaque => {
            let mut out = path.to_vec();
            if !out.is_empty() {
                out.push(b'/');
            }
            out.extend_from_slice(OPAQUE_WHITEOUT.as_bytes());
            Ok(out)
        }
        _ => Ok(path.to_vec()),
    }
}

/// `(parent, name)` of a normalised path (`parent` empty at the top level).
pub(crate) fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// Classifies a tar name as an entry path: whiteouts and opaque markers become
/// [`EntryKind::Whiteout`] / [`EntryKind::Opaque`] on the path they affect. A whiteout of `.`
/// or `..` (`.wh..`, `.wh...`) is refused: it would delete its own directory or the one
/// above, which for a top-level entry is outside the root.
pub(crate) fn classify_whiteout(path: &Path) -> Result<Option<(PathBuf, EntryKind)>, BadPath> {
    let bytes = path.as_os_str().as_bytes();
    let (parent, name) = split_parent(bytes);
    let parent = PathBuf::from(OsStr::from_bytes(parent));
    if name == OPAQUE_WHITEOUT.as_bytes() {
        return Ok(Some((parent, EntryKind::Opaque)));
    }
    let Some(target) = name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) else {
        return Ok(None);
    };
    // `.wh..wh.*` names other than the opaque marker are reserved for AUFS metadata.
    if target.is_empty() || target.starts_with(WHITEOUT_PREFIX.as_bytes()) {
        return Ok(None);
    }
    if target == b"." || target == b".." {
        return Err(BadPath(
            "a whiteout of '.' or '..' would delete a directory that holds it",
        ));
    }
    Ok(Some((
        parent.join(OsStr::from_bytes(target)),
        EntryKind::Whiteout,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalise_and_dotdot_is_refused() {
        for (raw, want) in [
            ("/etc/passwd", "etc/passwd"),
            ("./etc//x/", "etc/x"),
            ("a/./b", "a/b"),
            ("./", ""),
            ("/", ""),
        ] {
            assert_eq!(
                normalize_path(raw.as_bytes()).unwrap(),
                PathBuf::from(want),
                "{raw}"
            );
        }
        for raw in ["../x", "a/../../b", "a/..", "/.."] {
            assert!(normalize_path(raw.as_bytes()).is_err(), "{raw}");
        }
        assert!(normalize_path(b"a\0b").is_err());
    }

    #[test]
    fn whiteout_names_round_trip() {
        let w = Entry::whiteout("etc/gone");
        assert_eq!(tar_name(&w).unwrap(), b"etc/.wh.gone");
        assert_eq!(
            classify_whiteout(Path::new("etc/.wh.gone")).unwrap(),
            Some((PathBuf::from("etc/gone"), EntryKind::Whiteout))
        );
        let o = Entry::opaque("var/lib");
        assert_eq!(tar_name(&o).unwrap(), b"var/lib/.wh..wh..opq");
        assert_eq!(
            classify_whiteout(Path::new("var/lib/.wh..wh..opq")).unwrap(),
            Some((PathBuf::from("var/lib"), EntryKind::Opaque))
        );
        assert_eq!(tar_name(&Entry::whiteout("top")).unwrap(), b".wh.top");
        assert_eq!(
            classify_whiteout(Path::new("x/.wh..wh.plnk")).unwrap(),
            None
        );
        assert_eq!(classify_whiteout(Path::new("x/normal")).unwrap(), None);
        for name in [".wh..", ".wh...", "x/.wh..", "x/.wh..."] {
            assert!(classify_whiteout(Path::new(name)).is_err(), "{name}");
        }
    }
}
