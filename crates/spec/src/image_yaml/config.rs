//! The per-container configuration LinuxKit calls `moby.ImageConfig`: the fields of an
//! `onboot`/`services` entry besides `name` and `image`, and the `config` of a `build.yml`
//! (which LinuxKit stores as JSON in the image label `org.mobyproject.config`).
//!
//! Every field is an `Option` because LinuxKit's precedence rules (image config, then label,
//! then YAML) distinguish "not set" from "set to empty". Maps are `BTreeMap` so output is
//! deterministic. Field order and JSON names follow LinuxKit's Go struct, so
//! [`ContainerConfig::to_label_json`] writes what `json.Marshal` writes. This module only
//! describes data; checks live in `validate`.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::yaml::strict;

/// Go's `omitempty` for a plain `string`: absent and empty are both left out.
pub(crate) fn unset_str(s: &Option<String>) -> bool {
    s.as_deref().is_none_or(str::is_empty)
}

/// Calls `$cb!` with a bracketed prefix and then the container-config field list, so the
/// same fields (with their serde attributes) define [`ContainerConfig`] and the inline form
/// of an image entry without `#[serde(flatten)]`, which would lose `deny_unknown_fields`
/// and source locations.
macro_rules! with_container_config_fields {
    ($cb:ident ! $prefix:tt) => {
        $cb! { $prefix
            /// Capabilities (`CAP_*`, or a single `all`/`none`); replaces the label's set.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            capabilities: Option<Vec<String>>,
            /// Capabilities added to those of the image label.
            #[serde(rename = "capabilities.add", default, skip_serializing_if = "Option::is_none")]
            capabilities_add: Option<Vec<String>>,
            /// Ambient capabilities.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            ambient: Option<Vec<String>>,
            /// OCI runtime-spec mounts.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            mounts: Option<Vec<$crate::image_yaml::Mount>>,
            /// `src:dst[:opts]` bind mounts; replaces the label's binds.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            binds: Option<Vec<String>>,
            /// Binds added to those of the image label.
            #[serde(rename = "binds.add", default, skip_serializing_if = "Option::is_none")]
            binds_add: Option<Vec<String>>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            devices: Option<Vec<$crate::image_yaml::Device>>,
            /// `dst[:opts]` tmpfs mounts.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            tmpfs: Option<Vec<String>>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            command: Option<Vec<String>>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            env: Option<Vec<String>>,
            /// Go `string`: empty means unset.
            #[serde(default, skip_serializing_if = "crate::image_yaml::config::unset_str")]
            cwd: Option<String>,
            /// `host`/`root`, `new`/`none`, or a namespace path. Go `string`: empty means unset.
            #[serde(default, skip_serializing_if = "crate::image_yaml::config::unset_str")]
            net: Option<String>,
            #[serde(default, skip_serializing_if = "crate::image_yaml::config::unset_str")]
            pid: Option<String>,
            #[serde(default, skip_serializing_if = "crate::image_yaml::config::unset_str")]
            ipc: Option<String>,
            #[serde(default, skip_serializing_if = "crate::image_yaml::config::unset_str")]
            uts: Option<String>,
            #[serde(default, skip_serializing_if = "crate::image_yaml::config::unset_str")]
            userns: Option<String>,
            #[serde(default, skip_serializing_if = "crate::image_yaml::config::unset_str")]
            hostname: Option<String>,
            #[serde(default, deserialize_with = "crate::yaml::strict::opt", skip_serializing_if = "Option::is_none")]
            readonly: Option<bool>,
            #[serde(rename = "maskedPaths", default, skip_serializing_if = "Option::is_none")]
            masked_paths: Option<Vec<String>>,
            #[serde(rename = "readonlyPaths", default, skip_serializing_if = "Option::is_none")]
            readonly_paths: Option<Vec<String>>,
            /// A number, or the name of another container (its allocated id).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            uid: Option<$crate::image_yaml::IdValue>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            gid: Option<$crate::image_yaml::IdValue>,
            #[serde(rename = "additionalGids", default, skip_serializing_if = "Option::is_none")]
            additional_gids: Option<Vec<$crate::image_yaml::IdValue>>,
            #[serde(rename = "noNewPrivileges", default, deserialize_with = "crate::yaml::strict::opt", skip_serializing_if = "Option::is_none")]
            no_new_privileges: Option<bool>,
            #[serde(rename = "oomScoreAdj", default, deserialize_with = "crate::yaml::strict::opt", skip_serializing_if = "Option::is_none")]
            oom_score_adj: Option<i64>,
            #[serde(rename = "rootfsPropagation", default, skip_serializing_if = "Option::is_none")]
            rootfs_propagation: Option<String>,
            #[serde(rename = "cgroupsPath", default, skip_serializing_if = "Option::is_none")]
            cgroups_path: Option<String>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            resources: Option<$crate::image_yaml::Resources>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            sysctl: Option<::std::collections::BTreeMap<String, String>>,
            /// `name,soft,hard` (names with or without `RLIMIT_`, `unlimited` allowed).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            rlimits: Option<Vec<String>>,
            #[serde(rename = "uidMappings", default, skip_serializing_if = "Option::is_none")]
            uid_mappings: Option<Vec<$crate::image_yaml::IdMapping>>,
            #[serde(rename = "gidMappings", default, skip_serializing_if = "Option::is_none")]
            gid_mappings: Option<Vec<$crate::image_yaml::IdMapping>>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            annotations: Option<::std::collections::BTreeMap<String, String>>,
            /// Settings init applies at run time rather than in the OCI spec.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            runtime: Option<$crate::image_yaml::Runtime>,
        }
    };
}
pub(crate) use with_container_config_fields;

