//! Consuming layers: applying them to a directory safely ([`apply_layer`], with OCI
//! whiteout semantics) and visiting their entries without extracting ([`visit_layer`],
//! for the image assembler).
//!
//! Layers are untrusted input. Nothing here may write outside the target directory,
//! whatever the tar says; refusals name the layer and the entry.

mod apply;
mod resolve;
pub(crate) mod visit;

pub use apply::{DeviceMode, UnpackOptions, UnpackStats, apply_layer};
pub use visit::{decompress, detect_compression, visit_layer};

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};
use crate::oci::Descriptor;
use crate::store::Store;

/// Applies a layer blob from the store. The blob is verified while it streams: a corrupt
/// blob fails (after `dest` was partly written).
pub fn apply_layer_blob(
    store: &Store,
    layer: &Descriptor,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats> {
    let mut blob = store.open_blob(&layer.digest)?;
    let stats = apply_layer(&mut blob, dest, layer.digest.as_str(), opts)?;
    drain(&mut blob, layer)?;
    Ok(stats)
}

/// Visits the entries of a layer blob from the store, verifying it as it streams.
pub fn visit_layer_blob<F>(store: &Store, layer: &Descriptor, f: F) -> Result<()>
where
    F: FnMut(&crate::layer::Entry, &mut dyn Read) -> Result<()>,
{
    let mut blob = store.open_blob(&layer.digest)?;
    visit_layer(&mut blob, layer.digest.as_str(), f)?;
    drain(&mut blob, layer)
}

/// Applies every layer of the image manifest `manifest` in order onto `dest`.
pub fn unpack_image(
    store: &Store,
    manifest: &oxkit_spec::Digest,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats> {
    let m = store.read_manifest(manifest)?;
    let mut total = UnpackStats::default();
    for layer in &m.layers {
        let s = apply_layer_blob(store, layer, dest, opts)?;
        total.entries += s.entries;
        total.files += s.files;
        total.bytes += s.bytes;
        total.removed += s.removed;
        total.devices_skipped += s.devices_skipped;
    }
    Ok(total)
}

/// Reads the blob to its end so its digest is checked (the tar reader stops at the
/// end-of-archive marker, compressors may leave padding).
fn drain(blob: &mut crate::store::BlobReader, layer: &Descriptor) -> Result<()> {
    std::io::copy(blob, &mut std::io::sink()).map_err(|e| Error::Tar {
        what: format!("layer {}", layer.digest),
        error: e,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests;
