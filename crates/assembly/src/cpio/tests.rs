//! The cpio writer against GNU cpio, the reference reader.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};

use super::*;

fn meta(mode: u32) -> CpioMeta {
    CpioMeta {
        mode,
        uid: 0,
        gid: 0,
        mtime: 1_000,
    }
}

/// An archive with every kind of entry.
fn sample() -> Vec<u8> {
    let mut w = CpioWriter::new(Vec::new(), 500);
    w.dir(b"bin", &meta(0o755)).unwrap();
    w.dir(b"etc", &meta(0o700)).unwrap();
    w.dir(b"dev", &meta(0o755)).unwrap();
    w.file(
        &[b"etc/motd".as_slice()],
        &CpioMeta {
            mode: 0o640,
            uid: 1000,
            gid: 50,
            mtime: 100,
        },
        6,
        &mut &b"hello\n"[..],
    )
    .unwrap();
    let body = vec![b'x'; 70_001];
    w.file(
        &[
            b"bin/a".as_slice(),
            b"bin/b".as_slice(),
            b"bin/c".as_slice(),
        ],
        &meta(0o4755),
        body.len() as u64,
        &mut &body[..],
    )
    .unwrap();
    w.file(&[b"etc/empty".as_slice()], &meta(0o600), 0, &mut &b""[..])
        .unwrap();
    w.symlink(b"bin/sh", b"a", &meta(0o777)).unwrap();
    w.device(b"dev/null", false, (1, 3), &meta(0o666)).unwrap();
    w.device(b"dev/loop0", true, (7, 0), &meta(0o660)).unwrap();
    w.fifo(b"dev/fifo", &meta(0o600)).unwrap();
    w.finish().unwrap()
}

fn gnu_cpio(args: &[&str], input: &[u8], dir: &std::path::Path) -> String {
    let mut child = Command::new("cpio")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("GNU cpio is installed (scripts/install-deps)");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "cpio {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn gnu_cpio_lists_every_entry_in_order() {
    let archive = sample();
    assert_eq!(archive.len() % 512, 0, "padded to a block");
    let dir = tempfile::tempdir().unwrap();
    let listed = gnu_cpio(&["-t", "--quiet"], &archive, dir.path());
    let names: Vec<&str> = listed.lines().collect();
    assert_eq!(
        names,
        [
            "bin",
            "etc",
            "dev",
            "etc/motd",
            "bin/a",
            "bin/b",
            "bin/c",
            "etc/empty",
            "bin/sh",
            "dev/null",
            "dev/loop0",
            "dev/fifo"
        ]
    );
    let verbose = gnu_cpio(
        &["-tv", "--quiet", "--numeric-uid-gid"],
        &archive,
        dir.path(),
    );
    let motd = verbose.lines().find(|l| l.ends_with("etc/motd")).unwrap();
    assert!(motd.starts_with("-rw-r-----   1 1000     50"), "{motd}");
    let null = verbose.lines().find(|l| l.ends_with("dev/null")).unwrap();
    assert!(
        null.starts_with("crw-rw-rw-") && null.contains("1,   3"),
        "{null}"
    );
    let sh = verbose.lines().find(|l| l.contains("bin/sh")).unwrap();
    assert!(
        sh.starts_with("lrwxrwxrwx") && sh.ends_with("bin/sh -> a"),
        "{sh}"
    );
    let a = verbose.lines().find(|l| l.ends_with("bin/a")).unwrap();
    assert!(a.starts_with("-rwsr-xr-x   3"), "{a}");
}

