//! OCI archives: an OCI image layout in a tar (`oci-archive:FILE` for skopeo), and the same
//! for one platform with Docker's `manifest.json` beside it (`docker load`). Export
//! writes the images' blobs, an `index.json` naming them and `oci-layout`, deterministically
//! (sorted, mtime 0, root-owned). Import verifies every blob, checks that every named image
//! is complete, and only then moves the blobs into the store and tags the images in one
//! `index.json` update: a truncated or corrupt archive leaves the store as it was.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use oxkit_spec::{Digest, Platform, Reference};

use crate::error::{Error, Result};
use crate::layer::{Entry, EntryMeta, TarWriter, normalize_path};
use crate::oci::{
    self, ANNOTATION_REF_NAME, Descriptor, DocumentKind, ImageIndex, ImageManifest, media_type,
};
use crate::store::Store;
use crate::store::refs::ref_key;

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    /// The archive's `index.json` entries (with their names).
    pub images: Vec<Descriptor>,
    pub blobs: usize,
    /// Bytes of blob content (not of the tar).
    pub bytes: u64,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// The references tagged, with what they name.
    pub tagged: Vec<(Reference, Descriptor)>,
    /// Blobs that were new to the store.
    pub blobs_added: usize,
    pub bytes_added: u64,
}

/// Writes `refs` (and everything they are made of) as an OCI archive to `out`.
pub fn export_archive<W: Write>(store: &Store, refs: &[Reference], out: W) -> Result<ExportReport> {
    let _lease = store.lease()?;
    let mut images = Vec::new();
    for r in refs {
        let mut d = store.resolve(r)?.ok_or_else(|| Error::RefNotFound {
            reference: ref_key(r),
            store: store.root().to_path_buf(),
        })?;
        d.annotations
            .insert(ANNOTATION_REF_NAME.to_string(), ref_key(r));
        images.push(d);
    }
    write_layout(store, images, None, out)
}

/// Writes the image `r` names for `platform` as an archive that `docker load` reads (its
/// `manifest.json`, listing the image as `name`, else `r`, when that has a tag) and that is
/// an OCI archive of that one image as well, as `docker save` writes them since Docker 25:
/// both lists point at the same `blobs/`. Layers stay as the store has them (compressed);
/// `docker load` and skopeo's `docker-archive:` decompress them. This is what LinuxKit's
/// `cache export` writes by default.
pub fn export_docker_archive<W: Write>(
    store: &Store,
    r: &Reference,
    platform: &Platform,
    name: Option<&Reference>,
    out: W,
) -> Result<ExportReport> {
    let _lease = store.lease()?;
    let mut d = store
        .resolve_platform(r, platform)?
        .ok_or_else(|| Error::RefNotFound {
            reference: ref_key(r),
            store: store.root().to_path_buf(),
        })?;
    let name = name.unwrap_or(r);
    d.annotations
        .insert(ANNOTATION_REF_NAME.to_string(), ref_key(name));
    let m = store.read_manifest(&d.digest)?;
    let path = |d: &Digest| format!("blobs/{}/{}", d.algorithm(), d.hex());
    // A name by digest alone is loaded untagged.
    let repo_tags: Vec<String> = name
        .tag_or_latest()
        .map(|t| format!("{}:{t}", name.name()))
        .into_iter()
        .collect();
    let docker = serde_json::json!([{
        "Config": path(&m.config.digest),
        "RepoTags": repo_tags,
        "Layers": m.layers.iter().map(|l| path(&l.digest)).collect::<Vec<_>>(),
    }]);
    let docker = serde_json::to_vec(&docker)
        .map_err(|e| Error::io("encode", "manifest.json")(std::io::Error::other(e)))?;
    write_layout(store, vec![d], Some(&docker), out)
}

