//! Where COPY, ADD and bind mounts read files from, behind one trait: the build context (the
//! package directory minus `.dockerignore`d paths, with `extra-sources` overlaid, read in place
//! and never copied up front) or a directory tree (another stage's root filesystem, an image's).
//!
//! Paths are relative, `/`-separated and cleaned (`""` is the root). This module reads; it
//! never writes.

use std::fs::{self, Metadata};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use oxkit_source::PackageSource;
use oxkit_spec::Sha256Hasher;
use oxkit_spec::dockerignore::DockerIgnore;

use crate::error::{StepError, io_step};
use crate::fsutil;

/// One path of a tree.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// A real file system object (file, directory, symlink, device...).
    Host { path: PathBuf, meta: Metadata },
    /// A directory that exists only because an `extra-sources` destination lies below it.
    Virtual,
}

impl Node {
    pub(crate) fn is_dir(&self) -> bool {
        match self {
            Self::Host { meta, .. } => meta.is_dir(),
            Self::Virtual => true,
        }
    }
}

/// A tree to copy from.
pub(crate) trait Tree {
    /// The node at `rel`, not following a final symlink; `None` when absent or ignored.
    fn node(&self, rel: &str) -> Result<Option<Node>, StepError>;
    /// The names in directory `rel`, sorted by bytes, ignored ones left out.
    fn children(&self, rel: &str) -> Result<Vec<String>, StepError>;
    /// Resolves symlinks in `rel` (final one included) within the tree; the resolved path.
    fn follow(&self, rel: &str) -> Result<String, StepError>;
    /// How messages name the tree ("the build context", "stage build").
    fn describe(&self) -> String;
}

/// Splits `a/b/c` into components, refusing `..` that would leave the tree.
pub(crate) fn clean_rel(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for comp in path.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}/{b}"),
    }
}

/// The build context.
pub(crate) struct ContextTree {
    /// (source directory, where it lands as a relative path), package directory first.
    sources: Vec<(PathBuf, String)>,
    ignore: DockerIgnore,
}

impl ContextTree {
    /// The context of a package: its sources, with `.dockerignore` from the package directory.
    pub(crate) fn new(sources: &[PackageSource]) -> Result<Self, crate::BuildError> {
        let sources: Vec<(PathBuf, String)> = sources
            .iter()
            .map(|s| (s.src.clone(), clean_rel(&s.dst).unwrap_or_default()))
            .collect();
        let ignore = match sources.first() {
            Some((dir, _)) => {
                let path = dir.join(".dockerignore");
                match fs::read_to_string(&path) {
                    Ok(text) => DockerIgnore::parse_named(&text, &path.display().to_string())
                        .map_err(|e| crate::BuildError::Package(e.to_string()))?,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => DockerIgnore::default(),
                    Err(e) => return Err(crate::BuildError::io("read", &path)(e)),
                }
            }
            None => DockerIgnore::default(),
        };
        Ok(Self { sources, ignore })
    }

    /// The source directory holding `rel`, and the path inside it, topmost source first.
    fn candidates<'a>(&'a self, rel: &'a str) -> impl Iterator<Item = PathBuf> + 'a {
        self.sources.iter().rev().filter_map(move |(src, dst)| {
            let rest = if dst.is_empty() {
                rel
            } else if rel == dst {
                ""
            } else {
                rel.strip_prefix(dst.as_str())?.strip_prefix('/')?
            };
            Some(if rest.is_empty() {
                src.clone()
            } else {
                src.join(rest)
            })
        })
    }

    fn is_virtual_dir(&self, rel: &str) -> bool {
        self.sources.iter().any(|(_, dst)| {
            !dst.is_empty()
                && (rel.is_empty() || dst.strip_prefix(rel).is_some_and(|r| r.starts_with('/')))
        })
    }
}

impl Tree for ContextTree {
    fn node(&self, rel: &str) -> Result<Option<Node>, StepError> {
        let excluded = !rel.is_empty() && self.ignore.is_excluded(rel, false);
        if excluded && self.ignore.can_skip_dir(rel) {
            return Ok(None);
        }
        for host in self.candidates(rel) {
            match fs::symlink_metadata(&host) {
                // An excluded directory stays visible when an exception may match below it.
                Ok(meta) if excluded && !meta.is_dir() => return Ok(None),
                Ok(meta) => return Ok(Some(Node::Host { path: host, meta })),
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(20) => {
                }
                Err(e) => return Err(io_step("inspect", &host)(e)),
            }
        }
        Ok(self.is_virtual_dir(rel).then_some(Node::Virtual))
    }

