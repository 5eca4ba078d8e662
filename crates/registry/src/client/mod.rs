//! The OCI distribution client: one [`Client`] per process, cheap to clone and safe to share
//! between threads. It knows each registry it has talked to (scheme, TLS settings, auth
//! scheme, credentials) and caches bearer tokens; the operations live one area per file
//! (`manifest`, `blob`, `upload`, `tags`).
//!
//! The API is blocking on purpose: callers (the build engine, the CLI) stay synchronous and
//! use threads for parallelism. This module must not read the environment or print; the
//! binary hands in every path and option.

mod blob;
mod download;
mod http;
mod manifest;
mod source;
mod tags;
mod upload;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxkit_spec::{Digest, Reference};
use reqwest::Url;

pub use download::Downloaded;
pub use manifest::Manifest;
pub use source::BlobSource;
pub use upload::{BlobUpload, Pushed};

use crate::auth::{AuthScheme, Scope, TokenCache};
use crate::credentials::{CredentialSource, Credentials, normalize_host};
use crate::error::{Error, Result};
use crate::retry::RetryPolicy;
use crate::tls;

/// Progress callbacks for long transfers. Every method has a no-op default.
pub trait Progress: Send + Sync {
    /// A blob transfer starts (`size` when known).
    fn blob_started(&self, _digest: &Digest, _size: Option<u64>) {}
    /// `done` bytes of the blob have been transferred so far.
    fn blob_progress(&self, _digest: &Digest, _done: u64) {}
    /// The blob is at its destination (or was already there).
    fn blob_finished(&self, _digest: &Digest, _how: Pushed) {}
    /// A request failed in a way worth retrying; the client waits `delay` and tries again.
    fn retrying(&self, _what: &str, _attempt: u32, _delay: Duration, _reason: &str) {}
}

/// Options for a [`Client`]. `Default` gives anonymous access with the usual limits.
#[derive(Clone)]
pub struct ClientOptions {
    /// Where credentials come from (usually a [`crate::DockerConfig`]); `None` is anonymous.
    pub credentials: Option<Arc<dyn CredentialSource>>,
    /// Registries reached over plain HTTP (after trying HTTPS without verification), as
    /// Docker's `--insecure-registry`. Loopback registries fall back to HTTP by themselves.
    pub insecure_registries: Vec<String>,
    /// `certs.d` directories searched for `HOST/ca.crt` and client certificates, in order.
    pub certs_dirs: Vec<PathBuf>,
    /// Sent as `User-Agent`.
    pub user_agent: String,
    /// Retries for failed requests.
    pub retry: RetryPolicy,
    /// Blobs transferred at the same time: uploads by [`Client::push_blobs`], downloads by
    /// [`crate::transfer::pull`].
    pub max_concurrent_uploads: usize,
    /// Blobs up to this size go up in one request; larger ones in chunks of this size (slices
    /// of the mapped file: no chunk is copied into memory). Larger chunks mean fewer requests
    /// (each costs the registry a little bookkeeping) and a longer resend after a failure.
    pub chunk_size: usize,
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// Time allowed for a small request, and for each read of a response body to make
    /// progress (so a long download is fine while bytes flow).
    pub request_timeout: Duration,
    /// Progress callbacks.
    pub progress: Option<Arc<dyn Progress>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            credentials: None,
            insecure_registries: Vec::new(),
            certs_dirs: Vec::new(),
            user_agent: format!("oxkit/{}", env!("CARGO_PKG_VERSION")),
            retry: RetryPolicy::default(),
            max_concurrent_uploads: 4,
            chunk_size: 64 << 20,
            connect_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(120),
            progress: None,
        }
    }
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("credentials", &self.credentials)
            .field("insecure_registries", &self.insecure_registries)
            .field("certs_dirs", &self.certs_dirs)
            .field("retry", &self.retry)
            .field("max_concurrent_uploads", &self.max_concurrent_uploads)
            .field("chunk_size", &self.chunk_size)
            .finish_non_exhaustive()
    }
}

