//! The EROFS writer against the reference readers: erofs-utils' `fsck.erofs` (checking and
//! extraction) and `dump.erofs` (superblock, inodes), from `erofs-utils`, and, when running as
//! root, the Linux kernel itself (a loop mount). `mkfs.erofs` gives the size to compare with.

use std::collections::BTreeMap;
use std::io::{BufWriter, Cursor};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use oxkit_testkit::{Rng, require_tool_from};

use super::*;
use crate::imagefs::testutil::{
    self, Built, CAP_NET_RAW, Check, EPOCH, TestImage, add_host_tree, assert_same_tree,
    compare_tree, distinct_inodes, is_root, m, named, refuses_bad_entries, run, with_xattrs,
};

/// `name` from erofs-utils.
fn tool(name: &str) -> PathBuf {
    require_tool_from(name, "erofs-utils")
}

/// Compressible text-like bytes.
fn text(seed: u64, len: usize) -> Vec<u8> {
    testutil::text("erofs", "dirent", seed, len)
}

type Rec = testutil::Rec<ErofsWriter<Cursor<Vec<u8>>>>;

/// An image with every kind of entry and the edge cases of the format.
fn sample() -> Built {
    let mut r = Rec::new();
    r.root(with_xattrs(
        m(0o755, 0, 0, 1_600_000_000),
        &[("user.root", b"top")],
    ));
    for d in ["bin", "sbin", "etc", "dev"] {
        r.dir(d, m(0o755, 0, 0, 1_650_000_000));
    }
    r.dir("tmp", m(0o1777, 0, 0, EPOCH));
    r.dir(
        "data",
        with_xattrs(
            m(0o750, 1000, 1000, 1_650_000_002),
            &[("trusted.dir", b"1")],
        ),
    );
    let mut deep = String::new();
    for part in ["a", "b", "c", "d", "e", "f"] {
        if !deep.is_empty() {
            deep.push('/');
        }
        deep.push_str(part);
        r.dir(&deep, m(0o700, 0, 0, 1_650_000_003));
    }
    r.file(&["a/b/c/d/e/f/deep"], m(0o600, 0, 0, 5), text(1, 10));
    // Names that need sorting (added out of order, non-ASCII, around `.` and `..`).
    r.dir("Zed", m(0o755, 0, 0, 1));
    r.file(&["\u{e4}"], m(0o644, 0, 0, 2), text(2, 3));
    r.file(&["_x"], m(0o644, 0, 0, 3), text(3, 4));
    r.file(&["-dash"], m(0o644, 0, 0, EPOCH), text(3, 5));
    r.file(&["+plus"], m(0o644, 0, 0, EPOCH), text(3, 6));
    r.file(&[".hidden"], m(0o644, 0, 0, EPOCH), text(3, 7));
    r.file(&["...dots"], m(0o644, 0, 0, EPOCH), text(3, 8));
    r.symlink("alpha", "Zed", m(0o777, 0, 0, 4));

    r.device("dev/null", false, (1, 3), m(0o666, 0, 0, 10));
    r.device("dev/loop0", true, (7, 0), m(0o660, 0, 6, EPOCH));
    r.device("dev/big", false, (259, 65536), m(0o600, 0, 0, 12));
    r.device("dev/max", true, (4095, 0xf_ffff), m(0o600, 0, 0, 13));
    r.fifo("dev/fifo", m(0o600, 0, 0, 14));

    r.file(
        &["bin/a", "bin/b", "sbin/c"],
        m(0o4755, 0, 0, 20),
        text(4, 70_001),
    );
    r.symlink("bin/sh", "a", m(0o777, 0, 0, 21));
    r.symlink("bin/long", &"x/".repeat(1500), m(0o777, 0, 0, EPOCH));
    r.symlink("bin/longest", &"y".repeat(4095), m(0o777, 0, 0, 22));
    r.file(
        &["bin/ping"],
        with_xattrs(m(0o755, 0, 0, 23), &[("security.capability", &CAP_NET_RAW)]),
        text(5, 5000),
    );

    r.file(
        &["etc/motd"],
        with_xattrs(
            m(0o644, 0, 0, 30),
            &[("user.comment", b"hello"), ("trusted.note", b"")],
        ),
        b"welcome\n".to_vec(),
    );
    r.file(&["etc/empty"], m(0o2755, 0, 0, 31), Vec::new());
    r.file(&["etc/empty-now"], m(0o644, 0, 0, EPOCH), Vec::new());
    r.file(
        &["etc/owned"],
        m(0o640, 100_000, 4_000_000_000, 32),
        b"x".to_vec(),
    );
    r.file(
        &["etc/owned-now"],
        m(0o640, 70_000, 7, EPOCH),
        b"y".to_vec(),
    );
    r.file(&["etc/dup"], m(0o644, 0, 0, 33), b"old".to_vec());
    r.symlink("etc/dup", "motd", m(0o777, 0, 0, 34));
    // A hard link that loses one of its names to a later entry.
    r.file(
        &["etc/l1", "etc/l2", "etc/l3"],
        m(0o644, 0, 0, EPOCH),
        b"ln".to_vec(),
    );
    r.fifo("etc/l3", m(0o644, 0, 0, 36));
    // A directory added again takes the new metadata and keeps its entries.
    r.dir("etc", m(0o711, 0, 0, 35));

    r.file(&["data/exact"], m(0o644, 0, 0, 40), text(6, 4096));
    r.file(&["data/exact-now"], m(0o644, 0, 0, EPOCH), text(6, 8192));
    let mut sparse = text(7, 4096 * 3);
    sparse.extend(std::iter::repeat_n(0, 4096 * 2));
    sparse.extend(Rng::new(8).bytes(4096 * 40));
    sparse.extend(text(9, 1000));
    r.file(&["data/sparse"], m(0o644, 0, 0, 41), sparse);
    let mut zerotail = text(10, 4096);
    zerotail.extend(std::iter::repeat_n(0, 3000));
    r.file(&["data/zerotail"], m(0o644, 0, 0, 42), zerotail);
    r.file(&["data/allzero"], m(0o644, 0, 0, 43), vec![0; 300_000]);
    r.file(
        &["data/random"],
        m(0o644, 0, 0, 44),
        Rng::new(11).bytes(50_000),
    );
    r.file(&["data/tail"], m(0o644, 0, 0, 45), text(12, 200_000));
    // A tail too large to sit beside its inode.
    r.file(&["data/bigtail"], m(0o644, 0, 0, 45), text(13, 4096 + 4090));
    r.file(
        &["data/future"],
        m(0o644, 0, 0, EPOCH + 1000),
        b"f".to_vec(),
    );
    r.file(&["data/past"], m(0o644, 0, 0, -5), b"p".to_vec());
    // Large extended attributes: an inode larger than a block.
    let big = Rng::new(14).bytes(3000);
    r.file(
        &["data/bigx"],
        with_xattrs(
            m(0o644, 0, 0, 46),
            &[("user.a", &big), ("user.b", &big), ("trusted.c", &big)],
        ),
        text(15, 100),
    );

    // Enough entries for the directory to span several blocks, added in reverse order.
    r.dir("many", m(0o755, 0, 0, 50));
    for i in (0..600u64).rev() {
        let meta = m(0o644, i % 7, 100 + i % 3, 1_000_000 + i as i64);
        r.file(&[&format!("many/f{i:04}")], meta, text(100 + i, 250));
    }
    r.finish()
}

