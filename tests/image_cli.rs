//! `vnfs image` through the binary: all three formats to a file and to
//! stdout (read back with the standard tools), --compression and --level,
//! and the errors: unknown image, unknown format, bad level, an output that
//! cannot be written, and a render that fails half-way (a corrupt chunk),
//! which must leave neither a partial image nor a temporary file, and must
//! not touch an existing file at the output path. Outputs that are FIFOs,
//! devices, symlinks or directories, SIGINT during a render, a full disk,
//! and the JSON report on stderr with `-o -` (root needed for mknod and
//! the tmpfs, as CI runs).
//!
//! Needs squashfs-tools, cpio and GNU tar (scripts/setup.sh installs them);
//! a missing tool fails the test.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn vnfs(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vnfs"))
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: Output) -> Vec<u8> {
    assert!(
        o.status.success(),
        "vnfs failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

fn failed(o: Output) -> String {
    assert!(!o.status.success(), "vnfs succeeded where it must fail");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs a standard tool, failing loudly when it is missing or fails.
fn tool(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (run scripts/setup.sh)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[path = "support/noise.rs"]
mod noise;
use noise::noise;

const TEXT: &str = "a line of text that compresses well, repeated many times\n";

/// A home with image `node`: a small file, a compressible file, an
/// incompressible file (its chunks are stored as they are, so the test can
/// find and damage one in the pack) and a hard link.
fn home_with_image(dir: &Path) -> (PathBuf, PathBuf) {
    let src = dir.join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::create_dir_all(src.join("usr/share")).unwrap();
    fs::write(src.join("etc/hostname"), "node\n").unwrap();
    fs::write(src.join("usr/share/text"), TEXT.repeat(4000)).unwrap();
    fs::write(src.join("usr/share/noise"), noise(600_000, 5)).unwrap();
    fs::hard_link(src.join("etc/hostname"), src.join("etc/hostname2")).unwrap();
    let home = dir.join("home");
    ok(vnfs(
        &home,
        &[
            "commit",
            src.to_str().unwrap(),
            "-n",
            "node",
            "--timestamp",
            "1700000000",
        ],
    ));
    (home, src)
}

/// Extracts an image with the format's standard tool into a new directory.
fn extract(format: &str, image: &Path, into: &Path) {
    fs::create_dir_all(into).unwrap();
    match format {
        "squashfs" => {
            fs::remove_dir(into).unwrap();
            tool(Command::new("unsquashfs").arg("-d").arg(into).arg(image));
        }
        "cpio" => {
            tool(
                Command::new("cpio")
                    .args(["-idm", "--quiet", "--no-absolute-filenames"])
                    .current_dir(into)
                    .stdin(fs::File::open(image).unwrap()),
            );
        }
        "tar" => {
            tool(
                Command::new("tar")
                    .arg("-xf")
                    .arg(image)
                    .arg("-C")
                    .arg(into),
            );
        }
        _ => unreachable!(),
    }
}

use outputs::names;

#[test]
fn every_format_to_a_file_and_to_stdout() {
    let t = tempfile::tempdir().unwrap();
    let (home, src) = home_with_image(t.path());
    let out = t.path().join("out");
    fs::create_dir(&out).unwrap();
    for format in ["squashfs", "cpio", "tar"] {
        let img = out.join(format!("node.{format}"));
        let stdout = ok(vnfs(
            &home,
            &[
                "image",
                "node",
                "--format",
                format,
                "-o",
                img.to_str().unwrap(),
            ],
        ));
        assert!(stdout.is_empty(), "{format}: nothing on stdout for a file");
        let x = t.path().join(format!("x-{format}"));
        extract(format, &img, &x);
        for f in ["etc/hostname", "usr/share/text", "usr/share/noise"] {
            assert_eq!(
                fs::read(x.join(f)).unwrap(),
                fs::read(src.join(f)).unwrap(),
                "{format}: {f}"
            );
        }
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            fs::metadata(x.join("etc/hostname")).unwrap().ino(),
            fs::metadata(x.join("etc/hostname2")).unwrap().ino(),
            "{format}: the hard link is one file"
        );
        if format != "squashfs" {
            // The same bytes to stdout.
            let piped = ok(vnfs(
                &home,
                &["image", "node", "--format", format, "-o", "-"],
            ));
            assert_eq!(piped, fs::read(&img).unwrap(), "{format}: stdout differs");
        }
    }
    // Files written under temporary names were all renamed.
    assert_eq!(names(&out), ["node.cpio", "node.squashfs", "node.tar"]);
}

#[test]
fn compression_and_level() {
    let t = tempfile::tempdir().unwrap();
    let (home, _) = home_with_image(t.path());
    let o = |name: &str| t.path().join(name).to_str().unwrap().to_owned();
    let head = |name: &str, n: usize| fs::read(t.path().join(name)).unwrap()[..n].to_vec();
    // Stream compressors, chosen by flag or by the output's extension.
    for (args, name, magic) in [
        (&["--compression", "gzip"][..], "a.tar", &[0x1f, 0x8b][..]),
        (
            &["--compression", "xz"],
            "b.cpio",
            &[0xfd, b'7', b'z', b'X', b'Z', 0],
        ),
        (
            &["--compression", "zstd"],
            "c.tar",
            &[0x28, 0xb5, 0x2f, 0xfd],
        ),
        (&[], "d.tar.gz", &[0x1f, 0x8b]),
        (&[], "e.cpio.zst", &[0x28, 0xb5, 0x2f, 0xfd]),
        (&[], "f.tar.xz", &[0xfd, b'7', b'z', b'X', b'Z', 0]),
    ] {
        let format = if name.contains("cpio") { "cpio" } else { "tar" };
        let mut a = vec!["image", "node", "--format", format, "-o"];
        let path = o(name);
        a.push(&path);
        a.extend_from_slice(args);
        ok(vnfs(&home, &a));
        assert_eq!(head(name, magic.len()), magic, "{name} {args:?}");
    }
    // Uncompressed tar: a ustar header at 257.
    ok(vnfs(
        &home,
        &["image", "node", "--format", "tar", "-o", &o("plain.tar")],
    ));
    assert_eq!(
        &fs::read(t.path().join("plain.tar")).unwrap()[257..262],
        b"ustar"
    );
    // squashfs: the superblock names the compressor (u16 at 20: 1 gzip,
    // 4 xz, 6 zstd); zstd by default.
    for (args, id) in [
        (&[][..], 6u16),
        (&["--compression", "gzip"], 1),
        (&["--compression", "xz"], 4),
    ] {
        let mut a = vec!["image", "node", "--format", "squashfs", "-o"];
        let path = o("s.sqfs");
        a.push(&path);
        a.extend_from_slice(args);
        ok(vnfs(&home, &a));
        let b = head("s.sqfs", 22);
        assert_eq!(&b[..4], b"hsqs");
        assert_eq!(u16::from_le_bytes([b[20], b[21]]), id, "{args:?}");
    }
    // --level is honoured: zstd 19 is smaller than zstd 1 on this tree.
    let size = |level: &str, name: &str| {
        ok(vnfs(
            &home,
            &[
                "image",
                "node",
                "--format",
                "tar",
                "--compression",
                "zstd",
                "--level",
                level,
                "-o",
                &o(name),
            ],
        ));
        fs::metadata(t.path().join(name)).unwrap().len()
    };
    let (fast, small) = (size("1", "l1.tar.zst"), size("19", "l19.tar.zst"));
    assert!(small < fast, "level 19 {small} bytes, level 1 {fast}");
}

#[test]
fn errors_name_the_problem_and_leave_nothing_behind() {
    let t = tempfile::tempdir().unwrap();
    let (home, _) = home_with_image(t.path());
    let out = t.path().join("out");
    fs::create_dir(&out).unwrap();
    let target = out.join("x.tar");
    let target_s = target.to_str().unwrap();

    let e = failed(vnfs(
        &home,
        &["image", "nosuch", "--format", "tar", "-o", target_s],
    ));
    assert!(e.contains("nosuch"), "{e}");
    let e = failed(vnfs(
        &home,
        &["image", "node", "--format", "zip", "-o", target_s],
    ));
    assert!(e.contains("zip") && e.contains("squashfs"), "{e}");
    let e = failed(vnfs(
        &home,
        &[
            "image",
            "node",
            "--format",
            "tar",
            "--compression",
            "gzip",
            "--level",
            "42",
            "-o",
            target_s,
        ],
    ));
    assert!(e.contains("level 42"), "{e}");
    let e = failed(vnfs(
        &home,
        &[
            "image",
            "node",
            "--format",
            "squashfs",
            "--compression",
            "none",
            "-o",
            target_s,
        ],
    ));
    assert!(e.to_lowercase().contains("squashfs"), "{e}");
    assert!(names(&out).is_empty(), "left behind: {:?}", names(&out));

    // An output whose directory is a regular file, or does not exist.
    let file = t.path().join("a-file");
    fs::write(&file, "x").unwrap();
    for bad in [file.join("x.tar"), t.path().join("no/such/dir/x.tar")] {
        let e = failed(vnfs(
            &home,
            &[
                "image",
                "node",
                "--format",
                "tar",
                "-o",
                bad.to_str().unwrap(),
            ],
        ));
        let dir = bad.parent().unwrap().to_str().unwrap().to_owned();
        assert!(e.contains(&dir), "error does not name {dir}: {e}");
        assert!(!e.contains(".x.tar."), "names the temporary file: {e}");
    }

    // Without --format, the output's extension decides; a name without
    // one is refused with the choices.
    let e = failed(vnfs(
        &home,
        &["image", "node", "-o", out.join("x.img").to_str().unwrap()],
    ));
    assert!(e.contains("--format squashfs, cpio or tar"), "{e}");
    let tgz = out.join("x.tar.gz");
    ok(vnfs(&home, &["image", "node", "-o", tgz.to_str().unwrap()]));
    tool(Command::new("tar").arg("-tzf").arg(&tgz));
}

#[test]
fn a_render_failing_half_way_leaves_the_old_output() {
    let t = tempfile::tempdir().unwrap();
    let (home, _) = home_with_image(t.path());
    // Damage the incompressible file's data in the pack (stored raw, so its
    // bytes can be found there).
    let needle = &noise(600_000, 5)[300_000..300_064];
    let mut damaged = 0;
    for e in walk(&home.join("store/packs")) {
        if e.extension().is_some_and(|x| x == "pack") {
            let mut b = fs::read(&e).unwrap();
            if let Some(at) = b.windows(needle.len()).position(|w| w == needle) {
                b[at + 10] ^= 0xff;
                fs::write(&e, b).unwrap();
                damaged += 1;
            }
        }
    }
    assert_eq!(damaged, 1, "the file's data was not found in a pack");
    let out = t.path().join("out");
    fs::create_dir(&out).unwrap();
    for format in ["tar", "cpio", "squashfs"] {
        let target = out.join(format!("node.{format}"));
        fs::write(&target, "the previous image\n").unwrap();
        let e = failed(vnfs(
            &home,
            &[
                "image",
                "node",
                "--format",
                format,
                "-o",
                target.to_str().unwrap(),
            ],
        ));
        assert!(
            e.contains("chunk"),
            "{format}: the error names no chunk: {e}"
        );
        assert_eq!(
            fs::read_to_string(&target).unwrap(),
            "the previous image\n",
            "{format}: the existing output was touched"
        );
    }
    assert_eq!(names(&out), ["node.cpio", "node.squashfs", "node.tar"]);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[path = "support/outputs.rs"]
mod outputs;

#[test]
fn image_writes_into_fifos_and_devices_and_follows_symlinks() {
    let t = tempfile::tempdir().unwrap();
    let (home, _) = home_with_image(t.path());
    let reference = ok(vnfs(&home, &["image", "node", "-f", "tar", "-o", "-"]));
    let out = t.path().join("out");
    fs::create_dir(&out).unwrap();

    let fifo = out.join("pipe");
    outputs::mkfifo(&fifo);
    let reader = outputs::read_fifo(&fifo);
    ok(vnfs(
        &home,
        &["image", "node", "-f", "tar", "-o", fifo.to_str().unwrap()],
    ));
    assert_eq!(reader.join().unwrap(), reference, "the FIFO's reader");
    assert!(outputs::is_fifo(&fifo), "the FIFO was replaced");
    // squashfs cannot go into a FIFO: refused at once, without waiting
    // for a reader that will never come.
    let e = failed(vnfs(
        &home,
        &[
            "image",
            "node",
            "-f",
            "squashfs",
            "-o",
            fifo.to_str().unwrap(),
        ],
    ));
    assert!(
        e.contains("FIFO") && e.contains(fifo.to_str().unwrap()),
        "{e}"
    );

    let null = out.join("mynull");
    outputs::mknod_null(&null);
    ok(vnfs(
        &home,
        &["image", "node", "-f", "tar", "-o", null.to_str().unwrap()],
    ));
    assert!(outputs::is_char_device(&null), "the device was replaced");

    let real = out.join("real.tar");
    fs::write(&real, "old").unwrap();
    let link = out.join("link.tar");
    std::os::unix::fs::symlink("real.tar", &link).unwrap();
    for format in ["tar", "squashfs"] {
        ok(vnfs(
            &home,
            &["image", "node", "-f", format, "-o", link.to_str().unwrap()],
        ));
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
    let x = t.path().join("x");
    extract("squashfs", &real, &x);
    assert_eq!(fs::read(x.join("etc/hostname")).unwrap(), b"node\n");

    // A directory is never replaced.
    let e = failed(vnfs(
        &home,
        &["image", "node", "-f", "tar", "-o", out.to_str().unwrap()],
    ));
    assert!(e.contains("is a directory"), "{e}");
    assert_eq!(
        outputs::names(&out),
        ["link.tar", "mynull", "pipe", "real.tar"]
    );
}

#[test]
fn image_json_report_goes_to_stderr_with_stdout_output() {
    let t = tempfile::tempdir().unwrap();
    let (home, _) = home_with_image(t.path());
    let plain = ok(vnfs(&home, &["image", "node", "-f", "cpio", "-o", "-"]));
    let o = vnfs(&home, &["--json", "image", "node", "-f", "cpio", "-o", "-"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout, plain, "stdout holds more than the image");
    let v: serde_json::Value = serde_json::from_slice(&o.stderr).unwrap();
    assert_eq!(v["image_bytes"], plain.len() as u64);
}

#[test]
fn an_interrupted_render_leaves_no_temporary_file() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("big"), noise(48 << 20, 3)).unwrap();
    let home = t.path().join("home");
    ok(vnfs(&home, &["commit", src.to_str().unwrap(), "-n", "big"]));
    let out = t.path().join("out");
    fs::create_dir(&out).unwrap();
    for format in ["tar", "squashfs"] {
        let target = out.join(format!("big.{format}"));
        let mut child = outputs::spawn(
            &home,
            &["image", "big", "-f", format, "-o", target.to_str().unwrap()],
        );
        let (_, mode) = outputs::wait_for_temp(&mut child, &out, &[]);
        assert_eq!(mode, 0o600, "{format}: the temporary file's mode");
        let o = outputs::interrupt(child);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success(),
            "{format}: the interrupted render succeeded"
        );
        assert!(stderr.contains("interrupted"), "{format}: {stderr}");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&o.status),
            Some(libc::SIGINT),
            "{format}: {stderr}"
        );
        assert!(
            outputs::names(&out).is_empty(),
            "{format}: left {:?}",
            outputs::names(&out)
        );
    }
}

#[test]
fn a_full_disk_is_reported_against_the_output() {
    let t = tempfile::tempdir().unwrap();
    let (home, _) = home_with_image(t.path());
    let small = outputs::Tmpfs::mount(&t.path().join("small"), 200);
    for (format, name) in [("tar", "x.tar"), ("cpio", "x.cpio"), ("squashfs", "x.sqfs")] {
        let target = small.path().join(name);
        let e = failed(vnfs(
            &home,
            &[
                "image",
                "node",
                "-f",
                format,
                "-o",
                target.to_str().unwrap(),
            ],
        ));
        assert!(
            e.contains(target.to_str().unwrap()) && e.contains("No space left on device"),
            "{format}: {e}"
        );
        assert!(
            !e.contains("<output>") && !e.contains("usr/share"),
            "{format}: {e}"
        );
        assert!(
            outputs::names(small.path()).is_empty(),
            "{format}: left behind"
        );
    }
}
