//! The SquashFS writer against the reference readers: squashfs-tools' `unsquashfs` (superblock,
//! listing, extraction; from `squashfs-tools`, which `scripts/install-deps` installs) and, when
//! running as root, the Linux kernel itself (a loop mount).
//! `mksquashfs` gives the size to compare with.

use std::collections::BTreeSet;
use std::io::{BufWriter, Cursor};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use oxkit_testkit::{Rng, require_tool_from};

use super::*;
use crate::imagefs::testutil::{
    self, Built, CAP_NET_RAW, Check, EPOCH, Kind, TestImage, add_host_tree, assert_same_tree,
    clamp, compare_tree, distinct_inodes, is_root, m, refuses_bad_entries, run, with_xattrs,
};

/// `name` from squashfs-tools (which `scripts/install-deps` installs).
fn tool(name: &str) -> PathBuf {
    require_tool_from(name, "squashfs-tools")
}

/// Compressible text-like bytes.
fn text(seed: u64, len: usize) -> Vec<u8> {
    testutil::text("squash", "fragment", seed, len)
}

type Rec = testutil::Rec<SquashfsWriter<Cursor<Vec<u8>>>>;

/// An image with every kind of entry and the edge cases of the format.
fn sample() -> Built {
    let mut r = Rec::new();
    r.root(m(0o755, 0, 0, 1_600_000_000));
    for d in ["bin", "sbin", "etc", "dev"] {
        r.dir(d, m(0o755, 0, 0, 1_650_000_000));
    }
    r.dir("tmp", m(0o1777, 0, 0, 1_650_000_001));
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
    // Names that need sorting (added out of order, non-ASCII too).
    r.dir("Zed", m(0o755, 0, 0, 1));
    r.file(&["\u{e4}"], m(0o644, 0, 0, 2), text(2, 3));
    r.file(&["_x"], m(0o644, 0, 0, 3), text(3, 4));
    r.symlink("alpha", "Zed", m(0o777, 0, 0, 4));

    r.device("dev/null", false, (1, 3), m(0o666, 0, 0, 10));
    r.device("dev/loop0", true, (7, 0), m(0o660, 0, 6, 11));
    r.device("dev/big", false, (259, 65536), m(0o600, 0, 0, 12));
    r.device("dev/max", true, (4095, 0xf_ffff), m(0o600, 0, 0, 13));
    r.fifo("dev/fifo", m(0o600, 0, 0, 14));

    r.file(
        &["bin/a", "bin/b", "sbin/c"],
        m(0o4755, 0, 0, 20),
        text(4, 70_001),
    );
    r.symlink("bin/sh", "a", m(0o777, 0, 0, 21));
    r.symlink("bin/long", &"x/".repeat(150), m(0o777, 0, 0, 22));
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
    r.file(
        &["etc/owned"],
        m(0o640, 100_000, 4_000_000_000, 32),
        b"x".to_vec(),
    );
    r.file(&["etc/dup"], m(0o644, 0, 0, 33), b"old".to_vec());
    r.symlink("etc/dup", "motd", m(0o777, 0, 0, 34));
    // A directory added again takes the new metadata and keeps its entries.
    r.dir("etc", m(0o711, 0, 0, 35));

    r.file(&["data/exact"], m(0o644, 0, 0, 40), text(6, BLOCK_SIZE));
    let mut sparse = text(7, BLOCK_SIZE);
    sparse.extend(std::iter::repeat_n(0, BLOCK_SIZE));
    sparse.extend(Rng::new(8).bytes(BLOCK_SIZE));
    sparse.extend(text(9, 1000));
    r.file(&["data/sparse"], m(0o644, 0, 0, 41), sparse);
    let mut zerotail = text(10, BLOCK_SIZE);
    zerotail.extend(std::iter::repeat_n(0, 5000));
    r.file(&["data/zerotail"], m(0o644, 0, 0, 42), zerotail);
    r.file(&["data/allzero"], m(0o644, 0, 0, 43), vec![0; 300_000]);
    r.file(
        &["data/random"],
        m(0o644, 0, 0, 44),
        Rng::new(11).bytes(50_000),
    );
    r.file(&["data/tail"], m(0o644, 0, 0, 45), text(12, 200_000));
    r.file(
        &["data/future"],
        m(0o644, 0, 0, EPOCH + 1000),
        b"f".to_vec(),
    );
    r.file(&["data/past"], m(0o644, 0, 0, -5), b"p".to_vec());

    // > 256 entries (several directory headers), added in reverse order, enough inodes for
    // the inode and directory tables to span several metadata blocks.
    r.dir("many", m(0o755, 0, 0, 50));
    for i in (0..600u64).rev() {
        let meta = m(0o644, i % 7, 100 + i % 3, 1_000_000 + i as i64);
        r.file(&[&format!("many/f{i:04}")], meta, text(100 + i, 250));
    }
    r.finish()
}

