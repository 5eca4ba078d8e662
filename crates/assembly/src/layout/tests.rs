//! The layout end to end through the library: images made in a scratch store, assembled and
//! written as a tar, read back with the `tar` crate.

use std::collections::BTreeMap;
use std::io::Read;

use oxkit_spec::Platform;
use oxkit_spec::image_yaml::ImageYaml;
use oxkit_store::layer::{LayerOptions, LayerWriter};
use oxkit_store::oci::{ImageConfig as OciImageConfig, ImageManifest, media_type};

use super::*;
use crate::images::{ResolveOptions, resolve_images};
use crate::output::{OutputPlan, write_outputs};

struct Scratch {
    dir: tempfile::TempDir,
    store: Store,
}

fn scratch() -> Scratch {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    Scratch { dir, store }
}

fn m(mode: u32) -> EntryMeta {
    EntryMeta::mode(mode)
}

/// A layer from (entry, content) pairs.
fn layer(store: &Store, entries: &[(Entry, &[u8])]) -> Descriptor {
    let mut w = LayerWriter::new(store, &LayerOptions::default()).unwrap();
    for (e, data) in entries {
        w.add_bytes(e, data).unwrap();
    }
    w.finish().unwrap().descriptor
}

/// Tags an image made of `layers` (with a config for the host platform) as `reference`.
fn image(store: &Store, reference: &str, layers: Vec<Descriptor>, config: OciImageConfig) {
    let mut config = config;
    config.set_platform(&Platform::host());
    for l in &layers {
        // The diff ids are not checked by the assembler; any digest keeps the config valid.
        config.rootfs.diff_ids.push(l.digest.clone());
    }
    let config = store.put_json(media_type::OCI_CONFIG, &config).unwrap();
    let manifest = ImageManifest::new(config, layers);
    let manifest = store.put_json(media_type::OCI_MANIFEST, &manifest).unwrap();
    store
        .tag(&oxkit_spec::Reference::parse(reference).unwrap(), manifest)
        .unwrap();
}

fn file(path: &str, body: &[u8]) -> (Entry, &'static [u8]) {
    // Leak: test data lives as long as the test process, which is fine.
    let body: &'static [u8] = Box::leak(body.to_vec().into_boxed_slice());
    (Entry::file(path, body.len() as u64, m(0o644)), body)
}

/// One tar entry: path, kind letter, mode, uid, content or link target.
type Row = (String, char, u32, u64, Vec<u8>);

/// Builds `yaml` and returns the tar's entries.
fn build(s: &Scratch, yaml: &str) -> Result<Vec<Row>> {
    let y = ImageYaml::parse(yaml, "t.yml")?;
    let config = Config::from_yaml(y, s.dir.path())?;
    let images = resolve_images(
        &s.store,
        &config.yaml,
        &ResolveOptions {
            platform: Platform::host(),
            always_pull: false,
            fetcher: None,
        },
        &mut |_| {},
    )?;
    let a = assemble(&s.store, &config, &images, &AssembleOptions::default())?;
    let out = s.dir.path().join("out");
    let plan = OutputPlan::new(&["tar".into()], Some("t"), Some(&out), None, "t.yml").unwrap();
    let written = write_outputs(&a, &s.store, &plan)?;
    let mut tar = tar::Archive::new(std::fs::File::open(&written.files[0]).unwrap());
    let mut out = Vec::new();
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = String::from_utf8_lossy(&e.path_bytes())
            .trim_end_matches('/')
            .to_string();
        let h = e.header().clone();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Regular => 'f',
            tar::EntryType::Symlink => 'l',
            tar::EntryType::Link => 'h',
            tar::EntryType::Char => 'c',
            _ => '?',
        };
        let mut body = Vec::new();
        if kind == 'l' || kind == 'h' {
            body = e.link_name_bytes().unwrap().to_vec();
        } else {
            e.read_to_end(&mut body).unwrap();
        }
        out.push((path, kind, h.mode().unwrap(), h.uid().unwrap(), body));
    }
    Ok(out)
}

fn find<'a>(entries: &'a [Row], path: &str) -> &'a Row {
    entries.iter().find(|e| e.0 == path).unwrap_or_else(|| {
        panic!(
            "{path} not in {:?}",
            entries.iter().map(|e| &e.0).collect::<Vec<_>>()
        )
    })
}

