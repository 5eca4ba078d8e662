//! Pulling a reference into the store: the manifests needed for the platforms asked for,
//! then their blobs (in parallel, each streamed into a verifying blob writer), then the
//! manifests themselves, and last the tag, so the store never names an incomplete image.

use oxkit_spec::{Platform, Reference};
use oxkit_store::Store;
use oxkit_store::oci::{
    self, Descriptor, ImageIndex, ImageManifest, media_type as mt, normalize_platform,
};

use super::{Platforms, PullReport, parallel};
use crate::client::{Client, Manifest};
use crate::error::{Error, Result};

/// How deep nested indexes are followed.
const MAX_DEPTH: usize = 4;

#[derive(Default)]
struct Plan {
    /// Manifests and indexes to store, in the order found (parents first).
    documents: Vec<Manifest>,
    /// Blobs to fetch, each once.
    blobs: Vec<Descriptor>,
}

impl Plan {
    fn add_blob(&mut self, d: &Descriptor) {
        if mt::is_non_distributable(&d.media_type)
            || self.blobs.iter().any(|b| b.digest == d.digest)
        {
            return;
        }
        self.blobs.push(d.clone());
    }

    fn add_document(&mut self, m: Manifest) {
        if !self.documents.iter().any(|d| d.digest == m.digest) {
            self.documents.push(m);
        }
    }
}

fn platform_of(d: &Descriptor) -> Option<Platform> {
    let p = d.platform.as_ref()?;
    normalize_platform(&p.os, &p.architecture, p.variant.as_deref())
}

fn normalized(p: &Platform) -> Platform {
    normalize_platform(&p.os, &p.architecture, p.variant.as_deref()).unwrap_or_else(|| p.clone())
}

/// What the local name will point at.
enum Target {
    /// What the remote reference names, or one platform's manifest of it.
    Existing(Descriptor),
    /// A new index over several platforms' manifests.
    NewIndex(Vec<Descriptor>),
}

#[derive(Default)]
struct Counters {
    fetched: usize,
    fetched_bytes: u64,
    present: usize,
}

/// Pulls `remote` into `store` and tags it `remote`. See [`Platforms`] for what is kept of a
/// multi-platform image. Every blob is verified before it enters the store.
pub fn pull(
    client: &Client,
    store: &Store,
    remote: &Reference,
    platforms: &Platforms,
) -> Result<PullReport> {
    let _lease = store.lease()?;
    let top = client.get_manifest(remote)?;
    let remote_digest = top.digest.clone();
    let mut plan = Plan::default();
    let target = match platforms {
        Platforms::Only(wanted) if top.is_index() => {
            let index: ImageIndex = oci::from_json(&top.bytes, format!("image index {remote}"))?;
            let mut chosen: Vec<Descriptor> = Vec::new();
            for w in wanted {
                let w = normalized(w);
                let Some(child) = find_platform(client, remote, &index, &w, 0)? else {
                    return Err(oxkit_store::Error::NoPlatform {
                        reference: remote.to_string(),
                        wanted: w,
                        available: index.manifests.iter().filter_map(platform_of).collect(),
                    }
                    .into());
                };
                if !chosen.iter().any(|c| c.digest == child.digest) {
                    chosen.push(child);
                }
            }
            for c in &chosen {
                let m = client.get_manifest(&remote.without_tag().with_digest(c.digest.clone()))?;
                add_tree(client, remote, m, &mut plan, 1)?;
            }
            match <[Descriptor; 1]>::try_from(chosen) {
                Ok([one]) => Target::Existing(one),
                Err(several) => Target::NewIndex(several),
            }
        }
        _ => {
            let d = top.descriptor();
            add_tree(client, remote, top, &mut plan, 0)?;
            Target::Existing(d)
        }
    };
    let mut counters = Counters::default();
    fetch_all(client, store, remote, &plan, &mut counters)?;
    // Children before parents, so a stored manifest never names something absent.
    for m in plan.documents.iter().rev() {
        if store.has_blob(&m.digest) {
            counters.present += 1;
        } else {
            store.write_blob_expecting(&m.bytes, &m.digest)?;
            counters.fetched += 1;
            counters.fetched_bytes += m.bytes.len() as u64;
        }
    }
    let descriptor = match target {
        Target::Existing(d) => {
            store.tag(remote, d.clone())?;
            d
        }
        Target::NewIndex(ds) => store.put_index_for(remote, ds)?,
    };
    Ok(PullReport {
        descriptor,
        remote_digest,
        fetched: counters.fetched,
        fetched_bytes: counters.fetched_bytes,
        present: counters.present,
    })
}

