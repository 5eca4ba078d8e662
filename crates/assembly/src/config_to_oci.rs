//! LinuxKit's `ConfigToOCI`: the OCI runtime spec (`config.json`) and the init's
//! `runtime.json` for one `onboot`/`onshutdown`/`services` entry, from three sources in
//! increasing precedence:
//!
//! 1. the image config (`Entrypoint` + `Cmd`, `Env`, `WorkingDir` only; LinuxKit ignores the
//!    image's `User`, so does this);
//! 2. the image's `org.mobyproject.config` label;
//! 3. the YAML entry.
//!
//! The rules are LinuxKit's, quirks included so that bundles match what `linuxkit build`
//! writes: a set list replaces the lower one (an explicit empty list too), `capabilities.add`
//! and `binds.add` append to the label's list without removing duplicates (LinuxKit's
//! `mergeStrings` never records what it has seen) and are discarded by a YAML
//! `capabilities`/`binds`; plain strings (`cwd`, `net`, ...) count only when non-empty;
//! `mounts`/`binds`/`tmpfs` are keyed by destination over Docker's default mounts and
//! sorted; the pid namespace is new unless asked otherwise, net/ipc/uts/user are the host's.
//!
//! Pure: no I/O. Errors are one sentence; the caller adds the YAML location and the image.

use std::collections::{BTreeMap, BTreeSet};

use oxkit_spec::image_yaml::{
    CAPABILITIES, ContainerConfig, DeviceCgroup, IdValue, Mount, Namespaces, RLIMITS, Resources,
};
use oxkit_store::oci::ContainerConfig as ImageConfig;

use crate::ocispec::{
    BindNamespaces, Capabilities, Linux, LinuxDevice, Namespace, OCI_VERSION, Process, Rlimit,
    Root, RuntimeConfig, Spec, User,
};

/// The image label LinuxKit reads container defaults from.
pub const LABEL: &str = "org.mobyproject.config";

/// Ids LinuxKit allocates per container name (100, 101, ... over onboot, onshutdown, services),
/// usable as `uid`/`gid` values and in `files`.
pub type IdMap = BTreeMap<String, u32>;

/// A generated bundle configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleConfig {
    pub spec: Spec,
    pub runtime: RuntimeConfig,
}

/// LinuxKit's `IDNumeric`: a number, `root`/empty (0), or the name of a container.
pub(crate) fn id_numeric(v: Option<&IdValue>, ids: &IdMap) -> Result<u32, String> {
    match v {
        None => Ok(0),
        Some(IdValue::Id(n)) => Ok(*n),
        Some(IdValue::Name(n)) if n.is_empty() || n == "root" => Ok(0),
        Some(IdValue::Name(n)) => ids.get(n).copied().ok_or_else(|| {
            format!(
                "cannot find id {n:?}: it is neither a number, root, nor the name of an onboot, onshutdown or service entry"
            )
        }),
    }
}

/// `assignStrings`: the YAML's list, else the label's, else empty.
fn assign_strings(label: Option<&Vec<String>>, yaml: Option<&Vec<String>>) -> Vec<String> {
    yaml.or(label).cloned().unwrap_or_default()
}

/// `assignStrings3`: the YAML's list, else the label's, else the image's.
fn assign_strings3(
    image: &[String],
    label: Option<&Vec<String>>,
    yaml: Option<&Vec<String>>,
) -> Vec<String> {
    yaml.or(label).cloned().unwrap_or_else(|| image.to_vec())
}

/// `mergeStrings`: concatenation (LinuxKit's de-duplication map is never filled in).
fn merge_strings(a: Option<&Vec<String>>, b: Option<&Vec<String>>) -> Vec<String> {
    match (a, b) {
        (None, None) => Vec::new(),
        (Some(a), None) => a.clone(),
        (None, Some(b)) => b.clone(),
        (Some(a), Some(b)) => a.iter().chain(b).cloned().collect(),
    }
}

/// Go plain strings: empty means unset.
fn set(s: Option<&String>) -> Option<&str> {
    s.map(String::as_str).filter(|s| !s.is_empty())
}

