//! The printer: the only place that writes to the terminal. Data goes to stdout (text or,
//! with `--json`, one JSON document); progress, notes and errors go to stderr.

use std::io::{IsTerminal, Write};

use oxkit_publish::{EventSink, PublishEvent};
use serde::Serialize;

use crate::settings::GlobalArgs;

pub struct Printer {
    json: bool,
    quiet: bool,
    stderr_is_tty: bool,
}

impl Printer {
    pub fn new(global: &GlobalArgs) -> Self {
        Self {
            json: global.json,
            quiet: global.quiet,
            stderr_is_tty: std::io::stderr().is_terminal(),
        }
    }

    /// Whether `--json` was asked for.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Whether progress may be drawn as bars (stderr is a terminal and not quiet).
    #[allow(dead_code)] // used by the build progress display
    pub fn is_interactive(&self) -> bool {
        self.stderr_is_tty && !self.quiet
    }

    /// One line of data on stdout (ignored under `--json`: commands emit JSON with [`Self::json`]).
    pub fn data(&self, line: impl AsRef<str>) {
        if !self.json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", line.as_ref());
        }
    }

    /// A JSON document on stdout (only under `--json`).
    pub fn json<T: Serialize>(&self, value: &T) {
        if self.json {
            let mut out = std::io::stdout().lock();
            match serde_json::to_string_pretty(value) {
                Ok(s) => {
                    let _ = writeln!(out, "{s}");
                }
                Err(e) => self.warn(format!("cannot encode JSON output: {e}")),
            }
        }
    }

    /// A progress or status line on stderr (suppressed by `--quiet`).
    pub fn status(&self, line: impl AsRef<str>) {
        if !self.quiet {
            let _ = writeln!(std::io::stderr().lock(), "{}", line.as_ref());
        }
    }

    /// A warning on stderr, shown even in JSON mode.
    pub fn warn(&self, line: impl AsRef<str>) {
        let _ = writeln!(std::io::stderr().lock(), "warning: {}", line.as_ref());
    }

    /// The final error: the whole context chain on one line.
    pub fn error(&self, e: &anyhow::Error) {
        let _ = writeln!(std::io::stderr().lock(), "error: {e:#}");
    }
}

/// Publishing events as status lines.
pub struct PublishLines<'p>(pub &'p Printer);

impl EventSink for PublishLines<'_> {
    fn event(&self, event: PublishEvent) {
        match event {
            PublishEvent::ArchPushed { reference, digest } => {
                self.0.status(format!("Pushed {reference} ({})", digest.short()));
            }
            PublishEvent::IndexRetry {
                reference,
                attempt,
                missing,
            } => self.0.status(format!(
                "{reference}: another writer replaced the index (missing {missing}); merging again (attempt {attempt})"
            )),
            PublishEvent::SignatureRetry { reference, attempt } => self.0.status(format!(
                "{reference}: another writer replaced the signatures; adding ours again (attempt {attempt})"
            )),
            _ => {}
        }
    }
}
