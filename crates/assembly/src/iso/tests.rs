//! The ISO writer against the tools that read CDs: `isoinfo` and `isovfy` (genisoimage) and
//! `xorriso` for the volume, the tree and the El Torito catalog, `fsck.vfat` and `mtools` for
//! the FAT boot image found through the catalog, OVMF under QEMU for booting it. A missing tool
//! fails the test with the package to install.

use std::path::{Path, PathBuf};
use std::process::Command;

use oxkit_testkit::{Rng, require_tool_from as tool, run_ok};

use super::*;
use crate::disk::{EspFile, write_fat_image};

const SEED: &[u8] = b"sha256:0123456789abcdef";
const BOOT_PATH: &str = "EFI/BOOT/EFIBOOT.IMG";

/// Runs `cmd`, which must succeed; returns its stdout and stderr together (xorriso reports on
/// stderr).
fn run_all(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{text}",
        out.status
    );
    text
}

/// `xorriso -osirrox on -extract WHAT TO` from the ISO `img`; its stdout and stderr.
fn xorriso_extract(img: &Path, what: &str, to: &Path) -> String {
    run_all(
        Command::new(tool("xorriso", "xorriso"))
            .args(["-osirrox", "on", "-indev"])
            .arg(img)
            .args(["-extract", what])
            .arg(to),
    )
}

fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    Rng::new(seed).bytes(len)
}

fn open_rw(path: &Path) -> File {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap()
}

/// A FAT image holding `efi` as `EFI/BOOT/BOOTX64.EFI`, as bytes.
fn fat_image(dir: &Path, efi: &[u8]) -> Vec<u8> {
    let path = dir.join("efiboot.fat");
    let mut out = open_rw(&path);
    let files = [EspFile {
        path: "EFI/BOOT/BOOTX64.EFI",
        data: efi,
    }];
    let size = write_fat_image(&mut out, &files, SEED).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len() as u64, size);
    bytes
}

fn write_iso(
    dir: &Path,
    name: &str,
    volume_id: &str,
    boot: &[u8],
    files: &[IsoFile<'_>],
) -> PathBuf {
    let path = dir.join(name);
    let mut out = open_rw(&path);
    let size = write_efi_iso(&mut out, volume_id, boot, BOOT_PATH, files).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
    assert_eq!(size % BLOCK_U64, 0);
    path
}

/// The catalog's fields, read the way firmware does: boot record → catalog → default entry.
struct Catalog {
    validation: [u8; 32],
    default: [u8; 32],
    catalog_lba: u32,
}

impl Catalog {
    fn read(iso: &[u8]) -> Self {
        let br = &iso[17 * BLOCK..18 * BLOCK];
        assert_eq!(br[0], 0);
        assert_eq!(&br[1..6], b"CD001");
        assert_eq!(&br[7..30], b"EL TORITO SPECIFICATION");
        let catalog_lba = u32::from_le_bytes(br[71..75].try_into().unwrap());
        let at = catalog_lba as usize * BLOCK;
        Self {
            validation: iso[at..at + 32].try_into().unwrap(),
            default: iso[at + 32..at + 64].try_into().unwrap(),
            catalog_lba,
        }
    }

    fn boot_lba(&self) -> u32 {
        u32::from_le_bytes(self.default[8..12].try_into().unwrap())
    }

    fn sector_count(&self) -> u16 {
        u16::from_le_bytes(self.default[6..8].try_into().unwrap())
    }
}

/// The files of the round-trip tests: a nested path, a multi-MB file, an empty file, a name
/// without extension, lower case (upper-cased on the image).
fn sample_files() -> Vec<(String, Vec<u8>)> {
    vec![
        ("boot/deep/er/nested.bin".into(), random_bytes(3, 70_000)),
        ("KERNEL".into(), random_bytes(4, 5 * 1024 * 1024 + 3)),
        ("EMPTY.TXT".into(), Vec::new()),
        ("CMDLINE".into(), b"console=ttyS0\n".to_vec()),
        ("EFI/BOOT/README.TXT".into(), b"boot files\n".to_vec()),
    ]
}

/// A one-byte file at each of `paths`.
fn one_byte_files<'a>(paths: &[&'a str]) -> Vec<IsoFile<'a>> {
    paths
        .iter()
        .map(|p| IsoFile {
            path: p,
            data: b"x",
        })
        .collect()
}

fn iso_files(files: &[(String, Vec<u8>)]) -> Vec<IsoFile<'_>> {
    files
        .iter()
        .map(|(path, data)| IsoFile { path, data })
        .collect()
}

