//! cosign's "simple signing" payload: the JSON document a cosign image signature signs.
//!
//! `{"critical":{"identity":{"docker-reference":REPO},"image":{"docker-manifest-digest":DIGEST},
//! "type":"cosign container image signature"},"optional":ANNOTATIONS-or-null}`, written exactly as
//! cosign writes it (Go field order, Go string escaping, no trailing newline), so a payload made
//! here is byte-identical to the one `cosign sign` makes for the same image and annotations.

use std::collections::BTreeMap;

use oxkit_spec::digest::Digest;
use oxkit_spec::reference::{DOCKER_HUB, Reference};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Media type of a payload layer in a cosign signature image.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// `critical.type` of every cosign image signature.
pub const COSIGN_SIGNATURE_TYPE: &str = "cosign container image signature";

/// Why bytes are not a simple-signing payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a cosign simple-signing payload: {0}")]
pub struct PayloadError(String);

/// A decoded simple-signing payload.
#[derive(Debug, Clone, PartialEq)]
pub struct SimpleSigningPayload {
    /// `critical.identity.docker-reference`: the repository, as cosign names it.
    pub docker_reference: String,
    /// `critical.image.docker-manifest-digest`: the signed manifest.
    pub manifest_digest: Digest,
    /// `critical.type`.
    pub signature_type: String,
    /// `optional`: annotations given at signing time (`cosign sign -a k=v`); `None` is `null`.
    pub annotations: Option<BTreeMap<String, Value>>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    critical: Critical,
    #[serde(default)]
    optional: Option<BTreeMap<String, Value>>,
}

#[derive(Serialize, Deserialize)]
struct Critical {
    identity: Identity,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Serialize, Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Serialize, Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// The repository name cosign writes as `docker-reference`: go-containerregistry's
/// `Repository.Name()`, which spells Docker Hub `index.docker.io` (`index.docker.io/library/alpine`).
pub fn cosign_docker_reference(reference: &Reference) -> String {
    let registry = match reference.registry() {
        DOCKER_HUB => "index.docker.io",
        other => other,
    };
    format!("{registry}/{}", reference.repository())
}

impl SimpleSigningPayload {
    /// The payload `cosign sign` makes for `reference`'s repository at `digest`, without
    /// annotations.
    pub fn new(reference: &Reference, digest: Digest) -> Self {
        Self {
            docker_reference: cosign_docker_reference(reference),
            manifest_digest: digest,
            signature_type: COSIGN_SIGNATURE_TYPE.to_string(),
            annotations: None,
        }
    }

    /// Adds a string annotation (`cosign sign -a key=value`).
    pub fn with_annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), Value::String(value.into()));
        self
    }

    /// The exact bytes to sign and store as the payload blob.
    pub fn to_bytes(&self) -> Vec<u8> {
        crate::gojson::to_vec(&Wire {
            critical: Critical {
                identity: Identity {
                    docker_reference: self.docker_reference.clone(),
                },
                image: Image {
                    docker_manifest_digest: self.manifest_digest.to_string(),
                },
                kind: self.signature_type.clone(),
            },
            optional: self.annotations.clone(),
        })
    }

    /// Decodes payload bytes (from a signature layer).
    pub fn parse(bytes: &[u8]) -> Result<Self, PayloadError> {
        let wire: Wire = serde_json::from_slice(bytes).map_err(|e| PayloadError(e.to_string()))?;
        let digest = wire
            .critical
            .image
            .docker_manifest_digest
            .parse::<Digest>()
            .map_err(|e| PayloadError(e.to_string()))?;
        Ok(Self {
            docker_reference: wire.critical.identity.docker_reference,
            manifest_digest: digest,
            signature_type: wire.critical.kind,
            annotations: wire.optional,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGE: &str = "sha256:56333d65e1974031b2dc0b9a81c6c3db17ebfd49fbd3aa66fffd0f6bb72cdfa3";

    fn reference() -> Reference {
        Reference::parse("127.0.0.1:5917/test/img:v1").expect("ref")
    }

    fn digest() -> Digest {
        IMAGE.parse().expect("digest")
    }

    // Golden bytes: `cosign generate` (cosign 2.5.0) for this image; see testdata/README.md.
    #[test]
    fn matches_cosign_without_annotations() {
        let got = SimpleSigningPayload::new(&reference(), digest()).to_bytes();
        assert_eq!(
            String::from_utf8(got).expect("utf8"),
            include_str!("../testdata/payload-plain.json")
        );
    }

    #[test]
    fn matches_cosign_with_annotations_go_escaping() {
        let p = SimpleSigningPayload::new(&reference(), digest())
            .with_annotation("b", "<x>&\"q\"\\é")
            .with_annotation("a", "l1")
            .with_annotation("u", "€ 😀\u{2028}");
        assert_eq!(
            p.to_bytes(),
            include_bytes!("../testdata/payload-annotations1.json")
        );
        let p = SimpleSigningPayload::new(&reference(), digest())
            .with_annotation("r", "x\ry")
            .with_annotation("a", "t\tb\u{8}f\u{c}e\u{1}d\u{7f}");
        assert_eq!(
            p.to_bytes(),
            include_bytes!("../testdata/payload-annotations2.json")
        );
    }

    #[test]
    fn parse_round_trips_cosign_bytes() {
        for bytes in [
            &include_bytes!("../testdata/payload-plain.json")[..],
            include_bytes!("../testdata/payload-annotations1.json"),
            include_bytes!("../testdata/payload-annotations2.json"),
        ] {
            let p = SimpleSigningPayload::parse(bytes).expect("parse");
            assert_eq!(p.manifest_digest, digest());
            assert_eq!(p.docker_reference, "127.0.0.1:5917/test/img");
            assert_eq!(p.signature_type, COSIGN_SIGNATURE_TYPE);
            assert_eq!(p.to_bytes(), bytes);
        }
    }

    #[test]
    fn docker_hub_is_spelled_like_go_containerregistry() {
        let r = Reference::parse("alpine:3.19").expect("ref");
        assert_eq!(
            cosign_docker_reference(&r),
            "index.docker.io/library/alpine"
        );
        let r = Reference::parse("linuxkit/init:abc").expect("ref");
        assert_eq!(cosign_docker_reference(&r), "index.docker.io/linuxkit/init");
        let r = Reference::parse("ghcr.io/me/x").expect("ref");
        assert_eq!(cosign_docker_reference(&r), "ghcr.io/me/x");
    }

    #[test]
    fn rejects_non_payloads() {
        assert!(SimpleSigningPayload::parse(b"{}").is_err());
        assert!(SimpleSigningPayload::parse(b"not json").is_err());
        let bad = include_str!("../testdata/payload-plain.json").replace("sha256:5", "sha256:x");
        assert!(SimpleSigningPayload::parse(bad.as_bytes()).is_err());
    }
}
