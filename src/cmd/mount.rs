//! `vnfs mount`, `vnfs umount`, `vnfs mounts`: edit an image through FUSE
//! and commit on unmount. The mount is served by a detached `vnfs` process
//! (`mount-server`, hidden) so it outlives the command.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use vnfs_fusefs::{Finished, MountRequest, MountState, state};

use crate::context::Context;
use crate::progress::bytes;

/// `vnfs mount`
#[derive(Args, Debug)]
pub struct MountArgs {
    /// Image to mount: NAME or NAME@COMMIT
    pub image: String,
    /// Mount point, an empty directory [default: /mnt/NAME]
    pub dir: Option<PathBuf>,
    /// Mount read-only
    #[arg(long)]
    pub ro: bool,
}

/// `vnfs umount`
#[derive(Args, Debug)]
pub struct UmountArgs {
    /// Image name or mount directory
    pub target: String,
    /// Commit message
    #[arg(long, short = 'm', default_value = "edited through vnfs mount")]
    pub message: String,
    /// Drop the edits instead of committing them
    #[arg(long, conflicts_with = "recover")]
    pub discard: bool,
    /// Commit the edits of a mount whose server died
    #[arg(long)]
    pub recover: bool,
}

/// The hidden server command `vnfs mount` starts.
#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Image name
    pub name: String,
    /// Commit id (hex)
    pub commit: String,
    /// Mount point
    pub dir: PathBuf,
    /// Read-only
    #[arg(long)]
    pub ro: bool,
}

/// Mounts an image and returns once the mount is up.
pub fn mount(a: MountArgs, ctx: &Context) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let req = vnfs_fusefs::prepare(&store, &ctx.home, &a.image, a.dir.as_deref(), a.ro)?;
    let layout = req.layout();
    std::fs::create_dir_all(&layout.dir)
        .with_context(|| format!("creating {}", layout.dir.display()))?;
    let log = std::fs::File::create(layout.log_file())
        .with_context(|| format!("creating {}", layout.log_file().display()))?;
    let exe = std::env::current_exe().context("finding the vnfs executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("--home")
        .arg(&ctx.home)
        .arg("mount-server")
        .arg(&req.name)
        .arg(req.commit.to_hex())
        .arg(&req.dir);
    if a.ro {
        cmd.arg("--ro");
    }
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // A session of its own: the server must not die with the terminal.
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe and touches no Rust state.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the mount server")?;
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(layout.log_file()).unwrap_or_default();
            bail!("the mount server exited ({status}):\n{}", log.trim_end());
        }
        if MountState::load(&layout)?.is_some_and(|s| s.pid == child.id() && s.live()) {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!(
                "the mount server did not come up within 60 s; see {}",
                layout.log_file().display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if ctx.json {
        return ctx.print_json(&MountState::load(&layout)?);
    }
    if !ctx.quiet {
        eprintln!(
            "{}@{} mounted at {}{}",
            req.name,
            req.commit.short(),
            req.dir.display(),
            if a.ro { " (read-only)" } else { "" }
        );
    }
    Ok(())
}

/// Runs the FUSE server in this process until the mount goes away.
pub fn server(a: ServerArgs, ctx: &Context) -> anyhow::Result<()> {
    let store = Arc::new(ctx.store()?);
    let commit = vnfs_store::ObjectId::from_hex(&a.commit)
        .with_context(|| format!("bad commit id '{}'", a.commit))?;
    // SAFETY: ignoring SIGHUP has no preconditions.
    unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
    let req = MountRequest {
        home: ctx.home.clone(),
        name: a.name,
        commit,
        dir: a.dir,
        read_only: a.ro,
        threads: 4,
    };
    vnfs_fusefs::serve(store, &req)?;
    Ok(())
}

/// Unmounts and commits (or drops) the edits.
pub fn umount(a: UmountArgs, ctx: &Context) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let (st, done) = vnfs_fusefs::finish(
        &store,
        &ctx.home,
        &a.target,
        &a.message,
        a.discard,
        a.recover,
        Some(&edited_metadata),
    )?;
    if ctx.json {
        return ctx.print_json(&done);
    }
    match done {
        Finished::Committed { summary } => match summary.id {
            Some(id) => {
                println!("{id}");
                if !ctx.quiet {
                    eprintln!(
                        "{}: new version; {} changed files ({}) stored, {} with new metadata only, {} deletions",
                        st.name,
                        summary.files,
                        bytes(summary.bytes),
                        summary.metadata_only,
                        summary.deleted
                    );
                    for s in summary.skipped {
                        eprintln!("warning: skipped /{s} (sockets are not stored)");
                    }
                }
            }
            None if !ctx.quiet => eprintln!("{}: no changes, no new version", st.name),
            None => {}
        },
        Finished::Discarded if !ctx.quiet => eprintln!("{}: edits discarded", st.name),
        Finished::Unmounted if !ctx.quiet => eprintln!("{}: unmounted", st.name),
        _ => {}
    }
    Ok(())
}

