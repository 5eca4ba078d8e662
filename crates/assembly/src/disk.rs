//! Bootable UEFI disk images (`raw-efi`): a raw disk with a GUID partition table and one
//! partition, an EFI system partition (ESP) formatted FAT32 that holds the files given (for
//! oxkit, `EFI/BOOT/BOOTX64.EFI`: a unified kernel image the firmware starts on its own).
//!
//! Layout, in 512-byte sectors: the protective MBR (LBA 0), the primary GPT header (LBA 1) and
//! its 128 entries of 128 bytes (LBA 2-33), the ESP from LBA 2048 (1 MiB aligned) to 1 MiB
//! before the end, then the backup entries and, in the last sector, the backup header. The ESP
//! is the files' size plus room for FAT metadata and slack, rounded up to a MiB and never below
//! 33 MiB. It is always FAT32, whatever the size: the UEFI specification names FAT32 for system
//! partitions (FAT12/16 for removable media), and 33 MiB is the smallest volume `fatfs` lays
//! out with the 65,525 clusters FAT32 needs; `fatfs` picks the cluster size (512 bytes up to
//! 260 MiB, 4 KiB up to 8 GiB, larger beyond).
//!
//! Reproducible: the disk and partition GUIDs and the FAT volume id come from the caller's seed,
//! every FAT timestamp is the FAT epoch (1980-01-01 00:00), files are written in path order,
//! and nothing is read from the host. The image is sparse: the file is sized with `set_len`,
//! and only the partition tables, the FAT structures and the files' bytes are written.
//!
//! [`write_fat_image`] writes the same file system without the disk around it: the boot image
//! of an `iso-efi` CD (`iso.rs`).
//!
//! This module writes one image file and does nothing else: it does not choose the files, read
//! the file system around it or sync the output (the caller renames it into place).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

const SECTOR: u64 = 512;
const MIB: u64 = 1 << 20;
/// The ESP's first sector: 1 MiB, the alignment every partitioning tool uses.
const ESP_START_LBA: u64 = MIB / SECTOR;
/// Room kept after the ESP for the backup entries and header (and alignment).
const TAIL_BYTES: u64 = MIB;
const GPT_ENTRY_COUNT: usize = 128;
const GPT_ENTRY_SIZE: usize = 128;
const GPT_ENTRIES_BYTES: usize = GPT_ENTRY_COUNT * GPT_ENTRY_SIZE;
const GPT_ENTRIES_SECTORS: u64 = GPT_ENTRIES_BYTES as u64 / SECTOR;
const GPT_HEADER_SIZE: usize = 92;
/// The smallest volume `fatfs` formats as FAT32 (65,525 clusters of 512 bytes plus its FATs).
const MIN_ESP_BYTES: u64 = 33 * MIB;
/// Fixed room for FAT tables, directories and slack, on top of 10% of the files' size.
const ESP_BASE_OVERHEAD: u64 = 8 * MIB;
/// Per file: its partly used last cluster and its directory entries (long names included).
const ESP_PER_FILE_OVERHEAD: u64 = 8 * 1024;
/// FAT's boot sector counts sectors in 32 bits.
const MAX_ESP_SECTORS: u64 = u32::MAX as u64;
/// FAT's directory entry stores a file's size in 32 bits.
const MAX_FILE_BYTES: u64 = u32::MAX as u64;
const PARTITION_NAME: &str = "EFI System";
const VOLUME_LABEL: [u8; 11] = *b"ESP        ";

/// The EFI system partition type, C12A7328-F81F-11D2-BA4B-00A0C93EC93B.
const ESP_TYPE: Guid = Guid([
    0xc1, 0x2a, 0x73, 0x28, 0xf8, 0x1f, 0x11, 0xd2, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b,
]);

/// One file to put on the ESP: its path with `/` separators (directories are created), its bytes.
pub(crate) struct EspFile<'a> {
    pub(crate) path: &'a str,
    pub(crate) data: &'a [u8],
}

