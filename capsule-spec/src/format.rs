//! The fixed-size binary structures of a capsule and their encodings: header,
//! record header, end marker, index entry, trailer, signature block. All
//! integers are little-endian. SPEC.md is the normative description; this
//! module is its executable form.
//!
//! Decoders here check only what one structure can check on its own (magic,
//! codes, reserved bytes); cross-checks (order, offsets, counts) live in the
//! reader.

use crate::id::{Compression, ID_LEN, ObjectId, ObjectKind};

/// First eight bytes of every capsule. The high byte and CR LF SUB catch
/// text-mode transfers that would mangle the file, as PNG's signature does.
pub const MAGIC: [u8; 8] = [0x89, b'V', b'N', b'F', b'S', b'\r', b'\n', 0x1a];
/// Major version this crate reads and writes; a reader refuses other majors.
pub const VERSION_MAJOR: u16 = 2;
/// Minor version this crate writes; a reader accepts any lower or equal minor
/// strictly, and a higher one leniently (see SPEC.md, "Evolution").
pub const VERSION_MINOR: u16 = 0;
/// Whether a capsule of this minor version must have a canonical manifest
/// (minors this crate knows); newer minors are read leniently, ignoring
/// manifest fields this crate does not know.
#[allow(clippy::absurd_extreme_comparisons)] // VERSION_MINOR is 0 today; the rule is for later ones
pub fn strict_minor(minor: u16) -> bool {
    minor <= VERSION_MINOR
}

/// Header flag: a signature block follows the trailer.
pub const FLAG_SIGNED: u32 = 1;
/// Flags this version understands; any other bit set is refused, so a future
/// feature that changes the layout can never be silently misread.
pub const KNOWN_FLAGS: u32 = FLAG_SIGNED;

/// Size of the header.
pub const HEADER_LEN: usize = 32;
/// Size of a record header (and of the end marker).
pub const RECORD_HEADER_LEN: usize = 48;
/// Size of an index entry.
pub const INDEX_ENTRY_LEN: usize = 8 + RECORD_HEADER_LEN;
/// Magic of the trailer.
pub const TRAILER_MAGIC: [u8; 8] = *b"VNFSTRLR";
/// Size of the trailer.
pub const TRAILER_LEN: usize = 80;
/// Bytes of the trailer before its file hash (covered by the hash).
pub const TRAILER_HASHED_LEN: usize = TRAILER_LEN - 32;
/// Magic of the signature block: ed25519, version 1.
pub const SIGNATURE_MAGIC: [u8; 8] = *b"VNFSSIG1";
/// Size of the signature block.
pub const SIGNATURE_BLOCK_LEN: usize = 8 + 32 + 64;

/// BLAKE3 derive-key context of the whole-file checksum.
pub const FILE_HASH_CONTEXT: &str = "vnfs 2026 capsule v1";
/// Prefix of the message an ed25519 signature signs (followed by the file
/// hash), so a capsule signature can never be mistaken for another message.
pub const SIGNATURE_CONTEXT: &[u8] = b"vnfs 2026 capsule signature v1\0";

fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(a)
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}
fn id_at(b: &[u8], at: usize) -> ObjectId {
    let mut a = [0u8; ID_LEN];
    a.copy_from_slice(&b[at..at + ID_LEN]);
    ObjectId::from_bytes(a)
}

/// The file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Major format version.
    pub major: u16,
    /// Minor format version.
    pub minor: u16,
    /// Flags ([`FLAG_SIGNED`]).
    pub flags: u32,
    /// Length of the manifest that follows the header.
    pub manifest_len: u64,
}

/// Why a fixed structure did not decode. The reader adds the offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// Magic bytes differ.
    BadMagic,
    /// Unsupported major version, or a minor the reader cannot handle.
    Version(u16, u16),
    /// Flag bits this version does not know.
    Flags(u32),
    /// A reserved field is not zero.
    Reserved(&'static str),
    /// Unknown object kind code.
    Kind(u8),
    /// Unknown compression code.
    Compression(u8),
}

