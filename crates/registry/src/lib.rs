//! oxkit's OCI distribution client: the only code in oxkit that talks HTTP.
//!
//! - [`Client`]: manifests and indexes, blobs (streamed and verified on pull; HEAD, mount,
//!   monolithic or chunked and resumable on push, several at once), tags, deletion, referrers;
//!   retries with backoff; anonymous, basic and bearer-token auth; TLS with per-registry CAs
//!   from `certs.d`, plain HTTP for loopback and insecure registries.
//! - [`credentials`]: Docker's `config.json` and credential helpers, read and written.
//! - [`transfer`]: whole images between the local store and a registry.
//!
//! The API is blocking; parallelism uses threads. This crate never prints and never reads the
//! environment: the binary resolves paths and options and hands them in. Secrets stay in
//! [`Secret`] and never reach output, logs or errors.

mod auth;
mod client;
pub mod credentials;
mod error;
mod media;
mod retry;
mod secret;
mod tls;
pub mod transfer;

pub use client::{
    BlobSource, BlobUpload, Client, ClientOptions, Downloaded, Manifest, Progress, Pushed,
};
pub use credentials::{
    CredentialSource, Credentials, DockerConfig, FixedCredentials, HelperRunner, StoredIn,
};
pub use error::{Answer, Error, ErrorBody, RegistryError, Result};
pub use retry::RetryPolicy;
pub use secret::Secret;
