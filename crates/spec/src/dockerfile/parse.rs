//! One logical instruction line (continuations joined, heredoc bodies read) turned into a typed
//! instruction, with BuildKit's argument rules and checks (`instructions/parse.go` and the line
//! parsers of `parser/line_parsers.go`). Nothing is expanded here.

use std::time::Duration;

use super::duration::parse_go_duration;
use super::error::DockerfileErrorKind as Kind;
use super::flags::{FlagType, Flags};
use super::heredoc::{Heredoc, parse_heredoc};
use super::instructions::{
    AddInstruction, ArgDef, CommandLine, CopyInstruction, CopySource, HealthConfig, Healthcheck,
    InstructionKind, KeyValue, NetworkMode, OnbuildInstruction, RunInstruction, SecurityMode,
};
use super::mount::MountSpec;
use super::shell::expand_word;
use super::split::{
    CommandParts, JsonError, is_arg_space, is_space, parse_json, parse_words, split_args,
    split_command,
};

/// A parsed line: a stage start or an instruction inside a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    From(FromLine),
    Instruction(InstructionKind),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FromLine {
    pub(crate) base: String,
    pub(crate) name: Option<String>,
    pub(crate) platform: Option<String>,
}

/// What one line needs to be parsed.
pub(crate) struct LineInput<'a> {
    pub(crate) text: &'a str,
    pub(crate) heredocs: &'a [Heredoc],
    pub(crate) escape: char,
    pub(crate) line: usize,
}

type Result<T> = std::result::Result<T, Kind>;

pub(crate) fn parse_line(input: &LineInput<'_>) -> Result<Parsed> {
    let parts = split_command(input.text, input.escape);
    let rest = parts.rest.as_str();
    let instruction = |kind| Ok(Parsed::Instruction(kind));
    match parts.name.to_ascii_lowercase().as_str() {
        "from" => from(&parts).map(Parsed::From),
        "arg" => {
            no_flags("ARG", &parts)?;
            instruction(InstructionKind::Arg {
                args: args(rest, input.escape, input.line)?,
            })
        }
        "env" => {
            no_flags("ENV", &parts)?;
            instruction(InstructionKind::Env {
                vars: key_values("ENV", rest, input.escape)?,
            })
        }
        "label" => {
            no_flags("LABEL", &parts)?;
            instruction(InstructionKind::Label {
                labels: key_values("LABEL", rest, input.escape)?,
            })
        }
        "maintainer" => instruction(InstructionKind::Maintainer {
            name: one_arg("MAINTAINER", &parts)?,
        }),
        "workdir" => instruction(InstructionKind::Workdir {
            path: one_arg("WORKDIR", &parts)?,
        }),
        "user" => instruction(InstructionKind::User {
            user: one_arg("USER", &parts)?,
        }),
        "stopsignal" => instruction(InstructionKind::StopSignal {
            signal: one_arg("STOPSIGNAL", &parts)?,
        }),
        "run" => run(&parts, input)
            .map(InstructionKind::Run)
            .map(Parsed::Instruction),
        "cmd" => {
            no_flags("CMD", &parts)?;
            instruction(InstructionKind::Cmd {
                command: command_line("CMD", rest)?,
            })
        }
        "entrypoint" => {
            no_flags("ENTRYPOINT", &parts)?;
            instruction(InstructionKind::Entrypoint {
                command: command_line("ENTRYPOINT", rest)?,
            })
        }
        "copy" => copy(&parts, input)
            .map(InstructionKind::Copy)
            .map(Parsed::Instruction),
        "add" => add(&parts, input)
            .map(InstructionKind::Add)
            .map(Parsed::Instruction),
        "expose" => {
            no_flags("EXPOSE", &parts)?;
            let ports = split_args(rest);
            if ports.is_empty() {
                return Err(at_least_one("EXPOSE", "EXPOSE 80/tcp"));
            }
            instruction(InstructionKind::Expose { ports })
        }
        "volume" => volume(&parts).map(Parsed::Instruction),
        "shell" => shell(&parts).map(Parsed::Instruction),
        "healthcheck" => healthcheck(&parts)
            .map(InstructionKind::Healthcheck)
            .map(Parsed::Instruction),
        "onbuild" => onbuild(&parts, input)
            .map(InstructionKind::Onbuild)
            .map(Parsed::Instruction),
        _ => Err(Kind::UnknownInstruction { name: parts.name }),
    }
}

