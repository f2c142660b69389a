//! Commit objects: one version of an image.

use std::collections::BTreeMap;

use crate::codec::{DecodeError, Decoder, Encoder};
use crate::id::ObjectId;
use crate::tree::{Entry, EntryKind};

/// A version of an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    /// The root directory: its metadata and (as `EntryKind::Dir`) its tree.
    /// The name is empty.
    pub root: Entry,
    /// Earlier versions this one was made from (none for the first).
    pub parents: Vec<ObjectId>,
    /// Seconds since the epoch; given by the caller so builds reproduce.
    pub timestamp: i64,
    /// Free text.
    pub message: String,
    /// Key/value metadata, e.g. the VNFS configuration and package list.
    pub metadata: BTreeMap<String, String>,
}

impl Commit {
    /// The root tree id.
    pub fn tree(&self) -> ObjectId {
        match self.root.kind {
            EntryKind::Dir { tree } => tree,
            // decode() refuses any other kind, and ingest only makes Dir.
            _ => unreachable!("commit root is always a directory"),
        }
    }

    /// Canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::default();
        e.u8(1); // format version of the commit encoding
        self.root.encode(&mut e);
        e.uvar(self.parents.len() as u64);
        for p in &self.parents {
            e.id(p);
        }
        e.i64(self.timestamp);
        e.bytes(self.message.as_bytes());
        e.uvar(self.metadata.len() as u64);
        for (k, v) in &self.metadata {
            e.bytes(k.as_bytes());
            e.bytes(v.as_bytes());
        }
        e.buf
    }

    /// Decodes and validates a commit.
    pub fn decode(raw: &[u8]) -> Result<Commit, DecodeError> {
        let mut d = Decoder::new(raw);
        let version = d.u8()?;
        if version != 1 {
            return Err(d.invalid(format!("unknown commit encoding version {version}")));
        }
        let root = Entry::decode(&mut d, true)?;
        if !root.name.is_empty() || !matches!(root.kind, EntryKind::Dir { .. }) {
            return Err(d.invalid("commit root is not an unnamed directory"));
        }
        let n = d.len()?;
        let mut parents = Vec::with_capacity(n.min(16));
        for _ in 0..n {
            parents.push(d.id()?);
        }
        let timestamp = d.i64()?;
        let message = utf8(&mut d)?;
        let n = d.len()?;
        let mut metadata = BTreeMap::new();
        let mut last: Option<String> = None;
        for _ in 0..n {
            let k = utf8(&mut d)?;
            let v = utf8(&mut d)?;
            if last.as_ref().is_some_and(|l| *l >= k) {
                return Err(d.invalid("metadata keys not sorted"));
            }
            last = Some(k.clone());
            metadata.insert(k, v);
        }
        if !d.is_empty() {
            return Err(d.invalid("trailing bytes"));
        }
        Ok(Commit {
            root,
            parents,
            timestamp,
            message,
            metadata,
        })
    }
}

fn utf8(d: &mut Decoder<'_>) -> Result<String, DecodeError> {
    let b = d.bytes()?;
    String::from_utf8(b.to_vec()).map_err(|_| d.invalid("text is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Meta;

    #[test]
    fn round_trip() {
        let c = Commit {
            root: Entry {
                name: vec![],
                kind: EntryKind::Dir {
                    tree: ObjectId([7; 32]),
                },
                meta: Meta {
                    mode: 0o755,
                    ..Meta::default()
                },
            },
            parents: vec![ObjectId([1; 32])],
            timestamp: 1_700_000_000,
            message: "hello".into(),
            metadata: [("a".to_string(), "b".to_string())].into_iter().collect(),
        };
        assert_eq!(Commit::decode(&c.encode()).unwrap(), c);
        let mut raw = c.encode();
        raw.push(0);
        assert!(Commit::decode(&raw).is_err());
    }
}
