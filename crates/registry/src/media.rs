//! Which manifest media types the client asks for and accepts. Registries pick the
//! representation from the `Accept` header, and some (distribution 2.8) answer 404 to a
//! manifest request whose `Accept` does not list the OCI types, so every manifest request
//! sends the full list.
//!
//! The media type constants themselves live in `oxkit_store::oci::media_type`.

use oxkit_store::oci::{DocumentKind, media_type as mt, sniff};

/// Every manifest type oxkit understands, as one `Accept` header value.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// The media type of a fetched manifest: the `Content-Type` when it names a known type,
/// else the document's own `mediaType`, else its shape (OCI allows omitting `mediaType`).
/// `Err` carries what the registry claimed, for the error message, and a hint.
pub(crate) fn manifest_media_type(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<String, (String, &'static str)> {
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim().to_ascii_lowercase())
        .unwrap_or_default();
    if mt::is_index(&ct) || mt::is_manifest(&ct) {
        return Ok(ct);
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: Option<String>,
    }
    let declared = serde_json::from_slice::<Probe>(body)
        .ok()
        .and_then(|p| p.media_type);
    if let Some(d) = &declared
        && (mt::is_index(d) || mt::is_manifest(d))
    {
        return Ok(d.clone());
    }
    match sniff(body) {
        DocumentKind::SchemaV1 => Err((
            mt::DOCKER_MANIFEST_V1_SIGNED.to_string(),
            " (this is a Docker schema 1 manifest; re-push the image with a current tool)",
        )),
        DocumentKind::Index if declared.is_none() => Ok(mt::OCI_INDEX.to_string()),
        DocumentKind::Manifest if declared.is_none() => Ok(mt::OCI_MANIFEST.to_string()),
        _ => Err((declared.unwrap_or(ct), "")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_then_body_then_shape() {
        assert_eq!(
            manifest_media_type(
                Some("application/vnd.oci.image.index.v1+json; charset=utf-8"),
                b"{}"
            )
            .unwrap(),
            mt::OCI_INDEX
        );
        assert_eq!(
            manifest_media_type(
                Some("application/json"),
                br#"{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{},"layers":[]}"#
            )
            .unwrap(),
            mt::DOCKER_MANIFEST
        );
        assert_eq!(
            manifest_media_type(None, br#"{"schemaVersion":2,"config":{},"layers":[]}"#).unwrap(),
            mt::OCI_MANIFEST
        );
        assert_eq!(
            manifest_media_type(None, br#"{"schemaVersion":2,"manifests":[]}"#).unwrap(),
            mt::OCI_INDEX
        );
    }

    #[test]
    fn unknown_and_schema1_are_refused() {
        let (m, hint) = manifest_media_type(
            Some("application/vnd.example.thing+json"),
            br#"{"mediaType":"application/vnd.example.thing+json"}"#,
        )
        .unwrap_err();
        assert_eq!(m, "application/vnd.example.thing+json");
        assert_eq!(hint, "");
        let (_, hint) = manifest_media_type(
            Some(mt::DOCKER_MANIFEST_V1_SIGNED),
            br#"{"schemaVersion":1,"fsLayers":[]}"#,
        )
        .unwrap_err();
        assert!(hint.contains("schema 1"));
        assert!(manifest_media_type(Some("text/plain"), b"hello").is_err());
    }
}
