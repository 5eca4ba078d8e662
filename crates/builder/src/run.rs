//! RUN: the command (exec form, shell form through SHELL, heredocs by BuildKit's rules), its
//! environment (ENV, then ARGs, then proxy build args), user, working directory, network
//! (only when the package allows it) and `--mount`s (bind from the context, a stage or an image;
//! cache directories kept in the store; tmpfs), run in the sandbox as root in the stage's root
//! filesystem. Mount points the sandbox created are removed afterwards and the mtimes of their
//! parent directories restored, so they never show in the layer.
//!
//! A command that fails becomes [`BuildError::RunFailed`] with the tail of its output.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};

use oxkit_sandbox::{Mount as SandboxMount, MountKind, Network, RunSpec, remove_mount_stubs};
use oxkit_spec::Platform;
use oxkit_spec::dockerfile::{MountType, NetworkMode, RunInstruction, RunScript, SecurityMode};

use crate::BuildEvent;
use crate::cache;
use crate::copy::{self, CopyOptions, Item};
use crate::error::{BuildError, StepError, io_step};
use crate::exec::{Exec, RunError, StageState, run_context, run_env};
use crate::fsutil;
use crate::tree::{self, DirTree, Tree};

/// Where a `#!` heredoc of RUN is mounted to be executed.
const HEREDOC_DIR: &str = "/.oxkit-pipes";

/// Lines of output kept for the error of a failing RUN.
const TAIL_LINES: usize = 20;
/// Bytes of output kept to find those lines.
const TAIL_BYTES: usize = 64 * 1024;

/// A `--mount` resolved for this run.
struct Planned {
    target: String,
    kind: PlannedKind,
}

enum PlannedKind {
    /// Bind a host path (a materialised stage or image root, or a copy).
    Bind {
        source: PathBuf,
        readonly: bool,
    },
    /// Copy a subtree of the build context into a scratch directory and bind that.
    Context {
        rel: String,
    },
    Cache {
        dir: PathBuf,
    },
    Tmpfs {
        size: Option<u64>,
    },
}

