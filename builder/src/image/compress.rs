//! Stream compressors around a cpio or tar image: zstd, gzip, xz (CRC32
//! checks, which the kernel's initramfs decompressor requires) or none.
//! All of them are deterministic: the same input gives the same bytes.

use std::io::{self, Write};

use super::Compression;

/// A writer that counts the bytes passed through.
pub struct Counting<'a> {
    inner: &'a mut dyn Write,
    count: u64,
}

impl<'a> Counting<'a> {
    /// Wraps `inner`.
    pub fn new(inner: &'a mut dyn Write) -> Self {
        Counting { inner, count: 0 }
    }
    /// Bytes written so far.
    pub fn count(&self) -> u64 {
        self.count
    }
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One of the compressors, finished explicitly with [`Encoder::finish`].
pub enum Encoder<W: Write> {
    /// Bytes pass unchanged.
    None(W),
    /// zstd frame.
    Zstd(zstd::stream::write::Encoder<'static, W>),
    /// gzip member (no file name, mtime 0).
    Gzip(flate2::write::GzEncoder<W>),
    /// xz stream with CRC32.
    Xz(liblzma::write::XzEncoder<W>),
}

impl<W: Write> Encoder<W> {
    /// Starts a compressed stream at `level`.
    pub fn new(w: W, c: Compression, level: i32) -> io::Result<Self> {
        Ok(match c {
            Compression::None => Encoder::None(w),
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(w, level)?;
                e.include_checksum(true)?;
                Encoder::Zstd(e)
            }
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                w,
                flate2::Compression::new(level.clamp(0, 9) as u32),
            )),
            Compression::Xz => {
                let stream = liblzma::stream::Stream::new_easy_encoder(
                    level.clamp(0, 9) as u32,
                    liblzma::stream::Check::Crc32,
                )
                .map_err(io::Error::other)?;
                Encoder::Xz(liblzma::write::XzEncoder::new_stream(w, stream))
            }
        })
    }

    /// Writes the compressor's trailer and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(mut w) => {
                w.flush()?;
                Ok(w)
            }
            Encoder::Zstd(e) => e.finish(),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Xz(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Xz(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Zstd(e) => e.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Xz(e) => e.flush(),
        }
    }
}
