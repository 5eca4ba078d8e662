//! `oxkit pkg show-tag` against real git repositories, with the git CLI as the oracle for tree
//! ids: output format, flags in LinuxKit's places, JSON, and errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Env, require_tool, run_fail, run_ok};

/// A git repository inside the test environment with packages `pkg/a` (default org) and
/// `pkg/b` (org `other`, one arch).
struct Repo {
    env: Env,
    root: PathBuf,
}

impl Repo {
    fn new() -> Self {
        require_tool("git");
        let env = Env::new();
        let root = env.path().join("repo");
        let repo = Self { env, root };
        repo.write("pkg/a/build.yml", "image: a\n");
        repo.write("pkg/a/Dockerfile", "FROM scratch\nCOPY . /\n");
        repo.write("pkg/b/build.yml", "image: b\norg: other\narches: [amd64]\n");
        repo.write("pkg/b/data", "b\n");
        repo.git(&["init", "-q"]);
        repo.git(&["add", "-A"]);
        repo.git(&["commit", "-q", "-m", "init"]);
        repo
    }

    fn write(&self, rel: &str, content: &str) {
        let p = self.root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
    }

    fn git(&self, args: &[&str]) -> String {
        git(&self.env, &self.root, args)
    }

    fn tree(&self, path: &str) -> String {
        self.git(&["rev-parse", &format!("HEAD:{path}")])
    }

    /// `oxkit pkg ARGS` run from the repository root.
    fn pkg(&self, args: &[&str]) -> Command {
        let mut cmd = self.env.oxkit();
        cmd.current_dir(&self.root).arg("pkg").args(args);
        cmd
    }
}

fn git(env: &Env, dir: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .env("HOME", env.home())
        .env("GIT_CONFIG_NOSYSTEM", "1");
    run_ok(&mut cmd).trim().to_string()
}

fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::to_string).collect()
}

#[test]
fn show_tag_prints_one_reference_per_package_in_order() {
    let r = Repo::new();
    let out = run_ok(&mut r.pkg(&["show-tag", "pkg/b", "pkg/a"]));
    assert_eq!(
        lines(&out),
        vec![
            format!("other/b:{}", r.tree("pkg/b")),
            format!("linuxkit/a:{}", r.tree("pkg/a")),
        ]
    );
    // An absolute path and a trailing slash name the same package.
    let abs = r.root.join("pkg/a/");
    let out = run_ok(&mut r.pkg(&["show-tag", abs.to_str().expect("utf-8")]));
    assert_eq!(out.trim(), format!("linuxkit/a:{}", r.tree("pkg/a")));
}

#[test]
fn canonical_references_are_fully_qualified() {
    let r = Repo::new();
    let out = run_ok(&mut r.pkg(&["show-tag", "--canonical", "pkg/a"]));
    assert_eq!(
        out.trim(),
        format!("docker.io/linuxkit/a:{}", r.tree("pkg/a"))
    );
    let out = run_ok(&mut r.pkg(&[
        "--org",
        "127.0.0.1:5000/me",
        "show-tag",
        "--canonical",
        "pkg/a",
    ]));
    assert_eq!(
        out.trim(),
        format!("127.0.0.1:5000/me/a:{}", r.tree("pkg/a"))
    );
}

#[test]
fn org_flag_env_and_registry_host() {
    let r = Repo::new();
    let tree = r.tree("pkg/a");
    // Persistent flag: before or after the subcommand.
    let out = run_ok(&mut r.pkg(&["--org", "127.0.0.1:5000/me", "show-tag", "pkg/a"]));
    assert_eq!(out.trim(), format!("127.0.0.1:5000/me/a:{tree}"));
    let out = run_ok(&mut r.pkg(&["show-tag", "--org", "ghcr.io/me", "pkg/a"]));
    assert_eq!(out.trim(), format!("ghcr.io/me/a:{tree}"));
    // LINUXKIT_PKG_ORG, and the flag winning over it.
    let out = run_ok(
        r.pkg(&["show-tag", "pkg/a", "pkg/b"])
            .env("LINUXKIT_PKG_ORG", "envorg"),
    );
    assert_eq!(
        lines(&out),
        vec![
            format!("envorg/a:{tree}"),
            format!("envorg/b:{}", r.tree("pkg/b"))
        ]
    );
    let out = run_ok(
        r.pkg(&["show-tag", "--org", "flag", "pkg/a"])
            .env("LINUXKIT_PKG_ORG", "envorg"),
    );
    assert_eq!(out.trim(), format!("flag/a:{tree}"));
}

#[test]
fn dev_mode_hash_and_tag_template() {
    let r = Repo::new();
    // support::Env sets USER=tester.
    let out = run_ok(&mut r.pkg(&["--dev", "show-tag", "pkg/a"]));
    assert_eq!(out.trim(), "tester/a:dev");
    let out = run_ok(&mut r.pkg(&["--dev", "--org", "me", "--hash", "h1", "show-tag", "pkg/a"]));
    assert_eq!(out.trim(), "me/a:h1");
    let err = run_fail(r.pkg(&["--dev", "show-tag", "pkg/a"]).env_remove("USER"));
    assert!(err.contains("USER") && err.contains("--org"), "{err}");
    let out = run_ok(
        r.pkg(&["--dev", "--org", "me", "show-tag", "pkg/a"])
            .env_remove("USER"),
    );
    assert_eq!(out.trim(), "me/a:dev");
    let out = run_ok(&mut r.pkg(&["--tag", "v1-{{.Hash}}", "show-tag", "pkg/a"]));
    assert_eq!(out.trim(), format!("linuxkit/a:v1-{}", r.tree("pkg/a")));
}

