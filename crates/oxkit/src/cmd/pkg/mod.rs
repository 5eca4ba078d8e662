//! `oxkit pkg`: LinuxKit's package commands.
//!
//! LinuxKit puts the flags that decide a package's identity on `pkg` itself (cobra persistent
//! flags), so `pkg --org me show-tag DIR` and `pkg show-tag --org me DIR` mean the same. They
//! live here once, in [`PkgFlags`] (clap `global` arguments), and are turned into settings by
//! [`PkgFlags::resolve_options`] / [`PkgFlags::build_overrides`]. Each subcommand is a sibling
//! file (`show_tag.rs`; `build.rs`, `push.rs`, `manifest.rs` to come) with its own `Args` and a
//! `run` that receives those settings.

mod build;
mod manifest;
mod push;
mod show_tag;

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use oxkit_source::{DEFAULT_BUILD_YML, DEFAULT_HASH_COMMIT, ResolveOptions};

use crate::output::Printer;
use crate::settings::GlobalArgs;

#[derive(Debug, Args)]
#[command(subcommand_required = true, arg_required_else_help = true)]
pub struct PkgArgs {
    #[command(flatten)]
    flags: PkgFlags,
    #[command(subcommand)]
    command: PkgCommand,
}

#[derive(Debug, Subcommand)]
enum PkgCommand {
    /// Build packages into the local store: every architecture, then an index over them
    Build(build::BuildArgs),
    /// Show the tag of one or more packages, computed from their source directories
    ShowTag(show_tag::ShowTagArgs),
    /// Build what the registry lacks and publish: TAG-ARCH images, the index TAG, signatures
    #[command(after_help = push::PUSH_HELP)]
    Push(build::BuildArgs),
    /// Rebuild the index TAG in the registry from the TAG-ARCH images it holds
    #[command(alias = "index")]
    Manifest(manifest::ManifestArgs),
}

/// LinuxKit's `pkg` persistent flags, accepted before or after the subcommand.
#[derive(Debug, Args)]
pub struct PkgFlags {
    /// Override the org (hub user or REGISTRY/PATH prefix) of every package
    #[arg(long, global = true, env = "LINUXKIT_PKG_ORG", value_name = "ORG")]
    org: Option<String>,

    /// Name of the build file in each package directory
    #[arg(long, global = true, value_name = "NAME", default_value = DEFAULT_BUILD_YML)]
    build_yml: String,

    /// Use HASH instead of the hash of the package's sources
    #[arg(long, global = true, value_name = "HASH")]
    hash: Option<String>,

    /// Tag template overriding build.yml's `tag:`; {{.Hash}} is the hash
    #[arg(long, global = true, value_name = "TEMPLATE")]
    tag: Option<String>,

    /// The git commit whose trees are hashed (dirtiness is only checked for HEAD)
    #[arg(long, global = true, value_name = "COMMIT", default_value = DEFAULT_HASH_COMMIT)]
    hash_commit: String,

    /// Hash this directory, a parent of each package directory, instead of the package
    #[arg(long, global = true, value_name = "DIR")]
    hash_path: Option<PathBuf>,

    /// Treat the packages as dirty (adds -dirty-XXXXXXX to the hash)
    #[arg(long, global = true)]
    force_dirty: bool,

    /// Development mode: org is $USER and the hash is "dev" (--org and --hash still win)
    #[arg(long, global = true)]
    dev: bool,

    /// Disable the build cache (overrides build.yml's disable-cache)
    #[arg(long, global = true, conflicts_with = "enable_cache")]
    disable_cache: bool,

    /// Enable the build cache (overrides build.yml's disable-cache)
    #[arg(long, global = true)]
    enable_cache: bool,

    /// Allow network access during the build (overrides build.yml's network)
    #[arg(long, global = true, conflicts_with = "nonetwork")]
    network: bool,

    /// Disallow network access during the build (overrides build.yml's network)
    #[arg(long, global = true)]
    nonetwork: bool,
}

/// Build settings given on the command line, each overriding build.yml when set. Only the
/// build commands use them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildOverrides {
    pub network: Option<bool>,
    pub cache: Option<bool>,
}

impl PkgFlags {
    /// The tag-deciding flags as [`ResolveOptions`]. `--dev` takes the org from `USER`.
    pub fn resolve_options(&self) -> Result<ResolveOptions> {
        let dev_user = if self.dev {
            match std::env::var("USER") {
                Ok(user) if !user.is_empty() => Some(user),
                _ if self.org.is_some() => Some(String::new()), // --org wins; USER unused
                _ => {
                    bail!("--dev makes $USER the org, but USER is not set; set USER or pass --org")
                }
            }
        } else {
            None
        };
        Ok(ResolveOptions {
            org: self.org.clone(),
            hash: self.hash.clone().filter(|h| !h.is_empty()),
            dev_user,
            tag_template: self.tag.clone().filter(|t| !t.is_empty()),
            build_yml: self.build_yml.clone(),
            hash_commit: self.hash_commit.clone(),
            hash_path: self.hash_path.clone(),
            force_dirty: self.force_dirty,
        })
    }

    /// `--network`/`--nonetwork` and `--enable-cache`/`--disable-cache`, when given.
    pub fn build_overrides(&self) -> BuildOverrides {
        let pick = |on: bool, off: bool| match (on, off) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        };
        BuildOverrides {
            network: pick(self.network, self.nonetwork),
            cache: pick(self.enable_cache, self.disable_cache),
        }
    }
}

pub fn run(global: &GlobalArgs, printer: &Printer, args: PkgArgs) -> Result<()> {
    match args.command {
        PkgCommand::ShowTag(a) => show_tag::run(global, printer, &args.flags, a),
        PkgCommand::Build(a) => build::run(global, printer, &args.flags, a),
        PkgCommand::Push(a) => push::run(global, printer, &args.flags, a),
        PkgCommand::Manifest(a) => manifest::run(global, printer, &args.flags, a),
    }
}