#[test]
fn isoinfo_and_xorriso_read_the_volume_and_one_uefi_boot_entry() {
    let dir = tempfile::tempdir().unwrap();
    let fat = fat_image(dir.path(), &random_bytes(1, 1024 * 1024));
    let files = sample_files();
    let img = write_iso(
        dir.path(),
        "efi.iso",
        "oxkit_test",
        &fat,
        &iso_files(&files),
    );
    let iso = std::fs::read(&img).unwrap();
    let catalog = Catalog::read(&iso);
    let lba = catalog.boot_lba();

    let info = run_ok(
        Command::new(tool("isoinfo", "genisoimage"))
            .arg("-d")
            .arg("-i")
            .arg(&img),
    );
    for want in [
        "CD-ROM is in ISO 9660 format".to_owned(),
        "Volume id: OXKIT_TEST\n".to_owned(),
        "Logical block size is: 2048".to_owned(),
        format!("Volume size is: {}\n", iso.len() / BLOCK),
        "El Torito VD version 1 found, boot catalog is in sector 19\n".to_owned(),
        "NO Joliet present".to_owned(),
        "Hid 1\n".to_owned(),
        "Arch 239".to_owned(),
        "Key 55 AA".to_owned(),
        "Bootid 88 (bootable)".to_owned(),
        "Boot media 0 (No Emulation Boot)".to_owned(),
        "Load segment 0\n".to_owned(),
        "Sys type 0\n".to_owned(),
        // The FAT32 image is over 65,535 sectors: 0, as xorriso writes it.
        "Nsect 0\n".to_owned(),
        format!("Bootoff {lba:X} {lba}\n"),
    ] {
        assert!(info.contains(&want), "isoinfo -d lacks {want:?}:\n{info}");
    }

    let report = run_all(
        Command::new(tool("xorriso", "xorriso"))
            .arg("-indev")
            .arg(&img)
            .args(["-report_el_torito", "plain"]),
    );
    for bad in ["WARNING", "FAILURE", "SORRY", "MISHAP"] {
        assert!(!report.contains(bad), "xorriso complains:\n{report}");
    }
    let entries: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("El Torito boot img :"))
        .collect();
    assert_eq!(entries.len(), 1, "{report}");
    let fields: Vec<&str> = entries[0].split_whitespace().collect();
    // El Torito boot img :   1  UEFI  y   none  0x0000  0x00      0          LBA
    assert_eq!(
        fields[5..],
        [
            "1",
            "UEFI",
            "y",
            "none",
            "0x0000",
            "0x00",
            "0",
            &lba.to_string()
        ],
        "{report}"
    );
    assert!(
        report.contains(&format!("El Torito img path :   1  /{BOOT_PATH}\n")),
        "xorriso does not see the boot image as {BOOT_PATH}:\n{report}"
    );
    assert!(report.contains("Volume id    : 'OXKIT_TEST'"), "{report}");
}

