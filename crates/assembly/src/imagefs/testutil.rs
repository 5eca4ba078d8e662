//! What the SquashFS and EROFS writers' tests share: a recorder that writes entries and keeps
//! what a reader must find, the comparison of an extracted or mounted tree with it, a loop
//! mount, the refusals both writers make, and host trees to write.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Cursor, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use oxkit_store::layer::EntryMeta;
use oxkit_testkit::{Rng, run_ok};

use super::{ImageError, ImageWriter};
use crate::bootsplit::RootWriter;

pub(crate) const EPOCH: i64 = 1_700_000_000;
/// A v2 `security.capability` value granting CAP_NET_RAW (permitted, effective).
pub(crate) const CAP_NET_RAW: [u8; 20] = [
    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// A writer into memory, as the tests drive it.
pub(crate) trait TestImage: ImageWriter<Cursor<Vec<u8>>> {
    fn empty(epoch: i64) -> Self {
        Self::new(Cursor::new(Vec::new()), epoch).unwrap()
    }
    /// The finished output's bytes, up to where the image ends (a writer may have written
    /// past that and gone back, as `RootImage::finish_image` truncates a file).
    fn image(self) -> Vec<u8> {
        let out = self.finish().unwrap();
        let end = usize::try_from(out.position()).unwrap();
        let mut bytes = out.into_inner();
        bytes.truncate(end);
        bytes
    }
}

impl<T: ImageWriter<Cursor<Vec<u8>>>> TestImage for T {}

pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

pub(crate) fn run(cmd: &mut Command) -> String {
    run_ok(cmd.env("TZ", "UTC"))
}

pub(crate) fn m(mode: u32, uid: u64, gid: u64, mtime: i64) -> EntryMeta {
    EntryMeta {
        mode,
        uid,
        gid,
        mtime,
        xattrs: BTreeMap::new(),
    }
}

pub(crate) fn with_xattrs(mut meta: EntryMeta, xattrs: &[(&str, &[u8])]) -> EntryMeta {
    for (k, v) in xattrs {
        meta.xattrs.insert((*k).to_string(), v.to_vec());
    }
    meta
}

/// Compressible text-like bytes: words picked at random, two of them the format's.
pub(crate) fn text(name: &str, part: &str, seed: u64, len: usize) -> Vec<u8> {
    let words = [
        name,
        "the ",
        "kernel",
        " mounts",
        "\n",
        "block",
        "inode ",
        "linuxkit",
        "{",
        "}",
        part,
        "0x7f",
        "    ",
        "directory",
        ";",
        "root:x:0:0",
        "/usr/lib",
        "#include",
    ];
    let mut rng = Rng::new(seed);
    let mut v = Vec::with_capacity(len + 16);
    while v.len() < len {
        v.extend_from_slice(rng.pick(&words).as_bytes());
    }
    v.truncate(len);
    v
}

pub(crate) fn write_image(dir: &Path, name: &str, image: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, image).unwrap();
    p
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Kind {
    Dir,
    File(Vec<u8>),
    Link(Vec<u8>),
    Dev(bool, u32, u32),
    Fifo,
}

#[derive(Clone, Debug)]
pub(crate) struct Exp {
    pub(crate) kind: Kind,
    pub(crate) meta: EntryMeta,
    /// The first name of a file's hard-link group.
    pub(crate) group: Option<String>,
}

/// Writes entries and records what a reader must find.
pub(crate) struct Rec<W> {
    pub(crate) w: W,
    exp: BTreeMap<String, Exp>,
    root: EntryMeta,
}

impl<W: TestImage> Rec<W> {
    pub(crate) fn new() -> Self {
        Self {
            w: W::empty(EPOCH),
            exp: BTreeMap::new(),
            root: m(0o755, 0, 0, EPOCH),
        }
    }
    fn put(&mut self, path: &str, kind: Kind, meta: &EntryMeta, group: Option<String>) {
        let exp = Exp {
            kind,
            meta: meta.clone(),
            group,
        };
        self.exp.insert(path.to_string(), exp);
    }
    pub(crate) fn root(&mut self, meta: EntryMeta) {
        self.w.root(&meta).unwrap();
        self.root = meta;
    }
    pub(crate) fn dir(&mut self, path: &str, meta: EntryMeta) {
        self.w.dir(path.as_bytes(), &meta).unwrap();
        self.put(path, Kind::Dir, &meta, None);
    }
    pub(crate) fn file(&mut self, paths: &[&str], meta: EntryMeta, data: Vec<u8>) {
        let names: Vec<&[u8]> = paths.iter().map(|p| p.as_bytes()).collect();
        self.w
            .file(&names, &meta, data.len() as u64, &mut &data[..])
            .unwrap();
        let group = (paths.len() > 1).then(|| paths[0].to_string());
        for p in paths {
            self.put(p, Kind::File(data.clone()), &meta, group.clone());
        }
    }
    pub(crate) fn symlink(&mut self, path: &str, target: &str, meta: EntryMeta) {
        self.w
            .symlink(path.as_bytes(), target.as_bytes(), &meta)
            .unwrap();
        self.put(path, Kind::Link(target.as_bytes().to_vec()), &meta, None);
    }
    pub(crate) fn device(&mut self, path: &str, block: bool, dev: (u32, u32), meta: EntryMeta) {
        self.w.device(path.as_bytes(), block, dev, &meta).unwrap();
        self.put(path, Kind::Dev(block, dev.0, dev.1), &meta, None);
    }
    pub(crate) fn fifo(&mut self, path: &str, meta: EntryMeta) {
        self.w.fifo(path.as_bytes(), &meta).unwrap();
        self.put(path, Kind::Fifo, &meta, None);
    }
    pub(crate) fn finish(self) -> Built {
        Built {
            image: self.w.image(),
            exp: self.exp,
            root: self.root,
        }
    }
}

pub(crate) struct Built {
    pub(crate) image: Vec<u8>,
    pub(crate) exp: BTreeMap<String, Exp>,
    pub(crate) root: EntryMeta,
}

pub(crate) fn clamp(mtime: i64) -> i64 {
    mtime.clamp(0, EPOCH)
}

pub(crate) fn distinct_inodes(exp: &BTreeMap<String, Exp>) -> usize {
    1 + exp
        .iter()
        .filter(|(p, e)| e.group.as_deref().is_none_or(|g| g == p.as_str()))
        .count()
}

/// What a reader must find, and how closely (what an extraction tool leaves out).
#[derive(Clone, Copy)]
pub(crate) struct Check {
    /// Setuid and setgid bits (a tool that changes owners after modes clears them).
    pub(crate) suid: bool,
    pub(crate) xattrs: bool,
    pub(crate) hard_links: bool,
    pub(crate) dir_nlink: bool,
    /// Symlinks' mtimes (a tool may not set them).
    pub(crate) symlink_mtime: bool,
}

impl Check {
    /// Everything.
    pub(crate) const ALL: Check = Check {
        suid: true,
        xattrs: true,
        hard_links: true,
        dir_nlink: true,
        symlink_mtime: true,
    };
}

/// `p`'s extended attributes; none where the file system has none at all (a SquashFS image
/// without an xattr table answers "not supported").
pub(crate) fn xattrs_of(p: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut names = vec![0u8; 65536];
    let n = match rustix::fs::llistxattr(p, &mut names[..]) {
        Err(rustix::io::Errno::NOTSUP) => return BTreeMap::new(),
        r => r.unwrap(),
    };
    let mut out = BTreeMap::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8(name.to_vec()).unwrap();
        let mut value = vec![0u8; 65536];
        let len = rustix::fs::lgetxattr(p, name.as_str(), &mut value[..]).unwrap();
        value.truncate(len);
        out.insert(name, value);
    }
    out
}