fn no_flags(instruction: &str, parts: &CommandParts) -> Result<()> {
    Flags::parse(instruction, &parts.flags, &[]).map(|_| ())
}

fn at_least_one(instruction: &str, example: &str) -> Kind {
    Kind::args(
        instruction,
        format!("requires at least one argument; write e.g. `{example}`"),
    )
}

fn one_arg(instruction: &str, parts: &CommandParts) -> Result<String> {
    no_flags(instruction, parts)?;
    if parts.rest.is_empty() {
        return Err(Kind::args(
            instruction,
            "requires exactly one argument; add it after the instruction name",
        ));
    }
    Ok(parts.rest.clone())
}

fn from(parts: &CommandParts) -> Result<FromLine> {
    let flags = Flags::parse("FROM", &parts.flags, &[("platform", FlagType::String)])?;
    let args = split_args(&parts.rest);
    let name = match args.as_slice() {
        [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
            let lower = name.to_lowercase();
            let mut chars = lower.chars();
            let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
                && chars.all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
                });
            if !valid {
                return Err(Kind::InvalidStageName { name: name.clone() });
            }
            Some(lower)
        }
        [_] => None,
        _ => {
            return Err(Kind::args(
                "FROM",
                "requires either one or three arguments; write `FROM <image> [AS <name>]`",
            ));
        }
    };
    Ok(FromLine {
        base: args[0].clone(),
        name,
        platform: flags.string("platform"),
    })
}

fn args(rest: &str, escape: char, line: usize) -> Result<Vec<ArgDef>> {
    let words = parse_words(rest, escape);
    if words.is_empty() {
        return Err(at_least_one("ARG", "ARG NAME=default"));
    }
    words
        .into_iter()
        .map(|word| {
            let (name, default) = match word.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (word, None),
            };
            if name.is_empty() {
                return Err(Kind::args(
                    "ARG",
                    "names can not be blank; write NAME=value",
                ));
            }
            Ok(ArgDef {
                name,
                default,
                line,
            })
        })
        .collect()
}

/// ENV and LABEL: `k=v ...`, or the legacy `k v` where the value is the rest of the line.
fn key_values(instruction: &str, rest: &str, escape: char) -> Result<Vec<KeyValue>> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Err(at_least_one(instruction, "ENV KEY=value"));
    };
    if !first.contains('=') {
        let Some(i) = rest.find(is_arg_space) else {
            return Err(Kind::args(
                instruction,
                "must have two arguments; write KEY=value (or the legacy KEY value)",
            ));
        };
        return Ok(vec![KeyValue {
            key: rest[..i].to_string(),
            value: rest[i..].trim_start_matches(is_arg_space).to_string(),
        }]);
    }
    words
        .iter()
        .map(|word| {
            let Some((key, value)) = word.split_once('=') else {
                return Err(Kind::args(
                    instruction,
                    format!("syntax error - can't find = in {word:?}; write name=value"),
                ));
            };
            if key.is_empty() {
                return Err(Kind::args(
                    instruction,
                    "names can not be blank; write name=value",
                ));
            }
            Ok(KeyValue {
                key: key.to_string(),
                value: value.to_string(),
            })
        })
        .collect()
}

/// The exec (JSON) or shell form of RUN, CMD, ENTRYPOINT.
fn command_line(instruction: &str, rest: &str) -> Result<CommandLine> {
    match parse_json(rest) {
        Ok(args) => Ok(CommandLine::Exec(args)),
        Err(JsonError::NotStrings) => Err(Kind::NotStringArray {
            instruction: instruction.to_string(),
        }),
        Err(JsonError::NotJson) if rest.is_empty() => Err(Kind::args(
            instruction,
            "requires a command; write it in shell form or as a JSON array",
        )),
        Err(JsonError::NotJson) => Ok(CommandLine::Shell(rest.to_string())),
    }
}

