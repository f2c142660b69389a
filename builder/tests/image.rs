//! Image rendering end to end: for each format, the standard tool's
//! extraction equals a checkout of the same commit (in what the format can
//! carry); renders are byte-identical across runs; the kernel loop-mounts
//! the squashfs; a cpio initramfs boots to its /init under QEMU.
//!
//! Needs root, squashfs-tools, cpio, GNU tar, gcc with a static libc and
//! qemu-system-x86; a missing piece fails the test, it is never skipped.

#[path = "image/common.rs"]
mod common;
#[path = "../../tests/support/noise.rs"]
mod noise;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Carries, assert_same, require_root, run, store_with_tree};
use vnfs_builder::image::{Compression, Format, RenderOptions, render};
use vnfs_store::{NoProgress, ObjectId, Store};

fn opts(format: Format, compression: Compression) -> RenderOptions {
    RenderOptions {
        format,
        compression,
        level: None,
        threads: 0,
    }
}

fn checkout(store: &Store, commit: &ObjectId, dir: &Path) -> PathBuf {
    let co = dir.join("checkout");
    store.checkout(commit, &co, &NoProgress).unwrap();
    co
}

#[test]
fn tar_extraction_equals_checkout() {
    require_root();
    let t = tempfile::tempdir().unwrap();
    let (store, commit) = store_with_tree(t.path());
    let img = t.path().join("x.tar");
    render(
        &store,
        &commit,
        &opts(Format::Tar, Compression::None),
        &img,
        &NoProgress,
    )
    .unwrap();
    let out = t.path().join("out");
    fs::create_dir(&out).unwrap();
    run(Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
        .arg(&img)
        .arg("-C")
        .arg(&out));
    let co = checkout(&store, &commit, t.path());
    // pax carries nanosecond mtimes and every xattr.
    let c = Carries {
        mtime_nsec: true,
        xattrs: true,
        symlink_mtime: true,
        dir_mtime: true,
        root_mtime: true,
    };
    assert_same(&co, &out, c);
}

#[test]
fn cpio_extraction_equals_checkout() {
    require_root();
    let t = tempfile::tempdir().unwrap();
    let (store, commit) = store_with_tree(t.path());
    let img = t.path().join("x.cpio.gz");
    let stats = render(
        &store,
        &commit,
        &opts(Format::Cpio, Compression::Gzip),
        &img,
        &NoProgress,
    )
    .unwrap();
    assert_eq!(
        stats.xattrs_dropped, 3,
        "newc cannot carry the three xattrs"
    );
    let out = t.path().join("out");
    fs::create_dir(&out).unwrap();
    let raw = run(Command::new("gzip").arg("-dc").arg(&img));
    fs::write(t.path().join("x.cpio"), raw).unwrap();
    run(Command::new("sh")
        .arg("-c")
        .arg("cpio -idm --no-absolute-filenames --quiet < ../x.cpio")
        .current_dir(&out));
    let co = checkout(&store, &commit, t.path());
    // newc: whole-second mtimes, no xattrs. GNU cpio sets no symlink
    // mtimes, and directory mtimes only when a directory comes after its
    // contents (`find -depth`); the kernel needs directories first, so
    // directory mtimes are not compared here (the kernel sets them).
    let c = Carries {
        mtime_nsec: false,
        xattrs: false,
        symlink_mtime: false,
        dir_mtime: false,
        root_mtime: false,
    };
    assert_same(&co, &out, c);
}

#[test]
fn squashfs_unsquashfs_equals_checkout() {
    require_root();
    let t = tempfile::tempdir().unwrap();
    let (store, commit) = store_with_tree(t.path());
    let img = t.path().join("x.sqfs");
    render(
        &store,
        &commit,
        &opts(Format::Squashfs, Compression::Zstd),
        &img,
        &NoProgress,
    )
    .unwrap();
    let out = t.path().join("out");
    run(Command::new("unsquashfs")
        .arg("-q")
        .arg("-n")
        .arg("-d")
        .arg(&out)
        .arg(&img));
    let co = checkout(&store, &commit, t.path());
    let c = Carries {
        mtime_nsec: false,
        xattrs: true,
        symlink_mtime: true,
        dir_mtime: true,
        root_mtime: true,
    };
    assert_same(&co, &out, c);
}

