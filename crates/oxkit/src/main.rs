//! The `oxkit` binary: command-line definitions, settings resolution, printing and exit codes.
//!
//! This is the only crate that prints, reads the environment or uses `anyhow`. Library crates
//! return typed errors; here they become one `error: ...` line and exit code 1. Usage errors
//! (clap) exit with 2.

mod cmd;
mod output;
mod secrets;
mod settings;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::Printer;
use crate::settings::GlobalArgs;

/// Build minimal, immutable Linux systems from LinuxKit packages, without a Docker daemon.
#[derive(Debug, Parser)]
#[command(name = "oxkit", version, propagate_version = true, arg_required_else_help = true)]
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
    /// Create and import cosign-compatible signing keys
    Key(cmd::key::KeyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let printer = Printer::new(&cli.global);
    settings::init_logging(&cli.global);
    let result = match cli.command {
        Command::Pkg(args) => cmd::pkg::run(&cli.global, &printer, args),
        Command::Cache(args) => cmd::cache::run(&cli.global, &printer, args),
        Command::Image(args) => cmd::image::run(&cli.global, &printer, args),
        Command::Key(args) => cmd::key::run(&cli.global, &printer, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            printer.error(&e);
            ExitCode::from(1)
        }
    }
}
