//! `oxkit cache push` / `oxkit cache pull`: move images between the store and registries
//! (LinuxKit's commands of the same names). The work is in `oxkit_registry::transfer`; this
//! file turns flags into calls and reports into lines.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use oxkit_registry::Client;
use oxkit_registry::transfer::{self, Platforms};
use oxkit_spec::{Digest, Platform, Reference};
use oxkit_store::Store;
use oxkit_store::oci::media_type as mt;
use serde::Serialize;

use super::cache::human_size;
use super::login::{RegistryArgs, client};
use crate::output::Printer;

#[derive(Debug, Subcommand)]
pub enum RemoteCommand {
    /// Push images from the store to their registries (only blobs a registry lacks are sent)
    Push(PushArgs),
    /// Pull images from their registries into the store (every blob is verified)
    Pull(PullArgs),
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Images in the store, pushed under the same names (`oxkit cache ls` lists them)
    #[arg(required = true, value_name = "REF")]
    refs: Vec<String>,
    /// Push under another name (one image only), e.g. local foo/bar:mine as reg/baz:yours
    #[arg(long, value_name = "REF")]
    remote_name: Option<String>,
    /// For an index, also tag each platform's manifest NAME:TAG-ARCH
    #[arg(long = "with-arch-tags")]
    with_arch_tags: bool,
    /// Push even when the registry already has the tag (by default it is left alone)
    #[arg(long)]
    r#override: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    #[arg(required = true, value_name = "REF")]
    refs: Vec<String>,
    /// Platform to pull from a multi-platform image (repeatable) [default: this machine's]
    #[arg(long, value_name = "OS/ARCH", conflicts_with = "all_platforms")]
    platform: Vec<String>,
    /// Pull every platform and keep the index as the registry has it
    #[arg(long)]
    all_platforms: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

pub fn run(printer: &Printer, store: &Store, cmd: RemoteCommand) -> Result<()> {
    match cmd {
        RemoteCommand::Push(a) => push(printer, store, a),
        RemoteCommand::Pull(a) => pull(printer, store, a),
    }
}

/// One bar for the bytes of every blob in flight, drawn only on a terminal.
struct Bars {
    bar: ProgressBar,
    done: Mutex<HashMap<Digest, u64>>,
}

impl Bars {
    fn new(printer: &Printer, verb: &str) -> Arc<Self> {
        let bar = if printer.is_interactive() {
            let b = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template(&format!(
                "{verb} {{bytes}}/{{total_bytes}} {{wide_bar}} {{bytes_per_sec}} {{msg}}"
            )) {
                b.set_style(style);
            }
            b
        } else {
            ProgressBar::hidden()
        };
        Arc::new(Self {
            bar,
            done: Mutex::new(HashMap::new()),
        })
    }
}

impl oxkit_registry::Progress for Bars {
    fn blob_started(&self, _digest: &Digest, size: Option<u64>) {
        self.bar.inc_length(size.unwrap_or(0));
    }

    fn blob_progress(&self, digest: &Digest, done: u64) {
        let mut map = self
            .done
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = map.insert(digest.clone(), done).unwrap_or(0);
        self.bar.inc(done.saturating_sub(before));
    }

