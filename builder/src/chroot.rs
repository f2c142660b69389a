//! Running commands inside an image: a child process in its own mount
//! namespace (so every mount disappears with it, even on Ctrl-C or a
//! crash), with /proc, /sys, a small /dev and /dev/pts, and no network
//! unless asked (a fresh network namespace has only a down loopback).

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A command in the image failed.
#[derive(Debug, thiserror::Error)]
pub enum ChrootError {
    /// Setting up or spawning failed.
    #[error("running {what} in {root}: {source}")]
    Spawn {
        /// The command.
        what: String,
        /// The image root.
        root: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The build was interrupted while the command ran; it was stopped.
    #[error("{what}: interrupted")]
    Interrupted {
        /// The command.
        what: String,
    },
    /// The command exited non-zero.
    #[error("{what} failed in the image ({status}){}", output_tail(.output))]
    Failed {
        /// The command.
        what: String,
        /// Exit status text.
        status: String,
        /// Its combined output.
        output: String,
    },
}

fn output_tail(out: &str) -> String {
    if out.trim().is_empty() {
        return String::new();
    }
    let lines: Vec<&str> = out.lines().collect();
    let tail = &lines[lines.len().saturating_sub(40)..];
    format!(":\n{}", tail.join("\n"))
}

/// How to run a command in the image.
#[derive(Debug, Clone)]
pub struct Chroot {
    root: PathBuf,
    env: Vec<(String, String)>,
    cancel: Option<Arc<AtomicBool>>,
}

/// How long a stopped command may take to exit after SIGTERM before its
/// process group gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Device nodes created in the private /dev: name, char major, minor.
const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

impl Chroot {
    /// Prepares to run commands in `root` with a clean environment
    /// (PATH, LC_ALL=C.UTF-8, DEBIAN_FRONTEND=noninteractive, and
    /// SOURCE_DATE_EPOCH when given).
    pub fn new(root: &Path, source_date_epoch: Option<i64>) -> Chroot {
        let mut env = vec![
            (
                "PATH".into(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ),
            ("LC_ALL".into(), "C.UTF-8".into()),
            ("HOME".into(), "/root".into()),
            ("DEBIAN_FRONTEND".into(), "noninteractive".into()),
            ("DEBCONF_NONINTERACTIVE_SEEN".into(), "true".into()),
        ];
        if let Some(s) = source_date_epoch {
            env.push(("SOURCE_DATE_EPOCH".into(), s.to_string()));
        }
        Chroot {
            root: root.to_path_buf(),
            env,
            cancel: None,
        }
    }

    /// Makes commands stoppable: each runs in its own process group, and
    /// once `flag` is set the group gets SIGTERM (SIGKILL after a grace
    /// period) and the command fails with [`ChrootError::Interrupted`].
    /// Without it a command shares the caller's process group, so a
    /// terminal's Ctrl-C reaches it directly.
    pub fn with_cancel(mut self, flag: Arc<AtomicBool>) -> Chroot {
        self.cancel = Some(flag);
        self
    }

    /// Runs `argv` in the image; output is captured and returned in the
    /// error when the command fails. `what` names it in messages.
    pub fn run(
        &self,
        what: &str,
        argv: &[&str],
        extra_env: &[(&str, &str)],
        stdin: Option<&[u8]>,
        network: bool,
    ) -> Result<String, ChrootError> {
        let spawn_err = |source| ChrootError::Spawn {
            what: what.to_string(),
            root: self.root.clone(),
            source,
        };
        for d in ["proc", "sys", "dev"] {
            let p = self.root.join(d);
            // A symlink here would make the mount land outside the image.
            if p.is_symlink() {
                return Err(spawn_err(std::io::Error::other(format!(
                    "{} is a symlink",
                    p.display()
                ))));
            }
            std::fs::create_dir_all(&p).map_err(spawn_err)?;
        }
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| spawn_err(std::io::Error::other("empty command")))?;
        let mut cmd = Command::new(prog);
        cmd.args(args).env_clear();
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        // Merge stdout and stderr in one pipe so the output keeps its order.
        let (reader, writer) = std::io::pipe().map_err(spawn_err)?;
        let writer2 = writer.try_clone().map_err(spawn_err)?;
        cmd.stdout(writer).stderr(writer2);
        let setup = Setup::new(&self.root, network).map_err(spawn_err)?;
        if self.cancel.is_some() {
            // Its own process group, so that stopping it reaches every
            // process it started (and only those).
            cmd.process_group(0);
        }
        // SAFETY: the closure only makes async-signal-safe system calls on
        // data prepared before the fork (no allocation, no locks).
        unsafe {
            cmd.pre_exec(move || setup.enter());
        }
        let mut child = cmd.spawn().map_err(|e| match e.kind() {
            // The program is looked up inside the image, after the chroot.
            // (or the ELF loader or `#!` interpreter it names is missing).
            // Still NotFound: callers tell a missing interpreter by it.
            std::io::ErrorKind::NotFound => spawn_err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                "cannot execute {prog} in the image: it, or the loader or interpreter it needs, is missing{}",
                    match *prog {
                        "/bin/sh" => " (run steps need a shell in the image)",
                        _ => "",
                    }
                ),
            )),
            _ => spawn_err(e),
        })?;
        drop(cmd);
        // Output is collected on a thread so that this one can watch the
        // cancel flag.
        let collector = std::thread::spawn(move || {
            let mut reader = reader;
            let mut buf = Vec::new();
            let r = std::io::Read::read_to_end(&mut reader, &mut buf);
            r.map(|_| buf)
        });
        // Input is written on its own thread, and a command that exits
        // without reading all of it is not an error (rpm's file triggers
        // often ignore the paths they are given): a write here could block,
        // or fail with EPIPE, before the command's status is known.
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            let data = data.to_vec();
            std::thread::spawn(move || {
                let _ = pipe.write_all(&data);
            });
        }
        let status = match &self.cancel {
            None => child.wait().map_err(spawn_err)?,
            Some(flag) => match wait_or_stop(&mut child, flag).map_err(spawn_err)? {
                Some(status) => status,
                None => {
                    // Not joined: a daemon that left the process group
                    // could hold the pipe open.
                    drop(collector);
                    return Err(ChrootError::Interrupted {
                        what: what.to_string(),
                    });
                }
            },
        };
        let buf = collector
            .join()
            .map_err(|_| spawn_err(std::io::Error::other("output reader panicked")))?
            .map_err(spawn_err)?;
        let output = String::from_utf8_lossy(&buf).into_owned();
        if !status.success() {
            return Err(ChrootError::Failed {
                what: what.to_string(),
                status: status.to_string(),
                output,
            });
        }
        Ok(output)
    }

    /// Runs a shell script (`sh -c`).
    pub fn shell(&self, what: &str, script: &str, network: bool) -> Result<String, ChrootError> {
        self.run(what, &["/bin/sh", "-c", script], &[], None, network)
    }
}

