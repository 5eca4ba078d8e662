//! Publishing one package, as `linuxkit pkg build --push` does: find which `TAG-ARCH` images
//! the registry already has ([`Publisher::plan`]: those are not built or pushed again), then
//! ([`Publisher::publish`]) push each missing architecture's image from the store as
//! `ORG/IMAGE:TAG-ARCH`, merge the index `TAG` (see the `index` module), copy it to a release
//! tag when asked, and sign every architecture's manifest and the index.
//!
//! Blobs of all architectures go up in one batch (the client uploads several at once and skips
//! what the registry has); manifests follow, children before the manifests naming them.
//! Signing runs beside that rather than after it: the architectures are signed while their
//! blobs upload, and the index while it is written and checked (see `publish`, `index_step`).
//! Building is the caller's business (between `plan` and `publish`); this module never builds.

use std::collections::BTreeMap;

use oxkit_registry::{BlobSource, BlobUpload, Pushed};
use oxkit_source::Package;
use oxkit_spec::{Digest, Platform, Reference};
use oxkit_store::Store;
use oxkit_store::oci::{Descriptor, document_media_type, media_type as mt};

use crate::error::{PublishError, Result};
use crate::index::{
    ArchImage, IndexOutcome, IndexWrite, Start, predict, publish_index_with, publish_release,
};
use crate::remote::{Remote, put_after_blobs, retag};
use crate::signing::{
    ANNOTATION_PACKAGE_COMMIT, ANNOTATION_PACKAGE_HASH, KeySource, Prepared, SignOutcome, Signer,
};
use crate::{EventSink, PublishEvent, Publisher};

/// How to publish (the `pkg push` flags).
#[derive(Default, Clone, Copy)]
pub struct PushOptions<'a> {
    /// Also publish the index as `ORG/IMAGE:NAME` (and `NAME-ARCH`).
    pub release: Option<&'a str>,
    /// Sign with this key; `None` does not sign. The private key is asked for as the blobs
    /// start uploading (so it can be decrypted meanwhile), and must be unlocked before any
    /// manifest goes up: a key that cannot be unlocked stops the push before anything is
    /// tagged.
    pub key: Option<&'a dyn KeySource>,
}

/// Which of a package's architectures the registry has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePlan {
    /// `ORG/IMAGE:TAG`.
    pub name: String,
    /// Architectures whose `TAG-ARCH` exists: neither built nor pushed.
    pub present: Vec<(Platform, Descriptor)>,
    /// Architectures to build (if the store lacks them) and push.
    pub missing: Vec<Platform>,
}

/// One architecture's image as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchReport {
    pub platform: Platform,
    /// `ORG/IMAGE:TAG-ARCH`.
    pub reference: String,
    pub digest: Digest,
    /// Pushed by this run (false: the registry had it).
    pub pushed: bool,
}

/// What publishing a package did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageReport {
    pub name: String,
    pub arches: Vec<ArchReport>,
    pub index: IndexOutcome,
    /// The release tag written, and the index digest it names.
    pub release: Option<(String, Digest)>,
    /// Signatures checked or added (empty when not signing).
    pub signatures: Vec<SignOutcome>,
    /// Blobs uploaded (bytes sent), and blobs the registry had.
    pub uploaded: usize,
    pub uploaded_bytes: u64,
    pub existing: usize,
    /// Manifests put (architecture images and the children they name; not the index).
    pub manifests: usize,
}

impl PackageReport {
    /// Whether this run changed nothing in the registry.
    pub fn nothing_pushed(&self) -> bool {
        self.uploaded == 0
            && self.manifests == 0
            && !self.index.written
            && self.signatures.iter().all(|s| !s.added)
    }
}

impl Publisher<'_> {
    /// Refuses dirty packages (sources differ from the commit), as LinuxKit does, unless the
    /// user said `--force-dirty`: then the package is pushed under its `-dirty-XXXXXXX` tag,
    /// which can never collide with a clean build's. Call it before building.
    /// A release (`--release NAME`) of a dirty package is always refused, as in LinuxKit.
    pub fn check_pushable(pkg: &Package, force_dirty: bool, release: bool) -> Result<()> {
        if pkg.dirty && (release || !force_dirty) {
            return Err(PublishError::Dirty {
                name: pkg.name(),
                dir: pkg.dir.clone(),
            });
        }
        Ok(())
    }

    /// Which of `platforms` the registry already has as `TAG-ARCH` (checked in parallel).
    pub fn plan(&self, pkg: &Package, platforms: &[Platform]) -> Result<RemotePlan> {
        plan(self.client, pkg, platforms)
    }

    /// Pushes the missing architectures of `plan` from the store, merges the index, releases
    /// and signs. Every missing architecture must be in the store as `ORG/IMAGE:TAG-ARCH`.
    pub fn publish(
        &self,
        pkg: &Package,
        plan: &RemotePlan,
        opts: &PushOptions<'_>,
    ) -> Result<PackageReport> {
        publish(self.client, self.store, self.events, pkg, plan, opts)
    }
}

