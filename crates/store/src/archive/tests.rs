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

/// The named member of an uncompressed tar.
fn member(tar: &[u8], name: &str) -> Option<Vec<u8>> {
    let mut a = ::tar::Archive::new(tar);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some(name) {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut v).unwrap();
            return Some(v);
        }
    }
    None
}

#[test]
fn docker_archives_pick_one_platform_and_name_it_for_docker_load() {
    let t = tempfile::tempdir().unwrap();
    let s = Store::open(t.path().join("s")).unwrap();
    let amd = image(&s, "amd64", "amd");
    let arm = image(&s, "arm64", "arm");
    s.put_index_for(&r("linuxkit/multi:1"), vec![amd.clone(), arm.clone()])
        .unwrap();
    let export = |platform: &str, name: Option<&str>| {
        let mut out = Vec::new();
        let name = name.map(r);
        let report = export_docker_archive(
            &s,
            &r("linuxkit/multi:1"),
            &platform.parse().unwrap(),
            name.as_ref(),
            &mut out,
        )?;
        Ok::<_, Error>((out, report))
    };
    let (tar, report) = export("linux/arm64", None).unwrap();
    assert_eq!(report.images.len(), 1);
    assert_eq!(report.images[0].digest, arm.digest);
    let m = s.read_manifest(&arm.digest).unwrap();
    let docker: serde_json::Value =
        serde_json::from_slice(&member(&tar, "manifest.json").unwrap()).unwrap();
    let path = |d: &Digest| format!("blobs/sha256/{}", d.hex());
    assert_eq!(
        docker,
        serde_json::json!([{
            "Config": path(&m.config.digest),
            "RepoTags": ["docker.io/linuxkit/multi:1"],
            "Layers": [path(&m.layers[0].digest)],
        }])
    );
    // Every path it names is in the archive, and the OCI index names the same manifest.
    assert!(member(&tar, &path(&m.config.digest)).is_some());
    assert!(member(&tar, &path(&m.layers[0].digest)).is_some());
    assert!(
        member(&tar, &path(&amd.digest)).is_none(),
        "only one platform"
    );
    let index: ImageIndex = serde_json::from_slice(&member(&tar, "index.json").unwrap()).unwrap();
    assert_eq!(index.manifests.len(), 1);
    assert_eq!(index.manifests[0].digest, arm.digest);
    // Reproducible; renamed; untagged when named by digest.
    assert_eq!(export("linux/arm64", None).unwrap().0, tar);
    let (renamed, _) = export("linux/amd64", Some("example.org/x:y")).unwrap();
    let docker: serde_json::Value =
        serde_json::from_slice(&member(&renamed, "manifest.json").unwrap()).unwrap();
    assert_eq!(
        docker[0]["RepoTags"],
        serde_json::json!(["example.org/x:y"])
    );
    let by_digest = format!("example.org/x@{}", amd.digest);
    let (untagged, _) = export("linux/amd64", Some(&by_digest)).unwrap();
    let docker: serde_json::Value =
        serde_json::from_slice(&member(&untagged, "manifest.json").unwrap()).unwrap();
    assert_eq!(docker[0]["RepoTags"], serde_json::json!([]));
    // A platform the image lacks, or an image the store lacks, is an error saying so.
    let err = export("linux/s390x", None).unwrap_err().to_string();
    assert!(
        err.contains("s390x") && err.contains("linux/arm64"),
        "{err}"
    );
    let mut out = Vec::new();
    let err = export_docker_archive(
        &s,
        &r("linuxkit/none:1"),
        &"linux/amd64".parse().unwrap(),
        None,
        &mut out,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no image docker.io/linuxkit/none:1"), "{err}");
}
