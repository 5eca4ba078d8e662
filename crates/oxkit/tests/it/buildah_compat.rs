//! Compatibility with buildah: the same Dockerfiles built by `buildah bud` (Debian's 1.28, vfs
//! storage, chroot isolation, runc) and by `oxkit pkg build` on the same busybox base give the
//! same root filesystem (paths, kinds, modes, owners, link targets, contents; mtimes aside) and
//! the same config fields. buildah gets the base as an OCI archive exported from oxkit's store.
//! Heredocs are checked by content in `build.rs` (buildah 1.28 predates them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::build::{build_json, config_of, import_busybox, package, tree, unpack};
use crate::support::{Env, require_tool, run_ok};

/// Directories buildah leaves as mount points in the image (empty, created by the runtime);
/// oxkit removes its own.
const BUILDAH_STUBS: &[&str] = &[
    "dev",
    "proc",
    "sys",
    "run",
    "etc/hosts",
    "etc/resolv.conf",
    "etc/hostname",
];

struct Case {
    name: &'static str,
    /// `{BASE}` is replaced by each tool's spelling of the busybox base.
    dockerfile: &'static str,
    files: &'static [(&'static str, &'static str)],
    build_args: &'static [&'static str],
    /// Makes extra files in the package directory (binary ones, archives).
    prepare: Option<fn(&Path)>,
}

