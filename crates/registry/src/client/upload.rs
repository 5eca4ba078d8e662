//! Uploading blobs: skip what the registry has (HEAD), mount from another repository when
//! possible, upload small blobs in one request and large ones in chunks (POST, PATCH with
//! `Content-Range`, PUT `?digest=`), several blobs at once with bounded concurrency.
//!
//! When a chunk fails the upload is resumed where the registry allows it: the upload URL is
//! asked for its `Range`, and sending continues from there. A registry that lost the session
//! (distribution cancels one whose state no longer matches) gets a fresh upload.
//!
//! Chunks come from [`super::source`] (slices of a mapped file) and go to the HTTP
//! stack without further copies; the registry verifies the digest, so nothing is hashed here.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use oxkit_spec::{Digest, Reference};
use reqwest::header::{CONTENT_RANGE, CONTENT_TYPE, HeaderMap, LOCATION};
use reqwest::{Method, StatusCode, Url};

use super::http::Call;
use super::source::{BlobSource, whole_blob, with_chunks};
use super::{Client, Host};
use crate::auth::Scope;
use crate::error::{Error, ErrorBody, Result, display_url};

/// One blob to upload.
#[derive(Debug, Clone)]
pub struct BlobUpload {
    pub digest: Digest,
    pub size: u64,
    pub source: BlobSource,
    /// Repositories on the same registry that may hold the blob already; it is mounted from
    /// the first that does instead of uploaded.
    pub mount_from: Vec<String>,
    /// Ask the registry whether it has the blob before uploading (a `HEAD`). Turn it off for
    /// small blobs that are almost certainly new (a signature's payload and config): sending
    /// them costs no more than asking, and saves a round trip.
    pub check_exists: bool,
}

impl BlobUpload {
    /// An in-memory blob; its digest is computed.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self {
            digest: Digest::sha256(&bytes),
            size: bytes.len() as u64,
            source: BlobSource::Bytes(bytes),
            mount_from: Vec::new(),
            check_exists: true,
        }
    }

    /// The same upload without the existence check (see [`BlobUpload::check_exists`]).
    pub fn without_check(self) -> Self {
        Self {
            check_exists: false,
            ..self
        }
    }
}

/// What happened to a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The destination had it already; nothing was sent.
    AlreadyThere,
    /// Mounted from another repository of the same registry.
    Mounted,
    /// Its bytes were transferred.
    Transferred,
}

/// An open upload session: where to send next, and how much the registry has.
#[derive(Debug, Clone)]
struct Session {
    location: Url,
    offset: u64,
}

/// Why one pass over an upload session stopped.
enum Interrupted {
    /// Not worth retrying.
    Fatal(Error),
    /// Worth another try; resume `session` if the registry still has it.
    Retry {
        reason: String,
        session: Option<Session>,
    },
}

/// The upload URL a response points at, resolved against the request's.
fn location(headers: &HeaderMap, base: &Url) -> Option<Url> {
    let l = headers.get(LOCATION)?.to_str().ok()?;
    base.join(l).ok()
}

/// The bytes the registry has, from a `Range: 0-<last>` header. `0-0` is ambiguous in
/// distribution (nothing, or one byte); it is taken as nothing, and a wrong guess shows up
/// as a digest error at the end, which restarts the upload.
fn range_end(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get("range")?.to_str().ok()?;
    let v = v.trim().strip_prefix("bytes=").unwrap_or(v.trim());
    let (start, end) = v.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    if start != 0 {
        return None;
    }
    Some(if end == 0 { 0 } else { end + 1 })
}

/// Time allowed for a request carrying `len` bytes: the usual timeout plus 256 KiB/s.
fn upload_timeout(base: Duration, len: u64) -> Duration {
    base + Duration::from_secs(len / (256 << 10))
}

impl Client {
    /// Uploads one blob to `target`'s repository unless it is there already.
    pub fn push_blob(&self, target: &Reference, blob: &BlobUpload) -> Result<Pushed> {
        let host = self.host(target)?;
        self.push_one(&host, target, blob, &AtomicBool::new(false), &|| {})
    }

    /// Uploads several blobs, at most `max_concurrent_uploads` at a time, each digest once.
    /// The first failure stops the others (they fail with [`Error::Cancelled`], which is not
    /// returned when a real error is available). Outcomes are in `blobs` order.
    pub fn push_blobs(&self, target: &Reference, blobs: &[BlobUpload]) -> Result<Vec<Pushed>> {
        self.push_blobs_noting(target, blobs, &|| {})
    }

