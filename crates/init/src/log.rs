//! The init's only output channel: whole lines to the console (or, in tests, to a buffer).
//! The init's own messages read `oxkit-init: <what happened>`; container output reads
//! `<container>: <line>`. Each line is written with a single write so lines from different
//! sources never interleave mid-line.
//!
//! Nothing here may block on anything but the sink, or fail: a console that cannot be written
//! is not a reason for PID 1 to stop.

use std::fmt::Display;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Where the lines go, shared by clones.
#[derive(Clone)]
pub struct Log {
    sink: Arc<Mutex<Box<dyn Write + Send>>>,
    debug: bool,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("debug", &self.debug)
            .finish_non_exhaustive()
    }
}

/// Lines longer than this are split, so one runaway writer cannot make the init buffer without
/// bound.
pub const MAX_LINE: usize = 4096;

impl Log {
    pub fn new(sink: Box<dyn Write + Send>, debug: bool) -> Self {
        Self {
            sink: Arc::new(Mutex::new(sink)),
            debug,
        }
    }

    /// Standard error, which is the console for PID 1.
    pub fn stderr(debug: bool) -> Self {
        Self::new(Box::new(std::io::stderr()), debug)
    }

    pub fn debug_enabled(&self) -> bool {
        self.debug
    }

    /// One `oxkit-init: ...` line.
    pub fn info(&self, message: impl Display) {
        self.line(format!("oxkit-init: {message}\n").as_bytes());
    }

    /// Like [`Log::info`], only with `oxkit.debug`.
    pub fn debug(&self, message: impl Display) {
        if self.debug {
            self.info(message);
        }
    }

    /// One line of a container's output, prefixed with its name.
    pub fn output(&self, name: &str, line: &[u8]) {
        let mut buf = Vec::with_capacity(name.len() + line.len() + 3);
        buf.extend_from_slice(name.as_bytes());
        buf.extend_from_slice(b": ");
        buf.extend_from_slice(line);
        buf.push(b'\n');
        self.line(&buf);
    }

    fn line(&self, bytes: &[u8]) {
        // A poisoned lock only means another thread panicked mid-write; the sink is still usable.
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        let _ = sink.write_all(bytes);
        let _ = sink.flush();
    }
}

/// A sink that keeps everything, for tests and for callers that want to inspect the log.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything written so far, lossily decoded.
    pub fn text(&self) -> String {
        let buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Splits a container's output stream into lines for [`Log::output`]. Carriage returns at line
/// ends are dropped (programs that think they talk to a terminal write `\r\n`).
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; calls `emit` for each complete line.
    pub fn feed(&mut self, mut bytes: &[u8], mut emit: impl FnMut(&[u8])) {
        while let Some(nl) = bytes.iter().position(|b| *b == b'\n') {
            let (head, rest) = bytes.split_at(nl);
            if self.partial.is_empty() {
                emit(trim_cr(head));
            } else {
                self.partial.extend_from_slice(head);
                emit(trim_cr(&self.partial));
                self.partial.clear();
            }
            bytes = rest.get(1..).unwrap_or_default();
        }
        self.partial.extend_from_slice(bytes);
        while self.partial.len() >= MAX_LINE {
            let rest = self.partial.split_off(MAX_LINE);
            emit(&self.partial);
            self.partial = rest;
        }
    }

    /// End of stream: emits what is left without a newline.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            emit(trim_cr(&self.partial));
            self.partial.clear();
        }
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<String> {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, |l| out.push(String::from_utf8_lossy(l).into_owned()));
        }
        s.finish(|l| out.push(String::from_utf8_lossy(l).into_owned()));
        out
    }

    #[test]
    fn lines_are_joined_across_reads_and_split_within_them() {
        assert_eq!(split(&[b"a\nb", b"c\r\n\nd"]), ["a", "bc", "", "d"]);
        assert_eq!(split(&[b"x\n"]), ["x"]);
        assert!(split(&[]).is_empty());
    }

    #[test]
    fn long_lines_are_cut() {
        let long = vec![b'y'; MAX_LINE * 2 + 10];
        let out = split(&[&long, b"\n"]);
        assert_eq!(
            out.iter().map(String::len).collect::<Vec<_>>(),
            [MAX_LINE, MAX_LINE, 10]
        );
    }

    #[test]
    fn log_lines_are_prefixed() {
        let cap = Capture::new();
        let log = Log::new(Box::new(cap.clone()), false);
        log.info("hello");
        log.debug("hidden");
        log.output("getty", b"login:");
        assert_eq!(cap.text(), "oxkit-init: hello\ngetty: login:\n");
    }
}
