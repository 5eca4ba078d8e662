//! Enforcing the YAML's `trust:` policy before anything is assembled: every image a rule
//! covers must carry, in its registry, a signature by each key the rules name (a cosign
//! `sha256-<hex>.sig` signature image, or a Sigstore bundle attached as a referrer), over the
//! image being built. Verification itself is `oxkit-sign`'s; fetching goes through
//! [`SignatureSource`] (for a registry, `oxkit-publish`'s, the same as `oxkit verify`'s).
//!
//! "The image being built" is the platform manifest in the store (for a `format: oci` volume,
//! the index it holds whole, or each manifest it holds of one). A signature over it counts,
//! and so does one over the registry's index for the reference when that index lists it
//! (`cosign sign` on a multi-platform tag signs the index). An image the registry cannot
//! vouch for (absent there, unreachable, or different from the store's copy) fails the build,
//! naming the image, its digest and the key. `--no-verify` skips all of this; the caller
//! then warns about each image it did not check.

use std::collections::BTreeMap;
use std::path::PathBuf;

use oxkit_publish::Evidence;
use oxkit_sign::{PublicKey, check_signers, load_public_key};
use oxkit_spec::image_yaml::DEFAULT_KEY;
use oxkit_spec::{Digest, Reference};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::images::{BoxError, ImageUse, ResolvedImages};
use crate::remote::RegistryRemote;

/// Signature and manifest reads, backed by a registry.
pub trait SignatureSource {
    /// The digest `reference` names in its registry, and the manifests it lists when that is
    /// an index.
    fn remote(&self, reference: &Reference) -> Result<(Digest, Vec<Digest>), BoxError>;
    /// The signatures attached to `digest` in `reference`'s repository, and why any could
    /// not be used.
    fn signatures(&self, reference: &Reference, digest: &Digest) -> Result<Evidence, BoxError>;
}

impl SignatureSource for RegistryRemote {
    fn remote(&self, reference: &Reference) -> Result<(Digest, Vec<Digest>), BoxError> {
        let m = self.client().get_manifest(reference)?;
        let children = if m.is_index() {
            let index: oxkit_store::oci::ImageIndex =
                oxkit_store::oci::from_json(&m.bytes, format!("index {reference}"))?;
            index.manifests.into_iter().map(|d| d.digest).collect()
        } else {
            Vec::new()
        };
        Ok((m.digest, children))
    }

    fn signatures(&self, reference: &Reference, digest: &Digest) -> Result<Evidence, BoxError> {
        Ok(oxkit_publish::signature_evidence(
            self.client(),
            reference,
            digest,
        )?)
    }
}

/// Checks every image the policy covers; with `no_verify`, checks nothing and returns the
/// covered images (`REF (DIGEST)`) for the caller's warning.
pub fn enforce(
    config: &Config,
    images: &ResolvedImages,
    source: &dyn SignatureSource,
    no_verify: bool,
) -> Result<Vec<String>> {
    let policy = config.yaml.trust.policy()?;
    if policy.is_empty() {
        return Ok(Vec::new());
    }
    let mut keys: BTreeMap<String, PublicKey> = BTreeMap::new();
    let mut unverified = Vec::new();
    // The images built from, and what each `format: oci` volume holds (each chosen manifest).
    let mut checks: Vec<(&ImageUse, Digest)> = images
        .distinct()
        .into_iter()
        .map(|(u, img)| (u, img.manifest.digest.clone()))
        .collect();
    for (u, l) in images.layouts() {
        checks.extend(l.digests().into_iter().map(|d| (u, d.clone())));
    }
    for (u, local) in &checks {
        let required: Vec<String> = policy
            .required_keys(&u.reference)
            .into_iter()
            .map(str::to_string)
            .collect();
        if required.is_empty() {
            continue;
        }
        if no_verify {
            unverified.push(format!("{} ({local})", u.reference));
            continue;
        }
        let rules = policy
            .matching_rules(&u.reference)
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let fail = |message: String| Error::Trust {
            message: format!(
                "{}: {}: image {} ({local}): {message} (required by the trust rule at {rules}); \
                 pass --no-verify to build without checking",
                u.loc, u.what, u.reference
            ),
        };
        for name in &required {
            if keys.contains_key(name) {
                continue;
            }
            let Some(k) = policy.keys().find(|k| &k.name == name) else {
                return Err(fail(format!(
                    "the policy requires key {name:?}, which trust.keys does not define{}",
                    if name == DEFAULT_KEY {
                        " (oxkit build has no default key: define it)"
                    } else {
                        ""
                    }
                )));
            };
            let path: PathBuf = config.resolve_path(&k.loc, &k.path, None);
            let key = load_public_key(&path).map_err(|e| Error::Trust {
                message: format!("{}: trust.keys.{name}: {e}", k.loc),
            })?;
            keys.insert(name.clone(), key);
        }
        let (top, children) = source.remote(&u.reference).map_err(|e| {
            fail(format!(
                "cannot read it from its registry to check its signatures: {e}"
            ))
        })?;
        // The digests whose signatures vouch for the local image.
        let mut candidates = vec![local.clone()];
        if top != *local {
            if !children.contains(local) {
                return Err(fail(format!(
                    "the registry's {} is {top}, not the image in the store; pull it again (--pull)",
                    u.reference
                )));
            }
            candidates.push(top);
        }
        let mut reports = Vec::new();
        let mut ok = false;
        for d in &candidates {
            let evidence = source
                .signatures(&u.reference, d)
                .map_err(|e| fail(format!("cannot fetch the signatures of {d}: {e}")))?;
            let report = check_signers(&u.reference, d, &required, &keys, &evidence.signatures);
            if report.is_satisfied() {
                ok = true;
                break;
            }
            // The report starts with "REF (DIGEST); ", which the message already says for
            // the local digest.
            let text = report.to_string();
            let prefix = format!("{} ({local}); ", report.reference);
            let mut text = text.strip_prefix(&prefix).unwrap_or(&text).to_string();
            // What made signatures there unusable (a blob that is not its digest, a broken
            // bundle) is the likely reason.
            for p in &evidence.problems {
                text.push_str(&format!("; {p}"));
            }
            reports.push(text);
        }
        if !ok {
            return Err(fail(format!(
                "signature check failed: {}",
                reports.join("; ")
            )));
        }
    }
    Ok(unverified)
}
