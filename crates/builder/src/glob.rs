//! COPY/ADD source wildcards with Go's `filepath.Match` rules (`*`, `?`, `[a-z]`, `[^a-z]`,
//! `\` escapes), matched one path component at a time against a [`Tree`], as BuildKit does.
//! Pure matching plus directory listing; nothing is copied here.

use crate::error::StepError;
use crate::tree::{Tree, rel_join};

/// Whether `s` has characters `filepath.Match` treats specially.
pub(crate) fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '\\'])
}

/// `filepath.Match(pattern, name)` for one component; `Err` for a malformed pattern.
pub(crate) fn match_component(pattern: &str, name: &str) -> Result<bool, String> {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    match_at(&p, &n)
}

fn match_at(p: &[char], n: &[char]) -> Result<bool, String> {
    let (mut pi, mut ni) = (0, 0);
    // Backtracking point for the last `*`.
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' if ni < n.len() => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    let (ok, next) = class(p, pi)?;
                    if ni < n.len() && ok(n[ni]) {
                        pi = next;
                        ni += 1;
                        continue;
                    }
                }
                '\\' => {
                    let c = *p.get(pi + 1).ok_or("trailing backslash")?;
                    if ni < n.len() && n[ni] == c {
                        pi += 2;
                        ni += 1;
                        continue;
                    }
                }
                c if c != '?' && ni < n.len() && n[ni] == c => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        } else if ni == n.len() {
            return Ok(true);
        }
        match star {
            Some((sp, sn)) if sn < n.len() => {
                star = Some((sp, sn + 1));
                pi = sp + 1;
                ni = sn + 1;
            }
            _ => {
                // Go reports a malformed class even when matching fails earlier.
                check_rest(&p[pi.min(p.len())..])?;
                return Ok(false);
            }
        }
    }
}

type ClassFn = Box<dyn Fn(char) -> bool>;

/// Parses `[...]` at `p[start]`; the matcher and the index after `]`.
fn class(p: &[char], start: usize) -> Result<(ClassFn, usize), String> {
    let mut i = start + 1;
    let negate = p.get(i) == Some(&'^');
    if negate {
        i += 1;
    }
    let mut ranges: Vec<(char, char)> = Vec::new();
    let mut first = true;
    loop {
        let c = *p.get(i).ok_or("unterminated [")?;
        if c == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let lo = if c == '\\' {
            i += 1;
            *p.get(i).ok_or("trailing backslash")?
        } else {
            c
        };
        i += 1;
        let mut hi = lo;
        if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|c| *c != ']') {
            i += 1;
            hi = if p[i] == '\\' {
                i += 1;
                *p.get(i).ok_or("trailing backslash")?
            } else {
                p[i]
            };
            i += 1;
            if hi < lo {
                return Err("bad range in [...]".into());
            }
        }
        ranges.push((lo, hi));
    }
    Ok((
        Box::new(move |c| ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != negate),
        i,
    ))
}

fn check_rest(p: &[char]) -> Result<(), String> {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '[' => {
                let (_, next) = class(p, i)?;
                i = next;
            }
            '\\' => {
                if i + 1 >= p.len() {
                    return Err("trailing backslash".into());
                }
                i += 2;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Removes `\` escapes from a component without wildcards.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Every path of `tree` matching `pattern` (relative, cleaned), sorted. A pattern without
/// wildcards gives itself when it exists.
pub(crate) fn expand(tree: &dyn Tree, pattern: &str) -> Result<Vec<String>, StepError> {
    let mut current = vec![String::new()];
    for comp in pattern.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        for dir in &current {
            if !has_meta(comp) {
                next.push(rel_join(dir, comp));
                continue;
            }
            match tree.node(dir)? {
                Some(n) if n.is_dir() => {}
                _ => continue,
            }
            for name in tree.children(dir)? {
                let ok = match_component(comp, &name)
                    .map_err(|e| StepError::new(format!("invalid wildcard {pattern:?}: {e}")))?;
                if ok {
                    next.push(rel_join(dir, &name));
                }
            }
        }
        current = next;
    }
    let mut found = Vec::new();
    for p in current {
        let p = if has_meta(&p) { p } else { unescape(&p) };
        if tree.node(&p)?.is_some() {
            found.push(p);
        }
    }
    found.sort();
    found.dedup();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_filepath_match_cases() {
        let cases = [
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*/b", "abc/b", true),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a[^a]b", "a☺b", true),
            ("*x", "xxx", true),
            ("*.txt", "notes.txt", true),
            ("*.txt", "notes.md", false),
        ];
        for (p, n, want) in cases {
            assert_eq!(match_component(p, n), Ok(want), "{p} {n}");
        }
        for bad in ["[", "[^", "a[", "ab[z-a]", "\\"] {
            assert!(match_component(bad, "x").is_err(), "{bad}");
        }
    }

    #[test]
    fn expands_against_a_tree() {
        let tmp = tempfile::tempdir().unwrap();
        for f in ["a.txt", "b.txt", "c.md", "d/e.txt", "d/f.txt", "x/e.txt"] {
            let p = tmp.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f).unwrap();
        }
        let t = crate::tree::DirTree::new(tmp.path(), "t");
        assert_eq!(expand(&t, "*.txt").unwrap(), ["a.txt", "b.txt"]);
        assert_eq!(expand(&t, "*/e.txt").unwrap(), ["d/e.txt", "x/e.txt"]);
        assert_eq!(expand(&t, "d").unwrap(), ["d"]);
        assert!(expand(&t, "nope*").unwrap().is_empty());
        assert!(expand(&t, "missing").unwrap().is_empty());
    }
}
