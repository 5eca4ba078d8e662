//! Bootable CD images: an ISO 9660 file system whose El Torito boot catalog names one boot
//! image, for UEFI (`iso-efi`) or for a PC BIOS (`iso-bios`).
//!
//! - For UEFI, the boot image is a FAT file system ([`crate::disk::write_fat_image`]) holding
//!   `EFI/BOOT/BOOTX64.EFI` (or `BOOTAA64.EFI`). UEFI firmware reads no ISO 9660 directory to
//!   boot: it exposes that image as a partition and starts the removable-media boot file in it.
//! - For a BIOS, the boot image is a program the BIOS loads and runs, here ISOLINUX's
//!   `isolinux.bin`, which then reads the ISO 9660 directories itself (for `ldlinux.c32`, its
//!   configuration, the kernel and the initrd). It gets a boot information table, as `mkisofs
//!   -boot-info-table` writes it: bytes 8 to 63 of the image hold the primary volume
//!   descriptor's block, the image's own block and length and a checksum of the rest, which is
//!   how `isolinux.bin` finds itself on the CD. A BIOS image can also be hybrid, as `isohybrid`
//!   makes it ([`Hybrid`]): an MBR in the system area whose boot code starts `isolinux.bin`
//!   from a disk, and one partition over the image, padded to whole MiB.
//!
//! Layout, in 2048-byte blocks: the system area (0-15, zeros, or the hybrid MBR first), the primary volume descriptor
//! (16), the El Torito boot record (17), the volume descriptor set terminator (18), the boot
//! catalog (19), the L and then the M path table, the directories in path table order, the boot
//! image, then the other files in directory order. The boot image is also a file of the tree
//! (as xorriso shows `-e`'s image); the catalog is not (LinuxKit hides it).
//!
//! The catalog is what xorriso 1.5 writes for `-as mkisofs -e IMG -no-emul-boot` alone (UEFI)
//! or `-b IMG -no-emul-boot -boot-load-size 4 -boot-info-table` (BIOS): a validation entry for
//! platform 0xEF (EFI) or 0 (x86) and the initial/default entry (bootable, no emulation, load
//! segment 0, the image's block), no section headers. A BIOS loads the entry's sector count of
//! 512-byte sectors: 4, the first 2 KiB, which is what `isolinux.bin` expects. For UEFI the
//! count is the image's size in 2048-byte blocks counted in 512-byte sectors, or 0 when that
//! does not fit 16 bits (every FAT32 image does); EDK2 (OVMF, AAVMF) then makes the partition
//! run from the image to the end of the volume, which holds the whole image.
//!
//! Names are plain ISO 9660 (no Rock Ridge, no Joliet) at interchange level 2: components are
//! upper-cased and must then be d-characters (`A-Z`, `0-9`, `_`); a directory name is at most
//! 31 of them, a file name at most one `.` (not last) and 30 characters, recorded with the
//! version `;1` (`NAME.EXT;1`, or `NAME.;1` without an extension). The tree is at most eight
//! levels deep (the root included) and a path at most 255 characters, as the standard says.
//!
//! Reproducible: every recorded date is 1980-01-01 00:00:00 UTC (expiration and effective dates
//! "not specified"), the tree is written in the standard's sorted order whatever the order of
//! the files given, and nothing is read from the host. The image is sparse: the file is sized
//! with `set_len`, and only the descriptors, the catalog, the tables, the directories and the
//! files' bytes but for 4 KiB runs of zeros (most of the FAT boot image) are written.
//!
//! This module writes one image file and does nothing else: it does not choose the files, make
//! the boot image or sync the output (the caller renames it into place).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

