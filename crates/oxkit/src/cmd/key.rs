//! `oxkit key`: create and import cosign-compatible signing keys.
//!
//! `generate` writes `PREFIX.key` (cosign's encrypted format, mode 0600) and `PREFIX.pub`;
//! `import` re-encrypts a plain PKCS#8/SEC1 key the same way. Both refuse to overwrite without
//! `--force`. The passphrase comes from [`crate::secrets`]. Keys made here work with
//! `cosign sign --key` and cosign's keys work with oxkit.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use oxkit_sign::{KeyPairPaths, Passphrase, SigningKey};
use serde::Serialize;

use crate::output::Printer;
use crate::secrets::{self, Purpose};
use crate::settings::GlobalArgs;

#[derive(Debug, Args)]
#[command(
    after_help = "The passphrase that encrypts PREFIX.key comes from COSIGN_PASSWORD, else \
DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE, else the passphrase-command in \
~/.config/oxkit/config.toml (passphrase-command = \"pass show oxkit\"; or config.json), else a \
prompt when run in a terminal."
)]
pub struct KeyArgs {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Generate an ECDSA P-256 key pair: PREFIX.key (encrypted) and PREFIX.pub
    Generate(GenerateArgs),
    /// Import a PEM private key (PKCS#8 or EC) as PREFIX.key (encrypted) and PREFIX.pub
    Import(ImportArgs),
}

#[derive(Debug, Args)]
struct OutputArgs {
    /// Replace existing PREFIX.key and PREFIX.pub files
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct GenerateArgs {
    /// Write PREFIX.key and PREFIX.pub
    #[arg(long, value_name = "PREFIX", default_value = "cosign")]
    output_key_prefix: PathBuf,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// The unencrypted private key (PEM: `PRIVATE KEY` or `EC PRIVATE KEY`)
    file: PathBuf,
    /// Write PREFIX.key and PREFIX.pub
    #[arg(long, value_name = "PREFIX", default_value = "import-cosign")]
    output_key_prefix: PathBuf,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Serialize)]
struct Written<'a> {
    private_key: &'a Path,
    public_key: &'a Path,
    /// base64(SHA-256(public key DER)): how Sigstore bundles name the key.
    key_hint: String,
}

pub fn run(_global: &GlobalArgs, printer: &Printer, args: KeyArgs) -> Result<()> {
    match args.command {
        KeyCommand::Generate(a) => write(
            printer,
            &a.output_key_prefix,
            &SigningKey::generate(),
            &a.output,
        ),
        KeyCommand::Import(a) => {
            let key = oxkit_sign::load_plain_signing_key(&a.file)?;
            write(printer, &a.output_key_prefix, &key, &a.output)
        }
    }
}

fn write(printer: &Printer, prefix: &Path, key: &SigningKey, output: &OutputArgs) -> Result<()> {
    // Refuse before asking for a passphrase that would not be used.
    let paths = KeyPairPaths::for_prefix(prefix);
    if !output.force {
        for p in [&paths.private_key, &paths.public_key] {
            if p.symlink_metadata().is_ok() {
                bail!(
                    "{} already exists; refusing to overwrite a key (remove it, choose another --output-key-prefix, or pass --force)",
                    p.display()
                );
            }
        }
    }
    let passphrase: Passphrase = secrets::passphrase(Purpose::Create)?;
    if passphrase.is_empty() {
        printer.warn("the private key is encrypted with an empty passphrase");
    }
    let paths = oxkit_sign::write_key_pair(prefix, key, &passphrase, output.force)?;
    printer.data(format!(
        "Private key written to {}",
        paths.private_key.display()
    ));
    printer.data(format!(
        "Public key written to {}",
        paths.public_key.display()
    ));
    printer.json(&Written {
        private_key: &paths.private_key,
        public_key: &paths.public_key,
        key_hint: key.public_key().hint(),
    });
    Ok(())
}
