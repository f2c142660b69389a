//! Fault cases: refusals, a corrupt chunk, the daemon killed mid-transfer.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use vnfs_node::AgentError;
use vnfs_node::client::{Master, Retry};
use vnfs_node::proto::CheckinRequest;
use vnfs_store::ObjectKind;

use crate::common;
use crate::fixture::*;

fn refusal(e: AgentError) -> (String, String) {
    match e {
        AgentError::Refused { reason, error, .. } => (reason, error),
        other => panic!("expected a refusal, got {other}"),
    }
}

/// Unknown nodes are added with defaults.conf; without an image, disabled,
/// or with a wrong secret they get a refusal they can print.
#[test]
fn unknown_imageless_disabled_and_unauthorised_nodes_are_refused() {
    common::require_root();
    let m = Site::new();
    let src = m.path("small");
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::write(src.join("etc/motd"), "hi\n").unwrap();
    m.commit_image("img", &src, &[]);
    let secret = m.path("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let d = m.start_daemon_on(free_port(), &["--secret-file", secret.to_str().unwrap()]);
    let mac = "52:54:00:cc:00:01";
    let mut o = options(&d.url, mac, &m.path("r1"), &m.path("c1"));

    // No secret: refused before anything is recorded.
    let (reason, _) = refusal(vnfs_node::provision::provision(&o).unwrap_err());
    assert_eq!(reason, "bad-secret");
    assert!(!m.vnfs(&["node", "list"]).contains("n0000"));

    // Unknown MAC, no default VNFS: added, refused with a clear sentence.
    o.secret = Some("s3cret".into());
    let (reason, error) = refusal(vnfs_node::provision::provision(&o).unwrap_err());
    assert_eq!(reason, "no-image");
    assert!(
        error.contains("n0000") && error.contains("vnfs node set vnfs"),
        "{error}"
    );
    let shown = m.vnfs(&["-i", "node", "show", mac]);
    assert!(shown.contains("hostname: n0000"), "{shown}");
    assert!(shown.contains("state: init"), "{shown}");

    // Disabled.
    m.vnfs(&["node", "set", "vnfs", "img", "n0000"]);
    m.vnfs(&["node", "set", "enabled", "0", "n0000"]);
    let (reason, error) = refusal(vnfs_node::provision::provision(&o).unwrap_err());
    assert_eq!(reason, "disabled");
    assert!(
        error.contains("n0000") && error.contains("disabled"),
        "{error}"
    );
    assert!(!o.root.exists(), "a refused node must not get a root");

    // Enabled: provisions.
    m.vnfs(&["node", "set", "enabled", "1", "n0000"]);
    let r = vnfs_node::provision::provision(&o).unwrap();
    assert_eq!(r.hostname, "n0000");
    assert_eq!(
        std::fs::read_to_string(o.root.join("etc/motd")).unwrap(),
        "hi\n"
    );

    // Malformed requests.
    let master = Master::new(&d.url, Retry::default());
    let e = master
        .checkin(&CheckinRequest {
            mac: "not-a-mac".into(),
            state: "init".into(),
            secret: Some("s3cret".into()),
            ..CheckinRequest::default()
        })
        .unwrap_err();
    assert_eq!(refusal(e).0, "bad-request");
}

/// A chunk corrupted on the master is refused by the agent, which names
/// it, writes nothing into the root, and reports the failure.
#[test]
fn corrupt_chunk_is_refused_and_named() {
    common::require_root();
    let m = Site::new();
    let v1 = m.commit_image("img", &m.image_v1(), &[]);
    m.set_default_vnfs("img");
    // Flip a byte in the middle of the largest chunk's stored data.
    let mut victim = None;
    for sub in std::fs::read_dir(m.path("store/packs")).unwrap() {
        for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "idx") {
                let (entries, _) = vnfs_store::pack::read_index(&p).unwrap();
                for e in entries {
                    if e.kind == ObjectKind::Chunk
                        && victim.as_ref().is_none_or(
                            |(_, v): &(_, vnfs_store::pack::IndexEntry)| {
                                e.stored_len > v.stored_len
                            },
                        )
                    {
                        victim = Some((p.with_extension("pack"), e));
                    }
                }
            }
        }
    }
    let (pack, entry) = victim.unwrap();
    let at =
        entry.offset + vnfs_store::pack::RECORD_HEADER as u64 + u64::from(entry.stored_len / 2);
    let mut data = std::fs::read(&pack).unwrap();
    data[at as usize] ^= 0x55;
    std::fs::write(&pack, &data).unwrap();

    let d = m.start_daemon();
    let o = options(&d.url, "52:54:00:cc:00:02", &m.path("r"), &m.path("c"));
    let e = vnfs_node::provision::provision(&o).unwrap_err();
    match &e {
        AgentError::Corrupt { kind, id, .. } => {
            assert_eq!(*kind, ObjectKind::Chunk);
            assert_eq!(*id, entry.id);
        }
        other => panic!("expected a corrupt chunk, got {other}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains(&entry.id.to_hex()) && msg.contains("refused"),
        "{msg}"
    );
    assert!(!o.root.exists() || std::fs::read_dir(&o.root).unwrap().next().is_none());
    // The node's failure is on record.
    let status = m.vnfs(&["node", "status"]);
    assert!(status.contains(" error "), "{status}");
    let _ = v1;
}

