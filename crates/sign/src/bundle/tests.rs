use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::*;
use crate::keys::SigningKey;
use crate::testutil::*;

const DSSE: &[u8] = include_bytes!("../../testdata/bundle-dsse.json");
const MESSAGE: &[u8] = include_bytes!("../../testdata/bundle-message.json");
const BLOB: &[u8] = include_bytes!("../../testdata/blob.txt");
const REFERRER: &[u8] = include_bytes!("../../testdata/bundle-manifest.json");
const INDEX: &[u8] = include_bytes!("../../testdata/referrers-index.json");

/// A DSSE bundle signed by `key` over `statement` (what `cosign sign --new-bundle-format`
/// makes), with protojson's camelCase or proto snake_case field names.
fn dsse_bundle(key: &SigningKey, payload_type: &str, statement: &[u8], snake: bool) -> Vec<u8> {
    let sig = key.sign(&pae(payload_type, statement));
    let (env, pt) = if snake {
        ("dsse_envelope", "payload_type")
    } else {
        ("dsseEnvelope", "payloadType")
    };
    serde_json::to_vec(&serde_json::json!({
        "mediaType": BUNDLE_MEDIA_TYPE_V03,
        "verificationMaterial": {"publicKey": {"hint": key.public_key().hint()}},
        env: {"payload": STANDARD.encode(statement), pt: payload_type,
              "signatures": [{"sig": STANDARD.encode(sig)}]}
    }))
    .expect("json")
}

fn statement(digest_hex: &str, predicate_type: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "127.0.0.1:5917/test/img", "digest": {"sha256": digest_hex}}],
        "predicateType": predicate_type,
        "predicate": {}
    }))
    .expect("json")
}

#[test]
fn verifies_cosigns_dsse_bundle() {
    let v = verify_bundle(DSSE, &image(), &cosign_pub()).expect("cosign's bundle");
    assert_eq!(
        v,
        VerifiedBundle::Statement {
            predicate_type: COSIGN_SIGN_PREDICATE_TYPE.into(),
            predicate: serde_json::json!({"hello": "world"}),
        }
    );
    assert!(v.is_image_signature());
}

#[test]
fn cosigns_dsse_bundle_fails_with_another_key_or_digest() {
    let err = verify_bundle(DSSE, &image(), &cosign2_pub()).expect_err("other key");
    assert!(
        matches!(
            err,
            BundleError::Signature {
                source: SignatureError::Mismatch,
                ..
            }
        ),
        "{err}"
    );
    // The bundle's own key hint is named, since it differs from the key tried.
    assert!(err.to_string().contains(&cosign_pub().hint()), "{err}");
    let other = Digest::sha256(b"other");
    let err = verify_bundle(DSSE, &other, &cosign_pub()).expect_err("other digest");
    assert!(matches!(err, BundleError::SubjectMismatch { .. }), "{err}");
}

#[test]
fn verifies_cosigns_message_signature_bundle() {
    let digest = Digest::sha256(BLOB);
    assert_eq!(
        verify_bundle(MESSAGE, &digest, &cosign_pub()).expect("message signature"),
        VerifiedBundle::MessageSignature
    );
    assert!(matches!(
        verify_bundle(MESSAGE, &image(), &cosign_pub()),
        Err(BundleError::MessageDigestMismatch { .. })
    ));
    assert!(matches!(
        verify_bundle(MESSAGE, &digest, &cosign2_pub()),
        Err(BundleError::Signature { .. })
    ));
}

#[test]
fn edited_statement_does_not_verify() {
    let key = SigningKey::generate();
    let good = statement(image().hex(), COSIGN_SIGN_PREDICATE_TYPE);
    let bundle = dsse_bundle(&key, IN_TOTO_PAYLOAD_TYPE, &good, false);
    verify_bundle(&bundle, &image(), &key.public_key()).expect("valid");
    // Swap in a statement about another image, keeping the signature.
    let mut v: serde_json::Value = serde_json::from_slice(&bundle).expect("json");
    let evil = statement(Digest::sha256(b"evil").hex(), COSIGN_SIGN_PREDICATE_TYPE);
    v["dsseEnvelope"]["payload"] = STANDARD.encode(&evil).into();
    let tampered = serde_json::to_vec(&v).expect("json");
    assert!(matches!(
        verify_bundle(&tampered, &Digest::sha256(b"evil"), &key.public_key()),
        Err(BundleError::Signature { .. })
    ));
}

