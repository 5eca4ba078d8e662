//! The index `TAG` of a package in a registry, kept complete across machines.
//!
//! Several machines publish one package, each its own architectures, so the index under `TAG`
//! is read, merged and written back. The `TAG-ARCH` tags are the record of what exists: each
//! publisher pushes its `TAG-ARCH` images first, then merges the index from what `TAG` holds
//! now plus every `TAG-ARCH` tag it finds (its own and any other machine's). Registries have no
//! compare-and-swap for tags, so after writing it re-reads `TAG` and the `TAG-ARCH` tags and
//! retries (with jittered backoff) until the index holds every one of them. Why that is enough:
//! whoever writes last verifies after everyone else's `TAG-ARCH` push (each pushes its tag
//! before reading the index), so it sees every tag, and rewrites the index if one is missing;
//! a publisher whose tag appears after that verification reads the final index and adds itself.
//!
//! The merge keeps entries of the existing index for platforms no `TAG-ARCH` tag covers (an
//! index pushed by another tool keeps what only it knows), replaces those a tag covers with the
//! tag's image, and drops attestation manifests (`unknown/unknown`, as BuildKit writes them)
//! whose image is no longer listed. The result is written canonically: entries sorted by
//! platform, so two machines merging the same state write identical bytes.
//!
//! This module must not sign or build: it only moves manifests.

use std::collections::BTreeMap;
use std::time::Duration;

use oxkit_registry::{Manifest, RetryPolicy};
use oxkit_spec::platform::KNOWN_ARCHES;
use oxkit_spec::{Digest, Platform, Reference};
use oxkit_store::oci::{self, Descriptor, ImageIndex, ImageManifest, media_type as mt};

use crate::error::{PublishError, Result};
use crate::remote::{Remote, retag};
use crate::{EventSink, PublishEvent};

/// Annotation BuildKit puts on an attestation manifest: the image it is about.
const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";

/// Architectures searched for `TAG-ARCH` tags besides the package's own (LinuxKit's list).
const SEARCHED_ARCHES: &[&str] = &["amd64", "arm64", "s390x", "riscv64", "ppc64le"];

/// How many read-merge-write-verify rounds before giving up.
const MAX_ATTEMPTS: u32 = 16;

fn backoff() -> RetryPolicy {
    RetryPolicy {
        max_attempts: MAX_ATTEMPTS,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(800),
    }
}

/// A `TAG-ARCH` image found in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArchImage {
    pub(crate) arch: String,
    /// Media type, digest, size and platform.
    pub(crate) descriptor: Descriptor,
}

/// What merging the index `TAG` did (`Publisher::publish`, `Publisher::rebuild_index`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexOutcome {
    /// The index reference (`ORG/IMAGE:TAG`).
    pub reference: String,
    /// The index the registry holds now, as verified.
    pub digest: Digest,
    /// Its platforms, sorted.
    pub platforms: Vec<Platform>,
    /// Whether this run wrote it (false: it was complete already).
    pub written: bool,
    /// Read-merge-write rounds used (1 without contention).
    pub attempts: u32,
}

fn platform_key(p: &Platform) -> (String, String) {
    (p.os.clone(), p.architecture.clone())
}

fn is_attestation(d: &Descriptor) -> bool {
    d.platform
        .as_ref()
        .is_some_and(|p| p.os == "unknown" && p.architecture == "unknown")
}

