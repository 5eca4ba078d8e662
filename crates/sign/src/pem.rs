//! PEM blocks (RFC 7468 "strict" text as Go's `encoding/pem` writes it: 64-column base64, LF).
//!
//! Reading is lenient about what surrounds a block (OpenSSL puts `EC PARAMETERS` before
//! `EC PRIVATE KEY`; people paste keys with trailing text) and strict about the block itself: a
//! missing END line or bad base64 is an error with the line number. Decoded bytes are kept in
//! zeroizing buffers because most blocks read here hold private keys.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// One decoded `-----BEGIN LABEL-----` ... `-----END LABEL-----` block.
pub(crate) struct PemBlock {
    pub(crate) label: String,
    pub(crate) der: Zeroizing<Vec<u8>>,
}

/// Why text is not PEM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    #[error("no PEM block (-----BEGIN ...-----) found")]
    NoBlock,
    #[error(
        "line {line}: PEM block {label:?} has no -----END {label}----- line (is the file truncated?)"
    )]
    Unterminated { label: String, line: usize },
    #[error("line {line}: PEM block {label:?} is not valid base64 (is the file damaged?)")]
    BadBase64 { label: String, line: usize },
}

/// Every PEM block in `text`, in order.
pub(crate) fn parse_blocks(text: &str) -> Result<Vec<PemBlock>, PemError> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((idx, line)) = lines.next() {
        let Some(label) = line
            .trim()
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let begin = idx + 1;
        let end_line = format!("-----END {label}-----");
        let mut body = Zeroizing::new(String::new());
        let mut ended = false;
        for (_, l) in lines.by_ref() {
            let l = l.trim();
            if l == end_line {
                ended = true;
                break;
            }
            // RFC 1421 headers ("Proc-Type: ...") are not used by cosign or PKCS#8; a line with
            // ':' would fail base64 below, which is the right answer for an encrypted legacy PEM.
            body.push_str(l);
        }
        if !ended {
            return Err(PemError::Unterminated {
                label: label.to_string(),
                line: begin,
            });
        }
        let der = STANDARD
            .decode(body.as_bytes())
            .map_err(|_| PemError::BadBase64 {
                label: label.to_string(),
                line: begin,
            })?;
        blocks.push(PemBlock {
            label: label.to_string(),
            der: Zeroizing::new(der),
        });
    }
    if blocks.is_empty() {
        return Err(PemError::NoBlock);
    }
    Ok(blocks)
}

/// Encodes `bytes` as one PEM block, 64 base64 characters a line, as Go's `pem.Encode` does.
pub(crate) fn encode(label: &str, bytes: &[u8]) -> Zeroizing<String> {
    let b64 = Zeroizing::new(STANDARD.encode(bytes));
    let mut out = Zeroizing::new(String::with_capacity(b64.len() + b64.len() / 64 + 64));
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so any 64-byte chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_wraps_at_64() {
        let data: Vec<u8> = (0..=200u8).collect();
        let text = encode("TEST", &data);
        assert!(text.lines().all(|l| l.len() <= 64));
        assert_eq!(text.lines().nth(1).map(str::len), Some(64));
        let blocks = parse_blocks(&text).expect("parse");
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].label, "TEST");
        assert_eq!(blocks[0].der.as_slice(), data.as_slice());
    }

    #[test]
    fn finds_blocks_among_other_text() {
        let text = format!(
            "junk\n{}comment\n{}",
            encode("EC PARAMETERS", b"\x06\x08").as_str(),
            encode("EC PRIVATE KEY", b"abc").as_str()
        );
        let blocks = parse_blocks(&text).expect("parse");
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[1].label, "EC PRIVATE KEY");
    }

    #[test]
    fn truncated_and_damaged_blocks_are_errors() {
        let full = encode("PUBLIC KEY", &[7u8; 90]);
        let truncated: String = full.lines().take(2).map(|l| format!("{l}\n")).collect();
        assert_eq!(
            parse_blocks(&truncated).err(),
            Some(PemError::Unterminated {
                label: "PUBLIC KEY".into(),
                line: 1
            })
        );
        let damaged: String = full
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i == 1 {
                    "!!notbase64!!\n".to_string()
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        assert!(matches!(
            parse_blocks(&damaged),
            Err(PemError::BadBase64 { .. })
        ));
        assert_eq!(parse_blocks("hello").err(), Some(PemError::NoBlock));
    }
}
