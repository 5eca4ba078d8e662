//! Unified kernel images (UKI), built the way systemd's `ukify` builds them, in process.
//!
//! A UKI is one EFI executable that boots Linux: systemd's EFI stub (`linuxx64.efi.stub`,
//! `linuxaa64.efi.stub`) with the kernel, its initrd, its command line and the os-release text
//! added as PE sections named `.linux`, `.initrd`, `.cmdline` and `.osrel`. The firmware loads
//! the whole image; the stub finds those sections by name in its own loaded image, measures them
//! into the TPM and starts the kernel with that initrd and command line. Signing the one file
//! covers everything it boots.
//!
//! The stub is extended, not relinked, exactly as `ukify` does it:
//! - a trailing COFF symbol table (Debian's stubs still carry one) is stripped when it ends the
//!   file, since an image file has no use for it;
//! - the new section headers go right after the stub's section table, in the free space below
//!   `SizeOfHeaders` and the first section's data (systemd's stubs leave room for them), which
//!   must be zeros: nothing else may already live there;
//! - each section's data is appended at the end of the file, at the next multiple of
//!   `FileAlignment`, zero-padded to a multiple of it; its virtual address is the next multiple
//!   of `SectionAlignment` after everything the image maps so far;
//! - `.osrel`, `.cmdline`, `.initrd`, then `.linux` last, ukify's order: an old kernel started
//!   through the EFI handover protocol decompresses in place and would overwrite a section
//!   placed after it. `.linux` is marked as code (old kernels run inline from it, and firmware
//!   that enforces memory protection leaves data sections non-executable), the others as
//!   initialized read-only data. An empty part other than the kernel is left out, as ukify
//!   leaves out what it was not given;
//! - `NumberOfSections`, `SizeOfImage`, `SizeOfInitializedData` are updated and the PE
//!   `CheckSum` is recomputed (ukify zeroes it; firmware ignores it, tools check it).
//!
//! A signed stub (one with a certificate table) is refused: the signature would no longer cover
//! the image, and the UKI as a whole is what gets signed. Data after the last section that is not
//! a symbol table is kept where it is, as ukify keeps it; nothing reads it.
//!
//! The output is a pure function of the stub and the parts: no time stamp is written (the
//! stub's `TimeDateStamp` is kept), every padding byte is zero, and placement depends only on
//! sizes and the stub's own alignments, so the same inputs give the same bytes.
//!
//! This module only transforms bytes: it never reads files or runs tools, and it never panics on
//! what the stub holds (every offset read from it is checked).

/// Section headers are this long (COFF `IMAGE_SECTION_HEADER`).
const SECTION_HEADER_LEN: usize = 40;
/// The COFF file header that follows the `PE\0\0` signature.
const COFF_HEADER_LEN: usize = 20;
/// One record of a COFF symbol table.
const COFF_SYMBOL_LEN: u64 = 18;

const PE32_MAGIC: u16 = 0x10b;
const PE32_PLUS_MAGIC: u16 = 0x20b;

// Offsets in the optional header; the same for PE32 and PE32+ up to `CheckSum`.
const OPT_SIZE_OF_INITIALIZED_DATA: usize = 8;
const OPT_SECTION_ALIGNMENT: usize = 32;
const OPT_FILE_ALIGNMENT: usize = 36;
const OPT_SIZE_OF_IMAGE: usize = 56;
const OPT_SIZE_OF_HEADERS: usize = 60;
const OPT_CHECKSUM: usize = 64;
/// Where `NumberOfRvaAndSizes` sits, and the data directories after it, for (PE32, PE32+).
const OPT_NUMBER_OF_DIRECTORIES: (usize, usize) = (92, 108);
/// The certificate table's index among the data directories.
const SECURITY_DIRECTORY: u32 = 4;

const IMAGE_FILE_LOCAL_SYMS_STRIPPED: u16 = 0x0008;
const IMAGE_SCN_CNT_CODE: u32 = 0x0000_0020;
const IMAGE_SCN_CNT_INITIALIZED_DATA: u32 = 0x0000_0040;
const IMAGE_SCN_MEM_READ: u32 = 0x4000_0000;

/// The PE specification's bound for `FileAlignment`; it also bounds the padding we write.
const MAX_FILE_ALIGNMENT: u32 = 64 * 1024;

