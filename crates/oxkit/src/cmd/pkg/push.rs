//! `oxkit pkg push` and `oxkit pkg build --push`: build what the registry lacks, then publish,
//! as `linuxkit pkg build --push` does. For each package: refuse it when dirty; ask the
//! registry which `TAG-ARCH` images exist (those are skipped, so a second run pushes nothing);
//! build the others exactly as `pkg build` does (its own code path, narrowed to those
//! platforms); then push them, merge the index `TAG`, release and sign (`oxkit-publish`).
//!
//! Here: the signing key is found (`--key`, `OXKIT_SIGNING_KEY`, the config file's
//! `signing-key`) and unlocked with the passphrase from [`crate::secrets`] before anything is
//! built or pushed; reports become lines and JSON.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use oxkit_publish::KeySource;
use oxkit_publish::{PackageReport, Publisher, PushOptions, RemotePlan, SignOutcome};
use oxkit_registry::Pushed;
use oxkit_source::{Package, Resolver};
use oxkit_spec::{Digest, Platform};
use oxkit_store::Store;
use serde::Serialize;

use super::PkgFlags;
use super::build::{self, BuildArgs};
use crate::cmd::login::client;
use crate::output::{Printer, PublishLines};
use crate::settings::GlobalArgs;
use crate::signing_key::LazyKey;

pub const PUSH_HELP: &str = "Each package's TAG-ARCH images that the registry already has are \
neither built nor pushed. The others are built into the store (as `oxkit pkg build`), pushed as \
ORG/IMAGE:TAG-ARCH, then the index ORG/IMAGE:TAG is merged: architectures other machines pushed \
are kept. Dirty packages are refused (commit first).\n\n\
Every TAG-ARCH image and the index are signed (cosign format, at sha256-<hex>.sig) with the key \
from --key, else OXKIT_SIGNING_KEY, else signing-key = \"FILE\" in ~/.config/oxkit/config.toml; \
its passphrase comes from COSIGN_PASSWORD or the config's passphrase-command (see `oxkit key \
--help`), unless `oxkit key unlock` unlocked it for the session. Create a key with `oxkit key \
generate`; --no-sign (or NOTRUST=1) pushes unsigned.\n\n\
--json prints {packages: [{name, index, indexWritten, platforms, release, arches: [{platform, \
reference, digest, pushed}], signatures: [{digest, tag, added}], wouldPush}], blobsUploaded, \
bytesUploaded}.";

/// Publishing flags shared by `pkg push`, `pkg build --push` and `pkg manifest`.
#[derive(Debug, Clone, Default, Args)]
pub struct PublishArgs {
    /// Also publish the index as ORG/IMAGE:NAME (and NAME-ARCH); refused for dirty packages
    #[arg(long, value_name = "NAME")]
    pub(super) release: Option<String>,

    /// Sign with this private key (cosign's format) [default: OXKIT_SIGNING_KEY, then the config file's signing-key]
    #[arg(
        long,
        value_name = "FILE",
        env = "OXKIT_SIGNING_KEY",
        conflicts_with = "no_sign"
    )]
    pub(super) key: Option<PathBuf>,

    /// Do not sign (NOTRUST=1, LinuxKit's old switch, does the same)
    #[arg(long, env = "NOTRUST", value_parser = clap::builder::FalseyValueParser::new())]
    pub(super) no_sign: bool,
}

impl PublishArgs {
    /// The key file to sign with: `--key`/`OXKIT_SIGNING_KEY`, else the config file's.
    pub(super) fn key_path(&self) -> Result<Option<PathBuf>> {
        if self.no_sign {
            return Ok(None);
        }
        crate::secrets::signing_key_path(self.key.as_deref())
    }

    /// The signing key, `None` under `--no-sign`; no key at all is an error saying how to
    /// make one. The passphrase is found now; decrypting waits until it is needed.
    pub(super) fn signing_key(&self, printer: &Printer) -> Result<Option<LazyKey>> {
        if self.no_sign {
            printer.status("Not signing: --no-sign (or NOTRUST) was given");
            return Ok(None);
        }
        LazyKey::find(
            self.key.as_deref(),
            "; or pass --no-sign to push unsigned",
            printer,
        )
        .map(Some)
    }
}

