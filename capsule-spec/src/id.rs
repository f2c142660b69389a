//! Object identity as the store defines it: a 32-byte BLAKE3 id, computed in
//! derive-key mode with one context string per object kind, over the
//! *uncompressed* bytes of the object.
//!
//! The capsule crate keeps its own copy of these small types so that it does
//! not depend on store internals; the store's ids convert through
//! [`ObjectId::from_bytes`] / [`ObjectId::as_bytes`].

use std::fmt;

/// Length in bytes of an object id.
pub const ID_LEN: usize = 32;

/// A BLAKE3 object id (32 bytes), printed as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ObjectId([u8; ID_LEN]);

impl ObjectId {
    /// Wraps 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; ID_LEN]) -> ObjectId {
        ObjectId(bytes)
    }

    /// The raw 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<ObjectId> {
        let mut out = [0u8; ID_LEN];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(ObjectId(out))
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.to_hex())
    }
}

impl serde::Serialize for ObjectId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for ObjectId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ObjectId, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        // Only the canonical lowercase form is accepted, so that a manifest
        // has exactly one encoding (the reader checks canonical bytes).
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(serde::de::Error::custom("object id must be lowercase hex"));
        }
        ObjectId::from_hex(&s)
            .ok_or_else(|| serde::de::Error::custom("object id must be 64 hex digits"))
    }
}

/// The three kinds of object the store holds. The numeric value is the
/// on-disk kind code, and also the order of kinds inside a capsule.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[repr(u8)]
pub enum ObjectKind {
    /// A piece of file content.
    Chunk = 1,
    /// A directory's canonical encoding.
    Tree = 2,
    /// A commit (root tree, parents, timestamp, message, metadata).
    Commit = 3,
}

impl ObjectKind {
    /// All kinds, in capsule order.
    pub const ALL: [ObjectKind; 3] = [ObjectKind::Chunk, ObjectKind::Tree, ObjectKind::Commit];

    /// The BLAKE3 derive-key context string of this kind.
    pub fn derive_key_context(self) -> &'static str {
        // One definition of the contexts: the store's. A second copy here
        // could drift and make capsule ids disagree with store ids.
        let store_kind = match self {
            ObjectKind::Chunk => vnfs_store::ObjectKind::Chunk,
            ObjectKind::Tree => vnfs_store::ObjectKind::Tree,
            ObjectKind::Commit => vnfs_store::ObjectKind::Commit,
        };
        store_kind.context()
    }

    /// A fresh hasher for objects of this kind.
    pub fn hasher(self) -> blake3::Hasher {
        blake3::Hasher::new_derive_key(self.derive_key_context())
    }

    /// The id of `raw` (uncompressed bytes) as an object of this kind.
    pub fn id_of(self, raw: &[u8]) -> ObjectId {
        let mut h = self.hasher();
        h.update(raw);
        ObjectId(*h.finalize().as_bytes())
    }

    /// The on-disk code.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// Decodes an on-disk code.
    pub const fn from_code(code: u8) -> Option<ObjectKind> {
        match code {
            1 => Some(ObjectKind::Chunk),
            2 => Some(ObjectKind::Tree),
            3 => Some(ObjectKind::Commit),
            _ => None,
        }
    }

    /// Lowercase name, as used in messages.
    pub const fn name(self) -> &'static str {
        match self {
            ObjectKind::Chunk => "chunk",
            ObjectKind::Tree => "tree",
            ObjectKind::Commit => "commit",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How an object's bytes are stored in the capsule (and in the store).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum Compression {
    /// The stored bytes are the object itself.
    Raw = 0,
    /// The stored bytes are one or more zstd frames that decompress to it.
    Zstd = 1,
}

impl Compression {
    /// The on-disk code.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// Decodes an on-disk code.
    pub const fn from_code(code: u8) -> Option<Compression> {
        match code {
            0 => Some(Compression::Raw),
            1 => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// Lowercase name, as used in messages.
    pub const fn name(self) -> &'static str {
        match self {
            Compression::Raw => "raw",
            Compression::Zstd => "zstd",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_case() {
        let id = ObjectKind::Chunk.id_of(b"hello");
        assert_eq!(ObjectId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(ObjectId::from_hex("zz"), None);
        let upper = format!("\"{}\"", id.to_hex().to_uppercase());
        assert!(serde_json::from_str::<ObjectId>(&upper).is_err());
    }

    #[test]
    fn kinds_are_domain_separated() {
        let a = ObjectKind::Chunk.id_of(b"x");
        let b = ObjectKind::Tree.id_of(b"x");
        let c = ObjectKind::Commit.id_of(b"x");
        assert!(a != b && b != c && a != c);
        // Known answer: the id is BLAKE3 derive_key(context, raw).
        assert_eq!(
            a.as_bytes(),
            blake3::derive_key("vnfs 2026 chunk v1", b"x").as_slice()
        );
    }
}
