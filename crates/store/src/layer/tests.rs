use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use oxkit_spec::Digest;

use super::*;
use crate::Store;
use crate::oci::media_type;

/// (name, type, mode, uid, gid, mtime, link, size, xattrs) of every entry in a tar.
type Row = (
    String,
    u8,
    u32,
    u64,
    u64,
    u64,
    String,
    u64,
    BTreeMap<String, Vec<u8>>,
);

fn rows(tar_bytes: &[u8]) -> Vec<Row> {
    let mut ar = ::tar::Archive::new(tar_bytes);
    let mut out = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut xattrs = BTreeMap::new();
        if let Some(p) = e.pax_extensions().unwrap() {
            for r in p {
                let r = r.unwrap();
                if let Some(k) = r.key().unwrap().strip_prefix("SCHILY.xattr.") {
                    xattrs.insert(k.to_string(), r.value_bytes().to_vec());
                }
            }
        }
        let h = e.header().clone();
        out.push((
            String::from_utf8(e.path_bytes().to_vec()).unwrap(),
            h.entry_type().as_byte(),
            h.mode().unwrap(),
            h.uid().unwrap(),
            h.gid().unwrap(),
            h.mtime().unwrap(),
            e.link_name_bytes()
                .map(|l| String::from_utf8(l.to_vec()).unwrap())
                .unwrap_or_default(),
            e.size(),
            xattrs,
        ));
        assert!(h.username_bytes().is_none_or(<[u8]>::is_empty));
    }
    out
}

fn decompress(store: &Store, info: &LayerInfo) -> Vec<u8> {
    let mut blob = store.open_blob(&info.descriptor.digest).unwrap();
    let mut out = Vec::new();
    match info.descriptor.media_type.as_str() {
        media_type::OCI_LAYER_GZIP => flate2::read::GzDecoder::new(&mut blob)
            .read_to_end(&mut out)
            .unwrap(),
        media_type::OCI_LAYER_ZSTD => zstd::stream::read::Decoder::new(&mut blob)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap(),
        _ => blob.read_to_end(&mut out).unwrap(),
    };
    out
}