pub(crate) fn plan(
    remote: &dyn Remote,
    pkg: &Package,
    platforms: &[Platform],
) -> Result<RemotePlan> {
    let found = crate::parallel::each(
        platforms,
        |_| pkg.name(),
        "a registry check",
        |p| {
            let r = pkg.arch_reference(p.arch())?;
            // GET rather than HEAD: manifests are small, and a refusal then carries the
            // registry's own message (a HEAD answer has no body).
            remote
                .get(&r)
                .map(|m| m.map(|m| m.descriptor()))
                .map_err(PublishError::registry(format!("check {r}")))
        },
    );
    let mut present = Vec::new();
    let mut missing = Vec::new();
    for (p, f) in platforms.iter().zip(found) {
        match f? {
            Some(d) if mt::is_manifest(&d.media_type) => present.push((p.clone(), d)),
            _ => missing.push(p.clone()),
        }
    }
    Ok(RemotePlan {
        name: pkg.name(),
        present,
        missing,
    })
}

/// The payload annotations for a package's signatures.
pub(crate) fn package_annotations(pkg: &Package) -> BTreeMap<String, String> {
    let mut a = BTreeMap::from([(ANNOTATION_PACKAGE_HASH.to_string(), pkg.hash.clone())]);
    if let Some(c) = pkg.commit.as_ref().filter(|_| !pkg.dirty) {
        a.insert(ANNOTATION_PACKAGE_COMMIT.to_string(), c.clone());
    }
    a
}

/// An architecture's image in the store and where it goes.
struct LocalImage {
    platform: Platform,
    remote: Reference,
    top: Descriptor,
}

#[derive(Default)]
struct Counts {
    uploaded: usize,
    uploaded_bytes: u64,
    existing: usize,
    manifests: usize,
}

/// The blobs of images uploaded, and the manifests still to put.
struct Uploaded {
    counts: Counts,
    uploads: Vec<BlobUpload>,
    /// Each image's manifests (by index into the images), parents first.
    docs: Vec<(usize, Descriptor)>,
}

/// Uploads every blob of `images` in one batch (the manifests are put by [`put_manifests`]).
fn upload_blobs(remote: &dyn Remote, store: &Store, images: &[LocalImage]) -> Result<Uploaded> {
    let mut up = Uploaded {
        counts: Counts::default(),
        uploads: Vec::new(),
        docs: Vec::new(),
    };
    let Some(first) = images.first() else {
        return Ok(up);
    };
    for (i, img) in images.iter().enumerate() {
        let blobs = store
            .image_blobs(&img.top)
            .map_err(PublishError::store(format!(
                "read {} from the store",
                img.remote
            )))?;
        for d in blobs {
            if store
                .is_document(&d)
                .map_err(PublishError::store(format!("read {}", d.digest)))?
            {
                up.docs.push((i, d));
                continue;
            }
            if mt::is_non_distributable(&d.media_type)
                || up.uploads.iter().any(|u| u.digest == d.digest)
            {
                continue;
            }
            up.uploads.push(BlobUpload {
                digest: d.digest.clone(),
                size: d.size,
                source: BlobSource::File(store.blob_path(&d.digest)),
                mount_from: Vec::new(),
                check_exists: true,
            });
        }
    }
    let outcomes =
        remote
            .push_blobs(&first.remote, &up.uploads)
            .map_err(PublishError::registry(format!(
                "upload the blobs of {}",
                first.remote.name()
            )))?;
    for (u, o) in up.uploads.iter().zip(&outcomes) {
        match o {
            Pushed::Transferred => {
                up.counts.uploaded += 1;
                up.counts.uploaded_bytes += u.size;
            }
            Pushed::Mounted | Pushed::AlreadyThere => up.counts.existing += 1,
        }
    }
    Ok(up)
}

/// Puts the manifests of `images` (their blobs are up), children first.
fn put_manifests(
    remote: &dyn Remote,
    store: &Store,
    images: &[LocalImage],
    up: &mut Uploaded,
) -> Result<()> {
    // `image_blobs` lists parents first: reversed, each manifest follows what it names.
    for (i, d) in up.docs.iter().rev() {
        let img = &images[*i];
        let bytes = store
            .read_blob(&d.digest)
            .map_err(PublishError::store(format!("read {}", d.digest)))?;
        let target = if d.digest == img.top.digest {
            img.remote.clone()
        } else {
            img.remote.without_tag().with_digest(d.digest.clone())
        };
        put_after_blobs(
            remote,
            &target,
            &document_media_type(&bytes, d),
            &bytes,
            &up.uploads,
        )
        .map_err(PublishError::registry(format!("push {target}")))?;
        up.counts.manifests += 1;
    }
    Ok(())
}

