use std::sync::Mutex;

use oxkit_sign::{PublicKey, SignatureImage};

use super::*;
use crate::NoEvents;
use crate::remote::fake::{Fake, Op, State, key};
use crate::testutil::{reference, remote_image, sign_digest};

fn annotations() -> BTreeMap<String, String> {
    BTreeMap::from([
        (ANNOTATION_PACKAGE_HASH.to_string(), "abc123".to_string()),
        (ANNOTATION_PACKAGE_COMMIT.to_string(), "c0ffee".to_string()),
    ])
}

fn signature_image(fake: &Fake, repo: &Reference, digest: &Digest) -> SignatureImage {
    let tag_ref = repo.with_tag(&signature_tag(digest)).unwrap();
    let (_, manifest) = fake.tagged(&tag_ref).expect("signature image");
    SignatureImage::fetch(&manifest, |d| fake.get_blob(repo, &d.digest)).unwrap()
}

fn verifies(fake: &Fake, repo: &Reference, digest: &Digest, key: &PublicKey) -> bool {
    signature_image(fake, repo, digest)
        .verify(digest, key)
        .is_ok()
}

fn image(fake: &Fake) -> (Reference, Digest) {
    let repo = reference("reg.example/me/pkgx:t1");
    let d = remote_image(&mut fake.state(), &repo, "amd64", "s").digest;
    (repo, d)
}

#[test]
fn signs_with_annotations_once() {
    let fake = Fake::default();
    let (repo, digest) = image(&fake);
    let k = SigningKey::generate();
    let out = sign_digest(&fake, &repo, &digest, &k, &annotations(), &NoEvents).unwrap();
    assert!(out.added);
    assert_eq!(out.tag, signature_tag(&digest));
    let img = signature_image(&fake, &repo, &digest);
    let v = img.verify(&digest, &k.public_key()).unwrap();
    assert_eq!(v.len(), 1);
    let ann = v[0].payload.annotations.clone().unwrap();
    assert_eq!(ann[ANNOTATION_PACKAGE_HASH], "abc123");
    assert_eq!(ann[ANNOTATION_PACKAGE_COMMIT], "c0ffee");
    assert_eq!(v[0].payload.docker_reference, "reg.example/me/pkgx");

    // Again: recognised from the manifest alone; nothing uploaded or written.
    let counts = |f: &Fake| {
        let st = f.state();
        (st.puts, st.uploads)
    };
    let before = counts(&fake);
    let again = sign_digest(&fake, &repo, &digest, &k, &annotations(), &NoEvents).unwrap();
    assert!(!again.added);
    assert_eq!(counts(&fake), before);
    assert_eq!(signature_image(&fake, &repo, &digest).len(), 1);
}

#[test]
fn other_signers_are_kept() {
    let fake = Fake::default();
    let (repo, digest) = image(&fake);
    let (k1, k2) = (SigningKey::generate(), SigningKey::generate());
    sign_digest(&fake, &repo, &digest, &k1, &annotations(), &NoEvents).unwrap();
    sign_digest(&fake, &repo, &digest, &k2, &BTreeMap::new(), &NoEvents).unwrap();
    assert_eq!(signature_image(&fake, &repo, &digest).len(), 2);
    assert!(verifies(&fake, &repo, &digest, &k1.public_key()));
    assert!(verifies(&fake, &repo, &digest, &k2.public_key()));
}

#[test]
fn a_signature_lost_to_a_rival_writer_is_added_again() {
    let fake = Fake::default();
    let (repo, digest) = image(&fake);
    let (ours, theirs) = (SigningKey::generate(), SigningKey::generate());
    // The rival read the (empty) signature image before our write and writes its own
    // one-layer image just after ours: before our verifying read.
    let tag_ref = repo.with_tag(&signature_tag(&digest)).unwrap();
    let rival_image = with_signature(SignatureImage::new(), &theirs, &repo, &digest);
    replace_on_second_read(&fake, &tag_ref, rival_image);
    let out = sign_digest(&fake, &repo, &digest, &ours, &annotations(), &NoEvents).unwrap();
    assert!(out.added && out.attempts >= 3, "{out:?}");
    assert!(verifies(&fake, &repo, &digest, &ours.public_key()));
    assert!(
        verifies(&fake, &repo, &digest, &theirs.public_key()),
        "the rival's is kept"
    );
}

/// `img` with `key`'s signature of `digest` appended.
fn with_signature(
    mut img: SignatureImage,
    key: &SigningKey,
    repo: &Reference,
    digest: &Digest,
) -> SignatureImage {
    let s = oxkit_sign::sign_image(key, repo, digest.clone(), []);
    img.append(&s.payload, &s.signature);
    img
}