/// The JSON array or whitespace-separated words of COPY, ADD and VOLUME.
fn json_or_words(instruction: &str, rest: &str) -> Result<Vec<String>> {
    match parse_json(rest) {
        Ok(list) => Ok(list),
        Err(JsonError::NotStrings) => Err(Kind::NotStringArray {
            instruction: instruction.to_string(),
        }),
        Err(JsonError::NotJson) => Ok(split_args(rest)),
    }
}

const RUN_FLAGS: &[(&str, FlagType)] = &[
    ("mount", FlagType::Strings),
    ("network", FlagType::String),
    ("security", FlagType::String),
];

fn run(parts: &CommandParts, input: &LineInput<'_>) -> Result<RunInstruction> {
    let flags = Flags::parse("RUN", &parts.flags, RUN_FLAGS)?;
    let network = match flags.raw("network") {
        None | Some("default") => NetworkMode::Default,
        Some("none") => NetworkMode::None,
        Some("host") => NetworkMode::Host,
        Some(other) => {
            return Err(Kind::InvalidFlag {
                instruction: "RUN".into(),
                flag: "--network".into(),
                message: format!("invalid network mode {other:?}; use default, none or host"),
            });
        }
    };
    let security = match flags.raw("security") {
        None | Some("sandbox") => SecurityMode::Sandbox,
        Some("insecure") => SecurityMode::Insecure,
        Some(other) => {
            return Err(Kind::InvalidFlag {
                instruction: "RUN".into(),
                flag: "--security".into(),
                message: format!("security {other:?} is not valid; use sandbox or insecure"),
            });
        }
    };
    let mut mounts = Vec::new();
    for raw in flags.strings("mount") {
        let spec = MountSpec { raw };
        spec.check_at_parse(input.escape)
            .map_err(|e| Kind::InvalidMount(Box::new(e)))?;
        mounts.push(spec);
    }
    let command = command_line("RUN", &parts.rest)?;
    let heredocs = match command {
        CommandLine::Shell(_) => input.heredocs.to_vec(),
        CommandLine::Exec(_) => Vec::new(),
    };
    Ok(RunInstruction {
        command,
        heredocs,
        mounts,
        network,
        security,
    })
}

/// Sources (paths or heredoc files) and the destination of COPY/ADD.
fn sources_and_dest(
    instruction: &str,
    list: &[String],
    heredocs: &[Heredoc],
) -> Result<(Vec<CopySource>, String)> {
    let Some((dest, sources)) = list.split_last().filter(|(_, s)| !s.is_empty()) else {
        return Err(Kind::args(
            instruction,
            "requires at least two arguments, sources and a destination; write e.g. \
             `COPY src/ /app/`",
        ));
    };
    if parse_heredoc(dest).ok().flatten().is_some() {
        return Err(Kind::args(
            instruction,
            "cannot accept a heredoc as a destination; put the destination path last",
        ));
    }
    let sources = sources
        .iter()
        .map(|src| match parse_heredoc(src).ok().flatten() {
            Some(mut doc) => {
                // The body comes from the line's heredocs; the last one of that name wins.
                if let Some(found) = heredocs.iter().rev().find(|h| h.name == doc.name) {
                    doc.content = found.content.clone();
                }
                CopySource::Heredoc(doc)
            }
            None => CopySource::Path(src.clone()),
        })
        .collect();
    Ok((sources, dest.clone()))
}

const COPY_FLAGS: &[(&str, FlagType)] = &[
    ("from", FlagType::String),
    ("chown", FlagType::String),
    ("chmod", FlagType::String),
    ("link", FlagType::Bool),
    ("parents", FlagType::Bool),
    ("exclude", FlagType::Strings),
];

