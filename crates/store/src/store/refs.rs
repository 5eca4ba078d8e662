//! References: the entries of `index.json`, each named by the
//! `org.opencontainers.image.ref.name` annotation holding the canonical reference text
//! (`docker.io/linuxkit/init:abc`), which is what `skopeo ... oci:STORE:NAME` and
//! `umoci --image STORE:NAME` address.
//!
//! Lookups normalise both sides with Docker's rules, so `linuxkit/init:abc`, `alpine`
//! (meaning `:latest`) and a short name written by skopeo all find their entry. Every change
//! is a read-modify-write of `index.json` under the exclusive index lock.

use oxkit_spec::Reference;

use super::{Store, lock};
use crate::error::{Error, Result};
use crate::oci::{self, ANNOTATION_REF_NAME, Descriptor, ImageIndex};

/// An `index.json` entry as [`Store::list`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaggedImage {
    /// The annotation's text as stored (empty for an entry without a name).
    pub name: String,
    /// The name parsed as a reference, when it is one.
    pub reference: Option<Reference>,
    /// The entry (its annotations include the name).
    pub descriptor: Descriptor,
}

/// The text under which `r` is stored: `name:tag`, `name@digest` for digest-only
/// references, `name:latest` when neither is given.
pub(crate) fn ref_key(r: &Reference) -> String {
    match (r.tag(), r.digest()) {
        (Some(t), _) => format!("{}:{t}", r.name()),
        (None, Some(d)) => format!("{}@{d}", r.name()),
        (None, None) => format!("{}:latest", r.name()),
    }
}

/// The key an existing annotation stands for: its normalised form when it parses as a
/// reference, its raw text otherwise.
fn annotation_key(name: &str) -> String {
    Reference::parse(name).map_or_else(|_| name.to_string(), |r| ref_key(&r))
}

/// Whether entry `d` is named `key` (the key of `r`), pinned to `r`'s digest if it has one.
fn is_named(d: &Descriptor, key: &str, r: &Reference) -> bool {
    d.ref_name().is_some_and(|n| annotation_key(n) == key)
        && r.digest().is_none_or(|want| *want == d.digest)
}

impl Store {
    /// The entries of `index.json`, sorted by name as stored.
    pub fn list(&self) -> Result<Vec<TaggedImage>> {
        Ok(self
            .read_store_index()?
            .manifests
            .into_iter()
            .map(|descriptor| {
                let name = descriptor.ref_name().unwrap_or_default().to_string();
                TaggedImage {
                    reference: Reference::parse(&name).ok(),
                    name,
                    descriptor,
                }
            })
            .collect())
    }

    /// Finds what `r` names. A tagged reference looks up `index.json`; a reference with a
    /// digest (and no matching tag) resolves to that blob if it is present.
    pub fn resolve(&self, r: &Reference) -> Result<Option<Descriptor>> {
        let key = ref_key(r);
        let index = self.read_store_index()?;
        let found = index
            .manifests
            .iter()
            .find(|d| d.ref_name().is_some_and(|n| annotation_key(n) == key));
        if let Some(d) = found
            && r.digest().is_none_or(|want| *want == d.digest)
        {
            return Ok(Some(d.clone()));
        }
        let Some(digest) = r.digest() else {
            return Ok(None);
        };
        if let Some(d) = index.manifests.iter().find(|d| &d.digest == digest) {
            let mut d = d.clone();
            d.annotations.remove(ANNOTATION_REF_NAME);
            return Ok(Some(d));
        }
        let Some(size) = self.blob_size(digest)? else {
            return Ok(None);
        };
        let bytes = self.read_blob(digest)?;
        let media_type = match oci::sniff(&bytes) {
            oci::DocumentKind::Index => oci::from_json::<ImageIndex>(&bytes, digest.to_string())?
                .descriptor_media_type()
                .to_string(),
            oci::DocumentKind::Manifest => {
                oci::from_json::<oci::ImageManifest>(&bytes, digest.to_string())?
                    .descriptor_media_type()
                    .to_string()
            }
            _ => {
                return Err(Error::MediaType {
                    what: format!("blob {digest}"),
                    media_type: "unknown".into(),
                    expected: "an image manifest or index",
                });
            }
        };
        Ok(Some(Descriptor::new(media_type, digest.clone(), size)))
    }