/// Writes `img` (its blobs, then its manifest) as the tag `tag_ref`.
fn write_image(st: &mut State, tag_ref: &Reference, img: &SignatureImage) {
    let (manifest, blobs) = img.to_parts();
    for (_, b) in blobs {
        st.put(None, "blob", &b);
    }
    st.put(Some(tag_ref), mt::OCI_MANIFEST, &manifest);
}

/// Makes the second read of `tag_ref` find `img` there, written just before it: what a rival
/// signer's write between our write and our verifying read looks like.
fn replace_on_second_read(fake: &Fake, tag_ref: &Reference, img: SignatureImage) {
    let reads = Mutex::new(0);
    let tag_key = key(tag_ref);
    fake.set_hook(Box::new(move |st: &mut State, op: Op, r: &Reference| {
        if op != Op::Get || key(r) != tag_key {
            return;
        }
        let mut n = reads.lock().unwrap();
        *n += 1;
        if *n == 2 {
            write_image(st, r, &img);
        }
    }));
}

/// Writes a signature image over the tag when the signer announces a retry, that is while
/// it waits before merging again.
struct WritesDuringTheWait<'f> {
    fake: &'f Fake,
    tag_ref: Reference,
    image: SignatureImage,
    written: Mutex<bool>,
}

impl crate::EventSink for WritesDuringTheWait<'_> {
    fn event(&self, e: PublishEvent) {
        let mut written = self.written.lock().unwrap();
        if matches!(e, PublishEvent::SignatureRetry { .. }) && !*written {
            *written = true;
            write_image(&mut self.fake.state(), &self.tag_ref, &self.image);
        }
    }
}

#[test]
fn a_retry_merges_what_was_written_while_it_waited() {
    let fake = Fake::default();
    let (repo, digest) = image(&fake);
    let (ours, second, third) = (
        SigningKey::generate(),
        SigningKey::generate(),
        SigningKey::generate(),
    );
    let tag_ref = repo.with_tag(&signature_tag(&digest)).unwrap();
    // A second signer replaces ours just before our verifying read; a third, having read the
    // second's image, appends to it while we wait to retry.
    let second_image = with_signature(SignatureImage::new(), &second, &repo, &digest);
    let third_image = with_signature(second_image.clone(), &third, &repo, &digest);
    replace_on_second_read(&fake, &tag_ref, second_image);
    let events = WritesDuringTheWait {
        fake: &fake,
        tag_ref: tag_ref.clone(),
        image: third_image,
        written: Mutex::new(false),
    };
    let out = sign_digest(&fake, &repo, &digest, &ours, &annotations(), &events).unwrap();
    assert!(out.added, "{out:?}");
    assert!(*events.written.lock().unwrap(), "the retry was announced");
    for k in [&ours, &second, &third] {
        assert!(
            verifies(&fake, &repo, &digest, &k.public_key()),
            "every signer's signature is kept"
        );
    }
}

