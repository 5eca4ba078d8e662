//! Expected specs are what LinuxKit's `ConfigToOCI` produces for the same inputs, derived from
//! its Go code (moby/config.go at the mirrored commit) and the labels LinuxKit's packages carry
//! (`crates/spec/tests/fixtures/linuxkit-config-labels.tsv`).

use serde_json::{Value, json};

use super::*;
use crate::ocispec::go_json_indent;

fn yaml(text: &str) -> ContainerConfig {
    ContainerConfig::from_label(text, "entry.yml").unwrap()
}

/// The label LinuxKit writes for a corpus package.
fn corpus_label(pkg: &str) -> ContainerConfig {
    let tsv = include_str!("../../../spec/tests/fixtures/linuxkit-config-labels.tsv");
    let line = tsv
        .lines()
        .find(|l| l.starts_with(&format!("pkg/{pkg}.build.yml\t")))
        .unwrap_or_else(|| panic!("{pkg} in the label corpus"));
    let label = line.split('\t').nth(1).unwrap();
    parse_label(label, pkg).unwrap()
}

fn image(env: &[&str], entrypoint: &[&str], cmd: &[&str], workdir: &str) -> ImageConfig {
    ImageConfig {
        env: strings(env),
        entrypoint: strings(entrypoint),
        cmd: strings(cmd),
        working_dir: workdir.into(),
        ..ImageConfig::default()
    }
}

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn build(y: &ContainerConfig, i: &ImageConfig, l: &ContainerConfig) -> BundleConfig {
    config_to_oci(y, i, l, &IdMap::new()).unwrap()
}

fn to_value(b: &BundleConfig) -> Value {
    serde_json::from_slice(&go_json_indent(&b.spec).unwrap()).unwrap()
}

#[test]
fn minimal_yml_dhcpcd_is_byte_identical_to_linuxkit() {
    // examples/minimal.yml's onboot entry over the linuxkit/dhcpcd label.
    let entry =
        yaml(r#"{"command": ["/sbin/dhcpcd", "--nobackground", "-f", "/dhcpcd.conf", "-1"]}"#);
    let img = image(
        &[PATH_ENV],
        &[],
        &["/sbin/dhcpcd", "--nobackground", "-f", "/dhcpcd.conf"],
        "",
    );
    let b = build(&entry, &img, &corpus_label("dhcpcd"));
    let got = String::from_utf8(go_json_indent(&b.spec).unwrap()).unwrap();
    let want = r#"{
    "ociVersion": "1.2.1",
    "process": {
        "user": {
            "uid": 0,
            "gid": 0
        },
        "args": [
            "/sbin/dhcpcd",
            "--nobackground",
            "-f",
            "/dhcpcd.conf",
            "-1"
        ],
        "env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        ],
        "cwd": "/",
        "capabilities": {
            "bounding": [
                "CAP_NET_ADMIN",
                "CAP_NET_BIND_SERVICE",
                "CAP_NET_RAW",
                "CAP_SYS_ADMIN"
            ],
            "effective": [
                "CAP_NET_ADMIN",
                "CAP_NET_BIND_SERVICE",
                "CAP_NET_RAW",
                "CAP_SYS_ADMIN"
            ],
            "inheritable": [
                "CAP_NET_ADMIN",
                "CAP_NET_BIND_SERVICE",
                "CAP_NET_RAW",
                "CAP_SYS_ADMIN"
            ],
            "permitted": [
                "CAP_NET_ADMIN",
                "CAP_NET_BIND_SERVICE",
                "CAP_NET_RAW",
                "CAP_SYS_ADMIN"
            ]
        }
    },
    "root": {
        "path": "rootfs"
    },
    "mounts": [
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": [
                "nosuid",
                "strictatime",
                "mode=755",
                "size=65536k"
            ]
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": [
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620"
            ]
        },
        {
            "destination": "/etc",
            "type": "bind",
            "source": "/run/resolvconf",
            "options": [
                "rw",
                "rbind",
                "rshared"
            ]
        },
        {
            "destination": "/proc",
            "type": "proc",
            "source": "proc",
            "options": [
                "nosuid",
                "nodev",
                "noexec",
                "relatime"
            ]
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": [
                "nosuid",
                "noexec",
                "nodev"
            ]
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": [
                "nosuid",
                "noexec",
                "nodev",
                "relatime",
                "ro"
            ]
        }
    ],
    "linux": {
        "resources": {},
        "namespaces": [
            {
                "type": "pid"
            },
            {
                "type": "mount"
            }
        ]
    }
}"#;
    assert_eq!(got, want);
    // runtime.json for an entry without runtime settings: every field, empty.
    let rt = String::from_utf8(go_json_indent(&b.runtime).unwrap()).unwrap();
    assert_eq!(
        rt,
        "{\n    \"cgroups\": [],\n    \"mounts\": [],\n    \"mkdir\": [],\n    \"interfaces\": [],\n    \"bindNS\": {\n        \"cgroup\": \"\",\n        \"ipc\": \"\",\n        \"mnt\": \"\",\n        \"net\": \"\",\n        \"pid\": \"\",\n        \"user\": \"\",\n        \"uts\": \"\"\n    },\n    \"namespace\": \"\"\n}"
    );
}

