//! Reachability over the store: garbage collection (`cache clean`), removing images and
//! their now-unused blobs (`cache rm`), and consistency checking (`cache fsck`).
//!
//! Roots are the `index.json` entries and the digests of side-index records. Collection
//! runs only under the exclusive GC lock, which no [`super::Lease`] holder shares, and it
//! refuses to run when a reachable document cannot be parsed (deleting what a broken
//! manifest points at could destroy data that `fsck` would help recover).

use std::collections::{BTreeSet, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use oxkit_spec::{Digest, DigestHasher, Reference};

use super::blobs::BlobInfo;
use super::{Store, lock};
use crate::error::{Error, Result};
use crate::oci::{Descriptor, media_type};

/// What `cache clean` did (or, with `dry_run`, would do).
#[derive(Debug, Default)]
pub struct GcReport {
    pub removed: Vec<BlobInfo>,
    pub freed: u64,
    pub temp_files_removed: usize,
    pub dry_run: bool,
}

/// What `cache rm` did.
#[derive(Debug, Default)]
pub struct RemoveReport {
    /// The names removed, with what they pointed at.
    pub untagged: Vec<(String, Descriptor)>,
    pub removed: Vec<BlobInfo>,
    pub freed: u64,
    /// Blobs were left in place because another process holds a lease; `cache clean`
    /// removes them later.
    pub blobs_kept_busy: bool,
}

/// What `cache fsck` found.
#[derive(Debug, Default)]
pub struct FsckReport {
    /// One line per problem, sorted.
    pub problems: Vec<String>,
    pub blobs_checked: usize,
    pub bytes_checked: u64,
}

/// The result of walking from the roots.
#[derive(Default)]
struct Walk {
    reachable: HashSet<Digest>,
    /// Blobs that are missing or have the wrong size (reachability is still known).
    missing: Vec<String>,
    /// Documents that could not be read or parsed (reachability below them is unknown).
    broken: Vec<String>,
}

impl Store {
    /// (label, descriptor) for every root: `index.json` entries and side-index digests.
    fn roots(&self, walk: &mut Walk) -> Result<Vec<(String, Descriptor)>> {
        let mut roots = Vec::new();
        for (i, t) in self.list()?.into_iter().enumerate() {
            let label = if t.name.is_empty() {
                format!("index.json entry {i}")
            } else {
                t.name
            };
            roots.push((label, t.descriptor));
        }
        for super::side::SideRecord { ns, key, digests } in self.side_entries()? {
            match digests {
                Ok(digests) => {
                    for d in digests {
                        // Side records do not say what their blobs are: treat them as
                        // opaque unless they turn out to be manifests or indexes.
                        let size = self.blob_size(&d)?.unwrap_or(0);
                        roots.push((
                            format!("cache record {ns}/{key}"),
                            Descriptor::new("application/octet-stream+json", d, size),
                        ));
                    }
                }
                Err(e) => walk.broken.push(format!("cache record {ns}/{key}: {e}")),
            }
        }
        Ok(roots)
    }

    fn walk(&self) -> Result<Walk> {
        let mut walk = Walk::default();
        for (label, root) in self.roots(&mut walk)? {
            let mut stack = vec![(root, false)];
            while let Some((d, optional)) = stack.pop() {
                if !walk.reachable.insert(d.digest.clone()) {
                    continue;
                }
                let size = self.blob_size(&d.digest)?;
                let Some(size) = size else {
                    if !optional && !media_type::is_non_distributable(&d.media_type) {
                        walk.missing.push(format!(
                            "{label}: missing blob {} ({})",
                            d.digest, d.media_type
                        ));
                    }
                    continue;
                };
                if size != d.size && d.media_type != "application/octet-stream+json" {
                    walk.missing.push(format!(
                        "{label}: blob {} is {size} bytes but is referenced as {} bytes",
                        d.digest, d.size
                    ));
                }
                match self.children(&d) {
                    Ok(children) => stack.extend(children),
                    Err(e) => walk.broken.push(format!("{label}: {e}")),
                }
            }
        }
        Ok(walk)
    }

    /// Every blob file under `blobs/` as (digest or the stray path, size).
    fn disk_blobs(&self) -> Result<Vec<(std::result::Result<Digest, PathBuf>, u64)>> {
        let mut out = Vec::new();
        let blobs = self.root.join("blobs");
        for alg in std::fs::read_dir(&blobs).map_err(Error::io("list", &blobs))? {
            let alg = alg.map_err(Error::io("list", &blobs))?;
            let alg_path = alg.path();
            if !alg_path.is_dir() {
                out.push((Err(alg_path), 0));
                continue;
            }
            let alg_name = alg.file_name().to_string_lossy().into_owned();
            for blob in std::fs::read_dir(&alg_path).map_err(Error::io("list", &alg_path))? {
                let blob = blob.map_err(Error::io("list", &alg_path))?;
                let path = blob.path();
                let meta = blob.metadata().map_err(Error::io("stat", &path))?;
                let name = blob.file_name().to_string_lossy().into_owned();
                let digest = format!("{alg_name}:{name}").parse::<Digest>();
                match digest {
                    Ok(d) if meta.is_file() => out.push((Ok(d), meta.len())),
                    _ => out.push((Err(path), meta.len())),
                }
            }
        }
        out.sort_by(|a, b| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)));
        Ok(out)
    }

    fn remove_blob_file(&self, digest: &Digest) -> Result<()> {
        let path = self.blob_path(digest);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &path)(e)),
        }
    }

    fn refuse_if_broken(&self, walk: &Walk) -> Result<()> {
        if let Some(first) = walk.broken.first() {
            return Err(Error::Invalid(format!(
                "not collecting garbage in {}: {first}; run `oxkit cache fsck` and remove broken images with `oxkit cache rm`",
                self.root.display()
            )));
        }
        Ok(())
    }

    /// Removes every blob not reachable from a root, and leftover temporary files. Refuses
    /// (with [`Error::Busy`]) while another process holds a lease.
    pub fn gc(&self, dry_run: bool) -> Result<GcReport> {
        let _gc = lock::try_lock_exclusive(&self.gc_lock_path())?.ok_or_else(|| Error::Busy {
            store: self.root.clone(),
            what: "a build, pull or import holds it",
        })?;
        let walk = self.walk()?;
        self.refuse_if_broken(&walk)?;
        let mut report = GcReport {
            dry_run,
            ..Default::default()
        };
        for (blob, size) in self.disk_blobs()? {
            let Ok(digest) = blob else { continue };
            if walk.reachable.contains(&digest) {
                continue;
            }
            if !dry_run {
                self.remove_blob_file(&digest)?;
            }
            report.freed += size;
            report.removed.push(BlobInfo { digest, size });
        }
        // Nobody holds a lease, so no writer owns anything in tmp/.
        let tmp = self.tmp_dir();
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for e in entries.flatten() {
                report.temp_files_removed += 1;
                if !dry_run {
                    let p = e.path();
                    let r = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                    r.map_err(Error::io("remove", &p))?;
                }
            }
        }
        Ok(report)
    }

    /// Removes the names `refs` (every one must exist, or nothing is removed), then the
    /// blobs only they used. When another process holds a lease the blobs are left for
    /// `cache clean`.
    pub fn remove_images(&self, refs: &[Reference]) -> Result<RemoveReport> {
        for r in refs {
            if self.find_tagged(r)?.is_none() {
                return Err(Error::RefNotFound {
                    reference: super::refs::ref_key(r),
                    store: self.root.clone(),
                });
            }
        }
        let mut report = RemoveReport::default();
        let mut candidates = Vec::new();
        for r in refs {
            if let Some(d) = self.untag(r)? {
                // Collect what the image used, as far as it is readable.
                match self.image_blobs(&d) {
                    Ok(blobs) => candidates.extend(blobs.into_iter().map(|b| b.digest)),
                    Err(_) => candidates.push(d.digest.clone()),
                }
                report.untagged.push((super::refs::ref_key(r), d));
            }
        }
        let Some(_gc) = lock::try_lock_exclusive(&self.gc_lock_path())? else {
            report.blobs_kept_busy = true;
            return Ok(report);
        };
        let walk = self.walk()?;
        if !walk.broken.is_empty() {
            // Unsure what is still used: keep every blob.
            return Ok(report);
        }
        let unique: BTreeSet<Digest> = candidates.into_iter().collect();
        for digest in unique {
            if walk.reachable.contains(&digest) {
                continue;
            }
            if let Some(size) = self.blob_size(&digest)? {
                self.remove_blob_file(&digest)?;
                report.freed += size;
                report.removed.push(BlobInfo { digest, size });
            }
        }
        Ok(report)
    }

    /// Re-hashes every blob and checks that every root resolves with all its children
    /// present. Problems are returned, not raised: the caller decides the exit code.
    pub fn fsck(&self) -> Result<FsckReport> {
        let mut report = FsckReport::default();
        let mut problems = Vec::new();
        let disk = self.disk_blobs()?;
        let mut to_hash = Vec::new();
        for (blob, size) in disk {
            match blob {
                Ok(d) => to_hash.push((d, size)),
                Err(path) => problems.push(format!(
                    "{}: not a blob (blob files must be named by their hex digest)",
                    path.display()
                )),
            }
        }
        report.blobs_checked = to_hash.len();
        report.bytes_checked = to_hash.iter().map(|(_, s)| s).sum();
        problems.extend(self.hash_all(&to_hash));
        let walk = self.walk()?;
        problems.extend(walk.missing);
        problems.extend(walk.broken);
        problems.sort();
        problems.dedup();
        report.problems = problems;
        Ok(report)
    }

    /// Hashes blobs on a few threads; returns one line per corrupt or unreadable blob.
    fn hash_all(&self, blobs: &[(Digest, u64)]) -> Vec<String> {
        let next = AtomicUsize::new(0);
        let problems = Mutex::new(Vec::new());
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    let mut buf = vec![0u8; 1 << 20];
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((digest, _)) = blobs.get(i) else {
                            break;
                        };
                        let path = self.blob_path(digest);
                        if let Some(p) = check_blob(&path, digest, &mut buf)
                            && let Ok(mut v) = problems.lock()
                        {
                            v.push(p);
                        }
                    }
                });
            }
        });
        problems.into_inner().unwrap_or_default()
    }
}

fn check_blob(path: &Path, digest: &Digest, buf: &mut [u8]) -> Option<String> {
    let mut hasher = DigestHasher::for_digest(digest);
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) => {
            return Some(format!(
                "blob {digest}: cannot open {}: {e}",
                path.display()
            ));
        }
    };
    loop {
        match file.read(buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Some(format!(
                    "blob {digest}: cannot read {}: {e}",
                    path.display()
                ));
            }
        }
    }
    let actual = hasher.finish();
    (&actual != digest).then(|| format!(
        "blob {digest} is corrupt: its content hashes to {actual}; remove the images that use it with `oxkit cache rm` and fetch or build them again"
    ))
}
