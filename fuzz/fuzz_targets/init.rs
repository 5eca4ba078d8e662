//! What the in-image init reads at boot (it is PID 1: a panic there is a kernel panic): a
//! bundle's `config.json` and `runtime.json`, planned into the steps that start the
//! container, the kernel command line and mount options. An error or a plan, never a panic.
//! The input is a config, then a NUL, then a runtime file.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use oxkit_init::bundle::{Bundle, Kind, Loaded, plan};
use oxkit_init::plan::Host;
use oxkit_init::spec::{Runtime, Spec};
use oxkit_init::{cmdline, mountopt};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (config, runtime) = text.split_once('\0').unwrap_or((text, ""));
    let _ = cmdline::parse(text);
    let _ = mountopt::parse(&text.split(',').map(str::to_string).collect::<Vec<_>>());
    let Ok(spec) = Spec::parse(config) else {
        return;
    };
    let _ = spec.unsupported();
    let runtime = Runtime::parse(runtime).ok();
    let bundle = Bundle {
        kind: Kind::Service,
        name: "fuzz".to_string(),
        dir: PathBuf::from("/nonexistent/oxkit-fuzz/bundle"),
    };
    let host = Host {
        last_cap: 40,
        cgroup_root: PathBuf::from("/nonexistent/oxkit-fuzz/cgroup"),
        cgroup2: true,
        cgroup_v1_dirs: Vec::new(),
    };
    let _ = plan(&bundle, &Loaded { spec, runtime }, &host);
});
