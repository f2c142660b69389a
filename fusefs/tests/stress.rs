//! Parallel writers, renames, links and deletes on one mount (our own
//! threads, then fio and stress-ng from Debian); then the commit must
//! equal the final view and the store must check clean.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{Fixture, manifest, snapshot};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn parallel_edits_commit_what_the_mount_shows() {
    let mut f = Fixture::new();
    let dirs = ["s0", "s1", "full", "etc", "data"];
    for d in &dirs[..2] {
        fs::create_dir(f.p(d)).unwrap();
    }
    let mnt = f.mnt.clone();
    std::thread::scope(|s| {
        for tid in 0..4u64 {
            let mnt = mnt.clone();
            s.spawn(move || {
                let mut r = Rng(0x1234_5678 + tid * 7919);
                for i in 0..400 {
                    let d = dirs[(r.next() % dirs.len() as u64) as usize];
                    let n = format!("f{}", r.next() % 24);
                    let p = mnt.join(d).join(&n);
                    let res = match r.next() % 7 {
                        0 | 1 => fs::write(
                            &p,
                            format!("{tid}:{i}:{}", "x".repeat((r.next() % 9000) as usize)),
                        ),
                        2 => {
                            let d2 = dirs[(r.next() % dirs.len() as u64) as usize];
                            fs::rename(&p, mnt.join(d2).join(format!("f{}", r.next() % 24)))
                        }
                        3 => fs::remove_file(&p),
                        4 => fs::OpenOptions::new()
                            .append(true)
                            .open(&p)
                            .and_then(|mut h| h.write_all(b"+")),
                        5 => fs::hard_link(&p, mnt.join(d).join(format!("l{}", r.next() % 8))),
                        _ => {
                            let sub = mnt.join(d).join(format!("d{}", r.next() % 4));
                            fs::create_dir(&sub).or_else(|_| fs::remove_dir(&sub))
                        }
                    };
                    if let Err(e) = res {
                        let code = e.raw_os_error().unwrap_or(0);
                        assert!(
                            [libc::ENOENT, libc::EEXIST, libc::ENOTEMPTY, libc::EISDIR]
                                .contains(&code),
                            "{}: {e}",
                            p.display()
                        );
                    }
                }
            });
        }
    });
    let view = snapshot(&f.mnt);
    let s = f.commit();
    assert!(s.id.is_some());
    assert_eq!(
        snapshot(&f.checkout()),
        view,
        "checkout equals the final mount view"
    );
    let report = f.store.fsck(&vnfs_store::NoProgress).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

fn tool(name: &str) {
    let ok = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "{name} is missing: run scripts/setup.sh");
}

/// Metadata and data changes on lower files, racing fio and stress-ng:
/// metadata-only copy-ups, then writes that fill them in.
fn touch_lower_files(mnt: &Path, seed: u64) {
    let mut r = Rng(seed);
    for i in 0..300 {
        let p = mnt.join(format!("lower/d{}/f{}", r.next() % 10, r.next() % 30));
        let res = match r.next() % 6 {
            0 => fs::set_permissions(&p, fs::Permissions::from_mode(0o600 + (i % 64))),
            1 => std::os::unix::fs::chown(&p, Some(1000 + i), None),
            2 => fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .and_then(|f| f.write_all_at(format!("w{i}").as_bytes(), (i * 7) as u64)),
            3 => fs::rename(&p, mnt.join(format!("lower/d{}/r{i}", r.next() % 10))),
            4 => fs::hard_link(&p, mnt.join(format!("lower/d{}/l{i}", r.next() % 10))),
            _ => fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .and_then(|f| f.set_len(u64::from(i % 100))),
        };
        if let Err(e) = res {
            let code = e.raw_os_error().unwrap_or(0);
            assert!(
                [libc::ENOENT, libc::EEXIST].contains(&code),
                "{}: {e}",
                p.display()
            );
        }
    }
}

#[test]
fn fio_and_stress_ng_then_commit_equals_the_final_view() {
    tool("fio");
    tool("stress-ng");
    let mut f = Fixture::with_source(|src| {
        common::build_source(src);
        for d in 0..10 {
            let dir = src.join(format!("lower/d{d}"));
            fs::create_dir_all(&dir).unwrap();
            for i in 0..30 {
                let body = format!("{d}:{i}:").repeat(200 + i * 50);
                fs::write(dir.join(format!("f{i}")), body).unwrap();
            }
        }
    });
    for d in ["fio", "sng"] {
        fs::create_dir(f.p(d)).unwrap();
    }
    let job = f.tmp.path().join("mount.fio");
    fs::write(
        &job,
        format!(
            "[global]\ndirectory={dir}/fio\nioengine=psync\nsize=4m\nbsrange=4k-64k\n\
             time_based=1\nruntime=15\n\
             [verify]\nrw=randwrite\nverify=crc32c\nverify_state_save=0\nnumjobs=2\n\
             [mixed]\nrw=randrw\nfallocate=truncate\nnumjobs=2\n\
             [mmap]\nioengine=mmap\nrw=randrw\nsize=2m\n\
             [lower-read]\nfilename={dir}/usr/lib/big.so\nrw=randread\nsize=3000000\n\
             [lower-write]\nfilename={dir}/data/sparse\nrw=randwrite\nsize=1048576\n",
            dir = f.mnt.display()
        ),
    )
    .unwrap();
    let fio = Command::new("fio")
        .arg("--output-format=json")
        .arg(&job)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let sng = Command::new("stress-ng")
        .arg("--temp-path")
        .arg(f.p("sng"))
        .args([
            "--rename",
            "2",
            "--dir",
            "1",
            "--link",
            "1",
            "--symlink",
            "1",
            "--dentry",
            "1",
            "--file-ioctl",
            "1",
            "--chmod",
            "1",
            "--utime",
            "1",
            "--xattr",
            "1",
            "--fallocate",
            "1",
            "--getdent",
            "1",
            "--timeout",
            "15s",
            "--verify",
            "--metrics-brief",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mnt = f.mnt.clone();
    std::thread::scope(|s| {
        for t in 0..2 {
            let mnt = mnt.clone();
            s.spawn(move || touch_lower_files(&mnt, 0xfeed + t));
        }
    });
    let mut fio_json = Vec::new();
    for (name, child) in [("fio", fio), ("stress-ng", sng)] {
        let out = child.wait_with_output().unwrap();
        eprintln!("{name}:\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success(),
            "{name} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if name == "fio" {
            fio_json = out.stdout;
        }
    }
    // Every fio job ran without error and moved data.
    // fio may print notes before the JSON document.
    let text = String::from_utf8_lossy(&fio_json);
    let start = text.find("\n{").map_or(0, |i| i + 1);
    let report: serde_json::Value =
        serde_json::from_str(&text[start..]).unwrap_or_else(|e| panic!("fio output: {e}\n{text}"));
    let jobs = report["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 7, "{report}");
    for j in jobs {
        let io = j["read"]["io_bytes"].as_u64().unwrap() + j["write"]["io_bytes"].as_u64().unwrap();
        eprintln!(
            "fio {}: {} MB, error {}",
            j["jobname"],
            io >> 20,
            j["error"]
        );
        assert_eq!(j["error"], 0, "{j}");
        assert!(io > 1 << 20, "{j}");
    }
    let view = manifest(&f.mnt);
    assert!(view.len() > 600, "{}", view.len());
    let s = f.commit();
    assert!(s.id.is_some());
    let report = f.store.fsck(&vnfs_store::NoProgress).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(
        manifest(&f.checkout()),
        view,
        "checkout equals the final mount view"
    );
}
