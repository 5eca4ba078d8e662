//! LinuxKit's file-system layout, built as a metadata tree (the first of the two passes over
//! the images): in LinuxKit's order, each later step replacing what earlier ones put at the
//! same path, as unpacking LinuxKit's output tar would.
//!
//! 1. `kernel`: `/boot/kernel` (the image's `kernel`, or `binary`), `/boot/cmdline`,
//!    `/boot/ucode.cpio` (when `ucode` names a file of the image), and the contents of the
//!    image's `kernel.tar` (or `tar`; `none` or empty for none) at `/`.
//! 2. `init` images at `/`, each fixed up as LinuxKit does (with `/etc/resolv.conf` a link
//!    to `/run/resolvconf/resolv.conf`); their APK databases are concatenated when more than
//!    one image has one.
//! 3. `volumes`: `/containers/volumes/NAME/{lower,tmp,merged}`, the image (if any) in `lower`:
//!    unpacked, or for `format: oci` as an OCI image layout (`oci-layout`, `index.json`,
//!    `blobs/sha256/...`) of the platforms the volume lists.
//! 4. `onboot`, `onshutdown` (`/containers/SECTION/NNN-NAME`) and `services`
//!    (`/containers/services/NAME`) bundles: `config.json`, `runtime.json`, and the image in
//!    `rootfs/` for read-only containers, in `lower/` with empty `tmp/` and `rootfs/` (the
//!    overlay's mount point, set up by init from `runtime.json`) for writable ones. An image
//!    already unpacked for an earlier container is not unpacked again: the bundle mounts it.
//! 5. `files`.
//!
//! Content stays where it is (layer entries, host files, store blobs); see `emit` for the
//! second pass.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;

use oxkit_spec::Digest;
use oxkit_spec::image_yaml::{ContainerConfig, ImageYaml, VolumeEntry, VolumeFormat};
use oxkit_store::Store;
use oxkit_store::layer::{Entry, EntryMeta, normalize_path};
use oxkit_store::oci::{Descriptor, ImageConfig};

use crate::config::Config;
use crate::config_to_oci::{IdMap, LABEL, config_to_oci, id_numeric, parse_label};
use crate::error::{Error, Result};
use crate::flatten::{Applier, FileHook, LayerRef, RESOLV_LINK, flatten, linuxkit_fixups};
use crate::images::{ImageUse, ResolvedImages, read_image};
use crate::ocispec::{go_json_indent, go_json_indent_with};
use crate::tree::{
    Content, Dir, Inode, Inodes, Node, SourceId, dir_mut, lookup, merge, put, split_components,
};

/// LinuxKit's `oci-layout` file, byte for byte (its Go source's indentation included).
const OCI_LAYOUT_FILE: &str = "{\n\t\t\"imageLayoutVersion\": \"1.0.0\"\n\t}";

/// A volume layout's `index.json` as LinuxKit writes it: go-containerregistry's
/// `v1.IndexManifest` and `v1.Descriptor` field order, `json.MarshalIndent` with three spaces.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct LayoutIndex {
    schema_version: u32,
    media_type: &'static str,
    manifests: Vec<LayoutEntry>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct LayoutEntry {
    media_type: String,
    size: u64,
    digest: String,
    annotations: BTreeMap<&'static str, String>,
}

/// The largest APK database read into memory to be merged.
const MAX_APK_DB: u64 = 64 << 20;
const APK_DB: &str = "lib/apk/db/installed";

/// Where a [`SourceId`]'s entries come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// A layer blob in the store.
    Layer { descriptor: Descriptor },
    /// A tar file inside a layer (the kernel's `kernel.tar`): the `ordinal`-th entry of
    /// `parent`.
    Nested { parent: SourceId, ordinal: u64 },
}

/// The assembled tree and what its content references point at.
#[derive(Debug)]
pub struct Assembly {
    pub(crate) root: Dir,
    pub(crate) inodes: Inodes,
    pub(crate) sources: Vec<Source>,
    pub(crate) epoch: i64,
}

/// Settings that change what is assembled.
#[derive(Clone, Debug, Default)]
pub struct AssembleOptions {
    /// Modification time of generated entries, and the clamp for all (SOURCE_DATE_EPOCH).
    pub epoch: i64,
    /// The home directory, for `files` sources written `~/...`.
    pub home: Option<PathBuf>,
}

