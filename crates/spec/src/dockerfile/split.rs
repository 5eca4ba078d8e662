//! Splitting one logical instruction line the way BuildKit's AST parser does: the instruction
//! name, the leading `--flags`, and the arguments as whitespace-separated words, quote-aware
//! words (ENV/LABEL/ARG), or a JSON array. Words keep their quotes and `$` references: expansion
//! happens later, at build time.

/// Go's `unicode.IsSpace` (the Unicode White_Space property).
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// The `[\t\v\f\r ]` class BuildKit splits arguments on.
pub(crate) fn is_arg_space(c: char) -> bool {
    matches!(c, '\t' | '\u{0B}' | '\u{0C}' | '\r' | ' ')
}

/// An instruction line cut into name, flags and the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommandParts {
    /// The instruction name as written (any case).
    pub(crate) name: String,
    /// `--flag[=value]` words before the arguments, quotes and escapes already processed.
    pub(crate) flags: Vec<String>,
    /// Everything after the flags, trimmed.
    pub(crate) rest: String,
}

pub(crate) fn split_command(line: &str, escape: char) -> CommandParts {
    let line = line.trim();
    let (name, args) = match line.find(is_arg_space) {
        Some(i) => (&line[..i], Some(line[i..].trim_start_matches(is_arg_space))),
        None => (line, None),
    };
    let (rest, flags) = match args {
        Some(args) => extract_flags(args, escape),
        None => (String::new(), Vec::new()),
    };
    CommandParts {
        name: name.to_string(),
        flags,
        rest: rest.trim().to_string(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Spaces,
    Word,
    Quote(char),
}

/// Takes the leading words that start with `--` off `line`. A bare `--` ends the flags.
fn extract_flags(line: &str, escape: char) -> (String, Vec<String>) {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut flags = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut blank_ok = false;
    let mut i = 0;
    loop {
        let Some(&(pos, ch)) = chars.get(i) else {
            if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
                flags.push(word);
            }
            return (String::new(), flags);
        };
        match phase {
            Phase::Spaces => {
                if is_space(ch) {
                    i += 1;
                    continue;
                }
                if ch != '-' || chars.get(i + 1).map(|c| c.1) != Some('-') {
                    return (line[pos..].to_string(), flags);
                }
                phase = Phase::Word;
            }
            Phase::Word => {
                if is_space(ch) {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (line[pos..].to_string(), flags);
                    }
                    if blank_ok || !word.is_empty() {
                        flags.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    i += 1;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                    i += 1;
                    continue;
                }
                if ch == escape {
                    match chars.get(i + 1) {
                        None => {
                            i += 1;
                            continue;
                        }
                        Some(&(_, next)) => {
                            word.push(next);
                            i += 2;
                            continue;
                        }
                    }
                }
                word.push(ch);
                i += 1;
            }
            Phase::Quote(q) => {
                if ch == q {
                    phase = Phase::Word;
                    i += 1;
                    continue;
                }
                if ch == escape {
                    match chars.get(i + 1) {
                        None => {
                            phase = Phase::Word;
                            i += 1;
                            continue;
                        }
                        Some(&(_, next)) => {
                            word.push(next);
                            i += 2;
                            continue;
                        }
                    }
                }
                word.push(ch);
                i += 1;
            }
        }
    }
}

/// Quote-aware words for ENV, LABEL and ARG: splits at unquoted whitespace but keeps quotes
/// and escapes in the words (they are removed when the word is expanded).
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let n = chars.len();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut blank_ok = false;
    let mut i = 0;
    while i <= n {
        let ch = chars.get(i).copied();
        if phase == Phase::Spaces {
            match ch {
                None => break,
                Some(c) if is_space(c) => {
                    i += 1;
                    continue;
                }
                Some(_) => phase = Phase::Word,
            }
        }
        let Some(mut ch) = ch else {
            if blank_ok || !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            break;
        };
        match phase {
            Phase::Word => {
                if is_space(ch) {
                    phase = Phase::Spaces;
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    i += 1;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    if i + 1 == n {
                        i += 1;
                        continue; // an escape at the very end is dropped
                    }
                    // Unquoted, an escape and the next character are both kept, even a quote.
                    word.push(ch);
                    i += 1;
                    ch = chars[i];
                }
                word.push(ch);
            }
            Phase::Quote(q) => {
                if ch == q {
                    phase = Phase::Word;
                }
                if ch == escape && q != '\'' {
                    if i + 1 == n {
                        phase = Phase::Word;
                        i += 1;
                        continue;
                    }
                    word.push(ch);
                    i += 1;
                    ch = chars[i];
                }
                word.push(ch);
            }
            Phase::Spaces => {}
        }
        i += 1;
    }
    words
}

