//! Manifests and indexes: fetch (with the `Accept` list registries need, verifying the bytes
//! against the digest asked for or announced), existence checks, upload, deletion by
//! digest. Uploading a manifest with a `subject` to a registry without the referrers API
//! also maintains the `sha256-<hex>` fallback tag, as the distribution spec asks of clients.

use oxkit_spec::{Digest, Reference};
use oxkit_store::oci::{self, Descriptor, ImageIndex, media_type as mt};
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap};

use super::http::{Call, read_limited, refuse_html};
use super::{Client, reference_path};
use crate::auth::Scope;
use crate::error::{Error, Result, display_url};
use crate::media::{MANIFEST_ACCEPT, manifest_media_type};

/// The most a manifest may weigh (the OCI spec's recommended limit for registries).
pub(crate) const MANIFEST_LIMIT: u64 = 4 << 20;

/// A manifest or index exactly as the registry stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub media_type: String,
    pub digest: Digest,
    pub bytes: Vec<u8>,
}

impl Manifest {
    /// A descriptor pointing at this manifest.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            self.media_type.clone(),
            self.digest.clone(),
            self.bytes.len() as u64,
        )
    }

    /// Whether it is an image index (or Docker manifest list).
    pub fn is_index(&self) -> bool {
        mt::is_index(&self.media_type)
    }
}

fn header_digest(headers: &HeaderMap) -> Option<Digest> {
    headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse().ok())
}

