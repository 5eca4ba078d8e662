//! The archive against GNU tar: for a disk whose bytes are all data, padded with a hole,
//! `tar --format=oldgnu -S` writes the same archive byte for byte, the size fields in octal or,
//! past 8 GiB, base-256; GNU tar lists and extracts it.

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use oxkit_testkit::{require_tool_from as tool, run_ok};

use super::*;
use crate::testdisk::{Zeros, disk_with_ends};

const EPOCH: i64 = 1_700_000_000;

/// A raw disk of `len` bytes, all written (random at both ends, zeros between): GNU tar's
/// hole detection sees it all as data.
fn dense_disk(path: &Path, len: u64) -> File {
    disk_with_ends(path, len, Zeros::Written)
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// What GNU tar writes for `dir/disk.raw` with `-S` and the options `gcp` emulates.
fn gnu_tar(dir: &Path) -> Vec<u8> {
    let out = dir.join("gnu.tar");
    run_ok(
        Command::new(tool("tar", "tar"))
            .args([
                "--format=oldgnu",
                "-S",
                "--numeric-owner",
                "--owner=0",
                "--group=0",
                "--mode=0644",
                &format!("--mtime=@{EPOCH}"),
                "-cf",
            ])
            .arg(&out)
            .arg("disk.raw")
            .current_dir(dir),
    );
    std::fs::read(out).unwrap()
}

/// `dir/disk.raw`: `raw` (dense) made `size` bytes long with a hole.
fn as_disk_raw(raw: &Path, dir: &Path, size: u64) {
    std::fs::copy(raw, dir.join("disk.raw")).unwrap();
    File::options()
        .write(true)
        .open(dir.join("disk.raw"))
        .unwrap()
        .set_len(size)
        .unwrap();
}

#[test]
fn the_archive_is_what_gnu_tar_writes_for_the_disk_and_its_hole() {
    let dir = tempfile::tempdir().unwrap();
    let len = 5 << 20;
    let raw_path = dir.path().join("raw.img");
    let raw = dense_disk(&raw_path, len);
    let archive = dir.path().join("disk.img.tar.gz");
    write_gcp(&raw, File::create(&archive).unwrap(), EPOCH).unwrap();
    let ours = gunzip(&archive);
    as_disk_raw(&raw_path, dir.path(), GIB);
    let theirs = gnu_tar(dir.path());
    assert_eq!(ours.len(), theirs.len(), "archive lengths");
    assert!(ours[..512] == theirs[..512], "headers differ");
    assert!(ours == theirs, "archives differ past the header");
    // GNU tar reads it back: disk.raw, of 1 GiB.
    let listing = run_ok(
        Command::new(tool("tar", "tar"))
            .args(["--numeric-owner", "-tvzf"])
            .arg(&archive),
    );
    assert!(
        listing.trim_end().ends_with(" disk.raw") && listing.contains(&format!(" {GIB} ")),
        "{listing}"
    );
    // Past 8 GiB, the real size is base-256, as GNU tar writes it.
    as_disk_raw(&raw_path, dir.path(), 9 * GIB);
    let theirs = gnu_tar(dir.path());
    assert!(
        header(len, 9 * GIB, EPOCH)[..] == theirs[..512],
        "headers differ for 9 GiB"
    );
    assert_eq!(header(len, 9 * GIB, EPOCH)[483] & 0x80, 0x80);
}

#[test]
fn gnu_tar_extracts_the_disk_and_its_padding() {
    let dir = tempfile::tempdir().unwrap();
    let len = 3 << 20;
    let raw = dense_disk(&dir.path().join("raw.img"), len);
    let archive = dir.path().join("disk.img.tar.gz");
    write_gcp(&raw, File::create(&archive).unwrap(), EPOCH).unwrap();
    let into = dir.path().join("x");
    std::fs::create_dir(&into).unwrap();
    run_ok(
        Command::new(tool("tar", "tar"))
            .arg("-xzf")
            .arg(&archive)
            .arg("-C")
            .arg(&into),
    );
    let disk = File::open(into.join("disk.raw")).unwrap();
    assert_eq!(disk.metadata().unwrap().len(), GIB);
    let mut start = vec![0u8; len as usize];
    disk.read_exact_at(&mut start, 0).unwrap();
    assert!(start == std::fs::read(dir.path().join("raw.img")).unwrap());
    let mut after = vec![1u8; 1 << 20];
    disk.read_exact_at(&mut after, GIB - (1 << 20)).unwrap();
    assert!(after.iter().all(|&b| b == 0));
}

#[test]
fn the_same_disk_gives_the_same_bytes_and_partial_sectors_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dense_disk(&dir.path().join("raw.img"), 2 << 20);
    let a = write_gcp(&raw, Vec::new(), 5).unwrap();
    let b = write_gcp(&raw, Vec::new(), 5).unwrap();
    assert!(a == b, "two archives of one disk differ");
    assert_eq!(padded_size(0), GIB);
    assert_eq!(padded_size(GIB), GIB);
    assert_eq!(padded_size(GIB + 1), 2 * GIB);
    // A disk of whole GiB has no hole: a regular file.
    assert_eq!(header(GIB, GIB, 0)[156], b'0');
    let odd = File::create(dir.path().join("odd.img")).unwrap();
    odd.set_len(1000).unwrap();
    let odd = File::open(dir.path().join("odd.img")).unwrap();
    let e = write_gcp(&odd, Vec::new(), 0).unwrap_err();
    assert!(e.to_string().contains("1000 bytes"), "{e}");
}
