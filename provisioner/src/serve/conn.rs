//! The daemon's connections. `GET` and `HEAD /v1/object/{kind}/{id}`, the
//! request clients and HTTP caches send for every chunk, are answered here
//! directly: the request head is parsed with `httparse` and the stored
//! bytes go from the pack to the socket with sendfile(2), never through
//! the daemon's memory, as nginx serves static files. A request of any
//! other kind hands the connection, with the bytes already read, to hyper
//! and the axum router for the rest of its life; requests this module
//! does not fully understand (bodies, `Expect`, odd versions, malformed
//! heads) go the same way, so hyper's answers stay the reference.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustix::net::SendFlags;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tower_service::Service;
use vnfs_node::proto;
use vnfs_store::{ObjectId, ObjectKind, StoreError, StoredLocation};

use super::Daemon;
use super::objects::IMMUTABLE;

/// How long a connection may take to send a complete request head,
/// counted from the end of the previous reply (so also the keep-alive
/// idle time, as nginx's default 75 s).
const HEAD_TIMEOUT: Duration = Duration::from_secs(75);
/// How long a reply may wait for the client to take more bytes (nginx's
/// `send_timeout` is 60 s too): a client that stops reading must not hold
/// the connection, or a shutdown, forever.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest request head the fast path buffers before letting hyper judge.
const MAX_HEAD: usize = 16 << 10;
/// Headers a fast-path request may carry.
const MAX_HEADERS: usize = 32;

