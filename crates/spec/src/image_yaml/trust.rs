//! oxkit's `trust` section of an image YAML, which replaces LinuxKit's retired Docker Content
//! Trust: which keys must have signed which images.
//!
//! ```yaml
//! trust:
//!   keys: {linuxkit: keys/linuxkit.pub, me: /etc/oxkit/me.pub}
//!   rules:
//!     - match: "linuxkit/*"          # normalised: docker.io/linuxkit/ prefix
//!       keys: [linuxkit]
//!     - match: ghcr.io/me/app:1.0     # one exact reference
//!       keys: [me, linuxkit]
//! ```
//!
//! A `match` is a reference (`redis` matches every tag of `docker.io/library/redis`;
//! `nginx:1.19` only that tag) or a prefix: ending in `*`, or in `/` (`linuxkit/` is
//! `linuxkit/*`). A `*` anywhere else is refused.
//!
//! LinuxKit's legacy form `trust: {org: [linuxkit], image: [redis]}` is still read: each
//! listed org or image must be signed by the key named [`DEFAULT_KEY`] (the caller's default
//! signing key unless `keys` defines that name). Patterns and names are normalised with
//! [`Reference`]'s Docker rules, so `linuxkit/*` means `docker.io/linuxkit/*`.
//!
//! This module only decides *which* keys are required; reading keys and checking signatures
//! belong to `oxkit-sign`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::ser::SerializeMap;

use crate::reference::{DOCKER_HUB, Reference};
use crate::yaml::{SourceLoc, SpecError};

/// The key name legacy `org`/`image` entries require, and that rules may name without
/// defining it in `keys`: the signing key the caller is configured with.
pub const DEFAULT_KEY: &str = "default";

/// The `trust` section as written (several files' sections appended in order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustConfig {
    /// `keys: {NAME: PATH}`: public key files, by name.
    pub keys: Vec<TrustKey>,
    /// `rules: [{match, keys}]`.
    pub rules: Vec<TrustRule>,
    /// Legacy `org: [...]`.
    pub org: Vec<TrustName>,
    /// Legacy `image: [...]`.
    pub image: Vec<TrustName>,
}

/// A named public key file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustKey {
    pub name: String,
    /// As written; relative paths are relative to the YAML file's directory (the caller
    /// resolves them: this crate does no I/O).
    pub path: String,
    pub loc: SourceLoc,
}

/// One rule: references matching `pattern` must be signed by every key in `keys`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustRule {
    pub pattern: String,
    pub keys: Vec<TrustName>,
    pub loc: SourceLoc,
}

/// A string with the place it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustName {
    pub value: String,
    pub loc: SourceLoc,
}

impl TrustConfig {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
            && self.rules.is_empty()
            && self.org.is_empty()
            && self.image.is_empty()
    }

    /// Appends a later file's section: keys, rules and legacy lists are concatenated (a key
    /// name defined twice must name the same file, which [`TrustConfig::policy`] checks).
    pub fn append(&mut self, other: TrustConfig) {
        self.keys.extend(other.keys);
        self.rules.extend(other.rules);
        self.org.extend(other.org);
        self.image.extend(other.image);
    }

    /// Checks the section and turns it into a policy that answers per reference.
    pub fn policy(&self) -> Result<TrustPolicy, SpecError> {
        let mut keys: BTreeMap<String, TrustKey> = BTreeMap::new();
        for k in &self.keys {
            if !is_key_name(&k.name) {
                return Err(SpecError::invalid(
                    &k.loc,
                    format!(
                        "trust.keys: bad key name {:?}; use letters, digits, '_', '.', '-'",
                        k.name
                    ),
                ));
            }
            if k.path.is_empty() {
                return Err(SpecError::invalid(
                    &k.loc,
                    format!(
                        "trust.keys.{}: empty path; give the public key file (cosign.pub)",
                        k.name
                    ),
                ));
            }
            if let Some(first) = keys.get(&k.name)
                && first.path != k.path
            {
                return Err(SpecError::invalid(
                    &k.loc,
                    format!(
                        "trust.keys.{}: {:?} conflicts with {:?} defined at {}; give each key one file",
                        k.name, k.path, first.path, first.loc
                    ),
                ));
            }
            keys.entry(k.name.clone()).or_insert_with(|| k.clone());
        }

        let mut rules = Vec::new();
        for r in &self.rules {
            let matcher = Matcher::parse(&r.pattern)
                .map_err(|m| SpecError::invalid(&r.loc, format!("trust.rules: {m}")))?;
            if r.keys.is_empty() {
                return Err(SpecError::invalid(
                    &r.loc,
                    format!(
                        "trust.rules: rule for {:?} lists no keys; name at least one key from trust.keys",
                        r.pattern
                    ),
                ));
            }
            for k in &r.keys {
                if k.value != DEFAULT_KEY && !keys.contains_key(&k.value) {
                    let known: Vec<&str> = keys.keys().map(String::as_str).collect();
                    return Err(SpecError::invalid(
                        &k.loc,
                        format!(
                            "trust.rules: key {:?} is not defined in trust.keys (defined: {}); add it or use {DEFAULT_KEY:?}",
                            k.value,
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    ));
                }
            }
            rules.push(PolicyRule {
                matcher,
                keys: r.keys.iter().map(|k| k.value.clone()).collect(),
                loc: r.loc.clone(),
            });
        }
        for o in &self.org {
            if !is_org(&o.value) {
                return Err(SpecError::invalid(
                    &o.loc,
                    format!(
                        "trust.org: bad organisation {:?}; expected a lowercase name such as linuxkit",
                        o.value
                    ),
                ));
            }
            rules.push(PolicyRule {
                matcher: Matcher::Org(o.value.clone()),
                keys: vec![DEFAULT_KEY.to_string()],
                loc: o.loc.clone(),
            });
        }
        for i in &self.image {
            let r = Reference::parse(&i.value)
                .map_err(|e| SpecError::invalid(&i.loc, format!("trust.image: {e}")))?;
            rules.push(PolicyRule {
                matcher: Matcher::Exact(r),
                keys: vec![DEFAULT_KEY.to_string()],
                loc: i.loc.clone(),
            });
        }
        Ok(TrustPolicy { keys, rules })
    }
}