impl std::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayoutError::BadMagic => f.write_str("bad magic"),
            LayoutError::Version(a, b) => write!(
                f,
                "unsupported format version {a}.{b} (this reader knows {VERSION_MAJOR}.{VERSION_MINOR})"
            ),
            LayoutError::Flags(x) => write!(f, "unknown flags {x:#x}"),
            LayoutError::Reserved(what) => write!(f, "reserved field {what} is not zero"),
            LayoutError::Kind(k) => write!(f, "unknown object kind code {k}"),
            LayoutError::Compression(c) => write!(f, "unknown compression code {c}"),
        }
    }
}

impl Header {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&self.major.to_le_bytes());
        b[10..12].copy_from_slice(&self.minor.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.manifest_len.to_le_bytes());
        b
    }

    /// Decodes and checks magic, version, flags and reserved bytes.
    pub fn decode(b: &[u8; HEADER_LEN]) -> Result<Header, LayoutError> {
        if b[0..8] != MAGIC {
            return Err(LayoutError::BadMagic);
        }
        let h = Header {
            major: u16_at(b, 8),
            minor: u16_at(b, 10),
            flags: u32_at(b, 12),
            manifest_len: u64_at(b, 16),
        };
        if h.major != VERSION_MAJOR {
            return Err(LayoutError::Version(h.major, h.minor));
        }
        if h.flags & !KNOWN_FLAGS != 0 {
            return Err(LayoutError::Flags(h.flags & !KNOWN_FLAGS));
        }
        if b[24..32] != [0u8; 8] {
            return Err(LayoutError::Reserved("header[24..32]"));
        }
        Ok(h)
    }

    /// Whether a signature block follows the trailer.
    pub fn signed(&self) -> bool {
        self.flags & FLAG_SIGNED != 0
    }
}

/// The fixed part of one single-object record, followed by `stored_len`
/// bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Object kind.
    pub kind: ObjectKind,
    /// How the stored bytes encode the object.
    pub compression: Compression,
    /// Bytes that follow this header.
    pub stored_len: u32,
    /// Length of the object once decompressed.
    pub raw_len: u32,
    /// The object's id.
    pub id: ObjectId,
}

impl RecordHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; RECORD_HEADER_LEN] {
        let mut b = [0u8; RECORD_HEADER_LEN];
        b[0] = self.kind.code();
        b[1] = self.compression.code();
        b[4..8].copy_from_slice(&self.stored_len.to_le_bytes());
        b[8..12].copy_from_slice(&self.raw_len.to_le_bytes());
        b[16..48].copy_from_slice(self.id.as_bytes());
        b
    }

    /// Total record size: header plus stored bytes.
    pub fn record_len(&self) -> u64 {
        RECORD_HEADER_LEN as u64 + u64::from(self.stored_len)
    }
}

/// Type code of a solid block record (object kinds use 1 to 3).
pub const BLOCK_CODE: u8 = 4;
/// Size of one member entry in a solid block's member table.
pub const MEMBER_LEN: usize = 8 + ID_LEN;

/// The fixed part of a solid block: small objects compressed together.
/// Followed by `members` member entries ([`Member`]) and then `stored_len`
/// bytes that decode to the members' raw bytes, concatenated in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    /// How the payload encodes the concatenated members.
    pub compression: Compression,
    /// Payload bytes after the member table.
    pub stored_len: u32,
    /// Sum of the members' raw lengths (the decoded payload's length).
    pub raw_len: u32,
    /// Number of member entries.
    pub members: u32,
}

