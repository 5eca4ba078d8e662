//! Mount options as OCI specs write them (`["nosuid", "rbind", "ro", "mode=755"]`) turned into
//! what mount(2) takes, with runc's table: flags set or cleared in order, propagation changes
//! applied as separate calls, recursive attributes (`rro`, `rnosuid`, ...) for mount_setattr(2),
//! and everything unknown passed to the filesystem as data.
//!
//! Pure: parsing only, no syscalls.

use libc::c_ulong;

/// `MS_*` values as u64 (libc spells them as c_ulong, 32 bits on 32-bit targets).
#[allow(clippy::unnecessary_cast)]
const fn ms(flag: c_ulong) -> u64 {
    flag as u64
}

pub const MS_RDONLY: u64 = ms(libc::MS_RDONLY);
pub const MS_NOSUID: u64 = ms(libc::MS_NOSUID);
pub const MS_NODEV: u64 = ms(libc::MS_NODEV);
pub const MS_NOEXEC: u64 = ms(libc::MS_NOEXEC);
pub const MS_REMOUNT: u64 = ms(libc::MS_REMOUNT);
pub const MS_BIND: u64 = ms(libc::MS_BIND);
pub const MS_REC: u64 = ms(libc::MS_REC);
pub const MS_PRIVATE: u64 = ms(libc::MS_PRIVATE);
pub const MS_SLAVE: u64 = ms(libc::MS_SLAVE);
pub const MS_SHARED: u64 = ms(libc::MS_SHARED);
pub const MS_UNBINDABLE: u64 = ms(libc::MS_UNBINDABLE);
pub const MS_RELATIME: u64 = ms(libc::MS_RELATIME);
pub const MS_STRICTATIME: u64 = ms(libc::MS_STRICTATIME);
pub const MS_NOATIME: u64 = ms(libc::MS_NOATIME);
pub const MS_NODIRATIME: u64 = ms(libc::MS_NODIRATIME);
pub const MS_MOVE: u64 = ms(libc::MS_MOVE);
const MS_NOSYMFOLLOW: u64 = 256;

/// `MOUNT_ATTR_*` for mount_setattr(2).
pub mod attr {
    pub const RDONLY: u64 = 0x1;
    pub const NOSUID: u64 = 0x2;
    pub const NODEV: u64 = 0x4;
    pub const NOEXEC: u64 = 0x8;
    pub const RELATIME: u64 = 0x0;
    pub const NOATIME: u64 = 0x10;
    pub const STRICTATIME: u64 = 0x20;
    /// The atime bits: setting one of the three values needs this in `attr_clr`.
    pub const ATIME_MASK: u64 = 0x70;
    pub const NODIRATIME: u64 = 0x80;
    pub const NOSYMFOLLOW: u64 = 0x0020_0000;
}

/// What one mount's options mean.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// `MS_*` flags for the mount call (no propagation bits).
    pub flags: u64,
    /// Propagation changes (`MS_PRIVATE`, `MS_SHARED | MS_REC`, ...) applied after mounting, in
    /// order.
    pub propagation: Vec<u64>,
    /// Recursive attributes to set and clear with mount_setattr(AT_RECURSIVE).
    pub rec_set: u64,
    pub rec_clear: u64,
    /// Filesystem-specific data (`mode=755,size=65536k`), comma-joined.
    pub data: String,
    /// Options recognised but not implemented (`tmpcopyup`, `idmap`): logged by the caller.
    pub unsupported: Vec<String>,
}

impl MountOptions {
    pub fn is_bind(&self) -> bool {
        self.flags & MS_BIND != 0
    }

    pub fn is_recursive_bind(&self) -> bool {
        self.flags & (MS_BIND | MS_REC) == MS_BIND | MS_REC
    }

    /// Flags that a bind mount only takes on a second, remounting call (mount(2) ignores them
    /// with MS_BIND).
    pub fn bind_remount_flags(&self) -> u64 {
        self.flags & !(MS_BIND | MS_REC | MS_REMOUNT)
    }
}