/// The sections of a unified kernel image. They are appended as `.osrel`, `.cmdline`,
/// `.initrd`, `.linux` (ukify's order, the kernel last).
pub(crate) struct UkiParts<'a> {
    /// os-release text, section `.osrel`.
    pub(crate) osrel: &'a [u8],
    /// The kernel command line, section `.cmdline`.
    pub(crate) cmdline: &'a [u8],
    /// The kernel (a bzImage, or an arm64 `Image` with its EFI stub), section `.linux`.
    pub(crate) linux: &'a [u8],
    /// The initrd, section `.initrd`.
    pub(crate) initrd: &'a [u8],
}

/// `stub` (systemd's EFI stub, e.g. `/usr/lib/systemd/boot/efi/linuxx64.efi.stub` from Debian's
/// `systemd-boot-efi`, or `linuxaa64.efi.stub`) with the parts appended as new PE sections.
///
/// Errors (a sentence saying what is wrong with the stub or the parts, e.g. "not a PE image",
/// "no room for 4 more section headers") never panic, whatever bytes `stub` holds.
pub(crate) fn build_uki(stub: &[u8], parts: &UkiParts<'_>) -> Result<Vec<u8>, String> {
    if parts.linux.is_empty() {
        return Err("the kernel is empty: a unified kernel image needs a .linux section".into());
    }
    let new: Vec<(&[u8; 8], &[u8], u32)> = [
        (b".osrel\0\0", parts.osrel, DATA),
        (b".cmdline", parts.cmdline, DATA),
        (b".initrd\0", parts.initrd, DATA),
        (b".linux\0\0", parts.linux, CODE),
    ]
    .into_iter()
    .filter(|(_, data, _)| !data.is_empty())
    .collect();

    let pe = Pe::parse(stub)?;
    for section in &pe.sections {
        if let Some((name, _, _)) = new.iter().find(|(name, _, _)| **name == section.name) {
            return Err(format!(
                "the stub already has a {} section (is it a unified kernel image already?): \
                 use systemd's plain EFI stub",
                shown(*name)
            ));
        }
    }

    // Room for the new headers: below SizeOfHeaders and the first section's data, and free.
    let table_end = pe.table_end();
    let headers_end = table_end + SECTION_HEADER_LEN * new.len();
    let first_data = pe
        .sections
        .iter()
        .filter(|s| s.raw_size != 0)
        .map(|s| s.raw_pointer as usize)
        .min();
    let limit = (pe.size_of_headers as usize).min(first_data.unwrap_or(usize::MAX));
    if headers_end > limit {
        let why = match first_data {
            Some(at) if at < pe.size_of_headers as usize => {
                format!("the first section's data starts at {at:#x}")
            }
            _ => format!("SizeOfHeaders is {:#x}", pe.size_of_headers),
        };
        return Err(format!(
            "no room for {} more section headers in the stub: its section table ends at \
             {table_end:#x}, the new headers would end at {headers_end:#x}, and {why}",
            new.len(),
        ));
    }
    // What lies between the section table and the first section's data belongs to no section:
    // alignment fill (zeros, or the NOPs gnu-efi's arm64 stubs pad their headers with up to
    // the entry point). The new headers overwrite it, as ukify's do.
    if stub.get(table_end..headers_end).is_none() {
        return Err(internal("the header space after the section table"));
    }

    // A symbol table that ends the file goes, as ukify strips it; anything else stays put.
    let mut kept = stub.len();
    let stripped_symbols = match pe.symbol_table_len(stub) {
        Some(len) if pe.symbol_table as u64 + len == stub.len() as u64 => {
            kept = pe.symbol_table as usize;
            true
        }
        _ => false,
    };

    let file_alignment = u64::from(pe.file_alignment);
    let section_alignment = u64::from(pe.section_alignment);
    let mut mapped_end = pe
        .sections
        .iter()
        .map(Section::mapped_end)
        .fold(u64::from(pe.size_of_headers), u64::max);
    let payload: u64 = new
        .iter()
        .map(|(_, data, _)| data.len() as u64 + file_alignment)
        .sum();
    let capacity = usize::try_from(kept as u64 + payload).map_err(|_| too_big())?;
    let mut out = Vec::with_capacity(capacity);
    out.extend_from_slice(stub.get(..kept).unwrap_or(stub));

    let mut headers = Vec::with_capacity(new.len());
    let mut added_data: u64 = 0;
    for (name, data, characteristics) in &new {
        let raw_pointer = round_up(out.len() as u64, file_alignment).ok_or_else(too_big)?;
        let raw_size = round_up(data.len() as u64, file_alignment).ok_or_else(too_big)?;
        let address = round_up(mapped_end, section_alignment).ok_or_else(too_big)?;
        let section = Section {
            name: **name,
            virtual_size: u32_or_too_big(data.len() as u64)?,
            address: u32_or_too_big(address)?,
            raw_size: u32_or_too_big(raw_size)?,
            raw_pointer: u32_or_too_big(raw_pointer)?,
            characteristics: *characteristics,
        };
        // The data's end must be addressable by the next header too.
        u32_or_too_big(raw_pointer + raw_size)?;
        out.resize(raw_pointer as usize, 0);
        out.extend_from_slice(data);
        out.resize((raw_pointer + raw_size) as usize, 0);
        mapped_end = section.mapped_end();
        added_data += raw_size;
        headers.push(section);
    }

    for (i, section) in headers.iter().enumerate() {
        let at = table_end + i * SECTION_HEADER_LEN;
        let slot = out
            .get_mut(at..at + SECTION_HEADER_LEN)
            .ok_or_else(|| internal("section header"))?;
        slot.copy_from_slice(&section.encode());
    }
    let sections = u16::try_from(pe.sections.len() + headers.len())
        .map_err(|_| "the stub has too many sections to add more".to_string())?;
    put_u16(&mut out, pe.coff + 2, sections)?;
    if stripped_symbols {
        put_u32(&mut out, pe.coff + 8, 0)?;
        put_u32(&mut out, pe.coff + 12, 0)?;
        put_u16(
            &mut out,
            pe.coff + 18,
            pe.characteristics | IMAGE_FILE_LOCAL_SYMS_STRIPPED,
        )?;
    }
    let size_of_image = round_up(mapped_end, section_alignment)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(too_big)?;
    put_u32(&mut out, pe.opt + OPT_SIZE_OF_IMAGE, size_of_image)?;
    let initialized = u64::from(pe.size_of_initialized_data) + added_data;
    put_u32(
        &mut out,
        pe.opt + OPT_SIZE_OF_INITIALIZED_DATA,
        u32_or_too_big(initialized)?,
    )?;
    put_u32(&mut out, pe.opt + OPT_CHECKSUM, 0)?;
    let sum = pe_checksum(&out);
    put_u32(&mut out, pe.opt + OPT_CHECKSUM, sum)?;
    Ok(out)
}

