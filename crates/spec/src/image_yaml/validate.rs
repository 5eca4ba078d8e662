//! The checks LinuxKit makes on an image configuration, spread in its code between
//! `moby/config.go` (names, references, duplicates) and `moby/build` (files, volumes, binds,
//! capabilities, rlimits, devices), made at once and before anything is pulled. Every
//! error names the entry's `FILE:LINE:COL`.
//!
//! Names must be unique among `services` and `volumes` (as in LinuxKit); `onboot` and
//! `onshutdown` may repeat a name, which LinuxKit allows and its examples use.
//!
//! Where LinuxKit silently ignores a contradiction (a symlink with contents, a directory
//! that is also a symlink, `format: oci` without an image), oxkit refuses it.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    ContainerConfig, FileEntry, IdValue, ImageEntry, ImageYaml, Mount, VolumeEntry, VolumeFormat,
};
use crate::platform::Platform;
use crate::yaml::{SourceLoc, SpecError};

/// The capabilities LinuxKit knows (`moby/sys/capability`), in kernel order. A list may also
/// be a single `all` or `none`.
pub const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The resource limits LinuxKit accepts in `rlimits`.
pub const RLIMITS: &[&str] = &[
    "RLIMIT_CPU",
    "RLIMIT_FSIZE",
    "RLIMIT_DATA",
    "RLIMIT_STACK",
    "RLIMIT_CORE",
    "RLIMIT_RSS",
    "RLIMIT_NPROC",
    "RLIMIT_NOFILE",
    "RLIMIT_MEMLOCK",
    "RLIMIT_AS",
    "RLIMIT_LOCKS",
    "RLIMIT_SIGPENDING",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
];

/// What the container checks need to know about the whole configuration.
struct Context<'a> {
    /// Names usable as uid/gid (each container is allocated an id by name).
    containers: BTreeSet<&'a str>,
    volumes: BTreeMap<&'a str, &'a VolumeEntry>,
}

impl ImageYaml {
    /// Checks the configuration as LinuxKit would before building: entry names, duplicate
    /// names within a section, image references (`@pkg:PATH` allowed), files, volumes and
    /// the container settings LinuxKit checks at build time, and the trust section. Returns
    /// the first problem.
    pub fn validate(&self) -> Result<(), SpecError> {
        if let Some(k) = &self.kernel.image {
            k.image_ref()?;
        }
        for i in &self.init {
            i.image_ref()?;
        }
        let volumes = check_volumes(&self.volumes)?;
        let containers = self
            .onboot
            .iter()
            .chain(&self.onshutdown)
            .chain(&self.services)
            .map(|e| e.name.as_str())
            .collect();
        let cx = Context {
            containers,
            volumes,
        };
        for (section, entries) in [
            ("onboot", &self.onboot),
            ("onshutdown", &self.onshutdown),
            ("services", &self.services),
        ] {
            let mut seen: BTreeMap<&str, &SourceLoc> = BTreeMap::new();
            for e in entries {
                check_name(section, &e.name, &e.loc)?;
                // Services run side by side under their names, so LinuxKit refuses
                // duplicates there; onboot/onshutdown entries run one after another in
                // numbered directories and may repeat a name (LinuxKit's own examples do).
                if let Some(first) = seen.insert(&e.name, &e.loc)
                    && section == "services"
                {
                    return Err(duplicate(section, &e.name, &e.loc, first));
                }
                e.image.image_ref()?;
                check_container(section, e, &cx)?;
            }
        }
        for f in &self.files {
            check_file(f, &cx)?;
        }
        self.trust.policy()?;
        Ok(())
    }
}

fn duplicate(section: &str, name: &str, loc: &SourceLoc, first: &SourceLoc) -> SpecError {
    SpecError::invalid(
        loc,
        format!(
            "duplicate {section} name {name:?} (first at {first}); names in a section must be unique"
        ),
    )
}

