use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::NoEvents;
use crate::remote::fake::{Fake, Op, State};
use crate::testutil::{arch_digests, entries, reference, remote_image, remote_index};

fn d(arch: &str, n: u8) -> Descriptor {
    Descriptor::new(mt::OCI_MANIFEST, Digest::sha256(&[n]), 10)
        .with_platform(Platform::linux(arch).unwrap())
}

fn arch_image(arch: &str, n: u8) -> ArchImage {
    ArchImage {
        arch: arch.to_string(),
        descriptor: d(arch, n),
    }
}

#[test]
fn merge_replaces_only_the_architectures_given() {
    let existing = vec![d("amd64", 1), d("arm64", 2), d("riscv64", 3)];
    let merged = merge(&existing, &[arch_image("arm64", 20)]);
    assert_eq!(
        arch_digests(&merged),
        vec![
            ("amd64".to_string(), Digest::sha256(&[1])),
            ("arm64".to_string(), Digest::sha256(&[20])),
            ("riscv64".to_string(), Digest::sha256(&[3])),
        ]
    );
    // Same input in another order: same bytes.
    let again = merge(
        &[d("riscv64", 3), d("arm64", 2), d("amd64", 1)],
        &[arch_image("arm64", 20)],
    );
    assert_eq!(merged, again);
}

#[test]
fn merge_keeps_unplatformed_entries_and_live_attestations_only() {
    let plain = Descriptor::new(mt::OCI_MANIFEST, Digest::sha256(b"plain"), 5);
    let unknown = Platform {
        os: "unknown".into(),
        architecture: "unknown".into(),
        variant: None,
    };
    let mut live = Descriptor::new(mt::OCI_MANIFEST, Digest::sha256(b"att1"), 5);
    live.platform = Some(unknown.clone());
    live.annotations
        .insert(REFERENCE_DIGEST.into(), Digest::sha256(&[1]).to_string());
    let mut dangling = Descriptor::new(mt::OCI_MANIFEST, Digest::sha256(b"att2"), 5);
    dangling.platform = Some(unknown);
    dangling
        .annotations
        .insert(REFERENCE_DIGEST.into(), Digest::sha256(&[2]).to_string());
    let existing = vec![
        d("amd64", 1),
        d("arm64", 2),
        plain.clone(),
        live.clone(),
        dangling.clone(),
    ];
    let merged = merge(&existing, &[arch_image("arm64", 9)]);
    let digests: Vec<&Digest> = merged.iter().map(|m| &m.digest).collect();
    assert!(digests.contains(&&plain.digest));
    assert!(
        digests.contains(&&live.digest),
        "attestation of a listed image kept"
    );
    assert!(
        !digests.contains(&&dangling.digest),
        "attestation of a replaced image dropped"
    );
    assert!(!digests.contains(&&Digest::sha256(&[2])));
}

#[test]
fn missing_compares_architecture_and_digest() {
    let entries = vec![d("amd64", 1), d("arm64", 2)];
    assert!(missing(&entries, &[arch_image("amd64", 1)]).is_empty());
    assert_eq!(missing(&entries, &[arch_image("amd64", 7)]).len(), 1);
    assert_eq!(missing(&entries, &[arch_image("s390x", 1)]).len(), 1);
}

fn ours(st: &mut State, index: &Reference, arch: &str, salt: &str) -> ArchImage {
    let r = index
        .with_tag(&format!("{}-{arch}", index.tag().unwrap()))
        .unwrap();
    ArchImage {
        arch: arch.to_string(),
        descriptor: remote_image(st, &r, arch, salt),
    }
}

#[test]
fn a_new_index_lists_our_images_and_a_complete_one_is_left_alone() {
    let fake = Fake::default();
    let index = reference("reg.example/me/pkgx:t1");
    let (a, b) = {
        let mut st = fake.state();
        (
            ours(&mut st, &index, "amd64", "x"),
            ours(&mut st, &index, "arm64", "x"),
        )
    };
    let out = publish_index(
        &fake,
        &index,
        &[a.clone(), b.clone()],
        &[],
        Start::TrustComplete,
        &NoEvents,
    )
    .unwrap();
    assert!(out.written);
    assert_eq!(out.attempts, 2, "one write, one verifying read");
    let st = fake.state();
    let got = arch_digests(&entries(&st, &index));
    assert_eq!(
        got,
        vec![
            ("amd64".into(), a.descriptor.digest.clone()),
            ("arm64".into(), b.descriptor.digest.clone())
        ]
    );
    assert_eq!(out.digest, st.tags[&crate::remote::fake::key(&index)]);
    let puts = st.puts;
    drop(st);
    let again =
        publish_index(&fake, &index, &[a, b], &[], Start::TrustComplete, &NoEvents).unwrap();
    assert!(!again.written);
    assert_eq!(again.digest, out.digest);
    assert_eq!(fake.state().puts, puts, "nothing written the second time");
}

