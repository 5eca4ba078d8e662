//! The typed instructions a Dockerfile is made of. Every string is as written in the
//! Dockerfile (quotes, escapes and `$VAR` intact) unless a field says otherwise: the builder
//! expands them at build time with [`InstructionKind::expand`] or the functions of
//! [`super::shell`], using the environment in force before the instruction.

use std::time::Duration;

use super::heredoc::Heredoc;
use super::mount::MountSpec;

/// One instruction of a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// 1-based line where it ends (after continuation lines and heredoc bodies).
    pub end_line: usize,
    /// The logical line (continuations joined, comment lines dropped), trimmed. Heredoc bodies
    /// are not part of it.
    pub original: String,
    pub kind: InstructionKind,
}

/// What an instruction does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstructionKind {
    Arg {
        args: Vec<ArgDef>,
    },
    Env {
        vars: Vec<KeyValue>,
    },
    Label {
        labels: Vec<KeyValue>,
    },
    Run(RunInstruction),
    Cmd {
        command: CommandLine,
    },
    Entrypoint {
        command: CommandLine,
    },
    Copy(CopyInstruction),
    Add(AddInstruction),
    Workdir {
        path: String,
    },
    User {
        user: String,
    },
    /// Port words (`80`, `53/udp`, `$PORT`); after expansion one word may give several ports.
    Expose {
        ports: Vec<String>,
    },
    Volume {
        paths: Vec<String>,
    },
    /// Always the JSON form.
    Shell {
        args: Vec<String>,
    },
    StopSignal {
        signal: String,
    },
    Healthcheck(Healthcheck),
    Onbuild(OnbuildInstruction),
    /// Deprecated; sets the image author.
    Maintainer {
        name: String,
    },
}

impl InstructionKind {
    /// The instruction name in upper case (`RUN`, `COPY`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Arg { .. } => "ARG",
            Self::Env { .. } => "ENV",
            Self::Label { .. } => "LABEL",
            Self::Run(_) => "RUN",
            Self::Cmd { .. } => "CMD",
            Self::Entrypoint { .. } => "ENTRYPOINT",
            Self::Copy(_) => "COPY",
            Self::Add(_) => "ADD",
            Self::Workdir { .. } => "WORKDIR",
            Self::User { .. } => "USER",
            Self::Expose { .. } => "EXPOSE",
            Self::Volume { .. } => "VOLUME",
            Self::Shell { .. } => "SHELL",
            Self::StopSignal { .. } => "STOPSIGNAL",
            Self::Healthcheck(_) => "HEALTHCHECK",
            Self::Onbuild(_) => "ONBUILD",
            Self::Maintainer { .. } => "MAINTAINER",
        }
    }
}

/// `ARG name[=default]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDef {
    pub name: String,
    /// The default as written; `None` for a bare `ARG name`.
    pub default: Option<String>,
    /// 1-based line of the ARG instruction.
    pub line: usize,
}

/// One `key=value` of ENV or LABEL (or the legacy `ENV key value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

/// The command of RUN, CMD, ENTRYPOINT and HEALTHCHECK CMD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// JSON form: run these arguments directly, no shell, no expansion.
    Exec(Vec<String>),
    /// Shell form: hand this text to the stage's SHELL (`/bin/sh -c` by default). Variables
    /// are left to the shell.
    Shell(String),
}

/// `RUN [--mount=...] [--network=...] [--security=...] command`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInstruction {
    pub command: CommandLine,
    /// Heredocs opened on the command line, in order (shell form only).
    pub heredocs: Vec<Heredoc>,
    pub mounts: Vec<MountSpec>,
    pub network: NetworkMode,
    pub security: SecurityMode,
}

/// What a RUN instruction actually executes, after BuildKit's heredoc rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunScript {
    /// Run these arguments directly.
    Exec(Vec<String>),
    /// Run this text with the stage's shell (`SHELL ... <text>`).
    Shell(String),
    /// A lone heredoc starting with `#!`: write `content` to a file named `name`, mode 0755
    /// (BuildKit mounts it at `/dev/pipes/<name>`), and execute that file without a shell.
    File { name: String, content: String },
}

