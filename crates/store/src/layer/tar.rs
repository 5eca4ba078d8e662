//! A small tar encoder that writes every header field itself, so layer bytes depend only on
//! the entries and never on a library's defaults: USTAR headers (`ustar\0` `00`), octal
//! fields as Go's archive/tar writes them, no user or group names, and PAX extended headers
//! (records sorted by key) for what USTAR cannot hold: long or non-ASCII paths and link
//! targets, large numbers, extended attributes (`SCHILY.xattr.*`).
//!
//! This module only encodes; it neither reads files nor decides metadata.

use std::collections::BTreeMap;
use std::io::{self, Write};

pub(crate) const BLOCK: usize = 512;

const NAME_LEN: usize = 100;
const PREFIX_LEN: usize = 155;
/// The largest value an octal field of `width` bytes holds (width - 1 digits and a NUL).
const fn octal_max(width: usize) -> u64 {
    (1u64 << (3 * (width as u32 - 1))) - 1
}

pub(crate) const TYPE_FILE: u8 = b'0';
pub(crate) const TYPE_HARDLINK: u8 = b'1';
pub(crate) const TYPE_SYMLINK: u8 = b'2';
pub(crate) const TYPE_CHAR: u8 = b'3';
pub(crate) const TYPE_BLOCK: u8 = b'4';
pub(crate) const TYPE_DIR: u8 = b'5';
pub(crate) const TYPE_FIFO: u8 = b'6';
const TYPE_PAX: u8 = b'x';

/// Everything a header needs, already decided by the caller.
pub(crate) struct Header<'a> {
    /// Full name (directories with a trailing `/`).
    pub name: &'a [u8],
    pub typeflag: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: u64,
    pub linkname: &'a [u8],
    pub devmajor: u32,
    pub devminor: u32,
    pub xattrs: &'a BTreeMap<String, Vec<u8>>,
}

/// Writes `value` as zero-padded octal in `field`, NUL-terminated.
fn put_octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

/// Splits a long ASCII name into USTAR's prefix and name the way Go does, if possible.
fn split_ustar(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() <= NAME_LEN {
        return Some((&[], name));
    }
    let mut limit = name.len().min(PREFIX_LEN + 1);
    if limit == name.len() && name[limit - 1] == b'/' {
        limit -= 1;
    }
    let i = name[..limit].iter().rposition(|b| *b == b'/')?;
    let (prefix, rest) = (&name[..i], &name[i + 1..]);
    if i == 0 || rest.is_empty() || rest.len() > NAME_LEN || prefix.len() > PREFIX_LEN {
        return None;
    }
    Some((prefix, rest))
}

/// One PAX record: `"%d %s=%s\n"` where the length counts itself.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len.to_string().len() + body != len {
        len = len.to_string().len() + body;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn encode_block(
    h: &Header<'_>,
    name: &[u8],
    prefix: &[u8],
    linkname: &[u8],
    pax: &PaxNeeds,
) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    let n = name.len().min(NAME_LEN);
    b[..n].copy_from_slice(&name[..n]);
    put_octal(&mut b[100..108], u64::from(h.mode & 0o7777));
    put_octal(&mut b[108..116], if pax.uid { 0 } else { h.uid });
    put_octal(&mut b[116..124], if pax.gid { 0 } else { h.gid });
    put_octal(&mut b[124..136], if pax.size { 0 } else { h.size });
    put_octal(&mut b[136..148], if pax.mtime { 0 } else { h.mtime });
    b[156] = h.typeflag;
    let l = linkname.len().min(NAME_LEN);
    b[157..157 + l].copy_from_slice(&linkname[..l]);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    put_octal(&mut b[329..337], u64::from(h.devmajor));
    put_octal(&mut b[337..345], u64::from(h.devminor));
    let p = prefix.len().min(PREFIX_LEN);
    b[345..345 + p].copy_from_slice(&prefix[..p]);
    // The checksum is computed with its own field as spaces, then written as Go does:
    // six octal digits, NUL, space.
    b[148..156].copy_from_slice(b"        ");
    let sum: u64 = b.iter().map(|x| u64::from(*x)).sum();
    let text = format!("{sum:06o}");
    b[148..154].copy_from_slice(&text.as_bytes()[text.len() - 6..]);
    b[154] = 0;
    b[155] = b' ';
    b
}

