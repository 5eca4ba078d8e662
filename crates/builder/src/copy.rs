//! COPY and ADD into a stage's root filesystem with Docker's rules: a directory source copies
//! its contents; a file goes into the destination when it ends with `/`, names an existing
//! directory or several sources are copied, and is named the destination otherwise; symlinks
//! are copied as links, except a source path that is itself a link, which is followed; hard
//! links within one copy stay linked; owners are `--chown` or root, modes are the source's or
//! `--chmod`; `--exclude` patterns leave paths out; `--parents` keeps the source's directories;
//! symlinks in the destination path are followed inside the root filesystem.
//!
//! Files stream from where they are (the package directory, another stage): nothing is staged.
//! The caller computes the layer afterwards by diffing the tree.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use oxkit_spec::dockerignore::DockerIgnore;

use crate::archive;
use crate::error::{StepError, io_step};
use crate::fsutil;
use crate::tree::{Node, Tree, rel_join};

/// One thing to copy.
pub(crate) enum Item<'a> {
    /// A path of a tree (already wildcard-expanded).
    Tree { tree: &'a dyn Tree, rel: String },
    /// A file prepared on the host (a heredoc, a download) and the name it gets.
    File {
        host: PathBuf,
        name: String,
        mode: u32,
    },
    /// An archive ADD extracts into the destination directory.
    Archive { host: PathBuf, kind: archive::Kind },
}

/// `--chown`, `--chmod`, `--exclude`, `--parents`.
#[derive(Default)]
pub(crate) struct CopyOptions {
    /// `--chown`; without it files belong to root, or keep their owner with `keep_owner`.
    pub(crate) owner: Option<(u32, u32)>,
    /// Keep the source's owners when there is no `--chown` (BuildKit does for `--from`).
    pub(crate) keep_owner: bool,
    pub(crate) chmod: Option<u32>,
    pub(crate) excludes: Option<DockerIgnore>,
    pub(crate) parents: bool,
}

/// Parses `--chmod` (octal; BuildKit also accepts symbolic modes, which we refuse clearly).
pub(crate) fn parse_chmod(s: &str) -> Result<u32, StepError> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| {
            StepError::new(format!(
                "invalid --chmod {s:?}: give an octal mode such as 755 or 0644"
            ))
        })
}

/// Paths written, relative to the root, with the owner they should have.
pub(crate) type Written = Vec<(PathBuf, (u32, u32))>;

struct Copier<'o> {
    root: PathBuf,
    opts: &'o CopyOptions,
    owner: (u32, u32),
    /// Source (device, inode) of multiply-linked files → where the first copy went.
    links: HashMap<(u64, u64), PathBuf>,
    written: Written,
}

