//! The master side of the end-to-end tests: a vnfs home with a real image,
//! `vnfs serve` as a child process, and node agents run in threads.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vnfs_node::client::Retry;
use vnfs_node::imageconf::{CONFIG_KEY, ImageConfig};
use vnfs_node::provision::{self, Report};
use vnfs_store::id::IdSet;
use vnfs_store::{EntryKind, Extent, NoProgress, ObjectId, Store};

/// A master installation in a temporary directory.
pub struct Site {
    pub dir: tempfile::TempDir,
}

/// A running `vnfs serve`; killed on drop.
pub struct Daemon {
    pub child: Child,
    pub url: String,
    pub port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound and released; the daemon binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

impl Site {
    /// `vnfs init` in a new home.
    pub fn new() -> Site {
        let s = Site {
            dir: tempfile::tempdir().unwrap(),
        };
        s.vnfs(&[
            "init",
            "--yes",
            "--device",
            "lo",
            "--address",
            "127.0.0.1",
            "--dhcp-start",
            "127.0.1.0",
            "--dhcp-end",
            "127.0.1.254",
        ]);
        s
    }

    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.home().join(rel)
    }

    pub fn root(&self, i: usize, tag: &str) -> PathBuf {
        self.path(&format!("nodes/{tag}{i}"))
    }

    pub fn cache(&self, i: usize) -> PathBuf {
        self.path(&format!("nodes/cache{i}"))
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vnfs"));
        c.args(args)
            .env("VNFS_HOME", self.home())
            .env_remove("VNFS_CONFIG")
            .env_remove("VNFS_LOG");
        c
    }

