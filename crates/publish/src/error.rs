//! The crate's errors. Each names the image reference (and digest where there is one) it is
//! about and says what to do; registry errors keep the registry's own message (they carry
//! the URL, status and error body), signing errors the key.
//!
//! Wrapped errors are part of the message and deliberately not exposed as `source()`: the
//! binary prints the whole `source()` chain, which would repeat them.

use std::path::PathBuf;

use oxkit_spec::Digest;

pub type Result<T, E = PublishError> = std::result::Result<T, E>;

/// Why publishing (or reading signatures for `oxkit verify`) failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A registry operation failed; `error` names the reference, URL and the registry's answer.
    #[error("{context}: {error}")]
    Registry {
        context: String,
        error: Box<oxkit_registry::Error>,
    },

    #[error("{context}: {error}")]
    Store {
        context: String,
        error: Box<oxkit_store::Error>,
    },

    #[error(transparent)]
    Source(#[from] oxkit_source::SourceError),

    #[error("invalid reference {reference:?}: {reason}")]
    Reference { reference: String, reason: String },

    #[error(
        "{reference}: the registry has no such tag or digest; check the name, or push the image first"
    )]
    NotFound { reference: String },

    #[error(
        "refusing to push {name}: its sources in {} differ from the git commit (a dirty package); commit the changes first, or pass --force-dirty to push it under its -dirty tag (never as a --release)",
        dir.display()
    )]
    Dirty { name: String, dir: PathBuf },

    #[error(
        "cannot push {reference}: it is not in the store at {} (build it first with `oxkit pkg build`)",
        store.display()
    )]
    NotInStore { reference: String, store: PathBuf },

    #[error(
        "{reference}: the registry holds {found}, which is not an image index or manifest oxkit can merge ({reason})"
    )]
    BadIndex {
        reference: String,
        found: Digest,
        reason: String,
    },

    #[error(
        "{reference}: gave up after {attempts} attempts to write an index that keeps every architecture: other writers kept replacing it (still missing: {missing}); run `oxkit pkg manifest` for the package once they are done"
    )]
    IndexRace {
        reference: String,
        attempts: u32,
        missing: String,
    },

    #[error(
        "{reference}: no index to make: the registry has neither the index nor any of its architecture tags ({searched}); push the package first (`oxkit pkg push`)"
    )]
    NoArchImages { reference: String, searched: String },

    #[error(
        "{reference}: {arch} was pushed as {pushed}, but the registry's tag now names nothing; was it deleted while pushing?"
    )]
    ArchVanished {
        reference: String,
        arch: String,
        pushed: Digest,
    },

    #[error(
        "{reference}: gave up after {attempts} attempts to add the signature of key {key_hint} to {tag}: other writers kept replacing the signature image; push again"
    )]
    SignatureRace {
        reference: String,
        tag: String,
        key_hint: String,
        attempts: u32,
    },

    #[error("{reference} ({digest}): the existing signature image {tag} cannot be read: {error}")]
    SignatureImage {
        reference: String,
        digest: Digest,
        tag: String,
        error: Box<oxkit_sign::SignatureImageError>,
    },

    #[error(
        "release tag {reference} already names {existing}, which is not this package's {wanted}; releases are not overwritten (choose another --release name)"
    )]
    ReleaseExists {
        reference: String,
        existing: Digest,
        wanted: Digest,
    },

    #[error("{}: {reason}", path.display())]
    Depends { path: PathBuf, reason: String },

    /// The signing key could not be used (the message names the key file).
    #[error("{0}")]
    Key(String),
}

impl PublishError {
    pub(crate) fn registry(
        context: impl Into<String>,
    ) -> impl FnOnce(oxkit_registry::Error) -> Self {
        let context = context.into();
        move |source| Self::Registry {
            context,
            error: Box::new(source),
        }
    }

    pub(crate) fn store(context: impl Into<String>) -> impl FnOnce(oxkit_store::Error) -> Self {
        let context = context.into();
        move |source| Self::Store {
            context,
            error: Box::new(source),
        }
    }
}