/// `assignStringEmpty3(default, label, yaml)`.
fn assign_string_empty3(default: &str, label: Option<&String>, yaml: Option<&String>) -> String {
    set(yaml).or(set(label)).unwrap_or(default).to_string()
}

fn default_mountpoint(kind: &str) -> &'static str {
    match kind {
        "proc" => "/proc",
        "devpts" => "/dev/pts",
        "sysfs" => "/sys",
        "cgroup" => "/sys/fs/cgroup",
        "mqueue" => "/dev/mqueue",
        _ => "",
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_string()).collect()
}

fn mount(dest: &str, kind: &str, source: &str, options: Vec<String>) -> Mount {
    Mount {
        destination: dest.to_string(),
        kind: kind.to_string(),
        source: source.to_string(),
        options,
        uid_mappings: Vec::new(),
        gid_mappings: Vec::new(),
    }
}

/// Parses an image's `org.mobyproject.config` label; `image` names it in the error.
pub fn parse_label(text: &str, image: &str) -> Result<ContainerConfig, String> {
    ContainerConfig::from_label(text, &format!("label {LABEL} of {image}"))
        .map_err(|e| format!("{e}"))
}

/// Builds the bundle configuration for one container entry (`yaml`, with volume names already
/// replaced by their paths), its image's config and parsed label.
pub fn config_to_oci(
    yaml: &ContainerConfig,
    image: &ImageConfig,
    label: &ContainerConfig,
    ids: &IdMap,
) -> Result<BundleConfig, String> {
    let mut inspect_command = image.entrypoint.clone();
    inspect_command.extend(image.cmd.iter().cloned());
    let args = assign_strings3(
        &inspect_command,
        label.command.as_ref(),
        yaml.command.as_ref(),
    );
    let env = assign_strings3(&image.env, label.env.as_ref(), yaml.env.as_ref());
    // An empty cwd is not allowed in OCI: "/" then.
    let cwd = set(yaml.cwd.as_ref())
        .or(set(label.cwd.as_ref()))
        .or(Some(image.working_dir.as_str()).filter(|s| !s.is_empty()))
        .unwrap_or("/")
        .to_string();
    let readonly = yaml.readonly.or(label.readonly).unwrap_or(false);

    let mounts = mounts(yaml, label, readonly)?;
    let namespaces = namespaces(yaml, label);
    let capabilities = capabilities(yaml, label)?;
    let rlimits = rlimits(&assign_strings(
        label.rlimits.as_ref(),
        yaml.rlimits.as_ref(),
    ))?;

    let uid = id_numeric(yaml.uid.as_ref().or(label.uid.as_ref()), ids)?;
    let gid = id_numeric(yaml.gid.as_ref().or(label.gid.as_ref()), ids)?;
    let additional_gids = yaml
        .additional_gids
        .as_ref()
        .or(label.additional_gids.as_ref())
        .map(|v| v.iter().map(|id| id_numeric(Some(id), ids)).collect())
        .transpose()?
        .unwrap_or_default();

    let mut resources: Resources = yaml
        .resources
        .as_ref()
        .or(label.resources.as_ref())
        .cloned()
        .unwrap_or_default();
    let mut devices = Vec::new();
    for d in yaml
        .devices
        .as_ref()
        .or(label.devices.as_ref())
        .into_iter()
        .flatten()
    {
        if d.path == "all" {
            // A whole device class in the device cgroup allow-list.
            resources.devices.push(DeviceCgroup {
                allow: true,
                kind: d.kind.clone(),
                major: None,
                minor: None,
                access: "rwm".into(),
            });
            continue;
        }
        let mode = parse_octal32(&d.mode).ok_or_else(|| {
            format!(
                "device {}: cannot parse mode {:?} as an octal value; write e.g. \"0666\"",
                d.path, d.mode
            )
        })?;
        devices.push(LinuxDevice {
            path: d.path.clone(),
            kind: d.kind.clone(),
            major: d.major,
            minor: d.minor,
            file_mode: mode,
        });
        resources.devices.push(DeviceCgroup {
            allow: true,
            kind: d.kind.clone(),
            major: Some(d.major),
            minor: Some(d.minor),
            access: "rwm".into(),
        });
    }

    let spec = Spec {
        version: OCI_VERSION.to_string(),
        process: Process {
            user: User {
                uid,
                gid,
                additional_gids,
            },
            args,
            env,
            cwd,
            capabilities,
            rlimits,
            no_new_privileges: yaml
                .no_new_privileges
                .or(label.no_new_privileges)
                .unwrap_or(false),
            oom_score_adj: yaml.oom_score_adj.or(label.oom_score_adj),
        },
        root: Root {
            path: "rootfs".into(),
            readonly,
        },
        hostname: set(yaml.hostname.as_ref())
            .or(set(label.hostname.as_ref()))
            .unwrap_or("")
            .to_string(),
        mounts,
        annotations: yaml
            .annotations
            .as_ref()
            .or(label.annotations.as_ref())
            .cloned()
            .unwrap_or_default(),
        linux: Linux {
            uid_mappings: yaml
                .uid_mappings
                .as_ref()
                .or(label.uid_mappings.as_ref())
                .cloned()
                .unwrap_or_default(),
            gid_mappings: yaml
                .gid_mappings
                .as_ref()
                .or(label.gid_mappings.as_ref())
                .cloned()
                .unwrap_or_default(),
            sysctl: yaml
                .sysctl
                .as_ref()
                .or(label.sysctl.as_ref())
                .cloned()
                .unwrap_or_default(),
            resources,
            cgroups_path: yaml
                .cgroups_path
                .as_ref()
                .or(label.cgroups_path.as_ref())
                .cloned()
                .unwrap_or_default(),
            namespaces,
            devices,
            rootfs_propagation: yaml
                .rootfs_propagation
                .as_ref()
                .or(label.rootfs_propagation.as_ref())
                .cloned()
                .unwrap_or_default(),
            masked_paths: assign_strings(label.masked_paths.as_ref(), yaml.masked_paths.as_ref()),
            readonly_paths: assign_strings(
                label.readonly_paths.as_ref(),
                yaml.readonly_paths.as_ref(),
            ),
        },
    };
    Ok(BundleConfig {
        spec,
        runtime: runtime(label, yaml),
    })
}

