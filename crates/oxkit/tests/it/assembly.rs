//! `oxkit build` (LinuxKit's image assembly) end to end: every corpus YAML through `--dry-run`,
//! real builds from images made with `oxkit image import` (busybox, and a fake kernel image
//! with `kernel`, `kernel.tar` and microcode), the layout checked through GNU tar and GNU cpio,
//! reproducibility, the up-to-date shortcut, a generated bundle run by runc, bad input
//! refused without leaving anything behind, and the trust policy against a real registry.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::{
    Env, Registry, busybox_rootfs, cosign, cosign_sign, host_arch, require_tool, run_fail, run_ok,
};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/tests/fixtures/linuxkit-corpus")
}

fn yml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            out.push(p);
        }
    }
}

fn sha256(path: &Path) -> String {
    run_ok(Command::new("sha256sum").arg(path))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// `oxkit image import DIR REF [ARGS]`.
fn import(env: &Env, rootfs: &Path, reference: &str, args: &[&str]) {
    run_ok(
        env.oxkit()
            .args(["image", "import"])
            .args(args)
            .arg(rootfs)
            .arg(reference),
    );
}

/// A kernel image: `kernel` (deterministic bytes), `kernel.tar` (modules, and a file under
/// boot/ that the initrd leaves out) and `intel-ucode.cpio`.
fn kernel_image(env: &Env, reference: &str, with_kernel: bool) {
    let dir = env.path().join(format!("kernel-src-{}", with_kernel));
    let modules = dir.join("modules");
    std::fs::create_dir_all(modules.join("lib/modules/6.1.0/kernel/fs")).unwrap();
    std::fs::create_dir_all(modules.join("boot")).unwrap();
    std::fs::write(
        modules.join("lib/modules/6.1.0/kernel/fs/overlay.ko"),
        b"not really a module\n",
    )
    .unwrap();
    std::fs::write(modules.join("boot/System.map"), b"ffffffff T _text\n").unwrap();
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    if with_kernel {
        let kernel: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(root.join("kernel"), kernel).unwrap();
    }
    std::fs::write(root.join("intel-ucode.cpio"), b"070701 pretend microcode").unwrap();
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&modules)
            .args(["--owner=0", "--group=0", "-cf"])
            .arg(root.join("kernel.tar"))
            .args(["lib", "boot"]),
    );
    import(env, &root, reference, &[]);
}

/// The images of a small system: a kernel, an init image, a service image with a LinuxKit
/// label and a plain busybox image with a default command.
fn images(env: &Env) {
    let rootfs = busybox_rootfs(&host_arch());
    kernel_image(env, "test/kernel:1", true);
    import(env, &rootfs, "test/init:1", &[]);
    import(
        env,
        &rootfs,
        "test/svc:1",
        &[
            "--label",
            r#"org.mobyproject.config={"capabilities":["CAP_NET_ADMIN"],"binds":["/run:/run"],"readonly":true}"#,
            "--cmd",
            r#"["/bin/sleep","100"]"#,
        ],
    );
    import(
        env,
        &rootfs,
        "test/busybox:1",
        &[
            "--cmd",
            r#"["/bin/sh","-c","echo hello"]"#,
            "-e",
            "PATH=/bin:/usr/bin",
        ],
    );
}

const SYSTEM: &str = r#"kernel:
  image: test/kernel:1
  cmdline: "console=ttyS0 quiet"
  ucode: intel-ucode.cpio
init:
  - test/init:1
onboot:
  - name: hello
    image: test/busybox:1
  - name: hello
    image: test/busybox:1
    command: ["/bin/echo", "again"]
onshutdown:
  - name: bye
    image: test/busybox:1
services:
  - name: svc
    image: test/svc:1
    capabilities.add: [CAP_SYS_ADMIN]
    uid: svc
files:
  - path: etc/motd
    contents: "welcome\n"
    mode: "0644"
  - path: etc/secret/key
    source: secret.txt
    uid: svc
  - path: etc/oxkit.yml
    metadata: yaml
  - path: var/lib/link
    symlink: /etc/motd
"#;

fn write_system(env: &Env) -> PathBuf {
    let yml = env.path().join("system.yml");
    std::fs::write(&yml, SYSTEM).unwrap();
    std::fs::write(env.path().join("secret.txt"), b"s3cret\n").unwrap();
    yml
}

/// Extracts a tar with GNU tar (numeric owners, as root keeps them).
fn untar(tar: &Path, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    run_ok(
        Command::new("tar")
            .args(["--numeric-owner", "-xf"])
            .arg(tar)
            .arg("-C")
            .arg(into),
    );
}

fn listing(dir: &Path) -> BTreeSet<String> {
    let out = run_ok(Command::new("find").arg(".").current_dir(dir));
    out.lines()
        .filter(|l| *l != ".")
        .map(|l| l.trim_start_matches("./").to_string())
        .collect()
}

fn json_file(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// `oxkit build --format FORMATS --dir ENV/DIR EXTRA... YML`.
fn build_in(env: &Env, yml: &Path, formats: &str, dir: &str, extra: &[&str]) -> Command {
    let mut c = env.oxkit();
    c.args(["build", "--format", formats, "--dir"])
        .arg(env.path().join(dir))
        .args(extra)
        .arg(yml);
    c
}

/// Whether a `build --json` said its outputs were up to date (nothing written).
fn up_to_date(json: &str) -> bool {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["upToDate"].as_bool().unwrap()
}

/// A failed build wrote nothing into `dir`.
fn nothing_in(dir: &Path) {
    assert!(
        !dir.exists() || std::fs::read_dir(dir).unwrap().next().is_none(),
        "a failed build left files in {}",
        dir.display()
    );
}

/// xorriso's report of `iso`'s El Torito catalog: it has exactly one boot image, for
/// `platform` (`UEFI`, `BIOS`). The report.
fn one_el_torito_entry(iso: &Path, platform: &str) -> String {
    let report = run_ok(
        Command::new(require_tool("xorriso"))
            .arg("-indev")
            .arg(iso)
            .args(["-report_el_torito", "plain"]),
    );
    let entries: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("El Torito boot img :"))
        .collect();
    assert!(
        entries.len() == 1 && entries[0].contains(&format!(" {platform} ")),
        "{report}"
    );
    report
}

