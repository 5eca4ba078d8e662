//! oxkit's integration tests: one test binary that drives the real `oxkit` binary against real
//! servers and tools (Debian's docker-registry, skopeo, umoci, buildah, cosign, QEMU).
//! `scripts/test` installs those; a test whose tool is missing fails with the install hint
//! rather than passing silently.

mod sign;
mod store;
mod support;