#[test]
fn init_images_stack_and_their_apk_databases_merge() {
    let s = scratch();
    let a = layer(
        &s.store,
        &[
            file("lib/apk/db/installed", b"P:musl"),
            file("etc/x", b"first"),
            file("etc/only-a", b"a"),
        ],
    );
    let b = layer(
        &s.store,
        &[
            file("lib/apk/db/installed", b"P:runc"),
            file("etc/x", b"second"),
        ],
    );
    image(&s.store, "t/a:1", vec![a], OciImageConfig::default());
    image(&s.store, "t/b:1", vec![b], OciImageConfig::default());
    let out = build(&s, "init:\n  - t/a:1\n  - t/b:1\n").unwrap();
    assert_eq!(find(&out, "etc/x").4, b"second");
    assert_eq!(find(&out, "etc/only-a").4, b"a");
    assert_eq!(
        find(&out, "lib/apk/db/installed").4,
        b"P:musl\n\nP:runc\n\n"
    );
    // LinuxKit's fix-ups on the root: resolv.conf is the runtime link, hosts is LinuxKit's.
    let resolv = find(&out, "etc/resolv.conf");
    assert_eq!(
        (resolv.1, resolv.4.as_slice()),
        ('l', b"/run/resolvconf/resolv.conf".as_slice())
    );
    assert_eq!(find(&out, "etc/hosts").4, crate::flatten::HOSTS.as_bytes());
}

#[test]
fn output_order_is_tree_then_inline_then_layer_order_and_hard_links_are_kept() {
    let s = scratch();
    let l = layer(
        &s.store,
        &[
            file("z/last-in-path", b"1"),
            file("a/first-in-path", b"2"),
            (
                Entry::hardlink("b/link", "z/last-in-path", m(0o644)),
                b"".as_slice(),
            ),
            (
                Entry::symlink("a/sym", "first-in-path", m(0o777)),
                b"".as_slice(),
            ),
        ],
    );
    image(&s.store, "t/a:1", vec![l], OciImageConfig::default());
    let out = build(
        &s,
        "init:\n  - t/a:1\nfiles:\n  - path: m/inline\n    contents: x\n",
    )
    .unwrap();
    let order: Vec<(&str, char)> = out.iter().map(|e| (e.0.as_str(), e.1)).collect();
    let pos = |p: &str| order.iter().position(|e| e.0 == p).unwrap();
    // Directories and links first, sorted...
    assert!(pos("a") < pos("a/sym") && pos("a/sym") < pos("b") && pos("b") < pos("z"));
    // ... then inline files, then the layer's files in the layer's own order.
    assert!(pos("z") < pos("etc/hosts"));
    assert!(pos("etc/hosts") < pos("m/inline"));
    assert!(pos("m/inline") < pos("b/link"));
    assert!(pos("b/link") < pos("z/last-in-path"));
    assert!(pos("z/last-in-path") < pos("a/first-in-path"));
    // The hard-link group is written as one file and a link to it, names in path order.
    assert_eq!(find(&out, "b/link").1, 'f');
    assert_eq!(find(&out, "b/link").4, b"1");
    assert_eq!(find(&out, "z/last-in-path").1, 'h');
    assert_eq!(find(&out, "z/last-in-path").4, b"b/link");
}

#[test]
fn files_follow_linuxkit_modes_owners_and_leading_directories() {
    let s = scratch();
    std::fs::write(s.dir.path().join("src.txt"), b"from the host").unwrap();
    let l = layer(&s.store, &[(Entry::dir("etc", m(0o755)), b"".as_slice())]);
    image(&s.store, "t/a:1", vec![l], OciImageConfig::default());
    let out = build(
        &s,
        "init:\n  - t/a:1\nonboot:\n  - name: svc\n    image: t/a:1\n    command: [x]\n\
         files:\n  - path: /etc/ssh/key\n    source: src.txt\n    uid: svc\n  \
         - path: etc/motd\n    contents: hi\n    mode: \"0644\"\n  \
         - path: opt/d\n    directory: true\n  - path: opt/l\n    symlink: /etc/motd\n    mode: \"0777\"\n  \
         - path: etc/meta.json\n    metadata: json\n  \
         - path: etc/gone\n    source: missing.txt\n    optional: true\n",
    )
    .unwrap();
    let key = find(&out, "etc/ssh/key");
    assert_eq!(
        (key.2, key.3, key.4.as_slice()),
        (0o600, 100, b"from the host".as_slice())
    );
    // The leading directories take the first file's mode with search bits and its owner,
    // even over the image's /etc (LinuxKit writes them as entries of their own).
    assert_eq!((find(&out, "etc").2, find(&out, "etc").3), (0o700, 100));
    assert_eq!(find(&out, "etc/ssh").2, 0o700);
    assert_eq!(find(&out, "etc/motd").2, 0o644);
    assert_eq!(find(&out, "opt/d").1, 'd');
    assert_eq!(find(&out, "opt/d").2, 0o700);
    assert_eq!(find(&out, "opt/l").4, b"/etc/motd");
    let meta: serde_json::Value = serde_json::from_slice(&find(&out, "etc/meta.json").4).unwrap();
    assert_eq!(meta["init"][0], "docker.io/t/a:1");
    assert!(!out.iter().any(|e| e.0 == "etc/gone"));
    // A required source that is missing is an error naming the entry.
    let e = build(&s, "files:\n  - path: etc/x\n    source: nope.txt\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("t.yml:2:5: files[0] \"etc/x\": cannot read source"),
        "{e}"
    );
    let e = build(&s, "files:\n  - path: ../x\n    contents: x\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("'..'"), "{e}");
}