/// Builds the tree of `config` from the resolved images.
pub fn assemble(
    store: &Store,
    config: &Config,
    images: &ResolvedImages,
    opts: &AssembleOptions,
) -> Result<Assembly> {
    let mut b = Builder {
        store,
        config,
        images,
        epoch: opts.epoch.max(0),
        home: opts.home.clone(),
        root: Dir::new(EntryMeta::mode(0o755)),
        inodes: Inodes::default(),
        sources: Vec::new(),
        layer_ids: HashMap::new(),
    };
    let y = &config.yaml;
    let ids = id_map(y);
    b.kernel()?;
    b.init()?;
    for (i, v) in y.volumes.iter().enumerate() {
        b.volume(i, v)?;
    }
    b.containers(&ids)?;
    b.files(&ids)?;
    Ok(Assembly {
        root: b.root,
        inodes: b.inodes,
        sources: b.sources,
        epoch: b.epoch,
    })
}

/// Ids by container name: 100, 101, ... over onboot, onshutdown and services (a repeated name
/// keeps its last id, as in LinuxKit's map).
pub(crate) fn id_map(y: &ImageYaml) -> IdMap {
    let mut ids = IdMap::new();
    for (n, e) in y
        .onboot
        .iter()
        .chain(&y.onshutdown)
        .chain(&y.services)
        .enumerate()
    {
        ids.insert(e.name.clone(), 100 + n as u32);
    }
    ids
}

struct Builder<'a> {
    store: &'a Store,
    config: &'a Config,
    images: &'a ResolvedImages,
    epoch: i64,
    home: Option<PathBuf>,
    root: Dir,
    inodes: Inodes,
    sources: Vec<Source>,
    layer_ids: HashMap<Digest, SourceId>,
}

fn comps_of(path: &str) -> Vec<Vec<u8>> {
    split_components(path.as_bytes())
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect()
}

/// A path from the YAML (`kernel.binary`, a `files` path) as tree components; `..` refused.
fn yaml_path(path: &str) -> std::result::Result<Vec<Vec<u8>>, String> {
    let p = normalize_path(path.as_bytes()).map_err(|e| format!("path {path:?}: {}", e.0))?;
    let c = comps_of(&String::from_utf8_lossy(p.as_os_str().as_bytes()));
    if c.is_empty() {
        return Err(format!("path {path:?} names the root directory"));
    }
    Ok(c)
}

impl<'a> Builder<'a> {
    fn meta(&self, mode: u32) -> EntryMeta {
        EntryMeta {
            mode,
            mtime: self.epoch,
            ..EntryMeta::default()
        }
    }

    fn inline(&mut self, mode: u32, bytes: Vec<u8>) -> Node {
        let meta = self.meta(mode);
        Node::File(self.inodes.add(Inode {
            meta,
            size: bytes.len() as u64,
            content: Content::Inline(Arc::from(bytes)),
        }))
    }

