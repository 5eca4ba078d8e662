//! The OCI runtime-spec documents a bundle carries, shaped so that they serialize exactly as
//! LinuxKit writes them: `config.json` is Go's `json.MarshalIndent(specs.Spec, "", "    ")`
//! (runtime-spec 1.2.1 field order and `omitempty` rules, Go's HTML-safe escaping), and
//! `runtime.json` is LinuxKit's `moby.Runtime` after its defaults are filled in.
//!
//! Only the fields LinuxKit sets exist here. Pure data plus the JSON rendering; the values are
//! decided in `config_to_oci`.

use std::collections::BTreeMap;

use oxkit_spec::image_yaml::{IdMapping, Interface, Mount, Resources};
use serde::Serialize;

/// The runtime-spec version LinuxKit's vendored `specs-go` declares.
pub(crate) const OCI_VERSION: &str = "1.2.1";

fn is_false(b: &bool) -> bool {
    !*b
}

/// `specs.Spec`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Spec {
    #[serde(rename = "ociVersion")]
    pub version: String,
    pub process: Process,
    pub root: Root,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    pub linux: Linux,
}

/// `specs.Process`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Process {
    pub user: User,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    pub cwd: String,
    pub capabilities: Capabilities,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rlimits: Vec<Rlimit>,
    #[serde(rename = "noNewPrivileges", skip_serializing_if = "is_false")]
    pub no_new_privileges: bool,
    #[serde(rename = "oomScoreAdj", skip_serializing_if = "Option::is_none")]
    pub oom_score_adj: Option<i64>,
}

/// `specs.User`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    #[serde(rename = "additionalGids", skip_serializing_if = "Vec::is_empty")]
    pub additional_gids: Vec<u32>,
}

/// `specs.LinuxCapabilities`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bounding: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub effective: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inheritable: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub permitted: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ambient: Vec<String>,
}

/// `specs.POSIXRlimit` (Go's field order: type, hard, soft).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rlimit {
    #[serde(rename = "type")]
    pub kind: String,
    pub hard: u64,
    pub soft: u64,
}

/// `specs.Root`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Root {
    pub path: String,
    #[serde(skip_serializing_if = "is_false")]
    pub readonly: bool,
}

/// `specs.Linux`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Linux {
    #[serde(rename = "uidMappings", skip_serializing_if = "Vec::is_empty")]
    pub uid_mappings: Vec<IdMapping>,
    #[serde(rename = "gidMappings", skip_serializing_if = "Vec::is_empty")]
    pub gid_mappings: Vec<IdMapping>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctl: BTreeMap<String, String>,
    /// Always written (a non-nil pointer in LinuxKit), `{}` when empty.
    pub resources: Resources,
    #[serde(rename = "cgroupsPath", skip_serializing_if = "String::is_empty")]
    pub cgroups_path: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<Namespace>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<LinuxDevice>,
    #[serde(rename = "rootfsPropagation", skip_serializing_if = "String::is_empty")]
    pub rootfs_propagation: String,
    #[serde(rename = "maskedPaths", skip_serializing_if = "Vec::is_empty")]
    pub masked_paths: Vec<String>,
    #[serde(rename = "readonlyPaths", skip_serializing_if = "Vec::is_empty")]
    pub readonly_paths: Vec<String>,
}

/// `specs.LinuxNamespace`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Namespace {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
}

/// `specs.LinuxDevice` (LinuxKit never sets its uid/gid).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LinuxDevice {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub major: i64,
    pub minor: i64,
    /// Go's `os.FileMode`: a plain number.
    #[serde(rename = "fileMode")]
    pub file_mode: u32,
}

/// LinuxKit's `runtime.json` (`moby.Runtime` with every pointer filled in, so every field is
/// written, empty or not).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RuntimeConfig {
    pub cgroups: Vec<String>,
    pub mounts: Vec<Mount>,
    pub mkdir: Vec<String>,
    pub interfaces: Vec<Interface>,
    #[serde(rename = "bindNS")]
    pub bind_ns: BindNamespaces,
    pub namespace: String,
}

/// `moby.Namespaces` with every path set (empty meaning "do not bind").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BindNamespaces {
    pub cgroup: String,
    pub ipc: String,
    pub mnt: String,
    pub net: String,
    pub pid: String,
    pub user: String,
    pub uts: String,
}

/// Renders `value` as Go's `json.MarshalIndent(v, "", "    ")` does, HTML-safe escaping
/// included (`<`, `>`, `&`, U+2028 and U+2029 only ever occur inside strings).
pub(crate) fn go_json_indent<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    go_json_indent_with(value, b"    ")
}

/// Go's `json.MarshalIndent(value, "", indent)`.
pub(crate) fn go_json_indent_with<T: Serialize>(
    value: &T,
    indent: &[u8],
) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(indent);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    value.serialize(&mut ser)?;
    let text = String::from_utf8_lossy(&out);
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => escaped.push_str("\\u003c"),
            '>' => escaped.push_str("\\u003e"),
            '&' => escaped.push_str("\\u0026"),
            '\u{2028}' => escaped.push_str("\\u2028"),
            '\u{2029}' => escaped.push_str("\\u2029"),
            c => escaped.push(c),
        }
    }
    Ok(escaped.into_bytes())
}
