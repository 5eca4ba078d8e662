//! The UKI builder against synthetic PE32+/PE32 stubs made here (always run), against systemd's
//! real stub checked with binutils' `objdump` and `objcopy`, and against hostile stubs.

use std::path::{Path, PathBuf};
use std::process::Command;

use oxkit_testkit::Rng;

use super::*;

const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

/// systemd's x86-64 EFI stub; panics naming the package when it is missing.
fn real_stub() -> Vec<u8> {
    std::fs::read(STUB).unwrap_or_else(|e| {
        panic!(
            "cannot read systemd's EFI stub {STUB}: {e}; install Debian's systemd-boot-efi package \
             (apt-get install -y systemd-boot-efi)"
        )
    })
}

/// A binutils tool; panics naming the package when it is missing.
fn binutils(name: &str) -> PathBuf {
    oxkit_testkit::require_tool_from(name, "binutils")
}

// ---- a minimal PE image, and a reader of one, independent of the code under test ----

const LFANEW: usize = 0x80;
const COFF: usize = LFANEW + 4;
const OPT: usize = COFF + 20;

/// How the synthetic stub differs from the plain one.
#[derive(Default)]
struct Synth {
    /// PE32 instead of PE32+.
    pe32: bool,
    /// A COFF symbol and string table after the section data, ending the file.
    symbols: bool,
    /// Bytes after the section data (after the symbol table, if any).
    trailing: Vec<u8>,
}

fn opt_len(pe32: bool) -> usize {
    if pe32 { 224 } else { 240 }
}

