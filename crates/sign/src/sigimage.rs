//! The signature image cosign stores at tag `sha256-<hex>.sig` next to a signed image: an OCI
//! manifest whose layers are simple-signing payloads, each carrying its base64 signature in the
//! `dev.cosignproject.cosign/signature` annotation, and whose config lists the layers as
//! `diff_ids` (go-containerregistry's empty-image config with one history entry per layer).
//!
//! Pure data: the registry client fetches and pushes the bytes. [`SignatureImage::to_parts`]
//! writes manifests and configs byte-identical to cosign's for the same layers.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use oxkit_spec::digest::Digest;
use serde::{Deserialize, Serialize};

use crate::keys::PublicKey;
use crate::payload::SIMPLE_SIGNING_MEDIA_TYPE;

/// Layer annotation holding the base64 DER signature over the payload.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Layer annotation with the signing certificate (keyless signing; kept, not checked here).
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// Layer annotation with the certificate chain (kept, not checked here).
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// Layer annotation with a Rekor transparency-log bundle (kept, not checked here).
pub const REKOR_BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";
/// Layer annotation with an RFC 3161 timestamp (kept, not checked here).
pub const RFC3161_ANNOTATION: &str = "dev.sigstore.cosign/rfc3161timestamp";

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// cosign refuses signature images with more layers than this; so do we.
pub const MAX_SIGNATURE_LAYERS: usize = 1000;

/// The tag cosign stores an image's signatures under: `sha256-<hex>.sig`.
pub fn signature_tag(image: &Digest) -> String {
    format!("{}-{}.sig", image.algorithm(), image.hex())
}

/// An OCI descriptor as go-containerregistry writes one (field order: mediaType, size, digest,
/// annotations).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub size: u64,
    pub digest: Digest,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct ManifestWire {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct ConfigWire<'a> {
    architecture: &'a str,
    created: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    history: Vec<History<'a>>,
    os: &'a str,
    rootfs: RootFs<'a>,
    config: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct History<'a> {
    created: &'a str,
}

#[derive(Serialize)]
struct RootFs<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    diff_ids: Vec<&'a Digest>,
}

/// Go's zero time, which go-containerregistry writes for the signature image's dates.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Why a signature manifest or its blobs cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SignatureImageError {
    #[error("the signature manifest is not a valid OCI image manifest ({0})")]
    Manifest(String),
    #[error("the signature manifest has unsupported media type {0:?}")]
    MediaType(String),
    #[error(
        "the signature manifest has {0} layers, more than the {MAX_SIGNATURE_LAYERS} cosign allows"
    )]
    TooManyLayers(usize),
    #[error("signature layer {index} ({digest}): blob not provided")]
    MissingBlob { index: usize, digest: Digest },
    #[error("cannot fetch signature layer {index} ({digest}): {source}")]
    Fetch {
        index: usize,
        digest: Digest,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "signature layer {index}: the blob for {expected} hashes to {actual} (the registry returned other bytes, or the blob was changed after signing)"
    )]
    LayerDigestMismatch {
        index: usize,
        expected: Digest,
        actual: Digest,
    },
    #[error(
        "signature layer {index} ({digest}): descriptor says {expected} bytes, blob has {actual}"
    )]
    LayerSizeMismatch {
        index: usize,
        digest: Digest,
        expected: u64,
        actual: u64,
    },
}

/// One layer: its descriptor and its (verified) payload bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layer {
    pub(crate) descriptor: Descriptor,
    pub(crate) payload: Vec<u8>,
}

/// A cosign signature image in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureImage {
    media_type: String,
    config_media_type: String,
    annotations: BTreeMap<String, String>,
    pub(crate) layers: Vec<Layer>,
}

impl Default for SignatureImage {
    fn default() -> Self {
        Self::new()
    }
}

impl SignatureImage {
    /// An image with no signatures yet (when the `.sig` tag does not exist).
    pub fn new() -> Self {
        Self {
            media_type: OCI_MANIFEST.to_string(),
            config_media_type: OCI_CONFIG.to_string(),
            annotations: BTreeMap::new(),
            layers: Vec::new(),
        }
    }

    /// Parses an existing signature manifest and checks each layer's blob (given as
    /// `(digest it was fetched as, bytes)`) against its descriptor. Every layer's blob must be
    /// provided; the config is not needed (it is derived from the layers).
    pub fn from_parts(
        manifest: &[u8],
        blobs: impl IntoIterator<Item = (Digest, Vec<u8>)>,
    ) -> Result<Self, SignatureImageError> {
        let blobs: BTreeMap<Digest, Vec<u8>> = blobs.into_iter().collect();
        Self::fetch(manifest, |d: &Descriptor| {
            blobs.get(&d.digest).cloned().ok_or(MissingBlob)
        })
        .map_err(|e| match e {
            SignatureImageError::Fetch { index, digest, .. } => {
                SignatureImageError::MissingBlob { index, digest }
            }
            other => other,
        })
    }

