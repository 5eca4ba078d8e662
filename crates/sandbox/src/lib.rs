//! Runs one command in a root filesystem inside fresh Linux namespaces, the way Docker/BuildKit
//! run a Dockerfile `RUN` step; plus the host checks behind `oxkit doctor` (namespaces,
//! binfmt_misc/QEMU, KVM, cgroups). It knows nothing about images or layers: the builder hands
//! it a directory and a command, and gets back an exit status and the output.
//!
//! Its `unsafe` code is a few raw system calls (the clone, the child's setup, the KVM probe's
//! ioctl); those the init needs too live once in `oxkit-linux`. Every host side effect the
//! sandboxed child performs (mount, pivot_root, mknod, capset, ...) goes through the
//! `Syscalls` trait (module `syscall`), so the setup sequence is unit-tested against a recording
//! fake without root.
//!
//! # What a run looks like
//!
//! [`NamespaceSandbox::run`] clones one child in new mount, PID, UTS and IPC namespaces (and a
//! network namespace holding only a loopback interface, unless [`Network::Host`]). The child:
//! makes every mount private (nothing propagates back to the host), bind-mounts the root
//! filesystem onto itself, mounts `/proc`, a small `/dev` (null, zero, full, random, urandom,
//! tty, devpts with `ptmx`, shm, the `fd`/`stdin`/`stdout`/`stderr` links), a read-only `/sys`,
//! bind-mounts `/etc/resolv.conf` (the host's), `/etc/hosts` and `/etc/hostname` read-only
//! (never written into the root filesystem), applies the extra [`Mount`]s, masks the sensitive
//! parts of `/proc` like Docker, `pivot_root`s into the root filesystem (falling back to
//! `chroot` where `pivot_root` is impossible, e.g. on an initramfs), sets the hostname, switches
//! to the requested user, keeps only Docker's default capability set and `exec`s the command as
//! PID 1 of its namespace: when it exits, everything it started dies with it. Stdin is
//! `/dev/null`; stdout and stderr go through one pipe to the caller's `output` callback.
//!
//! Mount points the root filesystem lacked (`/proc`, `/dev`, `/etc/hosts`, a cache mount's
//! target...) are created before the run and listed in [`RunOutcome::created_mountpoints`] so
//! the builder can leave them out of the layer ([`remove_mount_stubs`] removes those still
//! empty).
//!
//! # Host requirements
//!
//! - Linux with mount, PID, UTS, IPC and network namespaces (any distribution kernel).
//! - **Root**, or unprivileged **user namespaces**. As root the sandbox runs with real root
//!   inside; without root it maps the caller to root in a new user namespace (then only `USER`
//!   root and numeric ids mapping to it are available, and device nodes are bind-mounted from the
//!   host instead of created). If neither works the run fails with
//!   [`SandboxError::NoPrivileges`], which says to run as root or enable user namespaces
//!   (`sysctl kernel.unprivileged_userns_clone=1`, `sysctl user.max_user_namespaces=15000`, on
//!   Ubuntu 24.04+ `sysctl kernel.apparmor_restrict_unprivileged_userns=0`).
//! - For a root filesystem of another architecture (`RunSpec::arch`), an enabled `binfmt_misc`
//!   handler for it registered with the `F` (fix-binary) flag, so the interpreter works inside
//!   the root filesystem without copying QEMU in. On Debian: `apt-get install qemu-user-static
//!   binfmt-support`, `mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc`,
//!   `update-binfmts --enable`. [`binfmt::check`] explains precisely what is missing.
//! - No cgroups, no daemon, no network configuration.
//!
//! `oxkit doctor` ([`probe::probe_host`]) reports all of this for the current machine.

#![allow(unsafe_code)]

pub mod binfmt;
mod caps;
mod child;
mod error;
mod namespace;
mod plan;
pub mod probe;
mod process;
mod rootpath;
mod spec;
mod stubs;
pub(crate) mod syscall;
mod user;

pub use caps::{Capabilities, CapabilityError};
pub use error::SandboxError;
pub use namespace::NamespaceSandbox;
pub use spec::{ExitStatus, Mount, MountKind, Network, RunOutcome, RunSpec};
pub use stubs::remove_mount_stubs;
pub use user::UserError;

/// Something that can run a build step. [`NamespaceSandbox`] is the real one; the builder's
/// tests may substitute their own.
pub trait Sandbox {
    /// Runs `spec.argv` in `spec.rootfs` and waits for it. Output (stdout and stderr,
    /// interleaved as written) is handed to `output` as it arrives. A command that runs and fails
    /// is `Ok` with a non-zero [`RunOutcome::status`]; `Err` means the command could not be
    /// started (bad spec, missing privileges or binfmt handler, setup failure, command not found).
    fn run(
        &self,
        spec: &RunSpec,
        output: &mut dyn FnMut(&[u8]),
    ) -> Result<RunOutcome, SandboxError>;
}
