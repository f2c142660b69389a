//! Image rendering end to end: for each format, the standard tool's
//! extraction equals a checkout of the same commit (in what the format can
//! carry); renders are byte-identical across runs; the kernel loop-mounts
//! the squashfs; a cpio initramfs boots to its /init under QEMU.
//!
//! Needs root, squashfs-tools, cpio, GNU tar, gcc with a static libc and
//! qemu-system-x86; a missing piece fails the test, it is never skipped.

#[path = "image/common.rs"]
mod common;

use std::fs;
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

#[test]
fn cpio_initramfs_boots_under_qemu() {
    require_root();
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    fs::create_dir_all(root.join("dev")).unwrap();
    let src = t.path().join("init.c");
    fs::write(
        &src,
        r#"#include <unistd.h>
#include <sys/reboot.h>
int main(void) {
    static const char m[] = "\nVNFS-INITRAMFS-BOOTED\n";
    write(1, m, sizeof m - 1);
    sync();
    reboot(RB_POWER_OFF);
    for (;;) pause();
}
"#,
    )
    .unwrap();
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
    let store = Store::open_or_create(&t.path().join("store")).unwrap();
    let o = vnfs_store::CommitOptions {
        name: "tiny".into(),
        timestamp: Some(1_700_000_000),
        ..Default::default()
    };
    let commit = store.commit_dir(&root, &o, &NoProgress).unwrap().id;
    let img = t.path().join("initrd.cpio.gz");
    render(
        &store,
        &commit,
        &opts(Format::Cpio, Compression::Gzip),
        &img,
        &NoProgress,
    )
    .unwrap();
    let kernel = kernel();
    let out = Command::new("timeout")
        .args([
            "120",
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
    assert!(
        text.contains("VNFS-INITRAMFS-BOOTED"),
        "the initramfs did not reach /init ({}); console:\n{}",
        out.status,
        &text[text.len().saturating_sub(3000)..]
    );
}
