//! cosign-compatible signing for oxkit: the only crate that touches keys.
//!
//! - [`keys`]/[`keyfile`]: ECDSA P-256 keys in cosign's encrypted PEM format, PKCS#8/SEC1 import,
//!   PKIX public keys; [`Passphrase`] is the redacted, zeroized secret that unlocks them.
//! - [`payload`]: cosign's simple-signing payload, byte-identical to cosign's.
//! - [`sigimage`]: the `sha256-<hex>.sig` signature image (build, merge, serialise).
//! - [`verify`]: checking those signatures with a public key; [`bundle`]: checking Sigstore
//!   bundles (cosign v3) attached as OCI referrers; [`policy`]: which required keys signed.
//!
//! This crate must not talk HTTP: it takes and returns bytes, and the registry client moves
//! them. It never prints, and never puts key material or passphrases in errors.

pub mod bundle;
mod encrypted;
mod gojson;
pub mod keyfile;
pub mod keyring;
pub mod keys;
mod passphrase;
pub mod payload;
mod pem;
pub mod policy;
pub mod sigimage;
#[cfg(test)]
mod testutil;
pub mod verify;

pub use bundle::{BundleArtifact, BundleError, VerifiedBundle, verify_bundle};
pub use encrypted::EncryptedError;
pub use keyfile::{
    KeyPairPaths, load_plain_signing_key, load_public_key, load_signing_key, write_key_pair,
};
pub use keys::{KeyError, PublicKey, SignatureError, SigningKey};
pub use passphrase::Passphrase;
pub use payload::SimpleSigningPayload;
pub use pem::PemError;
pub use policy::{SignatureEvidence, SignerReport, SignerStatus, check_signers};
pub use sigimage::{SignatureImage, SignatureImageError, signature_tag};
pub use verify::{VerifiedSignature, VerifyError, verify_signature_image};

/// Signs an image in cosign's format: the simple-signing payload for `reference`'s repository
/// at `digest` (with `annotations`), and the DER signature over it. Append both to the image's
/// [`SignatureImage`].
pub fn sign_image(
    key: &SigningKey,
    reference: &oxkit_spec::reference::Reference,
    digest: oxkit_spec::digest::Digest,
    annotations: impl IntoIterator<Item = (String, String)>,
) -> SignedPayload {
    let mut payload = SimpleSigningPayload::new(reference, digest);
    for (k, v) in annotations {
        payload = payload.with_annotation(k, v);
    }
    let bytes = payload.to_bytes();
    let signature = key.sign(&bytes);
    SignedPayload {
        payload: bytes,
        signature,
    }
}

/// A payload and its signature, as [`sign_image`] makes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPayload {
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}
