//! Shared YAML plumbing for `build.yml` and image YAML: source locations, the one error type
//! both formats report, the serde-saphyr options we parse with, and strict scalar
//! deserializers that refuse what LinuxKit's JSON schema refuses (a quoted `"yes"` is not a
//! boolean, `"3"` is not an integer).
//!
//! It performs no I/O: callers hand in the text and the file name used in messages. Errors
//! render as one line, `FILE:LINE:COL: what was wrong; what to do`.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Deserializer;
use serde::de::{self, DeserializeOwned, Visitor};
use serde_saphyr::MessageFormatter;

/// Where something was written: file name (as the caller named it), 1-based line and column.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceLoc {
    pub file: Arc<str>,
    /// 1-based; 0 when only the file is known.
    pub line: u32,
    /// 1-based, in characters; 0 when only the file is known.
    pub column: u32,
}

impl SourceLoc {
    pub fn new(file: &Arc<str>, line: u32, column: u32) -> Self {
        Self {
            file: Arc::clone(file),
            line,
            column,
        }
    }

    /// The whole file, for problems that have no better position (an empty document).
    pub fn file_only(file: &Arc<str>) -> Self {
        Self::new(file, 0, 0)
    }

    pub(crate) fn from_saphyr(file: &Arc<str>, loc: serde_saphyr::Location) -> Self {
        let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        Self::new(file, clamp(loc.line()), clamp(loc.column()))
    }
}

impl fmt::Display for SourceLoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.column)
        }
    }
}

/// What kind of mistake a [`SpecError`] reports, for callers and tests that branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecErrorKind {
    /// Not well-formed YAML.
    Syntax,
    /// A key the format does not know (LinuxKit decodes with `KnownFields`).
    UnknownField,
    /// A value of the wrong YAML type (a string where a list belongs, ...).
    WrongType,
    /// A required key is absent.
    MissingField,
    /// The same key twice in one mapping.
    DuplicateKey,
    /// Well-typed but not acceptable (bad name, bad reference, conflicting keys, ...).
    Invalid,
    /// A tag template LinuxKit's `text/template` subset cannot render.
    Template,
}