fn no_temporaries(dir: &Path) {
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn dry_run_accepts_every_corpus_image_yaml_without_images() {
    let env = Env::new();
    let mut files = Vec::new();
    yml_files(&corpus().join("examples"), &mut files);
    yml_files(&corpus().join("test-cases"), &mut files);
    let skip = [
        "examples/static-ip.yml",
        "test-cases/000_build/091_validate_linuxkit_yaml/linuxkit.yml",
        "test-cases/000_build/070_volumes/002_rw_on_ro/test.yml",
        "080_mirrors/config.yml",
    ];
    let mut checked = 0;
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy();
        if name == "build.yml" || name == "build-file.yml" || skip.iter().any(|s| f.ends_with(s)) {
            continue;
        }
        let out = run_ok(env.oxkit().args(["build", "--dry-run"]).arg(f));
        // The merged configuration parses back to itself.
        let again = env.path().join("again.yml");
        std::fs::write(&again, &out).unwrap();
        let twice = run_ok(env.oxkit().args(["build", "--dry-run"]).arg(&again));
        assert_eq!(out, twice, "{}", f.display());
        checked += 1;
    }
    assert!(checked > 150, "checked {checked}");
    assert!(!env.store().exists(), "--dry-run must not need the store");

    // The ones LinuxKit refuses are refused, with the location.
    let e = run_fail(
        env.oxkit()
            .args(["build", "--dry-run"])
            .arg(corpus().join("examples/static-ip.yml")),
    );
    assert!(e.contains("static-ip.yml:28:7: invalid YAML"), "{e}");
    let e = run_fail(
        env.oxkit()
            .args(["build", "--dry-run"])
            .arg(corpus().join("test-cases/000_build/070_volumes/002_rw_on_ro/test.yml")),
    );
    assert!(e.contains("test.yml:8:"), "{e}");

    // Several files merge in order: the namespace tests' common.yml, then each case.
    let dir = corpus().join("test-cases/020_kernel/200_namespace");
    let out = run_ok(
        env.oxkit()
            .args(["build", "--dry-run"])
            .arg(dir.join("common.yml"))
            .arg(dir.join("010_veth/010_echo-tcp-ipv4-short-1con-single/test.yml")),
    );
    assert!(out.starts_with("kernel:\n"), "{out}");
    assert!(out.contains("onboot:"), "{out}");

    // @pkg:PATH is relative to the file that names it and becomes the package's tag.
    let pkg = env.path().join("conf/pkgs/hello");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("build.yml"), "image: hello\norg: test\n").unwrap();
    std::fs::write(pkg.join("Dockerfile"), "FROM scratch\n").unwrap();
    std::fs::write(
        env.path().join("conf/pkg.yml"),
        "onboot:\n  - name: hello\n    image: \"@pkg:pkgs/hello\"\n",
    )
    .unwrap();
    let tag = run_ok(env.oxkit().args(["pkg", "show-tag"]).arg(&pkg));
    let out = run_ok(env.oxkit().args(["build", "--dry-run", "conf/pkg.yml"]));
    assert!(out.contains(&format!("image: {}", tag.trim())), "{out}");
    std::fs::write(
        env.path().join("conf/nopkg.yml"),
        "onboot:\n  - name: hello\n    image: \"@pkg:pkgs/nothing\"\n",
    )
    .unwrap();
    let e = run_fail(env.oxkit().args(["build", "--dry-run", "conf/nopkg.yml"]));
    assert!(
        e.contains("conf/nopkg.yml:3:12: cannot resolve \"@pkg:pkgs/nothing\""),
        "{e}"
    );
}

