#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::testutil::{TestRepo, git_in, require_git};

fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::to_string).collect()
}

fn open(r: &TestRepo) -> GitRepo {
    GitRepo::open(&r.root).unwrap()
}

/// A work tree exercising git's untracked-file rules.
fn messy() -> TestRepo {
    require_git();
    let r = TestRepo::new();
    r.write(".gitignore", "*.log\n/top-only\nignored-dir/\n");
    r.write("pkg/tracked", "t\n");
    r.write("pkg/ignored-dir/tracked-inside", "force-added\n");
    r.write("pkg/.gitignore", "local.*\n!local.keep\n");
    r.git(&["add", "-A"]);
    r.git(&["add", "-f", "pkg/ignored-dir/tracked-inside"]);
    r.git(&["commit", "-q", "-m", "init"]);
    r.write("pkg/new-file", "u\n");
    r.write("pkg/x.log", "ignored\n");
    r.write("pkg/top-only", "anchored pattern does not apply here\n");
    r.write("top-only", "ignored\n");
    r.write("pkg/local.txt", "ignored\n");
    r.write("pkg/local.keep", "re-included\n");
    r.write("pkg/ignored-dir/untracked", "inside an ignored dir\n");
    r.write("pkg/newdir/a/b", "deep\n");
    r.write("pkg/newdir/c.log", "ignored\n");
    r.write("pkg/only-ignored/z.log", "ignored\n");
    std::fs::create_dir_all(r.path("pkg/empty/dir")).unwrap();
    // A nested repository: git lists it as one `dir/` entry.
    std::fs::create_dir_all(r.path("pkg/nested")).unwrap();
    git_in(&r.path("pkg/nested"), &["init", "-q"]);
    r.write("pkg/nested/file", "n\n");
    r
}

#[test]
fn untracked_matches_git_ls_files_others() {
    let r = messy();
    let mut git = open(&r);
    for prefix in ["pkg", "", "pkg/newdir"] {
        let ours: Vec<String> = untracked(&mut git, prefix.into())
            .unwrap()
            .iter()
            .map(|p| p.to_string())
            .collect();
        let dir = r.path(prefix);
        let theirs = git_in(
            &dir,
            &["ls-files", "--others", "--exclude-standard", "--full-name"],
        );
        assert_eq!(ours, lines(&theirs), "untracked under {prefix:?}");
        assert!(!ours.is_empty());
    }
}

#[test]
fn nothing_is_untracked_below_an_ignored_directory() {
    let r = messy();
    let mut git = open(&r);
    assert!(
        untracked(&mut git, "pkg/ignored-dir".into())
            .unwrap()
            .is_empty()
    );
    let theirs = git_in(
        &r.path("pkg/ignored-dir"),
        &["ls-files", "--others", "--exclude-standard"],
    );
    assert_eq!(theirs, "");
}

#[test]
fn entries_under_matches_git_ls_files() {
    let r = messy();
    let git = open(&r);
    let state: &gix::index::State = &git.index;
    for prefix in ["pkg", "", "pkg/ignored-dir", "pk"] {
        let ours: Vec<String> = entries_under(state, prefix.into())
            .map(|e| e.path(state).to_string())
            .collect();
        let theirs = if prefix == "pk" {
            String::new() // not a directory: a prefix must end at a `/`
        } else {
            git_in(&r.path(prefix), &["ls-files", "--full-name"])
        };
        assert_eq!(ours, lines(&theirs), "tracked under {prefix:?}");
    }
}

#[test]
fn conflicted_paths_are_listed_per_stage_and_dirty() {
    require_git();
    let r = TestRepo::new();
    r.write("pkg/f", "base\n");
    r.commit("base");
    r.git(&["checkout", "-q", "-b", "other"]);
    r.write("pkg/f", "other\n");
    r.commit("other");
    r.git(&["checkout", "-q", "main"]);
    r.write("pkg/f", "main\n");
    r.commit("main");
    let out = std::process::Command::new("git")
        .args(["-C", r.root.to_str().unwrap(), "merge", "-q", "other"])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the merge must conflict");
    let mut git = open(&r);
    let state: &gix::index::State = &git.index;
    let ours: Vec<String> = entries_under(state, "pkg".into())
        .map(|e| e.path(state).to_string())
        .collect();
    assert_eq!(
        ours,
        lines(&git_in(&r.path("pkg"), &["ls-files", "--full-name"]))
    );
    assert_eq!(ours.len(), 3);
    let head = git.commit("HEAD").unwrap();
    let at = git.entry_at(head.tree, "pkg".into()).unwrap();
    assert!(tracked_changed(&git, at, "pkg".into()).unwrap());
    assert!(r.linuxkit_dirty("pkg"));
}

#[test]
fn cache_tree_shortcut_is_taken_only_when_the_index_matches_head() {
    require_git();
    let r = TestRepo::new();
    r.write("pkg/a/f", "1\n");
    r.write("pkg/b/f", "2\n");
    r.commit("init");
    let git = open(&r);
    let head_a = r.git(&["rev-parse", "HEAD:pkg/a"]);
    let state: &gix::index::State = &git.index;
    assert_eq!(
        cache_tree_id(state, "pkg/a".into()).map(|id| id.to_string()),
        Some(head_a)
    );
    // Staging a change invalidates the cache tree above it: the full comparison runs there.
    r.write("pkg/a/f", "changed\n");
    r.git(&["add", "pkg/a/f"]);
    let git = open(&r);
    let state: &gix::index::State = &git.index;
    assert_eq!(cache_tree_id(state, "pkg/a".into()), None);
    assert!(cache_tree_id(state, "pkg/b".into()).is_some());
}