fn table(pe32: bool) -> usize {
    OPT + opt_len(pe32)
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn get32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Two sections, as a linker lays them out: `.text` (0x180 bytes at VA 0x1000, file 0x400) and
/// `.data` (0x200 bytes of data mapped as 0x1800 at VA 0x2000, file 0x600); SectionAlignment
/// 0x1000, FileAlignment 0x200, SizeOfHeaders 0x400; the checksum filled in.
fn synthetic(opts: &Synth) -> Vec<u8> {
    let mut b = vec![0u8; 0x800];
    b[..2].copy_from_slice(b"MZ");
    put32(&mut b, 0x3c, LFANEW as u32);
    b[LFANEW..LFANEW + 4].copy_from_slice(b"PE\0\0");
    put16(&mut b, COFF, 0x8664);
    put16(&mut b, COFF + 2, 2);
    put32(&mut b, COFF + 4, 0x1234_5678); // TimeDateStamp
    put16(&mut b, COFF + 16, opt_len(opts.pe32) as u16);
    put16(&mut b, COFF + 18, 0x0206);
    put16(&mut b, OPT, if opts.pe32 { 0x10b } else { 0x20b });
    put32(&mut b, OPT + 4, 0x200); // SizeOfCode
    put32(&mut b, OPT + 8, 0x200); // SizeOfInitializedData
    put32(&mut b, OPT + 16, 0x1000); // AddressOfEntryPoint
    put32(&mut b, OPT + 20, 0x1000); // BaseOfCode
    put32(&mut b, OPT + 32, 0x1000); // SectionAlignment
    put32(&mut b, OPT + 36, 0x200); // FileAlignment
    put32(&mut b, OPT + 56, 0x4000); // SizeOfImage
    put32(&mut b, OPT + 60, 0x400); // SizeOfHeaders
    put16(&mut b, OPT + 68, 10); // EFI application
    put32(&mut b, OPT + if opts.pe32 { 92 } else { 108 }, 16);
    let t = table(opts.pe32);
    for (i, (name, vsize, va, raw, ptr, chars)) in [
        (
            b".text\0\0\0",
            0x180u32,
            0x1000u32,
            0x200u32,
            0x400u32,
            0x6000_0020u32,
        ),
        (b".data\0\0\0", 0x1800, 0x2000, 0x200, 0x600, 0xc000_0040),
    ]
    .into_iter()
    .enumerate()
    {
        let h = t + 40 * i;
        b[h..h + 8].copy_from_slice(name);
        put32(&mut b, h + 8, vsize);
        put32(&mut b, h + 12, va);
        put32(&mut b, h + 16, raw);
        put32(&mut b, h + 20, ptr);
        put32(&mut b, h + 36, chars);
    }
    for (i, byte) in b[0x400..0x800].iter_mut().enumerate() {
        *byte = (i % 251) as u8 + 1;
    }
    if opts.symbols {
        put32(&mut b, COFF + 8, 0x800);
        put32(&mut b, COFF + 12, 2);
        b.extend_from_slice(&[0x5a; 36]);
        b.extend_from_slice(&10u32.to_le_bytes());
        b.extend_from_slice(b"abcde\0");
    }
    b.extend_from_slice(&opts.trailing);
    let sum = pe_checksum(&b);
    put32(&mut b, OPT + 64, sum);
    b
}

/// A section header as the test reads it.
#[derive(Debug, PartialEq, Eq)]
struct Hdr {
    name: String,
    vsize: u32,
    va: u32,
    raw: u32,
    ptr: u32,
    chars: u32,
}

fn sections(image: &[u8]) -> Vec<Hdr> {
    let coff = get32(image, 0x3c) as usize + 4;
    let count = get16(image, coff + 2) as usize;
    let table = coff + 20 + get16(image, coff + 16) as usize;
    (0..count)
        .map(|i| {
            let h = table + 40 * i;
            let name = &image[h..h + 8];
            let end = name.iter().position(|&c| c == 0).unwrap_or(8);
            Hdr {
                name: String::from_utf8_lossy(&name[..end]).into_owned(),
                vsize: get32(image, h + 8),
                va: get32(image, h + 12),
                raw: get32(image, h + 16),
                ptr: get32(image, h + 20),
                chars: get32(image, h + 36),
            }
        })
        .collect()
}

/// The checksum an image's header should hold: the field zeroed, then summed.
fn expected_checksum(image: &[u8]) -> u32 {
    let at = get32(image, 0x3c) as usize + 4 + 20 + 64;
    let mut copy = image.to_vec();
    copy[at..at + 4].fill(0);
    pe_checksum(&copy)
}

fn checksum_field(image: &[u8]) -> u32 {
    get32(image, get32(image, 0x3c) as usize + 4 + 20 + 64)
}

const OSREL: &[u8] = b"NAME=oxkit\nID=oxkit\n";
const CMDLINE: &[u8] = b"console=ttyS0 quiet";

fn kernel() -> Vec<u8> {
    let mut k: Vec<u8> = (0..0x1001u32).map(|i| (i * 7 % 256) as u8).collect();
    k[..2].copy_from_slice(b"MZ");
    k
}

fn initrd() -> Vec<u8> {
    (0..0x345u32).map(|i| (i * 13 % 256) as u8).collect()
}

fn parts<'a>(linux: &'a [u8], initrd: &'a [u8]) -> UkiParts<'a> {
    UkiParts {
        osrel: OSREL,
        cmdline: CMDLINE,
        linux,
        initrd,
    }
}

// ---- placement, on synthetic stubs ----

#[test]
fn synthetic_pe32_plus_sections_are_placed_as_ukify_places_them() {
    let stub = synthetic(&Synth::default());
    let (linux, initrd) = (kernel(), initrd());
    let uki = build_uki(&stub, &parts(&linux, &initrd)).expect("builds");

    let hdrs = sections(&uki);
    let hdr = |name: &str, vsize, va, raw, ptr, chars| Hdr {
        name: name.into(),
        vsize,
        va,
        raw,
        ptr,
        chars,
    };
    // After .data (mapped to 0x3800): page-aligned VAs, data at the 0x200-aligned end of file.
    assert_eq!(
        hdrs[2..],
        [
            hdr(".osrel", 20, 0x4000, 0x200, 0x800, 0x4000_0040),
            hdr(".cmdline", 19, 0x5000, 0x200, 0xa00, 0x4000_0040),
            hdr(".initrd", 0x345, 0x6000, 0x400, 0xc00, 0x4000_0040),
            hdr(".linux", 0x1001, 0x7000, 0x1200, 0x1000, 0x4000_0020),
        ]
    );
    assert_eq!(uki.len(), 0x2200);
    for (h, data) in hdrs[2..]
        .iter()
        .zip([OSREL, CMDLINE, initrd.as_slice(), linux.as_slice()])
    {
        let start = h.ptr as usize;
        assert_eq!(&uki[start..start + data.len()], data, "{}", h.name);
        let pad = &uki[start + data.len()..start + h.raw as usize];
        assert!(pad.iter().all(|&b| b == 0), "{} padding", h.name);
    }
    assert_eq!(get16(&uki, COFF + 2), 6, "NumberOfSections");
    assert_eq!(get32(&uki, OPT + 56), 0x9000, "SizeOfImage");
    assert_eq!(
        get32(&uki, OPT + 8),
        0x200 + 0x1a00,
        "SizeOfInitializedData"
    );
    assert_eq!(get32(&uki, COFF + 4), 0x1234_5678, "TimeDateStamp kept");
    assert_eq!(checksum_field(&uki), expected_checksum(&uki));
    // Nothing else in the stub changed: its section data, and its headers but for the fields.
    assert_eq!(&uki[0x400..0x800], &stub[0x400..0x800]);
    let mut headers = uki[..0x400].to_vec();
    let t = table(false);
    headers[t + 80..t + 240].fill(0);
    for field in [COFF + 2, OPT + 8, OPT + 56, OPT + 64] {
        headers[field..field + 4].copy_from_slice(&stub[field..field + 4]);
    }
    assert_eq!(headers, stub[..0x400]);
}

#[test]
fn synthetic_pe32_is_extended_too() {
    let stub = synthetic(&Synth {
        pe32: true,
        ..Synth::default()
    });
    let (linux, initrd) = (kernel(), initrd());
    let uki = build_uki(&stub, &parts(&linux, &initrd)).expect("builds");
    let names: Vec<_> = sections(&uki).into_iter().map(|h| h.name).collect();
    assert_eq!(
        names,
        [".text", ".data", ".osrel", ".cmdline", ".initrd", ".linux"]
    );
    assert_eq!(get32(&uki, OPT + 56), 0x9000, "SizeOfImage");
    assert_eq!(checksum_field(&uki), expected_checksum(&uki));
}

#[test]
fn uki_output_is_deterministic() {
    let stub = synthetic(&Synth::default());
    let (linux, initrd) = (kernel(), initrd());
    let a = build_uki(&stub, &parts(&linux, &initrd)).expect("builds");
    let b = build_uki(&stub, &parts(&linux, &initrd)).expect("builds");
    assert_eq!(a, b);
}

#[test]
fn uki_empty_parts_other_than_the_kernel_are_left_out() {
    let stub = synthetic(&Synth::default());
    let linux = kernel();
    let uki = build_uki(
        &stub,
        &UkiParts {
            osrel: b"",
            cmdline: b"",
            linux: &linux,
            initrd: b"",
        },
    )
    .expect("builds");
    let hdrs = sections(&uki);
    assert_eq!(hdrs.len(), 3);
    assert_eq!((hdrs[2].name.as_str(), hdrs[2].va), (".linux", 0x4000));

    let err = build_uki(&stub, &parts(b"", b"initrd")).expect_err("no kernel");
    assert!(err.contains("kernel is empty"), "{err}");
}

#[test]
fn uki_strips_a_trailing_symbol_table_as_ukify_does() {
    let stub = synthetic(&Synth {
        symbols: true,
        ..Synth::default()
    });
    assert_eq!(stub.len(), 0x800 + 36 + 10);
    let (linux, initrd) = (kernel(), initrd());
    let uki = build_uki(&stub, &parts(&linux, &initrd)).expect("builds");
    assert_eq!(get32(&uki, COFF + 8), 0, "PointerToSymbolTable");
    assert_eq!(get32(&uki, COFF + 12), 0, "NumberOfSymbols");
    assert_eq!(
        get16(&uki, COFF + 18),
        0x0206 | 0x0008,
        "LOCAL_SYMS_STRIPPED"
    );
    assert_eq!(
        sections(&uki)[2].ptr,
        0x800,
        "the first new section replaces it"
    );
    assert_eq!(checksum_field(&uki), expected_checksum(&uki));
}

#[test]
fn uki_keeps_other_trailing_data_and_appends_after_it() {
    let stub = synthetic(&Synth {
        trailing: vec![0xaa; 5],
        ..Synth::default()
    });
    let (linux, initrd) = (kernel(), initrd());
    let uki = build_uki(&stub, &parts(&linux, &initrd)).expect("builds");
    assert_eq!(&uki[0x800..0x805], &[0xaa; 5]);
    assert!(uki[0x805..0xa00].iter().all(|&b| b == 0));
    assert_eq!(sections(&uki)[2].ptr, 0xa00);

    // A symbol table that does not end the file is not one ukify would strip either.
    let stub = synthetic(&Synth {
        symbols: true,
        trailing: vec![1],
        ..Synth::default()
    });
    let uki = build_uki(&stub, &parts(&linux, &initrd)).expect("builds");
    assert_eq!(get32(&uki, COFF + 8), 0x800, "symbol table kept");
    assert_eq!(sections(&uki)[2].ptr, 0xa00);
}

#[test]
fn uki_checksum_is_the_pe_checksum() {
    // Worked by hand: words 0x0201 + 0x0403 = 0x0604, a trailing odd byte 0x05, plus length 5.
    assert_eq!(pe_checksum(&[1, 2, 3, 4, 5]), 0x0604 + 5 + 5);
    // Carries fold back into the low 16 bits.
    assert_eq!(pe_checksum(&[0xff, 0xff, 0x02, 0x00]), 0x0002 + 4);
    assert_eq!(pe_checksum(&[]), 0);
}

// ---- hostile stubs ----

fn expect_err(stub: &[u8], wanted: &str) {
    let (linux, initrd) = (kernel(), initrd());
    match build_uki(stub, &parts(&linux, &initrd)) {
        Ok(_) => panic!("accepted a stub that should fail with {wanted:?}"),
        Err(e) => assert!(e.contains(wanted), "error {e:?} does not say {wanted:?}"),
    }
}

#[test]
fn uki_refuses_hostile_stubs() {
    let good = synthetic(&Synth::default());
    let t = table(false);
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        b
    };

    expect_err(b"", "not a PE image");
    expect_err(b"MZ", "DOS header is truncated");
    expect_err(&good[..0x3e], "DOS header is truncated");
    expect_err(&with(&|b| b[0] = b'X'), "not a PE image");
    expect_err(
        &with(&|b| put32(b, 0x3c, 0xffff_fff0)),
        "no \"PE\\0\\0\" signature",
    );
    expect_err(
        &with(&|b| put32(b, 0x3c, 0x7ff)),
        "no \"PE\\0\\0\" signature",
    );
    expect_err(&with(&|b| b[LFANEW + 1] = b'X'), "signature");
    expect_err(&good[..COFF + 10], "COFF header");
    expect_err(&good[..OPT + 100], "optional header");
    expect_err(&with(&|b| put16(b, COFF + 16, 0)), "no optional header");
    expect_err(&with(&|b| put16(b, COFF + 16, 60)), "too short");
    expect_err(&with(&|b| put16(b, OPT, 0x30b)), "neither PE32");
    expect_err(
        &with(&|b| put32(b, OPT + 108, u32::MAX)),
        "data directories",
    );
    expect_err(
        &with(&|b| put16(b, COFF + 2, u16::MAX)),
        "runs past the end",
    );
    expect_err(&good[..t + 50], "truncated");
    expect_err(&good[..0x700], "truncated");
    expect_err(
        &with(&|b| put32(b, t + 40 + 16, 0x1000_0000)),
        "runs past its end",
    );
    expect_err(&with(&|b| put32(b, OPT + 60, 0x10_0000)), "SizeOfHeaders");
    expect_err(&with(&|b| put32(b, OPT + 36, 0)), "FileAlignment");
    expect_err(&with(&|b| put32(b, OPT + 36, 0x300)), "FileAlignment");
    expect_err(&with(&|b| put32(b, OPT + 36, 0x8000_0000)), "FileAlignment");
    expect_err(&with(&|b| put32(b, OPT + 32, 0x100)), "SectionAlignment");
    expect_err(&with(&|b| put32(b, OPT + 32, 0x1001)), "SectionAlignment");
    // Signed: a certificate table in the security directory (index 4).
    expect_err(&with(&|b| put32(b, OPT + 112 + 32, 0x800)), "signed");
    // Room for only 3 more headers below SizeOfHeaders, or before the first section's data.
    expect_err(
        &with(&|b| put32(b, OPT + 60, (t + 80 + 3 * 40) as u32)),
        "no room for 4 more section headers",
    );
    expect_err(
        &with(&|b| put32(b, t + 20, (t + 80 + 100) as u32)),
        "first section's data starts at",
    );
    // Fill after the section table (gnu-efi's arm64 stubs have NOPs there) is overwritten.
    let filled = with(&|b| b[t + 80 + 3 * 40 + 7] = 0x1f);
    let (linux, initrd) = (kernel(), initrd());
    let uki = build_uki(&filled, &parts(&linux, &initrd)).expect("fill is not data");
    assert_eq!(
        uki[t + 80 + 3 * 40 + 7],
        0,
        "the fill is overwritten by a zeroed header field"
    );
    expect_err(
        &with(&|b| b[t + 40..t + 48].copy_from_slice(b".linux\0\0")),
        "already has a .linux",
    );
}

