//! Image-level helpers over blobs and references: reading manifests, indexes and configs,
//! picking the manifest for a platform, writing multi-platform indexes, and listing the
//! blobs an image is made of.
//!
//! Everything read here is verified against its digest first (via [`Store::read_blob`]).

use std::collections::HashSet;

use oxkit_spec::{Digest, Platform, Reference};

use super::Store;
use crate::error::{Error, Result};
use crate::oci::{
    self, Descriptor, DocumentKind, ImageConfig, ImageIndex, ImageManifest, media_type,
    normalize_platform,
};

/// How deep nested indexes are followed (an index of indexes is legal but rare).
const MAX_INDEX_DEPTH: usize = 4;

fn refuse_schema1(bytes: &[u8], digest: &Digest) -> Result<()> {
    if oci::sniff(bytes) == DocumentKind::SchemaV1 {
        return Err(Error::MediaType {
            what: format!("manifest {digest}"),
            media_type: media_type::DOCKER_MANIFEST_V1.into(),
            expected: "a schema 2 or OCI manifest (schema 1 is not supported; rebuild or re-push the image)",
        });
    }
    Ok(())
}

/// The platform a descriptor declares, normalised.
fn descriptor_platform(d: &Descriptor) -> Option<Platform> {
    let p = d.platform.as_ref()?;
    normalize_platform(&p.os, &p.architecture, p.variant.as_deref())
}

/// What `cache ls` shows about an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSummary {
    /// Platforms it offers, normalised and sorted (empty when unknown).
    pub platforms: Vec<Platform>,
    /// Total size of its blobs (each counted once).
    pub size: u64,
    /// Whether every blob it needs is present and readable.
    pub complete: bool,
}

impl Store {
    /// Platforms and size of the image `d` points at; never fails (an unreadable image is
    /// reported as incomplete).
    pub fn image_summary(&self, d: &Descriptor) -> ImageSummary {
        let (size, complete) = match self.image_blobs(d) {
            Ok(blobs) => (blobs.iter().map(|b| b.size).sum(), true),
            Err(_) => (0, false),
        };
        let mut platforms = Vec::new();
        if let Some(p) = descriptor_platform(d) {
            platforms.push(p);
        } else if let Ok(true) = self.is_index_descriptor(d) {
            if let Ok(idx) = self.read_index(&d.digest) {
                platforms.extend(idx.manifests.iter().filter_map(descriptor_platform));
            }
        } else if let Ok(m) = self.read_manifest(&d.digest)
            && let Ok(c) = self.read_config(&m.config.digest)
        {
            platforms.extend(c.platform());
        }
        platforms.sort();
        platforms.dedup();
        ImageSummary {
            platforms,
            size,
            complete,
        }
    }

    /// Reads and parses an image manifest (OCI or Docker schema 2).
    pub fn read_manifest(&self, digest: &Digest) -> Result<ImageManifest> {
        let bytes = self.read_blob(digest)?;
        refuse_schema1(&bytes, digest)?;
        oci::from_json(&bytes, format!("manifest {digest}"))
    }

    /// Reads and parses an image index (or Docker manifest list).
    pub fn read_index(&self, digest: &Digest) -> Result<ImageIndex> {
        let bytes = self.read_blob(digest)?;
        oci::from_json(&bytes, format!("image index {digest}"))
    }

    /// Reads and parses an image configuration.
    pub fn read_config(&self, digest: &Digest) -> Result<ImageConfig> {
        let bytes = self.read_blob(digest)?;
        oci::from_json(&bytes, format!("image config {digest}"))
    }

    /// Whether a descriptor points at an index, by media type or, when the media type says
    /// nothing useful, by looking at the document.
    pub(crate) fn is_index_descriptor(&self, d: &Descriptor) -> Result<bool> {
        if media_type::is_index(&d.media_type) {
            return Ok(true);
        }
        if media_type::is_manifest(&d.media_type) {
            return Ok(false);
        }
        Ok(oci::sniff(&self.read_blob(&d.digest)?) == DocumentKind::Index)
    }

    /// The manifest of `r` for `platform`: the matching child of an index, or the image
    /// itself when it is a single manifest whose config declares that platform. `None` when
    /// `r` is not in the store; an error naming the platforms on offer when none matches.
    /// The returned descriptor carries the platform.
    pub fn resolve_platform(
        &self,
        r: &Reference,
        platform: &Platform,
    ) -> Result<Option<Descriptor>> {
        let Some(top) = self.resolve(r)? else {
            return Ok(None);
        };
        let wanted = normalize_platform(
            &platform.os,
            &platform.architecture,
            platform.variant.as_deref(),
        )
        .unwrap_or_else(|| platform.clone());
        let mut available = Vec::new();
        let found = self.pick_platform(&top, &wanted, &mut available, 0)?;
        match found {
            Some(d) => Ok(Some(d)),
            None => Err(Error::NoPlatform {
                reference: r.to_string(),
                wanted,
                available,
            }),
        }
    }

