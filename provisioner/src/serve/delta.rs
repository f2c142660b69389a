//! `POST /v1/delta/{kind}`: livesync's delta transfer. Per group of the
//! request the daemon compresses the targets' raw bytes with the bases'
//! raw bytes as zstd reference prefix and streams one frame back (format
//! and codec: `vnfs_node::delta`). Compression runs on the blocking pool,
//! at most [`Slots`] groups at a time, and finished frames are kept in a
//! small cache: every node moving between the same two commits asks for
//! the same groups, so a livesync of many nodes compresses each once.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use vnfs_node::delta::{self, DeltaHeader, DeltaStatus, Group};
use vnfs_node::proto;
use vnfs_store::{ObjectId, ObjectKind, StoreError};

use super::{Daemon, lock};

/// Bytes of finished frames the cache keeps.
const CACHE_BYTES: usize = 32 << 20;

/// Groups compressed at once: one per core, at most four, so a livesync of
/// many nodes cannot take every core or much memory (each group holds up
/// to `MAX_BASE + MAX_TARGET` raw bytes while it is compressed).
pub struct Slots(pub tokio::sync::Semaphore);

impl Default for Slots {
    fn default() -> Self {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 4);
        Slots(tokio::sync::Semaphore::new(n))
    }
}

/// Finished frames by request group, dropped oldest first past
/// [`CACHE_BYTES`].
#[derive(Default)]
pub struct FrameCache {
    frames: HashMap<[u8; 32], Bytes>,
    order: VecDeque<[u8; 32]>,
    bytes: usize,
}

impl FrameCache {
    fn get(&self, key: &[u8; 32]) -> Option<Bytes> {
        self.frames.get(key).cloned()
    }

    fn insert(&mut self, key: [u8; 32], frame: Bytes) {
        if frame.len() > CACHE_BYTES / 4 || self.frames.contains_key(&key) {
            return;
        }
        self.bytes += frame.len();
        self.frames.insert(key, frame);
        self.order.push_back(key);
        while self.bytes > CACHE_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(f) = self.frames.remove(&old) {
                self.bytes -= f.len();
            }
        }
    }
}

/// A group's cache key: its kind and ids.
fn key(kind: ObjectKind, g: &Group) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&[kind as u8, delta::LEVEL as u8]);
    h.update(&delta::encode_request(std::slice::from_ref(g)));
    *h.finalize().as_bytes()
}

/// Raw bytes of the objects the store has, and whether it has them all.
fn raw_total(d: &Daemon, ids: &[ObjectId]) -> (u64, bool) {
    let mut total = 0u64;
    for id in ids {
        match d.store.entry(id) {
            Some(e) => total += u64::from(e.raw_len),
            None => return (total, false),
        }
    }
    (total, true)
}

/// Reads and verifies an object's raw bytes, reloading the index once.
fn raw(d: &Daemon, id: &ObjectId, kind: ObjectKind) -> Result<Vec<u8>, StoreError> {
    let obj = super::objects::read(d, id, kind)?;
    obj.decode(d.store.root())
}

fn missing_frame(id: &ObjectId) -> Bytes {
    let h = DeltaHeader {
        status: DeltaStatus::Missing,
        count: 0,
        stored_len: 32,
    };
    let mut v = h.encode().to_vec();
    v.extend_from_slice(&id.0);
    Bytes::from(v)
}