/// `ls -l`-style permission string.
fn perms(kind: char, mode: u32) -> String {
    let mut s = String::from(kind);
    let bit = |b: u32, c: char| if mode & b != 0 { c } else { '-' };
    let special =
        |x: u32, special: u32, lower: char, upper: char| match (mode & x != 0, mode & special != 0)
        {
            (true, true) => lower,
            (false, true) => upper,
            (true, false) => 'x',
            (false, false) => '-',
        };
    s.push(bit(0o400, 'r'));
    s.push(bit(0o200, 'w'));
    s.push(special(0o100, 0o4000, 's', 'S'));
    s.push(bit(0o040, 'r'));
    s.push(bit(0o020, 'w'));
    s.push(special(0o010, 0o2000, 's', 'S'));
    s.push(bit(0o004, 'r'));
    s.push(bit(0o002, 'w'));
    s.push(special(0o001, 0o1000, 't', 'T'));
    s
}

/// `YYYY-MM-DD HH:MM` in UTC, as `unsquashfs -lln` prints times.
fn ymdhm(t: i64) -> String {
    let full = oxkit_store::oci::rfc3339_utc(t);
    format!("{} {}", &full[..10], &full[11..16])
}

fn kind_char(k: &Kind) -> char {
    match k {
        Kind::Dir => 'd',
        Kind::File(_) => '-',
        Kind::Link(_) => 'l',
        Kind::Dev(true, ..) => 'b',
        Kind::Dev(false, ..) => 'c',
        Kind::Fifo => 'p',
    }
}

fn write_image(dir: &Path, image: &[u8]) -> PathBuf {
    testutil::write_image(dir, "image.sqfs", image)
}

fn distinct_ids(b: &Built) -> usize {
    let mut ids = BTreeSet::from([b.root.uid, b.root.gid]);
    for e in b.exp.values() {
        ids.insert(e.meta.uid);
        ids.insert(e.meta.gid);
    }
    ids.len()
}

#[test]
fn superblock_matches_what_was_written() {
    let unsquashfs = tool("unsquashfs");
    let b = sample();
    assert_eq!(b.image.len() % 4096, 0, "padded to 4 KiB");
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), &b.image);
    let out = run(Command::new(&unsquashfs).arg("-s").arg(&img));
    let has = |line: &str| {
        assert!(
            out.lines().any(|l| l.trim() == line),
            "no {line:?} in:\n{out}"
        )
    };
    assert!(
        out.contains("Found a valid SQUASHFS 4:0 superblock"),
        "{out}"
    );
    has("Compression gzip");
    has("Block size 131072");
    has(&format!("Number of inodes {}", distinct_inodes(&b.exp)));
    has(&format!("Number of ids {}", distinct_ids(&b)));
    has("Number of xattr ids 3");
    has("Filesystem is not exportable via NFS");
    // 600 files of 250 bytes and a few small ones: two fragment blocks at least.
    let frags: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("Number of fragments "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no fragment count in:\n{out}"));
    assert!(frags >= 2, "{frags} fragments:\n{out}");
    assert!(
        out.contains(&format!(
            "Creation or last append time {}",
            "Tue Nov 14 22:13:20 2023"
        )),
        "mkfs time is the epoch:\n{out}"
    );
}

