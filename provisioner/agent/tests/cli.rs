//! The `vnfs-node` command line: help, version, required flags, the
//! environment fallbacks, bad values, and the exit statuses boot scripts
//! rely on (2 usage, 1 error, 75 refused).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};

fn node(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vnfs-node"))
        .args(args)
        .env_remove("VNFS_MASTER")
        .env_remove("VNFS_SECRET")
        .env_remove("VNFS_LOG")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_lists_the_commands_and_their_flags() {
    let o = node(&["--help"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let h = stdout(&o);
    assert!(h.contains("provision"), "{h}");
    assert!(h.contains("daemon"), "{h}");
    let o = node(&["provision", "--help"]);
    assert_eq!(o.status.code(), Some(0));
    let h = stdout(&o);
    for flag in [
        "--master",
        "--root",
        "--cache",
        "--mac",
        "--secret",
        "--threads",
        "--retry-for",
        "[env: VNFS_MASTER=]",
    ] {
        assert!(h.contains(flag), "provision --help lacks {flag}:\n{h}");
    }
    let o = node(&["daemon", "--help"]);
    let h = stdout(&o);
    for flag in ["--interval", "--iterations", "--no-scripts", "--cache"] {
        assert!(h.contains(flag), "daemon --help lacks {flag}:\n{h}");
    }
    let o = node(&["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).starts_with(&format!("vnfs-node {}", env!("CARGO_PKG_VERSION"))),
        "{}",
        stdout(&o)
    );
}

#[test]
fn usage_errors_exit_2_and_name_the_flag() {
    let o = node(&[]);
    assert_eq!(o.status.code(), Some(2));
    let o = node(&["provision", "--master", "http://127.0.0.1:1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--root"), "{}", stderr(&o));
    let o = node(&["provision", "--root", "/tmp/x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--master"), "{}", stderr(&o));
    let o = node(&[
        "provision",
        "--master",
        "http://127.0.0.1:1",
        "--root",
        "/tmp/x",
        "--threads",
        "many",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--threads"), "{}", stderr(&o));
    let o = node(&["daemon", "--master", "http://x", "--interval", "soon"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--interval"), "{}", stderr(&o));
    let o = node(&["reboot"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("reboot"), "{}", stderr(&o));
}

#[test]
fn daemon_needs_a_cache() {
    let o = node(&["daemon", "--master", "http://127.0.0.1:1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("daemon needs --cache"),
        "{}",
        stderr(&o)
    );
}

/// A one-shot HTTP server on loopback: answers the first request with
/// `status` and `body`, and returns the request it read.
fn one_reply(status: &str, body: &str) -> (String, std::thread::JoinHandle<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let (status, body) = (status.to_string(), body.to_string());
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut rd = BufReader::new(s.try_clone().unwrap());
        let mut head = String::new();
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            rd.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            head.push_str(&line);
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        let mut req = vec![0u8; len];
        rd.read_exact(&mut req).unwrap();
        write!(
            s,
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        head + &String::from_utf8_lossy(&req)
    });
    (url, h)
}

#[test]
fn the_master_comes_from_the_environment_and_a_refusal_exits_75() {
    let (url, server) = one_reply(
        "403 Forbidden",
        r#"{"reason":"disabled","error":"node n0001 is disabled"}"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_vnfs-node"))
        .args([
            "provision",
            "--mac",
            "52:54:00:0c:00:01",
            "--retry-for",
            "1",
            "--root",
        ])
        .arg(dir.path().join("root"))
        .arg("--cache")
        .arg(dir.path().join("cache"))
        .env("VNFS_MASTER", &url)
        .env("VNFS_SECRET", "s3cret")
        .env_remove("VNFS_LOG")
        .output()
        .unwrap();
    let req = server.join().unwrap();
    assert!(req.starts_with("POST /v1/checkin "), "{req}");
    assert!(req.contains(r#""mac":"52:54:00:0c:00:01""#), "{req}");
    assert!(req.contains(r#""state":"init""#), "{req}");
    assert!(req.contains(r#""secret":"s3cret""#), "{req}");
    assert_eq!(o.status.code(), Some(75), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("node n0001 is disabled"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_unreachable_master_is_an_error_naming_it() {
    // A port nothing listens on: bound, then released.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let root = dir.path().join("root");
    let o = node(&[
        "provision",
        "--master",
        &url,
        "--root",
        root.to_str().unwrap(),
        "--mac",
        "52:54:00:0c:00:02",
        "--retry-for",
        "0",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.starts_with("vnfs-node: error: "), "{e}");
    assert!(e.contains(&format!("{url}/v1/checkin")), "{e}");
}
