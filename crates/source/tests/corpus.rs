//! Tree ids read from a repository at an arbitrary commit, bare or not: checked against
//! LinuxKit's real repository (its clean package tags) when a mirror is present, and against
//! the git CLI on a scratch bare repository always.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use oxkit_source::committed_tree_ids;

/// The LinuxKit commit the corpus was captured at (see tests/fixtures/pkg-tree-hashes.tsv).
const LINUXKIT_COMMIT: &str = "3bf33c3a1";

fn mirror() -> PathBuf {
    std::env::var_os("OXKIT_LINUXKIT_MIRROR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/.mirror/linuxkit+linuxkit/repo"))
}

fn corpus() -> Vec<(String, String)> {
    let tsv = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pkg-tree-hashes.tsv");
    std::fs::read_to_string(&tsv)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let (name, hash) = l.split_once('\t').expect("NAME<TAB>HASH");
            (name.to_string(), hash.to_string())
        })
        .collect()
}

#[test]
fn linuxkit_package_tree_ids_match_the_real_repository() {
    let mirror = mirror();
    if !mirror.exists() {
        eprintln!(
            "SKIPPED: no LinuxKit mirror at {} (set OXKIT_LINUXKIT_MIRROR to a clone of github.com/linuxkit/linuxkit)",
            mirror.display()
        );
        return;
    }
    let corpus = corpus();
    assert_eq!(corpus.len(), 42);
    let paths: Vec<String> = corpus.iter().map(|(n, _)| format!("pkg/{n}")).collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let ours = committed_tree_ids(&mirror, LINUXKIT_COMMIT, &paths).unwrap();
    for ((name, expected), got) in corpus.iter().zip(ours) {
        assert_eq!(got.as_deref(), Some(expected.as_str()), "pkg/{name}");
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("these tests need the git CLI as an oracle: apt-get install git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn tree_ids_come_from_bare_repositories_at_any_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(work.join("pkg/a")).unwrap();
    std::fs::write(work.join("pkg/a/build.yml"), "image: a\n").unwrap();
    std::fs::write(work.join("top"), "t\n").unwrap();
    git(&work, &["init", "-q"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "one"]);
    std::fs::write(work.join("pkg/a/build.yml"), "image: a\norg: x\n").unwrap();
    git(&work, &["commit", "-q", "-am", "two"]);
    let bare = tmp.path().join("bare.git");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );

    for rev in ["HEAD", "HEAD~1"] {
        let got = committed_tree_ids(&bare, rev, &["pkg/a", "pkg", "", "top", "missing"]).unwrap();
        let expected = [
            Some(git(&bare, &["rev-parse", &format!("{rev}:pkg/a")])),
            Some(git(&bare, &["rev-parse", &format!("{rev}:pkg")])),
            Some(git(&bare, &["rev-parse", &format!("{rev}^{{tree}}")])),
            Some(git(&bare, &["rev-parse", &format!("{rev}:top")])),
            None,
        ];
        assert_eq!(got, expected, "at {rev}");
    }
    let head = committed_tree_ids(&bare, "HEAD", &["pkg/a"]).unwrap();
    let previous = committed_tree_ids(&bare, "HEAD~1", &["pkg/a"]).unwrap();
    assert_ne!(head, previous);
    let err = committed_tree_ids(&bare, "no-such-branch", &["pkg"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("no-such-branch"), "{err}");
}
