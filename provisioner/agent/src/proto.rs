//! The wire protocol between `vnfs serve` and `vnfs-node`: JSON check-ins
//! and livesync reports, objects by id, and the framing of the batch
//! endpoint. Both sides use these types, so they cannot drift apart.
//!
//! | method and path | body | reply |
//! | --- | --- | --- |
//! | `POST /v1/checkin` | [`CheckinRequest`] | [`CheckinReply`], or [`Refusal`] with 403 (disabled, no image, bad secret) |
//! | `GET /v1/object/{kind}/{id}` | — | the stored bytes; `ETag` = id, `Cache-Control: immutable`, [`HDR_COMPRESSION`], [`HDR_RAW_LENGTH`] |
//! | `POST /v1/objects/{kind}` | ids, 32 bytes each, concatenated | frames, see [`FrameHeader`] |
//! | `POST /v1/delta/{kind}` | groups of base and target ids, see [`crate::delta`] | per group: header, raw lengths, one zstd frame |
//! | `POST /v1/livesync/{mac}` | [`LivesyncReport`] | 204 |
//! | `GET /boot/{mac}` | — | iPXE script |
//! | `GET /boot/{mac}/kernel`, `/boot/{mac}/initrd` | — | the files from the node's image |

use serde::{Deserialize, Serialize};
use vnfs_store::{Compression, ObjectId, ObjectKind};

/// Response header naming how the body of an object is encoded (`zstd` or `raw`).
pub const HDR_COMPRESSION: &str = "x-vnfs-compression";
/// Response header with the uncompressed length of an object.
pub const HDR_RAW_LENGTH: &str = "x-vnfs-raw-length";
/// Most ids one batch request may name (bounds the daemon's work per request).
pub const MAX_BATCH: usize = 4096;
/// Bytes of a batch frame header.
pub const FRAME_HEADER: usize = 1 + 1 + 4 + 4 + 32;

/// A node reporting its provisionary state.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckinRequest {
    /// The NodeID: MAC address of the boot interface.
    pub mac: String,
    /// Provisionary state (`init`, `ready`, or a custom one).
    pub state: String,
    /// Commit the node runs now (empty at first boot).
    #[serde(default)]
    pub commit: String,
    /// The site's shared secret, when the daemon requires one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Free text the node wants logged (an error it hit, say).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// The daemon's answer to a check-in.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckinReply {
    /// The node's host name.
    pub hostname: String,
    /// The VNFS image the node should run.
    pub image: String,
    /// Its newest commit (what a booting node provisions).
    pub commit: String,
    /// The nodescript for the state checked in with.
    pub script: String,
    /// Seconds between check-ins in `ready`.
    pub interval_secs: u64,
    /// Where the master's export tree is mounted on nodes; hybridized paths
    /// become symlinks under `EXPORT_ROOT/COMMIT/`.
    pub export_root: String,
    /// A livesync the node should apply now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub livesync: Option<LivesyncOrder>,
}

/// A request to move a running node to another commit of its image.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LivesyncOrder {
    /// Request number (the node reports back with it).
    pub id: i64,
    /// Commit to move to.
    pub commit: String,
}

/// Why the daemon will not provision a node; the agent prints `error`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Refusal {
    /// Machine-readable reason: `disabled`, `no-image`, `bad-secret`,
    /// `bad-request`, `bad-image`.
    pub reason: String,
    /// A sentence for the node's console.
    pub error: String,
}

/// What a node did with a [`LivesyncOrder`].
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LivesyncReport {
    /// The order's id.
    pub id: i64,
    /// Commit the node runs after the attempt.
    pub commit: String,
    /// Whether the node now runs the ordered commit.
    pub ok: bool,
    /// Paths written (added, modified, metadata).
    pub written: u64,
    /// Paths removed.
    pub removed: u64,
    /// Changed paths left alone because of livesync.skip.
    pub skipped: u64,
    /// Bytes received from the master.
    pub bytes: u64,
    /// What went wrong, when `ok` is false.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// Path segment naming an object kind.
pub fn kind_segment(kind: ObjectKind) -> &'static str {
    kind.name()
}