/// Writes a GPT disk image with one EFI system partition holding `files` to `out` (which it
/// truncates and sizes), and returns the image's size in bytes. `seed` (e.g. a digest of the
/// contents) determines the disk and partition GUIDs and the FAT volume id, so the same files
/// and seed always give the same bytes.
///
/// `out` must be open for reading and writing (the FAT writer reads back what it wrote); its
/// cursor is left where it was. Paths are taken as written, never normalised: a leading `/`,
/// an empty component, `.` or `..`, a character FAT names cannot hold, a path given twice (FAT
/// names ignore case) or a file where another path needs a directory is an error. The order
/// of `files` does not matter.
pub(crate) fn write_esp_disk(
    out: &mut File,
    files: &[EspFile<'_>],
    seed: &[u8],
) -> Result<u64, String> {
    let (files, layout) = plan(files)?;
    write_disk(out, &layout, &files, seed)?;
    Ok(layout.disk_bytes())
}

/// A bare FAT32 file system image (no partition table) holding `files`, for an El Torito
/// EFI boot image; returns its size in bytes (a multiple of 2048).
///
/// The file system is the one [`write_esp_disk`] puts in its partition for the same files and
/// seed (same size, volume id, label and timestamps, same checks on the paths), starting at
/// byte 0 of `out`, which it truncates and sizes (sparse, like the disk). `out` must be open
/// for reading and writing; its cursor is left where it was.
pub(crate) fn write_fat_image(
    out: &mut File,
    files: &[EspFile<'_>],
    seed: &[u8],
) -> Result<u64, String> {
    let (files, layout) = plan(files)?;
    // Whole MiBs (see `Layout::for_contents`), so whole 2048-byte CD sectors too.
    let bytes = layout.esp_sectors * SECTOR;
    out.set_len(0)
        .and_then(|()| out.set_len(bytes))
        .map_err(|e| format!("cannot size the FAT image to {bytes} bytes: {e}"))?;
    write_fat(out, 0, layout.esp_sectors, &files, seed)?;
    Ok(bytes)
}

/// `files` sorted by path and checked, and the layout that holds them.
fn plan<'f, 'a>(files: &'f [EspFile<'a>]) -> Result<(Vec<&'f EspFile<'a>>, Layout), String> {
    let mut files: Vec<&EspFile<'_>> = files.iter().collect();
    files.sort_by(|a, b| a.path.cmp(b.path));
    check_files(&files)?;
    let total = files
        .iter()
        .fold(0u64, |sum, f| sum.saturating_add(f.data.len() as u64));
    let layout = Layout::for_contents(total, files.len())?;
    Ok((files, layout))
}

/// Writes the image for `layout`, which must have room for `files` (sorted, checked).
fn write_disk(
    out: &File,
    layout: &Layout,
    files: &[&EspFile<'_>],
    seed: &[u8],
) -> Result<(), String> {
    let disk_bytes = layout.disk_bytes();
    out.set_len(0)
        .and_then(|()| out.set_len(disk_bytes))
        .map_err(|e| format!("cannot size the disk image to {disk_bytes} bytes: {e}"))?;
    write_gpt(out, layout, seed)
        .map_err(|e| format!("cannot write the disk image's partition table: {e}"))?;
    write_fat(out, ESP_START_LBA * SECTOR, layout.esp_sectors, files, seed)
}

/// Where things go on the disk, in sectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    esp_sectors: u64,
    disk_sectors: u64,
}

impl Layout {
    /// The layout for `file_count` files of `total_bytes` together.
    fn for_contents(total_bytes: u64, file_count: usize) -> Result<Self, String> {
        let too_big = || {
            format!(
                "{file_count} files of {total_bytes} bytes in all do not fit an EFI system \
                 partition (FAT32 holds at most {} bytes here)",
                MAX_ESP_SECTORS * SECTOR
            )
        };
        let esp = total_bytes
            .checked_add(total_bytes / 10)
            .and_then(|n| n.checked_add(ESP_BASE_OVERHEAD))
            .and_then(|n| n.checked_add((file_count as u64).checked_mul(ESP_PER_FILE_OVERHEAD)?))
            .and_then(|n| n.checked_next_multiple_of(MIB))
            .ok_or_else(too_big)?
            .max(MIN_ESP_BYTES);
        let esp_sectors = esp / SECTOR;
        if esp_sectors > MAX_ESP_SECTORS {
            return Err(too_big());
        }
        Ok(Self {
            esp_sectors,
            disk_sectors: ESP_START_LBA + esp_sectors + TAIL_BYTES / SECTOR,
        })
    }

    fn disk_bytes(&self) -> u64 {
        self.disk_sectors * SECTOR
    }

    fn esp_last_lba(&self) -> u64 {
        ESP_START_LBA + self.esp_sectors - 1
    }

    fn backup_header_lba(&self) -> u64 {
        self.disk_sectors - 1
    }

    fn backup_entries_lba(&self) -> u64 {
        self.backup_header_lba() - GPT_ENTRIES_SECTORS
    }

    /// The last sector a partition may use: the one before the backup entries.
    fn last_usable_lba(&self) -> u64 {
        self.backup_entries_lba() - 1
    }
}

/// Rejects what would not land at the path the caller named.
fn check_files(files: &[&EspFile<'_>]) -> Result<(), String> {
    // FAT compares names without case, so `EFI/boot` and `EFI/BOOT` are one directory: paths
    // are keyed upper-cased, each to the path (or, for directories, a file inside) it came from.
    let mut seen_files = BTreeMap::new();
    let mut seen_dirs = BTreeMap::new();
    for file in files {
        let path = file.path;
        let bad = |why: &str| format!("cannot put {path:?} on the EFI system partition: {why}");
        if path.is_empty() {
            return Err(bad("the path is empty"));
        }
        if path.starts_with('/') {
            return Err(bad(
                "the path must be relative to the partition's root (no leading /)",
            ));
        }
        if path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(bad("the path has an empty, `.` or `..` component"));
        }
        if file.data.len() as u64 > MAX_FILE_BYTES {
            return Err(bad(&format!(
                "{} bytes is more than a FAT file holds ({MAX_FILE_BYTES} bytes)",
                file.data.len()
            )));
        }
        let key = path.to_uppercase();
        for (i, _) in key.match_indices('/') {
            seen_dirs.entry(key[..i].to_owned()).or_insert(path);
        }
        if let Some(other) = seen_files.insert(key, path) {
            return Err(bad(&format!(
                "{other:?} has the same path (FAT names ignore case)"
            )));
        }
    }
    for (key, path) in &seen_files {
        if let Some(inside) = seen_dirs.get(key) {
            return Err(format!(
                "cannot put {path:?} on the EFI system partition: {inside:?} needs it to be a \
                 directory"
            ));
        }
    }
    Ok(())
}

/// A GUID in RFC 4122 byte order (as written in text: `time_low` first, big-endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Guid([u8; 16]);

impl Guid {
    /// A version-4-shaped GUID whose random bits come from `label` and `seed`.
    fn derive(label: &str, seed: &[u8]) -> Self {
        let mut bytes = [0u8; 16];
        for (half, out) in bytes.chunks_exact_mut(8).enumerate() {
            let hash = fnv1a64(&[label.as_bytes(), &[half as u8], seed]);
            out.copy_from_slice(&hash.to_be_bytes());
        }
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Self(bytes)
    }

    /// The on-disk form GPT uses: the first three fields little-endian, the rest as is.
    fn to_mixed_endian(self) -> [u8; 16] {
        let mut b = self.0;
        b[0..4].reverse();
        b[4..6].reverse();
        b[6..8].reverse();
        b
    }
}

impl fmt::Display for Guid {
    /// Upper case, as `sgdisk` and `sfdisk` print GUIDs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02X}")?;
        }
        Ok(())
    }
}