#[test]
fn xorriso_and_isoinfo_give_back_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let fat = fat_image(dir.path(), b"not really a PE image");
    let files = sample_files();
    let img = write_iso(dir.path(), "efi.iso", "FILES", &fat, &iso_files(&files));

    let out = dir.path().join("x");
    let log = xorriso_extract(&img, "/", &out);
    for bad in ["WARNING", "FAILURE", "SORRY", "MISHAP"] {
        assert!(!log.contains(bad), "xorriso complains:\n{log}");
    }
    let mut want: Vec<(String, &[u8])> = files
        .iter()
        .map(|(p, d)| (p.to_uppercase(), d.as_slice()))
        .collect();
    want.push((BOOT_PATH.to_owned(), &fat));
    for (path, data) in &want {
        let got = std::fs::read(out.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(got == *data, "{path} differs after xorriso -extract");
    }
    // Nothing else: the catalog is no file.
    let mut found = Vec::new();
    let mut todo = vec![out.clone()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                found.push(p.strip_prefix(&out).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    found.sort();
    let mut names: Vec<String> = want.iter().map(|(p, _)| p.clone()).collect();
    names.sort();
    assert_eq!(found, names);

    // isoinfo reads the ISO 9660 names as recorded, versions included.
    let isoinfo = tool("isoinfo", "genisoimage");
    for (path, data) in &want {
        let name = match path.rsplit_once('/').map_or(path.as_str(), |(_, n)| n) {
            n if n.contains('.') => format!("/{path};1"),
            _ => format!("/{path}.;1"),
        };
        let got = Command::new(&isoinfo)
            .arg("-i")
            .arg(&img)
            .args(["-x", &name])
            .output()
            .unwrap();
        assert!(got.status.success(), "isoinfo -x {name}");
        assert!(got.stdout == *data, "{name} differs after isoinfo -x");
    }
    let listing = run_ok(Command::new(&isoinfo).arg("-l").arg("-i").arg(&img));
    for want in [
        "Directory listing of /BOOT/DEEP/ER/",
        " NESTED.BIN;1 ",
        " KERNEL.;1 ",
        " EMPTY.TXT;1 ",
        " EFIBOOT.IMG;1 ",
        "Jan  1 1980",
    ] {
        assert!(
            listing.contains(want),
            "isoinfo -l lacks {want:?}:\n{listing}"
        );
    }
}

#[test]
fn the_boot_image_at_the_catalogs_block_is_a_clean_fat_with_the_efi_file() {
    let dir = tempfile::tempdir().unwrap();
    let efi = random_bytes(7, 3 * 1024 * 1024 + 5);
    let fat = fat_image(dir.path(), &efi);
    let img = write_iso(dir.path(), "efi.iso", "BOOT", &fat, &[]);
    let iso = std::fs::read(&img).unwrap();
    let catalog = Catalog::read(&iso);
    let at = catalog.boot_lba() as usize * BLOCK;
    // The firmware reads to the volume's end (the count is 0); the FAT says how much it uses.
    let boot = &iso[at..at + fat.len()];
    assert!(boot == fat.as_slice());
    let part = dir.path().join("boot.fat");
    std::fs::write(&part, boot).unwrap();

    let fsck = Command::new(tool("fsck.vfat", "dosfstools"))
        .arg("-n")
        .arg(&part)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&fsck.stdout).into_owned() + &String::from_utf8_lossy(&fsck.stderr);
    assert!(fsck.status.success(), "fsck.vfat -n:\n{said}");
    assert!(
        !said.contains("differ") && !said.contains("invalid"),
        "{said}"
    );

    let got = dir.path().join("BOOTX64.EFI");
    run_ok(
        Command::new(tool("mcopy", "mtools"))
            .args(["-n", "-i"])
            .arg(&part)
            .arg("::/EFI/BOOT/BOOTX64.EFI")
            .arg(&got),
    );
    assert!(std::fs::read(&got).unwrap() == efi);
}

#[test]
fn the_catalog_is_one_checksummed_efi_entry() {
    let dir = tempfile::tempdir().unwrap();
    for (boot_len, sectors) in [
        (1u64, 4u16),
        (2048, 4),
        (2049, 8),
        (1_474_560, 2880),
        (65_532 * 512, 65_532),
        // 16,384 blocks are 65,536 sectors: too many for the field.
        (65_535 * 512, 0),
        (33 * 1024 * 1024, 0),
    ] {
        let boot = vec![0xa5u8; boot_len as usize];
        let img = write_iso(dir.path(), "c.iso", "C", &boot, &[]);
        let iso = std::fs::read(&img).unwrap();
        let c = Catalog::read(&iso);
        assert_eq!(c.catalog_lba, CATALOG_LBA);
        let v = &c.validation;
        assert_eq!((v[0], v[1], v[30], v[31]), (1, 0xef, 0x55, 0xaa));
        let sum = v.chunks_exact(2).fold(0u16, |s, w| {
            s.wrapping_add(u16::from_le_bytes([w[0], w[1]]))
        });
        assert_eq!(sum, 0, "validation entry checksum");
        let d = &c.default;
        assert_eq!(
            &d[..6],
            &[0x88, 0, 0, 0, 0, 0],
            "bootable, no emulation, segment 0"
        );
        assert_eq!(c.sector_count(), sectors, "{boot_len} bytes");
        assert!(d[12..].iter().all(|&b| b == 0));
        // Nothing follows the default entry: no section headers.
        let at = CATALOG_LBA as usize * BLOCK;
        assert!(iso[at + 64..at + BLOCK].iter().all(|&b| b == 0));
        let lba = c.boot_lba() as usize * BLOCK;
        assert!(iso[lba..lba + boot.len()] == boot[..]);
    }
}

#[test]
fn same_inputs_give_the_same_bytes_whatever_the_order_or_old_contents() {
    let dir = tempfile::tempdir().unwrap();
    let fat = fat_image(dir.path(), b"efi");
    let files = sample_files();
    let forward = iso_files(&files);
    let mut backward = iso_files(&files);
    backward.reverse();

    let a = write_iso(dir.path(), "a.iso", "SAME", &fat, &forward);
    let b = dir.path().join("b.iso");
    std::fs::write(&b, vec![0xffu8; 50 * 1024 * 1024]).unwrap();
    let mut out = open_rw(&b);
    write_efi_iso(&mut out, "same", &fat, BOOT_PATH, &backward).unwrap();
    let (a, b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert!(a == b, "the images differ");

    // Every date is 1980-01-01 00:00:00 UTC or "not specified".
    let pvd = &a[16 * BLOCK..17 * BLOCK];
    assert_eq!(&pvd[813..830], b"1980010100000000\0");
    assert_eq!(&pvd[830..847], b"1980010100000000\0");
    assert_eq!(&pvd[847..864], b"0000000000000000\0");
    assert_eq!(&pvd[864..881], b"0000000000000000\0");
    assert_eq!(&pvd[156 + 18..156 + 25], &[80, 1, 1, 0, 0, 0, 0]);
}

#[test]
fn the_image_is_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let efi = random_bytes(5, 1024 * 1024);
    let fat = fat_image(dir.path(), &efi);
    let tail = [vec![0u8; 8192], b"end".to_vec()].concat();
    let files = [IsoFile {
        path: "TAIL",
        data: &tail,
    }];
    let img = write_iso(dir.path(), "s.iso", "S", &fat, &files);
    let size = std::fs::metadata(&img).unwrap().len();
    let allocated = std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&img).unwrap()) * 512;
    // The EFI file, the FAT's few used sectors: far below the 33 MiB of the FAT image.
    assert!(
        allocated < 3 * 1024 * 1024,
        "{allocated} bytes allocated of {size}"
    );
    let extracted = dir.path().join("TAIL");
    xorriso_extract(&img, "/TAIL", &extracted);
    assert!(std::fs::read(extracted).unwrap() == tail);
}

