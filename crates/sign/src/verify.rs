//! Verifying cosign's simple-signing signatures (the `sha256-<hex>.sig` image) with a public key,
//! as `cosign verify --key K --insecure-ignore-tlog` does: each layer's blob matches its
//! descriptor, the signature verifies over the payload bytes, and the payload names the
//! expected image digest.
//!
//! Transparency-log entries, certificates and timestamps in the annotations are not checked:
//! oxkit verifies against keys it was given, offline.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use oxkit_spec::digest::Digest;

use crate::keys::{PublicKey, SignatureError};
use crate::payload::{SIMPLE_SIGNING_MEDIA_TYPE, SimpleSigningPayload};
use crate::sigimage::{Descriptor, SIGNATURE_ANNOTATION, SignatureImage, SignatureImageError};

/// A signature layer that verified.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedSignature {
    /// The payload layer's digest.
    pub layer: Digest,
    /// What was signed: identity, image digest, annotations.
    pub payload: SimpleSigningPayload,
}

/// Why one signature layer does not count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("media type {0} is not a cosign simple-signing payload")]
    NotSimpleSigning(String),
    #[error("no {SIGNATURE_ANNOTATION} annotation")]
    MissingSignature,
    #[error("the {SIGNATURE_ANNOTATION} annotation is not base64")]
    SignatureNotBase64,
    #[error("{0}")]
    Signature(SignatureError),
    #[error("{0}")]
    BadPayload(String),
    #[error("the payload signs {found}, not {expected} (a signature for another image)")]
    OtherDigest { expected: Digest, found: Digest },
}

/// A rejected layer: its position, digest and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedLayer {
    pub index: usize,
    pub layer: Digest,
    pub reason: Rejection,
}

impl fmt::Display for RejectedLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "layer {} ({}): {}",
            self.index,
            self.layer.short(),
            self.reason
        )
    }
}

/// Why verification failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Image(#[from] SignatureImageError),
    #[error("{image} has no cosign signatures (the signature image has no layers)")]
    NoSignatures { image: Digest },
    #[error(
        "no signature on {image} verifies with key {key_hint}: {}",
        rejected.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    NoneVerified {
        image: Digest,
        key_hint: String,
        rejected: Vec<RejectedLayer>,
    },
}

impl VerifyError {
    /// The per-layer reasons, when verification got that far.
    pub fn rejections(&self) -> &[RejectedLayer] {
        match self {
            Self::NoneVerified { rejected, .. } => rejected,
            _ => &[],
        }
    }
}

fn check_layer(
    descriptor: &Descriptor,
    payload: &[u8],
    image: &Digest,
    key: &PublicKey,
) -> Result<SimpleSigningPayload, Rejection> {
    if descriptor.media_type != SIMPLE_SIGNING_MEDIA_TYPE {
        return Err(Rejection::NotSimpleSigning(descriptor.media_type.clone()));
    }
    let b64 = descriptor
        .annotations
        .get(SIGNATURE_ANNOTATION)
        .ok_or(Rejection::MissingSignature)?;
    let sig = STANDARD
        .decode(b64.trim())
        .map_err(|_| Rejection::SignatureNotBase64)?;
    // Signature first, claims second, as cosign does: an unsigned payload says nothing.
    key.verify(payload, &sig).map_err(Rejection::Signature)?;
    let parsed =
        SimpleSigningPayload::parse(payload).map_err(|e| Rejection::BadPayload(e.to_string()))?;
    if &parsed.manifest_digest != image {
        return Err(Rejection::OtherDigest {
            expected: image.clone(),
            found: parsed.manifest_digest,
        });
    }
    Ok(parsed)
}

impl SignatureImage {
    /// The signatures on `image` that verify with `key`; an error listing every layer's reason
    /// when none does.
    pub fn verify(
        &self,
        image: &Digest,
        key: &PublicKey,
    ) -> Result<Vec<VerifiedSignature>, VerifyError> {
        if self.layers.is_empty() {
            return Err(VerifyError::NoSignatures {
                image: image.clone(),
            });
        }
        let mut verified = Vec::new();
        let mut rejected = Vec::new();
        for (index, (descriptor, payload)) in self.layers().enumerate() {
            match check_layer(descriptor, payload, image, key) {
                Ok(payload) => verified.push(VerifiedSignature {
                    layer: descriptor.digest.clone(),
                    payload,
                }),
                Err(reason) => rejected.push(RejectedLayer {
                    index,
                    layer: descriptor.digest.clone(),
                    reason,
                }),
            }
        }
        if verified.is_empty() {
            return Err(VerifyError::NoneVerified {
                image: image.clone(),
                key_hint: key.hint(),
                rejected,
            });
        }
        Ok(verified)
    }
}

/// Verifies a `.sig` manifest fetched from a registry: fetches each layer blob with `fetch`,
/// checks it against its descriptor, then verifies the signatures on `image` with `key`.
/// A blob that does not match its descriptor fails the whole check (the registry or the
/// signature image cannot be trusted), as does a manifest that cannot be parsed.
pub fn verify_signature_image<E>(
    manifest: &[u8],
    fetch: impl FnMut(&Descriptor) -> Result<Vec<u8>, E>,
    image: &Digest,
    key: &PublicKey,
) -> Result<Vec<VerifiedSignature>, VerifyError>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    SignatureImage::fetch(manifest, fetch)?.verify(image, key)
}

#[cfg(test)]
mod tests;