/// Builds `case` with both tools and compares the results.
fn compare(case: &Case) {
    let env = Env::new();
    let base = import_busybox(&env, "amd64");
    let archive = env.path().join("base.tar");
    run_ok(
        env.oxkit()
            .args(["cache", "export", &base, "-o"])
            .arg(&archive),
    );

    // oxkit
    let df = case.dockerfile.replace("{BASE}", &base);
    let mut files: Vec<(&str, &str)> = case.files.to_vec();
    files.push(("Dockerfile", &df));
    let dir = package(
        &env,
        case.name,
        &format!("image: {}\norg: test\narches: [amd64]\n", case.name),
        &files,
    );
    if let Some(prepare) = case.prepare {
        prepare(&dir);
    }
    let mut args: Vec<String> = Vec::new();
    for a in case.build_args {
        args.push("--build-arg".into());
        args.push((*a).into());
    }
    args.push(dir.display().to_string());
    let report = build_json(&env, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let ours = &report[0]["arches"][0];
    let our_root = unpack(
        &env.store(),
        ours["name"].as_str().unwrap(),
        &env.path().join("ours"),
    );
    let our_config = config_of(&env.store(), ours["digest"].as_str().unwrap());

    // buildah, in a copy of the context with its own FROM spelling.
    let ctx = env.path().join("buildah-ctx");
    copy_dir(&dir, &ctx);
    std::fs::write(
        ctx.join("Dockerfile"),
        case.dockerfile
            .replace("{BASE}", &format!("oci-archive:{}", archive.display())),
    )
    .unwrap();
    let bh = env.path().join("buildah");
    let buildah = |args: &[&str]| {
        let mut c = Command::new(require_tool("buildah"));
        c.args(["--storage-driver", "vfs", "--root"])
            .arg(bh.join("root"))
            .arg("--runroot")
            .arg(bh.join("run"))
            .args(args);
        c
    };
    let mut bud = buildah(&[
        "bud",
        "--isolation",
        "chroot",
        "--runtime",
        "/usr/sbin/runc",
        "--layers=false",
        "-t",
        "localhost/compat",
    ]);
    for a in case.build_args {
        bud.args(["--build-arg", a]);
    }
    run_ok(bud.arg(&ctx));
    let layout = env.path().join("theirs-layout");
    run_ok(&mut buildah(&[
        "push",
        "localhost/compat",
        &format!("oci:{}:compat", layout.display()),
    ]));
    let their_root = unpack_layout(&layout, &env.path().join("theirs"));
    let their_config = read_layout_config(&layout);

    // Trees.
    let mut theirs = tree(&their_root);
    let ours_tree = tree(&our_root);
    for stub in BUILDAH_STUBS {
        if !ours_tree.contains_key(*stub)
            && theirs
                .get(*stub)
                .is_some_and(|v| v.starts_with("dir ") || v.starts_with("file:0:"))
        {
            theirs.remove(*stub);
        }
    }
    let diff = differences(&ours_tree, &theirs);
    assert!(
        diff.is_empty(),
        "case {}: root filesystems differ (ours vs buildah's):\n{}",
        case.name,
        diff.join("\n")
    );

    // Config fields.
    // buildah writes no Shell, OnBuild or Healthcheck into OCI configs (Docker's format only):
    // build.rs checks those.
    for field in [
        "Env",
        "Entrypoint",
        "Cmd",
        "WorkingDir",
        "User",
        "ExposedPorts",
        "Volumes",
        "StopSignal",
    ] {
        let a = norm(&our_config["config"][field]);
        let b = norm(&their_config["config"][field]);
        assert_eq!(
            a, b,
            "case {}: config {field} differs (ours, buildah's)",
            case.name
        );
    }
    let mut labels = their_config["config"]["Labels"].clone();
    if let Some(m) = labels.as_object_mut() {
        m.remove("io.buildah.version");
    }
    assert_eq!(
        norm(&our_config["config"]["Labels"]),
        norm(&labels),
        "case {}: labels",
        case.name
    );
}

/// Absent, null, empty list and empty object all mean "unset".
fn norm(v: &Value) -> Value {
    match v {
        Value::Array(a) if a.is_empty() => Value::Null,
        Value::Object(o) if o.is_empty() => Value::Null,
        other => other.clone(),
    }
}

fn differences(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => out.push(format!("only ours:    {k} {v}")),
            Some(w) if w != v => out.push(format!("differs:      {k}: {v} vs {w}")),
            _ => {}
        }
    }
    for (k, v) in b {
        if !a.contains_key(k) {
            out.push(format!("only buildah: {k} {v}"));
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    run_ok(Command::new("cp").arg("-a").arg(from).arg(to));
}

fn unpack_layout(layout: &Path, dest: &Path) -> PathBuf {
    run_ok(
        Command::new(require_tool("umoci"))
            .args(["unpack", "--image"])
            .arg(format!("{}:compat", layout.display()))
            .arg(dest),
    );
    dest.join("rootfs")
}

fn read_layout_config(layout: &Path) -> Value {
    let read = |d: &str| -> Value {
        serde_json::from_slice(
            &std::fs::read(
                layout
                    .join("blobs/sha256")
                    .join(d.trim_start_matches("sha256:")),
            )
            .unwrap(),
        )
        .unwrap()
    };
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = read(index["manifests"][0]["digest"].as_str().unwrap());
    read(manifest["config"]["digest"].as_str().unwrap())
}

#[test]
fn multi_stage_and_copy_from() {
    compare(&Case {
        name: "multistage",
        dockerfile: "FROM {BASE} AS build\nRUN mkdir -p /out/d && echo one > /out/one && echo two > /out/d/two && chmod 750 /out/d && ln -s one /out/l && ln /out/one /out/hard && chmod 4755 /out/one\nFROM {BASE} AS unused\nRUN false\nFROM {BASE}\nCOPY --from=build /out/ /opt/\nCOPY --from=build /out/one /single\nCOPY --from=build /out/d /copied-dir\n",
        files: &[],
        build_args: &[],
        prepare: None,
    });
}

/// Archives with owners, modes, a symlink and a hard link, in every compression ADD knows.
fn make_archives(dir: &Path) {
    let sh = format!(
        "set -e; cd {d}; mkdir -p t/dir/deep; echo x > t/dir/f; chmod 600 t/dir/f; ln -s dir/f t/link; ln t/dir/f t/dir/hard; echo y > t/dir/deep/g; chmod 2755 t/dir/deep
tar --owner=7 --group=8 -C t -cf packed.tar .
tar --owner=0 --group=0 -C t -czf packed.tgz dir
tar -C t -cjf packed.tbz2 link dir/deep
tar -C t -cJf packed.txz dir/f
rm -r t",
        d = dir.display()
    );
    run_ok(Command::new("sh").arg("-c").arg(sh));
}

#[test]
fn add_of_local_tars() {
    compare(&Case {
        name: "addtar",
        dockerfile: "FROM {BASE}\nADD packed.tar /unpacked/\nADD packed.tgz /gz\nADD packed.tbz2 packed.txz /more/\nADD plain.txt /plain/\n",
        files: &[("plain.txt", "not an archive\n")],
        build_args: &[],
        prepare: Some(make_archives),
    });
}

#[test]
fn workdir_user_env_expansion() {
    compare(&Case {
        name: "envexp",
        dockerfile: "FROM {BASE}\nENV A=one B=${A}-two\nENV C=\"$B three\" D=${NOPE:-dflt}\nWORKDIR /w/$A\nWORKDIR sub\nRUN echo \"$A|$B|$C|$D|$(pwd)\" > out\nCOPY f ./rel\nUSER 1000:1000\nRUN id > /tmp/id-as-user || true\nUSER 0\nRUN echo $HOME > /home-of-root\n",
        files: &[("f", "file\n")],
        build_args: &[],
        prepare: None,
    });
}

#[test]
fn whiteouts_and_replaced_directories() {
    compare(&Case {
        name: "whiteouts",
        dockerfile: "FROM {BASE}\nRUN mkdir -p /d/sub && echo a > /d/sub/a && echo b > /d/b && echo gone > /gone\nRUN rm /gone /bin/vi && rm -r /d/sub\nRUN rm -r /d && mkdir /d && echo new > /d/new\nRUN rm -r /usr/sbin && echo file > /usr/sbin\n",
        files: &[],
        build_args: &[],
        prepare: None,
    });
}

#[test]
fn arg_scoping() {
    compare(&Case {
        name: "args",
        dockerfile: "ARG G=global\nARG OVER=default\nFROM {BASE}\nRUN echo \"[$G]\" > /before\nARG G\nARG OVER\nARG L=local-$G\nARG UNSET\nRUN echo \"$G $OVER $L [$UNSET]\" > /after\nENV L=env-wins\nRUN echo $L > /env\n",
        files: &[],
        build_args: &["OVER=given"],
        prepare: None,
    });
}

#[test]
fn shell_and_command_forms() {
    compare(&Case {
        name: "shell",
        // buildah 1.28 ignores SHELL for shell-form CMD (BuildKit honours it, as oxkit does), so
        // CMD comes before SHELL here.
        dockerfile: "FROM {BASE}\nCMD echo shell form\nSHELL [\"/bin/sh\", \"-ec\"]\nRUN echo $0 > /shell-name\nENTRYPOINT [\"/bin/echo\"]\nEXPOSE 80 53/udp\nVOLUME /v\nLABEL a=b \"c d\"=e\nSTOPSIGNAL SIGINT\nONBUILD RUN echo hi\n",
        files: &[],
        build_args: &[],
        prepare: None,
    });
}

#[test]
fn dockerignore_and_copy_rules() {
    compare(&Case {
        name: "ignore",
        dockerfile: "FROM {BASE}\nRUN echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1000:' >> /etc/group\nCOPY . /ctx/\nCOPY src/ /srcdir\nCOPY src/*.c /cfiles/\nCOPY src/a.c src/b.c /multi/\nCOPY src/a.c /renamed.c\nCOPY --chown=app:app src /owned/\nCOPY --chmod=0751 src/a.c /exec\n",
        files: &[
            // The Dockerfiles differ in their FROM line: keep them out of the copy.
            (".dockerignore", "Dockerfile\n*.log\nbuild/\n!build/keep\n"),
            ("debug.log", "x"),
            ("build/out", "x"),
            ("build/keep", "keep"),
            ("src/a.c", "int a;\n"),
            ("src/b.c", "int b;\n"),
            ("src/inc/a.h", "#define A\n"),
        ],
        build_args: &[],
        prepare: None,
    });
}