#[test]
fn builds_kernel_initrd_and_tar_with_linuxkit_layout() {
    let env = Env::new();
    images(&env);
    let yml = write_system(&env);
    let out = env.path().join("out");
    run_ok(
        env.oxkit()
            .args([
                "build",
                "--format",
                "kernel+initrd,tar-kernel-initrd",
                "--dir",
            ])
            .arg(&out)
            .arg(&yml),
    );
    run_ok(
        env.oxkit()
            .args(["build", "-o"])
            .arg(env.path().join("system.tar"))
            .arg(&yml),
    );
    no_temporaries(&out);

    // kernel+initrd: the kernel as in the image, the cmdline, the microcode first.
    let kernel: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(std::fs::read(out.join("system-kernel")).unwrap(), kernel);
    assert_eq!(
        std::fs::read_to_string(out.join("system-cmdline")).unwrap(),
        "console=ttyS0 quiet"
    );
    let initrd = std::fs::read(out.join("system-initrd.img")).unwrap();
    let ucode = b"070701 pretend microcode";
    assert_eq!(&initrd[..ucode.len()], ucode);
    assert_eq!(&initrd[ucode.len()..ucode.len() + 2], &[0x1f, 0x8b]);

    // The tar holds the whole file system, boot/ included.
    let root = env.path().join("root");
    untar(&env.path().join("system.tar"), &root);
    let files = listing(&root);
    for want in [
        "boot/kernel",
        "boot/cmdline",
        "boot/ucode.cpio",
        "boot/System.map",
        "lib/modules/6.1.0/kernel/fs/overlay.ko",
        "bin/busybox",
        "etc/resolv.conf",
        "containers/onboot/000-hello/config.json",
        "containers/onboot/000-hello/runtime.json",
        "containers/onboot/000-hello/lower/bin/busybox",
        "containers/onboot/000-hello/tmp",
        "containers/onboot/000-hello/rootfs",
        "containers/onboot/001-hello/config.json",
        "containers/onshutdown/000-bye/config.json",
        "containers/services/svc/config.json",
        "containers/services/svc/rootfs/bin/busybox",
        "containers/services/svc/rootfs/etc/hosts",
        "etc/motd",
        "etc/secret/key",
        "etc/oxkit.yml",
        "var/lib/link",
    ] {
        assert!(files.contains(want), "{want} missing; have {files:?}");
    }
    // The same image is unpacked once: later bundles mount the first one's.
    assert!(!files.contains("containers/onboot/001-hello/lower/bin/busybox"));
    assert!(!files.contains("containers/services/svc/lower"));
    assert_eq!(std::fs::read(root.join("boot/kernel")).unwrap(), kernel);
    assert_eq!(
        std::fs::read_link(root.join("etc/resolv.conf")).unwrap(),
        PathBuf::from("/run/resolvconf/resolv.conf")
    );
    assert_eq!(
        std::fs::read_to_string(root.join("containers/services/svc/rootfs/etc/resolv.conf"))
            .unwrap(),
        "\n# no resolv.conf configured\n"
    );
    assert_eq!(
        std::fs::read(root.join("etc/secret/key")).unwrap(),
        b"s3cret\n"
    );
    let key = std::fs::metadata(root.join("etc/secret/key")).unwrap();
    // Ids by name: hello=100, hello=101, bye=102, svc=103; files default to 0600.
    assert_eq!((key.uid(), key.mode() & 0o7777), (103, 0o600));
    let secret_dir = std::fs::metadata(root.join("etc/secret")).unwrap();
    assert_eq!((secret_dir.uid(), secret_dir.mode() & 0o7777), (103, 0o700));
    let meta = std::fs::read_to_string(root.join("etc/oxkit.yml")).unwrap();
    assert!(meta.contains("image: docker.io/test/busybox:1"), "{meta}");

    // config.json: the image's command and env, the label's capabilities plus the YAML's,
    // LinuxKit's mounts and namespaces.
    let hello = json_file(&root.join("containers/onboot/000-hello/config.json"));
    assert_eq!(hello["ociVersion"], "1.2.1");
    assert_eq!(
        hello["process"]["args"],
        serde_json::json!(["/bin/sh", "-c", "echo hello"])
    );
    assert_eq!(
        hello["process"]["env"],
        serde_json::json!(["PATH=/bin:/usr/bin"])
    );
    assert_eq!(hello["root"], serde_json::json!({"path": "rootfs"}));
    let again = json_file(&root.join("containers/onboot/001-hello/config.json"));
    assert_eq!(
        again["process"]["args"],
        serde_json::json!(["/bin/echo", "again"])
    );
    let svc = json_file(&root.join("containers/services/svc/config.json"));
    assert_eq!(
        svc["process"]["capabilities"]["effective"],
        serde_json::json!(["CAP_NET_ADMIN", "CAP_SYS_ADMIN"])
    );
    assert_eq!(svc["process"]["user"]["uid"], 103);
    assert_eq!(svc["root"]["readonly"], true);
    assert!(
        svc["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["destination"] == "/run" && m["type"] == "bind")
    );
    let rt = json_file(&root.join("containers/onboot/001-hello/runtime.json"));
    assert_eq!(
        rt["mounts"][2]["options"][0],
        "lowerdir=/containers/onboot/000-hello/lower"
    );
    let rt = json_file(&root.join("containers/services/svc/runtime.json"));
    assert_eq!(
        rt["mounts"][0],
        serde_json::json!({"destination": "/containers/services/svc/rootfs", "source": "/containers/services/svc/rootfs", "options": ["bind"]})
    );

    // The initrd is everything but boot/* (the directory itself stays), read by GNU cpio.
    let cpio_root = env.path().join("cpio");
    std::fs::create_dir_all(&cpio_root).unwrap();
    let gz = env.path().join("initrd.cpio.gz");
    std::fs::write(&gz, &initrd[ucode.len()..]).unwrap();
    run_ok(Command::new("sh").arg("-c").arg(format!(
        "gzip -dc {} | cpio -i --quiet --make-directories --numeric-uid-gid --preserve-modification-time",
        gz.display()
    )).current_dir(&cpio_root));
    let in_cpio = listing(&cpio_root);
    let expected: BTreeSet<String> = files
        .iter()
        .filter(|f| !f.starts_with("boot/"))
        .cloned()
        .collect();
    assert_eq!(in_cpio, expected);
    assert_eq!(
        std::fs::read(cpio_root.join("containers/services/svc/rootfs/bin/busybox")).unwrap(),
        std::fs::read(root.join("bin/busybox")).unwrap()
    );

    // tar-kernel-initrd: the same kernel, the initrd without the microcode, and the rest.
    let kit = env.path().join("kit");
    untar(&out.join("system-initrd.tar"), &kit);
    assert_eq!(std::fs::read(kit.join("kernel")).unwrap(), kernel);
    assert_eq!(
        std::fs::read(kit.join("initrd.img")).unwrap(),
        &initrd[ucode.len()..]
    );
    assert_eq!(std::fs::read(kit.join("ucode.cpio")).unwrap(), ucode);
    assert_eq!(
        std::fs::read_to_string(kit.join("cmdline")).unwrap(),
        "console=ttyS0 quiet"
    );
}

/// Every entry under `dir` but `boot` and what it holds, with its type, permissions, owner,
/// mtime (a directory's only with `dir_mtimes`) and content (a file's bytes' digest, a link's
/// target, a device's number), as extracted. (GNU tar leaves a directory with the time of
/// extraction when the archive's files in it come long after it, as oxkit's do.)
fn tree_entries(dir: &Path, dir_mtimes: bool) -> std::collections::BTreeMap<String, String> {
    use std::os::unix::fs::FileTypeExt;
    listing(dir)
        .into_iter()
        .filter(|p| p != "boot" && !p.starts_with("boot/"))
        .map(|p| {
            let path = dir.join(&p);
            let m = std::fs::symlink_metadata(&path).unwrap();
            let t = m.file_type();
            let what = if t.is_dir() {
                "dir".to_string()
            } else if t.is_symlink() {
                format!("link {}", std::fs::read_link(&path).unwrap().display())
            } else if t.is_file() {
                format!("file {}", sha256(&path))
            } else if t.is_char_device() || t.is_block_device() {
                format!("dev {}", m.rdev())
            } else if t.is_fifo() {
                "fifo".to_string()
            } else {
                "other".to_string()
            };
            let mtime = if t.is_dir() && !dir_mtimes {
                String::new()
            } else {
                m.mtime().to_string()
            };
            let meta = format!(
                "{what} {:o} {}:{} {mtime}",
                m.mode() & 0o7777,
                m.uid(),
                m.gid()
            );
            (p, meta)
        })
        .collect()
}

/// `kernel+squashfs`, `kernel+erofs` and `kernel+iso` (LinuxKit's names: `NAME-kernel`,
/// `NAME-cmdline` and `NAME-squashfs.img`, `NAME-erofs.img` or `NAME.iso`): the kernel and
/// command line `kernel+initrd` writes, and an image of what the initrd holds, which
/// `unsquashfs`, `fsck.erofs` and `osirrox` extract to the same tree as the `tar` output
/// without `boot/*` (types, modes, owners, mtimes, contents; `osirrox` does not set symlinks'
/// mtimes nor make device files). Reproducible, and the same whether built beside the other
/// formats or alone.
#[test]
fn kernel_squashfs_and_erofs_hold_the_file_system_beside_the_kernel_and_cmdline() {
    let env = Env::new();
    images(&env);
    let yml = write_system(&env);
    let unsquashfs = require_tool("unsquashfs");
    let fsck_erofs = require_tool("fsck.erofs");
    let xorriso = require_tool("xorriso");
    let built = build_in(
        &env,
        &yml,
        "kernel+initrd,kernel+squashfs,kernel+erofs,kernel+iso",
        "out",
        &[],
    )
    .output()
    .unwrap();
    assert!(built.status.success(), "{built:?}");
    run_ok(&mut build_in(&env, &yml, "tar", "tar", &[]));
    let out = env.path().join("out");
    // Each output is announced as its writing starts, before the list of what was written.
    let said = String::from_utf8_lossy(&built.stderr);
    for file in [
        "system-initrd.img",
        "system-squashfs.img",
        "system-erofs.img",
        "system.iso",
    ] {
        let writing = said
            .find(&format!("writing {}", out.join(file).display()))
            .unwrap_or_else(|| panic!("no progress line for {file}: {said}"));
        assert!(writing < said.find("wrote ").unwrap(), "{said}");
    }
    no_temporaries(&out);
    let root = env.path().join("root");
    untar(&env.path().join("tar/system.tar"), &root);
    let want = tree_entries(&root, false);
    assert!(want.contains_key("bin/busybox"), "{want:?}");
    for (format, file) in [
        ("kernel+squashfs", "system-squashfs.img"),
        ("kernel+erofs", "system-erofs.img"),
        ("kernel+iso", "system.iso"),
    ] {
        let alone = env.path().join(format);
        run_ok(&mut build_in(&env, &yml, format, format, &[]));
        no_temporaries(&alone);
        assert_eq!(
            listing(&alone),
            BTreeSet::from(["system-kernel", file, "system-cmdline"].map(String::from)),
            "{format}"
        );
        for f in ["system-kernel", "system-cmdline", file] {
            assert_eq!(
                sha256(&out.join(f)),
                sha256(&alone.join(f)),
                "{f} differs with and without the other formats"
            );
        }
        let image = out.join(file);
        let tree = env.path().join(format!("{format}-tree"));
        if format == "kernel+squashfs" {
            let info = run_ok(Command::new(&unsquashfs).arg("-s").arg(&image));
            assert!(
                info.contains("Compression gzip") && info.contains("Block size 131072"),
                "{info}"
            );
            run_ok(
                Command::new(&unsquashfs)
                    .args(["-no-progress", "-d"])
                    .arg(&tree)
                    .arg(&image),
            );
        } else if format == "kernel+erofs" {
            run_ok(
                Command::new(&fsck_erofs)
                    .arg(format!("--extract={}", tree.display()))
                    .arg("--preserve")
                    .arg(&image),
            );
        } else {
            let info = run_ok(
                Command::new(require_tool("isoinfo"))
                    .arg("-d")
                    .arg("-i")
                    .arg(&image),
            );
            assert!(
                info.contains("Volume id: LinuxKit")
                    && info.contains("Rock Ridge signatures version 1 found")
                    && info.contains("Joliet with UCS level 3 found"),
                "{info}"
            );
            run_ok(
                Command::new(&xorriso)
                    .args(["-osirrox", "on", "-hardlinks", "on", "-indev"])
                    .arg(&image)
                    .args(["-extract", "/"])
                    .arg(&tree),
            );
        }
        let iso = format == "kernel+iso";
        // What osirrox restores of an entry: all but a symlink's mtime, and no device file.
        let restored = |meta: &String| -> Option<String> {
            if !iso {
                return Some(meta.clone());
            }
            if meta.starts_with("dev ") {
                return None;
            }
            if meta.starts_with("link ") {
                return Some(
                    meta.rsplit_once(' ')
                        .map_or(meta.clone(), |(m, _)| m.to_string()),
                );
            }
            Some(meta.clone())
        };
        let ours: std::collections::BTreeMap<String, String> = tree_entries(&tree, false)
            .into_iter()
            .filter_map(|(p, m)| restored(&m).map(|m| (p, m)))
            .collect();
        let want: std::collections::BTreeMap<String, String> = want
            .iter()
            .filter_map(|(p, m)| restored(m).map(|m| (p.clone(), m)))
            .collect();
        for (path, meta) in &want {
            assert_eq!(ours.get(path), Some(meta), "{format}: {path}");
        }
        assert_eq!(
            ours.len(),
            want.len(),
            "{format}: entries only in the image"
        );
        assert!(
            listing(&tree.join("boot")).is_empty(),
            "{format}: boot/ is left out, as from the initrd"
        );
        // Every directory has the tar headers' time, the epoch (0 here).
        for (path, meta) in tree_entries(&tree, true) {
            if meta.starts_with("dir ") {
                assert!(meta.ends_with(" 0"), "{format}: {path}: {meta}");
            }
        }
    }
}

/// One section of a PE image, as binutils' objcopy extracts it.
fn pe_section(image: &Path, section: &str, into: &Path) -> Vec<u8> {
    run_ok(
        Command::new(require_tool("objcopy"))
            .args(["-O", "binary", "--only-section", section])
            .arg(image)
            .arg(into),
    );
    std::fs::read(into).unwrap()
}

#[test]
fn raw_efi_and_iso_efi_hold_the_kernel_initrd_and_cmdline_as_one_uki() {
    let env = Env::new();
    images(&env);
    let yml = write_system(&env);
    let build = |dir: &str, extra: &[&str]| {
        build_in(
            &env,
            &yml,
            "kernel+initrd,raw-efi,iso-efi,iso-efi-initrd",
            dir,
            extra,
        )
    };
    run_ok(&mut build("out", &[]));
    run_ok(&mut build("again", &[]));
    let out = env.path().join("out");
    no_temporaries(&out);
    let img = out.join("system-efi.img");
    for f in ["system-efi.img", "system-efi.iso"] {
        assert_eq!(
            sha256(&out.join(f)),
            sha256(&env.path().join("again").join(f)),
            "{f} is not reproducible"
        );
    }
    // iso-efi-initrd: LinuxKit's name for the ISO that boots the kernel and initrd.
    assert_eq!(
        sha256(&out.join("system-efi-initrd.iso")),
        sha256(&out.join("system-efi.iso"))
    );
    // The partition table, checked by gdisk; the ESP read with mtools, 1 MiB into the disk.
    let verify = run_ok(Command::new(require_tool("sgdisk")).arg("-v").arg(&img));
    assert!(verify.contains("No problems found"), "{verify}");
    let uki = env.path().join("uki.efi");
    run_ok(
        Command::new(require_tool("mcopy"))
            .arg("-i")
            .arg(format!("{}@@1M", img.display()))
            .arg("::/EFI/BOOT/BOOTX64.EFI")
            .arg(&uki),
    );
    // The image's kernel, its whole initrd (microcode first) and its command line, as the
    // unified kernel image's sections.
    let part = |name: &str| pe_section(&uki, name, &env.path().join(name));
    assert_eq!(
        part(".linux"),
        std::fs::read(out.join("system-kernel")).unwrap()
    );
    assert_eq!(
        part(".initrd"),
        std::fs::read(out.join("system-initrd.img")).unwrap()
    );
    assert_eq!(part(".cmdline"), b"console=ttyS0 quiet");
    assert!(
        String::from_utf8(part(".osrel"))
            .unwrap()
            .contains("ID=oxkit")
    );

    // iso-efi: xorriso sees one UEFI boot image in the El Torito catalog, a FAT image holding
    // the same unified kernel image.
    let iso = out.join("system-efi.iso");
    let xorriso = require_tool("xorriso");
    let report = one_el_torito_entry(&iso, "UEFI");
    assert!(
        report.contains("El Torito img path :   1  /EFI/BOOT/EFIBOOT.IMG"),
        "{report}"
    );
    let boot_image = env.path().join("efiboot.img");
    run_ok(
        Command::new(&xorriso)
            .args(["-osirrox", "on", "-indev"])
            .arg(&iso)
            .args(["-extract", "/EFI/BOOT/EFIBOOT.IMG"])
            .arg(&boot_image),
    );
    let from_iso = env.path().join("uki-iso.efi");
    run_ok(
        Command::new(require_tool("mcopy"))
            .arg("-i")
            .arg(&boot_image)
            .arg("::/EFI/BOOT/BOOTX64.EFI")
            .arg(&from_iso),
    );
    assert_eq!(
        std::fs::read(&from_iso).unwrap(),
        std::fs::read(&uki).unwrap(),
        "the ISO's unified kernel image is not the disk's"
    );

    // The stub is an input like the images: the same one leaves the outputs alone, another
    // one (same path, other bytes) makes them again.
    let stub = env.path().join("stub.efi");
    std::fs::copy("/usr/lib/systemd/boot/efi/linuxx64.efi.stub", &stub).unwrap();
    let stub_arg = stub.to_str().unwrap();
    run_ok(&mut build("stubbed", &["--efi-stub", stub_arg]));
    let again = run_ok(&mut build("stubbed", &["--json", "--efi-stub", stub_arg]));
    assert!(up_to_date(&again), "the same stub rebuilt the outputs");
    let mut bytes = std::fs::read(&stub).unwrap();
    bytes.push(0);
    std::fs::write(&stub, bytes).unwrap();
    let changed = run_ok(&mut build("stubbed", &["--json", "--efi-stub", stub_arg]));
    assert!(
        !up_to_date(&changed),
        "another stub left the outputs as they were"
    );

    // A missing stub is named, says what to install, and costs no output at all.
    let bad = env.path().join("bad");
    let e = run_fail(&mut build(
        "bad",
        &["--efi-stub", "/nonexistent/linuxx64.efi.stub"],
    ));
    assert!(
        e.contains("/nonexistent/linuxx64.efi.stub") && e.contains("systemd-boot-efi"),
        "{e}"
    );
    nothing_in(&bad);
    // The stub is checked before any image is looked for (this one is in no store or registry).
    let absent = env.path().join("absent.yml");
    std::fs::write(&absent, "kernel:\n  image: 127.0.0.1:9/test/absent:1\n").unwrap();
    let e = run_fail(
        env.oxkit()
            .args([
                "build",
                "-f",
                "iso-efi",
                "--efi-stub",
                "/nonexistent/stub",
                "--dir",
            ])
            .arg(&bad)
            .arg(&absent),
    );
    assert!(
        e.contains("/nonexistent/stub") && !e.contains("absent:1"),
        "{e}"
    );
    // Something that is not an EFI stub.
    let e = run_fail(build("bad", &["--efi-stub"]).arg(&yml));
    assert!(e.contains("not a PE image"), "{e}");
    assert!(!bad.join("system-efi.img").exists());
}

/// `qcow2-efi` is the `raw-efi` disk in qcow2: QEMU's own tools find the two identical and the
/// qcow2 consistent; it is the same whether `raw-efi` is built beside it or not, and
/// reproducible; it stores only the disk's clusters that hold data.
#[test]
fn qcow2_efi_is_the_raw_efi_disk_as_qcow2() {
    let env = Env::new();
    images(&env);
    let yml = write_system(&env);
    let build = |dir: &str, formats: &str| run_ok(&mut build_in(&env, &yml, formats, dir, &[]));
    build("both", "raw-efi,qcow2-efi");
    build("alone", "qcow2-efi");
    build("again", "qcow2-efi");
    let (raw, qcow) = (
        env.path().join("both/system-efi.img"),
        env.path().join("both/system-efi.qcow2"),
    );
    no_temporaries(&env.path().join("both"));
    no_temporaries(&env.path().join("alone"));
    assert!(
        !env.path().join("alone/system-efi.img").exists(),
        "qcow2-efi alone wrote the raw disk too"
    );
    for dir in ["alone", "again"] {
        assert_eq!(
            sha256(&qcow),
            sha256(&env.path().join(dir).join("system-efi.qcow2")),
            "the qcow2 built in {dir} differs"
        );
    }
    let qemu_img = require_tool("qemu-img");
    let check = run_ok(
        Command::new(&qemu_img)
            .args(["check", "-f", "qcow2"])
            .arg(&qcow),
    );
    assert!(check.contains("No errors were found"), "{check}");
    let same = run_ok(
        Command::new(&qemu_img)
            .args(["compare", "-f", "raw", "-F", "qcow2"])
            .arg(&raw)
            .arg(&qcow),
    );
    assert!(same.contains("Images are identical"), "{same}");
    let info: serde_json::Value = serde_json::from_str(&run_ok(
        Command::new(&qemu_img)
            .args(["info", "--output=json", "-f", "qcow2"])
            .arg(&qcow),
    ))
    .unwrap();
    let raw_len = std::fs::metadata(&raw).unwrap().len();
    assert_eq!(info["virtual-size"], raw_len, "{info}");
    // The disk is mostly empty FAT space: the qcow2 is about the size of what it boots.
    let uki_len = {
        let uki = env.path().join("uki.efi");
        run_ok(
            Command::new(require_tool("mcopy"))
                .arg("-i")
                .arg(format!("{}@@1M", raw.display()))
                .arg("::/EFI/BOOT/BOOTX64.EFI")
                .arg(&uki),
        );
        std::fs::metadata(&uki).unwrap().len()
    };
    let qcow_len = std::fs::metadata(&qcow).unwrap().len();
    assert!(
        qcow_len < uki_len + (2 << 20) && qcow_len < raw_len / 2,
        "qcow2 {qcow_len} bytes for a {uki_len}-byte boot program on a {raw_len}-byte disk"
    );
}

/// `iso-bios`: ISOLINUX boots from the El Torito catalog's BIOS entry and loads the image's
/// kernel and whole initrd (the kernel+initrd outputs, byte for byte) with its command line
/// from the ISO 9660 tree, as `isoinfo` and `xorriso` read it; the image is hybrid (one
/// bootable partition over it all, as `sfdisk` reads it), and `raw-bios` (and `aws`),
/// `qcow2-bios`, `vhd`, `vmdk` and `gcp` are the same image as a raw, a qcow2, a fixed VHD and
/// a VMware sparse disk and as Compute Engine's `disk.raw`. ISOLINUX's files are inputs like
/// the images; missing ones and a foreign architecture are refused before any output.
#[test]
fn bios_formats_boot_isolinux_with_the_kernel_initrd_and_cmdline() {
    let env = Env::new();
    images(&env);
    let yml = write_system(&env);
    let build = |dir: &str, extra: &[&str]| {
        build_in(
            &env,
            &yml,
            "kernel+initrd,iso-bios,raw-bios,qcow2-bios,vhd,vmdk,aws,gcp",
            dir,
            extra,
        )
    };
    run_ok(&mut build("out", &[]));
    run_ok(&mut build("again", &[]));
    let out = env.path().join("out");
    no_temporaries(&out);
    let iso = out.join("system.iso");
    assert_eq!(
        sha256(&iso),
        sha256(&env.path().join("again/system.iso")),
        "system.iso is not reproducible"
    );
    let isoinfo = require_tool("isoinfo");
    let extract = |name: &str| -> Vec<u8> {
        let out = Command::new(&isoinfo)
            .arg("-i")
            .arg(&iso)
            .args(["-x", name])
            .output()
            .unwrap();
        assert!(out.status.success(), "isoinfo -x {name}");
        out.stdout
    };
    assert_eq!(
        extract("/KERNEL.;1"),
        std::fs::read(out.join("system-kernel")).unwrap()
    );
    assert_eq!(
        extract("/INITRD.IMG;1"),
        std::fs::read(out.join("system-initrd.img")).unwrap()
    );
    assert_eq!(
        extract("/ISOLINUX/LDLINUX.C32;1"),
        std::fs::read("/usr/lib/syslinux/modules/bios/ldlinux.c32").unwrap()
    );
    let cfg = String::from_utf8(extract("/ISOLINUX/ISOLINUX.CFG;1")).unwrap();
    assert!(
        cfg.contains("KERNEL /kernel\n")
            && cfg.contains("APPEND initrd=/initrd.img console=ttyS0 quiet\n"),
        "{cfg}"
    );
    let report = one_el_torito_entry(&iso, "BIOS");
    assert!(report.contains("/ISOLINUX/ISOLINUX.BIN"), "{report}");

    // Hybrid: an MBR with one bootable partition (isohybrid's type 0x17) over the image.
    let iso_len = std::fs::metadata(&iso).unwrap().len();
    assert_eq!(iso_len % (1 << 20), 0, "padded to whole MiB");
    let table: serde_json::Value = serde_json::from_str(&run_ok(
        Command::new(require_tool("sfdisk")).arg("--json").arg(&iso),
    ))
    .unwrap();
    let parts = table["partitiontable"]["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 1, "{table}");
    assert_eq!(parts[0]["type"], "17", "{table}");
    assert_eq!(parts[0]["bootable"], true, "{table}");
    assert_eq!(parts[0]["size"].as_u64().unwrap() * 512, iso_len, "{table}");
    // raw-bios and aws are that image; qcow2-bios holds it, also when built alone.
    assert_eq!(sha256(&out.join("system-bios.img")), sha256(&iso));
    assert_eq!(sha256(&out.join("system.raw")), sha256(&iso));
    let qemu_img = require_tool("qemu-img");
    let same = run_ok(
        Command::new(&qemu_img)
            .args(["compare", "-f", "raw", "-F", "qcow2"])
            .arg(&iso)
            .arg(out.join("system.qcow2")),
    );
    assert!(same.contains("Images are identical"), "{same}");
    // vhd: the image and a fixed VHD footer, read back by QEMU as the image.
    let vhd = out.join("system.vhd");
    assert_eq!(std::fs::metadata(&vhd).unwrap().len(), iso_len + 512);
    let same = run_ok(
        Command::new(&qemu_img)
            .args(["compare", "-f", "raw", "-F", "vpc"])
            .arg(&iso)
            .arg(&vhd),
    );
    assert!(same.contains("Images are identical"), "{same}");
    // vmdk: a monolithicSparse VMDK, read back by QEMU as the image; reproducible.
    let vmdk = out.join("system.vmdk");
    let same = run_ok(
        Command::new(&qemu_img)
            .args(["compare", "-f", "raw", "-F", "vmdk"])
            .arg(&iso)
            .arg(&vmdk),
    );
    assert!(same.contains("Images are identical"), "{same}");
    let info = run_ok(
        Command::new(&qemu_img)
            .args(["info", "-f", "vmdk"])
            .arg(&vmdk),
    );
    assert!(info.contains("create type: monolithicSparse"), "{info}");
    assert_eq!(
        sha256(&vmdk),
        sha256(&env.path().join("again/system.vmdk")),
        "system.vmdk is not reproducible"
    );
    // gcp: GNU tar extracts disk.raw, the image padded with a hole to 1 GiB.
    let gcp = env.path().join("gcp");
    std::fs::create_dir_all(&gcp).unwrap();
    run_ok(
        Command::new(require_tool("tar"))
            .arg("-xzf")
            .arg(out.join("system.img.tar.gz"))
            .arg("-C")
            .arg(&gcp),
    );
    let disk = std::fs::File::open(gcp.join("disk.raw")).unwrap();
    assert_eq!(disk.metadata().unwrap().len(), 1 << 30);
    let mut start = vec![0u8; iso_len as usize];
    std::os::unix::fs::FileExt::read_exact_at(&disk, &mut start, 0).unwrap();
    assert!(
        start == std::fs::read(&iso).unwrap(),
        "disk.raw does not start with the image"
    );
    // dynamic-vhd: only the blocks with data, read back by QEMU as the image.
    run_ok(&mut build_in(&env, &yml, "dynamic-vhd", "dynamic", &[]));
    let dynamic = env.path().join("dynamic/system.vhd");
    assert!(std::fs::metadata(&dynamic).unwrap().len() <= iso_len + (3 << 20));
    let same = run_ok(
        Command::new(&qemu_img)
            .args(["compare", "-f", "raw", "-F", "vpc"])
            .arg(&iso)
            .arg(&dynamic),
    );
    assert!(same.contains("Images are identical"), "{same}");
    run_ok(&mut build_in(&env, &yml, "qcow2-bios", "alone", &[]));
    let alone = env.path().join("alone");
    assert_eq!(
        sha256(&alone.join("system.qcow2")),
        sha256(&out.join("system.qcow2"))
    );
    no_temporaries(&alone);
    assert_eq!(
        std::fs::read_dir(&alone).unwrap().count(),
        1,
        "qcow2-bios alone wrote more"
    );

    // Other ISOLINUX files make another image; the same ones leave it alone.
    let syslinux = env.path().join("syslinux");
    std::fs::create_dir_all(&syslinux).unwrap();
    std::fs::copy(
        "/usr/lib/ISOLINUX/isolinux.bin",
        syslinux.join("isolinux.bin"),
    )
    .unwrap();
    std::fs::copy(
        "/usr/lib/syslinux/modules/bios/ldlinux.c32",
        syslinux.join("ldlinux.c32"),
    )
    .unwrap();
    std::fs::copy(
        "/usr/lib/ISOLINUX/isohdpfx.bin",
        syslinux.join("isohdpfx.bin"),
    )
    .unwrap();
    let dir_arg = syslinux.to_str().unwrap();
    run_ok(&mut build("own", &["--syslinux", dir_arg]));
    assert!(up_to_date(&run_ok(&mut build(
        "own",
        &["--json", "--syslinux", dir_arg]
    ))));
    let mut ldlinux = std::fs::read(syslinux.join("ldlinux.c32")).unwrap();
    ldlinux.push(0);
    std::fs::write(syslinux.join("ldlinux.c32"), &ldlinux).unwrap();
    assert!(!up_to_date(&run_ok(&mut build(
        "own",
        &["--json", "--syslinux", dir_arg]
    ))));

    // Missing ISOLINUX files are named with what to install, and nothing is written.
    let e = run_fail(&mut build("bad", &["--syslinux", "/nonexistent"]));
    assert!(
        e.contains("/nonexistent/isolinux.bin") && e.contains("syslinux-common"),
        "{e}"
    );
    nothing_in(&env.path().join("bad"));
    // A PC BIOS image is amd64's only.
    let e = run_fail(&mut build("bad", &["--arch", "arm64"]));
    assert!(e.contains("iso-bios") && e.contains("amd64"), "{e}");
}

/// The boot images need a kernel: without one, each UEFI and BIOS format is refused with an
/// error naming its file, and the build writes nothing.
#[test]
fn boot_images_without_a_kernel_are_refused_and_write_nothing() {
    let env = Env::new();
    images(&env);
    let yml = env.path().join("nokernel.yml");
    std::fs::write(&yml, "init:\n  - test/init:1\n").unwrap();
    for (format, file) in [
        ("raw-efi", "nokernel-efi.img"),
        ("iso-efi", "nokernel-efi.iso"),
        ("iso-efi-initrd", "nokernel-efi-initrd.iso"),
        ("iso-bios", "nokernel.iso"),
        ("vmdk", "nokernel.vmdk"),
        ("raw-bios", "nokernel-bios.img"),
        ("gcp", "nokernel.img.tar.gz"),
    ] {
        let dir = format!("out-{format}");
        let e = run_fail(&mut build_in(&env, &yml, format, &dir, &[]));
        assert!(
            e.contains(file) && e.contains("needs a kernel"),
            "{format}: {e}"
        );
        nothing_in(&env.path().join(&dir));
    }
}

#[test]
fn builds_are_reproducible_and_rebuilds_are_skipped() {
    let env = Env::new();
    images(&env);
    let yml = write_system(&env);
    let (a, b) = (env.path().join("a"), env.path().join("b"));
    for dir in [&a, &b] {
        run_ok(
            env.oxkit()
                .args(["build", "-f", "kernel+initrd", "--name", "sys", "--dir"])
                .arg(dir)
                .arg(&yml),
        );
        run_ok(
            env.oxkit()
                .args(["build", "-o"])
                .arg(dir.join("sys.tar"))
                .arg(&yml),
        );
    }
    for f in ["sys-kernel", "sys-initrd.img", "sys-cmdline", "sys.tar"] {
        assert_eq!(sha256(&a.join(f)), sha256(&b.join(f)), "{f}");
    }
    // SOURCE_DATE_EPOCH sets every mtime (and changes the bytes).
    let c = env.path().join("c");
    run_ok(
        env.oxkit()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["build", "-o"])
            .arg(c.join("sys.tar"))
            .arg(&yml),
    );
    assert_ne!(sha256(&a.join("sys.tar")), sha256(&c.join("sys.tar")));
    let listed = run_ok(Command::new("tar").arg("-tvf").arg(c.join("sys.tar")));
    assert!(
        listed
            .lines()
            .all(|l| l.contains("2023-11-14") || l.contains("1970-01-01")),
        "{listed}"
    );
    assert!(listed.contains("2023-11-14"), "{listed}");

    // Nothing changed: the outputs are left alone.
    let before = std::fs::metadata(a.join("sys-initrd.img")).unwrap();
    let err = {
        let out = env
            .oxkit()
            .args(["build", "-f", "kernel+initrd", "--name", "sys", "--dir"])
            .arg(&a)
            .arg(&yml)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(err.contains("up to date"), "{err}");
    let after = std::fs::metadata(a.join("sys-initrd.img")).unwrap();
    assert_eq!(
        (before.ino(), before.mtime_nsec()),
        (after.ino(), after.mtime_nsec())
    );
    // A changed source file rebuilds.
    std::fs::write(env.path().join("secret.txt"), b"changed\n").unwrap();
    let out = env
        .oxkit()
        .args(["build", "-f", "kernel+initrd", "--name", "sys", "--dir"])
        .arg(&a)
        .arg(&yml)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrote"));
    assert_ne!(
        sha256(&a.join("sys-initrd.img")),
        sha256(&b.join("sys-initrd.img"))
    );
}

#[test]
fn runc_runs_a_generated_bundle() {
    let runc = require_tool("runc");
    assert!(
        rustix::process::geteuid().is_root(),
        "runc needs root: run the integration tests as root"
    );
    let env = Env::new();
    images(&env);
    let yml = env.path().join("run.yml");
    std::fs::write(
        &yml,
        "onboot:\n  - name: hello\n    image: test/busybox:1\n    readonly: true\n    \
         command: [\"/bin/sh\", \"-c\", \"echo hello from $(cat /etc/hosts | head -c 9) as $(id -u)\"]\n",
    )
    .unwrap();
    let tar = env.path().join("run.tar");
    run_ok(env.oxkit().args(["build", "-o"]).arg(&tar).arg(&yml));
    let root = env.path().join("root");
    untar(&tar, &root);
    let bundle = root.join("containers/onboot/000-hello");
    let id = format!("oxkit-it-{}", std::process::id());
    let out = Command::new(runc)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "runc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from 127.0.0.1 as 0\n"
    );
}

#[test]
fn bad_input_is_refused_with_its_location_and_leaves_nothing() {
    let env = Env::new();
    images(&env);
    kernel_image(&env, "test/nokernel:1", false);
    let reg = Registry::start();
    let out = env.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep"), b"").unwrap();
    let cases: Vec<(&str, String, &str)> =
        vec![
        (
            "missing",
            format!("init:\n  - test/init:1\n  - {}/nothing/here:1\n", reg.host()),
            "missing.yml:3:5: init[1]: image",
        ),
        (
            "nokernel",
            "kernel:\n  image: test/nokernel:1\n".to_string(),
            "nokernel.yml:2:10: kernel: image docker.io/test/nokernel:1",
        ),
        (
            "dupsvc",
            "services:\n  - name: a\n    image: test/svc:1\n  - name: a\n    image: test/svc:1\n"
                .to_string(),
            "dupsvc.yml:4:5: duplicate services name \"a\"",
        ),
        (
            "both",
            "files:\n  - path: etc/x\n    contents: x\n    source: x.txt\n".to_string(),
            "both.yml:2:5:",
        ),
    ];
    for (name, text, want) in &cases {
        let yml = env.path().join(format!("{name}.yml"));
        std::fs::write(&yml, text).unwrap();
        let e = run_fail(
            env.oxkit()
                .current_dir(env.path())
                .args(["build", "--dir"])
                .arg(&out)
                .arg(format!("{name}.yml")),
        );
        assert!(e.contains(want), "{name}: {e}");
        let e1 = e.lines().next().unwrap_or_default().to_string();
        assert!(!e1.is_empty());
    }
    let e = run_fail(
        env.oxkit()
            .current_dir(env.path())
            .args(["build", "--dir"])
            .arg(&out)
            .arg("nokernel.yml"),
    );
    assert!(e.contains("has no file \"kernel\""), "{e}");
    let e = run_fail(
        env.oxkit()
            .current_dir(env.path())
            .args(["build", "--dir"])
            .arg(&out)
            .arg("missing.yml"),
    );
    assert!(e.contains(&format!("{}/nothing/here:1", reg.host())), "{e}");

    // A layer that writes through a link to outside the root.
    let evil = env.path().join("evil");
    std::fs::create_dir_all(evil.join("d")).unwrap();
    std::os::unix::fs::symlink("/etc", evil.join("escape")).unwrap();
    std::fs::write(evil.join("d/passwd"), b"root::0:0::/:/bin/sh\n").unwrap();
    let evil_tar = env.path().join("evil.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&evil)
            .args(["--transform", "s,^d/,escape/,", "-cf"])
            .arg(&evil_tar)
            .args(["escape", "d/passwd"]),
    );
    import(&env, &evil_tar, "test/evil:1", &[]);
    std::fs::write(
        env.path().join("evil.yml"),
        "kernel:\n  image: test/kernel:1\nonboot:\n  - name: evil\n    image: test/evil:1\n",
    )
    .unwrap();
    let e = run_fail(
        env.oxkit()
            .current_dir(env.path())
            .args(["build", "--dir"])
            .arg(&out)
            .arg("evil.yml"),
    );
    assert!(
        e.contains("evil.yml:5:12: onboot[0] \"evil\": image docker.io/test/evil:1: layer sha256:")
            && e.contains("entry \"escape/passwd\": refused: it would be written through the symbolic link /escape -> /etc"),
        "{e}"
    );
    // Nothing but what was there.
    let left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["keep"]);

    // Usage mistakes exit 2 (clap) or 1 with LinuxKit's rules.
    let e = run_fail(
        env.oxkit()
            .args(["build", "-f", "tar,kernel+initrd", "x.yml"]),
    );
    assert!(e.contains("format tar must be the only format"), "{e}");
    let e = run_fail(env.oxkit().args(["build", "-f", "rpi3", "x.yml"]));
    assert!(e.contains("unknown format \"rpi3\""), "{e}");
    let e = run_fail(
        env.oxkit()
            .args(["build", "-f", "kernel+initrd", "-o", "x", "x.yml"]),
    );
    assert!(
        e.contains("-o cannot be given for format kernel+initrd"),
        "{e}"
    );
}

