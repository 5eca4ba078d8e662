//! Publishing LinuxKit packages to registries, and checking image signatures.
//!
//! # Publishing (`oxkit pkg push`, `oxkit pkg build --push`, `oxkit pkg manifest`)
//!
//! For each package, with a [`Publisher`]:
//!
//! 1. [`Publisher::check_pushable`] refuses a dirty package (one whose sources differ from the
//!    commit) unless the user passed `--force-dirty`, and always refuses to release one.
//! 2. [`Publisher::plan`] asks the registry which `ORG/IMAGE:TAG-ARCH` images exist. Those are
//!    neither built nor pushed again, so a second run uploads nothing.
//! 3. The caller builds the missing architectures into the store (the binary runs the build
//!    engine exactly as `pkg build` does; before it, [`depends::prepare_depends`] saves the
//!    package's `depends.docker-images` into the build context).
//! 4. [`Publisher::publish`] pushes each missing `TAG-ARCH` image, merges the index `TAG` so
//!    that it keeps every architecture any machine pushed (read, merge, write, read back,
//!    retry; see [`IndexOutcome`]), publishes `--release NAME` as `ORG/IMAGE:NAME`, and signs
//!    each `TAG-ARCH` manifest and the index with the key given, appending to cosign's
//!    `sha256-<hex>.sig` signature images (existing signatures are kept). The key is a
//!    [`KeySource`]: its private half is asked for only when something must be signed, while
//!    the blobs upload (it can be decrypted meanwhile), and a key that cannot be unlocked stops
//!    the push before any manifest is tagged.
//!
//! [`Publisher::rebuild_index`] is `pkg manifest`: the index `TAG` from whatever `TAG-ARCH`
//! images the registry holds.
//!
//! # Signing images already in a registry (`oxkit sign`)
//!
//! [`sign_reference`] signs a tag or digest (with `recursive`, an index and every image it
//! lists) the same way publishing signs: read, append, write, read back.
//!
//! # Checking signatures (`oxkit verify`)
//!
//! [`verify_reference`] resolves a tag or digest and reports, for each public key, which
//! signatures verify: cosign simple-signing layers (`.sig` images) and Sigstore bundles
//! (cosign v3) attached as OCI referrers or listed under the `sha256-<hex>` referrers tag.
//!
//! # Signatures for the image assembler's trust policy
//!
//! [`signature_evidence`] fetches what is attached to a digest (the `.sig` image and Sigstore
//! bundles, with why any of it could not be read); `oxkit-assembly` checks it against the
//! keys its `trust:` policy requires (`oxkit_sign::check_signers`).
//!
//! # Where oxkit differs from LinuxKit
//!
//! - A dirty package is refused before anything is built (LinuxKit builds it, then refuses to
//!   push). As in LinuxKit there is no override: `--force-dirty` makes every package dirty.
//! - LinuxKit releases automatically under a git tag pointing at `HEAD`; oxkit releases only
//!   with `--release NAME`. A release tag that names another index is not overwritten (an
//!   error says so); one that lacks architectures this push adds is extended.
//! - `depends.docker-images` are saved as OCI archives rather than `docker save` tarballs.
//! - Docker Content Trust (`NOTRUST`) is gone: images are signed cosign's way, and
//!   `NOTRUST=1` only turns signing off.
//!
//! # Boundaries
//!
//! Every registry request goes through `oxkit-registry`'s client and every key operation
//! through `oxkit-sign`: this crate talks no HTTP and handles no key bytes. It never prints;
//! progress goes to an [`EventSink`], results come back as reports.

pub mod depends;
mod error;
mod evidence;
mod index;
mod parallel;
mod push;
mod remote;
mod signing;
#[cfg(test)]
mod testutil;
mod verify;

use oxkit_registry::Client;
use oxkit_source::Package;
use oxkit_spec::{Digest, Reference};
use oxkit_store::Store;

