//! Pushes one file as a blob to a registry repository and prints the seconds it took; used by
//! `bench/push.sh` to compare the upload path against `curl -T`.
//!
//! Usage: push_blob HOST/REPO FILE [CHUNK_MIB]

use std::time::Instant;

use oxkit_registry::{BlobSource, BlobUpload, Client, ClientOptions};
use oxkit_spec::{Reference, Sha256Hasher};

/// User and system CPU seconds this process has used (from /proc/self/stat).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the command name.
    (f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0)) / 100.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, target, file, rest @ ..] = args.as_slice() else {
        return Err("usage: push_blob HOST/REPO FILE [CHUNK_MIB]".into());
    };
    let mut opts = ClientOptions::default();
    if let Some(mib) = rest.first() {
        opts.chunk_size = mib.parse::<usize>()? << 20;
    }
    let target = Reference::parse(target)?;
    // The digest is known to callers in real use (store blobs are content-addressed), so
    // hashing is not part of the timed upload.
    let mut h = Sha256Hasher::new();
    std::io::copy(&mut std::fs::File::open(file)?, &mut h)?;
    let digest = h.finish();
    let size = std::fs::metadata(file)?.len();
    let client = Client::new(opts);
    let cpu = cpu_secs();
    let start = Instant::now();
    let how = client.push_blob(
        &target,
        &BlobUpload {
            digest: digest.clone(),
            size,
            source: BlobSource::File(file.into()),
            mount_from: Vec::new(),
            check_exists: true,
        },
    )?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{how:?} {digest} {size} bytes in {secs:.3}s ({:.0} MB/s), {:.2}s CPU",
        size as f64 / secs / 1e6,
        cpu_secs() - cpu
    );
    println!("{secs:.3}");
    Ok(())
}