/// A two-platform image `reference` (an index over amd64 and arm64 images that differ in
/// their `etc/arch`); the digests of its amd64 and arm64 manifests.
fn two_platform_image(env: &Env, reference: &str) -> (String, String) {
    let mut children = Vec::new();
    for arch in ["amd64", "arm64"] {
        let root = env.path().join(format!("rootfs-{arch}"));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/arch"), format!("{arch}\n")).unwrap();
        let part = format!("test/parts:{arch}");
        import(env, &root, &part, &["--platform", &format!("linux/{arch}")]);
        let store = oxkit_store::Store::open(env.store()).unwrap();
        let r = oxkit_spec::Reference::parse(&part).unwrap();
        children.push(store.resolve(&r).unwrap().unwrap());
    }
    let store = oxkit_store::Store::open(env.store()).unwrap();
    store
        .put_index_for(
            &oxkit_spec::Reference::parse(reference).unwrap(),
            children.clone(),
        )
        .unwrap();
    (
        children[0].digest.to_string(),
        children[1].digest.to_string(),
    )
}

#[test]
fn oci_volume_is_an_oci_layout_of_the_chosen_platforms() {
    let skopeo = require_tool("skopeo");
    let umoci = require_tool("umoci");
    let reg = Registry::start();
    let env = Env::new();
    let image = format!("{}/test/multi:1", reg.host());
    let (amd64, arm64) = two_platform_image(&env, &image);
    // In the registry too, so a pull for a platform it lacks gets the registry's answer.
    run_ok(env.oxkit().args(["cache", "push", &image]));
    let yml = env.path().join("vol.yml");
    std::fs::write(
        &yml,
        format!(
            "volumes:\n  - name: img\n    image: {image}\n    format: oci\n    platforms: [linux/arm64]\n"
        ),
    )
    .unwrap();
    let (a, b) = (env.path().join("a.tar"), env.path().join("b.tar"));
    for tar in [&a, &b] {
        run_ok(
            env.oxkit()
                .args(["build", "--format", "tar", "-o"])
                .arg(tar)
                .arg(&yml),
        );
    }
    assert_eq!(sha256(&a), sha256(&b), "two builds differ");

    let listed = run_ok(
        Command::new("tar")
            .args(["--numeric-owner", "-tvf"])
            .arg(&a),
    );
    let lower = "containers/volumes/img/lower";
    for want in [
        format!("{lower}/oci-layout"),
        format!("{lower}/index.json"),
        format!(
            "{lower}/blobs/sha256/{}",
            arm64.trim_start_matches("sha256:")
        ),
        "containers/volumes/img/tmp/".to_string(),
        "containers/volumes/img/merged/".to_string(),
    ] {
        assert!(listed.contains(&want), "{want} not in:\n{listed}");
    }
    assert!(
        !listed.contains(amd64.trim_start_matches("sha256:")),
        "the amd64 manifest is in the layout:\n{listed}"
    );
    for l in listed.lines().filter(|l| l.contains(lower)) {
        assert!(
            l.starts_with("-rw-r--r-- 0/0 ") || l.starts_with("drwxr-xr-x 0/0 "),
            "{l}"
        );
    }

    // The layout is valid: skopeo and umoci read it back.
    let root = env.path().join("root");
    untar(&a, &root);
    let dir = root.join(lower);
    let raw: serde_json::Value = serde_json::from_str(&run_ok(
        Command::new(&skopeo)
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}", dir.display())),
    ))
    .unwrap();
    let manifests = raw["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{raw}");
    assert_eq!(manifests[0]["digest"], arm64.as_str());
    assert_eq!(manifests[0]["platform"]["architecture"], "arm64");
    let config: serde_json::Value = serde_json::from_str(&run_ok(
        Command::new(&skopeo)
            .args(["--override-arch", "arm64", "inspect", "--config"])
            .arg(format!("oci:{}", dir.display())),
    ))
    .unwrap();
    assert_eq!(config["architecture"], "arm64");
    let refs = run_ok(Command::new(&umoci).args(["ls", "--layout"]).arg(&dir));
    assert_eq!(refs.trim(), image);
    // Every blob is intact: a copy of every platform it holds checks each digest.
    run_ok(
        Command::new(&skopeo)
            .args(["copy", "--all", "--preserve-digests"])
            .arg(format!("oci:{}", dir.display()))
            .arg(format!("oci:{}:copy", env.path().join("copy").display())),
    );

    // A platform the image does not have: refused, naming the volume; nothing written.
    std::fs::write(
        &yml,
        format!(
            "volumes:\n  - name: img\n    image: {image}\n    format: oci\n    platforms: [linux/riscv64]\n"
        ),
    )
    .unwrap();
    let out = env.path().join("out");
    let e = run_fail(
        env.oxkit()
            .args(["build", "--format", "tar", "-o"])
            .arg(out.join("c.tar"))
            .arg("vol.yml"),
    );
    assert!(
        e.contains(&format!(
            "vol.yml:2:5: volumes[0] \"img\": image {image} is not in the local store for linux/riscv64"
        )) && e.contains("has no linux/riscv64 (it has linux/amd64, linux/arm64)"),
        "{e}"
    );
    assert!(!out.join("c.tar").exists());
}