#[test]
fn squashfs_loop_mount_equals_checkout() {
    require_root();
    let t = tempfile::tempdir().unwrap();
    let (store, commit) = store_with_tree(t.path());
    let img = t.path().join("x.sqfs");
    render(
        &store,
        &commit,
        &opts(Format::Squashfs, Compression::Zstd),
        &img,
        &NoProgress,
    )
    .unwrap();
    let mnt = t.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    run(Command::new("mount")
        .args(["-t", "squashfs", "-o", "loop,ro"])
        .arg(&img)
        .arg(&mnt));
    let co = checkout(&store, &commit, t.path());
    let result = std::panic::catch_unwind(|| {
        let c = Carries {
            mtime_nsec: false,
            xattrs: true,
            symlink_mtime: true,
            dir_mtime: true,
            root_mtime: true,
        };
        assert_same(&co, &mnt, c);
    });
    run(Command::new("umount").arg(&mnt));
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn renders_are_byte_identical() {
    require_root();
    let t = tempfile::tempdir().unwrap();
    let (store, commit) = store_with_tree(t.path());
    for (f, c) in [
        (Format::Squashfs, Compression::Zstd),
        (Format::Squashfs, Compression::Xz),
        (Format::Cpio, Compression::Zstd),
        (Format::Cpio, Compression::Xz),
        (Format::Tar, Compression::Gzip),
    ] {
        let a = t.path().join("a");
        let b = t.path().join("b");
        render(&store, &commit, &opts(f, c), &a, &NoProgress).unwrap();
        let mut o = opts(f, c);
        o.threads = 1;
        render(&store, &commit, &o, &b, &NoProgress).unwrap();
        assert!(
            fs::read(&a).unwrap() == fs::read(&b).unwrap(),
            "{f:?}/{c:?} differs between runs"
        );
    }
}

#[test]
fn no_temporary_files_are_left_and_bad_options_fail() {
    let t = tempfile::tempdir().unwrap();
    let (store, commit) = store_with_tree(t.path());
    let dir = t.path().join("o");
    fs::create_dir(&dir).unwrap();
    let err = render(
        &store,
        &commit,
        &opts(Format::Squashfs, Compression::None),
        &dir.join("x"),
        &NoProgress,
    );
    assert!(err.is_err());
    let mut o = opts(Format::Cpio, Compression::Gzip);
    o.level = Some(42);
    assert!(render(&store, &commit, &o, &dir.join("x"), &NoProgress).is_err());
    render(
        &store,
        &commit,
        &opts(Format::Tar, Compression::None),
        &dir.join("x"),
        &NoProgress,
    )
    .unwrap();
    let names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("x")]);
}

/// A kernel for the boot test: `VNFS_TEST_KERNEL`, else /boot/vmlinuz*,
/// else the current Debian kernel package fetched with `apt-get download`
/// (from the machine's apt sources) and unpacked, cached in the cargo
/// target's temporary directory.
fn kernel() -> PathBuf {
    if let Some(k) = std::env::var_os("VNFS_TEST_KERNEL") {
        return PathBuf::from(k);
    }
    let mut boot: Vec<PathBuf> = fs::read_dir("/boot")
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    boot.retain(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz"))
    });
    boot.sort();
    if let Some(k) = boot.pop() {
        return k;
    }
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vnfs-test-kernel");
    let found = |dir: &Path| -> Option<PathBuf> {
        let b = dir.join("x/boot");
        let mut v: Vec<PathBuf> = fs::read_dir(&b)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        v.retain(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz"))
        });
        v.sort();
        v.pop()
    };
    if let Some(k) = found(&cache) {
        return k;
    }
    fs::create_dir_all(&cache).unwrap();
    let deps = String::from_utf8(run(
        Command::new("apt-cache").args(["depends", "linux-image-amd64"])
    ))
    .unwrap();
    let pkg = deps
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-"))
        .unwrap_or_else(|| panic!("no linux-image dependency in:\n{deps}"))
        .to_string();
    run(Command::new("apt-get")
        .args(["download", &pkg])
        .current_dir(&cache));
    let deb = fs::read_dir(&cache)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("apt-get download left no .deb");
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(cache.join("x")));
    let _ = fs::remove_file(&deb);
    found(&cache).expect("the kernel package holds no /boot/vmlinuz")
}