#[test]
fn uki_refuses_a_stub_too_big_for_the_parts() {
    // A section mapped up to the top of the 32-bit address space leaves no room to map more.
    let stub = synthetic(&Synth::default());
    let mut b = stub.clone();
    put32(&mut b, table(false) + 40 + 12, 0xffff_e000);
    expect_err(&b, "4 GiB");
}

/// Random changes to a stub: mostly header bytes, sometimes interesting 32-bit values, sometimes
/// a truncation. `build_uki` must answer every one without panicking.
fn mutate(rng: &mut Rng, stub: &[u8]) -> Vec<u8> {
    let mut b = stub.to_vec();
    let header_len = 0x400.min(b.len());
    for _ in 0..1 + rng.below(4) {
        if b.is_empty() {
            break;
        }
        match rng.below(10) {
            0 => {
                let len = rng.below(b.len() + 1);
                b.truncate(len);
            }
            1..=3 => {
                let at = rng.below(header_len.min(b.len()).saturating_sub(3).max(1));
                let v = match rng.below(6) {
                    0 => 0,
                    1 => u32::MAX,
                    2 => 0x8000_0000,
                    3 => b.len() as u32,
                    4 => 1 << rng.below(32),
                    _ => rng.next_u64() as u32,
                };
                if at + 4 <= b.len() {
                    put32(&mut b, at, v);
                }
            }
            4 => {
                let at = rng.below(b.len());
                b[at] = rng.next_u64() as u8;
            }
            _ => {
                let at = rng.below(header_len.min(b.len()).max(1));
                if at < b.len() {
                    b[at] = rng.next_u64() as u8;
                }
            }
        }
    }
    b
}

