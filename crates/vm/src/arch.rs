//! Guest architectures and what each needs from QEMU (binary, machine, serial console).
//! Pure data: nothing here looks at the host beyond the architecture oxkit was compiled for.

use std::fmt;
use std::str::FromStr;

use crate::error::VmError;

/// A guest architecture, in Debian/OCI spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    /// The architecture oxkit itself runs on, if it is one QEMU can accelerate guests of.
    pub fn host() -> Option<Self> {
        if cfg!(target_arch = "x86_64") {
            Some(Self::Amd64)
        } else if cfg!(target_arch = "aarch64") {
            Some(Self::Arm64)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Amd64 => "amd64",
            Self::Arm64 => "arm64",
        }
    }

    pub(crate) fn qemu_binary(self) -> &'static str {
        match self {
            Self::Amd64 => "qemu-system-x86_64",
            Self::Arm64 => "qemu-system-aarch64",
        }
    }

    /// The Debian package that ships [`Self::qemu_binary`], for error messages.
    pub(crate) fn debian_qemu_package(self) -> &'static str {
        match self {
            Self::Amd64 => "qemu-system-x86",
            Self::Arm64 => "qemu-system-arm",
        }
    }

    /// The serial console the guest kernel must write to for it to reach `-nographic`'s stdio:
    /// the 8250 UART on a PC, the PL011 on the `virt` board.
    pub(crate) fn console(self) -> &'static str {
        match self {
            Self::Amd64 => "ttyS0",
            Self::Arm64 => "ttyAMA0",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Arch {
    type Err = VmError;

    /// Accepts the Debian/OCI names and LinuxKit's QEMU names (`x86_64`, `aarch64`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "amd64" | "x86_64" => Ok(Self::Amd64),
            "arm64" | "aarch64" => Ok(Self::Arm64),
            other => Err(VmError::UnknownArch(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian_and_qemu_names() {
        assert_eq!("amd64".parse::<Arch>().ok(), Some(Arch::Amd64));
        assert_eq!("x86_64".parse::<Arch>().ok(), Some(Arch::Amd64));
        assert_eq!("arm64".parse::<Arch>().ok(), Some(Arch::Arm64));
        assert_eq!("aarch64".parse::<Arch>().ok(), Some(Arch::Arm64));
        let err = "riscv64".parse::<Arch>().expect_err("unsupported");
        assert!(err.to_string().contains("riscv64"), "{err}");
        assert!(
            err.to_string().contains("amd64"),
            "lists the choices: {err}"
        );
    }

    #[test]
    fn each_arch_has_its_own_binary_and_console() {
        assert_eq!(Arch::Amd64.qemu_binary(), "qemu-system-x86_64");
        assert_eq!(Arch::Arm64.qemu_binary(), "qemu-system-aarch64");
        assert_eq!(Arch::Amd64.console(), "ttyS0");
        assert_eq!(Arch::Arm64.console(), "ttyAMA0");
    }
}
