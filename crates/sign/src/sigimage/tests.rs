use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::*;
use crate::testutil::*;

fn fixture() -> SignatureImage {
    SignatureImage::from_parts(SIG_MANIFEST, sig_blobs()).expect("cosign's signature image")
}

#[test]
fn re_serialises_cosigns_manifest_and_config_byte_for_byte() {
    let img = fixture();
    assert_eq!(img.len(), 2);
    let (manifest, blobs) = img.to_parts();
    assert_eq!(
        String::from_utf8(manifest).expect("utf8"),
        String::from_utf8_lossy(SIG_MANIFEST)
    );
    assert_eq!(blobs[0].1, SIG_CONFIG, "config first, as cosign wrote it");
    assert_eq!(blobs.len(), 3);
    for (d, bytes) in &blobs {
        assert_eq!(d.digest, Digest::sha256(bytes));
        assert_eq!(d.size, bytes.len() as u64);
        assert!(d.annotations.is_empty());
    }
}

#[test]
fn building_from_scratch_gives_cosigns_bytes() {
    let sigs = sig_annotations();
    let mut img = SignatureImage::new();
    assert!(img.append(PAYLOAD_KEY1, &STANDARD.decode(&sigs[0]).expect("b64")));
    assert!(img.append(PAYLOAD_KEY2, &STANDARD.decode(&sigs[1]).expect("b64")));
    let (manifest, blobs) = img.to_parts();
    assert_eq!(manifest, SIG_MANIFEST);
    assert_eq!(blobs[0].1, SIG_CONFIG);
}

#[test]
fn single_layer_config_matches_cosigns_first_signature() {
    // cosign's config after its first signature (one history entry, one diff_id).
    let want = "{\"architecture\":\"\",\"created\":\"0001-01-01T00:00:00Z\",\"history\":[{\"created\":\"0001-01-01T00:00:00Z\"}],\"os\":\"\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:cb0f20102673433c916264e1c8ab1fa386c7a1489a0c96b99e7a32dd049152c1\"]},\"config\":{}}";
    let mut img = SignatureImage::new();
    img.append(PAYLOAD_KEY1, b"sig");
    let (_, blobs) = img.to_parts();
    assert_eq!(String::from_utf8_lossy(&blobs[0].1), want);
    assert_eq!(
        blobs[0].0.digest.as_str(),
        "sha256:d93bb9d799a2bef4eac6e14a5525e11b0f7615e0555efa4ed57fd1f612f1778d"
    );
}

#[test]
fn append_is_idempotent() {
    let key = cosign_key();
    let sig = key.sign(PAYLOAD_KEY1);
    let mut img = fixture();
    assert!(
        img.append(PAYLOAD_KEY1, &sig),
        "a new signature by RFC 6979 differs from Go's"
    );
    let (before, _) = img.to_parts();
    assert!(!img.append(PAYLOAD_KEY1, &sig), "the same signature twice");
    assert_eq!(img.len(), 3);
    assert_eq!(img.to_parts().0, before);
    // Duplicate payload blobs are pushed once.
    assert_eq!(img.to_parts().1.len(), 3);
}

#[test]
fn append_unless_signed_by_matches_cosigns_duplicate_detector() {
    let key = cosign_key();
    let mut img = fixture();
    // cosign.key already signed this payload (with another, randomised signature).
    assert!(!img.append_unless_signed_by(PAYLOAD_KEY1, &key.sign(PAYLOAD_KEY1), &key.public_key()));
    assert_eq!(img.len(), 2);
    // The same key on a payload it has not signed yet is added.
    let other = b"{\"other\":1}";
    assert!(img.append_unless_signed_by(other, &key.sign(other), &key.public_key()));
    assert_eq!(img.len(), 3);
}

#[test]
fn layer_blob_that_does_not_match_is_refused() {
    let mut blobs = sig_blobs();
    let d1 = Digest::sha256(PAYLOAD_KEY1);
    let mut edited = PAYLOAD_KEY1.to_vec();
    edited[20] ^= 1;
    blobs.insert(d1.clone(), edited.clone());
    let err = SignatureImage::from_parts(SIG_MANIFEST, blobs).expect_err("mismatch");
    match err {
        SignatureImageError::LayerDigestMismatch {
            index,
            expected,
            actual,
        } => {
            assert_eq!(index, 0);
            assert_eq!(expected, d1);
            assert_eq!(actual, Digest::sha256(&edited));
        }
        other => panic!("{other}"),
    }
}

#[test]
fn missing_blobs_and_bad_manifests_are_errors() {
    let mut blobs = sig_blobs();
    blobs.remove(&Digest::sha256(PAYLOAD_KEY2));
    assert!(matches!(
        SignatureImage::from_parts(SIG_MANIFEST, blobs),
        Err(SignatureImageError::MissingBlob { index: 1, .. })
    ));
    assert!(matches!(
        SignatureImage::from_parts(b"{\"schemaVersion\":2}", sig_blobs()),
        Err(SignatureImageError::Manifest(_))
    ));
    let index = String::from_utf8_lossy(SIG_MANIFEST).replace(
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    );
    assert!(matches!(
        SignatureImage::from_parts(index.as_bytes(), sig_blobs()),
        Err(SignatureImageError::MediaType(_))
    ));
    let fetch_err =
        SignatureImage::fetch(SIG_MANIFEST, |_| Err("registry said 500")).expect_err("fetch error");
    assert!(
        fetch_err.to_string().contains("registry said 500"),
        "{fetch_err}"
    );
}

#[test]
fn too_many_layers_are_refused() {
    let layer = serde_json::json!({
        "mediaType": SIMPLE_SIGNING_MEDIA_TYPE, "size": 1,
        "digest": Digest::sha256(b"x").to_string()});
    let m = serde_json::json!({
        "schemaVersion": 2,
        "config": {"mediaType": OCI_CONFIG, "size": 1, "digest": Digest::sha256(b"c").to_string()},
        "layers": vec![layer; MAX_SIGNATURE_LAYERS + 1]});
    let bytes = serde_json::to_vec(&m).expect("json");
    assert!(matches!(
        SignatureImage::from_parts(&bytes, [(Digest::sha256(b"x"), b"x".to_vec())]),
        Err(SignatureImageError::TooManyLayers(1001))
    ));
}

#[test]
fn keeps_foreign_annotations_when_merging() {
    let mut v: serde_json::Value = serde_json::from_slice(SIG_MANIFEST).expect("json");
    v["layers"][0]["annotations"][CERTIFICATE_ANNOTATION] = "-----BEGIN CERTIFICATE-----\n".into();
    let bytes = serde_json::to_vec(&v).expect("json");
    let mut img = SignatureImage::from_parts(&bytes, sig_blobs()).expect("parse");
    img.append(b"new", b"sig");
    let (manifest, _) = img.to_parts();
    let back: serde_json::Value = serde_json::from_slice(&manifest).expect("json");
    assert_eq!(
        back["layers"][0]["annotations"][CERTIFICATE_ANNOTATION],
        "-----BEGIN CERTIFICATE-----\n"
    );
    assert_eq!(back["layers"].as_array().map(Vec::len), Some(3));
}

#[test]
fn signature_tag_is_cosigns() {
    assert_eq!(
        signature_tag(&image()),
        "sha256-56333d65e1974031b2dc0b9a81c6c3db17ebfd49fbd3aa66fffd0f6bb72cdfa3.sig"
    );
}
