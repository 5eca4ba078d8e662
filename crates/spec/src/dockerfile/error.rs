//! Errors of Dockerfile parsing and word expansion. Parse errors carry the file name and the
//! 1-based line where the offending instruction starts, and render as `FILE:LINE: message; what
//! to do`. This module only describes failures; it decides nothing.

use super::mount::MountError;

/// A Dockerfile that cannot be parsed: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {kind}")]
pub struct DockerfileError {
    /// The file name given to [`super::Dockerfile::parse`].
    pub file: String,
    /// 1-based line where the offending instruction (or directive) starts.
    pub line: usize,
    pub kind: DockerfileErrorKind,
}

/// What is wrong with a Dockerfile. Each message says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerfileErrorKind {
    #[error("the file has no instructions; add at least `FROM <image>`")]
    NoInstructions,

    #[error("the file has no FROM instruction; add `FROM <image>` to start a build stage")]
    NoStages,

    #[error(
        "{instruction} before the first FROM; only ARG may come before FROM, so move it into a stage"
    )]
    InstructionBeforeFrom { instruction: String },

    #[error(
        "unknown instruction {name:?}; use one of ADD, ARG, CMD, COPY, ENTRYPOINT, ENV, EXPOSE, FROM, \
         HEALTHCHECK, LABEL, MAINTAINER, ONBUILD, RUN, SHELL, STOPSIGNAL, USER, VOLUME, WORKDIR"
    )]
    UnknownInstruction { name: String },

    #[error("unknown flag {flag} for {instruction}; {allowed}")]
    UnknownFlag {
        instruction: String,
        flag: String,
        /// A sentence listing the flags the instruction accepts.
        allowed: String,
    },

    #[error("{instruction} flag {flag}: {message}")]
    InvalidFlag {
        instruction: String,
        flag: String,
        message: String,
    },

    #[error("heredoc <<{name} is never terminated; end it with a line that is exactly {name:?}")]
    UnterminatedHeredoc { name: String },

    #[error(
        "{instruction}: when using JSON array syntax, arrays must be comprised of strings only; \
         quote every element"
    )]
    NotStringArray { instruction: String },

    #[error("{instruction} requires the arguments to be in JSON form; write e.g. {example}")]
    JsonRequired {
        instruction: String,
        example: &'static str,
    },

    #[error("{instruction}: {message}")]
    Arguments {
        instruction: String,
        /// What is wrong and what to write instead.
        message: String,
    },

    #[error("RUN --mount: {0}")]
    InvalidMount(Box<MountError>),

    #[error("parser directive: {message}")]
    Directive { message: String },

    #[error(
        "invalid name for build stage {name:?}: a name starts with a letter and contains only \
         letters, digits, '-', '_' and '.'"
    )]
    InvalidStageName { name: String },

    #[error("ONBUILD: {message}")]
    Onbuild { message: String },

    #[error("HEALTHCHECK: {message}")]
    Healthcheck { message: String },
}

impl DockerfileErrorKind {
    pub(crate) fn args(instruction: &str, message: impl Into<String>) -> Self {
        Self::Arguments {
            instruction: instruction.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn at(self, file: &str, line: usize) -> DockerfileError {
        DockerfileError {
            file: file.to_string(),
            line,
            kind: self,
        }
    }
}

/// A word that cannot be expanded (variable substitution, quotes, escapes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot expand {word:?}: {kind}")]
pub struct ExpandError {
    /// The word as written in the Dockerfile.
    pub word: String,
    pub kind: ExpandErrorKind,
}

/// Why a word cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandErrorKind {
    #[error("unexpected end of text while looking for the matching {0}; close it or escape it")]
    Unterminated(&'static str),

    #[error("missing '}}' in ${{...}}; close the substitution")]
    MissingBrace,

    #[error("missing '/' in ${{VAR/pattern/replacement}}; write the replacement part too")]
    MissingSlash,

    #[error("bad substitution: ${{...}} needs a variable name, as in ${{NAME}}")]
    BadSubstitution,

    #[error("unsupported modifier ({0}) in substitution; use one of :- - :+ + :? ? # ## % %% / //")]
    UnsupportedModifier(String),

    /// `${VAR?message}` / `${VAR:?message}` on an unset (or empty) variable.
    #[error("{name}: {message}")]
    Required { name: String, message: String },

    #[error(
        "invalid pattern ({pattern}) in substitution: {reason}; only *, ? and \\ escapes of *, ?, \\ are special"
    )]
    BadPattern { pattern: String, reason: String },

    #[error("substitutions nested deeper than {0} levels; simplify the expression")]
    TooDeep(usize),
}
