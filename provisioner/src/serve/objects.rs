//! Objects by id: `GET /v1/object/{kind}/{id}` returns an object's stored
//! (possibly zstd-compressed) bytes as they sit in the pack, verified by
//! the client against the id. Ids name content, so replies never change:
//! `ETag` is the id and `Cache-Control` says immutable, which lets any
//! HTTP cache sit in front of the daemon.
//!
//! `POST /v1/objects/{kind}` takes many ids and streams the objects back
//! in one response (frames from `vnfs_node::proto::FrameHeader`), read
//! from the packs on the blocking pool while earlier frames are sent.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use vnfs_node::proto::{self, FrameHeader};
use vnfs_store::pack::Record;
use vnfs_store::{Compression, ObjectId, ObjectKind, Store, StoreError, StoredObject};

use super::Daemon;

/// `Cache-Control` of every object reply.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

fn parse(kind: &str, id: &str) -> Option<(ObjectKind, ObjectId)> {
    Some((proto::parse_kind(kind)?, ObjectId::from_hex(id)?))
}

/// Runs a store read for an object, reloading the store index once on a
/// miss (a commit made since the daemon started). An id stored as another
/// kind is, to the client, missing: a 404, not a server error in the log.
pub(crate) fn lookup<T>(
    d: &Daemon,
    id: &ObjectId,
    kind: ObjectKind,
    read: impl Fn(&Store, &ObjectId, ObjectKind) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let r = match read(&d.store, id, kind) {
        Err(StoreError::Missing { .. }) if d.reload_store() => read(&d.store, id, kind),
        r => r,
    };
    match r {
        Err(StoreError::Corrupt { .. }) if d.store.entry(id).is_some_and(|e| e.kind != kind) => {
            Err(StoreError::Missing { id: *id, kind })
        }
        r => r,
    }
}

/// Reads an object's stored form (see [`lookup`]).
pub fn read(d: &Daemon, id: &ObjectId, kind: ObjectKind) -> Result<StoredObject, StoreError> {
    lookup(d, id, kind, Store::read_stored)
}

/// Reads an object's whole pack record (see [`lookup`]).
fn read_record(d: &Daemon, id: &ObjectId, kind: ObjectKind) -> Result<Record, StoreError> {
    lookup(d, id, kind, Store::read_record)
}

/// `GET /v1/object/{kind}/{id}`.
pub async fn object(
    State(d): State<Arc<Daemon>>,
    Path((kind, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some((kind, id)) = parse(&kind, &id) else {
        return (
            StatusCode::NOT_FOUND,
            "no such object kind or malformed id\n",
        )
            .into_response();
    };
    let etag = format!("\"{}\"", id.to_hex());
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return (
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag),
                (header::CACHE_CONTROL, IMMUTABLE.into()),
            ],
        )
            .into_response();
    }
    // A pread from the page cache is a few microseconds: cheaper inline
    // than a hop to the blocking pool. The record is read whole into one
    // buffer and its stored bytes are sent from there, uncopied.
    match read_record(&d, &id, kind) {
        Ok(rec) => {
            let e = rec.entry;
            let (buf, start) = rec.into_buf();
            let mut r = Response::new(Body::from(Bytes::from(buf).slice(start..)));
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
            if let Ok(v) = HeaderValue::from_str(&etag) {
                h.insert(header::ETAG, v);
            }
            h.insert(
                proto::HDR_COMPRESSION,
                HeaderValue::from_static(proto::compression_name(e.compression)),
            );
            h.insert(proto::HDR_RAW_LENGTH, HeaderValue::from(e.raw_len));
            r
        }
        Err(StoreError::Missing { .. }) => {
            (StatusCode::NOT_FOUND, format!("no {kind} {id}\n")).into_response()
        }
        Err(e) => {
            tracing::error!(%id, %kind, "reading object: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()
        }
    }
}

/// `POST /v1/objects/{kind}`: body = ids (32 bytes each).
pub async fn batch(
    State(d): State<Arc<Daemon>>,
    Path(kind): Path<String>,
    body: Bytes,
) -> Response {
    let Some(kind) = proto::parse_kind(&kind) else {
        return (StatusCode::NOT_FOUND, "no such object kind\n").into_response();
    };
    let Some(ids) = proto::parse_batch(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "body must be 1 to {} object ids of 32 bytes each\n",
                proto::MAX_BATCH
            ),
        )
            .into_response();
    };
    // A small channel bounds memory per request: the reader stays a few
    // objects ahead of the socket.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    tokio::task::spawn_blocking(move || {
        for id in ids {
            let frame = match read(&d, &id, kind) {
                Ok(obj) => {
                    let h = FrameHeader {
                        present: true,
                        compression: obj.compression,
                        raw_len: obj.raw_len,
                        stored_len: obj.data.len() as u32,
                        id,
                    };
                    let mut v = Vec::with_capacity(proto::FRAME_HEADER + obj.data.len());
                    v.extend_from_slice(&h.encode());
                    v.extend_from_slice(&obj.data);
                    v
                }
                Err(e) => {
                    if !matches!(e, StoreError::Missing { .. }) {
                        tracing::error!(%id, %kind, "reading object: {e}");
                    }
                    FrameHeader {
                        present: false,
                        compression: Compression::Raw,
                        raw_len: 0,
                        stored_len: 0,
                        id,
                    }
                    .encode()
                    .to_vec()
                }
            };
            if tx.blocking_send(Bytes::from(frame)).is_err() {
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
