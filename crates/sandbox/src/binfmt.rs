//! Foreign-architecture support: which architectures the host runs natively, and whether the
//! kernel's `binfmt_misc` has an enabled handler (QEMU user mode) that will run another
//! architecture's binaries inside a chroot. Handlers are matched by what the kernel matches,
//! their ELF magic and mask, not by name, so any registration (Debian's, tonistiigi/binfmt's)
//! counts. Reads `/proc/sys/fs/binfmt_misc` (or a directory given for tests); never registers
//! anything.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where the kernel exposes `binfmt_misc`.
pub const DEFAULT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// The commands that install and register QEMU's handlers on Debian/Ubuntu.
pub const FIX_COMMANDS: &str = "apt-get install qemu-user-static binfmt-support && mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc && update-binfmts --enable";

/// Why another architecture's binaries cannot run here.
#[derive(Debug, thiserror::Error)]
pub enum BinfmtError {
    #[error(
        "unknown architecture {arch:?}: expected amd64, arm64, riscv64, arm, 386, ppc64le, s390x, mips64le or loong64"
    )]
    UnknownArch { arch: String },

    #[error(
        "running linux/{arch} binaries needs binfmt_misc, which is not mounted at {dir}: `mount -t binfmt_misc binfmt_misc {dir}`, then `update-binfmts --enable` (from binfmt-support; install QEMU with `apt-get install qemu-user-static binfmt-support`)"
    )]
    NotMounted { arch: String, dir: PathBuf },

    #[error(
        "running linux/{arch} binaries needs binfmt_misc, which is disabled ({dir}/status): `echo 1 > {dir}/status`"
    )]
    GloballyDisabled { arch: String, dir: PathBuf },

    #[error(
        "no binfmt_misc handler for linux/{arch} in {dir}, so its binaries cannot run on this {host} host: install and register QEMU ({qemu}): `apt-get install qemu-user-static binfmt-support`, `mount -t binfmt_misc binfmt_misc {dir}`, `update-binfmts --enable`"
    )]
    Missing {
        arch: String,
        host: &'static str,
        qemu: String,
        dir: PathBuf,
    },

    #[error(
        "the binfmt_misc handler for linux/{arch} ({handler}) is disabled: `update-binfmts --enable {handler}` (or `echo 1 > {dir}/{handler}`)"
    )]
    Disabled {
        arch: String,
        handler: String,
        dir: PathBuf,
    },

    #[error(
        "the binfmt_misc handler for linux/{arch} ({handler}) lacks the F (fix-binary) flag, so its interpreter {interpreter} would have to exist inside the root filesystem: register it with the F flag (Debian's qemu-user-static does: `apt-get install qemu-user-static binfmt-support && update-binfmts --enable {handler}`; or `docker run --privileged tonistiigi/binfmt --install {arch}` style registrations with `F`)"
    )]
    NoFixBinary {
        arch: String,
        handler: String,
        interpreter: PathBuf,
    },

    #[error("reading binfmt_misc handlers in {dir}: {source}")]
    Io {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One registered handler (a file under `binfmt_misc`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handler {
    /// The file name (`qemu-aarch64`).
    pub name: String,
    pub enabled: bool,
    pub interpreter: PathBuf,
    /// Registration flags (`P`, `O`, `C`, `F`).
    pub flags: String,
    offset: usize,
    magic: Vec<u8>,
    mask: Vec<u8>,
}

impl Handler {
    /// Whether the kernel opened the interpreter at registration (`F`): it then works inside any
    /// chroot without a copy of QEMU there.
    pub fn fix_binary(&self) -> bool {
        self.flags.contains('F')
    }

    /// Parses the kernel's text for one handler. `None` for extension handlers and malformed text.
    pub fn parse(name: &str, text: &str) -> Option<Self> {
        let mut enabled = None;
        let mut interpreter = None;
        let mut flags = String::new();
        let mut offset = 0;
        let mut magic = None;
        let mut mask = None;
        for line in text.lines() {
            let line = line.trim();
            if line == "enabled" {
                enabled = Some(true);
            } else if line == "disabled" {
                enabled = Some(false);
            } else if let Some(v) = line.strip_prefix("interpreter ") {
                interpreter = Some(PathBuf::from(v.trim()));
            } else if let Some(v) = line.strip_prefix("flags:") {
                flags = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("offset ") {
                offset = v.trim().parse().ok()?;
            } else if let Some(v) = line.strip_prefix("magic ") {
                magic = Some(hex::decode(v.trim()).ok()?);
            } else if let Some(v) = line.strip_prefix("mask ") {
                mask = Some(hex::decode(v.trim()).ok()?);
            }
        }
        let magic = magic?;
        let mask = mask.unwrap_or_else(|| vec![0xff; magic.len()]);
        Some(Self {
            name: name.to_string(),
            enabled: enabled?,
            interpreter: interpreter?,
            flags,
            offset,
            magic,
            mask,
        })
    }

    /// Whether the kernel would hand a file starting with `header` to this handler.
    pub fn matches(&self, header: &[u8]) -> bool {
        let Some(window) = header.get(self.offset..self.offset + self.magic.len()) else {
            return false;
        };
        window
            .iter()
            .zip(&self.magic)
            .zip(self.mask.iter().chain(std::iter::repeat(&0xff)))
            .all(|((b, m), k)| b & k == m & k)
    }
}

/// ELF identification of an architecture's executables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Elf {
    class64: bool,
    big_endian: bool,
    machine: u16,
}

/// (Go/OCI name, other spellings, ELF identity, QEMU's name for it)
const ARCHES: &[(&str, &[&str], Elf, &str)] = &[
    ("amd64", &["x86_64"], elf(true, false, 62), "x86_64"),
    (
        "arm64",
        &["aarch64", "arm64/v8"],
        elf(true, false, 183),
        "aarch64",
    ),
    ("riscv64", &[], elf(true, false, 243), "riscv64"),
    (
        "arm",
        &["armhf", "armel", "arm/v7", "arm/v6", "armv7l"],
        elf(false, false, 40),
        "arm",
    ),
    (
        "386",
        &["i386", "i686", "x86"],
        elf(false, false, 3),
        "i386",
    ),
    ("ppc64le", &["powerpc64le"], elf(true, false, 21), "ppc64le"),
    ("s390x", &[], elf(true, true, 22), "s390x"),
    ("mips64le", &["mips64el"], elf(true, false, 8), "mips64el"),
    (
        "loong64",
        &["loongarch64"],
        elf(true, false, 258),
        "loongarch64",
    ),
];

const fn elf(class64: bool, big_endian: bool, machine: u16) -> Elf {
    Elf {
        class64,
        big_endian,
        machine,
    }
}

fn lookup(
    arch: &str,
) -> Option<&'static (&'static str, &'static [&'static str], Elf, &'static str)> {
    let a = arch
        .trim()
        .trim_start_matches("linux/")
        .to_ascii_lowercase();
    ARCHES
        .iter()
        .find(|(name, aliases, _, _)| *name == a || aliases.contains(&a.as_str()))
}