#[derive(Default)]
struct PaxNeeds {
    uid: bool,
    gid: bool,
    size: bool,
    mtime: bool,
}

/// Encodes the header block(s) for `h`: a PAX extended header first when needed.
pub(crate) fn encode_header(h: &Header<'_>, out: &mut Vec<u8>) {
    let mut records: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    let needs = PaxNeeds {
        uid: h.uid > octal_max(8),
        gid: h.gid > octal_max(8),
        size: h.size > octal_max(12),
        mtime: h.mtime > octal_max(12),
    };
    let (prefix, name) = match split_ustar(h.name) {
        Some(split) if h.name.is_ascii() => split,
        _ => {
            records.insert("path", h.name.to_vec());
            (&[][..], h.name)
        }
    };
    let linkname = if h.linkname.len() > NAME_LEN || !h.linkname.is_ascii() {
        records.insert("linkpath", h.linkname.to_vec());
        &h.linkname[..h.linkname.len().min(NAME_LEN)]
    } else {
        h.linkname
    };
    if needs.uid {
        records.insert("uid", h.uid.to_string().into_bytes());
    }
    if needs.gid {
        records.insert("gid", h.gid.to_string().into_bytes());
    }
    if needs.size {
        records.insert("size", h.size.to_string().into_bytes());
    }
    if needs.mtime {
        records.insert("mtime", h.mtime.to_string().into_bytes());
    }
    let xattr_keys: Vec<String> = h
        .xattrs
        .keys()
        .map(|k| format!("SCHILY.xattr.{k}"))
        .collect();
    for (key, value) in xattr_keys.iter().zip(h.xattrs.values()) {
        records.insert(key.as_str(), value.clone());
    }
    if !records.is_empty() {
        let mut data = Vec::new();
        for (k, v) in &records {
            pax_record(&mut data, k, v);
        }
        let base = h.name.strip_suffix(b"/").unwrap_or(h.name);
        let base = base.rsplit(|b| *b == b'/').next().unwrap_or(base);
        let mut pax_name = b"PaxHeaders.0/".to_vec();
        pax_name.extend_from_slice(base);
        pax_name.truncate(NAME_LEN);
        let empty = BTreeMap::new();
        let ph = Header {
            name: &pax_name,
            typeflag: TYPE_PAX,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: data.len() as u64,
            mtime: 0,
            linkname: b"",
            devmajor: 0,
            devminor: 0,
            xattrs: &empty,
        };
        out.extend_from_slice(&encode_block(
            &ph,
            &pax_name,
            b"",
            b"",
            &PaxNeeds::default(),
        ));
        out.extend_from_slice(&data);
        out.resize(out.len().next_multiple_of(BLOCK), 0);
    }
    out.extend_from_slice(&encode_block(h, name, prefix, linkname, &needs));
}

/// Writes the padding after `size` bytes of entry data.
pub(crate) fn write_padding(w: &mut impl Write, size: u64) -> io::Result<()> {
    let rem = (size % BLOCK as u64) as usize;
    if rem != 0 {
        w.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
    }
    Ok(())
}

