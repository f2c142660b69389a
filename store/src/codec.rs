//! Canonical binary encoding primitives shared by trees and commits.
//!
//! Everything is little-endian or LEB128; a value has exactly one encoding,
//! so equal content always gives equal ids. The decoder never allocates
//! more than the input it was given.

use crate::id::ObjectId;

/// Appends encoded values to a byte vector.
#[derive(Default)]
pub struct Encoder {
    /// The bytes written so far.
    pub buf: Vec<u8>,
}

impl Encoder {
    /// Unsigned LEB128.
    pub fn uvar(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.buf.push(byte);
                return;
            }
            self.buf.push(byte | 0x80);
        }
    }
    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// Fixed 4-byte little-endian.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Fixed 8-byte little-endian, signed.
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Length-prefixed bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.uvar(b.len() as u64);
        self.buf.extend_from_slice(b);
    }
    /// A raw 32-byte id.
    pub fn id(&mut self, id: &ObjectId) {
        self.buf.extend_from_slice(&id.0);
    }
}

/// Why a canonical encoding could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside a value.
    #[error("truncated at byte {0}")]
    Truncated(usize),
    /// A varint was longer than 10 bytes or not minimal.
    #[error("malformed integer at byte {0}")]
    BadVarint(usize),
    /// Anything else: the message says what.
    #[error("{what} at byte {at}")]
    Invalid {
        /// What was wrong.
        what: String,
        /// Offset in the object.
        at: usize,
    },
}

/// Reads values back from a canonical encoding.
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// Starts decoding at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Decoder { buf, pos: 0 }
    }
    /// Current offset.
    pub fn pos(&self) -> usize {
        self.pos
    }
    /// True once every byte was consumed.
    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }
    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    /// An error of kind `Invalid` at the current offset.
    pub fn invalid(&self, what: impl Into<String>) -> DecodeError {
        DecodeError::Invalid {
            what: what.into(),
            at: self.pos,
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated(self.pos));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    /// Unsigned LEB128, rejecting non-minimal forms.
    pub fn uvar(&mut self) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.take(1)?[0];
            let part = u64::from(b & 0x7f);
            if i == 9 && b > 1 {
                return Err(DecodeError::BadVarint(start));
            }
            v |= part << (7 * i);
            if b & 0x80 == 0 {
                if b == 0 && i > 0 {
                    return Err(DecodeError::BadVarint(start));
                }
                return Ok(v);
            }
        }
        Err(DecodeError::BadVarint(start))
    }
    /// A varint that must fit in `usize` and not exceed the remaining input
    /// (used for lengths and counts: each element takes at least one byte).
    pub fn len(&mut self) -> Result<usize, DecodeError> {
        let at = self.pos;
        let v = self.uvar()?;
        if v > self.remaining() as u64 {
            return Err(DecodeError::Invalid {
                what: format!("length {v} exceeds the object"),
                at,
            });
        }
        Ok(v as usize)
    }
    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    /// Fixed 4-byte little-endian.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// Fixed 8-byte little-endian, signed.
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_le_bytes(a))
    }
    /// Length-prefixed bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.len()?;
        self.take(n)
    }
    /// A raw 32-byte id.
    pub fn id(&mut self) -> Result<ObjectId, DecodeError> {
        let b = self.take(32)?;
        let mut a = [0u8; 32];
        a.copy_from_slice(b);
        Ok(ObjectId(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_round_trip(v: u64) {
            let mut e = Encoder::default();
            e.uvar(v);
            let mut d = Decoder::new(&e.buf);
            prop_assert_eq!(d.uvar().unwrap(), v);
            prop_assert!(d.is_empty());
        }
    }

    #[test]
    fn non_minimal_varint_rejected() {
        assert!(Decoder::new(&[0x80, 0x00]).uvar().is_err());
        assert!(Decoder::new(&[0xff; 11]).uvar().is_err());
    }

    #[test]
    fn huge_length_rejected_without_allocation() {
        let mut e = Encoder::default();
        e.uvar(u64::MAX / 2);
        assert!(Decoder::new(&e.buf).bytes().is_err());
    }
}
