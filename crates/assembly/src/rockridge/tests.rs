//! The ISO 9660 writer against the reference readers: libisofs through `xorriso`/`osirrox`
//! (Rock Ridge extraction and its checks) and `isoinfo` from cdrkit (descriptors, the Joliet
//! tree), both installed by `scripts/install-deps`. The kernel on these machines has no
//! ISO 9660 driver, so no mount.

use std::collections::BTreeSet;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

use oxkit_testkit::{Rng, require_tool_from};

use super::*;
use crate::imagefs::testutil::{self, Built, Check, EPOCH, compare_tree, m, run};

type Rec = testutil::Rec<IsoRootWriter<Cursor<Vec<u8>>>>;

fn xorriso() -> PathBuf {
    require_tool_from("xorriso", "xorriso")
}

fn isoinfo() -> PathBuf {
    require_tool_from("isoinfo", "genisoimage")
}

fn text(seed: u64, len: usize) -> Vec<u8> {
    testutil::text("iso", "rock ridge", seed, len)
}

/// Every kind of entry and the edges of the format.
fn sample() -> Built {
    let mut r = Rec::new();
    r.root(m(0o755, 0, 0, 1_600_000_000));
    r.dir("etc", m(0o755, 0, 0, 1_650_000_000));
    r.dir("dev", m(0o755, 0, 0, 1_650_000_000));
    r.dir("tmp", m(0o1777, 0, 0, 1_650_000_001));
    r.dir("srv", m(0o750, 1000, 4_000_000_000, 1_650_000_002));
    let mut deep = String::new();
    for i in 0..11 {
        if !deep.is_empty() {
            deep.push('/');
        }
        deep.push_str(&format!("level{i}"));
        r.dir(&deep, m(0o700, 0, 0, 1_650_000_003));
    }
    r.file(
        &[format!("{deep}/bottom.txt").as_str()],
        m(0o600, 0, 0, 5),
        text(1, 10),
    );
    r.file(
        &["etc/hostname"],
        m(0o644, 0, 0, 1_650_000_004),
        b"linuxkit\n".to_vec(),
    );
    r.file(&["etc/empty"], m(0o644, 0, 0, 7), Vec::new());
    r.file(
        &["etc/big.bin"],
        m(0o644, 0, 0, 8),
        Rng::new(3).bytes(3 * 2048 + 5),
    );
    r.file(
        &["etc/passwd", "etc/passwd.link"],
        m(0o4755, 12, 34, 9),
        text(2, 5000),
    );
    // Names the primary tree has to shorten, upper-case and tell apart.
    r.file(&["etc/a.b.c"], m(0o644, 0, 0, 10), b"1".to_vec());
    r.file(&["etc/A.B.C"], m(0o644, 0, 0, 10), b"2".to_vec());
    r.file(&["etc/A_B.C"], m(0o644, 0, 0, 10), b"3".to_vec());
    let long = "n".repeat(255);
    r.file(
        &[format!("etc/{long}").as_str()],
        m(0o644, 0, 0, 11),
        b"long".to_vec(),
    );
    r.file(
        &["etc/gr\u{fc}\u{df}e \u{263a}.txt"],
        m(0o644, 0, 0, 12),
        b"utf8".to_vec(),
    );
    r.file(&["etc/future"], m(0o644, 0, 0, EPOCH + 1000), b"f".to_vec());
    r.symlink("etc/abs", "/etc/hostname", m(0o777, 0, 0, 13));
    r.symlink("etc/rel", "../etc/./hostname", m(0o777, 0, 0, 14));
    // Over 255 bytes, one component too (libisofs reads targets of up to 1024 bytes).
    let far = format!("/{}/{}", "x".repeat(300), "y/".repeat(300));
    r.symlink("etc/far", far.trim_end_matches('/'), m(0o777, 0, 0, 15));
    r.device("dev/null", false, (1, 3), m(0o666, 0, 0, 16));
    r.device("dev/sda", true, (8, 0), m(0o660, 0, 6, 17));
    r.fifo("dev/initctl", m(0o600, 0, 0, 18));
    // More records than one directory block holds.
    r.dir("many", m(0o755, 0, 0, 19));
    for i in 0..150 {
        r.file(
            &[format!("many/entry-with-a-long-name-{i:04}").as_str()],
            m(0o644, 0, 0, 20),
            vec![b'x'; i],
        );
    }
    r.finish()
}

