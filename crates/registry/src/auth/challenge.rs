//! Parsing `WWW-Authenticate` headers (RFC 7235 challenges) as registries send them:
//! `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="..."` or
//! `Basic realm="Registry Realm"`.
//!
//! Only the syntax lives here; deciding what to do with a challenge is the auth module's job.

use std::collections::BTreeMap;

/// One challenge: a scheme (lowercased) and its parameters (names lowercased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub(crate) scheme: String,
    pub(crate) params: BTreeMap<String, String>,
}

impl Challenge {
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t']);
    }

    fn skip_ws_and_commas(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t', ',']);
    }

    fn token(&mut self) -> &'a str {
        let end = self.rest.find(|c| !is_tchar(c)).unwrap_or(self.rest.len());
        let (t, rest) = self.rest.split_at(end);
        self.rest = rest;
        t
    }

    fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(r) => {
                self.rest = r;
                true
            }
            None => false,
        }
    }

    /// A quoted string with backslash escapes; an unterminated one runs to the end.
    fn quoted(&mut self) -> String {
        let mut out = String::new();
        let mut chars = self.rest.char_indices();
        let mut end = self.rest.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    end = i + 1;
                    break;
                }
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        out.push(n);
                    }
                }
                c => out.push(c),
            }
        }
        self.rest = &self.rest[end..];
        out
    }

    /// Token-looking text for an unquoted value; tolerates characters registries put in
    /// unquoted URLs (`:` and `/`) by reading up to the next comma or space.
    fn bare_value(&mut self) -> &'a str {
        let end = self.rest.find([',', ' ', '\t']).unwrap_or(self.rest.len());
        let (t, rest) = self.rest.split_at(end);
        self.rest = rest;
        t
    }
}

/// Parses one `WWW-Authenticate` header value into its challenges. Malformed parts are
/// skipped rather than failing: a server's odd header must not hide a usable challenge.
pub(crate) fn parse(header: &str) -> Vec<Challenge> {
    let mut out = Vec::new();
    let mut cur = Cursor { rest: header };
    loop {
        cur.skip_ws_and_commas();
        if cur.rest.is_empty() {
            break;
        }
        let scheme = cur.token();
        if scheme.is_empty() {
            // Not a token: drop one character and resynchronise.
            let mut chars = cur.rest.chars();
            chars.next();
            cur.rest = chars.as_str();
            continue;
        }
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: BTreeMap::new(),
        };
        loop {
            let save = cur.rest;
            cur.skip_ws_and_commas();
            let name = cur.token();
            cur.skip_ws();
            if name.is_empty() || !cur.eat('=') {
                // Either the next challenge's scheme or a token68 (`Basic abc==`); the next
                // outer iteration reads it as a scheme, which is harmless.
                cur.rest = save;
                break;
            }
            cur.skip_ws();
            let value = if cur.eat('"') {
                cur.quoted()
            } else {
                cur.bare_value().to_string()
            };
            challenge.params.insert(name.to_ascii_lowercase(), value);
        }
        out.push(challenge);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_bearer() {
        let c = parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(
            c[0].param("scope"),
            Some("repository:library/alpine:pull,push")
        );
    }

    #[test]
    fn basic_with_spaces_and_case() {
        let c = parse(r#"BASIC Realm = "Registry Realm", charset="UTF-8""#);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("Registry Realm"));
        assert_eq!(c[0].param("charset"), Some("UTF-8"));
    }

    #[test]
    fn escapes_unquoted_values_and_errors() {
        let c = parse(
            r#"Bearer realm=https://ghcr.io/token,service="ghcr.io",error="insufficient_scope",scope="repository:a\"b:pull""#,
        );
        assert_eq!(c[0].param("realm"), Some("https://ghcr.io/token"));
        assert_eq!(c[0].param("error"), Some("insufficient_scope"));
        assert_eq!(c[0].param("scope"), Some(r#"repository:a"b:pull"#));
    }

    #[test]
    fn several_challenges_in_one_header() {
        let c = parse(r#"Basic realm="r", Bearer realm="https://t/token",service="s""#);
        let schemes: Vec<_> = c.iter().map(|c| c.scheme.as_str()).collect();
        assert_eq!(schemes, ["basic", "bearer"]);
        assert_eq!(c[0].param("realm"), Some("r"));
        assert_eq!(c[1].param("service"), Some("s"));
    }

    #[test]
    fn garbage_does_not_panic() {
        for bad in [
            "",
            ",,,",
            "=",
            "Bearer realm=\"unterminated",
            "Bearer realm=",
            "\"quoted\" Bearer",
            "Basic dXNlcjpwYXNz==",
            "Bearer ,,realm=\"x\"",
            "ä Bearer realm=\"é\"",
        ] {
            let _ = parse(bad);
        }
        let c = parse("Bearer realm=\"unterminated");
        assert_eq!(c[0].param("realm"), Some("unterminated"));
        let c = parse("Basic dXNlcjpwYXNz==");
        assert_eq!(c[0].scheme, "basic");
    }
}
