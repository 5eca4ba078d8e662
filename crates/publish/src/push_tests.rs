use std::path::Path;

use oxkit_sign::{SignatureImage, SigningKey};

use super::*;
use crate::NoEvents;
use crate::remote::fake::{self, Fake};
use crate::testutil::{arch_digests, entries, package, store_with};

fn platforms(arches: &[&str]) -> Vec<Platform> {
    arches.iter().map(|a| Platform::linux(a).unwrap()).collect()
}

/// A package of `reg.example/me` for `arches`, each built into a store under `root`.
fn built(root: &Path, arches: &[&str]) -> (Package, Store) {
    let pkg = package(&root.join("pkg"), "reg.example/me", arches);
    let store = store_with(root, &pkg, arches);
    (pkg, store)
}

#[test]
fn publishes_every_architecture_then_the_index_and_signs_them() {
    let tmp = tempfile::tempdir().unwrap();
    let (pkg, store) = built(tmp.path(), &["amd64", "arm64"]);
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
    let (pkg, store) = built(tmp.path(), &["amd64"]);
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

/// Another machine writes an index over only its arm64 image just before the `nth` read of
/// the index: 1 = the guess made while our images upload (see `index::predict`), 2 = our
/// merge, 3 = the check of our write. Whichever index we end up writing, the final one is
/// signed (and the guess's signature is used only if it is the index written).
fn rival_index_is_the_one_signed(nth: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let (pkg, store) = built(tmp.path(), &["amd64"]);
    let fake = Fake::default();
    fake.set_hook(crate::index::tests::rival(
        pkg.reference().clone(),
        "arm64",
        fake::Op::Get,
        nth,
    ));
    let key = SigningKey::generate();
    let opts = PushOptions {
        release: None,
        key: Some(&key),
    };
    let plan = plan(&fake, &pkg, &platforms(&["amd64"])).unwrap();
    let report = publish(&fake, &store, &NoEvents, &pkg, &plan, &opts).unwrap();
    if nth == 3 {
        // Our first write was replaced: merged and written again.
        assert!(report.index.attempts >= 3, "{:?}", report.index);
    }
    let st = fake.state();
    let final_index = st.tags[&fake::key(pkg.reference())].clone();
    let arches: Vec<String> = arch_digests(&entries(&st, pkg.reference()))
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    drop(st);
    assert_eq!(arches, ["amd64", "arm64"], "rival before read {nth}");
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

#[test]
fn the_index_signed_is_the_final_one_whenever_another_writer_comes() {
    for nth in 1..=3 {
        rival_index_is_the_one_signed(nth);
    }
}

#[test]
fn the_expected_index_has_its_signature_ready_before_the_index_step() {
    let tmp = tempfile::tempdir().unwrap();
    let (pkg, store) = built(tmp.path(), &["amd64", "arm64"]);
    let fake = Fake::default();
    let index_ref = pkg.reference().clone();
    // What the registry holds when the index step first reads the index (the guess made
    // while the images uploaded is the first read).
    let at_merge = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Digest>::new()));
    let seen = at_merge.clone();
    let reads = std::sync::atomic::AtomicUsize::new(0);
    fake.set_hook(Box::new(
        move |st: &mut fake::State, op: fake::Op, r: &Reference| {
            if op == fake::Op::Get
                && fake::key(r) == fake::key(&index_ref)
                && reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1
            {
                *seen.lock().unwrap() = st.objects.keys().cloned().collect();
            }
        },
    ));
    let key = SigningKey::generate();
    let opts = PushOptions {
        release: None,
        key: Some(&key),
    };
    let plan = plan(&fake, &pkg, &platforms(&["amd64", "arm64"])).unwrap();
    let report = publish(&fake, &store, &NoEvents, &pkg, &plan, &opts).unwrap();
    assert_eq!(report.signatures.len(), 3);
    // The index's signature payload was uploaded before the index was even merged.
    let tag_ref = pkg
        .reference()
        .with_tag(&oxkit_sign::signature_tag(&report.index.digest))
        .unwrap();
    let (_, manifest) = fake.tagged(&tag_ref).unwrap();
    let sig: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let payload: Digest = serde_json::from_value(sig["layers"][0]["digest"].clone()).unwrap();
    assert!(at_merge.lock().unwrap().contains(&payload));
}
