#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::symlink;

use super::*;
use crate::testutil::{chmod, git_in, require_git, write};

/// What git would record: `git init && git add -A && git write-tree` in `dir`.
fn git_tree_id(dir: &Path) -> String {
    git_in(dir, &["init", "-q"]);
    git_in(dir, &["add", "-A"]);
    git_in(dir, &["write-tree"])
}

#[test]
fn tree_id_of_dir_equals_git_write_tree() {
    require_git();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("pkg");
    write(&d.join("build.yml"), "image: x\n");
    write(&d.join("Dockerfile"), "FROM scratch\n");
    write(&d.join("empty-file"), "");
    write(&d.join("run.sh"), "#!/bin/sh\n");
    chmod(&d.join("run.sh"), 0o755);
    write(&d.join("group-exec"), "only group may run me\n");
    chmod(&d.join("group-exec"), 0o654);
    // Names whose order differs between plain byte order and git's tree order.
    write(&d.join("a.b"), "1\n");
    write(&d.join("a-b"), "2\n");
    write(&d.join("a/inner"), "3\n");
    write(&d.join("a0"), "4\n");
    write(&d.join("with space/é"), "5\n");
    symlink("build.yml", d.join("link")).unwrap();
    symlink("a", d.join("dirlink")).unwrap();
    symlink("/nowhere", d.join("dangling")).unwrap();
    std::fs::create_dir_all(d.join("empty/deeper")).unwrap();
    // Ignore rules at two levels, with a negation and a directory pattern.
    write(&d.join(".gitignore"), "*.o\nbuild/\n");
    write(&d.join("x.o"), "ignored\n");
    write(&d.join("build/out"), "ignored dir\n");
    write(&d.join("sub/.gitignore"), "*\n!keep\n!.gitignore\n");
    write(&d.join("sub/keep"), "kept\n");
    write(&d.join("sub/drop"), "dropped\n");
    write(
        &d.join("sub/keep.o"),
        "ignored at the root, re-included below\n",
    );
    write(
        &d.join("only-ignored/a.o"),
        "a directory with nothing to commit\n",
    );
    // A FIFO: git add cannot record it.
    let status = std::process::Command::new("mkfifo")
        .arg(d.join("fifo"))
        .status()
        .unwrap();
    assert!(status.success());

    let ours = tree_id_of_dir(&d).unwrap();
    assert_eq!(ours, git_tree_id(&d));
    // `.git` itself is never part of the tree.
    assert_eq!(tree_id_of_dir(&d).unwrap(), ours);
}

#[test]
fn content_and_mode_changes_change_the_id() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(&d.join("f"), "1\n");
    let first = tree_id_of_dir(d).unwrap();
    write(&d.join("f"), "2\n");
    let second = tree_id_of_dir(d).unwrap();
    chmod(&d.join("f"), 0o755);
    let third = tree_id_of_dir(d).unwrap();
    assert_ne!(first, second);
    assert_ne!(second, third);
}

#[test]
fn empty_directory_is_the_empty_tree() {
    require_git();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("e");
    std::fs::create_dir_all(d.join("nothing")).unwrap();
    assert_eq!(tree_id_of_dir(&d).unwrap(), EMPTY_TREE);
    assert_eq!(git_tree_id(&d), EMPTY_TREE);
}

#[test]
fn missing_directory_names_the_path() {
    let err = tree_id_of_dir(Path::new("/nonexistent/oxkit/pkg")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/oxkit/pkg"), "{err}");
}
