//! Package sources: the tag LinuxKit gives a package, computed in-process with `gix`, and the
//! directories that make up its build context.
//!
//! [`Resolver::resolve`] reads a package directory's `build.yml`, hashes its sources and renders
//! the image reference, exactly as `linuxkit pkg show-tag` does:
//!
//! - **clean** (the package matches `HEAD`): the hash is the git tree id of the package
//!   directory, `git rev-parse HEAD:path/to/pkg` (the commit's own tree for a package at the
//!   repository root). `--hash-commit C` hashes commit `C` instead and skips the dirty check.
//! - **dirty** (tracked content or mode differs from `HEAD`, staged or not, deleted files
//!   included, or an untracked file that is not ignored lies under the package):
//!   `TREE-dirty-XXXXXXX`, where `XXXXXXX` starts the SHA-256 of the package's files in
//!   `git ls-files` then `git ls-files --others --exclude-standard` order, directories, symlinks
//!   and unopenable files skipped (LinuxKit's `contentHash`, quirks included; see `content.rs`).
//! - **`extra-sources`**: `hex(sha1(PKGTREE + SRCTREE...))`, then the dirty suffix if the
//!   package is dirty. An extra source outside any git repository is an error, as in LinuxKit.
//! - **`--hash-path P`**: `P`'s tree id and dirtiness stand for the package's (the dirty suffix
//!   still hashes the package's own files).
//! - **`--hash`**, **`--dev`**: the hash is given (`dev` under `--dev`); dirtiness is still
//!   reported.
//!
//! ## Where oxkit differs from LinuxKit
//!
//! - **Outside a git repository** LinuxKit has no hash and tags the package `latest`. oxkit
//!   uses the tree id the directory would have if it were committed on its own
//!   (`git init && git add -A && git write-tree`; [`tree_id_of_dir`]), honouring `.gitignore`
//!   files inside it, git's modes (`100644`, `100755`, `120000`) and entry order, omitting empty
//!   directories and `.git`. Global excludes and `.gitattributes` filters are not applied, so the
//!   id depends on the directory alone. The package is never dirty there.
//! - LinuxKit would block forever on a FIFO listed by `git ls-files`; oxkit skips FIFOs,
//!   sockets and devices in the dirty suffix.
//! - `--hash-path` must be a parent directory (LinuxKit accepts any string prefix, so
//!   `pkg/a` passed for `pkg/abc`).
//! - Submodules (out of scope for packages): only the commit the index records is compared
//!   with HEAD's; the submodule's own checkout is not inspected.
//!
//! ## Performance
//!
//! No `git` process is spawned. Each repository is opened, and its index read, once per
//! [`Resolver`]; each package costs one walk of its own directory (untracked files) and one
//! `lstat` per tracked file, not a walk of the whole repository. Like git, files whose stat data
//! matches the index are not read (others are hashed after the `.gitattributes` clean filters);
//! HEAD's trees below the package are read only when the index's cache tree does not already
//! record them. Nothing is written back to the index. 100 packages of 50 files resolve in one
//! call in about 25 ms (`bench/show-tag.sh`).
//!
//! [`committed_tree_ids`] reads `REV:PATH` ids from any repository, bare ones included.
//!
//! This crate does not touch the store or the network and does not read the environment.

mod content;
mod error;
mod hash;
mod repo;
mod resolve;
#[cfg(test)]
mod testutil;
mod tree;
mod worktree;

pub use error::SourceError;
pub use repo::committed_tree_ids;
pub use resolve::{
    DEFAULT_BUILD_YML, DEFAULT_HASH_COMMIT, Package, PackageSource, ResolveOptions, Resolver,
};
pub use tree::tree_id_of_dir;
