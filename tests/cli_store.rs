//! The `vnfs` binary end to end: store commands, crash safety under
//! kill -9, unreadable input, JSON output.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn vnfs(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vnfs"));
    c.env("VNFS_HOME", home).env_remove("VNFS_CONFIG");
    c
}

fn run(home: &Path, args: &[&str]) -> Output {
    vnfs(home).args(args).output().unwrap()
}

fn ok(home: &Path, args: &[&str]) -> String {
    let out = run(home, args);
    assert!(
        out.status.success(),
        "vnfs {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[path = "support/noise.rs"]
mod noise;
use noise::noise;

fn make_tree(dir: &Path, files: usize, seed: u64) {
    fs::create_dir_all(dir).unwrap();
    for i in 0..files {
        let sub = dir.join(format!("d{}", i % 7));
        fs::create_dir_all(&sub).unwrap();
        fs::write(
            sub.join(format!("f{i}")),
            noise(50_000 + (i % 13) * 40_000, seed + i as u64),
        )
        .unwrap();
    }
}

#[test]
fn commands_work_together() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let src = t.path().join("src");
    make_tree(&src, 20, 1);
    let id1 = ok(
        &home,
        &[
            "commit",
            src.to_str().unwrap(),
            "--name",
            "img",
            "-m",
            "one",
            "--timestamp",
            "1000",
        ],
    );
    let id1 = id1.trim().to_string();
    assert_eq!(id1.len(), 64);
    fs::write(src.join("d0/f0"), b"changed").unwrap();
    let id2 = ok(
        &home,
        &["commit", src.to_str().unwrap(), "-n", "img", "-m", "two"],
    )
    .trim()
    .to_string();
    let list = ok(&home, &["list"]);
    assert!(list.contains("img") && list.contains(&id2[..12]), "{list}");
    let log = ok(&home, &["log", "img"]);
    assert!(
        log.find(&id2).unwrap() < log.find(&id1).unwrap(),
        "newest first: {log}"
    );
    let show: serde_json::Value =
        serde_json::from_str(&ok(&home, &["--json", "show", "img"])).unwrap();
    assert_eq!(show["summary"]["files"], 20);
    assert!(show["summary"]["unique_bytes"].as_u64().unwrap() > 0);
    let diff: serde_json::Value = serde_json::from_str(&ok(
        &home,
        &["diff", &format!("img@{}", &id1[..8]), "img", "--json"],
    ))
    .unwrap();
    assert_eq!(diff["entries"].as_array().unwrap().len(), 1);
    assert_eq!(diff["entries"][0]["path"], "d0/f0");
    let co = t.path().join("co");
    ok(
        &home,
        &[
            "checkout",
            &format!("img@{}", &id1[..10]),
            co.to_str().unwrap(),
        ],
    );
    assert_eq!(fs::read(co.join("d0/f0")).unwrap(), noise(50_000, 1));
    let rb = ok(&home, &["rollback", "img"]).trim().to_string();
    assert_eq!(ok(&home, &["--json", "list"]).matches(&rb).count(), 1);
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&home, &["--json", "store", "stats"])).unwrap();
    assert_eq!(stats["commits"], 3);
    ok(&home, &["store", "fsck"]);
    ok(&home, &["delete", "img"]);
    ok(&home, &["store", "gc"]);
    let stats: serde_json::Value =
        serde_json::from_str(&ok(&home, &["--json", "store", "stats"])).unwrap();
    assert_eq!(stats["chunks"], 0);
    // Errors are clear and exit non-zero.
    let out = run(
        &home,
        &["checkout", "nope", t.path().join("x").to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no image named 'nope'"));
    let out = run(&home, &["commit", "/does/not/exist", "-n", "x"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("/does/not/exist"));
    // Completions and man pages come from the same definition.
    assert!(ok(&home, &["generate", "completions", "bash"]).contains("checkout"));
    let man = t.path().join("man");
    ok(&home, &["generate", "man", man.to_str().unwrap()]);
    assert!(man.join("vnfs.1").exists() && man.join("vnfs-commit.1").exists());
}

#[test]
fn fsck_exit_status_is_1_on_damage() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let src = t.path().join("src");
    make_tree(&src, 3, 5);
    ok(&home, &["commit", src.to_str().unwrap(), "-n", "img"]);
    flip_middle_of_pack(&home);
    let out = run(&home, &["store", "fsck"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("BAD") && text.contains("breaks img@"),
        "{text}"
    );
}

#[test]
fn a_failed_checkout_removes_what_it_wrote() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let src = t.path().join("src");
    make_tree(&src, 12, 9);
    ok(&home, &["commit", src.to_str().unwrap(), "-n", "img"]);
    // One file's chunk no longer checks out.
    flip_middle_of_pack(&home);

    // Directories it had to create go, the outermost one included.
    let new = t.path().join("new/deeper/co");
    let out = run(&home, &["checkout", "img", new.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("checking out img into"), "{err}");
    assert!(!t.path().join("new").exists(), "{err}");

    // An empty directory it was given stays, empty.
    let empty = t.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let out = run(&home, &["checkout", "img", empty.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(fs::read_dir(&empty).unwrap().count(), 0, "{err}");

    // A path through `..` to a directory that is not empty: refused, the
    // level it created removed, the directory untouched.
    fs::write(empty.join("keep"), "mine").unwrap();
    let around = t.path().join("made/../empty");
    let out = run(&home, &["checkout", "img", around.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not empty"), "{err}");
    assert!(!t.path().join("made").exists(), "{err}");
    assert_eq!(fs::read_dir(&empty).unwrap().count(), 1, "{err}");
    fs::remove_file(empty.join("keep")).unwrap();

    // A directory with something in it is refused and left alone.
    fs::write(empty.join("keep"), "mine").unwrap();
    let out = run(&home, &["checkout", "img", empty.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not empty"), "{err}");
    assert_eq!(fs::read_to_string(empty.join("keep")).unwrap(), "mine");
}

#[test]
fn a_signal_stops_a_checkout_and_removes_it() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let src = t.path().join("src");
    // Enough content that the checkout is still writing when the signal
    // comes: 64 files of 1 MiB.
    for i in 0..64u64 {
        let d = src.join(format!("d{}", i % 6));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(format!("f{i}")), noise(1 << 20, 40 + i)).unwrap();
    }
    ok(&home, &["commit", src.to_str().unwrap(), "-n", "img"]);
    // Ctrl-C, and a dropped SSH session.
    for (signal, name) in [(libc::SIGINT, "co-int"), (libc::SIGHUP, "co-hup")] {
        let co = t.path().join(name);
        // Once file content is being written.
        let writing = || fs::read_dir(co.join("d0")).is_ok_and(|mut d| d.next().is_some());
        let err = interrupted(
            &home,
            &["checkout", "img", co.to_str().unwrap()],
            writing,
            signal,
        );
        assert!(!co.exists(), "{name}: {err}");
    }
}

#[test]
fn ctrl_c_stops_a_commit_or_an_import_and_leaves_no_temporary_pack() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let src = t.path().join("src");
    for i in 0..64u64 {
        let d = src.join(format!("d{}", i % 4));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(format!("f{i}")), noise(1 << 20, 900 + i)).unwrap();
    }
    // Signalled once a pack is being written into store/tmp; nothing
    // stays there.
    let interrupt = |home: &Path, args: &[&str]| {
        let tmp = home.join("store/tmp");
        let err = interrupted(home, args, || pack_being_written(&tmp), libc::SIGINT);
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0, "{args:?}: {err}");
    };
    interrupt(&home, &["commit", src.to_str().unwrap(), "-n", "img"]);
    assert_eq!(ok(&home, &["--json", "list"]).trim(), "[]");

    // A capsule of the image, imported into another home and interrupted.
    ok(&home, &["commit", src.to_str().unwrap(), "-n", "img"]);
    let capsule = t.path().join("img.vnfs");
    ok(&home, &["export", "img", capsule.to_str().unwrap()]);
    let b = t.path().join("b");
    interrupt(&b, &["import", capsule.to_str().unwrap()]);
    assert_eq!(ok(&b, &["--json", "list"]).trim(), "[]");

    // From a pipe whose sender stalls halfway: still stopped, still clean.
    let mut half = fs::read(&capsule).unwrap();
    half.truncate(half.len() / 2);
    let tmp = b.join("store/tmp");
    let err = interrupted_feeding(
        &b,
        &["import", "-"],
        Some(half),
        || pack_being_written(&tmp),
        libc::SIGINT,
    );
    assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0, "import -: {err}");
    assert_eq!(ok(&b, &["--json", "list"]).trim(), "[]");
}

/// Whether a pack is being written into the store's `tmp` (not the
/// VERSION file a new store writes through it).
fn pack_being_written(tmp: &Path) -> bool {
    fs::read_dir(tmp).is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("pack-"))
    })
}

