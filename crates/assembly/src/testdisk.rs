//! Disk image files for the disk format tests (`vhd`, `gcp`): random bytes at both ends of
//! `len` bytes, zeros between, which is where a format's mistakes with offsets show.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use oxkit_testkit::Rng;

/// Whether the zeros between the ends are written (a file system hole otherwise).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Zeros {
    Hole,
    Written,
}

/// A disk image of `len` bytes (at least 512) at `path`, open for reading and writing; the
/// same `len` gives the same bytes.
pub(crate) fn disk_with_ends(path: &Path, len: u64, zeros: Zeros) -> File {
    let f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    match zeros {
        Zeros::Hole => f.set_len(len).unwrap(),
        Zeros::Written => f.write_all_at(&vec![0u8; len as usize], 0).unwrap(),
    }
    let mut rng = Rng::new(len);
    f.write_all_at(&rng.bytes(70_000.min(len as usize)), 0)
        .unwrap();
    f.write_all_at(&rng.bytes(512), len - 512).unwrap();
    f
}
