//! `oxkit pkg manifest DIR...` (alias `index`), LinuxKit's command of the same name: make each
//! package's index `ORG/IMAGE:TAG` in the registry from whatever `TAG-ARCH` images it holds
//! (keeping entries of an existing index that no such tag covers), optionally release it, and
//! sign the index when a key is configured. The work is `oxkit_publish::Publisher::rebuild_index`.

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use oxkit_publish::Publisher;
use oxkit_source::Resolver;
use oxkit_spec::Platform;
use oxkit_store::Store;
use serde::Serialize;

use super::PkgFlags;
use super::push::{JsonSignature, PublishArgs, Uploads};
use crate::cmd::login::{RegistryArgs, client};
use crate::output::Printer;
use crate::output::PublishLines;
use crate::settings::GlobalArgs;

#[derive(Debug, Args)]
#[command(
    after_help = "The index is signed when a signing key is configured (--key, OXKIT_SIGNING_KEY \
or the config file's signing-key); without one it is left unsigned, with a note.\n\n\
--json prints an array of {name, index, indexWritten, platforms, release, signatures}."
)]
pub struct ManifestArgs {
    /// Package directories (each holding a build.yml)
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<std::path::PathBuf>,

    #[command(flatten)]
    publish: PublishArgs,

    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonIndex {
    name: String,
    index: String,
    index_written: bool,
    platforms: Vec<String>,
    release: Option<String>,
    signatures: Vec<JsonSignature>,
}

pub fn run(
    global: &GlobalArgs,
    printer: &Printer,
    flags: &PkgFlags,
    args: ManifestArgs,
) -> Result<()> {
    let mut resolver = Resolver::new(flags.resolve_options()?);
    let mut packages = Vec::with_capacity(args.paths.len());
    for path in &args.paths {
        packages.push(resolver.resolve(path)?);
    }
    if args.publish.release.is_some() {
        for pkg in &packages {
            if pkg.dirty {
                anyhow::bail!(
                    "cannot release {}: the package is dirty (its sources differ from the commit); commit first",
                    pkg.name()
                );
            }
        }
    }
    // Signing is optional here: only with a key configured.
    let key = match args.publish.key_path()? {
        Some(_) => args.publish.signing_key(printer)?,
        None => {
            if !args.publish.no_sign {
                printer.status("Note: no signing key configured; the index is not signed");
            }
            None
        }
    };
    // Decrypt (scrypt) while the registry is asked for the images.
    if let Some(k) = &key {
        k.start();
    }
    let store = Store::open(global.store_dir()?)?;
    let client = client(&args.registry, Some(Arc::new(Uploads::default())))?;
    let events = PublishLines(printer);
    let publisher = Publisher {
        client: &client,
        store: &store,
        events: &events,
    };
    let mut out = Vec::new();
    for pkg in &packages {
        printer.status(format!("Updating index for {}", pkg.name()));
        let r = publisher
            .rebuild_index(
                pkg,
                args.publish.release.as_deref(),
                key.as_ref().map(|k| k as &dyn oxkit_publish::KeySource),
            )
            .with_context(|| format!("cannot update the index of {}", pkg.name()))?;
        let arches: Vec<&str> = r.index.platforms.iter().map(Platform::arch).collect();
        printer.status(format!(
            "{} index {} {} ({})",
            if r.index.written { "Wrote" } else { "Kept" },
            r.index.reference,
            r.index.digest.short(),
            arches.join(", ")
        ));
        if let Some((rel, d)) = &r.release {
            printer.status(format!("Released {rel} ({})", d.short()));
        }
        printer.data(format!("{}@{}", r.index.reference, r.index.digest));
        out.push(JsonIndex {
            name: pkg.name(),
            index: r.index.digest.to_string(),
            index_written: r.index.written,
            platforms: r.index.platforms.iter().map(ToString::to_string).collect(),
            release: r.release.map(|(rel, _)| rel),
            signatures: r.signatures.iter().map(JsonSignature::from).collect(),
        });
    }
    printer.json(&out);
    Ok(())
}
