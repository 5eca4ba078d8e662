//! `pkg build` for one package, as LinuxKit's `Pkg.Build`: decide which architectures are
//! missing from the store (all of them with `force`), build each from the package's
//! Dockerfile with LinuxKit's build args and labels, then — only when every one succeeded —
//! tag `ORG/IMAGE:TAG-ARCH` for each and write the index `ORG/IMAGE:TAG` over all the
//! package's architectures. A failed build tags nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oxkit_sandbox::Sandbox;
use oxkit_source::{Package, ResolveOptions, Resolver};
use oxkit_spec::build_yml::BuildArg;
use oxkit_spec::dockerfile::Dockerfile;
use oxkit_spec::{Digest, Platform};
use oxkit_store::Store;
use oxkit_store::layer::{Compression, LayerOptions};
use oxkit_store::oci::Descriptor;

use crate::exec::{DockerfileBuild, Settings};
use crate::tree::ContextTree;
use crate::{BuildError, BuildEvent, EventSink, ImageSource, UrlFetcher};

/// Build args LinuxKit adds to every build; not warned about when a Dockerfile ignores them.
const IMPLICIT_ARGS: &[&str] = &["SOURCE", "REVISION", "PKG_HASH", "PKG_IMAGE"];

/// How to build (the `pkg build` flags).
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Platforms to build instead of build.yml's `arches`.
    pub platforms: Option<Vec<Platform>>,
    /// Rebuild even when the tag is complete in the store.
    pub force: bool,
    /// `--build-arg` and `--build-arg-file` values, in order (later ones win).
    pub build_args: Vec<(String, String)>,
    /// Overrides build.yml's `network`.
    pub network: Option<bool>,
    /// Overrides build.yml's `disable-cache` (`Some(false)` disables the step cache).
    pub cache: Option<bool>,
    pub compression: Compression,
    /// SOURCE_DATE_EPOCH: creation time and mtime clamp (0 by default).
    pub epoch: i64,
    /// Report what would be built without building.
    pub dry_run: bool,
    /// Stage to build instead of the last one.
    pub target: Option<String>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            platforms: None,
            force: false,
            build_args: Vec::new(),
            network: None,
            cache: None,
            compression: Compression::Gzip,
            epoch: 0,
            dry_run: false,
            target: None,
        }
    }
}

/// What happened to one package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageReport {
    /// `org/image:tag`.
    pub name: String,
    /// The package directory.
    pub dir: PathBuf,
    /// Nothing was built: every requested platform was in the store.
    pub skipped: bool,
    pub dry_run: bool,
    /// The index `name` now points at.
    pub index: Option<Digest>,
    pub arches: Vec<ArchReport>,
}

/// One platform of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchReport {
    pub platform: Platform,
    /// `org/image:tag-arch`.
    pub name: String,
    /// Its manifest (absent under dry run for platforms not built).
    pub digest: Option<Digest>,
    /// Built now (false: it was in the store).
    pub built: bool,
    pub steps: usize,
    pub cached_steps: usize,
    pub duration: Duration,
}

/// Builds packages with the given services.
#[derive(Clone, Copy)]
pub struct PackageBuilder<'a> {
    pub store: &'a Store,
    pub sandbox: &'a dyn Sandbox,
    pub images: Option<&'a dyn ImageSource>,
    pub urls: Option<&'a dyn UrlFetcher>,
    pub events: &'a dyn EventSink,
}

