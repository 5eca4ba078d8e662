//! The image YAML as serde reads it, before locations get their file name: strict (unknown
//! keys refused, as LinuxKit's JSON schema does) and converted into the public types of
//! [`super`] with a [`SourceLoc`] on every entry. Nothing here checks meaning; that is
//! `validate`'s job.

use std::sync::Arc;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::config::{container_config_struct, take_container_config, with_container_config_fields};
use super::trust::{TrustConfig, TrustKey, TrustName, TrustRule};
use super::{
    ContainerConfig, FileEntry, IdValue, ImageEntry, ImageText, ImageYaml, Kernel, VolumeEntry,
    VolumeFormat,
};
use crate::yaml;
use crate::yaml::{SourceLoc, SpecError, strict};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDoc {
    #[serde(default)]
    kernel: Option<Spanned<RawKernel>>,
    #[serde(default)]
    init: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    onboot: Option<Vec<Spanned<RawEntry>>>,
    #[serde(default)]
    onshutdown: Option<Vec<Spanned<RawEntry>>>,
    #[serde(default)]
    services: Option<Vec<Spanned<RawEntry>>>,
    #[serde(default)]
    trust: Option<RawTrust>,
    #[serde(default)]
    files: Option<Vec<Spanned<RawFile>>>,
    #[serde(default)]
    volumes: Option<Vec<Spanned<RawVolume>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKernel {
    #[serde(default)]
    image: Option<Spanned<String>>,
    #[serde(default, deserialize_with = "strict::string")]
    cmdline: String,
    #[serde(default, deserialize_with = "strict::string")]
    binary: String,
    #[serde(default)]
    tar: Option<String>,
    #[serde(default)]
    ucode: Option<String>,
}

with_container_config_fields!(container_config_struct![
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawEntry {
        #[serde(deserialize_with = "strict::string")]
        pub name: String,
        pub image: Spanned<String>,
    }
]);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default, deserialize_with = "strict::string")]
    path: String,
    #[serde(default, deserialize_with = "strict::req")]
    directory: bool,
    #[serde(default, deserialize_with = "strict::string")]
    symlink: String,
    #[serde(default)]
    contents: Option<String>,
    #[serde(default, deserialize_with = "strict::string")]
    source: String,
    #[serde(default, deserialize_with = "strict::string")]
    metadata: String,
    #[serde(default, deserialize_with = "strict::req")]
    optional: bool,
    #[serde(default, deserialize_with = "strict::string")]
    mode: String,
    #[serde(default)]
    uid: Option<IdValue>,
    #[serde(default)]
    gid: Option<IdValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVolume {
    #[serde(default, deserialize_with = "strict::string")]
    name: String,
    #[serde(default)]
    image: Option<Spanned<String>>,
    #[serde(default, deserialize_with = "strict::req")]
    readonly: bool,
    #[serde(default)]
    format: Option<VolumeFormat>,
    #[serde(default)]
    platforms: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrust {
    #[serde(default)]
    keys: Option<std::collections::BTreeMap<String, Spanned<String>>>,
    #[serde(default)]
    rules: Option<Vec<Spanned<RawRule>>>,
    #[serde(default)]
    org: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    image: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(rename = "match")]
    pattern: Spanned<String>,
    keys: Vec<Spanned<String>>,
}

/// Parses image YAML text into [`ImageYaml`], every entry located in `origin`.
pub(super) fn parse(text: &str, origin: &str) -> Result<ImageYaml, SpecError> {
    let origin: Arc<str> = Arc::from(origin);
    let raw: RawDoc = yaml::from_str(text, &origin)?;
    let at = |loc: serde_saphyr::Location| SourceLoc::from_saphyr(&origin, loc);
    let text_of = |s: Spanned<String>| ImageText {
        loc: at(s.referenced),
        text: s.value,
    };
    let entries = |list: Option<Vec<Spanned<RawEntry>>>| -> Vec<ImageEntry> {
        list.unwrap_or_default()
            .into_iter()
            .map(|s| {
                let loc = at(s.referenced);
                let raw = s.value;
                let image = text_of(raw.image);
                let name = raw.name;
                let config: ContainerConfig =
                    with_container_config_fields!(take_container_config![raw]);
                ImageEntry {
                    name,
                    image,
                    config,
                    loc,
                }
            })
            .collect()
    };

    let kernel = match raw.kernel {
        None => Kernel::default(),
        Some(k) => {
            let loc = at(k.referenced);
            let k = k.value;
            Kernel {
                image: k.image.filter(|i| !i.value.is_empty()).map(text_of),
                cmdline: k.cmdline,
                binary: k.binary,
                tar: k.tar,
                ucode: k.ucode,
                loc: Some(loc),
            }
        }
    };

    let files = raw
        .files
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            let loc = at(s.referenced);
            let f = s.value;
            FileEntry {
                path: f.path,
                directory: f.directory,
                symlink: f.symlink,
                contents: f.contents,
                source: f.source,
                metadata: f.metadata,
                optional: f.optional,
                mode: f.mode,
                uid: f.uid,
                gid: f.gid,
                loc,
            }
        })
        .collect();

    let volumes = raw
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            let loc = at(s.referenced);
            let v = s.value;
            VolumeEntry {
                name: v.name,
                image: v.image.filter(|i| !i.value.is_empty()).map(text_of),
                readonly: v.readonly,
                format: v.format,
                platforms: v.platforms.unwrap_or_default(),
                loc,
            }
        })
        .collect();

    let name = |s: Spanned<String>| TrustName {
        loc: at(s.referenced),
        value: s.value,
    };
    let trust = match raw.trust {
        None => TrustConfig::default(),
        Some(t) => TrustConfig {
            keys: t
                .keys
                .unwrap_or_default()
                .into_iter()
                .map(|(name, path)| TrustKey {
                    name,
                    loc: at(path.referenced),
                    path: path.value,
                })
                .collect(),
            rules: t
                .rules
                .unwrap_or_default()
                .into_iter()
                .map(|r| TrustRule {
                    loc: at(r.referenced),
                    pattern: r.value.pattern.value,
                    keys: r.value.keys.into_iter().map(name).collect(),
                })
                .collect(),
            org: t.org.unwrap_or_default().into_iter().map(name).collect(),
            image: t.image.unwrap_or_default().into_iter().map(name).collect(),
        },
    };

    Ok(ImageYaml {
        kernel,
        init: raw
            .init
            .unwrap_or_default()
            .into_iter()
            .map(text_of)
            .collect(),
        onboot: entries(raw.onboot),
        onshutdown: entries(raw.onshutdown),
        services: entries(raw.services),
        files,
        volumes,
        trust,
    })
}
