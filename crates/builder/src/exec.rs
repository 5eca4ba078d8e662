//! Executing a parsed Dockerfile for one platform: the global ARG scope, the stage graph, each
//! needed stage's instructions in order (config-only instructions change the config, COPY,
//! ADD, WORKDIR and RUN go through the step cache and produce layers), and the final image.
//!
//! Steps are numbered over the stages being built and reported to the [`EventSink`]. A failing
//! step becomes an error at its Dockerfile line; the scratch directory of the build is removed
//! whatever happens.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use oxkit_sandbox::Sandbox;
use oxkit_spec::Platform;
use oxkit_spec::dockerfile::{CommandLine, Dockerfile, Instruction, InstructionKind, Stage};
use oxkit_store::Store;
use oxkit_store::layer::LayerOptions;
use oxkit_store::oci::{ContainerConfig, Descriptor, History, ImageConfig, rfc3339_utc};

use crate::args::{self, BuildArgs, Vars};
use crate::cache;
use crate::copystep::CopyLike;
use crate::diff;
use crate::error::{BuildError, StepError};
use crate::fsutil::{self, ScratchDir};
use crate::graph::{self, Base};
use crate::image::{self, ResolvedImage};
use crate::rootfs::{LayerRef, Rootfs};
use crate::tree::ContextTree;
use crate::{BuildEvent, EventSink, ImageSource, UrlFetcher};

/// Docker's default PATH for Linux.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The services a build uses.
#[derive(Clone, Copy)]
pub struct DockerfileBuild<'a> {
    pub store: &'a Store,
    pub sandbox: &'a dyn Sandbox,
    pub images: Option<&'a dyn ImageSource>,
    pub urls: Option<&'a dyn UrlFetcher>,
    pub events: &'a dyn EventSink,
}

/// What a build is asked to do beyond the Dockerfile.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// RUN may use the host network (package `network: true`).
    pub(crate) network: bool,
    pub(crate) cache: bool,
    pub(crate) layer: LayerOptions,
    pub(crate) build_args: BTreeMap<String, String>,
    /// Build args the package adds by itself (not worth a warning when unused).
    pub(crate) implicit_args: std::collections::BTreeSet<String>,
    /// Labels added to the final image (LinuxKit's), over the Dockerfile's.
    pub(crate) labels: BTreeMap<String, String>,
    /// Stage to build (default: the last).
    pub(crate) target: Option<String>,
}

/// A finished image (not yet tagged).
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The manifest, with its platform.
    pub manifest: Descriptor,
    pub config: ImageConfig,
    /// Steps executed and steps that came from the cache.
    pub steps: usize,
    pub cached: usize,
}

/// One stage in progress or done.
#[derive(Debug)]
pub(crate) struct StageState {
    pub(crate) platform: Platform,
    pub(crate) layers: Vec<LayerRef>,
    pub(crate) config: ContainerConfig,
    pub(crate) author: String,
    pub(crate) history: Vec<History>,
    /// The cache key naming the file system state.
    pub(crate) key: String,
    pub(crate) rootfs: Option<Rootfs>,
    pub(crate) args: Vars,
    cmd_set: bool,
}

impl StageState {
    fn from_image(img: &ResolvedImage, platform: Platform) -> Self {
        Self {
            platform,
            layers: img.layers.clone(),
            config: img.config.config.clone(),
            author: img.config.author.clone(),
            history: img.config.history.clone(),
            key: cache::base_key(Some(&img.manifest)),
            rootfs: None,
            args: Vars::default(),
            cmd_set: false,
        }
    }

    fn scratch(platform: Platform) -> Self {
        Self {
            platform,
            layers: Vec::new(),
            config: ContainerConfig::default(),
            author: String::new(),
            history: Vec::new(),
            key: cache::base_key(None),
            rootfs: None,
            args: Vars::default(),
            cmd_set: false,
        }
    }

    /// A new stage built on this one's result.
    fn derive(&self, platform: Platform) -> Self {
        Self {
            platform,
            layers: self.layers.clone(),
            config: self.config.clone(),
            author: self.author.clone(),
            history: self.history.clone(),
            key: self.key.clone(),
            rootfs: None,
            args: Vars::default(),
            cmd_set: false,
        }
    }