/// Accepts connections on `listener` until `shutdown` completes; then stops
/// accepting, lets replies in flight finish, closes idle connections and
/// returns once every connection has ended.
pub async fn serve(
    listener: TcpListener,
    d: Arc<Daemon>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = super::router(Arc::clone(&d));
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender; recv() yields None once the
    // last one is gone.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors and the like: retrying at once
                // would spin; hyper waits a second too.
                tracing::error!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Replies go out as soon as they are written: small objects must
        // not wait on Nagle's algorithm for the client's delayed ACK.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
        let conn = Conn {
            d: Arc::clone(&d),
            app: app.clone(),
            peer,
            stop: stop_rx.clone(),
            _alive: alive_tx.clone(),
        };
        tokio::spawn(conn.run(stream));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(alive_tx);
    let _ = alive_rx.recv().await;
    Ok(())
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// One client connection.
struct Conn {
    d: Arc<Daemon>,
    app: Router,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
}

impl Conn {
    async fn run(mut self, mut stream: TcpStream) {
        let mut buf: Vec<u8> = Vec::with_capacity(1024);
        let mut deadline = Instant::now() + HEAD_TIMEOUT;
        loop {
            match parse_head(&buf) {
                Head::Object(mut req) => {
                    // Shutting down: this is the connection's last reply.
                    req.keep_alive &= !*self.stop.borrow();
                    if let Err(e) = self.object(&stream, &req).await {
                        tracing::debug!(peer = %self.peer, "object reply: {e}");
                        return;
                    }
                    buf.drain(..req.head_len);
                    if !req.keep_alive {
                        return close_gracefully(stream).await;
                    }
                    deadline = Instant::now() + HEAD_TIMEOUT;
                }
                Head::Other => return self.hand_off(stream, buf).await,
                Head::Partial if buf.len() > MAX_HEAD => return self.hand_off(stream, buf).await,
                Head::Partial => {
                    let idle = buf.is_empty();
                    if idle && *self.stop.borrow() {
                        return;
                    }
                    let read = tokio::select! {
                        r = stream.read_buf(&mut buf) => r,
                        _ = tokio::time::sleep_until(deadline) => return,
                        _ = self.stop.changed(), if idle => return,
                    };
                    match read {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            }
        }
    }

    /// Answers one object request.
    async fn object(&self, stream: &TcpStream, req: &ObjectRequest) -> io::Result<()> {
        let status_line: &[u8] = if req.http10 {
            b"HTTP/1.0 "
        } else {
            b"HTTP/1.1 "
        };
        let conn_header: &[u8] = match (req.http10, req.keep_alive) {
            (false, false) => b"connection: close\r\n",
            (true, true) => b"connection: keep-alive\r\n",
            _ => b"",
        };
        let mut head = Vec::with_capacity(512);
        head.extend_from_slice(status_line);
        let loc = match locate(&self.d, &req.id, req.kind) {
            Ok(loc) => loc,
            Err(e) => {
                let (status, body) = match e {
                    StoreError::Missing { .. } => {
                        ("404 Not Found", format!("no {} {}\n", req.kind, req.id))
                    }
                    e => {
                        tracing::error!(id = %req.id, kind = %req.kind, "reading object: {e}");
                        ("500 Internal Server Error", format!("{e}\n"))
                    }
                };
                head.extend_from_slice(status.as_bytes());
                head.extend_from_slice(
                    b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ",
                );
                head.extend_from_slice(body.len().to_string().as_bytes());
                head.extend_from_slice(b"\r\n");
                end_head(&mut head, conn_header);
                send(stream, &head, !req.head_only).await?;
                if !req.head_only {
                    send(stream, body.as_bytes(), false).await?;
                }
                return Ok(());
            }
        };
        if req
            .if_none_match
            .as_deref()
            .is_some_and(|v| etag_matches(v, &req.hex))
        {
            head.extend_from_slice(b"304 Not Modified\r\n");
            etag_and_cache(&mut head, &req.hex);
            end_head(&mut head, conn_header);
            return send(stream, &head, false).await;
        }
        let e = loc.entry;
        head.extend_from_slice(b"200 OK\r\ncontent-type: application/octet-stream\r\n");
        etag_and_cache(&mut head, &req.hex);
        for (name, value) in [
            (
                proto::HDR_COMPRESSION,
                proto::compression_name(e.compression),
            ),
            (proto::HDR_RAW_LENGTH, &e.raw_len.to_string()),
            ("content-length", &e.stored_len.to_string()),
        ] {
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        end_head(&mut head, conn_header);
        let body = !req.head_only && e.stored_len > 0;
        // MSG_MORE holds the head back until the body follows, so a small
        // object leaves in one segment.
        send(stream, &head, body).await?;
        if body {
            send_file(stream, &loc.file, loc.offset, u64::from(e.stored_len)).await?;
        }
        Ok(())
    }

    /// Serves the rest of the connection with hyper and the router,
    /// starting with the bytes already read.
    async fn hand_off(mut self, stream: TcpStream, read: Vec<u8>) {
        let io = TokioIo::new(Prefixed {
            pre: read,
            at: 0,
            inner: stream,
        });
        let (app, peer) = (self.app.clone(), self.peer);
        let svc =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                // The router is always ready: calling it needs no poll_ready.
                app.clone().call(req)
            });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEAD_TIMEOUT)
            .serve_connection(io, svc);
        tokio::pin!(conn);
        let done = tokio::select! {
            // The connection first: its first poll takes in a request
            // already buffered, which a graceful shutdown then answers.
            biased;
            r = conn.as_mut() => Some(r),
            _ = self.stop.wait_for(|s| *s) => None,
        };
        let result = match done {
            Some(r) => r,
            None => {
                conn.as_mut().graceful_shutdown();
                // A client that stopped reading must not hold the
                // shutdown forever.
                match tokio::time::timeout(SEND_TIMEOUT, conn).await {
                    Ok(r) => r,
                    Err(_) => {
                        tracing::debug!(peer = %self.peer, "dropped at shutdown: the client took no bytes");
                        return;
                    }
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(peer = %self.peer, "connection: {e}");
        }
    }
}

/// How long a closing connection's unread input is drained.
const LINGER: Duration = Duration::from_secs(2);

/// Closes after the last reply without losing it: shuts the sending side,
/// then reads and discards what the client still sends (pipelined
/// requests) until it closes too or [`LINGER`] passes. Dropping a socket
/// with unread input makes Linux send a reset, which can destroy a reply
/// the client has not read yet.
async fn close_gracefully(mut stream: TcpStream) {
    use tokio::io::AsyncWriteExt;
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut sink = [0u8; 4096];
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Finds an object, reloading the store index once on a miss (a commit
/// made since the daemon started).
fn locate(d: &Daemon, id: &ObjectId, kind: ObjectKind) -> Result<StoredLocation, StoreError> {
    super::objects::lookup(d, id, kind, vnfs_store::Store::locate_stored)
}

/// Whether an `If-None-Match` value names the object whose id is `hex`
/// (or is `*`).
fn etag_matches(value: &str, hex: &str) -> bool {
    let names = |tag: &str| {
        tag.strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .is_some_and(|t| t == hex)
    };
    value
        .split(',')
        .map(str::trim)
        .any(|v| v == "*" || names(v) || v.strip_prefix("W/").is_some_and(names))
}

/// Appends `etag` and `cache-control` for an object whose id is `hex`.
fn etag_and_cache(head: &mut Vec<u8>, hex: &str) {
    head.extend_from_slice(b"etag: \"");
    head.extend_from_slice(hex.as_bytes());
    head.extend_from_slice(b"\"\r\ncache-control: ");
    head.extend_from_slice(IMMUTABLE.as_bytes());
    head.extend_from_slice(b"\r\n");
}

/// Appends the `connection` header if any, `date`, and the blank line.
fn end_head(head: &mut Vec<u8>, conn_header: &[u8]) {
    head.extend_from_slice(conn_header);
    head.extend_from_slice(b"date: ");
    http_date(head);
    head.extend_from_slice(b"\r\n\r\n");
}

/// Appends the current time as an HTTP date, formatted once a second.
fn http_date(out: &mut Vec<u8>) {
    thread_local! {
        static DATE: std::cell::RefCell<(u64, String)> = const {
            std::cell::RefCell::new((u64::MAX, String::new()))
        };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs {
            *d = (secs, httpdate::fmt_http_date(now));
        }
        out.extend_from_slice(d.1.as_bytes());
    });
}

/// What a buffered request head turned out to be.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// Not complete yet.
    Partial,
    /// An object request the fast path answers.
    Object(ObjectRequest),
    /// Anything else: hyper's to answer.
    Other,
}

/// A `GET`/`HEAD` of one object.
#[derive(Debug, PartialEq, Eq)]
struct ObjectRequest {
    /// Bytes of the head (the request has no body).
    head_len: usize,
    head_only: bool,
    kind: ObjectKind,
    id: ObjectId,
    /// The id as the request spelled it: lowercase hex, which is also the
    /// `ETag`.
    hex: String,
    http10: bool,
    keep_alive: bool,
    if_none_match: Option<String>,
}

fn parse_head(buf: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Other,
    };
    let head_only = match req.method {
        Some("GET") => false,
        Some("HEAD") => true,
        _ => return Head::Other,
    };
    // Malformed ids and unknown kinds get the router's own 404.
    let Some((kind, id)) = req
        .path
        .and_then(|p| p.strip_prefix("/v1/object/"))
        .and_then(|p| p.split_once('/'))
        .and_then(|(k, i)| Some((proto::parse_kind(k)?, i)))
    else {
        return Head::Other;
    };
    // Only the canonical spelling: anything else gets the router's answer.
    let canonical = id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let Some(parsed) = ObjectId::from_hex(id).filter(|_| canonical) else {
        return Head::Other;
    };
    let http10 = req.version == Some(0);
    let (mut close, mut keep_alive_token) = (false, false);
    let mut if_none_match: Option<String> = None;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("connection") {
            let Ok(v) = std::str::from_utf8(h.value) else {
                return Head::Other;
            };
            for token in v.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive_token = true;
                } else if token.eq_ignore_ascii_case("upgrade") {
                    return Head::Other;
                }
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            if h.value != b"0" {
                return Head::Other;
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return Head::Other;
        } else if name.eq_ignore_ascii_case("if-none-match") {
            let Ok(v) = std::str::from_utf8(h.value) else {
                return Head::Other;
            };
            // Several header lines are one comma-separated list.
            match &mut if_none_match {
                Some(all) => {
                    all.push_str(", ");
                    all.push_str(v);
                }
                None => if_none_match = Some(v.to_owned()),
            }
        }
    }
    // `close` wins whatever the order; HTTP/1.0 keeps the connection only
    // when asked to.
    let keep_alive = !close && (!http10 || keep_alive_token);
    Head::Object(ObjectRequest {
        head_len,
        head_only,
        kind,
        hex: id.to_owned(),
        id: parsed,
        http10,
        keep_alive,
        if_none_match,
    })
}

/// Writes all of `data`; `more` tells the kernel more follows at once.
async fn send(stream: &TcpStream, mut data: &[u8], more: bool) -> io::Result<()> {
    let flags = if more {
        SendFlags::MORE | SendFlags::NOSIGNAL
    } else {
        SendFlags::NOSIGNAL
    };
    while !data.is_empty() {
        writable(stream).await?;
        match stream.try_io(Interest::WRITABLE, || {
            rustix::net::send(stream, data, flags).map_err(io::Error::from)
        }) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Waits until the socket takes more bytes, at most [`SEND_TIMEOUT`].
async fn writable(stream: &TcpStream) -> io::Result<()> {
    match tokio::time::timeout(SEND_TIMEOUT, stream.writable()).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client took no bytes for 60 s",
        )),
    }
}