/// Emits a struct made of a bracketed head (attributes, name, extra fields) and the
/// container-config fields.
macro_rules! container_config_struct {
    ([ $(#[$sm:meta])* $vis:vis struct $name:ident { $($extra:tt)* } ]
     $( $(#[$fm:meta])* $f:ident : $t:ty, )*) => {
        $(#[$sm])*
        $vis struct $name {
            $($extra)*
            $( $(#[$fm])* pub $f: $t, )*
        }
    };
}
pub(crate) use container_config_struct;

/// Builds a [`ContainerConfig`] from the same-named fields of `$src`.
macro_rules! take_container_config {
    ([ $src:ident ] $( $(#[$fm:meta])* $f:ident : $t:ty, )*) => {
        $crate::image_yaml::ContainerConfig { $( $f: $src.$f, )* }
    };
}
pub(crate) use take_container_config;

with_container_config_fields!(container_config_struct![
    /// LinuxKit's `moby.ImageConfig`: what a container runs with.
    #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ContainerConfig {}
]);

impl ContainerConfig {
    /// The JSON LinuxKit puts in the `org.mobyproject.config` label: Go's field order and
    /// names, unset fields left out, and Go's HTML-safe escaping of `<`, `>` and `&`.
    pub fn to_label_json(&self) -> String {
        // Serializing plain data with string keys cannot fail; fall back to an empty object
        // rather than panic if that ever changes.
        let json = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string());
        go_html_escape(&json)
    }
}

impl ContainerConfig {
    /// Reads an image's `org.mobyproject.config` label (JSON, which LinuxKit reads as YAML),
    /// with the same strictness as a `build.yml` `config`; `origin` names the image in
    /// messages.
    pub fn from_label(text: &str, origin: &str) -> Result<Self, crate::yaml::SpecError> {
        crate::yaml::from_str(text, &std::sync::Arc::from(origin))
    }
}

/// Go's `encoding/json` escapes these even inside strings; they only occur inside strings
/// in JSON text, so replacing them everywhere is exact.
pub(crate) fn go_html_escape(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// An OCI runtime-spec mount. LinuxKit reads the keys lowercased (`uidmappings`); the OCI
/// spelling is accepted too and written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    #[serde(default, deserialize_with = "strict::string")]
    pub destination: String,
    #[serde(
        rename = "type",
        default,
        deserialize_with = "strict::string",
        skip_serializing_if = "String::is_empty"
    )]
    pub kind: String,
    #[serde(
        default,
        deserialize_with = "strict::string",
        skip_serializing_if = "String::is_empty"
    )]
    pub source: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    #[serde(
        rename = "uidMappings",
        alias = "uidmappings",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub uid_mappings: Vec<IdMapping>,
    #[serde(
        rename = "gidMappings",
        alias = "gidmappings",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub gid_mappings: Vec<IdMapping>,
}

/// A device node to create in the container (`path: all` allows a whole device class).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    #[serde(default, deserialize_with = "strict::string")]
    pub path: String,
    /// `b`, `c`, `u` or `p` (or `a` with `path: all`).
    #[serde(rename = "type", default, deserialize_with = "strict::string")]
    pub kind: String,
    #[serde(default, deserialize_with = "strict::req")]
    pub major: i64,
    #[serde(default, deserialize_with = "strict::req")]
    pub minor: i64,
    /// Octal file mode, e.g. `"0666"`.
    #[serde(
        default,
        deserialize_with = "strict::string",
        skip_serializing_if = "String::is_empty"
    )]
    pub mode: String,
}

/// One user-namespace id range (OCI `LinuxIDMapping`); the lowercase keys yaml.v3 uses for
/// this untagged Go struct are accepted too.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdMapping {
    #[serde(
        rename = "containerID",
        alias = "containerid",
        default,
        deserialize_with = "strict::req"
    )]
    pub container_id: u32,
    #[serde(
        rename = "hostID",
        alias = "hostid",
        default,
        deserialize_with = "strict::req"
    )]
    pub host_id: u32,
    #[serde(default, deserialize_with = "strict::req")]
    pub size: u32,
}

