//! The local store against the real tools: images oxkit writes are read by umoci and
//! skopeo, layouts skopeo writes are read by oxkit, archives round-trip, damaged input is
//! refused without touching the store, and imports are reproducible.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{Env, busybox_rootfs, require_tool, run_fail, run_ok};

fn import(env: &Env, arch: &str, rootfs: &Path, reference: &str) -> String {
    run_ok(
        env.oxkit()
            .args([
                "image",
                "import",
                "--platform",
                &format!("linux/{arch}"),
                "--cmd",
                "/bin/sh",
            ])
            .arg(rootfs)
            .arg(reference),
    )
    .trim()
    .to_string()
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

fn skopeo() -> Command {
    Command::new(require_tool("skopeo"))
}

/// `skopeo inspect TRANSPORT:REF` as JSON.
fn skopeo_inspect(reference: &str) -> serde_json::Value {
    json(&run_ok(skopeo().arg("inspect").arg(reference)))
}

fn umoci() -> Command {
    Command::new(require_tool("umoci"))
}

#[test]
fn images_oxkit_writes_are_read_by_umoci_and_skopeo() {
    for arch in ["amd64", "arm64"] {
        let env = Env::new();
        let rootfs = busybox_rootfs(arch);
        let digest = import(&env, arch, &rootfs, &format!("linuxkit/busybox:{arch}"));
        assert!(digest.starts_with("sha256:"), "{digest}");
        let store = env.store();
        let name = format!("docker.io/linuxkit/busybox:{arch}");

        // skopeo addresses the image by the canonical name oxkit stored.
        let inspect = skopeo_inspect(&format!("oci:{}:{name}", store.display()));
        assert_eq!(inspect["Digest"], digest.as_str());
        assert_eq!(inspect["Architecture"], arch);
        assert_eq!(inspect["Os"], "linux");
        assert_eq!(inspect["Created"], "1970-01-01T00:00:00Z");
        let config = json(&run_ok(
            skopeo()
                .args(["inspect", "--config"])
                .arg(format!("oci:{}:{name}", store.display())),
        ));
        assert_eq!(config["config"]["Cmd"], serde_json::json!(["/bin/sh"]));
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);

        // umoci lists and unpacks it, byte for byte.
        let ls = run_ok(umoci().args(["ls", "--layout"]).arg(&store));
        assert!(ls.lines().any(|l| l == name), "{ls}");
        let bundle = env.path().join(format!("bundle-{arch}"));
        run_ok(
            umoci()
                .args(["unpack", "--image"])
                .arg(format!("{}:{name}", store.display()))
                .arg(&bundle),
        );
        assert_eq!(
            std::fs::read(bundle.join("rootfs/bin/busybox")).unwrap(),
            std::fs::read(rootfs.join("bin/busybox")).unwrap()
        );
        assert_eq!(
            std::fs::read_link(bundle.join("rootfs/bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );

        // skopeo copies it to another layout unchanged, and oxkit accepts the copy.
        let copy = env.path().join("copy");
        run_ok(
            skopeo()
                .arg("copy")
                .arg(format!("oci:{}:{name}", store.display()))
                .arg(format!("oci:{}:copied", copy.display())),
        );
        let ls = json(&run_ok(
            env.oxkit()
                .args(["--store"])
                .arg(&copy)
                .args(["--json", "cache", "ls"]),
        ));
        assert_eq!(ls[0]["reference"], "copied");
        assert_eq!(ls[0]["digest"], digest.as_str());
        assert_eq!(
            ls[0]["platforms"],
            serde_json::json!([format!("linux/{arch}")])
        );
        run_ok(
            env.oxkit()
                .arg("--store")
                .arg(&copy)
                .args(["cache", "fsck"]),
        );
    }
}

#[test]
fn oxkit_reads_a_layout_written_by_skopeo() {
    let env = Env::new();
    let rootfs = busybox_rootfs("amd64");
    let digest = import(&env, "amd64", &rootfs, "src:1");
    let a = env.path().join("a");
    let b = env.path().join("b");
    run_ok(
        skopeo()
            .arg("copy")
            .arg(format!(
                "oci:{}:docker.io/library/src:1",
                env.store().display()
            ))
            .arg(format!("oci:{}:x", a.display())),
    );
    run_ok(
        skopeo()
            .arg("copy")
            .arg(format!("oci:{}:x", a.display()))
            .arg(format!("oci:{}:y", b.display())),
    );
    let ls = run_ok(env.oxkit().arg("--store").arg(&b).args(["cache", "ls"]));
    let row = ls.lines().nth(1).unwrap_or_default();
    assert!(
        row.starts_with("y ") && row.contains(&digest) && row.contains("linux/amd64"),
        "{ls}"
    );
    let fsck = env
        .oxkit()
        .arg("--store")
        .arg(&b)
        .args(["cache", "fsck"])
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stderr)
    );
    // "y" is a short name: any spelling of it works.
    let tar = env.path().join("y.tar");
    run_ok(
        env.oxkit()
            .arg("--store")
            .arg(&b)
            .args(["cache", "export", "docker.io/library/y:latest", "-o"])
            .arg(&tar),
    );
    let inspect = skopeo_inspect(&format!("oci-archive:{}", tar.display()));
    assert_eq!(inspect["Digest"], digest.as_str());

    // An archive skopeo writes imports too, under the name skopeo gave it.
    let sk = env.path().join("skopeo.tar");
    run_ok(
        skopeo()
            .arg("copy")
            .arg(format!("oci:{}:x", a.display()))
            .arg(format!("oci-archive:{}:me/from-skopeo:7", sk.display())),
    );
    let c = Env::new();
    let out = run_ok(c.oxkit().args(["cache", "import"]).arg(&sk));
    assert!(
        out.contains("docker.io/me/from-skopeo:7") && out.contains(&digest),
        "{out}"
    );
    run_ok(c.oxkit().args(["cache", "fsck"]));
}

#[test]
fn import_is_reproducible_across_stores_and_from_a_tar() {
    let env = Env::new();
    let rootfs = busybox_rootfs("amd64");
    let first = import(&env, "amd64", &rootfs, "repro:1");
    let other = Env::new();
    assert_eq!(
        import(&other, "amd64", &rootfs, "repro:1"),
        first,
        "same input, same digest"
    );
    assert_eq!(
        import(&other, "amd64", &rootfs, "another/name:2"),
        first,
        "the name is not in the image"
    );

    let tar = env.path().join("rootfs.tar");
    run_ok(
        Command::new("tar")
            .arg("--numeric-owner")
            .arg("-cf")
            .arg(&tar)
            .arg("-C")
            .arg(&rootfs)
            .arg("."),
    );
    assert_eq!(
        import(&env, "amd64", &tar, "from-tar:1"),
        first,
        "a tar of the same tree gives the same image"
    );
    let tgz = env.path().join("rootfs.tar.gz");
    run_ok(
        Command::new("tar")
            .arg("--numeric-owner")
            .arg("-czf")
            .arg(&tgz)
            .arg("-C")
            .arg(&rootfs)
            .arg("."),
    );
    assert_eq!(import(&env, "amd64", &tgz, "from-tgz:1"), first);

    // SOURCE_DATE_EPOCH changes the creation time, so the image, not the layer.
    let out = run_ok(
        env.oxkit()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args([
                "--json",
                "image",
                "import",
                "--platform",
                "linux/amd64",
                "--cmd",
                "/bin/sh",
            ])
            .arg(&rootfs)
            .arg("dated:1"),
    );
    let dated = json(&out);
    assert_ne!(dated["digest"], first.as_str());
    let plain = json(&run_ok(env.oxkit().args(["--json", "cache", "ls"])));
    assert!(
        plain
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["reference"] == "docker.io/library/dated:1")
    );
}