#[test]
fn gnu_cpio_extracts_contents_hard_links_and_metadata() {
    let archive = sample();
    let dir = tempfile::tempdir().unwrap();
    let root = rustix::process::geteuid().is_root();
    let mut args = vec![
        "-i",
        "--quiet",
        "--make-directories",
        "--preserve-modification-time",
    ];
    if !root {
        args.push("--no-preserve-owner");
    }
    // Devices need root; without it, list-only checks above cover them.
    if root {
        gnu_cpio(&args, &archive, dir.path());
    } else {
        let filtered = {
            let mut w = CpioWriter::new(Vec::new(), 500);
            w.dir(b"bin", &meta(0o755)).unwrap();
            let body = vec![b'x'; 70_001];
            w.file(
                &[
                    b"bin/a".as_slice(),
                    b"bin/b".as_slice(),
                    b"bin/c".as_slice(),
                ],
                &meta(0o4755),
                body.len() as u64,
                &mut &body[..],
            )
            .unwrap();
            w.finish().unwrap()
        };
        gnu_cpio(&args, &filtered, dir.path());
    }
    let p = dir.path();
    let a = std::fs::metadata(p.join("bin/a")).unwrap();
    let b = std::fs::metadata(p.join("bin/b")).unwrap();
    let c = std::fs::metadata(p.join("bin/c")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.ino(), c.ino());
    assert_eq!(a.nlink(), 3);
    assert_eq!(a.len(), 70_001);
    assert_eq!(std::fs::read(p.join("bin/c")).unwrap(), vec![b'x'; 70_001]);
    assert_eq!(a.permissions().mode() & 0o7777, 0o4755);
    // The mtime was clamped to the epoch (500), not kept at 1000.
    assert_eq!(a.mtime(), 500);
    if root {
        assert_eq!(std::fs::read(p.join("etc/motd")).unwrap(), b"hello\n");
        let motd = std::fs::metadata(p.join("etc/motd")).unwrap();
        assert_eq!((motd.uid(), motd.gid(), motd.mtime()), (1000, 50, 100));
        assert_eq!(std::fs::metadata(p.join("etc/empty")).unwrap().len(), 0);
        assert_eq!(
            std::fs::read_link(p.join("bin/sh")).unwrap(),
            std::path::PathBuf::from("a")
        );
        let null = std::fs::symlink_metadata(p.join("dev/null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
        let lp = std::fs::symlink_metadata(p.join("dev/loop0")).unwrap();
        assert!(lp.file_type().is_block_device());
        assert!(
            std::fs::symlink_metadata(p.join("dev/fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
    }
}

#[test]
fn output_is_deterministic_and_inodes_are_numbered_in_order() {
    assert_eq!(sample(), sample());
    let archive = sample();
    // First header: ino 1, a directory 0755, uid/gid 0, nlink 2, mtime clamped to 500,
    // size 0, devices 0, name size 4, check 0.
    let fields: String = [1u32, 0o40755, 0, 0, 2, 500, 0, 0, 0, 0, 0, 4, 0]
        .iter()
        .map(|f| format!("{f:08X}"))
        .collect();
    assert_eq!(&archive[..110], format!("070701{fields}").as_bytes());
    assert_eq!(&archive[110..114], b"bin\0");
}

#[test]
fn refusals_name_the_entry() {
    let mut w = CpioWriter::new(Vec::new(), 0);
    let e = w
        .file(
            &[b"big".as_slice()],
            &meta(0o644),
            1 << 32,
            &mut std::io::empty(),
        )
        .unwrap_err();
    assert!(e.to_string().starts_with("big: 4294967296 bytes"), "{e}");
    let e = w
        .dir(
            b"d",
            &CpioMeta {
                uid: 1 << 40,
                ..meta(0o755)
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("uid"), "{e}");
    let e = w
        .file(&[b"short".as_slice()], &meta(0o644), 10, &mut &b"abc"[..])
        .unwrap_err();
    assert!(e.to_string().contains("ended after 3 of 10"), "{e}");
    let mut w = CpioWriter::new(Vec::new(), 0);
    let e = w
        .file(&[b"long".as_slice()], &meta(0o644), 2, &mut &b"abc"[..])
        .unwrap_err();
    assert!(e.to_string().contains("longer than 2"), "{e}");
    assert!(w.symlink(b"l", b"", &meta(0o777)).is_err());
}
