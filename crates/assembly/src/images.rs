//! Finding the image behind every reference of a configuration, for the one platform being
//! built: the local store first, otherwise the registry (through [`ImageFetcher`], which the
//! caller backs with `oxkit-registry`; this crate does not talk HTTP).
//!
//! Each distinct reference is resolved once; the result pins the platform manifest, so the
//! rest of the build (and its cache key) depends on digests, not tags.
//!
//! A `format: oci` volume is different: its image is copied, not unpacked, so what is resolved
//! is what the store names the reference (an index, or a single manifest) and the index's
//! manifests for the volume's `platforms` (every one when none are listed), whatever platform
//! is being built. Missing platforms are pulled, all of them in one pull.

use std::collections::{BTreeMap, BTreeSet};

use oxkit_spec::image_yaml::{ImageText, ImageYaml, VolumeFormat};
use oxkit_spec::{Digest, Platform, Reference, SourceLoc};
use oxkit_store::Store;
use oxkit_store::oci::{
    self, ANNOTATION_REF_NAME, Descriptor, DocumentKind, ImageConfig, ImageIndex, ImageManifest,
    media_type, normalize_platform,
};

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

    /// Brings `reference` into `store` for each of `platforms` (every platform when empty),
    /// in one pull, tagged `reference`: the image of a `format: oci` volume.
    fn pull_platforms(
        &self,
        store: &Store,
        reference: &Reference,
        platforms: &[Platform],
    ) -> Result<(), BoxError>;
}

/// Where a configuration uses an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageUse {
    /// LinuxKit's name for the place: `kernel`, `init[0]`, `onboot[1] "dhcpcd"`, ...
    pub what: String,
    pub loc: SourceLoc,
    pub reference: Reference,
    /// For a `format: oci` volume (whose `loc` is then the volume entry's): the platforms to
    /// copy into its OCI image layout, normalised, each once; empty for every platform.
    pub layout: Option<Vec<Platform>>,
}