fn disk_guid(seed: &[u8]) -> Guid {
    Guid::derive("oxkit gpt disk", seed)
}

fn partition_guid(seed: &[u8]) -> Guid {
    Guid::derive("oxkit gpt esp", seed)
}

fn volume_id(seed: &[u8]) -> u32 {
    // Folding the 64-bit hash keeps every input bit in the 32-bit id.
    let hash = fnv1a64(&[b"oxkit fat volume id", seed]);
    (hash ^ (hash >> 32)) as u32
}

/// FNV-1a over the concatenated parts: the identifiers need to be stable and spread, not secret.
fn fnv1a64(parts: &[&[u8]]) -> u64 {
    parts
        .iter()
        .flat_map(|p| p.iter())
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

/// The protective MBR, the primary GPT and the backup GPT.
fn write_gpt(out: &File, layout: &Layout, seed: &[u8]) -> io::Result<()> {
    let entries = partition_entries(layout, partition_guid(seed));
    let entries_crc = crc32fast::hash(&entries);
    let disk = disk_guid(seed);
    out.write_all_at(&protective_mbr(layout), 0)?;
    for primary in [true, false] {
        let (header_lba, entries_lba) = if primary {
            (1, 2)
        } else {
            (layout.backup_header_lba(), layout.backup_entries_lba())
        };
        let header = gpt_header(layout, disk, entries_crc, primary);
        out.write_all_at(&header, header_lba * SECTOR)?;
        // The entries after the first are zeros, which the sized file already reads as.
        out.write_all_at(&entries[..GPT_ENTRY_SIZE], entries_lba * SECTOR)?;
    }
    Ok(())
}

/// An MBR with one partition of type 0xEE covering the disk, so MBR-only tools leave it alone.
fn protective_mbr(layout: &Layout) -> [u8; SECTOR as usize] {
    let mut mbr = [0u8; SECTOR as usize];
    let entry = &mut mbr[446..462];
    entry[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
    entry[4] = 0xee;
    entry[5..8].copy_from_slice(&[0xff, 0xff, 0xff]); // CHS beyond what CHS addresses
    entry[8..12].copy_from_slice(&1u32.to_le_bytes());
    let sectors = u32::try_from(layout.disk_sectors - 1).unwrap_or(u32::MAX);
    entry[12..16].copy_from_slice(&sectors.to_le_bytes());
    mbr[510..512].copy_from_slice(&[0x55, 0xaa]);
    mbr
}

/// The partition entry array: the ESP, then 127 unused entries.
fn partition_entries(layout: &Layout, unique: Guid) -> Vec<u8> {
    let mut entries = vec![0u8; GPT_ENTRIES_BYTES];
    let e = &mut entries[..GPT_ENTRY_SIZE];
    e[0..16].copy_from_slice(&ESP_TYPE.to_mixed_endian());
    e[16..32].copy_from_slice(&unique.to_mixed_endian());
    e[32..40].copy_from_slice(&ESP_START_LBA.to_le_bytes());
    e[40..48].copy_from_slice(&layout.esp_last_lba().to_le_bytes());
    // Attributes (48..56) stay 0; the name is UTF-16LE in the 72 bytes left.
    for (i, unit) in PARTITION_NAME.encode_utf16().enumerate() {
        e[56 + 2 * i..58 + 2 * i].copy_from_slice(&unit.to_le_bytes());
    }
    entries
}

/// A GPT header (the 92 bytes the CRC covers; the rest of its sector is zero).
fn gpt_header(
    layout: &Layout,
    disk: Guid,
    entries_crc: u32,
    primary: bool,
) -> [u8; GPT_HEADER_SIZE] {
    let (my_lba, alternate_lba, entries_lba) = if primary {
        (1, layout.backup_header_lba(), 2)
    } else {
        (layout.backup_header_lba(), 1, layout.backup_entries_lba())
    };
    let mut h = [0u8; GPT_HEADER_SIZE];
    h[0..8].copy_from_slice(b"EFI PART");
    h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    h[12..16].copy_from_slice(&(GPT_HEADER_SIZE as u32).to_le_bytes());
    // 16..20: the header's CRC, computed with the field zero; 20..24 reserved.
    h[24..32].copy_from_slice(&my_lba.to_le_bytes());
    h[32..40].copy_from_slice(&alternate_lba.to_le_bytes());
    h[40..48].copy_from_slice(&(2 + GPT_ENTRIES_SECTORS).to_le_bytes());
    h[48..56].copy_from_slice(&layout.last_usable_lba().to_le_bytes());
    h[56..72].copy_from_slice(&disk.to_mixed_endian());
    h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
    h[80..84].copy_from_slice(&(GPT_ENTRY_COUNT as u32).to_le_bytes());
    h[84..88].copy_from_slice(&(GPT_ENTRY_SIZE as u32).to_le_bytes());
    h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
    let crc = crc32fast::hash(&h);
    h[16..20].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Formats the `esp_sectors` sectors at byte `esp_at` of `out` as the ESP and writes the files
/// into it (sorted by path, directories made on the way).
fn write_fat(
    out: &File,
    esp_at: u64,
    esp_sectors: u64,
    files: &[&EspFile<'_>],
    seed: &[u8],
) -> Result<(), String> {
    let region = |buffers| Region {
        file: out,
        start: esp_at,
        len: esp_sectors * SECTOR,
        pos: 0,
        buffers,
    };
    let esp = |e: io::Error| format!("cannot write the EFI system partition: {e}");
    let total_sectors = u32::try_from(esp_sectors)
        .map_err(|_| esp(io::Error::other("too many sectors for FAT")))?;
    let options = fatfs::FormatVolumeOptions::new()
        .fat_type(fatfs::FatType::Fat32)
        .total_sectors(total_sectors)
        .volume_id(volume_id(seed))
        .volume_label(VOLUME_LABEL);
    fatfs::format_volume(region(None), options)
        .map_err(|e| format!("cannot format the EFI system partition as FAT32: {e}"))?;

    let head = Fat32::read(out, esp_at).map_err(esp)?.data_at - esp_at;
    let buffers = RefCell::new(Buffers::load(out, esp_at, head).map_err(esp)?);
    let fs = fatfs::FileSystem::new(
        region(Some(&buffers)),
        fatfs::FsOptions::new().time_provider(&FAT_EPOCH),
    )
    .map_err(esp)?;
    {
        let root = fs.root_dir();
        for file in files {
            let path = file.path;
            let fail = |what: &str, e: io::Error| {
                format!("cannot write {path:?} to the EFI system partition: {what}: {e}")
            };
            for (i, _) in path.match_indices('/') {
                root.create_dir(&path[..i])
                    .map_err(|e| fail(&format!("creating directory {:?}", &path[..i]), e))?;
            }
            let mut f = root
                .create_file(path)
                .map_err(|e| fail("creating the file", e))?;
            f.write_all(file.data)
                .and_then(|()| f.flush())
                .map_err(|e| fail("writing its bytes", e))?;
        }
    }
    // FSInfo's free-cluster count is "unknown" until counted; fsck.vfat flags it, and firmware
    // that trusts it gets the right number.
    fs.stats().map_err(esp)?;
    fs.unmount().map_err(esp)?;
    buffers.into_inner().write_out(out, esp_at).map_err(esp)?;
    repair_dot_entries(out, esp_at)
        .map_err(|e| format!("cannot repair the EFI system partition's directories: {e}"))
}

/// Makes every subdirectory start with the `.` and `..` entries FAT requires, which
/// `fatfs` 0.3.6's `create_dir` gets wrong (rust-fatfs #117; fixed upstream after 0.3.6):
/// it puts a long-name entry before each of them, so `.` and `..` are not the first two
/// entries, and on FAT32 it points `..` of a top-level directory at the root's cluster, where
/// FAT wants 0. fsck.vfat reports both; strict readers may refuse the directory.
///
/// Walks the tree from the root (the volume is one this module just wrote: FAT32, no deleted
/// or foreign entries) and rewrites the first four entries of each subdirectory as `.`, `..`
/// and two deleted entries. Directories already laid out right only get `..` set.
fn repair_dot_entries(out: &File, esp_at: u64) -> io::Result<()> {
    let fat = Fat32::read(out, esp_at)?;
    // (directory's first cluster, what its `..` must hold; None for the root)
    let mut todo = vec![(fat.root_cluster, None)];
    while let Some((cluster, dotdot)) = todo.pop() {
        if let Some(parent) = dotdot {
            fat.repair_first_entries(out, cluster, parent)?;
        }
        let entries = fat.read_chain(out, cluster)?;
        for entry in entries.chunks_exact(DIR_ENTRY) {
            match entry[0] {
                0x00 => break,
                0xe5 | b'.' => continue,
                _ => {}
            }
            let attr = entry[11];
            if attr & ATTR_LONG_NAME == ATTR_LONG_NAME || attr & ATTR_VOLUME_ID != 0 {
                continue;
            }
            if attr & ATTR_DIRECTORY != 0 {
                // `..` of a directory in the root holds 0, not the root's cluster.
                let parent = if dotdot.is_none() { 0 } else { cluster };
                todo.push((entry_cluster(entry), Some(parent)));
            }
        }
    }
    Ok(())
}

const DIR_ENTRY: usize = 32;
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_LONG_NAME: u8 = 0x0f;
const DOT: &[u8; 11] = b".          ";
const DOTDOT: &[u8; 11] = b"..         ";

fn entry_cluster(entry: &[u8]) -> u32 {
    u32::from(u16::from_le_bytes([entry[20], entry[21]])) << 16
        | u32::from(u16::from_le_bytes([entry[26], entry[27]]))
}

fn set_entry_cluster(entry: &mut [u8], cluster: u32) {
    entry[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
    entry[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
}

/// Where a FAT32 volume keeps its table and clusters, from its boot sector.
struct Fat32 {
    fat_at: u64,
    data_at: u64,
    cluster_bytes: u64,
    /// Clusters are numbered 2..=max_cluster.
    max_cluster: u32,
    root_cluster: u32,
}

impl Fat32 {
    fn read(out: &File, at: u64) -> io::Result<Self> {
        let mut bpb = [0u8; 512];
        out.read_exact_at(&mut bpb, at)?;
        let u16_at = |i: usize| u64::from(u16::from_le_bytes([bpb[i], bpb[i + 1]]));
        let u32_at = |i: usize| u32::from_le_bytes([bpb[i], bpb[i + 1], bpb[i + 2], bpb[i + 3]]);
        let bytes_per_sector = u16_at(11);
        let sectors_per_cluster = u64::from(bpb[13]);
        let fat_sectors = u64::from(bpb[16]) * u64::from(u32_at(36));
        let first_data_sector = u16_at(14) + fat_sectors;
        let data_sectors = u64::from(u32_at(32)).checked_sub(first_data_sector);
        let (Some(data_sectors), true) = (data_sectors, sectors_per_cluster > 0) else {
            return Err(io::Error::other(
                "the boot sector is not the FAT32 one just written",
            ));
        };
        Ok(Self {
            fat_at: at + u16_at(14) * bytes_per_sector,
            data_at: at + first_data_sector * bytes_per_sector,
            cluster_bytes: sectors_per_cluster * bytes_per_sector,
            max_cluster: u32::try_from(data_sectors / sectors_per_cluster + 1)
                .map_err(io::Error::other)?,
            root_cluster: u32_at(44),
        })
    }

    fn cluster_at(&self, cluster: u32) -> io::Result<u64> {
        if !(2..=self.max_cluster).contains(&cluster) {
            return Err(io::Error::other(format!(
                "cluster {cluster} is out of range"
            )));
        }
        Ok(self.data_at + u64::from(cluster - 2) * self.cluster_bytes)
    }

    /// The bytes of the cluster chain starting at `first`.
    fn read_chain(&self, out: &File, first: u32) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        let mut cluster = first;
        loop {
            let at = self.cluster_at(cluster)?;
            let start = bytes.len();
            bytes.resize(start + self.cluster_bytes as usize, 0);
            out.read_exact_at(&mut bytes[start..], at)?;
            let mut next = [0u8; 4];
            out.read_exact_at(&mut next, self.fat_at + 4 * u64::from(cluster))?;
            cluster = u32::from_le_bytes(next) & 0x0fff_ffff;
            if cluster >= 0x0fff_fff8 {
                return Ok(bytes);
            }
            if bytes.len() as u64 > u64::from(self.max_cluster) * self.cluster_bytes {
                return Err(io::Error::other(format!(
                    "the chain from cluster {first} loops"
                )));
            }
        }
    }

    /// Rewrites the start of the directory at `cluster` as `.`, `..` (pointing at `parent`).
    fn repair_first_entries(&self, out: &File, cluster: u32, parent: u32) -> io::Result<()> {
        let at = self.cluster_at(cluster)?;
        let mut head = [0u8; 4 * DIR_ENTRY];
        out.read_exact_at(&mut head, at)?;
        let is = |i: usize, name: &[u8; 11]| &head[i * DIR_ENTRY..][..11] == name;
        let is_long = |i: usize| head[i * DIR_ENTRY + 11] == ATTR_LONG_NAME;
        let mut fixed = head;
        if is(0, DOT) && is(1, DOTDOT) {
            // Laid out right: only `..` may need its cluster.
        } else if is_long(0) && is(1, DOT) && is_long(2) && is(3, DOTDOT) {
            fixed = [0u8; 4 * DIR_ENTRY];
            fixed[..DIR_ENTRY].copy_from_slice(&head[DIR_ENTRY..2 * DIR_ENTRY]);
            fixed[DIR_ENTRY..2 * DIR_ENTRY].copy_from_slice(&head[3 * DIR_ENTRY..]);
            fixed[2 * DIR_ENTRY] = 0xe5;
            fixed[3 * DIR_ENTRY] = 0xe5;
        } else {
            return Err(io::Error::other(format!(
                "the directory at cluster {cluster} does not start with `.` and `..`"
            )));
        }
        set_entry_cluster(&mut fixed[DIR_ENTRY..2 * DIR_ENTRY], parent);
        if fixed != head {
            out.write_all_at(&fixed, at)?;
        }
        Ok(())
    }
}

/// Every FAT timestamp is the FAT epoch, 1980-01-01 00:00:00.
#[derive(Debug)]
struct FatEpoch;

static FAT_EPOCH: FatEpoch = FatEpoch;

impl fatfs::TimeProvider for FatEpoch {
    fn get_current_date(&self) -> fatfs::Date {
        fatfs::Date {
            year: 1980,
            month: 1,
            day: 1,
        }
    }

    fn get_current_date_time(&self) -> fatfs::DateTime {
        fatfs::DateTime {
            date: self.get_current_date(),
            time: fatfs::Time {
                hour: 0,
                min: 0,
                sec: 0,
                millis: 0,
            },
        }
    }
}

/// What the mounted volume's stream keeps in memory, because `fatfs` 0.3.6 reads and writes
/// the FAT one 4-byte entry at a time and file data one cluster (512 bytes here) at a time: a
/// system call for each made a 64 MiB file take over a second. It keeps the partition's head
/// (boot sectors and both FATs, at most ~1.6% of the partition) and one run of consecutive
/// data writes. The stream goes away with the unmounted file system, so the caller writes the
/// buffers out afterwards ([`Buffers::write_out`]).
struct Buffers {
    head: Vec<u8>,
    run_at: u64,
    run: Vec<u8>,
}

/// The longest run of data writes gathered into one.
const RUN_BYTES: usize = 1 << 20;

impl Buffers {
    /// The first `head` bytes of the partition at `start` of `file`, and an empty run.
    fn load(file: &File, start: u64, head: u64) -> io::Result<Self> {
        let len = usize::try_from(head).map_err(io::Error::other)?;
        let mut head = vec![0u8; len];
        file.read_exact_at(&mut head, start)?;
        Ok(Self {
            head,
            run_at: 0,
            run: Vec::with_capacity(RUN_BYTES),
        })
    }

    fn head_len(&self) -> u64 {
        self.head.len() as u64
    }

    fn flush_run(&mut self, file: &File, start: u64) -> io::Result<()> {
        if !self.run.is_empty() {
            file.write_all_at(&self.run, start + self.run_at)?;
            self.run.clear();
        }
        Ok(())
    }

    fn write_out(mut self, file: &File, start: u64) -> io::Result<()> {
        self.flush_run(file, start)?;
        file.write_all_at(&self.head, start)
    }
}

/// The partition's bytes of the image file, as the seekable stream `fatfs` formats and fills,
/// through `buffers` once formatted. Positioned reads and writes leave the file's cursor alone.
struct Region<'f> {
    file: &'f File,
    start: u64,
    len: u64,
    pos: u64,
    buffers: Option<&'f RefCell<Buffers>>,
}

impl Region<'_> {
    /// How many of `want` bytes fit between the position and the partition's end.
    fn room(&self, want: usize) -> usize {
        let left = self.len.saturating_sub(self.pos);
        usize::try_from(left).map_or(want, |left| want.min(left))
    }
}

impl Read for Region<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.room(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let buf = &mut buf[..n];
        let read = match self.buffers.map(RefCell::borrow_mut) {
            Some(b) if self.pos < b.head_len() => {
                let at = self.pos as usize;
                let n = n.min(b.head.len() - at);
                buf[..n].copy_from_slice(&b.head[at..at + n]);
                n
            }
            Some(mut b) => {
                let run_end = b.run_at + b.run.len() as u64;
                if b.run_at < self.pos + n as u64 && self.pos < run_end {
                    b.flush_run(self.file, self.start)?;
                }
                self.file.read_at(buf, self.start + self.pos)?
            }
            None => self.file.read_at(buf, self.start + self.pos)?,
        };
        self.pos += read as u64;
        Ok(read)
    }
}

impl Write for Region<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.room(buf.len());
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write beyond the end of the partition",
            ));
        }
        let buf = &buf[..n];
        let written = match self.buffers.map(RefCell::borrow_mut) {
            Some(mut b) if self.pos < b.head_len() => {
                let at = self.pos as usize;
                let n = n.min(b.head.len() - at);
                b.head[at..at + n].copy_from_slice(&buf[..n]);
                n
            }
            Some(mut b) => {
                let run_end = b.run_at + b.run.len() as u64;
                if self.pos != run_end || b.run.len() + n > RUN_BYTES {
                    b.flush_run(self.file, self.start)?;
                    b.run_at = self.pos;
                }
                b.run.extend_from_slice(buf);
                n
            }
            None => self.file.write_at(buf, self.start + self.pos)?,
        };
        self.pos += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.buffers {
            Some(b) => b.borrow_mut().flush_run(self.file, self.start),
            None => Ok(()),
        }
    }
}

impl Seek for Region<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the partition's start",
            )
        })?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests;
