use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use oxkit_registry::{BlobSource, BlobUpload, Pushed};
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
fn the_expected_index_is_signed_before_the_index_step() {
    let tmp = tempfile::tempdir().unwrap();
    let (pkg, store) = built(tmp.path(), &["amd64", "arm64"]);
    let fake = Fake::default();
    let index_ref = pkg.reference().clone();
    // What the registry holds when the index step first reads the index (the guess made
    // while the images uploaded is the first read).
    let at_merge = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Digest>::new()));
    let tags_at_merge = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let tags_seen = tags_at_merge.clone();
    let seen = at_merge.clone();
    let reads = std::sync::atomic::AtomicUsize::new(0);
    fake.set_hook(Box::new(
        move |st: &mut fake::State, op: fake::Op, r: &Reference| {
            if op == fake::Op::Get
                && fake::key(r) == fake::key(&index_ref)
                && reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1
            {
                *seen.lock().unwrap() = st.objects.keys().cloned().collect();
                *tags_seen.lock().unwrap() = st.tags.keys().cloned().collect();
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
    // And its signature written: the index step had nothing left to sign.
    assert!(tags_at_merge.lock().unwrap().contains(&fake::key(&tag_ref)));
}

/// A registry whose layer uploads take a while (or fail), counting the signature requests
/// (reads and writes of `.sig` tags, uploads of in-memory blobs) in flight: the most at once
/// while a layer uploads, and after.
struct Timed<'f> {
    fake: &'f Fake,
    upload: Duration,
    fail_upload: bool,
    signing_request: Duration,
    uploading: AtomicBool,
    in_flight: AtomicUsize,
    most_while_uploading: AtomicUsize,
    most_after: AtomicUsize,
    /// Signature tags written.
    written: AtomicUsize,
}

impl<'f> Timed<'f> {
    fn new(fake: &'f Fake, upload: Duration, signing_request: Duration) -> Self {
        Timed {
            fake,
            upload,
            fail_upload: false,
            signing_request,
            uploading: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            most_while_uploading: AtomicUsize::new(0),
            most_after: AtomicUsize::new(0),
            written: AtomicUsize::new(0),
        }
    }

    fn signing<T>(&self, f: impl FnOnce() -> T) -> T {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let most = if self.uploading.load(Ordering::SeqCst) {
            &self.most_while_uploading
        } else {
            &self.most_after
        };
        most.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(self.signing_request);
        let r = f();
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        r
    }
}

fn is_signature(r: &Reference) -> bool {
    r.tag().is_some_and(|t| t.ends_with(".sig"))
}

impl Remote for Timed<'_> {
    fn head(&self, r: &Reference) -> oxkit_registry::Result<Option<Descriptor>> {
        self.fake.head(r)
    }

    fn get(&self, r: &Reference) -> oxkit_registry::Result<Option<oxkit_registry::Manifest>> {
        if is_signature(r) {
            self.signing(|| self.fake.get(r))
        } else {
            self.fake.get(r)
        }
    }

    fn put(&self, r: &Reference, media_type: &str, bytes: &[u8]) -> oxkit_registry::Result<Digest> {
        if is_signature(r) {
            self.written.fetch_add(1, Ordering::SeqCst);
            self.signing(|| self.fake.put(r, media_type, bytes))
        } else {
            self.fake.put(r, media_type, bytes)
        }
    }

    fn get_blob(&self, r: &Reference, digest: &Digest) -> oxkit_registry::Result<Vec<u8>> {
        self.fake.get_blob(r, digest)
    }

    fn push_blobs(
        &self,
        r: &Reference,
        blobs: &[BlobUpload],
    ) -> oxkit_registry::Result<Vec<Pushed>> {
        if blobs
            .iter()
            .any(|b| matches!(b.source, BlobSource::File(_)))
        {
            self.uploading.store(true, Ordering::SeqCst);
            std::thread::sleep(self.upload);
            self.uploading.store(false, Ordering::SeqCst);
            if self.fail_upload {
                return Err(oxkit_registry::Error::Protocol {
                    what: "upload the layers".into(),
                    url: String::new(),
                    reason: "the test's registry refuses them".into(),
                });
            }
            self.fake.push_blobs(r, blobs)
        } else {
            self.signing(|| self.fake.push_blobs(r, blobs))
        }
    }

    fn referrers(
        &self,
        r: &Reference,
        subject: &Digest,
    ) -> oxkit_registry::Result<Vec<Descriptor>> {
        self.fake.referrers(r, subject)
    }
}

fn signed_push(remote: &dyn Remote, arches: &[&str]) -> (Result<PackageReport>, Package) {
    let tmp = tempfile::tempdir().unwrap();
    let (pkg, store) = built(tmp.path(), arches);
    let key = SigningKey::generate();
    let opts = PushOptions {
        release: None,
        key: Some(&key),
    };
    let plan = plan(remote, &pkg, &platforms(arches)).unwrap();
    let report = publish(remote, &store, &NoEvents, &pkg, &plan, &opts);
    (report, pkg)
}

#[test]
fn signing_makes_one_request_at_a_time_while_the_layers_upload() {
    let fake = Fake::default();
    // Long enough for all the signing to happen during the upload.
    let timed = Timed::new(&fake, Duration::from_millis(600), Duration::from_millis(5));
    let (report, _) = signed_push(&timed, &["amd64", "arm64", "riscv64"]);
    let report = report.unwrap();
    assert_eq!(report.signatures.len(), 4);
    assert!(report.signatures.iter().all(|s| s.added));
    assert_eq!(timed.most_while_uploading.load(Ordering::SeqCst), 1);
}

#[test]
fn signing_left_when_the_layers_are_up_goes_at_full_width() {
    let fake = Fake::default();
    // The upload is over before the first signature is: the others start together then.
    let timed = Timed::new(&fake, Duration::ZERO, Duration::from_millis(40));
    let (report, _) = signed_push(&timed, &["amd64", "arm64", "riscv64"]);
    let report = report.unwrap();
    assert_eq!(report.signatures.len(), 4);
    assert!(timed.most_after.load(Ordering::SeqCst) >= 3);
}

#[test]
fn a_failed_upload_starts_no_more_signatures() {
    let fake = Fake::default();
    let mut timed = Timed::new(&fake, Duration::from_millis(100), Duration::from_millis(40));
    timed.fail_upload = true;
    let (report, _) = signed_push(&timed, &["amd64", "arm64", "riscv64"]);
    let err = report.unwrap_err().to_string();
    assert!(err.contains("refuses"), "{err}");
    // The index's signature was being prepared (nothing is written for it before the index
    // is); at most the signature under way when the upload failed was written.
    assert!(timed.written.load(Ordering::SeqCst) <= 1);
}
