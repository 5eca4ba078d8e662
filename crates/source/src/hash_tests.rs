//! Every case compares our hash with LinuxKit's algorithm run through the git CLI
//! ([`TestRepo::linuxkit_hash`]) and also states whether the package must be dirty, so a bug
//! shared by both sides cannot pass unnoticed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use super::*;
use crate::testutil::{TestRepo, chmod, require_git, write};

/// A repository with two packages, ignore rules at two levels, an executable and a symlink.
fn fixture() -> TestRepo {
    require_git();
    let r = TestRepo::new();
    r.write(".gitignore", "*.o\n");
    r.write("pkg/a/build.yml", "image: a\n");
    r.write("pkg/a/Dockerfile", "FROM scratch\nCOPY . /\n");
    r.write("pkg/a/src/main.c", "int main(void) { return 0; }\n");
    r.write("pkg/a/.gitignore", "out/\n!keep.o\n");
    r.write("pkg/a/run.sh", "#!/bin/sh\necho hi\n");
    chmod(&r.path("pkg/a/run.sh"), 0o755);
    symlink("src/main.c", r.path("pkg/a/link")).unwrap();
    r.write("pkg/b/build.yml", "image: b\n");
    r.write("pkg/b/data", "b\n");
    r.commit("init");
    r
}

struct Req {
    dir: PathBuf,
    hash_dir: Option<PathBuf>,
    extra: Vec<PathBuf>,
    rev: &'static str,
    force_dirty: bool,
}

impl Req {
    fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            hash_dir: None,
            extra: Vec::new(),
            rev: "HEAD",
            force_dirty: false,
        }
    }

    fn run(&self, repos: &mut Repos) -> Result<SourceHash, SourceError> {
        let build_yml = self.dir.join("build.yml");
        hash_source(
            repos,
            &HashRequest {
                dir: &self.dir,
                hash_dir: self.hash_dir.as_deref().unwrap_or(&self.dir),
                extra_sources: &self.extra,
                rev: self.rev,
                force_dirty: self.force_dirty,
                want_hash: true,
                build_yml: &build_yml,
            },
        )
    }
}

fn ours(dir: &Path) -> SourceHash {
    Req::new(dir.to_path_buf())
        .run(&mut Repos::default())
        .unwrap()
}

/// Our hash equals LinuxKit's, and both agree the package is (or is not) dirty.
fn check(r: &TestRepo, pkg: &str, dirty: bool) -> String {
    let (expected, lk_dirty) = r.linuxkit_hash(pkg, "HEAD");
    assert_eq!(
        lk_dirty, dirty,
        "the oracle disagrees with the scenario for {pkg:?}"
    );
    let got = ours(&r.path(pkg));
    assert_eq!(got.dirty, dirty, "dirtiness of {pkg:?}");
    assert_eq!(
        got.hash.as_deref(),
        Some(expected.as_str()),
        "hash of {pkg:?}"
    );
    if dirty {
        assert!(expected.contains("-dirty-"));
    } else {
        assert_eq!(expected, r.git(&["rev-parse", &format!("HEAD:{pkg}")]));
    }
    expected
}

#[test]
fn clean_package_is_its_tree_id() {
    let r = fixture();
    check(&r, "pkg/a", false);
    check(&r, "pkg/b", false);
    let head = r.git(&["rev-parse", "HEAD"]);
    assert_eq!(ours(&r.path("pkg/a")).commit.unwrap().to_string(), head);
}

#[test]
fn modified_tracked_file_is_dirty() {
    let r = fixture();
    r.write("pkg/a/src/main.c", "int main(void) { return 1; }\n");
    let h = check(&r, "pkg/a", true);
    // Only the package that changed.
    check(&r, "pkg/b", false);
    // The suffix follows the content.
    r.write("pkg/a/src/main.c", "int main(void) { return 2; }\n");
    assert_ne!(check(&r, "pkg/a", true), h);
}

