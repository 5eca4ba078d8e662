//! Flattening an image: applying its layers, bottom to top, to an in-memory [`Dir`] with OCI
//! semantics (whiteouts delete, opaque markers hide what lower layers put in a directory,
//! later entries replace earlier ones, hard links share an inode), reading each layer once as
//! a stream and keeping only metadata and content references.
//!
//! Layers are untrusted. The store's visitor already refuses names with `..`; here an entry
//! is refused when it would be written through a symbolic link that leads outside the image's
//! root, when a hard link names nothing (or a directory), and when a device node lies outside
//! `/dev`. Refusals name the layer digest and the entry; the caller adds the image.
//!
//! Then LinuxKit's fix-ups of an image's file system (its `ImageTar`): build leftovers
//! removed, `/etc/hosts` and `/etc/resolv.conf` replaced, the usual mount points present.

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use oxkit_store::Store;
use oxkit_store::layer::{Entry, EntryKind, EntryMeta};
use oxkit_store::oci::Descriptor;

use crate::tree::{
    Content, Dir, Inode, Inodes, Node, SourceId, TreeError, dir_mut, lookup, lookup_dir_mut, put,
    resolve_dir_path, split_components,
};

/// What the layer visitor hands a capture hook: a regular file, where it is in the layer,
/// and its content (read as much as wanted).
pub(crate) type FileHook<'h> =
    dyn FnMut(SourceId, u64, &Entry, &mut dyn Read) -> oxkit_store::Result<()> + 'h;

/// One layer to apply and the source id its content references use.
pub(crate) struct LayerRef<'a> {
    pub(crate) descriptor: &'a Descriptor,
    pub(crate) source: SourceId,
}

/// Applies `layers` in order to a fresh root; `hook` sees every regular file as it streams
/// (LinuxKit's kernel filter and APK database merge read a few of them).
pub(crate) fn flatten(
    store: &Store,
    layers: &[LayerRef<'_>],
    inodes: &mut Inodes,
    epoch: i64,
    hook: &mut FileHook<'_>,
) -> oxkit_store::Result<Dir> {
    let mut root = Dir::new(EntryMeta::mode(0o755));
    for layer in layers {
        let mut applier = Applier {
            root: &mut root,
            inodes,
            created: HashSet::new(),
            source: layer.source,
            epoch,
        };
        let mut ordinal = 0u64;
        oxkit_store::unpack::visit_layer_blob(store, layer.descriptor, |entry, data| {
            let this = ordinal;
            ordinal += 1;
            if matches!(entry.kind, EntryKind::File { .. }) {
                hook(layer.source, this, entry, data)?;
            }
            applier
                .apply(entry, this)
                .map_err(|reason| oxkit_store::Error::Layer {
                    layer: layer.descriptor.digest.to_string(),
                    entry: entry.path.display().to_string(),
                    reason,
                })
        })?;
    }
    Ok(root)
}

/// Applies the entries of one tar stream (a layer, or the kernel's `kernel.tar`).
pub(crate) struct Applier<'a> {
    pub(crate) root: &'a mut Dir,
    pub(crate) inodes: &'a mut Inodes,
    /// Paths this layer wrote: an opaque marker keeps them.
    pub(crate) created: HashSet<Vec<u8>>,
    pub(crate) source: SourceId,
    pub(crate) epoch: i64,
}

fn join(comps: &[Vec<u8>]) -> Vec<u8> {
    comps.join(&b'/')
}

fn err(e: TreeError) -> String {
    format!("refused: {e}")
}

