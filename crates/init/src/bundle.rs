//! Bundles on disk: finding `containers/{onboot,services,onshutdown}/*` in name order, reading
//! `config.json` and LinuxKit's optional `runtime.json`, and the host-side preparation done
//! once before a bundle's first start (the rootfs overlay of a writable container, runtime
//! mounts, directories and cgroups) and undone after a one-shot bundle finishes.
//!
//! Paths in `runtime.json` are host paths; they are taken relative to the image root the
//! supervisor was given (`/` when booted), so the same bundle tree can be exercised from a test
//! directory. Must not start processes (that is `launch.rs`).

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use crate::log::Log;
use crate::mountopt::{self, MS_BIND, MS_REC, MS_REMOUNT};
use crate::plan::{self, Host, Plan};
use crate::spec::{Mount, Runtime, Spec};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Onboot,
    Service,
    Onshutdown,
}

impl Kind {
    /// The directory under `containers/`.
    pub fn dir(self) -> &'static str {
        match self {
            Kind::Onboot => "onboot",
            Kind::Service => "services",
            Kind::Onshutdown => "onshutdown",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Onboot => "onboot",
            Kind::Service => "service",
            Kind::Onshutdown => "onshutdown",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    pub kind: Kind,
    /// The directory name (`001-dhcpcd`, `getty`): what the log calls the container.
    pub name: String,
    pub dir: PathBuf,
}

/// The bundles of one kind under `root/containers/`, in byte order of their names (LinuxKit's
/// `NNN-` prefixes make that the YAML order). A missing directory means none.
pub fn discover(root: &Path, kind: Kind, log: &Log) -> Vec<Bundle> {
    let dir = root.join("containers").join(kind.dir());
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            log.info(format_args!("cannot read {}: {e}", dir.display()));
            return Vec::new();
        }
    };
    let mut out: Vec<Bundle> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| Bundle {
            kind,
            name: e.file_name().to_string_lossy().into_owned(),
            dir: e.path(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// A bundle whose files parsed.
#[derive(Debug)]
pub struct Loaded {
    pub spec: Spec,
    pub runtime: Option<Runtime>,
}

/// Reads `config.json` (required) and `runtime.json` (optional). The error is the one line to
/// log, naming the file with line:column.
pub fn load(bundle: &Bundle) -> Result<Loaded, String> {
    let config = bundle.dir.join("config.json");
    let text = fs::read_to_string(&config)
        .map_err(|e| format!("cannot read {}: {e}", config.display()))?;
    let spec = Spec::parse(&text).map_err(|e| format!("{}:{e}", config.display()))?;
    let runtime_path = bundle.dir.join("runtime.json");
    let runtime = match fs::read_to_string(&runtime_path) {
        Ok(text) => {
            Some(Runtime::parse(&text).map_err(|e| format!("{}:{e}", runtime_path.display()))?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot read {}: {e}", runtime_path.display())),
    };
    Ok(Loaded { spec, runtime })
}

/// Host paths are relative to the image root (`/` when booted).
pub fn host_path(root: &Path, path: &str) -> PathBuf {
    if root == Path::new("/") {
        PathBuf::from(path)
    } else {
        root.join(path.trim_start_matches('/'))
    }
}

/// Makes sure a filesystem type can be mounted (loads its module if needed); the supervisor's
/// embedder provides it.
pub type EnsureFs<'a> = &'a mut dyn FnMut(&str);

/// What [`prepare`] mounted, to undo after a one-shot bundle.
#[derive(Debug, Default)]
pub struct Prepared {
    mounted: Vec<PathBuf>,
}

/// Host-side preparation before the first start: `runtime.json`'s mounts, directories and
/// cgroups, or, without one, the overlay a writable bundle (`lower/` + `tmp/` + `rootfs/`)
/// needs. Errors name the mount or directory.
pub fn prepare(
    bundle: &Bundle,
    loaded: &Loaded,
    root: &Path,
    host: &Host,
    ensure_fs: EnsureFs<'_>,
    log: &Log,
) -> Result<Prepared, String> {
    let mut prepared = Prepared::default();
    let rootfs = plan::rootfs_of(&loaded.spec, &bundle.dir);
    let result = match &loaded.runtime {
        Some(rt) => prepare_runtime(rt, root, &rootfs, host, ensure_fs, &mut prepared, log),
        None if bundle.dir.join("lower").is_dir() => {
            default_overlay(bundle, &rootfs, ensure_fs, &mut prepared, log)
        }
        None => Ok(()),
    };
    if let Err(e) = result {
        cleanup(prepared);
        return Err(e);
    }
    Ok(prepared)
}

/// Unmounts what [`prepare`] mounted, newest first, detaching so that a busy mount cannot block
/// the init.
pub fn cleanup(prepared: Prepared) {
    for target in prepared.mounted.iter().rev() {
        let _ = rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH);
    }
}

fn mkdir_all(dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

fn do_mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: u64,
    data: &str,
) -> Result<(), String> {
    let c = |s: &str| std::ffi::CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"));
    let target_c = c(&target.to_string_lossy())?;
    let source_c = source.map(c).transpose()?;
    let fstype_c = fstype.map(c).transpose()?;
    let data_c = (!data.is_empty()).then(|| c(data)).transpose()?;
    crate::child::mount(
        source_c.as_deref(),
        &target_c,
        fstype_c.as_deref(),
        flags,
        data_c.as_deref(),
    )
    .map_err(|e| {
        format!(
            "cannot mount {} on {} (type {}, options {:?}): {}",
            source.unwrap_or("none"),
            target.display(),
            fstype.unwrap_or("none"),
            data,
            std::io::Error::from(e)
        )
    })
}

/// tmpfs on `tmp/`, then `lower` + `tmp/upper` + `tmp/work` overlaid on `rootfs/`: what
/// LinuxKit's runtime.json says for a writable container, for bundles that come without one.
fn default_overlay(
    bundle: &Bundle,
    rootfs: &Path,
    ensure_fs: EnsureFs<'_>,
    prepared: &mut Prepared,
    log: &Log,
) -> Result<(), String> {
    let tmp = bundle.dir.join("tmp");
    let lower = bundle.dir.join("lower");
    mkdir_all(&tmp)?;
    mkdir_all(rootfs)?;
    do_mount(Some("tmpfs"), &tmp, Some("tmpfs"), 0, "mode=755")?;
    prepared.mounted.push(tmp.clone());
    // Nothing else should see the container's temporary layers.
    do_mount(None, &tmp, None, mountopt::MS_PRIVATE, "")?;
    let (upper, work) = (tmp.join("upper"), tmp.join("work"));
    mkdir_all(&upper)?;
    mkdir_all(&work)?;
    ensure_fs("overlay");
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    do_mount(Some("overlay"), rootfs, Some("overlay"), 0, &data)?;
    prepared.mounted.push(rootfs.to_path_buf());
    log.debug(format_args!(
        "{} {}: overlay on {}",
        bundle.kind,
        bundle.name,
        rootfs.display()
    ));
    Ok(())
}

fn prepare_runtime(
    rt: &Runtime,
    root: &Path,
    rootfs: &Path,
    host: &Host,
    ensure_fs: EnsureFs<'_>,
    prepared: &mut Prepared,
    log: &Log,
) -> Result<(), String> {
    if rt.interfaces.as_ref().is_some_and(|i| !i.is_empty()) {
        log.info("runtime.json interfaces are not supported; ignored");
    }
    // LinuxKit: a relative path is relative to the container's rootfs, an absolute one is a
    // host path.
    let absolute = |p: &str| {
        if p.starts_with('/') {
            host_path(root, p)
        } else {
            rootfs.join(p)
        }
    };
    for m in rt.mounts.iter().flatten() {
        runtime_mount(m, root, &absolute(&m.destination), ensure_fs, prepared)?;
    }
    for dir in rt.mkdir.iter().flatten() {
        mkdir_all(&absolute(dir))?;
    }
    for cg in rt.cgroups.iter().flatten() {
        let rel = cg.trim_start_matches('/');
        if host.cgroup2 {
            mkdir_all(&host.cgroup_root.join(rel))?;
        } else {
            for d in &host.cgroup_v1_dirs {
                mkdir_all(&d.join(rel))?;
            }
        }
    }
    Ok(())
}

/// Rewrites the host paths inside overlay options for a non-`/` image root.
fn map_overlay_data(data: &str, root: &Path) -> String {
    data.split(',')
        .map(|o| match o.split_once('=') {
            Some((k @ ("lowerdir" | "upperdir" | "workdir"), v)) => {
                let mapped: Vec<String> = v
                    .split(':')
                    .map(|p| host_path(root, p).to_string_lossy().into_owned())
                    .collect();
                format!("{k}={}", mapped.join(":"))
            }
            _ => o.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn runtime_mount(
    m: &Mount,
    root: &Path,
    target: &Path,
    ensure_fs: EnsureFs<'_>,
    prepared: &mut Prepared,
) -> Result<(), String> {
    let opts = mountopt::parse(m.options());
    mkdir_all(target)?;
    let mut data = opts.data.clone();
    if m.kind.as_deref() == Some("overlay") {
        data = map_overlay_data(&data, root);
        for o in data.split(',') {
            if let Some(dir) = o
                .strip_prefix("upperdir=")
                .or_else(|| o.strip_prefix("workdir="))
            {
                mkdir_all(Path::new(dir))?;
            }
        }
    }
    let kind = m.kind.as_deref().filter(|k| !k.is_empty());
    let is_bind = kind == Some("bind") || opts.is_bind();
    if is_bind {
        let source = m.source.as_deref().unwrap_or_default();
        let source = host_path(root, source);
        do_mount(
            Some(&source.to_string_lossy()),
            target,
            None,
            MS_BIND | (opts.flags & MS_REC),
            "",
        )?;
        prepared.mounted.push(target.to_path_buf());
        let extra = opts.bind_remount_flags();
        if extra != 0 {
            do_mount(None, target, None, MS_BIND | MS_REMOUNT | extra, "")?;
        }
    } else if opts.flags & MS_REMOUNT != 0 {
        do_mount(None, target, None, opts.flags, &data)?;
    } else if let Some(kind) = kind {
        ensure_fs(kind);
        let source = m
            .source
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(kind);
        do_mount(Some(source), target, Some(kind), opts.flags, &data)?;
        prepared.mounted.push(target.to_path_buf());
    } else if opts.propagation.is_empty() {
        return Err(format!(
            "runtime.json: the mount on {} has no type",
            m.destination
        ));
    }
    for p in &opts.propagation {
        do_mount(None, target, None, *p, "")?;
    }
    Ok(())
}

/// LinuxKit's volume init, done once before the first onboot bundle: each
/// `containers/volumes/NAME/` with `lower/` and `merged/` gets `lower` overlaid on `merged` with
/// its upper and work directories on a tmpfs at `tmp/`; without `tmp/` the volume is read-only
/// and `lower` is bound on `merged` read-only. One log line per volume that fails; the others
/// and the boot go on.
pub fn mount_volumes(root: &Path, ensure_fs: EnsureFs<'_>, log: &Log) -> Prepared {
    let mut prepared = Prepared::default();
    let dir = root.join("containers/volumes");
    let Ok(entries) = fs::read_dir(&dir) else {
        return prepared;
    };
    let mut volumes: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    volumes.sort();
    for vol in volumes {
        let name = vol
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Err(e) = mount_volume(&vol, ensure_fs, &mut prepared) {
            log.info(format_args!("volume {name}: {e}"));
        } else {
            log.debug(format_args!(
                "volume {name}: mounted on {}",
                vol.join("merged").display()
            ));
        }
    }
    prepared
}

fn mount_volume(
    vol: &Path,
    ensure_fs: EnsureFs<'_>,
    prepared: &mut Prepared,
) -> Result<(), String> {
    let (lower, merged, tmp) = (vol.join("lower"), vol.join("merged"), vol.join("tmp"));
    for d in [&lower, &merged] {
        if !d.is_dir() {
            return Err(format!("{} is missing", d.display()));
        }
    }
    if !tmp.is_dir() {
        let lower_s = lower.to_string_lossy();
        do_mount(Some(&lower_s), &merged, None, MS_BIND | MS_REC, "")?;
        prepared.mounted.push(merged.clone());
        return do_mount(
            None,
            &merged,
            None,
            MS_BIND | MS_REMOUNT | mountopt::MS_RDONLY,
            "",
        );
    }
    do_mount(
        Some("tmpfs"),
        &tmp,
        Some("tmpfs"),
        mountopt::MS_RELATIME,
        "mode=755",
    )?;
    prepared.mounted.push(tmp.clone());
    let (upper, work) = (tmp.join("upper"), tmp.join("work"));
    mkdir_all(&upper)?;
    mkdir_all(&work)?;
    ensure_fs("overlay");
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    do_mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        mountopt::MS_RELATIME,
        &data,
    )?;
    prepared.mounted.push(merged);
    Ok(())
}

/// After a start: bind-mounts `/proc/PID/ns/*` where `runtime.json`'s `bindNS` asks (replacing
/// the previous run's binding), recorded in `prepared` for [`cleanup`].
pub fn bind_namespaces(
    loaded: &Loaded,
    root: &Path,
    pid: i32,
    prepared: &mut Prepared,
) -> Result<(), String> {
    let Some(bind) = loaded.runtime.as_ref().and_then(|r| r.bind_ns.as_ref()) else {
        return Ok(());
    };
    for (ns, path) in bind.entries() {
        let target = host_path(root, path);
        if let Some(dir) = target.parent() {
            mkdir_all(dir)?;
        }
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&target)
            .map_err(|e| format!("cannot create {}: {e}", target.display()))?;
        if prepared.mounted.contains(&target) {
            let _ = rustix::mount::unmount(&target, rustix::mount::UnmountFlags::DETACH);
        } else {
            prepared.mounted.push(target.clone());
        }
        let source = format!("/proc/{pid}/ns/{ns}");
        do_mount(Some(&source), &target, None, MS_BIND, "")?;
    }
    Ok(())
}

/// The mount point holding `path` (longest matching mount point in /proc/self/mountinfo): the
/// mount runc makes private before pivot_root when the rootfs propagation is shared.
pub fn mount_point_of(path: &Path) -> Option<PathBuf> {
    let canonical = fs::canonicalize(path).ok()?;
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    mount_point_in(&info, &canonical)
}

fn mount_point_in(mountinfo: &str, path: &Path) -> Option<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|mp| path.starts_with(mp))
        .max_by_key(|mp| mp.as_os_str().len())
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'\\'
            && let Some(oct) = bytes.get(i + 1..i + 4)
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(oct).unwrap_or("x"), 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b);
        i += 1;
    }
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Builds the plan for a loaded bundle (after [`prepare`], since the rootfs may have become a
/// mount point).
pub fn plan(bundle: &Bundle, loaded: &Loaded, host: &Host) -> Result<Plan, String> {
    let propagation = loaded
        .spec
        .linux
        .as_ref()
        .and_then(|l| l.rootfs_propagation.as_deref())
        .unwrap_or("");
    let rootfs = plan::rootfs_of(&loaded.spec, &bundle.dir);
    let rootfs_parent_mount = if propagation.contains("shared") {
        mount_point_of(&rootfs)
    } else {
        None
    };
    let inputs = plan::Inputs {
        spec: &loaded.spec,
        bundle_dir: &bundle.dir,
        host,
        rootfs_parent_mount,
    };
    let plan = plan::build(&inputs).map_err(|e| e.to_string())?;
    if !rootfs.is_dir() {
        return Err(format!("root filesystem {} is missing", rootfs.display()));
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_are_found_in_name_order() {
        let t = tempfile::tempdir().expect("tempdir");
        let on = t.path().join("containers/onboot");
        for d in ["010-b", "002-a", "100-c"] {
            fs::create_dir_all(on.join(d)).expect("mkdir");
        }
        fs::write(on.join("README"), "not a bundle").expect("file");
        let log = Log::new(Box::new(std::io::sink()), false);
        let names: Vec<String> = discover(t.path(), Kind::Onboot, &log)
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(names, ["002-a", "010-b", "100-c"]);
        assert!(discover(t.path(), Kind::Service, &log).is_empty());
    }

    #[test]
    fn load_errors_name_the_file_and_position() {
        let t = tempfile::tempdir().expect("tempdir");
        let b = Bundle {
            kind: Kind::Onboot,
            name: "001-x".into(),
            dir: t.path().to_path_buf(),
        };
        let err = load(&b).expect_err("no config");
        assert!(
            err.contains("config.json") && err.contains("No such file"),
            "{err}"
        );
        fs::write(
            t.path().join("config.json"),
            "{\n \"process\": {\"args\": [1]}\n}",
        )
        .expect("write");
        let err = load(&b).expect_err("bad config");
        assert!(
            err.starts_with(&format!("{}:2:", t.path().join("config.json").display())),
            "{err}"
        );
        fs::write(t.path().join("config.json"), "{}").expect("write");
        fs::write(t.path().join("runtime.json"), "{\"mounts\": 3}").expect("write");
        let err = load(&b).expect_err("bad runtime");
        assert!(err.contains("runtime.json:1:"), "{err}");
    }

    #[test]
    fn host_paths_follow_the_image_root() {
        assert_eq!(
            host_path(Path::new("/"), "/containers/x"),
            PathBuf::from("/containers/x")
        );
        assert_eq!(
            host_path(Path::new("/tmp/img"), "/containers/x"),
            PathBuf::from("/tmp/img/containers/x")
        );
        assert_eq!(
            map_overlay_data(
                "lowerdir=/a:/b,upperdir=/u,workdir=/w,index=off",
                Path::new("/r")
            ),
            "lowerdir=/r/a:/r/b,upperdir=/r/u,workdir=/r/w,index=off"
        );
        assert_eq!(
            map_overlay_data("lowerdir=/a", Path::new("/")),
            "lowerdir=/a"
        );
    }

    #[test]
    fn mount_points_from_mountinfo() {
        let info = "22 1 0:21 / / rw - ext4 /dev/vda rw\n\
                    30 22 0:30 / /run rw - tmpfs tmpfs rw\n\
                    31 30 0:31 / /run/with\\040space rw - tmpfs tmpfs rw\n";
        assert_eq!(
            mount_point_in(info, Path::new("/run/x/rootfs")),
            Some(PathBuf::from("/run"))
        );
        assert_eq!(
            mount_point_in(info, Path::new("/runner")),
            Some(PathBuf::from("/"))
        );
        assert_eq!(
            mount_point_in(info, Path::new("/run/with space/r")),
            Some(PathBuf::from("/run/with space"))
        );
    }
}
