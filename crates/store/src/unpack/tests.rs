use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use super::*;
use crate::layer::{Compression, Entry, EntryKind, EntryMeta, LayerOptions, LayerWriter};

/// A tar built byte by byte, so tests can write what no honest writer would.
struct RawTar(Vec<u8>);

impl RawTar {
    fn new() -> Self {
        Self(Vec::new())
    }

    fn entry(
        mut self,
        name: &str,
        kind: tar::EntryType,
        link: &str,
        data: &[u8],
        mode: u32,
    ) -> Self {
        let mut h = tar::Header::new_ustar();
        let raw = h.as_ustar_mut().unwrap();
        raw.name[..name.len()].copy_from_slice(name.as_bytes());
        raw.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().next_multiple_of(512), 0);
        self
    }

    fn file(self, name: &str, data: &str) -> Self {
        self.entry(name, tar::EntryType::Regular, "", data.as_bytes(), 0o644)
    }
    fn dir(self, name: &str) -> Self {
        self.entry(name, tar::EntryType::Directory, "", b"", 0o755)
    }
    fn symlink(self, name: &str, target: &str) -> Self {
        self.entry(name, tar::EntryType::Symlink, target, b"", 0o777)
    }
    fn hardlink(self, name: &str, target: &str) -> Self {
        self.entry(name, tar::EntryType::Link, target, b"", 0o644)
    }
    fn done(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&[0u8; 1024]);
        self.0
    }
}

fn opts() -> UnpackOptions {
    UnpackOptions::default()
}

fn apply(root: &Path, tar: &[u8]) -> crate::Result<UnpackStats> {
    apply_layer(tar, root, "sha256:test-layer", &opts())
}

/// A scratch root inside a temp dir next to a "host" directory that must stay untouched.
fn sandbox() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let host = t.path().join("host");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("secret"), "host data").unwrap();
    (t, root, host)
}

fn host_untouched(host: &Path) {
    let names: Vec<_> = std::fs::read_dir(host)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["secret"], "something was written outside the root");
    assert_eq!(
        std::fs::read_to_string(host.join("secret")).unwrap(),
        "host data"
    );
}

#[test]
fn dotdot_names_are_refused_with_layer_and_entry() {
    let (_t, root, host) = sandbox();
    let tar = RawTar::new().file("../host/evil", "x").done();
    let e = apply(&root, &tar).unwrap_err().to_string();
    assert!(
        e.contains("sha256:test-layer") && e.contains("../host/evil") && e.contains(".."),
        "{e}"
    );
    let tar = RawTar::new().file("a/../../host/evil", "x").done();
    assert!(apply(&root, &tar).is_err());
    host_untouched(&host);
}

#[test]
fn whiteouts_of_dot_and_dotdot_are_refused_not_applied() {
    // `.wh...` names `..`: applied, it would delete the directory above the root, with
    // everything in it (found by fuzz/'s layer target).
    let (t, root, host) = sandbox();
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    for name in [".wh...", ".wh..", "a/.wh...", "a/b/.wh.."] {
        let e = apply(&root, &RawTar::new().file(name, "").done())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sha256:test-layer") && e.contains("whiteout of '.' or '..'"),
            "{name}: {e}"
        );
        host_untouched(&host);
        assert!(t.path().join("root/a/b").is_dir(), "{name}");
    }
}

#[test]
fn hostile_layers_fail_or_apply_but_never_reach_outside_the_root() {
    use oxkit_testkit::hostile;
    for seed in 1..=300u64 {
        let (t, root, host) = sandbox();
        let mut rng = oxkit_testkit::Rng::new(seed);
        // Several layers: later ones meet the links and directories earlier ones left.
        for _ in 0..1 + rng.below(3) {
            let _ = apply(&root, &hostile::layer(&mut rng));
        }
        host_untouched(&host);
        let mut names: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["host", "root"], "seed {seed}");
    }
}

#[test]
fn absolute_names_are_made_relative() {
    let (_t, root, host) = sandbox();
    let tar = RawTar::new()
        .dir("/etc/")
        .file("/etc/hostname", "box")
        .done();
    apply(&root, &tar).unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "box"
    );
    host_untouched(&host);
}