    /// Parses a signature manifest, fetching each layer's blob with `fetch` and checking it.
    pub fn fetch<E>(
        manifest: &[u8],
        mut fetch: impl FnMut(&Descriptor) -> Result<Vec<u8>, E>,
    ) -> Result<Self, SignatureImageError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let wire: ManifestWire = serde_json::from_slice(manifest)
            .map_err(|e| SignatureImageError::Manifest(e.to_string()))?;
        if wire.schema_version != 2 {
            return Err(SignatureImageError::Manifest(format!(
                "schemaVersion {} (expected 2)",
                wire.schema_version
            )));
        }
        let media_type = wire.media_type.unwrap_or_else(|| OCI_MANIFEST.to_string());
        if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
            return Err(SignatureImageError::MediaType(media_type));
        }
        if wire.layers.len() > MAX_SIGNATURE_LAYERS {
            return Err(SignatureImageError::TooManyLayers(wire.layers.len()));
        }
        let mut layers = Vec::with_capacity(wire.layers.len());
        for (index, descriptor) in wire.layers.into_iter().enumerate() {
            let payload = fetch(&descriptor).map_err(|e| SignatureImageError::Fetch {
                index,
                digest: descriptor.digest.clone(),
                source: e.into(),
            })?;
            let actual = Digest::sha256(&payload);
            if actual != descriptor.digest {
                return Err(SignatureImageError::LayerDigestMismatch {
                    index,
                    expected: descriptor.digest,
                    actual,
                });
            }
            if payload.len() as u64 != descriptor.size {
                return Err(SignatureImageError::LayerSizeMismatch {
                    index,
                    digest: descriptor.digest,
                    expected: descriptor.size,
                    actual: payload.len() as u64,
                });
            }
            layers.push(Layer {
                descriptor,
                payload,
            });
        }
        Ok(Self {
            media_type,
            config_media_type: wire.config.media_type,
            annotations: wire.annotations,
            layers,
        })
    }

    /// Number of signature layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether there are no signatures.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// Each layer's descriptor and payload bytes, in manifest order.
    pub fn layers(&self) -> impl Iterator<Item = (&Descriptor, &[u8])> {
        self.layers
            .iter()
            .map(|l| (&l.descriptor, l.payload.as_slice()))
    }

    /// Adds a signature layer. Returns `false` (and changes nothing) when a layer with the same
    /// payload and the same signature is already there, so re-signing is idempotent.
    pub fn append(&mut self, payload: &[u8], signature_der: &[u8]) -> bool {
        let b64 = STANDARD.encode(signature_der);
        let digest = Digest::sha256(payload);
        let exists = self.layers.iter().any(|l| {
            l.descriptor.digest == digest
                && l.descriptor.annotations.get(SIGNATURE_ANNOTATION) == Some(&b64)
        });
        if exists {
            return false;
        }
        self.layers.push(Layer {
            descriptor: Descriptor {
                media_type: SIMPLE_SIGNING_MEDIA_TYPE.to_string(),
                size: payload.len() as u64,
                digest,
                annotations: BTreeMap::from([(SIGNATURE_ANNOTATION.to_string(), b64)]),
            },
            payload: payload.to_vec(),
        });
        true
    }

    /// Like [`Self::append`], but also skips the new signature when a layer with the same
    /// payload already has a signature by `key` (cosign's duplicate detector: ECDSA signatures
    /// made by Go are randomised, so "same signature" alone would not catch cosign's own).
    pub fn append_unless_signed_by(
        &mut self,
        payload: &[u8],
        signature_der: &[u8],
        key: &PublicKey,
    ) -> bool {
        let already = self.layers.iter().any(|l| {
            l.payload == payload
                && l.descriptor
                    .annotations
                    .get(SIGNATURE_ANNOTATION)
                    .and_then(|s| STANDARD.decode(s).ok())
                    .is_some_and(|sig| key.verify(payload, &sig).is_ok())
        });
        !already && self.append(payload, signature_der)
    }

    fn config_bytes(&self) -> Vec<u8> {
        let history = self
            .layers
            .iter()
            .map(|_| History { created: ZERO_TIME })
            .collect();
        crate::gojson::to_vec(&ConfigWire {
            architecture: "",
            created: ZERO_TIME,
            history,
            os: "",
            rootfs: RootFs {
                kind: "layers",
                diff_ids: self.layers.iter().map(|l| &l.descriptor.digest).collect(),
            },
            config: BTreeMap::new(),
        })
    }

    /// The manifest bytes and every blob it references (config first, then each distinct
    /// payload once), ready to push: blobs first, then the manifest under [`signature_tag`].
    pub fn to_parts(&self) -> (Vec<u8>, Vec<(Descriptor, Vec<u8>)>) {
        let config = self.config_bytes();
        let config_desc = Descriptor {
            media_type: self.config_media_type.clone(),
            size: config.len() as u64,
            digest: Digest::sha256(&config),
            annotations: BTreeMap::new(),
        };
        let manifest = crate::gojson::to_vec(&ManifestWire {
            schema_version: 2,
            media_type: Some(self.media_type.clone()),
            config: config_desc.clone(),
            layers: self.layers.iter().map(|l| l.descriptor.clone()).collect(),
            annotations: self.annotations.clone(),
        });
        let mut blobs = vec![(config_desc, config)];
        for l in &self.layers {
            if !blobs.iter().any(|(d, _)| d.digest == l.descriptor.digest) {
                let mut d = l.descriptor.clone();
                d.annotations.clear();
                blobs.push((d, l.payload.clone()));
            }
        }
        (manifest, blobs)
    }
}

#[derive(Debug)]
struct MissingBlob;

impl std::fmt::Display for MissingBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("blob not provided")
    }
}

impl std::error::Error for MissingBlob {}

#[cfg(test)]
mod tests;