fn write_image(dir: &Path, image: &[u8]) -> PathBuf {
    testutil::write_image(dir, "image.erofs", image)
}

#[test]
fn crc32c_is_castagnoli() {
    // The standard check value of CRC-32C, which inverts at the end.
    assert_eq!(!crc32c_raw(!0, b"123456789"), 0xE306_9283);
}

/// `fsck.erofs` checks the whole image (superblock checksum, every inode, every block).
fn fsck(img: &Path) -> String {
    run(Command::new(tool("fsck.erofs")).arg(img))
}

/// Checks `b` and extracts it with `fsck.erofs` (as root: owners and devices) and compares
/// the tree.
fn extract_and_compare(b: &Built) {
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), &b.image);
    fsck(&img);
    if !is_root() {
        eprintln!("SKIPPED: extraction with owners and devices needs root");
        return;
    }
    let out = tmp.path().join("out");
    run(Command::new(tool("fsck.erofs"))
        .arg(format!("--extract={}", out.display()))
        .arg("--preserve")
        .arg(&img));
    // `fsck.erofs` 1.5 extracts neither xattrs nor hard links (each name becomes its own
    // file), and changes owners after modes, which clears setuid and setgid.
    compare_tree(
        &out,
        b,
        Check {
            suid: false,
            xattrs: false,
            hard_links: false,
            dir_nlink: false,
            symlink_mtime: true,
        },
    );
}

