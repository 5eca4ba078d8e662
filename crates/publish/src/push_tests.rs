use oxkit_sign::{SignatureImage, SigningKey};

use super::*;
use crate::NoEvents;
use crate::remote::fake::{self, Fake};
use crate::testutil::{arch_digests, entries, package, store_with};

fn platforms(arches: &[&str]) -> Vec<Platform> {
    arches.iter().map(|a| Platform::linux(a).unwrap()).collect()
}

#[test]
fn publishes_every_architecture_then_the_index_and_signs_them() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg = package(
        &tmp.path().join("pkg"),
        "reg.example/me",
        &["amd64", "arm64"],
    );
    let store = store_with(tmp.path(), &pkg, &["amd64", "arm64"]);
    let fake = Fake::default();
    let key = SigningKey::generate();
    let opts = PushOptions {
        release: None,
        key: Some(&key),
    };
    let plan = plan(&fake, &pkg, &platforms(&["amd64", "arm64"])).unwrap();
    assert_eq!(plan.missing.len(), 2);
    let report = publish(&fake, &store, &NoEvents, &pkg, &plan, &opts).unwrap();
    // config + layer per arch.
    assert_eq!(report.uploaded, 4, "{report:?}");
    assert_eq!(report.manifests, 2);
    assert!(report.index.written);
    let st = fake.state();
    for arch in ["amd64", "arm64"] {
        let local = store
            .resolve(&pkg.arch_reference(arch).unwrap())
            .unwrap()
            .unwrap();
        let remote = &st.tags[&fake::key(&pkg.arch_reference(arch).unwrap())];
        assert_eq!(remote, &local.digest, "{arch} pushed byte-exact");
    }
    let got = arch_digests(&entries(&st, pkg.reference()));
    assert_eq!(got.len(), 2);
    drop(st);
    // Three signatures: each arch and the index, with the package's hash.
    assert_eq!(report.signatures.len(), 3);
    let mut signed: Vec<Digest> = report.signatures.iter().map(|s| s.digest.clone()).collect();
    signed.sort();
    let mut want: Vec<Digest> = got.into_iter().map(|(_, d)| d).collect();
    want.push(report.index.digest.clone());
    want.sort();
    assert_eq!(signed, want);
    for d in &want {
        let tag_ref = pkg
            .reference()
            .with_tag(&oxkit_sign::signature_tag(d))
            .unwrap();
        let (_, manifest) = fake.tagged(&tag_ref).unwrap();
        let img = SignatureImage::fetch(&manifest, |l| fake.get_blob(pkg.reference(), &l.digest))
            .unwrap();
        let v = img.verify(d, &key.public_key()).unwrap();
        let ann = v[0].payload.annotations.clone().unwrap();
        assert_eq!(ann[ANNOTATION_PACKAGE_HASH], pkg.hash.as_str());
    }

    // Second run: the plan finds everything, nothing is uploaded or written.
    let again = super::plan(&fake, &pkg, &platforms(&["amd64", "arm64"])).unwrap();
    assert!(again.missing.is_empty());
    let (puts, uploads) = {
        let st = fake.state();
        (st.puts, st.uploads)
    };
    let report = publish(&fake, &store, &NoEvents, &pkg, &again, &opts).unwrap();
    assert!(report.nothing_pushed(), "{report:?}");
    let st = fake.state();
    assert_eq!((st.puts, st.uploads), (puts, uploads));
}

#[test]
fn a_second_machine_adds_its_architecture() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg = package(
        &tmp.path().join("pkg"),
        "reg.example/me",
        &["amd64", "arm64"],
    );
    let fake = Fake::default();
    let amd_store = store_with(&tmp.path().join("m1"), &pkg, &["amd64"]);
    let arm_store = store_with(&tmp.path().join("m2"), &pkg, &["arm64"]);
    for (store, arch) in [(&amd_store, "amd64"), (&arm_store, "arm64")] {
        let plan = plan(&fake, &pkg, &platforms(&[arch])).unwrap();
        publish(
            &fake,
            store,
            &NoEvents,
            &pkg,
            &plan,
            &PushOptions::default(),
        )
        .unwrap();
    }
    let got = arch_digests(&entries(&fake.state(), pkg.reference()));
    assert_eq!(
        got.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
        ["amd64", "arm64"]
    );
}