const BLOCK: usize = 2048;
const BLOCK_U64: u64 = BLOCK as u64;
const PVD_LBA: u32 = 16;
const BOOT_RECORD_LBA: u32 = 17;
const TERMINATOR_LBA: u32 = 18;
const CATALOG_LBA: u32 = 19;
const PATH_TABLES_LBA: u32 = 20;
/// Directory levels, the root's included (ISO 9660 6.8.2.1).
const MAX_LEVELS: usize = 8;
/// A path's identifiers and separators together (ISO 9660 6.8.2.1).
const MAX_PATH_CHARS: usize = 255;
/// Interchange level 2 (ISO 9660 7.5.1, 7.6.3).
const MAX_DIR_IDENT: usize = 31;
const MAX_FILE_NAME_AND_EXT: usize = 30;
const MAX_VOLUME_ID: usize = 32;
/// A directory record's extent length is 32 bits; larger files would need several extents.
const MAX_FILE_BYTES: u64 = u32::MAX as u64;
/// A directory record's date: years since 1900, month, day, hour, minute, second, UTC offset.
const RECORD_DATE: [u8; 7] = [80, 1, 1, 0, 0, 0, 0];
/// A volume descriptor's date: `YYYYMMDDHHMMSScc` and the UTC offset in 15-minute units.
const VOLUME_DATE: &[u8; 17] = b"1980010100000000\0";
const UNSPECIFIED_DATE: &[u8; 17] = b"0000000000000000\0";
const FLAG_DIRECTORY: u8 = 0x02;
const PLATFORM_X86: u8 = 0;
const PLATFORM_EFI: u8 = 0xef;
/// The sectors of a BIOS boot image the BIOS loads (`-boot-load-size 4`).
const BIOS_LOAD_SECTORS: u16 = 4;
/// A hybrid image's MBR: ISOLINUX's boot code (`isohdpfx.bin`), then where `isolinux.bin` is.
const MBR_CODE_BYTES: usize = 432;
/// ISOLINUX's boot program carries this at byte 64 when its MBR code can start it from a disk.
const HYBRID_SIGNATURE: u32 = 0x7078_c0fb;
/// `isohybrid`'s defaults: the disk geometry the partition's CHS fields use (cylinders of 1
/// MiB, the unit the image is padded to), the partition type and its first sector.
const HYBRID_HEADS: u64 = 64;
const HYBRID_SECTORS: u64 = 32;
const HYBRID_PARTITION_TYPE: u8 = 0x17;
/// CHS addresses count at most 1024 cylinders.
const CHS_MAX_CYLINDERS: u64 = 1024;
/// Where the boot information table goes in a BIOS boot image, and where the checksummed part
/// starts (mkisofs's `-boot-info-table`).
const BOOT_INFO_TABLE: std::ops::Range<usize> = 8..64;
const EL_TORITO_ID: &[u8] = b"EL TORITO SPECIFICATION";
/// Runs of zeros this long (file system blocks, as blocks start at 2048-byte boundaries) are
/// left unwritten.
const SPARSE_CHUNK: usize = 4096;

/// One file in the ISO's directory tree (path with `/`, directories created).
pub(crate) struct IsoFile<'a> {
    pub(crate) path: &'a str,
    pub(crate) data: &'a [u8],
}

/// What makes a BIOS image boot from a disk (a USB stick, a VM's disk) as well as from a CD,
/// as `isohybrid` makes it: an MBR whose boot code (ISOLINUX's `isohdpfx.bin`) loads the boot
/// program from the ISO 9660 file system, and one bootable partition spanning the image, padded
/// to whole cylinders of 1 MiB. `disk_id` is the MBR's disk signature.
pub(crate) struct Hybrid<'a> {
    pub(crate) mbr_code: &'a [u8],
    pub(crate) disk_id: u32,
}

/// What firmware boots the image's boot entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BootPlatform {
    /// A PC BIOS: the image is a program, given a boot information table.
    Bios,
    /// UEFI: the image is a FAT file system.
    Efi,
}