impl Exec<'_> {
    /// Runs one RUN instruction: (cached, no layer, history text).
    pub(crate) fn run_step(
        &mut self,
        stage_index: usize,
        st: &mut StageState,
        run: &RunInstruction,
        line: usize,
    ) -> Result<(bool, bool, String), RunError> {
        let escape = self.df.escape();
        let mounts = {
            let lookup = |n: &str| st_lookup(st, n);
            run.resolve_mounts(&lookup, escape)
                .map_err(|e| StepError::new(format!("RUN --mount {e}")))?
        };
        if run.security == SecurityMode::Insecure {
            return Err(StepError::new(
                "RUN --security=insecure is not supported: oxkit runs every step with Docker's default capabilities",
            )
            .into());
        }
        let network = match (run.network, self.settings.network) {
            (NetworkMode::None, _) | (NetworkMode::Default, false) => Network::None,
            (NetworkMode::Default | NetworkMode::Host, true) => Network::Host,
            (NetworkMode::Host, false) => {
                return Err(StepError::new(
                    "RUN --network=host needs the package to allow the network: set `network: true` in build.yml or pass --network",
                )
                .into());
            }
        };
        let (workdir, user, shell) = run_context(st);
        let (argv, script) = match run.script() {
            RunScript::Exec(args) => (args, None),
            RunScript::Shell(text) => {
                let mut v = shell.clone();
                v.push(text);
                (v, None)
            }
            RunScript::File { name, content } => {
                // BuildKit mounts the file at /dev/pipes/NAME; the sandbox's /dev is its own
                // small tmpfs where binds cannot go, so it lives in a mount point of its own.
                let target = format!("{HEREDOC_DIR}/{name}");
                (vec![target.clone()], Some((target, content)))
            }
        };
        if argv.is_empty() {
            return Err(StepError::new("RUN needs a command").into());
        }
        let proxies = self.build_args.proxies();
        let env = run_env(st, &proxies);
        let shown_args: Vec<String> = st.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let history = if shown_args.is_empty() {
            format!("RUN {} # buildkit", argv.join(" "))
        } else {
            format!(
                "RUN |{} {} {} # buildkit",
                shown_args.len(),
                shown_args.join(" "),
                argv.join(" ")
            )
        };

        // Resolve mounts and what they contribute to the key.
        let mut planned = Vec::new();
        let mut mount_inputs = Vec::new();
        for m in &mounts {
            let target = match &m.target {
                Some(t) => fsutil::absolute(&workdir, t)
                    .trim_end_matches('/')
                    .to_string(),
                None => {
                    return Err(StepError::new(format!(
                        "RUN --mount type={} needs target=",
                        type_name(m.kind)
                    ))
                    .into());
                }
            };
            let target = if target.is_empty() {
                "/".to_string()
            } else {
                target
            };
            let source = m.source.as_deref().unwrap_or("");
            let kind = match m.kind {
                MountType::Bind => match &m.from {
                    None => {
                        let rel =
                            tree::clean_rel(source.trim_start_matches('/')).ok_or_else(|| {
                                StepError::new(format!(
                                    "--mount source {source:?} is outside the build context"
                                ))
                            })?;
                        if self.context.node(&rel)?.is_none() {
                            return Err(StepError::new(format!(
                                "--mount source {source:?} not found in the build context"
                            ))
                            .into());
                        }
                        let mut h = oxkit_spec::Sha256Hasher::new();
                        let followed = self.context.follow(&rel)?;
                        tree::content_digest(self.context, &followed, &|_| false, &mut h)?;
                        mount_inputs.push(serde_json::json!({"target": target, "context": rel, "digest": h.finish().as_str()}));
                        PlannedKind::Context { rel }
                    }
                    Some(from) => {
                        let platform = st.platform.clone();
                        let (key, root) = self.source_root(stage_index, from, &platform)?;
                        let host = fsutil::resolve_in_root(&root, source, true)?;
                        mount_inputs.push(
                            serde_json::json!({"target": target, "from": key, "source": source}),
                        );
                        PlannedKind::Bind {
                            source: host,
                            readonly: m.readonly,
                        }
                    }
                },
                MountType::Cache => {
                    let id = m.id.clone().unwrap_or_else(|| target.clone());
                    let dir = self.cache_mount_dir(&id, &st.platform, m.mode, m.uid, m.gid)?;
                    mount_inputs.push(serde_json::json!({"target": target, "cache": id}));
                    PlannedKind::Cache { dir }
                }
                MountType::Tmpfs => {
                    mount_inputs.push(serde_json::json!({"target": target, "tmpfs": m.size_limit}));
                    PlannedKind::Tmpfs { size: m.size_limit }
                }
                MountType::Secret | MountType::Ssh => {
                    return Err(StepError::new(format!(
                        "RUN --mount=type={} is not supported by oxkit yet; use a bind mount of a file in the package, or build args",
                        type_name(m.kind)
                    ))
                    .into());
                }
            };
            planned.push(Planned { target, kind });
        }

        let material = serde_json::json!({
            "op": "run",
            "argv": argv,
            "script": script.as_ref().map(|(_, c)| c),
            "env": env,
            "user": user,
            "workdir": workdir,
            "network": network == Network::Host,
            "mounts": mount_inputs,
            "platform": st.platform.to_string(),
        });
        let key = cache::step_key(&st.key, &material);
        if let Some(empty) = self.try_cache(st, &key)? {
            return Ok((true, empty, history));
        }
        let root = self.materialize(st)?;

        let scratch = self.work.path().join(format!("run-{}", self.step));
        let mut spec = RunSpec::new(&root, argv.clone());
        let mut env = env;
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push(format!(
                "HOME={}",
                crate::users::home_of(&root, user.as_deref())
            ));
        }
        spec.env = env;
        spec.cwd = workdir;
        // Root needs no /etc/passwd (busybox and scratch-based stages have none).
        spec.user = user.filter(|u| !matches!(u.as_str(), "root" | "0" | "root:root" | "0:0"));
        spec.network = network;
        spec.arch = arch_for(&st.platform);
        for p in planned {
            let kind = match p.kind {
                PlannedKind::Bind { source, readonly } if readonly => {
                    MountKind::Bind { source, readonly }
                }
                PlannedKind::Bind { source, .. } => {
                    // A writable bind of another stage must not change that stage: bind a copy.
                    let copy_dir = scratch.join(format!("mount-{}", spec.mounts.len()));
                    copy_host_path(&source, &copy_dir)?;
                    MountKind::Bind {
                        source: copy_dir,
                        readonly: false,
                    }
                }
                PlannedKind::Context { rel } => {
                    let copy_dir = scratch.join(format!("mount-{}", spec.mounts.len()));
                    fs::create_dir_all(&copy_dir).map_err(io_step("create", &copy_dir))?;
                    let node = self.context.node(&self.context.follow(&rel)?)?;
                    let items = [Item::Tree {
                        tree: self.context,
                        rel: rel.clone(),
                    }];
                    let dest = if node.is_some_and(|n| n.is_dir()) {
                        "/"
                    } else {
                        "/file"
                    };
                    copy::copy_items(&copy_dir, &items, dest, false, &CopyOptions::default())?;
                    let source = if dest == "/" {
                        copy_dir
                    } else {
                        copy_dir.join("file")
                    };
                    MountKind::Bind {
                        source,
                        readonly: false,
                    }
                }
                PlannedKind::Cache { dir } => MountKind::Bind {
                    source: dir,
                    readonly: false,
                },
                PlannedKind::Tmpfs { size } => MountKind::Tmpfs { size_bytes: size },
            };
            spec.mounts.push(SandboxMount {
                target: p.target,
                kind,
            });
        }
        if let Some((target, content)) = &script {
            let dir = scratch.join("pipes");
            fs::create_dir_all(&dir).map_err(io_step("create", &dir))?;
            let host = dir.join("script");
            fs::write(&host, content).map_err(io_step("write", &host))?;
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&host, fs::Permissions::from_mode(0o755))
                .map_err(io_step("set permissions of", &host))?;
            spec.mounts
                .push(SandboxMount::bind(host, target.clone(), true));
        }

        let mut tail = Tail::default();
        let events = self.svc.events;
        let platform = self.platform.clone();
        let outcome = self.svc.sandbox.run(&spec, &mut |bytes: &[u8]| {
            tail.push(bytes);
            events.event(BuildEvent::Output {
                platform: platform.clone(),
                bytes: bytes.to_vec(),
            });
        });
        let _ = fsutil::remove_tree(&scratch);
        let outcome = outcome.map_err(StepError::from)?;
        let removed =
            remove_mount_stubs(&root, &outcome.created_mountpoints).map_err(StepError::from)?;
        // The snapshot is still the one taken before the run.
        let before = st
            .rootfs
            .as_mut()
            .ok_or_else(|| StepError::new("no root filesystem"))?
            .snapshot()?;
        restore_parent_mtimes(&root, &removed, before);
        if !outcome.status.success() {
            let status = match outcome.status {
                oxkit_sandbox::ExitStatus::Code(c) => format!("exited with {c}"),
                s => format!("was {s}"),
            };
            return Err(RunError::Failed(Box::new(BuildError::RunFailed {
                file: self.file.clone(),
                line,
                command: shorten(&run_text(run)),
                status,
                tail: tail.lines(),
            })));
        }
        let empty = self.finish_step(st, &key)?;
        Ok((false, empty, history))
    }

    /// A persistent directory for `--mount=type=cache,id=...` inside the store's scratch
    /// area (so `oxkit cache clean` empties it, like `docker builder prune`).
    fn cache_mount_dir(
        &self,
        id: &str,
        platform: &Platform,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Result<PathBuf, StepError> {
        let name = oxkit_spec::Digest::sha256(format!("{id}\0{platform}").as_bytes());
        let dir = self
            .svc
            .store
            .root()
            .join("oxkit")
            .join("tmp")
            .join("cache-mounts")
            .join(name.hex());
        if !dir.exists() {
            fsutil::mkdir_all(&dir, mode.unwrap_or(0o755), None)?;
            fsutil::chown(&dir, uid.unwrap_or(0), gid.unwrap_or(0))?;
        }
        Ok(dir)
    }
}

