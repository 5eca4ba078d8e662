//! The qcow2 writer against QEMU's own reader (`qemu-img check`, `compare`, `info`, `map`)
//! and against a reader written here from the format's specification, which also checks that
//! every cluster is counted exactly once.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use oxkit_testkit::{Rng, run_ok};

use super::*;
use crate::testdisk::{assert_qemu_reads_raw, qemu_data_ranges, qemu_img};

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// The guest disk a qcow2 image holds, read by following its L1 and L2 tables; asserts that
/// the reference counts count each cluster the image uses once and nothing else.
fn read_back(q: &[u8]) -> Vec<u8> {
    assert_eq!(&q[..4], MAGIC);
    assert_eq!(be32(q, 4), 3, "version");
    assert_eq!(be64(q, 8), 0, "no backing file");
    let cluster_bits = be32(q, 20);
    let cs = 1u64 << cluster_bits;
    let size = be64(q, 24);
    let l1_entries = be32(q, 36) as u64;
    let l1_at = be64(q, 40);
    let rt_at = be64(q, 48);
    let rt_clusters = be32(q, 56) as u64;
    assert_eq!(be64(q, 72), 0, "incompatible features");
    assert_eq!(be32(q, 96), 4, "16-bit refcounts");
    assert_eq!(q.len() as u64 % cs, 0, "the file is whole clusters");
    let clusters = (q.len() as u64 / cs) as usize;
    let mut used = vec![0u32; clusters];
    let mut take = |offset: u64| {
        assert_eq!(offset % cs, 0, "cluster-aligned offset {offset}");
        used[(offset / cs) as usize] += 1;
    };
    take(0);
    for c in 0..rt_clusters {
        take(rt_at + c * cs);
    }
    for c in 0..(l1_entries * 8).div_ceil(cs) {
        take(l1_at + c * cs);
    }
    let mut disk = vec![0u8; size as usize];
    let l2_entries = cs / 8;
    for i in 0..l1_entries {
        let e = be64(q, (l1_at + i * 8) as usize);
        if e == 0 {
            continue;
        }
        assert_eq!(e & COPIED, COPIED, "L1 entry {i} is COPIED");
        let l2 = e & !COPIED;
        take(l2);
        for j in 0..l2_entries {
            let d = be64(q, (l2 + j * 8) as usize);
            if d == 0 {
                continue;
            }
            assert_eq!(d & COPIED, COPIED, "L2 entry {i}/{j} is COPIED");
            let host = d & !COPIED;
            take(host);
            let guest = (i * l2_entries + j) * cs;
            let n = (size - guest).min(cs) as usize;
            disk[guest as usize..guest as usize + n]
                .copy_from_slice(&q[host as usize..host as usize + n]);
        }
    }
    let mut counted = vec![0u32; clusters];
    let per_block = cs / 2;
    for t in 0..rt_clusters * cs / 8 {
        let block = be64(q, (rt_at + t * 8) as usize);
        if block == 0 {
            continue;
        }
        take(block);
        for k in 0..per_block {
            let c = t * per_block + k;
            let r = u16::from_be_bytes(q[(block + k * 2) as usize..][..2].try_into().unwrap());
            if (c as usize) < counted.len() {
                counted[c as usize] = r as u32;
            } else {
                assert_eq!(r, 0, "refcount for cluster {c} past the end of the file");
            }
        }
    }
    assert_eq!(counted, used, "reference counts against the clusters used");
    disk
}

/// A raw disk of `len` bytes with `extents` (offset, bytes) written into it, sparse elsewhere.
fn raw_disk(dir: &Path, name: &str, len: u64, extents: &[(u64, Vec<u8>)]) -> PathBuf {
    let path = dir.join(name);
    let f = File::create(&path).unwrap();
    f.set_len(len).unwrap();
    for (at, bytes) in extents {
        f.write_all_at(bytes, *at).unwrap();
    }
    path
}

fn convert(raw: &Path, cluster_bits: u32) -> (PathBuf, Vec<u8>) {
    let f = File::open(raw).unwrap();
    let len = f.metadata().unwrap().len();
    let mut out = Vec::new();
    let n = write_qcow2_with(&f, len, &mut out, cluster_bits).unwrap();
    assert_eq!(n, out.len() as u64, "the size returned is the size written");
    let path = raw.with_extension("qcow2");
    std::fs::write(&path, &out).unwrap();
    (path, out)
}

/// `qemu-img check` finds no error or leak, and `qemu-img compare` finds `qcow` identical to
/// `raw` (which checks every guest byte, holes included).
fn assert_qemu_agrees(raw: &Path, qcow: &Path) {
    let check = run_ok(
        Command::new(qemu_img())
            .args(["check", "-f", "qcow2"])
            .arg(qcow),
    );
    assert!(
        check.contains("No errors were found"),
        "qemu-img check:\n{check}"
    );
    assert_qemu_reads_raw(raw, "qcow2", qcow);
}