impl Serialize for TrustConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Rule<'a> {
            #[serde(rename = "match")]
            pattern: &'a str,
            keys: Vec<&'a str>,
        }
        let mut m = s.serialize_map(None)?;
        if !self.keys.is_empty() {
            // Later definitions of a name repeat the first (policy() refuses conflicts).
            let keys: BTreeMap<&str, &str> = self
                .keys
                .iter()
                .rev()
                .map(|k| (k.name.as_str(), k.path.as_str()))
                .collect();
            m.serialize_entry("keys", &keys)?;
        }
        if !self.rules.is_empty() {
            let rules: Vec<Rule<'_>> = self
                .rules
                .iter()
                .map(|r| Rule {
                    pattern: &r.pattern,
                    keys: r.keys.iter().map(|k| k.value.as_str()).collect(),
                })
                .collect();
            m.serialize_entry("rules", &rules)?;
        }
        let names = |v: &[TrustName]| v.iter().map(|n| n.value.clone()).collect::<Vec<_>>();
        if !self.org.is_empty() {
            m.serialize_entry("org", &names(&self.org))?;
        }
        if !self.image.is_empty() {
            m.serialize_entry("image", &names(&self.image))?;
        }
        m.end()
    }
}

/// The checked trust section: which keys must have signed a reference.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustPolicy {
    keys: BTreeMap<String, TrustKey>,
    rules: Vec<PolicyRule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct PolicyRule {
    matcher: Matcher,
    keys: Vec<String>,
    loc: SourceLoc,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Matcher {
    /// `…*`: the canonical reference text starts with this.
    Prefix(String),
    /// A reference: same name, and the same tag/digest where the pattern has one.
    Exact(Reference),
    /// Legacy `org`: the repository's first path component.
    Org(String),
}

impl Matcher {
    fn parse(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("empty match pattern; write a reference or a prefix ending in '*'".into());
        }
        // A pattern ending in '/' is a repository-path prefix, the same as "…/*".
        let globbed;
        let pattern = if pattern.ends_with('/') {
            globbed = format!("{pattern}*");
            globbed.as_str()
        } else {
            pattern
        };
        let Some(prefix) = pattern.strip_suffix('*') else {
            return Reference::parse(pattern)
                .map(Matcher::Exact)
                .map_err(|e| format!("bad match pattern: {e}"));
        };
        if prefix.contains('*') {
            return Err(format!(
                "bad match pattern {pattern:?}: '*' may only appear once, at the end"
            ));
        }
        if prefix
            .chars()
            .any(|c| c.is_whitespace() || c.is_ascii_uppercase())
        {
            return Err(format!(
                "bad match pattern {pattern:?}: references are lowercase and have no spaces"
            ));
        }
        if prefix.is_empty() {
            return Ok(Matcher::Prefix(String::new()));
        }
        // Docker's rules: a first component with '.' or ':' (or `localhost`) is a registry;
        // otherwise the reference lives on Docker Hub, where one-component names are in
        // `library/`.
        let (registry, rest) = match prefix.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                (first, rest)
            }
            _ => (DOCKER_HUB, prefix),
        };
        let registry = match registry {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB,
            r => r,
        };
        let rest = if registry == DOCKER_HUB && !rest.is_empty() && !rest.contains('/') {
            format!("library/{rest}")
        } else {
            rest.to_string()
        };
        Ok(Matcher::Prefix(format!("{registry}/{rest}")))
    }

    fn matches(&self, r: &Reference) -> bool {
        match self {
            Matcher::Prefix(p) => r.canonical().starts_with(p.as_str()),
            Matcher::Exact(want) => {
                want.name() == r.name()
                    && want.tag().is_none_or(|t| r.tag() == Some(t))
                    && want.digest().is_none_or(|d| r.digest() == Some(d))
            }
            Matcher::Org(org) => r.repository().split('/').next() == Some(org.as_str()),
        }
    }
}