/// The merged list of index entries: `arch_images` replace entries for their (os, arch);
/// everything else in `existing` stays, except attestations of images no longer listed.
/// Sorted by platform, then digest.
pub(crate) fn merge(existing: &[Descriptor], arch_images: &[ArchImage]) -> Vec<Descriptor> {
    let mut out: Vec<Descriptor> = arch_images.iter().map(|a| a.descriptor.clone()).collect();
    let covered: Vec<(String, String)> = out
        .iter()
        .filter_map(|d| d.platform.as_ref().map(platform_key))
        .collect();
    for d in existing.iter().filter(|d| !is_attestation(d)) {
        let replaced = d
            .platform
            .as_ref()
            .is_some_and(|p| covered.contains(&platform_key(p)));
        if !replaced && !out.iter().any(|o| o.digest == d.digest) {
            out.push(d.clone());
        }
    }
    for d in existing.iter().filter(|d| is_attestation(d)) {
        let about = d.annotations.get(REFERENCE_DIGEST);
        let listed = about.is_some_and(|a| out.iter().any(|o| o.digest.as_str() == a));
        if listed && !out.iter().any(|o| o.digest == d.digest) {
            out.push(d.clone());
        }
    }
    out.sort_by(|a, b| {
        let key = |d: &Descriptor| d.platform.as_ref().map(ToString::to_string);
        key(a).cmp(&key(b)).then_with(|| a.digest.cmp(&b.digest))
    });
    out
}

/// The arch images `entries` lacks (by architecture and digest).
pub(crate) fn missing<'a>(
    entries: &[Descriptor],
    arch_images: &'a [ArchImage],
) -> Vec<&'a ArchImage> {
    arch_images
        .iter()
        .filter(|a| {
            !entries.iter().any(|e| {
                e.digest == a.descriptor.digest
                    && e.platform
                        .as_ref()
                        .is_some_and(|p| p.architecture == a.arch)
            })
        })
        .collect()
}

/// The entries of what the registry holds at the index tag: an index's manifests, or a single
/// manifest as one entry (its platform from its config), or nothing.
fn existing_entries(
    remote: &dyn Remote,
    index_ref: &Reference,
    current: Option<&Manifest>,
) -> Result<Vec<Descriptor>> {
    let Some(m) = current else {
        return Ok(Vec::new());
    };
    let bad = |reason: String| PublishError::BadIndex {
        reference: index_ref.to_string(),
        found: m.digest.clone(),
        reason,
    };
    if m.is_index() {
        let idx: ImageIndex = oci::from_json(&m.bytes, format!("index {index_ref}"))
            .map_err(|e| bad(e.to_string()))?;
        return Ok(idx.manifests);
    }
    if !mt::is_manifest(&m.media_type) {
        return Err(bad(format!("media type {}", m.media_type)));
    }
    let manifest: ImageManifest = oci::from_json(&m.bytes, format!("manifest {index_ref}"))
        .map_err(|e| bad(e.to_string()))?;
    let config = remote
        .get_blob(index_ref, &manifest.config.digest)
        .map_err(PublishError::registry(format!(
            "read the config of {index_ref}"
        )))?;
    let config: oci::ImageConfig = oci::from_json(&config, format!("config of {index_ref}"))
        .map_err(|e| bad(e.to_string()))?;
    let mut d = m.descriptor();
    d.platform = config.platform();
    Ok(vec![d])
}

/// What the registry holds at the index tag, and its entries (see [`existing_entries`]).
fn read_index(
    remote: &dyn Remote,
    index_ref: &Reference,
) -> Result<(Option<Manifest>, Vec<Descriptor>)> {
    let current = remote
        .get(index_ref)
        .map_err(PublishError::registry(format!(
            "read the index {index_ref}"
        )))?;
    let existing = existing_entries(remote, index_ref, current.as_ref())?;
    Ok((current, existing))
}

