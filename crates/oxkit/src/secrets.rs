//! Finding the passphrase for a private key, in this order:
//!
//! 1. `COSIGN_PASSWORD` (cosign's variable; set-but-empty means an empty passphrase, as in cosign);
//! 2. `DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE` (what LinuxKit's signing used);
//! 3. `passphrase-command` in oxkit's config file (`$XDG_CONFIG_HOME/oxkit/config.toml`, else
//!    `~/.config/oxkit/config.toml`, or `config.json` beside it): run with `sh -c`, its standard
//!    output minus one trailing newline is the passphrase; e.g.
//!    `passphrase-command = "pass show oxkit/signing"`;
//! 4. a prompt on the terminal with echo off, when standard input is a terminal;
//!
//! else an error saying how to provide one. The passphrase is never printed or logged.
//!
//! The same config file may name the default signing key, `signing-key = "PATH"` (relative to
//! the file's directory), which `pkg push` uses when neither `--key` nor `OXKIT_SIGNING_KEY`
//! is given ([`configured_signing_key`]).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use oxkit_sign::Passphrase;
use serde::Deserialize;
use zeroize::Zeroizing;

/// Why the passphrase is wanted: a new key asks twice on a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Unlocking an existing key.
    Unlock,
    /// Encrypting a new key.
    Create,
}

/// oxkit's user configuration file (only the keys this module reads; others are ignored).
#[derive(Debug, Default, Deserialize)]
struct UserConfig {
    #[serde(rename = "passphrase-command")]
    passphrase_command: Option<String>,
    #[serde(rename = "signing-key")]
    signing_key: Option<PathBuf>,
}

fn config_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("oxkit"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".config").join("oxkit"))
}

/// The config file in use and what it says, if there is one.
fn user_config() -> Result<Option<(PathBuf, UserConfig)>> {
    let Some(dir) = config_dir() else {
        return Ok(None);
    };
    for name in ["config.toml", "config.json"] {
        let path = dir.join(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let config: UserConfig = if name.ends_with(".toml") {
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        } else {
            serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!("{}:{}:{}: {e}", path.display(), e.line(), e.column())
            })?
        };
        return Ok(Some((path, config)));
    }
    Ok(None)
}

/// The config file in use and its passphrase command, if any.
fn configured_command() -> Result<Option<(PathBuf, String)>> {
    Ok(user_config()?.and_then(|(path, config)| {
        config
            .passphrase_command
            .filter(|c| !c.trim().is_empty())
            .map(|c| (path, c))
    }))
}

/// What to say when no signing key is given anywhere.
pub const NO_SIGNING_KEY: &str = "no signing key: pass --key FILE, set OXKIT_SIGNING_KEY, or add signing-key = \"FILE\" to ~/.config/oxkit/config.toml";

/// The signing key file: `flag` (`--key`, or `OXKIT_SIGNING_KEY` through clap) unless empty,
/// else the config file's `signing-key`.
pub fn signing_key_path(flag: Option<&Path>) -> Result<Option<PathBuf>> {
    match flag {
        Some(k) if !k.as_os_str().is_empty() => Ok(Some(k.to_path_buf())),
        _ => configured_signing_key(),
    }
}

/// The `signing-key` the config file names (relative paths from the file's directory).
fn configured_signing_key() -> Result<Option<PathBuf>> {
    Ok(user_config()?.and_then(|(path, config)| {
        let key = config.signing_key.filter(|k| !k.as_os_str().is_empty())?;
        Some(match path.parent() {
            Some(dir) if key.is_relative() => dir.join(key),
            _ => key,
        })
    }))
}

