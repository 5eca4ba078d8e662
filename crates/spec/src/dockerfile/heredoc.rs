//! Heredoc markers (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`) as BuildKit recognises them: which
//! words of an instruction line open a heredoc, the delimiter, whether the body is expanded and
//! whether leading tabs are stripped. Reading the bodies is the lexer's job.

use std::borrow::Cow;

use super::error::ExpandError;
use super::shell::Lexer;

/// A here-document attached to a RUN, COPY or ADD instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word with its quotes removed (`EOF` for `<<'EOF'`).
    pub name: String,
    /// The file descriptor written before `<<` (`3<<EOF`), 0 when absent.
    pub fd: u32,
    /// True unless some part of the delimiter was quoted: the body is then subject to variable
    /// expansion (by the builder, for COPY/ADD; by the shell, for RUN).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from every line of the body and of the delimiter.
    pub chomp: bool,
    /// The body exactly as written, every line with its line ending; tabs not yet stripped.
    pub content: String,
}

impl Heredoc {
    /// The body with leading tabs stripped when the heredoc was opened with `<<-`.
    pub fn body(&self) -> Cow<'_, str> {
        if self.chomp {
            Cow::Owned(chomp(&self.content))
        } else {
            Cow::Borrowed(&self.content)
        }
    }
}

/// Removes the tabs that start each line.
pub(crate) fn chomp(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|line| line.trim_start_matches('\t'))
        .collect()
}

/// Go regexp `\s`.
fn is_re_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{0C}' | '\r' | ' ')
}

/// Parses one word as a heredoc marker: `Ok(None)` when it is not one, an error when its
/// delimiter is malformed (an unterminated quote).
pub(crate) fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, ExpandError> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let Some(rest) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches(is_re_space);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let none = |_: &str| None;
    let mut lexer = Lexer::new('\\');
    lexer.skip_unset_env = true;
    let words = lexer.process_words(rest, &none)?;
    let [name] = words.as_slice() else {
        return Ok(None);
    };
    lexer.raw_quotes = true;
    let raw = lexer.process_words(rest, &none)?;
    // Quotes that disappear when quotes are processed mean part of the delimiter was quoted:
    // then the body is taken literally.
    let quotes = |s: &str| s.chars().filter(|c| matches!(c, '\'' | '"')).count();
    let expand = raw.len() == 1 && quotes(name) == quotes(&raw[0]);
    Ok(Some(Heredoc {
        name: name.clone(),
        fd: word[..digits].parse().unwrap_or(0),
        expand,
        chomp,
        content: String::new(),
    }))
}

/// The heredocs an instruction line opens, in order. Quoted `"<<EOF"` does not open one.
pub(crate) fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, ExpandError> {
    let mut lexer = Lexer::new('\\');
    lexer.raw_quotes = true;
    lexer.raw_escapes = true;
    lexer.skip_unset_env = true;
    // A line the lexer cannot split (an open quote) simply has no heredocs, as in BuildKit.
    let words = lexer.process_words(line, &|_| None).unwrap_or_default();
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers() {
        for src in [
            "<<EOF",
            "<<'EOF'",
            "<<\"EOF\"",
            "<<-EOF",
            "<<-'EOF'",
            "<<-\"EOF\"",
            "<<EO\"F\"",
            "<< EOF",
            "<<- EOF",
        ] {
            let doc = parse_heredoc(src).unwrap().unwrap();
            assert_eq!(doc.name, "EOF", "{src}");
            assert_eq!(doc.chomp, src.starts_with("<<-"), "{src}");
            assert_eq!(doc.expand, !src.contains(['\'', '"']), "{src}");
        }
        for src in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
            assert!(parse_heredoc(src).is_err(), "{src}");
        }
        for src in ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh"] {
            assert_eq!(parse_heredoc(src).unwrap(), None, "{src}");
        }
        let doc = parse_heredoc("3<<EOF").unwrap().unwrap();
        assert_eq!((doc.fd, doc.name.as_str()), (3, "EOF"));
    }

    #[test]
    fn partially_quoted_delimiters() {
        let cases = [
            ("<<eo'f'", "eof", false),
            ("<<eo\\'f", "eo'f", true),
            ("<<'e'o\\'f", "eo'f", false),
            ("<<'one two'", "one two", false),
            ("<<$EOF", "$EOF", true),
        ];
        for (src, name, expand) in cases {
            let doc = parse_heredoc(src).unwrap().unwrap();
            assert_eq!((doc.name.as_str(), doc.expand), (name, expand), "{src}");
        }
    }

    #[test]
    fn line_scanning() {
        let names = |line: &str| -> Vec<String> {
            heredocs_from_line(line)
                .unwrap()
                .into_iter()
                .map(|d| d.name)
                .collect()
        };
        assert_eq!(names("RUN <<EOF"), ["EOF"]);
        // `<<-` followed by a space splits into two words on a line, so BuildKit opens no
        // heredoc there (only `<< EOF` keeps the space inside the marker).
        assert!(names("RUN <<- EOF").is_empty());
        assert_eq!(names("RUN << EOF"), ["EOF"]);
        assert_eq!(names("RUN << -EOF"), ["-EOF"]);
        assert_eq!(names("RUN 4<<EOF"), ["EOF"]);
        assert_eq!(names("RUN <<EOF <<EOF2"), ["EOF", "EOF2"]);
        assert_eq!(names("RUN <<  EOF  > foo"), ["EOF"]);
        assert!(names("RUN '<<EOF'").is_empty());
        assert!(names("RUN \"<<EOF\"").is_empty());
        assert!(names("RUN echo 'unterminated <<EOF").is_empty());
    }

    #[test]
    fn chomping() {
        assert_eq!(
            chomp("\thello\n\t\tworld\n  x\t\n"),
            "hello\nworld\n  x\t\n"
        );
        let doc = Heredoc {
            name: "E".into(),
            fd: 0,
            expand: true,
            chomp: true,
            content: "\ta\n".into(),
        };
        assert_eq!(doc.body(), "a\n");
    }
}
