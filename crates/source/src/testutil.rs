//! Test support: real git repositories in temporary directories, and LinuxKit's own algorithm
//! run through the `git` CLI and `sha256sum` as the oracle our in-process results must equal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// A scratch git repository (`root`), its parent holding anything that must live outside it.
pub(crate) struct TestRepo {
    pub(crate) tmp: TempDir,
    pub(crate) root: PathBuf,
}

impl TestRepo {
    pub(crate) fn new() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("oxkit-source-")
            .tempdir()
            .unwrap();
        let root = tmp.path().canonicalize().unwrap().join("repo");
        std::fs::create_dir_all(&root).unwrap();
        let repo = Self { tmp, root };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    /// A directory next to the repository, outside it.
    pub(crate) fn outside(&self, name: &str) -> PathBuf {
        let p = self.tmp.path().canonicalize().unwrap().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    pub(crate) fn write(&self, rel: &str, content: &str) {
        write(&self.path(rel), content);
    }

    pub(crate) fn git(&self, args: &[&str]) -> String {
        git_in(&self.root, args)
    }

    /// Stages everything and commits. File times are set back to 2020 first so the index's stat
    /// data is trustworthy, as after a while in real use; without that, files written in the
    /// same second as the index are "racily clean" and get re-hashed (which must give the same
    /// answers: [`Self::commit_racy`] tests that).
    pub(crate) fn commit(&self, message: &str) {
        let status = Command::new("find")
            .args([
                ".",
                "-path",
                "./.git",
                "-prune",
                "-o",
                "-exec",
                "touch",
                "-h",
                "-d",
                "@1577836800",
                "{}",
                "+",
            ])
            .current_dir(&self.root)
            .status()
            .unwrap();
        assert!(status.success());
        self.commit_racy(message);
    }

    /// Stages everything and commits, leaving file times as they are.
    pub(crate) fn commit_racy(&self, message: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
    }

    /// LinuxKit's tag hash for `pkg`, computed the way LinuxKit computes it: `git ls-tree`,
    /// `git diff --quiet`, `git ls-files`, and a shell loop feeding the files to `sha256sum`.
    pub(crate) fn linuxkit_hash(&self, pkg: &str, commit: &str) -> (String, bool) {
        let dir = self.path(pkg);
        let tree = if pkg.is_empty() {
            git_in(&dir, &["show", "--format=%T", "-s", commit])
        } else {
            let out = git_in(
                &dir,
                &[
                    "ls-tree",
                    "--full-tree",
                    commit,
                    "--",
                    dir.to_str().unwrap(),
                ],
            );
            out.split_whitespace().nth(2).unwrap().to_string()
        };
        let dirty = commit == "HEAD" && self.linuxkit_dirty(pkg);
        if !dirty {
            return (tree, false);
        }
        (
            format!("{tree}-dirty-{}", self.linuxkit_content_hash(pkg)),
            true,
        )
    }

    /// LinuxKit's isDirty: `git diff --quiet HEAD -- DIR`, then untracked files under DIR.
    pub(crate) fn linuxkit_dirty(&self, pkg: &str) -> bool {
        let dir = self.path(pkg);
        let d = dir.to_str().unwrap();
        let diff = Command::new("git")
            .args([
                "-C",
                d,
                "diff",
                "--no-ext-diff",
                "--exit-code",
                "--quiet",
                "HEAD",
                "--",
                d,
            ])
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .status()
            .unwrap();
        if !diff.success() {
            return true;
        }
        Command::new("git")
            .args([
                "-C",
                d,
                "ls-files",
                "--exclude-standard",
                "--others",
                "--error-unmatch",
                "--",
                d,
            ])
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    /// LinuxKit's contentHash, first 7 hex digits, in shell.
    pub(crate) fn linuxkit_content_hash(&self, pkg: &str) -> String {
        let script = r#"{ git ls-files; echo; git ls-files --exclude-standard --others; } |
            while IFS= read -r f; do
              if [ -n "$f" ] && [ -f "$f" ] && [ ! -L "$f" ]; then cat -- "$f"; fi
            done | sha256sum | cut -c1-7"#;
        let out = Command::new("bash")
            .args(["-c", script])
            .current_dir(self.path(pkg))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

pub(crate) fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

pub(crate) fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub(crate) fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_DATE", "2020-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2020-01-01T00:00:00Z")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Whether `git` is installed; tests that need it as an oracle fail with a hint when it is not.
pub(crate) fn require_git() {
    assert!(
        Command::new("git").arg("--version").output().is_ok(),
        "these tests need the git CLI as an oracle: apt-get install git"
    );
}
