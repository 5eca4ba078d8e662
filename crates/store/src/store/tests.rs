use std::io::{Read, Write};

use oxkit_spec::{Digest, Platform, Reference};

use super::*;
use crate::oci::{self, ContainerConfig, Descriptor, ImageConfig, ImageManifest, media_type};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

/// A minimal image for `arch` whose single "layer" is `content`.
fn put_image(store: &Store, arch: &str, content: &[u8]) -> Descriptor {
    let layer = store
        .write_blob(content)
        .unwrap()
        .descriptor(media_type::OCI_LAYER);
    let mut config = ImageConfig {
        config: ContainerConfig::default(),
        ..Default::default()
    };
    config.set_platform(&Platform::linux(arch).unwrap());
    config.rootfs.diff_ids.push(layer.digest.clone());
    let config = store.put_json(media_type::OCI_CONFIG, &config).unwrap();
    store
        .put_json(
            media_type::OCI_MANIFEST,
            &ImageManifest::new(config, vec![layer]),
        )
        .unwrap()
}

#[test]
fn open_creates_a_layout_skopeo_would_accept_and_reopens_it() {
    let dir = tmp();
    let root = dir.path().join("new");
    let store = Store::open(&root).unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    assert_eq!(
        std::fs::read_to_string(root.join("index.json")).unwrap(),
        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#
    );
    assert!(root.join("blobs/sha256").is_dir());
    let d = store.write_blob(b"x").unwrap();
    let again = Store::open(&root).unwrap();
    assert!(again.has_blob(&d.digest));
    // An existing empty directory is fine too.
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    Store::open(dir.path().join("empty")).unwrap();
}

