//! The VMDK against QEMU's: `qemu-img convert -O vmdk` (how LinuxKit makes its `vmdk`) writes
//! the same bytes for the same disk but for the random content id, `qemu-img check` finds no
//! error, and QEMU reads it back as the raw disk, with data only in the grains that have some.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use oxkit_testkit::run_ok;

use super::*;
use crate::testdisk::{
    Zeros, assert_qemu_reads_raw, disk_with_ends, qemu_convert, qemu_data_ranges, qemu_img,
};

fn write(raw: &File, path: &Path, cid: u32) {
    let name = path.file_name().unwrap().to_str().unwrap();
    let mut out = std::io::BufWriter::new(File::create(path).unwrap());
    write_vmdk(raw, &mut out, name, cid).unwrap();
    out.flush().unwrap();
}

/// `bytes` with the descriptor's content id (the hex digits after `CID=`, as many as it
/// takes: QEMU does not pad them) read out and taken out of the descriptor, which is padded
/// with zeros to its 20 sectors again.
fn without_cid(bytes: Vec<u8>) -> (Vec<u8>, u32) {
    let desc_end = (DESCRIPTOR_OFFSET + DESCRIPTOR_SECTORS) as usize * 512;
    let at = bytes
        .windows(5)
        .position(|w| w == b"\nCID=")
        .expect("a CID line")
        + 5;
    let len = bytes[at..]
        .iter()
        .position(|&b| b == b'\n')
        .expect("the CID line's end");
    let hex = std::str::from_utf8(&bytes[at..at + len]).unwrap();
    let cid = u32::from_str_radix(hex, 16).expect("hex digits");
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(&bytes[at + len..desc_end]);
    out.resize(desc_end, 0);
    out.extend_from_slice(&bytes[desc_end..]);
    (out, cid)
}

/// Disks of several sizes and contents: holes, written zeros (read and found empty), a grain
/// with one byte, a last grain and a last grain table only partly covered by the disk.
#[test]
fn the_bytes_are_what_qemu_img_writes_but_for_the_content_id() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(u64, Zeros); 5] = [
        (512, Zeros::Hole),
        (1 << 20, Zeros::Written),
        (40 << 20, Zeros::Hole),
        ((33 << 20) + 512, Zeros::Written),
        (300 << 20, Zeros::Hole),
    ];
    for (len, zeros) in cases {
        let raw_path = dir.path().join("disk.raw");
        let raw = disk_with_ends(&raw_path, len, zeros);
        if len > 20 << 20 {
            raw.write_all_at(&[1], 17 << 20).unwrap();
        }
        let ours = dir.path().join("disk.vmdk");
        write(&raw, &ours, 0x1234_abcd);
        let theirs_dir = dir.path().join("qemu");
        std::fs::create_dir_all(&theirs_dir).unwrap();
        let theirs = theirs_dir.join("disk.vmdk");
        qemu_convert(&raw_path, "vmdk", "subformat=monolithicSparse", &theirs);
        let (ours_bytes, cid) = without_cid(std::fs::read(&ours).unwrap());
        assert_eq!(cid, 0x1234_abcd);
        let (theirs_bytes, _) = without_cid(std::fs::read(&theirs).unwrap());
        assert_eq!(ours_bytes.len(), theirs_bytes.len(), "{len}: file length");
        assert!(ours_bytes == theirs_bytes, "{len}: the files differ");
        assert_qemu_reads_raw(&raw_path, "vmdk", &ours);
        let check = run_ok(
            Command::new(qemu_img())
                .args(["check", "-f", "vmdk"])
                .arg(&ours),
        );
        assert!(
            check.contains("No errors"),
            "{len}: qemu-img check:\n{check}"
        );
        std::fs::remove_file(&raw_path).unwrap();
        std::fs::remove_file(&ours).unwrap();
        std::fs::remove_file(&theirs).unwrap();
    }
}

#[test]
fn only_grains_with_data_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let raw_path = dir.path().join("disk.raw");
    let len = 50 << 20;
    let raw = disk_with_ends(&raw_path, len, Zeros::Written);
    raw.write_all_at(&[0x42; 3], (20 << 20) + 7_000).unwrap();
    let vmdk = dir.path().join("disk.vmdk");
    write(&raw, &vmdk, 1);
    // The first 70,000 random bytes span two grains; one byte run in a third; the last
    // sector in the last.
    let grain = 1 << 16;
    assert_eq!(
        qemu_data_ranges(&vmdk, "vmdk"),
        [(0, 2 * grain), (20 << 20, grain), (len - grain, grain)]
    );
    let info: serde_json::Value = serde_json::from_str(&run_ok(
        Command::new(qemu_img())
            .args(["info", "--output=json", "-f", "vmdk"])
            .arg(&vmdk),
    ))
    .unwrap();
    assert_eq!(info["virtual-size"], len, "{info}");
    assert_eq!(
        info["format-specific"]["data"]["create-type"], "monolithicSparse",
        "{info}"
    );
    assert_eq!(info["format-specific"]["data"]["cid"], 1, "{info}");
    // Written as QEMU writes it: hex digits without padding.
    let bytes = std::fs::read(&vmdk).unwrap();
    assert!(bytes.windows(7).any(|w| w == b"\nCID=1\n"), "the CID line");
    // Header and tables in the first 64 KiB, then the four grains.
    assert_eq!(std::fs::metadata(&vmdk).unwrap().len(), 5 * grain);
}

#[test]
fn the_same_disk_gives_the_same_bytes_and_bad_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let raw = disk_with_ends(&dir.path().join("a.raw"), 3 << 20, Zeros::Hole);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    write(&raw, &a.join("x.vmdk"), 7);
    write(&raw, &b.join("x.vmdk"), 7);
    assert_eq!(
        std::fs::read(a.join("x.vmdk")).unwrap(),
        std::fs::read(b.join("x.vmdk")).unwrap()
    );
    let odd = disk_with_ends(&dir.path().join("odd.raw"), 1000, Zeros::Hole);
    let e = write_vmdk(&odd, &mut Vec::new(), "x.vmdk", 0).unwrap_err();
    assert!(e.to_string().contains("1000 bytes"), "{e}");
    for name in ["", "a\"b.vmdk", "a/b.vmdk", "a\nb.vmdk"] {
        let e = write_vmdk(&raw, &mut Vec::new(), name, 0).unwrap_err();
        assert!(e.to_string().contains("cannot name the file"), "{e}");
    }
}

#[test]
fn data_past_what_32_bit_sectors_address_is_refused() {
    let last = (u64::from(u32::MAX) + 1 - 128) / GRAIN_SECTORS;
    assert!(check_addressable(128, last - 1).is_ok());
    assert!(check_addressable(128, last).is_ok());
    let e = check_addressable(128, last + 1).unwrap_err();
    assert!(e.to_string().contains("2 TiB"), "{e}");
    assert!(check_addressable(128, u64::MAX).is_err());
    // A large disk with little data is fine: only the data's sectors count.
    assert!(Layout::new(1 << 40, vec![0, 1 << 30]).is_ok());
}

#[test]
fn the_content_id_is_never_the_no_parent_value() {
    assert_eq!(content_id([0xff; 16]), 0xffff_fffe);
    assert_eq!(
        content_id([1, 0, 0, 0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9]),
        1
    );
}