impl Applier<'_> {
    /// Applies one entry (the `ordinal`-th of its stream).
    pub(crate) fn apply(&mut self, entry: &Entry, ordinal: u64) -> Result<(), String> {
        let path = entry.path.as_os_str().as_bytes();
        let comps = split_components(path);
        let Some((name, parents)) = comps.split_last() else {
            return Ok(());
        };
        match &entry.kind {
            EntryKind::Whiteout => {
                // Nothing to delete where the parent cannot be resolved.
                if let Ok(parent) = resolve_dir_path(self.root, parents)
                    && let Some(d) = lookup_dir_mut(self.root, &parent)
                {
                    d.children.remove(*name);
                }
                return Ok(());
            }
            EntryKind::Opaque => {
                if let Ok(dir) = resolve_dir_path(self.root, &comps) {
                    let prefix = join(&dir);
                    if let Some(d) = lookup_dir_mut(self.root, &dir) {
                        prune(d, &prefix, &self.created);
                    }
                }
                return Ok(());
            }
            _ => {}
        }
        let parent = resolve_dir_path(self.root, parents).map_err(err)?;
        let mut full = parent.clone();
        full.push(name.to_vec());
        let node = match &entry.kind {
            EntryKind::Dir => Node::Dir(Dir::new(entry.meta.clone())),
            EntryKind::File { size } => Node::File(self.inodes.add(Inode {
                meta: entry.meta.clone(),
                size: *size,
                content: if *size == 0 {
                    Content::Inline(Arc::from(Vec::new()))
                } else {
                    Content::Layer {
                        source: self.source,
                        ordinal,
                    }
                },
            })),
            EntryKind::Symlink { target } => Node::Symlink {
                target: target.as_os_str().as_bytes().to_vec(),
                meta: entry.meta.clone(),
            },
            EntryKind::Hardlink { target } => self.link_target(target.as_os_str().as_bytes())?,
            EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
                if full.first().map(Vec::as_slice) != Some(b"dev".as_slice()) {
                    return Err(format!(
                        "refused: a device node outside /dev (resolved to /{}); images may only carry device nodes in /dev",
                        String::from_utf8_lossy(&join(&full))
                    ));
                }
                Node::Device {
                    block: matches!(entry.kind, EntryKind::BlockDevice { .. }),
                    major: *major,
                    minor: *minor,
                    meta: entry.meta.clone(),
                }
            }
            EntryKind::Fifo => Node::Fifo {
                meta: entry.meta.clone(),
            },
            EntryKind::Whiteout | EntryKind::Opaque => return Ok(()),
        };
        let dir = dir_mut(self.root, &parent, self.epoch).map_err(err)?;
        put(dir, name.to_vec(), node);
        self.created.insert(join(&full));
        Ok(())
    }

    /// The node a hard link entry becomes: the same inode for a regular file, a copy for
    /// the other kinds (which have no content to share).
    fn link_target(&self, target: &[u8]) -> Result<Node, String> {
        let comps = split_components(target);
        let Some((name, parents)) = comps.split_last() else {
            return Err("refused: a hard link to the root directory".into());
        };
        let mut resolved = resolve_dir_path(self.root, parents).map_err(err)?;
        resolved.push(name.to_vec());
        match lookup(self.root, &resolved) {
            None => Err(format!(
                "refused: a hard link to /{}, which does not exist in the image",
                String::from_utf8_lossy(target)
            )),
            Some(Node::Dir(_)) => Err(format!(
                "refused: a hard link to the directory /{}",
                String::from_utf8_lossy(target)
            )),
            Some(n) => Ok(n.clone()),
        }
    }
}

/// Removes everything below `d` that this layer did not write (an opaque directory).
fn prune(d: &mut Dir, prefix: &[u8], created: &HashSet<Vec<u8>>) {
    d.children.retain(|name, node| {
        let mut path = prefix.to_vec();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name);
        if !created.contains(&path) {
            return false;
        }
        if let Node::Dir(sub) = node {
            prune(sub, &path, created);
        }
        true
    });
}

/// LinuxKit's hosts file for every image it unpacks.
pub(crate) const HOSTS: &str = "127.0.0.1       localhost\n::1     localhost ip6-localhost ip6-loopback\nfe00::0 ip6-localnet\nff00::0 ip6-mcastprefix\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n";
/// LinuxKit's resolv.conf for container images.
pub(crate) const RESOLV_CONF: &str = "\n# no resolv.conf configured\n";
/// Where init images' `/etc/resolv.conf` points, so it can be written at run time.
pub(crate) const RESOLV_LINK: &str = "/run/resolvconf/resolv.conf";

