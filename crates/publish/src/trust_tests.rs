use oxkit_sign::SigningKey;
use oxkit_spec::image_yaml::ImageYaml;

use super::*;
use crate::NoEvents;
use crate::remote::fake::Fake;
use crate::testutil::sign_digest;
use crate::testutil::{reference, remote_image, remote_index};

fn policy(yaml: &str) -> TrustPolicy {
    ImageYaml::parse(yaml, "test.yml")
        .unwrap()
        .trust
        .policy()
        .unwrap()
}

const POLICY: &str = "trust:
  keys: {release: release.pub, ci: ci.pub}
  rules:
    - match: reg.example/me/
      keys: [release]
    - match: reg.example/me/strict
      keys: [release, ci]
";

struct World {
    fake: Fake,
    release: SigningKey,
    ci: SigningKey,
    keys: BTreeMap<String, PublicKey>,
}

fn world() -> World {
    let (release, ci) = (SigningKey::generate(), SigningKey::generate());
    let keys = BTreeMap::from([
        ("release".to_string(), release.public_key()),
        ("ci".to_string(), ci.public_key()),
    ]);
    World {
        fake: Fake::default(),
        release,
        ci,
        keys,
    }
}

#[test]
fn images_no_rule_covers_need_nothing() {
    let w = world();
    let r = reference("other.example/x:1");
    let report =
        verify_policy_with(&w.fake, &policy(POLICY), &w.keys, &r, &Digest::sha256(b"x")).unwrap();
    assert!(report.keys.is_empty());
}

#[test]
fn a_signature_over_the_image_or_its_index_satisfies_the_rule() {
    let w = world();
    let r = reference("reg.example/me/app:1");
    let (amd, arm) = {
        let mut st = w.fake.state();
        let amd = remote_image(
            &mut st,
            &reference("reg.example/me/app:1-amd64"),
            "amd64",
            "a",
        );
        let arm = remote_image(
            &mut st,
            &reference("reg.example/me/app:1-arm64"),
            "arm64",
            "b",
        );
        remote_index(&mut st, &r, vec![amd.clone(), arm.clone()]);
        (amd, arm)
    };
    let p = policy(POLICY);
    // Unsigned: the error names the image, the digest and the key.
    let e = verify_policy_with(&w.fake, &p, &w.keys, &r, &amd.digest).unwrap_err();
    let msg = e.to_string();
    for want in [
        "reg.example/me/app:1",
        amd.digest.as_str(),
        "\"release\"",
        "no signatures found",
    ] {
        assert!(msg.contains(want), "{want:?} missing from {msg}");
    }
    // Signed over the image itself.
    sign_digest(
        &w.fake,
        &r,
        &amd.digest,
        &w.release,
        &BTreeMap::new(),
        &NoEvents,
    )
    .unwrap();
    let ok = verify_policy_with(&w.fake, &p, &w.keys, &r, &amd.digest).unwrap();
    assert_eq!(
        ok.keys,
        vec![KeyVerified {
            key: "release".into(),
            over: SignedOver::Image
        }]
    );
    // arm64 is not signed itself, but the index is.
    let idx = w.fake.get(&r).unwrap().unwrap().digest;
    assert!(verify_policy_with(&w.fake, &p, &w.keys, &r, &arm.digest).is_err());
    sign_digest(&w.fake, &r, &idx, &w.release, &BTreeMap::new(), &NoEvents).unwrap();
    let ok = verify_policy_with(&w.fake, &p, &w.keys, &r, &arm.digest).unwrap();
    assert_eq!(ok.keys[0].over, SignedOver::Index(idx));
}

#[test]
fn every_required_key_must_sign_and_a_wrong_key_is_named() {
    let w = world();
    let r = reference("reg.example/me/strict:2");
    let img = remote_image(&mut w.fake.state(), &r, "amd64", "s");
    let p = policy(POLICY);
    sign_digest(
        &w.fake,
        &r,
        &img.digest,
        &w.release,
        &BTreeMap::new(),
        &NoEvents,
    )
    .unwrap();
    let e = verify_policy_with(&w.fake, &p, &w.keys, &r, &img.digest).unwrap_err();
    let TrustError::NotSigned(ns) = &e else {
        panic!("{e}");
    };
    assert_eq!(ns.key, "ci");
    assert_eq!(ns.hint.as_deref(), Some(w.ci.public_key().hint().as_str()));
    assert!(e.to_string().contains("does not verify"), "{e}");
    sign_digest(&w.fake, &r, &img.digest, &w.ci, &BTreeMap::new(), &NoEvents).unwrap();
    let ok = verify_policy_with(&w.fake, &p, &w.keys, &r, &img.digest).unwrap();
    assert_eq!(ok.keys.len(), 2);
}

#[test]
fn a_key_the_policy_needs_but_nobody_loaded_is_named() {
    let w = world();
    let r = reference("reg.example/me/app:1");
    let mut keys = w.keys.clone();
    keys.remove("release");
    let e =
        verify_policy_with(&w.fake, &policy(POLICY), &keys, &r, &Digest::sha256(b"x")).unwrap_err();
    assert!(matches!(e, TrustError::UnknownKey { .. }), "{e}");
    assert!(
        e.to_string().contains("\"release\"") && e.to_string().contains("reg.example/me/app:1"),
        "{e}"
    );
}

#[test]
fn policy_keys_load_relative_to_the_yaml() {
    let tmp = tempfile::tempdir().unwrap();
    let w = world();
    std::fs::write(
        tmp.path().join("release.pub"),
        w.release.public_key().to_pem(),
    )
    .unwrap();
    std::fs::write(tmp.path().join("ci.pub"), w.ci.public_key().to_pem()).unwrap();
    let def = SigningKey::generate().public_key();
    std::fs::write(tmp.path().join("default.pub"), def.to_pem()).unwrap();
    let keys = load_policy_keys(
        &policy(POLICY),
        tmp.path(),
        Some(&tmp.path().join("default.pub")),
    )
    .unwrap();
    assert_eq!(keys["release"], w.release.public_key());
    assert_eq!(keys["default"], def);
    std::fs::remove_file(tmp.path().join("ci.pub")).unwrap();
    let e = load_policy_keys(&policy(POLICY), tmp.path(), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("ci.pub") && e.contains("\"ci\""), "{e}");
}