/// Settings LinuxKit's init applies when it starts the container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroups: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<Mount>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mkdir: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<Vec<Interface>>,
    /// Always written (Go's `omitempty` does not apply to a struct value).
    #[serde(rename = "bindNS", default)]
    pub bind_ns: Namespaces,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Paths to bind the container's namespaces to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Namespaces {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mnt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uts: Option<String>,
}

/// A network interface to create or move into the container's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    #[serde(
        default,
        deserialize_with = "strict::string",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    #[serde(
        default,
        deserialize_with = "strict::string",
        skip_serializing_if = "String::is_empty"
    )]
    pub add: String,
    #[serde(
        default,
        deserialize_with = "strict::string",
        skip_serializing_if = "String::is_empty"
    )]
    pub peer: String,
    #[serde(rename = "createInRoot", default, deserialize_with = "strict::req")]
    pub create_in_root: bool,
}

/// A uid or gid: a number, or a name (`root`, or the name of another container, whose
/// allocated id is used).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IdValue {
    Id(u32),
    Name(String),
}

impl fmt::Display for IdValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdValue::Id(n) => write!(f, "{n}"),
            IdValue::Name(s) => f.write_str(s),
        }
    }
}

impl Serialize for IdValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            IdValue::Id(n) => s.serialize_u32(*n),
            IdValue::Name(n) => s.serialize_str(n),
        }
    }
}