impl PackageBuilder<'_> {
    /// Builds `pkg` (resolved by `oxkit-source`).
    pub fn build(&self, pkg: &Package, opts: &BuildOptions) -> Result<PackageReport, BuildError> {
        let name = pkg.name();
        let platforms = match &opts.platforms {
            Some(p) => p.clone(),
            None => pkg.spec.platforms(),
        };
        if platforms.is_empty() {
            return Err(BuildError::Package(format!(
                "{name}: no platforms to build; set `arches` in {} or pass --platforms",
                pkg.build_yml.display()
            )));
        }
        // Blobs written from here on must survive a concurrent `cache clean` until tagged.
        let _lease = self.store.lease()?;
        let mut present: Vec<(Platform, Descriptor)> = Vec::new();
        let mut missing: Vec<Platform> = Vec::new();
        for p in &platforms {
            let r = pkg.arch_reference(p.arch())?;
            match self.store.resolve(&r)? {
                Some(d) if !opts.force && self.store.image_blobs(&d).is_ok() => {
                    present.push((p.clone(), d));
                }
                _ => missing.push(p.clone()),
            }
        }
        let mut report = PackageReport {
            name: name.clone(),
            dir: pkg.dir.clone(),
            skipped: missing.is_empty(),
            dry_run: opts.dry_run,
            index: None,
            arches: Vec::new(),
        };
        for (p, d) in &present {
            report.arches.push(ArchReport {
                platform: p.clone(),
                name: format!("{name}-{}", p.arch()),
                digest: Some(d.digest.clone()),
                built: false,
                steps: 0,
                cached_steps: 0,
                duration: Duration::ZERO,
            });
            if !missing.is_empty() {
                self.events.event(BuildEvent::ArchPresent {
                    name: name.clone(),
                    platform: p.clone(),
                });
            }
        }
        if missing.is_empty() {
            let index = self.store.resolve(pkg.reference())?;
            let complete = index
                .as_ref()
                .is_some_and(|d| self.store.image_blobs(d).is_ok() && self.covers(d, &platforms));
            if complete {
                report.index = index.map(|d| d.digest);
                self.events.event(BuildEvent::PackageSkipped {
                    name: name.clone(),
                    reason: "already in the store (use --force to rebuild)".into(),
                });
                return Ok(report);
            }
        }
        if opts.dry_run {
            for p in &missing {
                report.arches.push(ArchReport {
                    platform: p.clone(),
                    name: format!("{name}-{}", p.arch()),
                    digest: None,
                    built: false,
                    steps: 0,
                    cached_steps: 0,
                    duration: Duration::ZERO,
                });
            }
            return Ok(report);
        }

        let mut built: Vec<(Platform, Descriptor, ArchReport)> = Vec::new();
        if !missing.is_empty() {
            self.events.event(BuildEvent::PackageStart {
                name: name.clone(),
                platforms: missing.clone(),
            });
            let dockerfile = pkg.dir.join(&pkg.spec.dockerfile);
            let file = dockerfile.display().to_string();
            let text = std::fs::read_to_string(&dockerfile).map_err(|e| {
                BuildError::Package(format!(
                    "cannot read the Dockerfile of {name} at {file}: {e}; create it or set `dockerfile:` in {}",
                    pkg.build_yml.display()
                ))
            })?;
            let df = Dockerfile::parse(&text, &file)?;
            let context = ContextTree::new(&pkg.sources)?;
            let settings = self.settings(pkg, opts)?;
            let engine = DockerfileBuild {
                store: self.store,
                sandbox: self.sandbox,
                images: self.images,
                urls: self.urls,
                events: self.events,
            };
            for p in &missing {
                let t0 = Instant::now();
                let image = engine.build(&df, &file, &context, p, &settings)?;
                let arch = ArchReport {
                    platform: p.clone(),
                    name: format!("{name}-{}", p.arch()),
                    digest: Some(image.manifest.digest.clone()),
                    built: true,
                    steps: image.steps,
                    cached_steps: image.cached,
                    duration: t0.elapsed(),
                };
                built.push((p.clone(), image.manifest, arch));
            }
        }

        // Everything built: now name it.
        for (p, manifest, _) in &built {
            let r = pkg.arch_reference(p.arch())?;
            self.store.tag(&r, manifest.clone())?;
            self.events.event(BuildEvent::ArchDone {
                name: name.clone(),
                platform: p.clone(),
                digest: manifest.digest.clone(),
            });
        }
        let mut entries: Vec<Descriptor> = present
            .iter()
            .map(|(p, d)| d.clone().with_platform(p.clone()))
            .chain(built.iter().map(|(_, d, _)| d.clone()))
            .collect();
        // Keep platforms an earlier build put in the index that were not asked for now.
        if let Some(old) = self.store.resolve(pkg.reference())?
            && let Ok(idx) = self.store.read_index(&old.digest)
        {
            for m in idx.manifests {
                let known = m.platform.as_ref().is_some_and(|mp| {
                    platforms
                        .iter()
                        .any(|p| p.architecture == mp.architecture && p.os == mp.os)
                });
                if !known && self.store.image_blobs(&m).is_ok() {
                    entries.push(m);
                }
            }
        }
        let index = self.store.put_index_for(pkg.reference(), entries)?;
        report.index = Some(index.digest);
        report.arches.extend(built.into_iter().map(|(_, _, a)| a));
        report.arches.sort_by_key(|a| a.platform.to_string());
        Ok(report)
    }

    /// Whether index `d` has a manifest for each of `platforms`.
    fn covers(&self, d: &Descriptor, platforms: &[Platform]) -> bool {
        let Ok(idx) = self.store.read_index(&d.digest) else {
            return false;
        };
        platforms.iter().all(|p| {
            idx.manifests.iter().any(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|mp| mp.architecture == p.architecture && mp.os == p.os)
            })
        })
    }

    fn settings(&self, pkg: &Package, opts: &BuildOptions) -> Result<Settings, BuildError> {
        let spec = &pkg.spec;
        let mut build_args = BTreeMap::new();
        for arg in spec.parsed_build_args() {
            for (k, v) in transform_build_arg(&arg, &pkg.build_yml)? {
                build_args.insert(k, v);
            }
        }
        for (k, v) in &opts.build_args {
            build_args.insert(k.trim().to_string(), v.trim().to_string());
        }
        let revision = pkg.commit.clone().filter(|_| !pkg.dirty);
        let mut implicit = BTreeSet::new();
        let mut add = |k: &str, v: Option<String>| {
            if let Some(v) = v.filter(|v| !v.is_empty())
                && !build_args.contains_key(k)
            {
                build_args.insert(k.to_string(), v);
                implicit.insert(k.to_string());
            }
        };
        add("SOURCE", Some(spec.gitrepo.clone()));
        add("REVISION", revision.clone());
        add("PKG_HASH", Some(pkg.hash.clone()));
        add("PKG_IMAGE", Some(spec.image.clone()));
        debug_assert!(implicit.iter().all(|k| IMPLICIT_ARGS.contains(&k.as_str())));
        let mut labels = BTreeMap::new();
        if pkg.commit.is_some() && !spec.gitrepo.is_empty() {
            labels.insert(
                "org.opencontainers.image.source".to_string(),
                spec.gitrepo.clone(),
            );
        }
        if let Some(rev) = revision {
            labels.insert("org.opencontainers.image.revision".to_string(), rev);
        }
        if let Some(json) = spec.config_label_json() {
            labels.insert("org.mobyproject.config".to_string(), json);
        }
        Ok(Settings {
            network: opts.network.unwrap_or(spec.network),
            cache: opts.cache.unwrap_or(!spec.disable_cache),
            layer: LayerOptions {
                compression: opts.compression,
                epoch: opts.epoch,
                ..LayerOptions::default()
            },
            build_args,
            implicit_args: implicit,
            labels,
            target: opts.target.clone(),
        })
    }
}

