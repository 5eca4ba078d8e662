//! A stage's root filesystem on disk, materialised lazily: a scratch directory that holds the
//! first `applied` layers of the stage, the snapshot taken of it (the "before" of the next
//! step's diff) and, without root, the owners the layers say files have (the disk cannot).
//!
//! Layers are applied with `oxkit_store::unpack` (safe path resolution, whiteouts). Nothing
//! here decides what a step does.

use std::path::{Path, PathBuf};

use oxkit_store::Store;
use oxkit_store::layer::EntryKind;
use oxkit_store::oci::Descriptor;
use oxkit_store::unpack::{UnpackOptions, apply_layer_blob, visit_layer_blob};

use crate::diff::{DiskOwners, Owners, RecordedOwners, Snapshot};
use crate::error::StepError;
use crate::fsutil::{self, ScratchDir};

/// A layer of a stage: its blob and its uncompressed digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LayerRef {
    pub(crate) descriptor: Descriptor,
    pub(crate) diff_id: oxkit_spec::Digest,
}

/// A materialised root filesystem.
#[derive(Debug)]
pub(crate) struct Rootfs {
    dir: ScratchDir,
    /// How many of the stage's layers are applied.
    pub(crate) applied: usize,
    snapshot: Option<Snapshot>,
    /// Without root: owners the layers and COPY --chown gave, by relative path.
    recorded: Option<RecordedOwners>,
}

impl Rootfs {
    /// An empty root filesystem under `work`.
    pub(crate) fn new(work: &Path) -> Result<Self, StepError> {
        let dir = ScratchDir::new_in(work, "rootfs-").map_err(|e| {
            StepError::new(format!(
                "cannot create a root filesystem under {}: {e}",
                work.display()
            ))
        })?;
        Ok(Self {
            dir,
            applied: 0,
            snapshot: None,
            recorded: (!fsutil::is_root()).then(RecordedOwners::default),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Applies `layers[self.applied..]`.
    pub(crate) fn catch_up(&mut self, store: &Store, layers: &[LayerRef]) -> Result<(), StepError> {
        if self.applied >= layers.len() {
            return Ok(());
        }
        let opts = UnpackOptions::default();
        for layer in &layers[self.applied..] {
            apply_layer_blob(store, &layer.descriptor, self.dir.path(), &opts)?;
            if let Some(rec) = &mut self.recorded {
                record_owners(store, &layer.descriptor, rec)?;
            }
        }
        self.applied = layers.len();
        self.snapshot = None;
        Ok(())
    }

    /// The snapshot of the tree as it is (taken now unless still valid).
    pub(crate) fn snapshot(&mut self) -> Result<&Snapshot, StepError> {
        if self.snapshot.is_none() {
            self.snapshot = Some(Snapshot::take(self.dir.path())?);
        }
        self.snapshot
            .as_ref()
            .ok_or_else(|| StepError::new("no snapshot"))
    }

    /// Replaces the snapshot after a step (the diff's "after").
    pub(crate) fn set_snapshot(&mut self, snap: Snapshot) {
        self.snapshot = Some(snap);
    }

    /// Takes the snapshot out (taking it now if needed), for a diff that replaces it.
    pub(crate) fn take_snapshot(&mut self) -> Result<Snapshot, StepError> {
        match self.snapshot.take() {
            Some(s) => Ok(s),
            None => Snapshot::take(self.dir.path()),
        }
    }

    /// Who owns what in this tree's layers.
    pub(crate) fn owners(&self) -> &dyn Owners {
        match &self.recorded {
            Some(r) => r,
            None => &DiskOwners,
        }
    }

    /// Notes owners the disk could not take (only kept without root).
    pub(crate) fn record(&mut self, owners: impl IntoIterator<Item = (PathBuf, (u32, u32))>) {
        if let Some(rec) = &mut self.recorded {
            for (p, o) in owners {
                if o == (0, 0) {
                    rec.owners.remove(&p);
                } else {
                    rec.owners.insert(p, o);
                }
            }
        }
    }
}

/// Reads the owners a layer gives (only needed without root, where unpacking cannot set them).
fn record_owners(
    store: &Store,
    layer: &Descriptor,
    rec: &mut RecordedOwners,
) -> Result<(), StepError> {
    visit_layer_blob(store, layer, |entry, _data| {
        match entry.kind {
            EntryKind::Whiteout => {
                rec.owners.retain(|p, _| !p.starts_with(&entry.path));
            }
            EntryKind::Opaque => {
                rec.owners
                    .retain(|p, _| !p.starts_with(&entry.path) || *p == entry.path);
            }
            _ => {
                let (u, g) = (entry.meta.uid, entry.meta.gid);
                if u == 0 && g == 0 {
                    rec.owners.remove(&entry.path);
                } else {
                    rec.owners.insert(
                        entry.path.clone(),
                        (
                            u32::try_from(u).unwrap_or(u32::MAX),
                            u32::try_from(g).unwrap_or(u32::MAX),
                        ),
                    );
                }
            }
        }
        Ok(())
    })?;
    Ok(())
}