    fn pick_platform(
        &self,
        d: &Descriptor,
        wanted: &Platform,
        available: &mut Vec<Platform>,
        depth: usize,
    ) -> Result<Option<Descriptor>> {
        if self.is_index_descriptor(d)? {
            if depth >= MAX_INDEX_DEPTH {
                return Ok(None);
            }
            let index = self.read_index(&d.digest)?;
            for child in &index.manifests {
                match descriptor_platform(child) {
                    Some(p) if &p == wanted => {
                        if media_type::is_index(&child.media_type) {
                            if let Some(found) =
                                self.pick_platform(child, wanted, available, depth + 1)?
                            {
                                return Ok(Some(found));
                            }
                        } else {
                            let mut found = child.clone();
                            found.platform = Some(p);
                            return Ok(Some(found));
                        }
                    }
                    Some(p) => available.push(p),
                    // No platform on the child: nested index, or a manifest whose config
                    // has to tell (only when we have it).
                    None if media_type::is_index(&child.media_type) => {
                        if let Some(found) =
                            self.pick_platform(child, wanted, available, depth + 1)?
                        {
                            return Ok(Some(found));
                        }
                    }
                    None if self.has_blob(&child.digest)
                        && media_type::is_manifest(&child.media_type) =>
                    {
                        if let Some(found) =
                            self.pick_platform(child, wanted, available, depth + 1)?
                        {
                            return Ok(Some(found));
                        }
                    }
                    None => {}
                }
            }
            return Ok(None);
        }
        let manifest = self.read_manifest(&d.digest)?;
        let config = self.read_config(&manifest.config.digest)?;
        match config.platform() {
            Some(p) if &p == wanted => {
                let mut found = d.clone();
                found.platform = Some(p);
                found.annotations.remove(oci::ANNOTATION_REF_NAME);
                Ok(Some(found))
            }
            Some(p) => {
                available.push(p);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Writes an OCI index over `entries` (one manifest per platform) and tags it `r`.
    /// Entries without a platform get it from their config; entries are sorted by platform
    /// so the index does not depend on the order builds finished in. Every entry must be in
    /// the store.
    pub fn put_index_for(&self, r: &Reference, entries: Vec<Descriptor>) -> Result<Descriptor> {
        let _lease = self.lease()?;
        let mut manifests = Vec::with_capacity(entries.len());
        for mut d in entries {
            if !self.has_blob(&d.digest) {
                return Err(Error::BlobNotFound {
                    digest: d.digest,
                    store: self.root.clone(),
                });
            }
            d.annotations.remove(oci::ANNOTATION_REF_NAME);
            if d.platform.is_none() && !self.is_index_descriptor(&d)? {
                let manifest = self.read_manifest(&d.digest)?;
                d.platform = self.read_config(&manifest.config.digest)?.platform();
            }
            manifests.push(d);
        }
        manifests.sort_by(|a, b| {
            let key = |d: &Descriptor| d.platform.as_ref().map(ToString::to_string);
            key(a).cmp(&key(b)).then_with(|| a.digest.cmp(&b.digest))
        });
        manifests.dedup_by(|a, b| a.digest == b.digest && a.platform == b.platform);
        let index = ImageIndex::new(manifests);
        let d = self.put_json(media_type::OCI_INDEX, &index)?;
        self.tag(r, d.clone())?;
        Ok(d)
    }

    /// The direct children of a manifest or index: config and layers, or manifests, each
    /// with `false`; plus its subject with `true` (optional: it is another image). Other
    /// media types have none.
    pub(crate) fn children(&self, d: &Descriptor) -> Result<Vec<(Descriptor, bool)>> {
        let kind = if media_type::is_index(&d.media_type) {
            DocumentKind::Index
        } else if media_type::is_manifest(&d.media_type) {
            DocumentKind::Manifest
        } else if d.media_type.ends_with("+json")
            && d.size < (4 << 20)
            && !media_type::is_config(&d.media_type)
        {
            DocumentKind::Other
        } else {
            return Ok(Vec::new());
        };
        let bytes = self.read_blob(&d.digest)?;
        let kind = if kind == DocumentKind::Other {
            oci::sniff(&bytes)
        } else {
            kind
        };
        let required = |v: Vec<Descriptor>, subject: Option<Descriptor>| {
            v.into_iter()
                .map(|c| (c, false))
                .chain(subject.map(|s| (s, true)))
                .collect()
        };
        match kind {
            DocumentKind::Index => {
                let idx: ImageIndex = oci::from_json(&bytes, format!("image index {}", d.digest))?;
                Ok(required(idx.manifests, idx.subject))
            }
            DocumentKind::Manifest => {
                let m: ImageManifest = oci::from_json(&bytes, format!("manifest {}", d.digest))?;
                let mut all = vec![m.config];
                all.extend(m.layers);
                Ok(required(all, m.subject))
            }
            DocumentKind::SchemaV1 => {
                refuse_schema1(&bytes, &d.digest)?;
                Ok(Vec::new())
            }
            DocumentKind::Other => Ok(Vec::new()),
        }
    }

    /// Every blob `d` is made of, `d` first, each once. A missing child is an error unless it
    /// is a non-distributable layer; a missing subject is skipped (it is another image).
    pub fn image_blobs(&self, d: &Descriptor) -> Result<Vec<Descriptor>> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut stack = vec![(d.clone(), false)];
        while let Some((d, optional)) = stack.pop() {
            if !seen.insert(d.digest.clone()) {
                continue;
            }
            if !self.has_blob(&d.digest) {
                if optional || media_type::is_non_distributable(&d.media_type) {
                    continue;
                }
                return Err(Error::BlobNotFound {
                    digest: d.digest,
                    store: self.root.clone(),
                });
            }
            stack.extend(self.children(&d)?.into_iter().rev());
            out.push(d);
        }
        Ok(out)
    }
}

impl Store {
    /// Whether `d` is pushed as a manifest (an image manifest or index, by media type, or a
    /// small `+json` document that is shaped like one) rather than as a blob.
    pub fn is_document(&self, d: &Descriptor) -> Result<bool> {
        if media_type::is_index(&d.media_type) || media_type::is_manifest(&d.media_type) {
            return Ok(true);
        }
        if d.media_type.ends_with("+json")
            && !media_type::is_config(&d.media_type)
            && d.size < (4 << 20)
        {
            let bytes = self.read_blob(&d.digest)?;
            return Ok(matches!(
                oci::sniff(&bytes),
                DocumentKind::Index | DocumentKind::Manifest
            ));
        }
        Ok(false)
    }
}