/// Loop-mounts `b` (as root) and compares the tree, xattrs, hard links and link counts
/// included.
fn mount_and_compare(b: &Built) {
    testutil::mount_and_compare(b, "image.erofs", "erofs", true);
}

#[test]
fn fsck_extracts_the_same_tree() {
    extract_and_compare(&sample());
}

#[test]
fn the_kernel_mounts_the_same_tree() {
    mount_and_compare(&sample());
}

fn field<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.trim_start_matches(':').trim())
        .unwrap_or_else(|| panic!("no {name:?} in:\n{out}"))
}

#[test]
fn superblock_matches_what_was_written() {
    let b = sample();
    assert_eq!(b.image.len() % 4096, 0, "whole blocks");
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), &b.image);
    let out = run(Command::new(tool("dump.erofs")).arg("-s").arg(&img));
    assert_eq!(field(&out, "Filesystem magic number"), "0xE0F5E1E2");
    assert_eq!(
        field(&out, "Filesystem blocks"),
        (b.image.len() / 4096).to_string()
    );
    assert_eq!(field(&out, "Filesystem inode metadata start block"), "0");
    assert_eq!(field(&out, "Filesystem root nid"), "36");
    assert_eq!(
        field(&out, "Filesystem inode count"),
        distinct_inodes(&b.exp).to_string()
    );
    assert_eq!(
        field(&out, "Filesystem created"),
        "Tue Nov 14 22:13:20 2023"
    );
    assert_eq!(field(&out, "Filesystem features"), "sb_csum mtime");
    assert_eq!(
        field(&out, "Filesystem UUID"),
        "00000000-0000-0000-0000-000000000000"
    );
}

/// `dump.erofs --path`'s fields for an entry.
fn dump_path(img: &Path, path: &str) -> String {
    run(Command::new(tool("dump.erofs"))
        .arg(format!("--path=/{path}"))
        .arg(img))
}

#[test]
fn inodes_are_compact_where_they_can_be_and_tails_inline() {
    let b = sample();
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), &b.image);
    let show = |p: &str| dump_path(&img, p);
    // (path, inode size, layout): compact only with the build time as mtime and small ids.
    for (p, isize, layout) in [
        ("tmp", 32, 2),
        ("bin", 64, 2),
        ("-dash", 32, 2),
        ("etc/owned-now", 64, 2),
        ("etc/empty-now", 32, 0),
        ("data/exact", 64, 0),
        ("data/exact-now", 32, 0),
        ("data/tail", 64, 2),
        ("data/bigtail", 64, 0),
        ("bin/long", 32, 2),
        ("bin/longest", 64, 0),
        ("dev/loop0", 32, 0),
        ("many", 64, 2),
    ] {
        let out = show(p);
        assert!(
            out.contains(&format!("Inode size: {isize} ")),
            "{p}: want {isize}:\n{out}"
        );
        assert!(
            out.contains(&format!("Layout: {layout} ")),
            "{p}: want layout {layout}:\n{out}"
        );
    }
    // dump.erofs 1.5 shows only the 0777 bits: read the inode's i_mode (at byte 4).
    for (p, mode) in [
        ("bin/a", 0o104_755u16),
        ("etc/empty", 0o102_755),
        ("tmp", 0o041_777),
    ] {
        let out = show(p);
        let nid: usize = field(&out, "NID")
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{out}"));
        let at = nid * 32 + 4;
        let got = u16::from_le_bytes([b.image[at], b.image[at + 1]]);
        assert_eq!(got, mode, "{p}: i_mode {got:o}");
    }
    let out = show("data/bigx");
    assert!(out.contains("Xattr size: 9"), "{out}");
}

