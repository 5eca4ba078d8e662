//! Layer flattening on layers written into a scratch store: whiteouts, opaque directories,
//! hard links, and the refusals (escaping links, `..` names, devices outside /dev).

use oxkit_store::layer::{LayerOptions, LayerWriter};
use oxkit_store::oci::media_type;

use super::*;
use crate::tree::walk;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    (dir, store)
}

fn m(mode: u32) -> EntryMeta {
    EntryMeta::mode(mode)
}

/// A layer from (entry, content) pairs, in this order.
fn layer(store: &Store, entries: &[(Entry, &[u8])]) -> Descriptor {
    let mut w = LayerWriter::new(store, &LayerOptions::default()).unwrap();
    for (e, data) in entries {
        w.add_bytes(e, data).unwrap();
    }
    w.finish().unwrap().descriptor
}

/// A raw uncompressed layer, for names the layer writer refuses to write.
fn raw_layer(store: &Store, name: &[u8], kind: tar::EntryType, link: &[u8]) -> Descriptor {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(0);
    h.set_cksum();
    let mut bytes = h.as_bytes().to_vec();
    bytes.extend_from_slice(&[0u8; 1024]);
    let info = store.write_blob(&bytes).unwrap();
    info.descriptor(media_type::OCI_LAYER)
}

fn run(store: &Store, layers: &[Descriptor]) -> oxkit_store::Result<(Dir, Inodes)> {
    let refs: Vec<LayerRef<'_>> = layers
        .iter()
        .enumerate()
        .map(|(i, d)| LayerRef {
            descriptor: d,
            source: i as SourceId,
        })
        .collect();
    let mut inodes = Inodes::default();
    let root = flatten(store, &refs, &mut inodes, 0, &mut |_, _, _, _| Ok(()))?;
    Ok((root, inodes))
}

fn listing(root: &Dir, inodes: &Inodes) -> Vec<String> {
    let mut out = Vec::new();
    walk(root, &mut |p, n| {
        let p = String::from_utf8_lossy(p);
        out.push(match n {
            Node::Dir(_) => format!("{p}/"),
            Node::File(id) => {
                let i = inodes.get(*id);
                match &i.content {
                    Content::Layer { source, ordinal } => {
                        format!("{p} #{id} L{source}:{ordinal} {}", i.size)
                    }
                    _ => format!("{p} #{id} inline {}", i.size),
                }
            }
            Node::Symlink { target, .. } => format!("{p} -> {}", String::from_utf8_lossy(target)),
            Node::Device { major, minor, .. } => format!("{p} dev {major}:{minor}"),
            Node::Fifo { .. } => format!("{p} fifo"),
        });
    });
    out
}

#[test]
fn whiteouts_opaque_dirs_and_replacement() {
    let (_d, s) = store();
    let l0 = layer(
        &s,
        &[
            (Entry::dir("etc", m(0o755)), b""),
            (Entry::file("etc/a", 1, m(0o644)), b"a"),
            (Entry::file("etc/b", 1, m(0o644)), b"b"),
            (Entry::dir("var/x/sub", m(0o755)), b""),
            (Entry::file("var/x/sub/old", 3, m(0o644)), b"old"),
            (Entry::file("var/x/y", 1, m(0o644)), b"y"),
            (Entry::dir("gone", m(0o755)), b""),
            (Entry::file("gone/f", 1, m(0o644)), b"f"),
        ],
    );
    let l1 = layer(
        &s,
        &[
            (Entry::whiteout("etc/a"), b""),
            // Written before the opaque marker in the same layer: kept.
            (Entry::dir("var/x/sub", m(0o700)), b""),
            (Entry::file("var/x/z", 1, m(0o600)), b"z"),
            (Entry::opaque("var/x"), b""),
            (Entry::whiteout("gone"), b""),
            (Entry::file("etc/b", 2, m(0o600)), b"b2"),
        ],
    );
    let (root, inodes) = run(&s, &[l0, l1]).unwrap();
    assert_eq!(
        listing(&root, &inodes),
        [
            "etc/",
            "etc/b #6 L1:5 2",
            "var/",
            "var/x/",
            "var/x/sub/",
            "var/x/z #5 L1:2 1",
        ]
    );
    // Implicit parents exist, explicit metadata is kept.
    let Some(Node::Dir(var)) = root.children.get(b"var".as_slice()) else {
        panic!()
    };
    assert!(var.implicit);
}

#[test]
fn hard_links_share_an_inode_and_must_name_something() {
    let (_d, s) = store();
    let l0 = layer(
        &s,
        &[
            (Entry::file("bin/busybox", 4, m(0o755)), b"\x7fELF"),
            (Entry::hardlink("bin/sh", "bin/busybox", m(0o755)), b""),
            (Entry::symlink("bin/ls", "busybox", m(0o777)), b""),
            (Entry::hardlink("bin/ls2", "bin/ls", m(0o777)), b""),
        ],
    );
    let (root, inodes) = run(&s, std::slice::from_ref(&l0)).unwrap();
    assert_eq!(
        listing(&root, &inodes),
        [
            "bin/",
            "bin/busybox #0 L0:0 4",
            "bin/ls -> busybox",
            "bin/ls2 -> busybox",
            "bin/sh #0 L0:0 4",
        ]
    );
    let bad = raw_layer(&s, b"bin/x", tar::EntryType::Link, b"bin/missing");
    let e = run(&s, std::slice::from_ref(&bad)).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "layer {}: entry \"bin/x\": refused: a hard link to /bin/missing, which does not exist in the image",
            bad.digest
        )
    );
}

