//! Downloading blobs: streamed into any `Write` (the store's blob writer, a file, memory)
//! while being hashed, resumed with a `Range` request when the connection breaks, and
//! refused with both digests and the URL when the bytes do not match.
//!
//! This module verifies; it never decides where the bytes end up. A caller that gets an
//! error must discard what was written (the store's `BlobWriter` does so on drop).

use std::io::{Read, Write};

use oxkit_spec::{Digest, DigestHasher, Reference};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use reqwest::{Method, StatusCode};

use super::http::{Call, error_chain};
use super::{Client, Pushed};
use crate::auth::Scope;
use crate::error::{Error, Result, display_url};

/// Read buffer for downloads: big enough that hashing and writing run in long strides.
const READ_BUF: usize = 1 << 20;

/// The start offset a `Content-Range: bytes START-END/TOTAL` header announces.
fn content_range_start(v: &str) -> Option<u64> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    rest.split('-').next()?.trim().parse().ok()
}

impl Client {
    /// Whether the blob is in `r`'s repository, and its size if so.
    pub fn blob_exists(&self, r: &Reference, digest: &Digest) -> Result<Option<u64>> {
        self.blob_exists_with(r, digest, &Scope::pull(r.repository()))
    }

    /// [`Client::blob_exists`] with the token scope of the surrounding operation (a push
    /// asks with its push token instead of fetching a pull-only one).
    pub(crate) fn blob_exists_with(
        &self,
        r: &Reference,
        digest: &Digest,
        scope: &Scope,
    ) -> Result<Option<u64>> {
        let host = self.host(r)?;
        let what = format!("check blob {digest} in {}", r.name());
        let url = host.url(&format!("{}/blobs/{digest}", r.repository()))?;
        let call = Call::new(&what, Method::HEAD, url, scope);
        let resp = self.send(&host, &call)?;
        match resp.status() {
            s if s.is_success() => Ok(Some(
                resp.headers()
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            )),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.fail(&host, &call, resp)),
        }
    }

    /// Downloads a small blob (a config, a signature payload) into memory, verified; more
    /// than `limit` bytes is an error.
    pub fn get_blob(&self, r: &Reference, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        struct Capped {
            buf: Vec<u8>,
            limit: u64,
        }
        impl Write for Capped {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                if self.buf.len() as u64 + b.len() as u64 > self.limit {
                    return Err(std::io::Error::other(format!(
                        "more than {} bytes",
                        self.limit
                    )));
                }
                self.buf.extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut out = Capped {
            buf: Vec::new(),
            limit,
        };
        self.pull_blob(r, digest, None, &mut out)?;
        Ok(out.buf)
    }

    /// Streams blob `digest` of `r`'s repository into `out`, hashing as the bytes pass. A
    /// broken connection is resumed from where it stopped (`Range`), a registry that
    /// restarts from the beginning is skipped ahead; when `size` is known, a longer stream
    /// is refused as soon as it overflows. Returns the number of bytes written.
    pub fn pull_blob(
        &self,
        r: &Reference,
        digest: &Digest,
        size: Option<u64>,
        out: &mut dyn Write,
    ) -> Result<u64> {
        let host = self.host(r)?;
        let what = format!("fetch blob {digest} of {}", r.name());
        let scope = Scope::pull(r.repository());
        let url = host.url(&format!("{}/blobs/{digest}", r.repository()))?;
        let mut hasher = DigestHasher::for_digest(digest);
        let progress = self.inner.opts.progress.clone();
        if let Some(p) = &progress {
            p.blob_started(digest, size);
        }
        let max = self.inner.opts.retry.max_attempts.max(1);
        let mut buf = vec![0u8; READ_BUF];
        let mut written: u64 = 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let at_start = written;
            let mut call = Call::new(&what, Method::GET, url.clone(), &scope);
            if written > 0 {
                call = call.header(RANGE, &format!("bytes={written}-"));
            }
            let mut resp = self.send(&host, &call)?;
            let status = resp.status();
            let shown_url = display_url(resp.url());
            // Bytes of this response that we already have.
            let mut skip = 0u64;
            match status {
                StatusCode::OK => skip = written,
                StatusCode::PARTIAL_CONTENT if written > 0 => {
                    let start = resp
                        .headers()
                        .get(CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(content_range_start);
                    match start {
                        Some(s) if s <= written => skip = written - s,
                        _ => {
                            return Err(Error::Protocol {
                                what,
                                url: shown_url,
                                reason: format!(
                                    "asked for bytes from {written}, got a range that does not start there"
                                ),
                            });
                        }
                    }
                }
                StatusCode::RANGE_NOT_SATISFIABLE if written > 0 && size == Some(written) => break,
                s if s.is_success() => {}
                _ => return Err(self.fail(&host, &call, resp)),
            }
            let outcome: std::result::Result<(), String> = loop {
                let n = match resp.read(&mut buf) {
                    Ok(0) => break Ok(()),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        break Err(format!(
                            "the download broke after {written} bytes: {}",
                            error_chain(&e)
                        ));
                    }
                };
                let mut chunk = &buf[..n];
                if skip > 0 {
                    let s = usize::try_from(skip).unwrap_or(usize::MAX).min(chunk.len());
                    chunk = &chunk[s..];
                    skip -= s as u64;
                    if chunk.is_empty() {
                        continue;
                    }
                }
                if let Some(limit) = size
                    && written + chunk.len() as u64 > limit
                {
                    return Err(Error::TooLarge {
                        what,
                        url: shown_url,
                        limit,
                        kind: "blob of the announced size",
                    });
                }
                hasher.update(chunk);
                out.write_all(chunk).map_err(|source| Error::Sink {
                    what: what.clone(),
                    source,
                })?;
                written += chunk.len() as u64;
                if let Some(p) = &progress {
                    p.blob_progress(digest, written);
                }
            };
            let reason = match outcome {
                Ok(()) if skip > 0 => {
                    format!("the registry restarted the download and stopped before byte {written}")
                }
                Ok(()) => match size {
                    Some(s) if written < s => {
                        format!("the connection closed after {written} of {s} bytes")
                    }
                    _ => break,
                },
                Err(reason) => reason,
            };
            drop(resp);
            if written > at_start {
                // Progress was made: the budget is for consecutive failures.
                attempt = 1;
            }
            if attempt >= max {
                return Err(Error::Transport {
                    what,
                    method: "GET".into(),
                    url: shown_url,
                    attempts: attempt,
                    reason,
                });
            }
            self.sleep_before_retry(&what, attempt, None, &reason);
        }
        let actual = hasher.finish();
        if &actual != digest {
            return Err(Error::DigestMismatch {
                what,
                url: display_url(&url),
                expected: digest.clone(),
                actual,
            });
        }
        if let Some(s) = size
            && s != written
        {
            return Err(Error::SizeMismatch {
                what,
                url: display_url(&url),
                expected: s,
                actual: written,
            });
        }
        out.flush().map_err(|source| Error::Sink { what, source })?;
        if let Some(p) = &progress {
            p.blob_finished(digest, Pushed::Transferred);
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes 0-0/*"), Some(0));
        assert_eq!(content_range_start("items 1-2"), None);
        assert_eq!(content_range_start("bytes x-1/2"), None);
    }
}