fn fuzz(stub: &[u8], seed: u64, rounds: usize) {
    let (linux, initrd) = (kernel(), initrd());
    let parts = parts(&linux, &initrd);
    let mut rng = Rng::new(seed);
    for round in 0..rounds {
        let b = mutate(&mut rng, stub);
        let result = std::panic::catch_unwind(|| build_uki(&b, &parts));
        match result {
            Err(_) => panic!("build_uki panicked on mutation round {round} of seed {seed}"),
            Ok(Ok(uki)) => assert_eq!(checksum_field(&uki), expected_checksum(&uki)),
            Ok(Err(e)) => assert!(!e.is_empty()),
        }
    }
}

#[test]
fn uki_never_panics_on_mutated_synthetic_stubs() {
    fuzz(&synthetic(&Synth::default()), 0x0c5e_ed01, 4000);
    fuzz(
        &synthetic(&Synth {
            pe32: true,
            symbols: true,
            ..Synth::default()
        }),
        0x0c5e_ed02,
        4000,
    );
}

// ---- systemd's real stub, checked with binutils ----

/// `objdump -h` rows: (name, size, vma, file offset).
fn objdump_sections(objdump: &Path, image: &Path) -> Vec<(String, u64, u64, u64)> {
    let out = oxkit_testkit::run_ok(Command::new(objdump).arg("-h").arg(image));
    out.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() != 7 || f[0].parse::<u32>().is_err() {
                return None;
            }
            let hex = |s: &str| u64::from_str_radix(s, 16).expect("objdump prints hex");
            Some((f[1].to_string(), hex(f[2]), hex(f[3]), hex(f[5])))
        })
        .collect()
}