/// Go's `strconv.ParseInt(s, 8, 32)`, as a file mode.
fn parse_octal32(s: &str) -> Option<u32> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    let v = i64::from_str_radix(digits, 8).ok()?;
    let v = if neg { -v } else { v };
    let v = i32::try_from(v).ok()?;
    // os.FileMode(int64) keeps the low 32 bits.
    Some(v as u32)
}

fn mounts(
    yaml: &ContainerConfig,
    label: &ContainerConfig,
    readonly: bool,
) -> Result<Vec<Mount>, String> {
    // Docker's defaults, less /dev/shm and /dev/mqueue.
    let mut dev = strings(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
    let mut sys = strings(&["nosuid", "noexec", "nodev"]);
    if readonly {
        dev.push("ro".into());
        sys.push("ro".into());
    }
    let mut by_dest: BTreeMap<String, Mount> = BTreeMap::new();
    for m in [
        mount(
            "/proc",
            "proc",
            "proc",
            strings(&["nosuid", "nodev", "noexec", "relatime"]),
        ),
        mount("/dev", "tmpfs", "tmpfs", dev),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            strings(&[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
            ]),
        ),
        mount("/sys", "sysfs", "sysfs", sys),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            strings(&["nosuid", "noexec", "nodev", "relatime", "ro"]),
        ),
    ] {
        by_dest.insert(m.destination.clone(), m);
    }
    for t in assign_strings(label.tmpfs.as_ref(), yaml.tmpfs.as_ref()) {
        let parts: Vec<&str> = t.split(':').collect();
        if parts.len() > 2 {
            return Err(format!(
                "cannot parse tmpfs {t:?}: too many ':'; write DEST[:OPTIONS]"
            ));
        }
        let options = parts
            .get(1)
            .map(|o| strings(&o.split(',').collect::<Vec<_>>()));
        let dest = parts[0];
        by_dest.insert(
            dest.to_string(),
            mount(dest, "tmpfs", "tmpfs", options.unwrap_or_default()),
        );
    }
    let binds = match &yaml.binds {
        Some(b) => b.clone(),
        None => merge_strings(label.binds.as_ref(), yaml.binds_add.as_ref()),
    };
    for b in binds {
        let parts: Vec<&str> = b.split(':').collect();
        if parts.len() < 2 {
            return Err(format!(
                "cannot parse bind {b:?}: missing ':'; write SOURCE:DEST[:OPTIONS]"
            ));
        }
        if parts.len() > 3 {
            return Err(format!(
                "cannot parse bind {b:?}: too many ':'; write SOURCE:DEST[:OPTIONS]"
            ));
        }
        let options = match parts.get(2) {
            // Default to rshared propagation, as LinuxKit does.
            None => strings(&["rw", "rbind", "rshared"]),
            Some(o) => {
                let mut v: Vec<String> = o.split(',').map(str::to_string).collect();
                v.push("rbind".into());
                v
            }
        };
        by_dest.insert(
            parts[1].to_string(),
            mount(parts[1], "bind", parts[0], options),
        );
    }
    for m in yaml
        .mounts
        .as_ref()
        .or(label.mounts.as_ref())
        .into_iter()
        .flatten()
    {
        let mut kind = m.kind.as_str();
        if kind.is_empty()
            && matches!(
                m.source.as_str(),
                "mqueue" | "devpts" | "proc" | "sysfs" | "cgroup"
            )
        {
            kind = m.source.as_str();
        }
        if kind.is_empty() && m.destination == "/dev" {
            kind = "tmpfs";
        }
        if kind.is_empty() {
            return Err(format!(
                "mount for destination {:?} is missing a type; add type: (bind, tmpfs, ...)",
                m.destination
            ));
        }
        let source = if m.source.is_empty() {
            kind
        } else {
            m.source.as_str()
        };
        let dest = if m.destination.is_empty() {
            default_mountpoint(kind)
        } else {
            m.destination.as_str()
        };
        if dest.is_empty() {
            return Err(format!(
                "mount of type {kind:?} is missing a destination; add destination:"
            ));
        }
        by_dest.insert(
            dest.to_string(),
            mount(dest, kind, source, m.options.clone()),
        );
    }
    // Sorted by destination (byte order), so /dev comes before /dev/pts.
    Ok(by_dest.into_values().collect())
}