/// Runs `vnfs args`, sends it `signal` once `ready` holds, and returns
/// its stderr after checking that it stopped as interrupted.
fn interrupted(home: &Path, args: &[&str], ready: impl Fn() -> bool, signal: i32) -> String {
    interrupted_feeding(home, args, None, ready, signal)
}

/// [`interrupted`], with `input` written to the command's stdin, which then
/// stays open: the command must stop on the signal, not at end of input.
fn interrupted_feeding(
    home: &Path,
    args: &[&str],
    input: Option<Vec<u8>>,
    ready: impl Fn() -> bool,
    signal: i32,
) -> String {
    let mut cmd = vnfs(home);
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    if input.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().unwrap();
    let feeder = input.map(|bytes| {
        let mut pipe = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = std::io::Write::write_all(&mut pipe, &bytes);
            // Returned, so the pipe stays open until the test joins this.
            pipe
        })
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "{args:?} never got going"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, signal) };
    let out = child.wait_with_output().unwrap();
    drop(feeder.map(|f| f.join()));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "{args:?} ended before the signal arrived: make the tree larger"
    );
    assert!(
        err.contains("interrupted"),
        "{args:?}: {:?} {err}",
        out.status
    );
    // Cleaned up, then ended by the signal itself, so a shell loop stops.
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(signal),
        "{args:?}: {err}"
    );
    err
}

