//! oxkit's integration tests: one test binary that drives the real `oxkit` binary against real
//! servers and tools (Debian's docker-registry, skopeo, umoci, buildah, cosign, QEMU).
//! `scripts/test` installs those; a test whose tool is missing fails with the install hint
//! rather than passing silently.

// Test helpers outside #[test] functions may unwrap: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod assembly;
mod boot;
mod build;
mod buildah_compat;
mod doctor;
mod publish;
mod registry;
mod show_tag;
mod sign;
mod store;
mod support;
mod trust;
mod vm;
