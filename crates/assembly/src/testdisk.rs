//! For the disk format tests (`qcow2`, `vhd`, `gcp`): disk image files with random bytes at
//! both ends and zeros between, which is where a format's mistakes with offsets show, and
//! QEMU's `qemu-img` to read images back.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use oxkit_testkit::{Rng, require_tool_from, run_ok};

pub(crate) fn qemu_img() -> PathBuf {
    require_tool_from("qemu-img", "qemu-utils")
}

/// `qemu-img compare` finds `image` (in QEMU's `format`) identical to the raw disk `raw`,
/// which checks every guest byte, holes included.
pub(crate) fn assert_qemu_reads_raw(raw: &Path, format: &str, image: &Path) {
    let same = run_ok(
        Command::new(qemu_img())
            .args(["compare", "-f", "raw", "-F", format])
            .arg(raw)
            .arg(image),
    );
    assert!(
        same.contains("Images are identical"),
        "qemu-img compare:\n{same}"
    );
}

/// Where `qemu-img map` says `image` (in `format`) holds data: (start, length) pairs.
pub(crate) fn qemu_data_ranges(image: &Path, format: &str) -> Vec<(u64, u64)> {
    let map: serde_json::Value = serde_json::from_str(&run_ok(
        Command::new(qemu_img())
            .args(["map", "--output=json", "-f", format])
            .arg(image),
    ))
    .unwrap();
    map.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"] == true)
        .map(|e| (e["start"].as_u64().unwrap(), e["length"].as_u64().unwrap()))
        .collect()
}

/// `qemu-img convert -f raw -O format -o options RAW OUT`.
pub(crate) fn qemu_convert(raw: &Path, format: &str, options: &str, out: &Path) {
    run_ok(
        Command::new(qemu_img())
            .args(["convert", "-f", "raw", "-O", format, "-o", options])
            .arg(raw)
            .arg(out),
    );
}

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