    fn use_of(&self, what: &str) -> Option<&'a ImageUse> {
        self.images.uses.iter().find(|u| u.what == what)
    }

    /// LinuxKit's `tarPrefix`: every directory of `path` as an explicit 0755 directory.
    fn mkdirs(&mut self, path: &str) {
        let comps = comps_of(path);
        for i in 0..comps.len() {
            let meta = self.meta(0o755);
            if let Ok(d) = dir_mut(&mut self.root, &comps[..i], self.epoch) {
                put(d, comps[i].clone(), Node::Dir(Dir::new(meta)));
            }
        }
    }

    /// Puts `node` at `path` (directories of `path` created if missing).
    fn put_at(&mut self, path: &str, node: Node) {
        let comps = comps_of(path);
        let Some((name, parents)) = comps.split_last() else {
            return;
        };
        // Paths built here are under directories this build just created.
        if let Ok(d) = dir_mut(&mut self.root, parents, self.epoch) {
            put(d, name.clone(), node);
        }
    }

    /// Merges an image's tree at `path` (the root when empty).
    fn graft(&mut self, path: &str, tree: Dir) {
        let comps = comps_of(path);
        if let Ok(d) = dir_mut(&mut self.root, &comps, self.epoch) {
            merge(
                d,
                Dir {
                    implicit: true,
                    ..tree
                },
            );
        }
    }

    fn source_of(&mut self, d: &Descriptor) -> SourceId {
        if let Some(id) = self.layer_ids.get(&d.digest) {
            return *id;
        }
        let id = self.sources.len() as SourceId;
        self.sources.push(Source::Layer {
            descriptor: d.clone(),
        });
        self.layer_ids.insert(d.digest.clone(), id);
        id
    }

    /// Flattens the image of `u`; returns its tree and config.
    fn flatten(&mut self, u: &ImageUse, hook: &mut FileHook<'_>) -> Result<(Dir, ImageConfig)> {
        let image_err = |source: oxkit_store::Error| Error::Image {
            loc: u.loc.clone(),
            what: u.what.clone(),
            reference: u.reference.to_string(),
            cause: Box::new(source),
        };
        let img = self.images.get(&u.reference).ok_or_else(|| Error::Entry {
            loc: u.loc.clone(),
            what: u.what.clone(),
            message: format!("image {} was not resolved", u.reference),
        })?;
        let (manifest, config) = read_image(self.store, img).map_err(image_err)?;
        let ids: Vec<SourceId> = manifest.layers.iter().map(|l| self.source_of(l)).collect();
        let refs: Vec<LayerRef<'_>> = manifest
            .layers
            .iter()
            .zip(ids)
            .map(|(descriptor, source)| LayerRef { descriptor, source })
            .collect();
        let tree =
            flatten(self.store, &refs, &mut self.inodes, self.epoch, hook).map_err(image_err)?;
        Ok((tree, config))
    }

    fn kernel(&mut self) -> Result<()> {
        let config = self.config;
        let k = &config.yaml.kernel;
        if k.image.is_none() {
            return Ok(());
        }
        let Some(u) = self.use_of("kernel") else {
            return Ok(());
        };
        let entry_err = |message: String| Error::Entry {
            loc: u.loc.clone(),
            what: "kernel".into(),
            message,
        };
        let binary = if k.binary.is_empty() {
            "kernel"
        } else {
            k.binary.as_str()
        };
        let tar = match k.tar.as_deref() {
            None => Some("kernel.tar"),
            Some("" | "none") => None,
            Some(t) => Some(t),
        };
        let ucode = k.ucode.as_deref().filter(|u| !u.is_empty());
        let binary_path = yaml_path(binary).map_err(|m| entry_err(format!("binary: {m}")))?;
        let tar_path = tar
            .map(yaml_path)
            .transpose()
            .map_err(|m| entry_err(format!("tar: {m}")))?;
        let ucode_path = ucode
            .map(yaml_path)
            .transpose()
            .map_err(|m| entry_err(format!("ucode: {m}")))?;

        // Each kernel.tar met while streaming the image: its entries, by where it was.
        let mut candidates: HashMap<(SourceId, u64), Vec<(Entry, u64)>> = HashMap::new();
        let tar_bytes = tar_path.as_ref().map(|p| p.join(&b'/'));
        let mut hook = |src: SourceId, ord: u64, e: &Entry, data: &mut dyn Read| {
            if tar_bytes.as_deref() == Some(e.path.as_os_str().as_bytes()) {
                let mut list = Vec::new();
                let mut n = 0u64;
                let name = format!("{} (file {})", "kernel tarball", e.path.display());
                if !matches!(e.kind, oxkit_store::layer::EntryKind::File { size: 0 }) {
                    oxkit_store::unpack::visit_layer(data, &name, |inner, _| {
                        list.push((inner.clone(), n));
                        n += 1;
                        Ok(())
                    })?;
                }
                candidates.insert((src, ord), list);
            }
            Ok(())
        };
        let (tree, _) = self.flatten(u, &mut hook)?;
        let digest = self
            .images
            .get(&u.reference)
            .map(|i| i.manifest.digest.to_string())
            .unwrap_or_default();

        let find_file = |path: &[Vec<u8>], name: &str, fix: &str| -> Result<(u32, Inode)> {
            match lookup(&tree, path) {
                Some(Node::File(id)) => Ok((*id, self.inodes.get(*id).clone())),
                Some(other) => Err(entry_err(format!(
                    "{name:?} in image {} ({digest}) is {}, not a regular file",
                    u.reference,
                    other.kind_name()
                ))),
                None => Err(entry_err(format!(
                    "image {} ({digest}) has no file {name:?}; {fix}",
                    u.reference
                ))),
            }
        };
        let (_, kernel) = find_file(
            &binary_path,
            binary,
            "set kernel.binary to the kernel's path in the image",
        )?;
        let ucode_file = match (&ucode_path, ucode) {
            // LinuxKit does not insist on the microcode being there.
            (Some(p), Some(name)) => match lookup(&tree, p) {
                Some(_) => Some(find_file(p, name, "")?.1),
                None => None,
            },
            _ => None,
        };
        if let (Some(p), Some(name)) = (&tar_path, tar) {
            let (_, inode) = find_file(
                p,
                name,
                "set kernel.tar to its path in the image, or to none if the image has no modules",
            )?;
            let entries = match &inode.content {
                Content::Layer { source, ordinal } => candidates
                    .remove(&(*source, *ordinal))
                    .ok_or_else(|| entry_err(format!("{name:?} was not read")))?,
                _ => Vec::new(),
            };
            let nested = match inode.content {
                Content::Layer { source, ordinal } => {
                    let id = self.sources.len() as SourceId;
                    self.sources.push(Source::Nested {
                        parent: source,
                        ordinal,
                    });
                    id
                }
                _ => SourceId::MAX,
            };
            let mut modules = Dir::new(EntryMeta::mode(0o755));
            {
                let mut applier = Applier {
                    root: &mut modules,
                    inodes: &mut self.inodes,
                    created: HashSet::new(),
                    source: nested,
                    epoch: self.epoch,
                };
                for (e, ord) in &entries {
                    applier.apply(e, *ord).map_err(|reason| Error::Image {
                        loc: u.loc.clone(),
                        what: "kernel".into(),
                        reference: u.reference.to_string(),
                        cause: Box::new(oxkit_store::Error::Layer {
                            layer: format!("{name} in {digest}"),
                            entry: e.path.display().to_string(),
                            reason,
                        }),
                    })?;
                }
            }
            self.graft("", modules);
        }
        self.mkdirs("boot");
        let cmdline = k.cmdline.clone().into_bytes();
        let cmdline = self.inline(0o644, cmdline);
        self.put_at("boot/cmdline", cmdline);
        let boot_file = |b: &mut Self, i: Inode| {
            let meta = EntryMeta {
                mode: i.meta.mode,
                mtime: b.epoch,
                ..EntryMeta::default()
            };
            Node::File(b.inodes.add(Inode { meta, ..i }))
        };
        let kernel = boot_file(self, kernel);
        self.put_at("boot/kernel", kernel);
        if let Some(uc) = ucode_file {
            let uc = boot_file(self, uc);
            self.put_at("boot/ucode.cpio", uc);
        }
        Ok(())
    }

    fn init(&mut self) -> Result<()> {
        let mut dbs: Vec<Vec<u8>> = Vec::new();
        for i in 0..self.config.yaml.init.len() {
            let Some(u) = self.use_of(&format!("init[{i}]")) else {
                continue;
            };
            let mut seen: HashMap<(SourceId, u64), Vec<u8>> = HashMap::new();
            let mut hook = |src: SourceId, ord: u64, e: &Entry, data: &mut dyn Read| {
                if e.path.as_os_str().as_bytes() == APK_DB.as_bytes() {
                    let mut buf = Vec::new();
                    data.take(MAX_APK_DB).read_to_end(&mut buf).map_err(|err| {
                        oxkit_store::Error::Layer {
                            layer: format!("source {src}"),
                            entry: APK_DB.into(),
                            reason: err.to_string(),
                        }
                    })?;
                    seen.insert((src, ord), buf);
                }
                Ok(())
            };
            let (mut tree, _) = self.flatten(u, &mut hook)?;
            if let Some(Node::File(id)) = lookup(&tree, &comps_of(APK_DB)) {
                match &self.inodes.get(*id).content {
                    Content::Layer { source, ordinal } => {
                        if let Some(db) = seen.remove(&(*source, *ordinal)) {
                            dbs.push(db);
                        }
                    }
                    Content::Inline(b) => dbs.push(b.to_vec()),
                    Content::Host(_) | Content::Blob(_) => {}
                }
            }
            linuxkit_fixups(&mut tree, &mut self.inodes, Some(RESOLV_LINK), self.epoch);
            self.graft("", tree);
        }
        if dbs.len() > 1 {
            // The union of the databases, so apk sees every init image's packages.
            let mut all = Vec::new();
            for db in dbs {
                all.extend_from_slice(&db);
                all.extend_from_slice(b"\n\n");
            }
            let node = self.inline(0o644, all);
            self.put_at(APK_DB, node);
        }
        Ok(())
    }

    fn volume(&mut self, i: usize, v: &VolumeEntry) -> Result<()> {
        let base = format!("containers/volumes/{}", v.name);
        self.mkdirs(&format!("{base}/lower"));
        if v.image.is_some() {
            let what = format!("volumes[{i}] {:?}", v.name);
            let Some(u) = self.use_of(&what) else {
                return Ok(());
            };
            if v.format == Some(VolumeFormat::Oci) {
                self.oci_layout(&format!("{base}/lower"), u)?;
                self.mkdirs(&format!("{base}/tmp"));
                self.mkdirs(&format!("{base}/merged"));
                return Ok(());
            }
            let (mut tree, _) = self.flatten(u, &mut |_, _, _, _| Ok(()))?;
            linuxkit_fixups(&mut tree, &mut self.inodes, Some(RESOLV_LINK), self.epoch);
            self.graft(&format!("{base}/lower"), tree);
        }
        self.mkdirs(&format!("{base}/tmp"));
        self.mkdirs(&format!("{base}/merged"));
        Ok(())
    }

    /// LinuxKit's `ImageOCITar`: the image of a `format: oci` volume as an OCI image layout
    /// at `dir`. `index.json` names one image, with the reference as its
    /// `org.opencontainers.image.ref.name`: the store's index as it is when every platform is
    /// wanted, else a new index over the chosen platforms' manifests (LinuxKit keeps the whole
    /// index there, naming manifests it leaves out); a single-platform image is named itself.
    /// Blobs stay in the store until the output is written.
    fn oci_layout(&mut self, dir: &str, u: &ImageUse) -> Result<()> {
        let image_err = |source: oxkit_store::Error| Error::Image {
            loc: u.loc.clone(),
            what: u.what.clone(),
            reference: u.reference.to_string(),
            cause: Box::new(source),
        };
        let images = self.images;
        let l = images.layout(&u.what).ok_or_else(|| Error::Entry {
            loc: u.loc.clone(),
            what: u.what.clone(),
            message: format!("image {} was not resolved", u.reference),
        })?;
        let store = self.store;
        // Blobs by digest (each once): their size, and the bytes of the one made here.
        let mut blobs: BTreeMap<Digest, (u64, Option<Vec<u8>>)> = BTreeMap::new();
        let add_image = |d: &Descriptor,
                         blobs: &mut BTreeMap<Digest, (u64, Option<Vec<u8>>)>|
         -> oxkit_store::Result<()> {
            for b in store.image_blobs(d)? {
                if blobs.contains_key(&b.digest) {
                    continue;
                }
                let size = store.blob_size(&b.digest)?.ok_or_else(|| {
                    oxkit_store::Error::BlobNotFound {
                        digest: b.digest.clone(),
                        store: store.root().to_path_buf(),
                    }
                })?;
                blobs.insert(b.digest, (size, None));
            }
            Ok(())
        };
        let (media_type, digest) = if l.chosen.is_empty() {
            add_image(&l.top, &mut blobs).map_err(image_err)?;
            (l.top.media_type.clone(), l.top.digest.clone())
        } else {
            let mut index = store.read_index(&l.top.digest).map_err(image_err)?;
            index
                .manifests
                .retain(|c| l.chosen.iter().any(|k| k.digest == c.digest));
            // Another image's subject is not this new index's.
            index.subject = None;
            let bytes = oxkit_store::oci::to_canonical_json(&index).map_err(image_err)?;
            let digest = Digest::sha256(&bytes);
            for c in &l.chosen {
                add_image(c, &mut blobs).map_err(image_err)?;
            }
            blobs.insert(digest.clone(), (bytes.len() as u64, Some(bytes)));
            (index.descriptor_media_type().to_string(), digest)
        };
        let size = blobs.get(&digest).map_or(0, |b| b.0);
        let index_json = go_json_indent_with(
            &LayoutIndex {
                schema_version: 2,
                media_type: oxkit_store::oci::media_type::OCI_INDEX,
                manifests: vec![LayoutEntry {
                    media_type,
                    size,
                    digest: digest.to_string(),
                    annotations: BTreeMap::from([(
                        oxkit_store::oci::ANNOTATION_REF_NAME,
                        u.reference.canonical(),
                    )]),
                }],
            },
            b"   ",
        )
        .map_err(|e| Error::Entry {
            loc: u.loc.clone(),
            what: u.what.clone(),
            message: format!("cannot render index.json: {e}"),
        })?;

        let node = self.inline(0o644, OCI_LAYOUT_FILE.as_bytes().to_vec());
        self.put_at(&format!("{dir}/oci-layout"), node);
        self.mkdirs(&format!("{dir}/blobs"));
        for (d, (size, bytes)) in blobs {
            let algo_dir = format!("{dir}/blobs/{}", d.algorithm());
            self.mkdirs(&algo_dir);
            let path = format!("{algo_dir}/{}", d.hex());
            let node = match bytes {
                Some(b) => self.inline(0o644, b),
                None => {
                    let meta = self.meta(0o644);
                    Node::File(self.inodes.add(Inode {
                        meta,
                        size,
                        content: Content::Blob(d),
                    }))
                }
            };
            self.put_at(&path, node);
        }
        let node = self.inline(0o644, index_json);
        self.put_at(&format!("{dir}/index.json"), node);
        Ok(())
    }

    fn containers(&mut self, ids: &IdMap) -> Result<()> {
        let config = self.config;
        let y = &config.yaml;
        // The first bundle root each image was unpacked to.
        let mut unpacked: BTreeMap<String, String> = BTreeMap::new();
        for (section, entries) in [
            ("onboot", &y.onboot),
            ("onshutdown", &y.onshutdown),
            ("services", &y.services),
        ] {
            for (i, e) in entries.iter().enumerate() {
                let what = format!("{section}[{i}] {:?}", e.name);
                let prefix = if section == "services" {
                    format!("containers/services/{}", e.name)
                } else {
                    format!("containers/{section}/{i:03}-{}", e.name)
                };
                let Some(u) = self.use_of(&what) else {
                    continue;
                };
                let entry_err = |message: String| Error::Entry {
                    loc: e.loc.clone(),
                    what: what.clone(),
                    message,
                };
                let img = self
                    .images
                    .get(&u.reference)
                    .ok_or_else(|| entry_err(format!("image {} was not resolved", u.reference)))?;
                let (_, image_config) =
                    read_image(self.store, img).map_err(|source| Error::Image {
                        loc: u.loc.clone(),
                        what: what.clone(),
                        reference: u.reference.to_string(),
                        cause: Box::new(source),
                    })?;
                let yaml_cfg = with_volume_paths(&e.config, &y.volumes).map_err(entry_err)?;
                let label = match image_config.config.labels.get(LABEL) {
                    Some(text) if !text.is_empty() => {
                        parse_label(text, &u.reference.to_string()).map_err(entry_err)?
                    }
                    _ => ContainerConfig::default(),
                };
                let bundle = config_to_oci(&yaml_cfg, &image_config.config, &label, ids)
                    .map_err(entry_err)?;
                let readonly = bundle.spec.root.readonly;
                let own_root = format!("{prefix}/{}", if readonly { "rootfs" } else { "lower" });
                let key = u.reference.canonical();
                let elsewhere = unpacked.get(&key).cloned();
                let root = match &elsewhere {
                    None => {
                        self.mkdirs(&own_root);
                        let (mut tree, _) = self.flatten(u, &mut |_, _, _, _| Ok(()))?;
                        linuxkit_fixups(&mut tree, &mut self.inodes, None, self.epoch);
                        self.graft(&own_root, tree);
                        unpacked.insert(key, own_root.clone());
                        own_root
                    }
                    Some(r) => {
                        self.mkdirs(&prefix);
                        r.clone()
                    }
                };
                let json = go_json_indent(&bundle.spec)
                    .map_err(|e| entry_err(format!("cannot render config.json: {e}")))?;
                let node = self.inline(0o644, json);
                self.put_at(&format!("{prefix}/config.json"), node);
                let rootfs = format!("/{prefix}/rootfs");
                let mut mounts = if readonly {
                    if elsewhere.is_some() {
                        self.mkdirs(&format!("{prefix}/rootfs"));
                    }
                    // Bind the image (from here or another bundle) onto rootfs: runc wants
                    // the root to be a mount point.
                    vec![mount(&rootfs, "", &format!("/{root}"), &["bind"])]
                } else {
                    self.mkdirs(&format!("{prefix}/tmp"));
                    self.mkdirs(&format!("{prefix}/rootfs"));
                    let tmp = format!("/{prefix}/tmp");
                    vec![
                        mount(&tmp, "tmpfs", "tmpfs", &[]),
                        // Private: nothing else should see the overlay's upper layers.
                        mount(&tmp, "", "", &["remount", "private"]),
                        mount(
                            &rootfs,
                            "overlay",
                            "overlay",
                            &[
                                &format!("lowerdir=/{root}"),
                                &format!("upperdir={tmp}/upper"),
                                &format!("workdir={tmp}/work"),
                            ],
                        ),
                    ]
                };
                let mut runtime = bundle.runtime;
                mounts.append(&mut runtime.mounts);
                runtime.mounts = mounts;
                let json = go_json_indent(&runtime)
                    .map_err(|e| entry_err(format!("cannot render runtime.json: {e}")))?;
                let node = self.inline(0o644, json);
                self.put_at(&format!("{prefix}/runtime.json"), node);
            }
        }
        Ok(())
    }

    fn files(&mut self, ids: &IdMap) -> Result<()> {
        // Leading directories LinuxKit has already written for earlier files entries.
        let mut added: HashSet<Vec<Vec<u8>>> = HashSet::new();
        let config = self.config;
        for (n, f) in config.yaml.files.iter().enumerate() {
            let what = format!("files[{n}] {:?}", f.path);
            let err = |message: String| Error::Entry {
                loc: f.loc.clone(),
                what: what.clone(),
                message,
            };
            let comps = yaml_path(&f.path).map_err(err)?;
            let mut mode = if f.directory { 0o700 } else { 0o600 };
            if !f.mode.is_empty() {
                mode = u32::from_str_radix(f.mode.trim_start_matches('+'), 8).map_err(|_| {
                    err(format!("cannot parse mode {:?} as an octal value", f.mode))
                })?;
            }
            // Directories on the way get the file's mode plus search bits where it can read.
            let mut dir_mode = mode;
            for (rw, x) in [(0o700, 0o100), (0o070, 0o010), (0o007, 0o001)] {
                if dir_mode & rw != 0 {
                    dir_mode |= x;
                }
            }
            let uid = id_numeric(f.uid.as_ref(), ids).map_err(err)?;
            let gid = id_numeric(f.gid.as_ref(), ids).map_err(err)?;
            let meta = |mode: u32, epoch: i64| EntryMeta {
                mode,
                uid: u64::from(uid),
                gid: u64::from(gid),
                mtime: epoch,
                xattrs: Default::default(),
            };
            let node = if f.directory {
                Node::Dir(Dir::new(meta(mode, self.epoch)))
            } else if !f.symlink.is_empty() {
                Node::Symlink {
                    target: f.symlink.as_bytes().to_vec(),
                    meta: meta(mode, self.epoch),
                }
            } else if let Some(c) = &f.contents {
                Node::File(self.inodes.add(Inode {
                    meta: meta(mode, self.epoch),
                    size: c.len() as u64,
                    content: Content::Inline(Arc::from(c.as_bytes())),
                }))
            } else if !f.source.is_empty() {
                let path = self
                    .config
                    .resolve_path(&f.loc, &f.source, self.home.as_deref());
                let md = match std::fs::metadata(&path) {
                    Ok(md) => md,
                    // An optional source that cannot be read is left out entirely.
                    Err(_) if f.optional => continue,
                    Err(e) => {
                        return Err(err(format!("cannot read source {}: {e}", path.display())));
                    }
                };
                if !md.is_file() {
                    return Err(err(format!(
                        "source {} is not a regular file",
                        path.display()
                    )));
                }
                Node::File(self.inodes.add(Inode {
                    meta: meta(mode, self.epoch),
                    size: md.len(),
                    content: Content::Host(path),
                }))
            } else {
                let text = metadata(&self.config.yaml, &f.metadata).map_err(err)?;
                Node::File(self.inodes.add(Inode {
                    meta: meta(mode, self.epoch),
                    size: text.len() as u64,
                    content: Content::Inline(Arc::from(text)),
                }))
            };
            let Some((name, parents)) = comps.split_last() else {
                continue;
            };
            for i in 1..=parents.len() {
                let dir = parents[..i].to_vec();
                if added.insert(dir.clone()) {
                    let d = dir_mut(&mut self.root, &parents[..i - 1], self.epoch)
                        .map_err(|e| err(e.to_string()))?;
                    put(
                        d,
                        dir[i - 1].clone(),
                        Node::Dir(Dir::new(meta(dir_mode, self.epoch))),
                    );
                }
            }
            added.insert(comps.clone());
            let d = dir_mut(&mut self.root, parents, self.epoch).map_err(|e| err(e.to_string()))?;
            put(d, name.clone(), node);
        }
        Ok(())
    }
}

