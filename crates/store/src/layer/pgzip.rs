//! Parallel, deterministic gzip (the pigz scheme): the input is cut into fixed-size blocks,
//! each deflated on its own (primed with the previous block's last 32 KiB as dictionary)
//! and ended with a sync flush; the stream closes with an empty final block and the
//! CRC-32/length trailer. One valid gzip member, readable by any gunzip.
//!
//! The bytes depend only on the input, the block size and the level, never on the number
//! of threads or their timing, so layer digests stay reproducible. Changing `BLOCK_SIZE`,
//! `DICT_SIZE` or the level changes every gzip layer digest: don't.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, Crc, FlushCompress};

/// Uncompressed bytes per block.
const BLOCK_SIZE: usize = 1 << 20;
/// Deflate's window: how much of the previous block primes the next.
const DICT_SIZE: usize = 32 * 1024;
/// A fixed gzip header: no name, mtime 0, no extra flags, OS "unknown" (as Go writes).
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
/// An empty final fixed-Huffman block: what deflate emits for `Z_FINISH` with no input.
const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

struct Job {
    seq: u64,
    dict: Vec<u8>,
    data: Vec<u8>,
}

struct Done {
    seq: u64,
    out: io::Result<Vec<u8>>,
    crc: Crc,
    len: usize,
}

/// Deflates one block: raw deflate, primed with `dict`, ending in a sync flush.
fn deflate_block(level: u32, dict: &[u8], data: &[u8]) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(Compression::new(level), false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let mut out = Vec::with_capacity(data.len() / 2 + 4096);
    let mut input = data;
    loop {
        if out.capacity() - out.len() < 4096 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let before = c.total_in();
        c.compress_vec(input, &mut out, FlushCompress::Sync)
            .map_err(io::Error::other)?;
        let used = usize::try_from(c.total_in() - before).map_err(io::Error::other)?;
        input = &input[used..];
        // Done when all input is in and the flush did not fill the output buffer.
        if input.is_empty() && out.len() < out.capacity() {
            return Ok(out);
        }
    }
}

fn compress_job(level: u32, job: Job) -> Done {
    let mut crc = Crc::new();
    crc.update(&job.data);
    Done {
        seq: job.seq,
        out: deflate_block(level, &job.dict, &job.data),
        crc,
        len: job.data.len(),
    }
}

/// The worker pool, started when a second block shows up (small layers never pay for
/// threads; the bytes are the same either way).
struct Pool<W> {
    jobs: Option<SyncSender<Job>>,
    tokens: Receiver<()>,
    workers: Vec<JoinHandle<()>>,
    writer: JoinHandle<io::Result<(W, Crc, u64)>>,
}

/// A `Write` that gzips into `W` on several threads.
pub struct ParallelGzip<W: Write + Send + 'static> {
    level: u32,
    threads: usize,
    block: Vec<u8>,
    dict: Vec<u8>,
    seq: u64,
    /// The first block, held back until we know whether a pool is worth starting.
    first: Option<Job>,
    out: Option<W>,
    pool: Option<Pool<W>>,
}

impl<W: Write + Send + 'static> ParallelGzip<W> {
    pub fn new(out: W, level: u32) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 8));
        Self::with_threads(out, level, threads)
    }

    /// As [`Self::new`] with a given pool size (the output does not depend on it).
    pub fn with_threads(out: W, level: u32, threads: usize) -> Self {
        Self {
            level,
            threads: threads.max(1),
            block: Vec::with_capacity(BLOCK_SIZE),
            dict: Vec::new(),
            seq: 0,
            first: None,
            out: Some(out),
            pool: None,
        }
    }

    fn start_pool(&mut self) -> io::Result<()> {
        let Some(out) = self.out.take() else {
            return Err(io::Error::other("gzip stream already finished"));
        };
        let threads = self.threads;
        // At most this many blocks are in memory at once (queued, compressing, or waiting
        // to be written in order): bounded memory whatever the speeds.
        let in_flight = 2 * threads + 2;
        let (job_tx, job_rx) = sync_channel::<Job>(in_flight);
        let (done_tx, done_rx) = channel::<Done>();
        let (token_tx, token_rx) = sync_channel::<()>(in_flight);
        for _ in 0..in_flight {
            token_tx.send(()).map_err(io::Error::other)?;
        }
        let job_rx = Arc::new(Mutex::new(job_rx));
        let level = self.level;
        let mut workers = Vec::with_capacity(threads);
        for _ in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            workers.push(std::thread::spawn(move || {
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    if done_tx.send(compress_job(level, job)).is_err() {
                        return;
                    }
                }
            }));
        }
        drop(done_tx);
        let writer = std::thread::spawn(move || write_in_order(out, &done_rx, &token_tx));
        self.pool = Some(Pool {
            jobs: Some(job_tx),
            tokens: token_rx,
            workers,
            writer,
        });
        Ok(())
    }

    fn submit(&mut self, job: Job) -> io::Result<()> {
        if self.pool.is_none() {
            if self.first.is_none() {
                self.first = Some(job);
                return Ok(());
            }
            self.start_pool()?;
        }
        let first = self.first.take();
        let Some(pool) = &self.pool else {
            return Err(io::Error::other("gzip pool missing"));
        };
        for job in first.into_iter().chain(std::iter::once(job)) {
            // A missing token means the writer stopped: its error is reported by finish().
            pool.tokens.recv().map_err(|_| writer_gone())?;
            let jobs = pool.jobs.as_ref().ok_or_else(writer_gone)?;
            jobs.send(job).map_err(|_| writer_gone())?;
        }
        Ok(())
    }

    fn cut_block(&mut self) -> io::Result<()> {
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK_SIZE));
        let dict = std::mem::take(&mut self.dict);
        self.dict = data[data.len().saturating_sub(DICT_SIZE)..].to_vec();
        let seq = self.seq;
        self.seq += 1;
        self.submit(Job { seq, dict, data })
    }

    /// Compresses what is left, writes the trailer and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.block.is_empty() {
            self.cut_block()?;
        }
        match self.pool.take() {
            None => {
                let mut out = self
                    .out
                    .take()
                    .ok_or_else(|| io::Error::other("gzip stream already finished"))?;
                out.write_all(&HEADER)?;
                let mut crc = Crc::new();
                let mut len = 0u64;
                if let Some(job) = self.first.take() {
                    let done = compress_job(self.level, job);
                    out.write_all(&done.out?)?;
                    crc.combine(&done.crc);
                    len += done.len as u64;
                }
                write_trailer(&mut out, &crc, len)?;
                Ok(out)
            }
            Some(mut pool) => {
                drop(pool.jobs.take());
                for w in pool.workers {
                    let _ = w.join();
                }
                let (mut out, crc, len) = pool
                    .writer
                    .join()
                    .map_err(|_| io::Error::other("gzip writer thread panicked"))??;
                write_trailer(&mut out, &crc, len)?;
                Ok(out)
            }
        }
    }
}

