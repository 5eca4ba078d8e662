//! Word expansion as BuildKit's shell lexer (`frontend/dockerfile/shell/lex.go`) does it:
//! `$VAR`, `${VAR}`, the `${VAR:-w}` family, `#`/`%` trimming, `/` replacement, single and
//! double quotes, the escape character, and (for [`expand_words`]) splitting into words after
//! substitution. It is a pure function of the text and an environment lookup: the builder calls
//! it at build time with the environment in force before each instruction. It never runs a
//! shell and knows nothing about instructions.

use super::error::{ExpandError, ExpandErrorKind};
use super::pattern::{self, ShellPattern};

/// Looks a variable up in the environment in force; `None` means unset.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// How deeply `${a:-${b:-...}}` may nest before we refuse (BuildKit has no limit; we keep the
/// stack bounded on hostile input).
const MAX_DEPTH: usize = 200;

/// Expands one word: substitutes variables, removes quotes and escapes, keeps spaces.
/// This is BuildKit's `ProcessWord`, used for ENV/LABEL/ARG values, COPY/ADD paths, WORKDIR,
/// USER, VOLUME, STOPSIGNAL and FROM.
pub fn expand_word(word: &str, env: EnvLookup<'_>, escape: char) -> Result<String, ExpandError> {
    Lexer::new(escape).process_word(word, env)
}

/// Expands a word and splits the result into words at unquoted whitespace (BuildKit's
/// `ProcessWords`, used for EXPOSE). Whitespace that comes from a variable splits too; quoted
/// whitespace does not.
pub fn expand_words(
    word: &str,
    env: EnvLookup<'_>,
    escape: char,
) -> Result<Vec<String>, ExpandError> {
    Lexer::new(escape).process_words(word, env)
}

/// Expands the body of a COPY/ADD heredoc whose delimiter was not quoted: variables and `\`
/// escapes are processed, quotes are kept as written (BuildKit's `ExpandRaw`, which always uses
/// `\` whatever the escape directive says).
pub fn expand_heredoc(content: &str, env: EnvLookup<'_>) -> Result<String, ExpandError> {
    let mut lexer = Lexer::new('\\');
    lexer.skip_process_quotes = true;
    lexer.process_word(content, env)
}

/// The lexer's switches, named as in BuildKit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lexer {
    pub(crate) escape: char,
    /// Keep quote characters in the result.
    pub(crate) raw_quotes: bool,
    /// Keep escape characters in the result.
    pub(crate) raw_escapes: bool,
    /// Treat quotes as ordinary characters.
    pub(crate) skip_process_quotes: bool,
    /// Leave references to unset variables as written.
    pub(crate) skip_unset_env: bool,
}

impl Lexer {
    pub(crate) fn new(escape: char) -> Self {
        Self {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
        }
    }

    pub(crate) fn process_word(
        &self,
        word: &str,
        env: EnvLookup<'_>,
    ) -> Result<String, ExpandError> {
        self.process(word, env).map(|(result, _)| result)
    }

    pub(crate) fn process_words(
        &self,
        word: &str,
        env: EnvLookup<'_>,
    ) -> Result<Vec<String>, ExpandError> {
        self.process(word, env).map(|(_, words)| words)
    }

    fn process(
        &self,
        word: &str,
        env: EnvLookup<'_>,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let mut scanner = Scanner {
            lex: *self,
            chars: word.chars().collect(),
            pos: 0,
            env,
            depth: 0,
        };
        scanner
            .process_stop_on(None, self.raw_escapes)
            .map_err(|kind| ExpandError {
                word: word.to_string(),
                kind,
            })
    }
}

/// Collects words while the result is built: whitespace produced by unquoted text or by a
/// variable ends a word, quoted text and escaped characters never do.
#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.buf.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(self.buf);
        }
        self.words
    }
}

struct Scanner<'a> {
    lex: Lexer,
    chars: Vec<char>,
    pos: usize,
    env: EnvLookup<'a>,
    depth: usize,
}