    /// Runs `vnfs ARGS`, expecting success; returns stdout.
    pub fn vnfs(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "vnfs {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `vnfs ARGS`, expecting failure; returns stderr.
    pub fn vnfs_fails(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        assert!(!out.status.success(), "vnfs {args:?} succeeded");
        String::from_utf8(out.stderr).unwrap()
    }

    pub fn store(&self) -> Store {
        Store::open_or_create(&self.path("store")).unwrap()
    }

    /// Commits `dir` as a new version of `name` with a VNFS configuration.
    pub fn commit_with(&self, name: &str, dir: &Path, config: &ImageConfig) -> ObjectId {
        let mut metadata = BTreeMap::new();
        metadata.insert(CONFIG_KEY.to_string(), config.to_json());
        let opts = vnfs_store::CommitOptions {
            name: name.into(),
            message: "test".into(),
            metadata,
            ..Default::default()
        };
        self.store().commit_dir(dir, &opts, &NoProgress).unwrap().id
    }

    /// Commits with the given livesync.skip list and no hybridization.
    pub fn commit_image(&self, name: &str, dir: &Path, skip: &[&str]) -> ObjectId {
        let config = ImageConfig {
            livesync_skip: skip.iter().map(|s| s.to_string()).collect(),
            ..ImageConfig::default()
        };
        self.commit_with(name, dir, &config)
    }

    /// Makes new nodes get `name` as their VNFS.
    pub fn set_default_vnfs(&self, name: &str) {
        let p = self.path("defaults.conf");
        let text = std::fs::read_to_string(&p).unwrap();
        let out: Vec<String> = text
            .lines()
            .map(|l| {
                if l.trim_start().to_lowercase().starts_with("vnfs name") {
                    format!("Vnfs Name = {name}")
                } else {
                    l.to_string()
                }
            })
            .collect();
        std::fs::write(&p, out.join("\n") + "\n").unwrap();
    }

    /// Starts `vnfs serve` on a free port and waits until it accepts.
    pub fn start_daemon(&self) -> Daemon {
        self.start_daemon_on(free_port(), &[])
    }

    /// Starts `vnfs serve` on `port` with extra arguments.
    pub fn start_daemon_on(&self, port: u16, extra: &[&str]) -> Daemon {
        let listen = format!("127.0.0.1:{port}");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("serve.log"))
            .unwrap();
        let mut args = vec!["serve", "--listen", &listen, "--interval", "1", "-v"];
        args.extend_from_slice(extra);
        let child = self
            .cmd(&args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let d = Daemon {
            child,
            url: format!("http://{listen}"),
            port,
        };
        let start = Instant::now();
        while TcpStream::connect(&listen).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "vnfs serve did not start: {}",
                std::fs::read_to_string(self.path("serve.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    /// A small but real image: parts of the host's /usr next to every
    /// kind of entry and metadata the store keeps.
    pub fn image_v1(&self) -> PathBuf {
        let root = self.path("src-v1");
        for d in [
            "etc",
            "dev",
            "usr/share/zoneinfo",
            "usr/lib/python3",
            "var/log",
            "bin",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let cp = |from: &str, to: &str| {
            let st = Command::new("cp")
                .args(["-a", from])
                .arg(root.join(to))
                .status()
                .unwrap();
            assert!(st.success(), "cp -a {from}");
        };
        cp("/usr/share/zoneinfo/Europe", "usr/share/zoneinfo/");
        cp("/usr/lib/python3.11/email", "usr/lib/python3/");
        cp("/usr/lib/x86_64-linux-gnu/perl-base", "usr/lib/");
        cp("/bin/true", "bin/");
        std::fs::write(root.join("etc/hostname"), "image\n").unwrap();
        std::fs::write(root.join("etc/motd"), "version 1\n").unwrap();
        std::fs::write(root.join("var/log/boot.log"), "old log\n").unwrap();
        std::fs::write(root.join("etc/shared-a"), super::common::noise(200_000, 5)).unwrap();
        std::fs::hard_link(root.join("etc/shared-a"), root.join("usr/shared-b")).unwrap();
        std::os::unix::fs::symlink("../etc/motd", root.join("usr/motd-link")).unwrap();
        let f = std::fs::File::create(root.join("usr/sparse")).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"tail", 4 << 20).unwrap();
        drop(f);
        let mk = |name: &str, ft, dev| {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                root.join(name),
                ft,
                rustix::fs::Mode::from_raw_mode(0o620),
                dev,
            )
            .unwrap()
        };
        mk(
            "dev/null",
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::makedev(1, 3),
        );
        mk(
            "dev/loop0",
            rustix::fs::FileType::BlockDevice,
            rustix::fs::makedev(7, 0),
        );
        mk("dev/initctl", rustix::fs::FileType::Fifo, 0);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            root.join("bin/true"),
            std::fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        std::os::unix::fs::lchown(root.join("etc/motd"), Some(1234), Some(5678)).unwrap();
        xattr::set(root.join("etc/motd"), "user.note", b"a note").unwrap();
        let cap: [u8; 20] = [
            0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        xattr::set(root.join("bin/true"), "security.capability", &cap).unwrap();
        root
    }

    /// `vnfs checkout NAME DIR` into the home; returns DIR.
    pub fn checkout(&self, name: &str, dir: &str) -> PathBuf {
        let p = self.path(dir);
        self.vnfs(&["checkout", name, p.to_str().unwrap()]);
        p
    }

    /// Checks out `name` and edits it as an administrator would: a changed
    /// file, a new one, a removed one, a mode change, a changed library.
    pub fn edit_checkout(&self, name: &str, dir: &str, n: u32) -> PathBuf {
        let root = self.checkout(name, dir);
        std::fs::write(root.join("etc/motd"), format!("version {n}\n")).unwrap();
        std::fs::write(
            root.join(format!("etc/edited-{n}")),
            format!("new in {n}\n"),
        )
        .unwrap();
        let zi = root.join("usr/share/zoneinfo/Europe");
        let victim = std::fs::read_dir(&zi)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .find(|p| !p.to_string_lossy().contains("removed"))
            .unwrap();
        std::fs::remove_file(&victim).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            root.join("usr/sparse"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let mut lib = std::fs::read(root.join("etc/shared-a")).unwrap();
        let at = lib.len() / 2;
        lib[at..at + 16].copy_from_slice(&[n as u8; 16]);
        // Write in place: a hard-linked file keeps its links.
        std::fs::write(root.join("etc/shared-a"), &lib).unwrap();
        root
    }

    /// Chunks and trees of `b` that `a` does not have.
    pub fn new_objects(&self, a: &ObjectId, b: &ObjectId) -> (u64, u64) {
        let store = self.store();
        let collect = |c: &ObjectId| {
            let mut chunks = IdSet::default();
            let mut trees = IdSet::default();
            let root = store.read_commit(c).unwrap().tree();
            trees.insert(root);
            store
                .walk(&root, &mut |_, e| {
                    match &e.kind {
                        EntryKind::Dir { tree } => {
                            trees.insert(*tree);
                        }
                        EntryKind::File { extents, .. } => {
                            for x in extents {
                                if let Extent::Data { id, .. } = x {
                                    chunks.insert(*id);
                                }
                            }
                        }
                        _ => {}
                    }
                    Ok(true)
                })
                .unwrap();
            (chunks, trees)
        };
        let (ca, ta) = collect(a);
        let (cb, tb) = collect(b);
        (
            cb.difference(&ca).count() as u64,
            tb.difference(&ta).count() as u64,
        )
    }
}

/// Agent options for one node.
pub fn options(url: &str, mac: &str, root: &Path, cache: &Path) -> provision::Options {
    provision::Options {
        master: url.to_string(),
        root: root.to_path_buf(),
        cache: Some(cache.to_path_buf()),
        mac: mac.to_string(),
        secret: None,
        threads: 4,
        retry: Retry {
            give_up_after: Duration::from_secs(60),
            ..Retry::default()
        },
    }
}

/// Provisions one node.
pub fn provision_one(url: &str, mac: &str, root: &Path, cache: &Path) -> Report {
    provision::provision(&options(url, mac, root, cache))
        .unwrap_or_else(|e| panic!("provisioning {mac}: {e}"))
}

/// Provisions every node at once, each in its own thread.
pub fn provision_all(m: &Site, url: &str, macs: &[String], tag: &str) -> Vec<Report> {
    let handles: Vec<_> = macs
        .iter()
        .enumerate()
        .map(|(i, mac)| {
            let o = options(url, mac, &m.root(i, tag), &m.cache(i));
            std::thread::spawn(move || provision::provision(&o))
        })
        .collect();
    handles
        .into_iter()
        .zip(macs)
        .map(|(h, mac)| {
            h.join()
                .unwrap()
                .unwrap_or_else(|e| panic!("provisioning {mac}: {e}"))
        })
        .collect()
}

/// Sets `p`'s mtime to `like`'s.
pub fn set_mtime_like(p: &Path, like: &std::fs::Metadata) {
    let t = rustix::fs::Timespec {
        tv_sec: like.mtime(),
        tv_nsec: like.mtime_nsec() as _,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// Removes `rel` under `root`, putting its directory's mtime back, so two
/// trees can be compared without one path.
pub fn remove_keeping_parent_time(root: &Path, rel: &str) {
    let p = root.join(rel);
    let parent = p.parent().unwrap().to_path_buf();
    let meta = std::fs::symlink_metadata(&parent).unwrap();
    std::fs::remove_file(&p).unwrap();
    set_mtime_like(&parent, &meta);
}

/// `cp -a FROM TO`.
pub fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}
