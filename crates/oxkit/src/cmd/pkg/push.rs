//! `oxkit pkg push` and `oxkit pkg build --push`: build what the registry lacks, then publish,
//! as `linuxkit pkg build --push` does. For each package: refuse it when dirty; ask the
//! registry which `TAG-ARCH` images exist (those are skipped, so a second run pushes nothing);
//! build the others exactly as `pkg build` does (its own code path, narrowed to those
//! platforms); then push them, merge the index `TAG`, release and sign (`oxkit-publish`).
//!
//! Here: the signing key is found (`--key`, `OXKIT_SIGNING_KEY`, the config file's
//! `signing-key`) and unlocked with the passphrase from [`crate::secrets`] before anything is
//! built or pushed; reports become lines and JSON.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use oxkit_publish::KeySource;
use oxkit_publish::{
    EventSink, PackageReport, PublishEvent, Publisher, PushOptions, RemotePlan, SignOutcome,
};
use oxkit_registry::Pushed;
use oxkit_sign::{Passphrase, PublicKey, SigningKey};
use oxkit_source::{Package, Resolver};
use oxkit_spec::{Digest, Platform};
use oxkit_store::Store;
use serde::Serialize;
use zeroize::Zeroizing;

use super::PkgFlags;
use super::build::{self, BuildArgs};
use crate::cmd::login::client;
use crate::output::Printer;
use crate::secrets::{self, Purpose};
use crate::settings::GlobalArgs;

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
        let Some(path) = self.key_path()? else {
            bail!(
                "{} (create a key pair with `oxkit key generate`); or pass --no-sign to push unsigned",
                crate::secrets::NO_SIGNING_KEY
            );
        };
        let key = LazyKey::open(&path)?;
        if key.from_keyring {
            printer.status(format!(
                "Signing with {}, unlocked by `oxkit key unlock`",
                path.display()
            ));
        }
        Ok(Some(key))
    }
}

/// A signing key decrypted in the background from the start of a push
/// (cosign's scrypt takes a large part of a second), so uploads and the decryption overlap.
/// Its public key comes from the `.pub` beside it (cosign's `PREFIX.key`/`PREFIX.pub`) when
/// there is one, so signatures made before are recognised without decrypting at all.
pub(super) struct LazyKey {
    path: PathBuf,
    public: Option<PublicKey>,
    /// The PEM text and passphrase, until decryption starts.
    material: Mutex<Option<(Zeroizing<String>, Option<Passphrase>)>>,
    job: Mutex<Option<std::thread::JoinHandle<std::result::Result<SigningKey, String>>>>,
    key: OnceLock<std::result::Result<SigningKey, String>>,
    /// Unlocked already, held by the kernel keyring (`oxkit key unlock`).
    from_keyring: bool,
}

impl LazyKey {
    fn open(path: &Path) -> Result<Self> {
        let fail = |e: &dyn std::fmt::Display| {
            format!("cannot use the signing key {}: {e}", path.display())
        };
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| anyhow::anyhow!(fail(&e)))?);
        let text = Zeroizing::new(
            String::from_utf8(bytes.to_vec())
                .map_err(|_| anyhow::anyhow!(fail(&"not a PEM text file")))?,
        );
        let encrypted = SigningKey::pem_is_encrypted(&text);
        let held = encrypted
            .then(|| oxkit_sign::keyring::recall(text.as_bytes()))
            .flatten();
        let from_keyring = held.is_some();
        // Asked now, in the foreground: a prompt must not appear in the middle of a push.
        let passphrase = if encrypted && !from_keyring {
            Some(secrets::passphrase(Purpose::Unlock).map_err(|e| anyhow::anyhow!(fail(&e)))?)
        } else {
            None
        };
        let public = match path.extension().and_then(|e| e.to_str()) {
            Some("key") => {
                let pub_path = path.with_extension("pub");
                if pub_path.is_file() {
                    Some(oxkit_sign::load_public_key(&pub_path)?)
                } else {
                    None
                }
            }
            _ => None,
        };
        let key = OnceLock::new();
        let material = match held {
            Some(k) => {
                let _ = key.set(Ok(k));
                None
            }
            None => Some((text, passphrase)),
        };
        Ok(Self {
            path: path.to_path_buf(),
            public,
            material: Mutex::new(material),
            job: Mutex::new(None),
            key,
            from_keyring,
        })
    }

    /// Starts decrypting in the background (once).
    pub(super) fn start(&self) {
        let Some((text, passphrase)) = lock(&self.material).take() else {
            return;
        };
        let path = self.path.clone();
        *lock(&self.job) = Some(std::thread::spawn(move || {
            let key = match &passphrase {
                Some(p) => SigningKey::from_encrypted_pem(&text, p),
                None => SigningKey::from_plain_pem(&text),
            };
            key.map_err(|e| format!("cannot use the signing key {}: {e}", path.display()))
        }));
    }

    fn unlocked(&self) -> &std::result::Result<SigningKey, String> {
        self.key.get_or_init(|| {
            self.start();
            match lock(&self.job).take() {
                Some(job) => job
                    .join()
                    .unwrap_or_else(|_| Err(format!("decrypting {} failed", self.path.display()))),
                None => Err(format!("decrypting {} failed", self.path.display())),
            }
        })
    }

    /// The key's hint, for messages (decrypts only when there is no `.pub`).
    fn hint(&self) -> String {
        match self.public_key() {
            Ok(p) => p.hint(),
            Err(_) => self.path.display().to_string(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl KeySource for LazyKey {
    fn public_key(&self) -> std::result::Result<PublicKey, String> {
        match &self.public {
            Some(p) => Ok(p.clone()),
            None => self
                .unlocked()
                .as_ref()
                .map(SigningKey::public_key)
                .map_err(Clone::clone),
        }
    }

    fn signing_key(&self) -> std::result::Result<&SigningKey, String> {
        self.unlocked().as_ref().map_err(Clone::clone)
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

/// Publishing events as status lines.
pub(super) struct Lines<'p>(pub(super) &'p Printer);

impl EventSink for Lines<'_> {
    fn event(&self, event: PublishEvent) {
        match event {
            PublishEvent::ArchPushed { reference, digest } => {
                self.0.status(format!("Pushed {reference} ({})", digest.short()));
            }
            PublishEvent::IndexRetry {
                reference,
                attempt,
                missing,
            } => self.0.status(format!(
                "{reference}: another writer replaced the index (missing {missing}); merging again (attempt {attempt})"
            )),
            PublishEvent::SignatureRetry { reference, attempt } => self.0.status(format!(
                "{reference}: another writer replaced the signatures; adding ours again (attempt {attempt})"
            )),
            _ => {}
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
    let events = Lines(printer);
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