#[test]
fn staged_change_is_dirty_and_reverted_change_is_clean() {
    let r = fixture();
    r.write("pkg/a/Dockerfile", "FROM scratch\n");
    r.git(&["add", "pkg/a/Dockerfile"]);
    check(&r, "pkg/a", true);
    // Staged, then the work tree put back as in HEAD: `git diff HEAD` sees nothing.
    r.write("pkg/a/Dockerfile", "FROM scratch\nCOPY . /\n");
    check(&r, "pkg/a", false);
}

#[test]
fn deleted_files_are_dirty() {
    let r = fixture();
    std::fs::remove_file(r.path("pkg/a/src/main.c")).unwrap();
    check(&r, "pkg/a", true);
    r.git(&["rm", "-q", "--cached", "pkg/a/src/main.c"]);
    check(&r, "pkg/a", true);
    // Deleted from the index but still on disk: a staged deletion plus an untracked file.
    let r = fixture();
    r.git(&["rm", "-q", "--cached", "pkg/b/data"]);
    check(&r, "pkg/b", true);
}

#[test]
fn untracked_file_is_dirty_but_ignored_ones_are_not() {
    let r = fixture();
    r.write("pkg/a/notes.txt", "x\n");
    check(&r, "pkg/a", true);

    let r = fixture();
    r.write("pkg/a/main.o", "ignored at the root\n");
    r.write("pkg/a/out/bin", "ignored by pkg/a/.gitignore\n");
    std::fs::create_dir_all(r.path("pkg/a/empty/deeper")).unwrap();
    check(&r, "pkg/a", false);
    // A negated pattern in the nested .gitignore brings one back.
    r.write("pkg/a/keep.o", "not ignored\n");
    check(&r, "pkg/a", true);
}

#[test]
fn nested_gitignore_applies_below_its_directory_only() {
    let r = fixture();
    r.write("pkg/b/out/x", "not ignored in pkg/b\n");
    check(&r, "pkg/b", true);
    let r = fixture();
    r.write("pkg/a/src/.gitignore", "*.tmp\n");
    r.commit("more ignores");
    r.write("pkg/a/src/x.tmp", "ignored\n");
    check(&r, "pkg/a", false);
    r.write("pkg/a/x.tmp", "not ignored one level up\n");
    check(&r, "pkg/a", true);
}

#[test]
fn executable_bit_change_is_dirty() {
    let r = fixture();
    chmod(&r.path("pkg/a/run.sh"), 0o644);
    check(&r, "pkg/a", true);
    let r = fixture();
    chmod(&r.path("pkg/b/data"), 0o755);
    check(&r, "pkg/b", true);
    // Group/other bits are not part of git's mode.
    let r = fixture();
    chmod(&r.path("pkg/b/data"), 0o600);
    check(&r, "pkg/b", false);
}

#[test]
fn symlinks_are_compared_by_target_and_skipped_by_the_content_hash() {
    let r = fixture();
    std::fs::remove_file(r.path("pkg/a/link")).unwrap();
    symlink("run.sh", r.path("pkg/a/link")).unwrap();
    check(&r, "pkg/a", true);
    // A new untracked symlink: dirty, and its target is not hashed.
    let r = fixture();
    symlink("/etc/hostname", r.path("pkg/b/l")).unwrap();
    check(&r, "pkg/b", true);
}

