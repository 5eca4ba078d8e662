//! LinuxKit's image YAML (`moby.Moby`: `kernel`, `init`, `onboot`, `onshutdown`, `services`,
//! `files`, `volumes`) plus oxkit's `trust` section: parsing with every entry located
//! (`FILE:LINE:COL`), LinuxKit's merge of several files, validation, `@pkg:` resolution and a
//! deterministic YAML rendering.
//!
//! Pure: the text comes from the caller, `@pkg:` paths are resolved by a callback, and
//! nothing here pulls images or reads files named in the YAML.

mod config;
mod merge;
mod raw;
mod resources;
mod trust;
mod validate;

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

pub use config::{
    ContainerConfig, Device, IdMapping, IdValue, Interface, Mount, Namespaces, Runtime,
};
pub use resources::{
    BlockIo, Cpu, DeviceCgroup, HugepageLimit, InterfacePriority, Memory, Network, Pids, Resources,
    ThrottleDevice, WeightDevice,
};
pub use trust::{DEFAULT_KEY, TrustConfig, TrustKey, TrustName, TrustPolicy, TrustRule};
pub use validate::{CAPABILITIES, RLIMITS};

use crate::reference::Reference;
use crate::yaml::{SourceLoc, SpecError};

/// The prefix of an image value that names a local package instead of a reference.
pub const PKG_PREFIX: &str = "@pkg:";

/// A LinuxKit image configuration (one file, or several merged).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImageYaml {
    #[serde(skip_serializing_if = "Kernel::is_empty")]
    pub kernel: Kernel,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub init: Vec<ImageText>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub onboot: Vec<ImageEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub onshutdown: Vec<ImageEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ImageEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeEntry>,
    #[serde(skip_serializing_if = "TrustConfig::is_empty")]
    pub trust: TrustConfig,
}

/// `kernel:`. Empty strings mean unset, as in LinuxKit's Go struct (that is what its merge
/// rule tests); `tar`/`ucode` distinguish unset from empty (`tar: ""` means no tarball).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Kernel {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageText>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cmdline: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub binary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tar: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ucode: Option<String>,
    /// Where the `kernel:` mapping was (of the last file that had one).
    #[serde(skip)]
    pub loc: Option<SourceLoc>,
}

impl Kernel {
    pub fn is_empty(&self) -> bool {
        self.image.is_none()
            && self.cmdline.is_empty()
            && self.binary.is_empty()
            && self.tar.is_none()
            && self.ucode.is_none()
    }
}

/// An image value as written (a reference, or `@pkg:PATH`) and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageText {
    pub text: String,
    pub loc: SourceLoc,
}

/// What an image value names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageRef {
    Reference(Reference),
    /// `@pkg:PATH`, not resolved yet (see [`ImageYaml::resolve_pkg_refs`]).
    Pkg(String),
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Reference(r) => write!(f, "{r}"),
            ImageRef::Pkg(p) => write!(f, "{PKG_PREFIX}{p}"),
        }
    }
}

impl ImageText {
    /// Parses the value: a `@pkg:PATH` template or a reference with Docker's normalisation.
    pub fn image_ref(&self) -> Result<ImageRef, SpecError> {
        if let Some(path) = self.text.strip_prefix(PKG_PREFIX) {
            if path.is_empty() {
                return Err(SpecError::invalid(
                    &self.loc,
                    "image \"@pkg:\" names no package; write @pkg:PATH with the package directory",
                ));
            }
            return Ok(ImageRef::Pkg(path.to_string()));
        }
        if self.text.starts_with('@') {
            return Err(SpecError::invalid(
                &self.loc,
                format!(
                    "image {:?} uses an unknown template; the only one is @pkg:PATH",
                    self.text
                ),
            ));
        }
        Reference::parse(&self.text)
            .map(ImageRef::Reference)
            .map_err(|e| {
                SpecError::invalid(&self.loc, format!("image {:?}: {}", self.text, e.reason))
            })
    }

    /// The package path when the value is `@pkg:PATH`.
    pub fn pkg_path(&self) -> Option<&str> {
        self.text.strip_prefix(PKG_PREFIX)
    }
}

impl Serialize for ImageText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// An `onboot`, `onshutdown` or `services` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImageEntry {
    pub name: String,
    pub image: ImageText,
    #[serde(flatten)]
    pub config: ContainerConfig,
    /// Where the entry's mapping starts.
    #[serde(skip)]
    pub loc: SourceLoc,
}