#[test]
fn writes_through_escaping_links_are_refused_and_inner_links_followed() {
    let (_d, s) = store();
    let l0 = layer(
        &s,
        &[
            (Entry::dir("usr/lib", m(0o755)), b""),
            (Entry::symlink("lib", "usr/lib", m(0o777)), b""),
            (Entry::symlink("evil", "/etc", m(0o777)), b""),
            (Entry::symlink("up", "../../..", m(0o777)), b""),
        ],
    );
    let ok = layer(&s, &[(Entry::file("lib/x.so", 1, m(0o644)), b"x")]);
    let (root, inodes) = run(&s, &[l0.clone(), ok]).unwrap();
    assert!(listing(&root, &inodes).contains(&"usr/lib/x.so #0 L1:0 1".to_string()));

    let abs = layer(&s, &[(Entry::file("evil/passwd", 1, m(0o644)), b"x")]);
    let e = run(&s, &[l0.clone(), abs.clone()]).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "layer {}: entry \"evil/passwd\": refused: it would be written through the symbolic link /evil -> /etc, which points outside the root file system",
            abs.digest
        )
    );
    let climb = layer(&s, &[(Entry::dir("up/tmp", m(0o755)), b"")]);
    let e = run(&s, &[l0, climb]).unwrap_err().to_string();
    assert!(e.contains("/up -> ../../.."), "{e}");
}

#[test]
fn dotdot_names_and_devices_outside_dev_are_refused() {
    let (_d, s) = store();
    let bad = raw_layer(&s, b"a/../../etc/passwd", tar::EntryType::Regular, b"");
    let e = run(&s, std::slice::from_ref(&bad)).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "layer {}: entry \"a/../../etc/passwd\"",
            bad.digest
        )),
        "{e}"
    );
    let dev = layer(
        &s,
        &[(
            Entry {
                path: "dev/null".into(),
                kind: EntryKind::CharDevice { major: 1, minor: 3 },
                meta: m(0o666),
            },
            b"",
        )],
    );
    let (root, inodes) = run(&s, &[dev]).unwrap();
    assert_eq!(listing(&root, &inodes), ["dev/", "dev/null dev 1:3"]);
    let mem = layer(
        &s,
        &[(
            Entry {
                path: "etc/mem".into(),
                kind: EntryKind::CharDevice { major: 1, minor: 1 },
                meta: m(0o666),
            },
            b"",
        )],
    );
    let e = run(&s, &[mem]).unwrap_err().to_string();
    assert!(e.contains("device node outside /dev"), "{e}");
}

#[test]
fn linuxkit_fixups_replace_remove_and_touch() {
    let mut inodes = Inodes::default();
    let (_d, s) = store();
    let l0 = layer(
        &s,
        &[
            (Entry::file(".dockerenv", 0, m(0o644)), b""),
            (Entry::dir("etc", m(0o700)), b""),
            (Entry::file("etc/hostname", 3, m(0o644)), b"box"),
            (Entry::file("etc/hosts", 4, m(0o600)), b"mine"),
            (Entry::file("etc/mtab", 1, m(0o644)), b"m"),
            (Entry::dir("dev/pts", m(0o700)), b""),
            (Entry::file("dev/pts/keep", 1, m(0o644)), b"k"),
        ],
    );
    let (mut root, mut ino) = run(&s, &[l0]).unwrap();
    linuxkit_fixups(&mut root, &mut ino, Some(RESOLV_LINK), 7);
    assert_eq!(
        listing(&root, &ino),
        [
            "dev/",
            "dev/pts/",
            "dev/pts/keep #4 L0:6 1",
            "dev/shm/",
            "etc/",
            "etc/hosts #5 inline 160",
            "etc/mtab #3 L0:4 1",
            "etc/resolv.conf -> /run/resolvconf/resolv.conf",
            "proc/",
            "sys/",
        ]
    );
    let Some(Node::Dir(etc)) = root.children.get(b"etc".as_slice()) else {
        panic!()
    };
    assert_eq!((etc.meta.mode, etc.meta.mtime), (0o755, 7));
    let mut bare = Dir::default();
    linuxkit_fixups(&mut bare, &mut inodes, None, 0);
    let l = listing(&bare, &inodes);
    assert!(l.contains(&"etc/mtab -> /proc/mounts".to_string()), "{l:?}");
    assert!(
        l.contains(&"etc/resolv.conf #1 inline 29".to_string()),
        "{l:?}"
    );
}

#[test]
fn hostile_layers_flatten_or_fail_without_panicking() {
    use oxkit_testkit::hostile;
    let (_d, s) = store();
    for seed in 1..=300u64 {
        let mut rng = oxkit_testkit::Rng::new(seed);
        let layers: Vec<Descriptor> = (0..1 + rng.below(3))
            .map(|_| {
                let info = s.write_blob(&hostile::layer(&mut rng)).unwrap();
                info.descriptor(media_type::OCI_LAYER)
            })
            .collect();
        if let Ok((root, inodes)) = run(&s, &layers) {
            // Whatever was kept can be walked; nothing is named `..` or `.`.
            for line in listing(&root, &inodes) {
                let path = line.split(' ').next().unwrap_or_default();
                let names: Vec<&str> = path.trim_end_matches('/').split('/').collect();
                assert!(
                    !names.iter().any(|n| matches!(*n, "" | "." | "..")),
                    "seed {seed}: {line}"
                );
            }
        }
    }
}