fn namespaces(yaml: &ContainerConfig, label: &ContainerConfig) -> Vec<Namespace> {
    let mut out = Vec::new();
    let mut add = |kind: &str, value: String, new_words: &[&str]| {
        if value == "host" || value == "root" {
            return;
        }
        let path = if new_words.contains(&value.as_str()) {
            String::new()
        } else {
            value
        };
        out.push(Namespace {
            kind: kind.into(),
            path,
        });
    };
    // net, ipc, uts and user default to the host's; only net treats "none" as "new".
    add(
        "network",
        assign_string_empty3("root", label.net.as_ref(), yaml.net.as_ref()),
        &["none", "new"],
    );
    add(
        "ipc",
        assign_string_empty3("root", label.ipc.as_ref(), yaml.ipc.as_ref()),
        &["new"],
    );
    add(
        "uts",
        assign_string_empty3("root", label.uts.as_ref(), yaml.uts.as_ref()),
        &["new"],
    );
    // The pid namespace is new by default.
    add(
        "pid",
        assign_string_empty3("", label.pid.as_ref(), yaml.pid.as_ref()),
        &["new"],
    );
    add(
        "user",
        assign_string_empty3("root", label.userns.as_ref(), yaml.userns.as_ref()),
        &["new"],
    );
    // Always a new mount namespace.
    out.push(Namespace {
        kind: "mount".into(),
        path: String::new(),
    });
    out
}