#[test]
fn path_tables_and_directories_are_in_the_standards_order() {
    let dir = tempfile::tempdir().unwrap();
    let paths = [
        "B/X.Y",
        "A_/F",
        "A/Z/F",
        "A/F",
        "AB/F",
        "A/C/F",
        "B_.X",
        "B.X",
        "B.XY",
        "B.X_",
        ".HIDDEN",
        "A/C/D/E/F/G/H/F",
    ];
    let img = write_iso(
        dir.path(),
        "o.iso",
        "ORDER",
        b"boot",
        &one_byte_files(&paths),
    );
    let table = run_ok(
        Command::new(tool("isoinfo", "genisoimage"))
            .arg("-p")
            .arg("-i")
            .arg(&img),
    );
    // Level by level, parent by parent, then by identifier (the root is 1, its name empty).
    let rows: Vec<(u32, u32, &str)> = table
        .lines()
        .filter_map(|l| {
            let (number, rest) = l.trim().split_once(':')?;
            let mut f = rest.split_whitespace();
            let parent = f.next()?.parse().ok()?;
            let _lba = f.next()?;
            Some((number.parse().ok()?, parent, f.next().unwrap_or("")))
        })
        .collect();
    assert_eq!(
        rows,
        [
            (1, 1, ""),
            (2, 1, "A"),
            (3, 1, "AB"),
            (4, 1, "A_"),
            (5, 1, "B"),
            (6, 1, "EFI"),
            (7, 2, "C"),
            (8, 2, "Z"),
            (9, 6, "BOOT"),
            (10, 7, "D"),
            (11, 10, "E"),
            (12, 11, "F"),
            (13, 12, "G"),
            (14, 13, "H"),
        ],
        "isoinfo -p:\n{table}"
    );

    // The root's records, parsed: `.`, `..`, then by name and then extension.
    let iso = std::fs::read(&img).unwrap();
    let pvd = &iso[16 * BLOCK..17 * BLOCK];
    let root = u32::from_le_bytes(pvd[158..162].try_into().unwrap()) as usize * BLOCK;
    let mut idents = Vec::new();
    let mut pos = root;
    while iso[pos] != 0 {
        let len = iso[pos] as usize;
        let id_len = iso[pos + 32] as usize;
        idents.push(String::from_utf8_lossy(&iso[pos + 33..pos + 33 + id_len]).into_owned());
        pos += len;
    }
    assert_eq!(
        idents,
        [
            "\0",
            "\u{1}",
            ".HIDDEN;1",
            "A",
            "AB",
            "A_",
            "B",
            "B.X;1",
            "B.XY;1",
            "B.X_;1",
            "B_.X;1",
            "EFI"
        ]
    );

    // The M table is the L table with its numbers big-endian.
    let size = u32::from_le_bytes(pvd[132..136].try_into().unwrap()) as usize;
    let l_at = u32::from_le_bytes(pvd[140..144].try_into().unwrap()) as usize * BLOCK;
    let m_at = u32::from_be_bytes(pvd[148..152].try_into().unwrap()) as usize * BLOCK;
    let (l, m) = (&iso[l_at..l_at + size], &iso[m_at..m_at + size]);
    let mut pos = 0;
    while pos < size {
        let id_len = l[pos] as usize;
        assert_eq!(l[pos..pos + 2], m[pos..pos + 2]);
        let (lw, mw) = (&l[pos + 2..pos + 8], &m[pos + 2..pos + 8]);
        assert_eq!(
            lw[..4].iter().rev().collect::<Vec<_>>(),
            mw[..4].iter().collect::<Vec<_>>()
        );
        assert_eq!([lw[5], lw[4]], [mw[4], mw[5]]);
        assert_eq!(l[pos + 8..pos + 8 + id_len], m[pos + 8..pos + 8 + id_len]);
        pos += 8 + id_len + id_len % 2;
    }
}

