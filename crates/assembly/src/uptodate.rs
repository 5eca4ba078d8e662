//! Skipping a build whose outputs are already there: a record in the store's side index,
//! keyed by the output files' location, holds a digest of everything the outputs depend on
//! (the merged configuration, each image's platform manifest digest, what each `format: oci`
//! volume holds, the contents of `files` sources, the formats, platform and epoch, this
//! crate's version) and the identity of the files written (size, mtime, inode). When both
//! still match, the outputs are those the same inputs would produce again, byte for byte.
//!
//! The record is only a shortcut: a missing, stale or unreadable one means "build".

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use oxkit_spec::{Platform, Sha256Hasher};
use oxkit_store::{CacheEntry, Store};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::Result;
use crate::images::ResolvedImages;
use crate::output::{OutputPlan, TarDestination, Written};

const NAMESPACE: &str = "assembly-outputs";
/// Bump when the same inputs would give different bytes.
const LAYOUT_VERSION: &str = "1";

#[derive(Serialize, Deserialize, PartialEq, Eq, Debug)]
struct FileId {
    path: PathBuf,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    ino: u64,
    dev: u64,
}

#[derive(Serialize, Deserialize, Debug)]
struct Record {
    inputs: String,
    outputs: Vec<FileId>,
}

fn file_id(path: &Path) -> Option<FileId> {
    let md = std::fs::metadata(path).ok()?;
    Some(FileId {
        path: path.to_path_buf(),
        size: md.len(),
        mtime: md.mtime(),
        mtime_nsec: md.mtime_nsec(),
        ino: md.ino(),
        dev: md.dev(),
    })
}

/// What a file contributes to the inputs digest: `content` and its digest, or why there is none
/// (`unreadable`, `absent`), which the build itself will then report.
fn file_content(path: &Path) -> (&'static str, String) {
    match std::fs::File::open(path) {
        Ok(mut file) => {
            let mut fh = Sha256Hasher::new();
            match std::io::copy(&mut file, &mut fh) {
                Ok(_) => ("content", fh.finish().as_str().to_string()),
                Err(_) => ("unreadable", String::new()),
            }
        }
        Err(_) => ("absent", String::new()),
    }
}

/// A digest of everything the outputs of `plan` depend on.
pub fn inputs_digest(
    config: &Config,
    images: &ResolvedImages,
    plan: &OutputPlan,
    platform: &Platform,
    epoch: i64,
    home: Option<&Path>,
) -> Result<String> {
    let mut h = Sha256Hasher::new();
    let mut put = |label: &str, value: &[u8]| {
        h.update(label.as_bytes());
        h.update(&(value.len() as u64).to_le_bytes());
        h.update(value);
    };
    put("version", env!("CARGO_PKG_VERSION").as_bytes());
    put("layout", LAYOUT_VERSION.as_bytes());
    put("platform", platform.to_string().as_bytes());
    put("epoch", &epoch.to_le_bytes());
    for f in &plan.formats {
        put("format", f.name().as_bytes());
    }
    if plan.formats.iter().any(|f| f.is_uefi())
        && let Some(stub) = &plan.efi_stub
    {
        // The stub is part of the disk image: another stub, another image.
        put("efi-stub", stub.as_os_str().as_encoded_bytes());
        let (label, digest) = file_content(stub);
        put(label, digest.as_bytes());
    }
    if plan.formats.iter().any(|f| f.is_bios())
        && let Some(isolinux) = &plan.isolinux
    {
        // ISOLINUX is on the CD: other files, another image.
        for f in isolinux.files() {
            put("isolinux", f.as_os_str().as_encoded_bytes());
            let (label, digest) = file_content(f);
            put(label, digest.as_bytes());
        }
    }
    put("yaml", config.to_yaml_string().as_bytes());
    for (u, img) in images.distinct() {
        put("image", u.reference.canonical().as_bytes());
        put("manifest", img.manifest.digest.as_str().as_bytes());
    }
    for (u, l) in images.layouts() {
        put("layout", u.what.as_bytes());
        put("image", u.reference.canonical().as_bytes());
        put("top", l.top.digest.as_str().as_bytes());
        for d in &l.chosen {
            put("chosen", d.digest.as_str().as_bytes());
        }
    }
    for f in &config.yaml.files {
        if f.source.is_empty() {
            continue;
        }
        let path = config.resolve_path(&f.loc, &f.source, home);
        put("source", path.as_os_str().as_encoded_bytes());
        let (label, digest) = file_content(&path);
        put(label, digest.as_bytes());
    }
    Ok(h.finish().hex().to_string())
}

/// The side-index key for the outputs of `plan`; `None` for outputs that are not files.
fn record_key(plan: &OutputPlan) -> Option<String> {
    if plan.tar == Some(TarDestination::Stdout) {
        return None;
    }
    let dir = std::fs::canonicalize(plan.dir()).ok()?;
    let mut h = Sha256Hasher::new();
    h.update(dir.as_os_str().as_encoded_bytes());
    h.update(b"\0");
    h.update(plan.base.file_name()?.as_encoded_bytes());
    if let Some(TarDestination::File(f)) = &plan.tar {
        h.update(b"\0");
        h.update(f.file_name()?.as_encoded_bytes());
    }
    for f in &plan.formats {
        h.update(b"\0");
        h.update(f.name().as_bytes());
    }
    Some(h.finish().hex().to_string())
}

/// The files a previous build of the same inputs wrote, when they are all still untouched.
pub fn check(store: &Store, plan: &OutputPlan, inputs: &str) -> Option<Written> {
    let key = record_key(plan)?;
    let entry = store.cache_get(NAMESPACE, &key).ok()??;
    let record: Record = serde_json::from_value(entry.data).ok()?;
    if record.inputs != inputs || record.outputs.is_empty() {
        return None;
    }
    for f in &record.outputs {
        if file_id(&f.path).as_ref() != Some(f) {
            return None;
        }
    }
    Some(Written {
        files: record.outputs.into_iter().map(|f| f.path).collect(),
    })
}

/// Remembers what this build wrote. Failing to record only costs the next build its shortcut.
pub fn record(store: &Store, plan: &OutputPlan, inputs: &str, written: &Written) {
    let Some(key) = record_key(plan) else {
        return;
    };
    let outputs: Option<Vec<FileId>> = written
        .files
        .iter()
        .map(|p| file_id(&std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())))
        .collect();
    let Some(outputs) = outputs else {
        return;
    };
    let record = Record {
        inputs: inputs.to_string(),
        outputs,
    };
    let Ok(data) = serde_json::to_value(&record) else {
        return;
    };
    if let Err(e) = store.cache_put(
        NAMESPACE,
        &key,
        &CacheEntry {
            digests: Vec::new(),
            data,
        },
    ) {
        tracing::debug!("cannot record the build's outputs: {e}");
    }
}
