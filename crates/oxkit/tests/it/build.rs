//! `oxkit pkg build` end to end: real packages on busybox bases (amd64 and arm64, the latter
//! through binfmt/QEMU), the images unpacked with umoci and inspected (files, modes, owners,
//! symlinks, whiteouts, config fields), reproducibility across fresh stores, the skip logic,
//! the step cache, and bad input failing cleanly at its Dockerfile line.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::{Env, busybox_rootfs, require_tool, run_fail, run_ok};

/// Writes a package directory `pkgs/NAME` with `build.yml` and `files` (path, content).
pub(crate) fn package(env: &Env, name: &str, build_yml: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = env.path().join("pkgs").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("build.yml"), build_yml).unwrap();
    for (path, content) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    dir
}

/// Imports the busybox root filesystem for `arch` as `test/busybox:ARCH`.
pub(crate) fn import_busybox(env: &Env, arch: &str) -> String {
    let name = format!("test/busybox:{arch}");
    run_ok(
        env.oxkit()
            .args(["image", "import", "--platform"])
            .arg(format!("linux/{arch}"))
            .arg(busybox_rootfs(arch))
            .arg(&name),
    );
    name
}

/// `oxkit --json pkg build ARGS`, parsed.
pub(crate) fn build_json(env: &Env, args: &[&str]) -> Value {
    let out = run_ok(env.oxkit().args(["--json", "pkg", "build"]).args(args));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON {e}: {out}"))
}

/// The canonical store name of a familiar one (`test/x:t` is `docker.io/test/x:t`).
fn canonical(name: &str) -> String {
    format!("docker.io/{name}")
}

/// Unpacks `name` (familiar, single-platform) from the env's store with umoci into `dest`;
/// returns the root filesystem directory.
pub(crate) fn unpack(store: &Path, name: &str, dest: &Path) -> PathBuf {
    let umoci = require_tool("umoci");
    let mut cmd = Command::new(umoci);
    cmd.arg("unpack");
    if !rustix_is_root() {
        cmd.arg("--rootless");
    }
    run_ok(
        cmd.arg("--image")
            .arg(format!("{}:{}", store.display(), canonical(name)))
            .arg(dest),
    );
    dest.join("rootfs")
}

pub(crate) fn rustix_is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A blob of the store, parsed.
pub(crate) fn blob_json(store: &Path, digest: &str) -> Value {
    let hex = digest.trim_start_matches("sha256:");
    serde_json::from_slice(&std::fs::read(store.join("blobs/sha256").join(hex)).unwrap()).unwrap()
}

/// The image config of manifest `digest`.
pub(crate) fn config_of(store: &Path, manifest: &str) -> Value {
    let m = blob_json(store, manifest);
    blob_json(store, m["config"]["digest"].as_str().unwrap())
}

/// Every path under `root` with what it is: kind, mode, owner, and content or link target.
pub(crate) fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let what = if m.file_type().is_symlink() {
                format!("link->{}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if m.is_file() {
                let bytes = std::fs::read(&p).unwrap();
                format!(
                    "file:{}:{}",
                    bytes.len(),
                    String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).replace('\n', "\\n")
                )
            } else {
                "special".to_string()
            };
            let mode = if m.file_type().is_symlink() {
                0o777
            } else {
                m.permissions().mode() & 0o7777
            };
            out.insert(rel, format!("{what} {mode:o} {}:{}", m.uid(), m.gid()));
        }
    }
    out
}

/// The arch entry of a `--json` report.
fn arch<'a>(report: &'a Value, a: &str) -> &'a Value {
    report[0]["arches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["platform"] == format!("linux/{a}"))
        .unwrap_or_else(|| panic!("no {a} in {report}"))
}