/// The /init of the boot test: checks, inside the booted kernel, what the
/// initramfs unpacker made of hard links, modes, owners and xattrs, prints
/// one `VNFS-...` line per finding, and powers off.
const INIT_C: &str = r#"#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/xattr.h>

static int same_content(const char *path, const char *want) {
    char buf[256];
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    return n == (ssize_t)strlen(want) && memcmp(buf, want, n) == 0;
}

int main(void) {
    struct stat a, b, c, x;
    const char *text = "shared by three names\n";
    setvbuf(stdout, NULL, _IONBF, 0);
    if (stat("/data/linked", &a) || stat("/data/sub/linked2", &b) || stat("/zlink", &c)) {
        printf("\nVNFS-HARDLINK stat failed: %s\n", strerror(errno));
    } else {
        printf("\nVNFS-HARDLINK ino %lu %lu %lu nlink %lu content %d %d %d\n",
               (unsigned long)a.st_ino, (unsigned long)b.st_ino, (unsigned long)c.st_ino,
               (unsigned long)a.st_nlink, same_content("/data/linked", text),
               same_content("/data/sub/linked2", text), same_content("/zlink", text));
    }
    if (stat("/data/xattrs", &x) == 0)
        printf("VNFS-META mode %o uid %u gid %u mtime %ld\n", (unsigned)(x.st_mode & 07777),
               (unsigned)x.st_uid, (unsigned)x.st_gid, (long)x.st_mtime);
    char list[1024];
    ssize_t n = llistxattr("/data/xattrs", list, sizeof list);
    printf("VNFS-XATTRS %zd %s\n", n, n < 0 ? strerror(errno) : "");
    int t = lsetxattr("/data/xattrs", "trusted.vnfs", "1", 1, 0);
    printf("VNFS-SETXATTR trusted %d %s\n", t, t ? strerror(errno) : "ok");
    n = llistxattr("/data/xattrs", list, sizeof list);
    printf("VNFS-XATTRS-AFTER %zd\n", n);
    printf("VNFS-INITRAMFS-BOOTED\n");
    sync();
    reboot(RB_POWER_OFF);
    for (;;) pause();
}
"#;

