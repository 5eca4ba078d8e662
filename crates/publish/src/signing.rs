//! Signing what was pushed, cosign's way: a simple-signing payload per image digest (its
//! `optional` annotations carry the package hash and git commit), appended to the signature
//! image at `sha256-<hex>.sig` in the image's repository.
//!
//! The signature image is shared with every other signer (cosign users, other machines), so
//! it is read, appended to and written back, never replaced: existing signatures are kept,
//! and a signature by the same key over the same payload is not added twice. After writing,
//! it is read again to check that ours is there; another writer that replaced it in between
//! makes us merge again, with jittered backoff. (Signatures by one key over one payload are
//! byte-identical, RFC 6979, so two machines publishing one package can never lose each
//! other's: what either writes contains the other's.)
//!
//! A signature already made by the key over the same payload is recognised from the signature
//! manifest and the public key alone, so a run with nothing new to sign never unlocks the
//! private key (see [`KeySource`]). Keys are only used through `oxkit-sign`; this module
//! never sees key bytes.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use oxkit_registry::{BlobUpload, RetryPolicy};
use oxkit_sign::sigimage::SIGNATURE_ANNOTATION;
use oxkit_sign::{PublicKey, SignatureImage, SigningKey, SimpleSigningPayload, signature_tag};
use oxkit_spec::{Digest, Reference};
use oxkit_store::oci::media_type as mt;

use crate::error::{PublishError, Result};
use crate::remote::{Remote, put_after_blobs, retag};
use crate::{EventSink, PublishEvent};

/// Payload annotation: the package's source hash.
pub const ANNOTATION_PACKAGE_HASH: &str = "dev.oxkit.package.hash";
/// Payload annotation: the git commit the package was built from.
pub const ANNOTATION_PACKAGE_COMMIT: &str = "dev.oxkit.package.commit";

const MAX_ATTEMPTS: u32 = 10;

/// Where the signing key comes from. Publishing asks for the public key to recognise
/// signatures made before, and for the private key only when something must be signed: an
/// implementation may decrypt the key in the background meanwhile, or never.
pub trait KeySource: Sync {
    /// The public key (ideally known without unlocking the private key).
    fn public_key(&self) -> std::result::Result<PublicKey, String>;
    /// The private key, unlocked (this may wait for it to be decrypted). Errors name the key
    /// file and say what to do, without key material.
    fn signing_key(&self) -> std::result::Result<&SigningKey, String>;
}

impl KeySource for SigningKey {
    fn public_key(&self) -> std::result::Result<PublicKey, String> {
        Ok(SigningKey::public_key(self))
    }

    fn signing_key(&self) -> std::result::Result<&SigningKey, String> {
        Ok(self)
    }
}

/// What signing one digest did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignOutcome {
    /// `REPO@DIGEST`.
    pub reference: String,
    pub digest: Digest,
    /// The signature tag, `sha256-<hex>.sig`.
    pub tag: String,
    /// Whether a signature was added (false: this key had signed it already).
    pub added: bool,
    pub attempts: u32,
}

#[derive(serde::Deserialize)]
struct ProbeLayer {
    digest: Digest,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct Probe {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    layers: Vec<ProbeLayer>,
}

/// Whether a signature manifest has a layer for `payload` whose signature verifies with
/// `key`, read from the manifest alone (the payload is ours: its blob need not be fetched).
/// A layer carrying exactly `ours`, a signature this run made with the key over `payload`,
/// counts without verifying it again: that is what reading back our own write finds, and an
/// ECDSA verification costs more than the rest of the check.
fn signed_by(manifest: &[u8], payload: &[u8], key: &PublicKey, ours: Option<&[u8]>) -> bool {
    let Ok(p) = serde_json::from_slice::<Probe>(manifest) else {
        return false;
    };
    let digest = Digest::sha256(payload);
    let signatures = || {
        p.layers
            .iter()
            .filter(|l| l.digest == digest)
            .filter_map(|l| l.annotations.get(SIGNATURE_ANNOTATION))
            .filter_map(|s| STANDARD.decode(s.trim()).ok())
    };
    ours.is_some_and(|ours| signatures().any(|sig| sig == ours))
        || signatures().any(|sig| key.verify(payload, &sig).is_ok())
}

/// The simple-signing payload for `digest` in `repo` with `annotations`.
fn payload(repo: &Reference, digest: &Digest, annotations: &BTreeMap<String, String>) -> Vec<u8> {
    let mut p = SimpleSigningPayload::new(repo, digest.clone());
    for (k, v) in annotations {
        p = p.with_annotation(k.clone(), v.clone());
    }
    p.to_bytes()
}

/// The private key, checked against the public key signatures are recognised with.
fn unlock<'k>(key: &'k dyn KeySource, public: &PublicKey) -> Result<&'k SigningKey> {
    let k = key.signing_key().map_err(PublishError::Key)?;
    if &k.public_key() != public {
        return Err(PublishError::Key(format!(
            "the signing key's public half ({}) is not the public key given with it ({}); fix the key pair",
            k.public_key().hint(),
            public.hint()
        )));
    }
    Ok(k)
}