    fn children(&self, rel: &str) -> Result<Vec<String>, StepError> {
        let mut names = std::collections::BTreeSet::new();
        for host in self.candidates(rel) {
            match fs::symlink_metadata(&host) {
                Ok(m) if m.is_dir() => {
                    for e in fs::read_dir(&host).map_err(io_step("list", &host))? {
                        let e = e.map_err(io_step("list", &host))?;
                        names.insert(e.file_name().to_string_lossy().into_owned());
                    }
                }
                _ => {}
            }
        }
        for (_, dst) in &self.sources {
            let below = if rel.is_empty() {
                Some(dst.as_str())
            } else {
                dst.strip_prefix(rel).and_then(|r| r.strip_prefix('/'))
            };
            if let Some(first) = below
                .and_then(|b| b.split('/').next())
                .filter(|f| !f.is_empty())
            {
                names.insert(first.to_string());
            }
        }
        let mut out: Vec<String> = names
            .into_iter()
            .filter(|n| {
                let p = join(rel, n);
                !self.ignore.is_excluded(&p, false) || !self.ignore.can_skip_dir(&p)
            })
            .collect();
        out.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        Ok(out)
    }

    fn follow(&self, rel: &str) -> Result<String, StepError> {
        follow_generic(self, rel)
    }

    fn describe(&self) -> String {
        "the build context".to_string()
    }
}

/// Resolves symlinks in `rel` using only [`Tree::node`], so the answer stays inside the tree.
fn follow_generic(tree: &dyn Tree, rel: &str) -> Result<String, StepError> {
    let mut todo: Vec<String> = rel
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .rev()
        .map(str::to_string)
        .collect();
    let mut cur: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(comp) = todo.pop() {
        if comp == ".." {
            cur.pop();
            continue;
        }
        cur.push(comp);
        let path = cur.join("/");
        if let Some(Node::Host { path: host, meta }) = tree.node(&path)?
            && meta.file_type().is_symlink()
        {
            hops += 1;
            if hops > 40 {
                return Err(StepError::new(format!(
                    "too many levels of symbolic links in {rel:?} in {}",
                    tree.describe()
                )));
            }
            let target = fs::read_link(&host).map_err(io_step("read link", &host))?;
            let target = target.to_string_lossy().into_owned();
            cur.pop();
            if target.starts_with('/') {
                cur.clear();
            }
            for c in target.split('/').rev() {
                if !c.is_empty() && c != "." {
                    todo.push(c.to_string());
                }
            }
        }
    }
    Ok(cur.join("/"))
}

/// A directory on the host seen as a tree (a stage's or image's root filesystem).
pub(crate) struct DirTree {
    root: PathBuf,
    name: String,
}

impl DirTree {
    pub(crate) fn new(root: impl Into<PathBuf>, name: impl Into<String>) -> Self {
        Self {
            root: root.into(),
            name: name.into(),
        }
    }
}

