//! The daemon at the HTTP level, over raw sockets: object requests answered
//! by the sendfile path and by the router after a connection was handed
//! over give the same replies; keep-alive, pipelining, `HEAD`,
//! `If-None-Match`, HTTP/1.0 and `Connection: close`; graceful shutdown
//! closes idle connections.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common;
use crate::fixture::*;
use vnfs_store::{EntryKind, Extent, ObjectId, ObjectKind};

/// One parsed reply.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// Reads one reply; `head_only` for replies to `HEAD` (no body follows
/// whatever content-length says).
fn read_reply(r: &mut BufReader<TcpStream>, head_only: bool) -> Reply {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = BTreeMap::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap();
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let mut body = Vec::new();
    if !head_only && status != 304 {
        if let Some(n) = headers.get("content-length") {
            body.resize(n.parse().unwrap(), 0);
            r.read_exact(&mut body).unwrap();
        } else {
            assert_eq!(
                headers.get("transfer-encoding").map(String::as_str),
                Some("chunked")
            );
            loop {
                line.clear();
                r.read_line(&mut line).unwrap();
                let n = usize::from_str_radix(line.trim(), 16).unwrap();
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn connect(d: &Daemon) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: master\r\n{extra}\r\n")
}

/// True once the server has closed the connection (EOF, nothing pending).
fn closed_by_server(r: &mut BufReader<TcpStream>) -> bool {
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).is_ok() && rest.is_empty()
}

/// A site with one image of several chunks; returns the site and chunk ids.
fn site_with_chunks() -> (Site, ObjectId, Vec<ObjectId>) {
    let m = Site::new();
    let src = m.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("big"), common::noise(3_000_000, 7)).unwrap();
    std::fs::write(src.join("text"), "compressible ".repeat(20_000)).unwrap();
    let commit = m.commit_image("img", &src, &[]);
    let store = m.store();
    let root = store.read_commit(&commit).unwrap().tree();
    let mut chunks = Vec::new();
    store
        .walk(&root, &mut |_, e| {
            if let EntryKind::File { extents, .. } = &e.kind {
                for x in extents {
                    if let Extent::Data { id, .. } = x {
                        chunks.push(*id);
                    }
                }
            }
            Ok(true)
        })
        .unwrap();
    assert!(
        chunks.len() >= 3,
        "expected several chunks, got {}",
        chunks.len()
    );
    (m, commit, chunks)
}

/// The headers both paths must agree on.
fn object_headers(r: &Reply) -> Vec<(&str, Option<&str>)> {
    [
        "content-length",
        "content-type",
        "cache-control",
        "etag",
        "x-vnfs-compression",
        "x-vnfs-raw-length",
    ]
    .into_iter()
    .map(|h| (h, r.headers.get(h).map(String::as_str)))
    .collect()
}

#[test]
fn object_replies_are_the_same_before_and_after_a_connection_is_handed_over() {
    let (m, commit, chunks) = site_with_chunks();
    let store = m.store();
    let d = m.start_daemon();
    let (mut s, mut r) = connect(&d);

    // Fast path: every chunk, the stored bytes with their metadata.
    let mut fast = Vec::new();
    for id in &chunks {
        s.write_all(get(&format!("/v1/object/chunk/{id}"), "").as_bytes())
            .unwrap();
        let reply = read_reply(&mut r, false);
        assert_eq!(reply.status, 200, "{id}");
        let stored = store.read_stored(id, ObjectKind::Chunk).unwrap();
        assert_eq!(reply.body, stored.data, "chunk {id}");
        assert_eq!(reply.headers["etag"], format!("\"{id}\""));
        assert_eq!(
            reply.headers["x-vnfs-raw-length"],
            stored.raw_len.to_string()
        );
        assert!(reply.headers.contains_key("date"));
        fast.push(reply);
    }
    // HEAD, If-None-Match, a missing object, a kind mismatch.
    let id = chunks[0];
    s.write_all(format!("HEAD /v1/object/chunk/{id} HTTP/1.1\r\n\r\n").as_bytes())
        .unwrap();
    let head = read_reply(&mut r, true);
    assert_eq!(head.status, 200);
    assert_eq!(object_headers(&head), object_headers(&fast[0]));
    s.write_all(
        get(
            &format!("/v1/object/chunk/{id}"),
            &format!("If-None-Match: \"other\", \"{id}\"\r\n"),
        )
        .as_bytes(),
    )
    .unwrap();
    let not_modified = read_reply(&mut r, false);
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.headers["etag"], format!("\"{id}\""));
    let missing = ObjectId::from_hex(&"ab".repeat(32)).unwrap();
    s.write_all(get(&format!("/v1/object/chunk/{missing}"), "").as_bytes())
        .unwrap();
    let reply = read_reply(&mut r, false);
    assert_eq!(reply.status, 404);
    assert!(String::from_utf8_lossy(&reply.body).contains(&missing.to_hex()));
    s.write_all(get(&format!("/v1/object/tree/{id}"), "").as_bytes())
        .unwrap();
    assert_eq!(
        read_reply(&mut r, false).status,
        404,
        "a chunk asked for as a tree"
    );
    // Pipelined: three requests in one write, three replies in order.
    let three: String = chunks[..3]
        .iter()
        .map(|id| get(&format!("/v1/object/chunk/{id}"), ""))
        .collect();
    s.write_all(three.as_bytes()).unwrap();
    for (i, id) in chunks[..3].iter().enumerate() {
        let reply = read_reply(&mut r, false);
        assert_eq!(reply.body, fast[i].body, "pipelined reply {i} ({id})");
    }

    // A batch request hands the connection to the router...
    let ids: Vec<u8> = chunks.iter().flat_map(|id| id.0).collect();
    s.write_all(
        format!(
            "POST /v1/objects/chunk HTTP/1.1\r\nHost: master\r\nContent-Length: {}\r\n\r\n",
            ids.len()
        )
        .as_bytes(),
    )
    .unwrap();
    s.write_all(&ids).unwrap();
    let batch = read_reply(&mut r, false);
    assert_eq!(batch.status, 200);
    let stored_total: usize = fast.iter().map(|f| f.body.len()).sum();
    assert!(batch.body.len() > stored_total, "every object in the batch");
    // ...which answers object requests on it from then on, alike.
    for (id, f) in chunks.iter().zip(&fast) {
        s.write_all(get(&format!("/v1/object/chunk/{id}"), "").as_bytes())
            .unwrap();
        let reply = read_reply(&mut r, false);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, f.body, "chunk {id} through the router");
        assert_eq!(object_headers(&reply), object_headers(f), "chunk {id}");
    }
    s.write_all(get(&format!("/v1/object/tree/{}", chunks[0]), "").as_bytes())
        .unwrap();
    assert_eq!(
        read_reply(&mut r, false).status,
        404,
        "kind mismatch, router"
    );
    // The check-in handler still learns the peer's address there.
    let checkin = serde_json::json!({"mac": "52:54:00:00:00:01", "state": "init"}).to_string();
    s.write_all(
        format!(
            "POST /v1/checkin HTTP/1.1\r\nHost: master\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{checkin}",
            checkin.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let reply = read_reply(&mut r, false);
    assert_ne!(
        reply.status,
        500,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let status = m.vnfs(&["node", "status"]);
    assert!(status.contains("127.0.0.1"), "{status}");

    // A fresh connection: an id in capitals is the router's, same bytes.
    let (mut s, mut r) = connect(&d);
    let upper = chunks[1].to_hex().to_uppercase();
    s.write_all(get(&format!("/v1/object/chunk/{upper}"), "").as_bytes())
        .unwrap();
    let reply = read_reply(&mut r, false);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, fast[1].body);
    // And the commit the agents fetch first.
    s.write_all(get(&format!("/v1/object/commit/{commit}"), "").as_bytes())
        .unwrap();
    let reply = read_reply(&mut r, false);
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.body,
        store.read_stored(&commit, ObjectKind::Commit).unwrap().data
    );
}

