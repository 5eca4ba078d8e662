//! `oxkit login` / `oxkit logout`, and the registry settings every command that talks to a
//! registry shares: where Docker's `config.json` is, the `certs.d` directories, and
//! `--insecure-registry`. These are resolved from the environment here, once, and handed to
//! `oxkit-registry` as plain values.
//!
//! Passwords are read from stdin (`--password-stdin`) or a terminal with echo off, never
//! taken on the command line, and never printed.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use oxkit_registry::{
    Client, ClientOptions, CredentialSource, Credentials, DockerConfig, Error as RegistryError,
    FixedCredentials, Secret, StoredIn,
};
use serde::Serialize;

use crate::output::Printer;
use crate::settings::GlobalArgs;

/// Flags for commands that talk to a registry.
#[derive(Debug, Clone, Default, Args)]
pub struct RegistryArgs {
    /// Reach this registry (HOST[:PORT]) over plain HTTP, or HTTPS without certificate checks,
    /// as Docker's --insecure-registry. Loopback registries may use plain HTTP without it.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The registry (HOST[:PORT]); Docker Hub when omitted
    #[arg(value_name = "HOST")]
    host: Option<String>,
    /// User name (asked for on the terminal when omitted)
    #[arg(short, long, value_name = "USER")]
    username: Option<String>,
    /// Read the password from standard input
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry (HOST[:PORT]); Docker Hub when omitted
    #[arg(value_name = "HOST")]
    host: Option<String>,
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub(crate) fn docker_config_path() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir).join("config.json"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .context("cannot find the Docker config: neither DOCKER_CONFIG nor HOME is set")?;
    Ok(PathBuf::from(home).join(".docker").join("config.json"))
}

/// Per-registry CA directories: oxkit's own (`$XDG_CONFIG_HOME/oxkit/certs.d` or
/// `~/.config/oxkit/certs.d`), then Docker's `/etc/docker/certs.d`.
pub(crate) fn certs_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        dirs.push(PathBuf::from(x).join("oxkit").join("certs.d"));
    } else if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        dirs.push(
            PathBuf::from(h)
                .join(".config")
                .join("oxkit")
                .join("certs.d"),
        );
    }
    dirs.push(PathBuf::from("/etc/docker/certs.d"));
    dirs
}

/// Client options from the environment and flags, with credentials from `credentials`.
fn options(registry: &RegistryArgs, credentials: Arc<dyn CredentialSource>) -> ClientOptions {
    ClientOptions {
        credentials: Some(credentials),
        insecure_registries: registry.insecure_registries.clone(),
        certs_dirs: certs_dirs(),
        ..ClientOptions::default()
    }
}

/// A registry client using the user's Docker credentials (and the given progress callbacks).
/// Commands that push or pull use this, so every one honours the same settings.
pub(crate) fn client(
    registry: &RegistryArgs,
    progress: Option<Arc<dyn oxkit_registry::Progress>>,
) -> Result<Client> {
    let config = DockerConfig::load(docker_config_path()?)?;
    let mut opts = options(registry, Arc::new(config));
    opts.progress = progress;
    Ok(Client::new(opts))
}

fn host_or_hub(host: Option<String>) -> String {
    host.unwrap_or_else(|| "docker.io".to_string())
}

/// A line from the terminal; `hidden` turns echo off while it is typed.
fn ask(prompt: &str, hidden: bool) -> Result<Secret> {
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .context("cannot open the terminal (/dev/tty); pass --username and --password-stdin")?;
    let line = crate::secrets::read_tty_line(&mut tty, prompt, hidden)?;
    let text = std::str::from_utf8(&line).context("the input is not UTF-8 text")?;
    Ok(Secret::new(text.to_string()))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LoginReport {
    registry: String,
    username: String,
    stored_in: String,
}

pub fn login(_global: &GlobalArgs, printer: &Printer, args: LoginArgs) -> Result<()> {
    let host = host_or_hub(args.host);
    let interactive = std::io::stdin().is_terminal();
    let username = match args.username {
        Some(u) => u,
        None if interactive && !args.password_stdin => {
            ask("Username: ", false)?.expose().to_string()
        }
        None => bail!("no user name: pass --username USER"),
    };
    if username.is_empty() {
        bail!("the user name is empty");
    }
    let password = if args.password_stdin {
        let mut raw = String::new();
        std::io::stdin()
            .read_to_string(&mut raw)
            .context("cannot read the password from standard input")?;
        let raw = Secret::new(raw);
        Secret::new(raw.expose().trim_end_matches(['\n', '\r']))
    } else if interactive {
        ask("Password: ", true)?
    } else {
        bail!(
            "no password: pass --password-stdin (and the password on standard input), or run in a terminal"
        );
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    let creds = Credentials::Basic {
        username: username.clone(),
        password,
    };
    let checker = Client::new(options(
        &args.registry,
        Arc::new(FixedCredentials {
            registry: host.clone(),
            credentials: creds.clone(),
        }),
    ));
    match checker.check_login(&host) {
        Ok(()) => {}
        Err(RegistryError::Unauthorized(a)) => bail!(
            "login to {host} failed: the registry refused the user name or password ({} {} answered {}{})",
            a.method,
            a.url,
            a.status,
            a.body
        ),
        Err(e) => return Err(e).with_context(|| format!("login to {host} failed")),
    }
    let path = docker_config_path()?;
    let mut config = DockerConfig::load(&path)?;
    let stored = config.store(&host, &creds)?;
    let stored_in = match &stored {
        StoredIn::File(p) => {
            printer.warn(format!(
                "the password is stored unencrypted in {}; configure a credential helper (\"credsStore\") to avoid that",
                p.display()
            ));
            p.display().to_string()
        }
        StoredIn::Helper(h) => format!("docker-credential-{h}"),
    };
    printer.json(&LoginReport {
        registry: host.clone(),
        username,
        stored_in,
    });
    printer.status("Login Succeeded");
    Ok(())
}

pub fn logout(_global: &GlobalArgs, printer: &Printer, args: LogoutArgs) -> Result<()> {
    let host = host_or_hub(args.host);
    let mut config = DockerConfig::load(docker_config_path()?)?;
    if config.erase(&host)? {
        printer.status(format!("Removed login credentials for {host}"));
    } else {
        printer.status(format!("Not logged in to {host}"));
    }
    Ok(())
}
