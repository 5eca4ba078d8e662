//! `build.yml`, the package spec LinuxKit's `pkg` commands read: parsing with LinuxKit's
//! defaults and `KnownFields` strictness, the checks LinuxKit makes (required `image`,
//! `extra-sources` as `src:dst`, `depends` exclusions, Dockerfile inside the package), and
//! the tag template (`{{.Hash}}`).
//!
//! Pure: it reads the text it is given and never the file system, so paths are checked
//! lexically; whether the Dockerfile exists is for the caller to see.

use std::sync::Arc;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::image_yaml::ContainerConfig;
use crate::platform::{KNOWN_ARCHES, Platform};
use crate::reference::Reference;
use crate::yaml::{self, SourceLoc, SpecError, SpecErrorKind, clean_path, strict};

/// LinuxKit's default `org`.
pub const DEFAULT_ORG: &str = "linuxkit";
/// LinuxKit's default tag template.
pub const DEFAULT_TAG: &str = "{{.Hash}}";
/// LinuxKit's default `dockerfile`.
pub const DEFAULT_DOCKERFILE: &str = "Dockerfile";
/// LinuxKit's default `gitrepo`.
pub const DEFAULT_GITREPO: &str = "https://github.com/linuxkit/linuxkit";
/// LinuxKit's default `arches`.
pub const DEFAULT_ARCHES: &[&str] = &["amd64", "arm64", "riscv64"];

/// A parsed and checked `build.yml` (LinuxKit's `pkgInfo`), with LinuxKit's defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageSpec {
    /// Image name without org, e.g. `init`.
    pub image: String,
    /// Hub org or registry prefix (`linuxkit`, `127.0.0.1:5000/me`).
    pub org: String,
    /// Architectures to build, normalised (`aarch64` becomes `arm64`).
    pub arches: Vec<String>,
    /// Tag template; checked with [`render_tag`] at parse time.
    pub tag: String,
    /// Dockerfile path relative to the package directory.
    pub dockerfile: String,
    pub extra_sources: Vec<ExtraSource>,
    pub gitrepo: String,
    pub network: bool,
    pub disable_cache: bool,
    /// The `org.mobyproject.config` label content.
    pub config: Option<ContainerConfig>,
    /// `KEY=VALUE` build arguments; `None` when the key is absent.
    pub build_args: Option<Vec<String>>,
    pub depends: Depends,
}

/// One `extra-sources` entry, `src:dst`, both cleaned like Go's `path.Clean`. `src` is
/// relative to the package directory unless absolute; `dst` is inside the build context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraSource {
    pub src: String,
    pub dst: String,
}

/// `depends:` in `build.yml`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Depends {
    pub docker_images: DockerImages,
}

/// `depends.docker-images`: images to save into the build context. Paths are relative to
/// the package directory, checked not to escape it; empty means unset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DockerImages {
    pub target_dir: String,
    pub target: String,
    pub from_file: String,
    /// References, each pinned by digest.
    pub list: Vec<String>,
}

/// A `buildArgs` entry, with LinuxKit's `@lkt:` values told apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildArg {
    /// `KEY=VALUE`.
    Plain { key: String, value: String },
    /// `KEY=@lkt:pkg:PATH`: the value is the tag of the package at PATH (relative to the
    /// `build.yml`'s directory unless absolute).
    Pkg { key: String, path: String },
    /// `KEY_%=@lkt:pkgs:GLOB`: one argument per package directory matching GLOB, `%` in the
    /// key replaced by the package's image name in upper case with `/` and `-` as `_`.
    Pkgs { key: String, glob: String },
}

