//! A `Write` that hands its bytes to another thread, so a CPU-heavy sink (the zstd encoder)
//! runs in parallel with the thread producing the stream (reading files, building the tar,
//! hashing the diff id). The bytes reach the sink unchanged and in order, so the output is
//! exactly what a single thread would write.

use std::io::{self, Write};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

const CHUNK: usize = 1 << 20;
/// Chunks queued at most (bounds memory to a few MiB).
const QUEUE: usize = 4;

pub(crate) struct Offload<W: Write + Send + 'static> {
    buf: Vec<u8>,
    tx: Option<SyncSender<Vec<u8>>>,
    worker: Option<JoinHandle<io::Result<W>>>,
}

impl<W: Write + Send + 'static> Offload<W> {
    pub(crate) fn new(mut sink: W) -> Self {
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
        let worker = std::thread::spawn(move || {
            while let Ok(chunk) = rx.recv() {
                sink.write_all(&chunk)?;
            }
            Ok(sink)
        });
        Self {
            buf: Vec::with_capacity(CHUNK),
            tx: Some(tx),
            worker: Some(worker),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| io::Error::other("stream already finished"))?;
        // A closed channel means the sink failed; finish() reports its error.
        tx.send(chunk)
            .map_err(|_| io::Error::other("the compressor thread stopped"))
    }

    /// Sends what is buffered, waits for the sink and returns it.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        let sent = if self.buf.is_empty() {
            Ok(())
        } else {
            self.send()
        };
        drop(self.tx.take());
        let worker = self
            .worker
            .take()
            .ok_or_else(|| io::Error::other("stream already finished"))?;
        let sink = worker
            .join()
            .map_err(|_| io::Error::other("the compressor thread panicked"))?;
        let sink = sink?;
        sent?;
        Ok(sink)
    }
}

impl<W: Write + Send + 'static> Write for Offload<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_arrive_unchanged_and_in_order() {
        let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let mut w = Offload::new(Vec::new());
        for c in data.chunks(70_000) {
            w.write_all(c).unwrap();
        }
        assert_eq!(w.finish().unwrap(), data);
    }

    struct Failing;
    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn sink_errors_surface() {
        let mut w = Offload::new(Failing);
        let mut failed = false;
        for _ in 0..(QUEUE + 3) {
            if w.write_all(&vec![0u8; CHUNK]).is_err() {
                failed = true;
                break;
            }
        }
        let e = w.finish().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(failed || e.contains("disk full"), "{e}");
        assert!(e.contains("disk full"), "{e}");
    }
}
