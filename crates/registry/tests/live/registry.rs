//! The registry the client's own tests talk to: `oxkit-testkit`'s docker-registry (plain
//! HTTP, TLS, client certificates, basic auth), shared with the binary's tests.

pub use oxkit_testkit::{Opts, Registry};
