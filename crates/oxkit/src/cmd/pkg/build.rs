//! `oxkit pkg build`: build packages into the local store, as `linuxkit pkg build` does but
//! with oxkit's own engine (`oxkit-builder`) instead of Docker/BuildKit. For each package:
//! skip it when its tag is complete in the store (unless `--force`), else build every
//! requested architecture, store `ORG/IMAGE:TAG-ARCH` for each and an index `ORG/IMAGE:TAG`.
//!
//! Here: flags become [`BuildOptions`] (SOURCE_DATE_EPOCH and `--build-arg NAME` values are
//! read from the environment here), base images missing from the store are pulled through
//! `oxkit-registry`, and build events become progress lines (a spinner on a terminal, plain
//! lines otherwise; RUN output under `-v` or when a step fails) and a summary.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use oxkit_builder::{
    BuildEvent, BuildOptions, Compression, EventSink, ImageSource, PackageBuilder, PackageReport,
    ServiceError, UrlFetcher, parse_build_arg_file,
};
use oxkit_registry::transfer::{self, Platforms};
use oxkit_sandbox::NamespaceSandbox;
use oxkit_source::Resolver;
use oxkit_spec::{Platform, Reference};
use oxkit_store::Store;
use serde::Serialize;

use super::PkgFlags;
use crate::cmd::login::{RegistryArgs, client};
use crate::output::Printer;
use crate::settings::GlobalArgs;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CompressionArg {
    Gzip,
    Zstd,
}

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Base images come from the store (`oxkit image import`, `oxkit cache pull`) or, \
when missing, from their registry. RUN steps run in Linux namespaces as root in the stage's root \
filesystem; other architectures run through binfmt_misc/QEMU (see `oxkit doctor`).\n\n\
--json prints an array of {name, dir, skipped, dryRun, index, arches: [{platform, name, digest, \
built, steps, cachedSteps, seconds}]}."
)]
pub struct BuildArgs {
    /// Package directories (each holding a build.yml)
    #[arg(required = true, value_name = "PATH")]
    pub(super) paths: Vec<PathBuf>,

    /// Platforms to build, comma-separated (e.g. linux/amd64,linux/arm64) [default: build.yml arches]
    #[arg(long, value_name = "PLATFORMS", value_delimiter = ',')]
    pub(super) platforms: Vec<String>,

    /// Rebuild even when the tag is already complete in the store
    #[arg(long)]
    pub(super) force: bool,

    /// Build argument NAME=VALUE (repeatable); NAME alone takes the value from the environment
    #[arg(long = "build-arg", value_name = "NAME=VALUE")]
    build_args: Vec<String>,

    /// File of NAME=VALUE build arguments, one per line (repeatable)
    #[arg(long = "build-arg-file", value_name = "FILE")]
    build_arg_files: Vec<PathBuf>,

    /// Layer compression
    #[arg(long, value_enum, default_value = "gzip")]
    compression: CompressionArg,

    /// Stage to build instead of the Dockerfile's last one
    #[arg(long, value_name = "STAGE")]
    target: Option<String>,

    /// Show what would be built, and build nothing
    #[arg(long)]
    pub(super) dry_run: bool,

    /// Accepted for LinuxKit compatibility and ignored: images go to the oxkit store
    #[arg(long)]
    docker: bool,

    /// Creation time and mtime clamp, in seconds since the epoch [default: 0]
    #[arg(long, env = "SOURCE_DATE_EPOCH", value_name = "SECONDS")]
    source_date_epoch: Option<i64>,

    /// After building, push to the registry (what `oxkit pkg push` does; see its help)
    #[arg(long)]
    pub(super) push: bool,

    /// Publishing flags, used with --push (`pkg push`)
    #[command(flatten)]
    pub(super) publish: super::push::PublishArgs,

    /// Set by `pkg push`, which builds through here and prints its own results.
    #[arg(skip)]
    pub(super) for_push: bool,

    #[command(flatten)]
    pub(super) registry: RegistryArgs,
}

