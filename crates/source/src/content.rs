//! LinuxKit's content hash, the `XXXXXXX` in `TREE-dirty-XXXXXXX`, reproduced byte for byte.
//!
//! LinuxKit runs `git ls-files` and `git ls-files --exclude-standard --others` in the package
//! directory, joins the two outputs with a newline, trims white space, and feeds every listed
//! file that `lstat` says is neither a directory nor a symlink, and that opens, into one SHA-256.
//! The quirks of that text pipeline decide the result, so they are kept: names git quotes
//! (control characters, `"`, `\`, and bytes >= 0x80 unless `core.quotePath=false`) are looked up
//! with their quotes and so skipped; a first name's leading and a last name's trailing white
//! space are trimmed. One deliberate difference: FIFOs, sockets and devices are skipped, where
//! LinuxKit would block reading a FIFO.
//!
//! This module only reads the files it is handed; it knows nothing about git.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use gix::bstr::{BStr, ByteSlice};
use oxkit_spec::{Digest, Sha256Hasher};

use crate::SourceError;

/// SHA-256 over the content of the listed files, as LinuxKit's `contentHash` computes it.
/// `tracked` are `git ls-files` paths and `untracked` `git ls-files --others` paths, both
/// relative to `dir` and in git's order.
pub(crate) fn content_hash<'a>(
    dir: &Path,
    tracked: impl IntoIterator<Item = &'a BStr>,
    untracked: impl IntoIterator<Item = &'a BStr>,
    quote_path: bool,
) -> Result<Digest, SourceError> {
    let mut text = Vec::new();
    for path in tracked {
        quote_c_style(path, quote_path, &mut text);
        text.push(b'\n');
    }
    text.push(b'\n');
    for path in untracked {
        quote_c_style(path, quote_path, &mut text);
        text.push(b'\n');
    }
    let mut hasher = Sha256Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    for line in scan_lines(text.trim()) {
        let path = go_join(dir, line);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!("content hash: cannot stat {}: {e}, skipped", path.display());
                continue;
            }
        };
        if !meta.file_type().is_file() {
            continue;
        }
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!("content hash: cannot open {}: {e}, skipped", path.display());
                continue;
            }
        };
        loop {
            let n = file.read(&mut buf).map_err(|e| SourceError::io(&path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    Ok(hasher.finish())
}

/// Go's `bufio.ScanLines`: tokens separated by `\n`, a trailing `\r` dropped from each, a final
/// unterminated token kept unless empty.
fn scan_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(text).filter(|t| !t.is_empty());
    std::iter::from_fn(move || {
        let data = rest?;
        let (line, next) = match data.find_byte(b'\n') {
            Some(i) => (&data[..i], Some(&data[i + 1..]).filter(|n| !n.is_empty())),
            None => (data, None),
        };
        rest = next;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    })
}

/// Go's `filepath.Join(dir, name)` for the names `git ls-files` prints: relative, clean, never
/// `.` or `..` components. Joined as bytes so a name starting with `/` cannot replace `dir`.
fn go_join(dir: &Path, name: &[u8]) -> PathBuf {
    if name.is_empty() {
        return dir.to_path_buf();
    }
    let mut bytes = dir.as_os_str().as_bytes().to_vec();
    if !bytes.ends_with(b"/") {
        bytes.push(b'/');
    }
    bytes.extend_from_slice(name);
    PathBuf::from(std::ffi::OsStr::from_bytes(&bytes))
}

/// git's `quote_c_style` as `ls-files` applies it to each name: unchanged unless a byte needs
/// quoting, else the whole name in double quotes with C escapes (`\t`, `\"`, `\\`, `\303`...).
pub(crate) fn quote_c_style(name: &BStr, quote_path: bool, out: &mut Vec<u8>) {
    let must_quote = |b: u8| match b {
        0x00..=0x1f | 0x7f | b'"' | b'\\' => true,
        0x80..=0xff => quote_path,
        _ => false,
    };
    if !name.iter().copied().any(must_quote) {
        out.extend_from_slice(name);
        return;
    }
    out.push(b'"');
    for &b in name.iter() {
        if !must_quote(b) {
            out.push(b);
            continue;
        }
        out.push(b'\\');
        match b {
            0x07 => out.push(b'a'),
            0x08 => out.push(b'b'),
            b'\t' => out.push(b't'),
            b'\n' => out.push(b'n'),
            0x0b => out.push(b'v'),
            0x0c => out.push(b'f'),
            b'\r' => out.push(b'r'),
            b'"' => out.push(b'"'),
            b'\\' => out.push(b'\\'),
            _ => out.extend_from_slice(format!("{b:03o}").as_bytes()),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(name: &[u8], fully: bool) -> String {
        let mut out = Vec::new();
        quote_c_style(name.as_bstr(), fully, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn quoting_matches_git() {
        assert_eq!(quoted(b"plain/name.txt", true), "plain/name.txt");
        assert_eq!(quoted(b"with space", true), "with space");
        assert_eq!(quoted(b"tab\there", true), "\"tab\\there\"");
        assert_eq!(quoted(b"q\"uote", true), "\"q\\\"uote\"");
        assert_eq!(quoted(b"back\\slash", true), "\"back\\\\slash\"");
        assert_eq!(quoted("é".as_bytes(), true), "\"\\303\\251\"");
        assert_eq!(quoted("é".as_bytes(), false), "é");
        assert_eq!(quoted(b"del\x7f", false), "\"del\\177\"");
        assert_eq!(quoted(b"bell\x07", false), "\"bell\\a\"");
        assert_eq!(quoted(b"x\x01", false), "\"x\\001\"");
    }

    #[test]
    fn scan_lines_like_go() {
        let lines: Vec<&[u8]> = scan_lines(b"a\n\nb\r\nc").collect();
        assert_eq!(lines, vec![&b"a"[..], b"", b"b", b"c"]);
        assert_eq!(scan_lines(b"").count(), 0);
        assert_eq!(scan_lines(b"x\n").collect::<Vec<_>>(), vec![&b"x"[..]]);
    }

    #[test]
    fn go_join_never_escapes_dir() {
        assert_eq!(
            go_join(Path::new("/p"), b"/etc/passwd"),
            Path::new("/p//etc/passwd")
        );
        assert_eq!(go_join(Path::new("/p"), b""), Path::new("/p"));
        assert_eq!(go_join(Path::new("/p/"), b"a/b"), Path::new("/p/a/b"));
    }
}
