//! `oxkit verify --key KEY.pub REF...`: check the signatures on images in a registry, as
//! `cosign verify --key --insecure-ignore-tlog` does: cosign's `sha256-<hex>.sig` images and
//! Sigstore bundles (cosign v3) attached as referrers or under the referrers tag. Prints who
//! signed what; exits 1 when an image checked has no signature that verifies.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use oxkit_publish::{ImageVerification, NamedKey, SignatureKind, verify_reference};
use oxkit_spec::Reference;
use serde::Serialize;

use crate::cmd::login::{RegistryArgs, client};
use crate::output::Printer;
use crate::settings::GlobalArgs;

#[derive(Debug, Args)]
#[command(
    after_help = "An image counts as verified when at least one signature over its digest \
verifies with one of the keys. For an index, --recursive checks each image it lists as well \
(all must verify). Transparency logs and certificates are not consulted: keys only, offline.\n\n\
--json prints {verified, images: [{reference, digest, mediaType, platform, signatures: [{key, \
keyHint, kind, evidence, dockerReference, annotations, predicateType}], problems}]}."
)]
pub struct VerifyArgs {
    /// Images to check: NAME:TAG or NAME@sha256:...
    #[arg(required = true, value_name = "REF")]
    refs: Vec<String>,

    /// Public key (PEM, e.g. cosign.pub); repeat for several
    #[arg(long = "key", required = true, value_name = "KEY.pub")]
    keys: Vec<PathBuf>,

    /// For an index, also check every image it lists
    #[arg(long)]
    recursive: bool,

    #[command(flatten)]
    registry: RegistryArgs,
}

fn describe(printer: &Printer, v: &ImageVerification) {
    let what = match &v.platform {
        Some(p) => format!("{} [{p}]", v.reference),
        None => v.reference.clone(),
    };
    if v.verified() {
        printer.status(format!("{what}: verified"));
    } else {
        printer.status(format!("{what}: NOT verified"));
    }
    for s in &v.signatures {
        let kind = match s.kind {
            SignatureKind::Cosign => "cosign signature",
            SignatureKind::SigstoreBundle => "Sigstore bundle",
        };
        let mut line = format!("  {kind} by {} ({})", s.key, s.key_hint);
        if let Some(r) = &s.docker_reference {
            line.push_str(&format!(", docker-reference {r}"));
        }
        if let Some(p) = &s.predicate_type {
            line.push_str(&format!(", predicate {p}"));
        }
        printer.data(format!("{} {}", v.reference, line.trim_start()));
        for (k, val) in &s.annotations {
            let val = match val {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            printer.status(format!("    {k}={val}"));
        }
    }
    if !v.verified() {
        for p in &v.problems {
            printer.status(format!("  {p}"));
        }
    }
}

pub fn run(_global: &GlobalArgs, printer: &Printer, args: VerifyArgs) -> Result<()> {
    let mut keys = Vec::with_capacity(args.keys.len());
    for path in &args.keys {
        let key = oxkit_sign::load_public_key(path)?;
        keys.push(NamedKey {
            name: path.display().to_string(),
            key,
        });
    }
    let client = client(&args.registry, None)?;
    let mut all = Vec::new();
    for text in &args.refs {
        let r =
            Reference::parse(text).with_context(|| format!("invalid image reference {text:?}"))?;
        let found = verify_reference(&client, &r, &keys, args.recursive)?;
        for v in &found {
            describe(printer, v);
        }
        all.extend(found);
    }
    let verified = all.iter().all(ImageVerification::verified);
    #[derive(Serialize)]
    struct Json<'a> {
        verified: bool,
        images: &'a [ImageVerification],
    }
    printer.json(&Json {
        verified,
        images: &all,
    });
    if !verified {
        let failed: Vec<String> = all
            .iter()
            .filter(|v| !v.verified())
            .map(|v| format!("{} ({})", v.reference, v.problems.join("; ")))
            .collect();
        let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
        bail!(
            "no signature verifies with {} on: {}",
            names.join(", "),
            failed.join("; ")
        );
    }
    Ok(())
}