/// What every signature of one publish shares: the registry, the repository, the key, the
/// payload annotations and where events go.
#[derive(Clone, Copy)]
pub(crate) struct Signer<'a> {
    pub(crate) remote: &'a dyn Remote,
    /// The images' repository (a tag, if any, is ignored).
    pub(crate) repo: &'a Reference,
    pub(crate) key: &'a dyn KeySource,
    pub(crate) annotations: &'a BTreeMap<String, String>,
    pub(crate) events: &'a dyn EventSink,
}

impl<'a> Signer<'a> {
    /// Signs `digest` (an image in the repository), merging into its signature image.
    pub(crate) fn sign(&self, digest: &Digest) -> Result<SignOutcome> {
        Job::new(*self, digest)?.run(None)
    }

    /// Signs several digests at once (each signature image is independent).
    pub(crate) fn sign_all(&self, digests: &[Digest]) -> Result<Vec<SignOutcome>> {
        crate::parallel::each(
            digests,
            |d| format!("{}@{d}", self.repo.name()),
            "signing",
            |d| self.sign(d),
        )
        .into_iter()
        .collect()
    }

    /// Everything of signing `digest` but the write of its signature tag: see [`Prepared`].
    /// Nothing becomes visible (only untagged blobs are uploaded).
    pub(crate) fn prepare(&self, digest: &Digest) -> Result<Prepared<'a>> {
        let mut job = Job::new(*self, digest)?;
        let current = job.read()?;
        let staged = job.stage(current.as_ref())?;
        Ok(Prepared { job, staged })
    }
}

/// Signing one digest: its signature tag, payload and key, and the signature once made.
struct Job<'a> {
    remote: &'a dyn Remote,
    key: &'a dyn KeySource,
    events: &'a dyn EventSink,
    repo: Reference,
    digest: Digest,
    tag: String,
    tag_ref: Reference,
    image_ref: Reference,
    payload: Vec<u8>,
    public: PublicKey,
    signature: Option<Vec<u8>>,
}

/// A signature image with ours appended, its new blobs uploaded, not yet written to the tag.
struct Staged {
    manifest: Vec<u8>,
    media_type: String,
    uploads: Vec<BlobUpload>,
}

fn retry_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: MAX_ATTEMPTS,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(800),
    }
}

impl<'a> Job<'a> {
    fn new(signer: Signer<'a>, digest: &Digest) -> Result<Self> {
        let repo = signer.repo.without_tag();
        let tag = signature_tag(digest);
        let tag_ref = retag(&repo, &tag)?;
        let image_ref = repo.with_digest(digest.clone());
        let payload = payload(&repo, digest, signer.annotations);
        let public = signer.key.public_key().map_err(PublishError::Key)?;
        Ok(Self {
            remote: signer.remote,
            key: signer.key,
            events: signer.events,
            repo,
            digest: digest.clone(),
            tag,
            tag_ref,
            image_ref,
            payload,
            public,
            signature: None,
        })
    }

    fn outcome(&self, added: bool, attempts: u32) -> SignOutcome {
        SignOutcome {
            reference: self.image_ref.to_string(),
            digest: self.digest.clone(),
            tag: self.tag.clone(),
            added,
            attempts,
        }
    }

    /// Whether `m` (what the signature tag holds) has our signature.
    fn signed_in(&self, m: &oxkit_registry::Manifest) -> bool {
        signed_by(
            &m.bytes,
            &self.payload,
            &self.public,
            self.signature.as_deref(),
        )
    }

    /// What the signature tag holds now.
    fn read(&self) -> Result<Option<oxkit_registry::Manifest>> {
        self.remote
            .get(&self.tag_ref)
            .map_err(PublishError::registry(format!(
                "read the signatures of {}",
                self.image_ref
            )))
    }

    /// `current` with our signature appended and the new blobs uploaded; `None` when `current`
    /// has our signature already.
    fn stage(&mut self, current: Option<&oxkit_registry::Manifest>) -> Result<Option<Staged>> {
        let mut image = match current {
            Some(m) if self.signed_in(m) => return Ok(None),
            Some(m) => {
                SignatureImage::fetch(&m.bytes, |d| self.remote.get_blob(&self.repo, &d.digest))
                    .map_err(|source| PublishError::SignatureImage {
                        reference: self.image_ref.to_string(),
                        digest: self.digest.clone(),
                        tag: self.tag.clone(),
                        error: Box::new(source),
                    })?
            }
            None => SignatureImage::new(),
        };
        let signature = match &mut self.signature {
            Some(s) => s,
            None => self
                .signature
                .insert(unlock(self.key, &self.public)?.sign(&self.payload)),
        };
        image.append(&self.payload, signature);
        // The layers already there have their blobs in the repository: only the new payload
        // and the new config go up, without asking first (they are new, and tiny).
        let present: Vec<Digest> = current
            .and_then(|m| serde_json::from_slice::<Probe>(&m.bytes).ok())
            .map(|p| p.layers.into_iter().map(|l| l.digest).collect())
            .unwrap_or_default();
        let (manifest, blobs) = image.to_parts();
        let uploads: Vec<BlobUpload> = blobs
            .into_iter()
            .filter(|(d, _)| !present.contains(&d.digest))
            .map(|(_, bytes)| BlobUpload::from_bytes(bytes).without_check())
            .collect();
        self.remote
            .push_blobs(&self.tag_ref, &uploads)
            .map_err(PublishError::registry(format!(
                "upload the signature of {}",
                self.image_ref
            )))?;
        let media_type = serde_json::from_slice::<Probe>(&manifest)
            .ok()
            .and_then(|p| p.media_type)
            .unwrap_or_else(|| mt::OCI_MANIFEST.to_string());
        Ok(Some(Staged {
            manifest,
            media_type,
            uploads,
        }))
    }