    /// [`Client::push_blobs`], calling `under_way` once the first blobs taken (one per
    /// concurrent upload) are each sending their bytes or done: the round trips before a
    /// blob's bytes go (its check and the opening of its upload) are over for them, and
    /// what is left is mostly transfer. Other work that shares the registry can start then
    /// without delaying those round trips. A blob that fails counts as done; an empty batch
    /// never calls it.
    pub fn push_blobs_noting(
        &self,
        target: &Reference,
        blobs: &[BlobUpload],
        under_way: &(dyn Fn() + Sync),
    ) -> Result<Vec<Pushed>> {
        if blobs.is_empty() {
            return Ok(Vec::new());
        }
        let host = self.host(target)?;
        let mut first_of: Vec<usize> = Vec::with_capacity(blobs.len());
        let mut unique: Vec<usize> = Vec::new();
        for (i, b) in blobs.iter().enumerate() {
            match unique.iter().position(|&u| blobs[u].digest == b.digest) {
                Some(p) => first_of.push(p),
                None => {
                    first_of.push(unique.len());
                    unique.push(i);
                }
            }
        }
        let workers = self
            .inner
            .opts
            .max_concurrent_uploads
            .clamp(1, unique.len());
        let next = AtomicUsize::new(0);
        let cancel = AtomicBool::new(false);
        // How many of the first round's blobs are sending or done.
        let settled = AtomicUsize::new(0);
        let settle = |noted: &AtomicBool| {
            if !noted.swap(true, Ordering::SeqCst)
                && settled.fetch_add(1, Ordering::SeqCst) + 1 == workers
            {
                under_way();
            }
        };
        let results: Vec<Mutex<Option<Result<Pushed>>>> =
            unique.iter().map(|_| Mutex::new(None)).collect();
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| {
                    loop {
                        let k = next.fetch_add(1, Ordering::SeqCst);
                        if k >= unique.len() {
                            break;
                        }
                        let blob = &blobs[unique[k]];
                        let noted = AtomicBool::new(k >= workers);
                        let sending = || settle(&noted);
                        let r = if cancel.load(Ordering::SeqCst) {
                            Err(Error::Cancelled {
                                what: format!("upload blob {}", blob.digest),
                            })
                        } else {
                            self.push_one(&host, target, blob, &cancel, &sending)
                        };
                        sending();
                        if r.is_err() {
                            cancel.store(true, Ordering::SeqCst);
                        }
                        *results[k]
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(r);
                    }
                });
            }
        });
        let mut outcomes = Vec::with_capacity(unique.len());
        let mut cancelled = None;
        for slot in results {
            match slot
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
            {
                Some(Ok(p)) => outcomes.push(p),
                Some(Err(e @ Error::Cancelled { .. })) => cancelled = cancelled.or(Some(e)),
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(Error::Cancelled {
                        what: format!("upload to {}", target.name()),
                    });
                }
            }
        }
        if let Some(e) = cancelled {
            return Err(e);
        }
        Ok(first_of.into_iter().map(|k| outcomes[k]).collect())
    }

    /// Uploads one blob unless it is there already; `sending` is called as its bytes start
    /// to go (each attempt).
    fn push_one(
        &self,
        host: &Host,
        target: &Reference,
        blob: &BlobUpload,
        cancel: &AtomicBool,
        sending: &dyn Fn(),
    ) -> Result<Pushed> {
        let what = format!("upload blob {} to {}", blob.digest, target.name());
        let push_scope = Scope::push(target.repository());
        let progress = self.inner.opts.progress.clone();
        if let Some(p) = &progress {
            p.blob_started(&blob.digest, Some(blob.size));
        }
        let done = |how: Pushed| {
            if let Some(p) = &progress {
                p.blob_finished(&blob.digest, how);
            }
            Ok(how)
        };
        if blob.check_exists
            && self
                .blob_exists_with(target, &blob.digest, &push_scope)?
                .is_some()
        {
            return done(Pushed::AlreadyThere);
        }
        let mut session = None;
        for from in blob
            .mount_from
            .iter()
            .filter(|f| f.as_str() != target.repository())
        {
            match self.try_mount(host, target, blob, from, &what)? {
                Mount::Mounted => return done(Pushed::Mounted),
                Mount::Session(s) => {
                    session = Some(s);
                    break;
                }
                Mount::NotPossible => {}
            }
        }
        let max = self.inner.opts.retry.max_attempts.max(1);
        let mut attempt = 0;
        // The most the registry has confirmed holding of this blob, across sessions.
        let mut confirmed = 0u64;
        loop {
            attempt += 1;
            if cancel.load(Ordering::SeqCst) {
                return Err(Error::Cancelled { what });
            }
            let s = match session.take() {
                Some(s) => s,
                None => self.start_upload(host, target, &what)?,
            };
            // The session is open: what follows is the bytes.
            sending();
            match self.upload_session(host, target, blob, s, &what, cancel) {
                Ok(()) => return done(Pushed::Transferred),
                Err(Interrupted::Fatal(e)) => return Err(e),
                Err(Interrupted::Retry {
                    reason,
                    session: open,
                }) => {
                    if attempt >= max {
                        return Err(Error::Transport {
                            what,
                            method: "upload".into(),
                            url: open.map(|s| display_url(&s.location)).unwrap_or_default(),
                            attempts: attempt,
                            reason,
                        });
                    }
                    self.sleep_before_retry(&what, attempt, None, &reason);
                    session = match open {
                        Some(s) => self.upload_status(host, target, &s, &what),
                        None => None,
                    };
                    match &session {
                        Some(s) if s.offset > confirmed => {
                            // Progress the registry kept: the retry budget is for failures in
                            // a row, not for the length of an upload. Progress lost with a
                            // session does not count, or a registry that cannot resume would
                            // keep us restarting forever.
                            confirmed = s.offset;
                            attempt = 0;
                        }
                        Some(_) => {}
                        None => {
                            if self
                                .blob_exists_with(target, &blob.digest, &push_scope)?
                                .is_some()
                            {
                                // The final request's answer was lost, but the blob made it.
                                return done(Pushed::Transferred);
                            }
                        }
                    }
                }
            }
        }
    }

    /// `POST .../blobs/uploads/?mount=&from=`: 201 means mounted, 202 an ordinary upload
    /// session (the registry could not mount), anything else that mounting is not possible.
    fn try_mount(
        &self,
        host: &Host,
        target: &Reference,
        blob: &BlobUpload,
        from: &str,
        what: &str,
    ) -> Result<Mount> {
        let scope = Scope::push(target.repository()).with_pull(from);
        let mut url = host.url(&format!("{}/blobs/uploads/", target.repository()))?;
        url.query_pairs_mut()
            .append_pair("mount", blob.digest.as_str())
            .append_pair("from", from);
        let call = Call::new(what, Method::POST, url.clone(), &scope);
        let resp = self.send(host, &call)?;
        match resp.status() {
            StatusCode::CREATED => Ok(Mount::Mounted),
            StatusCode::ACCEPTED => Ok(location(resp.headers(), &url)
                .map(|location| {
                    Mount::Session(Session {
                        location,
                        offset: 0,
                    })
                })
                .unwrap_or(Mount::NotPossible)),
            s => {
                tracing::debug!("{what}: mounting from {from} not possible ({s})");
                Ok(Mount::NotPossible)
            }
        }
    }

    /// `POST .../blobs/uploads/`: a new upload session.
    fn start_upload(&self, host: &Host, target: &Reference, what: &str) -> Result<Session> {
        let scope = Scope::push(target.repository());
        let url = host.url(&format!("{}/blobs/uploads/", target.repository()))?;
        let call = Call::new(what, Method::POST, url.clone(), &scope);
        let resp = self.send(host, &call)?;
        if resp.status() != StatusCode::ACCEPTED {
            if resp.status().is_success() {
                return Err(Error::Protocol {
                    what: what.to_string(),
                    url: display_url(&url),
                    reason: format!(
                        "starting an upload answered {} instead of 202 Accepted",
                        resp.status()
                    ),
                });
            }
            return Err(self.fail(host, &call, resp));
        }
        let location = location(resp.headers(), &url).ok_or_else(|| Error::Protocol {
            what: what.to_string(),
            url: display_url(&url),
            reason: "starting an upload answered without a Location header".into(),
        })?;
        Ok(Session {
            location,
            offset: 0,
        })
    }

    /// `GET <upload URL>`: how much of the upload the registry has, or `None` when the
    /// session is gone (then the upload starts again).
    fn upload_status(
        &self,
        host: &Host,
        target: &Reference,
        s: &Session,
        what: &str,
    ) -> Option<Session> {
        let scope = Scope::push(target.repository());
        let call = Call::new(what, Method::GET, s.location.clone(), &scope);
        let resp = match self.send(host, &call) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("{what}: cannot ask for the upload's progress: {e}");
                return None;
            }
        };
        if !matches!(
            resp.status(),
            StatusCode::NO_CONTENT | StatusCode::OK | StatusCode::ACCEPTED
        ) {
            tracing::debug!(
                "{what}: the registry no longer has the upload ({}); starting again",
                resp.status()
            );
            return None;
        }
        let offset = range_end(resp.headers())?;
        let location = location(resp.headers(), &s.location).unwrap_or_else(|| s.location.clone());
        tracing::debug!("{what}: resuming at byte {offset}");
        Some(Session { location, offset })
    }

    /// Sends the blob's bytes from `s.offset` on and completes the upload.
    fn upload_session(
        &self,
        host: &Host,
        target: &Reference,
        blob: &BlobUpload,
        s: Session,
        what: &str,
        cancel: &AtomicBool,
    ) -> std::result::Result<(), Interrupted> {
        let chunk = self.inner.opts.chunk_size.max(1);
        let resumed = s.offset > 0;
        let mut loc = s.location;
        let mut offset = s.offset.min(blob.size);
        let scope = Scope::push(target.repository());
        let progress = self.inner.opts.progress.clone();
        let base_timeout = self.inner.opts.request_timeout;
        let retry = |reason: String, loc: &Url, offset: u64| Interrupted::Retry {
            reason,
            session: Some(Session {
                location: loc.clone(),
                offset,
            }),
        };

        // Small blobs (and an untouched session) go up in the completing PUT itself.
        let monolithic = offset == 0 && blob.size <= chunk as u64;
        if !monolithic {
            with_chunks(&blob.source, offset, blob.size, chunk, |chunks| {
                while let Some(body) = chunks.next_chunk() {
                    let body = body.map_err(Interrupted::Fatal)?;
                    if cancel.load(Ordering::SeqCst) {
                        return Err(Interrupted::Fatal(Error::Cancelled {
                            what: what.to_string(),
                        }));
                    }
                    let len = body.len() as u64;
                    let range = format!("{offset}-{}", offset + len - 1);
                    let mut call = Call::new(what, Method::PATCH, loc.clone(), &scope)
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_RANGE, &range)
                        .body(body.clone())
                        .no_retry();
                    call.timeout = Some(upload_timeout(base_timeout, len));
                    let resp = match self.send(host, &call) {
                        Ok(r) => r,
                        Err(Error::Transport { reason, .. } | Error::Connect { reason, .. }) => {
                            return Err(retry(reason, &loc, offset));
                        }
                        Err(e) => return Err(Interrupted::Fatal(e)),
                    };
                    drop(call);
                    let status = resp.status();
                    if status != StatusCode::ACCEPTED && status != StatusCode::NO_CONTENT {
                        let failed = call_for_error(what, Method::PATCH, &loc, &scope);
                        return Err(self.interrupted(host, &failed, resp, &loc, offset, resumed));
                    }
                    let next = location(resp.headers(), &loc).ok_or_else(|| {
                        Interrupted::Fatal(Error::Protocol {
                            what: what.to_string(),
                            url: display_url(&loc),
                            reason:
                                "a chunk was accepted without a Location header for the next one"
                                    .into(),
                        })
                    })?;
                    let sent_to = offset + len;
                    loc = next;
                    match range_end(resp.headers()) {
                        Some(have) if have < sent_to && have >= offset => {
                            // The registry kept less than was sent: carry on from what it has,
                            // in a new pass starting there.
                            return Err(retry(
                                format!("the registry kept {have} of {sent_to} bytes"),
                                &loc,
                                have,
                            ));
                        }
                        _ => offset = sent_to,
                    }
                    if let Some(p) = &progress {
                        p.blob_progress(&blob.digest, offset);
                    }
                }
                Ok(())
            })?;
        }

        // The completing PUT, carrying the whole blob when monolithic.
        let mut put_url = loc.clone();
        put_url
            .query_pairs_mut()
            .append_pair("digest", blob.digest.as_str());
        let body = if monolithic {
            whole_blob(&blob.source, blob.size).map_err(Interrupted::Fatal)?
        } else {
            Bytes::new()
        };
        let mut call = Call::new(what, Method::PUT, put_url.clone(), &scope)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body.clone())
            .no_retry();
        call.timeout = Some(upload_timeout(base_timeout, body.len() as u64));
        let resp = match self.send(host, &call) {
            Ok(r) => r,
            Err(Error::Transport { reason, .. } | Error::Connect { reason, .. }) => {
                return Err(if monolithic {
                    Interrupted::Retry {
                        reason,
                        session: None,
                    }
                } else {
                    retry(reason, &loc, offset)
                });
            }
            Err(e) => return Err(Interrupted::Fatal(e)),
        };
        drop(call);
        if resp.status() == StatusCode::CREATED
            || resp.status() == StatusCode::NO_CONTENT
            || resp.status() == StatusCode::OK
        {
            if let Some(announced) = resp
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<Digest>().ok())
                && announced != blob.digest
            {
                return Err(Interrupted::Fatal(Error::DigestMismatch {
                    what: what.to_string(),
                    url: display_url(&put_url),
                    expected: blob.digest.clone(),
                    actual: announced,
                }));
            }
            if let Some(p) = &progress {
                p.blob_progress(&blob.digest, blob.size);
            }
            return Ok(());
        }
        Err(self.interrupted(
            host,
            &call_for_error(what, Method::PUT, &put_url, &scope),
            resp,
            &loc,
            offset,
            resumed,
        ))
    }

    /// Classifies a failed chunk or completing request.
    fn interrupted(
        &self,
        host: &Host,
        call: &Call<'_>,
        resp: reqwest::blocking::Response,
        loc: &Url,
        offset: u64,
        resumed: bool,
    ) -> Interrupted {
        let status = resp.status();
        let session = Some(Session {
            location: loc.clone(),
            offset,
        });
        let reason = format!(
            "{} {} answered {status}",
            call.method,
            display_url(&call.url)
        );
        if matches!(status.as_u16(), 408 | 416 | 429 | 500 | 502 | 503 | 504) {
            return Interrupted::Retry { reason, session };
        }
        let e = self.fail(host, call, resp);
        let body = e.body().cloned().unwrap_or_else(ErrorBody::default);
        if status == StatusCode::NOT_FOUND && body.has_code("BLOB_UPLOAD_UNKNOWN") {
            return Interrupted::Retry {
                reason: format!("{reason}: the registry lost the upload session"),
                session: None,
            };
        }
        if resumed && (body.has_code("DIGEST_INVALID") || body.has_code("BLOB_UPLOAD_INVALID")) {
            // A resumed upload that ends wrong: the registry's idea of the offset was off.
            return Interrupted::Retry {
                reason: format!("{reason}: the resumed upload did not add up; starting again"),
                session: None,
            };
        }
        Interrupted::Fatal(e)
    }
}

enum Mount {
    Mounted,
    Session(Session),
    NotPossible,
}

/// A body-less copy of a call, for building its error.
fn call_for_error<'a>(what: &'a str, method: Method, url: &Url, scope: &'a Scope) -> Call<'a> {
    Call::new(what, method, url.clone(), scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn ranges_and_locations() {
        assert_eq!(range_end(&headers(&[("range", "0-1023")])), Some(1024));
        assert_eq!(range_end(&headers(&[("range", "bytes=0-9")])), Some(10));
        assert_eq!(range_end(&headers(&[("range", "0-0")])), Some(0));
        assert_eq!(range_end(&headers(&[("range", "5-9")])), None);
        assert_eq!(range_end(&headers(&[])), None);
        let base = Url::parse("http://r:5000/v2/x/blobs/uploads/").unwrap();
        let l = location(
            &headers(&[("location", "/v2/x/blobs/uploads/u1?_state=s")]),
            &base,
        )
        .unwrap();
        assert_eq!(l.as_str(), "http://r:5000/v2/x/blobs/uploads/u1?_state=s");
        let l = location(&headers(&[("location", "https://other/up")]), &base).unwrap();
        assert_eq!(l.as_str(), "https://other/up");
    }
}
