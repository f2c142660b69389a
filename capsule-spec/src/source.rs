//! A buffered reader wrapper that knows its file offset, feeds the
//! whole-file checksum, and turns an early end of input into an error naming
//! the structure that was cut short.
//!
//! Input is read into a 1 MiB buffer and the checksum is fed whole buffers
//! at a time: BLAKE3 only reaches its SIMD speed when updates are large and
//! aligned to its chunk tree, and feeding it a 48-byte record header followed
//! by a payload halves its throughput.

use std::io::{ErrorKind, Read};

use crate::error::{CapsuleError, Result};
use crate::format::FILE_HASH_CONTEXT;

/// Read-ahead buffer size: starts small (most hostile or tiny inputs never
/// need more) and doubles per refill up to the maximum. Sizes are powers of
/// two, so every hash update after the first starts 64 KiB-aligned, enough
/// for BLAKE3's widest SIMD batches.
const BUF_MIN: usize = 64 << 10;
const BUF_MAX: usize = 1 << 20;

pub(crate) struct Source<R: Read> {
    inner: R,
    buf: Vec<u8>,
    /// Next unconsumed byte in `buf`.
    at: usize,
    /// Bytes of `buf` consumed and already fed to the hasher.
    hashed: usize,
    /// File offset of the next unconsumed byte.
    pub(crate) pos: u64,
    hasher: blake3::Hasher,
    /// Off once the trailer's hash field is reached: it is not covered.
    hashing: bool,
    eof: bool,
}

impl<R: Read> Source<R> {
    pub(crate) fn new(inner: R) -> Source<R> {
        Source {
            inner,
            buf: Vec::new(),
            at: 0,
            hashed: 0,
            pos: 0,
            hasher: blake3::Hasher::new_derive_key(FILE_HASH_CONTEXT),
            hashing: true,
            eof: false,
        }
    }

    /// Feeds consumed, not yet hashed bytes to the checksum.
    fn flush_hash(&mut self) {
        if self.hashing && self.hashed < self.at {
            self.hasher.update(&self.buf[self.hashed..self.at]);
        }
        self.hashed = self.at;
    }

    /// The checksum of everything consumed so far.
    pub(crate) fn hash_so_far(&mut self) -> [u8; 32] {
        self.flush_hash();
        *self.hasher.finalize().as_bytes()
    }

    /// Stops feeding the checksum (bytes consumed from now on are not
    /// covered).
    pub(crate) fn stop_hashing(&mut self) {
        self.flush_hash();
        self.hashing = false;
    }

    /// Refills the buffer once it is used up; `false` at end of input.
    fn refill(&mut self) -> Result<bool> {
        if self.at < self.buf.len() {
            return Ok(true);
        }
        if self.eof {
            return Ok(false);
        }
        self.flush_hash();
        let size = (self.buf.len() * 2).clamp(BUF_MIN, BUF_MAX);
        self.buf.resize(size, 0);
        let mut len = 0;
        // Fill completely (pipes deliver in small pieces), so that hash
        // updates stay whole buffers.
        while len < size {
            match self.inner.read(&mut self.buf[len..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => len += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(CapsuleError::Io {
                        offset: self.pos + len as u64,
                        source,
                    });
                }
            }
        }
        self.buf.truncate(len);
        self.at = 0;
        self.hashed = 0;
        Ok(len > 0)
    }

    /// Copies as much as possible into `out`; returns how much was copied
    /// (less than `out.len()` only at end of input).
    fn fill(&mut self, out: &mut [u8]) -> Result<usize> {
        let mut got = 0;
        while got < out.len() {
            if !self.refill()? {
                break;
            }
            let n = (out.len() - got).min(self.buf.len() - self.at);
            out[got..got + n].copy_from_slice(&self.buf[self.at..self.at + n]);
            self.at += n;
            got += n;
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
    /// only as data arrives (appended from the read-ahead buffer, without
    /// zeroing first): a declared length is trusted only as far as data
    /// actually arrives, so a lying length cannot make the reader allocate
    /// much more than the input holds.
    pub(crate) fn exact_vec(
        &mut self,
        buf: &mut Vec<u8>,
        len: usize,
        what: &'static str,
        start: u64,
    ) -> Result<()> {
        buf.clear();
        while buf.len() < len {
            if !self.refill()? {
                return Err(CapsuleError::Truncated {
                    what,
                    offset: start,
                    end: self.pos,
                });
            }
            let n = (len - buf.len()).min(self.buf.len() - self.at);
            buf.extend_from_slice(&self.buf[self.at..self.at + n]);
            self.at += n;
            self.pos += n as u64;
        }
        Ok(())
    }

    /// Whether the input is at its end.
    pub(crate) fn at_eof(&mut self) -> Result<bool> {
        Ok(!self.refill()?)
    }
}
