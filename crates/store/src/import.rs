//! A root filesystem (a directory, or a tar that may be gzip/zstd-compressed) as a
//! one-layer OCI image: layer, config (platform, diff id, one history entry, `created` from
//! the epoch), manifest, tag. Same input, same digests; a tar and a directory with the
//! same content give the same image, because tar entries are re-ordered into the order a
//! directory walk produces and hard links are re-pointed at the first path of their set.
//!
//! Reading the environment (SOURCE_DATE_EPOCH) is the caller's job.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use oxkit_spec::{Platform, Reference};

use crate::error::{Error, Result};
use crate::layer::{
    Entry, EntryKind, EntryMeta, LayerInfo, LayerOptions, LayerWriter, XattrPolicy,
};
use crate::oci::media_type::{self, LayerCompression};
use crate::oci::{self, ContainerConfig, Descriptor, History, ImageConfig, ImageManifest};
use crate::store::Store;

/// What `created_by` says in the history entry of an imported image.
pub const IMPORT_CREATED_BY: &str = "oxkit image import";

/// How a root filesystem becomes an image.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    pub platform: Platform,
    /// Creation time and mtime clamp (SOURCE_DATE_EPOCH, or 0).
    pub epoch: i64,
    pub compression: LayerCompression,
    /// Runtime defaults (Cmd, Entrypoint, Env, WorkingDir, ...).
    pub config: ContainerConfig,
    /// Extended attributes taken from a directory source.
    pub xattrs: XattrPolicy,
}

impl ImportOptions {
    /// Gzip, epoch 0, no runtime defaults, file capabilities kept.
    pub fn new(platform: Platform) -> Self {
        Self {
            platform,
            epoch: 0,
            compression: LayerCompression::Gzip,
            config: ContainerConfig::default(),
            xattrs: XattrPolicy::Capabilities,
        }
    }
}

/// An imported image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedImage {
    /// The manifest (as tagged, with its platform).
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layer: LayerInfo,
}

/// Imports `source` (a directory or a tar file) and tags it `reference`.
pub fn import_rootfs(
    store: &Store,
    source: &Path,
    reference: &Reference,
    opts: &ImportOptions,
) -> Result<ImportedImage> {
    let _lease = store.lease()?;
    let meta = std::fs::metadata(source).map_err(Error::io("read", source))?;
    let layer_opts = LayerOptions {
        compression: opts.compression,
        epoch: opts.epoch,
        xattrs: opts.xattrs,
    };
    let mut w = LayerWriter::new(store, &layer_opts)?;
    if meta.is_dir() {
        w.add_tree(source, opts.xattrs)?;
    } else {
        add_sorted_tar(store, source, &mut w)?;
    }
    let layer = w.finish()?;

    let created = oci::rfc3339_utc(opts.epoch);
    let mut config = ImageConfig {
        created: created.clone(),
        config: opts.config.clone(),
        ..Default::default()
    };
    config.set_platform(&opts.platform);
    config.rootfs.diff_ids.push(layer.diff_id.clone());
    config.history.push(History {
        created,
        created_by: IMPORT_CREATED_BY.to_string(),
        ..Default::default()
    });
    let config = store.put_json(media_type::OCI_CONFIG, &config)?;
    let manifest = ImageManifest::new(config.clone(), vec![layer.descriptor.clone()]);
    let manifest = store
        .put_json(media_type::OCI_MANIFEST, &manifest)?
        .with_platform(opts.platform.clone());
    store.tag(reference, manifest.clone())?;
    Ok(ImportedImage {
        manifest,
        config,
        layer,
    })
}

/// One entry of the source tar: what it is and where its content sits.
struct Indexed {
    entry: Entry,
    offset: u64,
}