pub use error::{PublishError, Result};
pub use evidence::Evidence;
pub use index::IndexOutcome;
pub use push::{ArchReport, PackageReport, PushOptions, RemotePlan};
pub use signing::{ANNOTATION_PACKAGE_COMMIT, ANNOTATION_PACKAGE_HASH, KeySource, SignOutcome};
pub use verify::{ImageVerification, NamedKey, SignatureKind, VerifiedBy, verify_reference};

/// The signatures attached to `digest` in `repo`'s repository: cosign's `sha256-<hex>.sig`
/// image and Sigstore bundles attached as referrers (or under the referrers tag). Signature
/// images and bundles that cannot be used are recorded in [`Evidence::problems`]; failing to
/// reach the registry is an error.
pub fn signature_evidence(client: &Client, repo: &Reference, digest: &Digest) -> Result<Evidence> {
    evidence::collect(client, repo, digest)
}

/// Signs the image `reference` names (what `oxkit sign` does): its digest, and with
/// `recursive` every image an index lists, each appended to its `sha256-<hex>.sig` signature
/// image (signatures there are kept; one this key made over the same payload is not added
/// again). `annotations` become the payloads' `optional` entries. A reference the registry
/// does not have is an error.
pub fn sign_reference(
    client: &Client,
    reference: &Reference,
    key: &dyn KeySource,
    annotations: &std::collections::BTreeMap<String, String>,
    recursive: bool,
    events: &dyn EventSink,
) -> Result<Vec<SignOutcome>> {
    signing::sign_reference_with(client, reference, key, annotations, recursive, events)
}

/// What publishing reports while it works (the binary turns these into progress lines).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishEvent {
    /// An architecture's image was pushed as `TAG-ARCH`.
    ArchPushed { reference: String, digest: Digest },
    /// Another writer replaced the index (or release) between our write and its check.
    IndexRetry {
        reference: String,
        attempt: u32,
        missing: String,
    },
    /// Another writer replaced the signature image between our write and its check.
    SignatureRetry { reference: String, attempt: u32 },
}

/// Receives [`PublishEvent`]s.
pub trait EventSink: Sync {
    fn event(&self, event: PublishEvent);
}

/// An [`EventSink`] that drops everything.
pub struct NoEvents;

impl EventSink for NoEvents {
    fn event(&self, _event: PublishEvent) {}
}

/// Publishes packages from a store to their registries.
#[derive(Clone, Copy)]
pub struct Publisher<'a> {
    pub client: &'a Client,
    pub store: &'a Store,
    pub events: &'a dyn EventSink,
}

/// What `pkg manifest` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestReport {
    pub index: IndexOutcome,
    pub release: Option<(String, Digest)>,
    pub signatures: Vec<SignOutcome>,
}

impl Publisher<'_> {
    /// `pkg manifest`: makes the index `TAG` from every `TAG-ARCH` image the registry holds
    /// (keeping the existing index's other entries), optionally releases it as `release` and
    /// signs the index with `key`.
    pub fn rebuild_index(
        &self,
        pkg: &Package,
        release: Option<&str>,
        key: Option<&dyn KeySource>,
    ) -> Result<ManifestReport> {
        let index = index::publish_index(
            self.client,
            pkg.reference(),
            &[],
            &pkg.spec.platforms(),
            index::Start::SearchTags,
            self.events,
        )?;
        let release = match release {
            Some(name) => {
                let rel = remote::retag(pkg.reference(), name)?;
                let d = index::publish_release(
                    self.client,
                    pkg.reference(),
                    &rel,
                    &index,
                    self.events,
                )?;
                Some((rel.to_string(), d))
            }
            None => None,
        };
        let signatures = match key {
            Some(key) => vec![
                signing::Signer {
                    remote: self.client,
                    repo: pkg.reference(),
                    key,
                    annotations: &push::package_annotations(pkg),
                    events: self.events,
                }
                .sign(&index.digest)?,
            ],
            None => Vec::new(),
        };
        Ok(ManifestReport {
            index,
            release,
            signatures,
        })
    }
}
