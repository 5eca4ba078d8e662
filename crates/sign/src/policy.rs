//! Which of the required signers signed an image: the building block for trust policies (the
//! `trust:` section is defined elsewhere; this only evaluates "these named keys must have
//! signed it" against signatures already fetched).
//!
//! A key counts as having signed when a cosign simple-signing signature verifies with it, or a
//! Sigstore bundle does that is an image signature (a message signature over the digest, or a
//! statement with cosign's signing predicate; other attestations are claims, not signatures).

use std::collections::BTreeMap;
use std::fmt;

use oxkit_spec::digest::Digest;
use oxkit_spec::reference::Reference;

use crate::bundle::BundleArtifact;
use crate::keys::PublicKey;
use crate::sigimage::SignatureImage;

/// Signatures found for one image, as fetched by the registry client.
#[derive(Debug, Clone, Default)]
pub struct SignatureEvidence {
    /// The `sha256-<hex>.sig` image, when it exists.
    pub signature_image: Option<SignatureImage>,
    /// Sigstore bundles attached as referrers.
    pub bundles: Vec<BundleArtifact>,
}

/// The outcome for one required key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerStatus {
    /// At least one signature verified with the key.
    Verified {
        /// How many cosign simple-signing signatures verified.
        simple_signing: usize,
        /// How many Sigstore bundles verified.
        bundles: usize,
    },
    /// The policy names a key that was not loaded.
    UnknownKey,
    /// No signature verified with the key; why each candidate failed.
    NotSigned { reasons: Vec<String> },
}

/// One required key and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerOutcome {
    pub key: String,
    pub status: SignerStatus,
}

/// Which required keys signed an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerReport {
    pub reference: String,
    pub digest: Digest,
    pub signers: Vec<SignerOutcome>,
}

impl SignerReport {
    /// Whether every required key signed.
    pub fn is_satisfied(&self) -> bool {
        self.signers
            .iter()
            .all(|s| matches!(s.status, SignerStatus::Verified { .. }))
    }

    /// Names of the required keys that signed.
    pub fn verified(&self) -> impl Iterator<Item = &str> {
        self.signers
            .iter()
            .filter(|s| matches!(s.status, SignerStatus::Verified { .. }))
            .map(|s| s.key.as_str())
    }

    /// Names of the required keys that did not sign (or are unknown).
    pub fn missing(&self) -> impl Iterator<Item = &str> {
        self.signers
            .iter()
            .filter(|s| !matches!(s.status, SignerStatus::Verified { .. }))
            .map(|s| s.key.as_str())
    }
}

impl fmt::Display for SignerReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reference, self.digest)?;
        for s in &self.signers {
            match &s.status {
                SignerStatus::Verified { .. } => write!(f, "; signed by {}", s.key)?,
                SignerStatus::UnknownKey => {
                    write!(f, "; key {} is not defined (add its public key)", s.key)?
                }
                SignerStatus::NotSigned { reasons } if reasons.is_empty() => {
                    write!(f, "; not signed by {} (no signatures found)", s.key)?
                }
                SignerStatus::NotSigned { reasons } => {
                    write!(f, "; not signed by {} ({})", s.key, reasons.join("; "))?
                }
            }
        }
        Ok(())
    }
}

/// Checks which of the `required` key names signed `digest` (the image `reference` resolves to),
/// using the public keys in `keys` and the signatures in `evidence`.
pub fn check_signers(
    reference: &Reference,
    digest: &Digest,
    required: &[String],
    keys: &BTreeMap<String, PublicKey>,
    evidence: &SignatureEvidence,
) -> SignerReport {
    let signers = required
        .iter()
        .map(|name| {
            let Some(key) = keys.get(name) else {
                return SignerOutcome {
                    key: name.clone(),
                    status: SignerStatus::UnknownKey,
                };
            };
            let mut reasons = Vec::new();
            let mut simple_signing = 0;
            if let Some(image) = &evidence.signature_image {
                match image.verify(digest, key) {
                    Ok(v) => simple_signing = v.len(),
                    Err(e) => reasons.push(e.to_string()),
                }
            }
            let mut bundles = 0;
            for b in &evidence.bundles {
                match b.verify(digest, key) {
                    Ok(v) if v.is_image_signature() => bundles += 1,
                    Ok(_) => reasons.push(format!(
                        "bundle {}: an attestation, not an image signature",
                        b.manifest.short()
                    )),
                    Err(e) => reasons.push(format!("bundle {}: {e}", b.manifest.short())),
                }
            }
            let status = if simple_signing + bundles > 0 {
                SignerStatus::Verified {
                    simple_signing,
                    bundles,
                }
            } else {
                SignerStatus::NotSigned { reasons }
            };
            SignerOutcome {
                key: name.clone(),
                status,
            }
        })
        .collect();
    SignerReport {
        reference: reference.canonical(),
        digest: digest.clone(),
        signers,
    }
}

#[cfg(test)]
mod tests;