/// A problem in a `build.yml` or image YAML, rendered as one line
/// `FILE:LINE:COL: what was wrong; what was expected or what to do`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    /// Absent only for errors about values that did not come from a file (a tag template
    /// given on the command line).
    pub location: Option<SourceLoc>,
    pub kind: SpecErrorKind,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(loc) => write!(f, "{loc}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl SpecError {
    pub(crate) fn at(loc: &SourceLoc, kind: SpecErrorKind, message: impl Into<String>) -> Self {
        Self {
            location: Some(loc.clone()),
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn invalid(loc: &SourceLoc, message: impl Into<String>) -> Self {
        Self::at(loc, SpecErrorKind::Invalid, message)
    }

    /// The line this error points at, if any (tests and editors use it).
    pub fn line(&self) -> Option<u32> {
        self.location.as_ref().map(|l| l.line)
    }
}

/// Parses one YAML document into `T` with the options both formats share, mapping
/// serde-saphyr's errors to [`SpecError`]s that name `origin`.
pub(crate) fn from_str<T: DeserializeOwned>(text: &str, origin: &Arc<str>) -> Result<T, SpecError> {
    let options = serde_saphyr::options! {
        with_snippet: false,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
    };
    serde_saphyr::from_str_with_options::<T>(text, options).map_err(|e| map_error(&e, text, origin))
}

fn map_error(err: &serde_saphyr::Error, text: &str, origin: &Arc<str>) -> SpecError {
    use serde_saphyr::Error as E;
    let loc = match err.location() {
        Some(l) if l.line() > 0 => SourceLoc::from_saphyr(origin, l),
        _ => SourceLoc::file_only(origin),
    };
    let key = key_before(text, loc.line, loc.column);
    let with_key = |msg: String| match &key {
        Some(k) => format!("{k}: {msg}"),
        None => msg,
    };
    let (kind, message) = match err.without_snippet() {
        E::SerdeUnknownField {
            field, expected, ..
        } => (
            SpecErrorKind::UnknownField,
            format!(
                "unknown field {field:?}; expected one of {}",
                expected.join(", ")
            ),
        ),
        E::SerdeUnknownVariant {
            variant, expected, ..
        } => (
            SpecErrorKind::WrongType,
            with_key(format!(
                "unknown value {variant:?}; expected one of {}",
                expected.join(", ")
            )),
        ),
        E::SerdeMissingField { field, .. } => (
            SpecErrorKind::MissingField,
            format!("missing required field {field:?}; add it to this mapping"),
        ),
        E::DuplicateMappingKey { key, .. } => (
            SpecErrorKind::DuplicateKey,
            match key {
                Some(k) => format!("duplicate key {k:?}; a key may appear only once in a mapping"),
                None => "duplicate key; a key may appear only once in a mapping".to_string(),
            },
        ),
        E::SerdeInvalidType {
            unexpected,
            expected,
            ..
        }
        | E::SerdeInvalidValue {
            unexpected,
            expected,
            ..
        } => {
            // Errors raised by a visitor carry the location of the key whose value was
            // refused: name that key and point at its value when it is on the same line.
            let message = format!("expected {expected}, found {unexpected}");
            if let Some((k, value_col)) = key_at(text, loc.line, loc.column) {
                let loc = SourceLoc::new(origin, loc.line, value_col.unwrap_or(loc.column));
                return SpecError::at(&loc, SpecErrorKind::WrongType, format!("{k}: {message}"));
            }
            (SpecErrorKind::WrongType, with_key(message))
        }
        E::Unexpected { expected, .. } => (
            SpecErrorKind::WrongType,
            with_key(format!(
                "expected {}, found {}",
                friendly_expected(expected),
                found_at(text, loc.line, loc.column)
            )),
        ),
        E::InvalidScalar { ty, .. } => (
            SpecErrorKind::WrongType,
            with_key(format!(
                "expected {}, found {}",
                friendly_expected(ty),
                found_at(text, loc.line, loc.column)
            )),
        ),
        E::NullIntoString { .. } => (
            SpecErrorKind::WrongType,
            with_key("expected a string, found an empty value (null)".to_string()),
        ),
        other => {
            let msg = serde_saphyr::UserMessageFormatter.format_message(other);
            let msg: String = msg
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            (SpecErrorKind::Syntax, format!("invalid YAML: {msg}"))
        }
    };
    SpecError::at(&loc, kind, message)
}

fn friendly_expected(expected: &str) -> String {
    match expected {
        "sequence start" => "a list".to_string(),
        "mapping start" => "a mapping".to_string(),
        "string scalar" | "string" => "a string".to_string(),
        "bool" | "boolean" => "true or false".to_string(),
        t @ ("i8" | "i16" | "i32" | "i64" | "i128" | "u8" | "u16" | "u32" | "u64" | "u128") => {
            format!("an integer ({t})")
        }
        other => other.to_string(),
    }
}

/// Describes the YAML node starting at `line:column` from the text, because serde-saphyr's
/// structural errors say what was expected but not what was found.
fn found_at(text: &str, line: u32, column: u32) -> String {
    let Some(rest) = line_text(text, line).map(|l| {
        l.chars()
            .skip(column.saturating_sub(1) as usize)
            .collect::<String>()
    }) else {
        return "something else".to_string();
    };
    let rest = rest.trim_end();
    if rest.starts_with('[') || rest.starts_with("- ") || rest == "-" {
        "a list".to_string()
    } else if rest.starts_with('{') || looks_like_mapping(rest) {
        "a mapping".to_string()
    } else if rest.is_empty() {
        "an empty value".to_string()
    } else {
        let token: String = rest.chars().take(40).collect();
        format!("the scalar {token}")
    }
}

fn looks_like_mapping(rest: &str) -> bool {
    match rest.find(": ") {
        Some(i) => !rest[..i].contains(['"', '\'', '[', '{']),
        None => rest.ends_with(':') && !rest.contains(' '),
    }
}

fn line_text(text: &str, line: u32) -> Option<&str> {
    if line == 0 {
        return None;
    }
    text.lines().nth(line as usize - 1)
}

/// The mapping key whose value starts at `line:column`, read back from the text so type
/// errors can say which field was wrong (`arches: expected a list ...`).
fn key_before(text: &str, line: u32, column: u32) -> Option<String> {
    let this = line_text(text, line)?;
    let prefix: String = this
        .chars()
        .take(column.saturating_sub(1) as usize)
        .collect();
    if let Some(k) = key_in_prefix(&prefix) {
        return Some(k);
    }
    // A block value starts on its own line: the key ends the previous non-blank line.
    if !prefix.trim_start_matches([' ', '-']).trim().is_empty() {
        return None;
    }
    let mut n = line - 1;
    while n > 0 {
        let prev = line_text(text, n)?;
        let trimmed = prev.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            n -= 1;
            continue;
        }
        let without_comment = prev.split(" #").next().unwrap_or(prev);
        return key_in_prefix(&format!("{} ", without_comment.trim_end()));
    }
    None
}

/// The key written at `line:column` (`KEY: value`), with the column its value starts at
/// when the value is on the same line.
fn key_at(text: &str, line: u32, column: u32) -> Option<(String, Option<u32>)> {
    let rest: String = line_text(text, line)?
        .chars()
        .skip(column.saturating_sub(1) as usize)
        .collect();
    let (key, after) = rest.split_once(':')?;
    let key = key.trim_matches(['"', '\'']);
    let is_key = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !is_key || !(after.is_empty() || after.starts_with([' ', '\t'])) {
        return None;
    }
    let gap = after
        .chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .count();
    let value = &after[gap..];
    let value_col = (!value.is_empty() && !value.starts_with('#')).then(|| {
        let chars_before = rest.chars().count() - after.chars().count() + gap;
        column.saturating_add(u32::try_from(chars_before).unwrap_or(0))
    });
    Some((key.to_string(), value_col))
}

fn key_in_prefix(prefix: &str) -> Option<String> {
    let p = prefix.trim_end();
    let p = p.strip_suffix(':')?;
    let start = p.rfind(['{', ',']).map_or(0, |i| i + 1);
    let key = p[start..]
        .trim()
        .trim_start_matches("- ")
        .trim()
        .trim_matches(['"', '\'']);
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    ok.then(|| key.to_string())
}

/// Strict scalar deserializers, used with `#[serde(deserialize_with = ...)]`.
///
/// serde-saphyr coerces quoted strings into booleans and integers when the target type asks
/// for one; LinuxKit validates against a JSON schema first, which refuses them. These go
/// through `deserialize_any`, so a quoted scalar arrives as a string and is refused, while
/// plain `true`, `yes` (YAML 1.1, which Go's yaml.v3 accepts for typed booleans) and `12`
/// are accepted. `null` gives the type's zero value, as yaml.v3 does.
pub(crate) mod strict {
    use super::*;
    use serde::Deserialize;

    /// A scalar type with a strict visitor.
    pub(crate) trait Strict: Sized {
        const EXPECTING: &'static str;
        fn zero() -> Self;
        fn from_bool(_: bool) -> Option<Self> {
            None
        }
        fn from_i128(_: i128) -> Option<Self> {
            None
        }
    }

    impl Strict for bool {
        const EXPECTING: &'static str = "true or false (unquoted)";
        fn zero() -> Self {
            false
        }
        fn from_bool(v: bool) -> Option<Self> {
            Some(v)
        }
    }

    macro_rules! strict_int {
        ($($t:ty => $what:literal),*) => {$(
            impl Strict for $t {
                const EXPECTING: &'static str = $what;
                fn zero() -> Self {
                    0
                }
                fn from_i128(v: i128) -> Option<Self> {
                    <$t>::try_from(v).ok()
                }
            }
        )*};
    }
    strict_int!(
        i64 => "an integer (unquoted)",
        i32 => "an integer between -2147483648 and 2147483647 (unquoted)",
        u64 => "a non-negative integer (unquoted)",
        u32 => "a non-negative integer below 2^32 (unquoted)",
        u16 => "a non-negative integer below 65536 (unquoted)"
    );

    struct StrictVisitor<T>(PhantomData<T>);

    impl<'de, T: Strict> Visitor<'de> for StrictVisitor<T> {
        type Value = Option<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(T::EXPECTING)
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            T::from_bool(v)
                .map(Some)
                .ok_or_else(|| E::invalid_type(de::Unexpected::Bool(v), &self))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            T::from_i128(i128::from(v))
                .map(Some)
                .ok_or_else(|| E::invalid_value(de::Unexpected::Signed(v), &self))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            T::from_i128(i128::from(v))
                .map(Some)
                .ok_or_else(|| E::invalid_value(de::Unexpected::Unsigned(v), &self))
        }
        fn visit_i128<E: de::Error>(self, v: i128) -> Result<Self::Value, E> {
            T::from_i128(v)
                .map(Some)
                .ok_or_else(|| E::invalid_value(de::Unexpected::Other("a large integer"), &self))
        }
        fn visit_u128<E: de::Error>(self, v: u128) -> Result<Self::Value, E> {
            i128::try_from(v)
                .ok()
                .and_then(T::from_i128)
                .map(Some)
                .ok_or_else(|| E::invalid_value(de::Unexpected::Other("a large integer"), &self))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Err(E::invalid_type(de::Unexpected::Float(v), &self))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Err(E::invalid_type(de::Unexpected::Str(v), &self))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(de::Error::invalid_type(de::Unexpected::Seq, &self))
        }
        fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
            Err(de::Error::invalid_type(de::Unexpected::Map, &self))
        }
    }

    /// A required-typed scalar; `null` gives the zero value.
    pub(crate) fn req<'de, D: Deserializer<'de>, T: Strict>(d: D) -> Result<T, D::Error> {
        Ok(d.deserialize_any(StrictVisitor::<T>(PhantomData))?
            .unwrap_or_else(T::zero))
    }

    /// An optional scalar; `null` is "unset".
    pub(crate) fn opt<'de, D: Deserializer<'de>, T: Strict>(d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_any(StrictVisitor::<T>(PhantomData))
    }

    /// A string field where `null` (an empty value) means the empty string, as in Go.
    pub(crate) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
    }
}

