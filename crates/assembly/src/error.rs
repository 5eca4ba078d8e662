//! The crate's error: every message names where the problem is (the YAML location, the image
//! and layer, the output file) and, where it helps, what to do.

use std::path::PathBuf;

use oxkit_spec::{SourceLoc, SpecError};

/// A build failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The YAML is malformed or invalid (the message starts with `FILE:LINE:COL`).
    #[error(transparent)]
    Spec(#[from] SpecError),

    /// An input file could not be read, or a `@pkg:` path resolved.
    #[error("{message}")]
    Input { message: String },

    /// An image is neither in the store nor obtainable from its registry.
    #[error(
        "{loc}: {what}: image {reference} is not in the local store for {platform} and could not be pulled: {reason}"
    )]
    ImageMissing {
        loc: SourceLoc,
        what: String,
        reference: String,
        platform: String,
        reason: String,
    },

    /// Reading an image from the store failed (a layer refused, a blob missing, ...).
    #[error("{loc}: {what}: image {reference}: {cause}")]
    Image {
        loc: SourceLoc,
        what: String,
        reference: String,
        /// Shown in the message, not chained (the printer would repeat it).
        cause: Box<oxkit_store::Error>,
    },

    /// An entry of the configuration cannot be built as written.
    #[error("{loc}: {what}: {message}")]
    Entry {
        loc: SourceLoc,
        what: String,
        message: String,
    },

    /// The store could not be used.
    #[error(transparent)]
    Store(Box<oxkit_store::Error>),

    /// Writing an output failed.
    #[error("cannot write {}: {message}", path.display())]
    Output { path: PathBuf, message: String },

    /// An image's signatures do not satisfy the `trust` policy.
    #[error("{message}")]
    Trust { message: String },
}

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<oxkit_store::Error> for Error {
    fn from(e: oxkit_store::Error) -> Self {
        Error::Store(Box::new(e))
    }
}

impl Error {
    pub(crate) fn output(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        Error::Output {
            path: path.into(),
            message: message.to_string(),
        }
    }
}
