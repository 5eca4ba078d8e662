//! Global flags and the settings resolved from them and the environment: the store location,
//! output mode, verbosity. Commands receive resolved values and never read the environment.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

/// Flags every command accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Local OCI image store [default: $XDG_CACHE_HOME/oxkit or ~/.cache/oxkit]
    #[arg(long, global = true, env = "OXKIT_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,

    /// Print machine-readable JSON instead of text, where a command reports data
    #[arg(long, global = true)]
    pub json: bool,

    /// Print only errors
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// More detail (-v: debug, -vv: trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl GlobalArgs {
    /// The store directory: `--store`, `OXKIT_STORE`, `$XDG_CACHE_HOME/oxkit`, `~/.cache/oxkit`.
    pub fn store_dir(&self) -> Result<PathBuf> {
        if let Some(dir) = &self.store {
            return Ok(dir.clone());
        }
        if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
            return Ok(PathBuf::from(xdg).join("oxkit"));
        }
        let home = std::env::var_os("HOME").filter(|v| !v.is_empty()).context(
            "cannot find the store: HOME is not set; pass --store DIR or set OXKIT_STORE",
        )?;
        Ok(PathBuf::from(home).join(".cache").join("oxkit"))
    }
}

/// Logs go to stderr; `OXKIT_LOG` (an env-filter) overrides `-v`.
pub fn init_logging(global: &GlobalArgs) {
    let default = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("OXKIT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}
