//! The step cache: keys and records in the store's side index (namespace [`NAMESPACE`]).
//!
//! A key is the SHA-256 of a canonical JSON document holding the parent state's key, the
//! instruction after expansion and the step's inputs; the state after the step is named by
//! that key, so keys chain. A record names the step's layer blob (a GC root: it survives
//! `cache clean`, and a record whose blob is gone reads as a miss) or says the step changed
//! nothing. This module computes and stores; it does not decide when to use the cache.

use oxkit_spec::Digest;
use oxkit_store::oci::Descriptor;
use oxkit_store::{CacheEntry, Store};
use serde::{Deserialize, Serialize};

use crate::error::StepError;
use crate::rootfs::LayerRef;

/// Side-index namespace of step records.
pub(crate) const NAMESPACE: &str = "build-step";
/// Bumped when what a key covers or how a step executes changes, so old records stop matching.
const KEY_VERSION: u32 = 1;

/// The key of a step: `parent` is the key of the state it starts from, `material` everything
/// else it depends on.
pub(crate) fn step_key(parent: &str, material: &serde_json::Value) -> String {
    let doc = serde_json::json!({
        "v": KEY_VERSION,
        "parent": parent,
        "step": material,
    });
    // serde_json's Value keeps object keys sorted (no preserve_order feature): canonical.
    let bytes = serde_json::to_vec(&doc).unwrap_or_default();
    Digest::sha256(&bytes).hex().to_string()
}

/// The key of a state that starts from an image manifest (or from nothing).
pub(crate) fn base_key(manifest: Option<&Digest>) -> String {
    match manifest {
        Some(d) => step_key("", &serde_json::json!({ "image": d.as_str() })),
        None => step_key("", &serde_json::json!("scratch")),
    }
}

#[derive(Serialize, Deserialize)]
struct Record {
    layer: Option<Descriptor>,
    diff_id: Option<Digest>,
}

/// A cache hit: the layer the step made, if any.
pub(crate) struct Hit {
    pub(crate) layer: Option<LayerRef>,
}

/// Looks `key` up.
pub(crate) fn get(store: &Store, key: &str) -> Result<Option<Hit>, StepError> {
    let Some(entry) = store.cache_get(NAMESPACE, key)? else {
        return Ok(None);
    };
    let Ok(rec) = serde_json::from_value::<Record>(entry.data) else {
        return Ok(None);
    };
    let layer = match (rec.layer, rec.diff_id) {
        (Some(descriptor), Some(diff_id)) => Some(LayerRef {
            descriptor,
            diff_id,
        }),
        (None, None) => None,
        _ => return Ok(None),
    };
    Ok(Some(Hit { layer }))
}

/// Records what the step with `key` produced.
pub(crate) fn put(store: &Store, key: &str, layer: Option<&LayerRef>) -> Result<(), StepError> {
    let rec = Record {
        layer: layer.map(|l| l.descriptor.clone()),
        diff_id: layer.map(|l| l.diff_id.clone()),
    };
    let entry = CacheEntry {
        digests: layer
            .map(|l| l.descriptor.digest.clone())
            .into_iter()
            .collect(),
        data: serde_json::to_value(&rec).unwrap_or_default(),
    };
    store.cache_put(NAMESPACE, key, &entry)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_chain_and_depend_on_everything() {
        let a = step_key("p", &serde_json::json!({"run": "x", "env": ["A=1"]}));
        assert_eq!(
            a,
            step_key("p", &serde_json::json!({"env": ["A=1"], "run": "x"}))
        );
        assert_ne!(
            a,
            step_key("q", &serde_json::json!({"run": "x", "env": ["A=1"]}))
        );
        assert_ne!(
            a,
            step_key("p", &serde_json::json!({"run": "x", "env": ["A=2"]}))
        );
        assert_eq!(a.len(), 64);
        assert_ne!(base_key(None), base_key(Some(&Digest::sha256(b"m"))));
    }

    #[test]
    fn records_round_trip_and_keep_blobs() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let blob = store.write_blob(b"layer").unwrap();
        let layer = LayerRef {
            descriptor: blob.descriptor(oxkit_store::oci::media_type::OCI_LAYER_GZIP),
            diff_id: Digest::sha256(b"tar"),
        };
        put(&store, "k1", Some(&layer)).unwrap();
        put(&store, "k2", None).unwrap();
        assert_eq!(
            get(&store, "k1").unwrap().unwrap().layer,
            Some(layer.clone())
        );
        assert!(get(&store, "k2").unwrap().unwrap().layer.is_none());
        assert!(get(&store, "k3").unwrap().is_none());
        // The record is a GC root.
        store.gc(false).unwrap();
        assert!(store.has_blob(&layer.descriptor.digest));
    }
}