/// runc's flag table: name → (clear?, flag).
fn flag(name: &str) -> Option<(bool, u64)> {
    let f = |clear, flag| Some((clear, flag));
    match name {
        "async" => f(true, ms(libc::MS_SYNCHRONOUS)),
        "atime" => f(true, MS_NOATIME),
        "bind" => f(false, MS_BIND),
        "defaults" => f(false, 0),
        "dev" => f(true, MS_NODEV),
        "diratime" => f(true, MS_NODIRATIME),
        "dirsync" => f(false, ms(libc::MS_DIRSYNC)),
        "exec" => f(true, MS_NOEXEC),
        "iversion" => f(false, ms(libc::MS_I_VERSION)),
        "lazytime" => f(false, ms(libc::MS_LAZYTIME)),
        "loud" => f(true, ms(libc::MS_SILENT)),
        "mand" => f(false, ms(libc::MS_MANDLOCK)),
        "noatime" => f(false, MS_NOATIME),
        "nodev" => f(false, MS_NODEV),
        "nodiratime" => f(false, MS_NODIRATIME),
        "noexec" => f(false, MS_NOEXEC),
        "noiversion" => f(true, ms(libc::MS_I_VERSION)),
        "nolazytime" => f(true, ms(libc::MS_LAZYTIME)),
        "nomand" => f(true, ms(libc::MS_MANDLOCK)),
        "norelatime" => f(true, MS_RELATIME),
        "nostrictatime" => f(true, MS_STRICTATIME),
        "nosuid" => f(false, MS_NOSUID),
        "nosymfollow" => f(false, MS_NOSYMFOLLOW),
        "rbind" => f(false, MS_BIND | MS_REC),
        "relatime" => f(false, MS_RELATIME),
        "remount" => f(false, MS_REMOUNT),
        "ro" => f(false, MS_RDONLY),
        "rw" => f(true, MS_RDONLY),
        "silent" => f(false, ms(libc::MS_SILENT)),
        "strictatime" => f(false, MS_STRICTATIME),
        "suid" => f(true, MS_NOSUID),
        "symfollow" => f(true, MS_NOSYMFOLLOW),
        "sync" => f(false, ms(libc::MS_SYNCHRONOUS)),
        _ => None,
    }
}

fn propagation(name: &str) -> Option<u64> {
    Some(match name {
        "private" => MS_PRIVATE,
        "rprivate" => MS_PRIVATE | MS_REC,
        "shared" => MS_SHARED,
        "rshared" => MS_SHARED | MS_REC,
        "slave" => MS_SLAVE,
        "rslave" => MS_SLAVE | MS_REC,
        "unbindable" => MS_UNBINDABLE,
        "runbindable" => MS_UNBINDABLE | MS_REC,
        _ => return None,
    })
}

/// Recursive attributes: name → (clear?, attribute). The atime ones are handled apart.
fn recursive(name: &str) -> Option<(bool, u64)> {
    let f = |clear, a| Some((clear, a));
    match name {
        "rro" => f(false, attr::RDONLY),
        "rrw" => f(true, attr::RDONLY),
        "rnosuid" => f(false, attr::NOSUID),
        "rsuid" => f(true, attr::NOSUID),
        "rnodev" => f(false, attr::NODEV),
        "rdev" => f(true, attr::NODEV),
        "rnoexec" => f(false, attr::NOEXEC),
        "rexec" => f(true, attr::NOEXEC),
        "rnodiratime" => f(false, attr::NODIRATIME),
        "rdiratime" => f(true, attr::NODIRATIME),
        "rnosymfollow" => f(false, attr::NOSYMFOLLOW),
        "rsymfollow" => f(true, attr::NOSYMFOLLOW),
        _ => None,
    }
}

