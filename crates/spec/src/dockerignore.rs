//! `.dockerignore` files (and COPY/ADD `--exclude` patterns): parsing and matching with the
//! rules of Docker's `moby/patternmatcher` and its `ignorefile` reader. Patterns use Go's
//! `filepath.Match` syntax (`*`, `?`, `[a-z]`, `[^a-z]`, `\` escapes) plus `**` for any number
//! of directories; a pattern that matches a directory excludes everything below it; later
//! patterns override earlier ones; `!pattern` re-includes.
//!
//! Pure: it matches relative, slash-separated path strings handed to it and never touches the
//! file system. The context walker (in `oxkit-source`) asks [`DockerIgnore::is_excluded`] per
//! entry and [`DockerIgnore::can_skip_dir`] to avoid descending into excluded directories.

/// A parsed set of ignore patterns, in file order.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<IgnorePattern>,
}

/// One pattern line.
#[derive(Debug, Clone)]
pub struct IgnorePattern {
    /// The cleaned pattern, without its leading `!`.
    pub pattern: String,
    /// `!pattern`: paths it matches are included again.
    pub exception: bool,
    /// 1-based line in the file (or position in the list given to
    /// [`DockerIgnore::from_patterns`]).
    pub line: usize,
    matcher: Matcher,
}

/// A pattern that is not valid `filepath.Match` syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{file}:{line}: invalid pattern {pattern:?}: {reason}; patterns use Go filepath.Match syntax \
     (*, ?, [a-z], [^a-z], \\ escapes) plus **"
)]
pub struct DockerIgnoreError {
    pub file: String,
    pub line: usize,
    pub pattern: String,
    pub reason: String,
}

impl DockerIgnore {
    /// Parses `.dockerignore` text.
    pub fn parse(text: &str) -> Result<Self, DockerIgnoreError> {
        Self::parse_named(text, ".dockerignore")
    }

    /// Parses ignore-file text; `file_name` only appears in error messages.
    pub fn parse_named(text: &str, file_name: &str) -> Result<Self, DockerIgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (index, line) in text.lines().enumerate() {
            // Only a `#` in the first column starts a comment.
            if line.starts_with('#') {
                continue;
            }
            if let Some(p) = IgnorePattern::new(line, index + 1, file_name)? {
                patterns.push(p);
            }
        }
        Ok(Self { patterns })
    }

    /// Builds a matcher from patterns given one by one (e.g. `COPY --exclude`).
    pub fn from_patterns<S: AsRef<str>>(
        patterns: impl IntoIterator<Item = S>,
    ) -> Result<Self, DockerIgnoreError> {
        let mut out = Vec::new();
        for (index, p) in patterns.into_iter().enumerate() {
            if let Some(p) = IgnorePattern::new(p.as_ref(), index + 1, "patterns")? {
                out.push(p);
            }
        }
        Ok(Self { patterns: out })
    }

    pub fn patterns(&self) -> &[IgnorePattern] {
        &self.patterns
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether any `!` exception exists.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// Whether `rel_path` (relative to the context root, `/`-separated) is excluded: the last
    /// pattern matching it, or one of its parent directories, decides. `is_dir` does not change
    /// the answer (Docker patterns do not distinguish files from directories); it is part of
    /// the signature so walkers can pass what they know.
    pub fn is_excluded(&self, rel_path: &str, is_dir: bool) -> bool {
        let _ = is_dir;
        let path = clean(rel_path.trim_start_matches('/'));
        if path == "." || path.is_empty() {
            // Excluding the context root itself is meaningless.
            return false;
        }
        let parents: Vec<&str> = path.match_indices('/').map(|(i, _)| &path[..i]).collect();
        let mut excluded = false;
        for p in &self.patterns {
            // An inclusion cannot change an excluded path, nor an exception an included one.
            if p.exception != excluded {
                continue;
            }
            if p.matcher.matches(&path) || parents.iter().any(|d| p.matcher.matches(d)) {
                excluded = !p.exception;
            }
        }
        excluded
    }

    /// Whether a walker may skip the whole directory `rel_dir`: it is excluded and no exception
    /// pattern could match anything below it, so every path under it is excluded too.
    pub fn can_skip_dir(&self, rel_dir: &str) -> bool {
        if !self.is_excluded(rel_dir, true) {
            return false;
        }
        let dir = clean(rel_dir.trim_start_matches('/'));
        !self
            .patterns
            .iter()
            .any(|p| p.exception && p.matcher.could_match_below(&dir))
    }
}

impl IgnorePattern {
    /// Cleans one line as `ignorefile.ReadAll` and `patternmatcher.New` do; `None` for a blank.
    fn new(line: &str, number: usize, file: &str) -> Result<Option<Self>, DockerIgnoreError> {
        let error = |pattern: &str, reason: &str| DockerIgnoreError {
            file: file.to_string(),
            line: number,
            pattern: pattern.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = line.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        let (exception, body) = match trimmed.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, trimmed),
        };
        if body.is_empty() {
            return Err(error(trimmed, "a lone \"!\" excludes nothing"));
        }
        let mut pattern = clean(body);
        if pattern.len() > 1 && pattern.starts_with('/') {
            pattern.remove(0);
        }
        validate(&pattern).map_err(|reason| error(trimmed, reason))?;
        let matcher = Matcher::compile(&pattern);
        Ok(Some(Self {
            pattern,
            exception,
            line: number,
            matcher,
        }))
    }
}

