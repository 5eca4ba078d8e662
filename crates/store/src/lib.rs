//! oxkit's local OCI store and everything that produces or consumes its content:
//!
//! - [`oci`]: image-spec types with canonical (reproducible) JSON;
//! - [`Store`]: an OCI image layout on disk with verified blobs, locked atomic
//!   `index.json` updates, references, a side index for caches, garbage collection, fsck;
//! - [`layer`]: deterministic layer tarballs (streaming writer, directory walker);
//! - [`unpack`]: applying layers to a directory safely, and visiting their entries;
//! - [`archive`]: OCI archives (`oci-archive:` tarballs) in and out;
//! - [`import`]: a root filesystem (directory or tar) as a one-layer image.
//!
//! This crate never talks to the network (that is `oxkit-registry`) and never prints.
//!
//! A build step, end to end:
//!
//! ```no_run
//! # fn main() -> oxkit_store::Result<()> {
//! use oxkit_spec::{Platform, Reference};
//! use oxkit_store::layer::{Entry, EntryMeta, LayerOptions, LayerWriter};
//! use oxkit_store::oci::{ImageConfig, ImageManifest, media_type};
//! use oxkit_store::Store;
//!
//! let store = Store::open("/var/cache/oxkit")?;
//! // Blobs written before they are tagged need a lease, or `cache clean` could take them.
//! let _lease = store.lease()?;
//! let mut layer = LayerWriter::new(&store, &LayerOptions { epoch: 0, ..Default::default() })?;
//! layer.add(&Entry::dir("etc", EntryMeta::mode(0o755)), None)?;
//! layer.add_bytes(&Entry::file("etc/motd", 6, EntryMeta::mode(0o644)), b"hello\n")?;
//! layer.add(&Entry::whiteout("etc/issue"), None)?;
//! let layer = layer.finish()?;
//!
//! let mut config = ImageConfig::default();
//! config.set_platform(&Platform::linux("arm64").expect("known arch"));
//! config.rootfs.diff_ids.push(layer.diff_id.clone());
//! let config = store.put_json(media_type::OCI_CONFIG, &config)?;
//! let manifest = ImageManifest::new(config, vec![layer.descriptor]);
//! let manifest = store.put_json(media_type::OCI_MANIFEST, &manifest)?;
//! let reference = Reference::parse("linuxkit/motd:dev-arm64").expect("valid reference");
//! store.tag(&reference, manifest)?;
//! # Ok(())
//! # }
//! ```

pub mod archive;
pub mod error;
pub mod import;
pub mod layer;
pub mod oci;
mod store;
pub mod unpack;

pub use error::{Error, Result};
pub use store::{
    BlobInfo, BlobReader, BlobWriter, CacheEntry, FsckReport, GcReport, ImageSummary, Lease,
    RemoveReport, Store, TaggedImage,
};
