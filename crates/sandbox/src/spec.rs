//! What the builder asks for ([`RunSpec`], [`Mount`]) and what it gets back ([`RunOutcome`]).
//! Plain data: validation happens when a run is prepared, not here.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::caps::Capabilities;

/// BuildKit's hostname for build containers; builds that record the hostname then match
/// `docker build`.
pub const DEFAULT_HOSTNAME: &str = "buildkitsandbox";

/// One command to run in a root filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunSpec {
    /// The stage's root filesystem (a directory on the host). Mount points it lacks are created
    /// and reported in [`RunOutcome::created_mountpoints`].
    pub rootfs: PathBuf,
    /// The command; `argv[0]` is looked up in `PATH` (from `env`, else Docker's default) inside
    /// the root filesystem unless it contains a `/`.
    pub argv: Vec<String>,
    /// `KEY=VALUE` entries, in order. `PATH` and `HOME` are added (Docker's defaults, `HOME` from
    /// the user's `/etc/passwd` entry) when absent.
    pub env: Vec<String>,
    /// Absolute working directory inside the root filesystem; created when missing, like runc.
    pub cwd: String,
    /// `USER`: `uid`, `uid:gid`, `name`, `name:group` (names looked up in the root
    /// filesystem's `/etc/passwd` and `/etc/group`). `None` is root.
    pub user: Option<String>,
    pub network: Network,
    pub hostname: String,
    /// Target architecture in Go/OCI spelling (`arm64`, `riscv64`; `Platform::arch()`). `None`
    /// or the host's own architecture runs natively; another one needs a binfmt_misc handler.
    pub arch: Option<String>,
    /// Extra mounts (`RUN --mount=...`), applied after the standard ones, parents first.
    pub mounts: Vec<Mount>,
    /// Capability set for the command; `None` is Docker's default
    /// ([`Capabilities::docker_default`]).
    pub capabilities: Option<Capabilities>,
}

impl RunSpec {
    /// A spec with Docker's defaults: root, `/` as working directory, no network, hostname
    /// `buildkitsandbox`, native architecture, no extra mounts, default capabilities.
    pub fn new(rootfs: impl Into<PathBuf>, argv: Vec<String>) -> Self {
        Self {
            rootfs: rootfs.into(),
            argv,
            env: Vec::new(),
            cwd: "/".to_string(),
            user: None,
            network: Network::None,
            hostname: DEFAULT_HOSTNAME.to_string(),
            arch: None,
            mounts: Vec::new(),
            capabilities: None,
        }
    }
}

/// Network access for the command.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Network {
    /// A new network namespace with only a loopback interface (up).
    #[default]
    None,
    /// The host's network namespace (LinuxKit's `network: true`, `RUN --network=host`).
    Host,
}

/// An extra mount inside the root filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// Absolute path inside the root filesystem; created (and reported) when missing.
    pub target: String,
    pub kind: MountKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountKind {
    /// A host file or directory (`--mount=type=bind`, `type=cache`, `type=secret`).
    Bind { source: PathBuf, readonly: bool },
    /// An empty tmpfs (`--mount=type=tmpfs`); `size_bytes` `None` is the kernel's default.
    Tmpfs { size_bytes: Option<u64> },
}

impl Mount {
    pub fn bind(source: impl Into<PathBuf>, target: impl Into<String>, readonly: bool) -> Self {
        Self {
            target: target.into(),
            kind: MountKind::Bind {
                source: source.into(),
                readonly,
            },
        }
    }

    pub fn tmpfs(target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            kind: MountKind::Tmpfs { size_bytes: None },
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutcome {
    pub status: ExitStatus,
    /// Paths inside the root filesystem (absolute, e.g. `/proc`, `/etc/hosts`) that did not
    /// exist and were created as mount points, parents before children. They belong to the
    /// sandbox, not to the step: leave them out of the layer (see
    /// [`crate::remove_mount_stubs`]).
    pub created_mountpoints: Vec<PathBuf>,
    /// Wall time of the whole run: preparation, namespace setup, the command, teardown.
    pub duration: Duration,
}

/// The command's exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl ExitStatus {
    pub fn success(self) -> bool {
        self == Self::Code(0)
    }

    /// The code a shell would report: the exit code, or 128 + the signal number.
    pub fn shell_code(self) -> i32 {
        match self {
            Self::Code(c) => c,
            Self::Signal(s) => 128 + s,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Code(c) => write!(f, "exit code {c}"),
            Self::Signal(s) => match signal_name(s) {
                Some(name) => write!(f, "killed by signal {s} ({name})"),
                None => write!(f, "killed by signal {s}"),
            },
        }
    }
}

fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_reads_like_a_shell() {
        assert_eq!(ExitStatus::Code(3).to_string(), "exit code 3");
        assert_eq!(
            ExitStatus::Signal(9).to_string(),
            "killed by signal 9 (SIGKILL)"
        );
        assert_eq!(ExitStatus::Signal(9).shell_code(), 137);
        assert!(ExitStatus::Code(0).success());
        assert!(!ExitStatus::Signal(0).success());
    }
}
