//! Sigstore bundles (cosign v3's signature format): verifying one with a public key, and reading
//! the OCI referrer artifact that carries it.
//!
//! cosign attaches a bundle (`application/vnd.dev.sigstore.bundle.v0.3+json`) as the single
//! layer of an OCI 1.1 referrer manifest whose `subject` is the signed image; a registry without
//! the referrers API gets an index under the fallback tag `sha256-<hex>` listing those
//! manifests. The bundle holds either a `messageSignature` (a signature over the image manifest
//! digest) or a DSSE envelope whose in-toto statement names the image digest as a subject
//! (`cosign sign --new-bundle-format` uses predicate type `https://sigstore.dev/cosign/sign/v1`).
//!
//! Checked here: the signature with the given key, and that the image digest is what was signed.
//! Not checked: transparency-log entries, certificates, timestamps (verification is offline,
//! against keys, like `--insecure-ignore-tlog`).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use oxkit_spec::digest::Digest;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::keys::{PublicKey, SignatureError};
use crate::sigimage::Descriptor;

/// Media type of a v0.3 Sigstore bundle (what cosign attaches).
pub const BUNDLE_MEDIA_TYPE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const BUNDLE_MEDIA_PREFIX: &str = "application/vnd.dev.sigstore.bundle";
/// The in-toto predicate type of an image signature made by `cosign sign --new-bundle-format`.
pub const COSIGN_SIGN_PREDICATE_TYPE: &str = "https://sigstore.dev/cosign/sign/v1";
/// DSSE payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
const STATEMENT_TYPES: [&str; 2] = [
    "https://in-toto.io/Statement/v0.1",
    "https://in-toto.io/Statement/v1",
];
const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The tag where referrers are listed when a registry lacks the referrers API: `sha256-<hex>`.
pub fn referrers_tag(image: &Digest) -> String {
    format!("{}-{}", image.algorithm(), image.hex())
}

/// Why a bundle or its referrer artifact does not verify.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("the bundle is not valid JSON ({0})")]
    Json(String),
    #[error("unsupported bundle media type {0:?}")]
    MediaType(String),
    #[error("the bundle has neither a messageSignature nor a dsseEnvelope")]
    NoContent,
    #[error("the bundle's {field} is not base64")]
    Base64 { field: &'static str },
    #[error("unsupported message digest algorithm {0:?} (only SHA2_256)")]
    DigestAlgorithm(String),
    #[error("the bundle signs {found}, not {expected} (a signature for another image)")]
    MessageDigestMismatch { expected: Digest, found: String },
    #[error(
        "{source} (key {key_hint}{})",
        bundle_hint.as_ref().filter(|h| *h != key_hint).map(|h| format!("; the bundle names key {h}")).unwrap_or_default()
    )]
    Signature {
        source: SignatureError,
        key_hint: String,
        bundle_hint: Option<String>,
    },
    #[error("the DSSE envelope has no signatures")]
    NoSignatures,
    #[error("the DSSE payload type is {0:?}, not {IN_TOTO_PAYLOAD_TYPE}")]
    PayloadType(String),
    #[error("the DSSE payload is not an in-toto statement ({0})")]
    Statement(String),
    #[error("no subject of the in-toto statement is {expected} (subjects: {found})")]
    SubjectMismatch { expected: Digest, found: String },
    #[error("the referrer manifest is not valid ({0})")]
    Manifest(String),
    #[error("the referrer manifest has {0} layers; a Sigstore bundle artifact has exactly one")]
    LayerCount(usize),
    #[error("the referrer's layer has media type {0:?}, not a Sigstore bundle")]
    LayerMediaType(String),
    #[error("the referrer's subject is {found}, not {expected}")]
    ReferrerSubject { expected: Digest, found: String },
    #[error("cannot fetch bundle blob {digest}: {source}")]
    Fetch {
        digest: Digest,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "the bundle blob for {expected} hashes to {actual} (the registry returned other bytes)"
    )]
    LayerDigestMismatch { expected: Digest, actual: Digest },
}

#[derive(Deserialize)]
struct BundleWire {
    #[serde(rename = "mediaType", alias = "media_type")]
    media_type: String,
    #[serde(
        rename = "verificationMaterial",
        alias = "verification_material",
        default
    )]
    verification_material: Option<VerificationMaterial>,
    #[serde(rename = "messageSignature", alias = "message_signature", default)]
    message_signature: Option<MessageSignature>,
    #[serde(rename = "dsseEnvelope", alias = "dsse_envelope", default)]
    dsse_envelope: Option<Envelope>,
}