#[test]
fn same_entries_same_bytes() {
    let a = sample();
    let b = sample();
    assert!(a.image == b.image, "two builds differ");
    let i = &a.image;
    assert_eq!(u32::from_le_bytes(i[1024..1028].try_into().unwrap()), MAGIC);
    assert_eq!(
        u64::from_le_bytes(i[1048..1056].try_into().unwrap()),
        EPOCH as u64
    );
}

/// A directory of 5000 entries (many listing blocks, found by the kernel's binary search),
/// a root with more entries than block 0 holds inline, and hard links far apart.
fn awkward() -> Built {
    let mut r = Rec::new();
    r.dir("big", m(0o755, 0, 0, 1));
    r.dir("other", m(0o755, 0, 0, 1));
    for i in 0..5000u32 {
        let name = format!("big/a-rather-long-entry-name-{:05}", (i * 7919) % 5000);
        r.fifo(&name, m(0o600, u64::from(i % 3), 0, 3));
    }
    for i in 0..40 {
        let path = format!("other/file{i}");
        let link = format!("big/zz-link{i}");
        r.file(
            &[&path, &link],
            m(0o644, 0, 0, 2),
            text(i, 10 + i as usize * 300),
        );
    }
    for i in 0..300 {
        r.dir(&format!("d{i:03}"), m(0o755, 0, 0, EPOCH));
    }
    r.finish()
}

#[test]
fn awkward_image_reads_back() {
    let b = awkward();
    if let Some(p) = std::env::var_os("OXKIT_EROFS_DUMP") {
        std::fs::write(p, &b.image).unwrap();
    }
    extract_and_compare(&b);
    mount_and_compare(&b);
}

#[test]
fn the_image_can_start_inside_a_file() {
    let image = testutil::image_inside_a_file::<ErofsWriter<_>>();
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), &image);
    fsck(&img);
    let out = dump_path(&img, "f");
    assert!(out.contains("Size: 3 "), "{out}");
}

#[test]
fn bad_content_and_bad_entries_are_refused_and_the_rest_survives() {
    let mut w = ErofsWriter::empty(EPOCH);
    refuses_bad_entries(&mut w, 255, &text(1, 300_000));
    let meta = m(0o644, 0, 0, 0);
    let long_name = format!("user.{}", "k".repeat(256));
    named(
        w.fifo(b"d/x", &with_xattrs(meta.clone(), &[(&long_name, b"x")])),
        "d/x",
        "not a usable name",
    );
    named(
        w.fifo(
            b"d/x",
            &with_xattrs(meta.clone(), &[("user.v", &vec![1; 65536])]),
        ),
        "d/x",
        "at most 65535",
    );
    let huge: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| (format!("user.k{i}"), vec![7; 65535]))
        .collect();
    let huge: Vec<(&str, &[u8])> = huge.iter().map(|(k, v)| (k.as_str(), &v[..])).collect();
    named(
        w.fifo(b"d/x", &with_xattrs(meta.clone(), &huge)),
        "d/x",
        "more than an inode holds",
    );
    named(
        w.root(&with_xattrs(meta.clone(), &[("user.v", &vec![1; 3000])])),
        "/",
        "the root's extended attributes",
    );
    w.file(&[b"d/file".as_slice()], &meta, 4, &mut &b"good"[..])
        .unwrap();
    named(w.dir(b"d/file/sub", &meta), "d/file/sub", "parent");
    named(
        w.file(
            &[b"d/ok".as_slice(), b"zz/no".as_slice()],
            &meta,
            1,
            &mut &b"1"[..],
        ),
        "zz/no",
        "parent",
    );

    let image = w.finish().unwrap().into_inner();
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), &image);
    fsck(&img);
    let out = run(Command::new(tool("dump.erofs"))
        .args(["--ls", "--path=/d"])
        .arg(&img));
    let names: Vec<&str> = out
        .lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [nid, _, name] if nid.parse::<u64>().is_ok() => Some(name),
            _ => None,
        })
        .collect();
    assert_eq!(names, [".", "..", "file"], "{out}");
    let dest = tmp.path().join("out");
    run(Command::new(tool("fsck.erofs"))
        .arg(format!("--extract={}", dest.display()))
        .arg(&img));
    assert_eq!(std::fs::read(dest.join("d/file")).unwrap(), b"good");
    let entries: Vec<_> = std::fs::read_dir(dest.join("d")).unwrap().collect();
    assert_eq!(entries.len(), 1);
}

