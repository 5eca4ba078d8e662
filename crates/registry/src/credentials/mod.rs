//! Registry credentials as users already have them: Docker's `config.json` (`auths` entries
//! with a base64 `auth`, or `username`/`password`, `identitytoken`, `registrytoken`), and the
//! credential helpers it names (`credsStore`, `credHelpers`). Also writing them back for
//! `oxkit login` / `oxkit logout`, keeping every other field of the file as it was.
//!
//! The caller decides where the file is (`$DOCKER_CONFIG/config.json` or
//! `~/.docker/config.json`): this module never reads the environment. Secrets are held in
//! [`Secret`] and never put into an error.

mod helper;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use oxkit_spec::reference::DOCKER_HUB;
use serde::Deserialize;

pub use helper::HelperRunner;

use crate::error::{Error, Result};
use crate::secret::Secret;

/// The key Docker uses for Docker Hub in `config.json` and with credential helpers.
pub const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";

/// Credentials for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and password (HTTP basic, or exchanged for a bearer token).
    Basic { username: String, password: Secret },
    /// An OAuth2 refresh token (`identitytoken`), exchanged for bearer tokens.
    IdentityToken { token: Secret },
    /// A bearer token to send as is (`registrytoken`).
    RegistryToken { token: Secret },
}

/// Where credentials for a registry come from.
pub trait CredentialSource: Send + Sync + std::fmt::Debug {
    /// The credentials for `registry` (as written in references: `docker.io`,
    /// `127.0.0.1:5000`), or `None` for anonymous access.
    fn get(&self, registry: &str) -> Result<Option<Credentials>>;
}

/// Fixed credentials for one registry (used by `oxkit login` to check a password before
/// saving it).
#[derive(Debug, Clone)]
pub struct FixedCredentials {
    pub registry: String,
    pub credentials: Credentials,
}

impl CredentialSource for FixedCredentials {
    fn get(&self, registry: &str) -> Result<Option<Credentials>> {
        Ok((normalize_host(registry) == normalize_host(&self.registry))
            .then(|| self.credentials.clone()))
    }
}

/// The host a `config.json` key or a registry name stands for: scheme and path dropped,
/// Docker Hub's several names folded into `docker.io`.
pub fn normalize_host(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            DOCKER_HUB.to_string()
        }
        _ => host,
    }
}

/// The server address Docker uses for `registry` as a config key and helper argument.
pub fn server_address(registry: &str) -> String {
    if normalize_host(registry) == DOCKER_HUB {
        DOCKER_HUB_CONFIG_KEY.to_string()
    } else {
        normalize_host(registry)
    }
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<Secret>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<Secret>,
    #[serde(default)]
    identitytoken: Option<Secret>,
    #[serde(default)]
    registrytoken: Option<Secret>,
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

/// Where `oxkit login` put the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredIn {
    /// In `config.json`, base64-encoded but not encrypted.
    File(PathBuf),
    /// In a credential helper (`docker-credential-NAME`).
    Helper(String),
}

/// A Docker `config.json` and the helpers it names.
#[derive(Debug)]
pub struct DockerConfig {
    path: PathBuf,
    file: ConfigFile,
    helpers: HelperRunner,
}

impl DockerConfig {
    /// Reads `path`; a missing file is an empty configuration (anonymous access).
    pub fn load(path: impl Into<PathBuf>) -> Result<Self> {
        Self::load_with(path, HelperRunner::default())
    }

