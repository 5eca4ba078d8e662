//! The image YAML's `trust:` policy, enforced against a registry: which keys must have signed
//! an image, and whether they did. The image assembler calls [`verify_policy`] for each image
//! it is about to use; the policy itself (which keys for which references) is `oxkit-spec`'s,
//! signature checks are `oxkit-sign`'s, and fetching goes through the registry client.
//!
//! A signature counts when it is over the image's digest, or over the index the reference's
//! tag names in the registry when that index lists the digest (`cosign sign` on a
//! multi-platform tag signs the index; `oxkit pkg push` signs both).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oxkit_registry::Client;
use oxkit_sign::{PublicKey, SignerReport, SignerStatus, check_signers};
use oxkit_spec::image_yaml::{DEFAULT_KEY, TrustPolicy};
use oxkit_spec::{Digest, Reference};
use oxkit_store::oci::{self, ImageIndex};

use crate::evidence;
use crate::remote::Remote;

/// Why an image does not satisfy the trust policy. Every variant names the image, its digest
/// and the key concerned.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{0}")]
    NotSigned(Box<NotSigned>),

    #[error(
        "image {image} ({digest}): the trust policy requires key {key:?}, but no public key by that name was loaded{}",
        if key == DEFAULT_KEY { " (the default key: pass the signing key's public half)" } else { " (define it under trust.keys)" }
    )]
    UnknownKey {
        image: String,
        digest: Digest,
        key: String,
    },

    #[error(
        "image {image} ({digest}): cannot read its signatures (needed for key {key:?}): {error}"
    )]
    Registry {
        image: String,
        digest: Digest,
        key: String,
        error: Box<crate::PublishError>,
    },

    #[error("trust key {key:?} ({}): {error}", path.display())]
    Key {
        key: String,
        path: PathBuf,
        error: oxkit_sign::KeyError,
    },
}

/// A required key that did not sign the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotSigned {
    pub image: String,
    pub digest: Digest,
    pub key: String,
    /// The key's hint (base64 SHA-256 of the public key).
    pub hint: Option<String>,
    /// Why each candidate signature was refused.
    pub reasons: Vec<String>,
    /// Other required keys that did not sign either.
    pub others: Vec<String>,
}

impl std::fmt::Display for NotSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "image {} ({}) is not signed by key {:?}",
            self.image, self.digest, self.key
        )?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        f.write_str(", which the trust policy requires")?;
        if !self.reasons.is_empty() {
            write!(f, ": {}", self.reasons.join("; "))?;
        }
        if !self.others.is_empty() {
            write!(f, " (also missing: {})", self.others.join(", "))?;
        }
        Ok(())
    }
}

/// Which signature satisfied a required key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedOver {
    /// The image's own digest.
    Image,
    /// The index the reference's tag names, which lists the image.
    Index(Digest),
}

/// A required key and where its signature was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVerified {
    pub key: String,
    pub over: SignedOver,
}

/// The image satisfied the policy: every required key signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustReport {
    pub reference: String,
    pub digest: Digest,
    /// Empty when the policy requires no signature for this reference.
    pub keys: Vec<KeyVerified>,
}

/// Loads the public keys a policy names: each `trust.keys` path (relative ones from
/// `base_dir`, the YAML's directory), and `default_key` under the name `default` unless the
/// policy defines that name itself.
pub fn load_policy_keys(
    policy: &TrustPolicy,
    base_dir: &Path,
    default_key: Option<&Path>,
) -> Result<BTreeMap<String, PublicKey>, TrustError> {
    let mut out = BTreeMap::new();
    for k in policy.keys() {
        let path = base_dir.join(&k.path);
        let key = oxkit_sign::load_public_key(&path).map_err(|source| TrustError::Key {
            key: k.name.clone(),
            path: path.clone(),
            error: source,
        })?;
        out.insert(k.name.clone(), key);
    }
    if let Some(p) = default_key
        && !out.contains_key(DEFAULT_KEY)
    {
        let key = oxkit_sign::load_public_key(p).map_err(|source| TrustError::Key {
            key: DEFAULT_KEY.to_string(),
            path: p.to_path_buf(),
            error: source,
        })?;
        out.insert(DEFAULT_KEY.to_string(), key);
    }
    Ok(out)
}