#[test]
fn trust_policy_is_enforced_against_registry_signatures() {
    let env = Env::new();
    let reg = Registry::start();
    let rootfs = busybox_rootfs(&host_arch());
    let signed = format!("{}/trusted/app:1", reg.host());
    let unsigned = format!("{}/trusted/plain:1", reg.host());
    let local = format!("{}/trusted/local:1", reg.host());
    for r in [&signed, &unsigned, &local] {
        import(&env, &rootfs, r, &["--cmd", "/bin/sh"]);
    }
    run_ok(
        env.oxkit()
            .args(["cache", "push"])
            .arg(&signed)
            .arg(&unsigned),
    );
    run_ok(cosign(&env, "pw").arg("generate-key-pair"));
    run_ok(cosign(&env, "pw").args(["generate-key-pair", "--output-key-prefix", "other"]));
    cosign_sign(&env, "pw", "cosign.key", &signed, &[]);
    let build = |name: &str, image: &str, key: &str, extra: &[&str]| {
        let yml = env.path().join(format!("{name}.yml"));
        std::fs::write(
            &yml,
            format!(
                "onboot:\n  - name: app\n    image: {image}\ntrust:\n  keys:\n    vendor: {key}\n  rules:\n    - match: \"{}/trusted/*\"\n      keys: [vendor]\n",
                reg.host()
            ),
        )
        .unwrap();
        let mut cmd = env.oxkit();
        cmd.args(["build", "-f", "tar", "--dir"])
            .arg(env.path().join("out"))
            .args(extra)
            .arg(&yml);
        cmd
    };
    // Signed with the key the policy names: builds.
    run_ok(&mut build("ok", &signed, "cosign.pub", &[]));
    // Signed, but not with the required key: refused, naming image, digest and key.
    let e = run_fail(&mut build("wrongkey", &signed, "other.pub", &[]));
    assert!(
        e.contains(&format!(
            "wrongkey.yml:3:12: onboot[0] \"app\": image {signed} (sha256:"
        )) && e.contains("not signed by vendor")
            && e.contains("wrongkey.yml:8:7"),
        "{e}"
    );
    // Not signed at all.
    let e = run_fail(&mut build("unsigned", &unsigned, "cosign.pub", &[]));
    assert!(
        e.contains("not signed by vendor (no signatures found)"),
        "{e}"
    );
    // Only in the store: nothing vouches for it.
    let e = run_fail(&mut build("local", &local, "cosign.pub", &[]));
    assert!(
        e.contains(&format!("image {local} (sha256:"))
            && e.contains("cannot read it from its registry"),
        "{e}"
    );
    // --no-verify builds, and says loudly what it did not check.
    let out = build("local", &local, "cosign.pub", &["--no-verify"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "warning: --no-verify: NOT checking the signatures of {local} (sha256:"
        )),
        "{err}"
    );
}

