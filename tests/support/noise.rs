//! Test data that does not compress, shared by the CLI tests and the
//! store's and the builder's tests (included by `#[path]`).

/// Deterministic bytes that do not compress (xorshift), so the store keeps
/// them raw and their size is their stored size.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