/// LinuxKit's `ImageTar` fix-ups, as they end up after unpacking: the leftovers of `docker
/// export` go (`/.dockerenv`, `/Dockerfile`, `/dev/console`, `/etc/hostname`), `/dev`,
/// `/dev/pts`, `/dev/shm`, `/etc`, `/proc` and `/sys` are 0755 root directories, `/etc/hosts`
/// and `/etc/resolv.conf` are LinuxKit's (a symlink to `resolv_link` when given, as for init
/// images), and `/etc/mtab` is a link to `/proc/mounts` unless the image has one.
pub(crate) fn linuxkit_fixups(
    root: &mut Dir,
    inodes: &mut Inodes,
    resolv_link: Option<&str>,
    epoch: i64,
) {
    for path in [
        ".dockerenv",
        "Dockerfile",
        "dev/console",
        "dev/pts",
        "dev/shm",
        "etc/hostname",
    ] {
        let comps: Vec<Vec<u8>> = split_components(path.as_bytes())
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect();
        let Some((name, parents)) = comps.split_last() else {
            continue;
        };
        if let Some(d) = lookup_dir_mut(root, parents) {
            match d.children.get_mut(name) {
                // The entry goes; what was below a directory stays.
                Some(Node::Dir(sub)) => sub.implicit = true,
                Some(_) => {
                    d.children.remove(name);
                }
                None => {}
            }
        }
    }
    let dir_meta = EntryMeta {
        mode: 0o755,
        mtime: epoch,
        ..EntryMeta::default()
    };
    let file = |inodes: &mut Inodes, text: &str| {
        Node::File(inodes.add(Inode {
            meta: EntryMeta {
                mode: 0o644,
                mtime: epoch,
                ..EntryMeta::default()
            },
            size: text.len() as u64,
            content: Content::Inline(Arc::from(text.as_bytes())),
        }))
    };
    let dir = |root: &mut Dir, parents: &[&str], name: &str| {
        let parents: Vec<Vec<u8>> = parents.iter().map(|p| p.as_bytes().to_vec()).collect();
        if let Ok(d) = dir_mut(root, &parents, epoch) {
            put(
                d,
                name.as_bytes().to_vec(),
                Node::Dir(Dir::new(dir_meta.clone())),
            );
        }
    };
    dir(root, &[], "dev");
    dir(root, &["dev"], "pts");
    dir(root, &["dev"], "shm");
    dir(root, &[], "etc");
    let etc = vec![b"etc".to_vec()];
    let hosts = file(inodes, HOSTS);
    let resolv = match resolv_link {
        Some(target) => Node::Symlink {
            target: target.as_bytes().to_vec(),
            meta: EntryMeta {
                mode: 0o644,
                mtime: epoch,
                ..EntryMeta::default()
            },
        },
        None => file(inodes, RESOLV_CONF),
    };
    if let Some(d) = lookup_dir_mut(root, &etc) {
        put(d, b"hosts".to_vec(), hosts);
        match d.children.get_mut(b"mtab".as_slice()) {
            Some(Node::File(id)) => inodes.get_mut(*id).meta.mtime = epoch,
            Some(Node::Symlink { meta, .. })
            | Some(Node::Device { meta, .. })
            | Some(Node::Fifo { meta }) => meta.mtime = epoch,
            Some(Node::Dir(sub)) => sub.meta.mtime = epoch,
            None => {
                d.children.insert(
                    b"mtab".to_vec(),
                    Node::Symlink {
                        target: b"/proc/mounts".to_vec(),
                        meta: EntryMeta {
                            mode: 0o755,
                            mtime: epoch,
                            ..EntryMeta::default()
                        },
                    },
                );
            }
        }
        put(d, b"resolv.conf".to_vec(), resolv);
    }
    dir(root, &[], "proc");
    dir(root, &[], "sys");
}

#[cfg(test)]
mod tests;
