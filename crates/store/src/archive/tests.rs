use std::io::Write;

use oxkit_spec::{Platform, Reference};

use super::*;
use crate::layer::{Compression, Entry, EntryMeta, LayerOptions, LayerWriter};
use crate::oci::{ImageConfig, ImageManifest};

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

fn image(store: &Store, arch: &str, text: &str) -> Descriptor {
    let mut w = LayerWriter::new(
        store,
        &LayerOptions {
            compression: Compression::Gzip,
            ..Default::default()
        },
    )
    .unwrap();
    w.add_bytes(
        &Entry::file("hello", text.len() as u64, EntryMeta::mode(0o644)),
        text.as_bytes(),
    )
    .unwrap();
    let layer = w.finish().unwrap();
    let mut config = ImageConfig::default();
    config.set_platform(&Platform::linux(arch).unwrap());
    config.rootfs.diff_ids.push(layer.diff_id);
    let config = store.put_json(media_type::OCI_CONFIG, &config).unwrap();
    store
        .put_json(
            media_type::OCI_MANIFEST,
            &ImageManifest::new(config, vec![layer.descriptor]),
        )
        .unwrap()
}

/// Everything that makes up a store's state, to show a failed import changed nothing.
fn snapshot(store: &Store) -> (Vec<u8>, Vec<String>, usize) {
    let mut blobs: Vec<String> = std::fs::read_dir(store.blobs_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    blobs.sort();
    let tmp = std::fs::read_dir(store.tmp_dir()).unwrap().count();
    (std::fs::read(store.index_path()).unwrap(), blobs, tmp)
}

fn exported(store: &Store, refs: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    let refs: Vec<Reference> = refs.iter().map(|s| r(s)).collect();
    export_archive(store, &refs, &mut out).unwrap();
    out
}

#[test]
fn export_import_round_trip_is_deterministic() {
    let t = tempfile::tempdir().unwrap();
    let a = Store::open(t.path().join("a")).unwrap();
    let amd = image(&a, "amd64", "amd");
    let arm = image(&a, "arm64", "arm");
    a.put_index_for(&r("linuxkit/multi:1"), vec![amd, arm])
        .unwrap();
    a.tag(&r("solo"), image(&a, "amd64", "solo")).unwrap();

    let bytes = exported(&a, &["linuxkit/multi:1", "solo"]);
    assert_eq!(
        bytes,
        exported(&a, &["linuxkit/multi:1", "solo"]),
        "export is reproducible"
    );

    let b = Store::open(t.path().join("b")).unwrap();
    let report = import_archive(&b, &bytes[..], "test.tar", None).unwrap();
    let names: Vec<String> = report.tagged.iter().map(|(r, _)| r.to_string()).collect();
    assert_eq!(
        names,
        [
            "docker.io/library/solo:latest",
            "docker.io/linuxkit/multi:1"
        ]
    );
    assert_eq!(report.blobs_added, 1 + 3 + 3 + 3);
    for name in ["linuxkit/multi:1", "solo"] {
        assert_eq!(
            a.resolve(&r(name)).unwrap().unwrap().digest,
            b.resolve(&r(name)).unwrap().unwrap().digest
        );
    }
    assert!(b.fsck().unwrap().problems.is_empty());
    // Importing again adds nothing; gzip-compressed archives work too.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&bytes).unwrap();
    let again = import_archive(&b, &gz.finish().unwrap()[..], "test.tar.gz", None).unwrap();
    assert_eq!(again.blobs_added, 0);
    // A single image can be renamed on the way in.
    let solo = exported(&a, &["solo"]);
    let renamed = import_archive(&b, &solo[..], "solo.tar", Some(&r("me/renamed:2"))).unwrap();
    assert_eq!(renamed.tagged[0].0.to_string(), "docker.io/me/renamed:2");
    assert!(
        import_archive(&b, &bytes[..], "two.tar", Some(&r("x"))).is_err(),
        "one name for two images"
    );
}

#[test]
fn truncated_or_corrupt_archives_leave_the_store_unchanged() {
    let t = tempfile::tempdir().unwrap();
    let a = Store::open(t.path().join("a")).unwrap();
    a.tag(&r("img:1"), image(&a, "amd64", &"payload ".repeat(5000)))
        .unwrap();
    let bytes = exported(&a, &["img:1"]);

    let b = Store::open(t.path().join("b")).unwrap();
    b.tag(&r("existing:1"), image(&b, "amd64", "existing"))
        .unwrap();
    let before = snapshot(&b);

    for cut in [bytes.len() / 3, bytes.len() - 1100, 700] {
        let e = import_archive(&b, &bytes[..cut], "cut.tar", None).unwrap_err();
        assert!(matches!(e, Error::BadArchive { .. }), "cut at {cut}: {e}");
        assert!(
            e.to_string().contains("cut.tar") && e.to_string().contains("store was not changed"),
            "{e}"
        );
        assert_eq!(snapshot(&b), before, "cut at {cut}");
    }

    // Flip one byte inside the largest blob's content.
    let mut ar = ::tar::Archive::new(&bytes[..]);
    let (offset, size) = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.raw_file_position(), e.size()))
        .max_by_key(|(_, s)| *s)
        .unwrap();
    let mut bad = bytes.clone();
    bad[usize::try_from(offset + size / 2).unwrap()] ^= 0x55;
    let e = import_archive(&b, &bad[..], "bad.tar", None).unwrap_err();
    assert!(e.to_string().contains("digest mismatch"), "{e}");
    assert_eq!(snapshot(&b), before);

    // Not an archive at all.
    let e = import_archive(
        &b,
        &b"definitely not a tar file, just text"[..],
        "text.tar",
        None,
    )
    .unwrap_err();
    assert!(matches!(e, Error::BadArchive { .. }), "{e}");
    assert_eq!(snapshot(&b), before);
}
