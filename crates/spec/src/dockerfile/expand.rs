//! Build-time expansion of parsed instructions, following which fields BuildKit expands and how
//! (`instructions/commands.go` `Expand` methods and `dockerfile2llb`): ENV/LABEL keys and values,
//! COPY/ADD sources, destination, `--chown`, `--chmod`, ADD `--checksum`, unquoted heredoc
//! bodies, WORKDIR, USER, VOLUME, STOPSIGNAL, EXPOSE (split into words), RUN mounts. RUN, CMD,
//! ENTRYPOINT, SHELL, HEALTHCHECK, ONBUILD and MAINTAINER are never expanded (the shell or the
//! later build does it). ARG defaults are left to the builder because BuildKit expands a
//! default only when no `--build-arg` overrides it.

use super::error::ExpandError;
use super::heredoc::Heredoc;
use super::instructions::{CopySource, InstructionKind, KeyValue, RunInstruction};
use super::mount::{Mount, MountError};
use super::shell::{EnvLookup, expand_heredoc, expand_word, expand_words};

impl InstructionKind {
    /// A copy of the instruction with every field BuildKit expands replaced by its expansion
    /// in `env`, the environment in force *before* this instruction (so in `ENV a=1 b=$a`,
    /// `$a` is the old value of `a`). `escape` is [`super::Directives::escape`].
    ///
    /// Heredoc sources come back final: tabs stripped for `<<-`, expanded unless the
    /// delimiter was quoted, with `chomp` and `expand` cleared.
    pub fn expand(&self, env: EnvLookup<'_>, escape: char) -> Result<Self, ExpandError> {
        let word = |s: &str| expand_word(s, env, escape);
        let opt = |s: &Option<String>| s.as_deref().map(word).transpose();
        let pairs = |kvs: &[KeyValue]| -> Result<Vec<KeyValue>, ExpandError> {
            kvs.iter()
                .map(|kv| {
                    Ok(KeyValue {
                        key: word(&kv.key)?,
                        value: word(&kv.value)?,
                    })
                })
                .collect()
        };
        let sources = |srcs: &[CopySource]| -> Result<Vec<CopySource>, ExpandError> {
            srcs.iter()
                .map(|src| match src {
                    CopySource::Path(p) => Ok(CopySource::Path(word(p)?)),
                    CopySource::Heredoc(doc) => {
                        let body = doc.body();
                        let content = if doc.expand {
                            expand_heredoc(&body, env)?
                        } else {
                            body.into_owned()
                        };
                        Ok(CopySource::Heredoc(Heredoc {
                            content,
                            chomp: false,
                            expand: false,
                            ..doc.clone()
                        }))
                    }
                })
                .collect()
        };
        let all = |list: &[String]| -> Result<Vec<String>, ExpandError> {
            list.iter().map(|s| word(s)).collect()
        };
        Ok(match self {
            Self::Env { vars } => Self::Env { vars: pairs(vars)? },
            Self::Label { labels } => Self::Label {
                labels: pairs(labels)?,
            },
            Self::Copy(c) => {
                let mut c = c.clone();
                c.sources = sources(&c.sources)?;
                c.dest = word(&c.dest)?;
                c.chown = opt(&c.chown)?;
                c.chmod = opt(&c.chmod)?;
                Self::Copy(c)
            }
            Self::Add(a) => {
                let mut a = a.clone();
                a.sources = sources(&a.sources)?;
                a.dest = word(&a.dest)?;
                a.chown = opt(&a.chown)?;
                a.chmod = opt(&a.chmod)?;
                a.checksum = opt(&a.checksum)?;
                Self::Add(a)
            }
            Self::Workdir { path } => Self::Workdir { path: word(path)? },
            Self::User { user } => Self::User { user: word(user)? },
            Self::StopSignal { signal } => Self::StopSignal {
                signal: word(signal)?,
            },
            Self::Volume { paths } => Self::Volume { paths: all(paths)? },
            Self::Expose { ports } => {
                let mut out = Vec::new();
                for p in ports {
                    out.extend(expand_words(p, env, escape)?);
                }
                Self::Expose { ports: out }
            }
            other => other.clone(),
        })
    }
}

impl RunInstruction {
    /// The `--mount` flags resolved in `env` (the environment in force before the RUN).
    pub fn resolve_mounts(
        &self,
        env: EnvLookup<'_>,
        escape: char,
    ) -> Result<Vec<Mount>, MountError> {
        self.mounts
            .iter()
            .map(|m| m.resolve_in(env, escape))
            .collect()
    }
}