#[test]
fn writer_keeps_modes_owners_devices_links_whiteouts_and_xattrs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let opts = LayerOptions {
        compression: Compression::Gzip,
        epoch: 1000,
        ..Default::default()
    };
    let mut w = LayerWriter::new(&store, &opts).unwrap();
    let caps = vec![
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let mut ping_meta = EntryMeta::mode(0o755);
    ping_meta
        .xattrs
        .insert("security.capability".into(), caps.clone());
    ping_meta.mtime = 5000; // clamped to the epoch
    w.add(&Entry::dir("bin", EntryMeta::mode(0o755)), None)
        .unwrap();
    w.add_bytes(&Entry::file("bin/ping", 4, ping_meta), b"ping")
        .unwrap();
    let mut su = EntryMeta::mode(0o4755).owner(0, 0);
    su.mtime = 10;
    w.add_bytes(&Entry::file("bin/su", 2, su), b"su").unwrap();
    w.add(
        &Entry::hardlink("bin/su2", "bin/su", EntryMeta::mode(0o4755)),
        None,
    )
    .unwrap();
    w.add(
        &Entry::symlink("bin/sh", "/bin/busybox", EntryMeta::mode(0o777)),
        None,
    )
    .unwrap();
    w.add(
        &Entry::dir("tmp", EntryMeta::mode(0o1777).owner(1000, 1001)),
        None,
    )
    .unwrap();
    w.add(&Entry::dir("dev", EntryMeta::mode(0o755)), None)
        .unwrap();
    w.add(
        &Entry {
            path: "dev/null".into(),
            kind: EntryKind::CharDevice { major: 1, minor: 3 },
            meta: EntryMeta::mode(0o666),
        },
        None,
    )
    .unwrap();
    w.add(
        &Entry {
            path: "dev/sda".into(),
            kind: EntryKind::BlockDevice { major: 8, minor: 0 },
            meta: EntryMeta::mode(0o660).owner(0, 6),
        },
        None,
    )
    .unwrap();
    w.add(
        &Entry {
            path: "dev/fifo".into(),
            kind: EntryKind::Fifo,
            meta: EntryMeta::mode(0o2644),
        },
        None,
    )
    .unwrap();
    w.add(&Entry::whiteout("etc/gone"), None).unwrap();
    w.add(&Entry::opaque("var"), None).unwrap();
    let info = w.finish().unwrap();
    assert_eq!(info.descriptor.media_type, media_type::OCI_LAYER_GZIP);
    assert_eq!(info.entries, 12);

    let tar = decompress(&store, &info);
    assert_eq!(Digest::sha256(&tar), info.diff_id);
    assert_eq!(tar.len() as u64, info.uncompressed_size);
    let got = rows(&tar);
    let names: Vec<&str> = got.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "bin/",
            "bin/ping",
            "bin/su",
            "bin/su2",
            "bin/sh",
            "tmp/",
            "dev/",
            "dev/null",
            "dev/sda",
            "dev/fifo",
            "etc/.wh.gone",
            "var/.wh..wh..opq"
        ]
    );
    let by = |n: &str| got.iter().find(|r| r.0 == n).unwrap().clone();
    assert_eq!(
        by("bin/ping").8,
        BTreeMap::from([("security.capability".to_string(), caps)])
    );
    assert_eq!(by("bin/ping").5, 1000, "mtime clamped to the epoch");
    assert_eq!(by("bin/su").5, 10, "older mtimes kept");
    assert_eq!((by("bin/su").1, by("bin/su").2), (b'0', 0o4755));
    assert_eq!(
        (by("bin/su2").1, by("bin/su2").6.as_str(), by("bin/su2").7),
        (b'1', "bin/su", 0)
    );
    assert_eq!(
        (by("bin/sh").1, by("bin/sh").6.as_str()),
        (b'2', "/bin/busybox")
    );
    assert_eq!(
        (by("tmp/").2, by("tmp/").3, by("tmp/").4),
        (0o1777, 1000, 1001)
    );
    assert_eq!(by("dev/fifo").2, 0o2644);
    assert_eq!((by("etc/.wh.gone").1, by("etc/.wh.gone").7), (b'0', 0));
    let mut ar = ::tar::Archive::new(&tar[..]);
    let devs: Vec<(u32, u32)> = ar
        .entries()
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let h = e.header();
            matches!(
                h.entry_type(),
                ::tar::EntryType::Char | ::tar::EntryType::Block
            )
            .then(|| {
                (
                    h.device_major().unwrap().unwrap(),
                    h.device_minor().unwrap().unwrap(),
                )
            })
        })
        .collect();
    assert_eq!(devs, [(1, 3), (8, 0)]);

    // The gzip header is fixed: no name, mtime 0, OS 255.
    let raw = store.read_blob(&info.descriptor.digest).unwrap();
    assert_eq!(&raw[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
}

#[test]
fn writer_refuses_bad_paths_and_files_that_change_size() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut w = LayerWriter::new(&store, &LayerOptions::default()).unwrap();
    for bad in ["/etc/x", "../x", "a/./b", "a//b", ""] {
        let e = w
            .add_bytes(&Entry::file(bad, 1, EntryMeta::mode(0o644)), b"x")
            .unwrap_err();
        assert!(matches!(e, crate::Error::BadEntry { .. }), "{bad}: {e}");
    }
    // A file, directory or link named like a whiteout would be read back as one.
    for entry in [
        Entry::file("etc/.wh.passwd", 1, EntryMeta::mode(0o644)),
        Entry::dir(".wh...", EntryMeta::mode(0o755)),
        Entry::symlink("a/.wh..", "x", EntryMeta::mode(0o777)),
    ] {
        let e = w.add_bytes(&entry, b"x").unwrap_err();
        assert!(e.to_string().contains("'.wh.'"), "{e}");
    }
    // A real whiteout is still written.
    w.add(&Entry::whiteout("etc/passwd"), None).unwrap();
    let e = w
        .add(
            &Entry::hardlink("a", "../etc/passwd", EntryMeta::mode(0o644)),
            None,
        )
        .unwrap_err();
    assert!(e.to_string().contains("hard link"), "{e}");
    let e = w
        .add_bytes(&Entry::file("short", 10, EntryMeta::mode(0o644)), b"abc")
        .unwrap_err();
    assert!(e.to_string().contains("ended after 3 of 10 bytes"), "{e}");
    let e = w
        .add_bytes(&Entry::file("long", 2, EntryMeta::mode(0o644)), b"abc")
        .unwrap_err();
    assert!(e.to_string().contains("longer than 2 bytes"), "{e}");
}