/// The OCI layout of `images` (and everything they are made of) as a tar, deterministically;
/// with `docker_manifest`, also `manifest.json` for `docker load`.
fn write_layout<W: Write>(
    store: &Store,
    images: Vec<Descriptor>,
    docker_manifest: Option<&[u8]>,
    out: W,
) -> Result<ExportReport> {
    let mut blobs: HashMap<Digest, Descriptor> = HashMap::new();
    for d in &images {
        for b in store.image_blobs(d)? {
            blobs.entry(b.digest.clone()).or_insert(b);
        }
    }
    let mut sorted: Vec<Descriptor> = blobs.into_values().collect();
    sorted.sort_by(|a, b| a.digest.cmp(&b.digest));
    let index = oci::to_canonical_json(&ImageIndex::new(images.clone()))?;

    let mut tar = TarWriter::new(out, 0);
    let file = |path: &str, size: u64| Entry::file(path, size, EntryMeta::mode(0o644));
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    tar.add_bytes(&file("oci-layout", layout.len() as u64), layout)?;
    tar.add_bytes(&file("index.json", index.len() as u64), &index)?;
    if let Some(m) = docker_manifest {
        tar.add_bytes(&file("manifest.json", m.len() as u64), m)?;
    }
    tar.add(&Entry::dir("blobs", EntryMeta::mode(0o755)), None)?;
    let mut algs: Vec<&str> = sorted.iter().map(|d| d.digest.algorithm()).collect();
    algs.dedup();
    for alg in algs {
        tar.add(
            &Entry::dir(format!("blobs/{alg}"), EntryMeta::mode(0o755)),
            None,
        )?;
    }
    let mut bytes = 0;
    for d in &sorted {
        let mut blob = store.open_blob(&d.digest)?;
        let size = blob.size();
        let path = format!("blobs/{}/{}", d.digest.algorithm(), d.digest.hex());
        tar.add(&file(&path, size), Some(&mut blob))?;
        bytes += size;
    }
    let (mut out, _, _) = tar.finish()?;
    out.flush().map_err(Error::io("write", "the archive"))?;
    Ok(ExportReport {
        images,
        blobs: sorted.len(),
        bytes,
    })
}

/// Writes an archive to `path` via a temporary file next to it, so a failed export leaves
/// no partial archive behind.
pub fn export_archive_to(store: &Store, refs: &[Reference], path: &Path) -> Result<ExportReport> {
    write_atomically(path, |w| export_archive(store, refs, w))
}

/// Runs `write` on a buffered temporary file next to `path` that becomes `path` (synced
/// first) only when `write` succeeds: a failed or interrupted export leaves no partial file.
pub fn write_atomically<T, E: From<Error>>(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".oxkit-export-")
        .tempfile_in(&dir)
        .map_err(Error::io("create a temporary file in", &dir))?;
    let t = {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file());
        let t = write(&mut out)?;
        out.flush().map_err(Error::io("write", path))?;
        t
    };
    tmp.as_file().sync_all().map_err(Error::io("sync", path))?;
    tmp.persist(path)
        .map_err(|e| Error::io("write", path)(e.error))?;
    Ok(t)
}

/// A blob read from the archive, verified, waiting to be moved into the store.
struct Staged {
    staged: crate::store::StagedBlob,
    size: u64,
    /// Manifests and indexes are kept in memory to check completeness.
    json: Option<Vec<u8>>,
}