/// Counts what the registry client sends, across every request of the run.
#[derive(Default)]
pub(super) struct Uploads {
    pub(super) blobs: AtomicUsize,
    pub(super) bytes: AtomicU64,
    sizes: std::sync::Mutex<std::collections::HashMap<Digest, u64>>,
}

impl oxkit_registry::Progress for Uploads {
    fn blob_started(&self, digest: &Digest, size: Option<u64>) {
        if let Some(s) = size {
            self.sizes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(digest.clone(), s);
        }
    }

    fn blob_finished(&self, digest: &Digest, how: Pushed) {
        if how == Pushed::Transferred {
            self.blobs.fetch_add(1, Ordering::SeqCst);
            let size = self
                .sizes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(digest)
                .copied()
                .unwrap_or(0);
            self.bytes.fetch_add(size, Ordering::SeqCst);
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonArch {
    platform: String,
    reference: String,
    digest: String,
    pushed: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct JsonSignature {
    digest: String,
    tag: String,
    added: bool,
}

impl From<&SignOutcome> for JsonSignature {
    fn from(s: &SignOutcome) -> Self {
        Self {
            digest: s.digest.to_string(),
            tag: s.tag.clone(),
            added: s.added,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonPackage {
    name: String,
    /// Set unless --dry-run.
    index: Option<String>,
    index_written: bool,
    platforms: Vec<String>,
    release: Option<String>,
    arches: Vec<JsonArch>,
    signatures: Vec<JsonSignature>,
    /// Under --dry-run: what would be built and pushed.
    would_push: Vec<String>,
}

fn parse_platforms(args: &BuildArgs) -> Result<Option<Vec<Platform>>> {
    if args.platforms.is_empty() {
        return Ok(None);
    }
    args.platforms
        .iter()
        .map(|p| p.parse::<Platform>().context("--platforms"))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Builds `pkg` for `platforms` the way `pkg build` does (its own `run`, narrowed to this
/// package and these platforms).
fn build_missing(
    global: &GlobalArgs,
    printer: &Printer,
    flags: &PkgFlags,
    args: &BuildArgs,
    pkg: &Package,
    platforms: &[Platform],
) -> Result<()> {
    let mut narrowed = args.clone();
    narrowed.push = false;
    // `pkg build` would print its own JSON document and data lines; ours are this command's.
    narrowed.for_push = true;
    narrowed.paths = vec![pkg.dir.clone()];
    narrowed.platforms = platforms.iter().map(ToString::to_string).collect();
    build::run(global, printer, flags, narrowed)
}

fn summarize(printer: &Printer, r: &PackageReport, key: Option<&LazyKey>, secs: f64) {
    for a in r.arches.iter().filter(|a| !a.pushed) {
        printer.status(format!(
            "{}: already in the registry ({}), skipped",
            a.reference,
            a.digest.short()
        ));
    }
    let arches: Vec<&str> = r.index.platforms.iter().map(Platform::arch).collect();
    printer.status(format!(
        "{} index {} {} ({}){}",
        if r.index.written { "Wrote" } else { "Kept" },
        r.index.reference,
        r.index.digest.short(),
        arches.join(", "),
        if r.index.attempts > 2 {
            format!(" after {} rounds with other writers", r.index.attempts)
        } else {
            String::new()
        }
    ));
    if let Some((rel, d)) = &r.release {
        printer.status(format!("Released {rel} ({})", d.short()));
    }
    if let Some(k) = key {
        let added = r.signatures.iter().filter(|s| s.added).count();
        printer.status(format!(
            "Signed {} image(s) with key {} ({} new, {} already signed)",
            r.signatures.len(),
            k.hint(),
            added,
            r.signatures.len() - added
        ));
    }
    if r.nothing_pushed() {
        printer.status(format!(
            "{}: everything was in the registry already; nothing pushed ({secs:.2}s)",
            r.name
        ));
    }
    printer.data(format!("{}@{}", r.index.reference, r.index.digest));
}

pub fn run(
    global: &GlobalArgs,
    printer: &Printer,
    flags: &PkgFlags,
    args: BuildArgs,
) -> Result<()> {
    let platforms = parse_platforms(&args)?;
    let mut resolver = Resolver::new(flags.resolve_options()?);
    let mut packages = Vec::with_capacity(args.paths.len());
    for path in &args.paths {
        packages.push(resolver.resolve(path)?);
    }
    // Refuse before anything is built, pushed or unlocked.
    for pkg in &packages {
        Publisher::check_pushable(pkg, flags.force_dirty, args.publish.release.is_some())?;
    }
    let key = if args.dry_run {
        None
    } else {
        args.publish.signing_key(printer)?
    };
    // Decrypting a cosign key (scrypt) costs a fixed part of a second of CPU: it starts now,
    // while the store is opened, the registry contacted and the blobs uploaded. If nothing
    // turns out to need signing, the work is simply dropped at exit.
    if let Some(k) = &key {
        k.start();
    }
    let store = Store::open(global.store_dir()?)?;
    let uploads = Arc::new(Uploads::default());
    let client = client(&args.registry, Some(uploads.clone()))?;
    let events = PublishLines(printer);
    let publisher = Publisher {
        client: &client,
        store: &store,
        events: &events,
    };
    let opts = PushOptions {
        release: args.publish.release.as_deref(),
        key: key.as_ref().map(|k| k as &dyn KeySource),
    };
    let mut out = Vec::new();
    for pkg in &packages {
        let t0 = Instant::now();
        let wanted = platforms.clone().unwrap_or_else(|| pkg.spec.platforms());
        let plan = if args.force {
            RemotePlan {
                name: pkg.name(),
                present: Vec::new(),
                missing: wanted,
            }
        } else {
            publisher.plan(pkg, &wanted)?
        };
        if args.dry_run {
            let arches: Vec<&str> = plan.missing.iter().map(Platform::arch).collect();
            if arches.is_empty() {
                printer.status(format!(
                    "{}: in the registry already, would skip",
                    plan.name
                ));
            } else {
                printer.status(format!(
                    "{}: would build (if not in the store) and push {}",
                    plan.name,
                    arches.join(", ")
                ));
            }
            out.push(JsonPackage {
                name: plan.name.clone(),
                index: None,
                index_written: false,
                platforms: Vec::new(),
                release: None,
                arches: Vec::new(),
                signatures: Vec::new(),
                would_push: plan.missing.iter().map(ToString::to_string).collect(),
            });
            continue;
        }
        if !plan.missing.is_empty() {
            build_missing(global, printer, flags, &args, pkg, &plan.missing)
                .with_context(|| format!("cannot build {} before pushing it", pkg.name()))?;
        }
        let report = publisher
            .publish(pkg, &plan, &opts)
            .with_context(|| format!("cannot publish {}", pkg.name()))?;
        summarize(printer, &report, key.as_ref(), t0.elapsed().as_secs_f64());
        out.push(JsonPackage {
            name: report.name.clone(),
            index: Some(report.index.digest.to_string()),
            index_written: report.index.written,
            platforms: report
                .index
                .platforms
                .iter()
                .map(ToString::to_string)
                .collect(),
            release: report.release.as_ref().map(|(r, _)| r.clone()),
            arches: report
                .arches
                .iter()
                .map(|a| JsonArch {
                    platform: a.platform.to_string(),
                    reference: a.reference.clone(),
                    digest: a.digest.to_string(),
                    pushed: a.pushed,
                })
                .collect(),
            signatures: report.signatures.iter().map(JsonSignature::from).collect(),
            would_push: Vec::new(),
        });
    }
    let blobs = uploads.blobs.load(Ordering::SeqCst);
    let bytes = uploads.bytes.load(Ordering::SeqCst);
    if !args.dry_run {
        printer.status(format!("{blobs} blob(s) uploaded ({bytes} bytes)"));
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Json {
        packages: Vec<JsonPackage>,
        blobs_uploaded: usize,
        bytes_uploaded: u64,
    }
    printer.json(&Json {
        packages: out,
        blobs_uploaded: blobs,
        bytes_uploaded: bytes,
    });
    Ok(())
}