/// Re-writes a rootfs tar in directory-walk order. The tar is decompressed into a
/// temporary file when needed (seeking is required), indexed (metadata only, later
/// duplicates win), sorted, and copied entry by entry.
fn add_sorted_tar(store: &Store, source: &Path, w: &mut LayerWriter) -> Result<()> {
    let name = source.display().to_string();
    let mut file = File::open(source).map_err(Error::io("open", source))?;
    let mut magic = [0u8; 4];
    let n = file.read(&mut magic).map_err(Error::io("read", source))?;
    file.seek(SeekFrom::Start(0))
        .map_err(Error::io("read", source))?;
    let _spill;
    let mut tar_file = if crate::unpack::detect_compression(&magic[..n]) == LayerCompression::None {
        file
    } else {
        let mut tmp = store.temp_file("rootfs-")?;
        let mut dec = crate::unpack::decompress(&mut file).map_err(|e| Error::Tar {
            what: name.clone(),
            error: e,
        })?;
        std::io::copy(&mut dec, tmp.as_file_mut()).map_err(|e| Error::Tar {
            what: name.clone(),
            error: e,
        })?;
        let f = tmp.reopen().map_err(Error::io("read", tmp.path()))?;
        _spill = tmp;
        f
    };

    let mut by_path: BTreeMap<Vec<Vec<u8>>, Indexed> = BTreeMap::new();
    {
        let mut archive = tar::Archive::new(&mut tar_file);
        let entries = archive.entries().map_err(|e| Error::Tar {
            what: name.clone(),
            error: e,
        })?;
        for item in entries {
            let mut te = item.map_err(|e| Error::Tar {
                what: name.clone(),
                error: e,
            })?;
            let raw = te.path_bytes().into_owned();
            let shown = String::from_utf8_lossy(&raw).into_owned();
            let entry =
                crate::unpack::visit::to_entry(&mut te, &raw).map_err(|reason| Error::Layer {
                    layer: name.clone(),
                    entry: shown.clone(),
                    reason,
                })?;
            let Some(entry) = entry else { continue };
            if matches!(entry.kind, EntryKind::Whiteout | EntryKind::Opaque) {
                return Err(Error::Layer {
                    layer: name.clone(),
                    entry: shown,
                    reason: "a root filesystem cannot contain whiteouts (is this a layer, not a rootfs?)".into(),
                });
            }
            let offset = te.raw_file_position();
            by_path.insert(sort_key(&entry.path), Indexed { entry, offset });
        }
    }
    add_missing_parents(&mut by_path);

    // Hard link sets: each link points (perhaps through other links) at a file; the first
    // member in walk order carries the data, the rest link to it.
    let mut file_of: HashMap<PathBuf, PathBuf> = HashMap::new();
    for ix in by_path.values() {
        if let EntryKind::Hardlink { target } = &ix.entry.kind {
            let mut t = target.clone();
            for _ in 0..64 {
                match by_path.get(&sort_key(&t)).map(|i| &i.entry.kind) {
                    Some(EntryKind::Hardlink { target }) => t = target.clone(),
                    _ => break,
                }
            }
            file_of.insert(ix.entry.path.clone(), t);
        }
    }
    let roots: HashSet<&PathBuf> = file_of.values().collect();
    let mut first_of: HashMap<PathBuf, PathBuf> = HashMap::new();
    for ix in by_path.values() {
        let path = &ix.entry.path;
        if !file_of.contains_key(path) && !roots.contains(path) {
            copy_entry(&mut tar_file, &ix.entry, ix.offset, w, &name)?;
            continue;
        }
        let root = file_of.get(path).unwrap_or(path);
        let Some(r) = by_path
            .get(&sort_key(root))
            .filter(|r| matches!(r.entry.kind, EntryKind::File { .. }))
        else {
            return Err(Error::Layer {
                layer: name,
                entry: path.display().to_string(),
                reason: format!(
                    "hard link to {}, which is not a regular file in the tar",
                    root.display()
                ),
            });
        };
        if let Some(first) = first_of.get(root) {
            w.add(
                &Entry::hardlink(path.clone(), first.clone(), r.entry.meta.clone()),
                None,
            )?;
        } else {
            first_of.insert(root.clone(), path.clone());
            let e = Entry {
                path: path.clone(),
                kind: r.entry.kind.clone(),
                meta: r.entry.meta.clone(),
            };
            copy_entry(&mut tar_file, &e, r.offset, w, &name)?;
        }
    }
    Ok(())
}

fn copy_entry(
    tar_file: &mut File,
    e: &Entry,
    offset: u64,
    w: &mut LayerWriter,
    name: &str,
) -> Result<()> {
    if let EntryKind::File { size } = e.kind
        && size > 0
    {
        tar_file
            .seek(SeekFrom::Start(offset))
            .map_err(Error::io("read", name))?;
        let mut data = (&mut *tar_file).take(size);
        return w.add(e, Some(&mut data));
    }
    w.add(e, None)
}

/// Walk order: component by component, each compared by bytes.
fn sort_key(p: &Path) -> Vec<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    p.iter().map(|c| c.as_bytes().to_vec()).collect()
}

/// Directories a tar implies but does not list: root-owned 0755 at time 0.
fn add_missing_parents(by_path: &mut BTreeMap<Vec<Vec<u8>>, Indexed>) {
    let mut missing = Vec::new();
    for key in by_path.keys() {
        for depth in 1..key.len() {
            let parent = key[..depth].to_vec();
            if !by_path.contains_key(&parent) {
                missing.push(parent);
            }
        }
    }
    for key in missing {
        let path: PathBuf = key
            .iter()
            .map(|c| {
                use std::os::unix::ffi::OsStrExt;
                std::ffi::OsStr::from_bytes(c).to_os_string()
            })
            .collect();
        by_path.entry(key).or_insert(Indexed {
            entry: Entry::dir(path, EntryMeta::mode(0o755)),
            offset: 0,
        });
    }
}

#[cfg(test)]
mod tests;