/// Joins a scoped thread, its panic an error about `reference`.
fn joined<T>(h: std::thread::ScopedJoinHandle<'_, Result<T>>, reference: &str) -> Result<T> {
    h.join().unwrap_or_else(|_| {
        Err(PublishError::Reference {
            reference: reference.to_string(),
            reason: "signing panicked".into(),
        })
    })
}

/// The index, the release and the index's signature.
struct IndexStep {
    index: IndexOutcome,
    release: Option<(String, Digest)>,
    signature: Option<SignOutcome>,
}

/// What the index step needs to sign the index.
struct IndexSigning<'p, 'k> {
    signer: Signer<'k>,
    /// Digests signed already (the architectures'): an index that is one of them is not
    /// signed again.
    signed_already: &'p [Digest],
    /// The signature of the index expected, made while the images uploaded.
    predicted: Option<Prepared<'k>>,
}

fn index_step(
    remote: &dyn Remote,
    events: &dyn EventSink,
    pkg: &Package,
    ours: &[ArchImage],
    release: Option<&str>,
    signing: Option<IndexSigning<'_, '_>>,
) -> Result<IndexStep> {
    let signed_already = signing.as_ref().map_or(&[][..], |s| s.signed_already);
    // The index's signature is off the critical path. `predicted` was made while the images
    // uploaded, for the index expected: when that index is about to be written, its
    // signature is written beside it. Any other index written gets its signature made while
    // it is written, and written while the write is checked. Either way, when the check
    // keeps the index (no other writer), its signature is there already. An index that
    // another writer's replaces keeps a signature it no longer needs, which is harmless: it
    // is still what this key's holder published.
    let (write_tx, write_rx) = std::sync::mpsc::channel::<IndexWrite>();
    std::thread::scope(|s| {
        let signer = signing.as_ref().map(|g| g.signer);
        let writes_signed = signing.map(|g| {
            s.spawn(move || {
                let mut predicted = g.predicted;
                let mut prepared: Vec<Prepared<'_>> = Vec::new();
                let mut signed = Vec::new();
                for w in write_rx {
                    match w {
                        IndexWrite::Writing(d) if !signed_already.contains(&d) => {
                            if predicted.as_ref().is_some_and(|p| p.digest() == &d) {
                                if let Some(p) = predicted.take() {
                                    // Made a while ago: read the tag again before writing.
                                    signed.push((d, p.commit(true)));
                                }
                                continue;
                            }
                            // A failure shows again (or not) when the digest is signed anew.
                            if let Ok(p) = g.signer.prepare(&d) {
                                prepared.push(p);
                            }
                        }
                        IndexWrite::Writing(_) => {}
                        IndexWrite::Written(d) => {
                            if let Some(i) = prepared.iter().position(|p| p.digest() == &d) {
                                let outcome = prepared.swap_remove(i).commit(false);
                                signed.push((d, outcome));
                            }
                        }
                    }
                }
                Ok(signed)
            })
        });
        let index = publish_index_with(
            remote,
            pkg.reference(),
            ours,
            &pkg.spec.platforms(),
            Start::TrustComplete,
            events,
            &|w| {
                // Not signing: nothing listens.
                let _ = write_tx.send(w);
            },
        );
        drop(write_tx);
        let signed = match writes_signed {
            Some(h) => joined(h, &pkg.name())?,
            None => Vec::new(),
        };
        let index = index?;
        let release = match release {
            Some(name) => {
                let rel = retag(pkg.reference(), name)?;
                let d = publish_release(remote, pkg.reference(), &rel, &index, events)?;
                Some((rel.to_string(), d))
            }
            None => None,
        };
        let signature = match signer {
            Some(signer) if !signed_already.contains(&index.digest) => {
                let done = signed.into_iter().find(|(d, _)| d == &index.digest);
                Some(match done {
                    Some((_, Ok(outcome))) => outcome,
                    // Not written by us (complete already, or another writer's), or its
                    // signing failed: sign what the registry holds.
                    _ => signer.sign(&index.digest)?,
                })
            }
            _ => None,
        };
        Ok(IndexStep {
            index,
            release,
            signature,
        })
    })
}

