//! Object ids: BLAKE3 over the uncompressed object, domain-separated by kind.
//!
//! Derive-key mode with a distinct context per kind means a chunk that
//! happens to contain a valid tree encoding can never collide with a tree.

use std::fmt;

/// The kinds of object the store holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ObjectKind {
    /// A piece of a regular file's content, cut by FastCDC.
    Chunk = 1,
    /// A directory: its entries and their metadata, canonically encoded.
    Tree = 2,
    /// A version of an image: root tree, parents, time, message, metadata.
    Commit = 3,
}

impl ObjectKind {
    /// The BLAKE3 derive-key context for this kind.
    pub fn context(self) -> &'static str {
        match self {
            ObjectKind::Chunk => "vnfs 2026 chunk v1",
            ObjectKind::Tree => "vnfs 2026 tree v1",
            ObjectKind::Commit => "vnfs 2026 commit v1",
        }
    }

    /// Decodes the on-disk kind byte.
    pub fn from_u8(b: u8) -> Option<ObjectKind> {
        match b {
            1 => Some(ObjectKind::Chunk),
            2 => Some(ObjectKind::Tree),
            3 => Some(ObjectKind::Commit),
            _ => None,
        }
    }

    /// Lower-case name, as used in messages and JSON.
    pub fn name(self) -> &'static str {
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

/// A 32-byte BLAKE3 object id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(pub [u8; 32]);

impl ObjectId {
    /// Hashes `raw` (uncompressed bytes) as an object of `kind`.
    pub fn of(kind: ObjectKind, raw: &[u8]) -> ObjectId {
        let mut h = blake3::Hasher::new_derive_key(kind.context());
        h.update(raw);
        ObjectId(*h.finalize().as_bytes())
    }

    /// Lower-case hexadecimal form (64 characters).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex digits, for tables and messages.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }

    /// Parses a full 64-digit hex id.
    pub fn from_hex(s: &str) -> Option<ObjectId> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out).ok()?;
        Some(ObjectId(out))
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.short())
    }
}

impl serde::Serialize for ObjectId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

/// Ids are already uniformly random, so hashing them again is wasted work:
/// this hasher takes the first eight bytes as the hash.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only ever fed an ObjectId's 32 bytes (via the array's Hash impl,
        // which writes the length first and then the bytes).
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(b);
            self.0 = self.0.rotate_left(5);
        }
    }
}

/// `HashMap`/`HashSet` builder for ids.
pub type IdBuildHasher = std::hash::BuildHasherDefault<IdHasher>;
/// A map keyed by object id.
pub type IdMap<V> = std::collections::HashMap<ObjectId, V, IdBuildHasher>;
/// A set of object ids.
pub type IdSet = std::collections::HashSet<ObjectId, IdBuildHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_domain_separated() {
        let data = b"same bytes";
        let a = ObjectId::of(ObjectKind::Chunk, data);
        let b = ObjectId::of(ObjectKind::Tree, data);
        let c = ObjectId::of(ObjectKind::Commit, data);
        assert_ne!(a, b);
        assert_ne!(b, c);
        assert_ne!(a, c);
    }

    #[test]
    fn hex_round_trip() {
        let id = ObjectId::of(ObjectKind::Chunk, b"x");
        assert_eq!(ObjectId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(ObjectId::from_hex("zz"), None);
        assert_eq!(id.short().len(), 12);
    }
}