#[test]
fn cpio_initramfs_boots_under_qemu() {
    require_root();
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    fs::create_dir_all(root.join("dev")).unwrap();
    fs::create_dir_all(root.join("data/sub")).unwrap();
    let src = t.path().join("init.c");
    fs::write(&src, INIT_C).unwrap();
    run(Command::new("gcc")
        .args(["-static", "-Os", "-o"])
        .arg(root.join("init"))
        .arg(&src));
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("dev/console"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o600),
        rustix::fs::makedev(5, 1),
    )
    .unwrap();
    // A hard-link group across directories, and a file with xattrs (user,
    // trusted and a file capability), an owner, a mode and an mtime.
    fs::write(root.join("data/linked"), "shared by three names\n").unwrap();
    fs::hard_link(root.join("data/linked"), root.join("data/sub/linked2")).unwrap();
    fs::hard_link(root.join("data/linked"), root.join("zlink")).unwrap();
    let x = root.join("data/xattrs");
    fs::write(&x, "has xattrs\n").unwrap();
    // Owner and mode first: the kernel drops a file capability on chown.
    std::os::unix::fs::lchown(&x, Some(1234), Some(5678)).unwrap();
    fs::set_permissions(&x, std::os::unix::fs::PermissionsExt::from_mode(0o4751)).unwrap();
    xattr::set(&x, "user.note", b"a note").unwrap();
    xattr::set(&x, "trusted.t", b"binary\x00").unwrap();
    // cap_net_raw+ep, VFS_CAP_REVISION_2.
    let cap: [u8; 20] = [
        0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    xattr::set(&x, "security.capability", &cap).unwrap();
    assert_eq!(xattr::list(&x).unwrap().count(), 3);
    let store = Store::open_or_create(&t.path().join("store")).unwrap();
    let o = vnfs_store::CommitOptions {
        name: "tiny".into(),
        timestamp: Some(1_700_000_000),
        ..Default::default()
    };
    let commit = store.commit_dir(&root, &o, &NoProgress).unwrap().id;
    let img = t.path().join("initrd.cpio.gz");
    let stats = render(
        &store,
        &commit,
        &opts(Format::Cpio, Compression::Gzip),
        &img,
        &NoProgress,
    )
    .unwrap();
    // newc has no field for xattrs: the render leaves out all three and
    // says so, naming where.
    assert_eq!(stats.xattrs_dropped, 3);
    let first = stats.xattr_dropped_first.as_deref().unwrap_or_default();
    assert!(first.starts_with("/data/xattrs ("), "{first}");
    let mtime = fs::symlink_metadata(&x).unwrap().mtime();
    let kernel = kernel();
    let out = Command::new("timeout")
        .args([
            "300",
            "qemu-system-x86_64",
            "-accel",
            "tcg",
            "-m",
            "256",
            "-nographic",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&img)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .output()
        .expect("qemu-system-x86_64 (package qemu-system-x86) must be installed");
    let text = String::from_utf8_lossy(&out.stdout);
    let console = || text[text.len().saturating_sub(3000)..].to_string();
    assert!(
        text.contains("VNFS-INITRAMFS-BOOTED"),
        "the initramfs did not reach the end of /init ({}); console:\n{}",
        out.status,
        console()
    );
    let line = |tag: &str| -> Vec<String> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(tag))
            .unwrap_or_else(|| panic!("no {tag} line; console:\n{}", console()))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    // Hard links: one inode, three names, link count 3, the data once.
    let h = line("VNFS-HARDLINK ");
    assert_eq!(h[0], "ino", "{h:?}");
    assert!(
        h[1] == h[2] && h[2] == h[3],
        "names are not one inode: {h:?}"
    );
    assert_eq!(&h[4..], ["nlink", "3", "content", "1", "1", "1"], "{h:?}");
    // Mode (setuid kept), owner and mtime come through the unpacker.
    let m = line("VNFS-META ");
    assert_eq!(
        m,
        [
            "mode",
            "4751",
            "uid",
            "1234",
            "gid",
            "5678",
            "mtime",
            &mtime.to_string()
        ],
        "{m:?}"
    );
    // xattrs: the unpacked file has none (the archive could not carry them
    // and the kernel's unpacker sets none), although rootfs (tmpfs) holds
    // them when set at run time, e.g. by /init.
    assert_eq!(line("VNFS-XATTRS "), ["0"], "console:\n{}", console());
    assert_eq!(line("VNFS-SETXATTR trusted "), ["0", "ok"]);
    let after: i64 = line("VNFS-XATTRS-AFTER ")[0].parse().unwrap();
    assert_eq!(after, "trusted.vnfs\0".len() as i64);
}

#[test]
fn mtimes_the_format_cannot_hold_are_counted_and_named() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    let old = src.join("etc/old");
    fs::write(&old, "from 1960\n").unwrap();
    let when = std::time::UNIX_EPOCH - std::time::Duration::from_secs(315_619_200);
    fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(when)
        .unwrap();
    let store = Store::open_or_create(&t.path().join("store")).unwrap();
    let o = vnfs_store::CommitOptions {
        name: "old".into(),
        timestamp: Some(1_700_000_000),
        ..Default::default()
    };
    let commit = store.commit_dir(&src, &o, &NoProgress).unwrap().id;
    for format in [Format::Cpio, Format::Squashfs, Format::Tar] {
        let out = t.path().join(format!("x-{format:?}"));
        let stats = render(
            &store,
            &commit,
            &opts(format, Compression::Zstd),
            &out,
            &NoProgress,
        )
        .unwrap();
        if format == Format::Tar {
            // pax carries any time.
            assert_eq!(stats.mtimes_clamped, 0);
            continue;
        }
        assert_eq!(stats.mtimes_clamped, 1, "{format:?}");
        assert_eq!(
            stats.mtime_clamped_first,
            Some(("/etc/old".into(), -315_619_200)),
            "{format:?}"
        );
    }
}