    /// Names `descriptor` `r` in `index.json`, replacing what `r` named before. The blob
    /// must be in the store. Holds a lease while doing so, so garbage collection cannot
    /// remove the blob between the check and the write.
    pub fn tag(&self, r: &Reference, mut descriptor: Descriptor) -> Result<()> {
        if let Some(d) = r.digest()
            && *d != descriptor.digest
        {
            return Err(Error::BadReference {
                reference: r.to_string(),
                reason: format!("it pins {d} but the image to tag is {}", descriptor.digest),
            });
        }
        let _lease = self.lease()?;
        if !self.has_blob(&descriptor.digest) {
            return Err(Error::BlobNotFound {
                digest: descriptor.digest,
                store: self.root.clone(),
            });
        }
        let key = ref_key(r);
        descriptor
            .annotations
            .insert(ANNOTATION_REF_NAME.to_string(), key.clone());
        self.update_store_index(|entries| {
            entries.retain(|d| d.ref_name().is_none_or(|n| annotation_key(n) != key));
            entries.push(descriptor);
            Ok(())
        })
    }

    /// The entry named exactly `r` (what [`Store::untag`] would remove).
    pub(crate) fn find_tagged(&self, r: &Reference) -> Result<Option<Descriptor>> {
        let key = ref_key(r);
        Ok(self
            .read_store_index()?
            .manifests
            .into_iter()
            .find(|d| is_named(d, &key, r)))
    }

    /// Tags several references in one `index.json` update (all or none).
    pub(crate) fn tag_all(&self, tags: Vec<(Reference, Descriptor)>) -> Result<()> {
        let _lease = self.lease()?;
        let mut entries = Vec::with_capacity(tags.len());
        for (r, mut d) in tags {
            if !self.has_blob(&d.digest) {
                return Err(Error::BlobNotFound {
                    digest: d.digest,
                    store: self.root.clone(),
                });
            }
            let key = ref_key(&r);
            d.annotations
                .insert(ANNOTATION_REF_NAME.to_string(), key.clone());
            entries.push((key, d));
        }
        self.update_store_index(|index| {
            for (key, d) in entries {
                index.retain(|e| e.ref_name().is_none_or(|n| annotation_key(n) != key));
                index.push(d);
            }
            Ok(())
        })
    }

    /// Removes the name `r`; returns what it named. Blobs stay until garbage collection.
    pub fn untag(&self, r: &Reference) -> Result<Option<Descriptor>> {
        let key = ref_key(r);
        self.update_store_index(|entries| {
            let mut removed = None;
            entries.retain(|d| {
                let hit = is_named(d, &key, r);
                if hit {
                    removed = Some(d.clone());
                }
                !hit
            });
            Ok(removed)
        })
    }

    /// Reads `index.json` (no lock needed: it is only ever replaced by rename).
    pub(crate) fn read_store_index(&self) -> Result<ImageIndex> {
        let path = self.index_path();
        match std::fs::read(&path) {
            Ok(bytes) => oci::from_json(&bytes, path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ImageIndex::new(Vec::new())),
            Err(e) => Err(Error::io("read", &path)(e)),
        }
    }

    /// A locked read-modify-write of `index.json`'s entries. Entries are kept sorted by
    /// name so the file does not depend on the order of concurrent updates.
    pub(crate) fn update_store_index<T>(
        &self,
        change: impl FnOnce(&mut Vec<Descriptor>) -> Result<T>,
    ) -> Result<T> {
        let _guard = lock::lock(&self.index_lock_path(), false)?;
        let mut index = self.read_store_index()?;
        let before = index.manifests.clone();
        let out = change(&mut index.manifests)?;
        index
            .manifests
            .sort_by(|a, b| match (a.ref_name(), b.ref_name()) {
                (Some(x), Some(y)) => x.cmp(y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            });
        if index.manifests != before {
            // Renames of blobs the new entries point at must be durable before the entries.
            super::sync_dir(&self.blobs_dir())?;
            index.schema_version = 2;
            if index.media_type.is_none() {
                index.media_type = Some(oci::media_type::OCI_INDEX.to_string());
            }
            let bytes = oci::to_canonical_json(&index)?;
            self.write_atomic(&self.index_path(), &bytes)?;
        }
        Ok(out)
    }
}