/// Finds the `TAG-ARCH` tags of `index_ref` for `arches`, in parallel. The platform of each
/// comes from `known` (our own pushes, the existing index) when it lists that digest, else
/// `linux/ARCH`.
pub(crate) fn find_arch_images(
    remote: &dyn Remote,
    index_ref: &Reference,
    arches: &[String],
    known: &[Descriptor],
) -> Result<Vec<ArchImage>> {
    let tag = index_ref.tag().unwrap_or("latest");
    let found = crate::parallel::each(
        arches,
        |_| index_ref.to_string(),
        "a registry check",
        |arch| -> Result<Option<ArchImage>> {
            let r = retag(index_ref, &format!("{tag}-{arch}"))?;
            let Some(mut d) = remote
                .head(&r)
                .map_err(PublishError::registry(format!("check {r}")))?
            else {
                return Ok(None);
            };
            if !mt::is_manifest(&d.media_type) {
                // A TAG-ARCH that is itself an index is not one architecture's image.
                tracing::debug!("{r} is {}, not an image manifest; ignored", d.media_type);
                return Ok(None);
            }
            d.platform = known
                .iter()
                .find(|k| k.digest == d.digest && k.platform.is_some())
                .and_then(|k| k.platform.clone())
                .or_else(|| Platform::linux(arch).ok());
            Ok(Some(ArchImage {
                arch: arch.clone(),
                descriptor: d,
            }))
        },
    );
    let mut out = Vec::new();
    for f in found {
        if let Some(a) = f? {
            out.push(a);
        }
    }
    Ok(out)
}

/// The architectures to look for: ours, the index's, and LinuxKit's usual ones.
fn arches_to_search(
    ours: &[ArchImage],
    extra: &[Platform],
    existing: &[Descriptor],
) -> Vec<String> {
    let mut arches: Vec<String> = Vec::new();
    let mut add = |a: &str| {
        if !a.is_empty() && a != "unknown" && !arches.iter().any(|x| x == a) {
            arches.push(a.to_string());
        }
    };
    for a in ours {
        add(&a.arch);
    }
    for p in extra {
        add(p.arch());
    }
    for d in existing {
        if let Some(p) = &d.platform {
            add(&p.architecture);
        }
    }
    for a in SEARCHED_ARCHES {
        add(a);
    }
    arches.retain(|a| KNOWN_ARCHES.contains(&a.as_str()) || ours.iter().any(|o| &o.arch == a));
    arches
}

fn platforms_of(entries: &[Descriptor]) -> Vec<Platform> {
    let mut p: Vec<Platform> = entries
        .iter()
        .filter(|d| !is_attestation(d))
        .filter_map(|d| d.platform.clone())
        .collect();
    p.sort();
    p.dedup();
    p
}

/// How [`publish_index`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// An index that already lists our images is left as it is, without looking for other
    /// `TAG-ARCH` tags (a publisher that writes nothing cannot drop anyone's architecture).
    TrustComplete,
    /// Always look for every `TAG-ARCH` tag (`pkg manifest`).
    SearchTags,
}

/// Makes `index_ref` an index holding every `TAG-ARCH` image in the registry (ours among
/// them: `ours` were pushed as `TAG-ARCH` before this is called) and keeping the existing
/// index's other entries. `also_search` names more architectures to look for (the package's).
pub(crate) fn publish_index(
    remote: &dyn Remote,
    index_ref: &Reference,
    ours: &[ArchImage],
    also_search: &[Platform],
    start: Start,
    events: &dyn EventSink,
) -> Result<IndexOutcome> {
    publish_index_with(remote, index_ref, ours, also_search, start, events, &|_| {})
}

/// The index [`publish_index`] would write for `ours` if the registry did not change before
/// it runs: the index `TAG` holds now, merged with `ours` (`None`: it lists them already, so
/// nothing would be written). A guess, to sign the index while the images upload: it is
/// wrong when another machine adds an architecture meanwhile, and nothing may depend on it.
pub(crate) fn predict(
    remote: &dyn Remote,
    index_ref: &Reference,
    ours: &[ArchImage],
) -> Result<Option<Digest>> {
    let (current, existing) = read_index(remote, index_ref)?;
    if current.as_ref().is_some_and(Manifest::is_index) && missing(&existing, ours).is_empty() {
        return Ok(None);
    }
    let bytes = oci::to_canonical_json(&ImageIndex::new(merge(&existing, ours)))
        .map_err(PublishError::store(format!("encode the index {index_ref}")))?;
    Ok(Some(Digest::sha256(&bytes)))
}