#[test]
fn touched_but_unchanged_files_are_clean() {
    let r = fixture();
    // Same content, new stat data: git re-hashes and finds no change.
    let data = std::fs::read(r.path("pkg/a/src/main.c")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(r.path("pkg/a/src/main.c"), data).unwrap();
    check(&r, "pkg/a", false);
}

#[test]
fn racily_clean_index_gives_the_same_answers() {
    require_git();
    let r = TestRepo::new();
    r.write("pkg/build.yml", "image: p\n");
    r.write("pkg/f", "1\n");
    r.commit_racy("init");
    // The entries are as new as the index: only re-hashing tells a same-size rewrite apart.
    check(&r, "pkg", false);
    r.write("pkg/f", "2\n"); // same size, maybe the same second
    check(&r, "pkg", true);
}

#[test]
fn package_at_repository_root() {
    let r = fixture();
    check(&r, "", false);
    assert_eq!(
        ours(&r.root).hash.unwrap(),
        r.git(&["show", "-s", "--format=%T", "HEAD"])
    );
    r.write("top.txt", "x\n");
    check(&r, "", true);
}

#[test]
fn unusual_names_follow_linuxkit_text_handling() {
    let r = fixture();
    r.write("pkg/b/é.txt", "quoted by git, so LinuxKit never finds it\n");
    r.write("pkg/b/with space", "plain\n");
    r.write("pkg/b/tab\there", "quoted\n");
    check(&r, "pkg/b", true);
}

#[test]
fn force_dirty_adds_the_suffix_to_a_clean_package() {
    let r = fixture();
    let mut req = Req::new(r.path("pkg/a"));
    req.force_dirty = true;
    let got = req.run(&mut Repos::default()).unwrap();
    assert!(got.dirty);
    let tree = r.git(&["rev-parse", "HEAD:pkg/a"]);
    let suffix = r.linuxkit_content_hash("pkg/a");
    assert_eq!(got.hash.unwrap(), format!("{tree}-dirty-{suffix}"));
}

#[test]
fn hash_commit_uses_that_commit_and_skips_the_dirty_check() {
    let r = fixture();
    let first = r.git(&["rev-parse", "HEAD"]);
    r.write("pkg/a/src/main.c", "changed\n");
    r.commit("second");
    r.write("pkg/a/src/main.c", "uncommitted\n");
    let mut req = Req::new(r.path("pkg/a"));
    req.rev = "HEAD~1";
    let got = req.run(&mut Repos::default()).unwrap();
    let (expected, lk_dirty) = r.linuxkit_hash("pkg/a", "HEAD~1");
    assert!(!lk_dirty && !got.dirty);
    assert_eq!(got.hash.unwrap(), expected);
    assert_eq!(expected, r.git(&["rev-parse", &format!("{first}:pkg/a")]));
    assert_eq!(got.commit.unwrap().to_string(), first);
    // A full id works too, and an unknown one says what to do.
    req.rev = "0123456789012345678901234567890123456789";
    let err = req.run(&mut Repos::default()).unwrap_err().to_string();
    assert!(err.contains("--hash-commit"), "{err}");
}

#[test]
fn hash_path_hashes_the_parent_but_content_of_the_package() {
    let r = fixture();
    let mut req = Req::new(r.path("pkg/a"));
    req.hash_dir = Some(r.path("pkg"));
    let got = req.run(&mut Repos::default()).unwrap();
    assert_eq!(got.hash.unwrap(), r.git(&["rev-parse", "HEAD:pkg"]));
    // A change in a sibling makes the hash path dirty; the suffix hashes pkg/a's files.
    r.write("pkg/b/data", "changed\n");
    let got = req.run(&mut Repos::default()).unwrap();
    let tree = r.git(&["rev-parse", "HEAD:pkg"]);
    assert!(got.dirty);
    assert_eq!(
        got.hash.unwrap(),
        format!("{tree}-dirty-{}", r.linuxkit_content_hash("pkg/a"))
    );
}

#[test]
fn extra_sources_combine_tree_ids_with_sha1() {
    let r = fixture();
    r.write("common/lib.c", "lib\n");
    r.write("other/x", "x\n");
    r.commit("sources");
    let mut req = Req::new(r.path("pkg/a"));
    req.extra = vec![r.path("common"), r.path("other")];
    let got = req.run(&mut Repos::default()).unwrap();
    let joined = format!(
        "{}{}{}",
        r.git(&["rev-parse", "HEAD:pkg/a"]),
        r.git(&["rev-parse", "HEAD:common"]),
        r.git(&["rev-parse", "HEAD:other"])
    );
    let out = std::process::Command::new("bash")
        .args([
            "-c",
            "printf %s \"$1\" | sha1sum | cut -c1-40",
            "-",
            &joined,
        ])
        .output()
        .unwrap();
    let expected = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(got.hash.as_deref(), Some(expected.as_str()));
    assert!(!got.dirty);
    // A dirty package keeps the combined hash and gains the suffix; a dirty extra source
    // does not make the package dirty (LinuxKit only checks the package).
    r.write("common/lib.c", "changed\n");
    assert_eq!(
        req.run(&mut Repos::default()).unwrap().hash.as_deref(),
        Some(expected.as_str())
    );
    r.write("pkg/a/new", "n\n");
    let dirty = req.run(&mut Repos::default()).unwrap();
    assert_eq!(
        dirty.hash.unwrap(),
        format!("{expected}-dirty-{}", r.linuxkit_content_hash("pkg/a"))
    );
}

#[test]
fn extra_source_outside_git_is_an_error() {
    let r = fixture();
    let outside = r.outside("elsewhere");
    write(&outside.join("f"), "f\n");
    let mut req = Req::new(r.path("pkg/a"));
    req.extra = vec![outside.clone()];
    let err = req.run(&mut Repos::default()).unwrap_err();
    assert!(
        matches!(err, SourceError::ExtraSourceNotInGit { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&outside.display().to_string()));
}

#[test]
fn uncommitted_package_says_what_to_do() {
    let r = fixture();
    r.write("pkg/new/build.yml", "image: new\n");
    let err = Req::new(r.path("pkg/new"))
        .run(&mut Repos::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pkg/new") && err.contains("git commit"),
        "{err}"
    );
}

#[test]
fn repository_without_commits_says_what_to_do() {
    require_git();
    let r = TestRepo::new();
    r.write("pkg/build.yml", "image: p\n");
    let err = Req::new(r.path("pkg"))
        .run(&mut Repos::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("HEAD") && err.contains("commit"), "{err}");
}

#[test]
fn outside_git_the_hash_is_the_would_be_tree_id() {
    require_git();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap().join("pkg");
    write(&dir.join("build.yml"), "image: p\n");
    write(&dir.join("x/y"), "y\n");
    let got = ours(&dir);
    assert!(!got.dirty && got.commit.is_none());
    crate::testutil::git_in(&dir, &["init", "-q"]);
    crate::testutil::git_in(&dir, &["add", "-A"]);
    assert_eq!(
        got.hash.unwrap(),
        crate::testutil::git_in(&dir, &["write-tree"])
    );
}

#[test]
fn many_packages_share_one_repository() {
    let r = fixture();
    let mut repos = Repos::default();
    let a = Req::new(r.path("pkg/a")).run(&mut repos).unwrap();
    let b = Req::new(r.path("pkg/b")).run(&mut repos).unwrap();
    assert_eq!(repos.map.len(), 1);
    assert_eq!(a.hash.unwrap(), r.git(&["rev-parse", "HEAD:pkg/a"]));
    assert_eq!(b.hash.unwrap(), r.git(&["rev-parse", "HEAD:pkg/b"]));
}

#[test]
fn nested_repository_is_its_own_repository() {
    let r = fixture();
    let inner = r.path("vendor/inner");
    std::fs::create_dir_all(inner.join("pkg")).unwrap();
    write(&inner.join("pkg/build.yml"), "image: inner\n");
    crate::testutil::git_in(&inner, &["init", "-q"]);
    crate::testutil::git_in(&inner, &["add", "-A"]);
    crate::testutil::git_in(&inner, &["commit", "-q", "-m", "inner"]);
    let mut repos = Repos::default();
    // The outer repository is open first; the inner package must still be hashed in its own.
    Req::new(r.path("pkg/a")).run(&mut repos).unwrap();
    let got = Req::new(inner.join("pkg")).run(&mut repos).unwrap();
    assert_eq!(
        got.hash.unwrap(),
        crate::testutil::git_in(&inner, &["rev-parse", "HEAD:pkg"])
    );
    assert_eq!(repos.map.len(), 2);
}

#[test]
fn clean_filters_apply_before_comparing() {
    require_git();
    let r = TestRepo::new();
    r.write(".gitattributes", "*.txt text=auto\n");
    r.write("pkg/build.yml", "image: p\n");
    r.write("pkg/a.txt", "one\ntwo\n");
    r.commit("init");
    // CRLF in the work tree normalises to the committed LF content: not a change for git.
    r.write("pkg/a.txt", "one\r\ntwo\r\n");
    check(&r, "pkg", false);
    r.write("pkg/a.txt", "one\r\nthree\r\n");
    check(&r, "pkg", true);
}