const DATA: u32 = IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ;
const CODE: u32 = IMAGE_SCN_CNT_CODE | IMAGE_SCN_MEM_READ;

/// The PE image checksum (as `CheckSumMappedFile` computes it): the one's-complement-style sum of
/// the file's little-endian 16-bit words, carries folded back in, plus the file's length. The
/// `CheckSum` field must hold 0 while summing. A 32-bit result: longer files wrap, as in the
/// reference algorithm.
pub(crate) fn pe_checksum(file: &[u8]) -> u32 {
    let mut sum: u32 = 0;
    let mut words = file.chunks_exact(2);
    for word in &mut words {
        sum += u32::from(u16::from_le_bytes([word[0], word[1]]));
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last);
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum.wrapping_add(file.len() as u32)
}

/// Where UEFI firmware looks for a boot program of `stub`'s architecture on removable media:
/// `EFI/BOOT/BOOTX64.EFI` or `EFI/BOOT/BOOTAA64.EFI`. An error when `stub` is not a PE image
/// (checked as [`build_uki`] reads it) for x86-64 or arm64.
pub(crate) fn removable_media_path(stub: &[u8]) -> Result<&'static str, String> {
    let pe = Pe::parse(stub)?;
    match u16_at(stub, pe.coff) {
        Some(0x8664) => Ok("EFI/BOOT/BOOTX64.EFI"),
        Some(0xaa64) => Ok("EFI/BOOT/BOOTAA64.EFI"),
        Some(m) => Err(format!(
            "it is for machine type {m:#06x}; oxkit boots amd64 (0x8664) and arm64 (0xaa64)"
        )),
        None => Err("the PE image is truncated: its COFF header is cut off".into()),
    }
}

/// What `build_uki` needs of the stub's headers, every offset checked against its length.
struct Pe {
    /// File offset of the COFF file header.
    coff: usize,
    /// File offset of the optional header.
    opt: usize,
    /// File offset of the section table.
    section_table: usize,
    characteristics: u16,
    symbol_table: u32,
    symbols: u32,
    section_alignment: u32,
    file_alignment: u32,
    size_of_headers: u32,
    size_of_initialized_data: u32,
    sections: Vec<Section>,
}

