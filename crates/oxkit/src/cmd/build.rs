//! `oxkit build`: LinuxKit's `linuxkit build` (formerly `moby build`). Turns image YAML files
//! into a bootable system: `kernel+initrd` by default, `tar`, or `tar-kernel-initrd`.
//!
//! Flags become an output plan and assembly options here (SOURCE_DATE_EPOCH and HOME are read
//! here, the binary owns the environment); the work is `oxkit_assembly`'s.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use oxkit_assembly::{
    AssembleOptions, Config, OutputPlan, RegistryRemote, ResolveOptions, YamlInput, assemble,
    resolve_images, uptodate, write_outputs,
};
use oxkit_source::Resolver;
use oxkit_spec::Platform;
use oxkit_store::Store;
use serde::Serialize;

use super::login::{RegistryArgs, client};
use crate::output::Printer;
use crate::settings::GlobalArgs;

#[derive(Debug, Args)]
#[command(
    after_help = "Formats: kernel+initrd (NAME-kernel, NAME-initrd.img, NAME-cmdline), \
tar (NAME.tar, or -o FILE / -o - for standard output), tar-kernel-initrd (NAME-initrd.tar), \
raw-efi (NAME-efi.img: a GPT disk whose EFI system partition holds the kernel, initrd and \
command line as one unified kernel image, booted by UEFI firmware directly; needs systemd's EFI \
stub, from Debian's systemd-boot-efi or --efi-stub), iso-efi (NAME-efi.iso: an ISO 9660 image \
whose El Torito catalog boots the same unified kernel image on UEFI), iso-efi-initrd \
(NAME-efi-initrd.iso: the same ISO, under LinuxKit's name for it), qcow2-efi \
(NAME-efi.qcow2: the raw-efi disk as a qcow2 image), iso-bios (NAME.iso: a hybrid ISO 9660 \
image whose El Torito catalog, or MBR from a disk, boots ISOLINUX on a PC BIOS, which loads the \
kernel and initrd from it; needs Debian's isolinux and syslinux-common, or --syslinux), raw-bios \
(NAME-bios.img: the same image, as a disk), qcow2-bios (NAME.qcow2: the same as a qcow2 disk), \
vhd (NAME.vhd: the same as a fixed VHD, for Hyper-V and Azure), dynamic-vhd (NAME.vhd: the same \
as a dynamic VHD), vmdk (NAME.vmdk: the same as a VMware sparse disk), aws (NAME.raw: the same raw \
disk, for AWS's VM import), gcp (NAME.img.tar.gz: the same as Compute Engine's disk.raw), \
kernel+squashfs (NAME-kernel, NAME-squashfs.img: the initrd's files as a SquashFS image, \
NAME-cmdline), kernel+erofs (the same with NAME-erofs.img, an EROFS image), kernel+iso (the \
same with NAME.iso, an ISO 9660 image with Rock Ridge and Joliet); \
the BIOS formats are amd64 only. NAME defaults to the last \
YAML file's name without its extension.\n\n\
Images come from the local store, else from their registry (only the platform of --arch). \
Output is reproducible: the same YAML and images give the same bytes (mtimes are \
SOURCE_DATE_EPOCH, or 0). A build whose inputs did not change since the last one leaves the \
outputs as they are."
)]
pub struct BuildArgs {
    /// Image YAML files, merged in order (`-` reads standard input)
    #[arg(required = true, value_name = "FILE.yml")]
    files: Vec<String>,
    /// Output format (repeatable, or comma-separated) [default: kernel+initrd, or tar with -o]
    #[arg(short = 'f', long = "format", value_name = "FORMAT")]
    formats: Vec<String>,
    /// Name of the output files [default: the last YAML file's name]
    #[arg(long, value_name = "NAME", conflicts_with = "output")]
    name: Option<String>,
    /// Directory for the output files [default: the current directory]
    #[arg(long, value_name = "DIR", conflicts_with = "output")]
    dir: Option<PathBuf>,
    /// File for a single streamable output (tar), or `-` for standard output
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<String>,
    /// Architecture to build for [default: this machine's]
    #[arg(long, value_name = "ARCH")]
    arch: Option<String>,
    /// systemd's EFI stub, for raw-efi, iso-efi and qcow2-efi [default: /usr/lib/systemd/boot/efi/linuxx64.efi.stub,
    /// or linuxaa64.efi.stub for arm64]
    #[arg(long, value_name = "FILE")]
    efi_stub: Option<PathBuf>,
    /// Directory holding ISOLINUX's isolinux.bin, ldlinux.c32 and isohdpfx.bin, for the BIOS
    /// formats [default: Debian's /usr/lib/ISOLINUX and /usr/lib/syslinux/modules/bios, else
    /// /usr/share/syslinux]
    #[arg(long, value_name = "DIR")]
    syslinux: Option<PathBuf>,
    /// Print the merged configuration (with @pkg: resolved) and stop; needs no images
    #[arg(long)]
    dry_run: bool,
    /// Do not check image signatures against the YAML's trust policy (loudly)
    #[arg(long)]
    no_verify: bool,
    /// Pull every image from its registry even when the store has it
    #[arg(long)]
    pull: bool,
    /// Time of generated files and the latest mtime any file keeps, in seconds since the
    /// epoch [default: 0]
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
    source_date_epoch: Option<i64>,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BuildJson {
    outputs: Vec<PathBuf>,
    up_to_date: bool,
    images: Vec<ImageJson>,
    unverified: Vec<String>,
}

#[derive(Serialize)]
struct ImageJson {
    reference: String,
    digest: String,
    pulled: bool,
}

fn inputs(files: &[String]) -> Result<Vec<YamlInput>> {
    let mut out = Vec::with_capacity(files.len());
    for f in files {
        if f == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the configuration from standard input")?;
            out.push(YamlInput::Text {
                name: "<stdin>".into(),
                text,
                dir: PathBuf::from("."),
            });
        } else if f.starts_with("http://") || f.starts_with("https://") {
            bail!("{f}: remote YAML files are not supported; download it and pass the file");
        } else {
            out.push(YamlInput::File(PathBuf::from(f)));
        }
    }
    Ok(out)
}