    fn env_get(&self, name: &str) -> Option<String> {
        self.config.env.iter().rev().find_map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    /// ENV wins over ARG.
    fn lookup(&self, name: &str) -> Option<String> {
        self.env_get(name)
            .or_else(|| self.args.get(name).map(str::to_string))
    }

    fn set_env(&mut self, key: &str, value: &str) {
        let entry = format!("{key}={value}");
        match self
            .config
            .env
            .iter_mut()
            .find(|kv| kv.split_once('=').map(|(k, _)| k) == Some(key) || kv.as_str() == key)
        {
            Some(slot) => *slot = entry,
            None => self.config.env.push(entry),
        }
    }

    pub(crate) fn workdir(&self) -> String {
        if self.config.working_dir.is_empty() {
            "/".to_string()
        } else {
            self.config.working_dir.clone()
        }
    }

    fn shell(&self) -> Vec<String> {
        if self.config.shell.is_empty() {
            vec!["/bin/sh".to_string(), "-c".to_string()]
        } else {
            self.config.shell.clone()
        }
    }
}

/// State of one build (one platform).
pub(crate) struct Exec<'a> {
    pub(crate) svc: DockerfileBuild<'a>,
    pub(crate) df: &'a Dockerfile,
    pub(crate) file: String,
    pub(crate) context: &'a ContextTree,
    pub(crate) platform: Platform,
    pub(crate) settings: &'a Settings,
    pub(crate) work: ScratchDir,
    pub(crate) build_args: BuildArgs,
    pub(crate) global: Vars,
    /// Finished stages, by index.
    pub(crate) done: Vec<Option<StageState>>,
    /// Images used by `COPY --from` / mounts, materialised once: (key, root).
    pub(crate) image_roots: HashMap<String, (String, Rootfs)>,
    /// How many later stages still use each stage (to hand a root filesystem over).
    consumers: Vec<usize>,
    pub(crate) step: usize,
    total: usize,
    pub(crate) cached: usize,
}

/// Where a step happens, for messages.
fn at(file: &str, line: usize) -> impl Fn(StepError) -> BuildError + '_ {
    move |e| BuildError::Instruction {
        file: file.to_string(),
        line,
        message: e.0,
    }
}

impl<'a> DockerfileBuild<'a> {
    /// Builds `df` for `platform`; returns the final image (written to the store, not tagged).
    /// The caller holds a store lease.
    pub(crate) fn build(
        &self,
        df: &'a Dockerfile,
        file: &str,
        context: &'a ContextTree,
        platform: &Platform,
        settings: &'a Settings,
    ) -> Result<BuiltImage, BuildError> {
        let work_parent = self.store.root().join("oxkit").join("tmp");
        let work = ScratchDir::new_in(&work_parent, "build-")
            .map_err(BuildError::io("create a build directory in", &work_parent))?;
        let build_args = BuildArgs::new(settings.build_args.clone());
        let auto = args::platform_args(platform, &Platform::host());
        let global = args::global_scope(&df.global_args, &build_args, &auto, df.escape())
            .map_err(|(line, e)| at(file, line)(StepError::from(e)))?;
        let mut exec = Exec {
            svc: *self,
            df,
            file: file.to_string(),
            context,
            platform: platform.clone(),
            settings,
            work,
            build_args,
            global,
            done: (0..df.stages.len()).map(|_| None).collect(),
            image_roots: HashMap::new(),
            consumers: vec![0; df.stages.len()],
            step: 0,
            total: 0,
            cached: 0,
        };
        exec.run()
    }
}