impl BlockHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; RECORD_HEADER_LEN] {
        let mut b = [0u8; RECORD_HEADER_LEN];
        b[0] = BLOCK_CODE;
        b[1] = self.compression.code();
        b[4..8].copy_from_slice(&self.stored_len.to_le_bytes());
        b[8..12].copy_from_slice(&self.raw_len.to_le_bytes());
        b[12..16].copy_from_slice(&self.members.to_le_bytes());
        b
    }

    /// Bytes of the member table.
    pub fn table_len(&self) -> u64 {
        u64::from(self.members) * MEMBER_LEN as u64
    }

    /// Total record size: header, member table and payload.
    pub fn record_len(&self) -> u64 {
        RECORD_HEADER_LEN as u64 + self.table_len() + u64::from(self.stored_len)
    }
}

/// One entry of a solid block's member table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// Object kind.
    pub kind: ObjectKind,
    /// Raw length: the member's share of the decoded payload.
    pub raw_len: u32,
    /// The object's id.
    pub id: ObjectId,
}

impl Member {
    /// Encodes the entry.
    pub fn encode(&self) -> [u8; MEMBER_LEN] {
        let mut b = [0u8; MEMBER_LEN];
        b[0] = self.kind.code();
        b[4..8].copy_from_slice(&self.raw_len.to_le_bytes());
        b[8..].copy_from_slice(self.id.as_bytes());
        b
    }

    /// Decodes an entry, checking its kind code and reserved bytes.
    pub fn decode(b: &[u8; MEMBER_LEN]) -> Result<Member, LayoutError> {
        let kind = ObjectKind::from_code(b[0]).ok_or(LayoutError::Kind(b[0]))?;
        if b[1..4] != [0; 3] {
            return Err(LayoutError::Reserved("member entry"));
        }
        Ok(Member {
            kind,
            raw_len: u32_at(b, 4),
            id: id_at(b, 8),
        })
    }
}

/// A record header of either type, as read from the object section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordHead {
    /// One object.
    Object(RecordHeader),
    /// A solid block of small objects.
    Block(BlockHeader),
}

impl RecordHead {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; RECORD_HEADER_LEN] {
        match self {
            RecordHead::Object(h) => h.encode(),
            RecordHead::Block(h) => h.encode(),
        }
    }

    /// Decodes a record header; `Ok(None)` is the end marker (all zero).
    pub fn decode(b: &[u8; RECORD_HEADER_LEN]) -> Result<Option<RecordHead>, LayoutError> {
        if b[0] == 0 {
            if b.iter().any(|&x| x != 0) {
                return Err(LayoutError::Reserved("end marker"));
            }
            return Ok(None);
        }
        let compression = Compression::from_code(b[1]).ok_or(LayoutError::Compression(b[1]))?;
        if b[2..4] != [0, 0] {
            return Err(LayoutError::Reserved("record header"));
        }
        if b[0] == BLOCK_CODE {
            if b[16..48].iter().any(|&x| x != 0) {
                return Err(LayoutError::Reserved("block header"));
            }
            return Ok(Some(RecordHead::Block(BlockHeader {
                compression,
                stored_len: u32_at(b, 4),
                raw_len: u32_at(b, 8),
                members: u32_at(b, 12),
            })));
        }
        let kind = ObjectKind::from_code(b[0]).ok_or(LayoutError::Kind(b[0]))?;
        if b[12..16] != [0; 4] {
            return Err(LayoutError::Reserved("record header"));
        }
        Ok(Some(RecordHead::Object(RecordHeader {
            kind,
            compression,
            stored_len: u32_at(b, 4),
            raw_len: u32_at(b, 8),
            id: id_at(b, 16),
        })))
    }

    /// Total record size.
    pub fn record_len(&self) -> u64 {
        match self {
            RecordHead::Object(h) => h.record_len(),
            RecordHead::Block(h) => h.record_len(),
        }
    }

    /// Stored (payload) bytes.
    pub fn stored_len(&self) -> u32 {
        match self {
            RecordHead::Object(h) => h.stored_len,
            RecordHead::Block(h) => h.stored_len,
        }
    }

    /// Raw bytes the record decodes to.
    pub fn raw_len(&self) -> u32 {
        match self {
            RecordHead::Object(h) => h.raw_len,
            RecordHead::Block(h) => h.raw_len,
        }
    }
}