#[test]
fn archives_round_trip_and_damaged_ones_change_nothing() {
    let env = Env::new();
    let rootfs = busybox_rootfs("amd64");
    let digest = import(&env, "amd64", &rootfs, "linuxkit/init:abc");
    let file = env.path().join("init.tar");
    run_ok(
        env.oxkit()
            .args(["cache", "export", "linuxkit/init:abc", "-o"])
            .arg(&file),
    );
    let bytes = std::fs::read(&file).unwrap();
    // -o - streams the same bytes.
    let out = env
        .oxkit()
        .args(["cache", "export", "linuxkit/init:abc", "-o", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        out.stdout, bytes,
        "export is deterministic and -o - matches -o FILE"
    );
    let inspect = skopeo_inspect(&format!("oci-archive:{}", file.display()));
    assert_eq!(inspect["Digest"], digest.as_str());

    let target = Env::new();
    let cut = env.path().join("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let err = run_fail(target.oxkit().args(["cache", "import"]).arg(&cut));
    assert!(
        err.contains("cut.tar") && err.contains("store was not changed"),
        "{err}"
    );
    let mut corrupt = bytes.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0xff;
    let bad = env.path().join("bad.tar");
    std::fs::write(&bad, &corrupt).unwrap();
    let err = run_fail(target.oxkit().args(["cache", "import"]).arg(&bad));
    assert!(err.contains("bad.tar"), "{err}");
    let ls = json(&run_ok(target.oxkit().args(["--json", "cache", "ls"])));
    assert_eq!(ls, serde_json::json!([]), "nothing was tagged");
    let blobs = std::fs::read_dir(target.store().join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0, "no blob of a failed import entered the store");

    // The intact archive, from stdin, lands complete.
    let mut child = target
        .oxkit()
        .args(["cache", "import", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&digest));
    run_ok(target.oxkit().args(["cache", "fsck"]));
}

#[test]
fn rm_clean_and_fsck_keep_the_store_consistent() {
    let env = Env::new();
    let amd = busybox_rootfs("amd64");
    let small = env.path().join("small");
    std::fs::create_dir_all(small.join("etc")).unwrap();
    std::fs::write(small.join("etc/motd"), "hello\n").unwrap();
    import(&env, "amd64", &amd, "keep:1");
    let gone = import(&env, "amd64", &small, "gone:1");
    import(&env, "amd64", &small, "gone-too:1");

    let err = run_fail(env.oxkit().args(["cache", "rm", "gone:1", "never:1"]));
    assert!(err.contains("never:1") && err.contains("cache ls"), "{err}");
    run_ok(env.oxkit().args(["cache", "rm", "gone:1"]));
    let ls = run_ok(env.oxkit().args(["cache", "ls"]));
    assert!(!ls.contains("gone:1") && ls.contains("gone-too:1"), "{ls}");
    // Still used by gone-too: nothing to collect.
    let clean = json(&run_ok(env.oxkit().args(["--json", "cache", "clean"])));
    assert_eq!(clean["blobs"], serde_json::json!([]));
    run_ok(env.oxkit().args(["cache", "rm", "gone-too:1"]));
    assert!(
        !env.store()
            .join("blobs/sha256")
            .join(gone.trim_start_matches("sha256:"))
            .exists()
    );
    run_ok(env.oxkit().args(["cache", "fsck"]));

    // An unreferenced blob is collected and its bytes reported.
    let orphan = env.store().join("blobs/sha256").join("a".repeat(64));
    std::fs::write(&orphan, b"orphan").unwrap();
    let clean = json(&run_ok(env.oxkit().args([
        "--json",
        "cache",
        "clean",
        "--dry-run",
    ])));
    assert_eq!(clean["freed"], 6);
    assert!(orphan.exists());
    run_ok(env.oxkit().args(["cache", "clean"]));
    assert!(!orphan.exists());

    // Corruption and a missing layer: one line each, exit 1.
    let keep = json(&run_ok(env.oxkit().args(["--json", "cache", "ls"])));
    let manifest = keep[0]["digest"].as_str().unwrap().to_string();
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            env.store()
                .join("blobs/sha256")
                .join(manifest.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    let config = m["config"]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let layer = m["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    std::fs::write(env.store().join("blobs/sha256").join(&config), b"{}").unwrap();
    std::fs::remove_file(env.store().join("blobs/sha256").join(&layer)).unwrap();
    let out = env.oxkit().args(["cache", "fsck"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&config) && l.contains("corrupt")),
        "{stdout}"
    );
    assert!(
        lines.iter().any(|l| l.contains(&layer)
            && l.contains("missing")
            && l.contains("docker.io/library/keep:1")),
        "{stdout}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("problem"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_directory_that_is_not_a_layout_is_refused() {
    let env = Env::new();
    let dir = env.path().join("not-a-store");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("important.txt"), "keep me").unwrap();
    let err = run_fail(env.oxkit().arg("--store").arg(&dir).args(["cache", "ls"]));
    assert!(
        err.contains("not-a-store") && err.contains("not an OCI image layout"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "nothing was created"
    );
    let err = run_fail(env.oxkit().args([
        "image",
        "import",
        "--platform",
        "linux/amd64",
        "/nonexistent-rootfs",
        "x:1",
    ]));
    assert!(err.contains("/nonexistent-rootfs"), "{err}");
}

#[test]
fn concurrent_imports_from_many_processes_all_land() {
    let env = Env::new();
    let rootfs = busybox_rootfs("amd64");
    let children: Vec<_> = (0..6)
        .map(|i| {
            env.oxkit()
                .args([
                    "image",
                    "import",
                    "--platform",
                    "linux/amd64",
                    "--env",
                    &format!("N={i}"),
                ])
                .arg(&rootfs)
                .arg(format!("parallel/img:{i}"))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ls = json(&run_ok(env.oxkit().args(["--json", "cache", "ls"])));
    assert_eq!(ls.as_array().unwrap().len(), 6, "{ls}");
    run_ok(env.oxkit().args(["cache", "fsck"]));
}

/// Go's tar reader (through umoci) agrees with what our writer puts in a layer: long and
/// non-ASCII names (PAX), hard links, setuid bits, fifos, and as root devices, owners and
/// file capabilities.
#[test]
fn umoci_unpacks_every_entry_kind_we_write() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let env = Env::new();
    let root = env.path().join("rootfs");
    let long_dir = format!("deep/{}/{}", "d".repeat(90), "e".repeat(90));
    std::fs::create_dir_all(root.join(&long_dir)).unwrap();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    let long_file = format!("{long_dir}/{}", "f".repeat(99));
    std::fs::write(root.join(&long_file), "long").unwrap();
    std::fs::write(root.join("bin/ünïcode"), "utf8").unwrap();
    std::fs::write(root.join("bin/su"), "setuid").unwrap();
    std::fs::set_permissions(root.join("bin/su"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::hard_link(root.join("bin/su"), root.join("bin/su-link")).unwrap();
    run_ok(Command::new("mkfifo").arg(root.join("bin/fifo")));
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if is_root {
        run_ok(
            Command::new("mknod")
                .arg(root.join("bin/null"))
                .args(["c", "1", "3"]),
        );
        run_ok(
            Command::new("chown")
                .arg("1234:5678")
                .arg(root.join("bin/ünïcode")),
        );
        // cap_net_raw+ep, written as the raw xattr so no libcap tools are needed.
        let cap = [
            1u8, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let hex: String = cap.iter().map(|b| format!("{b:02x}")).collect();
        run_ok(
            Command::new(require_tool("setfattr"))
                .args(["-n", "security.capability", "-v"])
                .arg(format!("0x{hex}"))
                .arg(root.join("bin/su")),
        );
    }
    import(&env, "amd64", &root, "kinds:1");
    let bundle = env.path().join("bundle");
    run_ok(
        umoci()
            .args(["unpack", "--image"])
            .arg(format!(
                "{}:docker.io/library/kinds:1",
                env.store().display()
            ))
            .arg(&bundle),
    );
    let out = bundle.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(out.join(&long_file)).unwrap(),
        "long"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("bin/ünïcode")).unwrap(),
        "utf8"
    );
    let su = std::fs::metadata(out.join("bin/su")).unwrap();
    assert_eq!(su.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(
        su.ino(),
        std::fs::metadata(out.join("bin/su-link")).unwrap().ino(),
        "hard link kept"
    );
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &std::fs::metadata(out.join("bin/fifo")).unwrap().file_type()
    ));
    if is_root {
        let null = std::fs::metadata(out.join("bin/null")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_char_device(
            &null.file_type()
        ));
        assert_eq!(null.rdev(), std::fs::metadata("/dev/null").unwrap().rdev());
        let u = std::fs::metadata(out.join("bin/ünïcode")).unwrap();
        assert_eq!((u.uid(), u.gid()), (1234, 5678));
        let cap = run_ok(
            Command::new(require_tool("getfattr"))
                .args(["-n", "security.capability", "-e", "hex"])
                .arg(out.join("bin/su")),
        );
        assert!(
            cap.contains("security.capability=0x0100000200200000000000000000000000000000"),
            "file capability lost: {cap}"
        );
    }
}

/// `path type mode uid gid link-target` for everything below `dir`, sorted (mtimes left out:
/// extracting a tar touches the directories it fills).
fn tree_listing(dir: &Path) -> String {
    run_ok(Command::new("sh").arg("-c").arg(format!(
        "cd '{}' && find . -mindepth 1 -printf '%p %y %m %U %G %l\\n' | LC_ALL=C sort",
        dir.display()
    )))
}

#[test]
fn export_writes_an_images_file_system_and_a_docker_archive_the_real_tools_read() {
    let env = Env::new();
    let arch = crate::support::host_arch();
    let base = crate::build::import_busybox(&env, &arch);
    // Two layers over busybox: a deletion, a hard link, a symlink, and a directory replaced
    // (whiteouts and an opaque directory for the exporter to apply).
    let pkg = env.path().join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(
        pkg.join("build.yml"),
        format!("image: layered\norg: local\narches: [{arch}]\n"),
    )
    .unwrap();
    std::fs::write(
        pkg.join("Dockerfile"),
        format!(
            "FROM {base}\n\
             RUN rm /bin/ls && mkdir -p /d/sub && echo one > /d/sub/old && echo hi > /d/new \
             && ln /d/new /d/hard && ln -s new /d/sym && chmod 0750 /d/sub\n\
             RUN rm -r /d/sub && mkdir /d/sub && echo two > /d/sub/fresh\n"
        ),
    )
    .unwrap();
    run_ok(env.oxkit().args(["pkg", "--hash", "x1", "build"]).arg(&pkg));
    let image = "local/layered:x1";

    // The file system: what umoci unpacks from the same image, entry for entry.
    let fs_tar = env.path().join("fs.tar");
    run_ok(
        env.oxkit()
            .args([
                "cache",
                "export",
                "--format",
                "filesystem",
                image,
                "--outfile",
            ])
            .arg(&fs_tar),
    );
    let ours = env.path().join("ours");
    std::fs::create_dir_all(&ours).unwrap();
    run_ok(
        Command::new("tar")
            .args(["-xpf"])
            .arg(&fs_tar)
            .arg("--numeric-owner")
            .arg("-C")
            .arg(&ours),
    );
    let theirs = env.path().join("umoci");
    run_ok(
        umoci()
            .args(["raw", "unpack", "--image"])
            .arg(format!("{}:docker.io/{image}", env.store().display()))
            .arg(&theirs),
    );
    run_ok(
        Command::new("diff")
            .args(["-r", "--no-dereference"])
            .arg(&theirs)
            .arg(&ours),
    );
    assert_eq!(tree_listing(&ours), tree_listing(&theirs));
    assert!(!ours.join("bin/ls").exists() && ours.join("bin/busybox").exists());
    assert!(!ours.join("d/sub/old").exists());
    assert_eq!(
        std::fs::read_to_string(ours.join("d/sub/fresh")).unwrap(),
        "two\n"
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(ours.join("d/new")).unwrap().ino(),
        std::fs::metadata(ours.join("d/hard")).unwrap().ino(),
        "hard link kept"
    );
    // The same image gives the same bytes; to standard output too.
    let again = run_ok_bytes(env.oxkit().args([
        "cache",
        "export",
        "--format",
        "filesystem",
        image,
        "-o",
        "-",
    ]));
    assert_eq!(again, std::fs::read(&fs_tar).unwrap());

    // The docker archive: skopeo reads it as docker-archive: and as oci-archive:, and the
    // image it copies out has the store's config, byte for byte.
    let d_tar = env.path().join("docker.tar");
    run_ok(
        env.oxkit()
            .args([
                "cache",
                "export",
                "--format",
                "docker",
                "--arch",
                &arch,
                "--name",
                "example.org/loaded:v9",
                image,
                "-o",
            ])
            .arg(&d_tar),
    );
    let docker_manifest: serde_json::Value = json(&run_ok(
        Command::new("tar")
            .arg("-xOf")
            .arg(&d_tar)
            .arg("manifest.json"),
    ));
    assert_eq!(
        docker_manifest[0]["RepoTags"],
        serde_json::json!(["example.org/loaded:v9"])
    );
    // skopeo checks each layer it reads against the config's diff_ids; copied to `dir:` (no
    // conversion), the config is the store's, byte for byte.
    let copied = env.path().join("copied");
    run_ok(
        skopeo()
            .args(["copy", "--quiet"])
            .arg(format!("docker-archive:{}", d_tar.display()))
            .arg(format!("dir:{}", copied.display())),
    );
    let copied_manifest = json(&std::fs::read_to_string(copied.join("manifest.json")).unwrap());
    let config = copied_manifest["config"]["digest"].as_str().unwrap();
    let hex = config.trim_start_matches("sha256:");
    assert_eq!(
        std::fs::read(copied.join(hex)).unwrap(),
        std::fs::read(env.store().join("blobs/sha256").join(hex))
            .unwrap_or_else(|e| panic!("the copied config {config} is not in the store: {e}")),
    );
    let diff_ids =
        json(&std::fs::read_to_string(copied.join(hex)).unwrap())["rootfs"]["diff_ids"].clone();
    let layers: Vec<&str> = copied_manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(layers.len(), 3);
    assert_eq!(serde_json::json!(layers), diff_ids);
    let via_oci = skopeo_inspect(&format!("oci-archive:{}", d_tar.display()));
    assert_eq!(via_oci["Architecture"], arch.as_str());
    // LinuxKit's name for this format gives the same bytes.
    let o_tar = env.path().join("oci.tar");
    run_ok(
        env.oxkit()
            .args([
                "cache",
                "export",
                "--format",
                "oci",
                "--platform",
                &format!("linux/{arch}"),
                "--name",
                "example.org/loaded:v9",
                image,
                "-o",
            ])
            .arg(&o_tar),
    );
    assert_eq!(
        std::fs::read(&o_tar).unwrap(),
        std::fs::read(&d_tar).unwrap()
    );

    // Bad input: one clear error each, and no file left behind.
    let out = env.path().join("never.tar");
    let export = |args: &[&str]| {
        let mut c = env.oxkit();
        c.args(["cache", "export"]).args(args).arg("-o").arg(&out);
        run_fail(&mut c)
    };
    let err = export(&["--format", "filesystem", image, &base]);
    assert!(err.contains("exactly one image"), "{err}");
    let err = export(&["--format", "filesystem", "--platform", "linux/s390x", image]);
    assert!(err.contains("s390x") && err.contains(&arch), "{err}");
    let err = export(&["--format", "docker", "local/nothing:here"]);
    assert!(
        err.contains("no image docker.io/local/nothing:here"),
        "{err}"
    );
    let err = export(&["--format", "filesystem", "--name", "x:y", image]);
    assert!(err.contains("--name"), "{err}");
    let err = export(&["--platform", "linux/amd64", image]);
    assert!(err.contains("every platform"), "{err}");
    let err = export(&["--format", "docker", "--platform", "linux", image]);
    assert!(err.contains("--platform \"linux\""), "{err}");
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(env.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".oxkit-export-")
        })
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

fn run_ok_bytes(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