/// A build.yml `buildArgs` entry as (key, value) pairs, with LinuxKit's `@lkt:` values
/// replaced by the tags of the packages they name.
fn transform_build_arg(
    arg: &BuildArg,
    build_yml: &Path,
) -> Result<Vec<(String, String)>, BuildError> {
    let anchor = build_yml.parent().unwrap_or(Path::new("."));
    let mut resolver = Resolver::new(ResolveOptions::default());
    match arg {
        BuildArg::Plain { key, value } => Ok(vec![(key.clone(), value.clone())]),
        BuildArg::Pkg { key, path } => {
            let dir = anchor.join(path);
            let p = resolver.resolve(&dir).map_err(|e| {
                BuildError::Package(format!(
                    "{}: buildArgs {key}=@lkt:pkg:{path}: {e}",
                    build_yml.display()
                ))
            })?;
            Ok(vec![(key.clone(), p.name())])
        }
        BuildArg::Pkgs { key, glob } => {
            let pattern = anchor.join(glob);
            let dirs = glob_dirs(&pattern.to_string_lossy());
            if dirs.is_empty() {
                return Err(BuildError::Package(format!(
                    "{}: buildArgs {key}=@lkt:pkgs:{glob}: no package directories match",
                    build_yml.display()
                )));
            }
            let mut out = Vec::new();
            for d in dirs {
                let p = resolver.resolve(&d).map_err(|e| {
                    BuildError::Package(format!(
                        "{}: buildArgs {key}=@lkt:pkgs:{glob}: {e}",
                        build_yml.display()
                    ))
                })?;
                let stem = p.spec.image.replace(['/', '-'], "_").to_uppercase();
                out.push((key.replace('%', &stem), p.name()));
            }
            Ok(out)
        }
    }
}

/// Directories matching an absolute glob (`filepath.Glob` rules), hidden ones left out.
fn glob_dirs(pattern: &str) -> Vec<PathBuf> {
    let mut current = vec![PathBuf::from("/")];
    for comp in pattern.split('/').filter(|c| !c.is_empty() && *c != ".") {
        let mut next = Vec::new();
        for dir in &current {
            if comp == ".." {
                next.push(dir.parent().unwrap_or(dir).to_path_buf());
            } else if !crate::glob::has_meta(comp) {
                next.push(dir.join(comp));
            } else if let Ok(rd) = std::fs::read_dir(dir) {
                let mut names: Vec<String> = rd
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                for n in names {
                    if crate::glob::match_component(comp, &n).unwrap_or(false) {
                        next.push(dir.join(n));
                    }
                }
            }
        }
        current = next;
    }
    current
        .into_iter()
        .filter(|p| p.is_dir())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globbing_package_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        for d in ["pkgs/a", "pkgs/b", "pkgs/.hidden", "other/c"] {
            std::fs::create_dir_all(tmp.path().join(d)).unwrap();
        }
        std::fs::write(tmp.path().join("pkgs/file"), "").unwrap();
        let got = glob_dirs(&format!("{}/pkgs/*", tmp.path().display()));
        assert_eq!(got, [tmp.path().join("pkgs/a"), tmp.path().join("pkgs/b")]);
    }
}