/// An index [`publish_index_with`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IndexWrite {
    /// About to be written (it may still fail).
    Writing(Digest),
    /// Written, not yet verified (the index the outcome names is most likely the last one).
    Written(Digest),
}

/// [`publish_index`], telling `on_write` about each index it writes.
pub(crate) fn publish_index_with(
    remote: &dyn Remote,
    index_ref: &Reference,
    ours: &[ArchImage],
    also_search: &[Platform],
    start: Start,
    events: &dyn EventSink,
    on_write: &(dyn Fn(IndexWrite) + Sync),
) -> Result<IndexOutcome> {
    let policy = backoff();
    // `verifying`: the round after a write, which checks it; `wrote`: for the report.
    let mut verifying = false;
    let mut wrote = false;
    for attempt in 1..=MAX_ATTEMPTS {
        let (current, existing) = read_index(remote, index_ref)?;
        if attempt == 1
            && start == Start::TrustComplete
            && let Some(m) = current.as_ref().filter(|m| m.is_index())
            && missing(&existing, ours).is_empty()
        {
            return Ok(IndexOutcome {
                reference: index_ref.to_string(),
                digest: m.digest.clone(),
                platforms: platforms_of(&existing),
                written: false,
                attempts: 1,
            });
        }
        let known: Vec<Descriptor> = ours
            .iter()
            .map(|a| a.descriptor.clone())
            .chain(existing.iter().cloned())
            .collect();
        let arches = arches_to_search(ours, also_search, &existing);
        let found = find_arch_images(remote, index_ref, &arches, &known)?;
        for o in ours {
            if !found.iter().any(|f| f.arch == o.arch) {
                return Err(PublishError::ArchVanished {
                    reference: index_ref.to_string(),
                    arch: o.arch.clone(),
                    pushed: o.descriptor.digest.clone(),
                });
            }
        }
        if current.is_none() && found.is_empty() {
            return Err(PublishError::NoArchImages {
                reference: index_ref.to_string(),
                searched: arches.join(", "),
            });
        }
        let lacking = missing(&existing, &found);
        if let Some(m) = current
            .as_ref()
            .filter(|m| m.is_index() && lacking.is_empty())
        {
            // Complete as it is (after our write, or written by someone else): done.
            return Ok(IndexOutcome {
                reference: index_ref.to_string(),
                digest: m.digest.clone(),
                platforms: platforms_of(&existing),
                written: wrote,
                attempts: attempt,
            });
        }
        if verifying {
            // Another writer replaced ours between our read and now: merge again.
            let names: Vec<String> = lacking
                .iter()
                .map(|a| format!("{} ({})", a.arch, a.descriptor.digest.short()))
                .collect();
            events.event(PublishEvent::IndexRetry {
                reference: index_ref.to_string(),
                attempt,
                missing: names.join(", "),
            });
            std::thread::sleep(policy.backoff(attempt));
            verifying = false;
            continue;
        }
        let merged = merge(&existing, &found);
        let bytes = oci::to_canonical_json(&ImageIndex::new(merged))
            .map_err(PublishError::store(format!("encode the index {index_ref}")))?;
        on_write(IndexWrite::Writing(Digest::sha256(&bytes)));
        let digest =
            remote
                .put(index_ref, mt::OCI_INDEX, &bytes)
                .map_err(PublishError::registry(format!(
                    "write the index {index_ref}"
                )))?;
        on_write(IndexWrite::Written(digest));
        verifying = true;
        wrote = true;
    }
    // One last look, to name what is still missing.
    let (_, existing) = read_index(remote, index_ref)?;
    let lacking: Vec<String> = missing(&existing, ours)
        .iter()
        .map(|a| a.arch.clone())
        .collect();
    Err(PublishError::IndexRace {
        reference: index_ref.to_string(),
        attempts: MAX_ATTEMPTS,
        missing: if lacking.is_empty() {
            "other architectures".into()
        } else {
            lacking.join(", ")
        },
    })
}