#[test]
fn listing_matches_what_was_written() {
    let unsquashfs = tool("unsquashfs");
    let b = sample();
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), &b.image);
    let out = run(Command::new(&unsquashfs).arg("-lln").arg(&img));
    let mut seen = BTreeSet::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let t: Vec<&str> = line.split_whitespace().collect();
        // Permissions, owner, size (or "major, minor"), date, time, name.
        let at = (3..t.len())
            .find(|&i| t[i].len() == 10 && t[i].as_bytes()[4] == b'-' && t[i].as_bytes()[7] == b'-')
            .unwrap_or_else(|| panic!("no date in {line:?}"));
        let date = format!("{} {}", t[at], t[at + 1]);
        let name = t[at + 2..].join(" ");
        let (name, target) = match name.split_once(" -> ") {
            Some((n, tg)) => (n.to_string(), Some(tg.to_string())),
            None => (name, None),
        };
        let path = name
            .strip_prefix("squashfs-root")
            .unwrap_or_else(|| panic!("unexpected line {line:?}"))
            .trim_start_matches('/')
            .to_string();
        if path.is_empty() {
            assert_eq!(t[0], perms('d', b.root.mode), "{line}");
            assert_eq!(date, ymdhm(clamp(b.root.mtime)), "{line}");
            continue;
        }
        let e = b
            .exp
            .get(&path)
            .unwrap_or_else(|| panic!("unexpected entry {path:?}: {line}"));
        seen.insert(path.clone());
        assert_eq!(t[0], perms(kind_char(&e.kind), e.meta.mode), "{line}");
        assert_eq!(t[1], format!("{}/{}", e.meta.uid, e.meta.gid), "{line}");
        assert_eq!(date, ymdhm(clamp(e.meta.mtime)), "{line}");
        match &e.kind {
            Kind::File(data) => assert_eq!(t[2], data.len().to_string(), "{line}"),
            Kind::Link(tg) => {
                assert_eq!(t[2], tg.len().to_string(), "{line}");
                assert_eq!(
                    target.as_deref(),
                    Some(&*String::from_utf8_lossy(tg)),
                    "{line}"
                );
            }
            // unsquashfs 4.5 shows minors above 255 oddly (the kernel and its extraction
            // get them right, checked there).
            Kind::Dev(_, major, minor) if *minor < 256 => {
                assert_eq!(
                    (t[2], t[3]),
                    (&*format!("{major},"), &*minor.to_string()),
                    "{line}"
                );
            }
            Kind::Fifo => assert_eq!(t[2], "0", "{line}"),
            Kind::Dir | Kind::Dev(..) => {}
        }
    }
    let want: BTreeSet<String> = b.exp.keys().cloned().collect();
    assert_eq!(seen, want);
}