/// Builds one group's frame (cached).
fn frame(d: &Daemon, kind: ObjectKind, g: &Group) -> Result<Bytes, String> {
    let k = key(kind, g);
    if let Some(f) = lock(&d.delta_cache).get(&k) {
        return Ok(f);
    }
    let mut lengths = Vec::with_capacity(g.targets.len());
    let mut content = Vec::new();
    for id in &g.targets {
        match raw(d, id, kind) {
            Ok(r) => {
                lengths.push(r.len() as u32);
                content.extend_from_slice(&r);
            }
            // The node fetches a target the daemon cannot supply by the
            // plain batch path, which names the missing or damaged object.
            Err(e) => {
                if !matches!(e, StoreError::Missing { .. }) {
                    tracing::error!(%id, %kind, "reading a delta target: {e}");
                }
                return Ok(missing_frame(id));
            }
        }
    }
    let (base_len, have_all) = raw_total(d, &g.bases);
    let mut prefix = Vec::new();
    let mut status = DeltaStatus::Plain;
    if !g.bases.is_empty() && have_all && base_len <= delta::MAX_BASE {
        status = DeltaStatus::Delta;
        prefix.reserve(base_len as usize);
        for id in &g.bases {
            match raw(d, id, kind) {
                Ok(r) => prefix.extend_from_slice(&r),
                Err(e) => {
                    tracing::warn!(%id, %kind, "delta base unusable, sending plain: {e}");
                    status = DeltaStatus::Plain;
                    prefix.clear();
                    break;
                }
            }
        }
    }
    let z = delta::compress(&prefix, &content).map_err(|e| e.to_string())?;
    let h = DeltaHeader {
        status,
        count: lengths.len() as u32,
        stored_len: z.len() as u32,
    };
    let mut v = Vec::with_capacity(delta::DELTA_HEADER + 4 * lengths.len() + z.len());
    v.extend_from_slice(&h.encode());
    for l in &lengths {
        v.extend_from_slice(&l.to_le_bytes());
    }
    v.extend_from_slice(&z);
    let f = Bytes::from(v);
    lock(&d.delta_cache).insert(k, f.clone());
    Ok(f)
}

/// `POST /v1/delta/{kind}`: body = groups (see `vnfs_node::delta`).
pub async fn delta(
    State(d): State<Arc<Daemon>>,
    Path(kind): Path<String>,
    body: Bytes,
) -> Response {
    let Some(kind) = proto::parse_kind(&kind) else {
        return (StatusCode::NOT_FOUND, "no such object kind\n").into_response();
    };
    let Some(groups) = delta::parse_request(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "body must be groups of object ids (at most {} ids, at least one target per group)\n",
                delta::MAX_IDS
            ),
        )
            .into_response();
    };
    for g in &groups {
        let (t, _) = raw_total(&d, &g.targets);
        if t > delta::MAX_TARGET {
            return (
                StatusCode::BAD_REQUEST,
                format!(
                    "a group asks for {t} bytes of targets; at most {} per group\n",
                    delta::MAX_TARGET
                ),
            )
                .into_response();
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(2);
    tokio::spawn(async move {
        for g in groups {
            let Ok(_slot) = d.delta_slots.0.acquire().await else {
                return;
            };
            let d2 = d.clone();
            let f = match tokio::task::spawn_blocking(move || frame(&d2, kind, &g)).await {
                Ok(Ok(f)) => f,
                Ok(Err(e)) => {
                    // Ending the stream early makes the node retry.
                    tracing::error!(%kind, "building a delta frame: {e}");
                    return;
                }
                Err(e) => {
                    tracing::error!(%kind, "delta worker: {e}");
                    return;
                }
            };
            if tx.send(f).await.is_err() {
                return; // the client went away
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_keeps_recent_frames_within_its_budget() {
        let mut c = FrameCache::default();
        let big = Bytes::from(vec![0u8; CACHE_BYTES / 4]);
        for i in 0..5u8 {
            c.insert([i; 32], big.clone());
        }
        assert!(c.bytes <= CACHE_BYTES);
        assert!(c.get(&[0; 32]).is_none(), "oldest dropped");
        assert!(c.get(&[4; 32]).is_some(), "newest kept");
        // Frames too large to be worth keeping are not kept.
        c.insert([9; 32], Bytes::from(vec![0u8; CACHE_BYTES / 4 + 1]));
        assert!(c.get(&[9; 32]).is_none());
    }
}
