//! Delta transfer of objects for livesync: `POST /v1/delta/{kind}`.
//!
//! A node moving to a new commit already holds the old version of every
//! changed file. It names, per *group*, the objects it has (the *bases*,
//! e.g. the chunks of a file's old version) and the objects it lacks (the
//! *targets*, the new version's new chunks). The daemon answers each group
//! with one zstd frame of the targets' raw bytes, concatenated, compressed
//! with the bases' raw bytes, concatenated, as zstd's reference prefix
//! (the `--patch-from` technique). A rebuilt binary compresses to a
//! fraction of its plain zstd size that way. The node rebuilds the prefix
//! from its own cache (whose objects were verified when they were
//! written), decompresses, splits by the raw lengths the frame lists and
//! checks every piece against its id before it is stored: a wrong base or
//! a damaged frame can only produce objects that fail verification.
//!
//! Request body (little endian), repeated per group:
//! `n_base: u32, n_target: u32, n_base ids, n_target ids` (32 bytes each).
//! At most [`MAX_IDS`] ids in all, at least one target per group.
//!
//! Reply: per group, in request order, a [`DeltaHeader`] (9 bytes), then
//! `count` raw lengths (`u32` each, one per target), then `stored_len`
//! bytes. Status `delta`: one zstd frame made with the bases as prefix;
//! `plain`: one zstd frame without a prefix (the group had no bases, or
//! the daemon lacks one of them, or they exceed [`MAX_BASE`]); `missing`:
//! `count` is 0 and the 32 bytes are the id of a target the daemon lacks.

use vnfs_store::{ObjectId, ObjectKind};

/// Most ids (bases and targets together) in one request.
pub const MAX_IDS: usize = 8192;
/// Most raw bytes of bases the daemon uses as one group's prefix; a group
/// with more is compressed without one.
pub const MAX_BASE: u64 = 32 << 20;
/// Most raw bytes of targets in one group (bounds the daemon's memory).
pub const MAX_TARGET: u64 = 8 << 20;
/// Bytes of a [`DeltaHeader`].
pub const DELTA_HEADER: usize = 1 + 4 + 4;
/// zstd level of delta frames: levels from 9 up search the reference far
/// better than the store's level 3 (a rebuilt library: about 25% smaller
/// again), and a livesync is rare enough to spend that CPU on.
pub const LEVEL: i32 = 9;

/// One group of a delta request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Group {
    /// Objects the node has, in prefix order.
    pub bases: Vec<ObjectId>,
    /// Objects the node wants, in frame order.
    pub targets: Vec<ObjectId>,
}

/// How a group's reply is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum DeltaStatus {
    /// zstd frame with the bases as reference prefix.
    Delta = 0,
    /// zstd frame without a prefix.
    Plain = 1,
    /// The daemon lacks a target; its id follows.
    Missing = 2,
}

/// The header of a group's reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeltaHeader {
    /// Encoding.
    pub status: DeltaStatus,
    /// Number of raw lengths that follow (= targets; 0 when missing).
    pub count: u32,
    /// Bytes after the raw lengths.
    pub stored_len: u32,
}

impl DeltaHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; DELTA_HEADER] {
        let mut h = [0u8; DELTA_HEADER];
        h[0] = self.status as u8;
        h[1..5].copy_from_slice(&self.count.to_le_bytes());
        h[5..9].copy_from_slice(&self.stored_len.to_le_bytes());
        h
    }

    /// Decodes a header; `None` for an unknown status.
    pub fn decode(h: &[u8; DELTA_HEADER]) -> Option<DeltaHeader> {
        let status = match h[0] {
            0 => DeltaStatus::Delta,
            1 => DeltaStatus::Plain,
            2 => DeltaStatus::Missing,
            _ => return None,
        };
        Some(DeltaHeader {
            status,
            count: u32::from_le_bytes([h[1], h[2], h[3], h[4]]),
            stored_len: u32::from_le_bytes([h[5], h[6], h[7], h[8]]),
        })
    }
}

/// Encodes a request body.
pub fn encode_request(groups: &[Group]) -> Vec<u8> {
    let n: usize = groups
        .iter()
        .map(|g| 8 + 32 * (g.bases.len() + g.targets.len()))
        .sum();
    let mut out = Vec::with_capacity(n);
    for g in groups {
        out.extend_from_slice(&(g.bases.len() as u32).to_le_bytes());
        out.extend_from_slice(&(g.targets.len() as u32).to_le_bytes());
        for id in g.bases.iter().chain(&g.targets) {
            out.extend_from_slice(&id.0);
        }
    }
    out
}

