//! qcow2 disk images (`qcow2-efi`): a raw disk image rewritten in QEMU's copy-on-write format,
//! version 3 (QEMU's `compat=1.1`, the default since QEMU 1.7), 64 KiB clusters, 16-bit
//! reference counts, no backing file, no compression, no snapshots. Only the clusters of the
//! raw disk that hold a non-zero byte are stored; every other cluster is left unallocated and
//! reads as zeros. `qemu-img compare` finds the result identical to the raw disk.
//!
//! Layout, in clusters: the header; the refcount table; the refcount blocks; the L1 table; the
//! L2 tables in guest order; the data clusters in guest order. Every cluster is referenced
//! once, so each has a reference count of 1 and its L1/L2 entry carries the `COPIED` flag, as
//! QEMU's own consistency check expects. The output depends on the raw bytes alone.
//!
//! The raw disk is read twice: once to find the non-zero clusters (which fixes the layout;
//! holes in a sparse file are skipped, not read), once to copy them. This module writes one
//! stream and does nothing else.

use std::fs::File;
use std::io::{self, Write};

const MAGIC: &[u8; 4] = b"QFI\xfb";
const VERSION: u32 = 3;
/// 64 KiB clusters: QEMU's default.
const CLUSTER_BITS: u32 = 16;
/// 16-bit reference counts (`refcount_bits=16`), QEMU's default.
const REFCOUNT_ORDER: u32 = 4;
/// The version 3 header without optional fields (QEMU accepts 104 bytes; newer versions
/// write 112 to add the compression type, which is optional and zlib when absent).
const HEADER_LENGTH: u32 = 104;
/// Set on an L1 or L2 entry whose cluster has a reference count of exactly 1.
const COPIED: u64 = 1 << 63;

/// Where each part goes, in clusters, for a disk whose non-zero clusters are `data` (guest
/// cluster indices, ascending).
#[derive(Debug, PartialEq, Eq)]
struct Layout {
    cluster_bits: u32,
    virtual_size: u64,
    refcount_table: u64,
    refcount_table_clusters: u64,
    refcount_blocks: u64,
    l1_table: u64,
    l1_entries: u64,
    l1_clusters: u64,
    /// First L2 table; one follows another, one per L1 entry that maps any data.
    l2_tables: u64,
    /// The L1 indices that have an L2 table, ascending.
    l2_for: Vec<u64>,
    /// First data cluster; `data[i]` is stored at `first_data + i`.
    first_data: u64,
    data: Vec<u64>,
}

impl Layout {
    fn new(cluster_bits: u32, virtual_size: u64, data: Vec<u64>) -> Self {
        let cs = 1u64 << cluster_bits;
        let l2_entries = cs / 8;
        let refcounts_per_block = cs * 8 / (1 << REFCOUNT_ORDER);
        let guest_clusters = virtual_size.div_ceil(cs);
        let l1_entries = guest_clusters.div_ceil(l2_entries).max(1);
        let l1_clusters = (l1_entries * 8).div_ceil(cs);
        let mut l2_for: Vec<u64> = data.iter().map(|c| c / l2_entries).collect();
        l2_for.dedup();
        let fixed = 1 + l1_clusters + l2_for.len() as u64 + data.len() as u64;
        // The refcount structures count themselves: grow them until they cover everything.
        let (mut blocks, mut table) = (1u64, 1u64);
        loop {
            let total = fixed + blocks + table;
            let need_blocks = total.div_ceil(refcounts_per_block);
            let need_table = (need_blocks * 8).div_ceil(cs);
            if need_blocks <= blocks && need_table <= table {
                break;
            }
            blocks = blocks.max(need_blocks);
            table = table.max(need_table);
        }
        let refcount_table = 1;
        let l1_table = refcount_table + table + blocks;
        let l2_tables = l1_table + l1_clusters;
        Layout {
            cluster_bits,
            virtual_size,
            refcount_table,
            refcount_table_clusters: table,
            refcount_blocks: blocks,
            l1_table,
            l1_entries,
            l1_clusters,
            first_data: l2_tables + l2_for.len() as u64,
            l2_tables,
            l2_for,
            data,
        }
    }

    fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    fn total_clusters(&self) -> u64 {
        self.first_data + self.data.len() as u64
    }

