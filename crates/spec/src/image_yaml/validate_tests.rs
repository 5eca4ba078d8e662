//! One test per validation error path, each checking the kind, the line and the words.

use super::*;
use crate::yaml::SpecErrorKind;

/// A valid base every case extends.
const BASE: &str = "kernel:\n  image: linuxkit/kernel:6.12.59\ninit:\n  - linuxkit/init:abc\n";

fn check(extra: &str) -> Result<(), SpecError> {
    ImageYaml::parse(&format!("{BASE}{extra}"), "v.yml")?.validate()
}

/// Asserts `extra` is refused at `line` with a message containing `why`.
#[track_caller]
fn refused(extra: &str, line: u32, why: &str) {
    let e = check(extra).expect_err(extra);
    assert_eq!(e.kind, SpecErrorKind::Invalid, "{extra}: {e}");
    assert_eq!(e.line(), Some(line), "{extra}: {e}");
    assert!(e.message.contains(why), "{extra}: {e}");
    assert!(e.to_string().starts_with(&format!("v.yml:{line}:")), "{e}");
}

#[test]
fn a_full_valid_configuration_passes() {
    check(
        "onboot:\n  - name: sysctl\n    image: linuxkit/sysctl:1\n    capabilities: [CAP_SYS_ADMIN]\n\
         services:\n  - name: getty\n    image: \"@pkg:../pkg/getty\"\n    binds: [/etc:/etc, data:/data:ro]\n    \
         uid: sysctl\n    rlimits: [\"nofile,1024,unlimited\"]\n    capabilities: [all]\n    \
         devices:\n      - {path: /dev/console, type: c, major: 5, minor: 1, mode: \"0666\"}\n      - {path: all, type: b}\n    \
         mounts:\n      - {type: cgroup, options: [rw]}\n      - {source: data, type: bind, destination: /d, options: [ro]}\n\
         files:\n  - {path: etc/a, contents: x, mode: \"0644\", uid: getty}\n  - {path: etc/d, directory: true}\n  \
         - {path: etc/l, symlink: /a}\n  - {path: etc/m, metadata: json}\n  - {path: etc/s, source: ~/x, optional: true}\n\
         volumes:\n  - {name: data, readonly: true}\n  - {name: img, image: alpine:3.19, format: oci, platforms: [linux/arm64]}\n",
    )
    .unwrap();
}

#[test]
fn names_must_match_linuxkit_pattern() {
    refused(
        "services:\n  - name: Getty\n    image: x/y\n",
        6,
        "invalid services name \"Getty\"",
    );
    refused(
        "onboot:\n  - name: a.b\n    image: x/y\n",
        6,
        "use only a-z",
    );
    refused(
        "onshutdown:\n  - name: \"\"\n    image: x/y\n",
        6,
        "empty name",
    );
    refused("volumes:\n  - name: My_Vol\n", 6, "invalid volumes name");
}

#[test]
fn duplicate_names_in_a_section() {
    refused(
        "services:\n  - name: a\n    image: x/y\n  - name: a\n    image: x/z\n",
        8,
        "duplicate services name \"a\" (first at v.yml:6:5)",
    );
    // onboot entries run in numbered directories: LinuxKit allows repeated names.
    check("onboot:\n  - name: a\n    image: x/y\n  - name: a\n    image: x/z\n").unwrap();
    refused(
        "volumes:\n  - name: v\n  - name: v\n",
        7,
        "duplicate volumes name",
    );
    // The same name in different sections is fine (LinuxKit keeps them apart).
    check("onboot:\n  - name: a\n    image: x/y\nservices:\n  - name: a\n    image: x/y\n")
        .unwrap();
}

