//! The VHD footer against QEMU's: `qemu-img convert -O vpc -o subformat=fixed,force_size`
//! writes the same sizes, geometry and disk type for the same disk, and QEMU reads oxkit's
//! VHD back as the raw disk, byte for byte.

use std::path::Path;
use std::process::Command;

use oxkit_testkit::run_ok;

use super::*;
use crate::testdisk::{
    Zeros, assert_qemu_reads_raw, disk_with_ends, qemu_convert, qemu_data_ranges, qemu_img,
};

/// A raw disk of `len` bytes, sparse, with random bytes at its start and end.
fn raw_disk(path: &Path, len: u64) -> File {
    disk_with_ends(path, len, Zeros::Hole)
}

fn write_vhd(raw: &File, path: &Path, epoch: i64) {
    let mut out = std::io::BufWriter::new(File::create(path).unwrap());
    write_fixed_vhd(raw, &mut out, epoch, [7; 16]).unwrap();
    out.flush().unwrap();
}

fn last_512(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    bytes[bytes.len() - 512..].to_vec()
}

/// `qemu-img convert -o subformat=fixed,force_size` (what Azure's documentation and LinuxKit's
/// `vhd` use) writes the same sizes, geometry and disk type for the same disk.
#[test]
fn sizes_geometry_and_type_are_what_qemu_writes() {
    let dir = tempfile::tempdir().unwrap();
    for mib in [1u64, 35, 300] {
        let len = mib << 20;
        let raw_path = dir.path().join("disk.raw");
        drop(raw_disk(&raw_path, len));
        let theirs = dir.path().join("qemu.vhd");
        qemu_convert(&raw_path, "vpc", "subformat=fixed,force_size", &theirs);
        let theirs = last_512(&theirs);
        let ours = footer(len, 0, [7; 16]);
        assert_eq!(&ours[..8], &theirs[..8], "cookie");
        assert_eq!(ours[8..24], theirs[8..24], "features, version, data offset");
        assert_eq!(
            ours[40..64],
            theirs[40..64],
            "{mib} MiB: sizes, geometry, type"
        );
        assert_eq!(ours[84], theirs[84], "saved state");
        // The checksum: one's complement of the byte sum without it.
        let mut zeroed = ours;
        zeroed[64..68].fill(0);
        let sum = zeroed
            .iter()
            .fold(0u32, |s, &b| s.wrapping_add(u32::from(b)));
        assert_eq!(u32::from_be_bytes(ours[64..68].try_into().unwrap()), !sum);
        std::fs::remove_file(&raw_path).unwrap();
        std::fs::remove_file(dir.path().join("qemu.vhd")).unwrap();
    }
}

#[test]
fn qemu_reads_the_vhd_back_as_the_raw_disk() {
    let dir = tempfile::tempdir().unwrap();
    let raw_path = dir.path().join("disk.raw");
    let len = 40 << 20;
    let raw = raw_disk(&raw_path, len);
    let vhd = dir.path().join("disk.vhd");
    write_vhd(&raw, &vhd, 1_700_000_000);
    assert_eq!(std::fs::metadata(&vhd).unwrap().len(), len + 512);
    let info: serde_json::Value = serde_json::from_str(&run_ok(
        Command::new(qemu_img())
            .args(["info", "--output=json", "-f", "vpc"])
            .arg(&vhd),
    ))
    .unwrap();
    assert_eq!(info["format"], "vpc", "{info}");
    assert_eq!(info["virtual-size"], len, "{info}");
    assert_qemu_reads_raw(&raw_path, "vpc", &vhd);
    // The timestamp counts from 2000; before it, 0.
    let f = last_512(&vhd);
    assert_eq!(
        u32::from_be_bytes(f[24..28].try_into().unwrap()),
        1_700_000_000 - 946_684_800
    );
    assert_eq!(footer(len, 0, [0; 16])[24..28], [0, 0, 0, 0]);
}

#[test]
fn the_same_disk_gives_the_same_bytes_and_a_partial_sector_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_disk(&dir.path().join("a.raw"), 3 << 20);
    let (a, b) = (dir.path().join("a.vhd"), dir.path().join("b.vhd"));
    write_vhd(&raw, &a, 5);
    write_vhd(&raw, &b, 5);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    let odd = raw_disk(&dir.path().join("odd.raw"), 1000);
    let e = write_fixed_vhd(&odd, &mut Vec::new(), 0, [0; 16]).unwrap_err();
    assert!(e.to_string().contains("1000 bytes"), "{e}");
}

/// A dynamic VHD: QEMU reads it back as the raw disk, maps data only where the disk has it,
/// and `qemu-img convert -o subformat=dynamic,force_size` lays the same disk out the same way:
/// the same dynamic header, BAT and blocks, the footers the same but for who made them, when,
/// and their id.
#[test]
fn dynamic_vhds_are_laid_out_as_qemu_lays_them_out() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let raw_path = dir.path().join("disk.raw");
    // Blocks 0 and 4 (of 2 MiB) hold data, the last one partly; 1-3 only zeros.
    let len = 9 * (1 << 20) + 512;
    let raw = raw_disk(&raw_path, len);
    raw.write_all_at(&[0x42; 1000], 8 << 20).unwrap();
    let ours_path = dir.path().join("ours.vhd");
    let mut out = std::io::BufWriter::new(File::create(&ours_path).unwrap());
    write_dynamic_vhd(&raw, &mut out, 0, [9; 16]).unwrap();
    out.flush().unwrap();
    drop(out);
    assert_qemu_reads_raw(&raw_path, "vpc", &ours_path);
    assert_eq!(
        qemu_data_ranges(&ours_path, "vpc"),
        [(0, 2 << 20), (8 << 20, len - (8 << 20))]
    );

    let theirs_path = dir.path().join("qemu.vhd");
    qemu_convert(
        &raw_path,
        "vpc",
        "subformat=dynamic,force_size",
        &theirs_path,
    );
    let (ours, theirs) = (
        std::fs::read(&ours_path).unwrap(),
        std::fs::read(&theirs_path).unwrap(),
    );
    assert_eq!(ours.len(), theirs.len(), "file lengths");
    let n = ours.len();
    assert!(
        ours[512..n - 512] == theirs[512..n - 512],
        "header, BAT or blocks differ"
    );
    for foot in [&ours[..512], &ours[n - 512..]] {
        let theirs_foot = &theirs[n - 512..];
        assert_eq!(foot[..24], theirs_foot[..24], "cookie to data offset");
        assert_eq!(foot[40..64], theirs_foot[40..64], "sizes, geometry, type");
    }
    assert!(
        ours[..512] == ours[n - 512..],
        "the footer's copy is the footer"
    );
}