/// Every image use of `yaml`, in LinuxKit's build order.
pub fn image_uses(yaml: &ImageYaml) -> Result<Vec<ImageUse>> {
    let mut out = Vec::new();
    let mut add = |what: String,
                   image: &ImageText,
                   layout: Option<(Vec<Platform>, &SourceLoc)>|
     -> Result<()> {
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
        let (layout, loc) = match layout {
            Some((platforms, loc)) => (Some(platforms), loc.clone()),
            None => (None, image.loc.clone()),
        };
        out.push(ImageUse {
            what,
            loc,
            reference,
            layout,
        });
        Ok(())
    };
    if let Some(k) = &yaml.kernel.image {
        add("kernel".into(), k, None)?;
    }
    for (i, t) in yaml.init.iter().enumerate() {
        add(format!("init[{i}]"), t, None)?;
    }
    for (i, v) in yaml.volumes.iter().enumerate() {
        let Some(t) = &v.image else {
            continue;
        };
        let what = format!("volumes[{i}] {:?}", v.name);
        let layout = if v.format == Some(VolumeFormat::Oci) {
            let mut platforms: Vec<Platform> = Vec::new();
            for p in &v.platforms {
                let p = p.parse::<Platform>().map_err(|e| Error::Entry {
                    loc: v.loc.clone(),
                    what: what.clone(),
                    message: format!("platforms: {e}"),
                })?;
                if !platforms.contains(&p) {
                    platforms.push(p);
                }
            }
            Some((platforms, &v.loc))
        } else {
            None
        };
        add(what, t, layout)?;
    }
    for (section, entries) in [
        ("onboot", &yaml.onboot),
        ("onshutdown", &yaml.onshutdown),
        ("services", &yaml.services),
    ] {
        for (i, e) in entries.iter().enumerate() {
            add(format!("{section}[{i}] {:?}", e.name), &e.image, None)?;
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

/// The image of a `format: oci` volume as found in the store.
#[derive(Clone, Debug)]
pub struct ResolvedLayout {
    pub reference: Reference,
    /// What the store names the reference: an image index or a single image manifest (its
    /// media type the document's own).
    pub top: Descriptor,
    /// The index's manifests for the volume's platforms, in the index's order; empty when
    /// `top` is laid out whole (no platforms listed, all of its manifests chosen, or a single
    /// manifest).
    pub chosen: Vec<Descriptor>,
    /// Whether it had to be pulled.
    pub pulled: bool,
}

impl ResolvedLayout {
    /// What the layout holds: `top`, or the chosen manifests.
    pub fn digests(&self) -> Vec<&Digest> {
        if self.chosen.is_empty() {
            vec![&self.top.digest]
        } else {
            self.chosen.iter().map(|d| &d.digest).collect()
        }
    }
}

/// The images of a build, by canonical reference (and `format: oci` volumes by use).
#[derive(Clone, Debug, Default)]
pub struct ResolvedImages {
    pub uses: Vec<ImageUse>,
    by_ref: BTreeMap<String, ResolvedImage>,
    layouts: BTreeMap<String, ResolvedLayout>,
}

impl ResolvedImages {
    pub fn get(&self, r: &Reference) -> Option<&ResolvedImage> {
        self.by_ref.get(&r.canonical())
    }

    /// Each distinct image unpacked for the platform being built once, in first-use order
    /// (`format: oci` volumes are in [`ResolvedImages::layouts`]).
    pub fn distinct(&self) -> Vec<(&ImageUse, &ResolvedImage)> {
        let mut seen = BTreeSet::new();
        self.uses
            .iter()
            .filter(|u| u.layout.is_none())
            .filter(|u| seen.insert(u.reference.canonical()))
            .filter_map(|u| self.get(&u.reference).map(|r| (u, r)))
            .collect()
    }

    /// The image of the `format: oci` volume `what` names (`volumes[0] "name"`).
    pub fn layout(&self, what: &str) -> Option<&ResolvedLayout> {
        self.layouts.get(what)
    }

    /// Every `format: oci` volume's image, in use order.
    pub fn layouts(&self) -> Vec<(&ImageUse, &ResolvedLayout)> {
        self.uses
            .iter()
            .filter_map(|u| self.layouts.get(&u.what).map(|l| (u, l)))
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
    let mut layouts: BTreeMap<String, ResolvedLayout> = BTreeMap::new();
    for u in &uses {
        if let Some(platforms) = &u.layout {
            let l = resolve_layout(store, u, platforms, opts, progress)?;
            layouts.insert(u.what.clone(), l);
            continue;
        }
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
    Ok(ResolvedImages {
        uses,
        by_ref,
        layouts,
    })
}

/// Resolves the image of a `format: oci` volume for `platforms` (every one when empty),
/// pulling them all at once when the store's copy lacks one.
fn resolve_layout(
    store: &Store,
    u: &ImageUse,
    platforms: &[Platform],
    opts: &ResolveOptions<'_>,
    progress: &mut dyn FnMut(&str),
) -> Result<ResolvedLayout> {
    let image_err = |source: oxkit_store::Error| Error::Image {
        loc: u.loc.clone(),
        what: u.what.clone(),
        reference: u.reference.to_string(),
        cause: Box::new(source),
    };
    let wanted = if platforms.is_empty() {
        "all its platforms".to_string()
    } else {
        platforms
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let missing = |reason: String| Error::ImageMissing {
        loc: u.loc.clone(),
        what: u.what.clone(),
        reference: u.reference.to_string(),
        platform: wanted.clone(),
        reason,
    };
    let mut why = None;
    if !opts.always_pull {
        match choose_layout(store, &u.reference, platforms).map_err(image_err)? {
            Ok(l) => return Ok(l),
            // Empty when the store does not have it at all, which the message says already.
            Err(reason) => why = Some(reason).filter(|r| !r.is_empty()),
        }
    }
    let Some(fetcher) = opts.fetcher else {
        let hint = "no registry access in this build; import or pull it first";
        return Err(missing(match why {
            Some(w) => format!("{w}; {hint}"),
            None => hint.into(),
        }));
    };
    progress(&format!("pulling {} ({wanted})", u.reference));
    if let Err(e) = fetcher.pull_platforms(store, &u.reference, platforms) {
        return Err(missing(match why {
            Some(w) => format!("{w}; pulling it failed: {e}"),
            None => e.to_string(),
        }));
    }
    match choose_layout(store, &u.reference, platforms).map_err(image_err)? {
        Ok(l) => Ok(ResolvedLayout { pulled: true, ..l }),
        Err(reason) if reason.is_empty() => Err(missing("the pull did not store it".into())),
        Err(reason) => Err(missing(format!("{reason} (after pulling it)"))),
    }
}

/// The platform an index entry declares, normalised.
fn entry_platform(d: &Descriptor) -> Option<Platform> {
    let p = d.platform.as_ref()?;
    normalize_platform(&p.os, &p.architecture, p.variant.as_deref())
}

/// LinuxKit's rule: the same OS and architecture, and the same variant when one is asked for.
fn platform_matches(have: &Platform, want: &Platform) -> bool {
    have.os == want.os
        && have.architecture == want.architecture
        && (want.variant.is_none() || have.variant == want.variant)
}

/// Whether the store holds every blob of `d`: `Ok(Err(why))` when it does not.
fn complete(store: &Store, d: &Descriptor) -> oxkit_store::Result<Result<(), String>> {
    match store.image_blobs(d) {
        Ok(_) => Ok(Ok(())),
        Err(e @ oxkit_store::Error::BlobNotFound { .. }) => Ok(Err(format!(
            "the store's copy ({}) is incomplete: {e}",
            d.digest
        ))),
        Err(e) => Err(e),
    }
}

/// What the store has of `r` for `platforms`: the layout to write, or (`Ok(Err(why))`) why
/// the store's copy will not do, which a pull may fix (empty when there is no copy). An error for what no pull fixes (not
/// an image, unreadable).
fn choose_layout(
    store: &Store,
    r: &Reference,
    platforms: &[Platform],
) -> oxkit_store::Result<Result<ResolvedLayout, String>> {
    let Some(mut top) = store.resolve(r)? else {
        return Ok(Err(String::new()));
    };
    top.annotations.remove(ANNOTATION_REF_NAME);
    top.platform = None;
    if !store.has_blob(&top.digest) {
        return Ok(Err(format!(
            "the store names {} but lacks that blob",
            top.digest
        )));
    }
    let bytes = store.read_blob(&top.digest)?;
    let not_image =
        |what: String, media_type: &str, expected: &'static str| oxkit_store::Error::MediaType {
            what,
            media_type: media_type.to_string(),
            expected,
        };
    let layout = |top: Descriptor, chosen: Vec<Descriptor>| ResolvedLayout {
        reference: r.clone(),
        top,
        chosen,
        pulled: false,
    };
    match oci::sniff(&bytes) {
        DocumentKind::Index => {
            let index: ImageIndex = oci::from_json(&bytes, format!("image index {}", top.digest))?;
            if !index.manifests.iter().any(|c| {
                media_type::is_manifest(&c.media_type) || media_type::is_index(&c.media_type)
            }) {
                return Err(not_image(
                    format!("the first entry of image index {}", top.digest),
                    index
                        .manifests
                        .first()
                        .map_or("none", |c| c.media_type.as_str()),
                    "an image manifest: the reference is not a container image",
                ));
            }
            top.media_type = index.descriptor_media_type().to_string();
            if platforms.is_empty() {
                return Ok(complete(store, &top)?.map(|()| layout(top, Vec::new())));
            }
            let mut chosen = BTreeSet::new();
            let mut lacking = Vec::new();
            for want in platforms {
                let mut hit = false;
                for c in &index.manifests {
                    if entry_platform(c).is_some_and(|p| platform_matches(&p, want)) {
                        chosen.insert(c.digest.clone());
                        hit = true;
                    }
                }
                if !hit {
                    lacking.push(want.to_string());
                }
            }
            if !lacking.is_empty() {
                let mut offered: Vec<String> = Vec::new();
                for p in index.manifests.iter().filter_map(entry_platform) {
                    let p = p.to_string();
                    if !offered.contains(&p) {
                        offered.push(p);
                    }
                }
                return Ok(Err(format!(
                    "the store's copy ({}) has no {} (it has {})",
                    top.digest,
                    lacking.join(", "),
                    if offered.is_empty() {
                        "no platform oxkit knows".to_string()
                    } else {
                        offered.join(", ")
                    }
                )));
            }
            let picked: Vec<Descriptor> = index
                .manifests
                .iter()
                .filter(|c| chosen.contains(&c.digest))
                .cloned()
                .collect();
            for c in &picked {
                if let Err(why) = complete(store, c)? {
                    return Ok(Err(why));
                }
            }
            let whole = index.manifests.iter().all(|c| chosen.contains(&c.digest));
            Ok(Ok(layout(top, if whole { Vec::new() } else { picked })))
        }
        // Schema 1 is refused by the manifest reader, with its own message.
        DocumentKind::Manifest | DocumentKind::SchemaV1 => {
            let manifest = store.read_manifest(&top.digest)?;
            if !media_type::is_config(&manifest.config.media_type) {
                return Err(not_image(
                    format!("the config of manifest {}", top.digest),
                    &manifest.config.media_type,
                    "an image config: the reference is not a container image",
                ));
            }
            top.media_type = manifest.descriptor_media_type().to_string();
            if !platforms.is_empty() {
                let have = store.read_config(&manifest.config.digest)?.platform();
                let lacking: Vec<String> = platforms
                    .iter()
                    .filter(|w| !have.as_ref().is_some_and(|h| platform_matches(h, w)))
                    .map(ToString::to_string)
                    .collect();
                if !lacking.is_empty() {
                    return Ok(Err(format!(
                        "the store's copy ({}) is a single-platform image for {}, not {}",
                        top.digest,
                        have.map_or_else(|| "an unknown platform".into(), |p| p.to_string()),
                        lacking.join(", ")
                    )));
                }
            }
            Ok(complete(store, &top)?.map(|()| layout(top, Vec::new())))
        }
        DocumentKind::Other => Err(not_image(
            top.digest.to_string(),
            &top.media_type,
            "an image index or manifest: the reference is not a container image",
        )),
    }
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