fn copy(parts: &CommandParts, input: &LineInput<'_>) -> Result<CopyInstruction> {
    let list = json_or_words("COPY", &parts.rest)?;
    let flags = Flags::parse("COPY", &parts.flags, COPY_FLAGS)?;
    let (sources, dest) = sources_and_dest("COPY", &list, input.heredocs)?;
    let from = flags.string("from");
    if let Some(from) = &from {
        // BuildKit resolves --from before any environment exists: a word that changes when
        // expanded with no variables at all uses expansion, which it refuses.
        if expand_word(from, &|_| None, input.escape).as_deref() != Ok(from.as_str()) {
            return Err(Kind::InvalidFlag {
                instruction: "COPY".into(),
                flag: "--from".into(),
                message: "variable expansion is not supported for --from; define a stage with \
                          a global ARG (`FROM ${IMAGE} AS src`) and copy from that stage"
                    .into(),
            });
        }
    }
    Ok(CopyInstruction {
        sources,
        dest,
        from,
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link"),
        parents: flags.bool("parents"),
        excludes: flags.strings("exclude"),
    })
}

const ADD_FLAGS: &[(&str, FlagType)] = &[
    ("chown", FlagType::String),
    ("chmod", FlagType::String),
    ("link", FlagType::Bool),
    ("checksum", FlagType::String),
    ("keep-git-dir", FlagType::Bool),
    ("unpack", FlagType::Bool),
    ("exclude", FlagType::Strings),
];

fn add(parts: &CommandParts, input: &LineInput<'_>) -> Result<AddInstruction> {
    let list = json_or_words("ADD", &parts.rest)?;
    let flags = Flags::parse("ADD", &parts.flags, ADD_FLAGS)?;
    let (sources, dest) = sources_and_dest("ADD", &list, input.heredocs)?;
    Ok(AddInstruction {
        sources,
        dest,
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link"),
        checksum: flags.string("checksum"),
        keep_git_dir: flags.opt_bool("keep-git-dir"),
        unpack: flags.opt_bool("unpack"),
        excludes: flags.strings("exclude"),
    })
}

fn volume(parts: &CommandParts) -> Result<InstructionKind> {
    no_flags("VOLUME", parts)?;
    let list = json_or_words("VOLUME", &parts.rest)?;
    if list.is_empty() {
        return Err(at_least_one("VOLUME", "VOLUME /data"));
    }
    let mut paths = Vec::with_capacity(list.len());
    for path in list {
        let path = path.trim();
        if path.is_empty() {
            return Err(Kind::args("VOLUME", "a volume can not be an empty string"));
        }
        paths.push(path.to_string());
    }
    Ok(InstructionKind::Volume { paths })
}

fn shell(parts: &CommandParts) -> Result<InstructionKind> {
    no_flags("SHELL", parts)?;
    match parse_json(&parts.rest) {
        Ok(args) if args.is_empty() => Err(at_least_one("SHELL", "SHELL [\"/bin/sh\", \"-c\"]")),
        Ok(args) => Ok(InstructionKind::Shell { args }),
        Err(JsonError::NotStrings) => Err(Kind::NotStringArray {
            instruction: "SHELL".into(),
        }),
        Err(JsonError::NotJson) if parts.rest.is_empty() => {
            Err(at_least_one("SHELL", "SHELL [\"/bin/sh\", \"-c\"]"))
        }
        Err(JsonError::NotJson) => Err(Kind::JsonRequired {
            instruction: "SHELL".into(),
            example: "SHELL [\"/bin/bash\", \"-c\"]",
        }),
    }
}

const HEALTHCHECK_FLAGS: &[(&str, FlagType)] = &[
    ("interval", FlagType::String),
    ("timeout", FlagType::String),
    ("start-period", FlagType::String),
    ("start-interval", FlagType::String),
    ("retries", FlagType::String),
];

