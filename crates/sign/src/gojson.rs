//! JSON written the way Go's `encoding/json` writes it, so payloads and manifests oxkit makes
//! are byte-identical to cosign's (a signature covers exact bytes; a manifest digest too).
//!
//! Field order comes from the serde structs (declared in Go's order); maps are `BTreeMap`s, which
//! sort keys by bytes as Go does. What differs from serde_json's compact output is only string
//! escaping: Go also escapes `<`, `>`, `&`, U+2028 and U+2029. Control characters agree already
//! (`\b \f \n \r \t` short, the rest `\u00XX`, DEL left raw; Go >= 1.22).

use std::io;

use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter};

struct GoFormatter;

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let escape = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(escape.as_bytes())?;
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    // Everything else as serde_json's compact formatter does it.
    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        char_escape: serde_json::ser::CharEscape,
    ) -> io::Result<()> {
        CompactFormatter.write_char_escape(writer, char_escape)
    }
}

/// Serialises `value` as Go's `json.Marshal` would.
pub(crate) fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    // Serialising our own structs (strings, integers, string-keyed maps) into memory cannot fail.
    if value.serialize(&mut ser).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn escapes_like_go() {
        let mut m = BTreeMap::new();
        m.insert("b", "<x>&\"q\"\\é");
        m.insert("a", "t\tb\u{8}f\u{c}e\u{1}d\u{7f}");
        m.insert("u", "€ 😀\u{2028}\u{2029}");
        let got = String::from_utf8(to_vec(&m)).expect("utf8");
        assert_eq!(
            got,
            "{\"a\":\"t\\tb\\bf\\fe\\u0001d\u{7f}\",\"b\":\"\\u003cx\\u003e\\u0026\\\"q\\\"\\\\é\",\"u\":\"€ 😀\\u2028\\u2029\"}"
        );
    }
}
