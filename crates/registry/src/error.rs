//! The crate's error type. Every network error names the operation (and with it the image
//! reference), the URL without credentials or query string, the HTTP status and the registry's
//! own error body, and ends with what to do about it.
//!
//! Nothing here may hold a secret: URLs go through [`display_url`], credentials never enter
//! an error.

use std::fmt;
use std::path::PathBuf;

use oxkit_spec::Digest;
use serde::Deserialize;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A URL as errors show it: no user info, no query string (upload URLs carry signed state
/// and redirect targets carry signatures), no fragment.
pub fn display_url(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    let had_query = u.query().is_some();
    u.set_query(None);
    u.set_fragment(None);
    let mut s = u.to_string();
    if had_query {
        s.push_str("?…");
    }
    s
}

/// One entry of the registry's `{"errors":[{"code","message","detail"}]}` body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RegistryError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    /// Free-form JSON; kept as compact text.
    #[serde(default, deserialize_with = "detail_text")]
    pub detail: Option<String>,
}

fn detail_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) if s.is_empty() => None,
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    })
}

/// What a registry said besides its status code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorBody {
    /// The parsed OCI error envelope, when the body was one.
    pub errors: Vec<RegistryError>,
    /// Otherwise the start of the body as text (for plain-text proxies), trimmed.
    pub text: Option<String>,
}

impl ErrorBody {
    /// Reads a response body (bytes already fetched, at most a few KiB kept).
    pub(crate) fn parse(bytes: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Envelope {
            #[serde(default)]
            errors: Vec<RegistryError>,
        }
        if let Ok(env) = serde_json::from_slice::<Envelope>(bytes)
            && !env.errors.is_empty()
        {
            return Self {
                errors: env.errors,
                text: None,
            };
        }
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]);
        let text: String = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        Self {
            errors: Vec::new(),
            text: (!text.is_empty()).then_some(text),
        }
    }

    /// Whether an entry has this code (`MANIFEST_UNKNOWN`, `BLOB_UPLOAD_UNKNOWN`...).
    pub fn has_code(&self, code: &str) -> bool {
        self.errors.iter().any(|e| e.code == code)
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for e in &self.errors {
            f.write_str(if first { ": " } else { "; " })?;
            first = false;
            write!(f, "{}", e.code)?;
            if !e.message.is_empty() {
                write!(f, ": {}", e.message)?;
            }
            if let Some(d) = &e.detail {
                write!(f, " ({d})")?;
            }
        }
        if let Some(t) = &self.text {
            write!(f, ": {t}")?;
        }
        Ok(())
    }
}

/// A registry's answer to a request that failed: what was being done, where, and what the
/// registry said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The operation, naming the reference or digest (`fetch manifest reg/x:1`).
    pub what: String,
    /// The registry as references name it.
    pub host: String,
    pub method: String,
    /// Without credentials or query string.
    pub url: String,
    pub status: u16,
    pub body: ErrorBody,
}

/// Everything that can go wrong talking to a registry or reading credentials.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "{what}: cannot resolve the registry host {host} ({url}); check the name and your DNS or network settings"
    )]
    Dns {
        what: String,
        host: String,
        url: String,
    },

    #[error(
        "{what}: cannot connect to {url}: {reason}; is the registry running and reachable from here?"
    )]
    Connect {
        what: String,
        url: String,
        reason: String,
    },

    #[error(
        "{what}: TLS connection to {url} failed: {reason}; if the registry uses a private CA, put it in ~/.config/oxkit/certs.d/{host}/ca.crt (or /etc/docker/certs.d/{host}/ca.crt); for a plain-HTTP registry pass --insecure-registry {host}"
    )]
    Tls {
        what: String,
        host: String,
        url: String,
        reason: String,
    },

    #[error("{what}: {method} {url} failed after {attempts} attempt(s): {reason}")]
    Transport {
        what: String,
        method: String,
        url: String,
        attempts: u32,
        reason: String,
    },

    #[error("{}: the registry {} refused the credentials ({} {} answered {}{}); run `oxkit login {}`", .0.what, .0.host, .0.method, .0.url, .0.status, .0.body, .0.host)]
    Unauthorized(Box<Answer>),

    #[error("{}: the registry {} requires credentials ({} {} answered {}{}); run `oxkit login {}`", .0.what, .0.host, .0.method, .0.url, .0.status, .0.body, .0.host)]
    CredentialsRequired(Box<Answer>),

    #[error("{}: access denied ({} {} answered {}{}); check that your account on {} may use this repository, or run `oxkit login {}` as one that may", .0.what, .0.method, .0.url, .0.status, .0.body, .0.host, .0.host)]
    Denied(Box<Answer>),

    #[error("{}: not found ({} {} answered {}{}); check the name and tag", .0.what, .0.method, .0.url, .0.status, .0.body)]
    NotFound(Box<Answer>),

    #[error("{}: {} {} answered {}{}", .0.what, .0.method, .0.url, .0.status, .0.body)]
    Status(Box<Answer>),

    #[error(
        "{what}: {url} answered an HTML page (status {status}) instead of the registry API's JSON; is {host} really a registry (check the reference's host), or is a proxy or login page in the way?"
    )]
    Html {
        what: String,
        host: String,
        url: String,
        status: u16,
    },

    #[error(
        "{what}: {url} answered something that is not valid JSON ({reason}); is {host} really an OCI registry?"
    )]
    NotJson {
        what: String,
        host: String,
        url: String,
        reason: String,
    },

    #[error(
        "{reference}: the manifest has media type {media_type:?} ({url}), which oxkit cannot use; oxkit handles OCI and Docker schema 2 images and indexes{hint}"
    )]
    UnknownMediaType {
        reference: String,
        url: String,
        media_type: String,
        hint: &'static str,
    },

    #[error(
        "{what}: content from {url} does not match its digest: expected {expected}, got {actual}; the registry or something between it and us corrupted the data, and nothing was stored"
    )]
    DigestMismatch {
        what: String,
        url: String,
        expected: Digest,
        actual: Digest,
    },

    #[error("{what}: {url} sent {actual} bytes, expected {expected}; nothing was stored")]
    SizeMismatch {
        what: String,
        url: String,
        expected: u64,
        actual: u64,
    },

    #[error("{what}: {url} sent more than {limit} bytes, more than a {kind} may have")]
    TooLarge {
        what: String,
        url: String,
        limit: u64,
        kind: &'static str,
    },

    #[error("{what}: the registry at {url} broke the protocol: {reason}")]
    Protocol {
        what: String,
        url: String,
        reason: String,
    },

    #[error("{what}: cannot write the downloaded data: {source}")]
    Sink {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },

    #[error("credential helper docker-credential-{helper} failed for {server}: {reason}")]
    Helper {
        helper: String,
        server: String,
        reason: String,
    },

    #[error("{}: {reason}; certs.d files must be PEM (ca.crt / *.crt for CAs, client.cert + client.key for a client certificate)", path.display())]
    Certs { path: PathBuf, reason: String },

    #[error("invalid registry URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },

    /// A plain download (Dockerfile `ADD https://...`) failed; `url` is redacted.
    #[error("cannot download {url}: {reason}")]
    Download { url: String, reason: String },

    #[error("{what}: cancelled because another transfer failed")]
    Cancelled { what: String },

    #[error(transparent)]
    Store(#[from] oxkit_store::Error),
}