pub fn run(
    global: &GlobalArgs,
    printer: &Printer,
    flags: &PkgFlags,
    args: BuildArgs,
) -> Result<()> {
    if args.push {
        return super::push::run(global, printer, flags, args);
    }
    if args.docker {
        printer.status(
            "note: --docker is ignored: oxkit keeps images in its own store; use `oxkit cache export` to hand them to Docker",
        );
    }
    let platforms = if args.platforms.is_empty() {
        None
    } else {
        Some(
            args.platforms
                .iter()
                .map(|p| {
                    p.parse::<Platform>()
                        .with_context(|| "--platforms".to_string())
                })
                .collect::<Result<Vec<_>>>()?,
        )
    };
    let mut build_args = Vec::new();
    for file in &args.build_arg_files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read --build-arg-file {}", file.display()))?;
        build_args.extend(
            parse_build_arg_file(&text, &file.display().to_string()).map_err(anyhow::Error::msg)?,
        );
    }
    for a in &args.build_args {
        match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => build_args.push((k.to_string(), v.to_string())),
            Some(_) => bail!("--build-arg {a:?} has no name; write NAME=VALUE"),
            // Docker's rule: a bare name takes its value from the environment, if set.
            None => {
                if let Ok(v) = std::env::var(a) {
                    build_args.push((a.clone(), v));
                }
            }
        }
    }
    let overrides = flags.build_overrides();
    let opts = BuildOptions {
        platforms,
        force: args.force,
        build_args,
        network: overrides.network,
        cache: overrides.cache,
        compression: match args.compression {
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::Zstd => Compression::Zstd,
        },
        epoch: args.source_date_epoch.unwrap_or(0),
        dry_run: args.dry_run,
        target: args.target.clone(),
    };

    let mut resolver = Resolver::new(flags.resolve_options()?);
    let mut packages = Vec::with_capacity(args.paths.len());
    for path in &args.paths {
        packages.push(resolver.resolve(path)?);
    }
    let store = Store::open(global.store_dir()?)?;
    let sandbox = NamespaceSandbox::new();
    let images = RegistryImages {
        registry: args.registry.clone(),
    };
    let downloads = UrlDownloads {
        registry: args.registry.clone(),
    };
    let progress = Progress::new(printer, global.verbose > 0);
    let builder = PackageBuilder {
        store: &store,
        sandbox: &sandbox,
        images: Some(&images),
        urls: Some(&downloads),
        events: &progress,
    };
    let mut reports = Vec::new();
    let mut depends_client = None;
    for pkg in &packages {
        let t0 = Instant::now();
        // LinuxKit pulls build.yml's depends.docker-images into the context before building.
        if !args.dry_run && !oxkit_publish::depends::dependency_images(pkg)?.is_empty() {
            if depends_client.is_none() {
                depends_client = Some(crate::cmd::login::client(&args.registry, None)?);
            }
            if let Some(client) = &depends_client {
                oxkit_publish::depends::prepare_depends(client, &store, pkg)
                    .with_context(|| format!("cannot fetch the dependencies of {}", pkg.name()))?;
            }
        }
        let result = builder.build(pkg, &opts);
        progress.finish();
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                progress.dump_output_on_failure();
                return Err(anyhow::Error::new(e).context(format!("cannot build {}", pkg.name())));
            }
        };
        summarize(printer, &report, t0.elapsed().as_secs_f64());
        if !args.for_push {
            printer.data(&report.name);
        }
        reports.push(report);
    }
    if !args.for_push {
        printer.json(&reports.iter().map(JsonReport::from).collect::<Vec<_>>());
    }
    Ok(())
}