fn st_lookup(st: &StageState, name: &str) -> Option<String> {
    st.config
        .env
        .iter()
        .rev()
        .find_map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
        .or_else(|| st.args.get(name).map(str::to_string))
}

fn type_name(t: MountType) -> &'static str {
    match t {
        MountType::Bind => "bind",
        MountType::Cache => "cache",
        MountType::Tmpfs => "tmpfs",
        MountType::Secret => "secret",
        MountType::Ssh => "ssh",
    }
}

/// `None` for the host's own architecture (native), the architecture otherwise.
fn arch_for(p: &Platform) -> Option<String> {
    (p.architecture != Platform::host().architecture).then(|| p.architecture.clone())
}

/// The command as the Dockerfile wrote it, for messages.
fn run_text(run: &RunInstruction) -> String {
    match &run.command {
        oxkit_spec::dockerfile::CommandLine::Exec(a) => {
            serde_json::to_string(a).unwrap_or_default()
        }
        oxkit_spec::dockerfile::CommandLine::Shell(s) => s.clone(),
    }
}

fn shorten(s: &str) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 80 {
        let cut: String = one_line.chars().take(77).collect();
        format!("{cut}...")
    } else {
        one_line
    }
}

/// Puts back the mtimes of directories in which mount points were created and removed.
fn restore_parent_mtimes(root: &Path, removed: &[PathBuf], before: &crate::diff::Snapshot) {
    let mut parents: Vec<PathBuf> = removed
        .iter()
        .filter_map(|p| p.parent())
        .map(|p| p.strip_prefix("/").unwrap_or(p).to_path_buf())
        .filter(|p| !p.as_os_str().is_empty())
        .collect();
    // Children first: restoring a parent after its child keeps the parent's time.
    parents.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    parents.dedup();
    for rel in parents {
        let Some(stat) = before.get(&rel) else {
            continue;
        };
        let (sec, nsec) = stat.mtime();
        let t = rustix::fs::Timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        };
        let _ = rustix::fs::utimensat(
            rustix::fs::CWD,
            root.join(&rel),
            &rustix::fs::Timestamps {
                last_access: t,
                last_modification: t,
            },
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        );
    }
}