fn random_extents(rng: &mut Rng, len: u64, count: usize) -> Vec<(u64, Vec<u8>)> {
    (0..count)
        .map(|_| {
            let at = rng.below(len as usize) as u64;
            let n = 1 + rng.below(((len - at) as usize).min(70_000));
            (at, rng.bytes(n))
        })
        .collect()
}

#[test]
fn qemu_reads_back_random_sparse_disks_at_both_cluster_sizes() {
    let dir = tempfile::tempdir().unwrap();
    for seed in 1..=12u64 {
        let mut rng = Rng::new(seed);
        // 512-byte clusters make many L2 tables and refcount blocks out of a small disk; the
        // default 64 KiB ones the shape `qcow2-efi` writes. Sizes are not cluster multiples.
        for cluster_bits in [9, CLUSTER_BITS] {
            let len = 512 * (1 + rng.below(40_000) as u64) + 512 * 3;
            let count = 1 + rng.below(30);
            let mut extents = random_extents(&mut rng, len, count);
            // The last byte, and an extent of written zeros (stored nowhere).
            extents.push((len - 1, vec![0x5a]));
            extents.push((len / 2, vec![0; 5000]));
            let raw = raw_disk(
                dir.path(),
                &format!("d{seed}-{cluster_bits}"),
                len,
                &extents,
            );
            let (qcow, bytes) = convert(&raw, cluster_bits);
            assert_eq!(
                read_back(&bytes),
                std::fs::read(&raw).unwrap(),
                "seed {seed}"
            );
            assert_qemu_agrees(&raw, &qcow);
        }
    }
}

#[test]
fn only_clusters_with_data_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let cs = 1u64 << CLUSTER_BITS;
    let len = 300 * cs;
    // Data in clusters 0, 7 (two bytes at its end) and 299; zeros written over 100..200.
    let raw = raw_disk(
        dir.path(),
        "three",
        len,
        &[
            (10, vec![1; 100]),
            (8 * cs - 2, vec![2, 2]),
            (100 * cs, vec![0; 100 * cs as usize]),
            (len - 1, vec![3]),
        ],
    );
    let (qcow, bytes) = convert(&raw, CLUSTER_BITS);
    // The header, refcount table and block, L1 and one L2 table, then the three clusters.
    assert_eq!(bytes.len() as u64, (5 + 3) * cs);
    assert_eq!(
        qemu_data_ranges(&qcow, "qcow2"),
        [(0, cs), (7 * cs, cs), (299 * cs, cs)]
    );
    assert_qemu_agrees(&raw, &qcow);
}

#[test]
fn an_all_zero_disk_is_metadata_only_and_qemu_describes_it() {
    let dir = tempfile::tempdir().unwrap();
    // 3 GiB: six L1 entries, all empty (the file is one hole, never read).
    for len in [0, 512, 3 << 30] {
        let raw = raw_disk(dir.path(), &format!("zero{len}"), len, &[]);
        let (qcow, bytes) = convert(&raw, CLUSTER_BITS);
        // Header, refcount table, refcount block, L1 table: no L2 table, no data.
        assert_eq!(bytes.len() as u64, 4 << CLUSTER_BITS, "len {len}");
        assert_eq!(read_back(&bytes).len() as u64, len);
        let info = run_ok(
            Command::new(qemu_img())
                .args(["info", "--output=json", "-f", "qcow2"])
                .arg(&qcow),
        );
        let info: serde_json::Value = serde_json::from_str(&info).unwrap();
        assert_eq!(info["virtual-size"], len, "{info}");
        assert_eq!(info["cluster-size"], 1 << CLUSTER_BITS, "{info}");
        assert_eq!(info["format-specific"]["data"]["compat"], "1.1", "{info}");
        assert_qemu_agrees(&raw, &qcow);
    }
}

#[test]
fn the_same_disk_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(99);
    let extents = random_extents(&mut rng, 50 << 20, 20);
    let a = raw_disk(dir.path(), "a", 50 << 20, &extents);
    let b = raw_disk(dir.path(), "b", 50 << 20, &extents);
    assert_eq!(convert(&a, CLUSTER_BITS).1, convert(&b, CLUSTER_BITS).1);
}

#[test]
fn layout_grows_refcount_structures_to_count_themselves() {
    // 512-byte clusters: a refcount block counts 256 clusters, the table holds 64 blocks.
    let data: Vec<u64> = (0..20_000).collect();
    let l = Layout::new(9, 20_000 * 512, data);
    let total = l.total_clusters();
    assert!(l.refcount_blocks * 256 >= total, "{l:?}");
    assert!(l.refcount_table_clusters * 64 >= l.refcount_blocks, "{l:?}");
    assert!(
        l.refcount_table_clusters > 1,
        "the table itself spans clusters"
    );
    // Not more than needed: one block fewer would not cover the file.
    assert!((l.refcount_blocks - 1) * 256 < total, "{l:?}");
}

#[test]
fn a_short_raw_file_is_an_error_not_a_short_image() {
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_disk(dir.path(), "short", 4096, &[(0, vec![1; 10])]);
    let f = File::open(&raw).unwrap();
    let err = write_qcow2(&f, 1 << 20, &mut Vec::new()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
}