#[test]
fn real_stub_uki_reads_back_with_objdump_and_objcopy() {
    let stub = real_stub();
    let (objdump, objcopy) = (binutils("objdump"), binutils("objcopy"));
    let linux = kernel();
    let initrd: Vec<u8> = (0..70_001u32).map(|i| (i * 31 % 255) as u8).collect();
    let parts = parts(&linux, &initrd);
    let uki = build_uki(&stub, &parts).expect("builds a UKI from the real stub");
    assert_eq!(
        uki,
        build_uki(&stub, &parts).expect("builds"),
        "deterministic"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let (stub_path, uki_path) = (dir.path().join("stub.efi"), dir.path().join("uki.efi"));
    std::fs::write(&stub_path, &stub).expect("write stub");
    std::fs::write(&uki_path, &uki).expect("write uki");

    let before = objdump_sections(&objdump, &stub_path);
    let after = objdump_sections(&objdump, &uki_path);
    assert!(!before.is_empty(), "objdump lists the stub's sections");
    assert_eq!(
        after[..before.len()],
        before,
        "the stub's sections are unchanged"
    );
    let added = &after[before.len()..];
    let names: Vec<&str> = added.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, [".osrel", ".cmdline", ".initrd", ".linux"]);

    let section_alignment = u64::from(get32(&stub, get32(&stub, 0x3c) as usize + 24 + 32));
    let file_alignment = u64::from(get32(&stub, get32(&stub, 0x3c) as usize + 24 + 36));
    for pair in after.windows(2) {
        assert!(
            pair[0].2 + pair[0].1 <= pair[1].2,
            "VMAs increase: {pair:?}"
        );
    }
    for ((name, size, vma, offset), data) in
        added
            .iter()
            .zip([OSREL, CMDLINE, initrd.as_slice(), linux.as_slice()])
    {
        assert_eq!(*size, data.len() as u64, "{name} size");
        assert_eq!(vma % section_alignment, 0, "{name} VMA {vma:#x} aligned");
        assert_eq!(
            offset % file_alignment,
            0,
            "{name} file offset {offset:#x} aligned"
        );
        let out = dir.path().join(format!("{}.bin", &name[1..]));
        oxkit_testkit::run_ok(
            Command::new(&objcopy)
                .args(["-O", "binary", &format!("--only-section={name}")])
                .arg(&uki_path)
                .arg(&out),
        );
        let got = std::fs::read(&out).expect("read objcopy output");
        assert!(got == data, "objcopy gives back {name}'s bytes");
    }

    // The checksum field holds the image's checksum, and objdump agrees it is what we wrote.
    let sum = checksum_field(&uki);
    assert_eq!(sum, expected_checksum(&uki));
    let private = oxkit_testkit::run_ok(Command::new(&objdump).arg("-p").arg(&uki_path));
    assert!(
        private.contains(&format!("CheckSum\t\t{sum:08x}")),
        "objdump -p shows CheckSum {sum:08x}:\n{private}"
    );
}

#[test]
fn real_stub_checksum_matches_the_linkers() {
    // GNU ld filled in the stub's CheckSum: the same algorithm must give the same value.
    let stub = real_stub();
    let stored = checksum_field(&stub);
    assert_ne!(stored, 0, "Debian's stub carries a checksum");
    assert_eq!(expected_checksum(&stub), stored);
}

#[test]
fn real_stub_mutations_never_panic() {
    fuzz(&real_stub(), 0x5eed_0252, 1500);
}