/// Waits for `child`, polling `flag`; once it is set, stops the child's
/// process group (SIGTERM, then SIGKILL after [`STOP_GRACE`]) and returns
/// `None`. The mount namespace, and with it every mount the command had,
/// goes away with its last process.
fn wait_or_stop(
    child: &mut std::process::Child,
    flag: &AtomicBool,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    let poll = Duration::from_millis(50);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if flag.load(Ordering::Relaxed) {
            break;
        }
        std::thread::sleep(poll);
    }
    let pgid = child.id() as libc::pid_t;
    // SAFETY: signalling a process group we created.
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            // Stragglers that ignored SIGTERM still go.
            // SAFETY: as above.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            return Ok(None);
        }
        std::thread::sleep(poll);
    }
    // SAFETY: as above.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    child.wait()?;
    Ok(None)
}

/// The seccomp architecture token of this build target.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// Makes fsync and friends no-ops for the image's processes (what
/// `eatmydata` does): dpkg syncs its database after every state change,
/// which on a VM disk costs most of a build. The tree is synced (or
/// committed to the store) by the builder afterwards; a crash means a
/// rebuild, never a corrupt commit.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn no_fsync_filter() -> Vec<libc::sock_filter> {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let stmt = |code: u16, k: u32| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: JEQ_K,
        jt,
        jf,
        k,
    };
    let syncs = [
        libc::SYS_fsync,
        libc::SYS_fdatasync,
        libc::SYS_sync,
        libc::SYS_syncfs,
        libc::SYS_sync_file_range,
        libc::SYS_msync,
    ];
    let n = syncs.len() as u8;
    let mut prog = Vec::with_capacity(12);
    prog.push(stmt(LD_W_ABS, 4)); // seccomp_data.arch
    prog.push(jeq(AUDIT_ARCH, 0, n + 1)); // another ABI: allow
    prog.push(stmt(LD_W_ABS, 0)); // seccomp_data.nr
    for (i, nr) in syncs.iter().enumerate() {
        // On a match, jump past the allow to "return 0".
        prog.push(jeq(*nr as u32, n - i as u8, 0));
    }
    prog.push(stmt(RET_K, libc::SECCOMP_RET_ALLOW));
    prog.push(stmt(RET_K, libc::SECCOMP_RET_ERRNO));
    prog
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn no_fsync_filter() -> Vec<libc::sock_filter> {
    Vec::new()
}