#[test]
fn minimal_yml_getty_all_caps_devices_and_host_namespaces() {
    let entry = yaml(r#"{"env": ["INSECURE=true"]}"#);
    let img = image(
        &[PATH_ENV],
        &["/sbin/tini", "--"],
        &["/usr/bin/rungetty.sh"],
        "",
    );
    let v = to_value(&build(&entry, &img, &corpus_label("getty")));
    let p = &v["process"];
    // The YAML's env replaces the image's.
    assert_eq!(p["env"], json!(["INSECURE=true"]));
    assert_eq!(
        p["args"],
        json!(["/sbin/tini", "--", "/usr/bin/rungetty.sh"])
    );
    // "all": effective in kernel order, the other sets sorted.
    let effective: Vec<&str> = p["capabilities"]["effective"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(effective, CAPABILITIES);
    let mut sorted = CAPABILITIES.to_vec();
    sorted.sort_unstable();
    assert_eq!(p["capabilities"]["bounding"], json!(sorted));
    assert_eq!(p["capabilities"]["permitted"], json!(sorted));
    assert!(p["capabilities"].get("ambient").is_none());
    // net and pid are the host's: only the mount namespace is new.
    assert_eq!(v["linux"]["namespaces"], json!([{"type": "mount"}]));
    let devices = v["linux"]["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 5);
    assert_eq!(
        devices[0],
        json!({"path": "/dev/console", "type": "c", "major": 5, "minor": 1, "fileMode": 438})
    );
    assert_eq!(
        v["linux"]["resources"]["devices"][4],
        json!({"allow": true, "type": "c", "major": 229, "minor": 0, "access": "rwm"})
    );
    // Binds over /dev and /sys replace the default tmpfs and sysfs mounts.
    let mounts = v["mounts"].as_array().unwrap();
    let dests: Vec<&str> = mounts
        .iter()
        .map(|m| m["destination"].as_str().unwrap())
        .collect();
    assert_eq!(
        dests,
        [
            "/containers",
            "/dev",
            "/dev/pts",
            "/etc/resolv.conf",
            "/hostroot/etc",
            "/proc",
            "/run",
            "/sys",
            "/sys/fs/cgroup",
            "/tmp",
            "/usr/bin/ctr",
            "/usr/bin/runc",
            "/var/lib/containerd",
            "/var/log"
        ]
    );
    assert_eq!(
        mounts[1],
        json!({"destination": "/dev", "type": "bind", "source": "/dev", "options": ["rw", "rbind", "rshared"]})
    );
}

#[test]
fn readonly_label_adds_ro_and_oom_score() {
    // linuxkit/rngd: readonly, new net and ipc namespaces, oomScoreAdj -800.
    let entry = yaml(r#"{"command": ["/sbin/rngd", "-1"]}"#);
    let v = to_value(&build(
        &entry,
        &image(&[], &[], &[], ""),
        &corpus_label("rngd"),
    ));
    assert_eq!(v["root"], json!({"path": "rootfs", "readonly": true}));
    assert_eq!(v["process"]["oomScoreAdj"], json!(-800));
    let dev = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/dev")
        .unwrap();
    assert_eq!(
        dev["options"],
        json!(["nosuid", "strictatime", "mode=755", "size=65536k", "ro"])
    );
    assert_eq!(
        v["linux"]["namespaces"],
        json!([{"type": "network"}, {"type": "ipc"}, {"type": "pid"}, {"type": "mount"}])
    );
    // An image without env leaves env out entirely.
    assert!(v["process"].get("env").is_none());
}

#[test]
fn capabilities_add_appends_to_the_label_and_yaml_capabilities_win() {
    let label = yaml(r#"{"capabilities": ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"], "binds": ["/a:/a"]}"#);
    let img = image(&[], &[], &[], "");
    // capabilities.add: appended without de-duplication (LinuxKit's mergeStrings).
    let b = build(
        &yaml(r#"{"capabilities.add": ["CAP_SYS_ADMIN", "CAP_MKNOD"]}"#),
        &img,
        &label,
    );
    let c = &b.spec.process.capabilities;
    assert_eq!(
        c.effective,
        [
            "CAP_NET_ADMIN",
            "CAP_SYS_ADMIN",
            "CAP_SYS_ADMIN",
            "CAP_MKNOD"
        ]
    );
    assert_eq!(c.bounding, ["CAP_MKNOD", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"]);
    // A YAML list replaces the label's and discards capabilities.add.
    let b = build(
        &yaml(r#"{"capabilities": ["CAP_CHOWN"], "capabilities.add": ["CAP_MKNOD"]}"#),
        &img,
        &label,
    );
    assert_eq!(b.spec.process.capabilities.effective, ["CAP_CHOWN"]);
    // An explicit empty list clears them; "none" too; ambient joins the bounding set.
    let b = build(&yaml(r#"{"capabilities": []}"#), &img, &label);
    assert_eq!(b.spec.process.capabilities, Capabilities::default());
    let b = build(
        &yaml(r#"{"capabilities": ["none"], "ambient": ["CAP_NET_RAW"]}"#),
        &img,
        &label,
    );
    let c = &b.spec.process.capabilities;
    assert!(c.effective.is_empty());
    assert_eq!(c.ambient, ["CAP_NET_RAW"]);
    assert_eq!(c.bounding, ["CAP_NET_RAW"]);
    let e = config_to_oci(
        &yaml(r#"{"capabilities": ["CAP_BOGUS"]}"#),
        &img,
        &label,
        &IdMap::new(),
    )
    .unwrap_err();
    assert!(e.contains("CAP_BOGUS"), "{e}");
}

#[test]
fn binds_add_and_binds_override() {
    let label = yaml(r#"{"binds": ["/a:/a", "/b:/b:ro"]}"#);
    let img = image(&[], &[], &[], "");
    let dests = |b: &BundleConfig| -> Vec<(String, String, Vec<String>)> {
        b.spec
            .mounts
            .iter()
            .filter(|m| m.kind == "bind")
            .map(|m| (m.destination.clone(), m.source.clone(), m.options.clone()))
            .collect()
    };
    let b = build(&yaml(r#"{"binds.add": ["/c:/a:rshared"]}"#), &img, &label);
    assert_eq!(
        dests(&b),
        [
            ("/a".into(), "/c".into(), strings(&["rshared", "rbind"])),
            ("/b".into(), "/b".into(), strings(&["ro", "rbind"])),
        ]
    );
    let b = build(
        &yaml(r#"{"binds": ["/x:/x"], "binds.add": ["/c:/c"]}"#),
        &img,
        &label,
    );
    assert_eq!(
        dests(&b),
        [(
            "/x".into(),
            "/x".into(),
            strings(&["rw", "rbind", "rshared"])
        )]
    );
    for bad in [r#"{"binds": ["/x"]}"#, r#"{"binds": ["/x:/y:ro:z"]}"#] {
        assert!(config_to_oci(&yaml(bad), &img, &label, &IdMap::new()).is_err());
    }
}

#[test]
fn namespaces_follow_linuxkit_spellings() {
    let img = image(&[], &[], &[], "");
    let none = ContainerConfig::default();
    let ns = |text: &str| -> Value {
        json!(
            build(&yaml(text), &img, &none)
                .spec
                .linux
                .namespaces
                .iter()
                .map(|n| (n.kind.clone(), n.path.clone()))
                .collect::<Vec<_>>()
        )
    };
    assert_eq!(ns("{}"), json!([["pid", ""], ["mount", ""]]));
    assert_eq!(
        ns(r#"{"net": "new", "ipc": "new", "uts": "new", "userns": "new", "pid": "host"}"#),
        json!([
            ["network", ""],
            ["ipc", ""],
            ["uts", ""],
            ["user", ""],
            ["mount", ""]
        ])
    );
    // "none" means new only for net; a path joins an existing namespace.
    assert_eq!(
        ns(r#"{"net": "none", "ipc": "none", "pid": "/proc/1/ns/pid"}"#),
        json!([
            ["network", ""],
            ["ipc", "none"],
            ["pid", "/proc/1/ns/pid"],
            ["mount", ""]
        ])
    );
    assert_eq!(
        ns(r#"{"net": "/run/netns/x", "pid": "root", "uts": "host"}"#),
        json!([["network", "/run/netns/x"], ["mount", ""]])
    );
    // An empty YAML value does not override the label's.
    let label = yaml(r#"{"net": "new"}"#);
    let b = build(&yaml(r#"{"net": ""}"#), &img, &label);
    assert_eq!(b.spec.linux.namespaces[0].kind, "network");
}

#[test]
fn command_env_and_cwd_precedence() {
    let img = image(&["A=image"], &["/entry"], &["cmd"], "/work");
    let label = yaml(r#"{"command": ["/label"], "env": ["A=label"], "cwd": "/label"}"#);
    let b = build(
        &ContainerConfig::default(),
        &img,
        &ContainerConfig::default(),
    );
    assert_eq!(b.spec.process.args, ["/entry", "cmd"]);
    assert_eq!(b.spec.process.env, ["A=image"]);
    assert_eq!(b.spec.process.cwd, "/work");
    let b = build(&ContainerConfig::default(), &img, &label);
    assert_eq!(
        (b.spec.process.args, b.spec.process.env, b.spec.process.cwd),
        (strings(&["/label"]), strings(&["A=label"]), "/label".into())
    );
    let b = build(
        &yaml(r#"{"command": ["/yaml"], "env": [], "cwd": ""}"#),
        &img,
        &label,
    );
    // An explicit empty env clears it; an empty cwd does not override.
    assert_eq!(b.spec.process.args, ["/yaml"]);
    assert!(b.spec.process.env.is_empty());
    assert_eq!(b.spec.process.cwd, "/label");
    let b = build(
        &ContainerConfig::default(),
        &image(&[], &[], &[], ""),
        &label,
    );
    assert_eq!(b.spec.process.cwd, "/label");
    // The image's User is ignored, as LinuxKit does.
    let mut with_user = image(&[], &[], &[], "");
    with_user.user = "1000:1000".into();
    let b = build(
        &ContainerConfig::default(),
        &with_user,
        &ContainerConfig::default(),
    );
    assert_eq!((b.spec.process.user.uid, b.spec.process.user.gid), (0, 0));
}

#[test]
fn ids_by_name_rlimits_tmpfs_mounts_and_runtime() {
    let img = image(&[], &[], &[], "");
    let mut ids = IdMap::new();
    ids.insert("dhcpcd".into(), 100);
    ids.insert("getty".into(), 104);
    let entry = yaml(
        r#"{"uid": "getty", "gid": "root", "additionalGids": [5, "dhcpcd"],
            "rlimits": ["nofile,1024,unlimited", " RLIMIT_CORE , 0 , 0 "],
            "tmpfs": ["/run:rw,size=1m", "/tmp"],
            "mounts": [{"source": "proc"}, {"destination": "/dev", "options": ["rw"]},
                       {"type": "cgroup", "options": ["ro"]}],
            "sysctl": {"net.ipv4.ip_forward": "1"},
            "runtime": {"mkdir": ["/var/y"], "bindNS": {"net": "/run/netns/y"}}}"#,
    );
    let label = yaml(
        r#"{"runtime": {"mkdir": ["/var/x"], "cgroups": ["c"], "bindNS": {"pid": "/run/pid"}},
            "noNewPrivileges": true, "hostname": "lbl"}"#,
    );
    let b = config_to_oci(&entry, &img, &label, &ids).unwrap();
    let u = &b.spec.process.user;
    assert_eq!(
        (u.uid, u.gid, u.additional_gids.clone()),
        (104, 0, vec![5, 100])
    );
    assert_eq!(
        b.spec.process.rlimits,
        [
            Rlimit {
                kind: "RLIMIT_NOFILE".into(),
                hard: u64::MAX,
                soft: 1024
            },
            Rlimit {
                kind: "RLIMIT_CORE".into(),
                hard: 0,
                soft: 0
            }
        ]
    );
    assert!(b.spec.process.no_new_privileges);
    assert_eq!(b.spec.hostname, "lbl");
    let v = to_value(&b);
    let by_dest = |d: &str| {
        v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == d)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        by_dest("/run"),
        json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["rw", "size=1m"]})
    );
    assert_eq!(
        by_dest("/tmp"),
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"})
    );
    assert_eq!(
        by_dest("/proc"),
        json!({"destination": "/proc", "type": "proc", "source": "proc"})
    );
    assert_eq!(
        by_dest("/dev"),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["rw"]})
    );
    assert_eq!(
        by_dest("/sys/fs/cgroup"),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro"]})
    );
    assert_eq!(v["linux"]["sysctl"], json!({"net.ipv4.ip_forward": "1"}));
    // runtime: field by field, the YAML's over the label's.
    assert_eq!(b.runtime.mkdir, ["/var/y"]);
    assert_eq!(b.runtime.cgroups, ["c"]);
    assert_eq!(b.runtime.bind_ns.net, "/run/netns/y");
    assert_eq!(b.runtime.bind_ns.pid, "/run/pid");

    for (bad, why) in [
        (r#"{"uid": "nobody"}"#, "nobody"),
        (r#"{"rlimits": ["nofile,1"]}"#, "NAME,SOFT,HARD"),
        (r#"{"rlimits": ["nofile,x,1"]}"#, "\"x\""),
        (r#"{"rlimits": ["bogus,1,1"]}"#, "bogus"),
        (r#"{"tmpfs": ["/a:b:c"]}"#, "too many"),
        (r#"{"mounts": [{"destination": "/x"}]}"#, "missing a type"),
        (
            r#"{"mounts": [{"type": "tmpfs"}]}"#,
            "missing a destination",
        ),
        (
            r#"{"devices": [{"path": "/dev/x", "type": "c", "major": 1, "minor": 1}]}"#,
            "octal",
        ),
    ] {
        let e = config_to_oci(&yaml(bad), &img, &label, &ids).unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
}