/// Compares a tree on disk (extracted or mounted) with what was written.
pub(crate) fn compare_tree(root: &Path, b: &Built, check: Check) {
    let rm = std::fs::symlink_metadata(root).unwrap();
    assert_eq!(rm.mode() & 0o7777, b.root.mode, "root mode");
    assert_eq!(rm.mtime(), clamp(b.root.mtime), "root mtime");
    assert_eq!(
        (u64::from(rm.uid()), u64::from(rm.gid())),
        (b.root.uid, b.root.gid),
        "root owner"
    );
    if check.xattrs {
        assert_eq!(xattrs_of(root), b.root.xattrs, "root xattrs");
    }

    let mut found = BTreeSet::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if e.file_type().unwrap().is_dir() {
                stack.push((e.path(), rel.clone()));
            }
            found.insert(rel);
        }
    }
    let want: BTreeSet<String> = b.exp.keys().cloned().collect();
    assert_eq!(found, want, "the tree's names");

    let mut groups: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
    for (path, e) in &b.exp {
        let p = root.join(path);
        // Lookups by name, not only listings: the kernel's searches in large directories.
        let md = std::fs::symlink_metadata(&p).unwrap();
        let ft = md.file_type();
        let mask = if check.suid || ft.is_dir() {
            0o7777
        } else {
            0o1777
        };
        assert_eq!(md.mode() & mask, e.meta.mode & mask, "{path}: mode");
        assert_eq!(
            (u64::from(md.uid()), u64::from(md.gid())),
            (e.meta.uid, e.meta.gid),
            "{path}: owner"
        );
        if check.symlink_mtime || !ft.is_symlink() {
            assert_eq!(md.mtime(), clamp(e.meta.mtime), "{path}: mtime");
        }
        if check.xattrs {
            assert_eq!(xattrs_of(&p), e.meta.xattrs, "{path}: xattrs");
        }
        match &e.kind {
            Kind::Dir => {
                assert!(ft.is_dir(), "{path}: a directory");
                if check.dir_nlink {
                    let subdirs = b
                        .exp
                        .iter()
                        .filter(|(q, x)| {
                            x.kind == Kind::Dir
                                && q.strip_prefix(path.as_str())
                                    .and_then(|r| r.strip_prefix('/'))
                                    .is_some_and(|r| !r.contains('/'))
                        })
                        .count() as u64;
                    assert_eq!(md.nlink(), 2 + subdirs, "{path}: link count");
                }
            }
            Kind::File(data) => {
                assert!(ft.is_file(), "{path}: a file");
                assert_eq!(md.len(), data.len() as u64, "{path}: size");
                let got = std::fs::read(&p).unwrap();
                assert!(
                    got == *data,
                    "{path}: content differs ({} bytes, want {})",
                    got.len(),
                    data.len()
                );
                if !check.hard_links {
                    continue;
                }
                if let Some(g) = &e.group {
                    groups.entry(g).or_default().push((md.ino(), md.nlink()));
                } else {
                    assert_eq!(md.nlink(), 1, "{path}: link count");
                }
            }
            Kind::Link(target) => {
                assert!(ft.is_symlink(), "{path}: a symlink");
                let got = std::fs::read_link(&p).unwrap();
                assert_eq!(got.as_os_str().as_encoded_bytes(), &target[..], "{path}");
            }
            Kind::Dev(block, major, minor) => {
                assert!(
                    if *block {
                        ft.is_block_device()
                    } else {
                        ft.is_char_device()
                    },
                    "{path}: device kind"
                );
                let rdev = md.rdev();
                let got = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
                assert_eq!(got, (*major, *minor), "{path}: device number");
            }
            Kind::Fifo => assert!(ft.is_fifo(), "{path}: a fifo"),
        }
    }
    for (g, members) in groups {
        let n = b
            .exp
            .values()
            .filter(|e| e.group.as_deref() == Some(g))
            .count() as u64;
        assert_eq!(members.len() as u64, n, "{g}");
        for (ino, nlink) in &members {
            assert_eq!(*ino, members[0].0, "{g}: the hard links share one inode");
            assert_eq!(*nlink, n, "{g}: link count");
        }
    }
}