impl<'de> Deserialize<'de> for IdValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IdValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a user/group id (a number from 0 to 4294967295) or a name")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IdValue, E> {
                u32::try_from(v)
                    .map(IdValue::Id)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IdValue, E> {
                u32::try_from(v)
                    .map(IdValue::Id)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IdValue, E> {
                Ok(IdValue::Name(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<IdValue, E> {
                Err(E::invalid_type(de::Unexpected::Bool(v), &self))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<IdValue, E> {
                Err(E::invalid_type(de::Unexpected::Float(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::yaml::{SpecErrorKind, from_str};

    fn parse(text: &str) -> Result<ContainerConfig, crate::yaml::SpecError> {
        from_str(text, &Arc::from("c.yml"))
    }

    #[test]
    fn unset_differs_from_empty() {
        let c = parse("capabilities: []\n").unwrap();
        assert_eq!(c.capabilities, Some(vec![]));
        assert_eq!(c.binds, None);
        assert_eq!(c.to_label_json(), r#"{"capabilities":[]}"#);
    }

    #[test]
    fn label_json_uses_go_names_order_and_escaping() {
        let c = parse(
            "runtime:\n  mkdir: [/var/x]\nreadonly: true\ncommand: [sh, -c, \"a && b > c\"]\n\
             capabilities.add: [CAP_NET_ADMIN]\ncwd: \"\"\nnet: host\nuid: 0\ngid: myservice\n\
             sysctl:\n  z.b: 1\n  a.b: \"2\"\nmounts:\n  - destination: /dev\n    type: tmpfs\n",
        )
        .unwrap();
        assert_eq!(
            c.to_label_json(),
            concat!(
                r#"{"capabilities.add":["CAP_NET_ADMIN"],"mounts":[{"destination":"/dev","type":"tmpfs"}],"#,
                r#""command":["sh","-c","a \u0026\u0026 b \u003e c"],"net":"host","readonly":true,"#,
                r#""uid":0,"gid":"myservice","sysctl":{"a.b":"2","z.b":"1"},"#,
                r#""runtime":{"mkdir":["/var/x"],"bindNS":{}}}"#
            )
        );
    }

    #[test]
    fn labels_read_back() {
        let c = parse(
            "command: [sh, -c, \"a && b\"]\nuid: 0\ngid: svc\nreadonly: true\n\
             devices: [{path: /dev/x, type: c, major: 1, minor: 2, mode: \"0600\"}]\n\
             runtime: {mkdir: [/a], bindNS: {net: /run/netns/x}}\n",
        )
        .unwrap();
        let json = c.to_label_json();
        assert_eq!(ContainerConfig::from_label(&json, "img").unwrap(), c);
        let e = ContainerConfig::from_label(r#"{"name": "x"}"#, "docker.io/me/img:1").unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::UnknownField);
        assert!(
            e.to_string()
                .starts_with("docker.io/me/img:1:1:2: unknown field"),
            "{e}"
        );
    }

    #[test]
    fn ids_are_numbers_or_names() {
        let c = parse("uid: 100\ngid: \"wheel\"\nadditionalGids: [1, two]\n").unwrap();
        assert_eq!(c.uid, Some(IdValue::Id(100)));
        assert_eq!(c.gid, Some(IdValue::Name("wheel".into())));
        assert_eq!(
            c.additional_gids,
            Some(vec![IdValue::Id(1), IdValue::Name("two".into())])
        );
        let e = parse("uid: -1\n").unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::WrongType);
        assert!(e.to_string().starts_with("c.yml:1:6: uid:"), "{e}");
        assert!(parse("uid: true\n").is_err());
    }

    #[test]
    fn resources_accept_schema_and_oci_spellings() {
        let c = parse(
            "resources:\n  blockio:\n    weight: 10\n  memory:\n    limit: 1048576\n  \
             hugepageLimits:\n    - pageSize: 2MB\n      limit: 4\n",
        )
        .unwrap();
        let r = c.resources.as_ref().unwrap();
        assert_eq!(r.block_io.as_ref().unwrap().weight, Some(10));
        assert_eq!(r.memory.as_ref().unwrap().limit, Some(1_048_576));
        assert_eq!(
            c.to_label_json(),
            r#"{"resources":{"memory":{"limit":1048576},"blockIO":{"weight":10},"hugepageLimits":[{"pageSize":"2MB","limit":4}]}}"#
        );
        let again = parse("resources:\n  blockIO:\n    weight: 10\n").unwrap();
        assert_eq!(again.resources.unwrap().block_io.unwrap().weight, Some(10));
        let e = parse("resources:\n  memory:\n    limits: 1\n").unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::UnknownField);
    }

    #[test]
    fn unknown_and_mistyped_fields_are_refused() {
        let e = parse("capabilities: CAP_SYS_ADMIN\n").unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::WrongType);
        assert!(
            e.message.starts_with("capabilities: expected a list"),
            "{e}"
        );
        let e = parse("name: x\n").unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::UnknownField);
        let e = parse("readonly: \"true\"\n").unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::WrongType);
        let e = parse("devices:\n  - path: /dev/x\n    major: a\n").unwrap_err();
        assert_eq!(e.line(), Some(3));
    }
}
