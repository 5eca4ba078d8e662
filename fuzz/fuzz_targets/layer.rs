//! Layers are untrusted: applying any tar (plain, gzip or zstd) to a directory either works
//! or fails with an error, never panics, and never changes anything outside that directory,
//! whatever its names, symlinks, hard links and whiteouts say. The fuzzer applies each input
//! to `/tmp/oxkit-fuzz-layer/root` next to a sentinel directory that must stay as it was.
#![no_main]

use std::fs;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use oxkit_store::unpack::{DeviceMode, UnpackOptions, apply_layer};

const BASE: &str = "/tmp/oxkit-fuzz-layer";

fn sentinel_intact(base: &Path) -> bool {
    let outside = base.join("outside");
    let names: Vec<_> = match fs::read_dir(&outside) {
        Ok(d) => d.filter_map(|e| e.ok().map(|e| e.file_name())).collect(),
        Err(_) => return false,
    };
    names.len() == 1
        && fs::read(outside.join("marker")).is_ok_and(|b| b == b"keep")
        && fs::symlink_metadata(&outside).is_ok_and(|m| m.is_dir())
        && fs::read_dir(base).is_ok_and(|d| d.count() == 2)
}

fuzz_target!(|data: &[u8]| {
    let base = Path::new(BASE);
    let root = base.join("root");
    let _ = fs::remove_dir_all(base);
    fs::create_dir_all(base.join("outside")).unwrap();
    fs::write(base.join("outside/marker"), b"keep").unwrap();
    let opts = UnpackOptions {
        devices: DeviceMode::Skip,
        ownership: false,
        xattrs: false,
    };
    // Twice: the second pass meets what the first one left (symlinks, directories).
    let _ = apply_layer(data, &root, "sha256:fuzz", &opts);
    let _ = apply_layer(data, &root, "sha256:fuzz", &opts);
    assert!(
        sentinel_intact(base),
        "a layer changed something outside its root"
    );
});