/// A mount point, unmounted when dropped.
pub(crate) struct Mount(pub(crate) PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Loop-mounts `b`'s image (written as `file`) as `fstype` (as root) and compares the tree,
/// everything included. When the kernel cannot mount it: a skip, or with `must_mount` a
/// failure.
pub(crate) fn mount_and_compare(b: &Built, file: &str, fstype: &str, must_mount: bool) {
    if !is_root() {
        eprintln!("SKIPPED: mounting needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), file, &b.image);
    let dir = tmp.path().join("mnt");
    std::fs::create_dir(&dir).unwrap();
    let mut mount = Command::new("mount");
    mount
        .args(["-t", fstype, "-o", "loop,ro"])
        .arg(&img)
        .arg(&dir);
    if must_mount {
        run(&mut mount);
    } else {
        match mount.output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot loop-mount {fstype} here: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                return;
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                return;
            }
        }
    }
    let mount = Mount(dir);
    compare_tree(&mount.0, b, Check::ALL);
}

/// A reader that fails.
pub(crate) struct Failing;

impl Read for Failing {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::other("disk on fire"))
    }
}

/// Asserts that `e` is an error naming `path` and saying `what`.
pub(crate) fn named(e: Result<(), ImageError>, path: &str, what: &str) {
    let msg = e.unwrap_err().to_string();
    assert!(msg.contains(path) && msg.contains(what), "{msg}");
}

