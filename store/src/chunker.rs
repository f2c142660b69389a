//! Content-defined chunking of file content (FastCDC v2020).
//!
//! 16 KiB / 64 KiB / 256 KiB, as casync, desync and PuzzleFS converged on.
//! The crate version is pinned exactly in Cargo.toml because its cut points
//! have changed between releases; `fixed_cut_points` below catches that.

use std::io::Read;

/// Smallest chunk (except a file's last).
pub const MIN_CHUNK: usize = 16 * 1024;
/// Target average chunk.
pub const AVG_CHUNK: usize = 64 * 1024;
/// Largest chunk.
pub const MAX_CHUNK: usize = 256 * 1024;

/// Cuts an in-memory buffer; returns the chunk lengths in order.
pub fn cut(data: &[u8]) -> Vec<usize> {
    if data.is_empty() {
        return Vec::new();
    }
    fastcdc::v2020::FastCDC::new(data, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK)
        .map(|c| c.length)
        .collect()
}

/// Cuts a stream, calling `sink` with each chunk's bytes in order.
pub fn cut_stream<R: Read, E>(
    reader: R,
    mut sink: impl FnMut(Vec<u8>) -> Result<(), E>,
    io_err: impl Fn(std::io::Error) -> E,
) -> Result<(), E> {
    let stream = fastcdc::v2020::StreamCDC::new(reader, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK);
    for chunk in stream {
        let chunk = chunk.map_err(|e| match e {
            fastcdc::v2020::Error::IoError(io) => io_err(io),
            other => io_err(std::io::Error::other(other.to_string())),
        })?;
        sink(chunk.data)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random bytes (xorshift64*), so the test needs
    /// no fixture file.
    fn sample(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..len)
            .map(|_| {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn fixed_cut_points() {
        let data = sample(1 << 20);
        let lens = cut(&data);
        assert_eq!(lens.iter().sum::<usize>(), data.len());
        // Pinned: if this changes, the fastcdc crate changed its cut points
        // and every existing store would stop deduplicating against new data.
        assert_eq!(lens, EXPECTED);
    }

    const EXPECTED: &[usize] = &[
        92783, 30828, 85001, 143402, 32738, 105704, 91723, 62302, 82529, 93835, 65974, 81609,
        70489, 9659,
    ];

    #[test]
    fn stream_matches_memory() {
        let data = sample(3 << 20);
        let mut lens = Vec::new();
        cut_stream(
            &data[..],
            |c| {
                lens.push(c.len());
                Ok::<(), std::io::Error>(())
            },
            |e| e,
        )
        .unwrap();
        assert_eq!(lens, cut(&data));
    }

    #[test]
    fn bounds() {
        let data = sample(4 << 20);
        let lens = cut(&data);
        let (last, rest) = lens.split_last().unwrap();
        assert!(rest.iter().all(|&l| (MIN_CHUNK..=MAX_CHUNK).contains(&l)));
        assert!(*last <= MAX_CHUNK);
        assert_eq!(cut(b"tiny"), vec![4]);
    }
}