#[derive(Deserialize)]
struct VerificationMaterial {
    #[serde(rename = "publicKey", alias = "public_key", default)]
    public_key: Option<KeyIdentifier>,
}

#[derive(Deserialize)]
struct KeyIdentifier {
    #[serde(default)]
    hint: Option<String>,
}

#[derive(Deserialize)]
struct MessageSignature {
    #[serde(rename = "messageDigest", alias = "message_digest", default)]
    message_digest: Option<HashOutput>,
    signature: String,
}

#[derive(Deserialize)]
struct HashOutput {
    algorithm: String,
    digest: String,
}

#[derive(Deserialize)]
struct Envelope {
    payload: String,
    #[serde(rename = "payloadType", alias = "payload_type")]
    payload_type: String,
    #[serde(default)]
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

#[derive(Deserialize)]
struct Statement {
    #[serde(rename = "_type")]
    kind: String,
    #[serde(default)]
    subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    predicate_type: String,
    #[serde(default)]
    predicate: Value,
}

#[derive(Deserialize)]
struct Subject {
    #[serde(default)]
    name: String,
    #[serde(default)]
    digest: BTreeMap<String, String>,
}

/// What a verified bundle signed.
#[derive(Debug, Clone, PartialEq)]
pub enum VerifiedBundle {
    /// A plain signature over the image manifest digest.
    MessageSignature,
    /// A DSSE-signed in-toto statement with the image among its subjects.
    Statement {
        predicate_type: String,
        predicate: Value,
    },
}

impl VerifiedBundle {
    /// Whether this is an image signature (rather than an attestation about something else):
    /// a message signature, or a statement with cosign's signing predicate type.
    pub fn is_image_signature(&self) -> bool {
        match self {
            Self::MessageSignature => true,
            Self::Statement { predicate_type, .. } => predicate_type == COSIGN_SIGN_PREDICATE_TYPE,
        }
    }
}

// protojson writes standard base64 but accepts URL-safe too.
fn b64(field: &'static str, s: &str) -> Result<Vec<u8>, BundleError> {
    STANDARD
        .decode(s)
        .or_else(|_| URL_SAFE.decode(s))
        .or_else(|_| URL_SAFE_NO_PAD.decode(s))
        .map_err(|_| BundleError::Base64 { field })
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// DSSE's pre-authentication encoding: what an envelope signature covers.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Verifies a Sigstore bundle over `image` with `key`.
pub fn verify_bundle(
    bundle: &[u8],
    image: &Digest,
    key: &PublicKey,
) -> Result<VerifiedBundle, BundleError> {
    let wire: BundleWire =
        serde_json::from_slice(bundle).map_err(|e| BundleError::Json(e.to_string()))?;
    if !wire.media_type.starts_with(BUNDLE_MEDIA_PREFIX) {
        return Err(BundleError::MediaType(wire.media_type));
    }
    let bundle_hint = wire
        .verification_material
        .and_then(|m| m.public_key)
        .and_then(|k| k.hint);
    let sig_err = |source| BundleError::Signature {
        source,
        key_hint: key.hint(),
        bundle_hint: bundle_hint.clone(),
    };
    if let Some(ms) = wire.message_signature {
        let md = ms.message_digest.ok_or_else(|| {
            BundleError::Json("messageSignature has no messageDigest".to_string())
        })?;
        if md.algorithm != "SHA2_256" || image.algorithm() != "sha256" {
            return Err(BundleError::DigestAlgorithm(md.algorithm));
        }
        let digest = b64("message digest", &md.digest)?;
        let found = hex_lower(&digest);
        if found != image.hex() {
            return Err(BundleError::MessageDigestMismatch {
                expected: image.clone(),
                found: format!("sha256:{found}"),
            });
        }
        let sig = b64("signature", &ms.signature)?;
        key.verify_prehash(&digest, &sig).map_err(sig_err)?;
        return Ok(VerifiedBundle::MessageSignature);
    }
    let env = wire.dsse_envelope.ok_or(BundleError::NoContent)?;
    let payload = b64("DSSE payload", &env.payload)?;
    if env.signatures.is_empty() {
        return Err(BundleError::NoSignatures);
    }
    let signed = Sha256::digest(pae(&env.payload_type, &payload));
    let mut last = SignatureError::Mismatch;
    let mut ok = false;
    for s in &env.signatures {
        let sig = b64("DSSE signature", &s.sig)?;
        match key.verify_prehash(&signed, &sig) {
            Ok(()) => {
                ok = true;
                break;
            }
            Err(e) => last = e,
        }
    }
    if !ok {
        return Err(sig_err(last));
    }
    // Signature first, then what it says.
    if env.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(BundleError::PayloadType(env.payload_type));
    }
    let st: Statement =
        serde_json::from_slice(&payload).map_err(|e| BundleError::Statement(e.to_string()))?;
    if !STATEMENT_TYPES.contains(&st.kind.as_str()) {
        return Err(BundleError::Statement(format!(
            "unknown statement type {:?}",
            st.kind
        )));
    }
    let matches = st
        .subject
        .iter()
        .any(|s| s.digest.get(image.algorithm()).map(String::as_str) == Some(image.hex()));
    if !matches {
        let found = st
            .subject
            .iter()
            .map(|s| {
                let d: Vec<String> = s.digest.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{} {}", s.name, d.join(","))
            })
            .collect::<Vec<_>>()
            .join("; ");
        return Err(BundleError::SubjectMismatch {
            expected: image.clone(),
            found,
        });
    }
    Ok(VerifiedBundle::Statement {
        predicate_type: st.predicate_type,
        predicate: st.predicate,
    })
}

/// A manifest listed in a referrers index (or the `sha256-<hex>` fallback index).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReferrerDescriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(rename = "artifactType", default)]
    pub artifact_type: Option<String>,
}

