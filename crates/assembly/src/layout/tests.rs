//! The layout end to end through the library: images made in a scratch store, assembled and
//! written as a tar, read back with the `tar` crate.

use std::collections::BTreeMap;
use std::io::Read;

use oxkit_spec::Platform;
use oxkit_spec::image_yaml::ImageYaml;
use oxkit_store::layer::{LayerOptions, LayerWriter};
use oxkit_store::oci::{ImageConfig as OciImageConfig, ImageManifest, media_type};

use super::*;
use crate::images::{BoxError, ImageFetcher, ResolveOptions, resolve_images};
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
    build_with(s, yaml, None)
}

/// [`build`] with registry access through `fetcher`.
fn build_with(s: &Scratch, yaml: &str, fetcher: Option<&dyn ImageFetcher>) -> Result<Vec<Row>> {
    let y = ImageYaml::parse(yaml, "t.yml")?;
    let config = Config::from_yaml(y, s.dir.path())?;
    let images = resolve_images(
        &s.store,
        &config.yaml,
        &ResolveOptions {
            platform: Platform::host(),
            always_pull: false,
            fetcher,
        },
        &mut |_| {},
    )?;
    let a = assemble(&s.store, &config, &images, &AssembleOptions::default())?;
    let out = s.dir.path().join("out");
    let plan = OutputPlan::new(&["tar".into()], Some("t"), Some(&out), None, "t.yml").unwrap();
    let written = write_outputs(&a, &s.store, &plan, &|_| {})?;
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

/// An image for `platform` with one layer (`etc/arch` holding `body`); its manifest's
/// descriptor, with the platform.
fn platform_image(store: &Store, platform: &str, body: &[u8]) -> Descriptor {
    let p: Platform = platform.parse().unwrap();
    let l = layer(store, &[file("etc/arch", body)]);
    let mut config = OciImageConfig::default();
    config.set_platform(&p);
    config.rootfs.diff_ids.push(l.digest.clone());
    let config = store.put_json(media_type::OCI_CONFIG, &config).unwrap();
    let manifest = ImageManifest::new(config, vec![l]);
    store
        .put_json(media_type::OCI_MANIFEST, &manifest)
        .unwrap()
        .with_platform(p)
}

/// An index over images for `platforms`, tagged `reference`; its descriptor and the
/// manifests' (in the index's order).
fn multi(store: &Store, reference: &str, platforms: &[&str]) -> (Descriptor, Vec<Descriptor>) {
    let manifests: Vec<Descriptor> = platforms
        .iter()
        .map(|p| platform_image(store, p, p.as_bytes()))
        .collect();
    let index = store
        .put_index_for(
            &oxkit_spec::Reference::parse(reference).unwrap(),
            manifests.clone(),
        )
        .unwrap();
    let listed = store.read_index(&index.digest).unwrap().manifests;
    (index, listed)
}

const LOWER: &str = "containers/volumes/img/lower";

/// The blobs of the layout in `out`, by digest.
fn layout_blobs(out: &[Row]) -> BTreeMap<String, Vec<u8>> {
    let prefix = format!("{LOWER}/blobs/sha256/");
    out.iter()
        .filter_map(|e| {
            e.0.strip_prefix(&prefix)
                .map(|hex| (format!("sha256:{hex}"), e.4.clone()))
        })
        .collect()
}

/// The one entry of the layout's `index.json`.
fn layout_entry(out: &[Row]) -> serde_json::Value {
    let index: serde_json::Value =
        serde_json::from_slice(&find(out, &format!("{LOWER}/index.json")).4).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1, "{index}");
    index["manifests"][0].clone()
}

/// Every blob `d` is made of, by digest, with the store's bytes.
fn store_blobs(store: &Store, d: &Descriptor) -> BTreeMap<String, Vec<u8>> {
    store
        .image_blobs(d)
        .unwrap()
        .into_iter()
        .map(|b| (b.digest.to_string(), store.read_blob(&b.digest).unwrap()))
        .collect()
}

