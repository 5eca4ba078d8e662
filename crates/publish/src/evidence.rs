//! Fetching the signatures attached to an image digest in a registry: cosign's
//! `sha256-<hex>.sig` signature image (every layer blob checked against its descriptor) and
//! Sigstore bundles attached as OCI referrers (or listed under the `sha256-<hex>` referrers tag
//! on registries without the referrers API). Checking them against keys is `oxkit-sign`'s job.
//!
//! A signature image or bundle that cannot be read (a blob that does not match its digest, a
//! malformed manifest) is not fatal here: it is recorded as a problem, so the caller can say
//! why nothing verified. Failing to reach the registry at all is an error.

use oxkit_sign::bundle::BundleArtifact;
use oxkit_sign::policy::SignatureEvidence;
use oxkit_sign::{SignatureImage, signature_tag};
use oxkit_spec::{Digest, Reference};
use oxkit_store::oci::media_type as mt;

use crate::error::{PublishError, Result};
use crate::remote::{Remote, retag};

/// The signatures found for one digest, and what could not be read.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub signatures: SignatureEvidence,
    /// Why a signature image or bundle could not be used, one line each.
    pub problems: Vec<String>,
}

const BUNDLE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";

fn maybe_bundle(d: &oxkit_store::oci::Descriptor) -> bool {
    d.media_type == mt::OCI_MANIFEST
        && d.artifact_type
            .as_deref()
            .is_none_or(|t| t.starts_with(BUNDLE_PREFIX) || t == mt::OCI_EMPTY)
}

/// Collects the signatures on `digest` in `repo`'s repository.
pub(crate) fn collect(remote: &dyn Remote, repo: &Reference, digest: &Digest) -> Result<Evidence> {
    let repo = repo.without_tag();
    let image = repo.with_digest(digest.clone());
    let mut ev = Evidence::default();
    let tag = signature_tag(digest);
    let sig_ref = retag(&repo, &tag)?;
    match remote
        .get(&sig_ref)
        .map_err(PublishError::registry(format!(
            "read the signatures of {image}"
        )))? {
        None => {}
        Some(m) => match SignatureImage::fetch(&m.bytes, |d| remote.get_blob(&repo, &d.digest)) {
            Ok(img) => ev.signatures.signature_image = Some(img),
            Err(e) => ev.problems.push(format!(
                "signature image {}:{tag} ({}) is unusable: {e}",
                repo.name(),
                m.digest
            )),
        },
    }
    let referrers = match remote.referrers(&repo, digest) {
        Ok(r) => r,
        Err(e) => {
            // The referrers listing is a second source; the .sig image may still verify.
            ev.problems
                .push(format!("cannot list the referrers of {image}: {e}"));
            Vec::new()
        }
    };
    for d in referrers.iter().filter(|d| maybe_bundle(d)) {
        let at = repo.with_digest(d.digest.clone());
        let m = match remote.get(&at) {
            Ok(Some(m)) => m,
            Ok(None) => {
                ev.problems.push(format!(
                    "referrer {at} is listed but missing from the registry"
                ));
                continue;
            }
            Err(e) => {
                ev.problems.push(format!("cannot read referrer {at}: {e}"));
                continue;
            }
        };
        match BundleArtifact::fetch(&m.bytes, digest, |l| remote.get_blob(&repo, &l.digest)) {
            Ok(b) => ev.signatures.bundles.push(b),
            // Other artifacts (SBOMs, attestations in other formats) are not signatures;
            // only a referrer that says it is a bundle is worth a complaint.
            Err(e)
                if d.artifact_type
                    .as_deref()
                    .is_some_and(|t| t.starts_with(BUNDLE_PREFIX)) =>
            {
                ev.problems
                    .push(format!("Sigstore bundle {at} is unusable: {e}"))
            }
            Err(e) => tracing::debug!("referrer {at} is not a Sigstore bundle: {e}"),
        }
    }
    Ok(ev)
}
