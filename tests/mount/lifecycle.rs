//! The mount's life cycle through the CLI and the bad cases the issue
//! names: a mount point that is not empty or holds another file system, an
//! image already mounted, unmount while a process uses the mount, and a
//! server killed with SIGKILL (resume on the next mount, or
//! `umount --recover`).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Env, fails, run};

/// A small image: a few files, one of 2 MB.
fn image(env: &Env, name: &str) {
    let src = env.path(&format!("src-{name}"));
    fs::create_dir_all(src.join("etc")).expect("mkdir");
    fs::create_dir_all(src.join("usr/lib")).expect("mkdir");
    fs::create_dir_all(src.join("srv/sub")).expect("mkdir");
    fs::write(src.join("etc/hostname"), "node\n").expect("file");
    fs::write(src.join("etc/motd"), "hello\n").expect("file");
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(src.join("usr/lib/big.so"), big).expect("file");
    env.commit(name, &src);
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn wait_gone(pid: u32) {
    let start = Instant::now();
    loop {
        let state = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let alive = state
            .rsplit_once(") ")
            .and_then(|(_, r)| r.chars().next())
            .is_some_and(|c| c != 'Z' && c != 'X');
        if !alive {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{pid} still runs"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill9(pid: u32) {
    // SAFETY: sending a signal has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    wait_gone(pid);
}

#[test]
fn refusals_say_why_and_touch_nothing() {
    let env = Env::new();
    image(&env, "img");
    image(&env, "other");

    // A mount point with content.
    let full = env.path("full");
    fs::create_dir_all(&full).expect("mkdir");
    fs::write(full.join("keep"), "mine\n").expect("file");
    let out = fails(env.vnfs(&["mount", "img"]).arg(&full));
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
    assert_eq!(
        fs::read_to_string(full.join("keep")).expect("kept"),
        "mine\n"
    );
    assert_eq!(fs::read_dir(&full).expect("dir").count(), 1);
    assert!(
        !env.home.join("mounts/img/state.json").exists(),
        "no mount record left"
    );
    let pins = run(&mut env.vnfs(&["mounts"]));
    assert!(!pins.contains("img"), "{pins}");

    // A mount point where another FUSE file system is mounted.
    let sq_src = env.path("sq-src");
    fs::create_dir_all(&sq_src).expect("mkdir");
    fs::write(sq_src.join("theirs"), "theirs\n").expect("file");
    let sq = env.path("x.sqfs");
    run(Command::new("mksquashfs")
        .arg(&sq_src)
        .arg(&sq)
        .args(["-quiet", "-no-progress"]));
    let foreign = env.path("foreign");
    fs::create_dir_all(&foreign).expect("mkdir");
    run(Command::new("squashfuse").arg(&sq).arg(&foreign));
    let out = fails(env.vnfs(&["mount", "img"]).arg(&foreign));
    assert!(
        stderr(&out).contains("mounted here already"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        fs::read_to_string(foreign.join("theirs")).expect("still mounted"),
        "theirs\n"
    );
    run(Command::new("umount").arg(&foreign));

    // The image mounted twice, and a second image on the same directory.
    let mnt = env.path("mnt");
    env.ok(&["mount", "img"], Some(&mnt));
    let again = env.path("mnt2");
    let out = fails(env.vnfs(&["mount", "img"]).arg(&again));
    assert!(stderr(&out).contains("already mounted"), "{}", stderr(&out));
    assert!(!again.exists(), "no mount point made for a refused mount");
    let out = fails(env.vnfs(&["mount", "other"]).arg(&mnt));
    assert!(
        stderr(&out).contains("image 'img' is mounted here"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        fs::read_to_string(mnt.join("etc/hostname")).expect("served"),
        "node\n"
    );
    // A mounted image is not deleted from under its mount.
    let out = fails(&mut env.vnfs(&["delete", "img"]));
    assert!(stderr(&out).contains("is mounted at"), "{}", stderr(&out));
    assert!(run(&mut env.vnfs(&["list"])).contains("img"));
    let out = run(&mut env.vnfs(&["umount", "img"]));
    assert!(out.is_empty(), "no edits, no commit id: {out}");
}

#[test]
fn umount_while_busy_names_the_process_and_keeps_serving() {
    let env = Env::new();
    image(&env, "img");
    let mnt = env.path("mnt");
    env.ok(&["mount", "img"], Some(&mnt));
    fs::write(mnt.join("srv/sub/edit"), "pending\n").expect("write");
    let mut sleeper = Command::new("sleep")
        .arg("60")
        .current_dir(mnt.join("srv/sub"))
        .stdin(Stdio::null())
        .spawn()
        .expect("sleep");
    let out = fails(&mut env.vnfs(&["umount", "img"]));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{} (sleep)", sleeper.id())) && err.contains("cwd"),
        "the busy error names the process: {err}"
    );
    // Still mounted, still serving, edits still there.
    assert_eq!(
        fs::read_to_string(mnt.join("srv/sub/edit")).expect("read"),
        "pending\n"
    );
    assert_eq!(
        fs::read_to_string(mnt.join("etc/motd")).expect("read"),
        "hello\n"
    );
    assert!(run(&mut env.vnfs(&["mounts"])).contains("mounted"));
    sleeper.kill().expect("kill");
    sleeper.wait().expect("wait");
    let id = run(&mut env.vnfs(&["umount", "img"]));
    assert_eq!(id.trim().len(), 64, "a new commit: {id}");
    let co = env.path("co");
    env.ok(&["checkout", "img"], Some(&co));
    assert_eq!(
        fs::read_to_string(co.join("srv/sub/edit")).expect("committed"),
        "pending\n"
    );
}

fn pending_bytes(env: &Env) -> u64 {
    let out = env.ok(&["--json", "mounts"], None);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).expect("json");
    rows[0]["pending"]["bytes"].as_u64().expect("bytes")
}

#[test]
fn killed_server_edits_resume_and_recover() {
    let env = Env::new();
    image(&env, "img");
    let mnt = env.path("mnt");
    env.ok(&["mount", "img"], Some(&mnt));
    fs::write(mnt.join("etc/new"), "one\n").expect("write");
    fs::remove_file(mnt.join("etc/motd")).expect("rm");
    fs::set_permissions(
        mnt.join("usr/lib/big.so"),
        fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    // The chmod of the 2 MB file stored no data: only etc/new's 4 bytes.
    assert_eq!(pending_bytes(&env), 4);

    kill9(env.server_pid("img"));
    assert!(run(&mut env.vnfs(&["mounts"])).contains("not mounted; edits kept"));
    let out = fails(&mut env.vnfs(&["umount", "img"]));
    assert!(stderr(&out).contains("--recover"), "{}", stderr(&out));

    // The next mount resumes the edits.
    env.ok(&["mount", "img"], Some(&mnt));
    assert_eq!(
        fs::read_to_string(mnt.join("etc/new")).expect("kept"),
        "one\n"
    );
    assert!(!mnt.join("etc/motd").exists(), "deletion kept");
    let big = fs::metadata(mnt.join("usr/lib/big.so")).expect("big");
    assert_eq!((big.mode() & 0o777, big.len()), (0o600, 2_000_000));
    assert_eq!(
        fs::read(mnt.join("usr/lib/big.so")).expect("read")[1000],
        (1000 % 251) as u8
    );
    fs::write(mnt.join("etc/new2"), "two\n").expect("write");

    // Killed again: --recover commits everything.
    kill9(env.server_pid("img"));
    let id = run(&mut env.vnfs(&["umount", "--recover", "img"]));
    assert_eq!(id.trim().len(), 64, "a new commit: {id}");
    assert!(!run(&mut env.vnfs(&["mounts"])).contains("img"));
    let co = env.path("co");
    env.ok(&["checkout", "img"], Some(&co));
    assert_eq!(
        fs::read_to_string(co.join("etc/new")).expect("new"),
        "one\n"
    );
    assert_eq!(
        fs::read_to_string(co.join("etc/new2")).expect("new2"),
        "two\n"
    );
    assert!(!co.join("etc/motd").exists());
    let big = fs::metadata(co.join("usr/lib/big.so")).expect("big");
    assert_eq!((big.mode() & 0o777, big.len()), (0o600, 2_000_000));
    run(&mut env.vnfs(&["store", "fsck"]));
    assert!(
        !Path::new(&mnt).join("etc").exists(),
        "the dead mount was detached"
    );
}

/// Commit ids of `name`'s history, newest first.
fn history(env: &Env, name: &str) -> Vec<String> {
    let log = env.ok(&["--json", "log", name], None);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&log).expect("log json");
    rows.iter()
        .map(|r| r["commit"].as_str().expect("commit id").to_string())
        .collect()
}

#[test]
fn editing_an_older_version_keeps_the_newer_ones() {
    let env = Env::new();
    image(&env, "img");
    let src = env.path("src-img");
    fs::write(src.join("etc/motd"), "second\n").expect("file");
    env.commit("img", &src);
    let before = history(&env, "img");
    assert_eq!(before.len(), 2);
    let (v2, v1) = (&before[0], &before[1]);

    // Mount the first version, edit it, commit.
    let mnt = env.path("mnt");
    env.ok(&["mount", &format!("img@{v1}")], Some(&mnt));
    assert_eq!(
        fs::read_to_string(mnt.join("etc/motd")).expect("v1"),
        "hello\n"
    );
    fs::write(mnt.join("etc/added"), "edit\n").expect("edit");
    let out = env
        .vnfs(&["umount", "img", "-m", "edit of v1"])
        .output()
        .expect("umount");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("not at the mounted {}", &v1[..12])),
        "the warning names both versions: {}",
        stderr(&out)
    );

    // The new version follows v2; v2 and v1 stay in the history.
    let after = history(&env, "img");
    assert_eq!(after.len(), 3, "{after:?}");
    assert_eq!(&after[1], v2);
    assert_eq!(&after[2], v1);
    let co = env.path("co");
    env.ok(&["checkout", "img"], Some(&co));
    assert_eq!(
        fs::read_to_string(co.join("etc/motd")).expect("motd"),
        "hello\n"
    );
    assert_eq!(
        fs::read_to_string(co.join("etc/added")).expect("added"),
        "edit\n"
    );
    // gc keeps everything, and a rollback returns to v2.
    env.ok(&["store", "gc"], None);
    env.ok(&["rollback", "img"], None);
    let co2 = env.path("co2");
    env.ok(&["checkout", "img"], Some(&co2));
    assert_eq!(
        fs::read_to_string(co2.join("etc/motd")).expect("motd"),
        "second\n"
    );
    assert!(!co2.join("etc/added").exists());
}
