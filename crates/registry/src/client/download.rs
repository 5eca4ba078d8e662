//! Plain HTTP(S) downloads, for Dockerfile `ADD https://...` sources: not the registry API,
//! but the same TLS setup (system roots plus `certs.d/HOST/ca.crt`), user agent, timeouts and
//! retries, and the same care that URLs in errors carry no credentials or query string.
//!
//! Registry credentials are never sent; user info written in the URL itself goes as HTTP basic
//! auth (as curl and BuildKit do) and is redacted wherever the URL is shown. Redirects are
//! followed (up to ten). A failed attempt is retried only while nothing has been written to the sink; once
//! the body has started, an error ends the download (the caller discards what it has).

use std::io::{Read, Write};
use std::time::Duration;

use reqwest::blocking::Response;
use reqwest::{StatusCode, Url};

use super::Client;
use super::http::{Failure, classify, error_chain};
use crate::error::{Error, Result, display_url};
use crate::tls;

/// What a finished download reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Bytes written to the sink.
    pub bytes: u64,
    /// The `Last-Modified` time of the resource, in seconds since the epoch, when the server
    /// sent one (Docker gives the downloaded file that mtime).
    pub last_modified: Option<i64>,
}

impl Client {
    /// `GET url`, streaming the body into `out`.
    pub fn download(&self, url: &str, out: &mut dyn Write) -> Result<Downloaded> {
        let fail = |reason: String| Error::Download {
            url: oxkit_spec::url::redact(url),
            reason,
        };
        let parsed = Url::parse(url).map_err(|e| fail(format!("not a valid URL ({e})")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(fail(
                "only http:// and https:// URLs can be downloaded".into(),
            ));
        }
        let what = format!("download {}", display_url(&parsed));
        let host = parsed.host_str().unwrap_or_default().to_string();
        let host_port = match parsed.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let opts = &self.inner.opts;
        let files = tls::find_host_files(&opts.certs_dirs, &host_port)?;
        let builder = reqwest::blocking::Client::builder()
            .user_agent(opts.user_agent.clone())
            .connect_timeout(opts.connect_timeout)
            .timeout(None)
            .redirect(reqwest::redirect::Policy::limited(10));
        let http = builder
            .tls_backend_preconfigured(tls::client_config(&files, false, &host_port)?)
            .build()
            .map_err(|e| fail(error_chain(&e)))?;

        let mut attempt = 1;
        loop {
            let sent = http
                .get(parsed.clone())
                .timeout(opts.request_timeout)
                .send();
            let (failure, retry_after) = match sent {
                Ok(resp) if resp.status() == StatusCode::OK => {
                    return stream(resp, out, &what).map_err(|e| match e {
                        StreamError::Sink(e) => e,
                        StreamError::Transfer(reason) => fail(reason),
                    });
                }
                Ok(resp) if retriable(resp.status()) && attempt < opts.retry.max_attempts => {
                    let after = retry_after(&resp);
                    (format!("answered {}", resp.status()), after)
                }
                Ok(resp) => return Err(fail(status_reason(resp))),
                Err(e) => match classify(&e) {
                    Failure::Transient(reason) if attempt < opts.retry.max_attempts => {
                        (reason, None)
                    }
                    Failure::Dns => {
                        return Err(fail(format!(
                            "cannot resolve the host {host}; check the URL and your DNS or network settings"
                        )));
                    }
                    Failure::Tls(reason) => {
                        return Err(fail(format!(
                            "TLS connection failed: {reason}; if the server uses a private CA, put it in ~/.config/oxkit/certs.d/{host_port}/ca.crt (or /etc/docker/certs.d/{host_port}/ca.crt)"
                        )));
                    }
                    Failure::Refused(reason) => {
                        return Err(fail(format!(
                            "cannot connect: {reason}; is the server running and reachable from here?"
                        )));
                    }
                    Failure::Transient(reason) => {
                        return Err(fail(format!("failed after {attempt} attempt(s): {reason}")));
                    }
                },
            };
            self.sleep_before_retry(&what, attempt, retry_after, &failure);
            attempt += 1;
        }
    }
}

fn retriable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

fn retry_after(resp: &Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// How streaming a body failed: writing to the sink (a local error, reported as such), or the
/// transfer itself (the reason, without the URL).
enum StreamError {
    Sink(Error),
    Transfer(String),
}

/// Copies the body into `out`, checking it is as long as the server said.
fn stream(
    mut resp: Response,
    out: &mut dyn Write,
    what: &str,
) -> std::result::Result<Downloaded, StreamError> {
    let expected = resp.content_length();
    let last_modified = resp
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date);
    let sink = |source| {
        StreamError::Sink(Error::Sink {
            what: what.to_string(),
            source,
        })
    };
    let mut buf = vec![0u8; 256 << 10];
    let mut bytes = 0u64;
    loop {
        let n = match resp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(StreamError::Transfer(format!(
                    "the download broke off after {bytes} bytes: {}",
                    error_chain(&e)
                )));
            }
        };
        out.write_all(&buf[..n]).map_err(sink)?;
        bytes += n as u64;
    }
    if let Some(expected) = expected
        && expected != bytes
    {
        return Err(StreamError::Transfer(format!(
            "the server sent {bytes} bytes of the {expected} it announced"
        )));
    }
    out.flush().map_err(sink)?;
    Ok(Downloaded {
        bytes,
        last_modified,
    })
}