#[test]
fn directories_spanning_several_blocks_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..200)
        .map(|i| format!("MANY/A_LONG_FILE_NAME_{i:04}.DAT"))
        .collect();
    let datas: Vec<Vec<u8>> = (0..200).map(|i| format!("file {i}").into_bytes()).collect();
    let files: Vec<IsoFile<'_>> = names
        .iter()
        .zip(&datas)
        .map(|(path, data)| IsoFile { path, data })
        .collect();
    let img = write_iso(dir.path(), "m.iso", "MANY", b"boot", &files);
    let out = dir.path().join("x");
    xorriso_extract(&img, "/MANY", &out);
    for (name, data) in names.iter().zip(&datas) {
        let got = std::fs::read(out.join(name.trim_start_matches("MANY/"))).unwrap();
        assert_eq!(&got, data, "{name}");
    }
    let verify = run_all(
        Command::new(tool("isovfy", "genisoimage"))
            .arg("-i")
            .arg(&img),
    );
    assert!(verify.contains("No errors found"), "isovfy:\n{verify}");
}

#[test]
fn bad_names_and_volume_ids_are_rejected_not_normalised() {
    let dir = tempfile::tempdir().unwrap();
    let deep = "A/B/C/D/E/F/G/H/FILE";
    let long_dir = format!("{}/F", "D".repeat(32));
    let long_file = format!("{}.EXT", "N".repeat(28));
    let long_path = format!(
        "{}/{}.EXT",
        vec!["D".repeat(31); 7].join("/"),
        "N".repeat(26)
    );
    let cases: &[(&[&str], &str)] = &[
        (&[""], "empty"),
        (&["/EFI/X"], "leading /"),
        (&["EFI//X"], "empty"),
        (&["EFI/"], "empty"),
        (&["EFI/./X"], "`.`"),
        (&["EFI/../X"], "`..`"),
        (&[".."], "`..`"),
        (&["A/B", "a/b"], "same ISO 9660 name"),
        (&["efi/boot/efiboot.img"], "same ISO 9660 name"),
        (&["A", "A/B"], "needs it to be a directory"),
        (&["A/B", "A"], "needs it to be a directory"),
        (&["EFI/BOOT"], "needs it to be a directory"),
        (&["A/B.C.D"], "file name"),
        (&["A/B-C"], "file name"),
        (&["A/B."], "file name"),
        (&["A/ü"], "file name"),
        (&["A.B/C"], "directory name"),
        (&["A B/C"], "directory name"),
        (&[&long_dir], "directory name"),
        (&[&long_file], "file name"),
        (&[deep], "8 levels"),
        (&[&long_path], "255 characters"),
    ];
    let mut out = open_rw(&dir.path().join("bad.iso"));
    for (paths, why) in cases {
        let err = write_efi_iso(&mut out, "BAD", b"boot", BOOT_PATH, &one_byte_files(paths))
            .err()
            .unwrap_or_else(|| panic!("{paths:?} accepted"));
        assert!(err.contains(why), "{paths:?}: {err}");
        assert!(
            paths.iter().any(|p| err.contains(&format!("{p:?}"))),
            "{paths:?}: the error names no path: {err}"
        );
    }
    for bad_boot_path in ["", "../EFIBOOT.IMG", "EFI/BOOT/efi boot.img"] {
        let err = write_efi_iso(&mut out, "BAD", b"boot", bad_boot_path, &[]).unwrap_err();
        assert!(err.contains(&format!("{bad_boot_path:?}")), "{err}");
    }
    for id in ["", "has-dash", "with space", &"V".repeat(33), "é"] {
        let err = write_efi_iso(&mut out, id, b"boot", BOOT_PATH, &[]).unwrap_err();
        assert!(
            err.contains("volume id") && err.contains(&format!("{id:?}")),
            "{err}"
        );
    }
    let err = write_efi_iso(&mut out, "BAD", b"", BOOT_PATH, &[]).unwrap_err();
    assert!(err.contains("boot image is empty"), "{err}");
    // The longest names and the deepest tree the standard allows are fine.
    let ok_dir = format!("{}/F", "D".repeat(31));
    let ok_file = format!("{}.EXT", "N".repeat(27));
    for ok in [
        "A/B/C/D/E/F/G/FILE",
        &ok_dir,
        &ok_file,
        ".X",
        "lower/case.txt",
    ] {
        let files = [IsoFile {
            path: ok,
            data: b"x",
        }];
        write_efi_iso(&mut out, "OK", b"boot", BOOT_PATH, &files)
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

#[test]
fn the_fat_image_is_the_esps_file_system_without_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let efi = random_bytes(9, 100_000);
    let fat = fat_image(dir.path(), &efi);
    assert_eq!(fat.len() % BLOCK, 0);
    let disk = dir.path().join("disk.img");
    let mut out = open_rw(&disk);
    crate::disk::write_esp_disk(
        &mut out,
        &[EspFile {
            path: "EFI/BOOT/BOOTX64.EFI",
            data: &efi,
        }],
        SEED,
    )
    .unwrap();
    let disk = std::fs::read(disk).unwrap();
    assert!(disk[1024 * 1024..1024 * 1024 + fat.len()] == fat[..]);
}

/// How QEMU is given the image.
#[derive(Clone, Copy)]
enum Drive {
    Cd,
    Disk,
}

/// Boots QEMU (x86-64, TCG, no display, no network) with `firmware` (`None`: its own SeaBIOS)
/// and `img` as its CD or first disk until `wanted` shows on the serial console or `timeout`
/// passes; QEMU is killed then. Whether it showed, and the console.
fn boot_until(
    firmware: Option<&Path>,
    img: &Path,
    drive: Drive,
    wanted: &'static str,
    timeout: std::time::Duration,
) -> (bool, String) {
    let qemu = tool("qemu-system-x86_64", "qemu-system-x86");
    let mut cmd = Command::new(qemu);
    cmd.args([
        "-accel",
        "tcg",
        "-m",
        "256",
        // The serial port is the console. Not -nographic: with it, SeaBIOS copies the VGA
        // text to the serial port too, and ISOLINUX's own serial output interleaves with
        // that copy byte by byte.
        "-display",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
        "-nic",
        "none",
    ]);
    if let Some(fw) = firmware {
        cmd.arg("-bios").arg(fw);
    }
    match drive {
        Drive::Cd => cmd.arg("-cdrom").arg(img),
        Drive::Disk => cmd
            .arg("-drive")
            .arg(format!("file={},format=raw,if=ide", img.display())),
    };
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match std::io::Read::read(&mut stdout, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
            if String::from_utf8_lossy(&seen).contains(wanted) {
                let _ = tx.send(());
                break;
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    let shown = rx.recv_timeout(timeout).is_ok();
    let _ = child.kill();
    let _ = child.wait();
    (shown, reader.join().unwrap())
}

/// UEFI firmware boots the image from a CD drive: OVMF under QEMU (TCG, about 5 s to the menu)
/// finds the catalog's EFI entry, reads the FAT boot image (its sector count 0 meaning "to the
/// end of the volume") and starts `EFI/BOOT/BOOTX64.EFI` from it, here systemd-boot, whose
/// menu shows on the serial console. QEMU is stopped as soon as the menu shows.
#[test]
fn ovmf_boots_the_efi_file_from_the_cd() {
    let firmware = ["/usr/share/ovmf/OVMF.fd", "/usr/share/qemu/OVMF.fd"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("OVMF is not installed: apt-get install -y ovmf"));
    let sd_boot = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";
    let efi = std::fs::read(sd_boot).unwrap_or_else(|e| {
        panic!("cannot read {sd_boot} ({e}): apt-get install -y systemd-boot-efi")
    });
    let dir = tempfile::tempdir().unwrap();
    let fat = fat_image(dir.path(), &efi);
    let img = write_iso(dir.path(), "boot.iso", "OXKIT", &fat, &[]);
    let (shown, console) = boot_until(
        Some(firmware),
        &img,
        Drive::Cd,
        SD_BOOT_MENU,
        std::time::Duration::from_secs(60),
    );
    assert!(
        console.contains("BdsDxe: starting Boot0001 \"UEFI QEMU DVD-ROM"),
        "OVMF did not boot from the CD:\n{console}"
    );
    assert!(
        shown,
        "systemd-boot's menu did not show within 60 s:\n{console}"
    );
}

/// ISOLINUX's files from Debian's `isolinux` and `syslinux-common`.
fn isolinux_files() -> (Vec<u8>, Vec<u8>) {
    let read = |path: &str, package: &str| {
        std::fs::read(path)
            .unwrap_or_else(|e| panic!("cannot read {path} ({e}): apt-get install -y {package}"))
    };
    (
        read("/usr/lib/ISOLINUX/isolinux.bin", "isolinux"),
        read(
            "/usr/lib/syslinux/modules/bios/ldlinux.c32",
            "syslinux-common",
        ),
    )
}

fn write_bios(
    dir: &Path,
    name: &str,
    boot: &[u8],
    files: &[IsoFile<'_>],
    hybrid: Option<&Hybrid<'_>>,
) -> PathBuf {
    let path = dir.join(name);
    let mut out = open_rw(&path);
    let boot = IsoFile {
        path: "isolinux/isolinux.bin",
        data: boot,
    };
    let size = write_bios_iso(&mut out, "OXKIT", &boot, files, hybrid).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
    path
}

/// The BIOS entry and boot information table against genisoimage's `-b -no-emul-boot
/// -boot-load-size 4 -boot-info-table` over the same files: the same catalog entry but for the
/// block, and the same table but for the program's own block, which each records as its
/// catalog says.
#[test]
fn the_bios_entry_and_boot_info_table_match_genisoimage() {
    let dir = tempfile::tempdir().unwrap();
    // Not a multiple of 4 bytes: the checksum's last word is padded.
    let program = random_bytes(7, 30_001);
    let other = random_bytes(8, 5000);
    let files = [IsoFile {
        path: "kernel",
        data: &other,
    }];
    let ours = std::fs::read(write_bios(dir.path(), "ours.iso", &program, &files, None)).unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("isolinux")).unwrap();
    std::fs::write(tree.join("isolinux/isolinux.bin"), &program).unwrap();
    std::fs::write(tree.join("kernel"), &other).unwrap();
    let theirs_path = dir.path().join("theirs.iso");
    run_all(
        Command::new(tool("genisoimage", "genisoimage"))
            .args(["-quiet", "-o"])
            .arg(&theirs_path)
            .args([
                "-b",
                "isolinux/isolinux.bin",
                "-c",
                "isolinux/boot.cat",
                "-no-emul-boot",
                "-boot-load-size",
                "4",
                "-boot-info-table",
                "-V",
                "OXKIT",
            ])
            .arg(&tree),
    );
    let theirs = std::fs::read(&theirs_path).unwrap();
    let (a, b) = (Catalog::read(&ours), Catalog::read(&theirs));
    assert_eq!(a.validation, b.validation, "validation entries (x86)");
    assert_eq!(a.validation[1], PLATFORM_X86);
    let entry = |c: &Catalog| {
        let mut d = c.default;
        d[8..12].fill(0);
        d
    };
    assert_eq!(entry(&a), entry(&b), "default entries but for the block");
    assert_eq!(a.sector_count(), 4);
    for (iso, c) in [(&ours, &a), (&theirs, &b)] {
        let at = c.boot_lba() as usize * BLOCK;
        let written = &iso[at..at + program.len()];
        assert_eq!(written[..8], program[..8]);
        assert_eq!(written[64..], program[64..], "the program past its table");
        let word = |i: usize| u32::from_le_bytes(written[i..i + 4].try_into().unwrap());
        assert_eq!(word(8), 16, "primary volume descriptor block");
        assert_eq!(word(12), c.boot_lba(), "the program's own block");
        assert_eq!(word(16), program.len() as u32);
        assert!(written[24..64].iter().all(|&b| b == 0));
    }
    let checksum = |iso: &[u8], c: &Catalog| {
        let at = c.boot_lba() as usize * BLOCK + 20;
        iso[at..at + 4].to_vec()
    };
    assert_eq!(checksum(&ours, &a), checksum(&theirs, &b), "checksums");
    let report = run_all(
        Command::new(tool("xorriso", "xorriso"))
            .arg("-indev")
            .arg(dir.path().join("ours.iso"))
            .args(["-report_el_torito", "plain"]),
    );
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("El Torito boot img :") && l.contains(" BIOS ")),
        "{report}"
    );
    assert!(report.contains("/ISOLINUX/ISOLINUX.BIN"), "{report}");
}

#[test]
fn a_bios_boot_program_too_short_for_its_table_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut out = open_rw(&dir.path().join("short.iso"));
    let boot = IsoFile {
        path: "isolinux/isolinux.bin",
        data: &[0x90; 63],
    };
    let e = write_bios_iso(&mut out, "OXKIT", &boot, &[], None).unwrap_err();
    assert!(
        e.contains("isolinux/isolinux.bin") && e.contains("63 bytes"),
        "{e}"
    );
}

