//! Deterministic layers: the same entries always give the same bytes and digests.
//!
//! Entries carry explicit modes (setuid/setgid/sticky kept), numeric owners and no user or
//! group names; mtimes are clamped to an epoch; extended attributes travel as PAX records;
//! compression uses one pinned backend and fixed headers: gzip via flate2 + zlib-rs at
//! level 6, cut into 1 MiB blocks compressed on all cores (pigz's scheme, same bytes
//! whatever the thread count); zstd level 3 with a checksum, on its own thread.
//! [`LayerWriter`] streams into a store blob while hashing the uncompressed tar for the
//! diff id; [`layer_from_dir`] walks a directory into one.
//!
//! Entry order is the caller's to fix; the directory walk uses depth-first order with each
//! directory's children sorted by name bytes (Go's `filepath.Walk` order). Changing the
//! encoder, the block size or a level changes every layer digest.

mod entry;
mod offload;
mod pgzip;
mod tar;
mod walk;
mod writer;

pub use entry::{
    BadPath, Entry, EntryKind, EntryMeta, OPAQUE_WHITEOUT, WHITEOUT_PREFIX, normalize_path,
};
pub(crate) use entry::{classify_whiteout, split_parent};
pub use pgzip::ParallelGzip;
pub use walk::{layer_from_dir, write_tree};
pub use writer::{LayerInfo, LayerOptions, LayerWriter, TarWriter, XattrPolicy};

pub use crate::oci::media_type::LayerCompression as Compression;

#[cfg(test)]
mod tests;
