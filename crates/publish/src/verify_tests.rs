use oxkit_sign::SigningKey;

use super::*;
use crate::NoEvents;
use crate::remote::fake::Fake;
use crate::signing::ANNOTATION_PACKAGE_HASH;
use crate::testutil::sign_digest;
use crate::testutil::{reference, remote_image, remote_index};

fn named(name: &str, k: &SigningKey) -> NamedKey {
    NamedKey {
        name: name.into(),
        key: k.public_key(),
    }
}

#[test]
fn reports_who_signed_the_index_and_its_children() {
    let fake = Fake::default();
    let index = reference("reg.example/me/pkgx:t1");
    let (amd, arm) = {
        let mut st = fake.state();
        let amd = remote_image(
            &mut st,
            &reference("reg.example/me/pkgx:t1-amd64"),
            "amd64",
            "a",
        );
        let arm = remote_image(
            &mut st,
            &reference("reg.example/me/pkgx:t1-arm64"),
            "arm64",
            "b",
        );
        remote_index(&mut st, &index, vec![amd.clone(), arm.clone()]);
        (amd, arm)
    };
    let idx_digest = fake.get(&index).unwrap().unwrap().digest;
    let (release, ci, stranger) = (
        SigningKey::generate(),
        SigningKey::generate(),
        SigningKey::generate(),
    );
    let ann = BTreeMap::from([(ANNOTATION_PACKAGE_HASH.to_string(), "h1".to_string())]);
    sign_digest(&fake, &index, &idx_digest, &release, &ann, &NoEvents).unwrap();
    sign_digest(&fake, &index, &idx_digest, &ci, &BTreeMap::new(), &NoEvents).unwrap();
    sign_digest(&fake, &index, &amd.digest, &release, &ann, &NoEvents).unwrap();
    let keys = [
        named("release.pub", &release),
        named("ci.pub", &ci),
        named("stranger.pub", &stranger),
    ];

    let top = verify_with(&fake, &index, &keys, false).unwrap();
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].digest, idx_digest);
    let who: Vec<&str> = top[0].signatures.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(who, ["release.pub", "ci.pub"]);
    let s = &top[0].signatures[0];
    assert_eq!(s.kind, SignatureKind::Cosign);
    assert_eq!(s.docker_reference.as_deref(), Some("reg.example/me/pkgx"));
    assert_eq!(s.annotations[ANNOTATION_PACKAGE_HASH], "h1");
    assert!(
        top[0].problems.iter().any(|p| p.contains("stranger.pub")),
        "{:?}",
        top[0].problems
    );

    let all = verify_with(&fake, &index, &keys, true).unwrap();
    assert_eq!(all.len(), 3);
    let by_digest = |d: &Digest| all.iter().find(|v| &v.digest == d).unwrap();
    assert!(by_digest(&amd.digest).verified());
    assert_eq!(
        by_digest(&amd.digest).platform.as_ref().map(|p| p.arch()),
        Some("amd64")
    );
    let unsigned = by_digest(&arm.digest);
    assert!(!unsigned.verified());
    assert!(
        unsigned
            .problems
            .iter()
            .any(|p| p.contains("no signatures found")),
        "{:?}",
        unsigned.problems
    );
}

#[test]
fn an_unknown_reference_is_an_error_naming_it() {
    let fake = Fake::default();
    let e = verify_with(&fake, &reference("reg.example/me/nothing:1"), &[], false).unwrap_err();
    assert!(e.to_string().contains("reg.example/me/nothing:1"), "{e}");
}