/// The Go/OCI name for `arch` in any common spelling (`aarch64` -> `arm64`).
pub fn normalize_arch(arch: &str) -> Option<&'static str> {
    lookup(arch).map(|e| e.0)
}

/// QEMU's name for the architecture (`arm64` -> `aarch64`), as in `qemu-aarch64`.
pub fn qemu_name(arch: &str) -> Option<&'static str> {
    lookup(arch).map(|e| e.3)
}

/// The host's architecture in Go/OCI spelling.
pub fn host_arch() -> &'static str {
    normalize_arch(std::env::consts::ARCH).unwrap_or(std::env::consts::ARCH)
}

/// Whether the host CPU runs `arch` binaries without emulation.
pub fn is_native(arch: &str) -> bool {
    let Some(a) = normalize_arch(arch) else {
        return false;
    };
    let host = host_arch();
    // x86-64 kernels run i386 binaries (IA32 emulation is in every distribution kernel).
    a == host || (host == "amd64" && a == "386")
}

/// ELF headers an `arch` executable starts with: static (`ET_EXEC`) and PIE (`ET_DYN`).
fn elf_headers(e: Elf) -> [[u8; 20]; 2] {
    [2u16, 3].map(|e_type| {
        let mut h = [0u8; 20];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = if e.class64 { 2 } else { 1 };
        h[5] = if e.big_endian { 2 } else { 1 };
        h[6] = 1; // EV_CURRENT
        let (t, m) = if e.big_endian {
            (e_type.to_be_bytes(), e.machine.to_be_bytes())
        } else {
            (e_type.to_le_bytes(), e.machine.to_le_bytes())
        };
        h[16..18].copy_from_slice(&t);
        h[18..20].copy_from_slice(&m);
        h
    })
}

