//! URLs as oxkit shows them: Dockerfile `ADD` sources may carry credentials
//! (`https://user:token@host/...`) or signed query strings, which must never reach output,
//! logs or errors.

/// `url` without user info, query string or fragment (`?…` marks a dropped query). Works on
/// any text, parsable or not.
pub fn redact(url: &str) -> String {
    let (base, had_query) = match url.find(['?', '#']) {
        Some(i) => (&url[..i], url[i..].starts_with('?')),
        None => (url, false),
    };
    let shown = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => base.to_string(),
    };
    if had_query {
        format!("{shown}?…")
    } else {
        shown
    }
}

/// `text` (a Dockerfile instruction, say) with every `http://` or `https://` word redacted.
/// Text without URLs comes back unchanged.
pub fn redact_in(text: &str) -> String {
    if !text.contains("://") {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("http") {
        let (before, at) = rest.split_at(start);
        out.push_str(before);
        if at.starts_with("http://") || at.starts_with("https://") {
            let end = at
                .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ']'))
                .unwrap_or(at.len());
            out.push_str(&redact(&at[..end]));
            rest = &at[end..];
        } else {
            out.push_str("http");
            rest = &at[4..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::{redact, redact_in};

    #[test]
    fn redacts_every_url_in_a_text() {
        assert_eq!(
            redact_in("ADD --checksum=sha256:ab https://u:p@h/a.tgz?t=1 /x/"),
            "ADD --checksum=sha256:ab https://h/a.tgz?… /x/"
        );
        assert_eq!(
            redact_in(r#"ADD ["http://t@h/a", "https://h/b?s=2", "/d/"]"#),
            r#"ADD ["http://h/a", "https://h/b?…", "/d/"]"#
        );
        assert_eq!(redact_in("RUN echo httpd http"), "RUN echo httpd http");
        assert_eq!(redact_in("COPY a b"), "COPY a b");
    }

    #[test]
    fn drops_user_info_query_and_fragment() {
        assert_eq!(
            redact("https://u:p@h.example:8443/a/b.tgz?token=s3cret#x"),
            "https://h.example:8443/a/b.tgz?…"
        );
        assert_eq!(redact("http://tok@h/x"), "http://h/x");
        assert_eq!(redact("http://h/x#frag"), "http://h/x");
        // An @ in the path is not user info.
        assert_eq!(redact("http://h/x@y"), "http://h/x@y");
        assert_eq!(redact("http://u:p@h:99999/x?t=1"), "http://h:99999/x?…");
        assert_eq!(redact("not a url"), "not a url");
    }
}