#[test]
fn an_empty_image_is_valid() {
    let image = ErofsWriter::empty(0).image();
    assert_eq!(image.len(), 4096, "block 0 only");
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), &image);
    fsck(&img);
    let out = run(Command::new(tool("dump.erofs")).arg("-s").arg(&img));
    assert_eq!(field(&out, "Filesystem inode count"), "1");
    assert_eq!(field(&out, "Filesystem blocks"), "1");
    let b = Built {
        image,
        exp: BTreeMap::new(),
        root: m(0o755, 0, 0, 0),
    };
    mount_and_compare(&b);
}

fn mkfs_size(src: &Path, img: &Path) -> (u64, f64) {
    let t = Instant::now();
    run(Command::new(tool("mkfs.erofs"))
        .arg("--quiet")
        .arg(img)
        .arg(src));
    let secs = t.elapsed().as_secs_f64();
    (std::fs::metadata(img).unwrap().len(), secs)
}

#[test]
fn size_is_close_to_mkfs_erofs() {
    let b = sample();
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), &b.image);
    let tree = tmp.path().join("tree");
    run(Command::new(tool("fsck.erofs"))
        .arg(format!("--extract={}", tree.display()))
        .arg("--no-preserve-owner")
        .arg(&img));
    // Only directories, files and symlinks: what an unprivileged copy holds.
    for d in ["dev", "etc/l3"] {
        let p = tree.join(d);
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        } else {
            std::fs::remove_file(&p).unwrap();
        }
    }
    let mut w = ErofsWriter::empty(EPOCH);
    add_host_tree(&mut w, &tree, "");
    let ours = w.image().len() as u64;
    let (theirs, _) = mkfs_size(&tree, &tmp.path().join("ref.erofs"));
    let ratio = ours as f64 / theirs as f64;
    eprintln!("oxkit {ours} bytes, mkfs.erofs {theirs} bytes: ratio {ratio:.3}");
    assert!(ratio < 1.2, "ours {ours} vs mkfs.erofs {theirs}");
}

/// A benchmark on a real tree: `OXKIT_EROFS_BENCH=/usr/lib/python3 cargo test --release
/// -p oxkit-assembly --lib erofs::tests::bench -- --ignored --nocapture`.
#[test]
#[ignore = "a benchmark: set OXKIT_EROFS_BENCH to a directory"]
fn bench() {
    let Some(src) = std::env::var_os("OXKIT_EROFS_BENCH").map(PathBuf::from) else {
        eprintln!("SKIPPED: set OXKIT_EROFS_BENCH");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ours_path = tmp.path().join("ours.erofs");
    let t = Instant::now();
    let f = std::fs::File::create(&ours_path).unwrap();
    let mut w = ErofsWriter::new(BufWriter::new(f), EPOCH).unwrap();
    let input = add_host_tree(&mut w, &src, "");
    w.finish()
        .unwrap()
        .into_inner()
        .unwrap()
        .sync_all()
        .unwrap();
    let ours_secs = t.elapsed().as_secs_f64();
    let ours = std::fs::metadata(&ours_path).unwrap().len();
    let (theirs, theirs_secs) = mkfs_size(&src, &tmp.path().join("ref.erofs"));
    eprintln!("input: {input} bytes of file data in {}", src.display());
    eprintln!("oxkit:      {ours} bytes in {ours_secs:.2}s");
    eprintln!("mkfs.erofs: {theirs} bytes in {theirs_secs:.2}s");
    eprintln!("ratio vs mkfs.erofs: {:.3}", ours as f64 / theirs as f64);
    fsck(&ours_path);
    let dest = tmp.path().join("out");
    run(Command::new(tool("fsck.erofs"))
        .arg(format!("--extract={}", dest.display()))
        .arg(&ours_path));
    assert_same_tree(&src, &dest);
}
