//! Checking the signatures on an image reference with public keys (what `oxkit verify` does):
//! resolve the tag or digest, collect its signatures (see `evidence`), and report who signed
//! what: key, digest, the signed `docker-reference`, the payload's annotations. For an index,
//! its own signatures; with `recursive`, each child's as well.
//!
//! Verification is offline against the keys given, like `cosign verify --key K
//! --insecure-ignore-tlog`: transparency-log entries and certificates are not consulted.

use std::collections::BTreeMap;

use oxkit_registry::Client;
use oxkit_sign::PublicKey;
use oxkit_spec::{Digest, Platform, Reference};
use oxkit_store::oci::{self, ImageIndex};
use serde::Serialize;

use crate::error::{PublishError, Result};
use crate::evidence;
use crate::remote::Remote;

/// A public key and the name it is reported under (its file, or its name in a policy).
#[derive(Debug, Clone)]
pub struct NamedKey {
    pub name: String,
    pub key: PublicKey,
}

/// The format a verified signature came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureKind {
    /// A layer of cosign's `sha256-<hex>.sig` image (simple signing).
    Cosign,
    /// A Sigstore bundle attached as a referrer (cosign v3).
    SigstoreBundle,
}

/// One signature that verified.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifiedBy {
    /// The key's name.
    pub key: String,
    /// base64(SHA-256(key)), as Sigstore names keys.
    pub key_hint: String,
    pub kind: SignatureKind,
    /// The payload layer, or the bundle's referrer manifest.
    pub evidence: Digest,
    /// The repository the signer named (simple signing only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_reference: Option<String>,
    /// The payload's `optional` annotations (simple signing only).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, serde_json::Value>,
    /// The in-toto predicate type (bundles holding a statement).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicate_type: Option<String>,
}

/// The outcome for one image.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageVerification {
    /// `REPO@DIGEST`.
    pub reference: String,
    pub digest: Digest,
    pub media_type: String,
    /// For a child of an index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    pub signatures: Vec<VerifiedBy>,
    /// Why signatures found did not verify, or could not be read.
    pub problems: Vec<String>,
}

impl ImageVerification {
    /// Whether at least one signature verified.
    pub fn verified(&self) -> bool {
        !self.signatures.is_empty()
    }
}

/// Checks the signatures of what `reference` names (a tag or digest) with `keys`; with
/// `recursive`, also each image an index lists. The first entry is `reference` itself.
/// Registry failures are errors; signatures that do not verify are reported, not errors.
pub fn verify_reference(
    client: &Client,
    reference: &Reference,
    keys: &[NamedKey],
    recursive: bool,
) -> Result<Vec<ImageVerification>> {
    verify_with(client, reference, keys, recursive)
}

pub(crate) fn verify_with(
    remote: &dyn Remote,
    reference: &Reference,
    keys: &[NamedKey],
    recursive: bool,
) -> Result<Vec<ImageVerification>> {
    let top = remote
        .get(reference)
        .map_err(PublishError::registry(format!("verify {reference}")))?
        .ok_or_else(|| PublishError::NotFound {
            reference: reference.to_string(),
        })?;
    let mut targets = vec![(top.digest.clone(), top.media_type.clone(), None)];
    if recursive && top.is_index() {
        let idx: ImageIndex = oci::from_json(&top.bytes, format!("index {reference}"))
            .map_err(PublishError::store(format!("read the index {reference}")))?;
        for m in idx.manifests {
            targets.push((m.digest, m.media_type, m.platform));
        }
    }
    targets
        .into_iter()
        .map(|(digest, media_type, platform)| {
            let ev = evidence::collect(remote, reference, &digest)?;
            Ok(check(reference, digest, media_type, platform, &ev, keys))
        })
        .collect()
}

/// Checks collected evidence against every key.
pub(crate) fn check(
    reference: &Reference,
    digest: Digest,
    media_type: String,
    platform: Option<Platform>,
    ev: &evidence::Evidence,
    keys: &[NamedKey],
) -> ImageVerification {
    let mut out = ImageVerification {
        reference: reference
            .without_tag()
            .with_digest(digest.clone())
            .to_string(),
        digest: digest.clone(),
        media_type,
        platform,
        signatures: Vec::new(),
        problems: ev.problems.clone(),
    };
    let sigs = &ev.signatures;
    if sigs.signature_image.as_ref().is_none_or(|i| i.is_empty()) && sigs.bundles.is_empty() {
        out.problems.push(format!(
            "no signatures found: neither a cosign signature image ({}) nor a Sigstore bundle",
            oxkit_sign::signature_tag(&digest)
        ));
    }
    for k in keys {
        if let Some(img) = &sigs.signature_image {
            match img.verify(&digest, &k.key) {
                Ok(v) => out.signatures.extend(v.into_iter().map(|v| VerifiedBy {
                    key: k.name.clone(),
                    key_hint: k.key.hint(),
                    kind: SignatureKind::Cosign,
                    evidence: v.layer,
                    docker_reference: Some(v.payload.docker_reference),
                    annotations: v.payload.annotations.unwrap_or_default(),
                    predicate_type: None,
                })),
                Err(oxkit_sign::VerifyError::NoSignatures { .. }) => {}
                Err(e) => out.problems.push(format!("key {}: {e}", k.name)),
            }
        }
        for b in &sigs.bundles {
            match b.verify(&digest, &k.key) {
                Ok(v) if v.is_image_signature() => out.signatures.push(VerifiedBy {
                    key: k.name.clone(),
                    key_hint: k.key.hint(),
                    kind: SignatureKind::SigstoreBundle,
                    evidence: b.manifest.clone(),
                    docker_reference: None,
                    annotations: BTreeMap::new(),
                    predicate_type: match v {
                        oxkit_sign::VerifiedBundle::Statement { predicate_type, .. } => {
                            Some(predicate_type)
                        }
                        oxkit_sign::VerifiedBundle::MessageSignature => None,
                    },
                }),
                Ok(_) => out.problems.push(format!(
                    "key {}: bundle {} is an attestation, not an image signature",
                    k.name,
                    b.manifest.short()
                )),
                Err(e) => out.problems.push(format!(
                    "key {}: bundle {}: {e}",
                    k.name,
                    b.manifest.short()
                )),
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
