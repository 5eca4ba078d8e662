//! The `oxkit` binary: command-line definitions, settings resolution, printing and exit codes.
//!
//! This is the only crate that prints, reads the environment or uses `anyhow`. Library crates
//! return typed errors; here they become one `error: ...` line and exit code 1. Usage errors
//! (clap) exit with 2.

mod cmd;
mod output;
mod secrets;
mod settings;
mod signing_key;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::Printer;
use crate::settings::GlobalArgs;

/// Build minimal, immutable Linux systems from LinuxKit packages, without a Docker daemon.
#[derive(Debug, Parser)]
#[command(
    name = "oxkit",
    version,
    propagate_version = true,
    arg_required_else_help = true
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build, tag and publish packages (LinuxKit's `pkg`)
    Pkg(cmd::pkg::PkgArgs),
    /// Inspect and manage the local OCI image store
    Cache(cmd::cache::CacheArgs),
    /// Create images in the local store
    Image(cmd::image::ImageArgs),
    /// Build a bootable system from image YAML (LinuxKit's `build`): kernel+initrd, tar, ...
    Build(cmd::build::BuildArgs),
    /// Create and import cosign-compatible signing keys; unlock one for a session
    Key(cmd::key::KeyArgs),
    /// Report what this host can do: namespaces, overlayfs, binfmt/QEMU, KVM, cgroups
    Doctor(cmd::doctor::DoctorArgs),
    /// Boot images (LinuxKit's `run`): `run qemu NAME` boots a kernel+initrd output
    Run(cmd::run::RunArgs),
    /// Log in to a registry (credentials are saved like `docker login` does)
    Login(cmd::login::LoginArgs),
    /// Forget a registry's saved credentials
    Logout(cmd::login::LogoutArgs),
    /// Sign images already in a registry (cosign's format), as `cosign sign --key` does
    Sign(cmd::sign::SignArgs),
    /// Check the cosign signatures of images in a registry with public keys
    Verify(cmd::verify::VerifyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let printer = Printer::new(&cli.global);
    settings::init_logging(&cli.global);
    let result = match cli.command {
        Command::Pkg(args) => cmd::pkg::run(&cli.global, &printer, args),
        Command::Cache(args) => cmd::cache::run(&cli.global, &printer, args),
        Command::Image(args) => cmd::image::run(&cli.global, &printer, args),
        Command::Build(args) => cmd::build::run(&cli.global, &printer, args),
        Command::Key(args) => cmd::key::run(&cli.global, &printer, args),
        Command::Doctor(args) => cmd::doctor::run(&cli.global, &printer, args),
        Command::Run(args) => cmd::run::run(&cli.global, &printer, args),
        Command::Login(args) => cmd::login::login(&cli.global, &printer, args),
        Command::Logout(args) => cmd::login::logout(&cli.global, &printer, args),
        Command::Sign(args) => cmd::sign::run(&cli.global, &printer, args),
        Command::Verify(args) => cmd::verify::run(&cli.global, &printer, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            printer.error(&e);
            ExitCode::from(1)
        }
    }
}
