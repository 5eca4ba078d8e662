//! The crate's error type. Every message names the file, program or value involved and says
//! what to do. A guest that ran and did not power off is not an error: see [`crate::Outcome`].

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("unknown architecture {0:?}: use amd64 (x86_64) or arm64 (aarch64)")]
    UnknownArch(String),

    #[error(
        "invalid --mem {0:?}: give a size in MiB like 1024, 1024M or 2G (between 1M and 1024G)"
    )]
    InvalidMemory(String),

    #[error(
        "invalid --timeout {0:?}: give a positive duration like 90s, 2m, 1m30s or 500ms (a bare number is seconds)"
    )]
    InvalidDuration(String),

    #[error("invalid --disk {value:?}: {reason}; use [file=]PATH[,format=raw|qcow2]")]
    InvalidDisk { value: String, reason: &'static str },

    #[error(
        "{path} not found: {name} must name a kernel+initrd output ({name}-kernel, {name}-initrd.img, {name}-cmdline); build an image in the kernel+initrd format first{hint}"
    )]
    OutputMissing {
        path: PathBuf,
        name: String,
        hint: String,
    },

    #[error(
        "{path} not found: {name} must name a {format} output ({expected}); build an image in the {format} format first{hint}"
    )]
    ImageOutputMissing {
        path: PathBuf,
        name: String,
        /// The files looked for.
        expected: String,
        format: &'static str,
        hint: String,
    },

    #[error(
        "no UEFI firmware for {arch} (looked for {tried}): install {package}, or pass --firmware FILE"
    )]
    FirmwareMissing {
        arch: &'static str,
        tried: String,
        package: &'static str,
    },

    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{path} is not UTF-8 text: a kernel command line must be")]
    CmdlineNotText { path: PathBuf },

    #[error("{program} not found: install {package} (./scripts/install-deps) or pass --qemu PATH")]
    QemuNotFound {
        program: String,
        package: &'static str,
    },

    #[error("--accel kvm cannot be used: {reason}; use --accel tcg (or auto)")]
    KvmUnavailable { reason: String },

    #[error("cannot start {program}: {source}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot create a directory for QEMU's control socket: {source}")]
    StateDir {
        #[source]
        source: io::Error,
    },

    #[error("cannot talk to QEMU through its control socket {socket}: {detail}")]
    Qmp { socket: PathBuf, detail: String },

    #[error("waiting for {program}: {source}")]
    Wait {
        program: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("cannot watch for signals while QEMU runs: {source}")]
    Signals {
        #[source]
        source: io::Error,
    },
}