/// The end-of-archive marker: two zero blocks (no padding to a record size, as Go does).
pub(crate) fn write_trailer(w: &mut impl Write) -> io::Result<()> {
    w.write_all(&[0u8; 2 * BLOCK])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(name: &'a [u8], xattrs: &'a BTreeMap<String, Vec<u8>>) -> Header<'a> {
        Header {
            name,
            typeflag: TYPE_FILE,
            mode: 0o4755,
            uid: 1000,
            gid: 100,
            size: 3,
            mtime: 1_700_000_000,
            linkname: b"",
            devmajor: 0,
            devminor: 0,
            xattrs,
        }
    }

    type Back = (String, u32, u64, Option<Vec<(String, Vec<u8>)>>);

    fn read_back(bytes: &[u8]) -> Vec<Back> {
        let mut ar = tar::Archive::new(bytes);
        let mut out = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let pax = e.pax_extensions().unwrap().map(|p| {
                p.map(|r| {
                    let r = r.unwrap();
                    (r.key().unwrap().to_string(), r.value_bytes().to_vec())
                })
                .collect()
            });
            out.push((
                e.path().unwrap().display().to_string(),
                e.header().mode().unwrap(),
                e.header().uid().unwrap(),
                pax,
            ));
        }
        out
    }

    #[test]
    fn plain_header_matches_go_layout() {
        let none = BTreeMap::new();
        let mut out = Vec::new();
        encode_header(&header(b"bin/su", &none), &mut out);
        assert_eq!(out.len(), BLOCK);
        assert_eq!(&out[100..108], b"0004755\0");
        assert_eq!(&out[108..116], b"0001750\0");
        assert_eq!(&out[124..136], b"00000000003\0");
        assert_eq!(&out[257..265], b"ustar\x0000");
        assert!(
            out[265..329].iter().all(|b| *b == 0),
            "no user or group names"
        );
        out.extend_from_slice(b"abc");
        write_padding(&mut out, 3).unwrap();
        write_trailer(&mut out).unwrap();
        let back = read_back(&out);
        assert_eq!(back, vec![("bin/su".into(), 0o4755, 1000, None)]);
    }

    #[test]
    fn long_names_split_or_go_to_pax_and_xattrs_are_pax_records() {
        let none = BTreeMap::new();
        let long_dir = "d".repeat(120);
        let split = format!("{long_dir}/file");
        let mut out = Vec::new();
        encode_header(&header(split.as_bytes(), &none), &mut out);
        assert_eq!(out.len(), BLOCK, "fits USTAR prefix+name, no PAX");

        let very_long = format!("{}/{}", "a".repeat(200), "b".repeat(150));
        let caps = BTreeMap::from([(
            "security.capability".to_string(),
            vec![1u8, 0, 0, 2, 0x20, 0, 0, 0],
        )]);
        let mut out = Vec::new();
        encode_header(&header(very_long.as_bytes(), &caps), &mut out);
        out.extend_from_slice(b"abc");
        write_padding(&mut out, 3).unwrap();
        write_trailer(&mut out).unwrap();
        let back = read_back(&out);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].0, very_long);
        let pax = back[0].3.clone().unwrap();
        assert_eq!(pax[0].0, "SCHILY.xattr.security.capability");
        assert_eq!(pax[0].1, caps["security.capability"]);
        assert_eq!(pax[1].0, "path");
    }

    #[test]
    fn pax_record_lengths_count_themselves() {
        for n in [0, 1, 5, 90, 93, 94, 95, 996, 997, 998, 10_000] {
            let mut out = Vec::new();
            let value = vec![b'v'; n];
            pax_record(&mut out, "path", &value);
            let (len, _) =
                std::str::from_utf8(&out[..out.iter().position(|b| *b == b' ').unwrap()])
                    .map(|s| (s.parse::<usize>().unwrap(), ()))
                    .unwrap();
            assert_eq!(len, out.len(), "value of {n} bytes");
        }
    }

    #[test]
    fn big_numbers_use_pax() {
        let none = BTreeMap::new();
        let mut h = header(b"f", &none);
        h.uid = 5_000_000;
        h.size = 0;
        let mut out = Vec::new();
        encode_header(&h, &mut out);
        write_trailer(&mut out).unwrap();
        assert_eq!(read_back(&out)[0].2, 5_000_000);
    }
}
