//! Whole images between the local store and a registry, on top of [`Client`]:
//!
//! - [`push`]: an image (manifest, or index with all its children) from the store to a
//!   registry reference, uploading only the blobs the registry lacks, children before the
//!   manifests that name them;
//! - [`pull`]: a reference into the store, only the platforms asked for, every blob verified
//!   while it streams into the store's blob writer and committed only when it matches.
//!
//! A store lease is held throughout, so garbage collection cannot remove blobs mid-way. This
//! module does not print; it returns reports.

mod pull;
mod push;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use oxkit_spec::{Digest, Platform};
use oxkit_store::oci::Descriptor;

pub use pull::pull;
pub use push::push;

use crate::client::Client;
use crate::error::{Error, Result};

/// Which platforms of a multi-platform image to pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Platforms {
    /// Every platform; the index is stored byte-exact under the reference.
    All,
    /// These platforms of an index. One platform stores that platform's manifest under the
    /// reference; several store a new index over just them. A single-platform image is
    /// pulled as it is, whatever its platform.
    Only(Vec<Platform>),
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushReport {
    /// The pushed manifest or index, as the registry now serves it.
    pub descriptor: Descriptor,
    /// Blobs whose bytes were sent.
    pub uploaded: usize,
    /// Bytes sent for them.
    pub uploaded_bytes: u64,
    /// Blobs mounted from another repository.
    pub mounted: usize,
    /// Blobs the registry had already.
    pub existing: usize,
    /// Manifests and indexes put (children and the top one).
    pub manifests: usize,
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullReport {
    /// What the local reference now names.
    pub descriptor: Descriptor,
    /// The digest of what the remote reference named (an index when only some platforms
    /// were pulled: then it differs from `descriptor`).
    pub remote_digest: Digest,
    /// Blobs downloaded (manifests included).
    pub fetched: usize,
    /// Bytes downloaded.
    pub fetched_bytes: u64,
    /// Blobs the store had already.
    pub present: usize,
}

/// Runs `job` over `items` on at most `workers` threads; the first error stops the rest
/// (they are skipped, not interrupted). Results are in `items` order.
pub(crate) fn parallel<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    job: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let slots: Vec<Mutex<Option<Result<R>>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..workers.clamp(1, items.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= items.len() || stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let r = job(&items[i]);
                    if r.is_err() {
                        stop.store(true, Ordering::SeqCst);
                    }
                    *slots[i]
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(r);
                }
            });
        }
    });
    let mut out = Vec::with_capacity(items.len());
    for slot in slots {
        match slot
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            Some(Ok(r)) => out.push(r),
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    if out.len() != items.len() {
        return Err(Error::Cancelled {
            what: "transfer".into(),
        });
    }
    Ok(out)
}

impl Client {
    /// Convenience for [`push`].
    pub fn push_image(
        &self,
        store: &oxkit_store::Store,
        local: &oxkit_spec::Reference,
        remote: &oxkit_spec::Reference,
    ) -> Result<PushReport> {
        push(self, store, local, remote)
    }

    /// Convenience for [`pull`].
    pub fn pull_image(
        &self,
        store: &oxkit_store::Store,
        remote: &oxkit_spec::Reference,
        platforms: &Platforms,
    ) -> Result<PullReport> {
        pull(self, store, remote, platforms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_keeps_order_and_stops_on_error() {
        let items: Vec<u32> = (0..20).collect();
        let out = parallel(&items, 4, |i| Ok(i * 2)).unwrap();
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        let e = parallel(&items, 3, |i| {
            if *i == 5 {
                Err(Error::Cancelled {
                    what: "five".into(),
                })
            } else {
                Ok(*i)
            }
        })
        .unwrap_err();
        assert!(e.to_string().contains("five"), "{e}");
        assert!(
            parallel(&Vec::<u32>::new(), 4, |i| Ok(*i))
                .unwrap()
                .is_empty()
        );
    }
}