impl Tree for DirTree {
    fn node(&self, rel: &str) -> Result<Option<Node>, StepError> {
        let host = fsutil::resolve_in_root(&self.root, rel, false)?;
        match fs::symlink_metadata(&host) {
            Ok(meta) => Ok(Some(Node::Host { path: host, meta })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(20) => {
                Ok(None)
            }
            Err(e) => Err(io_step("inspect", &host)(e)),
        }
    }

    fn children(&self, rel: &str) -> Result<Vec<String>, StepError> {
        let host = fsutil::resolve_in_root(&self.root, rel, true)?;
        let mut out = Vec::new();
        for e in fs::read_dir(&host).map_err(io_step("list", &host))? {
            out.push(
                e.map_err(io_step("list", &host))?
                    .file_name()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        out.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        Ok(out)
    }

    fn follow(&self, rel: &str) -> Result<String, StepError> {
        follow_generic(self, rel)
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}

/// A digest of what `rel` holds in `tree` (names, kinds, modes, contents, link targets, all
/// the way down), for step cache keys: the same content gives the same digest wherever it
/// lives and whatever its mtimes. `exclude` leaves paths out as the copy will.
pub(crate) fn content_digest(
    tree: &dyn Tree,
    rel: &str,
    exclude: &dyn Fn(&str) -> bool,
    hasher: &mut Sha256Hasher,
) -> Result<(), StepError> {
    let mut stack = vec![rel.to_string()];
    let mut buf = vec![0u8; 64 * 1024];
    while let Some(path) = stack.pop() {
        let Some(node) = tree.node(&path)? else {
            continue;
        };
        let rel_name = path.strip_prefix(rel).unwrap_or(&path);
        hasher.update(rel_name.as_bytes());
        hasher.update(&[0]);
        match node {
            Node::Virtual => {
                hasher.update(b"d");
                push_children(tree, &path, exclude, &mut stack)?;
            }
            Node::Host { path: host, meta } => {
                let ft = meta.file_type();
                hasher.update(format!("{:o}", meta.mode()).as_bytes());
                if ft.is_dir() {
                    hasher.update(b"d");
                    push_children(tree, &path, exclude, &mut stack)?;
                } else if ft.is_symlink() {
                    let t = fs::read_link(&host).map_err(io_step("read link", &host))?;
                    hasher.update(b"l");
                    hasher.update(t.as_os_str().as_bytes());
                } else if ft.is_file() {
                    hasher.update(format!("f{}", meta.len()).as_bytes());
                    let mut f = fs::File::open(&host).map_err(io_step("read", &host))?;
                    loop {
                        let n = f.read(&mut buf).map_err(io_step("read", &host))?;
                        if n == 0 {
                            break;
                        }
                        hasher.update(&buf[..n]);
                    }
                } else {
                    hasher.update(format!("s{}", meta.rdev()).as_bytes());
                }
            }
        }
        hasher.update(&[0xff]);
    }
    Ok(())
}

fn push_children(
    tree: &dyn Tree,
    dir: &str,
    exclude: &dyn Fn(&str) -> bool,
    stack: &mut Vec<String>,
) -> Result<(), StepError> {
    for name in tree.children(dir)?.into_iter().rev() {
        let child = join(dir, &name);
        if !exclude(&child) {
            stack.push(child);
        }
    }
    Ok(())
}

/// Joins a relative directory and a name (`""` is the root).
pub(crate) fn rel_join(dir: &str, name: &str) -> String {
    join(dir, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn digest(tree: &dyn Tree, rel: &str) -> oxkit_spec::Digest {
        let mut h = Sha256Hasher::new();
        content_digest(tree, rel, &|_| false, &mut h).unwrap();
        h.finish()
    }

    #[test]
    fn context_overlays_extra_sources_and_ignores() {
        let tmp = tempfile::tempdir().unwrap();
        let pkg = tmp.path().join("pkg");
        let extra = tmp.path().join("extra");
        fs::create_dir_all(pkg.join("src")).unwrap();
        fs::create_dir_all(&extra).unwrap();
        fs::write(pkg.join("src/a"), "pkg-a").unwrap();
        fs::write(pkg.join("secret.key"), "no").unwrap();
        fs::write(pkg.join(".dockerignore"), "*.key\n").unwrap();
        fs::write(extra.join("a"), "extra-a").unwrap();
        fs::write(extra.join("b"), "extra-b").unwrap();
        let ctx = ContextTree::new(&[
            PackageSource {
                src: pkg.clone(),
                dst: "/".into(),
            },
            PackageSource {
                src: extra.clone(),
                dst: "/src".into(),
            },
            PackageSource {
                src: extra.clone(),
                dst: "/vendor/lib".into(),
            },
        ])
        .unwrap();
        assert!(ctx.node("secret.key").unwrap().is_none());
        assert_eq!(
            ctx.children("").unwrap(),
            [".dockerignore", "src", "vendor"]
        );
        assert_eq!(ctx.children("src").unwrap(), ["a", "b"]);
        match ctx.node("src/a").unwrap().unwrap() {
            Node::Host { path, .. } => assert_eq!(path, extra.join("a")),
            Node::Virtual => panic!("virtual"),
        }
        assert!(matches!(ctx.node("vendor").unwrap(), Some(Node::Virtual)));
        assert_eq!(ctx.children("vendor").unwrap(), ["lib"]);
        assert!(ctx.node("vendor/lib/b").unwrap().is_some());
    }

    #[test]
    fn digests_follow_content_not_location() {
        let tmp = tempfile::tempdir().unwrap();
        for d in ["one", "two"] {
            fs::create_dir_all(tmp.path().join(d).join("x/y")).unwrap();
            fs::write(tmp.path().join(d).join("x/y/f"), "same").unwrap();
            symlink("y/f", tmp.path().join(d).join("x/l")).unwrap();
        }
        let a = DirTree::new(tmp.path().join("one"), "one");
        let b = DirTree::new(tmp.path().join("two"), "two");
        assert_eq!(digest(&a, "x"), digest(&b, "x"));
        fs::write(tmp.path().join("two/x/y/f"), "diff").unwrap();
        assert_ne!(digest(&a, "x"), digest(&b, "x"));
    }

    #[test]
    fn follow_stays_inside() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("real")).unwrap();
        symlink("/real", tmp.path().join("abs")).unwrap();
        symlink("../../../real", tmp.path().join("up")).unwrap();
        let t = DirTree::new(tmp.path(), "t");
        assert_eq!(t.follow("abs/f").unwrap(), "real/f");
        assert_eq!(t.follow("up").unwrap(), "real");
        assert_eq!(clean_rel("a/../b/./c"), Some("b/c".into()));
        assert_eq!(clean_rel("../x"), None);
    }
}