/// Parses one mount's option list.
pub fn parse(options: &[String]) -> MountOptions {
    let mut out = MountOptions::default();
    let mut data: Vec<&str> = Vec::new();
    for option in options {
        let o = option.as_str();
        if let Some((clear, bits)) = flag(o) {
            if clear {
                out.flags &= !bits;
            } else {
                out.flags |= bits;
            }
        } else if let Some(p) = propagation(o) {
            out.propagation.push(p);
        } else if let Some((clear, a)) = recursive(o) {
            if clear {
                out.rec_clear |= a;
                out.rec_set &= !a;
            } else {
                out.rec_set |= a;
                out.rec_clear &= !a;
            }
        } else if let Some(a) = match o {
            "rrelatime" => Some(attr::RELATIME),
            "rnoatime" => Some(attr::NOATIME),
            "rstrictatime" => Some(attr::STRICTATIME),
            _ => None,
        } {
            out.rec_set = (out.rec_set & !attr::ATIME_MASK) | a;
            out.rec_clear |= attr::ATIME_MASK;
        } else if matches!(
            o,
            "tmpcopyup" | "idmap" | "ridmap" | "ratime" | "rnorelatime" | "rnostrictatime"
        ) || o.starts_with("idmap=")
            || o.starts_with("ridmap=")
        {
            out.unsupported.push(o.to_string());
        } else if !o.is_empty() {
            data.push(o);
        }
    }
    out.data = data.join(",");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(opts: &[&str]) -> MountOptions {
        parse(&opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn runc_default_mounts() {
        let dev = p(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(dev.flags, MS_NOSUID | MS_STRICTATIME);
        assert_eq!(dev.data, "mode=755,size=65536k");
        assert!(dev.propagation.is_empty());

        let pts = p(&[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ]);
        assert_eq!(pts.flags, MS_NOSUID | MS_NOEXEC);
        assert_eq!(pts.data, "newinstance,ptmxmode=0666,mode=0620,gid=5");

        let sys = p(&["nosuid", "noexec", "nodev", "ro"]);
        assert_eq!(sys.flags, MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY);
        assert_eq!(sys.data, "");
    }

    #[test]
    fn binds_and_propagation() {
        let b = p(&["rw", "rbind", "rshared"]);
        assert!(b.is_bind() && b.is_recursive_bind());
        assert_eq!(b.flags, MS_BIND | MS_REC);
        assert_eq!(b.propagation, [MS_SHARED | MS_REC]);
        assert_eq!(b.bind_remount_flags(), 0);

        let ro = p(&["bind", "ro", "nosuid", "nodev", "noexec", "rprivate"]);
        assert!(ro.is_bind() && !ro.is_recursive_bind());
        assert_eq!(
            ro.bind_remount_flags(),
            MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
        );
        assert_eq!(ro.propagation, [MS_PRIVATE | MS_REC]);

        let r = p(&["remount", "private"]);
        assert_eq!(r.flags, MS_REMOUNT);
        assert_eq!(r.propagation, [MS_PRIVATE]);
    }

    #[test]
    fn later_options_override_earlier_ones() {
        assert_eq!(p(&["ro", "rw"]).flags, 0);
        assert_eq!(p(&["rw", "ro"]).flags, MS_RDONLY);
        assert_eq!(p(&["nosuid", "suid", "noexec"]).flags, MS_NOEXEC);
        assert_eq!(p(&["defaults"]).flags, 0);
        assert_eq!(p(&["defaults"]).data, "");
    }

    #[test]
    fn recursive_attributes() {
        let r = p(&["rbind", "rro", "rnosuid", "rnoatime"]);
        assert_eq!(r.flags, MS_BIND | MS_REC);
        assert_eq!(r.rec_set, attr::RDONLY | attr::NOSUID | attr::NOATIME);
        assert_eq!(r.rec_clear, attr::ATIME_MASK);
        let r = p(&["rro", "rrw"]);
        assert_eq!((r.rec_set, r.rec_clear), (0, attr::RDONLY));
    }

    #[test]
    fn overlay_data_and_unsupported_extensions() {
        let o = p(&["lowerdir=/a:/b", "upperdir=/u", "workdir=/w", "tmpcopyup"]);
        assert_eq!(o.flags, 0);
        assert_eq!(o.data, "lowerdir=/a:/b,upperdir=/u,workdir=/w");
        assert_eq!(o.unsupported, ["tmpcopyup"]);
    }
}
