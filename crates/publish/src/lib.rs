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
//!    [`KeySource`]: its private half is asked for only when something must be signed, after
//!    the blobs are uploaded and before any manifest is, so it can be decrypted meanwhile and
//!    a key that cannot be unlocked stops the push before anything is tagged.
//!
//! [`Publisher::rebuild_index`] is `pkg manifest`: the index `TAG` from whatever `TAG-ARCH`
//! images the registry holds.
//!
//! # Checking signatures (`oxkit verify`)
//!
//! [`verify_reference`] resolves a tag or digest and reports, for each public key, which
//! signatures verify: cosign simple-signing layers (`.sig` images) and Sigstore bundles
//! (cosign v3) attached as OCI referrers or listed under the `sha256-<hex>` referrers tag.
//!
//! # Trust policies (for the image assembler)
//!
//! ```no_run
//! # fn demo(client: &oxkit_registry::Client, yaml: &oxkit_spec::image_yaml::TrustConfig,
//! #         image: &oxkit_spec::Reference, digest: &oxkit_spec::Digest) -> Result<(), Box<dyn std::error::Error>> {
//! use oxkit_publish::{load_policy_keys, verify_policy};
//! let policy = yaml.policy()?;                                  // from the image YAML
//! let keys = load_policy_keys(&policy, "/path/of/yaml/dir".as_ref(), None)?;
//! let report = verify_policy(client, &policy, &keys, image, digest)?;
//! for k in &report.keys {
//!     println!("{} signed by {} ({:?})", report.reference, k.key, k.over);
//! }
//! # Ok(()) }
//! ```
//!
//! [`verify_policy`] checks that every key the policy requires for `image` signed `digest`
//! (the manifest the assembler is about to use), or the index the image's tag names when that
//! index lists `digest`. The error ([`TrustError`]) names the image, the digest and the key
//! that did not sign, with the reasons each candidate signature was refused. It only reads the
//! registry; call it once per distinct image. Keys come from [`load_policy_keys`] (the policy's
//! `trust.keys` files, relative to the YAML's directory, plus an optional default key).
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
mod trust;
mod verify;

use oxkit_registry::Client;
use oxkit_source::Package;
use oxkit_spec::Digest;
use oxkit_store::Store;

pub use error::{PublishError, Result};
pub use evidence::Evidence;
pub use index::IndexOutcome;
pub use push::{ArchReport, PackageReport, PushOptions, RemotePlan};
pub use signing::{ANNOTATION_PACKAGE_COMMIT, ANNOTATION_PACKAGE_HASH, KeySource, SignOutcome};
pub use trust::{
    KeyVerified, NotSigned, SignedOver, TrustError, TrustReport, load_policy_keys, verify_policy,
};
pub use verify::{ImageVerification, NamedKey, SignatureKind, VerifiedBy, verify_reference};

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