/// The whole point: the kernel+initrd output boots. Debian's cloud kernel (with its real
/// modules tarball) as a LinuxKit kernel image, a busybox init image with hard links, and a
/// files entry as /init, booted under QEMU by `oxkit run qemu`.
#[test]
fn built_kernel_initrd_boots_in_qemu() {
    require_tool("qemu-system-x86_64");
    let arch = host_arch();
    if arch != "amd64" {
        return; // The boot matrix lives in vm.rs; here the host's kernel suffices.
    }
    let env = Env::new();
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let kdir = tmp.join(format!("kernel-{arch}"));
    run_ok(
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/fetch-kernel.sh"))
            .args([arch.as_str(), &kdir.to_string_lossy()])
            .env("OXKIT_KERNEL_CACHE", tmp.join("kernel-debs")),
    );
    let kimage = env.path().join("kimage");
    std::fs::create_dir_all(&kimage).unwrap();
    std::fs::copy(kdir.join("vmlinuz"), kimage.join("kernel")).unwrap();
    std::fs::copy(kdir.join("kernel.tar"), kimage.join("kernel.tar")).unwrap();
    import(&env, &kimage, "test/kernel:boot", &[]);

    // busybox plus a hard-linked pair (the initrd keeps them linked).
    let root = env.path().join("initroot");
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(busybox_rootfs(&arch))
            .arg(&root),
    );
    std::fs::write(root.join("bin/hl1"), b"linked").unwrap();
    std::fs::hard_link(root.join("bin/hl1"), root.join("bin/hl2")).unwrap();
    import(&env, &root, "test/init:boot", &[]);
    let yml = env.path().join("boot.yml");
    std::fs::write(
        &yml,
        "kernel:\n  image: test/kernel:boot\n  cmdline: quiet\ninit:\n  - test/init:boot\n\
         files:\n  - path: init\n    mode: \"0755\"\n    contents: |\n      #!/bin/sh\n      \
         /bin/busybox mount -t proc proc /proc\n      \
         echo \"OXKIT-BOOT mods=$(/bin/busybox find /lib/modules -name '*.ko' | /bin/busybox wc -l) \
         hl=$(/bin/busybox cat /bin/hl2) same=$(test /bin/hl1 -ef /bin/hl2 && echo yes) \
         cmdline=$(/bin/busybox cat /proc/cmdline)\"\n      /bin/busybox poweroff -f\n",
    )
    .unwrap();
    let out = env.path().join("out");
    run_ok(env.oxkit().args(["build", "--dir"]).arg(&out).arg(&yml));
    let booted = env
        .oxkit()
        .args(["run", "qemu", "--timeout", "120s"])
        .arg(out.join("boot"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let console = String::from_utf8_lossy(&booted.stdout);
    let line = console
        .lines()
        .find(|l| l.contains("OXKIT-BOOT"))
        .unwrap_or_else(|| {
            panic!(
                "no marker:\n{console}\n{}",
                String::from_utf8_lossy(&booted.stderr)
            )
        });
    let mods: u32 = line
        .split("mods=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(mods > 100, "{line}");
    assert!(line.contains("hl=linked same=yes"), "{line}");
    assert!(line.contains("cmdline=quiet"), "{line}");
}