/// Adds the directory `d` to `w`, then checks what both writers refuse (content shorter or
/// longer than announced or that cannot be read; ids over 32 bits, missing parents, unusable
/// paths, names over `max_name` bytes, device numbers beyond 12/20 bits, bad symlink targets,
/// extended attributes outside the namespaces or without a name), each with an error naming
/// the path, and that none of it was added. `big` is 300,000 bytes of content.
pub(crate) fn refuses_bad_entries(
    w: &mut impl RootWriter<Error = ImageError>,
    max_name: usize,
    big: &[u8],
) {
    let meta = m(0o644, 0, 0, 0);
    w.dir(b"d", &meta).unwrap();

    let e = w.file(&[b"d/short".as_slice()], &meta, 10, &mut &b"abc"[..]);
    assert!(
        matches!(
            &e,
            Err(ImageError::Short {
                got: 3,
                want: 10,
                ..
            })
        ),
        "{e:?}"
    );
    assert!(e.unwrap_err().to_string().contains("d/short"));
    let e = w.file(&[b"d/short2".as_slice()], &meta, 400_000, &mut &big[..]);
    assert!(
        matches!(
            &e,
            Err(ImageError::Short {
                got: 300_000,
                want: 400_000,
                ..
            })
        ),
        "{e:?}"
    );
    let e = w.file(&[b"d/long".as_slice()], &meta, 3, &mut &b"abcd"[..]);
    assert!(matches!(&e, Err(ImageError::Long { want: 3, .. })), "{e:?}");
    assert!(e.unwrap_err().to_string().contains("d/long"));
    let e = w.file(&[b"d/long2".as_slice()], &meta, 200_000, &mut &big[..]);
    assert!(
        matches!(&e, Err(ImageError::Long { want: 200_000, .. })),
        "{e:?}"
    );
    let e = w.file(&[b"d/fire".as_slice()], &meta, 10, &mut Failing);
    assert!(matches!(&e, Err(ImageError::Read { .. })), "{e:?}");
    assert!(e.unwrap_err().to_string().contains("disk on fire"));

    named(
        w.dir(b"d/u", &m(0o755, 1 << 32, 0, 0)),
        "d/u",
        "uid 4294967296",
    );
    named(w.dir(b"d/g", &m(0o755, 0, u64::MAX, 0)), "d/g", "gid");
    named(w.dir(b"nope/x", &meta), "nope/x", "parent");
    named(w.dir(b"d/../x", &meta), "d/../x", "not a usable path");
    named(w.dir(b"/abs", &meta), "/abs", "not a usable path");
    named(w.dir(b"d//x", &meta), "d//x", "not a usable path");
    named(w.dir(b"d/a\0b", &meta), "d/a", "not a usable path");
    named(w.dir(b"", &meta), "/", "not a usable path");
    let long = format!("d/{}", "n".repeat(max_name + 1));
    named(
        w.dir(long.as_bytes(), &meta),
        "nnnn",
        &format!("longer than {max_name}"),
    );
    named(
        w.device(b"d/dev", false, (4096, 0), &meta),
        "d/dev",
        "majors up to 4095",
    );
    named(
        w.device(b"d/dev", true, (1, 1 << 20), &meta),
        "d/dev",
        "minors up",
    );
    named(w.symlink(b"d/l", b"", &meta), "d/l", "symlink target");
    named(w.symlink(b"d/l", b"a\0b", &meta), "d/l", "symlink target");
    named(
        w.symlink(b"d/l", "x".repeat(4096).as_bytes(), &meta),
        "d/l",
        "symlink target",
    );
    named(
        w.fifo(
            b"d/acl",
            &with_xattrs(meta.clone(), &[("system.posix_acl_access", b"x")]),
        ),
        "d/acl",
        "system.posix_acl_access",
    );
    named(
        w.fifo(b"d/x", &with_xattrs(meta.clone(), &[("user.", b"x")])),
        "d/x",
        "not a usable name",
    );
}