/// Flips a byte in the middle of the store's (first) pack.
fn flip_middle_of_pack(home: &Path) {
    let pack = find_ext(&home.join("store/packs"), "pack").remove(0);
    let mut b = fs::read(&pack).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0xff;
    fs::write(&pack, b).unwrap();
}

fn find_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for sub in fs::read_dir(dir).unwrap().flatten() {
        for f in fs::read_dir(sub.path()).unwrap().flatten() {
            if f.path().extension().is_some_and(|e| e == ext) {
                v.push(f.path());
            }
        }
    }
    v
}

#[test]
fn kill_9_during_commit_and_gc_leaves_the_store_valid() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let src = t.path().join("src");
    make_tree(&src, 150, 7);
    let started = std::time::Instant::now();
    let base = ok(&home, &["commit", src.to_str().unwrap(), "-n", "img"])
        .trim()
        .to_string();
    // Kill at fractions of how long a full commit takes on this machine.
    let full = started.elapsed();
    let mut killed = 0;
    for round in 0..8u64 {
        // New content each round so the commit has real work to do.
        for i in 0..150 {
            fs::write(
                src.join(format!("d{}/f{i}", i % 7)),
                noise(200_000, 1000 * round + i),
            )
            .unwrap();
        }
        let before = ok(&home, &["--json", "list"]);
        let mut child = vnfs(&home)
            .args(["commit", src.to_str().unwrap(), "-n", "img"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Early fractions: the calibrating commit may have run slowly
        // (other tests share the cores), so later ones finish sooner.
        std::thread::sleep(full.mul_f64(0.03 + round as f64 * 0.06));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        ok(&home, &["store", "fsck"]);
        let after = ok(&home, &["--json", "list"]);
        let v: serde_json::Value = serde_json::from_str(&after).unwrap();
        let head = v[0]["commit"].as_str().unwrap().to_string();
        // The ref is either where it was or on a complete new commit.
        if after != before {
            let co = t.path().join(format!("co{round}"));
            ok(&home, &["checkout", &head, co.to_str().unwrap()]);
        }
    }
    assert!(
        killed >= 3,
        "only {killed} commits were interrupted; the test did not test"
    );
    // gc killed at various points: the remaining image stays whole.
    for round in 0..5u64 {
        let name = format!("junk{round}");
        let junk = t.path().join(&name);
        make_tree(&junk, 30, 50_000 + round);
        ok(&home, &["commit", junk.to_str().unwrap(), "-n", &name]);
        ok(&home, &["delete", &name]);
        let mut child = vnfs(&home)
            .args(["store", "gc"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5 + round * 20));
        let _ = child.kill();
        let _ = child.wait();
        ok(&home, &["store", "fsck"]);
        let co = t.path().join(format!("gc{round}"));
        ok(
            &home,
            &[
                "checkout",
                &format!("img@{}", &base[..12]),
                co.to_str().unwrap(),
            ],
        );
    }
}

#[test]
fn unreadable_file_is_named_and_nothing_changes() {
    // SAFETY: geteuid cannot fail.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root to run vnfs as another user"
    );
    let t = tempfile::tempdir().unwrap();
    let base = t.path();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(base, fs::Permissions::from_mode(0o755)).unwrap();
    let home = base.join("home");
    let src = base.join("src");
    make_tree(&src, 3, 9);
    fs::write(src.join("secret"), b"no").unwrap();
    fs::set_permissions(src.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::create_dir(&home).unwrap();
    std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_vnfs"),
        ])
        .args(["commit", src.to_str().unwrap(), "-n", "img"])
        .env("VNFS_HOME", &home)
        .output()
        .expect("setpriv (util-linux) must be installed");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("secret") && err.contains("Permission denied"),
        "{err}"
    );
    let list = Command::new(env!("CARGO_BIN_EXE_vnfs"))
        .arg("list")
        .env("VNFS_HOME", &home)
        .output()
        .unwrap();
    assert!(list.stdout.is_empty(), "no image was created");
}

#[test]
fn node_vnfs_values_are_checked_against_the_store() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path().join("home");
    let src = t.path().join("src");
    make_tree(&src, 2, 3);
    ok(&home, &["init", "--yes"]);
    ok(&home, &["node", "add", "00:11:22:33:44:55"]);
    let out = run(&home, &["node", "set", "vnfs", "debian-node", "n*"]);
    assert!(
        !out.status.success(),
        "an image that does not exist is refused"
    );
    ok(
        &home,
        &["commit", src.to_str().unwrap(), "-n", "debian-node"],
    );
    ok(&home, &["node", "set", "vnfs", "debian-node", "n*"]);
    assert!(ok(&home, &["node", "summary"]).contains("debian-node"));
}

#[test]
fn printing_into_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let t = tempfile::tempdir().unwrap();
    // Over 100 kB of output, more than a pipe holds: the writes after the
    // reader leaves fail.
    let mut child = vnfs(t.path())
        .args(["generate", "completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "nothing to say about it: {stderr}");
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}", out.status);
}
