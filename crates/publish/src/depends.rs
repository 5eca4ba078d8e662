//! build.yml's `depends.docker-images`: images a package needs inside its build context (to
//! embed them in the package), pulled by digest and saved there before the build, as
//! LinuxKit does.
//!
//! - The images are `list`, or the lines of `from-file` (empty lines and lines starting with
//!   `#` skipped); every one must be pinned by digest.
//! - With `target-dir`, that directory is emptied and each image saved in it as
//!   `BASENAME@sha256:HEX.tar` (BASENAME: the last component of the repository, as LinuxKit
//!   names them); with `target`, all of them go into that one tar file.
//!
//! LinuxKit writes `docker save` archives; oxkit has no Docker daemon and writes OCI archives
//! (an OCI image layout in a tar, which `docker load` (25+), skopeo `oci-archive:` and
//! `oxkit cache import` read), with every platform of the pinned digest. Images already in the
//! store are not pulled again.

use std::path::{Path, PathBuf};

use oxkit_registry::Client;
use oxkit_registry::transfer::Platforms;
use oxkit_source::Package;
use oxkit_spec::Reference;
use oxkit_spec::build_yml::check_pinned_reference;
use oxkit_store::Store;
use oxkit_store::archive::export_archive_to;

use crate::error::{PublishError, Result};

/// One dependency image saved into the build context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedImage {
    pub reference: Reference,
    /// The archive it was written to (shared by all images with `target`).
    pub path: PathBuf,
    /// Pulled now (false: it was in the store).
    pub pulled: bool,
}

/// The images `depends.docker-images` lists, read from `from-file` when that is set.
pub fn dependency_images(pkg: &Package) -> Result<Vec<Reference>> {
    let di = &pkg.spec.depends.docker_images;
    let (lines, origin): (Vec<String>, PathBuf) = if di.from_file.is_empty() {
        (di.list.clone(), pkg.build_yml.clone())
    } else {
        let path = pkg.dir.join(&di.from_file);
        let text = std::fs::read_to_string(&path).map_err(|e| PublishError::Depends {
            path: path.clone(),
            reason: format!(
                "cannot read depends.docker-images.from-file ({e}); create it or fix {}",
                pkg.build_yml.display()
            ),
        })?;
        let lines = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect();
        (lines, path)
    };
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            check_pinned_reference(l).map_err(|reason| PublishError::Depends {
                path: origin.clone(),
                reason: format!("entry {} ({l:?}): {reason}", i + 1),
            })
        })
        .collect()
}

/// Pulls the package's `depends.docker-images` into the store (those it lacks) and saves them
/// into the build context (`target` or `target-dir`, inside the package directory). Call it
/// before building; does nothing for a package without dependency images.
pub fn prepare_depends(client: &Client, store: &Store, pkg: &Package) -> Result<Vec<SavedImage>> {
    let images = dependency_images(pkg)?;
    if images.is_empty() {
        return Ok(Vec::new());
    }
    let di = &pkg.spec.depends.docker_images;
    let (target, dir) = match (di.target.is_empty(), di.target_dir.is_empty()) {
        (_, false) => (pkg.dir.join(&di.target_dir), true),
        (false, true) => (pkg.dir.join(&di.target), false),
        (true, true) => {
            return Err(PublishError::Depends {
                path: pkg.build_yml.clone(),
                reason: "depends.docker-images lists images but sets neither target nor target-dir; set one to say where they go".into(),
            });
        }
    };
    let _lease = store.lease().map_err(PublishError::store(
        "lock the store against garbage collection",
    ))?;
    let mut pulled = Vec::with_capacity(images.len());
    for r in &images {
        let complete = store
            .resolve(r)
            .ok()
            .flatten()
            .is_some_and(|d| store.image_blobs(&d).is_ok());
        if !complete {
            client
                .pull_image(store, r, &Platforms::All)
                .map_err(PublishError::registry(format!(
                    "pull {r} (depends.docker-images of {})",
                    pkg.name()
                )))?;
        }
        pulled.push(!complete);
    }
    let io = |path: &Path, what: &str| {
        let path = path.to_path_buf();
        let what = what.to_string();
        move |e: std::io::Error| PublishError::Depends {
            path,
            reason: format!("cannot {what}: {e}"),
        }
    };
    let export = |refs: &[Reference], path: &Path| {
        export_archive_to(store, refs, path)
            .map(|_| ())
            .map_err(PublishError::store(format!(
                "save {} into the build context",
                path.display()
            )))
    };
    if dir {
        // Emptied first, as LinuxKit does, so images dropped from the list do not linger.
        if let Err(e) = std::fs::remove_dir_all(&target)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(io(&target, "empty target-dir")(e));
        }
        std::fs::create_dir_all(&target).map_err(io(&target, "create target-dir"))?;
        let mut out = Vec::with_capacity(images.len());
        for (r, pulled) in images.into_iter().zip(pulled) {
            let path = target.join(archive_name(&r));
            export(std::slice::from_ref(&r), &path)?;
            out.push(SavedImage {
                reference: r,
                path,
                pulled,
            });
        }
        return Ok(out);
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent, "create the target's directory"))?;
    }
    export(&images, &target)?;
    Ok(images
        .into_iter()
        .zip(pulled)
        .map(|(reference, pulled)| SavedImage {
            reference,
            path: target.clone(),
            pulled,
        })
        .collect())
}

/// `BASENAME@sha256:HEX.tar`, LinuxKit's name for an image saved into `target-dir`.
fn archive_name(r: &Reference) -> String {
    let base = r.repository().rsplit('/').next().unwrap_or(r.repository());
    match r.digest() {
        Some(d) => format!("{base}@{d}.tar"),
        None => format!("{base}.tar"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_follow_linuxkit() {
        let r = Reference::parse(
            "docker.io/library/alpine:3.19@sha256:1111111111111111111111111111111111111111111111111111111111111111",
        )
        .unwrap();
        assert_eq!(
            archive_name(&r),
            "alpine@sha256:1111111111111111111111111111111111111111111111111111111111111111.tar"
        );
        let r = Reference::parse(
            "127.0.0.1:5000/a/b/tool@sha256:2222222222222222222222222222222222222222222222222222222222222222",
        )
        .unwrap();
        assert!(archive_name(&r).starts_with("tool@sha256:2222"));
    }
}