#[test]
fn absolute_and_climbing_symlinks_never_lead_out_of_the_root() {
    let (_t, root, host) = sandbox();
    let host_abs = host.display().to_string();
    let tar = RawTar::new()
        .symlink("evil", &host_abs)
        .file("evil/pwned", "owned")
        .symlink("up", "../../../../../../..")
        .file(&format!("up{host_abs}/pwned2"), "owned")
        .done();
    apply(&root, &tar).unwrap();
    host_untouched(&host);
    // The writes landed where a container would see them: inside the root.
    let inside = root.join(host_abs.trim_start_matches('/'));
    assert_eq!(
        std::fs::read_to_string(inside.join("pwned")).unwrap(),
        "owned"
    );
    assert_eq!(
        std::fs::read_to_string(inside.join("pwned2")).unwrap(),
        "owned"
    );
    assert!(
        std::fs::symlink_metadata(root.join("evil"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn a_symlink_in_the_way_is_replaced_not_written_through() {
    let (_t, root, host) = sandbox();
    let secret = host.join("secret").display().to_string();
    apply(
        &root,
        &RawTar::new()
            .symlink("f", &secret)
            .symlink("d", &host.display().to_string())
            .done(),
    )
    .unwrap();
    apply(&root, &RawTar::new().file("f", "mine").dir("d/").done()).unwrap();
    host_untouched(&host);
    assert_eq!(std::fs::read_to_string(root.join("f")).unwrap(), "mine");
    assert!(std::fs::symlink_metadata(root.join("d")).unwrap().is_dir());
}

#[test]
fn hardlinks_to_outside_are_refused() {
    let (_t, root, host) = sandbox();
    let e = apply(&root, &RawTar::new().hardlink("h", "../host/secret").done())
        .unwrap_err()
        .to_string();
    assert!(e.contains("hard link target") && e.contains("\"h\""), "{e}");
    let abs = host.join("secret").display().to_string();
    let e = apply(&root, &RawTar::new().hardlink("h", &abs).done())
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not exist"), "{e}");
    let e = apply(
        &root,
        &RawTar::new()
            .symlink("evil", &host.display().to_string())
            .hardlink("h", "evil/secret")
            .done(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("does not exist"), "{e}");
    host_untouched(&host);
    assert!(std::fs::symlink_metadata(root.join("h")).is_err());
    assert_eq!(std::fs::metadata(host.join("secret")).unwrap().nlink(), 1);
}

#[test]
fn whiteouts_and_opaque_directories_follow_oci_semantics() {
    let (_t, root, _host) = sandbox();
    let lower = RawTar::new()
        .dir("a/")
        .file("a/x", "x")
        .file("a/y", "y")
        .file("b", "b")
        .dir("d/")
        .file("d/1", "1")
        .dir("d/sub/")
        .file("d/sub/2", "2")
        .dir("e/")
        .file("e/old", "old")
        .done();
    apply(&root, &lower).unwrap();
    let upper = RawTar::new()
        .file("a/.wh.x", "")
        .file(".wh.b", "")
        .dir("d/")
        .file("d/.wh..wh..opq", "")
        .file("d/3", "3")
        // The marker may come after a sibling of its own layer: that sibling stays.
        .file("e/new", "new")
        .file("e/.wh..wh..opq", "")
        .file(".wh.never-existed", "")
        .done();
    let stats = apply(&root, &upper).unwrap();
    assert!(!root.join("a/x").exists() && root.join("a/y").exists());
    assert!(!root.join("b").exists());
    let d: Vec<_> = std::fs::read_dir(root.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(d, ["3"]);
    let e: Vec<_> = std::fs::read_dir(root.join("e"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(e, ["new"]);
    assert!(!root.join("a/.wh.x").exists() && !root.join("d/.wh..wh..opq").exists());
    assert_eq!(stats.removed, 5);
}

#[test]
fn our_layers_round_trip_with_modes_links_and_times() {
    let t = tempfile::tempdir().unwrap();
    let store = crate::Store::open(t.path().join("store")).unwrap();
    let mut w = LayerWriter::new(
        &store,
        &LayerOptions {
            compression: Compression::Zstd,
            epoch: 1234,
            ..Default::default()
        },
    )
    .unwrap();
    let mut su = EntryMeta::mode(0o4755);
    su.mtime = 99;
    w.add(&Entry::dir("bin", EntryMeta::mode(0o755)), None)
        .unwrap();
    w.add_bytes(&Entry::file("bin/su", 4, su), b"suid").unwrap();
    w.add(
        &Entry::hardlink("bin/su-again", "bin/su", EntryMeta::mode(0o4755)),
        None,
    )
    .unwrap();
    w.add(
        &Entry::symlink("bin/sh", "su", EntryMeta::mode(0o777)),
        None,
    )
    .unwrap();
    let mut tmp = EntryMeta::mode(0o1777);
    tmp.mtime = 5000; // clamped to the epoch, and not bumped by tmp/fifo below
    w.add(&Entry::dir("tmp", tmp), None).unwrap();
    w.add(
        &Entry {
            path: "tmp/fifo".into(),
            kind: EntryKind::Fifo,
            meta: EntryMeta::mode(0o640),
        },
        None,
    )
    .unwrap();
    w.add(
        &Entry {
            path: "null".into(),
            kind: EntryKind::CharDevice { major: 1, minor: 3 },
            meta: EntryMeta::mode(0o666),
        },
        None,
    )
    .unwrap();
    let layer = w.finish().unwrap();

    let root = t.path().join("root");
    let stats = apply_layer_blob(&store, &layer.descriptor, &root, &opts()).unwrap();
    assert_eq!((stats.entries, stats.files, stats.bytes), (7, 1, 4));
    let su = std::fs::metadata(root.join("bin/su")).unwrap();
    assert_eq!(su.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(su.mtime(), 99);
    assert_eq!(su.nlink(), 2);
    assert_eq!(
        std::fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("su")
    );
    let tmp = std::fs::metadata(root.join("tmp")).unwrap();
    assert_eq!(
        (tmp.permissions().mode() & 0o7777, tmp.mtime()),
        (0o1777, 1234)
    );
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &std::fs::metadata(root.join("tmp/fifo"))
            .unwrap()
            .file_type()
    ));
    if rustix::process::geteuid().is_root() {
        assert_eq!(
            std::fs::metadata(root.join("null")).unwrap().rdev(),
            rustix::fs::makedev(1, 3)
        );
    } else {
        assert_eq!(stats.devices_skipped, 1);
    }

    // Devices can be refused.
    let refuse = UnpackOptions {
        devices: DeviceMode::Refuse,
        ..opts()
    };
    let e = apply_layer_blob(&store, &layer.descriptor, &t.path().join("r2"), &refuse).unwrap_err();
    assert!(
        e.to_string().contains("null") && e.to_string().contains("devices refused"),
        "{e}"
    );

    // The visitor sees the same entries without extracting.
    let mut seen = Vec::new();
    visit_layer_blob(&store, &layer.descriptor, |e, data| {
        let mut s = String::new();
        data.read_to_string(&mut s).unwrap();
        seen.push((e.path.display().to_string(), s));
        Ok(())
    })
    .unwrap();
    assert_eq!(seen[1], ("bin/su".to_string(), "suid".to_string()));
    assert_eq!(seen.len(), 7);
}

#[test]
fn visitor_classifies_whiteouts_and_skips_the_root() {
    let tar = RawTar::new()
        .dir("./")
        .file("./etc/.wh.passwd", "")
        .file("var/.wh..wh..opq", "")
        .done();
    let mut kinds = Vec::new();
    visit_layer(&tar[..], "l", |e, _| {
        kinds.push((e.path.display().to_string(), e.kind.clone()));
        Ok(())
    })
    .unwrap();
    assert_eq!(
        kinds,
        [
            ("etc/passwd".to_string(), EntryKind::Whiteout),
            ("var".to_string(), EntryKind::Opaque)
        ]
    );
}

#[test]
fn truncated_and_corrupt_layers_fail() {
    let (_t, root, _host) = sandbox();
    let tar = RawTar::new().file("big", &"x".repeat(5000)).done();
    let e = apply(&root, &tar[..2048]).unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
    // gzip cut short
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    assert!(apply(&root.join("g"), &gz[..gz.len() - 20]).is_err());

    let t = tempfile::tempdir().unwrap();
    let store = crate::Store::open(t.path()).unwrap();
    let blob = store.write_blob(&tar).unwrap();
    let mut bad = tar.clone();
    bad[600] ^= 1;
    std::fs::write(store.blob_path(&blob.digest), &bad).unwrap();
    let e = apply_layer_blob(
        &store,
        &blob.descriptor(crate::oci::media_type::OCI_LAYER),
        &root.join("c"),
        &opts(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("corrupt"), "{e}");
}

#[test]
fn later_entries_replace_earlier_ones_of_another_kind() {
    let (_t, root, _host) = sandbox();
    apply(
        &root,
        &RawTar::new()
            .dir("x/")
            .file("x/inner", "i")
            .file("y", "file")
            .done(),
    )
    .unwrap();
    apply(
        &root,
        &RawTar::new()
            .file("x", "now a file")
            .dir("y/")
            .file("y/z", "z")
            .done(),
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("x")).unwrap(),
        "now a file"
    );
    assert_eq!(std::fs::read_to_string(root.join("y/z")).unwrap(), "z");
    // A file whose parent directory entry is missing gets its parents created.
    apply(&root, &RawTar::new().file("deep/er/file", "f").done()).unwrap();
    assert!(root.join("deep/er/file").is_file());
    let _ = std::fs::Permissions::from_mode(0o755);
    let _ = symlink::<&str, &str>;
}