/// BuildKit's whitespace split (`[\t\v\f\r ]+`); an empty string has no words.
pub(crate) fn split_args(rest: &str) -> Vec<String> {
    if rest.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_space = false;
    for c in rest.chars() {
        if is_arg_space(c) {
            if !in_space {
                out.push(std::mem::take(&mut word));
            }
            in_space = true;
        } else {
            in_space = false;
            word.push(c);
        }
    }
    out.push(word);
    out
}

/// Why arguments are not a JSON string array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonError {
    /// Not JSON (or not an array): the shell form applies.
    NotJson,
    /// A JSON array with an element that is not a string: always an error.
    NotStrings,
}

/// Parses `rest` as a JSON array of strings (the exec form).
pub(crate) fn parse_json(rest: &str) -> Result<Vec<String>, JsonError> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Err(JsonError::NotJson);
    }
    let values: Vec<serde_json::Value> =
        serde_json::from_str(rest).map_err(|_| JsonError::NotJson)?;
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(JsonError::NotStrings),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_split_with_flags() {
        let p = split_command("  copy --from=build --chown=\"a b\" -- --x /y ", '\\');
        assert_eq!(p.name, "copy");
        assert_eq!(p.flags, ["--from=build", "--chown=a b"]);
        assert_eq!(p.rest, "--x /y");
        let p = split_command("COPY --doit=true -- foo /tmp/", '\\');
        assert_eq!(
            (p.flags.as_slice(), p.rest.as_str()),
            (&["--doit=true".to_string()][..], "foo /tmp/")
        );
        let p = split_command("CMD --doit -- [ ]", '\\');
        assert_eq!((p.flags.len(), p.rest.as_str()), (1, "[ ]"));
        let p = split_command("RUN --mount=type=cache,target=/x\techo -n --hi", '\\');
        assert_eq!(p.flags, ["--mount=type=cache,target=/x"]);
        assert_eq!(p.rest, "echo -n --hi");
        let p = split_command("RUN", '\\');
        assert_eq!((p.name.as_str(), p.rest.as_str()), ("RUN", ""));
        let p = split_command("LABEL --é=ü x", '\\');
        assert_eq!(p.flags, ["--é=ü"]);
        let p = split_command("RUN --a=`\" x", '`');
        assert_eq!(p.flags, ["--a=\""]);
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        assert_eq!(parse_words("foo", '\\'), ["foo"]);
        assert_eq!(parse_words("foo bar", '\\'), ["foo", "bar"]);
        assert_eq!(parse_words("foo\\ bar", '\\'), ["foo\\ bar"]);
        assert_eq!(
            parse_words("foo bar 'abc xyz'", '\\'),
            ["foo", "bar", "'abc xyz'"]
        );
        assert_eq!(
            parse_words("föo bàr \"âbc xÿz\"", '\\'),
            ["föo", "bàr", "\"âbc xÿz\""]
        );
        assert_eq!(
            parse_words("a=\"x \\\" y\" b=''", '\\'),
            ["a=\"x \\\" y\"", "b=''"]
        );
        assert_eq!(parse_words("a\\", '\\'), ["a"]);
        assert!(parse_words("   ", '\\').is_empty());
    }

    #[test]
    fn json_forms() {
        assert_eq!(
            parse_json(" [\"a\", \"b\"] "),
            Ok(vec!["a".into(), "b".into()])
        );
        assert_eq!(parse_json("[]"), Ok(vec![]));
        assert_eq!(parse_json("[\"a\", 1]"), Err(JsonError::NotStrings));
        assert_eq!(parse_json("['a']"), Err(JsonError::NotJson));
        assert_eq!(parse_json("[\"a\""), Err(JsonError::NotJson));
        assert_eq!(parse_json("echo [\"a\"]"), Err(JsonError::NotJson));
        assert_eq!(parse_json("[\"a\"] x"), Err(JsonError::NotJson));
    }

    #[test]
    fn arg_split() {
        assert_eq!(split_args("a  b\tc"), ["a", "b", "c"]);
        assert!(split_args("").is_empty());
        assert_eq!(split_args("a\u{a0}b"), ["a\u{a0}b"]);
    }
}