#[test]
fn oci_volume_holds_the_chosen_platforms_as_an_oci_layout() {
    let s = scratch();
    let (index, listed) = multi(&s.store, "t/multi:1", &["linux/amd64", "linux/arm64"]);
    let yaml = "volumes:\n  - name: img\n    image: t/multi:1\n    format: oci\n    platforms: [linux/arm64]\n";
    let out = build(&s, yaml).unwrap();

    // LinuxKit's files, modes and owners, and the overlay's directories.
    let mut names: Vec<(&str, char, u32, u64)> = out
        .iter()
        .filter(|e| e.0.starts_with("containers/volumes/img/"))
        .map(|e| (e.0.as_str(), e.1, e.2, e.3))
        .collect();
    names.retain(|e| !e.0.starts_with(&format!("{LOWER}/blobs/sha256/")));
    assert_eq!(
        names,
        [
            (LOWER, 'd', 0o755, 0),
            ("containers/volumes/img/lower/blobs", 'd', 0o755, 0),
            ("containers/volumes/img/lower/blobs/sha256", 'd', 0o755, 0),
            ("containers/volumes/img/merged", 'd', 0o755, 0),
            ("containers/volumes/img/tmp", 'd', 0o755, 0),
            ("containers/volumes/img/lower/index.json", 'f', 0o644, 0),
            ("containers/volumes/img/lower/oci-layout", 'f', 0o644, 0),
        ]
    );
    assert_eq!(
        find(&out, &format!("{LOWER}/oci-layout")).4,
        b"{\n\t\t\"imageLayoutVersion\": \"1.0.0\"\n\t}"
    );

    // index.json names a new index over the arm64 manifest only, as LinuxKit writes it.
    let blobs = layout_blobs(&out);
    let entry = layout_entry(&out);
    let digest = entry["digest"].as_str().unwrap().to_string();
    assert_ne!(digest, index.digest.to_string());
    let sub = &blobs[&digest];
    assert_eq!(oxkit_spec::Digest::sha256(sub).to_string(), digest);
    let text = format!(
        "{{\n   \"schemaVersion\": 2,\n   \"mediaType\": \"application/vnd.oci.image.index.v1+json\",\n   \
         \"manifests\": [\n      {{\n         \"mediaType\": \"application/vnd.oci.image.index.v1+json\",\n         \
         \"size\": {},\n         \"digest\": \"{digest}\",\n         \"annotations\": {{\n            \
         \"org.opencontainers.image.ref.name\": \"docker.io/t/multi:1\"\n         }}\n      }}\n   ]\n}}",
        sub.len()
    );
    assert_eq!(
        String::from_utf8_lossy(&find(&out, &format!("{LOWER}/index.json")).4),
        text
    );
    let sub: oxkit_store::oci::ImageIndex = serde_json::from_slice(sub).unwrap();
    let arm = listed
        .iter()
        .find(|d| d.platform.as_ref().unwrap().architecture == "arm64")
        .unwrap();
    assert_eq!(sub.manifests, std::slice::from_ref(arm));

    // The arm64 image's blobs, byte for byte; nothing of amd64.
    let mut want = store_blobs(&s.store, arm);
    want.insert(digest.clone(), blobs[&digest].clone());
    assert_eq!(blobs, want);

    // Blobs are written with the other in-memory and host files, in path order.
    let files: Vec<&str> = out
        .iter()
        .filter(|e| e.1 == 'f')
        .map(|e| e.0.as_str())
        .collect();
    let mut sorted = files.clone();
    sorted.sort();
    assert_eq!(files, sorted);

    // The same inputs give the same bytes.
    assert_eq!(build(&s, yaml).unwrap(), out);
}

#[test]
fn oci_volume_of_every_platform_holds_the_index_as_it_is() {
    let s = scratch();
    // Neither platform need be the one being built.
    let (index, _) = multi(&s.store, "t/foreign:1", &["linux/s390x", "linux/riscv64"]);
    let whole = store_blobs(&s.store, &index);
    assert_eq!(whole.len(), 7);
    for platforms in ["", "\n    platforms: [linux/riscv64, linux/s390x]"] {
        let out = build(
            &s,
            &format!(
                "volumes:\n  - name: img\n    image: t/foreign:1\n    format: oci{platforms}\n"
            ),
        )
        .unwrap();
        let entry = layout_entry(&out);
        assert_eq!(entry["digest"], index.digest.to_string(), "{platforms}");
        assert_eq!(entry["mediaType"], media_type::OCI_INDEX);
        assert_eq!(entry["size"], index.size);
        assert_eq!(layout_blobs(&out), whole);
    }

    // A single-platform image is the layout's only entry, whatever the platform built.
    let one = platform_image(&s.store, "linux/arm64", b"one");
    s.store
        .tag(
            &oxkit_spec::Reference::parse("t/one:1").unwrap(),
            one.clone(),
        )
        .unwrap();
    let out = build(
        &s,
        "volumes:\n  - name: img\n    image: t/one:1\n    format: oci\n  \
         - name: again\n    image: t/one:1\n    format: oci\n    platforms: [arm64]\n",
    )
    .unwrap();
    let entry = layout_entry(&out);
    assert_eq!(entry["digest"], one.digest.to_string());
    assert_eq!(entry["mediaType"], media_type::OCI_MANIFEST);
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"],
        "docker.io/t/one:1"
    );
    assert_eq!(layout_blobs(&out), store_blobs(&s.store, &one));
    find(&out, "containers/volumes/again/lower/index.json");
}