/// Go's `filepath.Clean` for `/`-separated paths.
fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// The syntax errors Go's `filepath.Match` reports: a trailing `\`, an unterminated or empty
/// `[...]`, a bad range.
fn validate(pattern: &str) -> Result<(), &'static str> {
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next().ok_or("trailing backslash")?;
            }
            '[' => {
                chars.next_if_eq(&'^');
                let mut ranges = 0;
                loop {
                    if chars.peek() == Some(&']') && ranges > 0 {
                        chars.next();
                        break;
                    }
                    let class_char =
                        |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| match chars.next() {
                            None | Some('-') | Some(']') => Err("malformed character class"),
                            Some('\\') => chars.next().ok_or("malformed character class"),
                            Some(c) => Ok(c),
                        };
                    class_char(&mut chars)?;
                    if chars.peek().is_none() {
                        return Err("unterminated character class");
                    }
                    if chars.next_if_eq(&'-').is_some() {
                        class_char(&mut chars)?;
                    }
                    ranges += 1;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// How a pattern matches, mirroring patternmatcher's fast paths (which differ slightly from
/// its regular expression for `**` at the start).
#[derive(Debug, Clone)]
enum Matcher {
    /// No wildcard: the path equals the pattern.
    Exact(String),
    /// `dir/**` (or `foo**`): the path starts with this.
    Prefix(String),
    /// `**/name` (or `**name`): the path ends with this, or equals it without the leading `/`.
    Suffix(String),
    Nfa(Nfa),
}

/// patternmatcher's classification of a pattern while it compiles it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Detected {
    Exact,
    Prefix,
    Suffix,
    Regexp,
}

impl Matcher {
    fn compile(pattern: &str) -> Self {
        let chars: Vec<char> = pattern.chars().collect();
        let mut toks = Vec::new();
        let mut detected = Detected::Exact;
        let mut i = 0;
        let mut iteration = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' if chars.get(i) == Some(&'*') => {
                    i += 1;
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    if i == chars.len() {
                        if detected == Detected::Exact {
                            detected = Detected::Prefix;
                        } else {
                            toks.push(Tok::AnyRun);
                            detected = Detected::Regexp;
                        }
                    } else {
                        toks.push(Tok::AnyDirs);
                        detected = Detected::Regexp;
                    }
                    if iteration == 0 {
                        detected = Detected::Suffix;
                    }
                }
                '*' => {
                    toks.push(Tok::Star);
                    detected = Detected::Regexp;
                }
                '?' => {
                    toks.push(Tok::NotSlash);
                    detected = Detected::Regexp;
                }
                '\\' => match chars.get(i) {
                    Some(&e) => {
                        toks.push(Tok::Lit(e));
                        i += 1;
                        detected = Detected::Regexp;
                    }
                    None => toks.push(Tok::Lit('\\')),
                },
                '[' => {
                    let (class, used) = Class::parse(&chars[i..]);
                    i += used;
                    toks.push(Tok::Class(class));
                    detected = Detected::Regexp;
                }
                other => toks.push(Tok::Lit(other)),
            }
            iteration += 1;
        }
        match detected {
            Detected::Exact => Self::Exact(pattern.to_string()),
            // Both fast paths work on the pattern text, as patternmatcher does.
            Detected::Prefix => {
                Self::Prefix(pattern.strip_suffix("**").unwrap_or(pattern).to_string())
            }
            Detected::Suffix => Self::Suffix(pattern.get(2..).unwrap_or_default().to_string()),
            Detected::Regexp => Self::Nfa(Nfa::build(&toks)),
        }
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(p) => path == p,
            Self::Prefix(p) => path.starts_with(p.as_str()),
            Self::Suffix(s) => {
                path.ends_with(s.as_str()) || s.strip_prefix('/').is_some_and(|s| path == s)
            }
            Self::Nfa(nfa) => nfa.matches(path),
        }
    }

    /// Whether some path strictly below `dir` could match.
    fn could_match_below(&self, dir: &str) -> bool {
        let below = format!("{dir}/");
        match self {
            Self::Exact(p) => p.starts_with(&below),
            Self::Prefix(p) => p.starts_with(&below) || below.starts_with(p.as_str()),
            Self::Suffix(_) => true,
            Self::Nfa(nfa) => nfa.alive_after(&below),
        }
    }
}

#[derive(Debug, Clone)]
enum Tok {
    Lit(char),
    /// `?`: one character other than `/`.
    NotSlash,
    /// `*`: any run without `/`.
    Star,
    /// `**/` or an inner `**`: nothing, or any run ending in `/` (regexp `(.*/)?`).
    AnyDirs,
    /// A trailing `**` after wildcards: anything (regexp `.*`).
    AnyRun,
    Class(Class),
}