/// Extracts `b` with unsquashfs (as root: owners, devices, xattrs) and compares the tree.
fn extract_and_compare(b: &Built) {
    let unsquashfs = tool("unsquashfs");
    if !is_root() {
        eprintln!("SKIPPED: extraction with owners, devices and xattrs needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), &b.image);
    let out = tmp.path().join("out");
    run(Command::new(&unsquashfs)
        .arg("-no-progress")
        .arg("-d")
        .arg(&out)
        .arg(&img));
    compare_tree(
        &out,
        b,
        Check {
            dir_nlink: false,
            symlink_mtime: true,
            ..Check::ALL
        },
    );
}

/// Loop-mounts `b` (as root, when the kernel can) and compares the tree, link counts
/// included.
fn mount_and_compare(b: &Built) {
    testutil::mount_and_compare(b, "image.sqfs", "squashfs", false);
}

#[test]
fn unsquashfs_extracts_the_same_tree() {
    extract_and_compare(&sample());
}

#[test]
fn the_kernel_mounts_the_same_tree() {
    mount_and_compare(&sample());
}

/// A directory whose listing exceeds 64 KiB (an extended directory inode), inode numbers
/// far apart in one directory (hard links to files elsewhere), and data that does not
/// compress: uncompressed data blocks, fragment blocks and metadata blocks.
fn awkward() -> Built {
    let mut r = Rec::new();
    r.dir("big", m(0o755, 0, 0, 1));
    r.dir("other", m(0o755, 0, 0, 1));
    for i in 0..5000u32 {
        let name = format!("big/a-rather-long-entry-name-{:05}", (i * 7919) % 5000);
        r.fifo(&name, m(0o600, u64::from(i % 3), 0, 3));
    }
    // Files with a second name in the big directory, its last entries.
    for i in 0..40 {
        let path = format!("other/file{i}");
        let link = format!("big/zz-link{i}");
        r.file(&[&path, &link], m(0o644, 0, 0, 2), text(i, 10));
    }
    let mut rng = Rng::new(99);
    for i in 0..3 {
        r.file(&[&format!("rand{i}")], m(0o644, 0, 0, 4), rng.bytes(60_000));
    }
    r.file(&["randbig"], m(0o644, 0, 0, 5), rng.bytes(300_000));
    for i in 0..4 {
        let value = rng.bytes(3000);
        r.file(
            &[&format!("x{i}")],
            with_xattrs(m(0o644, 0, 0, 6), &[("user.random", &value)]),
            Vec::new(),
        );
    }
    r.finish()
}

#[test]
fn awkward_image_reads_back() {
    let b = awkward();
    if let Some(p) = std::env::var_os("OXKIT_SQUASHFS_DUMP") {
        std::fs::write(p, &b.image).unwrap();
    }
    let i = &b.image;
    // The xattr key/value table does not compress: its blocks carry the "uncompressed" bit.
    let id_table = u64_at(i, 56) as usize;
    let kv = u64_at(i, id_table);
    let first_id_block = u64_at(i, id_table + 16);
    let headers = meta_headers(i, kv, first_id_block);
    assert!(headers.len() >= 2, "{headers:?}");
    assert!(headers.iter().all(|h| h & 0x8000 != 0), "{headers:?}");
    extract_and_compare(&b);
    mount_and_compare(&b);
}

fn u64_at(i: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(i[at..at + 8].try_into().unwrap())
}

/// The headers of the metadata blocks from `start` to `end`.
fn meta_headers(i: &[u8], start: u64, end: u64) -> Vec<u16> {
    let (mut pos, mut n) = (start as usize, Vec::new());
    while pos < end as usize {
        let h = u16::from_le_bytes([i[pos], i[pos + 1]]);
        pos += 2 + usize::from(h & 0x7fff);
        n.push(h);
    }
    assert_eq!(
        pos as u64, end,
        "metadata blocks end where the next table starts"
    );
    n
}

fn metadata_blocks(i: &[u8], start: u64, end: u64) -> usize {
    meta_headers(i, start, end).len()
}

#[test]
fn the_tables_span_several_metadata_blocks() {
    let b = sample();
    let i = &b.image;
    let inodes = u64_at(i, 64);
    let dirs = u64_at(i, 72);
    let first_fragment_block = u64_at(i, u64_at(i, 80) as usize);
    let inode_blocks = metadata_blocks(i, inodes, dirs);
    let dir_blocks = metadata_blocks(i, dirs, first_fragment_block);
    assert!(inode_blocks >= 2, "{inode_blocks} inode table blocks");
    assert!(dir_blocks >= 2, "{dir_blocks} directory table blocks");
}

#[test]
fn same_entries_same_bytes() {
    let a = sample();
    let b = sample();
    assert!(a.image == b.image, "two builds differ");
    // The superblock: magic, mkfs time, gzip, block log, version 4.0.
    let i = &a.image;
    assert_eq!(&i[0..4], b"hsqs");
    assert_eq!(
        u32::from_le_bytes(i[8..12].try_into().unwrap()),
        EPOCH as u32
    );
    assert_eq!(u16::from_le_bytes(i[20..22].try_into().unwrap()), 1);
    assert_eq!(u16::from_le_bytes(i[22..24].try_into().unwrap()), 17);
    assert_eq!(u16::from_le_bytes(i[28..30].try_into().unwrap()), 4);
}

#[test]
fn the_image_can_start_inside_a_file() {
    let unsquashfs = tool("unsquashfs");
    let image = testutil::image_inside_a_file::<SquashfsWriter<_>>();
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), &image);
    let out = run(Command::new(&unsquashfs).arg("-lln").arg(&img));
    assert!(out.contains("squashfs-root/f"), "{out}");
}

