//! A fault-injecting HTTP/1.1 proxy for tests: it sits between the client and a real registry,
//! parses just enough HTTP (request line, headers, `Content-Length` bodies) and, per request,
//! forwards it, answers it itself (500, 429, an HTML page, a token service), drops the
//! connection, forwards only part of the body, loses the answer, truncates or corrupts it.
//!
//! Every connection carries one request (`Connection: close` both ways), which keeps the
//! parsing trivial and makes "drop the connection" mean exactly one request.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request as the rule sees it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or(&self.target)
    }

    pub fn is_blob_get(&self) -> bool {
        self.method == "GET" && self.path().contains("/blobs/sha256:")
    }

    pub fn is_upload(&self) -> bool {
        self.path().contains("/blobs/uploads/")
    }
}

/// What to do with a request.
#[derive(Debug, Clone)]
pub enum Action {
    Forward,
    /// Answer without asking the registry.
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Close the connection without forwarding or answering.
    Drop,
    /// Forward the request head and this many body bytes, then close both sides.
    ForwardPartial(usize),
    /// Forward, then close without passing the answer on (the answer is lost).
    LoseResponse,
    /// Forward, pass on the head and only this many body bytes, then close.
    Truncate(usize),
    /// Forward, flip one byte in the middle of the answer's body.
    Corrupt,
    /// Wait, then forward (to make requests overlap).
    Delay(Duration),
}