/// Checks that every key `policy` requires for `reference` signed `digest` (the image
/// `reference` resolved to, e.g. the platform manifest about to be used). `keys` holds the
/// public keys by name ([`load_policy_keys`]). Returns which signature satisfied each key, or
/// an error naming the image, its digest and the first key that did not sign.
pub fn verify_policy(
    client: &Client,
    policy: &TrustPolicy,
    keys: &BTreeMap<String, PublicKey>,
    reference: &Reference,
    digest: &Digest,
) -> Result<TrustReport, TrustError> {
    verify_policy_with(client, policy, keys, reference, digest)
}

pub(crate) fn verify_policy_with(
    remote: &dyn Remote,
    policy: &TrustPolicy,
    keys: &BTreeMap<String, PublicKey>,
    reference: &Reference,
    digest: &Digest,
) -> Result<TrustReport, TrustError> {
    let image = reference.to_string();
    let required: Vec<String> = policy
        .required_keys(reference)
        .into_iter()
        .map(str::to_string)
        .collect();
    let mut report = TrustReport {
        reference: image.clone(),
        digest: digest.clone(),
        keys: Vec::new(),
    };
    let Some(first) = required.first() else {
        return Ok(report);
    };
    if let Some(unknown) = required.iter().find(|k| !keys.contains_key(*k)) {
        return Err(TrustError::UnknownKey {
            image,
            digest: digest.clone(),
            key: unknown.clone(),
        });
    }
    let registry_error = |source: crate::PublishError| TrustError::Registry {
        image: image.clone(),
        digest: digest.clone(),
        key: first.clone(),
        error: Box::new(source),
    };
    let ev = evidence::collect(remote, reference, digest).map_err(registry_error)?;
    let own = check_signers(reference, digest, &required, keys, &ev.signatures);
    let mut reasons = reasons_by_key(&own, &ev.problems);
    for k in own.verified() {
        report.keys.push(KeyVerified {
            key: k.to_string(),
            over: SignedOver::Image,
        });
    }
    let missing: Vec<String> = own.missing().map(str::to_string).collect();
    if missing.is_empty() {
        return Ok(report);
    }
    // Not (fully) signed itself: a signature over the tag's index counts when the index
    // lists this image.
    if reference.digest().is_none()
        && let Some(index) = remote.get(reference).map_err(|e| {
            registry_error(crate::PublishError::Registry {
                context: format!("read {reference}"),
                error: Box::new(e),
            })
        })?
        && index.is_index()
        && index.digest != *digest
        && oci::from_json::<ImageIndex>(&index.bytes, format!("index {reference}"))
            .is_ok_and(|i| i.manifests.iter().any(|m| m.digest == *digest))
    {
        let ev = evidence::collect(remote, reference, &index.digest).map_err(registry_error)?;
        let via = check_signers(reference, &index.digest, &missing, keys, &ev.signatures);
        for k in via.verified() {
            report.keys.push(KeyVerified {
                key: k.to_string(),
                over: SignedOver::Index(index.digest.clone()),
            });
        }
        for (k, r) in reasons_by_key(&via, &ev.problems) {
            reasons.entry(k).or_default().extend(
                r.into_iter()
                    .map(|r| format!("index {}: {r}", index.digest.short())),
            );
        }
    }
    let still: Vec<&String> = required
        .iter()
        .filter(|k| !report.keys.iter().any(|v| &v.key == *k))
        .collect();
    let Some((key, others)) = still.split_first() else {
        report.keys.sort_by(|a, b| a.key.cmp(&b.key));
        return Ok(report);
    };
    Err(TrustError::NotSigned(Box::new(NotSigned {
        image,
        digest: digest.clone(),
        key: (*key).clone(),
        hint: keys.get(*key).map(PublicKey::hint),
        reasons: reasons.remove(*key).unwrap_or_default(),
        others: others.iter().map(|k| (*k).clone()).collect(),
    })))
}

/// The reasons each key did not sign, with the evidence problems added to every key's.
fn reasons_by_key(report: &SignerReport, problems: &[String]) -> BTreeMap<String, Vec<String>> {
    report
        .signers
        .iter()
        .filter_map(|s| match &s.status {
            SignerStatus::NotSigned { reasons } => {
                let mut r = problems.to_vec();
                r.extend(reasons.iter().cloned());
                if r.is_empty() {
                    r.push("no signatures found".into());
                }
                Some((s.key.clone(), r))
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
#[path = "trust_tests.rs"]
mod tests;