#[test]
fn bad_content_and_bad_entries_are_refused_and_the_rest_survives() {
    let mut w = SquashfsWriter::empty(EPOCH);
    refuses_bad_entries(&mut w, 256, &text(1, 300_000));
    let meta = m(0o644, 0, 0, 0);
    w.file(&[b"d/file".as_slice()], &meta, 4, &mut &b"good"[..])
        .unwrap();
    testutil::named(w.dir(b"d/file/sub", &meta), "d/file/sub", "parent");

    let image = w.finish().unwrap().into_inner();
    let unsquashfs = tool("unsquashfs");
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), &image);
    let out = run(Command::new(&unsquashfs).arg("-lln").arg(&img));
    let names: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    assert_eq!(
        names,
        ["squashfs-root", "squashfs-root/d", "squashfs-root/d/file"],
        "{out}"
    );
    let dest = tmp.path().join("out");
    run(Command::new(&unsquashfs)
        .arg("-no-progress")
        .arg("-d")
        .arg(&dest)
        .arg(&img));
    assert_eq!(std::fs::read(dest.join("d/file")).unwrap(), b"good");
}

#[test]
fn an_empty_image_is_valid() {
    let unsquashfs = tool("unsquashfs");
    let image = SquashfsWriter::empty(0).image();
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), &image);
    let out = run(Command::new(&unsquashfs).arg("-lln").arg(&img));
    assert_eq!(out.lines().count(), 1, "{out}");
    let out = run(Command::new(&unsquashfs).arg("-s").arg(&img));
    assert!(out.contains("Number of inodes 1"), "{out}");
}

fn mksquashfs_size(mksquashfs: &Path, src: &Path, img: &Path, extra: &[&str]) -> (u64, f64) {
    let t = Instant::now();
    run(Command::new(mksquashfs)
        .arg(src)
        .arg(img)
        .args(["-comp", "gzip", "-noappend", "-all-root", "-no-progress"])
        .args(extra));
    let secs = t.elapsed().as_secs_f64();
    (std::fs::metadata(img).unwrap().len(), secs)
}

#[test]
fn size_is_close_to_mksquashfs() {
    let (unsquashfs, mksquashfs) = (tool("unsquashfs"), tool("mksquashfs"));
    let b = sample();
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), &b.image);
    let tree = tmp.path().join("tree");
    // Without xattrs and devices so that it works unprivileged too; the files are the bulk.
    run(Command::new(&unsquashfs)
        .args(["-no-progress", "-no-xattrs", "-d"])
        .arg(&tree)
        .arg(&img)
        .args(["data", "many", "bin", "etc"]));
    let mut w = SquashfsWriter::empty(EPOCH);
    add_host_tree(&mut w, &tree, "");
    let ours = w.image().len() as u64;
    let (theirs, _) = mksquashfs_size(&mksquashfs, &tree, &tmp.path().join("ref.sqfs"), &[]);
    let ratio = ours as f64 / theirs as f64;
    eprintln!("oxkit {ours} bytes, mksquashfs {theirs} bytes: ratio {ratio:.3}");
    assert!(ratio < 1.5, "ours {ours} vs mksquashfs {theirs}");
}

