use super::*;
use crate::keys::SigningKey;
use crate::testutil::*;

fn evidence() -> SignatureEvidence {
    let bundle = BundleArtifact::fetch(
        include_bytes!("../../testdata/bundle-manifest.json"),
        &image(),
        |_| Ok::<_, String>(include_bytes!("../../testdata/bundle-dsse.json").to_vec()),
    )
    .expect("bundle");
    SignatureEvidence {
        signature_image: Some(
            SignatureImage::from_parts(SIG_MANIFEST, sig_blobs()).expect("sig image"),
        ),
        bundles: vec![bundle],
    }
}

fn reference() -> Reference {
    Reference::parse("127.0.0.1:5917/test/img:v1").expect("ref")
}

#[test]
fn reports_which_required_keys_signed() {
    let stranger = SigningKey::generate().public_key();
    let keys = BTreeMap::from([
        ("release".to_string(), cosign_pub()),
        ("ci".to_string(), cosign2_pub()),
        ("stranger".to_string(), stranger),
    ]);
    let required: Vec<String> = ["release", "ci", "stranger", "ghost"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let report = check_signers(&reference(), &image(), &required, &keys, &evidence());
    assert!(!report.is_satisfied());
    assert_eq!(report.verified().collect::<Vec<_>>(), vec!["release", "ci"]);
    assert_eq!(
        report.missing().collect::<Vec<_>>(),
        vec!["stranger", "ghost"]
    );
    assert_eq!(
        report.signers[0].status,
        SignerStatus::Verified {
            simple_signing: 1,
            bundles: 1
        }
    );
    assert_eq!(
        report.signers[1].status,
        SignerStatus::Verified {
            simple_signing: 1,
            bundles: 0
        }
    );
    assert_eq!(report.signers[3].status, SignerStatus::UnknownKey);
    let SignerStatus::NotSigned { reasons } = &report.signers[2].status else {
        panic!("stranger must not verify");
    };
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    let text = report.to_string();
    assert!(
        text.contains("not signed by stranger") && text.contains("ghost is not defined"),
        "{text}"
    );

    let ok = check_signers(&reference(), &image(), &required[..2], &keys, &evidence());
    assert!(ok.is_satisfied());
}

#[test]
fn nothing_is_signed_for_another_digest() {
    let keys = BTreeMap::from([("release".to_string(), cosign_pub())]);
    let other = Digest::sha256(b"other");
    let report = check_signers(
        &reference(),
        &other,
        &["release".to_string()],
        &keys,
        &evidence(),
    );
    assert!(!report.is_satisfied());
    let none = check_signers(
        &reference(),
        &image(),
        &["release".to_string()],
        &keys,
        &SignatureEvidence::default(),
    );
    assert_eq!(
        none.signers[0].status,
        SignerStatus::NotSigned { reasons: vec![] }
    );
}
