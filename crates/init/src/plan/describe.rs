//! How a step reads in the one log line that names a failed start.

use oxkit_linux::mount::describe_flags;

use super::*;

fn show(c: &CString) -> String {
    c.to_string_lossy().into_owned()
}

fn opt(c: &Option<CString>) -> String {
    c.as_ref().map(show).unwrap_or_else(|| "none".to_string())
}

/// What a step does, for the one log line that names a failed start.
impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::SetNs { index } => write!(f, "joining namespace #{index}"),
            Step::Unshare { what, .. } => write!(f, "creating a {what}"),
            Step::WriteFile { path, data } => {
                write!(
                    f,
                    "writing {:?} to {}",
                    String::from_utf8_lossy(data),
                    show(path)
                )
            }
            Step::Rlimit {
                name, soft, hard, ..
            } => write!(f, "setting {name} to {soft}/{hard}"),
            Step::Umask(m) => write!(f, "setting umask {m:03o}"),
            Step::MkdirAll(p) => write!(f, "creating directory {}", show(p)),
            Step::Touch(p) => write!(f, "creating mount point {}", show(p)),
            Step::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => {
                if flags & MS_REMOUNT != 0 {
                    write!(
                        f,
                        "remounting {} ({})",
                        show(target),
                        describe_flags(*flags)
                    )
                } else if flags & MS_BIND != 0 {
                    write!(
                        f,
                        "bind-mounting {} on {} ({})",
                        opt(source),
                        show(target),
                        describe_flags(*flags)
                    )
                } else if fstype.is_none() && source.is_none() {
                    write!(
                        f,
                        "changing propagation of {} ({})",
                        show(target),
                        describe_flags(*flags)
                    )
                } else {
                    write!(
                        f,
                        "mounting {} on {} (type {}, {}{}{})",
                        opt(source),
                        show(target),
                        opt(fstype),
                        describe_flags(*flags),
                        if data.is_some() { ", " } else { "" },
                        data.as_ref().map(show).unwrap_or_default()
                    )
                }
            }
            Step::SetAttr { target, .. } => {
                write!(f, "setting recursive mount attributes on {}", show(target))
            }
            Step::Mknod {
                path, major, minor, ..
            } => write!(f, "creating device {} ({major}:{minor})", show(path)),
            Step::Chown { path, uid, gid } => write!(f, "chowning {} to {uid}:{gid}", show(path)),
            Step::Symlink { target, link } => {
                write!(f, "linking {} -> {}", show(link), show(target))
            }
            Step::EnterRoot { root, pivot: true } => write!(f, "pivoting into {}", show(root)),
            Step::EnterRoot { root, pivot: false } => write!(f, "chrooting into {}", show(root)),
            Step::RemountReadonly(p) => write!(f, "remounting {} read-only", show(p)),
            Step::Mask(p) => write!(f, "masking {}", show(p)),
            Step::ReadonlyPath(p) => write!(f, "making {} read-only", show(p)),
            Step::Hostname(h) => write!(f, "setting hostname {:?}", String::from_utf8_lossy(h)),
            Step::LoopbackUp => f.write_str("bringing up lo"),
            Step::Chdir(p) => write!(f, "changing to working directory {}", show(p)),
            Step::DropBounding { .. } => f.write_str("dropping bounding capabilities"),
            Step::SetGroups(g) => write!(f, "setting additional groups {g:?}"),
            Step::KeepCaps(k) => write!(f, "setting keep-capabilities {k}"),
            Step::SetIds { uid, gid } => write!(f, "switching to uid {uid} gid {gid}"),
            Step::SetCaps { .. } => f.write_str("setting capabilities"),
            Step::RaiseAmbient(_) => f.write_str("raising ambient capabilities"),
            Step::NoNewPrivs => f.write_str("setting no_new_privs"),
        }
    }
}
