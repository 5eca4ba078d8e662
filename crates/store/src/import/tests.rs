use std::os::unix::fs::{PermissionsExt, symlink};
use std::process::Command;

use super::*;

fn tree(root: &Path) {
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc/conf.d")).unwrap();
    std::fs::write(root.join("bin/busybox"), vec![0x7f; 70_000]).unwrap();
    std::fs::set_permissions(
        root.join("bin/busybox"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    // "bin/a-link" sorts before "bin/busybox": the walk order decides who carries the data.
    std::fs::hard_link(root.join("bin/busybox"), root.join("bin/a-link")).unwrap();
    std::fs::hard_link(root.join("bin/busybox"), root.join("bin/z-link")).unwrap();
    symlink("/bin/busybox", root.join("bin/sh")).unwrap();
    std::fs::write(root.join("etc/hostname"), "box\n").unwrap();
    std::fs::write(root.join("etc/conf.d/x"), "").unwrap();
    std::fs::set_permissions(
        root.join("etc/conf.d"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
}

fn tar_of(dir: &Path, out: &Path, gzip: bool) {
    let mut cmd = Command::new("tar");
    cmd.arg("--numeric-owner")
        .arg(if gzip { "-czf" } else { "-cf" })
        .arg(out)
        .arg("-C")
        .arg(dir)
        .arg(".");
    assert!(cmd.status().unwrap().success());
}

#[test]
fn same_rootfs_gives_same_image_from_a_dir_a_tar_and_a_gzipped_tar() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path().join("store")).unwrap();
    let rootfs = t.path().join("rootfs");
    tree(&rootfs);
    tar_of(&rootfs, &t.path().join("rootfs.tar"), false);
    tar_of(&rootfs, &t.path().join("rootfs.tgz"), true);
    let r = Reference::parse("me/rootfs:1").unwrap();
    for epoch in [0, 4_000_000_000] {
        let mut opts = ImportOptions::new(Platform::linux("arm64").unwrap());
        opts.epoch = epoch;
        let from_dir = import_rootfs(&store, &rootfs, &r, &opts).unwrap();
        let again = import_rootfs(&store, &rootfs, &r, &opts).unwrap();
        assert_eq!(from_dir, again, "reproducible");
        let from_tar = import_rootfs(&store, &t.path().join("rootfs.tar"), &r, &opts).unwrap();
        assert_eq!(
            from_tar.layer.diff_id, from_dir.layer.diff_id,
            "epoch {epoch}"
        );
        assert_eq!(
            from_tar.manifest.digest, from_dir.manifest.digest,
            "epoch {epoch}"
        );
        let from_tgz = import_rootfs(&store, &t.path().join("rootfs.tgz"), &r, &opts).unwrap();
        assert_eq!(from_tgz.manifest.digest, from_dir.manifest.digest);
    }
}

#[test]
fn imported_image_has_platform_history_and_runtime_config() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path().join("store")).unwrap();
    let rootfs = t.path().join("rootfs");
    tree(&rootfs);
    let mut opts = ImportOptions::new("linux/arm/v7".parse().unwrap());
    opts.epoch = 1_700_000_000;
    opts.config.cmd = vec!["/bin/sh".into()];
    opts.config.env = vec!["PATH=/bin".into()];
    let r = Reference::parse("me/rootfs:2").unwrap();
    let img = import_rootfs(&store, &rootfs, &r, &opts).unwrap();
    let tagged = store.resolve(&r).unwrap().unwrap();
    assert_eq!(tagged.digest, img.manifest.digest);
    assert_eq!(tagged.platform, Some("linux/arm/v7".parse().unwrap()));
    let m = store.read_manifest(&img.manifest.digest).unwrap();
    assert_eq!(m.layers, vec![img.layer.descriptor.clone()]);
    assert_eq!(m.layers[0].media_type, media_type::OCI_LAYER_GZIP);
    let c = store.read_config(&m.config.digest).unwrap();
    assert_eq!(
        (c.architecture.as_str(), c.variant.as_deref()),
        ("arm", Some("v7"))
    );
    assert_eq!(c.created, "2023-11-14T22:13:20Z");
    assert_eq!(c.rootfs.diff_ids, vec![img.layer.diff_id.clone()]);
    assert_eq!(c.history.len(), 1);
    assert_eq!(c.history[0].created_by, IMPORT_CREATED_BY);
    assert_eq!(c.config.cmd, ["/bin/sh"]);
    let arm: Platform = "linux/arm/v7".parse().unwrap();
    assert!(store.resolve_platform(&r, &arm).unwrap().is_some());
}

#[test]
fn layers_and_missing_sources_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path().join("store")).unwrap();
    let layer_dir = t.path().join("layer");
    std::fs::create_dir_all(layer_dir.join("etc")).unwrap();
    std::fs::write(layer_dir.join("etc/.wh.passwd"), "").unwrap();
    tar_of(&layer_dir, &t.path().join("layer.tar"), false);
    let r = Reference::parse("x").unwrap();
    let opts = ImportOptions::new(Platform::linux("amd64").unwrap());
    let e = import_rootfs(&store, &t.path().join("layer.tar"), &r, &opts).unwrap_err();
    assert!(e.to_string().contains("whiteouts"), "{e}");
    let e = import_rootfs(&store, &t.path().join("nope"), &r, &opts).unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    std::fs::write(t.path().join("junk.tar"), vec![b'x'; 3000]).unwrap();
    assert!(import_rootfs(&store, &t.path().join("junk.tar"), &r, &opts).is_err());
    assert!(store.list().unwrap().is_empty());
}
