//! `oxkit key`: create and import cosign-compatible signing keys, and unlock one for a while.
//!
//! `generate` writes `PREFIX.key` (cosign's encrypted format, mode 0600) and `PREFIX.pub`;
//! `import` re-encrypts a plain PKCS#8/SEC1 key the same way. Both refuse to overwrite without
//! `--force`. The passphrase comes from [`crate::secrets`]. Keys made here work with
//! `cosign sign --key` and cosign's keys work with oxkit.
//!
//! `unlock` decrypts a key once and leaves it with the kernel keyring for `--timeout`
//! ([`oxkit_sign::keyring`]), so the pushes that follow neither ask for the passphrase nor pay
//! for scrypt again; `lock` removes it before that.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
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
    /// Decrypt a signing key once and keep it unlocked in the kernel keyring for a while
    #[command(
        after_help = "While the key is unlocked, `pkg push`, `pkg manifest` and `pkg build --push` \
sign with it without a passphrase and without decrypting it again (cosign's scrypt costs a large \
part of a second per push). The kernel holds it in memory that is never swapped out, lets only \
processes of this user read it, and destroys it when --timeout ends; `oxkit key lock` removes it \
at once. It is found only for the same key file: a key file that changes is unlocked anew."
    )]
    Unlock(UnlockArgs),
    /// Remove a key unlocked with `oxkit key unlock` from the kernel keyring
    Lock(LockArgs),
}

#[derive(Debug, Args)]
struct WhichKey {
    /// The private key file [default: OXKIT_SIGNING_KEY, then the config file's signing-key]
    #[arg(long, value_name = "FILE", env = "OXKIT_SIGNING_KEY")]
    key: Option<PathBuf>,
}

impl WhichKey {
    fn path(&self) -> Result<PathBuf> {
        secrets::signing_key_path(self.key.as_deref())?.context(secrets::NO_SIGNING_KEY)
    }
}

#[derive(Debug, Args)]
struct UnlockArgs {
    #[command(flatten)]
    which: WhichKey,
    /// How long the key stays unlocked (`90s`, `15m`, `8h`, `1h30m`)
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = timeout)]
    timeout: Duration,
}

#[derive(Debug, Args)]
struct LockArgs {
    #[command(flatten)]
    which: WhichKey,
}

fn timeout(s: &str) -> std::result::Result<Duration, String> {
    oxkit_vm::parse_duration(s).map_err(|e| e.to_string())
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
        KeyCommand::Unlock(a) => unlock(printer, &a.which.path()?, a.timeout),
        KeyCommand::Lock(a) => lock(printer, &a.which.path()?),
    }
}

#[derive(Serialize)]
struct Unlocked<'a> {
    key: &'a Path,
    key_hint: String,
    /// Seconds until the kernel destroys it (0: nothing to unlock, the file is not encrypted).
    timeout_seconds: u64,
}

/// The key file's bytes, with errors naming it.
fn read_key_file(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    std::fs::read(path)
        .map(zeroize::Zeroizing::new)
        .with_context(|| format!("cannot read the signing key {}", path.display()))
}

fn unlock(printer: &Printer, path: &Path, timeout: Duration) -> Result<()> {
    let bytes = read_key_file(path)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| anyhow::anyhow!("{} is not a PEM key file", path.display()))?;
    if !SigningKey::pem_is_encrypted(text) {
        // Validate it all the same: a typo should not look like success.
        let key = SigningKey::from_plain_pem(text)
            .map_err(|e| anyhow::anyhow!("cannot use the signing key {}: {e}", path.display()))?;
        printer.data(format!(
            "{} is not encrypted: nothing to unlock",
            path.display()
        ));
        printer.json(&Unlocked {
            key: path,
            key_hint: key.public_key().hint(),
            timeout_seconds: 0,
        });
        return Ok(());
    }
    let fail = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!("cannot unlock the signing key {}: {e}", path.display())
    };
    let passphrase = secrets::passphrase(Purpose::Unlock).map_err(|e| fail(&e))?;
    let key = SigningKey::from_encrypted_pem(text, &passphrase).map_err(|e| fail(&e))?;
    drop(passphrase);
    oxkit_sign::keyring::remember(&bytes, &key, timeout)?;
    let secs = timeout.as_secs().max(1);
    printer.data(format!(
        "Unlocked {} (key {}) for {}",
        path.display(),
        key.public_key().hint(),
        human(secs)
    ));
    printer.json(&Unlocked {
        key: path,
        key_hint: key.public_key().hint(),
        timeout_seconds: secs,
    });
    Ok(())
}

/// `1h 5m 3s` style.
fn human(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let parts: Vec<String> = [(h, "h"), (m, "m"), (s, "s")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, u)| format!("{n}{u}"))
        .collect();
    parts.join(" ")
}

#[derive(Serialize)]
struct Locked<'a> {
    key: &'a Path,
    /// Whether it was unlocked (false: there was nothing to remove).
    was_unlocked: bool,
}

fn lock(printer: &Printer, path: &Path) -> Result<()> {
    let bytes = read_key_file(path)?;
    let was = oxkit_sign::keyring::forget(&bytes)?;
    printer.data(if was {
        format!("Locked {}", path.display())
    } else {
        format!("{} was not unlocked", path.display())
    });
    printer.json(&Locked {
        key: path,
        was_unlocked: was,
    });
    Ok(())
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
