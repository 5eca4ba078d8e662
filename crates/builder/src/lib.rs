//! oxkit's Dockerfile build engine: turns a LinuxKit package (a `build.yml` and a Dockerfile)
//! into OCI images in the local store, one per architecture plus an index, without a daemon.
//!
//! [`PackageBuilder::build`] does what `linuxkit pkg build` does: it skips a package whose tag
//! is already complete in the store (unless forced), builds every missing architecture, stores
//! `ORG/IMAGE:TAG-ARCH` for each and an OCI index `ORG/IMAGE:TAG` over them, with LinuxKit's
//! labels (`org.mobyproject.config`, `org.opencontainers.image.source/revision`) and build args
//! (`SOURCE`, `REVISION`, `PKG_HASH`, `PKG_IMAGE`, build.yml `buildArgs` with `@lkt:pkg:`).
//!
//! # How a Dockerfile is executed
//!
//! - **Stages**: only the stages the target needs are built (dependencies from `FROM`,
//!   `COPY --from` and `RUN --mount from=`; a cycle is an error naming the lines), in dependency
//!   order. Only the final stage's layers ship.
//! - **Base images** come from the store (by tag or digest, per platform) or, through
//!   [`ImageSource`], from a registry; this crate never talks HTTP itself (ADD of a URL goes
//!   through [`UrlFetcher`]).
//! - **Root filesystems** are materialised lazily in a scratch directory inside the store
//!   (`oxkit/tmp`, so `oxkit cache clean` removes what a crashed build left): a step that hits
//!   the cache needs none, and the first step that misses unpacks the stage's layers there.
//! - **RUN** goes to the [`oxkit_sandbox::Sandbox`] as root in the stage's root filesystem,
//!   with the network only when the package allows it.
//! - **Layers** come from comparing `lstat` snapshots of the root filesystem before and after
//!   each step (see the `diff` module for why not overlayfs): new and changed paths, whiteouts
//!   for deletions, opaque directories for replaced ones, written as deterministic tars.
//! - **Step cache**: each filesystem step has a key, the SHA-256 of (parent state key,
//!   instruction after expansion, the inputs — content digests of COPY sources, the stage or
//!   image copied from —, the build args and environment it sees, the platform). Records live in
//!   the store's side index (namespace `build-step`), name the layer blob (a GC root, so they
//!   survive `cache clean`) and are re-materialised from that blob when needed.
//!
//! The library never prints: progress goes to an [`EventSink`].

mod archive;
mod args;
mod cache;
mod copy;
mod copystep;
mod diff;
mod error;
mod exec;
mod fsutil;
mod glob;
mod graph;
mod image;
mod package;
mod rootfs;
mod run;
mod tree;
mod users;

use std::time::Duration;

use oxkit_spec::{Digest, Platform, Reference};

pub use args::parse_build_arg_file;
pub use error::{BuildError, Result};
pub use exec::{BuiltImage, DockerfileBuild};
pub use oxkit_store::layer::Compression;
pub use package::{ArchReport, BuildOptions, PackageBuilder, PackageReport};

/// An error from a host-provided service (image source, URL fetcher), kept as text.
pub type ServiceError = Box<dyn std::error::Error + Send + Sync>;

/// Where base images that are not in the store come from (a registry, implemented by the
/// binary with `oxkit-registry`).
pub trait ImageSource: Sync {
    /// Makes `reference` available in `store` for `platform` (pulls it), so that
    /// `store.resolve_platform(reference, platform)` finds it afterwards.
    fn ensure(
        &self,
        store: &oxkit_store::Store,
        reference: &Reference,
        platform: &Platform,
    ) -> std::result::Result<(), ServiceError>;
}

/// Downloads `ADD https://...` sources.
pub trait UrlFetcher: Sync {
    /// Writes the body of `url` to `out`.
    fn fetch(
        &self,
        url: &str,
        out: &mut dyn std::io::Write,
    ) -> std::result::Result<(), ServiceError>;
}

/// What the builder reports while it works. The binary turns these into progress lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildEvent {
    /// A package's tag is complete in the store; nothing to build.
    PackageSkipped { name: String, reason: String },
    /// Building a package for these platforms starts.
    PackageStart {
        name: String,
        platforms: Vec<Platform>,
    },
    /// One platform of a package is already in the store.
    ArchPresent { name: String, platform: Platform },
    /// A step starts. `index` counts from 1 over the steps of the stages being built.
    StepStart {
        platform: Platform,
        stage: String,
        index: usize,
        total: usize,
        line: usize,
        text: String,
    },
    /// A step finished; `cached` when its result came from the step cache.
    StepDone {
        platform: Platform,
        index: usize,
        cached: bool,
        duration: Duration,
    },
    /// Output of a RUN step, as it arrives.
    Output { platform: Platform, bytes: Vec<u8> },
    /// Something worth telling that does not stop the build.
    Warning { message: String },
    /// A platform's image was stored.
    ArchDone {
        name: String,
        platform: Platform,
        digest: Digest,
    },
}

/// Receives [`BuildEvent`]s.
pub trait EventSink: Sync {
    fn event(&self, event: BuildEvent);
}

/// An [`EventSink`] that drops everything.
pub struct NoEvents;

impl EventSink for NoEvents {
    fn event(&self, _event: BuildEvent) {}
}