const FEATURES: &str = r#"ARG TARGETARCH
ARG BASE=test/busybox:${TARGETARCH}
FROM ${BASE} AS build
ARG TARGETARCH
RUN mkdir -p /out/sub && echo "built for $TARGETARCH on $(uname -m)" > /out/arch.txt \
 && echo secret > /out/sub/mode700 && chmod 700 /out/sub/mode700 \
 && ln -s arch.txt /out/link && chown 12:34 /out/sub/mode700
FROM ${BASE}
ENV APP=/opt/app GREETING="hello world"
WORKDIR $APP
COPY --from=build /out/ ./
COPY --chown=1000:1001 --chmod=640 data/ /data/
RUN rm /bin/vi && echo "$GREETING" > greeting && mkdir /tmp/gone && touch /tmp/gone/x
RUN rm -r /tmp/gone
USER 1000:1001
EXPOSE 80 53/udp
VOLUME /data
LABEL org.example.k="v $APP"
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s CMD ["true"]
ONBUILD RUN echo later
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat greeting"]
"#;

fn features(env: &Env, arches: &str) -> PathBuf {
    package(
        env,
        "features",
        &format!("image: features\norg: test\narches: [{arches}]\n"),
        &[
            ("Dockerfile", FEATURES),
            ("data/a.conf", "a=1\n"),
            ("data/d/b.conf", "b=2\n"),
        ],
    )
}

fn check_features(env: &Env, report: &Value, a: &str, uname: &str) {
    let entry = arch(report, a);
    let name = entry["name"].as_str().unwrap();
    let digest = entry["digest"].as_str().unwrap();
    let root = unpack(&env.store(), name, &env.path().join(format!("unpack-{a}")));
    let t = tree(&root);
    let get = |p: &str| {
        t.get(p)
            .unwrap_or_else(|| panic!("{p} missing from {a} image: {t:#?}"))
            .clone()
    };
    assert_eq!(
        get("opt/app/arch.txt"),
        format!(
            "file:{}:built for {a} on {uname}\\n 644 0:0",
            15 + a.len() + uname.len()
        )
    );
    assert_eq!(get("opt/app/link"), "link->arch.txt 777 0:0");
    if rustix_is_root() {
        assert_eq!(get("opt/app/sub/mode700"), "file:7:secret\\n 700 12:34");
        assert_eq!(get("data/a.conf"), "file:4:a=1\\n 640 1000:1001");
        assert_eq!(get("data/d/b.conf"), "file:4:b=2\\n 640 1000:1001");
    }
    assert_eq!(get("opt/app/greeting"), "file:12:hello world\\n 644 0:0");
    assert!(!t.contains_key("bin/vi"), "whiteout did not delete bin/vi");
    assert!(
        !t.contains_key("tmp/gone"),
        "a directory made and removed in later steps remains"
    );
    assert!(t.contains_key("bin/sh"));
    // No mount stubs leak into the image.
    for stub in [
        "proc",
        "dev",
        "sys",
        "etc/hosts",
        "etc/resolv.conf",
        "etc/hostname",
    ] {
        assert!(!t.contains_key(stub), "{stub} leaked into the image");
    }
    let config = config_of(&env.store(), digest);
    assert_eq!(config["architecture"], a);
    let c = &config["config"];
    assert_eq!(c["WorkingDir"], "/opt/app");
    assert_eq!(c["User"], "1000:1001");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(c["Cmd"], serde_json::json!(["cat greeting"]));
    assert_eq!(
        c["ExposedPorts"],
        serde_json::json!({"53/udp": {}, "80/tcp": {}})
    );
    assert_eq!(c["Volumes"], serde_json::json!({"/data": {}}));
    assert_eq!(c["Labels"]["org.example.k"], "v /opt/app");
    assert_eq!(c["StopSignal"], "SIGTERM");
    assert_eq!(c["Healthcheck"]["Test"], serde_json::json!(["CMD", "true"]));
    assert_eq!(c["Healthcheck"]["Interval"], 5_000_000_000i64);
    assert_eq!(c["OnBuild"], serde_json::json!(["RUN echo later"]));
    let envs: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        envs.contains(&"APP=/opt/app") && envs.contains(&"GREETING=hello world"),
        "{envs:?}"
    );
    // Only the final stage's layers ship: the base, two COPYs, WORKDIR, two RUNs.
    let m = blob_json(&env.store(), digest);
    assert_eq!(m["layers"].as_array().unwrap().len(), 6, "{m}");
    let history = config["history"].as_array().unwrap();
    assert!(history.iter().any(|h| h["empty_layer"] == true));
    // The deletion is a whiteout in the layer of the RUN that made it.
    let layers = m["layers"].as_array().unwrap();
    let rm_layer = layers[4]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let listing = run_ok(
        Command::new("tar")
            .arg("-tzf")
            .arg(env.store().join("blobs/sha256").join(rm_layer)),
    );
    assert!(
        listing.lines().any(|l| l.ends_with("bin/.wh.vi")),
        "{listing}"
    );
}

