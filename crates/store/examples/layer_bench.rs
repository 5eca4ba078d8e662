//! Measures `layer_from_dir` on a tree: `cargo run --release -p oxkit-store --example
//! layer_bench -- DIR [gzip|zstd|none]`. Prints seconds, MB/s of uncompressed tar, and the
//! digests (so two runs can be compared for reproducibility). Used by `bench/layer.sh`.

use std::time::Instant;

use oxkit_store::Store;
use oxkit_store::layer::{Compression, LayerOptions, layer_from_dir};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or("usage: layer_bench DIR [gzip|zstd|none] [STORE]")?;
    let compression = match args.next().as_deref() {
        None | Some("gzip") => Compression::Gzip,
        Some("zstd") => Compression::Zstd,
        Some("none") => Compression::None,
        Some(other) => return Err(format!("unknown compression {other}").into()),
    };
    let store_dir = match args.next() {
        Some(s) => std::path::PathBuf::from(s),
        None => std::env::temp_dir().join("oxkit-layer-bench-store"),
    };
    let store = Store::open(&store_dir)?;
    let opts = LayerOptions {
        compression,
        ..Default::default()
    };
    let start = Instant::now();
    let info = layer_from_dir(&store, std::path::Path::new(&dir), &opts)?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{secs:.2}s {:.0} MB/s tar={} blob={} entries={} diff_id={} digest={}",
        info.uncompressed_size as f64 / secs / 1e6,
        info.uncompressed_size,
        info.descriptor.size,
        info.entries,
        info.diff_id,
        info.descriptor.digest
    );
    if std::env::var_os("KEEP").is_none() {
        std::fs::remove_file(store.blob_path(&info.descriptor.digest))?;
    }
    Ok(())
}