/// `[...]`, `[^...]`.
#[derive(Debug, Clone)]
struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl Class {
    /// Parses the class body after `[` (already validated); returns it and the chars used.
    fn parse(chars: &[char]) -> (Self, usize) {
        let mut i = 0;
        let negated = chars.first() == Some(&'^');
        if negated {
            i += 1;
        }
        let mut ranges = Vec::new();
        let one = |i: &mut usize| -> Option<char> {
            let c = *chars.get(*i)?;
            *i += 1;
            if c == '\\' {
                let e = *chars.get(*i)?;
                *i += 1;
                return Some(e);
            }
            Some(c)
        };
        while i < chars.len() {
            if chars[i] == ']' && !ranges.is_empty() {
                i += 1;
                break;
            }
            let Some(lo) = one(&mut i) else { break };
            let mut hi = lo;
            if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|c| *c != ']') {
                i += 1;
                hi = one(&mut i).unwrap_or(lo);
            }
            ranges.push((lo, hi));
        }
        (Self { negated, ranges }, i)
    }

    fn contains(&self, c: char) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated
    }
}

/// A Thompson NFA over the pattern tokens; linear-time matching on any input.
#[derive(Debug, Clone)]
struct Nfa {
    nodes: Vec<Node>,
    start: usize,
}

#[derive(Debug, Clone)]
enum Node {
    Match,
    Step(Pred, usize),
    Split(usize, usize),
}

#[derive(Debug, Clone)]
enum Pred {
    Char(char),
    NotSlash,
    /// Go's regexp `.`: anything but a newline.
    NotNewline,
    Class(Class),
}

impl Pred {
    fn accepts(&self, c: char) -> bool {
        match self {
            Self::Char(x) => *x == c,
            Self::NotSlash => c != '/',
            Self::NotNewline => c != '\n',
            Self::Class(class) => class.contains(c),
        }
    }
}

impl Nfa {
    fn build(toks: &[Tok]) -> Self {
        fn push(nodes: &mut Vec<Node>, n: Node) -> usize {
            nodes.push(n);
            nodes.len() - 1
        }
        let mut nodes = vec![Node::Match];
        let mut next = 0;
        for tok in toks.iter().rev() {
            next = match tok {
                Tok::Lit(c) => push(&mut nodes, Node::Step(Pred::Char(*c), next)),
                Tok::NotSlash => push(&mut nodes, Node::Step(Pred::NotSlash, next)),
                Tok::Class(c) => push(&mut nodes, Node::Step(Pred::Class(c.clone()), next)),
                Tok::Star | Tok::AnyRun => {
                    let pred = if matches!(tok, Tok::Star) {
                        Pred::NotSlash
                    } else {
                        Pred::NotNewline
                    };
                    let split = push(&mut nodes, Node::Split(0, next));
                    let step = push(&mut nodes, Node::Step(pred, split));
                    nodes[split] = Node::Split(step, next);
                    split
                }
                Tok::AnyDirs => {
                    // (.*/)?  =  skip | loop: { any char, back to loop } or { '/', then next }
                    let lp = push(&mut nodes, Node::Split(0, 0));
                    let any = push(&mut nodes, Node::Step(Pred::NotNewline, lp));
                    let slash = push(&mut nodes, Node::Step(Pred::Char('/'), next));
                    nodes[lp] = Node::Split(any, slash);
                    push(&mut nodes, Node::Split(lp, next))
                }
            };
        }
        Self { nodes, start: next }
    }

    fn add(&self, set: &mut Vec<usize>, seen: &mut [bool], state: usize) {
        let mut stack = vec![state];
        while let Some(s) = stack.pop() {
            if seen[s] {
                continue;
            }
            seen[s] = true;
            match &self.nodes[s] {
                Node::Split(a, b) => {
                    stack.push(*b);
                    stack.push(*a);
                }
                _ => set.push(s),
            }
        }
    }

    /// The states after reading `text`; empty when no match is possible any more.
    fn run(&self, text: &str) -> Vec<usize> {
        let mut seen = vec![false; self.nodes.len()];
        let mut current = Vec::new();
        self.add(&mut current, &mut seen, self.start);
        for c in text.chars() {
            let mut seen = vec![false; self.nodes.len()];
            let mut next = Vec::new();
            for &s in &current {
                if let Node::Step(pred, to) = &self.nodes[s]
                    && pred.accepts(c)
                {
                    self.add(&mut next, &mut seen, *to);
                }
            }
            if next.is_empty() {
                return next;
            }
            current = next;
        }
        current
    }

    fn matches(&self, path: &str) -> bool {
        self.run(path)
            .iter()
            .any(|&s| matches!(self.nodes[s], Node::Match))
    }

    fn alive_after(&self, prefix: &str) -> bool {
        self.run(prefix)
            .iter()
            .any(|&s| matches!(self.nodes[s], Node::Step(..)))
    }
}

#[cfg(test)]
mod tests;