#[test]
fn kernel_image_gives_boot_files_and_its_tarball_at_the_root() {
    let s = scratch();
    let mut modules = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    modules
        .append_data(&mut h, "lib/modules/6.6/m.ko", &b"ko!"[..])
        .unwrap();
    let modules = modules.into_inner().unwrap();
    let l = layer(
        &s.store,
        &[
            file("bzImage", b"KERNEL"),
            file("kernel.tar", &modules),
            file("ucode.cpio", b"UC"),
            file("other", b"dropped"),
        ],
    );
    image(&s.store, "t/k:1", vec![l], OciImageConfig::default());
    let out = build(
        &s,
        "kernel:\n  image: t/k:1\n  binary: bzImage\n  cmdline: c=1\n  ucode: ucode.cpio\n",
    )
    .unwrap();
    assert_eq!(find(&out, "boot/kernel").4, b"KERNEL");
    assert_eq!(find(&out, "boot/cmdline").4, b"c=1");
    assert_eq!(find(&out, "boot/ucode.cpio").4, b"UC");
    assert_eq!(find(&out, "lib/modules/6.6/m.ko").4, b"ko!");
    assert!(!out.iter().any(|e| e.0 == "other" || e.0 == "kernel.tar"));

    let e = build(&s, "kernel:\n  image: t/k:1\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("t.yml:2:10: kernel: image docker.io/t/k:1 (sha256:")
            && e.contains("has no file \"kernel\"; set kernel.binary"),
        "{e}"
    );
    let e = build(
        &s,
        "kernel:\n  image: t/k:1\n  binary: bzImage\n  tar: mods.tar\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("has no file \"mods.tar\""), "{e}");
    let out = build(
        &s,
        "kernel:\n  image: t/k:1\n  binary: bzImage\n  tar: none\n",
    )
    .unwrap();
    assert!(!out.iter().any(|e| e.0.starts_with("lib/")));
}

#[test]
fn bundles_share_unpacked_images_and_shared_layers_are_written_twice() {
    let s = scratch();
    let base = layer(&s.store, &[file("bin/tool", b"shared bytes")]);
    let extra = layer(&s.store, &[file("etc/one", b"1")]);
    let mut cfg = OciImageConfig::default();
    cfg.config.cmd = vec!["/bin/tool".into()];
    cfg.config.labels.insert(
        LABEL.into(),
        r#"{"readonly":true,"capabilities":["CAP_CHOWN"]}"#.into(),
    );
    image(&s.store, "t/one:1", vec![base.clone(), extra], cfg.clone());
    image(&s.store, "t/two:1", vec![base], cfg);
    let out = build(
        &s,
        "volumes:\n  - name: data\nonboot:\n  - name: a\n    image: t/one:1\n    binds: [\"data:/data\"]\n  \
         - name: b\n    image: t/two:1\nservices:\n  - name: c\n    image: t/one:1\n    readonly: false\n",
    )
    .unwrap();
    // One layer, two images: the file is in both roots.
    assert_eq!(
        find(&out, "containers/onboot/000-a/rootfs/bin/tool").4,
        b"shared bytes"
    );
    assert_eq!(
        find(&out, "containers/onboot/001-b/rootfs/bin/tool").4,
        b"shared bytes"
    );
    // t/one is unpacked once; the writable service mounts the first copy as its lower dir.
    assert!(
        !out.iter()
            .any(|e| e.0.starts_with("containers/services/c/lower"))
    );
    find(&out, "containers/services/c/tmp");
    find(&out, "containers/services/c/rootfs");
    let rt: serde_json::Value =
        serde_json::from_slice(&find(&out, "containers/services/c/runtime.json").4).unwrap();
    assert_eq!(
        rt["mounts"][2]["options"][0],
        "lowerdir=/containers/onboot/000-a/rootfs"
    );
    let cfg: serde_json::Value =
        serde_json::from_slice(&find(&out, "containers/onboot/000-a/config.json").4).unwrap();
    let data = cfg["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/data")
        .unwrap();
    assert_eq!(data["source"], "/containers/volumes/data/merged");
    for d in ["lower", "tmp", "merged"] {
        assert_eq!(find(&out, &format!("containers/volumes/data/{d}")).1, 'd');
    }
    let mut kinds = BTreeMap::new();
    for e in &out {
        *kinds.entry(e.1).or_insert(0) += 1;
    }
    assert!(!kinds.contains_key(&'?'), "{kinds:?}");
}
