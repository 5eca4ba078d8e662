//! From a package directory to its image reference, as LinuxKit's `pkglib.NewFromConfig`: read
//! `build.yml`, apply the `pkg` flags (org, hash, dev mode, tag template, hash commit and path,
//! forced dirtiness), hash the sources and render the tag.
//!
//! The caller (the binary) turns flags and environment (`LINUXKIT_PKG_ORG`, `USER`) into
//! [`ResolveOptions`]; nothing here reads the environment or prints.

use std::path::{Path, PathBuf};

use oxkit_spec::{PackageSpec, Reference, render_tag};

use crate::SourceError;
use crate::hash::{HashRequest, Repos, hash_source};

/// LinuxKit's default build file name.
pub const DEFAULT_BUILD_YML: &str = "build.yml";
/// LinuxKit's default `--hash-commit`.
pub const DEFAULT_HASH_COMMIT: &str = "HEAD";

/// LinuxKit's `pkg` flags that decide a package's tag. They apply to every package resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveOptions {
    /// `--org` (or `LINUXKIT_PKG_ORG`): replaces build.yml's `org`, also under `--dev`. May carry
    /// a registry host (`127.0.0.1:5000/me`).
    pub org: Option<String>,
    /// `--hash`: used verbatim instead of the source hash.
    pub hash: Option<String>,
    /// `--dev`, with the user name (`$USER`) that becomes the org; the hash becomes `dev`
    /// unless `hash` is given.
    pub dev_user: Option<String>,
    /// `--tag`: a tag template replacing build.yml's `tag:` (`{{.Hash}}` is the hash).
    pub tag_template: Option<String>,
    /// `--build-yml`: the build file's name inside each package directory.
    pub build_yml: String,
    /// `--hash-commit`: the revision whose trees are hashed. Dirtiness is only checked when
    /// this is exactly `HEAD`, as LinuxKit does.
    pub hash_commit: String,
    /// `--hash-path`: a parent of the package directory to hash instead of the package itself.
    pub hash_path: Option<PathBuf>,
    /// `--force-dirty`: treat packages in git as dirty (and add the `-dirty-` suffix).
    pub force_dirty: bool,
}

impl Default for ResolveOptions {
    fn default() -> Self {
        Self {
            org: None,
            hash: None,
            dev_user: None,
            tag_template: None,
            build_yml: DEFAULT_BUILD_YML.to_string(),
            hash_commit: DEFAULT_HASH_COMMIT.to_string(),
            hash_path: None,
            force_dirty: false,
        }
    }
}

/// A directory that goes into a package's build context (LinuxKit's `pkgSource`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageSource {
    /// Absolute and canonical.
    pub src: PathBuf,
    /// Where it lands in the build context (`/` for the package directory itself).
    pub dst: String,
}

/// A resolved package: its spec, its source hash and the reference it is built as.
#[derive(Debug, Clone)]
pub struct Package {
    /// The package directory, absolute and canonical.
    pub dir: PathBuf,
    /// The build file read.
    pub build_yml: PathBuf,
    pub spec: PackageSpec,
    /// The org in effect (flag, dev user, or build.yml).
    pub org: String,
    /// The source hash (`TREE`, `TREE-dirty-XXXXXXX`), or `--hash`/`dev` verbatim.
    pub hash: String,
    /// The rendered tag.
    pub tag: String,
    /// Whether the package's sources differ from the commit (or `--force-dirty`).
    pub dirty: bool,
    /// The commit hashed, full hex, when the package is in a git repository.
    pub commit: Option<String>,
    /// The package directory (`/`) followed by its `extra-sources`.
    pub sources: Vec<PackageSource>,
    reference: Reference,
}

impl Package {
    /// `org/image:tag` as LinuxKit prints it (`linuxkit/init:abc`, `127.0.0.1:5000/me/x:abc`).
    pub fn name(&self) -> String {
        format!("{}/{}:{}", self.org, self.spec.image, self.tag)
    }

    /// The image reference, normalised (`docker.io/linuxkit/init:abc` when printed canonically).
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// The per-architecture reference LinuxKit pushes before the index: tag `TAG-ARCH`.
    pub fn arch_reference(&self, arch: &str) -> Result<Reference, SourceError> {
        let tag = format!("{}-{arch}", self.tag);
        self.reference
            .with_tag(&tag)
            .map_err(|e| SourceError::Reference {
                reference: format!("{}/{}:{tag}", self.org, self.spec.image),
                reason: e.reason,
                hint: format!("architecture {arch:?} does not fit in a tag"),
            })
    }
}

