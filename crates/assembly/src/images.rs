//! Finding the image behind every reference of a configuration, for the one platform being
//! built: the local store first, otherwise the registry (through [`ImageFetcher`], which the
//! caller backs with `oxkit-registry`; this crate does not talk HTTP).
//!
//! Each distinct reference is resolved once; the result pins the platform manifest, so the
//! rest of the build (and its cache key) depends on digests, not tags.

use std::collections::BTreeMap;

use oxkit_spec::image_yaml::{ImageText, ImageYaml};
use oxkit_spec::{Platform, Reference, SourceLoc};
use oxkit_store::Store;
use oxkit_store::oci::{Descriptor, ImageConfig, ImageManifest};

use crate::error::{Error, Result};

/// An error from a collaborator (the registry client), reduced to what the user reads.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Pulls images the store does not have.
pub trait ImageFetcher {
    /// Brings `reference` for `platform` into `store`, tagged `reference`.
    fn pull(
        &self,
        store: &Store,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<(), BoxError>;
}

/// Where a configuration uses an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageUse {
    /// LinuxKit's name for the place: `kernel`, `init[0]`, `onboot[1] "dhcpcd"`, ...
    pub what: String,
    pub loc: SourceLoc,
    pub reference: Reference,
}

/// Every image use of `yaml`, in LinuxKit's build order.
pub fn image_uses(yaml: &ImageYaml) -> Result<Vec<ImageUse>> {
    let mut out = Vec::new();
    let mut add = |what: String, image: &ImageText| -> Result<()> {
        let reference = match image.image_ref()? {
            oxkit_spec::image_yaml::ImageRef::Reference(r) => r,
            oxkit_spec::image_yaml::ImageRef::Pkg(p) => {
                return Err(Error::Entry {
                    loc: image.loc.clone(),
                    what,
                    message: format!("@pkg:{p} was not resolved"),
                });
            }
        };
        out.push(ImageUse {
            what,
            loc: image.loc.clone(),
            reference,
        });
        Ok(())
    };
    if let Some(k) = &yaml.kernel.image {
        add("kernel".into(), k)?;
    }
    for (i, t) in yaml.init.iter().enumerate() {
        add(format!("init[{i}]"), t)?;
    }
    for (i, v) in yaml.volumes.iter().enumerate() {
        if let Some(t) = &v.image {
            add(format!("volumes[{i}] {:?}", v.name), t)?;
        }
    }
    for (section, entries) in [
        ("onboot", &yaml.onboot),
        ("onshutdown", &yaml.onshutdown),
        ("services", &yaml.services),
    ] {
        for (i, e) in entries.iter().enumerate() {
            add(format!("{section}[{i}] {:?}", e.name), &e.image)?;
        }
    }
    Ok(out)
}

/// An image found in the store for the platform being built.
#[derive(Clone, Debug)]
pub struct ResolvedImage {
    pub reference: Reference,
    /// The platform's manifest.
    pub manifest: Descriptor,
    /// Whether it had to be pulled.
    pub pulled: bool,
}

/// The images of a build, by canonical reference.
#[derive(Clone, Debug, Default)]
pub struct ResolvedImages {
    pub uses: Vec<ImageUse>,
    by_ref: BTreeMap<String, ResolvedImage>,
}

impl ResolvedImages {
    pub fn get(&self, r: &Reference) -> Option<&ResolvedImage> {
        self.by_ref.get(&r.canonical())
    }

    /// Each distinct image once, in first-use order.
    pub fn distinct(&self) -> Vec<(&ImageUse, &ResolvedImage)> {
        let mut seen = std::collections::BTreeSet::new();
        self.uses
            .iter()
            .filter(|u| seen.insert(u.reference.canonical()))
            .filter_map(|u| self.get(&u.reference).map(|r| (u, r)))
            .collect()
    }
}

/// How images are found.
pub struct ResolveOptions<'a> {
    pub platform: Platform,
    /// Pull even images the store has (LinuxKit's `--pull`).
    pub always_pull: bool,
    /// `None`: the store only.
    pub fetcher: Option<&'a dyn ImageFetcher>,
}

/// Resolves every image of `yaml` for `opts.platform`; `progress` hears about each pull.
pub fn resolve_images(
    store: &Store,
    yaml: &ImageYaml,
    opts: &ResolveOptions<'_>,
    progress: &mut dyn FnMut(&str),
) -> Result<ResolvedImages> {
    let uses = image_uses(yaml)?;
    let mut by_ref: BTreeMap<String, ResolvedImage> = BTreeMap::new();
    for u in &uses {
        let key = u.reference.canonical();
        if by_ref.contains_key(&key) {
            continue;
        }
        let missing = |reason: String| Error::ImageMissing {
            loc: u.loc.clone(),
            what: u.what.clone(),
            reference: u.reference.to_string(),
            platform: opts.platform.to_string(),
            reason,
        };
        let image_err = |source: oxkit_store::Error| Error::Image {
            loc: u.loc.clone(),
            what: u.what.clone(),
            reference: u.reference.to_string(),
            cause: Box::new(source),
        };
        let mut found = if opts.always_pull {
            None
        } else {
            match store.resolve_platform(&u.reference, &opts.platform) {
                Ok(found) => found,
                // The store has the image for other platforms only: pull this one.
                Err(oxkit_store::Error::NoPlatform { .. }) if opts.fetcher.is_some() => None,
                Err(e) => return Err(image_err(e)),
            }
        };
        let mut pulled = false;
        if found.is_none() {
            let Some(fetcher) = opts.fetcher else {
                return Err(missing(
                    "no registry access in this build; import or pull it first".into(),
                ));
            };
            progress(&format!("pulling {} ({})", u.reference, opts.platform));
            fetcher
                .pull(store, &u.reference, &opts.platform)
                .map_err(|e| missing(e.to_string()))?;
            pulled = true;
            found = store
                .resolve_platform(&u.reference, &opts.platform)
                .map_err(image_err)?;
        }
        let Some(manifest) = found else {
            return Err(missing("the pull did not store it".into()));
        };
        by_ref.insert(
            key,
            ResolvedImage {
                reference: u.reference.clone(),
                manifest,
                pulled,
            },
        );
    }
    Ok(ResolvedImages { uses, by_ref })
}

/// The manifest and config of a resolved image.
pub(crate) fn read_image(
    store: &Store,
    image: &ResolvedImage,
) -> oxkit_store::Result<(ImageManifest, ImageConfig)> {
    let manifest = store.read_manifest(&image.manifest.digest)?;
    let config = store.read_config(&manifest.config.digest)?;
    Ok((manifest, config))
}
