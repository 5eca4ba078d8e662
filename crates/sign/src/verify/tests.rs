use std::collections::BTreeMap;

use oxkit_spec::reference::Reference;

use super::*;
use crate::keys::SigningKey;
use crate::testutil::*;

fn fetch_from(
    blobs: &BTreeMap<Digest, Vec<u8>>,
) -> impl FnMut(&Descriptor) -> Result<Vec<u8>, String> + '_ {
    |d| {
        blobs
            .get(&d.digest)
            .cloned()
            .ok_or_else(|| format!("no blob {}", d.digest))
    }
}

fn reference() -> Reference {
    Reference::parse("127.0.0.1:5917/test/img").expect("ref")
}

#[test]
fn verifies_cosigns_signatures_with_each_key() {
    let blobs = sig_blobs();
    let one = verify_signature_image(SIG_MANIFEST, fetch_from(&blobs), &image(), &cosign_pub())
        .expect("key 1");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].layer, Digest::sha256(PAYLOAD_KEY1));
    assert_eq!(one[0].payload.docker_reference, "127.0.0.1:5917/test/img");
    assert_eq!(one[0].payload.annotations, None);

    let two = verify_signature_image(SIG_MANIFEST, fetch_from(&blobs), &image(), &cosign2_pub())
        .expect("key 2");
    assert_eq!(two.len(), 1);
    let ann = two[0].payload.annotations.clone().expect("annotations");
    assert_eq!(ann["alpha"], "two");
    assert_eq!(ann["zeta"], "1");
}

#[test]
fn wrong_key_is_rejected_for_every_layer() {
    let blobs = sig_blobs();
    let stranger = SigningKey::generate().public_key();
    let err = verify_signature_image(SIG_MANIFEST, fetch_from(&blobs), &image(), &stranger)
        .expect_err("wrong key");
    assert_eq!(err.rejections().len(), 2);
    assert!(
        err.rejections()
            .iter()
            .all(|r| r.reason == Rejection::Signature(SignatureError::Mismatch))
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&stranger.hint()) && msg.contains(IMAGE),
        "{msg}"
    );
}

#[test]
fn payload_edited_after_signing_is_rejected() {
    // The attacker rewrites the payload and fixes up the descriptor, keeping the signature.
    let key = SigningKey::generate();
    let signed = crate::sign_image(&key, &reference(), image(), []);
    let edited = String::from_utf8(signed.payload.clone())
        .expect("utf8")
        .replace("test/img", "test/evil")
        .into_bytes();
    let mut img = SignatureImage::new();
    img.append(&edited, &signed.signature);
    let err = img.verify(&image(), &key.public_key()).expect_err("edited");
    assert_eq!(
        err.rejections()[0].reason,
        Rejection::Signature(SignatureError::Mismatch)
    );
}

#[test]
fn signature_for_another_digest_is_rejected() {
    let key = SigningKey::generate();
    let other = Digest::sha256(b"another manifest");
    let signed = crate::sign_image(&key, &reference(), other.clone(), []);
    let mut img = SignatureImage::new();
    img.append(&signed.payload, &signed.signature);
    let err = img
        .verify(&image(), &key.public_key())
        .expect_err("other digest");
    assert_eq!(
        err.rejections()[0].reason,
        Rejection::OtherDigest {
            expected: image(),
            found: other
        }
    );
    assert!(err.to_string().contains("another image"));
}

#[test]
fn layer_digest_mismatch_fails_the_whole_check() {
    let mut blobs = sig_blobs();
    let mut edited = PAYLOAD_KEY2.to_vec();
    edited[30] ^= 1;
    blobs.insert(Digest::sha256(PAYLOAD_KEY2), edited);
    let err = verify_signature_image(SIG_MANIFEST, fetch_from(&blobs), &image(), &cosign_pub())
        .expect_err("mismatch");
    assert!(
        matches!(
            err,
            VerifyError::Image(SignatureImageError::LayerDigestMismatch { index: 1, .. })
        ),
        "{err}"
    );
}

#[test]
fn malformed_layers_are_reported_each_with_its_reason() {
    let key = SigningKey::generate();
    let signed = crate::sign_image(&key, &reference(), image(), []);
    let mut v = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2,
                   "digest": Digest::sha256(b"{}").to_string()},
        "layers": []
    });
    let layer = |mt: &str, ann: serde_json::Value| {
        serde_json::json!({"mediaType": mt, "size": signed.payload.len(),
            "digest": Digest::sha256(&signed.payload).to_string(), "annotations": ann})
    };
    v["layers"] = serde_json::json!([
        layer("application/octet-stream", serde_json::json!({})),
        layer(
            crate::payload::SIMPLE_SIGNING_MEDIA_TYPE,
            serde_json::json!({})
        ),
        layer(
            crate::payload::SIMPLE_SIGNING_MEDIA_TYPE,
            serde_json::json!({SIGNATURE_ANNOTATION: "%%%"})
        ),
        layer(
            crate::payload::SIMPLE_SIGNING_MEDIA_TYPE,
            serde_json::json!({SIGNATURE_ANNOTATION: "AAAA"})
        ),
    ]);
    let manifest = serde_json::to_vec(&v).expect("json");
    let blobs = BTreeMap::from([(Digest::sha256(&signed.payload), signed.payload.clone())]);
    let err = verify_signature_image(&manifest, fetch_from(&blobs), &image(), &key.public_key())
        .expect_err("nothing valid");
    let reasons: Vec<_> = err.rejections().iter().map(|r| r.reason.clone()).collect();
    assert_eq!(
        reasons,
        vec![
            Rejection::NotSimpleSigning("application/octet-stream".into()),
            Rejection::MissingSignature,
            Rejection::SignatureNotBase64,
            Rejection::Signature(SignatureError::Encoding),
        ]
    );
    assert!(matches!(
        SignatureImage::new().verify(&image(), &key.public_key()),
        Err(VerifyError::NoSignatures { .. })
    ));
}

#[test]
fn oxkit_signatures_round_trip_through_parts() {
    let key = SigningKey::generate();
    let signed = crate::sign_image(
        &key,
        &reference(),
        image(),
        [("org.oxkit.source".to_string(), "abc".to_string())],
    );
    let mut img = SignatureImage::from_parts(SIG_MANIFEST, sig_blobs()).expect("cosign's");
    assert!(img.append(&signed.payload, &signed.signature));
    let (manifest, blobs) = img.to_parts();
    let blobs: BTreeMap<_, _> = blobs.into_iter().map(|(d, b)| (d.digest, b)).collect();
    let got = verify_signature_image(&manifest, fetch_from(&blobs), &image(), &key.public_key())
        .expect("verifies");
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0]
            .payload
            .annotations
            .as_ref()
            .map(|a| a["org.oxkit.source"].clone()),
        Some("abc".into())
    );
    // cosign's own signatures are still there and still verify.
    verify_signature_image(&manifest, fetch_from(&blobs), &image(), &cosign_pub()).expect("key1");
}
