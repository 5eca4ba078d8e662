//! `oxkit-init`: the PID 1 of the Linux images oxkit assembles. It replaces LinuxKit's init +
//! runc + containerd with one small static binary that runs OCI runtime bundles itself.
//!
//! # Image layout it expects
//!
//! The initrd root (LinuxKit's layout, written by `oxkit-assembly`):
//!
//! ```text
//! /init                              this binary (or /sbin/init; the kernel runs /init)
//! /etc/hostname                      optional; else linuxkit-<MAC of eth0>
//! /etc/modules                       optional: modules to load at boot, one a line, # comments
//! /etc/resolv.conf -> /run/...       optional symlink; its target is created empty
//! /lib/modules/<uname -r>/**/*.ko    kernel modules, uncompressed (no modules.dep needed)
//! /containers/onboot/NNN-name/       run in name order, each to completion
//! /containers/services/name/         started after onboot, restarted when they exit
//! /containers/onshutdown/NNN-name/   run in name order at shutdown
//! /containers/volumes/NAME/          lower/ + merged/ (+ tmp/ when writable), set up before onboot
//! ```
//!
//! Each bundle directory holds `config.json` (an OCI runtime spec as `runc spec` or LinuxKit's
//! `ConfigToOCI` writes it; `root.path` is relative to the bundle, normally `rootfs`) and either
//! `rootfs/` (read-only container) or `lower/` + `tmp/` + `rootfs/` (writable container: the
//! init mounts a tmpfs on `tmp/` and an overlay of `lower/` with `tmp/upper`, `tmp/work` on
//! `rootfs/`). An optional LinuxKit `runtime.json` (`mounts`, `mkdir`, `cgroups`, `bindNS`)
//! replaces that default: its mounts are done on the host before the first start, exactly as
//! LinuxKit's `service` tool does (`interfaces` are not supported). Volumes are mounted as
//! LinuxKit's volume init does: `lower/` overlaid on `merged/` with upper and work directories on
//! a tmpfs at `tmp/`, or, without `tmp/`, `lower/` bound read-only on `merged/`; containers bind
//! `merged/`.
//!
//! Modules must be uncompressed `.ko` files: Debian 12's cloud kernel ships them so and has no
//! CONFIG_MODULE_DECOMPRESS; the init carries no decompressor, so an assembler that takes
//! modules from a kernel packaging `.ko.xz`/`.ko.zst` must decompress them.
//!
//! # Kernel command line
//!
//! - `oxkit.debug` — also log module loads, overlays, coldplug timing.
//! - `oxkit.modules=a,b` — load these modules (and their dependencies) at boot.
//! - `oxkit.coldplug=0` — do not load modules for the devices found in `/sys/bus`.
//! - `linuxkit.unified_cgroup_hierarchy=0` — cgroup v1 hierarchies instead of cgroup2.
//!
//! # What it logs
//!
//! Everything goes to the console (stderr of PID 1), one line per event:
//!
//! ```text
//! oxkit-init: oxkit-init 0.1.0 starting
//! oxkit-init: onboot 001-dhcpcd: started (pid 52)
//! 001-dhcpcd: <each line the container writes, prefixed with its directory name>
//! oxkit-init: onboot 001-dhcpcd: done
//! oxkit-init: onboot 002-bad: failed: /containers/onboot/002-bad/config.json:3:14: expected ...
//! oxkit-init: onboot 003-x: failed: cannot start: executable "nope" not found in PATH /usr/bin:/bin
//! oxkit-init: onboot 004-y: failed: exited with status 2
//! oxkit-init: service getty: ignoring unsupported linux.seccomp; process.terminal (...)
//! oxkit-init: service getty: exited with status 1; restarting in 2s (restart 2)
//! oxkit-init: signal 12: power off
//! oxkit-init: power off requested; shutting down
//! ```
//!
//! # Stopping
//!
//! BusyBox init's signals, which busybox `poweroff`/`reboot`/`halt` send to PID 1: SIGUSR2 (and
//! SIGPWR) power off, SIGTERM reboots, SIGUSR1 halts, SIGINT (Ctrl-Alt-Del) reboots. Then the
//! onshutdown bundles run, services get SIGTERM and, 5 s later, SIGKILL; everything left is
//! killed, data filesystems unmounted, and the machine powered off or rebooted. A container
//! with CAP_SYS_BOOT in the host pid namespace may also call reboot(2) itself (LinuxKit's
//! `poweroff` package does): nothing in the init is needed for that.
//!
//! # Structure
//!
//! The library is everything but `main.rs`: [`supervisor`] (onboot, services, onshutdown, the
//! event loop) works on any directory and needs no PID 1, so tests run it on a normal host as
//! root; [`boot`] is what only PID 1 does. Run with a PID other than 1, the binary supervises
//! `--root DIR` (default `/`) until SIGTERM/SIGINT, then runs the onshutdown bundles and exits.

#![allow(unsafe_code)]

pub mod backoff;
pub mod boot;
pub mod bundle;
pub mod caps;
pub mod child;
pub mod cmdline;
pub mod launch;
pub mod log;
pub mod modules;
pub mod mountopt;
pub mod plan;
pub mod rootpath;
pub mod spec;
pub mod supervisor;

use std::ffi::OsString;

/// The binary's entry point: PID 1 boots the machine and never returns; any other PID
/// supervises a directory and returns an exit code.
pub fn main_entry(args: Vec<OsString>) -> i32 {
    if rustix::process::getpid().is_init() {
        boot::run();
    }
    let mut root = std::path::PathBuf::from("/");
    let mut debug = false;
    let mut it = args.into_iter().skip(1);
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--root") => match it.next() {
                Some(r) => root = r.into(),
                None => return usage("--root needs a directory"),
            },
            Some("--debug") => debug = true,
            Some("-h" | "--help") => {
                println!(
                    "usage: oxkit-init [--root DIR] [--debug]\n\nAs PID 1: boots the machine. Otherwise: runs the bundles under DIR/containers until SIGTERM or SIGINT."
                );
                return 0;
            }
            _ => return usage(&format!("unexpected argument {a:?}")),
        }
    }
    let log = log::Log::stderr(debug);
    let mut options = supervisor::Options::new(root);
    options.signals = true;
    // Orphans of host-pid containers reparent to us only as a subreaper.
    options.reap_orphans =
        rustix::process::set_child_subreaper(Some(rustix::process::getpid())).is_ok();
    match supervisor::Supervisor::new(options, log.clone(), None) {
        Ok((sup, _controller)) => {
            sup.run();
            0
        }
        Err(e) => {
            log.info(format_args!("cannot start: {e}"));
            1
        }
    }
}

fn usage(message: &str) -> i32 {
    eprintln!("oxkit-init: {message}\nusage: oxkit-init [--root DIR] [--debug]");
    2
}