/// Seconds since the epoch of an HTTP date in its preferred form (RFC 9110's IMF-fixdate,
/// `Sun, 06 Nov 1994 08:49:37 GMT`); `None` for anything else (the obsolete forms are not
/// worth a dependency: the file then gets the build's fixed time).
fn parse_http_date(s: &str) -> Option<i64> {
    let (_, rest) = s.trim().split_once(", ")?;
    let mut it = rest.split(' ');
    let day: i64 = it.next()?.parse().ok()?;
    let month = it.next()?;
    let year: i64 = it.next()?.parse().ok()?;
    let time = it.next()?;
    if it.next()? != "GMT" || it.next().is_some() {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    // Days from 1970-01-01 to the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
}

/// Why a final non-200 answer failed, with the start of the server's text.
fn status_reason(resp: Response) -> String {
    let status = resp.status();
    let mut text = Vec::new();
    let _ = resp.take(512).read_to_end(&mut text);
    let text = String::from_utf8_lossy(&text);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut reason = format!("the server answered {status}");
    if !text.is_empty() {
        reason.push_str(": ");
        reason.push_str(&text);
    }
    if status == StatusCode::NOT_FOUND {
        reason.push_str("; check the URL");
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;

    /// A one-thread HTTP/1.1 server answering each connection with the next canned response.
    fn serve(responses: Vec<Vec<u8>>) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for r in responses {
                let (mut s, _) = l.accept().unwrap();
                let mut reader = std::io::BufReader::new(s.try_clone().unwrap());
                let mut first = String::new();
                reader.read_line(&mut first).unwrap();
                lines.push(first.trim().to_string());
                loop {
                    let mut l = String::new();
                    if reader.read_line(&mut l).unwrap() == 0 || l == "\r\n" {
                        break;
                    }
                }
                s.write_all(&r).unwrap();
            }
            lines
        });
        (base, h)
    }

    fn answer(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
        let mut v = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
            body.len()
        )
        .into_bytes();
        v.extend_from_slice(body);
        v
    }

    fn client() -> Client {
        Client::new(crate::ClientOptions {
            retry: crate::RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(5),
            },
            ..Default::default()
        })
    }

    #[test]
    fn streams_the_body_and_reports_last_modified() {
        let (base, h) = serve(vec![answer(
            "200 OK",
            "Last-Modified: Tue, 15 Nov 1994 08:12:31 GMT\r\n",
            b"hello world",
        )]);
        let mut out = Vec::new();
        let got = client()
            .download(&format!("{base}/dir/file.txt?x=1"), &mut out)
            .unwrap();
        assert_eq!(out, b"hello world");
        assert_eq!(got.bytes, 11);
        assert_eq!(got.last_modified, Some(784_887_151));
        assert_eq!(h.join().unwrap(), vec!["GET /dir/file.txt?x=1 HTTP/1.1"]);
    }

    #[test]
    fn retries_server_errors_before_the_body_starts() {
        let (base, h) = serve(vec![
            answer("503 Service Unavailable", "", b"busy"),
            answer("200 OK", "", b"ok"),
        ]);
        let mut out = Vec::new();
        client().download(&format!("{base}/f"), &mut out).unwrap();
        assert_eq!(out, b"ok");
        assert_eq!(h.join().unwrap().len(), 2);
    }

    #[test]
    fn follows_redirects() {
        let (base, h) = serve(vec![
            answer("302 Found", "Location: /real\r\n", b""),
            answer("200 OK", "", b"moved"),
        ]);
        let mut out = Vec::new();
        client().download(&format!("{base}/old"), &mut out).unwrap();
        assert_eq!(out, b"moved");
        assert_eq!(h.join().unwrap()[1], "GET /real HTTP/1.1");
    }

    #[test]
    fn not_found_names_the_url_without_credentials() {
        let (base, _h) = serve(vec![answer("404 Not Found", "", b"no such file")]);
        let url = base.replace("http://", "http://user:hunter2@") + "/missing?token=s3cret";
        let e = client().download(&url, &mut Vec::new()).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("404"), "{text}");
        assert!(text.contains("/missing"), "{text}");
        assert!(text.contains("no such file"), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("s3cret"),
            "{text}"
        );
    }

    #[test]
    fn a_truncated_body_is_an_error() {
        let mut r = answer("200 OK", "", b"0123456789");
        r.truncate(r.len() - 4);
        let (base, _h) = serve(vec![r]);
        let e = client()
            .download(&format!("{base}/f"), &mut Vec::new())
            .unwrap_err();
        assert!(e.to_string().contains("/f"), "{e}");
    }

    #[test]
    fn refuses_other_schemes() {
        let e = client()
            .download("ftp://example.com/x", &mut Vec::new())
            .unwrap_err();
        assert!(e.to_string().contains("http://"), "{e}");
    }

    #[test]
    fn parses_imf_fixdates_only() {
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Tue, 29 Feb 2028 23:59:59 GMT"),
            Some(1_835_481_599)
        );
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 PST"), None);
    }
}