/// Copies a host file or directory (a writable bind's source) into `dest`.
fn copy_host_path(source: &Path, dest: &Path) -> Result<(), StepError> {
    let meta = fs::symlink_metadata(source).map_err(io_step("inspect", source))?;
    fs::create_dir_all(dest).map_err(io_step("create", dest))?;
    if meta.is_dir() {
        let t = DirTree::new(source, "mount source");
        copy::copy_items(
            dest,
            &[Item::Tree {
                tree: &t,
                rel: String::new(),
            }],
            "/",
            false,
            &CopyOptions::default(),
        )?;
        Ok(())
    } else {
        Err(StepError::new(format!(
            "a writable bind mount of the file {} is not supported; mount its directory",
            source.display()
        )))
    }
}

/// The last lines of a command's output.
#[derive(Default)]
struct Tail {
    buf: VecDeque<u8>,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend(bytes);
        while self.buf.len() > TAIL_BYTES {
            self.buf.pop_front();
        }
    }

    fn lines(&self) -> Vec<String> {
        let bytes: Vec<u8> = self.buf.iter().copied().collect();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<String> = text
            .lines()
            .map(|l| l.trim_end_matches('\r').to_string())
            .collect();
        let start = lines.len().saturating_sub(TAIL_LINES);
        lines[start..].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let mut t = Tail::default();
        for i in 0..50 {
            t.push(format!("line {i}\n").as_bytes());
        }
        let lines = t.lines();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(lines.last().map(String::as_str), Some("line 49"));
        assert_eq!(shorten("a\n  b"), "a b");
        assert!(shorten(&"x".repeat(200)).ends_with("..."));
    }
}
