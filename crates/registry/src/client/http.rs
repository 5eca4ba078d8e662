//! Sending one request: authorization (basic, or a bearer token for the request's scope),
//! retries with backoff for failures worth retrying (connection resets, timeouts, 5xx, 429
//! with its `Retry-After`), one re-authentication round on a 401, and turning a failed
//! answer into an [`Error`] carrying the URL, status and the registry's error body.
//!
//! Request and response bodies are not interpreted here beyond error bodies.

use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use reqwest::blocking::Response;
use reqwest::header::{
    AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode, Url};

use super::{Client, Host};
use crate::auth::{self, AuthScheme, Scope, TokenCache, TokenResponse};
use crate::credentials::Credentials;
use crate::error::{Answer, Error, ErrorBody, Result, display_url};
use crate::retry::parse_retry_after;
use crate::secret::Secret;

/// How much of an error body is kept.
const ERROR_BODY_LIMIT: u64 = 16 << 10;

/// One request to make, rebuilt for every attempt.
pub(crate) struct Call<'a> {
    /// The operation, for errors (`pull manifest 127.0.0.1:5000/me/x:1`).
    pub(crate) what: &'a str,
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) scope: &'a Scope,
    pub(crate) headers: HeaderMap,
    /// A body that can be sent again cheaply (`Bytes` clones share memory).
    pub(crate) body: Option<Bytes>,
    /// Whether sending it twice is harmless: only then are failures retried here.
    pub(crate) retry: bool,
    /// Overrides the client's request timeout (large uploads need longer).
    pub(crate) timeout: Option<Duration>,
}

impl<'a> Call<'a> {
    pub(crate) fn new(what: &'a str, method: Method, url: Url, scope: &'a Scope) -> Self {
        Self {
            what,
            method,
            url,
            scope,
            headers: HeaderMap::new(),
            body: None,
            retry: true,
            timeout: None,
        }
    }

    pub(crate) fn header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    pub(crate) fn body(mut self, body: Bytes) -> Self {
        self.body = Some(body);
        self
    }

    pub(crate) fn no_retry(mut self) -> Self {
        self.retry = false;
        self
    }
}

/// What to do about authorization for the next attempt.
enum AuthStep {
    Header(Option<HeaderValue>),
    GiveUp,
}

/// A transport failure, classified by what can be done about it.
#[derive(Debug)]
pub(crate) enum Failure {
    Dns,
    Tls(String),
    Refused(String),
    /// Resets, timeouts, truncated bodies: worth another try.
    Transient(String),
}

/// Wrapper messages from the HTTP stack that say nothing the inner causes do not.
const GENERIC: &[&str] = &[
    "error sending request",
    "client error (",
    "request or response body error",
    "error reading a body from connection",
    "error decoding response body",
];

/// The causes of an error, outermost first, without reqwest's "for url (...)" (URLs are shown
/// by us, sanitised) and without the stack's generic wrapper messages.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let mut text = err.to_string();
        if let Some(i) = text.find(" for url (") {
            text.truncate(i);
        }
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    let specific: Vec<&String> = parts
        .iter()
        .filter(|p| !GENERIC.iter().any(|g| p.starts_with(g)))
        .collect();
    if specific.is_empty() {
        parts.join(": ")
    } else {
        specific
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(": ")
    }
}

pub(crate) fn classify(e: &reqwest::Error) -> Failure {
    let text = error_chain(e);
    let lower = text.to_ascii_lowercase();
    if lower.contains("dns error")
        || lower.contains("failed to lookup address")
        || lower.contains("name or service not known")
    {
        return Failure::Dns;
    }
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return Failure::Refused(text);
        }
        src = s.source();
    }
    if e.is_connect()
        && (lower.contains("certificate")
            || lower.contains("tls")
            || lower.contains("handshake")
            || lower.contains("corrupt message")
            || lower.contains("invalid peer"))
    {
        return Failure::Tls(text);
    }
    Failure::Transient(text)
}

/// Statuses that mean "try again later".
fn retriable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// The `WWW-Authenticate` values of a response.
pub(crate) fn challenges(resp: &Response) -> impl Iterator<Item = &str> {
    resp.headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
}

