//! The parts of a bundle's `config.json` (an OCI runtime spec, as `runc spec` and LinuxKit's
//! `ConfigToOCI` write it) and of LinuxKit's `runtime.json` that the init acts on, as plain serde
//! types. Unknown fields are ignored; fields the init cannot honour are kept only so that
//! [`Spec::unsupported`] can name them once.
//!
//! This module only parses text: it must not touch the filesystem or decide how a container is
//! set up (that is `plan.rs`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// `config.json`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Spec {
    pub oci_version: String,
    pub process: Option<Process>,
    pub root: Option<Root>,
    pub hostname: Option<String>,
    pub mounts: Vec<Mount>,
    pub hooks: Option<Value>,
    pub linux: Option<Linux>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Process {
    pub terminal: bool,
    pub user: User,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub capabilities: Option<Capabilities>,
    pub rlimits: Vec<Rlimit>,
    pub no_new_privileges: bool,
    pub oom_score_adj: Option<i32>,
    pub apparmor_profile: Option<String>,
    pub selinux_label: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub umask: Option<u32>,
    pub additional_gids: Vec<u32>,
}

/// Each set is a list of `CAP_*` names; `None` and an empty list both mean "no capabilities".
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Capabilities {
    pub bounding: Option<Vec<String>>,
    pub effective: Option<Vec<String>>,
    pub inheritable: Option<Vec<String>>,
    pub permitted: Option<Vec<String>>,
    pub ambient: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Rlimit {
    #[serde(rename = "type")]
    pub kind: String,
    pub hard: u64,
    pub soft: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Root {
    pub path: String,
    pub readonly: bool,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Mount {
    pub destination: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub source: Option<String>,
    pub options: Option<Vec<String>>,
}

impl Mount {
    pub fn options(&self) -> &[String] {
        self.options.as_deref().unwrap_or_default()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Linux {
    pub namespaces: Vec<Namespace>,
    pub uid_mappings: Option<Vec<Value>>,
    pub gid_mappings: Option<Vec<Value>>,
    pub sysctl: Option<BTreeMap<String, String>>,
    pub resources: Option<Resources>,
    pub cgroups_path: Option<String>,
    pub devices: Option<Vec<Device>>,
    pub rootfs_propagation: Option<String>,
    pub masked_paths: Option<Vec<String>>,
    pub readonly_paths: Option<Vec<String>>,
    pub seccomp: Option<Value>,
    pub mount_label: Option<String>,
    pub intel_rdt: Option<Value>,
    pub personality: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Namespace {
    #[serde(rename = "type")]
    pub kind: String,
    pub path: Option<String>,
}

/// `linux.resources`: only `devices` (the device cgroup allow list LinuxKit always writes) is
/// recognised as harmless; anything else is reported as unsupported.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Resources {
    pub devices: Option<Vec<Value>>,
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Device {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub major: i64,
    pub minor: i64,
    pub file_mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// LinuxKit's `runtime.json` (its `moby.Runtime`): host-side preparation done before the
/// container starts.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Runtime {
    pub cgroups: Option<Vec<String>>,
    pub mounts: Option<Vec<Mount>>,
    pub mkdir: Option<Vec<String>>,
    pub interfaces: Option<Vec<Value>>,
    #[serde(rename = "bindNS")]
    pub bind_ns: Option<BindNamespaces>,
    pub namespace: Option<String>,
}

/// Where to bind-mount the started container's namespaces (`/proc/PID/ns/*`) on the host.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct BindNamespaces {
    pub cgroup: Option<String>,
    pub ipc: Option<String>,
    pub mnt: Option<String>,
    pub net: Option<String>,
    pub pid: Option<String>,
    pub user: Option<String>,
    pub uts: Option<String>,
}

impl BindNamespaces {
    /// `(name under /proc/PID/ns, host path)` for each one set.
    pub fn entries(&self) -> Vec<(&'static str, &str)> {
        [
            ("cgroup", &self.cgroup),
            ("ipc", &self.ipc),
            ("mnt", &self.mnt),
            ("net", &self.net),
            ("pid", &self.pid),
            ("user", &self.user),
            ("uts", &self.uts),
        ]
        .into_iter()
        .filter_map(|(n, p)| p.as_deref().filter(|p| !p.is_empty()).map(|p| (n, p)))
        .collect()
    }
}

/// A JSON document that did not parse, with serde_json's line and column.
#[derive(Debug)]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

fn parse<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, ParseError> {
    serde_json::from_str(text).map_err(|e| {
        // serde_json appends " at line L column C" to its messages; the caller puts the
        // position right after the file name instead.
        let full = e.to_string();
        let message = match full.rfind(" at line ") {
            Some(i) => full.get(..i).unwrap_or(&full).to_string(),
            None => full,
        };
        ParseError {
            line: e.line(),
            column: e.column(),
            message,
        }
    })
}

impl Spec {
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        parse(text)
    }

    /// Features present in the spec that the init does not implement, one short phrase each,
    /// to be logged once when the bundle is loaded.
    pub fn unsupported(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.hooks.as_ref().is_some_and(|h| !is_empty(h)) {
            out.push("hooks".to_string());
        }
        if let Some(p) = &self.process {
            if p.terminal {
                out.push("process.terminal (the output goes through a pipe)".to_string());
            }
            if p.apparmor_profile.as_deref().is_some_and(|s| !s.is_empty()) {
                out.push("process.apparmorProfile".to_string());
            }
            if p.selinux_label.as_deref().is_some_and(|s| !s.is_empty()) {
                out.push("process.selinuxLabel".to_string());
            }
        }
        if let Some(l) = &self.linux {
            if l.seccomp.as_ref().is_some_and(|v| !is_empty(v)) {
                out.push("linux.seccomp".to_string());
            }
            if l.uid_mappings.as_ref().is_some_and(|v| !v.is_empty())
                || l.gid_mappings.as_ref().is_some_and(|v| !v.is_empty())
            {
                out.push("linux.uidMappings/gidMappings".to_string());
            }
            if let Some(r) = &l.resources {
                let limited: Vec<&str> = r
                    .other
                    .iter()
                    .filter(|(_, v)| !is_empty(v))
                    .map(|(k, _)| k.as_str())
                    .collect();
                if !limited.is_empty() {
                    out.push(format!("linux.resources ({})", limited.join(", ")));
                }
            }
            if l.intel_rdt.as_ref().is_some_and(|v| !is_empty(v)) {
                out.push("linux.intelRdt".to_string());
            }
            if l.personality.as_ref().is_some_and(|v| !is_empty(v)) {
                out.push("linux.personality".to_string());
            }
            if l.mount_label.as_deref().is_some_and(|s| !s.is_empty()) {
                out.push("linux.mountLabel".to_string());
            }
        }
        out
    }
}

impl Runtime {
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        parse(text)
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.values().all(is_empty),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `runc spec` (runc 1.1) writes, verbatim apart from whitespace.
    pub(crate) const RUNC_SPEC: &str = include_str!("../tests/fixtures/runc-spec.json");
    /// What LinuxKit's ConfigToOCI produces for its getty package (pid/net host, binds, devices,
    /// `capabilities: all`, writable root).
    pub(crate) const LINUXKIT_GETTY: &str = include_str!("../tests/fixtures/linuxkit-getty.json");
    /// LinuxKit's dhcpcd package (new pid namespace, a bind over /etc, four capabilities).
    pub(crate) const LINUXKIT_DHCPCD: &str = include_str!("../tests/fixtures/linuxkit-dhcpcd.json");
    const LINUXKIT_RUNTIME: &str = include_str!("../tests/fixtures/linuxkit-runtime.json");

    #[test]
    fn runc_spec_parses_with_every_field_the_init_uses() {
        let spec = Spec::parse(RUNC_SPEC).expect("runc spec");
        assert_eq!(spec.oci_version, "1.0.2-dev");
        let p = spec.process.as_ref().expect("process");
        assert_eq!(p.args, ["sh"]);
        assert!(p.terminal);
        assert_eq!(p.cwd, "/");
        assert_eq!(
            p.env[0],
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        );
        let caps = p.capabilities.as_ref().expect("caps");
        assert_eq!(
            caps.bounding.as_deref(),
            Some(
                &[
                    "CAP_AUDIT_WRITE".to_string(),
                    "CAP_KILL".into(),
                    "CAP_NET_BIND_SERVICE".into()
                ][..]
            )
        );
        assert_eq!(p.rlimits[0].kind, "RLIMIT_NOFILE");
        assert_eq!((p.rlimits[0].soft, p.rlimits[0].hard), (1024, 1024));
        assert!(p.no_new_privileges);
        let root = spec.root.as_ref().expect("root");
        assert_eq!((root.path.as_str(), root.readonly), ("rootfs", true));
        assert_eq!(spec.hostname.as_deref(), Some("runc"));
        let dests: Vec<&str> = spec.mounts.iter().map(|m| m.destination.as_str()).collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup"
            ]
        );
        assert_eq!(
            spec.mounts[1].options(),
            ["nosuid", "strictatime", "mode=755", "size=65536k"]
        );
        let linux = spec.linux.as_ref().expect("linux");
        let ns: Vec<&str> = linux.namespaces.iter().map(|n| n.kind.as_str()).collect();
        assert_eq!(ns, ["pid", "network", "ipc", "uts", "mount"]);
        assert!(
            linux
                .masked_paths
                .as_ref()
                .expect("masked")
                .contains(&"/proc/kcore".to_string())
        );
        assert!(
            linux
                .readonly_paths
                .as_ref()
                .expect("ro")
                .contains(&"/proc/sysrq-trigger".to_string())
        );
        // Only the terminal is unsupported: the device allow list is fine.
        assert_eq!(
            spec.unsupported(),
            ["process.terminal (the output goes through a pipe)"]
        );
    }

    #[test]
    fn linuxkit_specs_parse() {
        let getty = Spec::parse(LINUXKIT_GETTY).expect("getty");
        let linux = getty.linux.as_ref().expect("linux");
        // pid: host and net: host leave only the mount namespace.
        let ns: Vec<&str> = linux.namespaces.iter().map(|n| n.kind.as_str()).collect();
        assert_eq!(ns, ["mount"]);
        let devices = linux.devices.as_ref().expect("devices");
        assert_eq!(devices[0].path, "/dev/console");
        assert_eq!(
            (devices[0].major, devices[0].minor, devices[0].file_mode),
            (5, 1, Some(0o666))
        );
        assert!(!getty.root.as_ref().expect("root").readonly);
        let binds: Vec<&Mount> = getty
            .mounts
            .iter()
            .filter(|m| m.kind.as_deref() == Some("bind"))
            .collect();
        assert!(
            binds
                .iter()
                .any(|m| m.destination == "/hostroot/etc"
                    && m.options() == ["rw", "rbind", "rshared"])
        );
        assert!(getty.unsupported().is_empty(), "{:?}", getty.unsupported());

        let dhcpcd = Spec::parse(LINUXKIT_DHCPCD).expect("dhcpcd");
        let p = dhcpcd.process.as_ref().expect("process");
        assert_eq!(
            p.args,
            ["/sbin/dhcpcd", "--nobackground", "-f", "/dhcpcd.conf", "-1"]
        );
        assert_eq!(
            p.capabilities
                .as_ref()
                .and_then(|c| c.effective.as_ref())
                .map(Vec::len),
            Some(4)
        );
    }

    #[test]
    fn linuxkit_runtime_json_parses() {
        let rt = Runtime::parse(LINUXKIT_RUNTIME).expect("runtime");
        let mounts = rt.mounts.as_ref().expect("mounts");
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].destination, "/containers/services/getty/tmp");
        assert_eq!(mounts[1].options(), ["remount", "private"]);
        assert_eq!(mounts[1].kind, None);
        assert_eq!(mounts[2].kind.as_deref(), Some("overlay"));
        assert_eq!(
            rt.mkdir.as_deref(),
            Some(&["/var/lib/getty".to_string()][..])
        );
        let bind = rt.bind_ns.as_ref().expect("bindNS");
        assert_eq!(bind.entries(), [("net", "/run/netns/getty")]);
    }

    #[test]
    fn errors_carry_line_and_column() {
        let err =
            Spec::parse("{\n  \"process\": {\"args\": [\"sh\",]}\n}").expect_err("trailing comma");
        assert_eq!(err.line, 2);
        assert!(err.column > 10, "{err}");
        assert!(!err.message.contains(" at line "), "{err}");
        let err = Spec::parse("{\"process\": {\"args\": \"sh\"}}").expect_err("wrong type");
        assert!(err.to_string().starts_with("1:"), "{err}");
        assert!(err.message.contains("expected a sequence"), "{err}");
    }

    #[test]
    fn resources_beyond_device_rules_are_reported() {
        let spec = Spec::parse(
            r#"{"linux": {"resources": {"devices": [{"allow": false, "access": "rwm"}], "memory": {"limit": 1000}}, "seccomp": {"defaultAction": "SCMP_ACT_ERRNO"}}}"#,
        )
        .expect("spec");
        assert_eq!(
            spec.unsupported(),
            ["linux.seccomp", "linux.resources (memory)"]
        );
    }
}