/// Writes an ISO 9660 image to `out` (truncating it) and returns its size: volume id
/// `volume_id` (d-characters, at most 32, uppercased), the files given, and an El Torito boot
/// catalog whose only entry boots `efi_boot` (a FAT image, see disk::write_fat_image) on UEFI
/// (platform id 0xEF, no emulation). The boot image is also visible as the file `efi_boot_path`
/// (e.g. "EFI/BOOT/EFIBOOT.IMG"), as xorriso makes it. Deterministic: every date is fixed
/// (1980-01-01 00:00:00 UTC, or zeros where the standard allows "not specified"), so the same
/// inputs always give the same bytes.
///
/// Paths are taken as written, never normalised (but upper-cased): a leading `/`, an empty
/// component, `.` or `..`, a name ISO 9660 cannot hold (see the module's documentation), a path
/// given twice (after upper-casing; `efi_boot_path` counts) or a file where another path needs
/// a directory is an error. The order of `files` does not matter. `out`'s cursor is left where
/// it was.
pub(crate) fn write_efi_iso(
    out: &mut File,
    volume_id: &str,
    efi_boot: &[u8],
    efi_boot_path: &str,
    files: &[IsoFile<'_>],
) -> Result<u64, String> {
    let boot = IsoFile {
        path: efi_boot_path,
        data: efi_boot,
    };
    write_boot_iso(out, volume_id, BootPlatform::Efi, &boot, files, None)
}

/// [`write_efi_iso`] for a PC BIOS: the catalog's entry (platform 0, x86) boots `boot.data`, a
/// no-emulation boot program such as `isolinux.bin` (at least 64 bytes), of which the BIOS
/// loads the first 2 KiB at 0000:7C00. Bytes 8 to 63 of the program as written to the image
/// are its boot information table; the rest is as given. With `hybrid`, the image boots from a
/// disk too (see [`Hybrid`]; the program must then carry ISOLINUX's hybrid signature) and is
/// padded to whole MiB; the size returned is the padded one.
pub(crate) fn write_bios_iso(
    out: &mut File,
    volume_id: &str,
    boot: &IsoFile<'_>,
    files: &[IsoFile<'_>],
    hybrid: Option<&Hybrid<'_>>,
) -> Result<u64, String> {
    if let Some(h) = hybrid {
        if h.mbr_code.len() < MBR_CODE_BYTES {
            return Err(format!(
                "cannot make a hybrid ISO image: the MBR boot code is {} bytes, not at least {MBR_CODE_BYTES}",
                h.mbr_code.len()
            ));
        }
        let signature = boot
            .data
            .get(BOOT_INFO_TABLE.end..BOOT_INFO_TABLE.end + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        if signature != Some(HYBRID_SIGNATURE) {
            return Err(format!(
                "cannot make a hybrid ISO image: the boot program {} has no isohybrid signature \
                 at byte 64 (ISOLINUX 4 or later has one)",
                boot.path
            ));
        }
    }
    write_boot_iso(out, volume_id, BootPlatform::Bios, boot, files, hybrid)
}

fn write_boot_iso(
    out: &mut File,
    volume_id: &str,
    platform: BootPlatform,
    boot: &IsoFile<'_>,
    files: &[IsoFile<'_>],
    hybrid: Option<&Hybrid<'_>>,
) -> Result<u64, String> {
    let volume_id = check_volume_id(volume_id)?;
    match platform {
        BootPlatform::Efi if boot.data.is_empty() => {
            return Err("cannot make a bootable ISO image: the EFI boot image is empty".into());
        }
        BootPlatform::Bios if boot.data.len() < BOOT_INFO_TABLE.end => {
            return Err(format!(
                "cannot make a bootable ISO image: the BIOS boot program {} is {} bytes, too \
                 short for a boot information table (at least {} bytes)",
                boot.path,
                boot.data.len(),
                BOOT_INFO_TABLE.end
            ));
        }
        _ => {}
    }
    let mut tree = Tree::new();
    // The boot image is entry 0.
    for file in std::iter::once(boot).chain(files) {
        tree.add(file)?;
    }
    let layout = tree.layout()?;
    let mut meta = tree.metadata(&layout, &volume_id, platform)?;
    // The BIOS boot program, with the table that says where it is.
    let patched = (platform == BootPlatform::Bios)
        .then(|| with_boot_info_table(tree.files[0].data, layout.file_lba[0]));
    if let Some(p) = &patched {
        tree.files[0].data = p;
    }
    let mut image_bytes = u64::from(layout.total_blocks) * BLOCK_U64;
    if let Some(h) = hybrid {
        let (mbr, padded) = hybrid_mbr(h.mbr_code, layout.file_lba[0], image_bytes, h.disk_id);
        // The system area (blocks 0-15) is ours: the MBR is its first sector.
        meta[..mbr.len()].copy_from_slice(&mbr);
        image_bytes = padded;
    }
    out.set_len(0)
        .and_then(|()| out.set_len(image_bytes))
        .map_err(|e| format!("cannot size the ISO image to {image_bytes} bytes: {e}"))?;
    out.write_all_at(&meta, 0).map_err(|e| {
        format!("cannot write the ISO image's volume descriptors and directories: {e}")
    })?;
    for (entry, &lba) in tree.files.iter().zip(&layout.file_lba) {
        write_sparse(out, entry.data, u64::from(lba) * BLOCK_U64)
            .map_err(|e| format!("cannot write {:?} to the ISO image: {e}", entry.path))?;
    }
    Ok(image_bytes)
}

/// Writes `data` at `at` of `out` (sized, all zeros there), leaving out the blocks of zeros:
/// the FAT boot image is mostly free space.
fn write_sparse(out: &File, data: &[u8], at: u64) -> std::io::Result<()> {
    let mut run: Option<usize> = None;
    for (i, chunk) in data.chunks(SPARSE_CHUNK).enumerate() {
        let start = i * SPARSE_CHUNK;
        match (run, crate::rawdisk::is_zero(chunk)) {
            (None, false) => run = Some(start),
            (Some(from), true) => {
                out.write_all_at(&data[from..start], at + from as u64)?;
                run = None;
            }
            _ => {}
        }
    }
    match run {
        Some(from) => out.write_all_at(&data[from..], at + from as u64),
        None => Ok(()),
    }
}

/// The volume id as recorded: upper-cased, d-characters, 1 to 32 of them.
fn check_volume_id(id: &str) -> Result<String, String> {
    let upper = id.to_ascii_uppercase();
    if upper.is_empty() || upper.len() > MAX_VOLUME_ID || !upper.bytes().all(is_d_char) {
        return Err(format!(
            "cannot use {id:?} as an ISO 9660 volume id: it must be 1 to {MAX_VOLUME_ID} of \
             A-Z, 0-9 and _"
        ));
    }
    Ok(upper)
}

fn is_d_char(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'
}

/// How a directory's entries sort (ISO 9660 9.3): by name, then by extension. Byte order of the
/// unpadded strings is the standard's order of space-padded ones, as every d-character sorts
/// after the space. A directory's key has no extension.
type SortKey = (String, String);

#[derive(Clone, Copy)]
enum Child {
    Dir(usize),
    File(usize),
}

struct Dir<'a> {
    /// The directory identifier; empty for the root.
    ident: String,
    parent: usize,
    children: BTreeMap<SortKey, Child>,
    /// The path that made the directory, for messages.
    origin: &'a str,
}

struct FileEntry<'a> {
    /// `NAME.EXT;1`.
    ident: String,
    path: &'a str,
    data: &'a [u8],
}

/// The directory tree: `dirs[0]` is the root.
struct Tree<'a> {
    dirs: Vec<Dir<'a>>,
    files: Vec<FileEntry<'a>>,
}

/// Where everything goes, in blocks.
struct Layout {
    /// Directory indices in path table order (level, parent's number, identifier).
    order: Vec<usize>,
    /// Per directory index: its path table number (1-based), extent and size in bytes.
    number: Vec<u16>,
    dir_lba: Vec<u32>,
    dir_bytes: Vec<u32>,
    path_table_bytes: u32,
    m_path_table_lba: u32,
    /// Per file index.
    file_lba: Vec<u32>,
    /// Blocks before the first file's data: what [`Tree::metadata`] fills.
    meta_blocks: u32,
    total_blocks: u32,
}

impl<'a> Tree<'a> {
    fn new() -> Self {
        Self {
            dirs: vec![Dir {
                ident: String::new(),
                parent: 0,
                children: BTreeMap::new(),
                origin: "",
            }],
            files: Vec::new(),
        }
    }

    /// Adds `file`, making its directories, or says why its path cannot be in the tree.
    fn add(&mut self, file: &IsoFile<'a>) -> Result<(), String> {
        let path = file.path;
        let bad = |why: &str| format!("cannot put {path:?} on the ISO image: {why}");
        if path.is_empty() {
            return Err(bad("the path is empty"));
        }
        if path.starts_with('/') {
            return Err(bad(
                "the path must be relative to the image's root (no leading /)",
            ));
        }
        let components: Vec<&str> = path.split('/').collect();
        if components
            .iter()
            .any(|c| c.is_empty() || *c == "." || *c == "..")
        {
            return Err(bad("the path has an empty, `.` or `..` component"));
        }
        if file.data.len() as u64 > MAX_FILE_BYTES {
            return Err(bad(&format!(
                "{} bytes is more than one ISO 9660 extent holds ({MAX_FILE_BYTES} bytes)",
                file.data.len()
            )));
        }
        let Some((name, dirs)) = components.split_last() else {
            return Err(bad("the path is empty"));
        };
        if dirs.len() >= MAX_LEVELS {
            return Err(bad(&format!(
                "ISO 9660 directories nest at most {MAX_LEVELS} levels deep, the root included"
            )));
        }
        let mut idents = Vec::with_capacity(components.len());
        for dir in dirs {
            let ident = dir.to_ascii_uppercase();
            if ident.len() > MAX_DIR_IDENT || !ident.bytes().all(is_d_char) {
                return Err(bad(&format!(
                    "the directory name {dir:?} is not 1 to {MAX_DIR_IDENT} of A-Z, 0-9 and _ \
                     (lower case is upper-cased)"
                )));
            }
            idents.push(ident);
        }
        let upper = name.to_ascii_uppercase();
        let (stem, ext) = upper.split_once('.').unwrap_or((&upper, ""));
        if upper.ends_with('.')
            || stem.len() + ext.len() > MAX_FILE_NAME_AND_EXT
            || !stem.bytes().chain(ext.bytes()).all(is_d_char)
        {
            return Err(bad(&format!(
                "the file name {name:?} is not NAME or NAME.EXT of at most {MAX_FILE_NAME_AND_EXT} \
                 A-Z, 0-9 and _ in all (lower case is upper-cased)"
            )));
        }
        let file_ident = format!("{stem}.{ext};1");
        let path_chars = idents.iter().map(|i| i.len() + 1).sum::<usize>() + file_ident.len();
        if path_chars > MAX_PATH_CHARS {
            return Err(bad(&format!(
                "ISO 9660 paths are at most {MAX_PATH_CHARS} characters"
            )));
        }

        let mut at = 0;
        for ident in idents {
            let key = (ident.clone(), String::new());
            at = match self.dirs[at].children.get(&key) {
                Some(Child::Dir(d)) => *d,
                Some(Child::File(f)) => {
                    return Err(format!(
                        "cannot put {path:?} on the ISO image: {:?} is a file there, and this \
                         path needs it to be a directory",
                        self.files[*f].path
                    ));
                }
                None => {
                    let d = self.dirs.len();
                    self.dirs.push(Dir {
                        ident,
                        parent: at,
                        children: BTreeMap::new(),
                        origin: path,
                    });
                    self.dirs[at].children.insert(key, Child::Dir(d));
                    d
                }
            };
        }
        let key = (stem.to_owned(), ext.to_owned());
        match self.dirs[at].children.get(&key) {
            Some(Child::File(f)) => Err(bad(&format!(
                "{:?} has the same ISO 9660 name (names are upper-cased)",
                self.files[*f].path
            ))),
            Some(Child::Dir(d)) => Err(bad(&format!(
                "{:?} needs it to be a directory",
                self.dirs[*d].origin
            ))),
            None => {
                self.dirs[at]
                    .children
                    .insert(key, Child::File(self.files.len()));
                self.files.push(FileEntry {
                    ident: file_ident,
                    path,
                    data: file.data,
                });
                Ok(())
            }
        }
    }

    /// The directories in path table order: breadth first, each one's subdirectories sorted.
    fn path_table_order(&self) -> Vec<usize> {
        let mut order = vec![0];
        let mut next = 0;
        while let Some(&d) = order.get(next) {
            next += 1;
            order.extend(self.dirs[d].children.values().filter_map(|c| match c {
                Child::Dir(sub) => Some(*sub),
                Child::File(_) => None,
            }));
        }
        order
    }

    /// The identifier a child's directory record carries.
    fn child_ident(&self, child: Child) -> &str {
        match child {
            Child::Dir(d) => &self.dirs[d].ident,
            Child::File(f) => &self.files[f].ident,
        }
    }

    /// The size in bytes of directory `d`'s extent: `.`, `..` and the children's records, none
    /// crossing a block boundary.
    fn dir_bytes(&self, d: usize) -> u64 {
        let lens = [1, 1]
            .into_iter()
            .chain(
                self.dirs[d]
                    .children
                    .values()
                    .map(|&c| self.child_ident(c).len()),
            )
            .map(record_len);
        let end = lens.fold(0, |pos, len| place_record(pos, len) + len);
        (end as u64).next_multiple_of(BLOCK_U64)
    }

    fn layout(&self) -> Result<Layout, String> {
        let too_big = || "the files do not fit an ISO 9660 image (2^32 blocks of 2048 bytes)";
        let order = self.path_table_order();
        if order.len() > usize::from(u16::MAX) {
            return Err(format!(
                "cannot make an ISO image of {} directories: a path table numbers at most {}",
                order.len(),
                u16::MAX
            ));
        }
        let mut number = vec![0u16; self.dirs.len()];
        for (i, &d) in order.iter().enumerate() {
            number[d] = (i + 1) as u16;
        }
        let path_table_bytes: u64 = order
            .iter()
            .map(|&d| path_record_len(self.dirs[d].ident.len().max(1)) as u64)
            .sum();
        let path_table_bytes = u32::try_from(path_table_bytes).map_err(|_| too_big())?;
        let path_table_blocks = u64::from(path_table_bytes).div_ceil(BLOCK_U64);
        let m_path_table_lba = u64::from(PATH_TABLES_LBA) + path_table_blocks;

        let mut next = m_path_table_lba + path_table_blocks;
        let mut dir_lba = vec![0u32; self.dirs.len()];
        let mut dir_bytes = vec![0u32; self.dirs.len()];
        let block = |n: u64| u32::try_from(n).map_err(|_| too_big());
        for &d in &order {
            let bytes = self.dir_bytes(d);
            dir_lba[d] = block(next)?;
            dir_bytes[d] = u32::try_from(bytes).map_err(|_| too_big())?;
            next += bytes / BLOCK_U64;
        }
        let meta_blocks = block(next)?;

        // The boot image (file 0) first, then the files in directory order. Empty files get
        // block 0, which reads as zeros like any unused block.
        let mut file_order = vec![0];
        for &d in &order {
            file_order.extend(self.dirs[d].children.values().filter_map(|c| match c {
                Child::File(f) if *f != 0 => Some(*f),
                _ => None,
            }));
        }
        let mut file_lba = vec![0u32; self.files.len()];
        for f in file_order {
            let len = self.files[f].data.len() as u64;
            if len > 0 {
                file_lba[f] = block(next)?;
                next += len.div_ceil(BLOCK_U64);
            }
        }
        Ok(Layout {
            order,
            number,
            dir_lba,
            dir_bytes,
            path_table_bytes,
            m_path_table_lba: block(m_path_table_lba)?,
            file_lba,
            meta_blocks,
            total_blocks: block(next)?,
        })
    }

    /// Blocks 0 to `layout.meta_blocks`: descriptors, catalog, path tables and directories.
    fn metadata(
        &self,
        layout: &Layout,
        volume_id: &str,
        platform: BootPlatform,
    ) -> Result<Vec<u8>, String> {
        let len = usize::try_from(layout.meta_blocks)
            .ok()
            .and_then(|n| n.checked_mul(BLOCK))
            .ok_or("the ISO image's directories do not fit in memory")?;
        let mut meta = vec![0u8; len];
        let at = |lba: u32| lba as usize * BLOCK;

        let pvd = &mut meta[at(PVD_LBA)..at(PVD_LBA + 1)];
        self.primary_volume_descriptor(pvd, layout, volume_id);
        let br = &mut meta[at(BOOT_RECORD_LBA)..at(BOOT_RECORD_LBA + 1)];
        descriptor_header(br, 0);
        br[7..7 + EL_TORITO_ID.len()].copy_from_slice(EL_TORITO_ID);
        br[71..75].copy_from_slice(&CATALOG_LBA.to_le_bytes());
        descriptor_header(&mut meta[at(TERMINATOR_LBA)..at(TERMINATOR_LBA + 1)], 255);
        let boot_bytes = self.files[0].data.len() as u64;
        let catalog = boot_catalog(platform, layout.file_lba[0], boot_bytes);
        meta[at(CATALOG_LBA)..at(CATALOG_LBA) + catalog.len()].copy_from_slice(&catalog);

        let table_len = layout.path_table_bytes as usize;
        for (lba, big_endian) in [(PATH_TABLES_LBA, false), (layout.m_path_table_lba, true)] {
            let table = &mut meta[at(lba)..at(lba) + table_len];
            self.path_table(table, layout, big_endian);
        }
        for &d in &layout.order {
            let start = at(layout.dir_lba[d]);
            let dir = &mut meta[start..start + layout.dir_bytes[d] as usize];
            self.directory(dir, d, layout);
        }
        Ok(meta)
    }

    fn primary_volume_descriptor(&self, pvd: &mut [u8], layout: &Layout, volume_id: &str) {
        descriptor_header(pvd, 1);
        pvd[8..40].fill(b' '); // system identifier
        pvd[40..72].fill(b' ');
        pvd[40..40 + volume_id.len()].copy_from_slice(volume_id.as_bytes());
        both32(&mut pvd[80..88], layout.total_blocks);
        both16(&mut pvd[120..124], 1); // volume set size
        both16(&mut pvd[124..128], 1); // volume sequence number
        both16(&mut pvd[128..132], BLOCK as u16);
        both32(&mut pvd[132..140], layout.path_table_bytes);
        pvd[140..144].copy_from_slice(&PATH_TABLES_LBA.to_le_bytes());
        pvd[148..152].copy_from_slice(&layout.m_path_table_lba.to_be_bytes());
        dir_record(
            &mut pvd[156..190],
            &[0],
            layout.dir_lba[0],
            layout.dir_bytes[0],
            FLAG_DIRECTORY,
        );
        // Volume set, publisher, data preparer and application identifiers, then the
        // copyright, abstract and bibliographic file identifiers: none.
        pvd[190..813].fill(b' ');
        pvd[813..830].copy_from_slice(VOLUME_DATE); // creation
        pvd[830..847].copy_from_slice(VOLUME_DATE); // modification
        pvd[847..864].copy_from_slice(UNSPECIFIED_DATE); // expiration
        pvd[864..881].copy_from_slice(UNSPECIFIED_DATE); // effective
        pvd[881] = 1; // file structure version
    }

    fn path_table(&self, table: &mut [u8], layout: &Layout, big_endian: bool) {
        let mut pos = 0;
        for &d in &layout.order {
            let dir = &self.dirs[d];
            let ident: &[u8] = if d == 0 { &[0] } else { dir.ident.as_bytes() };
            let len = path_record_len(ident.len());
            let r = &mut table[pos..pos + len];
            r[0] = ident.len() as u8;
            let (lba, parent) = (layout.dir_lba[d], layout.number[dir.parent]);
            if big_endian {
                r[2..6].copy_from_slice(&lba.to_be_bytes());
                r[6..8].copy_from_slice(&parent.to_be_bytes());
            } else {
                r[2..6].copy_from_slice(&lba.to_le_bytes());
                r[6..8].copy_from_slice(&parent.to_le_bytes());
            }
            r[8..8 + ident.len()].copy_from_slice(ident);
            pos += len;
        }
    }

    fn directory(&self, out: &mut [u8], d: usize, layout: &Layout) {
        let dir = &self.dirs[d];
        let mut pos = 0;
        let mut put = |ident: &[u8], lba: u32, bytes: u32, flags: u8| {
            pos = place_record(pos, record_len(ident.len()));
            pos += dir_record(&mut out[pos..], ident, lba, bytes, flags);
        };
        put(&[0], layout.dir_lba[d], layout.dir_bytes[d], FLAG_DIRECTORY);
        let p = dir.parent;
        put(&[1], layout.dir_lba[p], layout.dir_bytes[p], FLAG_DIRECTORY);
        for &child in dir.children.values() {
            match child {
                Child::Dir(c) => put(
                    self.dirs[c].ident.as_bytes(),
                    layout.dir_lba[c],
                    layout.dir_bytes[c],
                    FLAG_DIRECTORY,
                ),
                Child::File(f) => {
                    let file = &self.files[f];
                    // Checked in `add`: at most MAX_FILE_BYTES.
                    let bytes = file.data.len() as u32;
                    put(file.ident.as_bytes(), layout.file_lba[f], bytes, 0);
                }
            }
        }
    }
}

/// A volume descriptor's first 7 bytes: type, `CD001`, version 1.
fn descriptor_header(d: &mut [u8], kind: u8) {
    d[0] = kind;
    d[1..6].copy_from_slice(b"CD001");
    d[6] = 1;
}

/// The MBR of a hybrid image whose boot program starts at block `boot_lba`, for an image of
/// `iso_bytes`, and the image's length padded to whole cylinders; what `isohybrid` writes with
/// its default geometry, partition type and offset, and `--id disk_id`.
fn hybrid_mbr(mbr_code: &[u8], boot_lba: u32, iso_bytes: u64, disk_id: u32) -> ([u8; 512], u64) {
    let cylinder = HYBRID_HEADS * HYBRID_SECTORS * 512;
    let padded = iso_bytes.div_ceil(cylinder).max(1) * cylinder;
    let cylinders = padded / cylinder;
    // Beyond 1024 cylinders, the CHS end is the last one CHS can name (the LBA fields hold
    // the truth).
    let chs_cylinders = cylinders.min(CHS_MAX_CYLINDERS);
    let mut mbr = [0u8; 512];
    mbr[..MBR_CODE_BYTES].copy_from_slice(&mbr_code[..MBR_CODE_BYTES]);
    // Where the boot code finds the boot program: its first 512-byte sector (64 bits).
    mbr[432..440].copy_from_slice(&(u64::from(boot_lba) * 4).to_le_bytes());
    mbr[440..444].copy_from_slice(&disk_id.to_le_bytes());
    let last = chs_cylinders - 1;
    let entry = &mut mbr[446..462];
    entry[0] = 0x80; // bootable
    // CHS start: head 0, sector 1, cylinder 0.
    entry[1..4].copy_from_slice(&[0, 1, 0]);
    entry[4] = HYBRID_PARTITION_TYPE;
    entry[5] = (HYBRID_HEADS - 1) as u8;
    entry[6] = (HYBRID_SECTORS + ((last & 0x300) >> 2)) as u8;
    entry[7] = (last & 0xff) as u8;
    // LBA start 0; the sector count, which 32 bits hold for images under 2 TiB.
    let sectors = u32::try_from(cylinders * HYBRID_HEADS * HYBRID_SECTORS).unwrap_or(u32::MAX);
    entry[12..16].copy_from_slice(&sectors.to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    (mbr, padded)
}

/// `program` with its boot information table filled in for an image where it starts at block
/// `lba`: the primary volume descriptor's block, `lba`, the program's length, and the 32-bit
/// little-endian sum of its words from byte 64 on (a short last word padded with zeros); the
/// table's last 40 bytes are zeros.
fn with_boot_info_table(program: &[u8], lba: u32) -> Vec<u8> {
    let mut p = program.to_vec();
    let checksum = p[BOOT_INFO_TABLE.end..].chunks(4).fold(0u32, |sum, w| {
        let mut word = [0u8; 4];
        word[..w.len()].copy_from_slice(w);
        sum.wrapping_add(u32::from_le_bytes(word))
    });
    let table = &mut p[BOOT_INFO_TABLE];
    table.fill(0);
    table[0..4].copy_from_slice(&PVD_LBA.to_le_bytes());
    table[4..8].copy_from_slice(&lba.to_le_bytes());
    // `write_boot_iso` refuses files over 4 GiB.
    table[8..12].copy_from_slice(&(program.len() as u32).to_le_bytes());
    table[12..16].copy_from_slice(&checksum.to_le_bytes());
    p
}

/// The boot catalog's first 64 bytes (the rest of its block is zeros, which ends it).
fn boot_catalog(platform: BootPlatform, boot_lba: u32, boot_bytes: u64) -> [u8; 64] {
    let mut c = [0u8; 64];
    let validation = &mut c[..32];
    validation[0] = 1; // header id
    validation[1] = match platform {
        BootPlatform::Bios => PLATFORM_X86,
        BootPlatform::Efi => PLATFORM_EFI,
    };
    validation[30] = 0x55;
    validation[31] = 0xaa;
    // The checksum makes the entry's 16-bit little-endian words sum to zero.
    let sum = validation.chunks_exact(2).fold(0u16, |s, w| {
        s.wrapping_add(u16::from_le_bytes([w[0], w[1]]))
    });
    validation[28..30].copy_from_slice(&sum.wrapping_neg().to_le_bytes());
    let default = &mut c[32..];
    default[0] = 0x88; // bootable
    // Media type 0 (no emulation), load segment 0 (the default), system type 0: zeros.
    let sectors = match platform {
        BootPlatform::Bios => BIOS_LOAD_SECTORS,
        BootPlatform::Efi => load_sectors(boot_bytes),
    };
    default[6..8].copy_from_slice(&sectors.to_le_bytes());
    default[8..12].copy_from_slice(&boot_lba.to_le_bytes());
    c
}

/// The default entry's sector count as xorriso 1.5 writes it for `-e`: the image's whole
/// 2048-byte blocks in 512-byte sectors, or 0 when that is more than 16 bits hold.
fn load_sectors(boot_bytes: u64) -> u16 {
    u16::try_from(boot_bytes.div_ceil(BLOCK_U64) * 4).unwrap_or(0)
}

/// A directory record's length for an identifier of `ident_len` bytes (padded to even).
fn record_len(ident_len: usize) -> usize {
    33 + ident_len + (1 - ident_len % 2)
}

/// A path table record's length for an identifier of `ident_len` bytes (padded to even).
fn path_record_len(ident_len: usize) -> usize {
    8 + ident_len + ident_len % 2
}

/// Where a record of `len` bytes goes at `pos` or after: records never cross a block boundary.
fn place_record(pos: usize, len: usize) -> usize {
    if pos % BLOCK + len > BLOCK {
        pos.next_multiple_of(BLOCK)
    } else {
        pos
    }
}

/// Writes a directory record at the start of `out`; returns its length.
fn dir_record(out: &mut [u8], ident: &[u8], lba: u32, bytes: u32, flags: u8) -> usize {
    let len = record_len(ident.len());
    let r = &mut out[..len];
    r[0] = len as u8;
    both32(&mut r[2..10], lba);
    both32(&mut r[10..18], bytes);
    r[18..25].copy_from_slice(&RECORD_DATE);
    r[25] = flags;
    both16(&mut r[28..32], 1); // volume sequence number
    r[32] = ident.len() as u8;
    r[33..33 + ident.len()].copy_from_slice(ident);
    len
}

/// ISO 9660's both-byte orders: little-endian, then big-endian.
pub(crate) fn both32(out: &mut [u8], v: u32) {
    out[..4].copy_from_slice(&v.to_le_bytes());
    out[4..8].copy_from_slice(&v.to_be_bytes());
}

pub(crate) fn both16(out: &mut [u8], v: u16) {
    out[..2].copy_from_slice(&v.to_le_bytes());
    out[2..4].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
#[path = "iso/tests.rs"]
mod tests;