#[test]
fn an_unreadable_signature_image_is_not_overwritten() {
    let fake = Fake::default();
    let (repo, digest) = image(&fake);
    let k = SigningKey::generate();
    sign_digest(&fake, &repo, &digest, &k, &annotations(), &NoEvents).unwrap();
    // Corrupt the payload blob the signature image names.
    let img = signature_image(&fake, &repo, &digest);
    let (layer, _) = img.layers().next().unwrap();
    fake.state()
        .objects
        .insert(layer.digest.clone(), ("blob".into(), b"tampered".to_vec()));
    let puts = fake.state().puts;
    let other = SigningKey::generate();
    let e = sign_digest(&fake, &repo, &digest, &other, &annotations(), &NoEvents).unwrap_err();
    assert!(matches!(e, PublishError::SignatureImage { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains(digest.as_str()) && msg.contains(".sig"),
        "{msg}"
    );
    assert_eq!(fake.state().puts, puts);
}

#[test]
fn several_digests_are_signed_together() {
    let fake = Fake::default();
    let repo = reference("reg.example/me/pkgx:t1");
    let digests: Vec<Digest> = ["amd64", "arm64", "riscv64"]
        .iter()
        .map(|a| remote_image(&mut fake.state(), &repo, a, a).digest)
        .collect();
    let k = SigningKey::generate();
    let out = Signer {
        remote: &fake,
        repo: &repo,
        key: &k,
        annotations: &annotations(),
        events: &NoEvents,
    }
    .sign_all(&digests)
    .unwrap();
    assert_eq!(out.len(), 3);
    for (o, d) in out.iter().zip(&digests) {
        assert_eq!(&o.digest, d);
        assert!(verifies(&fake, &repo, d, &k.public_key()));
    }
}

/// A key source that counts unlocks and can refuse them.
struct Counted {
    key: SigningKey,
    public: PublicKey,
    unlocks: std::sync::atomic::AtomicUsize,
    refuse: bool,
}

impl Counted {
    fn new(refuse: bool) -> Self {
        let key = SigningKey::generate();
        Self {
            public: key.public_key(),
            key,
            unlocks: Default::default(),
            refuse,
        }
    }
}

impl KeySource for Counted {
    fn public_key(&self) -> std::result::Result<PublicKey, String> {
        Ok(self.public.clone())
    }
    fn signing_key(&self) -> std::result::Result<&SigningKey, String> {
        self.unlocks
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.refuse {
            return Err("ox.key: wrong passphrase".into());
        }
        Ok(&self.key)
    }
}

#[test]
fn the_private_key_is_unlocked_only_when_something_needs_signing() {
    let fake = Fake::default();
    let (repo, digest) = image(&fake);
    let k = Counted::new(false);
    sign_digest(&fake, &repo, &digest, &k, &annotations(), &NoEvents).unwrap();
    assert_eq!(k.unlocks.load(std::sync::atomic::Ordering::SeqCst), 1);
    let again = sign_digest(&fake, &repo, &digest, &k, &annotations(), &NoEvents).unwrap();
    assert!(!again.added);
    assert_eq!(
        k.unlocks.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "unlocked again"
    );
    // A key that cannot be unlocked fails with its own message, and writes nothing.
    let locked = Counted::new(true);
    let puts = fake.state().puts;
    let e = sign_digest(&fake, &repo, &digest, &locked, &annotations(), &NoEvents).unwrap_err();
    assert!(e.to_string().contains("wrong passphrase"), "{e}");
    assert_eq!(fake.state().puts, puts);
}

#[test]
fn a_public_key_that_is_not_the_private_keys_is_refused() {
    let fake = Fake::default();
    let (repo, digest) = image(&fake);
    let mut k = Counted::new(false);
    k.public = SigningKey::generate().public_key();
    let e = sign_digest(&fake, &repo, &digest, &k, &annotations(), &NoEvents).unwrap_err();
    assert!(e.to_string().contains("public half"), "{e}");
}

#[test]
fn our_own_signature_is_recognised_by_its_bytes_and_others_by_verifying() {
    let (repo, digest) = (reference("reg.example/me/pkgx"), Digest::sha256(b"image"));
    let k = SigningKey::generate();
    let other = SigningKey::generate();
    let p = payload(&repo, &digest, &annotations());
    let ours = k.sign(&p);
    let mut img = SignatureImage::new();
    img.append(&p, &ours);
    let (manifest, _) = img.to_parts();
    // Found by verifying when this run has not signed (the first read of the tag).
    assert!(signed_by(&manifest, &p, &k.public_key(), None));
    assert!(!signed_by(&manifest, &p, &other.public_key(), None));
    // Found by its bytes when it is the signature this run made: no key needed to see it.
    assert!(signed_by(&manifest, &p, &other.public_key(), Some(&ours)));
    // The bytes count only on the layer of our payload.
    let other_payload = payload(&repo, &Digest::sha256(b"other"), &annotations());
    assert!(!signed_by(
        &manifest,
        &other_payload,
        &other.public_key(),
        Some(&ours)
    ));
    // A layer with another signature by our key over our payload (cosign's are randomised)
    // is still found, by verifying.
    let der = ecdsa_with_other_nonce(&k, &p);
    let mut img = SignatureImage::new();
    img.append(&p, &der);
    let (manifest, _) = img.to_parts();
    assert!(signed_by(&manifest, &p, &k.public_key(), Some(&ours)));
    assert!(!signed_by(&manifest, &p, &other.public_key(), Some(&ours)));
}

/// Another valid signature by `key` over `message` than the one `key.sign` makes: `(r, n - s)`,
/// as a signer with another nonce (cosign, whose signatures are randomised) would make.
fn ecdsa_with_other_nonce(key: &SigningKey, message: &[u8]) -> Vec<u8> {
    let sig = p256::ecdsa::Signature::from_der(&key.sign(message)).unwrap();
    let (r, s) = sig.split_scalars();
    let flipped = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
    assert_ne!(flipped, sig);
    flipped.to_der().as_bytes().to_vec()
}