fn summarize(printer: &Printer, r: &PackageReport, secs: f64) {
    let arches: Vec<&str> = r.arches.iter().map(|a| a.platform.arch()).collect();
    if r.dry_run {
        let todo: Vec<&str> = r
            .arches
            .iter()
            .filter(|a| a.digest.is_none())
            .map(|a| a.platform.arch())
            .collect();
        if todo.is_empty() {
            printer.status(format!("{}: already in the store, would skip", r.name));
        } else {
            printer.status(format!("{}: would build for {}", r.name, todo.join(", ")));
        }
    } else if r.skipped {
        printer.status(format!(
            "Skipped {}: already in the store for {} (use --force to rebuild)",
            r.name,
            arches.join(", ")
        ));
    } else {
        let built: Vec<String> = r
            .arches
            .iter()
            .filter(|a| a.built)
            .map(|a| {
                format!(
                    "{} ({}/{} steps cached)",
                    a.platform.arch(),
                    a.cached_steps,
                    a.steps
                )
            })
            .collect();
        printer.status(format!(
            "Built {} for {} in {secs:.1}s",
            r.name,
            built.join(", ")
        ));
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonReport {
    name: String,
    dir: PathBuf,
    skipped: bool,
    dry_run: bool,
    index: Option<String>,
    arches: Vec<JsonArch>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonArch {
    platform: String,
    name: String,
    digest: Option<String>,
    built: bool,
    steps: usize,
    cached_steps: usize,
    seconds: f64,
}

impl From<&PackageReport> for JsonReport {
    fn from(r: &PackageReport) -> Self {
        Self {
            name: r.name.clone(),
            dir: r.dir.clone(),
            skipped: r.skipped,
            dry_run: r.dry_run,
            index: r.index.as_ref().map(ToString::to_string),
            arches: r
                .arches
                .iter()
                .map(|a| JsonArch {
                    platform: a.platform.to_string(),
                    name: a.name.clone(),
                    digest: a.digest.as_ref().map(ToString::to_string),
                    built: a.built,
                    steps: a.steps,
                    cached_steps: a.cached_steps,
                    seconds: a.duration.as_secs_f64(),
                })
                .collect(),
        }
    }
}

/// Base images missing from the store are pulled from their registry, one platform at a time.
struct RegistryImages {
    registry: RegistryArgs,
}

impl ImageSource for RegistryImages {
    fn ensure(
        &self,
        store: &Store,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<(), ServiceError> {
        let client = client(&self.registry, None).map_err(|e| -> ServiceError { e.into() })?;
        let reference = if reference.tag().is_none() && reference.digest().is_none() {
            reference.with_tag("latest")?
        } else {
            reference.clone()
        };
        transfer::pull(
            &client,
            store,
            &reference,
            &Platforms::Only(vec![platform.clone()]),
        )?;
        Ok(())
    }
}

/// `ADD https://...` sources, downloaded with the registry client's TLS setup (system roots
/// plus `certs.d/HOST/ca.crt`) and retries. The builder only asks when the package allows
/// the network.
struct UrlDownloads {
    registry: RegistryArgs,
}

impl UrlFetcher for UrlDownloads {
    fn fetch(&self, url: &str, out: &mut dyn std::io::Write) -> Result<(), ServiceError> {
        let client = client(&self.registry, None).map_err(|e| -> ServiceError { e.into() })?;
        client.download(url, out)?;
        Ok(())
    }
}

/// Build events on stderr.
struct Progress<'p> {
    printer: &'p Printer,
    verbose: bool,
    bar: Option<ProgressBar>,
    state: Mutex<ProgressState>,
}

#[derive(Default)]
struct ProgressState {
    /// The step running: its label.
    current: String,
    /// Partial output line not yet printed.
    partial: Vec<u8>,
    /// Recent output, shown when a step fails and `-v` did not show it already.
    recent: VecDeque<String>,
}

impl<'p> Progress<'p> {
    fn new(printer: &'p Printer, verbose: bool) -> Self {
        let bar = printer.is_interactive().then(|| {
            let b = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}") {
                b.set_style(style);
            }
            b.enable_steady_tick(std::time::Duration::from_millis(120));
            b
        });
        Self {
            printer,
            verbose,
            bar,
            state: Mutex::new(ProgressState::default()),
        }
    }

    fn line(&self, text: String) {
        match &self.bar {
            Some(b) => b.suspend(|| self.printer.status(&text)),
            None => self.printer.status(&text),
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.set_message("");
        }
    }

    /// Output is kept in the error message already (its tail); nothing else to show.
    fn dump_output_on_failure(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ProgressState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Progress<'_> {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl EventSink for Progress<'_> {
    fn event(&self, event: BuildEvent) {
        match event {
            BuildEvent::PackageSkipped { .. } => {}
            BuildEvent::PackageStart { name, platforms } => {
                let arches: Vec<&str> = platforms.iter().map(Platform::arch).collect();
                self.line(format!("Building {name} for {}", arches.join(", ")));
            }
            BuildEvent::ArchPresent { name, platform } => {
                self.line(format!("{name}-{}: already in the store", platform.arch()));
            }
            BuildEvent::StepStart {
                platform,
                index,
                total,
                text,
                ..
            } => {
                let short: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
                let short = if short.chars().count() > 100 {
                    format!("{}...", short.chars().take(97).collect::<String>())
                } else {
                    short
                };
                let label = format!("[{} {index}/{total}] {short}", platform.arch());
                if let Some(b) = &self.bar {
                    b.set_message(label.clone());
                }
                if self.verbose && self.bar.is_none() {
                    self.line(label.clone());
                }
                let mut st = self.state();
                st.current = label;
                st.recent.clear();
            }
            BuildEvent::StepDone {
                cached, duration, ..
            } => {
                let label = {
                    let mut st = self.state();
                    if !st.partial.is_empty() && self.verbose {
                        let rest = String::from_utf8_lossy(&st.partial).into_owned();
                        st.partial.clear();
                        drop(st);
                        self.line(format!("  | {rest}"));
                        st = self.state();
                    }
                    st.current.clone()
                };
                if cached {
                    self.line(format!("{label}  CACHED"));
                } else {
                    self.line(format!("{label}  {:.2}s", duration.as_secs_f64()));
                }
            }
            BuildEvent::Output { bytes, .. } => {
                let mut lines = Vec::new();
                {
                    let mut st = self.state();
                    st.partial.extend_from_slice(&bytes);
                    while let Some(i) = st.partial.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = st.partial.drain(..=i).collect();
                        let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                        st.recent.push_back(text.clone());
                        if st.recent.len() > 20 {
                            st.recent.pop_front();
                        }
                        lines.push(text);
                    }
                }
                if self.verbose {
                    for l in lines {
                        self.line(format!("  | {l}"));
                    }
                }
            }
            BuildEvent::Warning { message } => self.printer.warn(message),
            BuildEvent::ArchDone { .. } => {}
        }
    }
}
