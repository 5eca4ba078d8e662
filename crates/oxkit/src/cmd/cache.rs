//! `oxkit cache`: inspect and manage the local OCI image store (LinuxKit's `cache`
//! commands): list, remove, export (OCI archives, `docker load` archives, an image's file
//! system) and import OCI archives, garbage-collect, check.
//!
//! Only argument handling and printing live here; the work is in `oxkit-store`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use clap::{Args, Subcommand};
use oxkit_spec::{Platform, Reference};
use oxkit_store::Store;
use oxkit_store::archive;
use serde::Serialize;

use crate::output::Printer;
use crate::settings::GlobalArgs;

#[derive(Debug, Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    command: CacheCommand,
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// List the images in the store (reference, digest, platforms, size)
    Ls,
    /// Remove images, and the blobs no other image uses
    Rm {
        /// Images to remove, as listed by `oxkit cache ls` (any spelling: `alpine` is
        /// `docker.io/library/alpine:latest`)
        #[arg(required = true, value_name = "REF")]
        refs: Vec<String>,
    },
    /// Write images to an OCI archive (readable by `skopeo ... oci-archive:FILE`), an archive
    /// for `docker load`, or one image's file system as a tar
    #[command(after_help = EXPORT_HELP)]
    Export {
        #[arg(required = true, value_name = "REF")]
        refs: Vec<String>,
        /// File to write, or `-` for stdout
        #[arg(short, long, visible_alias = "outfile", value_name = "FILE")]
        output: PathBuf,
        /// What to write
        #[arg(long, value_enum, default_value_t = ExportFormat::OciArchive)]
        format: ExportFormat,
        /// Platform to export, for `docker` and `filesystem` [default: this machine's]
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<String>,
        /// Architecture to export (LinuxKit's flag: the platform linux/ARCH)
        #[arg(long, value_name = "ARCH", conflicts_with = "platform")]
        arch: Option<String>,
        /// For `docker`: the name the image is loaded as [default: REF]
        #[arg(long, value_name = "REF")]
        name: Option<String>,
    },
    /// Load images from an OCI archive (plain, gzip or zstd); every blob is verified and a
    /// damaged archive leaves the store unchanged
    Import {
        /// Archive to read, or `-` for stdin
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Name for the image (when the archive holds exactly one)
        #[arg(long, value_name = "REF")]
        tag: Option<String>,
    },
    /// Remove blobs that no image or build-cache record uses, and leftover temporary files
    Clean {
        /// Only report what would be removed
        #[arg(long)]
        dry_run: bool,
    },
    /// Re-hash every blob and check every image is complete; one line per problem
    Fsck,
    #[command(flatten)]
    Remote(super::cache_remote::RemoteCommand),
}

pub fn run(global: &GlobalArgs, printer: &Printer, args: CacheArgs) -> Result<()> {
    let store = Store::open(global.store_dir()?)?;
    match args.command {
        CacheCommand::Ls => ls(&store, printer),
        CacheCommand::Rm { refs } => rm(&store, printer, &refs),
        CacheCommand::Export {
            refs,
            output,
            format,
            platform,
            arch,
            name,
        } => export(
            &store,
            printer,
            &refs,
            &output,
            format,
            Selection {
                platform,
                arch,
                name,
            },
        ),
        CacheCommand::Import { file, tag } => import(&store, printer, &file, tag.as_deref()),
        CacheCommand::Clean { dry_run } => clean(&store, printer, dry_run),
        CacheCommand::Fsck => fsck(&store, printer),
        CacheCommand::Remote(cmd) => super::cache_remote::run(printer, &store, cmd),
    }
}

fn parse_refs(refs: &[String]) -> Result<Vec<Reference>> {
    refs.iter().map(|r| Ok(Reference::parse(r)?)).collect()
}

/// Bytes as people read them (decimal units, like docker).
pub(crate) fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LsRow {
    reference: String,
    digest: String,
    media_type: String,
    platforms: Vec<String>,
    size: u64,
    complete: bool,
}