/// LinuxKit's `^[a-z0-9_-]*$`, plus non-empty: names become directory names.
fn check_name(section: &str, name: &str, loc: &SourceLoc) -> Result<(), SpecError> {
    if name.is_empty() {
        return Err(SpecError::invalid(
            loc,
            format!("{section} entry has an empty name; give it a name of a-z, 0-9, '_', '-'"),
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
    {
        return Err(SpecError::invalid(
            loc,
            format!("invalid {section} name {name:?}; use only a-z, 0-9, '_' and '-'"),
        ));
    }
    Ok(())
}

fn check_volumes(vols: &[VolumeEntry]) -> Result<BTreeMap<&str, &VolumeEntry>, SpecError> {
    let mut out: BTreeMap<&str, &VolumeEntry> = BTreeMap::new();
    for v in vols {
        check_name("volumes", &v.name, &v.loc)?;
        if let Some(first) = out.insert(&v.name, v) {
            return Err(duplicate("volumes", &v.name, &v.loc, &first.loc));
        }
        match &v.image {
            Some(i) => {
                i.image_ref()?;
            }
            None if v.format == Some(VolumeFormat::Oci) => {
                return Err(SpecError::invalid(
                    &v.loc,
                    format!(
                        "volume {:?} has format: oci but no image; add the image to lay out",
                        v.name
                    ),
                ));
            }
            None => {}
        }
        for p in &v.platforms {
            p.parse::<Platform>()
                .map_err(|e| SpecError::invalid(&v.loc, format!("volume {:?}: {e}", v.name)))?;
        }
    }
    Ok(out)
}

fn check_container(section: &str, e: &ImageEntry, cx: &Context<'_>) -> Result<(), SpecError> {
    let what = format!("{section} {:?}", e.name);
    check_config(&what, &e.config, &e.loc, cx)
}

fn check_config(
    what: &str,
    c: &ContainerConfig,
    loc: &SourceLoc,
    cx: &Context<'_>,
) -> Result<(), SpecError> {
    let err = |m: String| SpecError::invalid(loc, format!("{what}: {m}"));
    for (field, caps) in [
        ("capabilities", &c.capabilities),
        ("capabilities.add", &c.capabilities_add),
        ("ambient", &c.ambient),
    ] {
        if let Some(caps) = caps {
            check_caps(field, caps).map_err(err)?;
        }
    }
    for (field, binds) in [("binds", &c.binds), ("binds.add", &c.binds_add)] {
        for b in binds.iter().flatten() {
            check_bind(field, b, &cx.volumes).map_err(err)?;
        }
    }
    for t in c.tmpfs.iter().flatten() {
        if t.matches(':').count() > 1 {
            return Err(err(format!(
                "tmpfs {t:?} has too many ':'; expected DEST[:OPTIONS]"
            )));
        }
    }
    for m in c.mounts.iter().flatten() {
        check_mount("mounts", m).map_err(err)?;
        check_volume_mount(m, &cx.volumes).map_err(err)?;
    }
    if let Some(rt) = &c.runtime {
        for m in rt.mounts.iter().flatten() {
            check_mount("runtime.mounts", m).map_err(err)?;
        }
    }
    for d in c.devices.iter().flatten() {
        if d.path == "all" {
            continue;
        }
        if d.path.is_empty() {
            return Err(err(
                "devices entry without path; give the device node path or \"all\"".into(),
            ));
        }
        parse_mode(&d.mode).map_err(|m| err(format!("device {}: {m}", d.path)))?;
    }
    for r in c.rlimits.iter().flatten() {
        check_rlimit(r).map_err(err)?;
    }
    for (field, id) in [("uid", &c.uid), ("gid", &c.gid)] {
        if let Some(id) = id {
            check_id(field, id, cx).map_err(err)?;
        }
    }
    for id in c.additional_gids.iter().flatten() {
        check_id("additionalGids", id, cx).map_err(err)?;
    }
    if let Some(adj) = c.oom_score_adj
        && !(-1000..=1000).contains(&adj)
    {
        return Err(err(format!(
            "oomScoreAdj {adj} is out of range; the kernel accepts -1000 to 1000"
        )));
    }
    Ok(())
}

fn check_caps(field: &str, caps: &[String]) -> Result<(), String> {
    if let [only] = caps
        && matches!(only.to_ascii_lowercase().as_str(), "all" | "none")
    {
        return Ok(());
    }
    for cap in caps {
        if !CAPABILITIES.contains(&cap.as_str()) {
            let hint =
                if CAPABILITIES.contains(&format!("CAP_{}", cap.to_ascii_uppercase()).as_str()) {
                    format!("; write CAP_{}", cap.to_ascii_uppercase())
                } else if cap.eq_ignore_ascii_case("all") || cap.eq_ignore_ascii_case("none") {
                    "; all and none must be the only entry".to_string()
                } else {
                    "; expected CAP_* names such as CAP_SYS_ADMIN, or a single all/none".to_string()
                };
            return Err(format!("{field}: unknown capability {cap:?}{hint}"));
        }
    }
    Ok(())
}

/// `SRC:DST[:OPTS]`; a source not starting with `/` names a volume (LinuxKit's
/// `updateMountsAndBindsFromVolumes`), which must exist, and a read-only volume must be
/// bound `:ro`.
fn check_bind(
    field: &str,
    bind: &str,
    volumes: &BTreeMap<&str, &VolumeEntry>,
) -> Result<(), String> {
    let parts: Vec<&str> = bind.split(':').collect();
    if parts.len() < 2 {
        return Err(format!(
            "{field} entry {bind:?} is missing ':'; expected SRC:DST[:OPTIONS]"
        ));
    }
    if parts.len() > 3 {
        return Err(format!(
            "{field} entry {bind:?} has too many ':'; expected SRC:DST[:OPTIONS]"
        ));
    }
    let src = parts[0];
    if src.starts_with('/') {
        return Ok(());
    }
    let Some(vol) = volumes.get(src) else {
        return Err(format!(
            "{field} entry {bind:?} binds volume {src:?}, which is not in volumes; define it or use an absolute path"
        ));
    };
    if vol.readonly && parts.get(2) != Some(&"ro") {
        return Err(format!(
            "{field} entry {bind:?} binds read-only volume {src:?} read-write; add :ro"
        ));
    }
    Ok(())
}

/// LinuxKit infers a missing type from the source (`proc`, `sysfs`, ...) or `/dev`, and a
/// missing destination from the type; anything else is refused at build time.
fn check_mount(field: &str, m: &Mount) -> Result<(), String> {
    let inferred = match m.source.as_str() {
        "mqueue" | "devpts" | "proc" | "sysfs" | "cgroup" => Some(m.source.as_str()),
        _ if m.destination == "/dev" => Some("tmpfs"),
        _ => None,
    };
    let kind = if m.kind.is_empty() {
        inferred
    } else {
        Some(m.kind.as_str())
    };
    let Some(kind) = kind else {
        return Err(format!(
            "{field}: mount for destination {:?} is missing type; add type: (bind, tmpfs, proc, ...)",
            m.destination
        ));
    };
    let default_dest = matches!(kind, "proc" | "devpts" | "sysfs" | "cgroup" | "mqueue");
    if m.destination.is_empty() && !default_dest {
        return Err(format!(
            "{field}: mount of type {kind:?} is missing destination; add destination:"
        ));
    }
    Ok(())
}

fn check_volume_mount(m: &Mount, volumes: &BTreeMap<&str, &VolumeEntry>) -> Result<(), String> {
    if m.kind != "bind" || m.source.starts_with('/') {
        return Ok(());
    }
    let Some(vol) = volumes.get(m.source.as_str()) else {
        return Err(format!(
            "mounts: bind of volume {:?}, which is not in volumes; define it or use an absolute source",
            m.source
        ));
    };
    // LinuxKit takes the first of "rw"/"ro" in the options; neither means read-write.
    let read_only = m
        .options
        .iter()
        .find(|o| *o == "ro" || *o == "rw")
        .is_some_and(|o| o == "ro");
    if vol.readonly && !read_only {
        return Err(format!(
            "mounts: read-only volume {:?} mounted read-write; add \"ro\" to options",
            m.source
        ));
    }
    Ok(())
}

fn check_rlimit(r: &str) -> Result<(), String> {
    let parts: Vec<&str> = r.splitn(3, ',').collect();
    let [name, soft, hard] = parts.as_slice() else {
        return Err(format!(
            "rlimits entry {r:?} is not NAME,SOFT,HARD (e.g. nofile,1024,4096)"
        ));
    };
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("RLIMIT_") {
        upper
    } else {
        format!("RLIMIT_{upper}")
    };
    if !RLIMITS.contains(&full.as_str()) {
        return Err(format!("rlimits entry {r:?}: unknown limit {name:?}"));
    }
    for v in [soft, hard] {
        let v = v.trim();
        if !v.eq_ignore_ascii_case("unlimited") && v.parse::<u64>().is_err() {
            return Err(format!(
                "rlimits entry {r:?}: {v:?} is neither a number nor \"unlimited\""
            ));
        }
    }
    Ok(())
}

fn check_id(field: &str, id: &IdValue, cx: &Context<'_>) -> Result<(), String> {
    match id {
        IdValue::Id(_) => Ok(()),
        IdValue::Name(n) if n.is_empty() || n == "root" || cx.containers.contains(n.as_str()) => {
            Ok(())
        }
        IdValue::Name(n) => Err(format!(
            "{field} {n:?} is neither a number, root, nor the name of an onboot, onshutdown or services entry"
        )),
    }
}

/// An octal mode as LinuxKit parses it (`strconv.ParseInt(s, 8, 32)`), limited to
/// permission and special bits.
fn parse_mode(mode: &str) -> Result<u32, String> {
    if mode.is_empty() {
        return Err("missing mode; give an octal mode such as \"0644\"".into());
    }
    let value = u32::from_str_radix(mode, 8)
        .ok()
        .filter(|_| mode.bytes().all(|b| (b'0'..=b'7').contains(&b)))
        .ok_or_else(|| format!("mode {mode:?} is not octal; write it like \"0644\""))?;
    if value > 0o7777 {
        return Err(format!("mode {mode:?} is larger than 07777"));
    }
    Ok(value)
}

fn check_file(f: &FileEntry, cx: &Context<'_>) -> Result<(), SpecError> {
    let err = |m: String| SpecError::invalid(&f.loc, m);
    if f.path.is_empty() {
        return Err(err("files entry without path; add path:".into()));
    }
    let p = &f.path;
    let has_contents = f.contents.is_some();
    let symlink = !f.symlink.is_empty();
    let source = !f.source.is_empty();
    let metadata = !f.metadata.is_empty();
    if f.directory && has_contents {
        return Err(err(format!(
            "file {p:?}: a directory cannot have contents; drop one of directory and contents"
        )));
    }
    if f.directory && symlink {
        return Err(err(format!(
            "file {p:?}: directory and symlink are mutually exclusive"
        )));
    }
    if symlink && has_contents {
        return Err(err(format!(
            "file {p:?}: symlink and contents are mutually exclusive"
        )));
    }
    if !f.directory && !symlink && !has_contents {
        if !source && !metadata {
            return Err(err(format!(
                "file {p:?}: contents not specified; give contents, source, metadata, symlink or directory: true"
            )));
        }
        if source && metadata {
            return Err(err(format!(
                "file {p:?}: source and metadata are mutually exclusive"
            )));
        }
    } else {
        let kind = if f.directory {
            "directory"
        } else if symlink {
            "symlink"
        } else {
            "contents"
        };
        if metadata {
            return Err(err(format!(
                "file {p:?}: {kind} and metadata are mutually exclusive"
            )));
        }
        if source {
            return Err(err(format!(
                "file {p:?}: {kind} and source are mutually exclusive"
            )));
        }
    }
    if metadata && f.metadata != "yaml" && f.metadata != "json" {
        return Err(err(format!(
            "file {p:?}: unsupported metadata {:?}; expected yaml or json",
            f.metadata
        )));
    }
    if !f.mode.is_empty() {
        parse_mode(&f.mode).map_err(|m| err(format!("file {p:?}: {m}")))?;
    }
    for (field, id) in [("uid", &f.uid), ("gid", &f.gid)] {
        if let Some(id) = id {
            check_id(field, id, cx).map_err(|m| err(format!("file {p:?}: {m}")))?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
