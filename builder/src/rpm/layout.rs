//! Where the parts of an RPM v4 file lie, read from its bytes as stored:
//! a 96-byte lead; the signature header (8-byte magic, u32 BE entry
//! count, u32 BE data size, 16 bytes per entry, data), padded to a
//! multiple of 8; the main header (same structure); the payload. Every
//! declared length is checked against the file before it is used, and
//! nothing is allocated from one.

use std::io::Read;
use std::ops::Range;

const LEAD_LEN: usize = 96;
const LEAD_MAGIC: [u8; 4] = [0xed, 0xab, 0xee, 0xdb];
const HEADER_MAGIC: [u8; 8] = [0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0];
/// rpm's own bounds on a header (`hdrchkTags`, `hdrchkData`): anything
/// larger is refused before it is looked at.
const MAX_ENTRIES: usize = 0xffff;
const MAX_DATA: usize = 0x0fff_ffff;

// Header entry types.
const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_BIN: u32 = 7;
const TYPE_STRING_ARRAY: u32 = 8;

/// Where the parts of an RPM v4 file lie, as byte ranges of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The signature header, magic to end of data (padding excluded).
    pub signature: Range<usize>,
    /// The main header, magic to end of data: what a header-only
    /// signature covers.
    pub header: Range<usize>,
    /// Everything after the main header.
    pub payload: Range<usize>,
}

impl Layout {
    /// Finds the headers of `file`, checking every declared length
    /// against its size.
    pub fn parse(file: &[u8]) -> Result<Layout, String> {
        Layout::read(&mut &file[..], file.len() as u64)
            .map(|(layout, _)| layout)
            .map_err(|e| e.to_string())
    }

    /// Reads the lead and both headers from the start of a file of
    /// `file_len` bytes, leaving `r` at the payload: the layout, and the
    /// bytes read (the "head", which holds everything but the payload).
    /// Each declared length is checked against `file_len` before anything
    /// is allocated for it.
    pub fn read(r: &mut impl Read, file_len: u64) -> Result<(Layout, Vec<u8>), ReadError> {
        if file_len < LEAD_LEN as u64 {
            return Err(ReadError::Malformed(format!(
                "{file_len} bytes: too short for an RPM lead"
            )));
        }
        let mut head = vec![0; LEAD_LEN];
        r.read_exact(&mut head).map_err(|e| io(e, "lead"))?;
        if head[..4] != LEAD_MAGIC {
            return Err(ReadError::Malformed(
                "not an RPM file (bad lead magic)".into(),
            ));
        }
        let signature = read_header(r, &mut head, file_len, "signature header")?;
        let main_start = signature
            .end
            .checked_next_multiple_of(8)
            .ok_or_else(|| ReadError::Malformed("signature header too large".into()))?;
        let padding = main_start - signature.end;
        if (main_start as u64) > file_len {
            return Err(ReadError::Malformed(format!(
                "main header at byte {main_start}: the file ends inside it"
            )));
        }
        let at = head.len();
        head.resize(at + padding, 0);
        r.read_exact(&mut head[at..])
            .map_err(|e| io(e, "signature header"))?;
        let header = read_header(r, &mut head, file_len, "main header")?;
        let payload = header.end..file_len as usize;
        Ok((
            Layout {
                signature,
                header,
                payload,
            },
            head,
        ))
    }
}

/// Why the head of a package file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file is not a well-formed RPM.
    #[error("{0}")]
    Malformed(String),
    /// Reading failed.
    #[error("reading the {what}: {source}")]
    Io {
        /// The part being read.
        what: &'static str,
        /// The cause.
        source: std::io::Error,
    },
}

/// A short read means a declared length lied about the file.
fn io(e: std::io::Error, what: &'static str) -> ReadError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        ReadError::Malformed(format!("{what}: the file ends inside it"))
    } else {
        ReadError::Io { what, source: e }
    }
}