impl Error {
    /// An I/O error on a local file.
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { op, path, source }
    }

    /// Whether the registry said the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound(_))
    }

    /// The registry's answer, when the error is one.
    pub fn answer(&self) -> Option<&Answer> {
        match self {
            Self::Unauthorized(a)
            | Self::CredentialsRequired(a)
            | Self::Denied(a)
            | Self::NotFound(a)
            | Self::Status(a) => Some(a),
            _ => None,
        }
    }

    /// The HTTP status, when the error is a registry answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Html { status, .. } => Some(*status),
            _ => self.answer().map(|a| a.status),
        }
    }

    /// The registry's error body, when there is one.
    pub fn body(&self) -> Option<&ErrorBody> {
        self.answer().map(|a| &a.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_error_body_is_parsed_and_shown() {
        let body = ErrorBody::parse(
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"v9"}},{"code":"DENIED","message":"no"}]}"#,
        );
        assert!(body.has_code("MANIFEST_UNKNOWN"));
        assert_eq!(
            body.to_string(),
            r#": MANIFEST_UNKNOWN: manifest unknown ({"Tag":"v9"}); DENIED: no"#
        );
        let plain = ErrorBody::parse(b"  upstream\n\tconnect error  ");
        assert_eq!(plain.to_string(), ": upstream connect error");
        assert_eq!(ErrorBody::parse(b"").to_string(), "");
    }

    #[test]
    fn urls_are_shown_without_credentials_or_query() {
        let u = reqwest::Url::parse(
            "https://user:pw@reg.example:5000/v2/me/x/blobs/uploads/abc?_state=SECRETSTATE&digest=sha256:1",
        )
        .unwrap();
        let s = display_url(&u);
        assert_eq!(s, "https://reg.example:5000/v2/me/x/blobs/uploads/abc?…");
        assert!(!s.contains("pw") && !s.contains("SECRETSTATE"));
    }

    #[test]
    fn messages_carry_context_and_advice() {
        let e = Error::Unauthorized(Box::new(Answer {
            what: "pull manifest 127.0.0.1:5000/me/x:1".into(),
            host: "127.0.0.1:5000".into(),
            method: "GET".into(),
            url: "https://127.0.0.1:5000/v2/me/x/manifests/1".into(),
            status: 401,
            body: ErrorBody::parse(
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            ),
        }));
        let s = e.to_string();
        for want in [
            "127.0.0.1:5000/me/x:1",
            "https://127.0.0.1:5000/v2/me/x/manifests/1",
            "401",
            "UNAUTHORIZED: authentication required",
            "run `oxkit login 127.0.0.1:5000`",
        ] {
            assert!(s.contains(want), "{want:?} missing from {s}");
        }
        assert_eq!(e.status(), Some(401));

        let e = Error::DigestMismatch {
            what: "pull blob".into(),
            url: "http://h/v2/x/blobs/sha256:aa".into(),
            expected: Digest::sha256(b"a"),
            actual: Digest::sha256(b"b"),
        };
        let s = e.to_string();
        assert!(
            s.contains(Digest::sha256(b"a").as_str()) && s.contains(Digest::sha256(b"b").as_str()),
            "{s}"
        );
        assert!(s.contains("http://h/v2/x/blobs/"), "{s}");

        let e = Error::Html {
            what: "ping".into(),
            host: "example.com".into(),
            url: "https://example.com/v2/".into(),
            status: 200,
        };
        assert!(e.to_string().contains("HTML"), "{e}");
    }
}