#[test]
fn builds_a_multi_stage_package_for_amd64() {
    let env = Env::new();
    import_busybox(&env, "amd64");
    let dir = features(&env, "amd64");
    let report = build_json(&env, &[dir.to_str().unwrap()]);
    check_features(&env, &report, "amd64", "x86_64");
    // The index names the platform.
    let index = blob_json(&env.store(), report[0]["index"].as_str().unwrap());
    assert_eq!(index["manifests"][0]["platform"]["architecture"], "amd64");
}

#[test]
fn builds_arm64_through_binfmt() {
    let env = Env::new();
    import_busybox(&env, "arm64");
    let dir = features(&env, "arm64");
    let report = build_json(&env, &[dir.to_str().unwrap()]);
    check_features(&env, &report, "arm64", "aarch64");
}

#[test]
fn every_arch_in_one_build_and_one_index() {
    let env = Env::new();
    import_busybox(&env, "amd64");
    import_busybox(&env, "arm64");
    let dir = features(&env, "amd64");
    let report = build_json(
        &env,
        &[
            "--platforms",
            "linux/amd64,linux/arm64",
            dir.to_str().unwrap(),
        ],
    );
    let index = blob_json(&env.store(), report[0]["index"].as_str().unwrap());
    let arches: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(arches, ["amd64", "arm64"]);
    let ls = run_ok(env.oxkit().args(["cache", "ls"]));
    let name = report[0]["name"].as_str().unwrap();
    for suffix in ["", "-amd64", "-arm64"] {
        assert!(
            ls.contains(&format!("{}{suffix} ", canonical(name))),
            "{ls}"
        );
    }
}

#[test]
fn hello_example_builds_on_a_fresh_store() {
    let env = Env::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/packages/hello");
    // Outside the repository the tag is the directory's own tree id: copy it out so the test
    // does not depend on the example being committed.
    let dir = env.path().join("hello");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["build.yml", "Dockerfile", "hello.txt"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let report = build_json(&env, &[dir.to_str().unwrap()]);
    assert_eq!(report[0]["arches"].as_array().unwrap().len(), 3);
    let name = arch(&report, "riscv64")["name"].as_str().unwrap();
    let root = unpack(&env.store(), name, &env.path().join("u"));
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hello.txt")).unwrap(),
        "Hello from an oxkit package!\n"
    );
    let config = config_of(
        &env.store(),
        arch(&report, "riscv64")["digest"].as_str().unwrap(),
    );
    assert!(
        config["config"]["Labels"]["org.mobyproject.config"]
            .as_str()
            .unwrap()
            .contains("hello.txt")
    );
    // Built again: skipped.
    let again = build_json(&env, &[dir.to_str().unwrap()]);
    assert_eq!(again[0]["skipped"], true);
    assert_eq!(again[0]["index"], report[0]["index"]);
}