/// Ids a group adds to a request (for keeping under [`MAX_IDS`]).
pub fn ids_in(g: &Group) -> usize {
    g.bases.len() + g.targets.len()
}

/// Parses a request body; `None` unless it is well formed and within
/// [`MAX_IDS`].
pub fn parse_request(body: &[u8]) -> Option<Vec<Group>> {
    let mut groups = Vec::new();
    let mut rest = body;
    let mut total = 0usize;
    let id_at = |b: &[u8], i: usize| {
        let mut id = [0u8; 32];
        id.copy_from_slice(&b[i * 32..(i + 1) * 32]);
        ObjectId(id)
    };
    while !rest.is_empty() {
        if rest.len() < 8 {
            return None;
        }
        let nb = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let nt = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        total = total.checked_add(nb)?.checked_add(nt)?;
        if nt == 0 || total > MAX_IDS {
            return None;
        }
        let ids = &rest[8..];
        let len = (nb + nt) * 32;
        if ids.len() < len {
            return None;
        }
        groups.push(Group {
            bases: (0..nb).map(|i| id_at(ids, i)).collect(),
            targets: (nb..nb + nt).map(|i| id_at(ids, i)).collect(),
        });
        rest = &ids[len..];
    }
    (!groups.is_empty()).then_some(groups)
}

/// zstd window log that lets a frame reach back over the whole prefix.
fn window_log(prefix: usize, content: usize) -> u32 {
    let total = (prefix + content).max(1 << 10) as u64;
    (64 - (total - 1).leading_zeros()).clamp(10, 27)
}

/// Compresses `content` with `prefix` (may be empty) as zstd's reference
/// prefix, at [`LEVEL`].
pub fn compress(prefix: &[u8], content: &[u8]) -> std::io::Result<Vec<u8>> {
    use zstd::zstd_safe::{CCtx, CParameter};
    let err = |what: &str, code: usize| {
        std::io::Error::other(format!(
            "zstd {what}: {}",
            zstd::zstd_safe::get_error_name(code)
        ))
    };
    let mut cctx = CCtx::try_create().ok_or_else(|| std::io::Error::other("zstd: no memory"))?;
    cctx.set_parameter(CParameter::CompressionLevel(LEVEL))
        .map_err(|c| err("level", c))?;
    cctx.set_parameter(CParameter::WindowLog(window_log(
        prefix.len(),
        content.len(),
    )))
    .map_err(|c| err("window", c))?;
    cctx.set_parameter(CParameter::ContentSizeFlag(true))
        .map_err(|c| err("content size", c))?;
    if !prefix.is_empty() {
        cctx.set_parameter(CParameter::EnableLongDistanceMatching(true))
            .map_err(|c| err("long distance matching", c))?;
        cctx.ref_prefix(prefix).map_err(|c| err("prefix", c))?;
    }
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(content.len()));
    cctx.compress2(&mut out, content)
        .map_err(|c| err("compress", c))?;
    Ok(out)
}

/// Decompresses a frame made by [`compress`] with the same `prefix`;
/// fails unless it yields exactly `raw_len` bytes.
pub fn decompress(prefix: &[u8], frame: &[u8], raw_len: usize) -> std::io::Result<Vec<u8>> {
    use zstd::zstd_safe::{DCtx, DParameter};
    let err = |what: &str, code: usize| {
        std::io::Error::other(format!(
            "zstd {what}: {}",
            zstd::zstd_safe::get_error_name(code)
        ))
    };
    let mut dctx = DCtx::try_create().ok_or_else(|| std::io::Error::other("zstd: no memory"))?;
    dctx.set_parameter(DParameter::WindowLogMax(window_log(prefix.len(), raw_len)))
        .map_err(|c| err("window", c))?;
    if !prefix.is_empty() {
        dctx.ref_prefix(prefix).map_err(|c| err("prefix", c))?;
    }
    let mut out = Vec::with_capacity(raw_len);
    let n = dctx
        .decompress(&mut out, frame)
        .map_err(|c| err("decompress", c))?;
    if n != raw_len {
        return Err(std::io::Error::other(format!(
            "{n} bytes after decompression, expected {raw_len}"
        )));
    }
    Ok(out)
}

