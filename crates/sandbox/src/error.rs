//! The crate's error type: every message names the path, user, architecture or setup step
//! involved and says what to do about it.

use std::io;
use std::path::PathBuf;

use crate::binfmt::BinfmtError;
use crate::user::UserError;

/// Why a command could not be run. A command that ran and failed is not an error (see
/// [`crate::RunOutcome::status`]).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("invalid run request: {0}")]
    InvalidSpec(String),

    #[error("root filesystem {path} is not a directory: unpack the stage's image there first")]
    RootfsMissing { path: PathBuf },

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("path {path:?} in root filesystem {rootfs}: {reason}")]
    UnsafePath {
        rootfs: PathBuf,
        path: String,
        reason: &'static str,
    },

    #[error(transparent)]
    User(#[from] UserError),

    #[error(transparent)]
    Binfmt(#[from] BinfmtError),

    #[error(
        "cannot create namespaces ({source}): oxkit needs root or unprivileged user namespaces to run build steps; run it as root (sudo), or enable user namespaces: `sysctl kernel.unprivileged_userns_clone=1` (Debian/Ubuntu kernels), `sysctl user.max_user_namespaces=15000`, and on Ubuntu 24.04+ `sysctl kernel.apparmor_restrict_unprivileged_userns=0`"
    )]
    NoPrivileges {
        #[source]
        source: io::Error,
    },

    #[error("cannot map the caller to root in the new user namespace ({file}): {source}")]
    UserNamespaceMap {
        file: String,
        #[source]
        source: io::Error,
    },

    #[error(
        "user {user:?} (uid {uid}, gid {gid}) does not exist in the user namespace: without root, oxkit maps only the caller to root; run oxkit as root to build steps with USER {user}"
    )]
    UserNotMapped { user: String, uid: u32, gid: u32 },

    #[error("sandbox setup failed while {step}: {source}")]
    Setup {
        step: String,
        #[source]
        source: io::Error,
    },

    #[error(
        "{program:?} not found in the root filesystem{searched}: install it in an earlier step or use its full path"
    )]
    CommandNotFound { program: String, searched: String },

    #[error("cannot execute {program:?}: {source}{hint}")]
    Exec {
        program: String,
        #[source]
        source: io::Error,
        hint: &'static str,
    },

    #[error("sandbox {action}: {source}")]
    Process {
        action: &'static str,
        #[source]
        source: io::Error,
    },
}

impl SandboxError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn process(action: &'static str, source: impl Into<io::Error>) -> Self {
        Self::Process {
            action,
            source: source.into(),
        }
    }
}