fn ls(store: &Store, printer: &Printer) -> Result<()> {
    let rows: Vec<LsRow> = store
        .list()?
        .into_iter()
        .map(|t| {
            let s = store.image_summary(&t.descriptor);
            LsRow {
                reference: if t.name.is_empty() {
                    "<none>".into()
                } else {
                    t.name
                },
                digest: t.descriptor.digest.to_string(),
                media_type: t.descriptor.media_type,
                platforms: s.platforms.iter().map(ToString::to_string).collect(),
                size: s.size,
                complete: s.complete,
            }
        })
        .collect();
    if printer.is_json() {
        printer.json(&rows);
        return Ok(());
    }
    let table: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            [
                r.reference.clone(),
                r.digest.clone(),
                if r.platforms.is_empty() {
                    "-".into()
                } else {
                    r.platforms.join(",")
                },
                if r.complete {
                    human_size(r.size)
                } else {
                    "incomplete".into()
                },
            ]
        })
        .collect();
    let header = ["REFERENCE", "DIGEST", "PLATFORMS", "SIZE"].map(String::from);
    let widths: Vec<usize> = (0..4)
        .map(|i| {
            table
                .iter()
                .chain([&header])
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in std::iter::once(&header).chain(&table) {
        let line = format!(
            "{:w0$}  {:w1$}  {:w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        printer.data(line.trim_end());
    }
    Ok(())
}

#[derive(Serialize)]
struct RmReport {
    removed: Vec<String>,
    blobs_removed: usize,
    freed: u64,
}

fn rm(store: &Store, printer: &Printer, refs: &[String]) -> Result<()> {
    let refs = parse_refs(refs)?;
    let report = store.remove_images(&refs)?;
    for (name, d) in &report.untagged {
        printer.data(format!("removed {name} ({})", d.digest));
    }
    if report.blobs_kept_busy {
        printer.warn(
            "another oxkit process is using the store, so no blobs were deleted; run `oxkit cache clean` later",
        );
    } else {
        printer.status(format!(
            "deleted {} blobs, freed {}",
            report.removed.len(),
            human_size(report.freed)
        ));
    }
    printer.json(&RmReport {
        removed: report.untagged.iter().map(|(n, _)| n.clone()).collect(),
        blobs_removed: report.removed.len(),
        freed: report.freed,
    });
    Ok(())
}

const EXPORT_HELP: &str = "Formats:\n  \
oci-archive  every image named, with all its platforms: an OCI image layout in a tar \
(skopeo's oci-archive:FILE; `oxkit cache import` reads it back)\n  \
docker       one image, one platform, as `docker load` reads it (LinuxKit's default `cache \
export` format, which it calls oci; `--format oci` is accepted); an OCI archive of that image \
too\n  \
filesystem   one image's root file system, its layers flattened (whiteouts applied), as one \
tar (LinuxKit's `--format filesystem`); owners, modes and mtimes as the layers have them\n\n\
The same store content always gives the same bytes. A file is written under a temporary name \
and renamed when complete.";

/// What `cache export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExportFormat {
    /// Every image named, all platforms: an OCI image layout in a tar
    OciArchive,
    /// One platform, for `docker load` (and an OCI archive too)
    #[value(alias = "oci")]
    Docker,
    /// One platform's root file system, flattened, as a tar
    Filesystem,
}

/// Which platform of the image, and its name in a `docker` archive.
struct Selection {
    platform: Option<String>,
    arch: Option<String>,
    name: Option<String>,
}

impl Selection {
    fn platform(&self) -> Result<Platform> {
        Ok(match (&self.platform, &self.arch) {
            (Some(p), _) => p
                .parse()
                .with_context(|| format!("--platform {p:?}: expected OS/ARCH[/VARIANT]"))?,
            (None, Some(a)) => Platform::linux(a).with_context(|| format!("--arch {a:?}"))?,
            (None, None) => Platform::host(),
        })
    }
}

/// Runs `write` on standard output (never a terminal) or on a temporary file next to
/// `output` that becomes `output` only when `write` succeeded.
fn write_output<T>(output: &Path, write: impl FnOnce(&mut dyn Write) -> Result<T>) -> Result<T> {
    if output.as_os_str() == "-" {
        let stdout = std::io::stdout();
        if stdout.is_terminal() {
            bail!("refusing to write a tar archive to a terminal; use -o FILE or redirect stdout");
        }
        let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
        let t = write(&mut out)?;
        out.flush().context("cannot write the archive to stdout")?;
        return Ok(t);
    }
    archive::write_atomically(output, write)
}

fn export(
    store: &Store,
    printer: &Printer,
    refs: &[String],
    output: &Path,
    format: ExportFormat,
    selection: Selection,
) -> Result<()> {
    let refs = parse_refs(refs)?;
    let dest = if output.as_os_str() == "-" {
        "stdout".to_string()
    } else {
        output.display().to_string()
    };
    if format != ExportFormat::OciArchive && refs.len() != 1 {
        bail!(
            "--format {} exports exactly one image ({} given); export them one at a time, or use --format oci-archive",
            format
                .to_possible_value()
                .map(|v| v.get_name().to_string())
                .unwrap_or_default(),
            refs.len()
        );
    }
    if format != ExportFormat::Docker && selection.name.is_some() {
        bail!("--name only applies to --format docker");
    }
    match format {
        ExportFormat::OciArchive => {
            if selection.platform.is_some() || selection.arch.is_some() {
                bail!(
                    "--format oci-archive exports every platform; --platform and --arch apply to --format docker and filesystem"
                );
            }
            let report = write_output(output, |w| Ok(archive::export_archive(store, &refs, w)?))?;
            printer.status(format!(
                "exported {} image(s), {} blobs ({}) to {dest}",
                report.images.len(),
                report.blobs,
                human_size(report.bytes),
            ));
        }
        ExportFormat::Docker => {
            let platform = selection.platform()?;
            let name = match &selection.name {
                Some(n) => {
                    Some(Reference::parse(n).with_context(|| format!("invalid --name {n:?}"))?)
                }
                None => None,
            };
            let report = write_output(output, |w| {
                Ok(archive::export_docker_archive(
                    store,
                    &refs[0],
                    &platform,
                    name.as_ref(),
                    w,
                )?)
            })?;
            printer.status(format!(
                "exported {} [{platform}] ({}, {} blobs, {}) for docker load to {dest}",
                refs[0],
                report.images[0].digest.short(),
                report.blobs,
                human_size(report.bytes),
            ));
        }
        ExportFormat::Filesystem => {
            let platform = selection.platform()?;
            // Held from the lookup on: `cache clean` must not take blobs from under it.
            let _lease = store.lease()?;
            let d = store
                .resolve_platform(&refs[0], &platform)?
                .ok_or_else(|| oxkit_store::Error::RefNotFound {
                    reference: refs[0].to_string(),
                    store: store.root().to_path_buf(),
                })?;
            let scratch = std::env::temp_dir();
            write_output(output, |w| {
                oxkit_assembly::write_filesystem(store, &d, &scratch, w).with_context(|| {
                    format!(
                        "cannot export the file system of {} ({})",
                        refs[0], d.digest
                    )
                })?;
                Ok(())
            })?;
            printer.status(format!(
                "exported the file system of {} [{platform}] ({}) to {dest}",
                refs[0],
                d.digest.short()
            ));
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct ImportRow {
    reference: String,
    digest: String,
}

fn import(
    store: &Store,
    printer: &Printer,
    file: &std::path::Path,
    tag: Option<&str>,
) -> Result<()> {
    let tag = tag.map(Reference::parse).transpose()?;
    let report = if file.as_os_str() == "-" {
        archive::import_archive(store, std::io::stdin().lock(), "stdin", tag.as_ref())?
    } else {
        let f =
            std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
        archive::import_archive(
            store,
            std::io::BufReader::new(f),
            &file.display().to_string(),
            tag.as_ref(),
        )?
    };
    for (r, d) in &report.tagged {
        printer.data(format!("{r} {}", d.digest));
    }
    printer.status(format!(
        "imported {} image(s); {} new blobs ({})",
        report.tagged.len(),
        report.blobs_added,
        human_size(report.bytes_added)
    ));
    printer.json(
        &report
            .tagged
            .iter()
            .map(|(r, d)| ImportRow {
                reference: r.to_string(),
                digest: d.digest.to_string(),
            })
            .collect::<Vec<_>>(),
    );
    Ok(())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CleanReport {
    dry_run: bool,
    blobs: Vec<String>,
    freed: u64,
    temp_files: usize,
}

fn clean(store: &Store, printer: &Printer, dry_run: bool) -> Result<()> {
    let report = store.gc(dry_run)?;
    let verb = if dry_run { "would remove" } else { "removed" };
    for b in &report.removed {
        printer.data(format!("{verb} {} ({})", b.digest, human_size(b.size)));
    }
    printer.status(format!(
        "{verb} {} unused blobs and {} temporary files, {} {}",
        report.removed.len(),
        report.temp_files_removed,
        if dry_run { "freeing" } else { "freed" },
        human_size(report.freed)
    ));
    printer.json(&CleanReport {
        dry_run,
        blobs: report
            .removed
            .iter()
            .map(|b| b.digest.to_string())
            .collect(),
        freed: report.freed,
        temp_files: report.temp_files_removed,
    });
    Ok(())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FsckJson<'a> {
    problems: &'a [String],
    blobs_checked: usize,
    bytes_checked: u64,
}

fn fsck(store: &Store, printer: &Printer) -> Result<()> {
    let report = store.fsck()?;
    for p in &report.problems {
        printer.data(p);
    }
    printer.json(&FsckJson {
        problems: &report.problems,
        blobs_checked: report.blobs_checked,
        bytes_checked: report.bytes_checked,
    });
    if !report.problems.is_empty() {
        bail!(
            "{} problem(s) in the store at {}",
            report.problems.len(),
            store.root().display()
        );
    }
    printer.status(format!(
        "ok: {} blobs ({}) verified in {}",
        report.blobs_checked,
        human_size(report.bytes_checked),
        store.root().display()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1_500), "1.5 kB");
        assert_eq!(human_size(2_000_000), "2.0 MB");
    }
}