#[derive(Deserialize)]
struct IndexWire {
    #[serde(default)]
    manifests: Vec<ReferrerDescriptor>,
}

/// The manifests in a referrers index that may hold a Sigstore bundle, to fetch and pass to
/// [`BundleArtifact::fetch`]. go-containerregistry's tag fallback records the config's media
/// type (`application/vnd.oci.empty.v1+json`) as `artifactType`, so that counts too.
pub fn bundle_referrers(index: &[u8]) -> Result<Vec<ReferrerDescriptor>, BundleError> {
    let wire: IndexWire =
        serde_json::from_slice(index).map_err(|e| BundleError::Manifest(e.to_string()))?;
    Ok(wire
        .manifests
        .into_iter()
        .filter(|d| d.media_type == OCI_MANIFEST)
        .filter(|d| match d.artifact_type.as_deref() {
            None => true,
            Some(t) => t.starts_with(BUNDLE_MEDIA_PREFIX) || t == EMPTY_MEDIA_TYPE,
        })
        .collect())
}

#[derive(Deserialize)]
struct ReferrerManifest {
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    subject: Option<Descriptor>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// A Sigstore bundle read from an OCI referrer artifact, its blob checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleArtifact {
    /// The referrer manifest's digest.
    pub manifest: Digest,
    /// The `dev.sigstore.bundle.predicateType` annotation, if any (informational).
    pub predicate_type: Option<String>,
    /// The bundle JSON.
    pub bundle: Vec<u8>,
}

impl BundleArtifact {
    /// Reads a referrer manifest for `image`: exactly one layer with a Sigstore bundle media
    /// type, a `subject` naming `image`, and a blob that matches its descriptor.
    pub fn fetch<E>(
        manifest: &[u8],
        image: &Digest,
        mut fetch: impl FnMut(&Descriptor) -> Result<Vec<u8>, E>,
    ) -> Result<Self, BundleError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let m: ReferrerManifest =
            serde_json::from_slice(manifest).map_err(|e| BundleError::Manifest(e.to_string()))?;
        match &m.subject {
            Some(s) if &s.digest == image => {}
            Some(s) => {
                return Err(BundleError::ReferrerSubject {
                    expected: image.clone(),
                    found: s.digest.to_string(),
                });
            }
            None => {
                return Err(BundleError::ReferrerSubject {
                    expected: image.clone(),
                    found: "nothing".into(),
                });
            }
        }
        let [layer] = m.layers.as_slice() else {
            return Err(BundleError::LayerCount(m.layers.len()));
        };
        if !layer.media_type.starts_with(BUNDLE_MEDIA_PREFIX) {
            return Err(BundleError::LayerMediaType(layer.media_type.clone()));
        }
        let bundle = fetch(layer).map_err(|e| BundleError::Fetch {
            digest: layer.digest.clone(),
            source: e.into(),
        })?;
        let actual = Digest::sha256(&bundle);
        if actual != layer.digest {
            return Err(BundleError::LayerDigestMismatch {
                expected: layer.digest.clone(),
                actual,
            });
        }
        Ok(Self {
            manifest: Digest::sha256(manifest),
            predicate_type: m
                .annotations
                .get("dev.sigstore.bundle.predicateType")
                .cloned(),
            bundle,
        })
    }

    /// Verifies the bundle over `image` with `key`.
    pub fn verify(&self, image: &Digest, key: &PublicKey) -> Result<VerifiedBundle, BundleError> {
        verify_bundle(&self.bundle, image, key)
    }
}

#[cfg(test)]
mod tests;
