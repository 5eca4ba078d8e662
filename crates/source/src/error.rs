//! The crate's one error type. Every variant names the package directory or file involved and,
//! where there is one, says what to do about it. Each message is complete on its own line:
//! causes are part of the text, not a `source()` chain, so `{:#}` printing does not repeat them.
//! Nothing here performs I/O.

use std::path::PathBuf;

/// Why a package's source could not be resolved to a tag.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Reading a file or directory failed.
    #[error("cannot read {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    /// The package directory does not exist or is not a directory.
    #[error("{dir} is not a package directory: {error}")]
    NoPackageDir { dir: PathBuf, error: std::io::Error },

    /// The package directory has no build file.
    #[error(
        "{path} does not exist: is {dir} a package directory? (pass --build-yml NAME if its file has another name)"
    )]
    MissingBuildYml { path: PathBuf, dir: PathBuf },

    /// The build file is not a valid LinuxKit `build.yml` (the message names it, with line and
    /// column).
    #[error(transparent)]
    Spec(#[from] oxkit_spec::SpecError),

    /// `org/image:tag` does not form a valid image reference; `hint` says which setting to fix.
    #[error("{reference:?} is not a valid image reference ({reason}); {hint}")]
    Reference {
        reference: String,
        reason: String,
        hint: String,
    },

    /// A git operation on an existing repository failed.
    #[error("git repository {repo}: {action}: {error}")]
    Git {
        repo: PathBuf,
        action: String,
        error: gix::Error,
    },

    /// The directory is inside a `.git` directory or a bare repository.
    #[error(
        "{dir} is inside a git directory without a work tree; point at a checked-out package directory"
    )]
    NoWorkTree { dir: PathBuf },

    /// The revision given to `--hash-commit` (or `HEAD`) does not name a commit.
    #[error(
        "git repository {repo}: {rev:?} does not name a commit ({reason}); commit the package first, pass an existing commit with --hash-commit, or pass --hash"
    )]
    NoCommit {
        repo: PathBuf,
        rev: String,
        reason: String,
    },

    /// The package (or an extra source) is not part of the commit being hashed.
    #[error(
        "{path} is not in git commit {commit}: commit it (git add + git commit), or pass --hash"
    )]
    NotInCommit { path: PathBuf, commit: String },

    /// An `extra-sources` directory lies outside every git repository.
    #[error(
        "{build_yml}: extra source {source_dir} is not in a git repository; LinuxKit hashes extra sources with git, so commit it to a repository"
    )]
    ExtraSourceNotInGit {
        build_yml: PathBuf,
        source_dir: PathBuf,
    },

    /// A path that must be inside the package's git work tree is not.
    #[error(
        "{path} is outside the git work tree {root}; --hash-path and the package must be in the same repository"
    )]
    OutsideWorkTree { path: PathBuf, root: PathBuf },

    /// `--hash-path` is not a parent of the package directory.
    #[error("--hash-path {hash_path} is not a parent of the package directory {dir}")]
    HashPathNotParent { hash_path: PathBuf, dir: PathBuf },

    /// The tag template (`--tag`, or build.yml's `tag:`) did not render; `origin` says which.
    #[error("{origin}: {message}")]
    TagTemplate { origin: String, message: String },
}

impl SourceError {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            error,
        }
    }

    pub(crate) fn git(
        repo: impl Into<PathBuf>,
        action: impl Into<String>,
        error: gix::Error,
    ) -> Self {
        Self::Git {
            repo: repo.into(),
            action: action.into(),
            error,
        }
    }
}
