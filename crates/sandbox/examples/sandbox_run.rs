//! Runs one command in a root filesystem through `NamespaceSandbox`, for trying the sandbox by
//! hand (as root, or as a normal user to exercise the user-namespace path):
//!
//!     sandbox_run [--host-network] [--arch ARCH] [--user USER] ROOTFS CMD [ARG...]

use std::io::Write;

use oxkit_sandbox::{NamespaceSandbox, Network, RunSpec, Sandbox};

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let mut network = Network::None;
    let mut arch = None;
    let mut user = None;
    while let Some(flag) = args.peek().filter(|a| a.starts_with("--")).cloned() {
        args.next();
        match flag.as_str() {
            "--host-network" => network = Network::Host,
            "--arch" => arch = args.next(),
            "--user" => user = args.next(),
            other => {
                eprintln!("unknown flag {other}");
                std::process::exit(2);
            }
        }
    }
    let (Some(rootfs), argv) = (args.next(), args.collect::<Vec<_>>()) else {
        eprintln!(
            "usage: sandbox_run [--host-network] [--arch ARCH] [--user USER] ROOTFS CMD [ARG...]"
        );
        std::process::exit(2);
    };
    let mut spec = RunSpec::new(rootfs, argv);
    spec.network = network;
    spec.arch = arch;
    spec.user = user;
    let mut stdout = std::io::stdout();
    match NamespaceSandbox::new().run(&spec, &mut |b: &[u8]| {
        let _ = stdout.write_all(b);
        let _ = stdout.flush();
    }) {
        Ok(outcome) => {
            eprintln!(
                "{} in {:.1} ms; created mount points: {:?}",
                outcome.status,
                outcome.duration.as_secs_f64() * 1000.0,
                outcome.created_mountpoints
            );
            std::process::exit(outcome.status.shell_code());
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(125);
        }
    }
}