/// Go's `path.Clean`: lexical cleaning of a slash-separated path (`a/./b/../c` → `a/c`,
/// `""` → `.`), used so `extra-sources` and file paths compare the way LinuxKit's do.
pub(crate) fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".to_string();
    }
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // some fields exist only to be deserialized
    struct Probe {
        #[serde(default, deserialize_with = "strict::opt")]
        flag: Option<bool>,
        #[serde(default, deserialize_with = "strict::req")]
        n: i64,
        #[serde(default, deserialize_with = "strict::opt")]
        small: Option<u16>,
        #[serde(default)]
        list: Option<Vec<String>>,
        #[serde(default, deserialize_with = "strict::string")]
        s: String,
    }

    fn origin() -> Arc<str> {
        Arc::from("probe.yml")
    }

    fn parse(text: &str) -> Result<Probe, SpecError> {
        from_str(text, &origin())
    }

    #[test]
    fn strict_booleans_refuse_quoted_strings() {
        assert_eq!(parse("flag: true\n").unwrap().flag, Some(true));
        assert_eq!(parse("flag: yes\n").unwrap().flag, Some(true));
        assert_eq!(parse("flag:\n").unwrap().flag, None);
        let e = parse("flag: \"yes\"\n").unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::WrongType);
        assert_eq!(
            e.to_string(),
            "probe.yml:1:7: flag: expected true or false (unquoted), found string \"yes\""
        );
        assert!(parse("flag: 1\n").is_err());
    }

    #[test]
    fn strict_integers_refuse_strings_and_out_of_range() {
        assert_eq!(parse("n: -3\n").unwrap().n, -3);
        assert_eq!(parse("n:\n").unwrap().n, 0);
        let e = parse("n: \"3\"\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("probe.yml:1:4: n: expected an integer"),
            "{e}"
        );
        let e = parse("small: 70000\n").unwrap_err();
        assert!(e.to_string().contains("below 65536"), "{e}");
        assert!(parse("n: 1.5\n").is_err());
        assert!(parse("n: [1]\n").is_err());
    }

    #[test]
    fn structural_errors_name_key_and_found_type() {
        let e = parse("list: amd64\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "probe.yml:1:7: list: expected a list, found the scalar amd64"
        );
        let e = parse("s:\n  - a\n").unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::WrongType);
        assert_eq!(e.line(), Some(2));
        assert!(e.message.starts_with("s: expected a string"), "{e}");
    }

    #[test]
    fn unknown_duplicate_and_syntax_errors() {
        let e = parse("n: 1\nbogus: 2\n").unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::UnknownField);
        assert_eq!(
            e.to_string(),
            "probe.yml:2:1: unknown field \"bogus\"; expected one of flag, n, small, list, s"
        );
        let e = parse("n: 1\nn: 2\n").unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::DuplicateKey);
        assert_eq!(e.line(), Some(2));
        let e = parse("list: [a\n").unwrap_err();
        assert_eq!(e.kind, SpecErrorKind::Syntax);
        assert!(e.to_string().starts_with("probe.yml:"), "{e}");
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn null_string_is_empty() {
        assert_eq!(parse("s:\n").unwrap().s, "");
        assert_eq!(parse("s: 12\n").unwrap().s, "12");
    }

    #[test]
    fn clean_path_matches_go() {
        for (input, want) in [
            ("", "."),
            (".", "."),
            ("a/./b/../c", "a/c"),
            ("../x", "../x"),
            ("/../x", "/x"),
            ("a/", "a"),
            ("//a//b/", "/a/b"),
            ("a/..", "."),
            ("a/../..", ".."),
        ] {
            assert_eq!(clean_path(input), want, "{input:?}");
        }
    }
}
