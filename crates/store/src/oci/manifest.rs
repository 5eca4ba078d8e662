//! Image manifests and image indexes (OCI, and Docker schema 2 which has the same shape).
//!
//! Parsing accepts what registries, skopeo and umoci write, Docker media types included;
//! serialization is canonical (fixed field order, sorted annotations, nothing `null`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::descriptor::Descriptor;
use super::media_type;
use super::serde_util::null_default;

fn schema_version_2() -> u32 {
    2
}

/// An image manifest: a config and an ordered list of layers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    #[serde(default = "schema_version_2")]
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    #[serde(default, deserialize_with = "null_default")]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

impl ImageManifest {
    /// An OCI manifest for `config` and `layers`.
    pub fn new(config: Descriptor, layers: Vec<Descriptor>) -> Self {
        Self {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.to_string()),
            artifact_type: None,
            config,
            layers,
            subject: None,
            annotations: BTreeMap::new(),
        }
    }

    /// The media type to use in a descriptor pointing at this manifest.
    pub fn descriptor_media_type(&self) -> &str {
        self.media_type
            .as_deref()
            .unwrap_or(media_type::OCI_MANIFEST)
    }
}

/// An image index (or Docker manifest list): one manifest per platform.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    #[serde(default = "schema_version_2")]
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
}

impl ImageIndex {
    /// An OCI index over `manifests`.
    pub fn new(manifests: Vec<Descriptor>) -> Self {
        Self {
            schema_version: 2,
            media_type: Some(media_type::OCI_INDEX.to_string()),
            artifact_type: None,
            manifests,
            subject: None,
            annotations: BTreeMap::new(),
        }
    }

    /// The media type to use in a descriptor pointing at this index.
    pub fn descriptor_media_type(&self) -> &str {
        self.media_type.as_deref().unwrap_or(media_type::OCI_INDEX)
    }
}

/// The media type to send a manifest or index with: its own `mediaType` when it has one
/// (registries check that they agree), else what its shape says, else the descriptor's.
pub fn document_media_type(bytes: &[u8], d: &Descriptor) -> String {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Probe>(bytes)
        .ok()
        .and_then(|p| p.media_type)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| match sniff(bytes) {
            DocumentKind::Index if !media_type::is_index(&d.media_type) => {
                media_type::OCI_INDEX.to_string()
            }
            DocumentKind::Manifest if !media_type::is_manifest(&d.media_type) => {
                media_type::OCI_MANIFEST.to_string()
            }
            _ => d.media_type.clone(),
        })
}

/// What a JSON blob is, judged by its `mediaType` field or, failing that, its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    Index,
    Manifest,
    /// Docker schema 1: recognised so it can be refused with a clear message.
    SchemaV1,
    Other,
}

/// Classifies a JSON document without fully parsing it.
pub fn sniff(bytes: &[u8]) -> DocumentKind {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        schema_version: Option<u32>,
        #[serde(default)]
        manifests: Option<serde::de::IgnoredAny>,
        #[serde(default)]
        layers: Option<serde::de::IgnoredAny>,
        #[serde(default)]
        config: Option<serde::de::IgnoredAny>,
    }
    let Ok(p) = serde_json::from_slice::<Probe>(bytes) else {
        return DocumentKind::Other;
    };
    match p.media_type.as_deref() {
        Some(mt) if media_type::is_index(mt) => return DocumentKind::Index,
        Some(mt) if media_type::is_manifest(mt) => return DocumentKind::Manifest,
        Some(media_type::DOCKER_MANIFEST_V1 | media_type::DOCKER_MANIFEST_V1_SIGNED) => {
            return DocumentKind::SchemaV1;
        }
        _ => {}
    }
    if p.schema_version == Some(1) {
        DocumentKind::SchemaV1
    } else if p.manifests.is_some() {
        DocumentKind::Index
    } else if p.config.is_some() && p.layers.is_some() {
        DocumentKind::Manifest
    } else {
        DocumentKind::Other
    }
}