/// One index entry: where a record starts, and a copy of its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// File offset of the record header.
    pub offset: u64,
    /// The record's header.
    pub record: RecordHead,
}

impl IndexEntry {
    /// Encodes the entry.
    pub fn encode(&self) -> [u8; INDEX_ENTRY_LEN] {
        let mut b = [0u8; INDEX_ENTRY_LEN];
        b[0..8].copy_from_slice(&self.offset.to_le_bytes());
        b[8..].copy_from_slice(&self.record.encode());
        b
    }

    /// Decodes an entry; the end marker is not a valid entry.
    pub fn decode(b: &[u8; INDEX_ENTRY_LEN]) -> Result<IndexEntry, LayoutError> {
        let mut r = [0u8; RECORD_HEADER_LEN];
        r.copy_from_slice(&b[8..]);
        let record = RecordHead::decode(&r)?.ok_or(LayoutError::Kind(0))?;
        Ok(IndexEntry {
            offset: u64_at(b, 0),
            record,
        })
    }
}

/// The trailer: where the index is, totals, and the whole-file checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer {
    /// File offset of the first index entry.
    pub index_offset: u64,
    /// Number of objects: single-object records plus block members.
    pub object_count: u64,
    /// Number of records (single objects and solid blocks), which is the
    /// number of index entries.
    pub record_count: u64,
    /// Sum of the records' stored lengths (block payloads, not their member
    /// tables).
    pub stored_total: u64,
    /// Sum of the records' raw lengths.
    pub raw_total: u64,
    /// BLAKE3 (derive-key [`FILE_HASH_CONTEXT`]) of every byte before this
    /// field.
    pub file_hash: [u8; 32],
}

impl Trailer {
    /// Encodes the trailer.
    pub fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut b = [0u8; TRAILER_LEN];
        b[0..8].copy_from_slice(&TRAILER_MAGIC);
        b[8..16].copy_from_slice(&self.index_offset.to_le_bytes());
        b[16..24].copy_from_slice(&self.object_count.to_le_bytes());
        b[24..32].copy_from_slice(&self.stored_total.to_le_bytes());
        b[32..40].copy_from_slice(&self.raw_total.to_le_bytes());
        b[40..48].copy_from_slice(&self.record_count.to_le_bytes());
        b[48..80].copy_from_slice(&self.file_hash);
        b
    }

    /// Decodes the trailer, checking its magic.
    pub fn decode(b: &[u8; TRAILER_LEN]) -> Result<Trailer, LayoutError> {
        if b[0..8] != TRAILER_MAGIC {
            return Err(LayoutError::BadMagic);
        }
        let mut file_hash = [0u8; 32];
        file_hash.copy_from_slice(&b[48..80]);
        Ok(Trailer {
            index_offset: u64_at(b, 8),
            object_count: u64_at(b, 16),
            stored_total: u64_at(b, 24),
            raw_total: u64_at(b, 32),
            record_count: u64_at(b, 40),
            file_hash,
        })
    }
}

/// The optional signature block after the trailer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignatureBlock {
    /// The signer's ed25519 public key.
    pub public_key: [u8; 32],
    /// ed25519 signature of [`SIGNATURE_CONTEXT`] followed by the file hash.
    pub signature: [u8; 64],
}

impl SignatureBlock {
    /// Encodes the block.
    pub fn encode(&self) -> [u8; SIGNATURE_BLOCK_LEN] {
        let mut b = [0u8; SIGNATURE_BLOCK_LEN];
        b[0..8].copy_from_slice(&SIGNATURE_MAGIC);
        b[8..40].copy_from_slice(&self.public_key);
        b[40..104].copy_from_slice(&self.signature);
        b
    }