/// A `files` entry. Empty strings mean unset, as in LinuxKit; only `contents` tells unset
/// from empty (an empty file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    pub path: String,
    #[serde(skip_serializing_if = "is_false")]
    pub directory: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub symlink: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contents: Option<String>,
    /// A file on the build host (`~/` allowed), read by the caller.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// `yaml` or `json`: the merged configuration itself.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub metadata: String,
    /// With `source`: skip the file when it cannot be read.
    #[serde(skip_serializing_if = "is_false")]
    pub optional: bool,
    /// Octal, e.g. `"0644"`; default 0600 (0700 for directories).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<IdValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<IdValue>,
    #[serde(skip)]
    pub loc: SourceLoc,
}

/// A `volumes` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VolumeEntry {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageText>,
    #[serde(skip_serializing_if = "is_false")]
    pub readonly: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<VolumeFormat>,
    /// `os/arch[/variant]`, for `format: oci`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    #[serde(skip)]
    pub loc: SourceLoc,
}

/// How a volume with an image is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeFormat {
    /// The image's root filesystem (the default).
    Filesystem,
    /// An OCI image layout holding the image.
    Oci,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A `@pkg:` value the resolver callback could not resolve.
#[derive(Debug)]
pub struct PkgRefError<E> {
    pub location: SourceLoc,
    pub path: String,
    pub source: E,
}

impl<E: fmt::Display> fmt::Display for PkgRefError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: cannot resolve \"{PKG_PREFIX}{}\": {}",
            self.location, self.path, self.source
        )
    }
}

impl<E: std::error::Error + 'static> std::error::Error for PkgRefError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl ImageYaml {
    /// Parses one image YAML document; `origin` names the file in locations and messages.
    /// Structure and types only: call [`ImageYaml::validate`] (after merging) for the rest.
    pub fn parse(text: &str, origin: &str) -> Result<Self, SpecError> {
        raw::parse(text, origin)
    }

    /// Every image value (kernel, init, onboot, onshutdown, services, volumes), in file
    /// order.
    pub fn images(&self) -> impl Iterator<Item = &ImageText> {
        self.kernel
            .image
            .iter()
            .chain(&self.init)
            .chain(self.onboot.iter().map(|e| &e.image))
            .chain(self.onshutdown.iter().map(|e| &e.image))
            .chain(self.services.iter().map(|e| &e.image))
            .chain(self.volumes.iter().filter_map(|v| v.image.as_ref()))
    }

    fn images_mut(&mut self) -> impl Iterator<Item = &mut ImageText> {
        self.kernel
            .image
            .iter_mut()
            .chain(&mut self.init)
            .chain(self.onboot.iter_mut().map(|e| &mut e.image))
            .chain(self.onshutdown.iter_mut().map(|e| &mut e.image))
            .chain(self.services.iter_mut().map(|e| &mut e.image))
            .chain(self.volumes.iter_mut().filter_map(|v| v.image.as_mut()))
    }

    /// Replaces every `@pkg:PATH` image with what `resolve(PATH)` returns (the package's
    /// tag). Paths are relative to the YAML file that holds them, so resolve each file
    /// before [`ImageYaml::merge`], or use [`ImageYaml::resolve_pkg_refs_at`], which also
    /// passes the location.
    pub fn resolve_pkg_refs<E>(
        &mut self,
        mut resolve: impl FnMut(&str) -> Result<String, E>,
    ) -> Result<(), PkgRefError<E>> {
        self.resolve_pkg_refs_at(|path, _| resolve(path))
    }

    /// Like [`ImageYaml::resolve_pkg_refs`], also telling the callback where the value is
    /// (its file, for relative paths).
    pub fn resolve_pkg_refs_at<E>(
        &mut self,
        mut resolve: impl FnMut(&str, &SourceLoc) -> Result<String, E>,
    ) -> Result<(), PkgRefError<E>> {
        for image in self.images_mut() {
            if let Some(path) = image.pkg_path() {
                let path = path.to_string();
                image.text = resolve(&path, &image.loc).map_err(|source| PkgRefError {
                    location: image.loc.clone(),
                    path,
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// The configuration as YAML, deterministically: sections and keys in LinuxKit's order,
    /// maps sorted, unset values left out. What `oxkit build --dry-run` prints; it parses
    /// back to the same configuration.
    pub fn to_yaml_string(&self) -> String {
        // Serializing these plain data types cannot fail; never panic if it ever does.
        serde_saphyr::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

#[cfg(test)]
mod tests;