/// What a [`slow_proxy`] holds: its upstream connections, and the reply
/// bytes it has passed on so far.
#[derive(Default)]
struct Proxy {
    upstreams: std::sync::Mutex<Vec<TcpStream>>,
    forwarded: std::sync::atomic::AtomicU64,
}

/// Forwards connections to `upstream`, sending the replies at about
/// `rate` bytes per second per connection, so a transfer takes long enough
/// to kill the daemon in the middle of it. Returns the port and the
/// upstream connections, which the caller can cut.
fn slow_proxy(upstream: u16, rate: usize) -> (u16, std::sync::Arc<Proxy>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let upstreams = std::sync::Arc::new(Proxy::default());
    let held = upstreams.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(client) = c else { continue };
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue; // daemon down: the client sees a closed connection
            };
            held.upstreams
                .lock()
                .unwrap()
                .push(server.try_clone().unwrap());
            let counter = held.clone();
            let (mut c_r, mut s_w) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_r, &mut s_w);
                let _ = s_w.shutdown(std::net::Shutdown::Write);
            });
            let (mut s_r, mut c_w) = (server, client);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 16 << 10];
                loop {
                    match s_r.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if c_w.write_all(&buf[..n]).is_err() {
                                break;
                            }
                            counter
                                .forwarded
                                .fetch_add(n as u64, std::sync::atomic::Ordering::SeqCst);
                            std::thread::sleep(Duration::from_secs_f64(n as f64 / rate as f64));
                        }
                    }
                }
                let _ = c_w.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    (port, upstreams)
}

/// The daemon is SIGKILLed while four agents stream chunks; it comes back
/// a second later and every agent finishes with an exact root.
#[test]
fn daemon_killed_mid_transfer_agents_retry_and_finish() {
    common::require_root();
    let m = Site::new();
    m.commit_image("img", &m.image_v1(), &[]);
    m.set_default_vnfs("img");
    let port = free_port();
    let mut d = m.start_daemon_on(port, &[]);
    let (proxy, state) = slow_proxy(port, 256 << 10);
    let url = format!("http://127.0.0.1:{proxy}");
    let macs: Vec<String> = (0..4).map(|i| format!("52:54:00:dd:00:{i:02x}")).collect();
    let handles: Vec<_> = macs
        .iter()
        .enumerate()
        .map(|(i, mac)| {
            let o = options(&url, mac, &m.root(i, "k"), &m.cache(i));
            std::thread::spawn(move || vnfs_node::provision::provision(&o))
        })
        .collect();
    // Kill once the chunk transfer is under way (each agent fetches about
    // 2 MB), whatever the machine's speed.
    let start = std::time::Instant::now();
    while state.forwarded.load(std::sync::atomic::Ordering::SeqCst) < 1 << 20 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no transfer started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    // A killed process's sockets still deliver what it had queued, and
    // loopback buffers can hold the rest of every reply: drop the
    // connections as a crashed master's would be, so what the proxy has
    // not passed on yet is lost.
    for c in state.upstreams.lock().unwrap().drain(..) {
        let _ = c.shutdown(std::net::Shutdown::Both);
    }
    let killed_early = handles.iter().any(|h| !h.is_finished());
    std::thread::sleep(Duration::from_secs(1));
    let _d2 = m.start_daemon_on(port, &[]);
    let reports: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    assert!(
        killed_early,
        "the transfer ended before the daemon was killed"
    );
    assert!(reports.iter().any(|r| r.retries > 0), "{reports:?}");
    let expected = m.checkout("img", "expect");
    for i in 0..4 {
        common::assert_same_tree(&expected, &m.root(i, "k"), &[]);
    }
}
