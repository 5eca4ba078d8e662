//! The crate's error type. Every variant names what it is about (a path, a digest, a
//! reference, a layer entry) and, where there is something to do, says what.
//!
//! This module only describes failures; it must not decide policy (retry, ignore, print).
//! Each message is complete on its own line (causes are part of the text, not a `source()`
//! chain, so `{:#}` printing does not repeat them).

use std::io;
use std::path::{Path, PathBuf};

use oxkit_spec::{Digest, Platform};

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the store, in layers, unpacking and archives.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file system operation failed.
    #[error("cannot {op} {}: {error}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        error: io::Error,
    },

    /// The store directory holds something else.
    #[error(
        "{} is not an OCI image layout (it is not empty and has no oci-layout file); \
         choose an empty or new directory with --store"
    , path.display())]
    NotALayout { path: PathBuf },

    /// `oci-layout` names a version this code does not understand.
    #[error(
        "{} declares imageLayoutVersion {version:?}; only 1.x layouts are supported",
        path.display()
    )]
    LayoutVersion { path: PathBuf, version: String },

    /// Bytes did not hash to the digest they were announced as.
    #[error(
        "digest mismatch for {what}: expected {expected}, got {actual}; \
         the data is corrupt or was changed while being read"
    )]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },

    /// Bytes did not have the announced size.
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },

    /// A blob on disk no longer matches its name.
    #[error(
        "blob {digest} in {} is corrupt (its content hashes to {actual}); \
         remove the images that use it (oxkit cache rm) and fetch or build them again",
        path.display()
    )]
    CorruptBlob {
        digest: Digest,
        actual: Digest,
        path: PathBuf,
    },

    /// A blob the caller asked for is not in the store.
    #[error("blob {digest} is not in the store at {}; fetch or build the image again", store.display())]
    BlobNotFound { digest: Digest, store: PathBuf },

    /// A reference is not tagged in the store.
    #[error("no image {reference} in the store at {}; see `oxkit cache ls`", store.display())]
    RefNotFound { reference: String, store: PathBuf },

    /// A reference cannot be used the way it was asked to be.
    #[error("invalid reference {reference}: {reason}")]
    BadReference { reference: String, reason: String },

    /// JSON that could not be parsed (serde_json's message carries line and column).
    #[error("cannot parse {what}: {error}")]
    Json {
        what: String,
        error: serde_json::Error,
    },

    /// A blob had a media type that makes no sense where it was found.
    #[error("{what} has media type {media_type:?}, expected {expected}")]
    MediaType {
        what: String,
        media_type: String,
        expected: &'static str,
    },

    /// An image has no manifest for the requested platform.
    #[error(
        "image {reference} has no manifest for {wanted}; it offers: {}",
        if available.is_empty() { "none".to_string() }
        else { available.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ") }
    )]
    NoPlatform {
        reference: String,
        wanted: Platform,
        available: Vec<Platform>,
    },

    /// A side-index namespace or key is not a safe file name.
    #[error(
        "invalid cache {what} {name:?}: use 1-200 characters from A-Z a-z 0-9 . _ : - \
         not starting with '.'"
    )]
    BadCacheName { what: &'static str, name: String },

    /// Another process holds a lock we need and we were told not to wait.
    #[error("the store at {} is in use by another oxkit process ({what}); try again when it finishes", store.display())]
    Busy { store: PathBuf, what: &'static str },

    /// A layer entry the writer cannot represent.
    #[error("cannot add {path:?} to the layer: {reason}")]
    BadEntry { path: String, reason: String },

    /// A layer (or rootfs tar) could not be read or applied.
    #[error("layer {layer}: entry {entry:?}: {reason}")]
    Layer {
        layer: String,
        entry: String,
        reason: String,
    },

    /// A tar stream (layer, archive) could not be read.
    #[error("cannot read {what}: {error} (is the file truncated or not a tar?)")]
    Tar { what: String, error: io::Error },

    /// An OCI archive is incomplete or inconsistent.
    #[error("{what}: {reason}; the store was not changed")]
    BadArchive { what: String, reason: String },

    /// An image cannot be assembled from what was given.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// Wraps an I/O error with the operation and the path it concerned.
    pub(crate) fn io(op: &'static str, path: impl AsRef<Path>) -> impl FnOnce(io::Error) -> Self {
        let path = path.as_ref().to_path_buf();
        move |error| Self::Io { op, path, error }
    }

    /// Wraps a JSON error with what was being parsed.
    pub(crate) fn json(what: impl Into<String>) -> impl FnOnce(serde_json::Error) -> Self {
        let what = what.into();
        move |error| Self::Json { what, error }
    }
}