/// `all`/`none` as the only entry expand; everything else must be a known `CAP_*` name.
fn expand_caps(mut caps: Vec<String>) -> Result<Vec<String>, String> {
    if caps.len() == 1 {
        match caps[0].to_ascii_lowercase().as_str() {
            "none" => caps = Vec::new(),
            "all" => caps = strings(CAPABILITIES),
            _ => {}
        }
    }
    if let Some(bad) = caps.iter().find(|c| !CAPABILITIES.contains(&c.as_str())) {
        return Err(format!(
            "unknown capability {bad:?}; expected CAP_* names such as CAP_SYS_ADMIN, or a single all/none"
        ));
    }
    Ok(caps)
}

fn capabilities(yaml: &ContainerConfig, label: &ContainerConfig) -> Result<Capabilities, String> {
    let caps = match &yaml.capabilities {
        Some(c) => c.clone(),
        None => merge_strings(label.capabilities.as_ref(), yaml.capabilities_add.as_ref()),
    };
    let effective = expand_caps(caps)?;
    let ambient = expand_caps(assign_strings(
        label.ambient.as_ref(),
        yaml.ambient.as_ref(),
    ))?;
    let bounding: Vec<String> = effective
        .iter()
        .chain(&ambient)
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    Ok(Capabilities {
        inheritable: bounding.clone(),
        permitted: bounding.clone(),
        bounding,
        effective,
        ambient,
    })
}

fn rlimit_value(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("unlimited") {
        return Ok(u64::MAX);
    }
    s.parse::<u64>()
        .map_err(|_| format!("cannot parse rlimit value {s:?}: expected a number or unlimited"))
}

fn rlimits(specs: &[String]) -> Result<Vec<Rlimit>, String> {
    let mut out = Vec::new();
    for spec in specs {
        let parts: Vec<&str> = spec.splitn(3, ',').collect();
        let [name, soft, hard] = parts.as_slice() else {
            return Err(format!(
                "cannot parse rlimit {spec:?}; write NAME,SOFT,HARD (e.g. nofile,1024,4096)"
            ));
        };
        let mut kind = name.trim().to_ascii_uppercase();
        if !kind.starts_with("RLIMIT_") {
            kind = format!("RLIMIT_{kind}");
        }
        let soft = rlimit_value(soft)?;
        let hard = rlimit_value(hard)?;
        if !RLIMITS.contains(&kind.as_str()) {
            return Err(format!("unknown rlimit {name:?} in {spec:?}"));
        }
        out.push(Rlimit { kind, hard, soft });
    }
    Ok(out)
}

/// `assignRuntime`: each field from the YAML's runtime if set there, else the label's.
fn runtime(label: &ContainerConfig, yaml: &ContainerConfig) -> RuntimeConfig {
    let l = label.runtime.clone().unwrap_or_default();
    let y = yaml.runtime.clone().unwrap_or_default();
    let ns =
        |lv: &Option<String>, yv: &Option<String>| yv.clone().or(lv.clone()).unwrap_or_default();
    let (lb, yb): (&Namespaces, &Namespaces) = (&l.bind_ns, &y.bind_ns);
    RuntimeConfig {
        cgroups: y.cgroups.or(l.cgroups).unwrap_or_default(),
        mounts: y.mounts.or(l.mounts).unwrap_or_default(),
        mkdir: y.mkdir.or(l.mkdir).unwrap_or_default(),
        interfaces: y.interfaces.or(l.interfaces).unwrap_or_default(),
        bind_ns: BindNamespaces {
            cgroup: ns(&lb.cgroup, &yb.cgroup),
            ipc: ns(&lb.ipc, &yb.ipc),
            mnt: ns(&lb.mnt, &yb.mnt),
            net: ns(&lb.net, &yb.net),
            pid: ns(&lb.pid, &yb.pid),
            user: ns(&lb.user, &yb.user),
            uts: ns(&lb.uts, &yb.uts),
        },
        namespace: y.namespace.or(l.namespace).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests;
