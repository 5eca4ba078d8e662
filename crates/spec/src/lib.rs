//! Pure specifications shared by every part of oxkit: digests, platforms, image references,
//! and (in later modules) the `build.yml`, image-YAML and Dockerfile formats.
//!
//! This crate performs no I/O beyond parsing text handed to it: no file system, no network,
//! no environment. Everything here can be tested on captured strings.

pub mod build_yml;
pub mod digest;
pub mod dockerfile;
pub mod dockerignore;
pub mod image_yaml;
pub mod platform;
pub mod reference;
pub mod url;
pub mod yaml;

pub use build_yml::{PackageSpec, render_tag};
pub use digest::{Digest, DigestError, DigestHasher, Sha256Hasher};
pub use platform::{Platform, PlatformError};
pub use reference::{Reference, ReferenceError};
pub use yaml::{SourceLoc, SpecError, SpecErrorKind};
