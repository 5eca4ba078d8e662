//! The local store: an OCI image layout on disk (`oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`) that skopeo and umoci can read and write too, plus oxkit's own
//! area `oxkit/` (locks, temporary files, the side index for caches).
//!
//! Invariants kept here: a blob enters `blobs/` only after its digest was checked (written to
//! a temporary file in `oxkit/tmp`, fsynced, renamed); `index.json` changes are
//! read-modify-write cycles under an exclusive `flock`, written to a temporary file and
//! renamed. This module must not talk to the network.

mod blobs;
mod gc;
mod images;
mod lock;
pub(crate) mod refs;
mod side;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

pub(crate) use blobs::StagedBlob;
pub use blobs::{BlobInfo, BlobReader, BlobWriter};
pub use gc::{FsckReport, GcReport, RemoveReport};
pub use images::ImageSummary;
pub use lock::Lease;
pub use refs::TaggedImage;
pub use side::CacheEntry;

use crate::error::{Error, Result};

/// The `oci-layout` file's content.
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// Entries oxkit itself creates while initialising a layout; a directory holding only these
/// is a layout whose initialisation was interrupted or is in progress.
const OWN_ENTRIES: &[&str] = &["oxkit", "blobs", "index.json"];

/// Whether a directory without `oci-layout` (when it was looked for) is an empty one or a
/// layout some oxkit process is still initialising: only our own entries, our marker among
/// them. `oci-layout` itself may be listed: another process finished in between.
fn layout_in_progress(entries: &[String]) -> bool {
    entries
        .iter()
        .all(|e| OWN_ENTRIES.contains(&e.as_str()) || e == "oci-layout")
        && (entries.is_empty() || entries.iter().any(|e| e == "oxkit"))
}

/// A handle on an OCI image layout. Cheap to clone; holds no open files.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens the layout at `dir`, creating it when `dir` is missing or empty. A directory
    /// that exists, is not empty and is not an OCI layout is refused.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let root = dir.as_ref().to_path_buf();
        match fs::metadata(&root) {
            Ok(m) if !m.is_dir() => return Err(Error::NotALayout { path: root }),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(&root).map_err(Error::io("create store directory", &root))?;
            }
            Err(e) => return Err(Error::io("open store directory", &root)(e)),
        }
        let store = Self { root };
        let layout_file = store.root.join("oci-layout");
        if layout_file.exists() {
            check_layout_version(&layout_file)?;
            store.ensure_dirs()?;
            return Ok(store);
        }
        let entries: Vec<String> = fs::read_dir(&store.root)
            .map_err(Error::io("list", &store.root))?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<std::io::Result<_>>()
            .map_err(Error::io("list", &store.root))?;
        if !layout_in_progress(&entries) {
            return Err(Error::NotALayout { path: store.root });
        }
        store.ensure_dirs()?;
        // Another process may be initialising the same directory; the index lock makes the
        // two agree, and `oci-layout` is written last so it marks a complete layout.
        let _guard = lock::lock(&store.index_lock_path(), false)?;
        if !store.index_path().exists() {
            let empty = crate::oci::to_canonical_json(&crate::oci::ImageIndex::new(Vec::new()))?;
            store.write_atomic(&store.index_path(), &empty)?;
        }
        if layout_file.exists() {
            check_layout_version(&layout_file)?;
        } else {
            store.write_atomic(&layout_file, OCI_LAYOUT)?;
        }
        Ok(store)
    }

    /// The layout's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with `digest` lives (whether or not it is present).
    pub fn blob_path(&self, digest: &oxkit_spec::Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm())
            .join(digest.hex())
    }

    /// Protection from garbage collection for as long as the lease lives (see [`Lease`]).
    pub fn lease(&self) -> Result<Lease> {
        Ok(Lease::new(lock::lock(&self.gc_lock_path(), true)?))
    }

    fn ensure_dirs(&self) -> Result<()> {
        // `oxkit/` first: another process opening a store we are still initialising must see
        // our marker before anything else, or it would take the directory for a foreign one.
        for dir in [self.tmp_dir(), self.side_dir(), self.blobs_dir()] {
            fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
        }
        Ok(())
    }

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    pub(crate) fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("oxkit").join("tmp")
    }

    pub(crate) fn side_dir(&self) -> PathBuf {
        self.root.join("oxkit").join("cache")
    }

    fn index_lock_path(&self) -> PathBuf {
        self.root.join("oxkit").join("index.lock")
    }

    fn gc_lock_path(&self) -> PathBuf {
        self.root.join("oxkit").join("gc.lock")
    }

    /// A temporary file inside the store (same file system as the blobs, so renames are
    /// atomic); it is removed when dropped unless persisted.
    pub(crate) fn temp_file(&self, prefix: &str) -> Result<tempfile::NamedTempFile> {
        let dir = self.tmp_dir();
        tempfile::Builder::new()
            .prefix(prefix)
            .tempfile_in(&dir)
            .or_else(|e| {
                // `oxkit/tmp` may have been removed by hand; recreate it once.
                if e.kind() == std::io::ErrorKind::NotFound {
                    fs::create_dir_all(&dir).map_err(Error::io("create directory", &dir))?;
                    tempfile::Builder::new()
                        .prefix(prefix)
                        .tempfile_in(&dir)
                        .map_err(Error::io("create temporary file in", &dir))
                } else {
                    Err(Error::io("create temporary file in", &dir)(e))
                }
            })
    }

    /// Writes `bytes` to `dest` so readers see either the old or the new content: a
    /// temporary file in the store, fsync, rename, fsync of the directory.
    pub(crate) fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> Result<()> {
        // GC empties tmp/ when nobody holds a lease: hold one while our file is there.
        let _lease = self.lease()?;
        let mut tmp = self.temp_file("write-")?;
        tmp.write_all(bytes)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(Error::io("write", tmp.path()))?;
        tmp.persist(dest)
            .map_err(|e| Error::io("rename into place", dest)(e.error))?;
        if let Some(parent) = dest.parent() {
            sync_dir(parent)?;
        }
        Ok(())
    }
}

/// Makes renames inside `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("sync directory", dir))
}

fn check_layout_version(path: &Path) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Layout {
        #[serde(rename = "imageLayoutVersion")]
        version: String,
    }
    let bytes = fs::read(path).map_err(Error::io("read", path))?;
    let layout: Layout = crate::oci::from_json(&bytes, path.display().to_string())?;
    if layout.version.split('.').next() != Some("1") {
        return Err(Error::LayoutVersion {
            path: path.to_path_buf(),
            version: layout.version,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
