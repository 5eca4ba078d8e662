//! Image assembly, LinuxKit's `linuxkit build`: image YAML in, a bootable system out.
//!
//! 1. [`Config::load`] reads the YAML files, resolves `@pkg:` references, merges and
//!    validates them (errors carry `FILE:LINE:COL`).
//! 2. [`resolve_images`] finds every image for the platform being built in the local store
//!    (for a `format: oci` volume, the platforms it lists), pulling what is missing through an
//!    [`ImageFetcher`].
//! 3. [`trust::enforce`] enforces the `trust:` policy against the images' signatures.
//! 4. [`assemble`] builds the file system LinuxKit lays out (kernel, init, volumes, container
//!    bundles with their OCI `config.json` from LinuxKit's `ConfigToOCI` rules, files) as a tree of
//!    metadata, reading each layer once and refusing entries that would escape the root; a
//!    `format: oci` volume holds its image as an OCI image layout, blobs streamed from the store.
//! 5. [`write_outputs`] streams the layers a second time into the outputs (`tar`,
//!    `kernel+initrd`, `tar-kernel-initrd`, `raw-efi`, `iso-efi`, `iso-efi-initrd`,
//!    `qcow2-efi`, `iso-bios`, `raw-bios`, `qcow2-bios`, `vhd`, `dynamic-vhd`, `vmdk`, `aws`,
//!    `gcp`, `kernel+squashfs`, `kernel+erofs`, `kernel+iso`): reproducible bytes, flat memory (but for the boot images, which hold the kernel
//!    and initrd in memory), atomic files.
//!    [`uptodate`] skips the work when nothing changed since the last build.
//!
//! [`write_filesystem`] writes one image's flattened file system as a tar (`oxkit cache export
//! --format filesystem`), with the same flattening and emission.
//!
//! This crate never talks HTTP itself: registry access goes through traits
//! ([`ImageFetcher`], [`trust::SignatureSource`]) that [`RegistryRemote`]
//! implements with `oxkit-registry`'s client and `oxkit-publish`'s signature fetching. It never
//! prints messages and never reads the environment.

mod bootsplit;
mod config;
mod config_to_oci;
mod cpio;
mod disk;
mod emit;
mod erofs;
mod error;
mod export;
mod flatten;
mod gcp;
mod imagefs;
mod images;
mod iso;
mod layout;
mod ocispec;
mod output;
mod qcow2;
mod rawdisk;
mod remote;
mod rockridge;
mod squashfs;
#[cfg(test)]
mod testdisk;
mod tree;
pub mod trust;
mod uki;
pub mod uptodate;
mod vhd;
mod vmdk;

pub use config::{Config, YamlInput};
pub use error::{Error, Result};
pub use export::write_filesystem;
pub use images::{
    ImageFetcher, ImageUse, ResolveOptions, ResolvedImage, ResolvedImages, ResolvedLayout,
    resolve_images,
};
pub use layout::{AssembleOptions, Assembly, assemble};
pub use output::{
    Format, Isolinux, OutputPlan, TarDestination, Written, default_efi_stub, write_outputs,
};
pub use remote::RegistryRemote;