type Step<T> = Result<T, ExpandErrorKind>;

impl Scanner<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Processes text until `stop` (consumed) or the end, returning the expanded text and its
    /// words. Running out of text while looking for `stop` is an error.
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Step<(String, Vec<String>)> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let tmp = self.process_dollar()?;
                    result.push_str(&tmp);
                    words.add_string(&tmp);
                }
                '<' => {
                    let tmp = self.process_possible_heredoc();
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                '\'' if !self.lex.skip_process_quotes => {
                    let tmp = self.process_single_quote()?;
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                '"' if !self.lex.skip_process_quotes => {
                    let tmp = self.process_double_quote(raw_escapes)?;
                    result.push_str(&tmp);
                    words.add_raw_string(&tmp);
                }
                _ => {
                    self.next();
                    if ch == self.lex.escape {
                        if raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // An escape at the very end of the text is dropped.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        match stop {
            None => Ok((result, words.finish())),
            Some('}') => Err(ExpandErrorKind::Unterminated("'}'")),
            Some(_) => Err(ExpandErrorKind::Unterminated("'/'")),
        }
    }

    fn process_single_quote(&mut self) -> Step<String> {
        let mut result = String::new();
        let quote = self.next();
        if self.lex.raw_quotes {
            result.extend(quote);
        }
        loop {
            match self.next() {
                None => return Err(ExpandErrorKind::Unterminated("single-quote")),
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self, raw_escapes: bool) -> Step<String> {
        let mut result = String::new();
        let quote = self.next();
        if self.lex.raw_quotes {
            result.extend(quote);
        }
        loop {
            match self.peek() {
                None => return Err(ExpandErrorKind::Unterminated("double-quote")),
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(_) => {
                    let Some(mut ch) = self.next() else { continue };
                    if ch == self.lex.escape {
                        if raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            // A trailing escape is ignored; the loop then reports the open quote.
                            None => continue,
                            // Only these can be escaped inside double quotes; any other escape
                            // stays as written.
                            Some(c) if c == '"' || c == '$' || c == self.lex.escape => {
                                self.next();
                                ch = c;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn process_possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".to_string();
        }
        self.next();
        // `<< EOF` is one word: the space belongs to the heredoc marker.
        let mut result = "<<".to_string();
        while let Some(c @ ('\t' | '\r' | ' ')) = self.peek() {
            result.push(c);
            self.next();
        }
        result
    }

    fn lookup(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    fn process_dollar(&mut self) -> Step<String> {
        self.depth += 1;
        let result = if self.depth > MAX_DEPTH {
            Err(ExpandErrorKind::TooDeep(MAX_DEPTH))
        } else {
            self.process_dollar_inner()
        };
        self.depth -= 1;
        result
    }

    fn process_dollar_inner(&mut self) -> Step<String> {
        self.next(); // '$'
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next(); // '{'
        match self.peek() {
            None => return Err(ExpandErrorKind::MissingBrace),
            Some('{' | '}' | ':') => return Err(ExpandErrorKind::BadSubstitution),
            Some(_) => {}
        }
        let name = self.process_name();
        let Some(first) = self.next() else {
            return Err(ExpandErrorKind::MissingBrace);
        };
        match first {
            '}' => Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' => {
                let modifier = self.next();
                let spelled = format!(":{}", modifier.map(String::from).unwrap_or_default());
                self.process_modifier(&name, modifier, true, spelled)
            }
            '+' | '-' | '?' | '#' | '%' => {
                self.process_modifier(&name, Some(first), false, first.to_string())
            }
            '/' => self.process_replacement(&name),
            other => Err(ExpandErrorKind::UnsupportedModifier(other.to_string())),
        }
    }

    /// `${NAME<mod>word}` once the modifier character has been read.
    fn process_modifier(
        &mut self,
        name: &str,
        modifier: Option<char>,
        null_is_unset: bool,
        spelled: String,
    ) -> Step<String> {
        let trims = matches!(modifier, Some('#' | '%'));
        if null_is_unset && trims {
            return Err(ExpandErrorKind::UnsupportedModifier(spelled));
        }
        let word = match self.process_stop_on(Some('}'), trims) {
            Ok((word, _)) => word,
            Err(_) if self.peek().is_none() => return Err(ExpandErrorKind::MissingBrace),
            Err(e) => return Err(e),
        };
        let value = self.lookup(name);
        if self.lex.skip_unset_env && value.is_none() {
            return Ok(format!("${{{name}{spelled}{word}}}"));
        }
        let unset_or_null = match &value {
            None => true,
            Some(v) => null_is_unset && v.is_empty(),
        };
        match modifier {
            Some('-') => Ok(if unset_or_null {
                word
            } else {
                value.unwrap_or_default()
            }),
            Some('+') => Ok(if unset_or_null { String::new() } else { word }),
            Some('?') => match value {
                Some(v) if !unset_or_null => Ok(v),
                v => {
                    let default = if v.is_none() {
                        "is not allowed to be unset"
                    } else {
                        "is not allowed to be empty"
                    };
                    Err(ExpandErrorKind::Required {
                        name: name.to_string(),
                        message: if word.is_empty() {
                            default.to_string()
                        } else {
                            word
                        },
                    })
                }
            },
            Some(m @ ('#' | '%')) => {
                // A doubled modifier (`##`, `%%`) asks for the longest match.
                let (longest, pat) = match word.strip_prefix(m) {
                    Some(rest) => (true, rest),
                    None => (false, word.as_str()),
                };
                let compiled =
                    ShellPattern::compile(pat).map_err(|reason| ExpandErrorKind::BadPattern {
                        pattern: pat.to_string(),
                        reason,
                    })?;
                let value = value.unwrap_or_default();
                Ok(if m == '%' {
                    pattern::trim_suffix(&compiled, &value, longest)
                } else {
                    pattern::trim_prefix(&compiled, &value, longest)
                })
            }
            _ => Err(ExpandErrorKind::UnsupportedModifier(spelled)),
        }
    }

    /// `${NAME/pattern/replacement}` and `${NAME//pattern/replacement}` once `/` has been read.
    fn process_replacement(&mut self, name: &str) -> Step<String> {
        let all = self.peek() == Some('/');
        if all {
            self.next();
        }
        let pat = match self.process_stop_on(Some('/'), true) {
            Ok((p, _)) => p,
            Err(_) if self.peek().is_none() => return Err(ExpandErrorKind::MissingSlash),
            Err(e) => return Err(e),
        };
        let replacement = match self.process_stop_on(Some('}'), true) {
            Ok((r, _)) => r,
            Err(_) if self.peek().is_none() => return Err(ExpandErrorKind::MissingBrace),
            Err(e) => return Err(e),
        };
        let value = self.lookup(name);
        if self.lex.skip_unset_env && value.is_none() {
            return Ok(format!("${{{name}/{pat}/{replacement}}}"));
        }
        let compiled =
            ShellPattern::compile(&pat).map_err(|reason| ExpandErrorKind::BadPattern {
                pattern: pat.clone(),
                reason,
            })?;
        // An unset variable is replaced as the empty string (so an empty pattern still
        // inserts the replacement), as BuildKit does.
        let value = value.unwrap_or_default();
        Ok(pattern::replace(&compiled, &value, &replacement, all))
    }

    /// A variable name: letters, digits and `_`; or a run of digits (positional parameter);
    /// or one special parameter character.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                while let Some(d) = self.peek().filter(|c| c.is_numeric()) {
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !(ch.is_alphabetic() || ch.is_numeric() || ch == '_') {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }
}

#[cfg(test)]
#[path = "shell_tests.rs"]
mod tests;