    fn header(&self) -> Vec<u8> {
        let cs = self.cluster_size();
        let mut h = Vec::with_capacity(cs as usize);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&VERSION.to_be_bytes());
        h.extend_from_slice(&0u64.to_be_bytes()); // backing file offset
        h.extend_from_slice(&0u32.to_be_bytes()); // backing file name length
        h.extend_from_slice(&self.cluster_bits.to_be_bytes());
        h.extend_from_slice(&self.virtual_size.to_be_bytes());
        h.extend_from_slice(&0u32.to_be_bytes()); // no encryption
        h.extend_from_slice(&(self.l1_entries as u32).to_be_bytes());
        h.extend_from_slice(&(self.l1_table * cs).to_be_bytes());
        h.extend_from_slice(&(self.refcount_table * cs).to_be_bytes());
        h.extend_from_slice(&(self.refcount_table_clusters as u32).to_be_bytes());
        h.extend_from_slice(&0u32.to_be_bytes()); // no snapshots
        h.extend_from_slice(&0u64.to_be_bytes()); // snapshot table offset
        h.extend_from_slice(&0u64.to_be_bytes()); // incompatible features
        h.extend_from_slice(&0u64.to_be_bytes()); // compatible features
        h.extend_from_slice(&0u64.to_be_bytes()); // autoclear features
        h.extend_from_slice(&REFCOUNT_ORDER.to_be_bytes());
        h.extend_from_slice(&HEADER_LENGTH.to_be_bytes());
        debug_assert_eq!(h.len(), HEADER_LENGTH as usize);
        // The header extension area ends at once (an end marker: type 0, length 0); the
        // zeros that pad the cluster are that marker.
        h.resize(cs as usize, 0);
        h
    }

    /// The refcount table and blocks: every cluster of the file counted once.
    fn refcounts(&self) -> Vec<u8> {
        let cs = self.cluster_size();
        let mut out =
            vec![0u8; ((self.refcount_table_clusters + self.refcount_blocks) * cs) as usize];
        let first_block = self.refcount_table + self.refcount_table_clusters;
        for b in 0..self.refcount_blocks {
            let at = (b * 8) as usize;
            out[at..at + 8].copy_from_slice(&((first_block + b) * cs).to_be_bytes());
        }
        let blocks_at = (self.refcount_table_clusters * cs) as usize;
        for c in 0..self.total_clusters() {
            let at = blocks_at + (c * 2) as usize;
            out[at..at + 2].copy_from_slice(&1u16.to_be_bytes());
        }
        out
    }

    fn l1(&self) -> Vec<u8> {
        let cs = self.cluster_size();
        let mut out = vec![0u8; (self.l1_clusters * cs) as usize];
        for (n, &i) in self.l2_for.iter().enumerate() {
            let at = (i * 8) as usize;
            let l2 = (self.l2_tables + n as u64) * cs;
            out[at..at + 8].copy_from_slice(&(l2 | COPIED).to_be_bytes());
        }
        out
    }

    fn l2s(&self) -> Vec<u8> {
        let cs = self.cluster_size();
        let l2_entries = cs / 8;
        let mut out = vec![0u8; (self.l2_for.len() as u64 * cs) as usize];
        for (n, &guest) in self.data.iter().enumerate() {
            let table =
                self.l2_for
                    .binary_search(&(guest / l2_entries))
                    .expect("every data cluster's L1 index has an L2 table") as u64;
            let at = (table * cs + (guest % l2_entries) * 8) as usize;
            let host = (self.first_data + n as u64) * cs;
            out[at..at + 8].copy_from_slice(&(host | COPIED).to_be_bytes());
        }
        out
    }
}

/// Writes the first `len` bytes of `raw` (a disk image; `len` is its virtual size) to `out` as
/// a qcow2 image. Returns the bytes written.
pub(crate) fn write_qcow2(raw: &File, len: u64, out: &mut impl Write) -> io::Result<u64> {
    write_qcow2_with(raw, len, out, CLUSTER_BITS)
}

fn write_qcow2_with(
    raw: &File,
    len: u64,
    out: &mut impl Write,
    cluster_bits: u32,
) -> io::Result<u64> {
    if raw.metadata()?.len() < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the raw disk is shorter than its size",
        ));
    }
    let layout = Layout::new(
        cluster_bits,
        len,
        crate::rawdisk::nonzero_chunks(raw, len, cluster_bits)?,
    );
    let cs = layout.cluster_size();
    out.write_all(&layout.header())?;
    out.write_all(&layout.refcounts())?;
    out.write_all(&layout.l1())?;
    out.write_all(&layout.l2s())?;
    crate::rawdisk::write_chunks(raw, len, cluster_bits, &layout.data, &[], out)?;
    Ok(layout.total_clusters() * cs)
}

#[cfg(test)]
#[path = "qcow2/tests.rs"]
mod tests;