impl Pe {
    fn parse(stub: &[u8]) -> Result<Pe, String> {
        if stub.get(..2) != Some(b"MZ") {
            return Err(format!(
                "not a PE image: it does not start with \"MZ\" ({} bytes)",
                stub.len()
            ));
        }
        let lfanew = u32_at(stub, 0x3c)
            .ok_or("not a PE image: the DOS header is truncated (no e_lfanew at 0x3c)")?
            as usize;
        if stub.get(lfanew..lfanew.saturating_add(4)) != Some(b"PE\0\0") {
            return Err(format!(
                "not a PE image: no \"PE\\0\\0\" signature at e_lfanew {lfanew:#x} (the file has {:#x} bytes)",
                stub.len()
            ));
        }
        let coff = lfanew + 4;
        let truncated =
            || format!("the PE image is truncated: its COFF header at {coff:#x} is cut off");
        let count = u16_at(stub, coff + 2).ok_or_else(truncated)?;
        let symbol_table = u32_at(stub, coff + 8).ok_or_else(truncated)?;
        let symbols = u32_at(stub, coff + 12).ok_or_else(truncated)?;
        let optional_len = u16_at(stub, coff + 16).ok_or_else(truncated)? as usize;
        let characteristics = u16_at(stub, coff + 18).ok_or_else(truncated)?;

        let opt = coff + COFF_HEADER_LEN;
        let optional = stub
            .get(opt..opt + optional_len)
            .ok_or_else(|| format!("the PE image is truncated: its optional header ({optional_len} bytes at {opt:#x}) is cut off"))?;
        let magic = u16_at(optional, 0).ok_or("the PE image has no optional header")?;
        let directories_at = match magic {
            PE32_MAGIC => OPT_NUMBER_OF_DIRECTORIES.0,
            PE32_PLUS_MAGIC => OPT_NUMBER_OF_DIRECTORIES.1,
            other => {
                return Err(format!(
                    "the PE optional header has magic {other:#x}, neither PE32 (0x10b) nor PE32+ (0x20b)"
                ));
            }
        };
        let short =
            || format!("the PE optional header is too short ({optional_len} bytes) for its fields");
        let directories = u32_at(optional, directories_at).ok_or_else(short)?;
        let directories_end = u64::from(directories) * 8 + directories_at as u64 + 4;
        if directories_end > optional_len as u64 {
            return Err(format!(
                "the PE optional header ({optional_len} bytes) cannot hold the {directories} data directories it declares"
            ));
        }
        if directories > SECURITY_DIRECTORY {
            let at = directories_at + 4 + 8 * SECURITY_DIRECTORY as usize;
            let (offset, size) = (u32_at(optional, at), u32_at(optional, at + 4));
            if offset.ok_or_else(short)? != 0 || size.ok_or_else(short)? != 0 {
                return Err("the stub is signed (it has a certificate table): adding sections would \
                            break the signature; use the unsigned stub and sign the whole image instead"
                    .into());
            }
        }
        let field = |at: usize| u32_at(optional, at).ok_or_else(short);
        let size_of_initialized_data = field(OPT_SIZE_OF_INITIALIZED_DATA)?;
        let section_alignment = field(OPT_SECTION_ALIGNMENT)?;
        let file_alignment = field(OPT_FILE_ALIGNMENT)?;
        let size_of_headers = field(OPT_SIZE_OF_HEADERS)?;
        if !file_alignment.is_power_of_two() || file_alignment > MAX_FILE_ALIGNMENT {
            return Err(format!(
                "the PE FileAlignment {file_alignment:#x} is not a power of two up to 64 KiB"
            ));
        }
        if !section_alignment.is_power_of_two() || section_alignment < file_alignment {
            return Err(format!(
                "the PE SectionAlignment {section_alignment:#x} is not a power of two at least \
                 FileAlignment {file_alignment:#x}"
            ));
        }
        if size_of_headers as usize > stub.len() {
            return Err(format!(
                "the PE image is truncated: SizeOfHeaders {size_of_headers:#x} is past its end ({:#x})",
                stub.len()
            ));
        }

        let section_table = opt + optional_len;
        let table = stub
            .get(section_table..section_table + SECTION_HEADER_LEN * usize::from(count))
            .ok_or_else(|| {
                format!(
                    "the PE section table ({count} sections at {section_table:#x}) runs past the end \
                     of the file ({:#x} bytes)",
                    stub.len()
                )
            })?;
        let mut sections = Vec::with_capacity(usize::from(count));
        for header in table.chunks_exact(SECTION_HEADER_LEN) {
            let section = Section::decode(header).ok_or_else(|| internal("section table"))?;
            let end = u64::from(section.raw_pointer) + u64::from(section.raw_size);
            if section.raw_size != 0 && end > stub.len() as u64 {
                return Err(format!(
                    "the PE image is truncated: section {}'s data ({:#x}..{end:#x}) runs past its end ({:#x})",
                    shown(&section.name),
                    section.raw_pointer,
                    stub.len()
                ));
            }
            sections.push(section);
        }
        Ok(Pe {
            coff,
            opt,
            section_table,
            characteristics,
            symbol_table,
            symbols,
            section_alignment,
            file_alignment,
            size_of_headers,
            size_of_initialized_data,
            sections,
        })
    }