fn run_command(config: &Path, command: &str) -> Result<Passphrase> {
    let child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| {
            format!(
                "cannot run the passphrase-command from {} (is sh installed?)",
                config.display()
            )
        })?;
    let output = child
        .wait_with_output()
        .with_context(|| format!("passphrase-command from {} failed", config.display()))?;
    let mut out = Zeroizing::new(output.stdout);
    if !output.status.success() {
        // Its output may be a partial secret: never echo it.
        bail!(
            "the passphrase-command from {} failed ({}); fix it or set COSIGN_PASSWORD",
            config.display(),
            output.status
        );
    }
    if out.last() == Some(&b'\n') {
        out.pop();
        if out.last() == Some(&b'\r') {
            out.pop();
        }
    }
    Ok(Passphrase::new(std::mem::take(&mut *out)))
}

/// Restores the terminal's modes when dropped, even on error.
struct EchoOff<'a> {
    tty: &'a std::fs::File,
    saved: rustix::termios::Termios,
}

impl<'a> EchoOff<'a> {
    fn new(tty: &'a std::fs::File) -> Result<Self> {
        use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
        let saved = tcgetattr(tty).context("cannot read the terminal's settings")?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        quiet.local_modes.insert(LocalModes::ECHONL);
        tcsetattr(tty, OptionalActions::Flush, &quiet)
            .context("cannot turn off echo on the terminal")?;
        Ok(Self { tty, saved })
    }
}

impl Drop for EchoOff<'_> {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            self.tty,
            rustix::termios::OptionalActions::Flush,
            &self.saved,
        );
    }
}

/// Writes `prompt` to the terminal and reads one line (without its `\n`, or `\r\n`), with
/// echo off when `hidden` (turned off before the prompt appears, so nothing typed after it is
/// ever shown, and restored even on error). The line is wiped from memory when dropped.
pub(crate) fn read_tty_line(
    tty: &mut std::fs::File,
    prompt: &str,
    hidden: bool,
) -> Result<Zeroizing<Vec<u8>>> {
    let reader = tty.try_clone().context("cannot read from the terminal")?;
    let _guard = if hidden {
        Some(EchoOff::new(&reader)?)
    } else {
        None
    };
    tty.write_all(prompt.as_bytes())
        .and_then(|()| tty.flush())
        .context("cannot write to the terminal")?;
    let mut line = Zeroizing::new(Vec::new());
    let mut byte = [0u8; 1];
    let mut input = &reader;
    loop {
        match input.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("cannot read from the terminal"),
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(line)
}

fn prompt_once(tty: &mut std::fs::File, prompt: &str) -> Result<Passphrase> {
    let mut line = read_tty_line(tty, prompt, true)?;
    Ok(Passphrase::new(std::mem::take(&mut *line)))
}

fn prompt(purpose: Purpose) -> Result<Passphrase> {
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .context("cannot open the terminal (/dev/tty) to ask for the passphrase")?;
    let first = prompt_once(&mut tty, "Enter password for private key: ")?;
    if purpose == Purpose::Create {
        let again = prompt_once(&mut tty, "Enter password for private key again: ")?;
        if !first.matches(&again) {
            bail!("the passphrases do not match");
        }
    }
    Ok(first)
}

/// The passphrase for a private key (see the module documentation for where it comes from).
pub fn passphrase(purpose: Purpose) -> Result<Passphrase> {
    for var in [
        "COSIGN_PASSWORD",
        "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE",
    ] {
        if let Some(v) = std::env::var_os(var) {
            use std::os::unix::ffi::OsStringExt;
            return Ok(Passphrase::new(v.into_vec()));
        }
    }
    if let Some((config, command)) = configured_command()? {
        return run_command(&config, &command);
    }
    if std::io::stdin().is_terminal() {
        return prompt(purpose);
    }
    let config = config_dir()
        .map(|d| d.join("config.toml").display().to_string())
        .unwrap_or_else(|| "~/.config/oxkit/config.toml".to_string());
    bail!(
        "no passphrase for the private key: set COSIGN_PASSWORD, or add passphrase-command = \"...\" to {config}, or run in a terminal to be asked"
    )
}
