//! The shell patterns of `${VAR#pat}`, `${VAR%pat}` and `${VAR/pat/repl}`, with BuildKit's rules:
//! `*` (any run), `?` (one character), `\*` `\?` `\\` literals, `\}` `\/` the plain character;
//! no bracket expressions. Like BuildKit (which compiles them to Go regular expressions), `*`
//! and `?` never match a newline. Used only by the word expander.

/// One element of a compiled pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Star,
    Any,
    Lit(char),
}

/// A compiled shell pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShellPattern {
    toks: Vec<Tok>,
}

impl ShellPattern {
    /// Compiles `pattern`, or says which escape is invalid.
    pub(crate) fn compile(pattern: &str) -> Result<Self, String> {
        let mut toks = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '*' => toks.push(Tok::Star),
                '?' => toks.push(Tok::Any),
                '\\' => match chars.peek() {
                    // `}` and `/` had to be escaped to end up in the pattern at all; the escape
                    // itself is not part of the pattern.
                    Some('}') | Some('/') => {}
                    Some(&t @ ('*' | '?' | '\\')) => {
                        chars.next();
                        toks.push(Tok::Lit(t));
                    }
                    Some(&t) => return Err(format!("invalid escape '\\{t}'")),
                    None => return Err("trailing backslash".to_string()),
                },
                other => toks.push(Tok::Lit(other)),
            }
        }
        Ok(Self { toks })
    }

    fn reversed(&self) -> Self {
        let mut toks = self.toks.clone();
        toks.reverse();
        Self { toks }
    }

    /// Every length `n` such that `text[..n]` matches the whole pattern, ascending.
    fn prefix_lengths(&self, text: &[char]) -> Vec<usize> {
        let m = self.toks.len();
        let mut cur = vec![false; m + 1];
        cur[0] = true;
        self.close(&mut cur);
        let mut out = Vec::new();
        if cur[m] {
            out.push(0);
        }
        for (k, &c) in text.iter().enumerate() {
            let mut next = vec![false; m + 1];
            let mut alive = false;
            for (i, tok) in self.toks.iter().enumerate() {
                if !cur[i] {
                    continue;
                }
                let target = match *tok {
                    Tok::Star if c != '\n' => Some(i),
                    Tok::Any if c != '\n' => Some(i + 1),
                    Tok::Lit(x) if x == c => Some(i + 1),
                    _ => None,
                };
                if let Some(t) = target {
                    next[t] = true;
                    alive = true;
                }
            }
            if !alive {
                break;
            }
            self.close(&mut next);
            if next[m] {
                out.push(k + 1);
            }
            cur = next;
        }
        out
    }

    /// Epsilon closure: a star may match nothing.
    fn close(&self, states: &mut [bool]) {
        for (i, tok) in self.toks.iter().enumerate() {
            if states[i] && *tok == Tok::Star {
                states[i + 1] = true;
            }
        }
    }

    /// The leftmost match at or after `from`, taking the longest one at that start.
    fn find(&self, text: &[char], from: usize) -> Option<(usize, usize)> {
        (from..=text.len()).find_map(|start| {
            self.prefix_lengths(&text[start..])
                .last()
                .map(|len| (start, start + len))
        })
    }
}

/// `${VAR#pat}` (shortest) and `${VAR##pat}` (longest): removes a matching prefix.
pub(crate) fn trim_prefix(pattern: &ShellPattern, value: &str, longest: bool) -> String {
    let chars: Vec<char> = value.chars().collect();
    let lens = pattern.prefix_lengths(&chars);
    let cut = if longest { lens.last() } else { lens.first() };
    match cut {
        Some(&n) => chars[n..].iter().collect(),
        None => value.to_string(),
    }
}