fn healthcheck(parts: &CommandParts) -> Result<Healthcheck> {
    let rest = parts.rest.as_str();
    if rest.is_empty() {
        return Err(at_least_one(
            "HEALTHCHECK",
            "HEALTHCHECK CMD curl -f http://localhost/",
        ));
    }
    let (typ, command) = match rest.find(is_space) {
        Some(i) => (&rest[..i], rest[i..].trim_start()),
        None => (rest, ""),
    };
    let flags = Flags::parse("HEALTHCHECK", &parts.flags, HEALTHCHECK_FLAGS)?;
    let parsed = match parse_json(command) {
        Ok(args) => CommandLine::Exec(args),
        Err(JsonError::NotStrings) => {
            return Err(Kind::NotStringArray {
                instruction: "HEALTHCHECK".into(),
            });
        }
        Err(JsonError::NotJson) => CommandLine::Shell(command.to_string()),
    };
    let message = |m: String| Kind::Healthcheck { message: m };
    match typ.to_uppercase().as_str() {
        "NONE" if command.is_empty() => Ok(Healthcheck::None),
        "NONE" => Err(message("NONE takes no arguments; remove them".into())),
        "CMD" => {
            let empty = match &parsed {
                CommandLine::Exec(args) => args.is_empty(),
                CommandLine::Shell(s) => s.is_empty(),
            };
            if empty {
                return Err(message("missing command after HEALTHCHECK CMD".into()));
            }
            let retries = match flags.string("retries") {
                None => 0,
                Some(v) => match v.parse::<i32>() {
                    Ok(n) => u32::try_from(n)
                        .map_err(|_| message(format!("--retries cannot be negative ({n})")))?,
                    Err(_) => {
                        return Err(message(format!(
                            "invalid --retries {v:?}; give a whole number"
                        )));
                    }
                },
            };
            Ok(Healthcheck::Check(HealthConfig {
                command: parsed,
                interval: interval(&flags, "interval")?,
                timeout: interval(&flags, "timeout")?,
                start_period: interval(&flags, "start-period")?,
                start_interval: interval(&flags, "start-interval")?,
                retries,
            }))
        }
        _ => Err(message(format!("unknown type {typ:?}; use CMD or NONE"))),
    }
}

/// A HEALTHCHECK duration flag: zero when absent, at least 1ms otherwise.
fn interval(flags: &Flags, name: &str) -> Result<Duration> {
    let Some(value) = flags.string(name) else {
        return Ok(Duration::ZERO);
    };
    let invalid = |m: String| Kind::InvalidFlag {
        instruction: "HEALTHCHECK".into(),
        flag: format!("--{name}"),
        message: m,
    };
    let d = parse_go_duration(&value).ok_or_else(|| {
        invalid(format!(
            "invalid duration {value:?}; write e.g. 30s or 1m30s"
        ))
    })?;
    if !d.is_zero() && d < Duration::from_millis(1) {
        return Err(invalid("cannot be less than 1ms".into()));
    }
    Ok(d)
}

fn onbuild(parts: &CommandParts, input: &LineInput<'_>) -> Result<OnbuildInstruction> {
    no_flags("ONBUILD", parts)?;
    if parts.rest.is_empty() {
        return Err(at_least_one("ONBUILD", "ONBUILD RUN make"));
    }
    let inner = split_command(&parts.rest, input.escape);
    let trigger_name = inner.name.to_uppercase();
    match trigger_name.as_str() {
        "ONBUILD" => {
            return Err(Kind::Onbuild {
                message: "chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into(),
            });
        }
        "FROM" | "MAINTAINER" => {
            return Err(Kind::Onbuild {
                message: format!("{trigger_name} isn't allowed as an ONBUILD trigger"),
            });
        }
        _ => {}
    }
    let trigger = match parse_line(&LineInput {
        text: &parts.rest,
        ..*input
    })? {
        Parsed::Instruction(kind) => kind,
        Parsed::From(_) => {
            return Err(Kind::Onbuild {
                message: "FROM isn't allowed as an ONBUILD trigger".into(),
            });
        }
    };
    let mut expression = strip_onbuild(input.text).to_string();
    for doc in input.heredocs {
        expression.push('\n');
        expression.push_str(&doc.content);
        expression.push_str(&doc.name);
    }
    Ok(OnbuildInstruction {
        expression,
        trigger: Box::new(trigger),
    })
}

/// The text after `ONBUILD` and its surrounding spaces.
fn strip_onbuild(text: &str) -> &str {
    let is_re_space = |c: char| matches!(c, '\t' | '\n' | '\u{0C}' | '\r' | ' ');
    let t = text.trim_start_matches(is_re_space);
    match t.get(..7) {
        Some(kw) if kw.eq_ignore_ascii_case("onbuild") => t[7..].trim_start_matches(is_re_space),
        _ => text,
    }
}