/// The package list of an edited image, read again from its dpkg status
/// file when the edits changed it (a metadata-only copy, whose content is
/// still the store's, did not), and the mark that its recipe describes an
/// earlier version (`vnfs_builder::edited`).
fn edited_metadata(
    upper: &Path,
    mounted: &vnfs_store::ObjectId,
    meta: &mut std::collections::BTreeMap<String, String>,
) {
    let changed = |rel: &str| {
        let p = upper.join(rel);
        std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file())
            && matches!(vnfs_fusefs::upper::metacopy_of(&p), Ok(None))
    };
    let status_path = upper.join("var/lib/dpkg/status");
    let text = changed("var/lib/dpkg/status")
        .then(|| std::fs::read_to_string(&status_path))
        .and_then(|r| {
            r.map_err(|e| tracing::warn!("reading the edited /var/lib/dpkg/status: {e}"))
                .ok()
        });
    let removed =
        vnfs_fusefs::sys::lstat(&status_path).is_ok_and(|st| vnfs_fusefs::sys::is_whiteout(&st));
    let status = match (&text, removed) {
        (Some(t), _) => vnfs_builder::edited::StatusEdit::Changed(t),
        (None, true) => vnfs_builder::edited::StatusEdit::Removed,
        (None, false) => vnfs_builder::edited::StatusEdit::Unchanged,
    };
    let rpmdb_changed = [
        "var/lib/rpm/rpmdb.sqlite",
        "var/lib/rpm/Packages",
        "var/lib/rpm/Packages.db",
        "usr/lib/sysimage/rpm/rpmdb.sqlite",
        "usr/lib/sysimage/rpm/Packages",
        "usr/lib/sysimage/rpm/Packages.db",
    ]
    .iter()
    .any(|rel| changed(rel));
    for w in vnfs_builder::edited::refresh(meta, &mounted.to_hex(), status, rpmdb_changed) {
        tracing::warn!("{w}");
    }
}

#[derive(serde::Serialize)]
struct Row {
    #[serde(flatten)]
    state: MountState,
    live: bool,
    pending: vnfs_fusefs::Pending,
}

/// Lists mounts and their pending changes.
pub fn mounts(ctx: &Context) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for (layout, st) in state::list(&ctx.home)? {
        let pending = vnfs_fusefs::pending(&layout)?;
        rows.push(Row {
            live: st.live(),
            state: st,
            pending,
        });
    }
    if ctx.json {
        return ctx.print_json(&rows);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let s = &r.state;
            vec![
                s.name.clone(),
                s.commit.chars().take(12).collect(),
                s.dir.display().to_string(),
                match (r.live, s.read_only) {
                    (true, true) => "mounted (ro)".into(),
                    (true, false) => "mounted".into(),
                    // Unmounted by other means (umount(8), a reboot) or
                    // the server ended: the edits are kept either way.
                    (false, _) => "not mounted; edits kept: umount --recover".into(),
                },
                format!(
                    "{} changed ({}), {} deleted",
                    r.pending.changed,
                    bytes(r.pending.bytes),
                    r.pending.deleted
                ),
            ]
        })
        .collect();
    super::print_table(
        &mut std::io::stdout().lock(),
        &["IMAGE", "COMMIT", "DIR", "STATE", "PENDING"],
        &table,
    )?;
    Ok(())
}