/// `${VAR%pat}` (shortest) and `${VAR%%pat}` (longest): removes a matching suffix.
pub(crate) fn trim_suffix(pattern: &ShellPattern, value: &str, longest: bool) -> String {
    // A suffix match is a prefix match of the reversed text against the reversed pattern.
    let mut rev: Vec<char> = value.chars().collect();
    rev.reverse();
    let lens = pattern.reversed().prefix_lengths(&rev);
    let cut = if longest { lens.last() } else { lens.first() };
    match cut {
        Some(&n) => {
            let keep = rev.len() - n;
            value.chars().take(keep).collect()
        }
        None => value.to_string(),
    }
}

/// `${VAR/pat/repl}` (first match) and `${VAR//pat/repl}` (every match). The replacement is
/// literal. Empty matches follow Go's `ReplaceAllString`: one is ignored right after a match.
pub(crate) fn replace(pattern: &ShellPattern, value: &str, replacement: &str, all: bool) -> String {
    let text: Vec<char> = value.chars().collect();
    if !all {
        return match pattern.find(&text, 0) {
            Some((s, e)) => {
                let mut out: String = text[..s].iter().collect();
                out.push_str(replacement);
                out.extend(&text[e..]);
                out
            }
            None => value.to_string(),
        };
    }
    let mut out = String::new();
    let mut last_end = 0;
    let mut search = 0;
    while search <= text.len() {
        let Some((s, e)) = pattern.find(&text, search) else {
            break;
        };
        out.extend(&text[last_end..s]);
        if e > last_end || s == 0 {
            out.push_str(replacement);
        }
        last_end = e;
        search = if e > search { e } else { search + 1 };
    }
    out.extend(&text[last_end.min(text.len())..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(p: &str) -> ShellPattern {
        ShellPattern::compile(p).unwrap()
    }

    #[test]
    fn invalid_escapes_are_rejected() {
        for p in ["\\", "\\x", "\\\\\\"] {
            assert!(ShellPattern::compile(p).is_err(), "{p:?}");
        }
        assert_eq!(pat("\\}a").toks, vec![Tok::Lit('}'), Tok::Lit('a')]);
        assert_eq!(pat("\\*").toks, vec![Tok::Lit('*')]);
    }

    #[test]
    fn prefix_and_suffix_trimming() {
        assert_eq!(trim_prefix(&pat("*x*y"), "xxyy", false), "y");
        assert_eq!(trim_prefix(&pat("*"), "xxyy", false), "xxyy");
        assert_eq!(trim_prefix(&pat("*x"), "xxyy", true), "yy");
        assert_eq!(trim_prefix(&pat("?\\?"), "???y", false), "?y");
        assert_eq!(trim_suffix(&pat("\\**"), "xx**", true), "xx");
        assert_eq!(trim_suffix(&pat("\\**\\*"), "a***yy*", true), "a");
        assert_eq!(trim_suffix(&pat("x"), "xxyy", false), "xxyy");
        assert_eq!(trim_suffix(&pat(".*"), "file.tar.gz", false), "file.tar");
        assert_eq!(trim_suffix(&pat(".*"), "file.tar.gz", true), "file");
    }

    #[test]
    fn stars_do_not_cross_newlines() {
        assert_eq!(trim_prefix(&pat("*b"), "a\nb", false), "a\nb");
        assert_eq!(trim_prefix(&pat("a?b"), "a\nb", false), "a\nb");
    }

    #[test]
    fn replacement_first_and_all() {
        let p = pat("\\*/");
        assert_eq!(replace(&p, "/foo*/*/*.txt", ".", false), "/foo.*/*.txt");
        assert_eq!(replace(&p, "/foo*/*/*.txt", ".", true), "/foo..*.txt");
        assert_eq!(
            replace(&pat("/?/"), "/a/foo/b/c.txt", "/", true),
            "/foo/c.txt"
        );
        assert_eq!(replace(&pat(""), "xxyy", "ww", false), "wwxxyy");
        assert_eq!(replace(&pat(""), "xxyy", "", true), "xxyy");
        assert_eq!(replace(&pat(""), "ab", "-", true), "-a-b-");
        assert_eq!(replace(&pat("x*"), "axxb", "-", false), "a-");
    }
}