/// Sends `len` bytes of `file` from `offset` with sendfile(2).
async fn send_file(stream: &TcpStream, file: &File, mut offset: u64, len: u64) -> io::Result<()> {
    let end = offset + len;
    while offset < end {
        writable(stream).await?;
        let want = usize::try_from(end - offset)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        match stream.try_io(Interest::WRITABLE, || {
            rustix::fs::sendfile(stream, file, Some(&mut offset), want).map_err(io::Error::from)
        }) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "pack ended before the object did",
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A stream that first yields bytes already read from it.
struct Prefixed {
    pre: Vec<u8>,
    at: usize,
    inner: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.pre.len() {
            let n = (this.pre.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.pre[this.at..this.at + n]);
            this.at += n;
            if this.at == this.pre.len() {
                this.pre = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn object(head: &str) -> ObjectRequest {
        match parse_head(head.as_bytes()) {
            Head::Object(r) => r,
            other => panic!("{head:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn object_get_and_head_take_the_fast_path() {
        let head = format!("GET /v1/object/chunk/{ID} HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = object(&head);
        assert_eq!(r.head_len, head.len());
        assert_eq!(r.kind, ObjectKind::Chunk);
        assert_eq!(r.id.to_hex(), ID);
        assert!(r.keep_alive && !r.head_only && !r.http10);
        let r = object(&format!("HEAD /v1/object/tree/{ID} HTTP/1.1\r\n\r\n"));
        assert!(r.head_only);
        assert_eq!(r.kind, ObjectKind::Tree);
    }

    #[test]
    fn connection_header_and_version_decide_keep_alive() {
        let r = object(&format!(
            "GET /v1/object/chunk/{ID} HTTP/1.1\r\nConnection: Close\r\n\r\n"
        ));
        assert!(!r.keep_alive);
        let r = object(&format!("GET /v1/object/chunk/{ID} HTTP/1.0\r\n\r\n"));
        assert!(r.http10 && !r.keep_alive);
        let r = object(&format!(
            "GET /v1/object/chunk/{ID} HTTP/1.0\r\nconnection: keep-alive\r\n\r\n"
        ));
        assert!(r.http10 && r.keep_alive);
        // `close` wins in any order, and over a separate keep-alive line.
        for headers in [
            "Connection: close, keep-alive\r\n",
            "Connection: keep-alive, close\r\n",
            "Connection: keep-alive\r\nConnection: close\r\n",
        ] {
            for version in ["1.0", "1.1"] {
                let r = object(&format!(
                    "GET /v1/object/chunk/{ID} HTTP/{version}\r\n{headers}\r\n"
                ));
                assert!(!r.keep_alive, "{version} {headers:?}");
            }
        }
    }

    #[test]
    fn everything_else_goes_to_hyper() {
        for head in [
            format!("POST /v1/object/chunk/{ID} HTTP/1.1\r\n\r\n"),
            format!("GET /v1/object/chunk/{ID}?x=1 HTTP/1.1\r\n\r\n"),
            format!("GET /v1/object/nosuchkind/{ID} HTTP/1.1\r\n\r\n"),
            "GET /v1/object/chunk/0011 HTTP/1.1\r\n\r\n".to_string(),
            format!(
                "GET /v1/object/chunk/{} HTTP/1.1\r\n\r\n",
                ID.to_uppercase()
            ),
            "GET /boot/00:11:22:33:44:55 HTTP/1.1\r\n\r\n".to_string(),
            format!("GET /v1/object/chunk/{ID} HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
            format!("GET /v1/object/chunk/{ID} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            format!("GET /v1/object/chunk/{ID} HTTP/1.1\r\nExpect: 100-continue\r\n\r\n"),
            format!("GET /v1/object/chunk/{ID} HTTP/1.1\r\nConnection: Upgrade\r\n\r\n"),
            "GARBAGE\r\n\r\n".to_string(),
        ] {
            assert_eq!(parse_head(head.as_bytes()), Head::Other, "{head:?}");
        }
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("x-{i}: y\r\n"))
            .collect();
        let head = format!("GET /v1/object/chunk/{ID} HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse_head(head.as_bytes()), Head::Other);
    }

    #[test]
    fn incomplete_heads_wait_for_more() {
        let head = format!("GET /v1/object/chunk/{ID} HTTP/1.1\r\nHost: x\r\n\r\n");
        for n in 0..head.len() {
            assert_eq!(
                parse_head(&head.as_bytes()[..n]),
                Head::Partial,
                "{n} bytes"
            );
        }
    }

    #[test]
    fn pipelined_requests_are_taken_one_at_a_time() {
        let one = format!("GET /v1/object/chunk/{ID} HTTP/1.1\r\n\r\n");
        let two = format!("{one}HEAD /v1/object/chunk/{ID} HTTP/1.1\r\n\r\n");
        let r = object(&two);
        assert_eq!(r.head_len, one.len());
        assert!(!r.head_only);
    }

    #[test]
    fn if_none_match_lists_and_weak_tags() {
        let etag = format!("\"{ID}\"");
        assert!(etag_matches(&etag, ID));
        assert!(etag_matches(&format!("\"x\", W/{etag}"), ID));
        assert!(etag_matches("*", ID));
        assert!(!etag_matches("\"x\"", ID));
        assert!(!etag_matches(ID, ID));
        // Several If-None-Match lines are one list.
        let r = object(&format!(
            "GET /v1/object/chunk/{ID} HTTP/1.1\r\nIf-None-Match: \"x\"\r\nIf-None-Match: {etag}\r\n\r\n"
        ));
        assert!(etag_matches(r.if_none_match.as_deref().unwrap(), ID));
    }
}
