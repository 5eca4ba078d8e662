//! Physical lines to logical instruction lines, as BuildKit's `parser.Parse` reads a file:
//! parser directives at the top, comments and blank lines, continuation lines (comment lines
//! and empty lines inside a continuation are dropped), and heredoc bodies after the line that
//! opens them. It decides nothing about instructions beyond "can this one take heredocs".

use super::error::DockerfileErrorKind as Kind;
use super::heredoc::{Heredoc, heredocs_from_line};
use super::split::{parse_json, split_command};

/// Parser directives (`# syntax=`, `# escape=`, `# check=`) found at the top of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// `# syntax=`: the frontend image BuildKit would use; oxkit records it and builds with its
    /// own parser.
    pub syntax: Option<String>,
    /// `# escape=`: the escape and line-continuation character, `\` (default) or `` ` ``.
    pub escape: char,
    /// `# check=`: lint configuration; recorded, not acted on.
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Self {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

/// Something worth telling the user that does not stop the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 1-based line of the instruction concerned.
    pub line: usize,
    pub message: String,
}

/// One instruction's text with its heredoc bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogicalLine {
    pub(crate) text: String,
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) heredocs: Vec<Heredoc>,
}

#[derive(Debug)]
pub(crate) struct Lexed {
    pub(crate) directives: Directives,
    pub(crate) lines: Vec<LogicalLine>,
    pub(crate) warnings: Vec<Warning>,
}

/// A lexing failure and the line it belongs to.
pub(crate) type LexError = (usize, Kind);

struct PhysicalLines<'a> {
    iter: std::str::SplitInclusive<'a, char>,
    /// Number of lines handed out so far (= 1-based number of the last one).
    count: usize,
}

impl<'a> PhysicalLines<'a> {
    fn next(&mut self) -> Option<&'a str> {
        let line = self.iter.next()?;
        self.count += 1;
        Some(line)
    }
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Go regexp `\s`.
fn is_re_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{0C}' | '\r' | ' ')
}

/// Recognises the directives that may open a file; stops at the first line that is not one.
struct DirectiveParser {
    done: bool,
    directives: Directives,
    seen: Vec<String>,
}

impl DirectiveParser {
    /// Returns true when `line` (newline and leading space trimmed) was a directive.
    fn feed(&mut self, line: &str) -> Result<bool, String> {
        if self.done {
            return Ok(false);
        }
        let Some((key, value)) = directive(line) else {
            self.done = true;
            return Ok(false);
        };
        if self.seen.contains(&key) {
            return Err(format!(
                "only one {key} parser directive can be used; remove the others"
            ));
        }
        match key.as_str() {
            "escape" => match value.as_str() {
                "\\" => self.directives.escape = '\\',
                "`" => self.directives.escape = '`',
                other => {
                    return Err(format!(
                        "invalid escape token {other:?}; use ` (backtick) or \\ (backslash)"
                    ));
                }
            },
            "syntax" => self.directives.syntax = Some(value),
            _ => self.directives.check = Some(value),
        }
        self.seen.push(key);
        Ok(true)
    }
}