fn is_html(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("text/html"))
}

/// An error when a response that should be the registry API's is an HTML page.
pub(crate) fn refuse_html(what: &str, host: &Host, resp: &Response) -> Result<()> {
    if is_html(resp.headers()) {
        return Err(Error::Html {
            what: what.to_string(),
            host: host.registry.clone(),
            url: display_url(resp.url()),
            status: resp.status().as_u16(),
        });
    }
    Ok(())
}

/// Reads a whole (small) body, refusing more than `limit` bytes.
pub(crate) fn read_limited(
    resp: Response,
    limit: u64,
    what: &str,
    kind: &'static str,
) -> Result<Vec<u8>> {
    let url = display_url(resp.url());
    let mut out = Vec::with_capacity(resp.content_length().unwrap_or(0).min(limit) as usize);
    resp.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::Transport {
            what: what.to_string(),
            method: "GET".into(),
            url: url.clone(),
            attempts: 1,
            reason: format!("reading the response failed: {}", error_chain(&e)),
        })?;
    if out.len() as u64 > limit {
        return Err(Error::TooLarge {
            what: what.to_string(),
            url,
            limit,
            kind,
        });
    }
    Ok(out)
}

impl Client {
    fn progress_retry(&self, what: &str, attempt: u32, delay: Duration, reason: &str) {
        tracing::warn!(
            "{what}: {reason}; retrying in {:.1}s (attempt {attempt})",
            delay.as_secs_f64()
        );
        if let Some(p) = &self.inner.opts.progress {
            p.retrying(what, attempt, delay, reason);
        }
    }

    pub(crate) fn sleep_before_retry(
        &self,
        what: &str,
        attempt: u32,
        retry_after: Option<Duration>,
        reason: &str,
    ) {
        let delay = self.inner.opts.retry.delay(attempt, retry_after);
        self.progress_retry(what, attempt, delay, reason);
        std::thread::sleep(delay);
    }

    /// The transport error for a failed attempt that is not retried further.
    pub(crate) fn transport_error(
        &self,
        host: &Host,
        call: &Call<'_>,
        failure: Failure,
        attempts: u32,
    ) -> Error {
        let url = display_url(&call.url);
        match failure {
            Failure::Dns => Error::Dns {
                what: call.what.to_string(),
                host: call.url.host_str().unwrap_or(&host.registry).to_string(),
                url,
            },
            Failure::Tls(reason) => Error::Tls {
                what: call.what.to_string(),
                host: host.registry.clone(),
                url,
                reason,
            },
            Failure::Refused(reason) => Error::Connect {
                what: call.what.to_string(),
                url,
                reason,
            },
            Failure::Transient(reason) => Error::Transport {
                what: call.what.to_string(),
                method: call.method.to_string(),
                url,
                attempts,
                reason,
            },
        }
    }

    /// Sends `call` once, with no retry and no authorization; `Err` only for transport failures.
    pub(crate) fn send_once(
        &self,
        host: &Host,
        call: &Call<'_>,
        authorization: Option<HeaderValue>,
    ) -> std::result::Result<Response, Failure> {
        let mut rb = host
            .http
            .request(call.method.clone(), call.url.clone())
            .headers(call.headers.clone())
            .timeout(call.timeout.unwrap_or(self.inner.opts.request_timeout));
        if let Some(a) = authorization {
            rb = rb.header(AUTHORIZATION, a);
        }
        if let Some(b) = &call.body {
            rb = rb.body(b.clone());
        } else if matches!(call.method, Method::PUT | Method::POST | Method::PATCH) {
            rb = rb.body(Bytes::new());
        }
        rb.send().map_err(|e| classify(&e))
    }

    /// Sends with retries but without authorization (the ping, token requests).
    pub(crate) fn send_unauthenticated(&self, host: &Host, call: &Call<'_>) -> Result<Response> {
        self.send_with(host, call, &mut |resp| {
            Ok(match resp {
                None => AuthStep::Header(None),
                Some(_) => AuthStep::GiveUp,
            })
        })
    }

