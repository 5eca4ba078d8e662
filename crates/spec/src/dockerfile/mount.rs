//! `RUN --mount=...` specifications: the comma-separated `key=value` list turned into a typed
//! [`Mount`] with BuildKit's defaults and checks. Values may contain `$VAR`, which BuildKit
//! expands at build time with the environment in force, so the parser keeps the raw text
//! ([`MountSpec`]) and checks what it can; the builder calls [`MountSpec::resolve`] to get the
//! final mount. Defaults that depend on other state (the secret target path, the cache id) are
//! left to the builder.

use super::error::ExpandError;
use super::shell::{EnvLookup, expand_word};

/// One `--mount` flag as written, unexpanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub raw: String,
}

/// The kind of a RUN mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSharing {
    Shared,
    Private,
    Locked,
}

/// A resolved RUN mount. Strings are expanded; absent options are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountType,
    /// `from=`: a stage name, image or build context to mount from (bind/cache).
    pub from: Option<String>,
    /// `source=`/`src=`: the path inside `from` (or the secret/ssh id source).
    pub source: Option<String>,
    /// `target=`/`dst=`/`destination=`: where it appears in the container.
    pub target: Option<String>,
    /// Read-only, after BuildKit's defaults: bind, secret and ssh mounts are read-only unless
    /// `rw` is given; cache and tmpfs mounts are writable.
    pub readonly: bool,
    /// `size=` of a tmpfs mount, in bytes.
    pub size_limit: Option<u64>,
    /// `id=`: cache id, or secret/ssh id.
    pub id: Option<String>,
    pub sharing: Option<CacheSharing>,
    /// `required` (secret/ssh): fail when the secret or agent is missing.
    pub required: bool,
    /// `env=`: expose a secret as this environment variable (`Some("")` means the default).
    pub env: Option<String>,
    /// `mode=` (octal), `uid=`, `gid=` of the mount point (cache, secret, ssh).
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Why a `--mount` specification is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    #[error("{spec:?}: {message}")]
    Invalid { spec: String, message: String },
    #[error("{spec:?}: {source}")]
    Expand {
        spec: String,
        #[source]
        source: ExpandError,
    },
}

const KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "src",
    "target",
    "dst",
    "destination",
    "readonly",
    "ro",
    "readwrite",
    "rw",
    "required",
    "size",
    "id",
    "sharing",
    "mode",
    "uid",
    "gid",
    "env",
];