#[test]
fn refusals_name_the_package() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pkg = package(&tmp.path().join("pkg"), "reg.example/me", &["amd64"]);
    let store = store_with(tmp.path(), &pkg, &[]);
    let fake = Fake::default();
    Publisher::check_pushable(&pkg, false, true).unwrap();
    pkg.dirty = true;
    Publisher::check_pushable(&pkg, true, false).unwrap();
    let e = Publisher::check_pushable(&pkg, false, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--force-dirty"), "{e}");
    let e = Publisher::check_pushable(&pkg, true, true)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&pkg.name()) && e.contains("dirty") && e.contains("--force-dirty"),
        "{e}"
    );
    pkg.dirty = false;
    // Not built: the store lacks TAG-amd64.
    let plan = plan(&fake, &pkg, &platforms(&["amd64"])).unwrap();
    let e = publish(
        &fake,
        &store,
        &NoEvents,
        &pkg,
        &plan,
        &PushOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, PublishError::NotInStore { .. }), "{e}");
    assert!(e.to_string().contains("-amd64"), "{e}");
}

#[test]
fn annotations_carry_hash_and_commit_of_clean_packages() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pkg = package(&tmp.path().join("pkg"), "reg.example/me", &["amd64"]);
    pkg.commit = Some("0123abcd".into());
    let a = package_annotations(&pkg);
    assert_eq!(a[ANNOTATION_PACKAGE_HASH], pkg.hash);
    assert_eq!(a[ANNOTATION_PACKAGE_COMMIT], "0123abcd");
    pkg.dirty = true;
    assert!(!package_annotations(&pkg).contains_key(ANNOTATION_PACKAGE_COMMIT));
}

#[test]
fn a_key_that_cannot_be_unlocked_stops_the_push_before_anything_is_tagged() {
    struct Locked(SigningKey);
    impl crate::KeySource for Locked {
        fn public_key(&self) -> std::result::Result<oxkit_sign::PublicKey, String> {
            Ok(self.0.public_key())
        }
        fn signing_key(&self) -> std::result::Result<&SigningKey, String> {
            Err("cannot use the signing key ox.key: wrong passphrase".into())
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let pkg = package(&tmp.path().join("pkg"), "reg.example/me", &["amd64"]);
    let store = store_with(tmp.path(), &pkg, &["amd64"]);
    let fake = Fake::default();
    let key = Locked(SigningKey::generate());
    let opts = PushOptions {
        release: None,
        key: Some(&key),
    };
    let plan = plan(&fake, &pkg, &platforms(&["amd64"])).unwrap();
    let e = publish(&fake, &store, &NoEvents, &pkg, &plan, &opts).unwrap_err();
    assert!(e.to_string().contains("wrong passphrase"), "{e}");
    let st = fake.state();
    assert_eq!(st.puts, 0, "a manifest was put");
    assert!(st.tags.is_empty());
}

#[test]
fn the_index_another_writer_made_us_rewrite_is_the_one_signed() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg = package(&tmp.path().join("pkg"), "reg.example/me", &["amd64"]);
    let store = store_with(tmp.path(), &pkg, &["amd64"]);
    let fake = Fake::default();
    // Reads of the index: 1 = our merge, 2 = the check of our write, just before which
    // another machine writes an index over only its arm64 image: we merge and write again.
    fake.set_hook(crate::index::tests::rival(
        pkg.reference().clone(),
        "arm64",
        fake::Op::Get,
        2,
    ));
    let key = SigningKey::generate();
    let opts = PushOptions {
        release: None,
        key: Some(&key),
    };
    let plan = plan(&fake, &pkg, &platforms(&["amd64"])).unwrap();
    let report = publish(&fake, &store, &NoEvents, &pkg, &plan, &opts).unwrap();
    assert!(report.index.attempts >= 3, "{:?}", report.index);
    let st = fake.state();
    let final_index = st.tags[&fake::key(pkg.reference())].clone();
    let arches: Vec<String> = arch_digests(&entries(&st, pkg.reference()))
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    drop(st);
    assert_eq!(arches, ["amd64", "arm64"]);
    assert_eq!(report.index.digest, final_index);
    let outcome = report
        .signatures
        .iter()
        .find(|s| s.digest == final_index)
        .expect("the final index is signed");
    assert!(outcome.added);
    let tag_ref = pkg
        .reference()
        .with_tag(&oxkit_sign::signature_tag(&final_index))
        .unwrap();
    let (_, manifest) = fake.tagged(&tag_ref).unwrap();
    let img =
        SignatureImage::fetch(&manifest, |l| fake.get_blob(pkg.reference(), &l.digest)).unwrap();
    img.verify(&final_index, &key.public_key()).unwrap();
}