    fn retrying(&self, what: &str, attempt: u32, delay: std::time::Duration, reason: &str) {
        self.bar.set_message(format!(
            "retrying {what} in {:.1}s (attempt {attempt}): {reason}",
            delay.as_secs_f64()
        ));
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PushRow {
    local: String,
    remote: String,
    digest: Option<String>,
    skipped: bool,
    uploaded: usize,
    uploaded_bytes: u64,
    mounted: usize,
    existing: usize,
    arch_tags: Vec<String>,
}

fn push(printer: &Printer, store: &Store, args: PushArgs) -> Result<()> {
    if args.remote_name.is_some() && args.refs.len() != 1 {
        bail!("--remote-name needs exactly one image to push");
    }
    let bars = Bars::new(printer, "pushing");
    let client = client(&args.registry, Some(bars.clone()))?;
    let mut rows = Vec::new();
    for name in &args.refs {
        let local = Reference::parse(name)?;
        let remote = match &args.remote_name {
            Some(r) => Reference::parse(r)?,
            None => local.clone(),
        };
        let remote = if remote.tag().is_none() && remote.digest().is_none() {
            remote.with_tag("latest")?
        } else {
            remote
        };
        if store.resolve(&local)?.is_none() {
            return Err(oxkit_store::Error::RefNotFound {
                reference: local.to_string(),
                store: store.root().to_path_buf(),
            }
            .into());
        }
        printer.status(format!(
            "Pushing local {} as {}",
            local.familiar(),
            remote.familiar()
        ));
        if !args.r#override
            && let Some(existing) = client
                .head_manifest(&remote)
                .with_context(|| format!("cannot check whether {remote} exists"))?
        {
            printer.status(format!(
                "{} already exists in the registry ({}), skipping; pass --override to replace it",
                remote.familiar(),
                existing.digest
            ));
            rows.push(PushRow {
                local: local.to_string(),
                remote: remote.to_string(),
                digest: Some(existing.digest.to_string()),
                skipped: true,
                uploaded: 0,
                uploaded_bytes: 0,
                mounted: 0,
                existing: 0,
                arch_tags: Vec::new(),
            });
            continue;
        }
        let rep = transfer::push(&client, store, &local, &remote)
            .with_context(|| format!("cannot push {local}"))?;
        let arch_tags = if args.with_arch_tags {
            push_arch_tags(&client, store, &remote, &rep.descriptor)?
        } else {
            Vec::new()
        };
        printer.status(format!(
            "Pushed {} {}: {} blob(s) uploaded ({}), {} mounted, {} already there",
            if mt::is_index(&rep.descriptor.media_type) {
                "index"
            } else {
                "image"
            },
            remote.familiar(),
            rep.uploaded,
            human_size(rep.uploaded_bytes),
            rep.mounted,
            rep.existing
        ));
        for t in &arch_tags {
            printer.status(format!("Tagged {t}"));
        }
        printer.data(format!("{}@{}", remote.familiar(), rep.descriptor.digest));
        rows.push(PushRow {
            local: local.to_string(),
            remote: remote.to_string(),
            digest: Some(rep.descriptor.digest.to_string()),
            skipped: false,
            uploaded: rep.uploaded,
            uploaded_bytes: rep.uploaded_bytes,
            mounted: rep.mounted,
            existing: rep.existing,
            arch_tags,
        });
    }
    bars.bar.finish_and_clear();
    printer.json(&rows);
    Ok(())
}

/// Tags each platform manifest of the pushed index `NAME:TAG-ARCH` (LinuxKit's
/// `--with-arch-tags`). The manifests are in the registry already, by digest.
fn push_arch_tags(
    client: &Client,
    store: &Store,
    remote: &Reference,
    top: &oxkit_store::oci::Descriptor,
) -> Result<Vec<String>> {
    if !mt::is_index(&top.media_type) {
        return Ok(Vec::new());
    }
    let tag = remote.tag().unwrap_or("latest");
    let index = store.read_index(&top.digest)?;
    let mut out = Vec::new();
    for m in &index.manifests {
        let Some(p) = &m.platform else { continue };
        if p.architecture.is_empty() || p.architecture == "unknown" {
            continue;
        }
        let arch_ref = remote.with_tag(&format!("{tag}-{}", p.architecture))?;
        let bytes = store.read_blob(&m.digest)?;
        client.put_manifest(&arch_ref, &m.media_type, &bytes)?;
        out.push(arch_ref.familiar());
    }
    Ok(out)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PullRow {
    reference: String,
    digest: String,
    remote_digest: String,
    fetched: usize,
    fetched_bytes: u64,
    present: usize,
}

fn pull(printer: &Printer, store: &Store, args: PullArgs) -> Result<()> {
    let platforms = if args.all_platforms {
        Platforms::All
    } else if args.platform.is_empty() {
        Platforms::Only(vec![Platform::host()])
    } else {
        Platforms::Only(
            args.platform
                .iter()
                .map(|p| p.parse::<Platform>())
                .collect::<Result<_, _>>()?,
        )
    };
    let bars = Bars::new(printer, "pulling");
    let client = client(&args.registry, Some(bars.clone()))?;
    let mut rows = Vec::new();
    for name in &args.refs {
        let r = Reference::parse(name)?;
        let r = if r.tag().is_none() && r.digest().is_none() {
            r.with_tag("latest")?
        } else {
            r
        };
        let rep = transfer::pull(&client, store, &r, &platforms)
            .with_context(|| format!("cannot pull {r}"))?;
        printer.status(format!(
            "Pulled {}: {} blob(s) fetched ({}), {} already in the store",
            r.familiar(),
            rep.fetched,
            human_size(rep.fetched_bytes),
            rep.present
        ));
        printer.data(format!("{}@{}", r.familiar(), rep.descriptor.digest));
        rows.push(PullRow {
            reference: r.to_string(),
            digest: rep.descriptor.digest.to_string(),
            remote_digest: rep.remote_digest.to_string(),
            fetched: rep.fetched,
            fetched_bytes: rep.fetched_bytes,
            present: rep.present,
        });
    }
    bars.bar.finish_and_clear();
    printer.json(&rows);
    Ok(())
}