fn sample_tree(root: &Path) {
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::create_dir_all(root.join("a")).unwrap();
    std::fs::write(root.join("a.txt"), "a text").unwrap();
    std::fs::write(root.join("a/z"), "z").unwrap();
    std::fs::write(root.join("usr/bin/tool"), vec![7u8; 100_000]).unwrap();
    std::fs::set_permissions(
        root.join("usr/bin/tool"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    std::fs::hard_link(root.join("usr/bin/tool"), root.join("a/tool-link")).unwrap();
    symlink("../usr/bin/tool", root.join("a/rel-link")).unwrap();
    std::fs::write(root.join("B"), "upper case sorts first").unwrap();
}

#[test]
fn dir_walk_is_sorted_detects_hardlinks_and_is_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let tree = dir.path().join("tree");
    sample_tree(&tree);
    let opts = LayerOptions {
        compression: Compression::None,
        epoch: 0,
        xattrs: XattrPolicy::Capabilities,
    };
    let info = layer_from_dir(&store, &tree, &opts).unwrap();
    let tar = store.read_blob(&info.descriptor.digest).unwrap();
    assert_eq!(
        Digest::sha256(&tar),
        info.diff_id,
        "uncompressed: blob digest is the diff id"
    );
    let got = rows(&tar);
    let names: Vec<&str> = got.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "B",
            "a/",
            "a/rel-link",
            "a/tool-link",
            "a/z",
            "a.txt",
            "usr/",
            "usr/bin/",
            "usr/bin/tool"
        ]
    );
    let tool_link = &got[3];
    assert_eq!(
        (tool_link.1, tool_link.2, tool_link.7),
        (b'0', 0o4755, 100_000),
        "first sighting carries the data"
    );
    let tool = &got[8];
    assert_eq!(
        (tool.1, tool.6.as_str(), tool.7),
        (b'1', "a/tool-link", 0),
        "later ones link to it"
    );
    assert!(got.iter().all(|r| r.5 == 0), "mtimes clamped to epoch 0");

    // Touching files (newer mtimes) and rewriting them does not change the layer.
    std::fs::write(tree.join("a/z"), "z").unwrap();
    let again = layer_from_dir(&store, &tree, &opts).unwrap();
    assert_eq!(again, info);
    // Content changes do.
    std::fs::write(tree.join("a/z"), "Z").unwrap();
    assert_ne!(
        layer_from_dir(&store, &tree, &opts).unwrap().diff_id,
        info.diff_id
    );
}

#[test]
fn dir_walk_records_xattrs_by_policy() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let f = tree.join("f");
    std::fs::write(&f, "x").unwrap();
    let root = rustix::process::geteuid().is_root();
    let caps = [
        1u8, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let have_caps = root
        && rustix::fs::lsetxattr(
            &f,
            "security.capability",
            &caps,
            rustix::fs::XattrFlags::empty(),
        )
        .is_ok();
    let have_user =
        rustix::fs::lsetxattr(&f, "user.note", b"hi", rustix::fs::XattrFlags::empty()).is_ok();
    if !(have_caps || have_user) {
        eprintln!("skipping: no xattr support here (not root, no user xattrs)");
        return;
    }
    let x = |policy| {
        let opts = LayerOptions {
            compression: Compression::None,
            epoch: 0,
            xattrs: policy,
        };
        let info = layer_from_dir(&store, &tree, &opts).unwrap();
        rows(&store.read_blob(&info.descriptor.digest).unwrap())[0]
            .8
            .clone()
    };
    let caps_only = x(XattrPolicy::Capabilities);
    assert_eq!(caps_only.contains_key("security.capability"), have_caps);
    assert!(!caps_only.contains_key("user.note"));
    let all = x(XattrPolicy::All);
    assert_eq!(all.contains_key("user.note"), have_user);
    assert_eq!(all.contains_key("security.capability"), have_caps);
    assert!(x(XattrPolicy::None).is_empty());
}

#[test]
fn compressions_give_stable_digests_with_the_same_diff_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let tree = dir.path().join("tree");
    sample_tree(&tree);
    let mut diff_ids = Vec::new();
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let opts = LayerOptions {
            compression: c,
            ..Default::default()
        };
        let a = layer_from_dir(&store, &tree, &opts).unwrap();
        let b = layer_from_dir(&store, &tree, &opts).unwrap();
        assert_eq!(a.descriptor.digest, b.descriptor.digest, "{c:?}");
        assert_eq!(Digest::sha256(&decompress(&store, &a)), a.diff_id, "{c:?}");
        diff_ids.push(a.diff_id);
    }
    assert!(diff_ids.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn entry_kinds_come_from_lstat_metadata_and_sockets_have_none() {
    let dir = tempfile::tempdir().unwrap();
    let kind = |path: &Path| {
        let md = std::fs::symlink_metadata(path).unwrap();
        EntryKind::from_metadata(path, &md).unwrap()
    };
    let file = dir.path().join("file");
    std::fs::write(&file, b"four").unwrap();
    assert_eq!(kind(&file), Some(EntryKind::File { size: 4 }));
    assert_eq!(kind(dir.path()), Some(EntryKind::Dir));
    let link = dir.path().join("link");
    symlink("../elsewhere", &link).unwrap();
    assert_eq!(
        kind(&link),
        Some(EntryKind::Symlink {
            target: "../elsewhere".into()
        })
    );
    let fifo = dir.path().join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    assert_eq!(kind(&fifo), Some(EntryKind::Fifo));
    assert_eq!(
        kind(Path::new("/dev/null")),
        Some(EntryKind::CharDevice { major: 1, minor: 3 })
    );
    let socket = dir.path().join("socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    assert_eq!(kind(&socket), None);
}