#[test]
fn an_existing_index_keeps_its_other_architectures() {
    let fake = Fake::default();
    let index = reference("reg.example/me/pkgx:t1");
    let ours_now = {
        let mut st = fake.state();
        // Another tool pushed an index with riscv64 (no TAG-ARCH tag) and an old amd64.
        let riscv = remote_image(
            &mut st,
            &reference("reg.example/me/other:x"),
            "riscv64",
            "r",
        );
        let old_amd = remote_image(
            &mut st,
            &reference("reg.example/me/other:y"),
            "amd64",
            "old",
        );
        remote_index(&mut st, &index, vec![riscv, old_amd]);
        ours(&mut st, &index, "amd64", "new")
    };
    publish_index(
        &fake,
        &index,
        std::slice::from_ref(&ours_now),
        &[],
        Start::TrustComplete,
        &NoEvents,
    )
    .unwrap();
    let st = fake.state();
    let got = arch_digests(&entries(&st, &index));
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.contains(&("amd64".into(), ours_now.descriptor.digest.clone())));
    assert!(got.iter().any(|(a, _)| a == "riscv64"));
}

#[test]
fn a_single_manifest_under_the_tag_becomes_an_entry() {
    let fake = Fake::default();
    let index = reference("reg.example/me/pkgx:t1");
    let ours_now = {
        let mut st = fake.state();
        remote_image(&mut st, &index, "s390x", "plain");
        ours(&mut st, &index, "arm64", "a")
    };
    let out = publish_index(
        &fake,
        &index,
        &[ours_now],
        &[],
        Start::TrustComplete,
        &NoEvents,
    )
    .unwrap();
    let arches: Vec<String> = out.platforms.iter().map(|p| p.arch().to_string()).collect();
    assert_eq!(arches, ["arm64", "s390x"]);
}

/// Another machine pushes `arch` at the worst moment: its TAG-ARCH lands and it writes an
/// index over only its own image, which it merged from a read made before our write.
pub(crate) fn rival(
    index: Reference,
    arch: &'static str,
    when: Op,
    nth: usize,
) -> crate::remote::fake::Hook {
    let count = AtomicUsize::new(0);
    let done = Mutex::new(false);
    Box::new(move |st: &mut State, op: Op, r: &Reference| {
        if op != when || r.tag() != index.tag() || *done.lock().unwrap() {
            return;
        }
        if count.fetch_add(1, Ordering::SeqCst) + 1 < nth {
            return;
        }
        *done.lock().unwrap() = true;
        let tag = format!("{}-{arch}", index.tag().unwrap());
        let img = remote_image(st, &index.with_tag(&tag).unwrap(), arch, "rival");
        remote_index(st, &index, vec![img]);
    })
}

#[test]
fn a_rival_write_between_our_read_and_write_is_repaired() {
    let fake = Fake::default();
    let index = reference("reg.example/me/pkgx:t1");
    let a = ours(&mut fake.state(), &index, "amd64", "a");
    // The rival's arch tag and index land just before our index write overwrites them.
    fake.set_hook(rival(index.clone(), "arm64", Op::Put, 1));
    let events = Recorder::default();
    let out = publish_index(&fake, &index, &[a], &[], Start::TrustComplete, &events).unwrap();
    assert!(out.attempts > 2, "{out:?}");
    let got = arch_digests(&entries(&fake.state(), &index));
    assert_eq!(
        got.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
        ["amd64", "arm64"]
    );
    assert!(
        events
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, PublishEvent::IndexRetry { .. }))
    );
}