/// Copies `items` to `dest` (an absolute container path; a trailing `/` means a directory) in
/// the root filesystem `root`. `several` is true when the instruction names more than one
/// source (then the destination must be a directory).
pub(crate) fn copy_items(
    root: &Path,
    items: &[Item<'_>],
    dest: &str,
    several: bool,
    opts: &CopyOptions,
) -> Result<Written, StepError> {
    let mut c = Copier {
        root: root.to_path_buf(),
        opts,
        owner: opts.owner.unwrap_or((0, 0)),
        links: HashMap::new(),
        written: Vec::new(),
    };
    let dest_host = fsutil::resolve_in_root(root, dest, true)?;
    let dest_is_dir = dest.ends_with('/')
        || several
        || items.len() > 1
        || fs::metadata(&dest_host).is_ok_and(|m| m.is_dir());
    for item in items {
        match item {
            Item::Tree { tree, rel } => c.copy_tree_item(*tree, rel, &dest_host, dest_is_dir)?,
            Item::File { host, name, mode } => {
                let target = if dest_is_dir {
                    c.ensure_dir(&dest_host)?;
                    dest_host.join(name)
                } else {
                    c.ensure_parent(&dest_host)?;
                    dest_host.clone()
                };
                let meta = fs::symlink_metadata(host).map_err(io_step("inspect", host))?;
                c.copy_file(host, &meta, &target, Some(*mode))?;
            }
            Item::Archive { host, kind } => {
                c.ensure_dir(&dest_host)?;
                archive::extract(host, *kind, &dest_host)?;
            }
        }
    }
    Ok(c.written)
}

impl Copier<'_> {
    fn rel_of(&self, host: &Path) -> PathBuf {
        host.strip_prefix(&self.root).unwrap_or(host).to_path_buf()
    }

    fn note(&mut self, host: &Path) {
        let rel = self.rel_of(host);
        self.written.push((rel, self.owner));
    }

    /// Creates `dir` and missing parents (0755, the copy's owner).
    fn ensure_dir(&mut self, dir: &Path) -> Result<(), StepError> {
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => {
                // A file where a directory is wanted: Docker replaces it.
                fs::remove_file(dir).map_err(io_step("replace", dir))?;
            }
            Err(_) => {}
        }
        for made in fsutil::mkdir_all(dir, 0o755, Some(self.owner))? {
            self.note(&made);
        }
        Ok(())
    }

    fn ensure_parent(&mut self, path: &Path) -> Result<(), StepError> {
        match path.parent() {
            Some(p) => self.ensure_dir(p),
            None => Ok(()),
        }
    }

    fn excluded(&self, rel_in_source: &str, full_rel: &str) -> bool {
        self.opts.excludes.as_ref().is_some_and(|ex| {
            (!rel_in_source.is_empty() && ex.is_excluded(rel_in_source, false))
                || ex.is_excluded(full_rel, false)
        })
    }

    fn copy_tree_item(
        &mut self,
        tree: &dyn Tree,
        rel: &str,
        dest: &Path,
        dest_is_dir: bool,
    ) -> Result<(), StepError> {
        // The source path itself is followed when it is a symlink (BuildKit's FollowLinks).
        let resolved = tree.follow(rel)?;
        let node = tree.node(&resolved)?.ok_or_else(|| {
            StepError::new(format!(
                "{rel:?} is a symbolic link to {resolved:?}, which is not in {}",
                tree.describe()
            ))
        })?;
        let base = match (self.opts.parents, dest_is_dir) {
            (true, _) => dest.join(rel),
            (false, true) => dest.join(Path::new(rel).file_name().unwrap_or_default()),
            (false, false) => dest.to_path_buf(),
        };
        if node.is_dir() {
            let target = if self.opts.parents {
                base
            } else {
                dest.to_path_buf()
            };
            self.ensure_dir(&target)?;
            if self.opts.parents
                && let Node::Host { meta, .. } = &node
            {
                self.set_meta(
                    &target,
                    self.opts.chmod.unwrap_or(meta.mode() & 0o7777),
                    Some(meta),
                    false,
                )?;
            }
            return self.copy_dir_contents(tree, &resolved, &target);
        }
        let Node::Host { path, meta } = node else {
            return Ok(());
        };
        if self.excluded("", &resolved) {
            return Ok(());
        }
        self.ensure_parent(&base)?;
        self.copy_leaf(&path, &meta, &base)
    }

    fn copy_dir_contents(
        &mut self,
        tree: &dyn Tree,
        src: &str,
        dst: &Path,
    ) -> Result<(), StepError> {
        let mut stack: Vec<(String, PathBuf)> = vec![(src.to_string(), dst.to_path_buf())];
        while let Some((dir_rel, dir_host)) = stack.pop() {
            for name in tree.children(&dir_rel)? {
                let child_rel = rel_join(&dir_rel, &name);
                let in_source = child_rel
                    .strip_prefix(src)
                    .map(|s| s.trim_start_matches('/'))
                    .unwrap_or(&child_rel);
                if self.excluded(in_source, &child_rel) {
                    continue;
                }
                let Some(node) = tree.node(&child_rel)? else {
                    continue;
                };
                let mut target = dir_host.join(&name);
                match node {
                    Node::Virtual => {
                        self.ensure_dir(&target)?;
                        stack.push((child_rel, target));
                    }
                    Node::Host { path, meta } if meta.is_dir() => {
                        match fs::symlink_metadata(&target) {
                            Ok(m) if m.file_type().is_symlink() => {
                                // Follow a link in the destination inside the root (a
                                // merged-/usr `/bin -> usr/bin`).
                                let inner = Path::new("/").join(self.rel_of(&target));
                                let followed = fsutil::resolve_in_root(
                                    &self.root,
                                    &inner.to_string_lossy(),
                                    true,
                                )?;
                                if fs::metadata(&followed).is_ok_and(|m| m.is_dir()) {
                                    target = followed;
                                } else {
                                    fs::remove_file(&target)
                                        .map_err(io_step("replace", &target))?;
                                }
                            }
                            Ok(m) if !m.is_dir() => {
                                fs::remove_file(&target).map_err(io_step("replace", &target))?;
                            }
                            _ => {}
                        }
                        if !target.exists() {
                            fs::create_dir(&target)
                                .map_err(io_step("create directory", &target))?;
                        }
                        let mode = self.opts.chmod.unwrap_or(meta.mode() & 0o7777);
                        self.set_meta(&target, mode, Some(&meta), false)?;
                        let _ = path;
                        stack.push((child_rel, target));
                    }
                    Node::Host { path, meta } => self.copy_leaf(&path, &meta, &target)?,
                }
            }
        }
        Ok(())
    }

    /// Copies a non-directory to `target`, replacing what is there.
    fn copy_leaf(
        &mut self,
        src: &Path,
        meta: &fs::Metadata,
        target: &Path,
    ) -> Result<(), StepError> {
        match fs::symlink_metadata(target) {
            Ok(m) if m.is_dir() => {
                fsutil::remove_tree(target).map_err(io_step("replace", target))?
            }
            Ok(_) => fs::remove_file(target).map_err(io_step("replace", target))?,
            Err(_) => {}
        }
        let ft = meta.file_type();
        if ft.is_symlink() {
            let link = fs::read_link(src).map_err(io_step("read link", src))?;
            std::os::unix::fs::symlink(&link, target).map_err(io_step("create symlink", target))?;
            let owner = self.owner_for(Some(meta));
            fsutil::chown(target, owner.0, owner.1)?;
            let rel = self.rel_of(target);
            self.written.push((rel, owner));
            return Ok(());
        }
        if ft.is_file() {
            return self.copy_file(src, meta, target, None);
        }
        // FIFOs and devices.
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_fifo() {
            rustix::fs::FileType::Fifo
        } else if ft.is_char_device() {
            rustix::fs::FileType::CharacterDevice
        } else if ft.is_block_device() {
            rustix::fs::FileType::BlockDevice
        } else {
            return Ok(()); // sockets cannot be copied
        };
        rustix::fs::mknodat(
            rustix::fs::CWD,
            target,
            kind,
            rustix::fs::Mode::from_raw_mode(meta.mode() & 0o7777),
            meta.rdev(),
        )
        .map_err(|e| io_step("create special file", target)(e.into()))?;
        self.set_meta(
            target,
            self.opts.chmod.unwrap_or(meta.mode() & 0o7777),
            Some(meta),
            true,
        )?;
        Ok(())
    }

    /// Copies a regular file's content and metadata; `mode` overrides the source's.
    fn copy_file(
        &mut self,
        src: &Path,
        meta: &fs::Metadata,
        target: &Path,
        mode: Option<u32>,
    ) -> Result<(), StepError> {
        if meta.nlink() > 1 {
            if let Some(first) = self.links.get(&(meta.dev(), meta.ino())) {
                fs::hard_link(first, target).map_err(io_step("link", target))?;
                self.note(target);
                return Ok(());
            }
            self.links
                .insert((meta.dev(), meta.ino()), target.to_path_buf());
        }
        if target.exists() || fs::symlink_metadata(target).is_ok() {
            fs::remove_file(target).map_err(io_step("replace", target))?;
        }
        let mut from = File::open(src).map_err(io_step("read", src))?;
        let mut to = File::options()
            .write(true)
            .create_new(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(target)
            .map_err(io_step("create", target))?;
        io::copy(&mut from, &mut to).map_err(|e| {
            StepError::new(format!(
                "cannot copy {} to {}: {e}",
                src.display(),
                target.display()
            ))
        })?;
        drop(to);
        let mode = self.opts.chmod.or(mode).unwrap_or(meta.mode() & 0o7777);
        self.set_meta(target, mode, Some(meta), true)
    }

    /// The owner a copy of a source with metadata `src` gets.
    fn owner_for(&self, src: Option<&fs::Metadata>) -> (u32, u32) {
        match (self.opts.owner, self.opts.keep_owner, src) {
            (Some(o), _, _) => o,
            (None, true, Some(m)) => (m.uid(), m.gid()),
            _ => (0, 0),
        }
    }

    /// Mode, owner and (from `times`) mtime of a copied path.
    fn set_meta(
        &mut self,
        path: &Path,
        mode: u32,
        src: Option<&fs::Metadata>,
        set_time: bool,
    ) -> Result<(), StepError> {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(io_step("set permissions of", path))?;
        let owner = self.owner_for(src);
        fsutil::chown(path, owner.0, owner.1)?;
        // chown clears setuid/setgid: put them back.
        if mode & 0o6000 != 0 {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .map_err(io_step("set permissions of", path))?;
        }
        if let Some(m) = src.filter(|_| set_time) {
            let t = rustix::fs::Timespec {
                tv_sec: m.mtime(),
                tv_nsec: m.mtime_nsec(),
            };
            rustix::fs::utimensat(
                rustix::fs::CWD,
                path,
                &rustix::fs::Timestamps {
                    last_access: t,
                    last_modification: t,
                },
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| io_step("set times of", path)(e.into()))?;
        }
        self.note(path);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::DirTree;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let root = tmp.path().join("root");
        fs::create_dir_all(src.join("dir/sub")).unwrap();
        fs::write(src.join("dir/a"), "a").unwrap();
        fs::write(src.join("dir/sub/b"), "b").unwrap();
        fs::write(src.join("file"), "f").unwrap();
        fs::set_permissions(src.join("file"), fs::Permissions::from_mode(0o751)).unwrap();
        symlink("file", src.join("link")).unwrap();
        fs::hard_link(src.join("dir/a"), src.join("dir/a2")).unwrap();
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        symlink("usr/bin", root.join("bin")).unwrap();
        fs::create_dir_all(root.join("existing")).unwrap();
        (tmp, src, root)
    }

    fn item<'a>(t: &'a DirTree, rel: &str) -> Item<'a> {
        Item::Tree {
            tree: t,
            rel: rel.into(),
        }
    }

    #[test]
    fn docker_destination_rules() {
        let (_tmp, src, root) = setup();
        let t = DirTree::new(&src, "ctx");
        let o = CopyOptions::default();
        // A directory copies its contents.
        copy_items(&root, &[item(&t, "dir")], "/app", false, &o).unwrap();
        assert_eq!(fs::read(root.join("app/sub/b")).unwrap(), b"b");
        assert!(!root.join("app/dir").exists());
        // Hard links stay linked.
        let a = fs::metadata(root.join("app/a")).unwrap();
        assert_eq!(a.ino(), fs::metadata(root.join("app/a2")).unwrap().ino());
        // A file to a new name, into a trailing-slash dir, into an existing dir.
        copy_items(&root, &[item(&t, "file")], "/renamed", false, &o).unwrap();
        copy_items(&root, &[item(&t, "file")], "/newdir/", false, &o).unwrap();
        copy_items(&root, &[item(&t, "file")], "/existing", false, &o).unwrap();
        assert!(root.join("renamed").is_file());
        assert!(root.join("newdir/file").is_file());
        assert!(root.join("existing/file").is_file());
        assert_eq!(
            fs::metadata(root.join("renamed"))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o751
        );
        // A source that is a link is followed; a destination link is followed in the root.
        copy_items(&root, &[item(&t, "link")], "/bin/", false, &o).unwrap();
        let copied = fs::symlink_metadata(root.join("usr/bin/link")).unwrap();
        assert!(copied.is_file());
        // Several sources go into a directory.
        copy_items(
            &root,
            &[item(&t, "file"), item(&t, "dir/a")],
            "/multi/",
            true,
            &o,
        )
        .unwrap();
        assert!(root.join("multi/file").is_file() && root.join("multi/a").is_file());
    }

    #[test]
    fn chmod_exclude_parents() {
        let (_tmp, src, root) = setup();
        let t = DirTree::new(&src, "ctx");
        let o = CopyOptions {
            chmod: Some(0o600),
            excludes: Some(DockerIgnore::from_patterns(["sub"]).unwrap()),
            ..Default::default()
        };
        copy_items(&root, &[item(&t, "dir")], "/x/", false, &o).unwrap();
        assert!(!root.join("x/sub").exists());
        assert_eq!(
            fs::metadata(root.join("x/a")).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        let p = CopyOptions {
            parents: true,
            ..Default::default()
        };
        copy_items(&root, &[item(&t, "dir/sub/b")], "/p/", false, &p).unwrap();
        assert!(root.join("p/dir/sub/b").is_file());
        assert!(parse_chmod("u+x").is_err());
        assert_eq!(parse_chmod("0755").unwrap(), 0o755);
    }
}