pub fn run(global: &GlobalArgs, printer: &Printer, args: BuildArgs) -> Result<()> {
    // The output plan first: a usage mistake should not wait for images.
    let last = args.files.last().map(String::as_str).unwrap_or("-");
    let mut plan = OutputPlan::new(
        &args.formats,
        args.name.as_deref(),
        args.dir.as_deref(),
        args.output.as_deref(),
        last,
    )
    .map_err(anyhow::Error::msg)?;
    let platform = match &args.arch {
        Some(a) => Platform::linux(a).with_context(|| format!("--arch {a}"))?,
        None => Platform::host(),
    };
    plan.efi_stub = args
        .efi_stub
        .clone()
        .or_else(|| oxkit_assembly::default_efi_stub(platform.arch()));
    if let Some(f) = plan.formats.iter().find(|f| f.is_bios())
        && platform.arch() != "amd64"
    {
        bail!(
            "{} boots PCs with a BIOS, which are amd64: build {} images as iso-efi or raw-efi",
            f.name(),
            platform.arch()
        );
    }
    plan.isolinux = Some(oxkit_assembly::Isolinux::find(args.syslinux.as_deref()));
    plan.check()?;
    let epoch = args.source_date_epoch.unwrap_or(0);
    if epoch < 0 {
        bail!("SOURCE_DATE_EPOCH must not be negative (got {epoch})");
    }

    let mut resolver = Resolver::new(oxkit_source::ResolveOptions::default());
    let mut resolve_pkg = |dir: &Path| -> std::result::Result<String, String> {
        resolver
            .resolve(dir)
            .map(|p| p.name())
            .map_err(|e| e.to_string())
    };
    let config = Config::load(&inputs(&args.files)?, &mut resolve_pkg)?;
    if args.dry_run {
        let yaml = config.to_yaml_string();
        printer.data(yaml.trim_end());
        printer.json(&serde_json::json!({ "yaml": yaml }));
        return Ok(());
    }

    let store = Store::open(global.store_dir()?)?;
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    let remote = RegistryRemote::new(client(&args.registry, None)?);
    let images = resolve_images(
        &store,
        &config.yaml,
        &ResolveOptions {
            platform: platform.clone(),
            always_pull: args.pull,
            fetcher: Some(&remote),
        },
        &mut |msg| printer.status(msg),
    )?;
    let unverified = oxkit_assembly::trust::enforce(&config, &images, &remote, args.no_verify)?;
    for u in &unverified {
        printer.warn(format!(
            "--no-verify: NOT checking the signatures of {u}, which the trust policy covers"
        ));
    }

    let inputs =
        uptodate::inputs_digest(&config, &images, &plan, &platform, epoch, home.as_deref())?;
    let (written, up_to_date) = match uptodate::check(&store, &plan, &inputs) {
        Some(w) => (w, true),
        None => {
            let assembly = assemble(
                &store,
                &config,
                &images,
                &AssembleOptions {
                    epoch,
                    home: home.clone(),
                },
            )?;
            let written = write_outputs(&assembly, &store, &plan, &|path| {
                printer.status(format!("writing {}", path.display()));
            })?;
            uptodate::record(&store, &plan, &inputs, &written);
            (written, false)
        }
    };
    for f in &written.files {
        printer.status(format!(
            "{} {}",
            if up_to_date { "up to date:" } else { "wrote" },
            f.display()
        ));
    }
    printer.json(&BuildJson {
        outputs: written.files.clone(),
        up_to_date,
        images: images
            .distinct()
            .into_iter()
            .map(|(u, r)| ImageJson {
                reference: u.reference.to_string(),
                digest: r.manifest.digest.to_string(),
                pulled: r.pulled,
            })
            // `format: oci` volumes: what the store names the reference.
            .chain(images.layouts().into_iter().map(|(u, l)| ImageJson {
                reference: u.reference.to_string(),
                digest: l.top.digest.to_string(),
                pulled: l.pulled,
            }))
            .collect(),
        unverified,
    });
    Ok(())
}