/// What `osirrox` restores: all but extended attributes (the image has none), directories'
/// link counts (the extraction's own) and symlinks' mtimes (it does not set them).
const RESTORED: Check = Check {
    suid: true,
    xattrs: false,
    hard_links: true,
    dir_nlink: false,
    symlink_mtime: false,
};

/// Extracts `img` to `dest` with `osirrox`, hard links restored; its messages.
fn extract(img: &Path, dest: &Path) -> String {
    run(Command::new(xorriso())
        .args([
            "-abort_on",
            "FAILURE",
            "-osirrox",
            "on",
            "-hardlinks",
            "on",
            "-indev",
        ])
        .arg(img)
        .args(["-extract", "/"])
        .arg(dest))
}

fn write_image(dir: &Path, image: &[u8]) -> PathBuf {
    testutil::write_image(dir, "image.iso", image)
}

#[test]
fn descriptors_say_rock_ridge_and_joliet() {
    let b = sample();
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), &b.image);
    let out = run(Command::new(isoinfo()).arg("-d").arg("-i").arg(&img));
    assert!(out.contains("Volume id: LinuxKit"), "{out}");
    assert!(out.contains("Joliet with UCS level 3 found"), "{out}");
    assert!(
        out.contains("Rock Ridge signatures version 1 found"),
        "{out}"
    );
    let blocks = b.image.len() / BLOCK;
    assert!(out.contains(&format!("Volume size is: {blocks}")), "{out}");
}

/// libisofs (through `osirrox`) reads the Rock Ridge tree back: names, types, modes with
/// setuid, owners, mtimes, contents, symlink targets, hard links (from `PX` inode numbers),
/// fifos. Device files are read from its listing (creating them may not be allowed here).
#[test]
fn osirrox_extracts_the_same_tree() {
    let b = sample();
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), &b.image);
    let dest = tmp.path().join("out");
    let out = extract(&img, &dest);
    assert!(!out.contains("SORRY") && !out.contains("WARNING"), "{out}");
    let mut without_devices = Built {
        image: Vec::new(),
        exp: b.exp.clone(),
        root: b.root.clone(),
    };
    without_devices
        .exp
        .retain(|path, _| path != "dev/null" && path != "dev/sda");
    compare_tree(&dest, &without_devices, RESTORED);
    let listing = run(Command::new(xorriso())
        .args(["-indev"])
        .arg(&img)
        .args(["-lsl", "/dev"]));
    let line = |name: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(&format!("'{name}'")))
            .unwrap_or_else(|| panic!("{name} not listed: {listing}"))
            .split_whitespace()
            .take(5)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(line("null"), "crw-rw-rw- 1 0 0 1,3");
    assert_eq!(line("sda"), "brw-rw---- 1 0 6 8,0");
}

/// The Joliet tree holds every name of up to 101 characters, under that name.
#[test]
fn joliet_names_are_the_names() {
    let b = sample();
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), &b.image);
    let out = run(Command::new(isoinfo()).args(["-J", "-f", "-i"]).arg(&img));
    let found: BTreeSet<String> = out
        .lines()
        .map(|l| l.trim_start_matches('/').trim_end_matches(";1").to_string())
        .collect();
    let mut checked = 0;
    for path in b.exp.keys() {
        if path.is_ascii() && path.split('/').all(|p| p.len() <= 101) {
            assert!(found.contains(path), "{path} not in the Joliet tree: {out}");
            checked += 1;
        }
    }
    assert!(checked > 150, "{checked}");
}