/// A PC BIOS boots the image from a CD drive and, hybrid, from a disk: SeaBIOS under QEMU
/// loads `isolinux.bin` through the catalog (from a disk, the MBR's boot code loads it), which
/// finds itself through its boot information table, then `ldlinux.c32` and its configuration
/// through the ISO 9660 directories, and tries to load the kernel it names. ISOLINUX checks the table's checksum: a wrong one stops it at "Image checksum
/// error".
#[test]
fn seabios_boots_isolinux_from_the_cd() {
    let (isolinux, ldlinux) = isolinux_files();
    // ISOLINUX reads the configuration and tries to load the kernel it names (which is not
    // there): "Loading /NAME... failed" on the serial port shows the configuration was read.
    let cfg = format!(
        "SERIAL 0 115200\nPROMPT 0\nDEFAULT none\nLABEL none\n  KERNEL /{ISOLINUX_CONFIG_KERNEL}\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let files = [
        IsoFile {
            path: "isolinux/ldlinux.c32",
            data: &ldlinux,
        },
        IsoFile {
            path: "isolinux/isolinux.cfg",
            data: cfg.as_bytes(),
        },
    ];
    let hybrid = Hybrid {
        mbr_code: &isohdpfx(),
        disk_id: 0x0a0b_0c0d,
    };
    let img = write_bios(dir.path(), "bios.iso", &isolinux, &files, Some(&hybrid));
    for drive in [Drive::Cd, Drive::Disk] {
        let (shown, console) = boot_until(
            None,
            &img,
            drive,
            ISOLINUX_LOADS,
            std::time::Duration::from_secs(60),
        );
        assert!(
            shown,
            "ISOLINUX did not run its configuration within 60 s:\n{console}"
        );
    }
}