/// Everything the child needs, allocated before fork.
struct Setup {
    root: CString,
    proc_: CString,
    sys: CString,
    dev: CString,
    pts: CString,
    shm: CString,
    devices: Vec<(CString, u32, u32)>,
    links: Vec<(CString, CString)>,
    ptmx: CString,
    network: bool,
    names: [CString; 6],
    filter: Vec<libc::sock_filter>,
}

fn cstr(p: &Path) -> std::io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(std::io::Error::other)
}

impl Setup {
    fn new(root: &Path, network: bool) -> std::io::Result<Setup> {
        let dev = root.join("dev");
        let c = |s: &str| CString::new(s).map_err(std::io::Error::other);
        Ok(Setup {
            root: cstr(root)?,
            proc_: cstr(&root.join("proc"))?,
            sys: cstr(&root.join("sys"))?,
            dev: cstr(&dev)?,
            pts: cstr(&dev.join("pts"))?,
            shm: cstr(&dev.join("shm"))?,
            devices: DEVICES
                .iter()
                .map(|(n, ma, mi)| Ok((cstr(&dev.join(n))?, *ma, *mi)))
                .collect::<std::io::Result<_>>()?,
            links: [
                ("fd", "/proc/self/fd"),
                ("stdin", "/proc/self/fd/0"),
                ("stdout", "/proc/self/fd/1"),
                ("stderr", "/proc/self/fd/2"),
            ]
            .iter()
            .map(|(n, t)| Ok((cstr(&dev.join(n))?, c(t)?)))
            .collect::<std::io::Result<_>>()?,
            ptmx: cstr(&dev.join("ptmx"))?,
            network,
            filter: no_fsync_filter(),
            names: [
                c("proc")?,
                c("sysfs")?,
                c("tmpfs")?,
                c("devpts")?,
                c("mode=755")?,
                c("newinstance,ptmxmode=0666,mode=620")?,
            ],
        })
    }

    /// In the child between fork and exec.
    fn enter(&self) -> std::io::Result<()> {
        let check = |r: libc::c_int| {
            if r < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        let null = std::ptr::null::<libc::c_char>();
        // SAFETY: plain system calls on valid NUL-terminated strings.
        unsafe {
            let mut flags = libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
            if !self.network {
                flags |= libc::CLONE_NEWNET;
            }
            check(libc::unshare(flags))?;
            check(libc::mount(
                null,
                c"/".as_ptr(),
                null,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            let [proc_, sysfs, tmpfs, devpts, mode755, ptsopts] = &self.names;
            check(libc::mount(
                proc_.as_ptr(),
                self.proc_.as_ptr(),
                proc_.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                sysfs.as_ptr(),
                self.sys.as_ptr(),
                sysfs.as_ptr(),
                libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                tmpfs.as_ptr(),
                self.dev.as_ptr(),
                tmpfs.as_ptr(),
                libc::MS_NOSUID,
                mode755.as_ptr().cast(),
            ))?;
            for (path, major, minor) in &self.devices {
                check(libc::mknod(
                    path.as_ptr(),
                    libc::S_IFCHR | 0o666,
                    libc::makedev(*major, *minor),
                ))?;
            }
            for (path, target) in &self.links {
                check(libc::symlink(target.as_ptr(), path.as_ptr()))?;
            }
            check(libc::mkdir(self.pts.as_ptr(), 0o755))?;
            check(libc::mkdir(self.shm.as_ptr(), 0o1777))?;
            check(libc::mount(
                devpts.as_ptr(),
                self.pts.as_ptr(),
                devpts.as_ptr(),
                libc::MS_NOSUID | libc::MS_NOEXEC,
                ptsopts.as_ptr().cast(),
            ))?;
            check(libc::symlink(c"pts/ptmx".as_ptr(), self.ptmx.as_ptr()))?;
            check(libc::mount(
                tmpfs.as_ptr(),
                self.shm.as_ptr(),
                tmpfs.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                std::ptr::null(),
            ))?;
            check(libc::chroot(self.root.as_ptr()))?;
            // Best effort: without the filter builds are only slower.
            if !self.filter.is_empty() {
                let fprog = libc::sock_fprog {
                    len: self.filter.len() as u16,
                    filter: self.filter.as_ptr().cast_mut(),
                };
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                    &fprog as *const libc::sock_fprog,
                );
            }
            check(libc::chdir(c"/".as_ptr()))?;
            // Files that scriptlets and steps create get the modes their
            // umask allows: fixed at the usual 022 (rpm sets it for its
            // scriptlets), so that the image does not depend on the umask
            // of whoever runs the build.
            libc::umask(0o022);
            if !self.network {
                // Bring up loopback? Left down: nothing in a build needs it,
                // and a down interface fails fast instead of timing out.
            }
        }
        Ok(())
    }
}
