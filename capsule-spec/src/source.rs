//! A reader wrapper that knows its file offset, feeds the whole-file
//! checksum, and turns an early end of input into an error naming the
//! structure that was cut short.

use std::io::{ErrorKind, Read};

use crate::error::{CapsuleError, Result};
use crate::format::FILE_HASH_CONTEXT;

/// Largest piece grown into a buffer at a time: a declared length is only
/// trusted as far as data actually arrives, so a lying length can make the
/// reader allocate at most this much more than the input holds.
const GROW_STEP: usize = 1 << 20;

pub(crate) struct Source<R: Read> {
    inner: R,
    pub(crate) pos: u64,
    pub(crate) hasher: blake3::Hasher,
    /// Off once the trailer's hash field is reached: it is not covered.
    pub(crate) hashing: bool,
}

impl<R: Read> Source<R> {
    pub(crate) fn new(inner: R) -> Source<R> {
        Source {
            inner,
            pos: 0,
            hasher: blake3::Hasher::new_derive_key(FILE_HASH_CONTEXT),
            hashing: true,
        }
    }

    /// Reads as much as possible into `buf`; returns how much was read
    /// (less than `buf.len()` only at end of input).
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(CapsuleError::Io {
                        offset: self.pos + got as u64,
                        source,
                    });
                }
            }
        }
        if self.hashing {
            self.hasher.update(&buf[..got]);
        }
        self.pos += got as u64;
        Ok(got)
    }

    /// Reads exactly `buf.len()` bytes of the structure `what` starting at
    /// offset `start`.
    pub(crate) fn exact(&mut self, buf: &mut [u8], what: &'static str, start: u64) -> Result<()> {
        let got = self.fill(buf)?;
        if got < buf.len() {
            return Err(CapsuleError::Truncated {
                what,
                offset: start,
                end: self.pos,
            });
        }
        Ok(())
    }

    /// Reads `len` bytes into `buf` (replacing its contents), growing it
    /// only as data arrives.
    pub(crate) fn exact_vec(
        &mut self,
        buf: &mut Vec<u8>,
        len: usize,
        what: &'static str,
        start: u64,
    ) -> Result<()> {
        buf.clear();
        while buf.len() < len {
            let have = buf.len();
            let step = (len - have).min(GROW_STEP.max(buf.capacity() - have));
            buf.resize(have + step, 0);
            let got = self.fill(&mut buf[have..])?;
            if got < step {
                return Err(CapsuleError::Truncated {
                    what,
                    offset: start,
                    end: self.pos,
                });
            }
        }
        Ok(())
    }

    /// Whether the input is at its end (reads one byte to find out).
    pub(crate) fn at_eof(&mut self) -> Result<bool> {
        let mut b = [0u8; 1];
        loop {
            match self.inner.read(&mut b) {
                Ok(0) => return Ok(true),
                Ok(_) => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(CapsuleError::Io {
                        offset: self.pos,
                        source,
                    });
                }
            }
        }
    }
}