#[test]
fn a_rival_write_after_ours_is_seen_by_the_check_and_repaired() {
    let fake = Fake::default();
    let index = reference("reg.example/me/pkgx:t1");
    let a = ours(&mut fake.state(), &index, "amd64", "a");
    // Reads of the index: 1 = our merge, 2 = our verification; the rival overwrites just
    // before the verification.
    fake.set_hook(rival(index.clone(), "arm64", Op::Get, 2));
    let out = publish_index(
        &fake,
        &index,
        std::slice::from_ref(&a),
        &[],
        Start::TrustComplete,
        &NoEvents,
    )
    .unwrap();
    assert!(out.attempts >= 3, "{out:?}");
    let got = arch_digests(&entries(&fake.state(), &index));
    assert!(got.contains(&("amd64".into(), a.descriptor.digest)));
    assert!(got.iter().any(|(a, _)| a == "arm64"));
}

#[test]
fn an_architecture_deleted_meanwhile_and_nothing_at_all_are_errors() {
    let fake = Fake::default();
    let index = reference("reg.example/me/pkgx:t1");
    let e = publish_index(
        &fake,
        &index,
        &[arch_image("amd64", 1)],
        &[],
        Start::TrustComplete,
        &NoEvents,
    )
    .unwrap_err();
    assert!(matches!(e, PublishError::ArchVanished { .. }), "{e}");
    assert!(e.to_string().contains("amd64"), "{e}");
    let e = publish_index(&fake, &index, &[], &[], Start::TrustComplete, &NoEvents).unwrap_err();
    assert!(matches!(e, PublishError::NoArchImages { .. }), "{e}");
    assert!(e.to_string().contains("reg.example/me/pkgx:t1"), "{e}");
}

#[test]
fn releases_copy_the_index_and_do_not_move() {
    let fake = Fake::default();
    let index = reference("reg.example/me/pkgx:t1");
    let (a, b) = {
        let mut st = fake.state();
        (
            ours(&mut st, &index, "amd64", "x"),
            ours(&mut st, &index, "arm64", "x"),
        )
    };
    let out = publish_index(
        &fake,
        &index,
        &[a.clone(), b],
        &[],
        Start::TrustComplete,
        &NoEvents,
    )
    .unwrap();
    let rel = reference("reg.example/me/pkgx:v1.0");
    let d = publish_release(&fake, &index, &rel, &out, &NoEvents).unwrap();
    assert_eq!(d, out.digest);
    let st = fake.state();
    assert_eq!(st.tags[&crate::remote::fake::key(&rel)], out.digest);
    assert_eq!(
        st.tags[&crate::remote::fake::key(&reference("reg.example/me/pkgx:v1.0-amd64"))],
        a.descriptor.digest
    );
    drop(st);
    // Again: nothing changes.
    let puts = fake.state().puts;
    publish_release(&fake, &index, &rel, &out, &NoEvents).unwrap();
    assert_eq!(fake.state().puts, puts);
    // Another package version under the same release name is refused.
    let index2 = reference("reg.example/me/pkgx:t2");
    let c = ours(&mut fake.state(), &index2, "amd64", "y");
    let out2 = publish_index(&fake, &index2, &[c], &[], Start::TrustComplete, &NoEvents).unwrap();
    let e = publish_release(&fake, &index2, &rel, &out2, &NoEvents).unwrap_err();
    assert!(matches!(e, PublishError::ReleaseExists { .. }), "{e}");
    assert!(e.to_string().contains("v1.0"), "{e}");
}

#[derive(Default)]
pub(crate) struct Recorder(pub(crate) Mutex<Vec<PublishEvent>>);

impl EventSink for Recorder {
    fn event(&self, e: PublishEvent) {
        self.0.lock().unwrap().push(e);
    }
}

#[test]
fn a_complete_index_is_trusted_on_push_but_searched_by_pkg_manifest() {
    let fake = Fake::default();
    let index = reference("reg.example/me/pkgx:t1");
    let a = {
        let mut st = fake.state();
        let a = ours(&mut st, &index, "amd64", "a");
        // An arm64 TAG-ARCH that the index does not list (a push that died before merging).
        ours(&mut st, &index, "arm64", "b");
        remote_index(&mut st, &index, vec![a.descriptor.clone()]);
        a
    };
    let puts = fake.state().puts;
    let out = publish_index(&fake, &index, &[a], &[], Start::TrustComplete, &NoEvents).unwrap();
    assert!(!out.written);
    assert_eq!(fake.state().puts, puts);
    let out = publish_index(&fake, &index, &[], &[], Start::SearchTags, &NoEvents).unwrap();
    assert!(out.written);
    let got = arch_digests(&entries(&fake.state(), &index));
    assert_eq!(
        got.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
        ["amd64", "arm64"]
    );
}