fn writer_gone() -> io::Error {
    io::Error::other("the gzip writer stopped (see the error from finishing the layer)")
}

fn write_trailer<W: Write>(out: &mut W, crc: &Crc, len: u64) -> io::Result<()> {
    out.write_all(&FINAL_BLOCK)?;
    out.write_all(&crc.sum().to_le_bytes())?;
    // ISIZE is the length modulo 2^32 (RFC 1952).
    out.write_all(&((len & 0xffff_ffff) as u32).to_le_bytes())?;
    out.flush()
}

/// Receives compressed blocks in any order and writes them in sequence.
fn write_in_order<W: Write>(
    mut out: W,
    done: &Receiver<Done>,
    tokens: &SyncSender<()>,
) -> io::Result<(W, Crc, u64)> {
    out.write_all(&HEADER)?;
    let mut pending = BTreeMap::new();
    let mut next = 0u64;
    let mut crc = Crc::new();
    let mut len = 0u64;
    while let Ok(d) = done.recv() {
        pending.insert(d.seq, d);
        while let Some(d) = pending.remove(&next) {
            out.write_all(&d.out?)?;
            crc.combine(&d.crc);
            len += d.len as u64;
            next += 1;
            let _ = tokens.send(());
        }
    }
    if !pending.is_empty() {
        return Err(io::Error::other(
            "a gzip block went missing (worker thread died)",
        ));
    }
    Ok((out, crc, len))
}

impl<W: Write + Send + 'static> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = BLOCK_SIZE - self.block.len();
        let n = buf.len().min(room);
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == BLOCK_SIZE {
            self.cut_block()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Blocks are cut at fixed sizes only: flushing early would change the bytes.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn data(n: usize) -> Vec<u8> {
        // Compressible but not trivial: text-like with a slowly changing pattern.
        (0..n)
            .map(|i| b"abcdefghij klmnop\n"[(i * 7 + i / 1000) % 18] ^ ((i / 5000) as u8 & 1))
            .collect()
    }

    fn gz(input: &[u8], chunk: usize) -> Vec<u8> {
        let mut w = ParallelGzip::new(Vec::new(), 6);
        for c in input.chunks(chunk.max(1)) {
            w.write_all(c).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn output_is_valid_gzip_for_all_sizes() {
        for n in [
            0,
            1,
            100,
            BLOCK_SIZE - 1,
            BLOCK_SIZE,
            BLOCK_SIZE + 1,
            3 * BLOCK_SIZE + 12_345,
        ] {
            let input = data(n);
            let out = gz(&input, 100_000);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&out[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, input, "{n} bytes");
            // A standard single-member reader agrees too.
            let mut back = Vec::new();
            flate2::read::MultiGzDecoder::new(&out[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back.len(), n);
        }
    }

    #[test]
    fn output_does_not_depend_on_write_sizes() {
        let input = data(2 * BLOCK_SIZE + 999);
        let a = gz(&input, 1);
        let b = gz(&input, 4096);
        let c = gz(&input, input.len());
        assert!(a == b && b == c);
        // And the compression is real.
        assert!(a.len() < input.len() / 4, "{} vs {}", a.len(), input.len());
    }

    #[test]
    fn output_does_not_depend_on_the_number_of_threads() {
        let input = data(5 * BLOCK_SIZE + 4321);
        let run = |threads| {
            let mut w = ParallelGzip::with_threads(Vec::new(), 6, threads);
            w.write_all(&input).unwrap();
            w.finish().unwrap()
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(7));
    }

    #[test]
    fn single_block_inline_equals_pooled_encoding_of_that_block() {
        // The inline path (no pool) and the pooled path produce the same framing.
        let input = data(1000);
        let inline = gz(&input, 1000);
        let mut crc = Crc::new();
        crc.update(&input);
        let mut want = HEADER.to_vec();
        want.extend(deflate_block(6, &[], &input).unwrap());
        write_trailer(&mut want, &crc, input.len() as u64).unwrap();
        assert_eq!(inline, want);
    }
}
