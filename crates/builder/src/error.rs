//! The crate's error type. A failure inside a Dockerfile names the file and the line of the
//! instruction (`Dockerfile:7: ...`) and says what to do; a failing `RUN` carries its exit status
//! and the tail of its output. This module only describes failures; it decides nothing.

use std::path::{Path, PathBuf};

/// Result alias for this crate.
pub type Result<T, E = BuildError> = std::result::Result<T, E>;

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The Dockerfile could not be parsed.
    #[error(transparent)]
    Parse(#[from] oxkit_spec::dockerfile::DockerfileError),

    /// An instruction could not be carried out.
    #[error("{file}:{line}: {message}")]
    Instruction {
        file: String,
        line: usize,
        message: String,
    },

    /// A `RUN` command ran and failed.
    #[error("{file}:{line}: RUN {command} {status}{}", tail_text(.tail))]
    RunFailed {
        file: String,
        line: usize,
        command: String,
        /// `exited with 2`, `was killed by signal 9 (SIGKILL)`.
        status: String,
        /// The last lines of its output.
        tail: Vec<String>,
    },

    /// Something about the package or its options is wrong (no Dockerfile, bad build arg...).
    #[error("{0}")]
    Package(String),

    #[error(transparent)]
    Store(#[from] oxkit_store::Error),

    #[error(transparent)]
    Source(#[from] oxkit_source::SourceError),

    /// A file system operation on the build's own files failed.
    #[error("cannot {op} {}: {error}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
}

fn tail_text(tail: &[String]) -> String {
    if tail.is_empty() {
        return " (it printed nothing)".to_string();
    }
    let mut s = String::from("; last lines of its output:");
    for line in tail {
        s.push_str("\n  | ");
        s.push_str(line);
    }
    s
}

impl BuildError {
    pub(crate) fn io<'p>(
        op: &'static str,
        path: &'p Path,
    ) -> impl FnOnce(std::io::Error) -> Self + 'p {
        move |error| Self::Io {
            op,
            path: path.to_path_buf(),
            error,
        }
    }
}

/// A failure inside one step, before it is placed at its Dockerfile line.
#[derive(Debug)]
pub(crate) struct StepError(pub(crate) String);

impl StepError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl From<oxkit_store::Error> for StepError {
    fn from(e: oxkit_store::Error) -> Self {
        Self(e.to_string())
    }
}

impl From<BuildError> for StepError {
    fn from(e: BuildError) -> Self {
        Self(e.to_string())
    }
}

impl From<oxkit_spec::dockerfile::ExpandError> for StepError {
    fn from(e: oxkit_spec::dockerfile::ExpandError) -> Self {
        Self(e.to_string())
    }
}

impl From<oxkit_sandbox::SandboxError> for StepError {
    fn from(e: oxkit_sandbox::SandboxError) -> Self {
        Self(e.to_string())
    }
}

/// An I/O failure inside a step, naming the path.
pub(crate) fn io_step<'p>(
    op: &'static str,
    path: &'p Path,
) -> impl FnOnce(std::io::Error) -> StepError + 'p {
    move |e| StepError(format!("cannot {op} {}: {e}", path.display()))
}