#[test]
fn http10_and_connection_close_end_the_connection_after_the_reply() {
    let (m, _, chunks) = site_with_chunks();
    let d = m.start_daemon();
    let path = format!("/v1/object/chunk/{}", chunks[0]);
    for (request, keeps) in [
        (format!("GET {path} HTTP/1.0\r\n\r\n"), false),
        (
            format!("GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
            true,
        ),
        (get(&path, "Connection: close\r\n"), false),
        // Pipelined past the last request: the reply must still arrive
        // whole, then a clean end of stream (no reset).
        (
            get(&path, "Connection: close\r\n") + &get(&path, "") + &get(&path, ""),
            false,
        ),
        (get(&path, ""), true),
    ] {
        let (mut s, mut r) = connect(&d);
        s.write_all(request.as_bytes()).unwrap();
        let reply = read_reply(&mut r, false);
        assert_eq!(reply.status, 200, "{request:?}");
        if keeps {
            // Still open: a second request is answered.
            s.write_all(request.as_bytes()).unwrap();
            assert_eq!(read_reply(&mut r, false).status, 200, "{request:?}");
        } else {
            assert!(
                closed_by_server(&mut r),
                "{request:?} left the connection open"
            );
        }
    }
}

#[test]
fn shutdown_closes_idle_connections_of_both_kinds() {
    let (m, _, chunks) = site_with_chunks();
    let mut d = m.start_daemon();
    // One idle connection on the sendfile path, one handed to the router.
    let (mut a, mut ra) = connect(&d);
    a.write_all(get(&format!("/v1/object/chunk/{}", chunks[0]), "").as_bytes())
        .unwrap();
    assert_eq!(read_reply(&mut ra, false).status, 200);
    let (mut b, mut rb) = connect(&d);
    b.write_all(get("/boot/52:54:00:00:00:09", "").as_bytes())
        .unwrap();
    read_reply(&mut rb, false);

    let pid = rustix::process::Pid::from_raw(d.child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(st) = d.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "vnfs serve still running 15 s after SIGTERM with two idle connections"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "vnfs serve exited with {status}");
    assert!(closed_by_server(&mut ra));
    assert!(closed_by_server(&mut rb));
}
