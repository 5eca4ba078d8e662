//! Docker credential helpers: `docker-credential-NAME get|store|erase`, speaking JSON on
//! stdin/stdout (the protocol of docker/docker-credential-helpers).
//!
//! Secrets travel only through the helper's stdin/stdout pipes, never on its command line,
//! and never appear in errors (a helper's own stderr is shown, its stdout is not unless it is
//! the known "not found" message).

use std::ffi::OsString;
use std::io::Write;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use super::Credentials;
use crate::error::{Error, Result};
use crate::secret::Secret;

/// The username helpers use to say "the secret is an identity token".
const TOKEN_USERNAME: &str = "<token>";

/// How to find and run helpers.
#[derive(Debug, Clone, Default)]
pub struct HelperRunner {
    /// A `PATH` to search for `docker-credential-*` instead of the process's own (tests use a
    /// directory of fake helpers; the binary leaves it unset).
    pub search_path: Option<OsString>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperCreds {
    #[serde(default)]
    username: String,
    #[serde(default)]
    secret: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct HelperStore<'a> {
    #[serde(rename = "ServerURL")]
    server_url: &'a str,
    username: &'a str,
    secret: &'a str,
}

/// What running a helper gave back.
enum Outcome {
    Ok(Vec<u8>),
    NotFound,
}

impl HelperRunner {
    fn run(&self, helper: &str, action: &str, server: &str, input: &[u8]) -> Result<Outcome> {
        let program = format!("docker-credential-{helper}");
        let err = |reason: String| Error::Helper {
            helper: helper.to_string(),
            server: server.to_string(),
            reason,
        };
        let mut cmd = Command::new(&program);
        cmd.arg(action)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(p) = &self.search_path {
            // On Unix a PATH set for the child is also used to find the program itself.
            cmd.env("PATH", p);
        }
        let mut child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                err(format!(
                    "{program} is not installed or not on PATH; install it or remove it from credsStore/credHelpers in the Docker config"
                ))
            } else {
                err(format!("cannot run {program}: {e}"))
            }
        })?;
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading its input closes the pipe; its exit status
            // says what happened, so a write error here is not the interesting one.
            let _ = stdin.write_all(input);
        }
        let out = child
            .wait_with_output()
            .map_err(|e| err(format!("cannot run {program}: {e}")))?;
        if out.status.success() {
            return Ok(Outcome::Ok(out.stdout));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        if stdout.contains("credentials not found") {
            return Ok(Outcome::NotFound);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let msg = stderr.trim();
        Err(err(format!(
            "{program} {action} exited with {}{}",
            out.status,
            if msg.is_empty() {
                String::new()
            } else {
                format!(": {msg}")
            }
        )))
    }

    /// `get`: the credentials the helper holds for `server`, or `None`.
    pub(crate) fn get(&self, helper: &str, server: &str) -> Result<Option<Credentials>> {
        let out = match self.run(helper, "get", server, server.as_bytes())? {
            Outcome::Ok(out) => out,
            Outcome::NotFound => return Ok(None),
        };
        let creds: HelperCreds = serde_json::from_slice(&out).map_err(|e| Error::Helper {
            helper: helper.to_string(),
            server: server.to_string(),
            reason: format!("its answer is not the expected JSON ({e})"),
        })?;
        if creds.secret.is_empty() {
            return Ok(None);
        }
        Ok(Some(if creds.username == TOKEN_USERNAME {
            Credentials::IdentityToken {
                token: Secret::new(creds.secret),
            }
        } else {
            Credentials::Basic {
                username: creds.username,
                password: Secret::new(creds.secret),
            }
        }))
    }

    /// `store`: saves credentials for `server`.
    pub(crate) fn store(&self, helper: &str, server: &str, creds: &Credentials) -> Result<()> {
        let (username, secret) = match creds {
            Credentials::Basic { username, password } => (username.as_str(), password),
            Credentials::IdentityToken { token } => (TOKEN_USERNAME, token),
            Credentials::RegistryToken { token } => (TOKEN_USERNAME, token),
        };
        let input = serde_json::to_vec(&HelperStore {
            server_url: server,
            username,
            secret: secret.expose(),
        })
        .map_err(|e| Error::Helper {
            helper: helper.to_string(),
            server: server.to_string(),
            reason: e.to_string(),
        })?;
        self.run(helper, "store", server, &input).map(|_| ())
    }

    /// `erase`: forgets `server`. Erasing what is not there is not an error.
    pub(crate) fn erase(&self, helper: &str, server: &str) -> Result<()> {
        self.run(helper, "erase", server, server.as_bytes())
            .map(|_| ())
    }
}