/// `#key=value` with a known key (BuildKit's `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`).
fn directive(line: &str) -> Option<(String, String)> {
    let body = line.strip_prefix('#')?.trim_start();
    let name_len = body
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(body.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let key = body[..name_len].to_ascii_lowercase();
    let after = body[name_len..]
        .trim_start_matches(is_re_space)
        .strip_prefix('=')?;
    // The value is at least one character: spaces only count when nothing else is there.
    let trimmed = after.trim_matches(is_re_space);
    let value = if trimmed.is_empty() {
        after.chars().last()?.to_string()
    } else {
        trimmed.to_string()
    };
    matches!(key.as_str(), "syntax" | "escape" | "check").then_some((key, value))
}

/// The continuation rule: a line ending in the escape character (trailing spaces and tabs
/// allowed) continues, unless that escape character is itself escaped.
fn trim_continuation(line: &str, escape: char) -> (String, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    if let Some(before) = trimmed.strip_suffix(escape)
        && (before.is_empty() || !before.ends_with(escape))
    {
        return (before.to_string(), false);
    }
    (line.to_string(), true)
}

/// Whether the instruction on `line` reads heredoc bodies: RUN, COPY and ADD in shell form,
/// also as an ONBUILD trigger.
fn takes_heredocs(line: &str, escape: char) -> bool {
    let parts = split_command(line, escape);
    let parts = if parts.name.eq_ignore_ascii_case("onbuild") && !parts.rest.is_empty() {
        split_command(&parts.rest, escape)
    } else {
        parts
    };
    ["run", "copy", "add"]
        .iter()
        .any(|n| parts.name.eq_ignore_ascii_case(n))
        && parse_json(&parts.rest).is_err()
}

pub(crate) fn lex(text: &str) -> Result<Lexed, LexError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = PhysicalLines {
        iter: text.split_inclusive('\n'),
        count: 0,
    };
    let mut parser = DirectiveParser {
        done: false,
        directives: Directives::default(),
        seen: Vec::new(),
    };
    let mut logical = Vec::new();
    let mut warnings = Vec::new();
    while let Some(raw) = lines.next() {
        let start = lines.count;
        let token = trim_newline(raw).trim_start();
        parser
            .feed(token)
            .map_err(|message| (start, Kind::Directive { message }))?;
        let escape = parser.directives.escape;
        let token = if is_comment(token) { "" } else { token };
        let (mut buf, mut at_end) = trim_continuation(token, escape);
        if at_end && buf.is_empty() {
            continue;
        }
        let mut empty_continuation = false;
        while !at_end {
            let Some(raw) = lines.next() else { break };
            if is_comment(raw) {
                continue;
            }
            let token = trim_newline(raw);
            if token.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (part, end) = trim_continuation(token, escape);
            buf.push_str(&part);
            at_end = end;
        }
        if empty_continuation {
            warnings.push(Warning {
                line: start,
                message: "empty continuation line; remove the blank line (BuildKit will make \
                          this an error)"
                    .to_string(),
            });
        }
        let mut heredocs = Vec::new();
        if buf.contains("<<") && takes_heredocs(&buf, escape) {
            let opened = heredocs_from_line(&buf).map_err(|e| {
                (
                    start,
                    Kind::Arguments {
                        instruction: "heredoc".to_string(),
                        message: e.to_string(),
                    },
                )
            })?;
            for mut doc in opened {
                let mut terminated = false;
                while let Some(raw) = lines.next() {
                    let candidate = trim_newline(raw);
                    let candidate = if doc.chomp {
                        candidate.trim_start_matches('\t')
                    } else {
                        candidate
                    };
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(raw);
                }
                if !terminated {
                    return Err((start, Kind::UnterminatedHeredoc { name: doc.name }));
                }
                heredocs.push(doc);
            }
        }
        logical.push(LogicalLine {
            text: buf,
            start,
            end: lines.count,
            heredocs,
        });
    }
    if logical.is_empty() {
        return Err((lines.count.max(1), Kind::NoInstructions));
    }
    Ok(Lexed {
        directives: parser.directives,
        lines: logical,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_lines() {
        assert_eq!(directive("# escape=`"), Some(("escape".into(), "`".into())));
        assert_eq!(
            directive("#escape = `"),
            Some(("escape".into(), "`".into()))
        );
        assert_eq!(
            directive("# Syntax = docker/dockerfile:1 "),
            Some(("syntax".into(), "docker/dockerfile:1".into()))
        );
        assert_eq!(
            directive("# check=skip=all"),
            Some(("check".into(), "skip=all".into()))
        );
        assert_eq!(directive("# escape= "), Some(("escape".into(), " ".into())));
        assert_eq!(directive("# escape="), None);
        assert_eq!(directive("# foo=bar"), None);
        assert_eq!(directive("# a comment"), None);
        assert_eq!(directive("escape=`"), None);
        assert_eq!(directive("# 1escape=`"), None);
    }

    #[test]
    fn continuation_rule() {
        assert_eq!(trim_continuation("a \\", '\\'), ("a ".into(), false));
        assert_eq!(trim_continuation("a\\  \t", '\\'), ("a".into(), false));
        assert_eq!(trim_continuation("\\", '\\'), ("".into(), false));
        assert_eq!(trim_continuation("a\\\\", '\\'), ("a\\\\".into(), true));
        assert_eq!(trim_continuation("a `", '`'), ("a ".into(), false));
        assert_eq!(trim_continuation("c:\\", '`'), ("c:\\".into(), true));
        assert_eq!(trim_continuation("a b ", '\\'), ("a b ".into(), true));
    }

    #[test]
    fn heredoc_capable_instructions() {
        assert!(takes_heredocs("RUN <<EOF", '\\'));
        assert!(takes_heredocs("copy <<EOF /x", '\\'));
        assert!(takes_heredocs("ONBUILD ADD <<EOF /x", '\\'));
        assert!(!takes_heredocs("RUN [\"<<EOF\"]", '\\'));
        assert!(!takes_heredocs("USER <<EOF", '\\'));
        assert!(!takes_heredocs("ONBUILD", '\\'));
    }
}