impl BuildArg {
    /// Splits and classifies one entry, with LinuxKit's rules and messages.
    pub fn parse(arg: &str) -> Result<Self, String> {
        let Some((key, value)) = arg.split_once('=') else {
            return Err(format!(
                "build argument {arg:?} is not KEY=VALUE; write it as NAME=value"
            ));
        };
        let (key, value) = (key.to_string(), value.to_string());
        let Some(special) = value.strip_prefix("@lkt:") else {
            return Ok(Self::Plain { key, value });
        };
        if let Some(path) = special.strip_prefix("pkg:") {
            Ok(Self::Pkg {
                key,
                path: path.to_string(),
            })
        } else if let Some(glob) = special.strip_prefix("pkgs:") {
            if !key.contains('%') {
                return Err(format!(
                    "build argument key {key:?} must contain a '%' for @lkt:pkgs: (it is replaced by each package's name)"
                ));
            }
            Ok(Self::Pkgs {
                key,
                glob: glob.to_string(),
            })
        } else {
            Err(format!(
                "unknown linuxkit build argument value {value:?}; expected @lkt:pkg:PATH or @lkt:pkgs:GLOB"
            ))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPackage {
    #[serde(default)]
    image: Option<Spanned<String>>,
    #[serde(default = "default_org", deserialize_with = "strict::string")]
    org: String,
    #[serde(default)]
    tag: Option<Spanned<String>>,
    #[serde(default)]
    dockerfile: Option<Spanned<String>>,
    #[serde(default)]
    arches: Option<Vec<Spanned<String>>>,
    #[serde(rename = "extra-sources", default)]
    extra_sources: Option<Vec<Spanned<String>>>,
    #[serde(default = "default_gitrepo", deserialize_with = "strict::string")]
    gitrepo: String,
    #[serde(default, deserialize_with = "strict::req")]
    network: bool,
    #[serde(rename = "disable-cache", default, deserialize_with = "strict::req")]
    disable_cache: bool,
    #[serde(default)]
    config: Option<ContainerConfig>,
    #[serde(rename = "buildArgs", default)]
    build_args: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    depends: Option<Spanned<RawDepends>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDepends {
    #[serde(rename = "docker-images", default)]
    docker_images: Option<RawDockerImages>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDockerImages {
    #[serde(rename = "target-dir", default)]
    target_dir: Option<Spanned<String>>,
    #[serde(default)]
    target: Option<Spanned<String>>,
    #[serde(rename = "from-file", default)]
    from_file: Option<Spanned<String>>,
    #[serde(default)]
    list: Option<Vec<Spanned<String>>>,
}

fn default_org() -> String {
    DEFAULT_ORG.to_string()
}

fn default_gitrepo() -> String {
    DEFAULT_GITREPO.to_string()
}

impl PackageSpec {
    /// Parses and checks `build.yml` text; `origin` names the file in messages.
    pub fn parse(text: &str, origin: &str) -> Result<Self, SpecError> {
        let origin: Arc<str> = Arc::from(origin);
        let raw: RawPackage = yaml::from_str(text, &origin)?;
        let at = |s: &Spanned<String>| SourceLoc::from_saphyr(&origin, s.referenced);

        let image = match &raw.image {
            Some(i) if !i.value.is_empty() => i.value.clone(),
            Some(i) => {
                return Err(SpecError::invalid(
                    &at(i),
                    "image must not be empty; set it to the package's image name, e.g. image: init",
                ));
            }
            None => {
                return Err(SpecError::at(
                    &SourceLoc::new(&origin, 1, 1),
                    SpecErrorKind::MissingField,
                    "missing required field \"image\"; add e.g. image: init",
                ));
            }
        };

        // LinuxKit only finds out when it tags the build; say so at the `image` line.
        if let Some(i) = &raw.image {
            let reason = match Reference::parse(&format!("{}/{}", raw.org, image)) {
                Err(e) => Some(e.reason),
                Ok(r) if r.tag().is_some() || r.digest().is_some() => {
                    Some("the tag comes from the tag template, not from image".to_string())
                }
                Ok(_) => None,
            };
            if let Some(reason) = reason {
                return Err(SpecError::invalid(
                    &at(i),
                    format!(
                        "org {:?} and image {image:?} do not form an image name ({reason}); use lowercase letters, digits, '.', '_', '-'",
                        raw.org
                    ),
                ));
            }
        }

        let tag = match &raw.tag {
            Some(t) if !t.value.is_empty() => {
                check_tag_template(&t.value)
                    .map_err(|m| SpecError::at(&at(t), SpecErrorKind::Template, m))?;
                t.value.clone()
            }
            _ => DEFAULT_TAG.to_string(),
        };

        let dockerfile = match &raw.dockerfile {
            Some(d) if !d.value.is_empty() => {
                check_dockerfile(&d.value).map_err(|m| SpecError::invalid(&at(d), m))?;
                d.value.clone()
            }
            _ => DEFAULT_DOCKERFILE.to_string(),
        };

        let arches = match &raw.arches {
            None => DEFAULT_ARCHES.iter().map(|a| a.to_string()).collect(),
            Some(list) => list
                .iter()
                .map(|a| {
                    Platform::linux(&a.value)
                        .map(|p| p.architecture)
                        .map_err(|_| {
                            SpecError::invalid(
                                &at(a),
                                format!(
                                    "arches: unknown architecture {:?}; expected one of {}",
                                    a.value,
                                    KNOWN_ARCHES.join(", ")
                                ),
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };

        let extra_sources = raw
            .extra_sources
            .iter()
            .flatten()
            .map(|s| parse_extra_source(&s.value).map_err(|m| SpecError::invalid(&at(s), m)))
            .collect::<Result<Vec<_>, _>>()?;

        if let Some(args) = &raw.build_args {
            for a in args {
                BuildArg::parse(&a.value)
                    .map_err(|m| SpecError::invalid(&at(a), format!("buildArgs: {m}")))?;
            }
        }

        let depends = match &raw.depends {
            None => Depends::default(),
            Some(d) => parse_depends(&d.value, &origin)?,
        };

        Ok(Self {
            image,
            org: raw.org,
            arches,
            tag,
            dockerfile,
            extra_sources,
            gitrepo: raw.gitrepo,
            network: raw.network,
            disable_cache: raw.disable_cache,
            config: raw.config,
            build_args: raw
                .build_args
                .map(|v| v.into_iter().map(|s| s.value).collect()),
            depends,
        })
    }

    /// The JSON LinuxKit stores in the `org.mobyproject.config` image label, or `None` when
    /// the spec has no `config`. Deterministic: Go's field order, sorted map keys.
    pub fn config_label_json(&self) -> Option<String> {
        self.config.as_ref().map(ContainerConfig::to_label_json)
    }

    /// `build_args` split and classified (already checked by [`PackageSpec::parse`]).
    pub fn parsed_build_args(&self) -> Vec<BuildArg> {
        self.build_args
            .iter()
            .flatten()
            .filter_map(|a| BuildArg::parse(a).ok())
            .collect()
    }

    /// The platforms to build, `linux/<arch>` for each of `arches`.
    pub fn platforms(&self) -> Vec<Platform> {
        self.arches
            .iter()
            .filter_map(|a| Platform::linux(a).ok())
            .collect()
    }

    /// `org/image` (LinuxKit's `Pkg.Image()`).
    pub fn image_name(&self) -> String {
        format!("{}/{}", self.org, self.image)
    }

    /// `org/image:TAG` for a content hash, with the tag template applied (LinuxKit's
    /// `Pkg.Tag()`).
    pub fn tagged(&self, hash: &str) -> Result<String, SpecError> {
        let tag = render_tag(&self.tag, hash)?;
        Ok(format!("{}:{tag}", self.image_name()))
    }
}

fn parse_extra_source(s: &str) -> Result<ExtraSource, String> {
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [src, dst] if !src.is_empty() && !dst.is_empty() => Ok(ExtraSource {
            src: clean_path(src),
            dst: clean_path(dst),
        }),
        _ => Err(format!(
            "extra-sources: bad source {s:?}; expected exactly SRC:DST, e.g. ../alpine/versions:/versions"
        )),
    }
}

fn check_dockerfile(path: &str) -> Result<(), String> {
    if path.starts_with('/') {
        return Err(format!(
            "dockerfile {path:?} must be a path relative to the package directory"
        ));
    }
    // LinuxKit refuses any "..", not only whole components; do the same.
    if path.contains("..") {
        return Err(format!(
            "dockerfile {path:?} must not contain \"..\": the Dockerfile must be inside the package directory"
        ));
    }
    Ok(())
}

/// LinuxKit's `makeAbsSubpath`, lexically: relative, inside the package, not the package.
fn check_subpath(field: &str, path: &str) -> Result<(), String> {
    if path.starts_with('/') {
        return Err(format!(
            "{field} {path:?} must be relative to the package directory"
        ));
    }
    let clean = clean_path(path);
    if clean == "." {
        return Err(format!(
            "{field} {path:?} must not be exactly the package directory"
        ));
    }
    if clean == ".." || clean.starts_with("../") {
        return Err(format!(
            "{field} {path:?} must be within the package directory"
        ));
    }
    Ok(())
}

fn parse_depends(raw: &RawDepends, origin: &Arc<str>) -> Result<Depends, SpecError> {
    let Some(di) = &raw.docker_images else {
        return Ok(Depends::default());
    };
    let at = |s: &Spanned<String>| SourceLoc::from_saphyr(origin, s.referenced);
    let value =
        |s: &Option<Spanned<String>>| s.as_ref().map(|s| s.value.clone()).unwrap_or_default();
    fn set(s: &Option<Spanned<String>>) -> Option<&Spanned<String>> {
        s.as_ref().filter(|s| !s.value.is_empty())
    }

    if let (Some(_), Some(t)) = (set(&di.target_dir), set(&di.target)) {
        return Err(SpecError::invalid(
            &at(t),
            "depends.docker-images: target and target-dir are mutually exclusive; keep one",
        ));
    }
    let list = di.list.as_deref().unwrap_or_default();
    if let (Some(f), false) = (set(&di.from_file), list.is_empty()) {
        return Err(SpecError::invalid(
            &at(f),
            "depends.docker-images: list and from-file are mutually exclusive; keep one",
        ));
    }
    for (field, v) in [
        ("depends.docker-images.target", &di.target),
        ("depends.docker-images.target-dir", &di.target_dir),
        ("depends.docker-images.from-file", &di.from_file),
    ] {
        if let Some(s) = set(v) {
            check_subpath(field, &s.value).map_err(|m| SpecError::invalid(&at(s), m))?;
        }
    }
    for item in list {
        check_pinned_reference(&item.value).map_err(|m| SpecError::invalid(&at(item), m))?;
    }
    Ok(Depends {
        docker_images: DockerImages {
            target_dir: value(&di.target_dir),
            target: value(&di.target),
            from_file: value(&di.from_file),
            list: list.iter().map(|s| s.value.clone()).collect(),
        },
    })
}

/// A `depends` image must be pinned: LinuxKit refuses references without a digest.
pub fn check_pinned_reference(s: &str) -> Result<Reference, String> {
    let r = Reference::parse(s).map_err(|e| format!("depends.docker-images: {e}"))?;
    if r.digest().is_none() {
        return Err(format!(
            "depends.docker-images: image {s:?} lacks a digest; pin it as NAME@sha256:..."
        ));
    }
    Ok(r)
}

/// Renders LinuxKit's tag template for a content hash. The template is Go `text/template`
/// limited to literal text and `{{.Hash}}` (also `{{ .Hash }}` and the whitespace-trimming
/// `{{- .Hash -}}`); anything else is refused. An empty template means `{{.Hash}}`. The
/// result must be a valid image tag.
pub fn render_tag(template: &str, hash: &str) -> Result<String, SpecError> {
    let template = if template.is_empty() {
        DEFAULT_TAG
    } else {
        template
    };
    let out = expand_template(template, hash).map_err(|message| SpecError {
        location: None,
        kind: SpecErrorKind::Template,
        message,
    })?;
    if !is_valid_tag(&out) {
        return Err(SpecError {
            location: None,
            kind: SpecErrorKind::Template,
            message: format!(
                "tag template {template:?} gives {out:?}, which is not a valid image tag; a tag holds letters, digits, '_', '.', '-' (at most 128, not starting with '.' or '-')"
            ),
        });
    }
    Ok(out)
}

/// Parse-time check of a template: it must expand and give a valid tag for a real hash.
fn check_tag_template(template: &str) -> Result<(), String> {
    render_tag(template, "0123456789abcdef0123456789abcdef01234567")
        .map(drop)
        .map_err(|e| format!("tag: {}", e.message))
}

fn is_go_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn expand_template(template: &str, hash: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let mut text = &rest[..open];
        let mut action = &rest[open + 2..];
        // Go's trim markers need a space next to the dash: "{{- " and " -}}".
        if action.starts_with('-') && action[1..].starts_with(is_go_space) {
            text = text.trim_end_matches(is_go_space);
            action = &action[1..];
        }
        let Some(close) = action.find("}}") else {
            return Err(format!(
                "tag template {template:?} has an unclosed action: add the closing \"}}}}\""
            ));
        };
        let mut inner = &action[..close];
        let after = &action[close + 2..];
        let mut trim_right = false;
        if let Some(stripped) = inner.strip_suffix('-')
            && stripped.ends_with(is_go_space)
        {
            inner = stripped;
            trim_right = true;
        }
        if inner.trim_matches(is_go_space) != ".Hash" {
            return Err(format!(
                "tag template {template:?} uses {{{{{inner}}}}}; only literal text and {{{{.Hash}}}} are supported"
            ));
        }
        out.push_str(text);
        out.push_str(hash);
        rest = if trim_right {
            after.trim_start_matches(is_go_space)
        } else {
            after
        };
    }
    out.push_str(rest);
    Ok(out)
}

fn is_valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image_yaml::IdValue;

    fn parse(text: &str) -> Result<PackageSpec, SpecError> {
        PackageSpec::parse(text, "build.yml")
    }

    #[test]
    fn defaults_match_linuxkit() {
        let p = parse("image: init\n").unwrap();
        assert_eq!(p.image, "init");
        assert_eq!(p.org, "linuxkit");
        assert_eq!(p.arches, ["amd64", "arm64", "riscv64"]);
        assert_eq!(p.tag, "{{.Hash}}");
        assert_eq!(p.dockerfile, "Dockerfile");
        assert_eq!(p.gitrepo, "https://github.com/linuxkit/linuxkit");
        assert!(!p.network && !p.disable_cache);
        assert_eq!(p.config, None);
        assert_eq!(p.build_args, None);
        assert_eq!(p.depends, Depends::default());
        assert_eq!(p.config_label_json(), None);
        assert_eq!(p.image_name(), "linuxkit/init");
    }

    #[test]
    fn every_field_is_read() {
        let p = parse(
            "image: x\norg: me\ntag: v1-{{.Hash}}\ndockerfile: docker/Dockerfile.alt\n\
             arches: [aarch64, amd64]\nextra-sources:\n  - ../alpine/./versions:/versions/\n\
             gitrepo: https://example.com/r\nnetwork: true\ndisable-cache: yes\n\
             config:\n  uid: 0\n  binds: [/a:/b]\nbuildArgs: [A=1, \"B=@lkt:pkg:../y\"]\n\
             depends:\n  docker-images:\n    target-dir: imgs\n    list:\n      - \"alpine@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"\n",
        )
        .unwrap();
        assert_eq!(p.org, "me");
        assert_eq!(p.tag, "v1-{{.Hash}}");
        assert_eq!(p.dockerfile, "docker/Dockerfile.alt");
        assert_eq!(p.arches, ["arm64", "amd64"]);
        assert_eq!(
            p.extra_sources,
            [ExtraSource {
                src: "../alpine/versions".into(),
                dst: "/versions".into()
            }]
        );
        assert_eq!(p.gitrepo, "https://example.com/r");
        assert!(p.network && p.disable_cache);
        let c = p.config.as_ref().unwrap();
        assert_eq!(c.uid, Some(IdValue::Id(0)));
        assert_eq!(
            p.config_label_json().unwrap(),
            r#"{"binds":["/a:/b"],"uid":0}"#
        );
        assert_eq!(
            p.parsed_build_args(),
            [
                BuildArg::Plain {
                    key: "A".into(),
                    value: "1".into()
                },
                BuildArg::Pkg {
                    key: "B".into(),
                    path: "../y".into()
                }
            ]
        );
        assert_eq!(p.depends.docker_images.target_dir, "imgs");
        assert_eq!(p.depends.docker_images.list.len(), 1);
        assert_eq!(p.tagged("abc").unwrap(), "me/x:v1-abc");
    }

    #[test]
    fn unknown_field_is_refused_with_its_line() {
        let e = parse("image: x\nnetwork: true\n# comment\nunknownField: \"abc\"\n").unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::UnknownField);
        assert!(
            e.to_string().starts_with(
                "build.yml:4:1: unknown field \"unknownField\"; expected one of image, org, tag, dockerfile, arches, extra-sources"
            ),
            "{e}"
        );
        let e = parse("image: x\nconfig:\n  capabilites: [CAP_SYS_ADMIN]\n").unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::UnknownField);
        assert_eq!(e.line(), Some(3));
        let e = parse("image: x\ndepends:\n  docker-images:\n    lists: []\n").unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::UnknownField);
        assert_eq!(e.line(), Some(4));
    }

    #[test]
    fn wrong_types_name_position_and_expected_type() {
        let e = parse("image: x\nnetwork: \"yes\"\n").unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::WrongType);
        assert_eq!(
            e.to_string(),
            "build.yml:2:10: network: expected true or false (unquoted), found string \"yes\""
        );
        let e = parse("image: x\narches: amd64\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "build.yml:2:9: arches: expected a list, found the scalar amd64"
        );
        let e = parse("image: x\nconfig: [a]\n").unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::WrongType);
        assert!(e.message.starts_with("config: expected a mapping"), "{e}");
        let e = parse("image: [x]\n").unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::WrongType);
    }

    #[test]
    fn image_is_required_and_non_empty() {
        let e = parse("org: me\n").unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::MissingField);
        assert!(
            e.to_string()
                .starts_with("build.yml:1:1: missing required field \"image\"")
        );
        let e = parse("").unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::MissingField);
        let e = parse("org: me\nimage: \"\"\n").unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::Invalid);
        assert_eq!(e.line(), Some(2));
    }

    #[test]
    fn org_and_image_must_form_a_reference() {
        let e = parse("image: My_Image\n").unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::Invalid);
        assert!(
            e.to_string()
                .starts_with("build.yml:1:8: org \"linuxkit\" and image \"My_Image\""),
            "{e}"
        );
        let e = parse("org: \"\"\nimage: x\n").unwrap_err();
        assert_eq!(e.line(), Some(2));
        let e = parse("image: x:1.0\n").unwrap_err();
        assert!(e.message.contains("tag template"), "{e}");
        let p = parse("org: 127.0.0.1:5000/me\nimage: x\n").unwrap();
        assert_eq!(p.tagged("h").unwrap(), "127.0.0.1:5000/me/x:h");
    }

    #[test]
    fn dockerfile_must_stay_in_the_package() {
        for bad in ["/etc/Dockerfile", "../Dockerfile", "sub/../../Dockerfile"] {
            let e = parse(&format!("image: x\ndockerfile: {bad}\n")).unwrap_err();
            assert_eq!(e.kind, SpecErrorKind::Invalid, "{bad}");
            assert!(
                e.to_string().starts_with("build.yml:2:13: dockerfile "),
                "{e}"
            );
        }
        assert_eq!(
            parse("image: x\ndockerfile:\n").unwrap().dockerfile,
            "Dockerfile"
        );
    }

    #[test]
    fn extra_sources_must_be_src_colon_dst() {
        for bad in ["a", "a:b:c", ":b", "a:"] {
            let e = parse(&format!("image: x\nextra-sources:\n  - \"{bad}\"\n")).unwrap_err();
            assert_eq!(e.kind, SpecErrorKind::Invalid, "{bad}");
            assert_eq!(e.line(), Some(3));
            assert!(e.message.contains("expected exactly SRC:DST"), "{e}");
        }
    }

    #[test]
    fn arches_must_be_known() {
        let e = parse("image: x\narches:\n  - amd64\n  - sparc\n").unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::Invalid);
        assert!(
            e.to_string()
                .starts_with("build.yml:4:5: arches: unknown architecture \"sparc\""),
            "{e}"
        );
    }

    #[test]
    fn build_args_are_checked() {
        for (bad, why) in [
            ("NOEQUALS", "not KEY=VALUE"),
            ("X=@lkt:pkgs:/a/*", "must contain a '%'"),
            ("X=@lkt:what:x", "unknown linuxkit build argument"),
        ] {
            let e = parse(&format!("image: x\nbuildArgs:\n  - \"{bad}\"\n")).unwrap_err();
            assert_eq!(e.line(), Some(3), "{bad}");
            assert!(e.message.contains(why), "{bad}: {e}");
        }
        let p = parse("image: x\nbuildArgs: [\"K_%=@lkt:pkgs:../*\"]\n").unwrap();
        assert_eq!(
            p.parsed_build_args(),
            [BuildArg::Pkgs {
                key: "K_%".into(),
                glob: "../*".into()
            }]
        );
        assert_eq!(
            parse("image: x\nbuildArgs: []\n").unwrap().build_args,
            Some(vec![])
        );
    }

    #[test]
    fn depends_rules() {
        let d = "image: x\ndepends:\n  docker-images:\n";
        for (body, why) in [
            ("    target: a\n    target-dir: b\n", "mutually exclusive"),
            (
                "    from-file: f\n    list: [\"a@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"]\n",
                "mutually exclusive",
            ),
            ("    target: /abs\n", "relative"),
            ("    target-dir: ../out\n", "within the package"),
            ("    from-file: .\n", "exactly the package"),
            ("    list: [alpine:3.19]\n", "lacks a digest"),
            ("    list: [\"Bad Ref\"]\n", "invalid image reference"),
        ] {
            let e = parse(&format!("{d}{body}")).unwrap_err();
            assert_eq!(e.kind, SpecErrorKind::Invalid, "{body}");
            assert!(e.message.contains(why), "{body}: {e}");
            assert!(e.line().unwrap() >= 4, "{e}");
        }
    }

    #[test]
    fn tag_templates() {
        let h = "abc123";
        assert_eq!(render_tag("{{.Hash}}", h).unwrap(), "abc123");
        assert_eq!(render_tag("", h).unwrap(), "abc123");
        assert_eq!(render_tag("v1-{{ .Hash }}-x", h).unwrap(), "v1-abc123-x");
        assert_eq!(
            render_tag("v1 {{- .Hash -}} \t_x", h).unwrap(),
            "v1abc123_x"
        );
        assert_eq!(render_tag("fixed", h).unwrap(), "fixed");
        assert_eq!(render_tag("{{.Hash}}{{.Hash}}", "a").unwrap(), "aa");
        for (bad, why) in [
            ("{{.Foo}}", "only literal text"),
            ("{{.Hash | printf \"%s\"}}", "only literal text"),
            ("{{-.Hash}}", "only literal text"),
            ("{{.Hash", "unclosed"),
            ("a b {{.Hash}}", "not a valid image tag"),
            ("-{{.Hash}}", "not a valid image tag"),
        ] {
            let e = render_tag(bad, h).unwrap_err();
            assert_eq!(e.kind, SpecErrorKind::Template);
            assert!(e.message.contains(why), "{bad}: {e}");
        }
        let e = parse("image: x\ntag: \"{{.Version}}\"\n").unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::Template);
        assert!(e.to_string().starts_with("build.yml:2:6: tag: "), "{e}");
    }
}