    /// Decodes the block, checking its magic.
    pub fn decode(b: &[u8; SIGNATURE_BLOCK_LEN]) -> Result<SignatureBlock, LayoutError> {
        if b[0..8] != SIGNATURE_MAGIC {
            return Err(LayoutError::BadMagic);
        }
        let mut public_key = [0u8; 32];
        public_key.copy_from_slice(&b[8..40]);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&b[40..104]);
        Ok(SignatureBlock {
            public_key,
            signature,
        })
    }
}

/// The message an ed25519 capsule signature signs.
pub fn signature_message(file_hash: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNATURE_CONTEXT.len() + 32);
    m.extend_from_slice(SIGNATURE_CONTEXT);
    m.extend_from_slice(file_hash);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structures_round_trip() {
        let h = Header {
            major: VERSION_MAJOR,
            minor: 0,
            flags: FLAG_SIGNED,
            manifest_len: 77,
        };
        assert_eq!(Header::decode(&h.encode()), Ok(h));
        let r = RecordHeader {
            kind: ObjectKind::Tree,
            compression: Compression::Zstd,
            stored_len: 5,
            raw_len: 9,
            id: ObjectKind::Tree.id_of(b"t"),
        };
        assert_eq!(r.record_len(), 53);
        let r = RecordHead::Object(r);
        assert_eq!(RecordHead::decode(&r.encode()), Ok(Some(r)));
        assert_eq!(RecordHead::decode(&[0; RECORD_HEADER_LEN]), Ok(None));
        let b = RecordHead::Block(BlockHeader {
            compression: Compression::Zstd,
            stored_len: 100,
            raw_len: 4000,
            members: 3,
        });
        assert_eq!(RecordHead::decode(&b.encode()), Ok(Some(b)));
        assert_eq!(b.record_len(), 48 + 3 * 40 + 100);
        let m = Member {
            kind: ObjectKind::Tree,
            raw_len: 77,
            id: ObjectKind::Tree.id_of(b"m"),
        };
        assert_eq!(Member::decode(&m.encode()), Ok(m));
        let mut mb = m.encode();
        mb[2] = 1;
        assert_eq!(
            Member::decode(&mb),
            Err(LayoutError::Reserved("member entry"))
        );
        for e in [r, b] {
            let e = IndexEntry {
                offset: 123,
                record: e,
            };
            assert_eq!(IndexEntry::decode(&e.encode()), Ok(e));
        }
        let t = Trailer {
            index_offset: 1,
            object_count: 2,
            record_count: 5,
            stored_total: 3,
            raw_total: 4,
            file_hash: [7; 32],
        };
        assert_eq!(Trailer::decode(&t.encode()), Ok(t));
    }

    #[test]
    fn block_header_reserved_bytes_are_checked() {
        let b = BlockHeader {
            compression: Compression::Raw,
            stored_len: 1,
            raw_len: 1,
            members: 1,
        }
        .encode();
        for at in [2, 3, 16, 47] {
            let mut x = b;
            x[at] = 1;
            assert!(
                matches!(RecordHead::decode(&x), Err(LayoutError::Reserved(_))),
                "byte {at}"
            );
        }
        let mut x = b;
        x[0] = 5;
        assert_eq!(RecordHead::decode(&x), Err(LayoutError::Kind(5)));
    }

    #[test]
    fn header_refusals() {
        let h = Header {
            major: VERSION_MAJOR,
            minor: 0,
            flags: 0,
            manifest_len: 0,
        };
        let mut b = h.encode();
        b[0] = b'P';
        assert_eq!(Header::decode(&b), Err(LayoutError::BadMagic));
        let mut b = h.encode();
        b[8] = 1;
        assert_eq!(Header::decode(&b), Err(LayoutError::Version(1, 0)));
        b[8] = 3;
        assert_eq!(Header::decode(&b), Err(LayoutError::Version(3, 0)));
        let mut b = h.encode();
        b[12] = 0x82;
        assert_eq!(Header::decode(&b), Err(LayoutError::Flags(0x82)));
    }
}