    /// Sends with authorization for `call.scope` and retries. Returns the final response
    /// whatever its status (callers turn failures into errors with [`Client::fail`]); only
    /// transport failures and failures to get a token are errors here.
    pub(crate) fn send(&self, host: &Host, call: &Call<'_>) -> Result<Response> {
        let mut scope = call.scope.clone();
        let mut reauthed = false;
        self.send_with(host, call, &mut |resp| {
            if let Some(resp) = resp {
                // A 401: learn from the challenge and try once more with fresh authorization.
                if reauthed {
                    return Ok(AuthStep::GiveUp);
                }
                reauthed = true;
                let (learned, extra) = AuthScheme::from_headers(challenges(resp), &host.base);
                if let Some(s) = learned {
                    host.set_scheme(s);
                }
                for s in extra.iter() {
                    scope.add_all(s);
                }
                if let AuthScheme::Bearer { realm, service } = host.scheme() {
                    self.inner
                        .tokens
                        .forget(&TokenCache::key(&realm, service.as_deref(), &scope));
                }
            }
            self.authorization(host, &scope, call.what)
                .map(AuthStep::Header)
        })
    }

    /// The retry loop. `auth(None)` gives the header for the first attempt; `auth(Some(resp))`
    /// is asked after a 401 whether and how to try again.
    fn send_with(
        &self,
        host: &Host,
        call: &Call<'_>,
        auth: &mut dyn FnMut(Option<&Response>) -> Result<AuthStep>,
    ) -> Result<Response> {
        let max = if call.retry {
            self.inner.opts.retry.max_attempts.max(1)
        } else {
            1
        };
        let mut attempt = 0;
        let mut header = match auth(None)? {
            AuthStep::Header(h) => h,
            AuthStep::GiveUp => None,
        };
        loop {
            attempt += 1;
            let resp = match self.send_once(host, call, header.clone()) {
                Ok(r) => r,
                Err(Failure::Transient(reason)) if attempt < max => {
                    self.sleep_before_retry(call.what, attempt, None, &reason);
                    continue;
                }
                Err(f) => return Err(self.transport_error(host, call, f, attempt)),
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED {
                match auth(Some(&resp))? {
                    AuthStep::Header(h) => {
                        header = h;
                        // Re-authenticating is not a failed attempt.
                        attempt -= 1;
                        continue;
                    }
                    AuthStep::GiveUp => return Ok(resp),
                }
            }
            if retriable(status) && attempt < max {
                let ra = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                let reason = format!(
                    "{} {} answered {status}",
                    call.method,
                    display_url(&call.url)
                );
                drop(resp);
                self.sleep_before_retry(call.what, attempt, ra, &reason);
                continue;
            }
            return Ok(resp);
        }
    }

    /// The `Authorization` header for a request needing `scope`.
    fn authorization(&self, host: &Host, scope: &Scope, what: &str) -> Result<Option<HeaderValue>> {
        match host.scheme() {
            AuthScheme::Anonymous => Ok(None),
            AuthScheme::Basic => Ok(auth::basic_credentials(host.creds.as_ref())
                .and_then(|(u, p)| auth::basic_header(u, p))),
            AuthScheme::Bearer { realm, service } => {
                if let Some(Credentials::RegistryToken { token }) = &host.creds {
                    return Ok(auth::bearer_header(token));
                }
                let key = TokenCache::key(&realm, service.as_deref(), scope);
                if let Some(t) = self.inner.tokens.get(&key) {
                    return Ok(auth::bearer_header(&t));
                }
                let (token, lifetime) =
                    self.fetch_token(host, &realm, service.as_deref(), scope, what)?;
                let header = auth::bearer_header(&token);
                self.inner.tokens.put(key, token, lifetime);
                Ok(header)
            }
        }
    }

    /// Asks the token service for a token covering `scope`, as the configured user (or
    /// anonymously).
    fn fetch_token(
        &self,
        host: &Host,
        realm: &Url,
        service: Option<&str>,
        scope: &Scope,
        what: &str,
    ) -> Result<(Secret, Duration)> {
        let token_what = format!("{what}: get a token from {}", display_url(realm));
        let mut url = realm.clone();
        let empty = Scope::default();
        let call = match &host.creds {
            Some(Credentials::IdentityToken { token }) => {
                // OAuth2 refresh-token grant (what `identitytoken` is for).
                let mut form = url::form_urlencoded_pairs(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", "oxkit"),
                    ("refresh_token", token.expose()),
                ]);
                if let Some(s) = service {
                    form.push_pair("service", s);
                }
                let scopes = scope.iter().collect::<Vec<_>>().join(" ");
                if !scopes.is_empty() {
                    form.push_pair("scope", &scopes);
                }
                let mut c = Call::new(&token_what, Method::POST, url, &empty)
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
                c.body = Some(Bytes::from(form.finish()));
                c
            }
            _ => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for s in scope.iter() {
                        q.append_pair("scope", s);
                    }
                }
                let mut c = Call::new(&token_what, Method::GET, url, &empty);
                if let Some((u, p)) = auth::basic_credentials(host.creds.as_ref())
                    && let Some(h) = auth::basic_header(u, p)
                {
                    c.headers.insert(AUTHORIZATION, h);
                }
                c
            }
        };
        let resp = self.send_unauthenticated(host, &call)?;
        if !resp.status().is_success() {
            return Err(self.fail(host, &call, resp));
        }
        refuse_html(&token_what, host, &resp)?;
        let resp_url = display_url(resp.url());
        let bytes = read_limited(resp, 1 << 20, &token_what, "token response")?;
        let parsed: TokenResponse = serde_json::from_slice(&bytes).map_err(|e| Error::NotJson {
            what: token_what.clone(),
            host: host.registry.clone(),
            url: resp_url.clone(),
            reason: e.to_string(),
        })?;
        parsed.into_token().ok_or_else(|| Error::Protocol {
            what: token_what,
            url: resp_url,
            reason: "the token service answered without a token".into(),
        })
    }

    /// Turns a failed response into an error: status, URL, the registry's error body, and
    /// advice fitting the status.
    pub(crate) fn fail(&self, host: &Host, call: &Call<'_>, resp: Response) -> Error {
        let status = resp.status().as_u16();
        let url = display_url(resp.url());
        let what = call.what.to_string();
        let method = call.method.to_string();
        if is_html(resp.headers()) {
            return Error::Html {
                what,
                host: host.registry.clone(),
                url,
                status,
            };
        }
        let mut raw = Vec::new();
        // A body that cannot be read adds nothing; the status still says what happened.
        let _ = resp.take(ERROR_BODY_LIMIT).read_to_end(&mut raw);
        let body = ErrorBody::parse(&raw);
        let a = Box::new(Answer {
            what,
            host: host.registry.clone(),
            method,
            url,
            status,
            body,
        });
        match status {
            401 if host.creds.is_some() => Error::Unauthorized(a),
            401 => Error::CredentialsRequired(a),
            403 => Error::Denied(a),
            404 => Error::NotFound(a),
            _ => Error::Status(a),
        }
    }
}

/// A tiny `application/x-www-form-urlencoded` writer (reqwest's `form` feature is not
/// worth a dependency for one request).
mod url {
    pub(super) struct Form(String);

    pub(super) fn form_urlencoded_pairs(pairs: &[(&str, &str)]) -> Form {
        let mut f = Form(String::new());
        for (k, v) in pairs {
            f.push_pair(k, v);
        }
        f
    }

    impl Form {
        pub(super) fn push_pair(&mut self, k: &str, v: &str) {
            if !self.0.is_empty() {
                self.0.push('&');
            }
            encode(&mut self.0, k);
            self.0.push('=');
            encode(&mut self.0, v);
        }

        pub(super) fn finish(self) -> String {
            self.0
        }
    }

    fn encode(out: &mut String, s: &str) {
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                    out.push(b as char)
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn encodes_like_a_browser() {
            let mut f = super::form_urlencoded_pairs(&[
                ("scope", "repository:a/b:pull push"),
                ("x", "é&="),
            ]);
            f.push_pair("k", "v");
            assert_eq!(
                f.finish(),
                "scope=repository%3Aa%2Fb%3Apull+push&x=%C3%A9%26%3D&k=v"
            );
        }
    }
}
