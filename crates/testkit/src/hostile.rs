//! Random layers made to hurt: tar streams whose names, link targets and whiteouts aim at
//! `..`, `.`, absolute paths, links through links, devices and duplicates. The generator is
//! seeded, so a failing case is reproducible from its seed. `fuzz/` explores the same inputs
//! coverage-guided; these run in every test pass.

use crate::Rng;

const COMPONENTS: &[&str] = &[
    "a",
    "b",
    "dev",
    "etc",
    "..",
    ".",
    "",
    ".wh.a",
    ".wh.b",
    ".wh..",
    ".wh...",
    ".wh..wh..opq",
    "lnk",
    "up",
];

const TARGETS: &[&str] = &[
    "a",
    "/a",
    "..",
    "../..",
    "/",
    "a/b",
    "lnk",
    ".",
    "up/a",
    "/etc",
    "../../../../etc",
];

/// A path of one to three components, sometimes absolute or `./`-prefixed.
fn path(rng: &mut Rng) -> String {
    let mut p = String::new();
    match rng.below(6) {
        0 => p.push('/'),
        1 => p.push_str("./"),
        _ => {}
    }
    let n = 1 + rng.below(3);
    for i in 0..n {
        if i > 0 {
            p.push('/');
        }
        p.push_str(rng.pick(COMPONENTS));
    }
    p
}

/// One tar header block (old-style: names and link targets of at most 100 bytes).
fn header(name: &str, kind: u8, link: &str, size: usize, mode: u32) -> [u8; 512] {
    let mut h = [0u8; 512];
    let name = &name.as_bytes()[..name.len().min(100)];
    h[..name.len()].copy_from_slice(name);
    let octal = |h: &mut [u8; 512], at: usize, width: usize, v: u64| {
        let s = format!("{v:0w$o}\0", w = width - 1);
        h[at..at + width].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, u64::from(mode));
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, size as u64);
    octal(&mut h, 136, 12, 0);
    h[156] = kind;
    let link = &link.as_bytes()[..link.len().min(100)];
    h[157..157 + link.len()].copy_from_slice(link);
    octal(&mut h, 329, 8, 1);
    octal(&mut h, 337, 8, 3);
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

/// An uncompressed layer of one to twelve hostile entries.
pub fn layer(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..1 + rng.below(12) {
        let name = path(rng);
        let (kind, link, body): (u8, String, &[u8]) = match rng.below(8) {
            0 | 1 => (b'0', String::new(), b"data"),
            2 | 3 => (b'5', String::new(), b""),
            4 => (b'2', rng.pick(TARGETS).to_string(), b""),
            5 => (b'1', path(rng), b""),
            6 => (b'3', String::new(), b""),
            _ => (b'6', String::new(), b""),
        };
        out.extend_from_slice(&header(&name, kind, &link, body.len(), 0o755));
        out.extend_from_slice(body);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}
