//! Helpers for this crate's unit tests: packages in temporary directories, stores holding their
//! architecture images, and images put straight into the fake registry.

use std::path::Path;

use oxkit_source::{Package, ResolveOptions, Resolver};
use oxkit_spec::{Digest, Platform, Reference};
use oxkit_store::Store;
use oxkit_store::import::{ImportOptions, import_rootfs};
use oxkit_store::oci::{
    self, Descriptor, ImageConfig, ImageIndex, ImageManifest, media_type as mt,
};

use crate::remote::fake::State;

/// A package `ORG/pkgx` for `arches` in `dir` (not a git repository: never dirty).
pub(crate) fn package(dir: &Path, org: &str, arches: &[&str]) -> Package {
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::write(
        dir.join("build.yml"),
        format!("image: pkgx\norg: {org}\narches: [{}]\n", arches.join(", ")),
    )
    .expect("build.yml");
    std::fs::write(dir.join("Dockerfile"), "FROM scratch\n").expect("Dockerfile");
    Resolver::new(ResolveOptions::default())
        .resolve(dir)
        .expect("resolve")
}

/// A store at `root` holding `pkg`'s `TAG-ARCH` images for `arches` (a tiny rootfs each).
pub(crate) fn store_with(root: &Path, pkg: &Package, arches: &[&str]) -> Store {
    let store = Store::open(root.join("store")).expect("store");
    for arch in arches {
        let rootfs = root.join(format!("rootfs-{arch}"));
        std::fs::create_dir_all(rootfs.join("etc")).expect("rootfs");
        std::fs::write(rootfs.join("etc/arch"), format!("{arch}\n")).expect("file");
        let r = pkg.arch_reference(arch).expect("arch ref");
        import_rootfs(
            &store,
            &rootfs,
            &r,
            &ImportOptions::new(Platform::linux(arch).expect("arch")),
        )
        .expect("import");
    }
    store
}

/// An image for `arch` (content varies with `salt`) tagged `r` in the fake registry.
pub(crate) fn remote_image(st: &mut State, r: &Reference, arch: &str, salt: &str) -> Descriptor {
    let layer = format!("layer {arch} {salt}").into_bytes();
    let layer_d = st.put(None, mt::OCI_LAYER, &layer);
    let mut config = ImageConfig::default();
    config.set_platform(&Platform::linux(arch).expect("arch"));
    let config = oci::to_canonical_json(&config).expect("config");
    let config_d = st.put(None, mt::OCI_CONFIG, &config);
    let manifest = ImageManifest::new(
        Descriptor::new(mt::OCI_CONFIG, config_d, config.len() as u64),
        vec![Descriptor::new(mt::OCI_LAYER, layer_d, layer.len() as u64)],
    );
    let bytes = oci::to_canonical_json(&manifest).expect("manifest");
    let d = st.put(Some(r), mt::OCI_MANIFEST, &bytes);
    Descriptor::new(mt::OCI_MANIFEST, d, bytes.len() as u64)
        .with_platform(Platform::linux(arch).expect("arch"))
}

/// Puts an index over `entries` under `r` in the fake registry.
pub(crate) fn remote_index(st: &mut State, r: &Reference, entries: Vec<Descriptor>) -> Digest {
    let bytes = oci::to_canonical_json(&ImageIndex::new(entries)).expect("index");
    st.put(Some(r), mt::OCI_INDEX, &bytes)
}

/// The entries of the index `r` names in the fake registry.
pub(crate) fn entries(st: &State, r: &Reference) -> Vec<Descriptor> {
    let d = st
        .tags
        .get(&crate::remote::fake::key(r))
        .unwrap_or_else(|| panic!("{r} not in the fake registry"));
    let (_, bytes) = &st.objects[d];
    oci::from_json::<ImageIndex>(bytes, "index")
        .expect("index")
        .manifests
}

/// `(arch, digest)` of each platform entry, sorted.
pub(crate) fn arch_digests(entries: &[Descriptor]) -> Vec<(String, Digest)> {
    let mut v: Vec<(String, Digest)> = entries
        .iter()
        .filter_map(|d| {
            d.platform
                .as_ref()
                .map(|p| (p.architecture.clone(), d.digest.clone()))
        })
        .collect();
    v.sort();
    v
}

pub(crate) fn reference(s: &str) -> Reference {
    Reference::parse(s).expect("reference")
}

/// Signs `digest` in `repo` with `key` (what a publish does for each image).
pub(crate) fn sign_digest(
    remote: &dyn crate::remote::Remote,
    repo: &oxkit_spec::Reference,
    digest: &oxkit_spec::Digest,
    key: &dyn crate::KeySource,
    annotations: &std::collections::BTreeMap<String, String>,
    events: &dyn crate::EventSink,
) -> crate::error::Result<crate::SignOutcome> {
    crate::signing::Signer {
        remote,
        repo,
        key,
        annotations,
        events,
    }
    .sign(digest)
}