/// ISOLINUX's MBR boot code for hybrid images, from Debian's `isolinux`.
fn isohdpfx() -> Vec<u8> {
    let path = "/usr/lib/ISOLINUX/isohdpfx.bin";
    std::fs::read(path)
        .unwrap_or_else(|e| panic!("cannot read {path} ({e}): apt-get install -y isolinux"))
}

/// The hybrid image is what `isohybrid --id ID` makes of the same image without it, byte for
/// byte: the MBR in the first sector, the padding to whole MiB. For an image of more than 1024
/// cylinders (a sparse one), the MBR matches too.
#[test]
fn hybrid_images_are_what_isohybrid_makes() {
    let (isolinux, ldlinux) = isolinux_files();
    let mbr_code = isohdpfx();
    let dir = tempfile::tempdir().unwrap();
    let kernel = random_bytes(11, 3_000_000);
    let files = [
        IsoFile {
            path: "isolinux/ldlinux.c32",
            data: &ldlinux,
        },
        IsoFile {
            path: "kernel",
            data: &kernel,
        },
    ];
    let id = 0x1234_5678;
    let hybrid = Hybrid {
        mbr_code: &mbr_code,
        disk_id: id,
    };
    let ours = write_bios(dir.path(), "ours.iso", &isolinux, &files, Some(&hybrid));
    let plain = write_bios(dir.path(), "plain.iso", &isolinux, &files, None);
    let isohybrid = |iso: &Path| {
        run_all(
            Command::new(tool("isohybrid", "syslinux-utils"))
                .args([
                    "--id",
                    &id.to_string(),
                    "--mbr",
                    "/usr/lib/ISOLINUX/isohdpfx.bin",
                ])
                .arg(iso),
        )
    };
    isohybrid(&plain);
    let (ours, theirs) = (
        std::fs::read(&ours).unwrap(),
        std::fs::read(&plain).unwrap(),
    );
    assert_eq!(ours.len() % (1 << 20), 0, "padded to whole MiB");
    assert_eq!(ours.len(), theirs.len());
    assert!(ours[..512] == theirs[..512], "MBRs differ");
    assert!(ours == theirs, "the images differ past the MBR");

    // 1,536 cylinders: past what CHS addresses.
    let big = dir.path().join("big.iso");
    std::fs::copy(dir.path().join("ours.iso"), &big).unwrap();
    let f = File::options().write(true).open(&big).unwrap();
    let big_len: u64 = 1536 << 20;
    f.set_len(big_len - 5000).unwrap();
    f.write_all_at(&[0u8; 512], 0).unwrap();
    drop(f);
    isohybrid(&big);
    let theirs = std::fs::read(&big).unwrap();
    assert_eq!(theirs.len() as u64, big_len);
    let lba = Catalog::read(&ours).boot_lba();
    let (mbr, padded) = hybrid_mbr(&mbr_code, lba, big_len - 5000, id);
    assert_eq!(padded, big_len);
    assert!(mbr[..] == theirs[..512], "MBRs differ for 1536 cylinders");
}

