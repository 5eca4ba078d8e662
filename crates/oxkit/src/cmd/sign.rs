//! `oxkit sign --key KEY REF...`: sign images already in a registry, as `cosign sign --key`
//! does (offline: no transparency log), in the same format and with the same merge as `pkg
//! push` (existing signatures are kept; one this key made over the same payload is not added
//! again). For images that oxkit did not push, or that were pushed with `--no-sign`, so that
//! `oxkit build`'s trust policy and `cosign verify` accept them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use oxkit_publish::{KeySource, SignOutcome, sign_reference};
use oxkit_spec::Reference;
use serde::Serialize;

use crate::cmd::login::{RegistryArgs, client};
use crate::output::{Printer, PublishLines};
use crate::settings::GlobalArgs;
use crate::signing_key::LazyKey;

#[derive(Debug, Args)]
#[command(
    after_help = "A tag is resolved to its digest once, and that digest is what gets signed (a \
signature names a digest, never a tag). The signature goes to the image's repository as \
sha256-<hex>.sig, cosign's layout; `oxkit verify` and `cosign verify --key` check it.\n\n\
The key is --key, else OXKIT_SIGNING_KEY, else signing-key in ~/.config/oxkit/config.toml; its \
passphrase comes from COSIGN_PASSWORD, DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE or the config's \
passphrase-command, unless `oxkit key unlock` unlocked it.\n\n\
--json prints {signatures: [{reference, digest, tag, added}]}."
)]
pub struct SignArgs {
    /// Images to sign: NAME:TAG or NAME@sha256:...
    #[arg(required = true, value_name = "REF")]
    refs: Vec<String>,

    /// Private key (cosign's format) [default: OXKIT_SIGNING_KEY, then the config file's signing-key]
    #[arg(long, value_name = "FILE", env = "OXKIT_SIGNING_KEY")]
    key: Option<PathBuf>,

    /// Annotation KEY=VALUE for the signed payload's `optional` section (repeatable)
    #[arg(short = 'a', long = "annotation", value_name = "KEY=VALUE", value_parser = parse_annotation)]
    annotations: Vec<(String, String)>,

    /// For an index, also sign every image it lists
    #[arg(long)]
    recursive: bool,

    #[command(flatten)]
    registry: RegistryArgs,
}

fn parse_annotation(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

#[derive(Serialize)]
struct JsonSignature<'a> {
    reference: &'a str,
    digest: String,
    tag: &'a str,
    added: bool,
}

pub fn run(_global: &GlobalArgs, printer: &Printer, args: SignArgs) -> Result<()> {
    // Every reference is checked before the key is unlocked or the registry asked.
    let mut refs = Vec::with_capacity(args.refs.len());
    for text in &args.refs {
        refs.push(
            Reference::parse(text).with_context(|| format!("invalid image reference {text:?}"))?,
        );
    }
    let mut annotations = BTreeMap::new();
    for (k, v) in &args.annotations {
        if annotations.insert(k.clone(), v.clone()).is_some() {
            bail!("annotation {k:?} is given twice; give each key once");
        }
    }
    let key = LazyKey::find(args.key.as_deref(), "", printer)?;
    // Decrypting (scrypt) overlaps with resolving the references and reading what is signed.
    key.start();
    let hint = key.public_key().map_err(anyhow::Error::msg)?.hint();
    let client = client(&args.registry, None)?;
    let events = PublishLines(printer);
    let mut all: Vec<SignOutcome> = Vec::new();
    for r in &refs {
        let done = sign_reference(&client, r, &key, &annotations, args.recursive, &events)?;
        for s in &done {
            if s.added {
                printer.status(format!("Signed {} with key {hint}", s.reference));
            } else {
                printer.status(format!(
                    "{}: signed by key {hint} already, nothing added",
                    s.reference
                ));
            }
            printer.data(format!("{} {}", s.reference, s.tag));
        }
        all.extend(done);
    }
    printer.json(&serde_json::json!({
        "signatures": all
            .iter()
            .map(|s| JsonSignature {
                reference: &s.reference,
                digest: s.digest.to_string(),
                tag: &s.tag,
                added: s.added,
            })
            .collect::<Vec<_>>()
    }));
    Ok(())
}