/// Resolves packages, keeping every git repository it opens for the packages that follow.
#[derive(Default)]
pub struct Resolver {
    options: ResolveOptions,
    repos: Repos,
}

impl Resolver {
    pub fn new(options: ResolveOptions) -> Self {
        Self {
            options,
            repos: Repos::default(),
        }
    }

    pub fn options(&self) -> &ResolveOptions {
        &self.options
    }

    /// Resolves the package in `dir` (relative paths are taken from the current directory).
    pub fn resolve(&mut self, dir: &Path) -> Result<Package, SourceError> {
        let opts = &self.options;
        let dir = canonical_dir(dir)?;
        let hash_dir = match &opts.hash_path {
            None => dir.clone(),
            Some(p) => {
                let hash_dir = std::fs::canonicalize(p).map_err(|e| SourceError::io(p, e))?;
                if !dir.starts_with(&hash_dir) {
                    return Err(SourceError::HashPathNotParent {
                        hash_path: p.clone(),
                        dir,
                    });
                }
                hash_dir
            }
        };
        let build_yml = dir.join(&opts.build_yml);
        let text = match std::fs::read_to_string(&build_yml) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SourceError::MissingBuildYml {
                    path: build_yml,
                    dir,
                });
            }
            Err(e) => return Err(SourceError::io(&build_yml, e)),
        };
        let spec = PackageSpec::parse(&text, &build_yml.display().to_string())?;

        let mut sources = vec![PackageSource {
            src: dir.clone(),
            dst: "/".to_string(),
        }];
        for extra in &spec.extra_sources {
            let src = dir.join(&extra.src); // an absolute src replaces dir, as in LinuxKit
            let src = std::fs::canonicalize(&src).map_err(|e| SourceError::io(&src, e))?;
            sources.push(PackageSource {
                src,
                dst: extra.dst.clone(),
            });
        }
        let extra_dirs: Vec<PathBuf> = sources[1..].iter().map(|s| s.src.clone()).collect();

        let given_hash = opts
            .hash
            .clone()
            .or_else(|| opts.dev_user.as_ref().map(|_| "dev".to_string()));
        let source = hash_source(
            &mut self.repos,
            &HashRequest {
                dir: &dir,
                hash_dir: &hash_dir,
                extra_sources: &extra_dirs,
                rev: &opts.hash_commit,
                force_dirty: opts.force_dirty,
                want_hash: given_hash.is_none(),
                build_yml: &build_yml,
            },
        )?;
        let hash = given_hash.or(source.hash).unwrap_or_default();

        let org = opts
            .org
            .clone()
            .or_else(|| opts.dev_user.clone())
            .unwrap_or_else(|| spec.org.clone());
        let (template, origin) = match opts.tag_template.as_deref().filter(|t| !t.is_empty()) {
            Some(t) => (t, "--tag".to_string()),
            None => (spec.tag.as_str(), build_yml.display().to_string()),
        };
        let tag = render_tag(template, &hash).map_err(|e| SourceError::TagTemplate {
            origin,
            message: e.message,
        })?;
        let text = format!("{org}/{}:{tag}", spec.image);
        let reference = Reference::parse(&text).map_err(|e| SourceError::Reference {
            reference: text.clone(),
            reason: e.reason,
            hint: if opts.org.is_some() {
                "fix --org (or LINUXKIT_PKG_ORG)".to_string()
            } else if opts.dev_user.is_some() {
                "under --dev the org is $USER; pass --org".to_string()
            } else {
                format!("fix org or image in {}", build_yml.display())
            },
        })?;
        Ok(Package {
            dir,
            build_yml,
            spec,
            org,
            hash,
            tag,
            dirty: source.dirty,
            commit: source.commit.map(|c| c.to_string()),
            sources,
            reference,
        })
    }
}

fn canonical_dir(dir: &Path) -> Result<PathBuf, SourceError> {
    let canonical = std::fs::canonicalize(dir).map_err(|error| SourceError::NoPackageDir {
        dir: dir.to_path_buf(),
        error,
    })?;
    if !canonical.is_dir() {
        return Err(SourceError::NoPackageDir {
            dir: dir.to_path_buf(),
            error: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
        });
    }
    Ok(canonical)
}

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;