/// Files of 4 GiB or more are refused before any byte is read; a file whose content ends
/// early or runs long is refused with the writer still usable, and nothing of it is kept.
#[test]
fn bad_entries_are_refused_and_the_rest_survives() {
    let mut r = Rec::new();
    let meta = m(0o644, 0, 0, 1);
    r.dir("d", meta.clone());
    let w = &mut r.w;
    let e = w.file(
        &[b"d/huge".as_slice()],
        &meta,
        1 << 32,
        &mut std::io::empty(),
    );
    assert!(
        e.as_ref()
            .unwrap_err()
            .to_string()
            .contains("d/huge: 4294967296 bytes"),
        "{e:?}"
    );
    let e = w.file(&[b"d/short".as_slice()], &meta, 10, &mut &b"abc"[..]);
    assert!(
        matches!(
            e,
            Err(ImageError::Short {
                got: 3,
                want: 10,
                ..
            })
        ),
        "{e:?}"
    );
    let e = w.file(&[b"d/long".as_slice()], &meta, 3, &mut &b"abcd"[..]);
    assert!(matches!(e, Err(ImageError::Long { want: 3, .. })), "{e:?}");
    let e = w.file(&[b"nowhere/f".as_slice()], &meta, 1, &mut &b"a"[..]);
    assert!(matches!(e, Err(ImageError::NoParent { .. })), "{e:?}");
    let e = w.dir(format!("d/{}", "n".repeat(256)).as_bytes(), &meta);
    assert!(e.unwrap_err().to_string().contains("longer than 255"));
    let e = w.symlink(b"d/l", b"", &meta);
    assert!(e.unwrap_err().to_string().contains("d/l: a symlink target"));
    let e = w.fifo(b"d/p", &m(0o644, 1 << 33, 0, 1));
    assert!(e.unwrap_err().to_string().contains("uid 8589934592"));
    // What follows lands where the refused files would have.
    r.file(&["d/ok"], meta.clone(), text(5, 3000));
    let b = r.finish();
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), &b.image);
    let dest = tmp.path().join("out");
    extract(&img, &dest);
    compare_tree(&dest, &b, RESTORED);
    // `d/ok`'s data starts right after the reserved blocks: the refused files left none.
    let lba = run(Command::new(xorriso()).arg("-indev").arg(&img).args([
        "-find",
        "/d/ok",
        "-exec",
        "report_lba",
    ]));
    assert!(lba.contains(&format!(" {DATA_LBA} ,")), "{lba}");
}

#[test]
fn same_entries_same_bytes() {
    assert!(sample().image == sample().image);
}

/// The primary tree's own names (what a reader without Rock Ridge sees) are ISO 9660 names
/// under `-l`: upper-case d-characters, a name and extension of up to 30 together, `;1` on
/// files, unique within their directory even where the long names shorten alike.
#[test]
fn iso_names_are_what_iso_9660_allows() {
    let b = sample();
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), &b.image);
    let out = run(Command::new(isoinfo()).args(["-l", "-i"]).arg(&img));
    let mut dir = String::new();
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    for line in out.lines() {
        if let Some(d) = line.strip_prefix("Directory listing of ") {
            dir = d.to_string();
            continue;
        }
        let Some(name) = line.split("]  ").nth(1).map(str::trim_end) else {
            continue;
        };
        if name == "." || name == ".." {
            continue;
        }
        let (stem, version) = name.split_once(';').unwrap_or((name, ""));
        let is_file = !line.starts_with('d');
        assert_eq!(version, if is_file { "1" } else { "" }, "{dir}{name}");
        assert!(stem.replace('.', "").len() <= 31, "{dir}{name}");
        assert!(
            stem.bytes()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_' || c == b'.'),
            "{dir}{name}"
        );
        assert!(
            stem.matches('.').count() <= usize::from(is_file),
            "{dir}{name}"
        );
        assert!(
            seen.insert((dir.clone(), stem.to_string())),
            "{dir}{name} twice"
        );
    }
    for want in ["HOSTNAME.;1", "PASSWD.LINK;1", "BIG.BIN;1", "A_B.C;1"] {
        assert!(out.contains(&format!("]  {want}")), "{want}: {out}");
    }
    assert!(seen.len() > 180, "{}", seen.len());
}

/// A symlink whose `SL` entries do not fit in one continuation area goes into a chain of
/// them; `isoinfo` follows the chain. (libisofs reads targets of up to 1024 bytes only, and
/// isoinfo up to about 2 KiB.)
#[test]
fn a_long_symlink_target_spans_continuation_areas() {
    let mut r = Rec::new();
    let target = format!("/{}", "component/".repeat(200))
        .trim_end_matches('/')
        .to_string();
    // Over 2048 bytes of component records: two areas.
    assert!(target.len() > 1900);
    r.symlink("far", &target, m(0o777, 0, 0, 1));
    r.file(&["after"], m(0o644, 0, 0, 2), b"x".to_vec());
    let b = r.finish();
    // The CE entries: the root's (for ER), the symlink record's, and the chain's.
    let ce = b.image.windows(4).filter(|w| w == b"CE\x1c\x01").count();
    assert_eq!(ce, 3);
    let tmp = tempfile::tempdir().unwrap();
    let img = write_image(tmp.path(), &b.image);
    let out = run(Command::new(isoinfo()).args(["-R", "-l", "-i"]).arg(&img));
    assert!(out.contains(&format!("far -> {target}\n")), "{out}");
    assert!(
        out.contains("  after \n") || out.contains("  after\n"),
        "{out}"
    );
}
