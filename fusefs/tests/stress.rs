//! Parallel writers, renames, links and deletes on one mount; then the
//! commit must equal the final view and the store must check clean.

mod common;

use std::fs;
use std::io::Write;

use common::{Fixture, snapshot};

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