/// Every handler registered in `dir`, in directory order. `Ok(None)` when binfmt_misc is not
/// mounted there.
pub fn handlers(dir: &Path) -> Result<Option<Vec<Handler>>, BinfmtError> {
    let io_err = |source| BinfmtError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    if !dir.join("status").exists() {
        return Ok(None);
    }
    let mut out = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(io_err)?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "status" || name == "register" {
            continue;
        }
        let Ok(text) = fs::read_to_string(entry.path()) else {
            continue;
        };
        if let Some(h) = Handler::parse(&name, &text) {
            out.push(h);
        }
    }
    Ok(Some(out))
}

/// Whether `dir/status` says binfmt_misc is enabled.
pub fn globally_enabled(dir: &Path) -> bool {
    fs::read_to_string(dir.join("status")).is_ok_and(|s| s.trim() == "enabled")
}

/// The handler that runs `arch` binaries; `Ok(None)` when the host runs them natively. An error
/// explains what is missing and the commands that fix it. `rootfs`, when given, lets a handler
/// without the `F` flag pass if its interpreter exists inside the root filesystem.
pub fn check(
    dir: &Path,
    arch: &str,
    rootfs: Option<&Path>,
) -> Result<Option<Handler>, BinfmtError> {
    let Some(&(name, _, elf, qemu)) = lookup(arch) else {
        return Err(BinfmtError::UnknownArch {
            arch: arch.to_string(),
        });
    };
    if is_native(name) {
        return Ok(None);
    }
    let arch = name.to_string();
    let Some(all) = handlers(dir)? else {
        return Err(BinfmtError::NotMounted {
            arch,
            dir: dir.to_path_buf(),
        });
    };
    if !globally_enabled(dir) {
        return Err(BinfmtError::GloballyDisabled {
            arch,
            dir: dir.to_path_buf(),
        });
    }
    let headers = elf_headers(elf);
    let matching: Vec<&Handler> = all
        .iter()
        .filter(|h| headers.iter().any(|hdr| h.matches(hdr)))
        .collect();
    let Some(best) = matching
        .iter()
        .find(|h| h.enabled && h.fix_binary())
        .or_else(|| matching.iter().find(|h| h.enabled))
        .or_else(|| matching.first())
    else {
        return Err(BinfmtError::Missing {
            arch,
            host: host_arch(),
            qemu: format!("qemu-{qemu}"),
            dir: dir.to_path_buf(),
        });
    };
    if !best.enabled {
        return Err(BinfmtError::Disabled {
            arch,
            handler: best.name.clone(),
            dir: dir.to_path_buf(),
        });
    }
    if !best.fix_binary() {
        let inside = rootfs.is_some_and(|r| {
            crate::rootpath::resolve(r, &best.interpreter.to_string_lossy())
                .is_ok_and(|p| p.is_file())
        });
        if !inside {
            return Err(BinfmtError::NoFixBinary {
                arch,
                handler: best.name.clone(),
                interpreter: best.interpreter.clone(),
            });
        }
    }
    Ok(Some((*best).clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from this project's Debian 12 CI machine (qemu-user-static 7.2).
    const AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";
    const RISCV64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/riscv64-binfmt-P\nflags: PF\noffset 0\nmagic 7f454c460201010000000000000000000200f300\nmask ffffffffffffff00fffffffffffffffffeffffff\n";
    const JAR: &str = "enabled\ninterpreter /usr/bin/jexec\nflags: \nextension .jar\n";

    fn fake_dir(entries: &[(&str, &str)], status: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tmp");
        fs::write(dir.path().join("status"), status).expect("status");
        fs::write(dir.path().join("register"), "").expect("register");
        for (name, text) in entries {
            fs::write(dir.path().join(name), text).expect("entry");
        }
        dir
    }

    fn foreign() -> &'static str {
        if host_arch() == "arm64" {
            "amd64"
        } else {
            "arm64"
        }
    }

    #[test]
    fn parses_and_matches_real_handlers() {
        let h = Handler::parse("qemu-aarch64", AARCH64).expect("parse");
        assert!(h.enabled && h.fix_binary());
        assert_eq!(
            h.interpreter,
            Path::new("/usr/libexec/qemu-binfmt/aarch64-binfmt-P")
        );
        let [exec, dyn_] = elf_headers(lookup("arm64").expect("arm64").2);
        assert!(h.matches(&exec) && h.matches(&dyn_));
        let [rv, _] = elf_headers(lookup("riscv64").expect("riscv64").2);
        assert!(!h.matches(&rv));
        assert!(Handler::parse("jar", JAR).is_none());
    }

    #[test]
    fn handler_is_found_by_magic_not_name() {
        if host_arch() != "amd64" {
            return;
        }
        let dir = fake_dir(
            &[
                ("jar", JAR),
                ("my-arm64", AARCH64),
                ("qemu-riscv64", RISCV64),
            ],
            "enabled\n",
        );
        let h = check(dir.path(), "aarch64", None)
            .expect("ok")
            .expect("handler");
        assert_eq!(h.name, "my-arm64");
        let h = check(dir.path(), "riscv64", None)
            .expect("ok")
            .expect("handler");
        assert_eq!(h.name, "qemu-riscv64");
    }

    #[test]
    fn native_needs_nothing() {
        let empty = tempfile::tempdir().expect("tmp");
        assert!(
            check(empty.path(), host_arch(), None)
                .expect("native")
                .is_none()
        );
        if host_arch() == "amd64" {
            assert!(check(empty.path(), "386", None).expect("native").is_none());
        }
    }

    #[test]
    fn missing_handler_says_exactly_what_to_run() {
        let dir = fake_dir(&[("jar", JAR)], "enabled\n");
        let err = check(dir.path(), foreign(), None)
            .expect_err("missing")
            .to_string();
        for needle in [
            "apt-get install qemu-user-static binfmt-support",
            "mount -t binfmt_misc binfmt_misc",
            "update-binfmts --enable",
            &format!("linux/{}", foreign()),
        ] {
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
        }
        let unmounted = tempfile::tempdir().expect("tmp");
        let err = check(unmounted.path(), foreign(), None).expect_err("unmounted");
        assert!(matches!(err, BinfmtError::NotMounted { .. }), "{err}");
        assert!(err.to_string().contains("mount -t binfmt_misc"));
    }

    #[test]
    fn disabled_and_non_fix_binary_handlers_are_explained() {
        if host_arch() != "amd64" {
            return;
        }
        let disabled = AARCH64.replace("enabled", "disabled");
        let dir = fake_dir(&[("qemu-aarch64", &disabled)], "enabled\n");
        let err = check(dir.path(), "arm64", None).expect_err("disabled");
        assert!(
            err.to_string()
                .contains("update-binfmts --enable qemu-aarch64"),
            "{err}"
        );

        let dir = fake_dir(&[("qemu-aarch64", AARCH64)], "disabled\n");
        assert!(matches!(
            check(dir.path(), "arm64", None),
            Err(BinfmtError::GloballyDisabled { .. })
        ));

        let no_f = AARCH64.replace("flags: PF", "flags: P");
        let dir = fake_dir(&[("qemu-aarch64", &no_f)], "enabled\n");
        let err = check(dir.path(), "arm64", None).expect_err("no F");
        assert!(err.to_string().contains("F (fix-binary)"), "{err}");
        // ...unless the interpreter is inside the root filesystem.
        let root = tempfile::tempdir().expect("root");
        let interp = root.path().join("usr/libexec/qemu-binfmt");
        fs::create_dir_all(&interp).expect("dir");
        fs::write(interp.join("aarch64-binfmt-P"), "").expect("interp");
        assert!(
            check(dir.path(), "arm64", Some(root.path()))
                .expect("ok")
                .is_some()
        );
    }

    #[test]
    fn spellings_normalise() {
        assert_eq!(normalize_arch("aarch64"), Some("arm64"));
        assert_eq!(normalize_arch("linux/amd64"), Some("amd64"));
        assert_eq!(qemu_name("arm64"), Some("aarch64"));
        assert!(matches!(
            check(Path::new("/nonexistent"), "vax", None),
            Err(BinfmtError::UnknownArch { .. })
        ));
    }
}
