//! Image references with Docker's normalisation rules: `alpine` is
//! `docker.io/library/alpine`, `linuxkit/init` is `docker.io/linuxkit/init`, and a first
//! component with a `.` or `:` or equal to `localhost` is a registry host
//! (`127.0.0.1:5000/me/pkg`, `ghcr.io/me/pkg`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::Digest;

/// Docker Hub's canonical registry name.
pub const DOCKER_HUB: &str = "docker.io";
/// The host Docker Hub's registry API is served from.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A normalised image reference: registry, repository, and an optional tag and/or digest.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

fn is_component(c: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
    if c.is_empty() {
        return false;
    }
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__", or one or more "-".
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

fn is_host(h: &str) -> bool {
    // host[:port], where host is a DNS name, IPv4 address or bracketed IPv6 address.
    let (host, port) = if let Some(rest) = h.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, tail)) => (v6, tail.strip_prefix(':')),
            None => return false,
        }
    } else {
        match h.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (h, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
}

impl Reference {
    /// Parses and normalises a reference. A reference with neither tag nor digest is allowed;
    /// use [`Reference::tag_or_latest`] where Docker would assume `latest`.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let err = |reason: &str| ReferenceError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(err("empty reference"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => (
                r,
                Some(
                    d.parse::<Digest>()
                        .map_err(|e| err(&format!("bad digest: {}", e.reason)))?,
                ),
            ),
            None => (input, None),
        };
        // A ':' after the last '/' starts the tag; earlier ones belong to a host:port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag
            && !is_tag(t)
        {
            return Err(err(
                "a tag may hold letters, digits, '_', '.', '-' (at most 128, not starting with '.' or '-')",
            ));
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                if !is_host(first) {
                    return Err(err("bad registry host"));
                }
                (first.to_string(), remainder.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" || registry == DOCKER_HUB_API {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if repository.len() > 255 {
            return Err(err("repository name longer than 255 characters"));
        }
        if let Some(bad) = repository.split('/').find(|c| !is_component(c)) {
            let why = if bad.bytes().any(|b| b.is_ascii_uppercase()) {
                format!("repository name component {bad:?} must be lowercase")
            } else {
                format!(
                    "repository name component {bad:?} may hold only a-z, 0-9 and single separators ('.', '_', '__', '-')"
                )
            };
            return Err(err(&why));
        }
        Ok(Self {
            registry,
            repository,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The registry as written in references (`docker.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host to contact for the registry API (Docker Hub's API lives elsewhere).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// The repository path (`library/alpine`, `linuxkit/init`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The tag, or `latest` when the reference has neither tag nor digest.
    pub fn tag_or_latest(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(t), _) => Some(t),
            (None, None) => Some("latest"),
            (None, Some(_)) => None,
        }
    }

    /// A copy with the tag replaced and the digest dropped.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        if !is_tag(tag) {
            return Err(ReferenceError {
                input: format!("{}:{tag}", self.name()),
                reason: "bad tag".into(),
            });
        }
        Ok(Self {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// A copy pinned to a digest (the tag is kept for display).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// A copy without tag or digest.
    pub fn without_tag(&self) -> Self {
        Self {
            tag: None,
            digest: None,
            ..self.clone()
        }
    }

    /// `registry/repository`, e.g. `docker.io/linuxkit/init`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Fully qualified text, e.g. `docker.io/library/alpine:3.19` (no implied `latest`).
    pub fn canonical(&self) -> String {
        let mut s = self.name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d.as_str());
        }
        s
    }

    /// The short form Docker prints: `alpine:3.19`, `linuxkit/init:abc`, `ghcr.io/me/x:1`.
    pub fn familiar(&self) -> String {
        let full = self.canonical();
        if self.registry == DOCKER_HUB {
            let rest = &full[DOCKER_HUB.len() + 1..];
            rest.strip_prefix("library/")
                .filter(|r| !r.contains('/'))
                .unwrap_or(rest)
                .to_string()
        } else {
            full
        }
    }

    /// Whether the registry is on the loopback interface, where Docker allows plain HTTP.
    pub fn is_loopback_registry(&self) -> bool {
        let host = match self.registry.strip_prefix('[') {
            Some(r) => r.split(']').next().unwrap_or(""),
            None => self.registry.split(':').next().unwrap_or(""),
        };
        host == "localhost" || host.starts_with("127.") || host == "::1"
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({})", self.canonical())
    }
}

impl Serialize for Reference {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.canonical())
    }
}

impl<'de> Deserialize<'de> for Reference {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn docker_normalisation() {
        for (input, canonical, familiar) in [
            ("alpine", "docker.io/library/alpine", "alpine"),
            (
                "alpine:3.19",
                "docker.io/library/alpine:3.19",
                "alpine:3.19",
            ),
            (
                "linuxkit/init:b5506cc7",
                "docker.io/linuxkit/init:b5506cc7",
                "linuxkit/init:b5506cc7",
            ),
            (
                "docker.io/library/busybox:latest",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            ("index.docker.io/me/x", "docker.io/me/x", "me/x"),
            (
                "127.0.0.1:5000/me/pkg:t",
                "127.0.0.1:5000/me/pkg:t",
                "127.0.0.1:5000/me/pkg:t",
            ),
            ("localhost/x", "localhost/x", "localhost/x"),
            (
                "ghcr.io/me/a/b:1.0",
                "ghcr.io/me/a/b:1.0",
                "ghcr.io/me/a/b:1.0",
            ),
            ("[::1]:5000/x:y", "[::1]:5000/x:y", "[::1]:5000/x:y"),
        ] {
            let r = Reference::parse(input).unwrap();
            assert_eq!(r.canonical(), canonical, "{input}");
            assert_eq!(r.familiar(), familiar, "{input}");
        }
    }

    #[test]
    fn tags_digests_and_ports_are_told_apart() {
        let r = Reference::parse(&format!("127.0.0.1:5000/me/pkg@{D}")).unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "me/pkg");
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().as_str(), D);
        assert_eq!(r.tag_or_latest(), None);
        assert!(r.is_loopback_registry());

        let r = Reference::parse(&format!("me/pkg:v1@{D}")).unwrap();
        assert_eq!(r.tag(), Some("v1"));
        assert!(r.digest().is_some());

        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.tag_or_latest(), Some("latest"));
        assert_eq!(r.api_host(), DOCKER_HUB_API);
        assert!(!r.is_loopback_registry());
    }

    #[test]
    fn bad_references_say_why() {
        for (bad, why) in [
            ("", "empty"),
            ("my_host:5000/x", "bad registry host"),
            ("foo/Bar", "lowercase"),
            ("foo//bar", "may hold only"),
            ("foo/bar:", "a tag"),
            ("foo/bar:-x", "a tag"),
            ("foo/bar@sha256:1234", "bad digest"),
            ("foo/-bar", "may hold only"),
            ("foo/bar..baz", "may hold only"),
        ] {
            let e = Reference::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn with_tag_replaces_tag_and_drops_digest() {
        let r = Reference::parse(&format!("me/pkg:v1@{D}")).unwrap();
        let t = r.with_tag("abc-amd64").unwrap();
        assert_eq!(t.canonical(), "docker.io/me/pkg:abc-amd64");
        assert!(r.with_tag("bad tag").is_err());
    }
}