/// Splits a group's decompressed bytes by the raw lengths and checks each
/// piece against its target id; returns the pieces, or the first target
/// whose bytes do not match.
pub fn split_and_verify<'a>(
    kind: ObjectKind,
    targets: &[ObjectId],
    lengths: &[u32],
    raw: &'a [u8],
) -> Result<Vec<&'a [u8]>, ObjectId> {
    let mut out = Vec::with_capacity(targets.len());
    let mut at = 0usize;
    for (id, &len) in targets.iter().zip(lengths) {
        let end = at + len as usize;
        let Some(piece) = raw.get(at..end) else {
            return Err(*id);
        };
        if ObjectId::of(kind, piece) != *id {
            return Err(*id);
        }
        out.push(piece);
        at = end;
    }
    if targets.len() != lengths.len() || at != raw.len() {
        return Err(targets.get(out.len()).copied().unwrap_or(ObjectId([0; 32])));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId([n; 32])
    }

    #[test]
    fn request_round_trip_and_limits() {
        let groups = vec![
            Group {
                bases: vec![id(1), id(2)],
                targets: vec![id(3)],
            },
            Group {
                bases: vec![],
                targets: vec![id(4), id(5)],
            },
        ];
        let body = encode_request(&groups);
        assert_eq!(body.len(), 2 * 8 + 5 * 32);
        assert_eq!(parse_request(&body), Some(groups));
        assert_eq!(parse_request(&[]), None);
        assert_eq!(parse_request(&body[..body.len() - 1]), None);
        // A group without targets is malformed.
        let empty = encode_request(&[Group {
            bases: vec![id(1)],
            targets: vec![],
        }]);
        assert_eq!(parse_request(&empty), None);
        let big = encode_request(&[Group {
            bases: vec![],
            targets: vec![id(1); MAX_IDS + 1],
        }]);
        assert_eq!(parse_request(&big), None);
    }

    #[test]
    fn header_round_trip() {
        let h = DeltaHeader {
            status: DeltaStatus::Delta,
            count: 7,
            stored_len: 1 << 20,
        };
        assert_eq!(DeltaHeader::decode(&h.encode()), Some(h));
        let mut bad = h.encode();
        bad[0] = 9;
        assert_eq!(DeltaHeader::decode(&bad), None);
    }

    /// Pseudo-random bytes that zstd cannot compress on their own.
    fn noise(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn a_small_edit_of_a_large_object_costs_little_with_the_old_as_prefix() {
        let old = noise(1, 3 << 20);
        let mut new = old.clone();
        new[1_000_000..1_000_100].copy_from_slice(&noise(2, 100));
        let delta = compress(&old, &new).unwrap();
        assert!(delta.len() < 4096, "delta is {} bytes", delta.len());
        assert_eq!(decompress(&old, &delta, new.len()).unwrap(), new);
        // Without the prefix the same bytes do not compress.
        let plain = compress(&[], &new).unwrap();
        assert!(plain.len() > 3 << 20, "plain is {} bytes", plain.len());
        assert_eq!(decompress(&[], &plain, new.len()).unwrap(), new);
        // The wrong prefix or length is an error or different bytes,
        // never a silent success.
        let wrong = noise(3, 3 << 20);
        assert!(
            decompress(&wrong, &delta, new.len())
                .map(|b| b != new)
                .unwrap_or(true)
        );
        assert!(decompress(&old, &delta, new.len() - 1).is_err());
    }

    #[test]
    fn pieces_are_checked_against_their_ids() {
        let a = b"first".to_vec();
        let b = b"second".to_vec();
        let ids = [
            ObjectId::of(ObjectKind::Chunk, &a),
            ObjectId::of(ObjectKind::Chunk, &b),
        ];
        let raw = [a.clone(), b.clone()].concat();
        let pieces = split_and_verify(ObjectKind::Chunk, &ids, &[5, 6], &raw).unwrap();
        assert_eq!(pieces, vec![&a[..], &b[..]]);
        assert_eq!(
            split_and_verify(ObjectKind::Chunk, &ids, &[6, 5], &raw),
            Err(ids[0])
        );
        let mut bad = raw.clone();
        bad[7] ^= 1;
        assert_eq!(
            split_and_verify(ObjectKind::Chunk, &ids, &[5, 6], &bad),
            Err(ids[1])
        );
        assert_eq!(
            split_and_verify(ObjectKind::Chunk, &ids, &[5, 5], &raw),
            Err(ids[1])
        );
    }
}
