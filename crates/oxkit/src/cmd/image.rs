//! `oxkit image`: create images in the local store. `image import` stores a root
//! filesystem (a directory, or a tar that may be gzip/zstd-compressed) as a one-layer image.
//!
//! SOURCE_DATE_EPOCH is read here (the binary owns the environment) and handed down.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use oxkit_spec::{Platform, Reference};
use oxkit_store::Store;
use oxkit_store::import::{ImportOptions, import_rootfs};
use oxkit_store::layer::Compression;
use serde::Serialize;

use crate::cmd::cache::human_size;
use crate::output::Printer;
use crate::settings::GlobalArgs;

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Store a root filesystem (directory or tar, optionally gzip/zstd) as a one-layer image
    Import(ImportArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CompressionArg {
    Gzip,
    Zstd,
    None,
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// Directory or tar file holding the root filesystem
    #[arg(value_name = "ROOTFS")]
    rootfs: PathBuf,
    /// Name to tag the image with (e.g. `linuxkit/base:dev`)
    #[arg(value_name = "REF")]
    reference: String,
    /// Platform the files are for [default: the host's]
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// Default command: a JSON array (`["/bin/sh","-c","x"]`) or words split on spaces
    #[arg(long, value_name = "CMD")]
    cmd: Option<String>,
    /// Entrypoint, in the same forms as --cmd
    #[arg(long, value_name = "CMD")]
    entrypoint: Option<String>,
    /// Environment variable for containers (repeatable)
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Working directory for containers
    #[arg(short, long, value_name = "DIR")]
    workdir: Option<String>,
    /// User (name, uid or uid:gid) containers run as
    #[arg(short, long, value_name = "USER")]
    user: Option<String>,
    /// Image label (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Layer compression
    #[arg(long, value_enum, default_value = "gzip")]
    compression: CompressionArg,
    /// Creation time and mtime clamp, in seconds since the epoch [default: 0]
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
    source_date_epoch: Option<i64>,
}

pub fn run(global: &GlobalArgs, printer: &Printer, args: ImageArgs) -> Result<()> {
    match args.command {
        ImageCommand::Import(a) => import(global, printer, a),
    }
}

/// `["a","b"]` as JSON, or whitespace-separated words.
fn parse_command(flag: &str, text: &str) -> Result<Vec<String>> {
    let t = text.trim();
    if t.starts_with('[') {
        return serde_json::from_str(t)
            .with_context(|| format!("--{flag} {text:?} is not a JSON array of strings"));
    }
    Ok(t.split_whitespace().map(str::to_string).collect())
}

fn check_kv(flag: &str, kv: &str) -> Result<()> {
    match kv.split_once('=') {
        Some((k, _)) if !k.is_empty() => Ok(()),
        _ => bail!("--{flag} {kv:?} must be KEY=VALUE"),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ImportJson {
    reference: String,
    digest: String,
    platform: String,
    config: String,
    layer: String,
    diff_id: String,
    size: u64,
}

fn import(global: &GlobalArgs, printer: &Printer, a: ImportArgs) -> Result<()> {
    let reference = Reference::parse(&a.reference)?;
    let platform = match &a.platform {
        Some(p) => p.parse::<Platform>()?,
        None => Platform::host(),
    };
    let mut opts = ImportOptions::new(platform.clone());
    opts.epoch = a.source_date_epoch.unwrap_or(0);
    if opts.epoch < 0 {
        bail!(
            "SOURCE_DATE_EPOCH must not be negative (got {})",
            opts.epoch
        );
    }
    opts.compression = match a.compression {
        CompressionArg::Gzip => Compression::Gzip,
        CompressionArg::Zstd => Compression::Zstd,
        CompressionArg::None => Compression::None,
    };
    if let Some(c) = &a.cmd {
        opts.config.cmd = parse_command("cmd", c)?;
    }
    if let Some(e) = &a.entrypoint {
        opts.config.entrypoint = parse_command("entrypoint", e)?;
    }
    for e in &a.env {
        check_kv("env", e)?;
    }
    opts.config.env = a.env.clone();
    for l in &a.labels {
        check_kv("label", l)?;
        if let Some((k, v)) = l.split_once('=') {
            opts.config.labels.insert(k.to_string(), v.to_string());
        }
    }
    opts.config.working_dir = a.workdir.clone().unwrap_or_default();
    opts.config.user = a.user.clone().unwrap_or_default();

    let store = Store::open(global.store_dir()?)?;
    let img = import_rootfs(&store, &a.rootfs, &reference, &opts)?;
    printer.data(img.manifest.digest.as_str());
    printer.status(format!(
        "imported {} as {reference} ({platform}): {} entries, layer {} ({})",
        a.rootfs.display(),
        img.layer.entries,
        img.layer.descriptor.digest.short(),
        human_size(img.layer.descriptor.size)
    ));
    printer.json(&ImportJson {
        reference: reference.to_string(),
        digest: img.manifest.digest.to_string(),
        platform: platform.to_string(),
        config: img.config.digest.to_string(),
        layer: img.layer.descriptor.digest.to_string(),
        diff_id: img.layer.diff_id.to_string(),
        size: img.layer.descriptor.size,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_as_json_or_words() {
        assert_eq!(
            parse_command("cmd", r#"["/bin/sh", "-c", "echo a b"]"#).unwrap(),
            ["/bin/sh", "-c", "echo a b"]
        );
        assert_eq!(
            parse_command("cmd", "/bin/sh -l").unwrap(),
            ["/bin/sh", "-l"]
        );
        assert!(parse_command("cmd", "[1,2]").is_err());
        assert!(check_kv("env", "A=1").is_ok());
        assert!(check_kv("env", "=1").is_err() && check_kv("env", "A").is_err());
    }
}