#[test]
fn open_refuses_a_directory_that_is_not_a_layout() {
    let dir = tmp();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let e = Store::open(dir.path()).unwrap_err();
    assert!(matches!(e, Error::NotALayout { .. }), "{e}");
    assert!(
        e.to_string().contains(&dir.path().display().to_string()),
        "{e}"
    );
    // Nothing was created in it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    // A file is refused too, and so is a future layout version.
    let e = Store::open(dir.path().join("notes.txt")).unwrap_err();
    assert!(matches!(e, Error::NotALayout { .. }), "{e}");
    let v2 = dir.path().join("v2");
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(v2.join("oci-layout"), r#"{"imageLayoutVersion":"2.0.0"}"#).unwrap();
    assert!(matches!(
        Store::open(&v2).unwrap_err(),
        Error::LayoutVersion { .. }
    ));
}

#[test]
fn blob_writer_verifies_digest_and_size_before_anything_lands() {
    let dir = tmp();
    let store = Store::open(dir.path()).unwrap();
    let good = Digest::sha256(b"hello");

    let mut w = store.blob_writer_expecting(&good, Some(5)).unwrap();
    w.write_all(b"hellO").unwrap();
    let e = w.commit().unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    assert!(!store.has_blob(&good));
    assert!(!store.has_blob(&Digest::sha256(b"hellO")));

    let mut w = store.blob_writer_expecting(&good, Some(5)).unwrap();
    assert!(
        w.write_all(b"hello world").is_err(),
        "longer than announced must fail early"
    );
    drop(w);
    let mut w = store.blob_writer_expecting(&good, Some(6)).unwrap();
    w.write_all(b"hello").unwrap();
    assert!(matches!(
        w.commit().unwrap_err(),
        Error::SizeMismatch { .. }
    ));
    assert!(!store.has_blob(&good));

    let mut w = store.blob_writer_expecting(&good, None).unwrap();
    w.write_all(b"hel").unwrap();
    w.write_all(b"lo").unwrap();
    let info = w.commit().unwrap();
    assert_eq!(
        info,
        BlobInfo {
            digest: good.clone(),
            size: 5
        }
    );
    assert_eq!(store.read_blob(&good).unwrap(), b"hello");
    // No temporary files are left behind, committed or not.
    assert_eq!(std::fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
    // sha512 expectations are verified with sha512.
    let sha512: Digest = format!(
        "sha512:{}",
        hex::encode(<sha2::Sha512 as sha2::Digest>::digest(b"hi"))
    )
    .parse()
    .unwrap();
    assert_eq!(
        store.write_blob_expecting(b"hi", &sha512).unwrap().digest,
        sha512
    );
    assert_eq!(store.read_blob(&sha512).unwrap(), b"hi");
}

#[test]
fn corrupt_blobs_are_refused_on_read() {
    let dir = tmp();
    let store = Store::open(dir.path()).unwrap();
    let info = store.write_blob(b"precious bytes").unwrap();
    std::fs::write(store.blob_path(&info.digest), b"precious bytez").unwrap();
    let e = store.read_blob(&info.digest).unwrap_err();
    assert!(matches!(e, Error::CorruptBlob { .. }), "{e}");
    let mut out = Vec::new();
    let e = store
        .open_blob(&info.digest)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    assert!(e.to_string().contains(info.digest.as_str()), "{e}");
    let missing = Digest::sha256(b"nope");
    assert!(matches!(
        store.read_blob(&missing).unwrap_err(),
        Error::BlobNotFound { .. }
    ));

    let report = store.fsck().unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(
        report.problems[0].contains("is corrupt"),
        "{:?}",
        report.problems
    );
}

#[test]
fn references_resolve_under_any_spelling() {
    let dir = tmp();
    let store = Store::open(dir.path()).unwrap();
    let img = put_image(&store, "amd64", b"one");
    store.tag(&r("linuxkit/init:abc"), img.clone()).unwrap();
    store.tag(&r("alpine"), img.clone()).unwrap();
    for spelling in [
        "docker.io/linuxkit/init:abc",
        "index.docker.io/linuxkit/init:abc",
        "linuxkit/init:abc",
    ] {
        let d = store.resolve(&r(spelling)).unwrap().unwrap();
        assert_eq!(d.digest, img.digest, "{spelling}");
    }
    assert!(store.resolve(&r("alpine:latest")).unwrap().is_some());
    assert!(
        store
            .resolve(&r("docker.io/library/alpine:latest"))
            .unwrap()
            .is_some()
    );
    assert!(store.resolve(&r("linuxkit/init:abd")).unwrap().is_none());
    // By digest, with or without a name that is tagged.
    let by_digest = r(&format!("anything/else@{}", img.digest));
    assert_eq!(
        store.resolve(&by_digest).unwrap().unwrap().digest,
        img.digest
    );
    let names: Vec<String> = store.list().unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(
        names,
        [
            "docker.io/library/alpine:latest",
            "docker.io/linuxkit/init:abc"
        ]
    );
    // Re-tagging replaces; a digest that disagrees is refused.
    let img2 = put_image(&store, "amd64", b"two");
    store
        .tag(&r("docker.io/linuxkit/init:abc"), img2.clone())
        .unwrap();
    assert_eq!(store.list().unwrap().len(), 2);
    assert_eq!(
        store
            .resolve(&r("linuxkit/init:abc"))
            .unwrap()
            .unwrap()
            .digest,
        img2.digest
    );
    let pinned = r(&format!("x/y:1@{}", img.digest));
    assert!(matches!(
        store.tag(&pinned, img2.clone()).unwrap_err(),
        Error::BadReference { .. }
    ));
    // Tagging a blob that is not there is refused.
    let ghost = Descriptor::new(media_type::OCI_MANIFEST, Digest::sha256(b"ghost"), 5);
    assert!(matches!(
        store.tag(&r("x/y:2"), ghost).unwrap_err(),
        Error::BlobNotFound { .. }
    ));
    assert_eq!(
        store.untag(&r("alpine:latest")).unwrap().unwrap().digest,
        img.digest
    );
    assert!(store.untag(&r("alpine")).unwrap().is_none());
}

#[test]
fn short_names_written_by_other_tools_are_found() {
    let dir = tmp();
    let store = Store::open(dir.path()).unwrap();
    let img = put_image(&store, "amd64", b"one");
    // What `skopeo copy ... oci:STORE:y` writes: a bare name.
    let mut entry = img.clone();
    entry
        .annotations
        .insert(oci::ANNOTATION_REF_NAME.into(), "y".into());
    let mut weird = img.clone();
    weird
        .annotations
        .insert(oci::ANNOTATION_REF_NAME.into(), "Not A Reference".into());
    let index = oci::ImageIndex::new(vec![entry, weird]);
    std::fs::write(store.index_path(), oci::to_canonical_json(&index).unwrap()).unwrap();
    assert!(store.resolve(&r("y:latest")).unwrap().is_some());
    assert!(store.resolve(&r("docker.io/library/y")).unwrap().is_some());
    let list = store.list().unwrap();
    assert_eq!(list.len(), 2);
    assert!(
        list.iter()
            .any(|t| t.name == "Not A Reference" && t.reference.is_none())
    );
    // Tagging something else keeps the unparseable entry.
    store.tag(&r("z"), img).unwrap();
    assert_eq!(store.list().unwrap().len(), 3);
}

#[test]
fn concurrent_tags_from_many_threads_all_land() {
    let dir = tmp();
    let store = Store::open(dir.path()).unwrap();
    let img = put_image(&store, "amd64", b"shared");
    std::thread::scope(|s| {
        for t in 0..8 {
            let store = store.clone();
            let img = img.clone();
            s.spawn(move || {
                for i in 0..10 {
                    store
                        .tag(&r(&format!("t/thread{t}:n{i}")), img.clone())
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(store.list().unwrap().len(), 80);
}

const CHILD_ENV: &str = "OXKIT_STORE_TEST_CHILD";

/// Not a test on its own: the body of each child process of
/// `concurrent_tags_from_many_processes_all_land`.
#[test]
#[ignore = "run as a child process by concurrent_tags_from_many_processes_all_land"]
fn child_process_tagger() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, id) = spec.split_once('|').unwrap();
    let store = Store::open(dir).unwrap();
    let img = put_image(&store, "amd64", id.as_bytes());
    for i in 0..15 {
        store
            .tag(&r(&format!("p/proc{id}:n{i}")), img.clone())
            .unwrap();
    }
}

#[test]
fn concurrent_tags_from_many_processes_all_land() {
    let dir = tmp();
    let root = dir.path().join("store");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..6)
        .map(|id| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "store::tests::child_process_tagger",
                    "--ignored",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, format!("{}|{id}", root.display()))
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let store = Store::open(&root).unwrap();
    let list = store.list().unwrap();
    assert_eq!(
        list.len(),
        90,
        "{:?}",
        list.iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    assert!(store.fsck().unwrap().problems.is_empty());
}

#[test]
fn platforms_resolve_through_indexes_and_single_manifests() {
    let dir = tmp();
    let store = Store::open(dir.path()).unwrap();
    let amd = put_image(&store, "amd64", b"amd");
    let arm = put_image(&store, "arm64", b"arm");
    let idx = store
        .put_index_for(&r("multi:1"), vec![arm.clone(), amd.clone()])
        .unwrap();
    let index = store.read_index(&idx.digest).unwrap();
    // Sorted by platform, platforms filled from the configs.
    let plats: Vec<String> = index
        .manifests
        .iter()
        .map(|d| d.platform.clone().unwrap().to_string())
        .collect();
    assert_eq!(plats, ["linux/amd64", "linux/arm64"]);
    // Same entries in another order give the same index.
    let again = store
        .put_index_for(&r("multi:2"), vec![amd.clone(), arm.clone()])
        .unwrap();
    assert_eq!(again.digest, idx.digest);

    let aarch64: Platform = "linux/aarch64".parse().unwrap();
    let got = store
        .resolve_platform(&r("multi:1"), &aarch64)
        .unwrap()
        .unwrap();
    assert_eq!(got.digest, arm.digest);
    let e = store
        .resolve_platform(&r("multi:1"), &Platform::linux("riscv64").unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("linux/amd64, linux/arm64"), "{e}");

    store.tag(&r("single:1"), amd.clone()).unwrap();
    let got = store
        .resolve_platform(&r("single:1"), &Platform::linux("x86_64").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.digest, got.platform),
        (amd.digest.clone(), Some(Platform::linux("amd64").unwrap()))
    );
    assert!(store.resolve_platform(&r("single:1"), &aarch64).is_err());
    assert!(
        store
            .resolve_platform(&r("absent:1"), &aarch64)
            .unwrap()
            .is_none()
    );

    let blobs = store.image_blobs(&idx).unwrap();
    assert_eq!(blobs.len(), 1 + 2 * 3);
    assert_eq!(blobs[0].digest, idx.digest);
}

#[test]
fn side_index_roots_blobs_and_misses_when_they_are_gone() {
    let dir = tmp();
    let store = Store::open(dir.path()).unwrap();
    let kept = store.write_blob(b"step output").unwrap();
    let entry = CacheEntry {
        digests: vec![kept.digest.clone()],
        data: serde_json::json!({"diff_id": "x"}),
    };
    store.cache_put("steps", "abc123", &entry).unwrap();
    assert_eq!(
        store.cache_get("steps", "abc123").unwrap(),
        Some(entry.clone())
    );
    assert_eq!(store.cache_get("steps", "other").unwrap(), None);
    for bad in ["../x", ".hidden", "", "a/b"] {
        assert!(
            matches!(
                store.cache_get("steps", bad).unwrap_err(),
                Error::BadCacheName { .. }
            ),
            "{bad}"
        );
    }
    let ghost = CacheEntry {
        digests: vec![Digest::sha256(b"ghost")],
        data: serde_json::Value::Null,
    };
    assert!(store.cache_put("steps", "g", &ghost).is_err());

    let garbage = store.write_blob(b"garbage").unwrap();
    let report = store.gc(false).unwrap();
    assert_eq!(report.removed, vec![garbage.clone()]);
    assert_eq!(report.freed, 7);
    assert!(store.has_blob(&kept.digest));

    std::fs::remove_file(store.blob_path(&kept.digest)).unwrap();
    assert_eq!(store.cache_get("steps", "abc123").unwrap(), None);
    assert!(store.cache_remove("steps", "abc123").unwrap());
    assert!(!store.cache_remove("steps", "abc123").unwrap());
}

#[test]
fn gc_keeps_every_blob_an_image_needs_and_waits_for_leases() {
    let dir = tmp();
    let store = Store::open(dir.path()).unwrap();
    let a = put_image(&store, "amd64", b"a");
    let b = put_image(&store, "arm64", b"b");
    store
        .put_index_for(&r("both"), vec![a.clone(), b.clone()])
        .unwrap();
    let lonely = put_image(&store, "amd64", b"lonely");
    let lease = store.lease().unwrap();
    assert!(matches!(store.gc(false).unwrap_err(), Error::Busy { .. }));
    drop(lease);
    let dry = store.gc(true).unwrap();
    assert_eq!(dry.removed.len(), 3); // lonely's manifest, config, layer
    assert!(store.has_blob(&lonely.digest));
    let report = store.gc(false).unwrap();
    assert_eq!(report.removed.len(), 3);
    assert!(!store.has_blob(&lonely.digest));
    assert!(store.fsck().unwrap().problems.is_empty());
    assert_eq!(store.gc(false).unwrap().removed.len(), 0);
}

#[test]
fn remove_images_frees_only_unshared_blobs() {
    let dir = tmp();
    let store = Store::open(dir.path()).unwrap();
    let a = put_image(&store, "amd64", b"a");
    store.tag(&r("one"), a.clone()).unwrap();
    store.tag(&r("two"), a.clone()).unwrap();
    let c = put_image(&store, "amd64", b"c");
    store.tag(&r("three"), c.clone()).unwrap();
    assert!(matches!(
        store.remove_images(&[r("one"), r("nope")]).unwrap_err(),
        Error::RefNotFound { .. }
    ));
    assert_eq!(
        store.list().unwrap().len(),
        3,
        "nothing removed when one name is unknown"
    );
    let report = store.remove_images(&[r("one")]).unwrap();
    assert!(report.removed.is_empty(), "still used by two");
    let report = store.remove_images(&[r("two"), r("three")]).unwrap();
    assert_eq!(report.removed.len(), 6);
    assert!(!store.has_blob(&a.digest) && !store.has_blob(&c.digest));
}

#[test]
fn fsck_reports_missing_children_per_reference() {
    let dir = tmp();
    let store = Store::open(dir.path()).unwrap();
    let img = put_image(&store, "amd64", b"layer bytes");
    store.tag(&r("me/img:1"), img.clone()).unwrap();
    let layer = store.read_manifest(&img.digest).unwrap().layers[0]
        .digest
        .clone();
    std::fs::remove_file(store.blob_path(&layer)).unwrap();
    std::fs::write(store.blobs_dir().join("README"), "stray").unwrap();
    let report = store.fsck().unwrap();
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("docker.io/me/img:1: missing blob") && p.contains(layer.as_str()))
    );
    assert!(report.problems.iter().any(|p| p.contains("README")));
    // Broken images stop gc rather than letting it guess.
    std::fs::write(store.blob_path(&img.digest), b"{").unwrap();
    assert!(store.gc(false).is_err());
}

/// What an opener may find in a directory that has no `oci-layout` when it looks: nothing,
/// a layout another oxkit process is making, or (a moment later) that layout finished.
#[test]
fn half_made_and_just_finished_layouts_are_ours() {
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(super::layout_in_progress(&[]));
    assert!(super::layout_in_progress(&names(&["oxkit"])));
    assert!(super::layout_in_progress(&names(&[
        "oxkit",
        "blobs",
        "index.json"
    ])));
    assert!(super::layout_in_progress(&names(&[
        "oxkit",
        "blobs",
        "index.json",
        "oci-layout"
    ])));
    // Someone else's files, or our names without our marker, are not.
    assert!(!super::layout_in_progress(&names(&["oxkit", "notes.txt"])));
    assert!(!super::layout_in_progress(&names(&["blobs", "index.json"])));
}

/// Many openers racing to initialise one new directory all succeed: one that sees the layout
/// half-made (its `oxkit/`, `index.json` or `oci-layout` appearing between its checks) takes
/// it for the layout it is becoming, never for a foreign directory. (The window is narrow;
/// the multi-process import test in the integration suite is where it showed.)
#[test]
fn racing_opens_of_a_new_directory_all_succeed() {
    let dir = tmp();
    for round in 0..40 {
        let root = dir.path().join(format!("s{round}"));
        let barrier = std::sync::Barrier::new(8);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        Store::open(&root).map(|_| ())
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap().unwrap();
            }
        });
        assert!(root.join("oci-layout").is_file());
        assert!(root.join("index.json").is_file());
    }
}