/// A release tag: the package's final index copied to `release_ref` (and its arch images to
/// `RELEASE-ARCH`). A release that exists is only replaced by an index that keeps all of its
/// entries (another machine adding an architecture); otherwise it is left alone and an error
/// says so, as releases are not meant to move.
pub(crate) fn publish_release(
    remote: &dyn Remote,
    index_ref: &Reference,
    release_ref: &Reference,
    index: &IndexOutcome,
    events: &dyn EventSink,
) -> Result<Digest> {
    let policy = backoff();
    for attempt in 1..=MAX_ATTEMPTS {
        let source = remote
            .get(&index_ref.without_tag().with_digest(index.digest.clone()))
            .map_err(PublishError::registry(format!(
                "read the index {index_ref}"
            )))?
            .ok_or_else(|| PublishError::BadIndex {
                reference: index_ref.to_string(),
                found: index.digest.clone(),
                reason: "it disappeared from the registry".into(),
            })?;
        let entries = existing_entries(remote, index_ref, Some(&source))?;
        let current = remote
            .get(release_ref)
            .map_err(PublishError::registry(format!("read {release_ref}")))?;
        if let Some(cur) = &current {
            if cur.digest == source.digest {
                release_arch_tags(remote, release_ref, &entries)?;
                return Ok(cur.digest.clone());
            }
            let old = existing_entries(remote, release_ref, Some(cur))?;
            let keeps_all = old
                .iter()
                .all(|o| entries.iter().any(|e| e.digest == o.digest));
            if !keeps_all {
                return Err(PublishError::ReleaseExists {
                    reference: release_ref.to_string(),
                    existing: cur.digest.clone(),
                    wanted: source.digest.clone(),
                });
            }
        }
        if attempt > 1 {
            events.event(PublishEvent::IndexRetry {
                reference: release_ref.to_string(),
                attempt,
                missing: "the release index was replaced while writing it".into(),
            });
            std::thread::sleep(policy.backoff(attempt));
        }
        remote
            .put(release_ref, &source.media_type, &source.bytes)
            .map_err(PublishError::registry(format!(
                "write the release {release_ref}"
            )))?;
    }
    Err(PublishError::IndexRace {
        reference: release_ref.to_string(),
        attempts: MAX_ATTEMPTS,
        missing: "the release index".into(),
    })
}

/// `RELEASE-ARCH` for each platform entry, unless it already names that image.
fn release_arch_tags(
    remote: &dyn Remote,
    release_ref: &Reference,
    entries: &[Descriptor],
) -> Result<()> {
    let tag = release_ref.tag().unwrap_or("latest");
    let mut by_arch: BTreeMap<&str, &Descriptor> = BTreeMap::new();
    for e in entries.iter().filter(|e| !is_attestation(e)) {
        if let Some(p) = &e.platform {
            by_arch.entry(p.arch()).or_insert(e);
        }
    }
    for (arch, d) in by_arch {
        let r = retag(release_ref, &format!("{tag}-{arch}"))?;
        let current = remote
            .head(&r)
            .map_err(PublishError::registry(format!("check {r}")))?;
        if current.as_ref().is_some_and(|c| c.digest == d.digest) {
            continue;
        }
        let m = remote
            .get(&release_ref.without_tag().with_digest(d.digest.clone()))
            .map_err(PublishError::registry(format!("read {}", d.digest)))?
            .ok_or_else(|| PublishError::BadIndex {
                reference: release_ref.to_string(),
                found: d.digest.clone(),
                reason: format!("its {arch} image is missing from the registry"),
            })?;
        remote
            .put(&r, &m.media_type, &m.bytes)
            .map_err(PublishError::registry(format!("write {r}")))?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "index_tests.rs"]
pub(crate) mod tests;