impl TrustPolicy {
    /// True when no rule requires any signature.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The names of the keys that must all have signed `reference`: the union of the keys of
    /// every matching rule, sorted. Empty means no signature is required.
    pub fn required_keys(&self, reference: &Reference) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .rules
            .iter()
            .filter(|r| r.matcher.matches(reference))
            .flat_map(|r| r.keys.iter().map(String::as_str))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Where the rules that apply to `reference` were written, for messages such as
    /// "required by minimal.yml:30:7".
    pub fn matching_rules(&self, reference: &Reference) -> Vec<&SourceLoc> {
        self.rules
            .iter()
            .filter(|r| r.matcher.matches(reference))
            .map(|r| &r.loc)
            .collect()
    }

    /// The file a key name refers to, as written in `trust.keys`; `None` for an undefined
    /// name (only [`DEFAULT_KEY`] may be undefined: the caller's default key).
    pub fn key_path(&self, name: &str) -> Option<&str> {
        self.keys.get(name).map(|k| k.path.as_str())
    }

    /// All defined keys, by name.
    pub fn keys(&self) -> impl Iterator<Item = &TrustKey> {
        self.keys.values()
    }
}

fn is_key_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn is_org(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image_yaml::ImageYaml;
    use crate::yaml::SpecErrorKind;

    fn policy(text: &str) -> Result<TrustPolicy, SpecError> {
        ImageYaml::parse(text, "t.yml")?.trust.policy()
    }

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    const NEW_FORM: &str = "trust:\n  keys:\n    lk: keys/linuxkit.pub\n    me: /me.pub\n  rules:\n    \
        - match: \"linuxkit/*\"\n      keys: [lk]\n    - match: ghcr.io/me/app:1.0\n      keys: [me, lk]\n    \
        - match: \"alp*\"\n      keys: [me]\n    - match: redis\n      keys: [me]\n";

    #[test]
    fn prefix_patterns_are_normalised_like_references() {
        let p = policy(NEW_FORM).unwrap();
        assert_eq!(p.required_keys(&r("linuxkit/init:abc")), ["lk"]);
        assert_eq!(p.required_keys(&r("docker.io/linuxkit/runc@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")), ["lk"]);
        assert!(p.required_keys(&r("linuxkitx/init")).is_empty());
        assert!(p.required_keys(&r("ghcr.io/linuxkit/init")).is_empty());
        assert_eq!(p.required_keys(&r("alpine:3.19")), ["me"]);
        assert!(p.required_keys(&r("me/alpine")).is_empty());
        assert_eq!(p.key_path("lk"), Some("keys/linuxkit.pub"));
        assert_eq!(p.key_path("nobody"), None);
    }

    #[test]
    fn exact_patterns_match_name_and_given_tag() {
        let p = policy(NEW_FORM).unwrap();
        assert_eq!(p.required_keys(&r("ghcr.io/me/app:1.0")), ["lk", "me"]);
        assert!(p.required_keys(&r("ghcr.io/me/app:2.0")).is_empty());
        // `redis` has no tag: every tag of docker.io/library/redis matches.
        assert_eq!(p.required_keys(&r("redis:7")), ["me"]);
        assert_eq!(p.required_keys(&r("docker.io/library/redis")), ["me"]);
        assert_eq!(p.matching_rules(&r("redis:7")).len(), 1);
        assert_eq!(p.matching_rules(&r("redis:7"))[0].line, 12);
    }

    #[test]
    fn registry_and_catch_all_prefixes() {
        let p = policy(
            "trust:\n  rules:\n    - match: \"localhost:5000/*\"\n      keys: [default]\n    \
             - match: \"*\"\n      keys: [default]\n    - match: \"docker.io/*\"\n      keys: [hub]\n  \
             keys: {hub: hub.pub}\n",
        )
        .unwrap();
        assert_eq!(p.required_keys(&r("localhost:5000/x/y:1")), ["default"]);
        assert_eq!(p.required_keys(&r("quay.io/x")), ["default"]);
        assert_eq!(p.required_keys(&r("busybox")), ["default", "hub"]);

        let p =
            policy("trust:\n  rules:\n    - {match: \"ghcr.io/me/\", keys: [default]}\n").unwrap();
        assert_eq!(p.required_keys(&r("ghcr.io/me/app:1")), ["default"]);
        assert!(p.required_keys(&r("ghcr.io/mex/app:1")).is_empty());
    }

    #[test]
    fn legacy_form_requires_the_default_key() {
        let p = policy("trust:\n  org: [linuxkit]\n  image: [redis, \"nginx:1.19\"]\n").unwrap();
        assert_eq!(p.required_keys(&r("linuxkit/init:abc")), [DEFAULT_KEY]);
        assert_eq!(p.required_keys(&r("ghcr.io/linuxkit/init")), [DEFAULT_KEY]);
        assert_eq!(p.required_keys(&r("redis:latest")), [DEFAULT_KEY]);
        assert_eq!(p.required_keys(&r("nginx:1.19")), [DEFAULT_KEY]);
        assert!(p.required_keys(&r("nginx:1.20")).is_empty());
        assert!(p.required_keys(&r("alpine")).is_empty());
        assert!(policy("kernel:\n  cmdline: x\n").unwrap().is_empty());
    }

    #[test]
    fn bad_trust_sections_are_refused_with_location() {
        for (text, line, why) in [
            (
                "trust:\n  rules:\n    - match: \"a*b*\"\n      keys: [default]\n",
                3,
                "only appear once",
            ),
            (
                "trust:\n  rules:\n    - match: \"Bad/*\"\n      keys: [default]\n",
                3,
                "lowercase",
            ),
            (
                "trust:\n  rules:\n    - match: \"x/*\"\n      keys: []\n",
                3,
                "lists no keys",
            ),
            (
                "trust:\n  rules:\n    - match: \"x/*\"\n      keys: [nokey]\n",
                4,
                "not defined in trust.keys",
            ),
            ("trust:\n  keys:\n    \"a b\": x.pub\n", 3, "bad key name"),
            ("trust:\n  keys:\n    a: \"\"\n", 3, "empty path"),
            ("trust:\n  org: [Linuxkit]\n", 2, "bad organisation"),
            ("trust:\n  image: [\"Redis\"]\n", 2, "trust.image"),
            (
                "trust:\n  rules:\n    - match: \"\"\n      keys: [default]\n",
                3,
                "empty match",
            ),
        ] {
            let e = policy(text).unwrap_err();
            assert_eq!(e.kind, SpecErrorKind::Invalid, "{text}");
            assert_eq!(e.line(), Some(line), "{text}: {e}");
            assert!(e.message.contains(why), "{text}: {e}");
        }
        let e = ImageYaml::parse("trust:\n  notary: true\n", "t.yml").unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::UnknownField);
        let e = ImageYaml::parse("trust:\n  rules:\n    - keys: [a]\n", "t.yml").unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::MissingField);
    }

    #[test]
    fn merged_sections_append_and_conflicting_keys_are_refused() {
        let a =
            ImageYaml::parse("trust:\n  keys: {k: a.pub}\n  org: [linuxkit]\n", "a.yml").unwrap();
        let b = ImageYaml::parse(
            "trust:\n  keys: {k: a.pub}\n  rules:\n    - {match: \"me/*\", keys: [k]}\n",
            "b.yml",
        )
        .unwrap();
        let merged = ImageYaml::merge(vec![a.clone(), b]);
        let p = merged.trust.policy().unwrap();
        assert_eq!(p.required_keys(&r("me/x")), ["k"]);
        assert_eq!(p.required_keys(&r("linuxkit/x")), [DEFAULT_KEY]);

        let c = ImageYaml::parse("\ntrust:\n  keys: {k: other.pub}\n", "c.yml").unwrap();
        let e = ImageYaml::merge(vec![a, c]).trust.policy().unwrap_err();
        assert!(e.to_string().starts_with("c.yml:3:"), "{e}");
        assert!(e.message.contains("defined at a.yml:2:"), "{e}");
    }
}