impl Client {
    /// Fetches the manifest or index `r` names (by digest when it has one, else by tag, else
    /// `latest`), verified: against `r`'s digest, or the digest the registry announces.
    pub fn get_manifest(&self, r: &Reference) -> Result<Manifest> {
        let host = self.host(r)?;
        let what = format!("fetch manifest {r}");
        let scope = Scope::pull(r.repository());
        let url = host.url(&format!(
            "{}/manifests/{}",
            r.repository(),
            reference_path(r)
        ))?;
        let call = Call::new(&what, Method::GET, url, &scope).header(ACCEPT, MANIFEST_ACCEPT);
        let max = self.inner.opts.retry.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let resp = self.send(&host, &call)?;
            if !resp.status().is_success() {
                return Err(self.fail(&host, &call, resp));
            }
            refuse_html(&what, &host, &resp)?;
            let content_type = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let announced = header_digest(resp.headers());
            let url = display_url(resp.url());
            let bytes = match read_limited(resp, MANIFEST_LIMIT, &what, "manifest") {
                Ok(b) => b,
                // A body cut short is worth another try; the request is idempotent.
                Err(Error::Transport { reason, .. }) if attempt < max => {
                    self.sleep_before_retry(&what, attempt, None, &reason);
                    continue;
                }
                Err(e) => return Err(e),
            };
            return self.check_manifest(r, &what, &url, content_type.as_deref(), announced, bytes);
        }
    }

    fn check_manifest(
        &self,
        r: &Reference,
        what: &str,
        url: &str,
        content_type: Option<&str>,
        announced: Option<Digest>,
        bytes: Vec<u8>,
    ) -> Result<Manifest> {
        let expected = r.digest().cloned().or(announced);
        let digest = match &expected {
            Some(want) => {
                let actual = want.of_like(&bytes);
                if &actual != want {
                    return Err(Error::DigestMismatch {
                        what: what.to_string(),
                        url: url.to_string(),
                        expected: want.clone(),
                        actual,
                    });
                }
                actual
            }
            None => Digest::sha256(&bytes),
        };
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
            return Err(Error::NotJson {
                what: what.to_string(),
                host: r.registry().to_string(),
                url: url.to_string(),
                reason: e.to_string(),
            });
        }
        let media_type =
            manifest_media_type(content_type, &bytes).map_err(|(media_type, hint)| {
                Error::UnknownMediaType {
                    reference: r.to_string(),
                    url: url.to_string(),
                    media_type,
                    hint,
                }
            })?;
        Ok(Manifest {
            media_type,
            digest,
            bytes,
        })
    }

    /// Whether `r` exists, and its descriptor (media type, digest, size) if so.
    pub fn head_manifest(&self, r: &Reference) -> Result<Option<Descriptor>> {
        let host = self.host(r)?;
        let what = format!("check manifest {r}");
        let scope = Scope::pull(r.repository());
        let url = host.url(&format!(
            "{}/manifests/{}",
            r.repository(),
            reference_path(r)
        ))?;
        let call = Call::new(&what, Method::HEAD, url, &scope).header(ACCEPT, MANIFEST_ACCEPT);
        let resp = self.send(&host, &call)?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(self.fail(&host, &call, resp));
        }
        let digest = header_digest(resp.headers()).or_else(|| r.digest().cloned());
        let size = resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let media_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|c| c.split(';').next().unwrap_or(c).trim().to_string());
        match (digest, size, media_type) {
            (Some(d), Some(s), Some(m)) if mt::is_index(&m) || mt::is_manifest(&m) => {
                Ok(Some(Descriptor::new(m, d, s)))
            }
            // Not everything came back with the HEAD: ask for the whole thing.
            _ => Ok(Some(self.get_manifest(r)?.descriptor())),
        }
    }

    /// Uploads a manifest or index under `r`'s tag (or digest). Its children must already
    /// be in the repository. Returns its digest.
    pub fn put_manifest(&self, r: &Reference, media_type: &str, bytes: &[u8]) -> Result<Digest> {
        let host = self.host(r)?;
        let digest = Digest::sha256(bytes);
        let what = format!("push manifest {r}");
        let scope = Scope::push(r.repository());
        let target = match (r.tag(), r.digest()) {
            (Some(t), _) => t.to_string(),
            (None, Some(d)) => d.to_string(),
            (None, None) => digest.to_string(),
        };
        let url = host.url(&format!("{}/manifests/{target}", r.repository()))?;
        let call = Call::new(&what, Method::PUT, url, &scope)
            .header(CONTENT_TYPE, media_type)
            .body(bytes::Bytes::copy_from_slice(bytes));
        let resp = self.send(&host, &call)?;
        if !resp.status().is_success() {
            return Err(self.fail(&host, &call, resp));
        }
        if let Some(announced) = header_digest(resp.headers())
            && announced.algorithm() == "sha256"
            && announced != digest
        {
            return Err(Error::DigestMismatch {
                what,
                url: display_url(resp.url()),
                expected: digest,
                actual: announced,
            });
        }
        let subject_handled = resp.headers().contains_key("oci-subject");
        drop(resp);
        if !subject_handled {
            self.maybe_add_referrer_tag(r, media_type, bytes, &digest)?;
        }
        Ok(digest)
    }

    /// Keeps the referrers fallback tag (`<alg>-<hex>` of the subject) listing a manifest that
    /// has a subject, for registries without the referrers API.
    fn maybe_add_referrer_tag(
        &self,
        r: &Reference,
        media_type: &str,
        bytes: &[u8],
        digest: &Digest,
    ) -> Result<()> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Probe {
            #[serde(default)]
            subject: Option<Descriptor>,
            #[serde(default)]
            artifact_type: Option<String>,
            #[serde(default)]
            config: Option<Descriptor>,
            #[serde(default)]
            annotations: std::collections::BTreeMap<String, String>,
        }
        let Ok(p) = serde_json::from_slice::<Probe>(bytes) else {
            return Ok(());
        };
        let Some(subject) = p.subject else {
            return Ok(());
        };
        let mut d = Descriptor::new(media_type, digest.clone(), bytes.len() as u64);
        d.artifact_type = p.artifact_type.or(p.config.map(|c| c.media_type));
        d.annotations = p.annotations;
        let tag = referrers_tag(&subject.digest);
        let tag_ref = r.with_tag(&tag).map_err(|e| Error::BadUrl {
            url: format!("{}:{tag}", r.name()),
            reason: e.reason,
        })?;
        let mut index = match self.get_manifest(&tag_ref) {
            Ok(m) => oci::from_json::<ImageIndex>(&m.bytes, format!("referrers index {tag_ref}"))?,
            Err(e) if e.is_not_found() => ImageIndex::new(Vec::new()),
            Err(e) => return Err(e),
        };
        if index.manifests.iter().any(|m| m.digest == *digest) {
            return Ok(());
        }
        index.manifests.push(d);
        let body = oci::to_canonical_json(&index)?;
        self.put_manifest(&tag_ref, mt::OCI_INDEX, &body)?;
        Ok(())
    }

    /// Deletes the manifest `r` pins by digest (registries refuse deletion by tag).
    pub fn delete_manifest(&self, r: &Reference) -> Result<()> {
        let host = self.host(r)?;
        let what = format!("delete manifest {r}");
        let Some(d) = r.digest() else {
            return Err(Error::BadUrl {
                url: r.to_string(),
                reason: "deleting needs a digest (registries refuse deletion by tag): use NAME@sha256:...".into(),
            });
        };
        let scope = Scope::push(r.repository());
        let url = host.url(&format!("{}/manifests/{d}", r.repository()))?;
        let call = Call::new(&what, Method::DELETE, url, &scope);
        let resp = self.send(&host, &call)?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(self.fail(&host, &call, resp))
    }
}

/// The fallback tag under which referrers of `subject` are listed: `<alg>-<hex>`, the
/// algorithm cut to 32 and the hex to 64 characters as the distribution spec says (so a
/// sha512 subject still makes a valid tag).
pub(crate) fn referrers_tag(subject: &Digest) -> String {
    let alg = subject.algorithm();
    let hex = subject.hex();
    format!(
        "{}-{}",
        &alg[..alg.len().min(32)],
        &hex[..hex.len().min(64)]
    )
}