/// A benchmark on a real tree: `OXKIT_SQUASHFS_BENCH=/usr/lib/python3 cargo test --release
/// -p oxkit-assembly --lib squashfs::tests::bench -- --ignored --nocapture`.
#[test]
#[ignore = "a benchmark: set OXKIT_SQUASHFS_BENCH to a directory"]
fn bench() {
    let Some(src) = std::env::var_os("OXKIT_SQUASHFS_BENCH").map(PathBuf::from) else {
        eprintln!("SKIPPED: set OXKIT_SQUASHFS_BENCH");
        return;
    };
    let (unsquashfs, mksquashfs) = (tool("unsquashfs"), tool("mksquashfs"));
    let tmp = tempfile::tempdir().unwrap();
    let ours_path = tmp.path().join("ours.sqfs");
    let t = Instant::now();
    let f = std::fs::File::create(&ours_path).unwrap();
    let mut w = SquashfsWriter::new(BufWriter::new(f), EPOCH).unwrap();
    let input = add_host_tree(&mut w, &src, "");
    w.finish()
        .unwrap()
        .into_inner()
        .unwrap()
        .sync_all()
        .unwrap();
    let ours_secs = t.elapsed().as_secs_f64();
    let ours = std::fs::metadata(&ours_path).unwrap().len();
    let (one, one_secs) = mksquashfs_size(
        &mksquashfs,
        &src,
        &tmp.path().join("one.sqfs"),
        &["-processors", "1"],
    );
    let (all, all_secs) = mksquashfs_size(&mksquashfs, &src, &tmp.path().join("all.sqfs"), &[]);
    let (nodup, nodup_secs) = mksquashfs_size(
        &mksquashfs,
        &src,
        &tmp.path().join("nodup.sqfs"),
        &["-processors", "1", "-no-duplicates"],
    );
    eprintln!("input: {input} bytes of file data in {}", src.display());
    eprintln!("oxkit:                         {ours} bytes in {ours_secs:.2}s");
    eprintln!("mksquashfs -processors 1:      {one} bytes in {one_secs:.2}s");
    eprintln!("mksquashfs (all cores):        {all} bytes in {all_secs:.2}s");
    eprintln!("mksquashfs -p 1 -no-duplicates: {nodup} bytes in {nodup_secs:.2}s");
    eprintln!("ratio vs mksquashfs: {:.3}", ours as f64 / one as f64);
    let dest = tmp.path().join("out");
    run(Command::new(&unsquashfs)
        .args(["-no-progress", "-d"])
        .arg(&dest)
        .arg(&ours_path));
    assert_same_tree(&src, &dest);
}

#[test]
fn listing_headers_split_where_the_format_needs() {
    let mut t = Tables::default();
    let mut z = Zlib::new();
    let names: Vec<Vec<u8>> = (0..600).map(|i| format!("n{i:04}").into_bytes()).collect();
    // 300 inodes in the first inode block, one numbered far away, 299 in another block.
    let entries: Vec<(&[u8], u64, u32, u16)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let (block, ino) = match i {
                0..300 => (0u64, 10 + i as u32),
                300 => (0, 100_000),
                _ => (0x1234, 400 + i as u32),
            };
            (n.as_slice(), (block << 16) | (i as u64 % 1000), ino, T_FIFO)
        })
        .collect();
    let l = t.listing(&mut z, &entries).unwrap();
    assert_eq!((l.block, l.offset, l.index_count), (0, 0, 0));
    let raw = &t.dirs.buf;
    assert_eq!(raw.len(), l.len as usize);
    let u32_at = |at: usize| u32::from_le_bytes(raw[at..at + 4].try_into().unwrap());
    let (mut pos, mut headers, mut seen) = (0, Vec::new(), 0usize);
    while pos < raw.len() {
        let count = u32_at(pos) as usize + 1;
        headers.push((count, u32_at(pos + 4), u32_at(pos + 8)));
        pos += 12;
        for _ in 0..count {
            let off = u16::from_le_bytes([raw[pos], raw[pos + 1]]);
            let delta = i16::from_le_bytes([raw[pos + 2], raw[pos + 3]]);
            let name_len = usize::from(u16::from_le_bytes([raw[pos + 6], raw[pos + 7]])) + 1;
            let (name, r, ino, _) = entries[seen];
            assert_eq!(&raw[pos + 8..pos + 8 + name_len], name);
            assert_eq!(u64::from(off), r & 0xffff);
            assert_eq!(
                i64::from(headers.last().unwrap().2) + i64::from(delta),
                i64::from(ino)
            );
            pos += 8 + name_len;
            seen += 1;
        }
    }
    assert_eq!(seen, entries.len());
    assert_eq!(
        headers,
        [
            (256, 0, 10),
            (44, 0, 266),
            (1, 0, 100_000),
            (256, 0x1234, 701),
            (43, 0x1234, 957),
        ]
    );
}