fn mount(dest: &str, kind: &str, source: &str, options: &[&str]) -> oxkit_spec::image_yaml::Mount {
    oxkit_spec::image_yaml::Mount {
        destination: dest.into(),
        kind: kind.into(),
        source: source.into(),
        options: options.iter().map(|o| (*o).to_string()).collect(),
        uid_mappings: Vec::new(),
        gid_mappings: Vec::new(),
    }
}

/// The configuration itself, for `files` entries with `metadata:`; images are written as
/// fully qualified references, as LinuxKit writes them.
fn metadata(y: &ImageYaml, kind: &str) -> std::result::Result<Vec<u8>, String> {
    let mut y = y.clone();
    for image in y
        .kernel
        .image
        .iter_mut()
        .chain(&mut y.init)
        .chain(y.onboot.iter_mut().map(|e| &mut e.image))
        .chain(y.onshutdown.iter_mut().map(|e| &mut e.image))
        .chain(y.services.iter_mut().map(|e| &mut e.image))
    {
        if let Ok(r) = oxkit_spec::Reference::parse(&image.text) {
            image.text = r.canonical();
        }
    }
    match kind {
        "yaml" => Ok(y.to_yaml_string().into_bytes()),
        "json" => go_json_indent(&y).map_err(|e| format!("cannot render the metadata: {e}")),
        other => Err(format!(
            "unsupported metadata {other:?}; expected yaml or json"
        )),
    }
}