impl Action {
    pub fn status(status: u16) -> Self {
        Self::Respond {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: format!(r#"{{"errors":[{{"code":"UNKNOWN","message":"injected {status}"}}]}}"#)
                .into_bytes(),
        }
    }
}

/// One request the proxy handled.
#[derive(Debug, Clone)]
pub struct Entry {
    pub method: String,
    pub target: String,
    pub action: String,
    pub status: Option<u16>,
    pub body_len: usize,
}

type Rule = Box<dyn FnMut(&Req) -> Action + Send>;

struct State {
    upstream: SocketAddr,
    rule: Mutex<Rule>,
    log: Mutex<Vec<Entry>>,
    in_flight_uploads: AtomicUsize,
    max_in_flight_uploads: AtomicUsize,
    stop: AtomicBool,
}

pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl Proxy {
    pub fn start(upstream: SocketAddr, rule: impl FnMut(&Req) -> Action + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let state = Arc::new(State {
            upstream,
            rule: Mutex::new(Box::new(rule)),
            log: Mutex::new(Vec::new()),
            in_flight_uploads: AtomicUsize::new(0),
            max_in_flight_uploads: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = handle(&st, conn);
                });
            }
        });
        Self { addr, state }
    }

    /// `127.0.0.1:PORT` of the proxy.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn log(&self) -> Vec<Entry> {
        self.state.log.lock().unwrap().clone()
    }

    pub fn count(&self, f: impl Fn(&Entry) -> bool) -> usize {
        self.log().iter().filter(|e| f(e)).count()
    }

    pub fn max_in_flight_uploads(&self) -> usize {
        self.state.max_in_flight_uploads.load(Ordering::SeqCst)
    }

    pub fn set_rule(&self, rule: impl FnMut(&Req) -> Action + Send + 'static) {
        *self.state.rule.lock().unwrap() = Box::new(rule);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// A request or status line and its headers.
type Head = (String, Vec<(String, String)>);

fn read_head(r: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut first = String::new();
    if r.read_line(&mut first)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok(Some((first.trim_end().to_string(), headers)))
}

fn write_head(
    w: &mut impl Write,
    first: &str,
    headers: &[(String, String)],
) -> std::io::Result<()> {
    let mut s = format!("{first}\r\n");
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("connection") || k.eq_ignore_ascii_case("keep-alive") {
            continue;
        }
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("Connection: close\r\n\r\n");
    w.write_all(s.as_bytes())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        401 => "Unauthorized",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn handle(st: &State, client: TcpStream) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let Some((first, headers)) = read_head(&mut reader)? else {
        return Ok(());
    };
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let body_len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    assert!(
        !headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")),
        "the test proxy handles Content-Length bodies only"
    );
    let req = Req {
        method: method.clone(),
        target: target.clone(),
        headers: headers.clone(),
        body_len,
    };
    let upload = req.is_upload() && (method == "PATCH" || method == "PUT");
    if upload {
        let now = st.in_flight_uploads.fetch_add(1, Ordering::SeqCst) + 1;
        st.max_in_flight_uploads.fetch_max(now, Ordering::SeqCst);
    }
    let mut action = (st.rule.lock().unwrap())(&req);
    if let Action::Delay(d) = action {
        std::thread::sleep(d);
        action = Action::Forward;
    }
    let kind = format!("{action:?}")
        .split(['(', ' ', '{'])
        .next()
        .unwrap_or("")
        .to_string();
    // Logged (and counted out of flight) before the answer reaches the client, so a test that
    // has its answer also sees the entry. Every path through `run` calls it once.
    let record = |status: Option<u16>| {
        if upload {
            st.in_flight_uploads.fetch_sub(1, Ordering::SeqCst);
        }
        st.log.lock().unwrap().push(Entry {
            method: method.clone(),
            target: target.clone(),
            action: kind.clone(),
            status,
            body_len,
        });
    };
    let result = run(
        st,
        &req,
        &first,
        &headers,
        &mut reader,
        &client,
        &action,
        &record,
    );
    let _ = client.shutdown(Shutdown::Both);
    result
}

#[allow(clippy::too_many_arguments)]
fn run(
    st: &State,
    req: &Req,
    first: &str,
    headers: &[(String, String)],
    reader: &mut BufReader<TcpStream>,
    client: &TcpStream,
    action: &Action,
    record: &dyn Fn(Option<u16>),
) -> std::io::Result<()> {
    let mut client_w = client.try_clone()?;
    match action {
        Action::Drop => {
            record(None);
            return Ok(());
        }
        Action::Respond {
            status,
            headers,
            body,
        } => {
            // Consume the request body so the client is not cut off mid-send.
            std::io::copy(
                &mut reader.by_ref().take(req.body_len as u64),
                &mut std::io::sink(),
            )?;
            let mut h = headers.clone();
            h.push(("Content-Length".into(), body.len().to_string()));
            record(Some(*status));
            write_head(
                &mut client_w,
                &format!("HTTP/1.1 {status} {}", reason(*status)),
                &h,
            )?;
            client_w.write_all(body)?;
            return Ok(());
        }
        _ => {}
    }
    let mut up = TcpStream::connect(st.upstream)?;
    up.set_read_timeout(Some(Duration::from_secs(60)))?;
    // The registry behind is anonymous; the proxy may have played the auth layer.
    let fwd: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("authorization"))
        .cloned()
        .collect();
    write_head(&mut up, first, &fwd)?;
    if let Action::ForwardPartial(n) = action {
        let n = (*n).min(req.body_len) as u64;
        std::io::copy(&mut reader.by_ref().take(n), &mut up)?;
        up.flush()?;
        std::thread::sleep(Duration::from_millis(50));
        let _ = up.shutdown(Shutdown::Both);
        record(None);
        return Ok(());
    }
    std::io::copy(&mut reader.by_ref().take(req.body_len as u64), &mut up)?;
    up.flush()?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    if let Action::LoseResponse = action {
        record(None);
        return Ok(());
    }
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(resp.len());
    let (head, body) = resp.split_at(split);
    let mut hr = BufReader::new(head);
    let Some((status_line, resp_headers)) = read_head(&mut hr)? else {
        record(None);
        return Ok(());
    };
    let status: Option<u16> = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok());
    record(status);
    write_head(&mut client_w, &status_line, &resp_headers)?;
    match action {
        Action::Truncate(n) => {
            client_w.write_all(&body[..(*n).min(body.len())])?;
            client_w.flush()?;
        }
        Action::Corrupt => {
            let mut b = body.to_vec();
            if !b.is_empty() {
                let i = b.len() / 2;
                b[i] ^= 0xff;
            }
            client_w.write_all(&b)?;
        }
        _ => client_w.write_all(body)?,
    }
    Ok(())
}
