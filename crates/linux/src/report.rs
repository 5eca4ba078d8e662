//! How a cloned child tells its parent why it did not reach the command: the step that failed
//! and the errno, as one fixed-size record written to a close-on-exec pipe. A successful
//! `execve` closes the pipe, so the parent reads end-of-file and nothing else.

use std::io;
use std::os::fd::AsFd;

use rustix::io::Errno;

/// Which step failed and why. Step numbers are the caller's: an index into its plan, the
/// plan's length for the final `execve`, or [`Failure::PROLOGUE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failure {
    pub step: u32,
    pub errno: i32,
}

impl Failure {
    /// The size of the record on the pipe.
    pub const LEN: usize = 8;
    /// The step number of a failure before the plan's first step (a fixed prologue).
    pub const PROLOGUE: u32 = u32::MAX;

    /// Step `index` of a plan failed with `errno`.
    pub fn at(index: usize, errno: Errno) -> Self {
        Self {
            step: u32::try_from(index).unwrap_or(u32::MAX - 1),
            errno: errno.raw_os_error(),
        }
    }

    pub fn encode(self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..4].copy_from_slice(&self.step.to_ne_bytes());
        out[4..].copy_from_slice(&self.errno.to_ne_bytes());
        out
    }

    pub fn decode(bytes: [u8; Self::LEN]) -> Self {
        let [a, b, c, d, e, f, g, h] = bytes;
        Self {
            step: u32::from_ne_bytes([a, b, c, d]),
            errno: i32::from_ne_bytes([e, f, g, h]),
        }
    }

    /// The child's side: writes the record (async-signal-safe). A pipe takes 8 bytes whole;
    /// if the parent is gone, nobody is left to tell.
    pub fn send(self, pipe: impl AsFd) {
        let _ = rustix::io::write(pipe, &self.encode());
    }

    /// The parent's side: reads the pipe to end-of-file. `None`: the child reached its
    /// command (the pipe closed on `execve`). A record cut short means the child died while
    /// setting up: an `UnexpectedEof` error.
    pub fn receive(pipe: impl AsFd) -> io::Result<Option<Self>> {
        let mut buf = [0u8; Self::LEN];
        let mut got = 0;
        while got < buf.len() {
            match rustix::io::read(pipe.as_fd(), buf.get_mut(got..).unwrap_or_default()) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        match got {
            0 => Ok(None),
            Self::LEN => Ok(Some(Self::decode(buf))),
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the child died while setting up",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        for f in [
            Failure {
                step: 3,
                errno: libc::ENOENT,
            },
            Failure {
                step: Failure::PROLOGUE,
                errno: libc::EPERM,
            },
            Failure::at(0, Errno::ACCESS),
        ] {
            assert_eq!(Failure::decode(f.encode()), f);
        }
        assert_eq!(Failure::at(7, Errno::NOEXEC).step, 7);
        assert_eq!(Failure::at(7, Errno::NOEXEC).errno, libc::ENOEXEC);
    }

    #[test]
    fn the_pipe_says_failure_success_or_a_cut_record() -> io::Result<()> {
        let (r, w) = rustix::pipe::pipe()?;
        Failure {
            step: 2,
            errno: libc::EACCES,
        }
        .send(&w);
        drop(w);
        let got = Failure::receive(&r)?;
        assert_eq!(
            got,
            Some(Failure {
                step: 2,
                errno: libc::EACCES
            })
        );

        let (r, w) = rustix::pipe::pipe()?;
        drop(w);
        assert_eq!(Failure::receive(&r)?, None);

        let (r, w) = rustix::pipe::pipe()?;
        rustix::io::write(&w, &[1, 2, 3])?;
        drop(w);
        let err = Failure::receive(&r).expect_err("a cut record");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        Ok(())
    }
}