#[test]
fn image_references_must_parse() {
    refused(
        "services:\n  - name: a\n    image: Bad/Ref\n",
        7,
        "image \"Bad/Ref\"",
    );
    refused(
        "services:\n  - name: a\n    image: \"@pkg:\"\n",
        7,
        "names no package",
    );
    refused(
        "services:\n  - name: a\n    image: \"@tpl:x\"\n",
        7,
        "unknown template",
    );
    refused(
        "volumes:\n  - name: v\n    image: \"UPPER\"\n",
        7,
        "image \"UPPER\"",
    );
    let e = ImageYaml::parse("kernel:\n  image: \"a b\"\n", "k.yml")
        .unwrap()
        .validate()
        .unwrap_err();
    assert_eq!(e.line(), Some(2));
    let e = ImageYaml::parse("init:\n  - linuxkit/init:a\n  - \"x:/y\"\n", "i.yml")
        .unwrap()
        .validate()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "i.yml:3:5: image \"x:/y\": bad registry host"
    );
}

#[test]
fn file_exclusions() {
    refused(
        "files:\n  - path: a\n    contents: x\n    source: /y\n",
        6,
        "contents and source are mutually exclusive",
    );
    refused(
        "files:\n  - path: a\n    contents: x\n    metadata: yaml\n",
        6,
        "contents and metadata",
    );
    refused(
        "files:\n  - path: a\n    directory: true\n    contents: x\n",
        6,
        "directory cannot have contents",
    );
    refused(
        "files:\n  - path: a\n    directory: true\n    symlink: /b\n",
        6,
        "directory and symlink",
    );
    refused(
        "files:\n  - path: a\n    symlink: /b\n    contents: x\n",
        6,
        "symlink and contents",
    );
    refused(
        "files:\n  - path: a\n    symlink: /b\n    source: /c\n",
        6,
        "symlink and source",
    );
    refused(
        "files:\n  - path: a\n    directory: true\n    metadata: yaml\n",
        6,
        "directory and metadata",
    );
    refused(
        "files:\n  - path: a\n    source: /b\n    metadata: yaml\n",
        6,
        "source and metadata",
    );
    refused("files:\n  - path: a\n", 6, "contents not specified");
    refused("files:\n  - contents: a\n", 6, "without path");
    refused(
        "files:\n  - path: a\n    metadata: toml\n",
        6,
        "expected yaml or json",
    );
    // An empty file is fine: contents set to "".
    check("files:\n  - path: a\n    contents: \"\"\n").unwrap();
}

#[test]
fn file_modes_and_owners() {
    refused(
        "files:\n  - path: a\n    contents: x\n    mode: \"0844\"\n",
        6,
        "not octal",
    );
    refused(
        "files:\n  - path: a\n    contents: x\n    mode: rw-r--r--\n",
        6,
        "not octal",
    );
    refused(
        "files:\n  - path: a\n    contents: x\n    mode: \"17777\"\n",
        6,
        "larger than 07777",
    );
    refused(
        "files:\n  - path: a\n    contents: x\n    uid: nobody\n",
        6,
        "uid \"nobody\" is neither",
    );
    check("files:\n  - path: a\n    contents: x\n    mode: 755\n    uid: root\n    gid: 0\n")
        .unwrap();
}

#[test]
fn volume_rules() {
    refused(
        "volumes:\n  - name: v\n    format: oci\n",
        6,
        "format: oci but no image",
    );
    refused(
        "volumes:\n  - name: v\n    image: alpine\n    platforms: [windows/amd64]\n",
        6,
        "only linux",
    );
    let e = check("volumes:\n  - name: v\n    format: squashfs\n").unwrap_err();
    assert_eq!(e.kind, SpecErrorKind::WrongType, "{e}");
    assert_eq!(e.line(), Some(7), "{e}");
}