    /// Writes `staged` as the signature tag.
    fn write(&self, staged: &Staged) -> Result<()> {
        put_after_blobs(
            self.remote,
            &self.tag_ref,
            &staged.media_type,
            &staged.manifest,
            &staged.uploads,
        )
        .map_err(PublishError::registry(format!(
            "write the signatures of {}",
            self.image_ref
        )))?;
        Ok(())
    }

    /// Read, append, write, until a read shows our signature. `ready` is a first round
    /// staged already (from a read just made).
    fn run(mut self, mut ready: Option<Staged>) -> Result<SignOutcome> {
        for attempt in 1..=MAX_ATTEMPTS {
            let staged = match ready.take() {
                Some(s) => s,
                None => {
                    let mut current = self.read()?;
                    if attempt > 1 && !current.as_ref().is_some_and(|m| self.signed_in(m)) {
                        // Another writer replaced ours: wait, then merge into what the tag
                        // holds after the wait (a read from before it would widen the race).
                        self.events.event(PublishEvent::SignatureRetry {
                            reference: self.image_ref.to_string(),
                            attempt,
                        });
                        std::thread::sleep(retry_policy().backoff(attempt));
                        current = self.read()?;
                    }
                    match self.stage(current.as_ref())? {
                        Some(s) => s,
                        None => return Ok(self.outcome(attempt > 1, attempt)),
                    }
                }
            };
            self.write(&staged)?;
            // The next round reads it back: that is the check that ours survived.
        }
        Err(PublishError::SignatureRace {
            reference: self.image_ref.to_string(),
            tag: self.tag,
            key_hint: self.public.hint(),
            attempts: MAX_ATTEMPTS,
        })
    }
}

/// Signs what `reference` names (a tag, else `latest`, or a digest) in its repository with
/// `key`, merging into the signature images there; with `recursive` and an index, each image
/// it lists as well (its own signature first in the result). `annotations` go into each
/// payload's `optional` section, as `cosign sign -a` puts them.
pub(crate) fn sign_reference_with(
    remote: &dyn Remote,
    reference: &Reference,
    key: &dyn KeySource,
    annotations: &BTreeMap<String, String>,
    recursive: bool,
    events: &dyn EventSink,
) -> Result<Vec<SignOutcome>> {
    let top = remote
        .get(reference)
        .map_err(PublishError::registry(format!("sign {reference}")))?
        .ok_or_else(|| PublishError::NotFound {
            reference: reference.to_string(),
        })?;
    let mut digests = vec![top.digest.clone()];
    if recursive && top.is_index() {
        let index: oxkit_store::oci::ImageIndex =
            oxkit_store::oci::from_json(&top.bytes, format!("index {reference}"))
                .map_err(PublishError::store(format!("read the index {reference}")))?;
        for m in index.manifests {
            if !digests.contains(&m.digest) {
                digests.push(m.digest);
            }
        }
    }
    Signer {
        remote,
        repo: reference,
        key,
        annotations,
        events,
    }
    .sign_all(&digests)
}

/// A signature made ahead of its write ([`Signer::prepare`]): reading the tag, unlocking the key and
/// uploading the blobs done while something else is under way (the write of the index it
/// signs), so that [`Prepared::commit`] is one write and its check.
pub(crate) struct Prepared<'a> {
    job: Job<'a>,
    /// `None`: the key had signed it already.
    staged: Option<Staged>,
}

impl Prepared<'_> {
    /// The digest it signs.
    pub(crate) fn digest(&self) -> &Digest {
        &self.job.digest
    }

    /// Writes the signature (and reads it back, merging again if another signer's write
    /// replaced it). The write follows the read it was made from as closely as in
    /// [`Signer::sign`].
    pub(crate) fn commit(self) -> Result<SignOutcome> {
        match self.staged {
            Some(staged) => self.job.run(Some(staged)),
            None => Ok(self.job.outcome(false, 1)),
        }
    }
}

#[cfg(test)]
#[path = "signing_tests.rs"]
mod tests;