impl RunInstruction {
    /// Resolves heredocs the way BuildKit does: `RUN <<EOF` alone runs the body (or executes
    /// it as a file when it starts with `#!`); any other command line with heredocs is handed
    /// to the shell with the bodies appended, so the shell itself feeds them.
    pub fn script(&self) -> RunScript {
        let text = match &self.command {
            CommandLine::Exec(args) => return RunScript::Exec(args.clone()),
            CommandLine::Shell(text) => text,
        };
        let Some(first) = self.heredocs.first() else {
            return RunScript::Shell(text.clone());
        };
        if super::heredoc::parse_heredoc(text).ok().flatten().is_some() {
            let body = first.body().into_owned();
            if body.starts_with("#!") {
                return RunScript::File {
                    name: first.name.clone(),
                    content: body,
                };
            }
            return RunScript::Shell(body);
        }
        let mut script = text.clone();
        for doc in &self.heredocs {
            script.push('\n');
            script.push_str(&doc.content);
            script.push_str(&doc.name);
        }
        RunScript::Shell(script)
    }
}

/// `RUN --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkMode {
    #[default]
    Default,
    None,
    Host,
}

/// `RUN --security`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityMode {
    #[default]
    Sandbox,
    Insecure,
}

/// A source of COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopySource {
    /// A path (or, for ADD, a URL or git repository), unexpanded.
    Path(String),
    /// An inline file from a heredoc: a file named `name` with the heredoc body. Expand the
    /// body (with [`super::shell::expand_heredoc`]) only when `expand` is set.
    Heredoc(Heredoc),
}

/// `COPY [--from] [--chown] [--chmod] [--link] [--parents] [--exclude]... src... dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyInstruction {
    pub sources: Vec<CopySource>,
    pub dest: String,
    /// A stage name, stage index or image. Never contains variables (rejected at parse time,
    /// as BuildKit does).
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    /// `--exclude` patterns (dockerignore syntax), never expanded.
    pub excludes: Vec<String>,
}

/// `ADD [--chown] [--chmod] [--link] [--checksum] [--keep-git-dir] [--unpack] [--exclude]...
/// src... dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddInstruction {
    pub sources: Vec<CopySource>,
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    /// `--checksum=sha256:...` of a remote source.
    pub checksum: Option<String>,
    /// `--keep-git-dir`, when given (git sources).
    pub keep_git_dir: Option<bool>,
    /// `--unpack`, when given (whether to extract archives).
    pub unpack: Option<bool>,
    pub excludes: Vec<String>,
}

/// HEALTHCHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    Check(HealthConfig),
}

/// `HEALTHCHECK [--interval] [--timeout] [--start-period] [--start-interval] [--retries] CMD`.
/// Zero durations and retries mean "inherit / engine default", as in the image config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    pub command: CommandLine,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub start_interval: Duration,
    pub retries: u32,
}

impl Healthcheck {
    /// The image config's `Healthcheck.Test`: `["NONE"]`, `["CMD", args...]` or
    /// `["CMD-SHELL", command]`.
    pub fn test(&self) -> Vec<String> {
        match self {
            Self::None => vec!["NONE".to_string()],
            Self::Check(c) => match &c.command {
                CommandLine::Exec(args) => std::iter::once("CMD".to_string())
                    .chain(args.iter().cloned())
                    .collect(),
                CommandLine::Shell(s) => vec!["CMD-SHELL".to_string(), s.clone()],
            },
        }
    }
}

/// `ONBUILD <instruction>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnbuildInstruction {
    /// The trigger as stored in the image config's `OnBuild` list: the text after `ONBUILD`,
    /// followed by any heredoc bodies and delimiters.
    pub expression: String,
    /// The trigger, parsed and validated.
    pub trigger: Box<InstructionKind>,
}