impl MountSpec {
    /// Expands every value with `expand` and builds the mount, with BuildKit's checks.
    pub fn resolve(
        &self,
        expand: &dyn Fn(&str) -> Result<String, ExpandError>,
    ) -> Result<Mount, MountError> {
        let fields = split_csv(&self.raw).map_err(|m| self.invalid(m))?;
        let mut m = Mount {
            kind: MountType::Bind,
            from: None,
            source: None,
            target: None,
            readonly: false,
            size_limit: None,
            id: None,
            sharing: None,
            required: false,
            env: None,
            mode: None,
            uid: None,
            gid: None,
        };
        let mut readonly_given = false;
        for field in &fields {
            let Some((key, value)) = field.split_once('=') else {
                match field.to_ascii_lowercase().as_str() {
                    "readonly" | "ro" => (m.readonly, readonly_given) = (true, true),
                    "readwrite" | "rw" => (m.readonly, readonly_given) = (false, true),
                    "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                        m.required = true;
                    }
                    "required" => return Err(self.wrong_type("required", m.kind)),
                    _ => {
                        return Err(
                            self.invalid(format!("field {field:?} must be a key=value pair"))
                        );
                    }
                }
                continue;
            };
            let key = key.to_ascii_lowercase();
            let value = expand(value).map_err(|source| MountError::Expand {
                spec: self.raw.clone(),
                source,
            })?;
            match key.as_str() {
                "type" => m.kind = self.mount_type(&value)?,
                "from" => m.from = Some(value),
                "source" | "src" => m.source = Some(value),
                "target" | "dst" | "destination" => m.target = Some(value),
                "readonly" | "ro" => {
                    m.readonly = self.boolean(&key, &value)?;
                    readonly_given = true;
                }
                "readwrite" | "rw" => {
                    m.readonly = !self.boolean(&key, &value)?;
                    readonly_given = true;
                }
                "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                    m.required = self.boolean(&key, &value)?;
                }
                "required" => return Err(self.wrong_type("required", m.kind)),
                "size" if m.kind == MountType::Tmpfs => {
                    m.size_limit = Some(ram_in_bytes(&value).ok_or_else(|| {
                        self.invalid(format!("invalid size {value:?}; write e.g. 64m or 1g"))
                    })?);
                }
                "size" => return Err(self.wrong_type("size", m.kind)),
                "id" => m.id = Some(value),
                "sharing" => {
                    m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                        "shared" => CacheSharing::Shared,
                        "private" => CacheSharing::Private,
                        "locked" => CacheSharing::Locked,
                        _ => {
                            return Err(self.invalid(format!(
                                "unsupported sharing value {value:?}; use shared, private or locked"
                            )));
                        }
                    });
                }
                "mode" => m.mode = Some(self.number(&key, &value, 8)?),
                "uid" => m.uid = Some(self.number(&key, &value, 10)?),
                "gid" => m.gid = Some(self.number(&key, &value, 10)?),
                "env" => m.env = Some(value),
                other => {
                    return Err(self.invalid(format!(
                        "unexpected key {other:?}; use one of {}",
                        KEYS.join(", ")
                    )));
                }
            }
        }
        self.check(&mut m, readonly_given)?;
        Ok(m)
    }

    /// [`resolve`](Self::resolve) expanding values with `env` and the Dockerfile's escape.
    pub fn resolve_in(&self, env: EnvLookup<'_>, escape: char) -> Result<Mount, MountError> {
        self.resolve(&|w| expand_word(w, env, escape))
    }

    /// Parse-time checks: everything when no value refers to a variable; otherwise the keys,
    /// and BuildKit's refusal of variables in `from=`.
    pub(crate) fn check_at_parse(&self, escape: char) -> Result<(), MountError> {
        let fields = split_csv(&self.raw).map_err(|m| self.invalid(m))?;
        if !fields.iter().any(|f| f.contains('$')) {
            return self.resolve_in(&|_| None, escape).map(|_| ());
        }
        for field in &fields {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            if !KEYS.contains(&key.as_str()) {
                return Err(self.invalid(format!(
                    "unexpected key {key:?}; use one of {}",
                    KEYS.join(", ")
                )));
            }
            if key == "from" && value.find('$').is_some_and(|i| i + 1 != value.len()) {
                return Err(self.invalid(
                    "from= does not support variable expansion; define an alias stage with \
                     FROM and a global ARG instead"
                        .to_string(),
                ));
            }
        }
        Ok(())
    }

    fn check(&self, m: &mut Mount, readonly_given: bool) -> Result<(), MountError> {
        let file_info_allowed = matches!(
            m.kind,
            MountType::Secret | MountType::Ssh | MountType::Cache
        );
        if !file_info_allowed {
            for (name, set) in [
                ("mode", m.mode.is_some()),
                ("uid", m.uid.is_some()),
                ("gid", m.gid.is_some()),
            ] {
                if set {
                    return Err(self.invalid(format!(
                        "{name} is not allowed for {} mounts; only cache, secret and ssh mounts take it",
                        type_name(m.kind)
                    )));
                }
            }
        }
        if !readonly_given {
            m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
        }
        if m.kind == MountType::Secret {
            if m.from.is_some() {
                return Err(self.invalid("a secret mount takes no from=".to_string()));
            }
            if m.sharing.is_some() {
                return Err(self.invalid("a secret mount takes no sharing=".to_string()));
            }
            if m.source.is_none() && m.target.is_none() && m.id.is_none() {
                return Err(
                    self.invalid("a secret mount needs id=, source= or target=".to_string())
                );
            }
            if m.source.is_some() && m.id.is_some() {
                return Err(self.invalid("give either source= or id=, not both".to_string()));
            }
        }
        if m.sharing.is_some() && m.kind != MountType::Cache {
            return Err(self.invalid(format!(
                "sharing= applies only to cache mounts, not {}",
                type_name(m.kind)
            )));
        }
        Ok(())
    }

    fn invalid(&self, message: String) -> MountError {
        MountError::Invalid {
            spec: self.raw.clone(),
            message,
        }
    }

    fn wrong_type(&self, key: &str, kind: MountType) -> MountError {
        self.invalid(format!(
            "{key} does not apply to {} mounts (set type= first)",
            type_name(kind)
        ))
    }

    fn mount_type(&self, value: &str) -> Result<MountType, MountError> {
        Ok(match value.to_ascii_lowercase().as_str() {
            "bind" => MountType::Bind,
            "cache" => MountType::Cache,
            "tmpfs" => MountType::Tmpfs,
            "secret" => MountType::Secret,
            "ssh" => MountType::Ssh,
            _ => {
                return Err(self.invalid(format!(
                    "unsupported mount type {value:?}; use bind, cache, tmpfs, secret or ssh"
                )));
            }
        })
    }

    fn boolean(&self, key: &str, value: &str) -> Result<bool, MountError> {
        parse_go_bool(value).ok_or_else(|| {
            self.invalid(format!(
                "invalid value for {key}: {value:?}; use true or false"
            ))
        })
    }

    fn number(&self, key: &str, value: &str, radix: u32) -> Result<u32, MountError> {
        u32::from_str_radix(value, radix)
            .ok()
            .filter(|_| !value.starts_with('+'))
            .ok_or_else(|| {
                let what = if radix == 8 { "an octal" } else { "a decimal" };
                self.invalid(format!(
                    "invalid value {value:?} for {key}; expected {what} number"
                ))
            })
    }
}

fn type_name(kind: MountType) -> &'static str {
    match kind {
        MountType::Bind => "bind",
        MountType::Cache => "cache",
        MountType::Tmpfs => "tmpfs",
        MountType::Secret => "secret",
        MountType::Ssh => "ssh",
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Docker's `units.RAMInBytes`: a number with an optional binary unit (`64m`, `1.5GiB`, `512`).
fn ram_in_bytes(s: &str) -> Option<u64> {
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(digits_end);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return None,
    };
    let bytes = value * 2f64.powi(shift);
    (bytes.is_finite() && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// Splits a CSV record (RFC 4180 quoting) into fields.
fn split_csv(raw: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = raw.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("unterminated quoted field".to_string()),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err("extraneous text after a quoted field".to_string()),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => {
                        return Err("bare \" in a field; quote the whole field".to_string());
                    }
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

#[cfg(test)]
#[path = "mount_tests.rs"]
mod tests;