/// Downloads every blob of the plan the store lacks, several at once.
fn fetch_all(
    client: &Client,
    store: &Store,
    remote: &Reference,
    plan: &Plan,
    counters: &mut Counters,
) -> Result<()> {
    let missing: Vec<&Descriptor> = plan
        .blobs
        .iter()
        .filter(|d| !store.has_blob(&d.digest))
        .collect();
    counters.present += plan.blobs.len() - missing.len();
    let workers = client.options().max_concurrent_uploads;
    let sizes = parallel(&missing, workers, |d| {
        let mut w = store.blob_writer_expecting(&d.digest, Some(d.size))?;
        let n = client.pull_blob(remote, &d.digest, Some(d.size), &mut w)?;
        w.commit()?;
        Ok(n)
    })?;
    counters.fetched += sizes.len();
    counters.fetched_bytes += sizes.iter().sum::<u64>();
    Ok(())
}

/// Adds a manifest (its config and layers) or an index (all its children) to the plan.
fn add_tree(
    client: &Client,
    remote: &Reference,
    m: Manifest,
    plan: &mut Plan,
    depth: usize,
) -> Result<()> {
    if m.is_index() {
        if depth >= MAX_DEPTH {
            return Err(Error::Protocol {
                what: format!("pull {remote}"),
                url: String::new(),
                reason: format!("image indexes nested more than {MAX_DEPTH} deep"),
            });
        }
        let index: ImageIndex = oci::from_json(&m.bytes, format!("image index {}", m.digest))?;
        plan.add_document(m);
        for child in &index.manifests {
            if !(mt::is_index(&child.media_type) || mt::is_manifest(&child.media_type)) {
                // Not an image (an artifact blob listed in an index): fetch it as a blob.
                plan.add_blob(child);
                continue;
            }
            let cm =
                client.get_manifest(&remote.without_tag().with_digest(child.digest.clone()))?;
            add_tree(client, remote, cm, plan, depth + 1)?;
        }
        return Ok(());
    }
    let manifest: ImageManifest = oci::from_json(&m.bytes, format!("manifest {}", m.digest))?;
    plan.add_blob(&manifest.config);
    for l in &manifest.layers {
        plan.add_blob(l);
    }
    plan.add_document(m);
    Ok(())
}

/// The child of `index` for platform `w`, looking into nested indexes without a platform.
fn find_platform(
    client: &Client,
    remote: &Reference,
    index: &ImageIndex,
    w: &Platform,
    depth: usize,
) -> Result<Option<Descriptor>> {
    for child in &index.manifests {
        match platform_of(child) {
            Some(p) if &p == w && !mt::is_index(&child.media_type) => {
                let mut c = child.clone();
                c.platform = Some(p);
                return Ok(Some(c));
            }
            None if mt::is_index(&child.media_type) && depth < MAX_DEPTH => {
                let nested =
                    client.get_manifest(&remote.without_tag().with_digest(child.digest.clone()))?;
                let idx: ImageIndex =
                    oci::from_json(&nested.bytes, format!("image index {}", nested.digest))?;
                if let Some(found) = find_platform(client, remote, &idx, w, depth + 1)? {
                    return Ok(Some(found));
                }
            }
            _ => {}
        }
    }
    Ok(None)
}
