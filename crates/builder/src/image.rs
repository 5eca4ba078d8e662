//! Images in and out: resolving a base image (store first, then the [`ImageSource`]) for a
//! platform into its config and layers, and writing a finished stage as an OCI config and
//! manifest. Also the image-config spellings of EXPOSE ports and HEALTHCHECK durations.

use oxkit_spec::{Digest, Platform, Reference};
use oxkit_store::Store;
use oxkit_store::oci::{
    Descriptor, Healthcheck as OciHealthcheck, ImageConfig, ImageManifest, media_type, rfc3339_utc,
};

use crate::ImageSource;
use crate::error::StepError;
use crate::rootfs::LayerRef;

/// A base image for one platform.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedImage {
    pub(crate) manifest: Digest,
    pub(crate) config: ImageConfig,
    pub(crate) layers: Vec<LayerRef>,
}

/// Finds `text` for `platform`: in the store, else through `source` (then in the store again).
pub(crate) fn resolve(
    store: &Store,
    source: Option<&dyn ImageSource>,
    text: &str,
    platform: &Platform,
) -> Result<ResolvedImage, StepError> {
    let reference = Reference::parse(text).map_err(|e| {
        StepError::new(format!(
            "invalid image reference {text:?}: {}; write NAME[:TAG][@sha256:DIGEST]",
            e.reason
        ))
    })?;
    let mut found = store.resolve_platform(&reference, platform);
    if matches!(found, Ok(None))
        && let Some(source) = source
    {
        source.ensure(store, &reference, platform).map_err(|e| {
            StepError::new(format!(
                "image {} is not in the store and cannot be pulled: {e}",
                reference.familiar()
            ))
        })?;
        found = store.resolve_platform(&reference, platform);
    }
    let descriptor = match found {
        Ok(Some(d)) => d,
        Ok(None) => {
            return Err(StepError::new(format!(
                "image {} is not in the store; add it with `oxkit image import ROOTFS {}` or `oxkit cache pull {}` (`oxkit cache ls` lists what is there)",
                reference.familiar(),
                reference.familiar(),
                reference.familiar()
            )));
        }
        Err(e) => {
            return Err(StepError::new(format!(
                "image {}: {e}",
                reference.familiar()
            )));
        }
    };
    let manifest = store.read_manifest(&descriptor.digest)?;
    let config = store.read_config(&manifest.config.digest)?;
    if manifest.layers.len() != config.rootfs.diff_ids.len() {
        return Err(StepError::new(format!(
            "image {} is inconsistent: {} layers but {} diff ids in its config; re-import or re-pull it",
            reference.familiar(),
            manifest.layers.len(),
            config.rootfs.diff_ids.len()
        )));
    }
    let layers = manifest
        .layers
        .iter()
        .zip(&config.rootfs.diff_ids)
        .map(|(d, id)| LayerRef {
            descriptor: oci_layer(d),
            diff_id: id.clone(),
        })
        .collect();
    Ok(ResolvedImage {
        manifest: descriptor.digest,
        config,
        layers,
    })
}

/// A layer descriptor with Docker media types turned into their OCI equivalents (same bytes),
/// so an OCI manifest can list it.
fn oci_layer(d: &Descriptor) -> Descriptor {
    let mut d = d.clone();
    d.media_type = match d.media_type.as_str() {
        media_type::DOCKER_LAYER_GZIP => media_type::OCI_LAYER_GZIP.to_string(),
        media_type::DOCKER_LAYER => media_type::OCI_LAYER.to_string(),
        media_type::DOCKER_LAYER_FOREIGN_GZIP => media_type::OCI_LAYER_NONDIST_GZIP.to_string(),
        other => other.to_string(),
    };
    d.platform = None;
    d
}

/// Writes `config` (with `layers`' diff ids, `platform` and the creation time) and a manifest
/// over `layers`; the manifest's descriptor.
pub(crate) fn commit(
    store: &Store,
    mut config: ImageConfig,
    layers: &[LayerRef],
    platform: &Platform,
    epoch: i64,
) -> Result<(Descriptor, ImageConfig), StepError> {
    config.created = rfc3339_utc(epoch);
    config.set_platform(platform);
    config.rootfs.kind = "layers".to_string();
    config.rootfs.diff_ids = layers.iter().map(|l| l.diff_id.clone()).collect();
    let config_desc = store.put_json(media_type::OCI_CONFIG, &config)?;
    let manifest = ImageManifest::new(
        config_desc,
        layers.iter().map(|l| l.descriptor.clone()).collect(),
    );
    let desc = store.put_json(media_type::OCI_MANIFEST, &manifest)?;
    Ok((desc.with_platform(platform.clone()), config))
}

/// An EXPOSE word as image-config keys: `80` is `80/tcp`; `8000-8002/udp` is three ports.
pub(crate) fn exposed_ports(word: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match word.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (word, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!(
            "invalid protocol {proto:?} in EXPOSE {word:?}; use tcp, udp or sctp"
        ));
    }
    // `ip:host:container` forms are for `docker run -p`, not images: keep the container port.
    let ports = ports.rsplit(':').next().unwrap_or(ports);
    let bad = || format!("invalid port {word:?} in EXPOSE; write e.g. 80, 53/udp or 8000-8010/tcp");
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let p = ports.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if hi < lo {
        return Err(bad());
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// HEALTHCHECK in image-config form (durations in nanoseconds).
pub(crate) fn healthcheck(h: &oxkit_spec::dockerfile::Healthcheck) -> OciHealthcheck {
    use oxkit_spec::dockerfile::Healthcheck as H;
    let ns = |d: std::time::Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    match h {
        H::None => OciHealthcheck {
            test: h.test(),
            ..Default::default()
        },
        H::Check(c) => OciHealthcheck {
            test: h.test(),
            interval: ns(c.interval),
            timeout: ns(c.timeout),
            start_period: ns(c.start_period),
            start_interval: ns(c.start_interval),
            retries: i64::from(c.retries),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(exposed_ports("80").unwrap(), ["80/tcp"]);
        assert_eq!(exposed_ports("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(
            exposed_ports("8000-8002").unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert!(exposed_ports("http").is_err());
        assert!(exposed_ports("80/icmp").is_err());
    }

    #[test]
    fn missing_images_say_how_to_get_them() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let e = resolve(
            &store,
            None,
            "busybox:1",
            &Platform::linux("amd64").unwrap(),
        )
        .unwrap_err();
        assert!(e.0.contains("oxkit image import"), "{}", e.0);
        let e = resolve(&store, None, "Bad Ref", &Platform::linux("amd64").unwrap()).unwrap_err();
        assert!(e.0.contains("invalid image reference"), "{}", e.0);
    }
}