    /// Where the section table ends (and new section headers would start).
    fn table_end(&self) -> usize {
        self.section_table + SECTION_HEADER_LEN * self.sections.len()
    }

    /// The length of the COFF symbol table and the string table after it, if the header points
    /// at one that lies after every section's data.
    fn symbol_table_len(&self, stub: &[u8]) -> Option<u64> {
        let at = u64::from(self.symbol_table);
        let data_end = self
            .sections
            .iter()
            .map(|s| u64::from(s.raw_pointer) + u64::from(s.raw_size))
            .fold(
                u64::from(self.size_of_headers).max(self.table_end() as u64),
                u64::max,
            );
        if at == 0 || at < data_end {
            return None;
        }
        let symbols = u64::from(self.symbols) * COFF_SYMBOL_LEN;
        // The string table's length field counts itself; a missing one means no strings.
        let strings = usize::try_from(at + symbols)
            .ok()
            .and_then(|offset| u32_at(stub, offset))
            .map_or(0, u64::from);
        Some(symbols + strings)
    }
}

/// One section header, as far as placement goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Section {
    name: [u8; 8],
    virtual_size: u32,
    address: u32,
    raw_size: u32,
    raw_pointer: u32,
    characteristics: u32,
}

impl Section {
    fn decode(header: &[u8]) -> Option<Section> {
        Some(Section {
            name: header.get(..8)?.try_into().ok()?,
            virtual_size: u32_at(header, 8)?,
            address: u32_at(header, 12)?,
            raw_size: u32_at(header, 16)?,
            raw_pointer: u32_at(header, 20)?,
            characteristics: u32_at(header, 36)?,
        })
    }

    /// The header's 40 bytes; relocations and line numbers are none.
    fn encode(&self) -> [u8; SECTION_HEADER_LEN] {
        let mut header = [0; SECTION_HEADER_LEN];
        header[..8].copy_from_slice(&self.name);
        header[8..12].copy_from_slice(&self.virtual_size.to_le_bytes());
        header[12..16].copy_from_slice(&self.address.to_le_bytes());
        header[16..20].copy_from_slice(&self.raw_size.to_le_bytes());
        header[20..24].copy_from_slice(&self.raw_pointer.to_le_bytes());
        header[36..40].copy_from_slice(&self.characteristics.to_le_bytes());
        header
    }

    /// The end of what the section occupies in memory: the loader maps the larger of its
    /// virtual and raw sizes' worth of address space in practice.
    fn mapped_end(&self) -> u64 {
        u64::from(self.address) + u64::from(self.virtual_size.max(self.raw_size))
    }
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn put_u16(bytes: &mut [u8], at: usize, value: u16) -> Result<(), String> {
    bytes
        .get_mut(at..at + 2)
        .ok_or_else(|| internal("a header field"))?
        .copy_from_slice(&value.to_le_bytes());
    Ok(())
}

fn put_u32(bytes: &mut [u8], at: usize, value: u32) -> Result<(), String> {
    bytes
        .get_mut(at..at + 4)
        .ok_or_else(|| internal("a header field"))?
        .copy_from_slice(&value.to_le_bytes());
    Ok(())
}

/// `value` rounded up to a multiple of `alignment` (a power of two), if that fits in 32 bits.
fn round_up(value: u64, alignment: u64) -> Option<u64> {
    let rounded = value.checked_add(alignment - 1)? & !(alignment - 1);
    (rounded <= u64::from(u32::MAX)).then_some(rounded)
}

fn u32_or_too_big(value: u64) -> Result<u32, String> {
    u32::try_from(value).map_err(|_| too_big())
}

fn too_big() -> String {
    "the unified kernel image would be 4 GiB or larger, more than a PE image can address \
     (is the initrd that large?)"
        .into()
}

fn internal(what: &str) -> String {
    format!("internal error: {what} lies outside the image being written")
}

fn shown(name: &[u8]) -> String {
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    String::from_utf8_lossy(&name[..end]).into_owned()
}

#[cfg(test)]
#[path = "uki/tests.rs"]
mod tests;