/// LinuxKit's `updateMountsAndBindsFromVolumes`: a bind or bind mount whose source is not an
/// absolute path names a volume, which becomes `/containers/volumes/NAME/merged`; a read-only
/// volume must be bound read-only. (LinuxKit forgets to store the rewritten `mounts`; oxkit
/// rewrites them too.)
fn with_volume_paths(
    cfg: &ContainerConfig,
    volumes: &[VolumeEntry],
) -> std::result::Result<ContainerConfig, String> {
    let find = |name: &str| {
        volumes
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| format!("volume {name:?} is not defined in volumes"))
    };
    let merged = |v: &VolumeEntry| format!("/containers/volumes/{}/merged", v.name);
    let mut out = cfg.clone();
    if let Some(mounts) = &mut out.mounts {
        for m in mounts.iter_mut() {
            if m.kind != "bind" || m.source.starts_with('/') {
                continue;
            }
            let v = find(&m.source)?;
            if v.readonly {
                let ro = m
                    .options
                    .iter()
                    .find(|o| *o == "ro" || *o == "rw")
                    .is_some_and(|o| o == "ro");
                if !ro {
                    return Err(format!(
                        "volume {:?} is read-only, but the mount on {} is read-write; add the ro option",
                        v.name, m.destination
                    ));
                }
            }
            m.source = merged(v);
        }
    }
    for binds in [&mut out.binds, &mut out.binds_add].into_iter().flatten() {
        for b in binds.iter_mut() {
            let mut parts: Vec<String> = b.split(':').map(str::to_string).collect();
            if parts[0].starts_with('/') {
                continue;
            }
            let v = find(&parts[0])?;
            if v.readonly && parts.get(2).map(String::as_str) != Some("ro") {
                return Err(format!(
                    "volume {:?} is read-only, but {b:?} binds it read-write; add :ro",
                    v.name
                ));
            }
            parts[0] = merged(v);
            *b = parts.join(":");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