#[test]
fn oci_volume_refusals_name_the_volume() {
    let s = scratch();
    multi(&s.store, "t/multi:1", &["linux/amd64", "linux/arm64"]);
    let e = build(
        &s,
        "volumes:\n  - name: img\n    image: t/multi:1\n    format: oci\n    platforms: [linux/amd64, linux/riscv64]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with(
            "t.yml:2:5: volumes[0] \"img\": image docker.io/t/multi:1 is not in the local store for linux/amd64, linux/riscv64"
        ) && e.contains("has no linux/riscv64 (it has linux/amd64, linux/arm64)")
            && e.contains("no registry access"),
        "{e}"
    );
    let e = build(
        &s,
        "volumes:\n  - name: img\n    image: t/multi:1\n    format: oci\n    platforms: [linux/bogus]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("t.yml:2:5:") && e.contains("volume \"img\"") && e.contains("linux/bogus"),
        "{e}"
    );
    let e = build(
        &s,
        "volumes:\n  - name: img\n    image: t/absent:1\n    format: oci\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("t.yml:2:5: volumes[0] \"img\": image docker.io/t/absent:1 is not in the local store for all its platforms")
            && e.ends_with("could not be pulled: no registry access in this build; import or pull it first"),
        "{e}"
    );

    // Not a container image: an artifact whose config is something else.
    let cfg = s
        .store
        .write_blob(b"{}")
        .unwrap()
        .descriptor("application/vnd.example+json");
    let l = layer(&s.store, &[file("x", b"x")]);
    let artifact = s
        .store
        .put_json(media_type::OCI_MANIFEST, &ImageManifest::new(cfg, vec![l]))
        .unwrap();
    s.store
        .tag(
            &oxkit_spec::Reference::parse("t/artifact:1").unwrap(),
            artifact,
        )
        .unwrap();
    let e = build(
        &s,
        "volumes:\n  - name: img\n    image: t/artifact:1\n    format: oci\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("t.yml:2:5: volumes[0] \"img\": image docker.io/t/artifact:1:")
            && e.contains("\"application/vnd.example+json\"")
            && e.contains("not a container image"),
        "{e}"
    );
}

/// A registry stand-in: records what is asked for; `pull_platforms` tags `then` (when set).
struct FakeRegistry {
    asked: std::cell::RefCell<Vec<(String, Vec<Platform>)>>,
    then: Option<Descriptor>,
}

impl ImageFetcher for FakeRegistry {
    fn pull(
        &self,
        _: &Store,
        reference: &oxkit_spec::Reference,
        platform: &Platform,
    ) -> std::result::Result<(), BoxError> {
        Err(format!("unexpected pull of {reference} for {platform}").into())
    }

    fn pull_platforms(
        &self,
        store: &Store,
        reference: &oxkit_spec::Reference,
        platforms: &[Platform],
    ) -> std::result::Result<(), BoxError> {
        self.asked
            .borrow_mut()
            .push((reference.to_string(), platforms.to_vec()));
        match &self.then {
            Some(d) => Ok(store.tag(reference, d.clone())?),
            None => Err("manifest unknown".into()),
        }
    }
}

#[test]
fn oci_volume_pulls_every_missing_platform_at_once() {
    let s = scratch();
    let (index, listed) = multi(&s.store, "t/parts:1", &["linux/amd64", "linux/arm64"]);
    // The store has the amd64 image only, as a one-platform pull leaves it.
    let r = oxkit_spec::Reference::parse("t/multi:1").unwrap();
    s.store.tag(&r, listed[0].clone()).unwrap();
    let registry = FakeRegistry {
        asked: Default::default(),
        then: Some(index.clone()),
    };
    let yaml = "volumes:\n  - name: img\n    image: t/multi:1\n    format: oci\n    platforms: [linux/amd64, linux/arm64]\n";
    let out = build_with(&s, yaml, Some(&registry)).unwrap();
    assert_eq!(
        *registry.asked.borrow(),
        [(
            "docker.io/t/multi:1".to_string(),
            vec![
                Platform::linux("amd64").unwrap(),
                Platform::linux("arm64").unwrap()
            ]
        )]
    );
    // Both platforms chosen: the index as it is.
    assert_eq!(layout_entry(&out)["digest"], index.digest.to_string());
    assert_eq!(layout_blobs(&out), store_blobs(&s.store, &index));

    // A registry that cannot help: both reasons are given.
    let s = scratch();
    multi(&s.store, "t/multi:1", &["linux/amd64"]);
    let registry = FakeRegistry {
        asked: Default::default(),
        then: None,
    };
    let e = build_with(
        &s,
        "volumes:\n  - name: img\n    image: t/multi:1\n    format: oci\n    platforms: [linux/arm64]\n",
        Some(&registry),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("has no linux/arm64 (it has linux/amd64); pulling it failed: manifest unknown"),
        "{e}"
    );
}