#[test]
fn a_boot_program_without_the_hybrid_signature_is_refused_for_hybrid_images() {
    let dir = tempfile::tempdir().unwrap();
    let mut out = open_rw(&dir.path().join("nohybrid.iso"));
    let program = random_bytes(5, 4096);
    let boot = IsoFile {
        path: "isolinux/isolinux.bin",
        data: &program,
    };
    let code = isohdpfx();
    let hybrid = Hybrid {
        mbr_code: &code,
        disk_id: 1,
    };
    let e = write_bios_iso(&mut out, "OXKIT", &boot, &[], Some(&hybrid)).unwrap_err();
    assert!(
        e.contains("isolinux/isolinux.bin") && e.contains("isohybrid"),
        "{e}"
    );
    let short = Hybrid {
        mbr_code: &code[..100],
        disk_id: 1,
    };
    let e = write_bios_iso(&mut out, "OXKIT", &boot, &[], Some(&short)).unwrap_err();
    assert!(e.contains("100 bytes"), "{e}");
}

/// The kernel the test configuration names, and what ISOLINUX prints when it tries to load it.
const ISOLINUX_CONFIG_KERNEL: &str = "oxkit-configured-kernel";
const ISOLINUX_LOADS: &str = "Loading /oxkit-configured-kernel";

/// What systemd-boot shows on a system without boot entries.
const SD_BOOT_MENU: &str = "Reboot Into Firmware Interface";