#[test]
fn binds_and_mounts_of_volumes() {
    let svc = "services:\n  - name: a\n    image: x/y\n";
    refused(&format!("{svc}    binds: [/a]\n"), 6, "missing ':'");
    refused(
        &format!("{svc}    binds.add: [/a:/b:ro:x]\n"),
        6,
        "too many ':'",
    );
    refused(
        &format!("{svc}    binds: [data:/d]\n"),
        6,
        "binds volume \"data\", which is not in volumes",
    );
    refused(
        &format!("volumes:\n  - {{name: data, readonly: true}}\n{svc}    binds: [data:/d]\n"),
        8,
        "read-only volume \"data\" read-write",
    );
    check(&format!(
        "volumes:\n  - {{name: data, readonly: true}}\n{svc}    binds: [data:/d:ro]\n"
    ))
    .unwrap();
    refused(
        &format!(
            "volumes:\n  - {{name: data, readonly: true}}\n{svc}    mounts:\n      - {{type: bind, source: data, destination: /d, options: [rw, ro]}}\n"
        ),
        8,
        "mounted read-write",
    );
    refused(
        &format!("{svc}    mounts:\n      - {{type: bind, source: nov, destination: /d}}\n"),
        6,
        "not in volumes",
    );
    refused(
        &format!("{svc}    mounts:\n      - {{destination: /x}}\n"),
        6,
        "missing type",
    );
    refused(
        &format!("{svc}    mounts:\n      - {{type: tmpfs}}\n"),
        6,
        "missing destination",
    );
    refused(
        &format!("{svc}    runtime:\n      mounts:\n        - {{source: foo, destination: /x}}\n"),
        6,
        "runtime.mounts",
    );
    refused(
        &format!("{svc}    tmpfs: [\"/t:a:b\"]\n"),
        6,
        "too many ':'",
    );
}

#[test]
fn container_settings_linuxkit_checks_at_build_time() {
    let svc = "services:\n  - name: a\n    image: x/y\n";
    refused(
        &format!("{svc}    capabilities: [CAP_SYS_ADMIN, SYS_TIME]\n"),
        6,
        "unknown capability \"SYS_TIME\"; write CAP_SYS_TIME",
    );
    refused(
        &format!("{svc}    ambient: [CAP_NONSENSE]\n"),
        6,
        "ambient: unknown capability",
    );
    refused(
        &format!("{svc}    capabilities.add: [all, CAP_KILL]\n"),
        6,
        "must be the only entry",
    );
    refused(
        &format!("{svc}    rlimits: [\"nofile,1\"]\n"),
        6,
        "not NAME,SOFT,HARD",
    );
    refused(
        &format!("{svc}    rlimits: [\"files,1,2\"]\n"),
        6,
        "unknown limit",
    );
    refused(
        &format!("{svc}    rlimits: [\"nofile,1,lots\"]\n"),
        6,
        "neither a number",
    );
    refused(
        &format!("{svc}    devices:\n      - {{path: /dev/x, type: c, major: 1, minor: 2}}\n"),
        6,
        "missing mode",
    );
    refused(
        &format!(
            "{svc}    devices:\n      - {{path: /dev/x, type: c, major: 1, minor: 2, mode: \"9\"}}\n"
        ),
        6,
        "not octal",
    );
    refused(
        &format!("{svc}    devices:\n      - {{type: c}}\n"),
        6,
        "without path",
    );
    refused(
        &format!("{svc}    gid: wheel\n"),
        6,
        "gid \"wheel\" is neither",
    );
    refused(
        &format!("{svc}    additionalGids: [1, nobody]\n"),
        6,
        "additionalGids \"nobody\"",
    );
    refused(&format!("{svc}    oomScoreAdj: -1001\n"), 6, "out of range");
    // The message names the entry.
    let e = check(&format!("{svc}    gid: wheel\n")).unwrap_err();
    assert!(e.message.starts_with("services \"a\": gid"), "{e}");
}

#[test]
fn trust_is_validated_too() {
    refused(
        "trust:\n  rules:\n    - {match: \"x/*\", keys: [undefined]}\n",
        7,
        "not defined in trust.keys",
    );
}