/// Imports an OCI archive (plain, gzip or zstd tar) from `reader`. `name` names it in
/// errors. Images are tagged by their `org.opencontainers.image.ref.name`; `tag_as`
/// replaces that name when the archive holds exactly one image (and is required when it
/// has none).
pub fn import_archive<R: Read>(
    store: &Store,
    reader: R,
    name: &str,
    tag_as: Option<&Reference>,
) -> Result<ImportReport> {
    let _lease = store.lease()?;
    let bad = |reason: String| Error::BadArchive {
        what: name.to_string(),
        reason,
    };
    let input =
        crate::unpack::decompress(reader).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let mut archive = tar::Archive::new(input);
    let mut staged: HashMap<Digest, Staged> = HashMap::new();
    let mut index: Option<Vec<u8>> = None;
    let mut docker_manifest = false;
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("cannot read it: {e}")))?;
    for item in entries {
        let mut te = item.map_err(|e| bad(format!("it is truncated or not a tar ({e})")))?;
        let raw = te.path_bytes().into_owned();
        let Ok(path) = normalize_path(&raw) else {
            return Err(bad(format!(
                "entry {:?} has a '..' component",
                String::from_utf8_lossy(&raw)
            )));
        };
        let path = path.to_string_lossy().into_owned();
        if !te.header().entry_type().is_file() {
            continue;
        }
        match path.as_str() {
            "index.json" => {
                let mut buf = Vec::new();
                (&mut te)
                    .take(64 << 20)
                    .read_to_end(&mut buf)
                    .map_err(|e| bad(format!("cannot read index.json: {e}")))?;
                if buf.len() as u64 != te.size() {
                    return Err(bad("index.json is truncated".into()));
                }
                index = Some(buf);
            }
            "oci-layout" => {
                let mut buf = String::new();
                (&mut te)
                    .take(4096)
                    .read_to_string(&mut buf)
                    .map_err(|e| bad(format!("cannot read oci-layout: {e}")))?;
                if !buf.contains("\"imageLayoutVersion\"") || !buf.contains("\"1.") {
                    return Err(bad(format!("unsupported oci-layout {buf:?}")));
                }
            }
            "manifest.json" => docker_manifest = true,
            p if p.starts_with("blobs/") => {
                let Some((alg, hex)) = p["blobs/".len()..].split_once('/') else {
                    continue;
                };
                let digest: Digest = format!("{alg}:{hex}")
                    .parse()
                    .map_err(|e| bad(format!("entry {p} is not named by a digest: {e}")))?;
                if staged.contains_key(&digest) || store.has_blob(&digest) {
                    continue;
                }
                let size = te.size();
                let mut w = store.blob_writer_expecting(&digest, Some(size))?;
                let copied = std::io::copy(&mut te, &mut w)
                    .map_err(|e| bad(format!("cannot read blob {digest}: {e}")))?;
                if copied != size {
                    return Err(bad(format!(
                        "blob {digest} is truncated ({copied} of {size} bytes)"
                    )));
                }
                let (info, blob) = w.finish_verified().map_err(|e| bad(e.to_string()))?;
                let json = if size < (4 << 20) {
                    let bytes =
                        std::fs::read(blob.path()).map_err(Error::io("read", blob.path()))?;
                    matches!(
                        oci::sniff(&bytes),
                        DocumentKind::Index | DocumentKind::Manifest
                    )
                    .then_some(bytes)
                } else {
                    None
                };
                staged.insert(
                    digest,
                    Staged {
                        staged: blob,
                        size: info.size,
                        json,
                    },
                );
            }
            _ => {}
        }
    }
    let Some(index) = index else {
        let hint = if docker_manifest {
            " (it looks like `docker save` output from before Docker 25)"
        } else {
            ""
        };
        return Err(bad(format!(
            "it has no index.json, so it is not an OCI archive{hint}"
        )));
    };
    let index: ImageIndex = oci::from_json(&index, format!("index.json in {name}"))?;
    if index.manifests.is_empty() {
        return Err(bad("its index.json names no images".into()));
    }

    // Every image must be complete with what is staged plus what the store has.
    let read = |d: &Digest| -> Result<Option<Vec<u8>>> {
        match staged.get(d) {
            Some(s) => Ok(s.json.clone()),
            None if store.has_blob(d) => Ok(Some(store.read_blob(d)?)),
            None => Ok(None),
        }
    };
    for top in &index.manifests {
        check_complete(top, &read, &staged, store).map_err(bad)?;
    }

    let mut tags = Vec::new();
    for d in &index.manifests {
        let r = match (tag_as, d.ref_name()) {
            (Some(r), _) if index.manifests.len() == 1 => r.clone(),
            (Some(_), _) => {
                return Err(bad(format!(
                    "it holds {} images; a single name cannot be given to all of them",
                    index.manifests.len()
                )));
            }
            (None, Some(n)) => Reference::parse(n).map_err(|e| {
                bad(format!(
                    "image {} is named {n:?}, which is not a reference ({}); give a name",
                    d.digest, e.reason
                ))
            })?,
            (None, None) => {
                return Err(bad(format!(
                    "image {} has no name (org.opencontainers.image.ref.name); give one",
                    d.digest
                )));
            }
        };
        let mut d = d.clone();
        d.annotations.remove(ANNOTATION_REF_NAME);
        tags.push((r, d));
    }

    let mut report = ImportReport {
        tagged: tags.clone(),
        blobs_added: staged.len(),
        bytes_added: staged.values().map(|s| s.size).sum(),
    };
    for (_, s) in staged.drain() {
        s.staged.persist()?;
    }
    store.tag_all(tags)?;
    report.tagged.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(report)
}

fn check_complete(
    top: &Descriptor,
    read: &dyn Fn(&Digest) -> Result<Option<Vec<u8>>>,
    staged: &HashMap<Digest, Staged>,
    store: &Store,
) -> std::result::Result<(), String> {
    let present = |d: &Digest| staged.contains_key(d) || store.has_blob(d);
    let mut stack = vec![top.clone()];
    while let Some(d) = stack.pop() {
        if !present(&d.digest) {
            if media_type::is_non_distributable(&d.media_type) {
                continue;
            }
            return Err(format!(
                "blob {} ({}) of image {} is missing (truncated archive?)",
                d.digest, d.media_type, top.digest
            ));
        }
        if !(media_type::is_index(&d.media_type) || media_type::is_manifest(&d.media_type)) {
            continue;
        }
        let bytes = read(&d.digest)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{} {} cannot be read", d.media_type, d.digest))?;
        if media_type::is_index(&d.media_type) {
            let idx: ImageIndex =
                oci::from_json(&bytes, d.digest.to_string()).map_err(|e| e.to_string())?;
            stack.extend(idx.manifests);
        } else {
            let m: ImageManifest =
                oci::from_json(&bytes, d.digest.to_string()).map_err(|e| e.to_string())?;
            stack.push(m.config);
            stack.extend(m.layers);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
