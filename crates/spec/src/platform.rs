//! Platforms (`linux/arm64`, `linux/arm/v7`) with Docker's and Go's architecture spellings
//! normalised, so `aarch64`, `arm64` and `arm64/v8` all name the same thing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An OS/architecture(/variant) triple as OCI image indexes use it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// Why a string is not a platform.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown platform {input:?}: {reason} (expected OS/ARCH such as linux/amd64, linux/arm64, linux/riscv64)"
)]
pub struct PlatformError {
    pub input: String,
    pub reason: &'static str,
}

/// Architectures oxkit knows how to build for, in Go/OCI spelling.
pub const KNOWN_ARCHES: &[&str] = &[
    "amd64", "arm64", "riscv64", "arm", "386", "ppc64le", "s390x", "mips64le", "loong64",
];

impl Platform {
    /// `linux/<arch>` with the architecture normalised.
    pub fn linux(arch: &str) -> Result<Self, PlatformError> {
        let (architecture, variant) = normalize_arch(arch, None).ok_or_else(|| PlatformError {
            input: arch.to_string(),
            reason: "unknown architecture",
        })?;
        Ok(Self {
            os: "linux".into(),
            architecture,
            variant,
        })
    }

    /// The platform of the machine oxkit runs on.
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "riscv64" => "riscv64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            other => other,
        };
        Self {
            os: "linux".into(),
            architecture: arch.into(),
            variant: None,
        }
    }

    /// The architecture, as in `TAG-ARCH` tags (`arm64`, `amd64`).
    pub fn arch(&self) -> &str {
        &self.architecture
    }

    /// The kernel's name for the architecture (`uname -m`), used to find binfmt handlers.
    pub fn uname_machine(&self) -> &str {
        match self.architecture.as_str() {
            "amd64" => "x86_64",
            "arm64" => "aarch64",
            "386" => "i386",
            "ppc64le" => "ppc64le",
            other => other,
        }
    }
}

fn normalize_arch(arch: &str, variant: Option<&str>) -> Option<(String, Option<String>)> {
    let arch = arch.to_ascii_lowercase();
    let (a, v): (&str, Option<&str>) = match (arch.as_str(), variant) {
        ("x86_64" | "x86-64" | "amd64", _) => ("amd64", None),
        ("aarch64" | "arm64", Some("v8") | None) => ("arm64", None),
        ("aarch64" | "arm64", Some(v)) => ("arm64", Some(v)),
        ("armhf" | "armv7" | "armv7l", _) => ("arm", Some("v7")),
        ("armel" | "armv6" | "armv6l", _) => ("arm", Some("v6")),
        ("arm", v) => ("arm", Some(v.unwrap_or("v7"))),
        ("i386" | "i686" | "x86" | "386", _) => ("386", None),
        (a, v) if KNOWN_ARCHES.contains(&a) => {
            (KNOWN_ARCHES[KNOWN_ARCHES.iter().position(|k| *k == a)?], v)
        }
        _ => return None,
    };
    Some((a.to_string(), v.map(str::to_string)))
}

impl FromStr for Platform {
    type Err = PlatformError;

    /// Accepts `linux/arm64`, `linux/arm/v7` and a bare architecture (`arm64`, meaning linux).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| PlatformError {
            input: s.to_string(),
            reason,
        };
        let parts: Vec<&str> = s.trim().split('/').collect();
        let (os, arch, variant) = match parts.as_slice() {
            [arch] => ("linux", *arch, None),
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] => (*os, *arch, Some(*variant)),
            _ => return Err(err("too many '/'")),
        };
        if os != "linux" {
            return Err(err("only linux is supported"));
        }
        if arch.is_empty() {
            return Err(err("empty architecture"));
        }
        let (architecture, variant) =
            normalize_arch(arch, variant).ok_or_else(|| err("unknown architecture"))?;
        Ok(Self {
            os: os.to_string(),
            architecture,
            variant,
        })
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_normalise() {
        for (input, want) in [
            ("linux/amd64", "linux/amd64"),
            ("x86_64", "linux/amd64"),
            ("aarch64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/riscv64", "linux/riscv64"),
            ("armhf", "linux/arm/v7"),
            ("linux/arm/v6", "linux/arm/v6"),
        ] {
            assert_eq!(
                input.parse::<Platform>().unwrap().to_string(),
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn bad_platforms_are_refused_with_reason() {
        let e = "windows/amd64".parse::<Platform>().unwrap_err();
        assert!(e.to_string().contains("only linux"), "{e}");
        let e = "linux/sparc".parse::<Platform>().unwrap_err();
        assert!(e.to_string().contains("unknown architecture"), "{e}");
        assert!("linux/".parse::<Platform>().is_err());
        assert!("a/b/c/d".parse::<Platform>().is_err());
    }

    #[test]
    fn uname_names() {
        assert_eq!(Platform::linux("arm64").unwrap().uname_machine(), "aarch64");
        assert_eq!(Platform::linux("amd64").unwrap().uname_machine(), "x86_64");
        assert_eq!(
            Platform::linux("riscv64").unwrap().uname_machine(),
            "riscv64"
        );
    }
}
