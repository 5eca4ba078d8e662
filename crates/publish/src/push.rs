//! Publishing one package, as `linuxkit pkg build --push` does: find which `TAG-ARCH` images
//! the registry already has ([`Publisher::plan`]: those are not built or pushed again), then
//! ([`Publisher::publish`]) push each missing architecture's image from the store as
//! `ORG/IMAGE:TAG-ARCH`, merge the index `TAG` (see the `index` module), copy it to a release
//! tag when asked, and sign every architecture's manifest and the index.
//!
//! Blobs of all architectures go up in one batch (the client uploads several at once and skips
//! what the registry has); manifests follow, children before the manifests naming them.
//! Signing runs beside that rather than after it: the architectures and the index expected are
//! signed while the blobs upload (see `BesideUploads`), and an index other than the one
//! expected while it is written and checked (see `index_step`).
//! Building is the caller's business (between `plan` and `publish`); this module never builds.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use oxkit_registry::{BlobSource, BlobUpload, Pushed};
use oxkit_source::Package;
use oxkit_spec::{Digest, Platform, Reference};
use oxkit_store::Store;
use oxkit_store::oci::{Descriptor, document_media_type, media_type as mt};

use crate::error::{PublishError, Result};
use crate::index::{
    ArchImage, IndexOutcome, IndexWrite, Start, predict, publish_index_with, publish_release,
};
use crate::parallel::Gate;
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
/// `under_way` is called once the uploads are past their first round trips (see
/// [`Remote::push_blobs_noting`]), or not at all.
fn upload_blobs(
    remote: &dyn Remote,
    store: &Store,
    images: &[LocalImage],
    under_way: &(dyn Fn() + Sync),
) -> Result<Uploaded> {
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
    let outcomes = remote
        .push_blobs_noting(&first.remote, &up.uploads, under_way)
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
    /// The signature of the index expected, written while the images uploaded.
    predicted: Option<SignOutcome>,
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
    // The index's signature is off the critical path. `predicted` was written while the
    // images uploaded, for the index expected. Any other index written gets its signature
    // made while it is written, and written while the write is checked. Either way, when the
    // check keeps the index (no other writer), its signature is there already. An index that
    // another writer's replaces (or that is never written, the push failing first) keeps a
    // signature it no longer needs, which is harmless: it is still what this key's holder
    // published, and the digest names that content alone.
    let (write_tx, write_rx) = std::sync::mpsc::channel::<IndexWrite>();
    std::thread::scope(|s| {
        let signer = signing.as_ref().map(|g| g.signer);
        let predicted = signing.as_ref().and_then(|g| g.predicted.clone());
        let predicted_digest = predicted.as_ref().map(|p| p.digest.clone());
        let writes_signed = signing.map(|g| {
            s.spawn(move || {
                let mut prepared: Vec<Prepared<'_>> = Vec::new();
                let mut signed = Vec::new();
                for w in write_rx {
                    match w {
                        IndexWrite::Writing(d)
                            if !signed_already.contains(&d)
                                && g.predicted.as_ref().is_none_or(|p| p.digest != d) =>
                        {
                            // A failure shows again (or not) when the digest is signed anew.
                            if let Ok(p) = g.signer.prepare(&d) {
                                prepared.push(p);
                            }
                        }
                        IndexWrite::Writing(_) => {}
                        IndexWrite::Written(d) => {
                            if let Some(i) = prepared.iter().position(|p| p.digest() == &d) {
                                let outcome = prepared.swap_remove(i).commit();
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
            Some(_) if predicted_digest.as_ref() == Some(&index.digest) => predicted,
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

/// The signing of a push done beside its blob uploads: the index expected (see `predict`),
/// then each architecture. While the blobs upload, one worker signs them one after the
/// other, from when the layers' bytes are going (requests before that delay the layers'
/// own round trips); when the uploads are done, a worker per remaining task joins it.
/// On a registry sharing the client's machine (or CPU-bound under load) the uploads are
/// bound by the registry's CPU, and each signing request costs it about as much as a small
/// upload's: with three signatures' chains of requests at once from the start, signing
/// added 15% to the bench's push; this way, 7-10%. Over a network the uploads leave the
/// registry idle, and the one worker is done long before them.
struct BesideUploads<'p, 'k> {
    signer: Signer<'k>,
    ours: &'p [ArchImage],
    arch_digests: &'p [Digest],
    /// The next task: 0 signs the index expected, `k` signs `arch_digests[k - 1]`.
    next: AtomicUsize,
    /// Set when the push fails before tagging: no task is started any more.
    stop: AtomicBool,
    predicted: Mutex<Option<std::sync::mpsc::Sender<Option<SignOutcome>>>>,
    signed: Vec<Mutex<Option<Result<SignOutcome>>>>,
}

impl<'k> BesideUploads<'_, 'k> {
    fn tasks(&self) -> usize {
        self.arch_digests.len() + 1
    }

    /// Tasks not started yet.
    fn remaining(&self) -> usize {
        self.tasks()
            .saturating_sub(self.next.load(Ordering::SeqCst))
    }

    /// Takes tasks until none is left.
    fn run(&self) {
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            let k = self.next.fetch_add(1, Ordering::SeqCst);
            if k == 0 {
                // Taken first: should the prediction panic, the sender is dropped with it,
                // and the push goes on without one.
                let tx = self
                    .predicted
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
                if let Some(tx) = tx {
                    // The receiver is gone only if the push failed.
                    let _ = tx.send(self.sign_index());
                }
            } else if let Some(d) = self.arch_digests.get(k - 1) {
                let r = self.signer.sign(d);
                *self.signed[k - 1]
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(r);
            } else {
                return;
            }
        }
    }

    /// Signs the index expected, before it is written (`None`: no index is expected to be
    /// written, or it is one of the architectures', or signing it failed; the index step
    /// then signs the index it writes).
    fn sign_index(&self) -> Option<SignOutcome> {
        let d = predict(self.signer.remote, self.signer.repo, self.ours)
            .ok()
            .flatten()?;
        if self.arch_digests.contains(&d) {
            return None;
        }
        self.signer.sign(&d).ok()
    }

    /// The architectures' signatures, in order (after every worker is joined).
    fn signatures(&self, reference: &str, panicked: bool) -> Result<Vec<SignOutcome>> {
        self.signed
            .iter()
            .map(|slot| {
                let r = slot
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
                r.unwrap_or_else(|| {
                    Err(PublishError::Reference {
                        reference: reference.to_string(),
                        reason: if panicked {
                            "signing panicked".into()
                        } else {
                            "signing stopped".into()
                        },
                    })
                })
            })
            .collect()
    }
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
    let (predicted_tx, predicted_rx) = std::sync::mpsc::channel();
    let work = signer.map(|signer| BesideUploads {
        signer,
        ours: &ours,
        arch_digests: &arch_digests,
        next: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        predicted: Mutex::new(Some(predicted_tx)),
        signed: arch_digests.iter().map(|_| Mutex::new(None)).collect(),
    });
    let under_way = Gate::default();
    let (counts, step, signatures) = std::thread::scope(|s| -> Result<_> {
        // The architectures' digests are known from the store, and the index expected from
        // the registry: their signatures are made while the blobs upload, one request at a
        // time, then all at once when the uploads are done (see `BesideUploads`). A push
        // that fails later may leave signatures of images it did not finish pushing; they
        // verify once the image is there (the retry finds them signed already).
        let work = work.as_ref();
        // The one worker starts when the blobs' own round trips are done (each request
        // before a layer's bytes go delays the whole upload), or the uploads are.
        let mut workers = Vec::new();
        workers.extend(work.map(|w| {
            let under_way = &under_way;
            s.spawn(move || {
                under_way.wait();
                w.run()
            })
        }));
        let tagging = (|| {
            let uploaded = upload_blobs(remote, store, &images, &|| under_way.open());
            under_way.open();
            let mut uploaded = uploaded?;
            // The registry is free of the blobs: the rest of the signing goes at full width.
            if let Some(w) = work {
                workers.extend((0..w.remaining()).map(|_| s.spawn(move || w.run())));
            }
            // No image is tagged until the key is unlocked: a key that cannot be stops the
            // push before that (even when every signature exists already).
            if let Some(k) = opts.key
                && !images.is_empty()
            {
                k.signing_key().map_err(PublishError::Key)?;
            }
            put_manifests(remote, store, &images, &mut uploaded)?;
            Ok(uploaded)
        })();
        let uploaded = match tagging {
            Ok(u) => u,
            Err(e) => {
                // The push failed: no signature is begun any more.
                if let Some(w) = work {
                    w.stop.store(true, Ordering::SeqCst);
                }
                return Err(e);
            }
        };
        for img in &images {
            events.event(PublishEvent::ArchPushed {
                reference: img.remote.to_string(),
                digest: img.top.digest.clone(),
            });
        }
        // The prediction's sender is dropped unused if its worker panicked: no prediction.
        let predicted = work.and_then(|_| predicted_rx.recv().ok().flatten());
        let step = index_step(
            remote,
            events,
            pkg,
            &ours,
            opts.release,
            signer.map(|signer| IndexSigning {
                signer,
                signed_already: &arch_digests,
                predicted,
            }),
        );
        let panicked = workers.into_iter().any(|h| h.join().is_err());
        let signatures = match work {
            Some(w) => w.signatures(&pkg.name(), panicked),
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