pub(crate) fn publish(
    remote: &dyn Remote,
    store: &Store,
    events: &dyn EventSink,
    pkg: &Package,
    plan: &RemotePlan,
    opts: &PushOptions<'_>,
) -> Result<PackageReport> {
    let _lease = store.lease().map_err(PublishError::store(
        "lock the store against garbage collection",
    ))?;
    let mut images = Vec::new();
    for p in &plan.missing {
        let r = pkg.arch_reference(p.arch())?;
        let top = store
            .resolve(&r)
            .map_err(PublishError::store(format!("look up {r}")))?
            .ok_or_else(|| PublishError::NotInStore {
                reference: r.to_string(),
                store: store.root().to_path_buf(),
            })?;
        if !mt::is_manifest(&top.media_type) {
            return Err(PublishError::NotInStore {
                reference: format!(
                    "{r} (it is {}, not one architecture's image)",
                    top.media_type
                ),
                store: store.root().to_path_buf(),
            });
        }
        images.push(LocalImage {
            platform: p.clone(),
            remote: r,
            top,
        });
    }
    let mut arches = Vec::new();
    let mut ours = Vec::new();
    for img in &images {
        arches.push(ArchReport {
            platform: img.platform.clone(),
            reference: img.remote.to_string(),
            digest: img.top.digest.clone(),
            pushed: true,
        });
        ours.push(ArchImage {
            arch: img.platform.arch().to_string(),
            descriptor: Descriptor::new(
                img.top.media_type.clone(),
                img.top.digest.clone(),
                img.top.size,
            )
            .with_platform(img.platform.clone()),
        });
    }
    for (p, d) in &plan.present {
        let r = pkg.arch_reference(p.arch())?;
        arches.push(ArchReport {
            platform: p.clone(),
            reference: r.to_string(),
            digest: d.digest.clone(),
            pushed: false,
        });
        ours.push(ArchImage {
            arch: p.arch().to_string(),
            descriptor: Descriptor::new(d.media_type.clone(), d.digest.clone(), d.size)
                .with_platform(p.clone()),
        });
    }
    arches.sort_by(|a, b| a.platform.cmp(&b.platform));
    let annotations = package_annotations(pkg);
    let arch_digests: Vec<Digest> = arches.iter().map(|a| a.digest.clone()).collect();
    let signer = opts.key.map(|key| Signer {
        remote,
        repo: pkg.reference(),
        key,
        annotations: &annotations,
        events,
    });
    let (counts, step, signatures) = std::thread::scope(|s| -> Result<_> {
        // The architectures' digests are known from the store: they are signed while the
        // blobs upload (and the manifests go up, and the index is merged). A push that fails
        // later may leave signatures of images it did not finish pushing; they verify once
        // the image is there (the retry finds them signed already).
        let (arch_digests, ours) = (&arch_digests, &ours);
        let signing = signer.map(|g| s.spawn(move || g.sign_all(arch_digests)));
        // So is the index's, for the index expected (see `index_step`).
        let predicting = signer.map(|g| {
            s.spawn(move || {
                let d = predict(remote, pkg.reference(), ours).ok().flatten()?;
                if arch_digests.contains(&d) {
                    return None;
                }
                g.prepare(&d).ok()
            })
        });
        let mut uploaded = upload_blobs(remote, store, &images)?;
        // No image is tagged until the key is unlocked: a key that cannot be stops the push
        // before that (even when every signature exists already).
        if let Some(k) = opts.key
            && !images.is_empty()
        {
            k.signing_key().map_err(PublishError::Key)?;
        }
        put_manifests(remote, store, &images, &mut uploaded)?;
        for img in &images {
            events.event(PublishEvent::ArchPushed {
                reference: img.remote.to_string(),
                digest: img.top.digest.clone(),
            });
        }
        let predicted = predicting.and_then(|h| h.join().ok().flatten());
        let step = index_step(
            remote,
            events,
            pkg,
            ours,
            opts.release,
            signer.map(|signer| IndexSigning {
                signer,
                signed_already: arch_digests,
                predicted,
            }),
        );
        let signatures = match signing {
            Some(h) => joined(h, &pkg.name()),
            None => Ok(Vec::new()),
        };
        Ok((uploaded.counts, step?, signatures?))
    })?;
    let IndexStep {
        index,
        release,
        signature,
    } = step;
    let mut signatures = signatures;
    signatures.extend(signature);
    Ok(PackageReport {
        name: pkg.name(),
        arches,
        index,
        release,
        signatures,
        uploaded: counts.uploaded,
        uploaded_bytes: counts.uploaded_bytes,
        existing: counts.existing,
        manifests: counts.manifests,
    })
}

#[cfg(test)]
#[path = "push_tests.rs"]
mod tests;