/// A registry this client has reached: where, how, and as whom.
pub(crate) struct Host {
    /// The registry as references name it (`docker.io`, `127.0.0.1:5000`).
    pub(crate) registry: String,
    /// `scheme://api-host/`.
    pub(crate) base: Url,
    pub(crate) http: reqwest::blocking::Client,
    pub(crate) auth: Mutex<AuthScheme>,
    pub(crate) creds: Option<Credentials>,
}

impl Host {
    pub(crate) fn scheme(&self) -> AuthScheme {
        self.auth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_scheme(&self, s: AuthScheme) {
        *self
            .auth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = s;
    }

    /// `base` + `v2/<path>`.
    pub(crate) fn url(&self, path: &str) -> Result<Url> {
        self.base
            .join(&format!("v2/{path}"))
            .map_err(|e| Error::BadUrl {
                url: format!("{}v2/{path}", self.base),
                reason: e.to_string(),
            })
    }
}

struct Inner {
    opts: ClientOptions,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
    tokens: TokenCache,
}

/// An OCI distribution client. Clone it freely; clones share connections and tokens.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("opts", &self.inner.opts)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(opts: ClientOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                opts,
                hosts: Mutex::new(HashMap::new()),
                tokens: TokenCache::default(),
            }),
        }
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    /// Checks that the registry `host` answers and accepts the client's credentials for it
    /// (what `oxkit login` verifies before saving them).
    pub fn check_login(&self, host: &str) -> Result<()> {
        let r = registry_reference(host)?;
        let h = self.host(&r)?;
        self.verify_credentials(&h)
    }

    /// The connection state for `r`'s registry, contacting it the first time.
    pub(crate) fn host(&self, r: &Reference) -> Result<Arc<Host>> {
        let mut hosts = self
            .inner
            .hosts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(h) = hosts.get(r.registry()) {
            return Ok(h.clone());
        }
        // Connecting while holding the map lock makes concurrent first uses of one registry
        // wait for a single handshake instead of racing several.
        let h = Arc::new(self.connect(r)?);
        hosts.insert(r.registry().to_string(), h.clone());
        Ok(h)
    }

    fn is_insecure(&self, r: &Reference) -> bool {
        let wanted = [normalize_host(r.registry()), normalize_host(r.api_host())];
        self.inner
            .opts
            .insecure_registries
            .iter()
            .any(|h| wanted.contains(&normalize_host(h)))
    }

    /// Builds the HTTP client for a registry and learns how to talk to it: HTTPS first, plain
    /// HTTP for loopback and insecure registries when HTTPS fails (loopback registries are
    /// asked over plain HTTP first).
    fn connect(&self, r: &Reference) -> Result<Host> {
        let opts = &self.inner.opts;
        let registry = r.registry().to_string();
        let creds = match &opts.credentials {
            Some(src) => src.get(&registry)?,
            None => None,
        };
        let mut files = tls::find_host_files(&opts.certs_dirs, &registry)?;
        if r.api_host() != registry {
            let api = tls::find_host_files(&opts.certs_dirs, r.api_host())?;
            files.cas.extend(api.cas);
            files.client = files.client.or(api.client);
        }
        let insecure = self.is_insecure(r);
        let mut builder = reqwest::blocking::Client::builder()
            .user_agent(opts.user_agent.clone())
            .connect_timeout(opts.connect_timeout)
            // Per-request timeouts are set by each call; large uploads must not be cut off.
            .timeout(None)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .http1_only();
        builder =
            builder.tls_backend_preconfigured(tls::client_config(&files, insecure, r.api_host())?);
        let http = builder.build().map_err(|e| Error::Connect {
            what: format!("contact {registry}"),
            url: format!("https://{}/", r.api_host()),
            reason: http::error_chain(&e),
        })?;
        let make = |scheme: &str| -> Result<Host> {
            let url = format!("{scheme}://{}/", r.api_host());
            Ok(Host {
                registry: registry.clone(),
                base: Url::parse(&url).map_err(|e| Error::BadUrl {
                    url,
                    reason: e.to_string(),
                })?,
                http: http.clone(),
                auth: Mutex::new(AuthScheme::Anonymous),
                creds: creds.clone(),
            })
        };
        // A registry on this machine is nearly always plain HTTP: asking it that first spares
        // a TLS handshake, and the TLS stack's start-up (tens of milliseconds gathering
        // entropy), on every command. A TLS server answers plain HTTP with 400, and then
        // HTTPS is tried as for any other registry.
        if r.is_loopback_registry() {
            let plain = make("http")?;
            match self.ping(&plain) {
                Ok(scheme) => {
                    plain.set_scheme(scheme);
                    return Ok(plain);
                }
                Err(e) => tracing::debug!("{registry}: plain HTTP first: {e}; trying HTTPS"),
            }
        }
        let https = make("https")?;
        let first = match self.ping(&https) {
            Ok(scheme) => {
                https.set_scheme(scheme);
                return Ok(https);
            }
            Err(e) => e,
        };
        let may_fall_back = insecure || r.is_loopback_registry();
        let connection_level = matches!(
            first,
            Error::Tls { .. } | Error::Connect { .. } | Error::Transport { .. }
        );
        if !(may_fall_back && connection_level) {
            return Err(first);
        }
        let plain = make("http")?;
        match self.ping(&plain) {
            Ok(scheme) => {
                tracing::debug!("{registry}: HTTPS failed ({first}); using plain HTTP");
                plain.set_scheme(scheme);
                Ok(plain)
            }
            // Nothing answers plain HTTP either, or an HTTPS-only server said "client sent an
            // HTTP request to an HTTPS server": the TLS error is the useful one.
            Err(e @ (Error::Tls { .. } | Error::Connect { .. } | Error::Transport { .. })) => {
                tracing::debug!("{registry}: plain HTTP failed too: {e}");
                Err(first)
            }
            Err(e) if e.status() == Some(400) => Err(first),
            // Something speaks plain HTTP there; what it said is the useful error.
            Err(e) => Err(e),
        }
    }

    /// `GET /v2/`: is this a registry, and which auth scheme does it want?
    fn ping(&self, host: &Host) -> Result<AuthScheme> {
        let what = format!("contact registry {}", host.registry);
        let url = host.url("")?;
        let scope = Scope::default();
        let call = http::Call::new(&what, reqwest::Method::GET, url.clone(), &scope);
        let resp = self.send_unauthenticated(host, &call)?;
        let status = resp.status();
        if status.is_success() {
            http::refuse_html(&what, host, &resp)?;
            return Ok(AuthScheme::Anonymous);
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            let (scheme, _) = AuthScheme::from_headers(http::challenges(&resp), &host.base);
            // A 401 without a usable challenge: basic is the only thing left to try.
            return Ok(scheme.unwrap_or(AuthScheme::Basic));
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            http::refuse_html(&what, host, &resp)?;
            return Err(Error::Protocol {
                what,
                url: crate::error::display_url(&url),
                reason: "/v2/ answered 404 Not Found, so this is not an OCI registry API endpoint; check the host and port".into(),
            });
        }
        Err(self.fail(host, &call, resp))
    }

    /// After [`Client::ping`], checks that the credentials are accepted.
    fn verify_credentials(&self, host: &Host) -> Result<()> {
        let what = format!("log in to {}", host.registry);
        let scope = Scope::default();
        let call = http::Call::new(&what, reqwest::Method::GET, host.url("")?, &scope);
        let resp = self.send(host, &call)?;
        if resp.status().is_success() {
            return Ok(());
        }
        Err(self.fail(host, &call, resp))
    }
}

/// A reference standing for just a registry (for login and ping).
pub(crate) fn registry_reference(host: &str) -> Result<Reference> {
    let h = normalize_host(host);
    Reference::parse(&format!("{h}/oxkit-registry-check")).map_err(|e| Error::BadUrl {
        url: host.to_string(),
        reason: e.reason,
    })
}

/// The path part naming what a reference points at: its digest, else its tag (or `latest`).
pub(crate) fn reference_path(r: &Reference) -> String {
    match (r.digest(), r.tag_or_latest()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    }
}