impl Exec<'_> {
    fn run(&mut self) -> Result<BuiltImage, BuildError> {
        let df = self.df;
        let nodes = graph::build_graph(df, &self.global)
            .map_err(|(line, m)| at(&self.file, line)(StepError(m)))?;
        let target = match &self.settings.target {
            None => df.stages.len() - 1,
            Some(t) => df.stage(t).map(|(i, _)| i).ok_or_else(|| {
                BuildError::Package(format!(
                    "{}: no stage named {t:?}; stages are: {}",
                    self.file,
                    df.stages
                        .iter()
                        .filter_map(|s| s.name.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?,
        };
        let order = graph::build_order(df, &nodes, target)
            .map_err(|(line, m)| at(&self.file, line)(StepError(m)))?;
        for &i in &order {
            for (dep, _) in &nodes[i].deps {
                self.consumers[*dep] += 1;
            }
        }
        self.total = order.iter().map(|&i| df.stages[i].instructions.len()).sum();
        for &i in &order {
            let st = self.build_stage(i, &nodes[i].base)?;
            self.done[i] = Some(st);
        }
        let mut unused = self.build_args.unused();
        unused.retain(|k| !self.settings.implicit_args.contains(k));
        if !unused.is_empty() {
            self.svc.events.event(BuildEvent::Warning {
                message: format!(
                    "build arguments not used by any stage built: {}",
                    unused.join(", ")
                ),
            });
        }
        let st = self.done[target]
            .take()
            .ok_or_else(|| BuildError::Package("the target stage was not built".into()))?;
        self.commit(st)
    }

    fn commit(&mut self, st: StageState) -> Result<BuiltImage, BuildError> {
        let mut config = ContainerConfig {
            ..st.config.clone()
        };
        for (k, v) in &self.settings.labels {
            config.labels.insert(k.clone(), v.clone());
        }
        let image = ImageConfig {
            author: st.author.clone(),
            config,
            history: st.history.clone(),
            ..ImageConfig::default()
        };
        let (manifest, config) = image::commit(
            self.svc.store,
            image,
            &st.layers,
            &self.platform,
            self.settings.layer.epoch,
        )
        .map_err(|e| BuildError::Package(e.0))?;
        Ok(BuiltImage {
            manifest,
            config,
            steps: self.total,
            cached: self.cached,
        })
    }

    fn build_stage(&mut self, index: usize, base: &Base) -> Result<StageState, BuildError> {
        let df = self.df;
        let stage = &df.stages[index];
        let file = self.file.clone();
        let lookup = |n: &str| self.global.get(n).map(str::to_string);
        let platform = match stage
            .expand_platform(&lookup, df.escape())
            .map_err(|e| at(&file, stage.line)(e.into()))?
        {
            None => self.platform.clone(),
            Some(p) => p
                .parse::<Platform>()
                .map_err(|e| at(&file, stage.line)(StepError(format!("FROM --platform: {e}"))))?,
        };
        let mut st = match base {
            Base::Scratch => StageState::scratch(platform),
            Base::Stage(j) => {
                let parent = self.done[*j].as_mut().ok_or_else(|| {
                    at(&file, stage.line)(StepError::new("the base stage was not built"))
                })?;
                let mut st = parent.derive(platform);
                self.consumers[*j] = self.consumers[*j].saturating_sub(1);
                if self.consumers[*j] == 0 {
                    // Nobody else needs the parent's tree: continue in it.
                    st.rootfs = parent.rootfs.take();
                }
                st
            }
            Base::Image(text) => {
                let img = image::resolve(self.svc.store, self.svc.images, text, &platform)
                    .map_err(at(&file, stage.line))?;
                StageState::from_image(&img, platform)
            }
        };
        if matches!(base, Base::Scratch | Base::Image(_)) && st.env_get("PATH").is_none() {
            // BuildKit and buildah give every image a PATH when its base has none.
            st.config.env.insert(0, format!("PATH={DEFAULT_PATH}"));
        }
        let stage_name = stage
            .name
            .clone()
            .unwrap_or_else(|| format!("stage-{index}"));
        for inst in &stage.instructions {
            self.step += 1;
            self.svc.events.event(BuildEvent::StepStart {
                platform: self.platform.clone(),
                stage: stage_name.clone(),
                index: self.step,
                total: self.total,
                line: inst.line,
                // ADD URLs may carry credentials or signed queries.
                text: oxkit_spec::url::redact_in(&inst.original),
            });
            let t0 = Instant::now();
            let cached = self.instruction(index, stage, &mut st, inst)?;
            if cached {
                self.cached += 1;
            }
            self.svc.events.event(BuildEvent::StepDone {
                platform: self.platform.clone(),
                index: self.step,
                cached,
                duration: t0.elapsed(),
            });
        }
        Ok(st)
    }

    /// One instruction; whether its result came from the cache.
    fn instruction(
        &mut self,
        stage_index: usize,
        stage: &Stage,
        st: &mut StageState,
        inst: &Instruction,
    ) -> Result<bool, BuildError> {
        let file = self.file.clone();
        let fail = at(&file, inst.line);
        let escape = self.df.escape();
        let kind = {
            let lookup = |n: &str| st.lookup(n);
            match &inst.kind {
                // ARG defaults are expanded by the builder, only when no build arg overrides.
                InstructionKind::Arg { .. } => inst.kind.clone(),
                k => k.expand(&lookup, escape).map_err(|e| fail(e.into()))?,
            }
        };
        let _ = stage;
        let history = |st: &mut StageState, text: String, empty: bool| {
            st.history.push(History {
                created: rfc3339_utc(self.settings.layer.epoch),
                // Published with the image: ADD URLs lose credentials and queries.
                created_by: oxkit_spec::url::redact_in(&text),
                comment: "buildkit.dockerfile.v0".to_string(),
                empty_layer: empty,
                ..History::default()
            });
        };
        let written = &inst.original;
        match kind {
            InstructionKind::Arg { args } => {
                let mut shown = Vec::new();
                for def in &args {
                    let value = {
                        let lookup = |n: &str| st.lookup(n);
                        args::stage_arg_value(def, &self.build_args, &self.global, &lookup, escape)
                            .map_err(|e| at(&file, inst.line)(e.into()))?
                    };
                    match value {
                        Some(v) => {
                            shown.push(format!("{}={v}", def.name));
                            st.args.set(&def.name, v);
                        }
                        None => shown.push(def.name.clone()),
                    }
                }
                history(st, format!("ARG {}", shown.join(" ")), true);
            }
            InstructionKind::Env { vars } => {
                for kv in &vars {
                    st.set_env(&kv.key, &kv.value);
                }
                let text: Vec<String> = vars
                    .iter()
                    .map(|kv| format!("{}={}", kv.key, kv.value))
                    .collect();
                history(st, format!("ENV {}", text.join(" ")), true);
            }
            InstructionKind::Label { labels } => {
                for kv in &labels {
                    st.config.labels.insert(kv.key.clone(), kv.value.clone());
                }
                let text: Vec<String> = labels
                    .iter()
                    .map(|kv| format!("{}={}", kv.key, kv.value))
                    .collect();
                history(st, format!("LABEL {}", text.join(" ")), true);
            }
            InstructionKind::Maintainer { name } => {
                st.author = name.clone();
                history(st, format!("MAINTAINER {name}"), true);
            }
            InstructionKind::User { user } => {
                st.config.user = user.clone();
                history(st, format!("USER {user}"), true);
            }
            InstructionKind::Cmd { command } => {
                st.config.cmd = command_argv(&command, st);
                st.cmd_set = true;
                history(st, format!("CMD {}", json_list(&st.config.cmd)), true);
            }
            InstructionKind::Entrypoint { command } => {
                st.config.entrypoint = command_argv(&command, st);
                if !st.cmd_set {
                    st.config.cmd.clear();
                }
                history(
                    st,
                    format!("ENTRYPOINT {}", json_list(&st.config.entrypoint)),
                    true,
                );
            }
            InstructionKind::Expose { ports } => {
                for p in &ports {
                    for key in image::exposed_ports(p).map_err(|m| fail(StepError(m)))? {
                        st.config.exposed_ports.insert(key);
                    }
                }
                history(st, format!("EXPOSE map[{}]", ports.join(" ")), true);
            }
            InstructionKind::Volume { paths } => {
                for p in &paths {
                    st.config.volumes.insert(p.clone());
                }
                history(st, format!("VOLUME {}", json_list(&paths)), true);
            }
            InstructionKind::Shell { args } => {
                st.config.shell = args.clone();
                history(st, format!("SHELL {}", json_list(&args)), true);
            }
            InstructionKind::StopSignal { signal } => {
                st.config.stop_signal = signal.clone();
                history(st, format!("STOPSIGNAL {signal}"), true);
            }
            InstructionKind::Healthcheck(h) => {
                st.config.healthcheck = Some(image::healthcheck(&h));
                history(st, format!("HEALTHCHECK {}", json_list(&h.test())), true);
            }
            InstructionKind::Onbuild(o) => {
                st.config.on_build.push(o.expression.clone());
                history(st, format!("ONBUILD {}", o.expression), true);
            }
            InstructionKind::Workdir { path } => {
                let wd = fsutil::absolute(&st.workdir(), &path);
                let wd = if wd.len() > 1 {
                    wd.trim_end_matches('/').to_string()
                } else {
                    wd
                };
                st.config.working_dir = wd.clone();
                let (cached, empty) = self.workdir_step(st, &wd).map_err(fail)?;
                history(st, format!("WORKDIR {wd}"), empty);
                return Ok(cached);
            }
            InstructionKind::Run(run) => {
                let (cached, empty, text) = self
                    .run_step(stage_index, st, &run, inst.line)
                    .map_err(|e| match e {
                        RunError::Step(e) => at(&file, inst.line)(e),
                        RunError::Failed(b) => *b,
                    })?;
                history(st, text, empty);
                return Ok(cached);
            }
            InstructionKind::Copy(c) => {
                let (cached, empty) = self
                    .copy_step(stage_index, st, CopyLike::Copy(&c))
                    .map_err(fail)?;
                history(st, format!("{written} # buildkit"), empty);
                return Ok(cached);
            }
            InstructionKind::Add(a) => {
                let (cached, empty) = self
                    .copy_step(stage_index, st, CopyLike::Add(&a))
                    .map_err(fail)?;
                history(st, format!("{written} # buildkit"), empty);
                return Ok(cached);
            }
        }
        Ok(false)
    }

    /// Makes the stage's root filesystem current (and snapshotted); returns where it is.
    pub(crate) fn materialize(&self, st: &mut StageState) -> Result<PathBuf, StepError> {
        let r = match &mut st.rootfs {
            Some(r) => r,
            rootfs => rootfs.insert(Rootfs::new(self.work.path())?),
        };
        r.catch_up(self.svc.store, &st.layers)?;
        r.snapshot()?;
        Ok(r.path().to_path_buf())
    }

    /// Looks a step up in the cache; on a hit the stage takes its result.
    pub(crate) fn try_cache(
        &self,
        st: &mut StageState,
        key: &str,
    ) -> Result<Option<bool>, StepError> {
        if !self.settings.cache {
            return Ok(None);
        }
        let Some(hit) = cache::get(self.svc.store, key)? else {
            return Ok(None);
        };
        let empty = hit.layer.is_none();
        if let Some(layer) = hit.layer {
            st.layers.push(layer);
        }
        st.key = key.to_string();
        Ok(Some(empty))
    }

    /// After a step changed the tree: diff it into a layer, record it, move the state on.
    /// Whether the step added no layer.
    pub(crate) fn finish_step(&self, st: &mut StageState, key: &str) -> Result<bool, StepError> {
        let rootfs = st
            .rootfs
            .as_mut()
            .ok_or_else(|| StepError::new("no root filesystem"))?;
        let before = rootfs.take_snapshot()?;
        let (changes, after) = diff::diff(rootfs.path(), &before)?;
        let info = diff::write_layer(
            self.svc.store,
            &self.settings.layer,
            rootfs.path(),
            &changes,
            rootfs.owners(),
        )?;
        rootfs.set_snapshot(after);
        let layer = info.map(|i| LayerRef {
            descriptor: i.descriptor,
            diff_id: i.diff_id,
        });
        let empty = layer.is_none();
        if let Some(l) = &layer {
            st.layers.push(l.clone());
        }
        rootfs.applied = st.layers.len();
        if self.settings.cache {
            cache::put(self.svc.store, key, layer.as_ref())?;
        }
        st.key = key.to_string();
        Ok(empty)
    }

    fn workdir_step(&mut self, st: &mut StageState, wd: &str) -> Result<(bool, bool), StepError> {
        let material = serde_json::json!({
            "op": "workdir",
            "path": wd,
            "platform": st.platform.to_string(),
        });
        let key = cache::step_key(&st.key, &material);
        if let Some(empty) = self.try_cache(st, &key)? {
            return Ok((true, empty));
        }
        let root = self.materialize(st)?;
        let host = fsutil::resolve_in_root(&root, wd, true)?;
        fsutil::mkdir_all(&host, 0o755, None)?;
        let empty = self.finish_step(st, &key)?;
        Ok((false, empty))
    }

    /// The tree a `--from` (or mount `from=`) names, materialised, and its cache identity.
    pub(crate) fn source_root(
        &mut self,
        stage_index: usize,
        from: &str,
        platform: &Platform,
    ) -> Result<(String, PathBuf), StepError> {
        match graph::resolve_from(self.df, from, stage_index).map_err(StepError)? {
            Base::Stage(j) => {
                let mut dep = self.done[j].take().ok_or_else(|| {
                    StepError::new(format!("{} was not built", graph::name(self.df, j)))
                })?;
                let root = self.materialize(&mut dep);
                let key = dep.key.clone();
                self.done[j] = Some(dep);
                Ok((key, root?))
            }
            Base::Scratch => Err(StepError::new("cannot copy from scratch")),
            Base::Image(text) => {
                let id = format!("{text}@{platform}");
                if let Some((key, root)) = self.image_roots.get(&id) {
                    return Ok((key.clone(), root.path().to_path_buf()));
                }
                let img = image::resolve(self.svc.store, self.svc.images, &text, platform)
                    .map_err(|e| {
                        if text.contains(['/', ':', '@', '.']) {
                            e
                        } else {
                            let names: Vec<String> = self
                                .df
                                .stages
                                .iter()
                                .filter_map(|s| s.name.clone())
                                .collect();
                            StepError::new(format!(
                                "no stage named {text:?} (stages: {}) and {}",
                                if names.is_empty() {
                                    "none named".to_string()
                                } else {
                                    names.join(", ")
                                },
                                e.0
                            ))
                        }
                    })?;
                let mut root = Rootfs::new(self.work.path())?;
                root.catch_up(self.svc.store, &img.layers)?;
                let key = cache::base_key(Some(&img.manifest));
                let path = root.path().to_path_buf();
                self.image_roots.insert(id, (key.clone(), root));
                Ok((key, path))
            }
        }
    }
}

/// The argv of CMD/ENTRYPOINT: exec form as is, shell form through the stage's SHELL.
fn command_argv(c: &CommandLine, st: &StageState) -> Vec<String> {
    match c {
        CommandLine::Exec(args) => args.clone(),
        CommandLine::Shell(s) => {
            let mut v = st.shell();
            v.push(s.clone());
            v
        }
    }
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// RUN failures: a step error, or the command's own failure (already a full error).
pub(crate) enum RunError {
    Step(StepError),
    Failed(Box<BuildError>),
}

impl From<StepError> for RunError {
    fn from(e: StepError) -> Self {
        Self::Step(e)
    }
}

/// For RUN (in `run.rs`): the stage's environment for the command.
pub(crate) fn run_env(st: &StageState, proxies: &[(String, String)]) -> Vec<String> {
    let mut env = st.config.env.clone();
    for (k, v) in st.args.iter() {
        if st.env_get(k).is_none() {
            env.push(format!("{k}={v}"));
        }
    }
    for (k, v) in proxies {
        if st.env_get(k).is_none() && st.args.get(k).is_none() {
            env.push(format!("{k}={v}"));
        }
    }
    env
}

/// For RUN: the stage's working directory, user and shell.
pub(crate) fn run_context(st: &StageState) -> (String, Option<String>, Vec<String>) {
    let user = (!st.config.user.is_empty()).then(|| st.config.user.clone());
    (st.workdir(), user, st.shell())
}