#[test]
fn dirty_packages_get_the_dirty_suffix() {
    let r = Repo::new();
    r.write("pkg/a/new-file", "untracked\n");
    let out = run_ok(&mut r.pkg(&["show-tag", "pkg/a", "pkg/b"]));
    let got = lines(&out);
    let prefix = format!("linuxkit/a:{}-dirty-", r.tree("pkg/a"));
    let suffix = got[0]
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{got:?}"));
    assert!(
        suffix.len() == 7 && suffix.bytes().all(|b| b.is_ascii_hexdigit()),
        "{suffix}"
    );
    assert_eq!(got[1], format!("other/b:{}", r.tree("pkg/b")));
    // An older commit is hashed as it was, and not checked for dirtiness.
    r.git(&["add", "-A"]);
    r.git(&["commit", "-q", "-m", "two"]);
    let out = run_ok(&mut r.pkg(&["--hash-commit", "HEAD~1", "show-tag", "pkg/a"]));
    let old = r.git(&["rev-parse", "HEAD~1:pkg/a"]);
    assert_eq!(out.trim(), format!("linuxkit/a:{old}"));
}

#[test]
fn json_lists_every_field() {
    let r = Repo::new();
    r.write("pkg/b/data", "changed\n");
    let out = run_ok(&mut r.pkg(&["show-tag", "--json", "pkg/a", "pkg/b"]));
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let items = v.as_array().expect("array");
    assert_eq!(items.len(), 2);
    let a = &items[0];
    let tree = r.tree("pkg/a");
    assert_eq!(
        a["path"],
        r.root
            .join("pkg/a")
            .canonicalize()
            .expect("canon")
            .to_str()
            .expect("utf-8")
    );
    assert_eq!(a["reference"], format!("linuxkit/a:{tree}"));
    assert_eq!(a["org"], "linuxkit");
    assert_eq!(a["image"], "a");
    assert_eq!(a["tag"], tree.as_str());
    assert_eq!(a["hash"], tree.as_str());
    assert_eq!(a["dirty"], false);
    assert_eq!(a["commit"], r.git(&["rev-parse", "HEAD"]));
    assert_eq!(
        a["arches"],
        serde_json::json!(["amd64", "arm64", "riscv64"])
    );
    let b = &items[1];
    assert_eq!(b["dirty"], true);
    assert_eq!(b["arches"], serde_json::json!(["amd64"]));
    assert!(b["hash"].as_str().expect("hash").contains("-dirty-"));
    // --canonical applies to the reference field too.
    let out = run_ok(&mut r.pkg(&["show-tag", "--json", "--canonical", "pkg/a"]));
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v[0]["reference"], format!("docker.io/linuxkit/a:{tree}"));
}

#[test]
fn outside_git_the_tag_is_the_would_be_tree_id() {
    require_tool("git");
    let env = Env::new();
    let dir = env.path().join("loose");
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    std::fs::write(dir.join("build.yml"), "image: loose\n").expect("write");
    std::fs::write(dir.join("sub/f"), "f\n").expect("write");
    std::fs::write(dir.join(".gitignore"), "*.tmp\n").expect("write");
    std::fs::write(dir.join("x.tmp"), "ignored\n").expect("write");
    let out = run_ok(env.oxkit().args(["pkg", "show-tag"]).arg(&dir));
    git(&env, &dir, &["init", "-q"]);
    git(&env, &dir, &["add", "-A"]);
    let tree = git(&env, &dir, &["write-tree"]);
    assert_eq!(out.trim(), format!("linuxkit/loose:{tree}"));
}

#[test]
fn errors_name_the_file_and_exit_1() {
    let r = Repo::new();
    std::fs::create_dir_all(r.root.join("pkg/empty")).expect("mkdir");
    let err = run_fail(&mut r.pkg(&["show-tag", "pkg/a", "pkg/empty"]));
    assert!(err.contains("pkg/empty/build.yml"), "{err}");
    r.write("pkg/noimage/build.yml", "org: x\n");
    let err = run_fail(&mut r.pkg(&["show-tag", "pkg/noimage"]));
    assert!(
        err.contains("pkg/noimage/build.yml:1:1") && err.contains("image"),
        "{err}"
    );
    let err = run_fail(&mut r.pkg(&["show-tag", "does/not/exist"]));
    assert!(err.contains("does/not/exist"), "{err}");
    // A failure prints no partial list.
    let out = r
        .pkg(&["show-tag", "pkg/a", "pkg/empty"])
        .output()
        .expect("run");
    assert!(out.stdout.is_empty());
    // Usage errors exit 2.
    let out = r.pkg(&["show-tag"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let out = r
        .pkg(&["--network", "--nonetwork", "show-tag", "pkg/a"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}