/// Parses a kind path segment (`chunk`, `tree`, `commit`).
pub fn parse_kind(s: &str) -> Option<ObjectKind> {
    match s {
        "chunk" => Some(ObjectKind::Chunk),
        "tree" => Some(ObjectKind::Tree),
        "commit" => Some(ObjectKind::Commit),
        _ => None,
    }
}

/// Header value for a compression.
pub fn compression_name(c: Compression) -> &'static str {
    match c {
        Compression::Raw => "raw",
        Compression::Zstd => "zstd",
    }
}

/// Parses a [`HDR_COMPRESSION`] value.
pub fn parse_compression(s: &str) -> Option<Compression> {
    match s {
        "raw" => Some(Compression::Raw),
        "zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

/// One frame of a batch reply: this header, then `stored_len` bytes.
///
/// Layout (little endian): status `u8` (0 = present, 1 = missing),
/// compression `u8` (0 raw, 1 zstd), raw length `u32`, stored length `u32`,
/// object id (32 bytes). A missing object has lengths 0 and no data, so a
/// client learns exactly which id the master lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// False when the master does not have the object.
    pub present: bool,
    /// How the data is encoded.
    pub compression: Compression,
    /// Uncompressed length.
    pub raw_len: u32,
    /// Bytes that follow the header.
    pub stored_len: u32,
    /// The object.
    pub id: ObjectId,
}

impl FrameHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; FRAME_HEADER] {
        let mut h = [0u8; FRAME_HEADER];
        h[0] = u8::from(!self.present);
        h[1] = self.compression as u8;
        h[2..6].copy_from_slice(&self.raw_len.to_le_bytes());
        h[6..10].copy_from_slice(&self.stored_len.to_le_bytes());
        h[10..42].copy_from_slice(&self.id.0);
        h
    }

    /// Decodes a header; `None` for unknown status or compression bytes.
    pub fn decode(h: &[u8; FRAME_HEADER]) -> Option<FrameHeader> {
        let present = match h[0] {
            0 => true,
            1 => false,
            _ => return None,
        };
        let compression = match h[1] {
            0 => Compression::Raw,
            1 => Compression::Zstd,
            _ => return None,
        };
        let le32 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let mut id = [0u8; 32];
        id.copy_from_slice(&h[10..42]);
        Some(FrameHeader {
            present,
            compression,
            raw_len: le32(&h[2..6]),
            stored_len: le32(&h[6..10]),
            id: ObjectId(id),
        })
    }
}

/// Splits a batch request body into ids; `None` unless it is a whole
/// number of 32-byte ids, at least one and at most [`MAX_BATCH`].
pub fn parse_batch(body: &[u8]) -> Option<Vec<ObjectId>> {
    if body.is_empty() || !body.len().is_multiple_of(32) || body.len() / 32 > MAX_BATCH {
        return None;
    }
    Some(
        body.chunks_exact(32)
            .map(|c| {
                let mut id = [0u8; 32];
                id.copy_from_slice(c);
                ObjectId(id)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trip() {
        let h = FrameHeader {
            present: true,
            compression: Compression::Zstd,
            raw_len: 65536,
            stored_len: 1234,
            id: ObjectId::of(ObjectKind::Chunk, b"x"),
        };
        assert_eq!(FrameHeader::decode(&h.encode()), Some(h));
        let mut bad = h.encode();
        bad[0] = 7;
        assert_eq!(FrameHeader::decode(&bad), None);
    }

    #[test]
    fn batch_bodies() {
        assert!(parse_batch(&[]).is_none());
        assert!(parse_batch(&[0u8; 33]).is_none());
        assert_eq!(parse_batch(&[1u8; 64]).map(|v| v.len()), Some(2));
        assert!(parse_batch(&vec![0u8; 32 * (MAX_BATCH + 1)]).is_none());
    }
}