/// Files with the same bytes share their data, as `mksquashfs`'s do: a copy of a large file
/// and of a small one adds no data, and every name reads back whole (through `unsquashfs`
/// and the kernel). A copy written last, then dropped, leaves nothing after the image in the
/// file.
#[test]
fn identical_files_share_their_data() {
    // Random bytes: a copy not shared would add its whole size.
    let big = Rng::new(7).bytes(400_000);
    let small = Rng::new(8).bytes(5000);
    let build = |copies: bool| {
        let mut r = Rec::new();
        r.dir("d", m(0o755, 0, 0, 1));
        r.file(&["d/a"], m(0o644, 0, 0, 2), big.clone());
        r.file(&["d/s"], m(0o644, 0, 0, 2), small.clone());
        // More than a fragment block of other small files: the copy of `s` would go to
        // another fragment block, where compression cannot refer back to it.
        for i in 0..30u64 {
            r.file(
                &[format!("d/f{i:02}").as_str()],
                m(0o644, 0, 0, 2),
                Rng::new(100 + i).bytes(5000),
            );
        }
        if copies {
            r.file(&["d/b"], m(0o600, 1, 1, 3), big.clone());
            r.file(&["d/t"], m(0o600, 1, 1, 3), small.clone());
        }
        r.file(&["d/z"], m(0o644, 0, 0, 4), text(9, 200_000));
        r.finish()
    };
    let (one, two) = (build(false), build(true));
    let used = |b: &Built| u64::from_le_bytes(b.image[40..48].try_into().unwrap());
    assert!(
        used(&two) < used(&one) + 1024,
        "the copies added data: {} bytes against {}",
        used(&two),
        used(&one)
    );
    extract_and_compare(&two);
    mount_and_compare(&two);

    // Through a file, as `oxkit build` writes it, with the copy last.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("image.sqfs");
    let out = BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut w =
        <SquashfsWriter<_> as crate::bootsplit::RootImage>::create(out, EPOCH, &m(0o755, 0, 0, 1))
            .unwrap();
    for name in ["a", "b"] {
        w.file(
            &[name.as_bytes()],
            &m(0o644, 0, 0, 2),
            big.len() as u64,
            &mut &big[..],
        )
        .unwrap();
    }
    crate::bootsplit::RootImage::finish_image(w).unwrap();
    let image = std::fs::read(&path).unwrap();
    let used = u64::from_le_bytes(image[40..48].try_into().unwrap());
    assert_eq!(
        image.len() as u64,
        used.next_multiple_of(4096),
        "bytes past the image"
    );
    let listing = run(Command::new(tool("unsquashfs")).arg("-lln").arg(&path));
    assert_eq!(listing.matches(" 400000 ").count(), 2, "{listing}");
}

/// The bytes do not depend on how many blocks are compressed at once: neither a large file's
/// blocks nor the fragment blocks (more than two batches of them, around a large file).
#[test]
fn the_bytes_do_not_depend_on_the_number_of_cores() {
    let build = |compressors: usize| {
        let mut r = Rec::new();
        r.w.set_compressors(compressors);
        r.dir("d", m(0o755, 0, 0, 1));
        // 70 KB each: one per fragment block.
        for i in 0..20u64 {
            let name = format!("d/a{i:02}");
            r.file(&[name.as_str()], m(0o644, 0, 0, 2), text(200 + i, 70_000));
        }
        r.file(&["d/big"], m(0o644, 0, 0, 2), text(300, 1_000_000));
        for i in 0..21u64 {
            let name = format!("d/b{i:02}");
            r.file(&[name.as_str()], m(0o644, 0, 0, 2), text(400 + i, 70_000));
        }
        r.finish()
    };
    let one = build(1);
    let fragments = u32::from_le_bytes(one.image[16..20].try_into().unwrap());
    assert_eq!(fragments, 41);
    for n in [2, 3, 16] {
        assert!(build(n).image == one.image, "{n} compressors: other bytes");
    }
    extract_and_compare(&one);
}
