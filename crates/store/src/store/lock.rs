//! Advisory `flock` locks on files under `STORE/oxkit/`: the index lock serialises
//! `index.json` read-modify-write cycles between processes, and the GC lock keeps garbage
//! collection away from writers that hold a shared [`Lease`].
//!
//! Locks are released when the file is closed, so a crashed process never leaves one behind.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use rustix::fs::{FlockOperation, flock};

use crate::error::{Error, Result};

/// A held lock; dropping it unlocks.
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(Error::io("open lock file", path))
}

/// Takes the lock on `path`, waiting for other holders.
pub(crate) fn lock(path: &Path, shared: bool) -> Result<FileLock> {
    let file = open_lock_file(path)?;
    let op = if shared {
        FlockOperation::LockShared
    } else {
        FlockOperation::LockExclusive
    };
    loop {
        match flock(&file, op) {
            Ok(()) => return Ok(FileLock { _file: file }),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Error::io("lock", path)(io::Error::from(e))),
        }
    }
}

/// Takes the exclusive lock on `path` if nobody holds it; `None` when it is busy.
pub(crate) fn try_lock_exclusive(path: &Path) -> Result<Option<FileLock>> {
    let file = open_lock_file(path)?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(FileLock { _file: file })),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(Error::io("lock", path)(io::Error::from(e))),
    }
}

/// Protection from garbage collection: while any `Lease` is alive, `cache clean` and the
/// blob removal of `cache rm` refuse to run (in this and every other process). Hold one
/// across "write blobs, then tag them" sequences so the blobs cannot vanish in between.
#[derive(Debug)]
pub struct Lease {
    _lock: FileLock,
}

impl Lease {
    pub(crate) fn new(lock: FileLock) -> Self {
        Self { _lock: lock }
    }
}