fn be32(file: &[u8], at: usize) -> Option<u32> {
    let b = file.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads the header that starts where `head` ends (magic, counts, index
/// and data, all inside a file of `file_len` bytes) onto `head`; returns
/// its range.
fn read_header(
    r: &mut impl Read,
    head: &mut Vec<u8>,
    file_len: u64,
    what: &'static str,
) -> Result<Range<usize>, ReadError> {
    let start = head.len();
    let short = || ReadError::Malformed(format!("{what} at byte {start}: the file ends inside it"));
    let mut pre = [0u8; 16];
    if (start as u64).saturating_add(16) > file_len {
        return Err(short());
    }
    r.read_exact(&mut pre).map_err(|e| io(e, what))?;
    if pre[..8] != HEADER_MAGIC {
        return Err(ReadError::Malformed(format!(
            "{what} at byte {start}: bad header magic"
        )));
    }
    let entries = be32(&pre, 8).ok_or_else(short)? as usize;
    let data = be32(&pre, 12).ok_or_else(short)? as usize;
    if entries > MAX_ENTRIES || data > MAX_DATA {
        return Err(ReadError::Malformed(format!(
            "{what}: {entries} entries and {data} data bytes exceed rpm's header limits"
        )));
    }
    // Bounded by the limits above, so no overflow on any target rpm runs.
    let end = start + 16 + entries * 16 + data;
    if end as u64 > file_len {
        return Err(short());
    }
    head.extend_from_slice(&pre);
    head.resize(end, 0);
    r.read_exact(&mut head[start + 16..])
        .map_err(|e| io(e, what))?;
    Ok(start..end)
}

/// One header's index and data, for looking tags up.
pub(crate) struct Header<'a> {
    index: &'a [u8],
    data: &'a [u8],
}

impl<'a> Header<'a> {
    /// The header occupying `range` (as found by [`header_range`]).
    pub(crate) fn at(file: &'a [u8], range: Range<usize>) -> Result<Header<'a>, String> {
        let h = file
            .get(range)
            .ok_or_else(|| "header outside the file".to_string())?;
        let entries = be32(h, 8).ok_or("header too short")? as usize;
        let index = h
            .get(16..16 + entries.saturating_mul(16))
            .ok_or("header index outside the header")?;
        let data = &h[16 + index.len()..];
        Ok(Header { index, data })
    }

    /// The first entry with `tag`: (type, offset into data, count).
    pub(crate) fn find(&self, tag: u32) -> Option<(u32, usize, usize)> {
        let e = self
            .index
            .chunks_exact(16)
            .find(|e| be32(e, 0) == Some(tag))?;
        Some((be32(e, 4)?, be32(e, 8)? as usize, be32(e, 12)? as usize))
    }

    pub(crate) fn has(&self, tag: u32) -> bool {
        self.find(tag).is_some()
    }

    pub(crate) fn bytes(&self, tag: u32, offset: usize, len: usize) -> Result<&'a [u8], String> {
        offset
            .checked_add(len)
            .and_then(|end| self.data.get(offset..end))
            .ok_or_else(|| format!("tag {tag}: its data lies outside the header"))
    }

    /// A binary entry's bytes.
    pub(crate) fn bin(&self, tag: u32) -> Result<Option<&'a [u8]>, String> {
        let Some((ty, offset, count)) = self.find(tag) else {
            return Ok(None);
        };
        if ty != TYPE_BIN {
            return Err(format!("tag {tag} has type {ty}, not binary"));
        }
        self.bytes(tag, offset, count).map(Some)
    }

    /// A string entry, or a string array's first element.
    pub(crate) fn first_string(&self, tag: u32) -> Result<Option<&'a str>, String> {
        let Some((ty, offset, count)) = self.find(tag) else {
            return Ok(None);
        };
        if !(ty == TYPE_STRING || ty == TYPE_STRING_ARRAY && count >= 1) {
            return Err(format!(
                "tag {tag} has type {ty} (count {count}), not a string"
            ));
        }
        let rest = self
            .data
            .get(offset..)
            .ok_or_else(|| format!("tag {tag}: its data lies outside the header"))?;
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| format!("tag {tag}: unterminated string"))?;
        let s = std::str::from_utf8(&rest[..len])
            .map_err(|_| format!("tag {tag}: string is not UTF-8"))?;
        Ok(Some(s))
    }

    /// An INT32 entry's first value.
    pub(crate) fn int32(&self, tag: u32) -> Result<Option<u32>, String> {
        let Some((ty, offset, count)) = self.find(tag) else {
            return Ok(None);
        };
        if ty != TYPE_INT32 || count < 1 {
            return Err(format!(
                "tag {tag} has type {ty} (count {count}), not INT32"
            ));
        }
        let b = self.bytes(tag, offset, 4)?;
        Ok(Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    // The tags the fixtures use (signature DSA and RSA, payload digest and
    // its algorithm, SHA-256).
    const SIGTAG_DSA: u32 = 267;
    const SIGTAG_RSA: u32 = 268;
    const HASH_SHA256: u32 = 8;
    const TAG_PAYLOADDIGEST: u32 = 5092;
    const TAG_PAYLOADDIGESTALGO: u32 = 5093;

    /// Appends a header with `entries` (tag, type, offset, count) and `data`.
    fn header(out: &mut Vec<u8>, entries: &[(u32, u32, u32, u32)], data: &[u8]) {
        out.extend_from_slice(&HEADER_MAGIC);
        out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        for (t, ty, o, c) in entries {
            for v in [t, ty, o, c] {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        out.extend_from_slice(data);
    }

    /// A lead, a signature header of 3 data bytes (padded to 8), a main
    /// header with a payload digest, and `payload`.
    fn file(payload: &[u8]) -> Vec<u8> {
        let mut f = LEAD_MAGIC.to_vec();
        f.resize(LEAD_LEN, 0);
        header(&mut f, &[(SIGTAG_RSA, TYPE_BIN, 0, 3)], b"sig");
        while !f.len().is_multiple_of(8) {
            f.push(0);
        }
        let digest = hex::encode(Sha256::digest(payload));
        let mut data = digest.clone().into_bytes();
        data.extend_from_slice(&[0, 0, 0, 0]);
        data.extend_from_slice(&HASH_SHA256.to_be_bytes());
        header(
            &mut f,
            &[
                (TAG_PAYLOADDIGEST, TYPE_STRING_ARRAY, 0, 1),
                (TAG_PAYLOADDIGESTALGO, TYPE_INT32, 68, 1),
            ],
            &data,
        );
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn layout_of_a_well_formed_file() {
        let f = file(b"PAYLOAD");
        let l = Layout::parse(&f).unwrap();
        assert_eq!(l.signature, 96..96 + 16 + 16 + 3);
        assert_eq!(l.header.start, 136, "padded to a multiple of 8");
        assert_eq!(&f[l.payload.clone()], b"PAYLOAD");
        let sig = Header::at(&f, l.signature).unwrap();
        assert_eq!(sig.bin(SIGTAG_RSA).unwrap(), Some(&b"sig"[..]));
        assert_eq!(sig.bin(SIGTAG_DSA).unwrap(), None);
        let main = Header::at(&f, l.header).unwrap();
        assert_eq!(
            main.first_string(TAG_PAYLOADDIGEST).unwrap(),
            Some(hex::encode(Sha256::digest(b"PAYLOAD")).as_str())
        );
        assert_eq!(main.int32(TAG_PAYLOADDIGESTALGO).unwrap(), Some(8));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let f = file(b"");
        let l = Layout::parse(&f).unwrap();
        // Cut anywhere inside the two headers: refused, never a panic.
        for n in 0..l.header.end {
            let e = Layout::parse(&f[..n]).unwrap_err();
            assert!(
                e.contains("too short") || e.contains("ends inside"),
                "{n}: {e}"
            );
        }
        assert!(Layout::parse(&f[..l.header.end]).is_ok());
    }

    #[test]
    fn declared_sizes_are_bounded() {
        let mut f = file(b"x");
        // Signature header claiming 2^32-1 data bytes.
        f[96 + 12..96 + 16].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(Layout::parse(&f).unwrap_err().contains("limits"));
        let mut f = file(b"x");
        f[96 + 8..96 + 12].copy_from_slice(&0x1_0000u32.to_be_bytes());
        assert!(Layout::parse(&f).unwrap_err().contains("limits"));
        // Within the limits but past the end of the file.
        let mut f = file(b"x");
        f[96 + 12..96 + 16].copy_from_slice(&1000u32.to_be_bytes());
        assert!(Layout::parse(&f).unwrap_err().contains("ends inside"));
        let mut f = file(b"x");
        f[0] = 0;
        assert!(Layout::parse(&f).unwrap_err().contains("lead magic"));
        let mut f = file(b"x");
        f[96] = 0;
        assert!(Layout::parse(&f).unwrap_err().contains("header magic"));
    }

    #[test]
    fn entries_pointing_outside_the_data_are_errors() {
        let mut f = file(b"x");
        // The RSA entry's offset (index entry 0, bytes 8..12) past the data.
        f[96 + 16 + 8..96 + 16 + 12].copy_from_slice(&2u32.to_be_bytes());
        let l = Layout::parse(&f).unwrap();
        let sig = Header::at(&f, l.signature.clone()).unwrap();
        assert!(sig.bin(SIGTAG_RSA).unwrap_err().contains("outside"));
        f[96 + 16 + 8..96 + 16 + 12].copy_from_slice(&u32::MAX.to_be_bytes());
        let sig = Header::at(&f, l.signature).unwrap();
        assert!(sig.bin(SIGTAG_RSA).unwrap_err().contains("outside"));
        // A string offset past the data, and a wrong type.
        let mut f = file(b"x");
        let main = Layout::parse(&f).unwrap().header;
        let off = main.start + 16 + 8;
        f[off..off + 4].copy_from_slice(&5000u32.to_be_bytes());
        let h = Header::at(&f, main.clone()).unwrap();
        assert!(h.first_string(TAG_PAYLOADDIGEST).is_err());
        f[off - 4..off].copy_from_slice(&TYPE_BIN.to_be_bytes());
        let h = Header::at(&f, main).unwrap();
        assert!(
            h.first_string(TAG_PAYLOADDIGEST)
                .unwrap_err()
                .contains("type")
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
            cut in 0usize..400,
        ) {
            let mut f = file(b"payload");
            // Overwrite part of a valid file, then cut it: every path of
            // the parser gets odd input.
            let at = cut.min(f.len());
            let end = (at + data.len()).min(f.len());
            f[at..end].copy_from_slice(&data[..end - at]);
            f.truncate(cut.max(LEAD_LEN));
            if let Ok(l) = Layout::parse(&f) {
                for r in [l.signature, l.header] {
                    if let Ok(h) = Header::at(&f, r) {
                        let _ = h.bin(SIGTAG_RSA);
                        let _ = h.first_string(TAG_PAYLOADDIGEST);
                        let _ = h.int32(TAG_PAYLOADDIGESTALGO);
                    }
                }
            }
            let _ = Layout::parse(&data);
        }
    }
}