#[test]
fn same_package_twice_gives_the_same_bytes() {
    let digests: Vec<String> = (0..2)
        .map(|_| {
            let env = Env::new();
            import_busybox(&env, "amd64");
            let dir = features(&env, "amd64");
            let report = build_json(&env, &[dir.to_str().unwrap()]);
            report[0]["index"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(digests[0], digests[1]);
}

#[test]
fn step_cache_rebuilds_only_from_the_edit_and_survives_cache_clean() {
    let env = Env::new();
    import_busybox(&env, "amd64");
    let df = "FROM test/busybox:amd64\nCOPY a /a\nRUN cat /a > /b\nRUN echo late > /c\n";
    let dir = package(
        &env,
        "cached",
        "image: cached\norg: test\narches: [amd64]\n",
        &[("Dockerfile", df), ("a", "A\n")],
    );
    let first = build_json(&env, &[dir.to_str().unwrap()]);
    assert_eq!(arch(&first, "amd64")["cachedSteps"], 0);
    // Garbage collection keeps what the cache records name.
    run_ok(env.oxkit().args(["cache", "clean"]));
    let forced = build_json(&env, &["--force", dir.to_str().unwrap()]);
    assert_eq!(arch(&forced, "amd64")["cachedSteps"], 3);
    assert_eq!(
        arch(&forced, "amd64")["digest"],
        arch(&first, "amd64")["digest"]
    );
    // Editing the last step rebuilds only it.
    std::fs::write(dir.join("Dockerfile"), df.replace("late", "later")).unwrap();
    let edited = build_json(&env, &[dir.to_str().unwrap()]);
    assert_eq!(arch(&edited, "amd64")["cachedSteps"], 2);
    // Editing a COPY source rebuilds from the COPY.
    std::fs::write(dir.join("a"), "changed\n").unwrap();
    let changed = build_json(&env, &[dir.to_str().unwrap()]);
    assert_eq!(arch(&changed, "amd64")["cachedSteps"], 0);
    let root = unpack(
        &env.store(),
        arch(&changed, "amd64")["name"].as_str().unwrap(),
        &env.path().join("u"),
    );
    assert_eq!(
        std::fs::read_to_string(root.join("b")).unwrap(),
        "changed\n"
    );
    // disable-cache turns it off.
    let off = build_json(&env, &["--force", "--disable-cache", dir.to_str().unwrap()]);
    assert_eq!(arch(&off, "amd64")["cachedSteps"], 0);
}

#[test]
fn heredocs_args_and_dockerignore() {
    let env = Env::new();
    import_busybox(&env, "amd64");
    let df = "ARG V=global\nFROM test/busybox:amd64\nARG V\nARG W=w-$V\nRUN <<EOF\necho \"$V $W\" > /args\necho two >> /args\nEOF\nCOPY <<EOF /etc/conf\nv=${V}\nEOF\nRUN <<EOF\n#!/bin/sh\necho \"shebang $0\" > /shebang\nEOF\nCOPY . /ctx/\n";
    let dir = package(
        &env,
        "heredocs",
        "image: heredocs\norg: test\narches: [amd64]\nbuildArgs:\n  - W=from-yml\n",
        &[
            ("Dockerfile", df),
            (".dockerignore", "*.log\nsecret/\n!secret/keep\n"),
            ("a.log", "x"),
            ("secret/no", "x"),
            ("secret/keep", "k"),
            ("src/main.c", "int main;"),
        ],
    );
    let report = build_json(&env, &["--build-arg", "V=cli", dir.to_str().unwrap()]);
    let root = unpack(
        &env.store(),
        arch(&report, "amd64")["name"].as_str().unwrap(),
        &env.path().join("u"),
    );
    assert_eq!(
        std::fs::read_to_string(root.join("args")).unwrap(),
        "cli from-yml\ntwo\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/conf")).unwrap(),
        "v=cli\n"
    );
    // A heredoc starting with #! runs as its own file, as BuildKit does.
    assert_eq!(
        std::fs::read_to_string(root.join("shebang")).unwrap(),
        "shebang /.oxkit-pipes/EOF\n"
    );
    assert!(
        !root.join(".oxkit-pipes").exists(),
        "the heredoc's mount point leaked"
    );
    assert!(root.join("ctx/src/main.c").is_file());
    assert!(root.join("ctx/secret/keep").is_file());
    assert!(!root.join("ctx/secret/no").exists());
    assert!(!root.join("ctx/a.log").exists());
}

/// Asserts the store names nothing for the package and holds no leftovers of the build.
fn nothing_stored(env: &Env, image: &str) {
    let ls = run_ok(env.oxkit().args(["cache", "ls"]));
    assert!(!ls.contains(image), "{ls}");
    let tmp = env.store().join("oxkit/tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name())
                .filter(|n| n.to_string_lossy().starts_with("build-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "build directories left behind: {left:?}");
}

#[test]
fn a_failing_run_reports_its_line_status_and_output_and_stores_nothing() {
    let env = Env::new();
    import_busybox(&env, "amd64");
    let df = "FROM test/busybox:amd64\nRUN echo fine\nRUN for i in $(seq 1 30); do echo line$i; done; exit 2\n";
    let dir = package(
        &env,
        "fails",
        "image: fails\norg: test\narches: [amd64]\n",
        &[("Dockerfile", df)],
    );
    let err = run_fail(env.oxkit().args(["pkg", "build"]).arg(&dir));
    assert!(err.contains("Dockerfile:3: RUN for i in"), "{err}");
    assert!(err.contains("exited with 2"), "{err}");
    assert!(
        err.contains("line30") && err.contains("line11") && !err.contains("line10\n"),
        "{err}"
    );
    nothing_stored(&env, "test/fails");
}

#[test]
fn bad_input_fails_at_its_line() {
    let env = Env::new();
    import_busybox(&env, "amd64");
    let cases: &[(&str, &str, &str)] = &[
        (
            "FROM test/busybox:amd64\nFROBNICATE x\n",
            "Dockerfile:2:",
            "unknown instruction",
        ),
        (
            "FROM test/busybox:amd64\nCOPY ../outside /x\n",
            "Dockerfile:2:",
            "outside",
        ),
        (
            "FROM test/busybox:amd64\nRUN true\nCOPY missing.txt /x\n",
            "Dockerfile:3:",
            "not found in the build context",
        ),
        (
            "FROM test/busybox:amd64\nCOPY --from=nosuchstage /x /x\n",
            "Dockerfile:2:",
            "no stage named \"nosuchstage\"",
        ),
        (
            "FROM scratch AS a\nCOPY --from=b /x /x\nFROM scratch AS b\nCOPY --from=a /y /y\n",
            "Dockerfile:2:",
            "cycle",
        ),
        (
            "FROM --platform=linux/nosucharch test/busybox:amd64\n",
            "Dockerfile:1:",
            "unknown platform",
        ),
        (
            "FROM test/not-imported:1\nRUN true\n",
            "Dockerfile:1:",
            "not in the store",
        ),
        (
            // Stored as it is, the file would read back as a whiteout of /etc/passwd.
            "FROM test/busybox:amd64\nRUN true\nRUN touch /etc/.wh.passwd\n",
            "Dockerfile:3:",
            "\"etc/.wh.passwd\" to the layer: its name starts with '.wh.'",
        ),
    ];
    for (i, (df, at, what)) in cases.iter().enumerate() {
        let name = format!("bad{i}");
        let dir = package(
            &env,
            &name,
            &format!("image: {name}\norg: test\narches: [amd64]\n"),
            &[("Dockerfile", df)],
        );
        let err = run_fail(env.oxkit().args(["pkg", "build"]).arg(&dir));
        assert!(
            err.contains(at) && err.contains(what),
            "case {i}: want {at} {what}: {err}"
        );
        nothing_stored(&env, &format!("test/{name}"));
    }
    // An unknown --platforms value is refused before anything is built.
    let dir = env.path().join("pkgs/bad0");
    let err = run_fail(
        env.oxkit()
            .args(["pkg", "build", "--platforms", "linux/bogus"])
            .arg(&dir),
    );
    assert!(err.contains("unknown platform"), "{err}");
}

#[test]
fn dry_run_builds_nothing_and_docker_is_accepted() {
    let env = Env::new();
    let dir = package(
        &env,
        "dry",
        "image: dry\norg: test\n",
        &[("Dockerfile", "FROM scratch\nCOPY build.yml /\n")],
    );
    let report = build_json(&env, &["--dry-run", "--docker", dir.to_str().unwrap()]);
    assert_eq!(report[0]["dryRun"], true);
    assert_eq!(report[0]["arches"].as_array().unwrap().len(), 3);
    assert!(!run_ok(env.oxkit().args(["cache", "ls"])).contains("test/dry"));
}

#[test]
fn zstd_layers_and_source_date_epoch() {
    let env = Env::new();
    let dir = package(
        &env,
        "z",
        "image: z\norg: test\narches: [amd64]\n",
        &[("Dockerfile", "FROM scratch\nCOPY f /f\n"), ("f", "x")],
    );
    let report = build_json(
        &env,
        &[
            "--compression",
            "zstd",
            "--source-date-epoch",
            "1700000000",
            dir.to_str().unwrap(),
        ],
    );
    let digest = arch(&report, "amd64")["digest"].as_str().unwrap();
    let m = blob_json(&env.store(), digest);
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(
        config_of(&env.store(), digest)["created"],
        "2023-11-14T22:13:20Z"
    );
}

#[test]
fn base_images_missing_from_the_store_are_pulled_from_their_registry() {
    let reg = crate::support::Registry::start();
    let env = Env::new();
    let local = import_busybox(&env, "amd64");
    let remote = format!("{}/test/busybox:pulled", reg.host());
    run_ok(
        env.oxkit()
            .args(["cache", "push", "--remote-name", &remote, &local]),
    );
    let fresh = Env::new();
    let df = format!("FROM {remote}\nRUN echo pulled > /p\n");
    let dir = package(
        &fresh,
        "pulled",
        "image: pulled\norg: test\narches: [amd64]\n",
        &[("Dockerfile", &df)],
    );
    let report = build_json(&fresh, &[dir.to_str().unwrap()]);
    let root = unpack(
        &fresh.store(),
        arch(&report, "amd64")["name"].as_str().unwrap(),
        &fresh.path().join("u"),
    );
    assert_eq!(std::fs::read_to_string(root.join("p")).unwrap(), "pulled\n");
    assert!(root.join("bin/busybox").is_file());
}

/// The manifest digest `name` (familiar) has in the store's `index.json`.
fn stored_manifest(store: &Path, name: &str) -> String {
    let index = blob_json_path(&store.join("index.json"));
    let want = canonical(name);
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == want.as_str())
        .unwrap_or_else(|| panic!("{want} not in the store"))["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn blob_json_path(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// `ADD https://...` downloads through the same TLS setup as the registry client (a private
/// CA in certs.d), only when the package allows the network, checks `--checksum`, and gives
/// the file Docker's mode 0600; a missing URL or a wrong checksum fails at its line.
#[test]
fn add_downloads_urls_when_the_network_is_allowed() {
    let reg = crate::support::Registry::start_with(crate::support::RegistryOpts {
        tls: true,
        ..Default::default()
    });
    let env = Env::new();
    crate::registry::trust(&env, &reg);
    let local = import_busybox(&env, "amd64");
    // The registry serves blobs by plain GET: a real HTTPS file server with a private CA.
    let remote = format!("{}/test/files:1", reg.host());
    run_ok(
        env.oxkit()
            .args(["cache", "push", "--remote-name", &remote, &local]),
    );
    let manifest = stored_manifest(&env.store(), &local);
    let config = blob_json(&env.store(), &manifest)["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let want = std::fs::read(
        env.store()
            .join("blobs/sha256")
            .join(config.trim_start_matches("sha256:")),
    )
    .unwrap();
    let url = format!("{}/v2/test/files/blobs/{config}", reg.url());
    // The same URL with credentials and a signed-looking query, which must never be shown.
    let secret_url = format!(
        "https://tester:hunter2@{}/v2/test/files/blobs/{config}?token=s3cret",
        reg.host()
    );
    let df = |extra: &str| {
        format!(
            "FROM {local}\nADD --checksum={config} {url} /dl/config.json\nADD {secret_url} /dl/\n{extra}"
        )
    };

    // Without `network: true` the download is refused before anything is fetched.
    let offline = package(
        &env,
        "offline",
        "image: offline\norg: test\narches: [amd64]\n",
        &[("Dockerfile", &df(""))],
    );
    let err = run_fail(env.oxkit().args(["pkg", "build"]).arg(&offline));
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("network: true"), "{err}");

    let online = package(
        &env,
        "online",
        "image: online\norg: test\narches: [amd64]\nnetwork: true\n",
        &[("Dockerfile", &df(""))],
    );
    let out = env
        .oxkit()
        .args(["--json", "pkg", "build"])
        .arg(&online)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("hunter2") && !stderr.contains("s3cret"),
        "{stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let manifest = arch(&report, "amd64")["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let history = config_of(&env.store(), &manifest)["history"].to_string();
    assert!(history.contains("/v2/test/files/blobs/"), "{history}");
    assert!(
        !history.contains("hunter2") && !history.contains("s3cret"),
        "{history}"
    );
    let root = unpack(
        &env.store(),
        arch(&report, "amd64")["name"].as_str().unwrap(),
        &env.path().join("u"),
    );
    let got = root.join("dl/config.json");
    assert_eq!(std::fs::read(&got).unwrap(), want);
    assert_eq!(
        std::fs::metadata(&got).unwrap().permissions().mode() & 0o7777,
        0o600
    );
    // Into a directory, the file is named after the URL's last segment.
    assert_eq!(std::fs::read(root.join("dl").join(&config)).unwrap(), want);

    // A wrong checksum and a missing URL both fail at their line and store nothing.
    let wrong = format!("sha256:{}", "0".repeat(64));
    let bad = package(
        &env,
        "badsum",
        "image: badsum\norg: test\narches: [amd64]\nnetwork: true\n",
        &[(
            "Dockerfile",
            &format!("FROM {local}\nRUN true\nADD --checksum={wrong} {url} /x\n"),
        )],
    );
    let err = run_fail(env.oxkit().args(["pkg", "build"]).arg(&bad));
    assert!(err.contains("Dockerfile:3"), "{err}");
    assert!(err.contains("checksum") && err.contains(&wrong), "{err}");
    nothing_stored(&env, "test/badsum");
    let missing_url = format!(
        "https://tester:hunter2@{}/v2/test/files/blobs/{wrong}?token=s3cret",
        reg.host()
    );
    let missing = package(
        &env,
        "missing",
        "image: missing\norg: test\narches: [amd64]\nnetwork: true\n",
        &[(
            "Dockerfile",
            &format!("FROM {local}\nADD {missing_url} /x\n"),
        )],
    );
    let err = run_fail(env.oxkit().args(["pkg", "build"]).arg(&missing));
    assert!(err.contains("Dockerfile:2"), "{err}");
    assert!(err.contains("404") && err.contains(&wrong), "{err}");
    assert!(!err.contains("hunter2") && !err.contains("s3cret"), "{err}");
    nothing_stored(&env, "test/missing");
}
