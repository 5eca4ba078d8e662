//! Dockerfile syntax as BuildKit's `dockerfile` frontend reads it: parser directives, comments,
//! line continuations, heredocs, exec/shell forms, flags, and the typed instructions grouped into
//! stages; plus BuildKit's word expansion as pure functions the builder calls at build time.
//!
//! This module only parses text handed to it: no file system, no environment, no build
//! decisions. It never expands anything at parse time; strings keep their quotes and `$VAR`
//! references until the builder calls [`InstructionKind::expand`] (or [`expand_word`]) with the
//! environment in force.
//!
//! ```
//! use oxkit_spec::dockerfile::{Dockerfile, InstructionKind};
//! let df = Dockerfile::parse("ARG V=1\nFROM alpine:$V AS base\nENV A=b\n", "Dockerfile").unwrap();
//! assert_eq!(df.stages[0].base, "alpine:$V");
//! assert!(matches!(df.stages[0].instructions[0].kind, InstructionKind::Env { .. }));
//! ```

mod duration;
mod error;
mod expand;
mod flags;
mod heredoc;
mod instructions;
mod lexer;
mod mount;
mod parse;
mod pattern;
mod shell;
mod split;

pub use error::{DockerfileError, DockerfileErrorKind, ExpandError, ExpandErrorKind};
pub use heredoc::Heredoc;
pub use instructions::{
    AddInstruction, ArgDef, CommandLine, CopyInstruction, CopySource, HealthConfig, Healthcheck,
    Instruction, InstructionKind, KeyValue, NetworkMode, OnbuildInstruction, RunInstruction,
    RunScript, SecurityMode,
};
pub use lexer::{Directives, Warning};
pub use mount::{CacheSharing, Mount, MountError, MountSpec, MountType};
pub use shell::{EnvLookup, expand_heredoc, expand_word, expand_words};

use error::DockerfileErrorKind as Kind;
use parse::{LineInput, Parsed, parse_line};

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub directives: Directives,
    /// ARGs before the first FROM: visible only to FROM lines (and to stages that redeclare
    /// them with a bare `ARG name`).
    pub global_args: Vec<ArgDef>,
    pub stages: Vec<Stage>,
    /// Accepted oddities, such as empty continuation lines.
    pub warnings: Vec<Warning>,
}

/// One build stage: a FROM line and the instructions up to the next FROM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// `AS name`, lower-cased (stage names are case-insensitive).
    pub name: Option<String>,
    /// The base as written: an image reference, an earlier stage's name, or `scratch`; may
    /// contain `$VAR` from the global ARGs (see [`Stage::expand_base`]).
    pub base: String,
    /// `--platform`, as written (typically `$BUILDPLATFORM`).
    pub platform: Option<String>,
    /// 1-based line of the FROM instruction.
    pub line: usize,
    pub instructions: Vec<Instruction>,
}

impl Dockerfile {
    /// Parses Dockerfile `text`; `file_name` only appears in error messages.
    pub fn parse(text: &str, file_name: &str) -> Result<Self, DockerfileError> {
        let lexed = lexer::lex(text).map_err(|(line, kind)| kind.at(file_name, line))?;
        let escape = lexed.directives.escape;
        let mut global_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        for logical in &lexed.lines {
            let parsed = parse_line(&LineInput {
                text: &logical.text,
                heredocs: &logical.heredocs,
                escape,
                line: logical.start,
            })
            .map_err(|kind| kind.at(file_name, logical.start))?;
            match parsed {
                Parsed::From(from) => stages.push(Stage {
                    name: from.name,
                    base: from.base,
                    platform: from.platform,
                    line: logical.start,
                    instructions: Vec::new(),
                }),
                Parsed::Instruction(kind) => match (stages.last_mut(), kind) {
                    (Some(stage), kind) => stage.instructions.push(Instruction {
                        line: logical.start,
                        end_line: logical.end,
                        original: logical.text.trim().to_string(),
                        kind,
                    }),
                    (None, InstructionKind::Arg { args }) => global_args.extend(args),
                    (None, kind) => {
                        return Err(Kind::InstructionBeforeFrom {
                            instruction: kind.name().to_string(),
                        }
                        .at(file_name, logical.start));
                    }
                },
            }
        }
        if stages.is_empty() {
            let line = lexed.lines.last().map_or(1, |l| l.start);
            return Err(Kind::NoStages.at(file_name, line));
        }
        Ok(Self {
            directives: lexed.directives,
            global_args,
            stages,
            warnings: lexed.warnings,
        })
    }

    /// The escape character in force (`# escape=`), needed by the expansion functions.
    pub fn escape(&self) -> char {
        self.directives.escape
    }

    /// The stage named `name` (case-insensitive), with its index.
    pub fn stage(&self, name: &str) -> Option<(usize, &Stage)> {
        self.stages.iter().enumerate().find(|(_, s)| {
            s.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
    }
}

impl Stage {
    /// The base expanded with the global ARGs (`global` sees only ARGs declared before the
    /// first FROM, with their build-arg values, plus BuildKit's automatic platform ARGs).
    /// An empty result is an error the builder reports.
    pub fn expand_base(&self, global: EnvLookup<'_>, escape: char) -> Result<String, ExpandError> {
        expand_word(&self.base, global, escape)
    }

    /// `--platform` expanded like [`Stage::expand_base`].
    pub fn expand_platform(
        &self,
        global: EnvLookup<'_>,
        escape: char,
    ) -> Result<Option<String>, ExpandError> {
        self.platform
            .as_deref()
            .map(|p| expand_word(p, global, escape))
            .transpose()
    }
}

#[cfg(test)]
mod tests;
