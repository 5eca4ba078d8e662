//! The side index: small keyed JSON records under `STORE/oxkit/cache/NAMESPACE/KEY.json`
//! (the build engine's step cache). Each record lists blob digests, which are garbage
//! collection roots, and free-form data.
//!
//! Records are written atomically (temporary file and rename); no lock is needed because a
//! record is replaced whole and last writer wins. A record whose blobs are gone reads as a
//! miss. This module must not interpret `data`.

use std::path::PathBuf;

use oxkit_spec::Digest;
use serde::{Deserialize, Serialize};

use super::Store;
use crate::error::{Error, Result};

/// A side-index record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// Blobs this record keeps alive.
    pub digests: Vec<Digest>,
    /// Whatever the owner of the namespace needs.
    #[serde(default)]
    pub data: serde_json::Value,
}

/// A side-index record as garbage collection sees it: its blobs, or why it is unreadable.
pub(crate) struct SideRecord {
    pub(crate) ns: String,
    pub(crate) key: String,
    pub(crate) digests: Result<Vec<Digest>>,
}

fn check_name(what: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadCacheName {
            what,
            name: name.to_string(),
        })
    }
}

impl Store {
    fn side_path(&self, ns: &str, key: &str) -> Result<PathBuf> {
        check_name("namespace", ns)?;
        check_name("key", key)?;
        Ok(self.side_dir().join(ns).join(format!("{key}.json")))
    }

    /// The record under `ns`/`key`, or `None` when there is none, it cannot be parsed, or
    /// one of its blobs is missing (a cache must never hand out something it cannot serve).
    pub fn cache_get(&self, ns: &str, key: &str) -> Result<Option<CacheEntry>> {
        let path = self.side_path(ns, key)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", &path)(e)),
        };
        let entry: CacheEntry = match serde_json::from_slice(&bytes) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("ignoring unreadable cache record {}: {e}", path.display());
                return Ok(None);
            }
        };
        if let Some(missing) = entry.digests.iter().find(|d| !self.has_blob(d)) {
            tracing::debug!(
                "cache record {} lost blob {missing}; treating as a miss",
                path.display()
            );
            return Ok(None);
        }
        Ok(Some(entry))
    }

    /// Stores a record, replacing any previous one. Every digest must be in the store.
    pub fn cache_put(&self, ns: &str, key: &str, entry: &CacheEntry) -> Result<()> {
        let path = self.side_path(ns, key)?;
        let _lease = self.lease()?;
        if let Some(missing) = entry.digests.iter().find(|d| !self.has_blob(d)) {
            return Err(Error::BlobNotFound {
                digest: (*missing).clone(),
                store: self.root.clone(),
            });
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
        }
        let bytes = serde_json::to_vec(entry).map_err(Error::json("a cache record"))?;
        super::sync_dir(&self.blobs_dir())?;
        self.write_atomic(&path, &bytes)
    }

    /// Removes a record; whether there was one.
    pub fn cache_remove(&self, ns: &str, key: &str) -> Result<bool> {
        let path = self.side_path(ns, key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("remove", &path)(e)),
        }
    }

    /// Every record, for garbage collection and fsck.
    pub(crate) fn side_entries(&self) -> Result<Vec<SideRecord>> {
        let mut out = Vec::new();
        let root = self.side_dir();
        let namespaces = match std::fs::read_dir(&root) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io("list", &root)(e)),
        };
        for ns in namespaces {
            let ns = ns.map_err(Error::io("list", &root))?;
            if !ns
                .file_type()
                .map_err(Error::io("stat", ns.path()))?
                .is_dir()
            {
                continue;
            }
            let ns_path = ns.path();
            for rec in std::fs::read_dir(&ns_path).map_err(Error::io("list", &ns_path))? {
                let rec = rec.map_err(Error::io("list", &ns_path))?;
                let name = rec.file_name().to_string_lossy().into_owned();
                let Some(key) = name.strip_suffix(".json") else {
                    continue;
                };
                let path = rec.path();
                let digests = std::fs::read(&path)
                    .map_err(Error::io("read", &path))
                    .and_then(|b| {
                        crate::oci::from_json::<CacheEntry>(&b, path.display().to_string())
                    })
                    .map(|e| e.digests);
                out.push(SideRecord {
                    ns: ns.file_name().to_string_lossy().into_owned(),
                    key: key.to_string(),
                    digests,
                });
            }
        }
        out.sort_by(|a, b| (&a.ns, &a.key).cmp(&(&b.ns, &b.key)));
        Ok(out)
    }
}