/// Writes a file `f` of "abc" with `W`'s image starting after 1000 bytes of something else;
/// returns the image (what follows them).
pub(crate) fn image_inside_a_file<W: TestImage>() -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    out.write_all(&[0xaa; 1000]).unwrap();
    let mut w = W::new(out, EPOCH).unwrap();
    w.file(&[b"f".as_slice()], &m(0o644, 0, 0, 0), 3, &mut &b"abc"[..])
        .unwrap();
    let bytes = w.image();
    assert!(bytes[..1000].iter().all(|&b| b == 0xaa));
    bytes[1000..].to_vec()
}

/// Adds the host tree under `src` (directories, files, symlinks) to `w`, parents first;
/// returns the bytes of file data.
pub(crate) fn add_host_tree(
    w: &mut impl RootWriter<Error = ImageError>,
    src: &Path,
    rel: &str,
) -> u64 {
    let mut bytes = 0;
    let mut entries: Vec<_> = std::fs::read_dir(src.join(rel))
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().into_string().unwrap();
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let md = e.path().symlink_metadata().unwrap();
        let meta = m(
            md.mode() & 0o7777,
            md.uid().into(),
            md.gid().into(),
            md.mtime(),
        );
        let ft = md.file_type();
        if ft.is_dir() {
            w.dir(path.as_bytes(), &meta).unwrap();
            bytes += add_host_tree(w, src, &path);
        } else if ft.is_file() {
            let mut f = std::fs::File::open(e.path()).unwrap();
            w.file(&[path.as_bytes()], &meta, md.len(), &mut f).unwrap();
            bytes += md.len();
        } else if ft.is_symlink() {
            let t = std::fs::read_link(e.path()).unwrap();
            w.symlink(path.as_bytes(), t.as_os_str().as_encoded_bytes(), &meta)
                .unwrap();
        }
    }
    bytes
}

/// Asserts that `dest` (an extracted image) holds what `src` holds.
pub(crate) fn assert_same_tree(src: &Path, dest: &Path) {
    let diff = Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(src)
        .arg(dest)
        .status()
        .unwrap();
    assert!(
        diff.success(),
        "the extracted tree differs from {}",
        src.display()
    );
}
