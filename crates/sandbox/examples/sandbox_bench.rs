//! Overhead of one sandboxed RUN step: N runs of `/bin/true` in a root filesystem through
//! `NamespaceSandbox`, against the same command spawned directly (the command's own cost) and
//! through util-linux `unshare ... chroot` (the peer). Run by `bench/sandbox.sh`.
//!
//!     sandbox_bench ROOTFS [RUNS]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oxkit_sandbox::{NamespaceSandbox, Network, RunSpec, Sandbox};

fn stats(label: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let n = samples.len().max(1);
    let mean = samples.iter().sum::<Duration>() / u32::try_from(n).unwrap_or(1);
    let pick = |q: f64| {
        samples
            .get(((n as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{label:<34} mean {:>7.2} ms  median {:>7.2} ms  p95 {:>7.2} ms  min {:>7.2} ms",
        ms(mean),
        ms(pick(0.5)),
        ms(pick(0.95)),
        ms(pick(0.0))
    );
    pick(0.5)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn time(runs: usize, mut f: impl FnMut()) -> Vec<Duration> {
    f(); // warm-up
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(rootfs) = args.next().map(PathBuf::from) else {
        eprintln!("usage: sandbox_bench ROOTFS [RUNS]");
        std::process::exit(2);
    };
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let sandbox = NamespaceSandbox::new();

    let direct = stats(
        "direct spawn (the command itself)",
        time(runs, || {
            let status = Command::new(rootfs.join("bin/true"))
                .status()
                .expect("spawn");
            assert!(status.success());
        }),
    );
    let mut results = Vec::new();
    for (label, network) in [
        ("oxkit sandbox (no network)", Network::None),
        ("oxkit sandbox (host network)", Network::Host),
    ] {
        let mut spec = RunSpec::new(&rootfs, vec!["/bin/true".into()]);
        spec.network = network;
        let median = stats(
            label,
            time(runs, || {
                let outcome = sandbox.run(&spec, &mut |_| {}).expect("run");
                assert!(outcome.status.success());
            }),
        );
        results.push((label, median));
    }
    let peer = stats(
        "unshare -mpfuin chroot (peer)",
        time(runs, || {
            let status = Command::new("unshare")
                .args([
                    "--mount", "--pid", "--fork", "--uts", "--ipc", "--net", "chroot",
                ])
                .arg(&rootfs)
                .arg("/bin/true")
                .stdout(Stdio::null())
                .status()
                .expect("unshare");
            assert!(status.success());
        }),
    );
    println!();
    for (label, median) in results {
        println!(
            "{label}: overhead {:.2} ms per RUN beyond the command (target < 20 ms); {:.2}x unshare+chroot",
            ms(median.saturating_sub(direct)),
            median.as_secs_f64() / peer.as_secs_f64()
        );
    }
}