    /// Like [`DockerConfig::load`], running helpers with `helpers`.
    pub fn load_with(path: impl Into<PathBuf>, helpers: HelperRunner) -> Result<Self> {
        let path = path.into();
        let file = match std::fs::read(&path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => ConfigFile::default(),
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Config {
                path: path.clone(),
                reason: format!("not a valid Docker config ({e}); fix or remove the file"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ConfigFile::default(),
            Err(e) => return Err(Error::io("read", &path)(e)),
        };
        Ok(Self {
            path,
            file,
            helpers,
        })
    }

    /// The file this configuration was read from (and is written to).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The helper that holds `registry`'s credentials: its `credHelpers` entry, else
    /// `credsStore`.
    fn helper_for(&self, registry: &str) -> Option<&str> {
        let host = normalize_host(registry);
        self.file
            .cred_helpers
            .iter()
            .find(|(k, _)| normalize_host(k) == host)
            .map(|(_, v)| v.as_str())
            .or(self.file.creds_store.as_deref())
            .filter(|h| !h.is_empty())
    }

    /// The `auths` entry for `registry`: the exact server-address key first, then any key
    /// naming the same host (`https://host/v2/`, `http://host`...).
    fn auth_entry(&self, registry: &str) -> Option<(&str, &AuthEntry)> {
        let exact = server_address(registry);
        if let Some((k, v)) = self.file.auths.get_key_value(&exact) {
            return Some((k, v));
        }
        let host = normalize_host(registry);
        self.file
            .auths
            .iter()
            .find(|(k, _)| normalize_host(k) == host)
            .map(|(k, v)| (k.as_str(), v))
    }

    fn credentials_in(&self, key: &str, e: &AuthEntry) -> Result<Option<Credentials>> {
        if let Some(t) = e.registrytoken.as_ref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credentials::RegistryToken { token: t.clone() }));
        }
        if let Some(t) = e.identitytoken.as_ref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credentials::IdentityToken { token: t.clone() }));
        }
        if let Some(auth) = e.auth.as_ref().filter(|a| !a.is_empty()) {
            let bad = |why: &str| Error::Config {
                path: self.path.clone(),
                reason: format!("auths.{key:?}.auth {why}; run `oxkit login` again"),
            };
            let decoded = BASE64
                .decode(auth.expose().trim())
                .map_err(|_| bad("is not valid base64"))?;
            let decoded =
                Secret::new(String::from_utf8(decoded).map_err(|_| bad("is not UTF-8 text"))?);
            let (user, pass) = decoded
                .expose()
                .split_once(':')
                .ok_or_else(|| bad("is not base64 of USER:PASSWORD"))?;
            return Ok(Some(Credentials::Basic {
                username: user.to_string(),
                password: Secret::new(pass),
            }));
        }
        match (&e.username, &e.password) {
            (Some(u), Some(p)) if !u.is_empty() => Ok(Some(Credentials::Basic {
                username: u.clone(),
                password: p.clone(),
            })),
            _ => Ok(None),
        }
    }

    /// Saves credentials for `registry`: with its credential helper when one is configured,
    /// in the file otherwise. Every other part of the file is kept.
    pub fn store(&mut self, registry: &str, creds: &Credentials) -> Result<StoredIn> {
        let server = server_address(registry);
        if let Some(helper) = self.helper_for(registry).map(str::to_string) {
            self.helpers.store(&helper, &server, creds)?;
            // Docker keeps an empty entry so tools listing `auths` still see the login.
            if self.file.creds_store.as_deref() == Some(helper.as_str()) {
                self.update_file(|auths| {
                    auths.insert(server.clone(), serde_json::json!({}));
                })?;
            }
            return Ok(StoredIn::Helper(helper));
        }
        let entry = match creds {
            Credentials::Basic { username, password } => serde_json::json!({
                "auth": BASE64.encode(format!("{username}:{}", password.expose())),
            }),
            Credentials::IdentityToken { token } => {
                serde_json::json!({ "identitytoken": token.expose() })
            }
            Credentials::RegistryToken { token } => {
                serde_json::json!({ "registrytoken": token.expose() })
            }
        };
        let host = normalize_host(registry);
        self.update_file(|auths| {
            auths.retain(|k, _| normalize_host(k) != host);
            auths.insert(server.clone(), entry);
        })?;
        Ok(StoredIn::File(self.path.clone()))
    }

    /// Forgets `registry`'s credentials (helper and file). Returns whether any were there.
    pub fn erase(&mut self, registry: &str) -> Result<bool> {
        let mut found = false;
        if let Some(helper) = self.helper_for(registry).map(str::to_string) {
            let server = server_address(registry);
            found |= self.helpers.get(&helper, &server)?.is_some();
            self.helpers.erase(&helper, &server)?;
        }
        let host = normalize_host(registry);
        if self.file.auths.keys().any(|k| normalize_host(k) == host) {
            found = true;
            self.update_file(|auths| auths.retain(|k, _| normalize_host(k) != host))?;
        }
        Ok(found)
    }

    /// A read-modify-write of the file's `auths`, keeping every other field, then
    /// an atomic replace with mode 0600 (the file holds passwords).
    fn update_file(
        &mut self,
        f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
    ) -> Result<()> {
        let mut doc: serde_json::Value = match std::fs::read(&self.path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => serde_json::json!({}),
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Config {
                path: self.path.clone(),
                reason: format!("not a valid Docker config ({e}); fix or remove the file"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
            Err(e) => return Err(Error::io("read", &self.path)(e)),
        };
        let Some(obj) = doc.as_object_mut() else {
            return Err(Error::Config {
                path: self.path.clone(),
                reason: "the top level is not a JSON object; fix or remove the file".into(),
            });
        };
        let auths = obj.entry("auths").or_insert_with(|| serde_json::json!({}));
        if !auths.is_object() {
            *auths = serde_json::json!({});
        }
        if let Some(map) = auths.as_object_mut() {
            f(map);
        }
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        serde::Serialize::serialize(&doc, &mut ser).map_err(|e| Error::Config {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        out.push(b'\n');
        write_private(&self.path, &out)?;
        // Keep the in-memory view in step with the file.
        self.file = serde_json::from_slice(&out).map_err(|e| Error::Config {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically with mode 0600, creating its directory (0700).
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.as_os_str().is_empty() && !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(Error::io("create directory", dir))?;
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".config.json.")
        .tempfile_in(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })
        .map_err(Error::io("create a temporary file in", dir))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(Error::io("set permissions of", tmp.path().to_path_buf()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(Error::io("write", tmp.path().to_path_buf()))?;
    tmp.persist(path)
        .map_err(|e| Error::io("replace", path)(e.error))?;
    Ok(())
}

impl CredentialSource for DockerConfig {
    fn get(&self, registry: &str) -> Result<Option<Credentials>> {
        if let Some(helper) = self.helper_for(registry) {
            let server = server_address(registry);
            match self.helpers.get(helper, &server) {
                Ok(Some(c)) => return Ok(Some(c)),
                Ok(None) => {}
                Err(e) => {
                    // Docker fails here; anonymous access still works for public images, and
                    // a registry that wants credentials produces an error saying to log in.
                    tracing::warn!("{e}; continuing without credentials from the helper");
                }
            }
        }
        match self.auth_entry(registry) {
            Some((key, entry)) => self.credentials_in(key, entry),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests;