#[test]
fn accepts_proto_field_names_and_checks_payload_type() {
    let key = SigningKey::generate();
    let st = statement(image().hex(), "https://slsa.dev/provenance/v1");
    let snake = dsse_bundle(&key, IN_TOTO_PAYLOAD_TYPE, &st, true);
    let v = verify_bundle(&snake, &image(), &key.public_key()).expect("snake_case");
    assert!(!v.is_image_signature(), "an attestation, not a signature");
    let wrong_type = dsse_bundle(&key, "application/json", &st, false);
    assert!(matches!(
        verify_bundle(&wrong_type, &image(), &key.public_key()),
        Err(BundleError::PayloadType(_))
    ));
    assert!(matches!(
        verify_bundle(
            b"{\"mediaType\":\"application/json\"}",
            &image(),
            &key.public_key()
        ),
        Err(BundleError::MediaType(_))
    ));
    assert!(matches!(
        verify_bundle(
            format!("{{\"mediaType\":\"{BUNDLE_MEDIA_TYPE_V03}\"}}").as_bytes(),
            &image(),
            &key.public_key()
        ),
        Err(BundleError::NoContent)
    ));
}

#[test]
fn reads_cosigns_referrer_artifact_from_the_fallback_index() {
    let refs = bundle_referrers(INDEX).expect("index");
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].digest, Digest::sha256(REFERRER));
    let artifact = BundleArtifact::fetch(REFERRER, &image(), |d: &Descriptor| {
        if d.digest == Digest::sha256(DSSE) {
            Ok(DSSE.to_vec())
        } else {
            Err(format!("unexpected fetch {}", d.digest))
        }
    })
    .expect("artifact");
    assert_eq!(artifact.manifest, refs[0].digest);
    assert_eq!(
        artifact.predicate_type.as_deref(),
        Some(COSIGN_SIGN_PREDICATE_TYPE)
    );
    assert!(artifact.verify(&image(), &cosign_pub()).is_ok());
}

#[test]
fn referrer_artifact_negative_cases() {
    let other = Digest::sha256(b"other image");
    assert!(matches!(
        BundleArtifact::fetch(REFERRER, &other, |_| Ok::<_, String>(DSSE.to_vec())),
        Err(BundleError::ReferrerSubject { .. })
    ));
    let mut edited = DSSE.to_vec();
    edited[5] ^= 1;
    assert!(matches!(
        BundleArtifact::fetch(REFERRER, &image(), |_| Ok::<_, String>(edited.clone())),
        Err(BundleError::LayerDigestMismatch { .. })
    ));
    let mut v: serde_json::Value = serde_json::from_slice(REFERRER).expect("json");
    v["layers"][0]["mediaType"] = "application/octet-stream".into();
    assert!(matches!(
        BundleArtifact::fetch(&serde_json::to_vec(&v).expect("json"), &image(), |_| Ok::<
            _,
            String,
        >(
            DSSE.to_vec()
        )),
        Err(BundleError::LayerMediaType(_))
    ));
    let layer = v["layers"][0].clone();
    v["layers"] = serde_json::json!([layer.clone(), layer]);
    assert!(matches!(
        BundleArtifact::fetch(&serde_json::to_vec(&v).expect("json"), &image(), |_| Ok::<
            _,
            String,
        >(
            DSSE.to_vec()
        )),
        Err(BundleError::LayerCount(2))
    ));
}

#[test]
fn referrers_index_filters_foreign_artifacts() {
    let d = |s: &[u8]| Digest::sha256(s).to_string();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": d(b"a"), "size": 1, "artifactType": "application/spdx+json"},
        {"mediaType": OCI_MANIFEST, "digest": d(b"b"), "size": 1, "artifactType": BUNDLE_MEDIA_TYPE_V03},
        {"mediaType": OCI_MANIFEST, "digest": d(b"c"), "size": 1},
        {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": d(b"d"), "size": 1},
    ]});
    let refs = bundle_referrers(&serde_json::to_vec(&index).expect("json")).expect("index");
    let got: Vec<_> = refs.iter().map(|r| r.digest.to_string()).collect();
    assert_eq!(got, vec![d(b"b"), d(b"c")]);
    assert_eq!(
        referrers_tag(&image()),
        "sha256-56333d65e1974031b2dc0b9a81c6c3db17ebfd49fbd3aa66fffd0f6bb72cdfa3"
    );
}
