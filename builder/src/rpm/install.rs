//! Installing resolved RPMs into an empty root: every payload unpacked in
//! parallel, directory metadata applied in install order, then `%pretrans`
//! and `%pre` scriptlets in dependency order, owners and capabilities (now
//! that the image's passwd/group exist, including users `%pre` created),
//! then `%post` scriptlets in dependency order. Lua scriptlets run with
//! rpm's own interpreter (`lua.rs`).
//!
//! Then `%triggerin` and `%filetriggerin`, `%posttrans` and
//! `%transfiletriggerin`, as they fire in one transaction into an empty
//! root.
//!
//! This differs from rpm, which runs every `%pretrans` before anything is
//! installed, then `%pre`, unpacks and runs `%post` (and the triggers a
//! package sets off) one package at a time: here every package's files
//! are present before the first scriptlet runs (as in the Debian path, where all `.deb`s are
//! unpacked before `dpkg --configure`). Last, the packages are recorded in
//! the image's rpm database (`rpmdb.rs`).

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::lua::Lua;
use super::scriptlets::{self, Outcome, ScriptletError};
use super::signature::GpgCheck;
use super::unpack::{self, Claims, RpmUnpackError, Script, Trigger, Unpacked};
use super::version::{Dep, Op};
use crate::chroot::Chroot;
use crate::progress::{Progress, Stage};
use crate::unpack::{Root, UnpackError};

/// One package file to install.
#[derive(Debug, Clone)]
pub struct RpmFile {
    /// Package name.
    pub name: String,
    /// Its sha256, checked again before unpacking.
    pub sha256: String,
    /// Epoch, version, release and arch as the lock has them: the
    /// package's (signed) header must say the same.
    pub expect: Expected,
    /// The file (package cache or local).
    pub path: PathBuf,
    /// The signature it must carry (`gpgcheck`), checked before unpacking.
    pub gpgcheck: Option<GpgCheck>,
}

/// What a package's header must say besides its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Epoch (0 when none).
    pub epoch: u32,
    /// Version.
    pub version: String,
    /// Release.
    pub release: String,
    /// Architecture (`noarch` included).
    pub arch: String,
}

/// Installation failure.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Opening the root failed.
    #[error("{path}: {source}")]
    Io {
        /// The root.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A package could not be unpacked.
    #[error(transparent)]
    Unpack(#[from] RpmUnpackError),
    /// Directory metadata could not be applied.
    #[error(transparent)]
    Dirs(#[from] UnpackError),
    /// A scriptlet failed.
    #[error(transparent)]
    Scriptlet(#[from] ScriptletError),
    /// rpm's Lua interpreter could not be taken out of the image again.
    #[error("{root}: {message}")]
    Lua {
        /// The image root.
        root: PathBuf,
        /// What is left.
        message: String,
    },
    /// The rpm database could not be written.
    #[error(transparent)]
    RpmDb(#[from] super::rpmdb::RpmDbError),
}

/// What installation reports besides the files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Scriptlets that ran (`package %pre`).
    pub ran: Vec<String>,
    /// Scriptlets not run, with the reason.
    pub skipped: Vec<String>,
    /// Owner names the image does not know (files left to root).
    pub warnings: Vec<String>,
    /// Which rpm wrote the image's database.
    pub database: String,
    /// Which interpreter ran the Lua scriptlets, if any ran.
    pub lua: Option<String>,
}

/// Installs `files` into `root_path`; scriptlets run in dependency order
/// (requirements first) as read from the packages' headers. `scratch` is
/// a directory for temporary files outside the image.
pub fn install(
    root_path: &Path,
    files: &[RpmFile],
    source_date_epoch: i64,
    scratch: &Path,
    progress: &dyn Progress,
) -> Result<Report, InstallError> {
    let root = Root::open(root_path).map_err(|source| InstallError::Io {
        path: root_path.to_path_buf(),
        source,
    })?;
    let t0 = std::time::Instant::now();
    progress.begin(Stage::Unpack, Some(files.len() as u64));
    let claims = Claims::default();
    let unpacked: Vec<Unpacked> = files
        .par_iter()
        .map(|f| {
            let r = unpack::unpack(
                &root,
                &f.name,
                &f.path,
                &f.sha256,
                &f.expect,
                f.gpgcheck.as_ref(),
                &claims,
            );
            progress.advance(Stage::Unpack, 1);
            r
        })
        .collect::<Result<_, _>>()?;
    let infos: Vec<&super::package::RpmPackage> = unpacked.iter().map(|u| &u.info).collect();
    let order = super::resolve::install_order(&infos);
    let order = &order[..];
    let up = &unpacked;
    crate::unpack::apply_dir_meta(&root, order.iter().flat_map(|&i| unpacked[i].dirs.iter()))?;
    progress.end(Stage::Unpack);
    let bytes: u64 = unpacked.iter().map(|u| u.bytes).sum();
    tracing::info!(
        "unpacked {} RPMs ({bytes} bytes) in {:.2?}",
        files.len(),
        t0.elapsed()
    );

    let t0 = std::time::Instant::now();
    progress.begin(Stage::Configure, None);
    let chroot = Chroot::new(root_path, Some(source_date_epoch));
    let lua = Lua::new(&root);
    let mut report = Report::default();
    let exec = |report: &mut Report,
                u: &Unpacked,
                which: &str,
                label: String,
                s: &Script,
                args: &[&str],
                stdin: Option<&[u8]>|
     -> Result<(), InstallError> {
        match scriptlets::run(&root, &chroot, &lua, &u.name, which, s, args, stdin)? {
            Outcome::Ran => report.ran.push(label),
            Outcome::Skipped(why) => {
                tracing::warn!("skipped {label}: {why}");
                report.skipped.push(format!("{label}: {why}"));
            }
        }
        Ok(())
    };
    let run_all = |which: &str, report: &mut Report| -> Result<(), InstallError> {
        progress.message(Stage::Configure, &format!("%{which} scriptlets"));
        for &i in order {
            let u = &unpacked[i];
            let s = match which {
                "pretrans" => &u.pretrans,
                "pre" => &u.pre,
                "post" => &u.post,
                _ => &u.posttrans,
            };
            let Some(s) = s else { continue };
            exec(
                report,
                u,
                which,
                format!("{} %{which}", u.name),
                s,
                &["1"],
                None,
            )?;
        }
        Ok(())
    };
    run_all("pretrans", &mut report)?;
    run_all("pre", &mut report)?;
    report.warnings = unpack::apply_owners(
        &root,
        order
            .iter()
            .flat_map(|&i| up[i].owners.iter().map(move |o| (up[i].name.as_str(), o))),
    )?;
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    run_all("post", &mut report)?;
    progress.message(Stage::Configure, "triggers");
    run_triggers(up, order, &mut report, &exec)?;
    run_all("posttrans", &mut report)?;
    run_trans_file_triggers(up, order, &mut report, &exec)?;
    report.lua = lua.finish().map_err(|message| InstallError::Lua {
        root: root_path.to_path_buf(),
        message,
    })?;
    for &i in order {
        for what in &unpacked[i].not_run {
            let line = format!("{} {what}", unpacked[i].name);
            tracing::warn!("{line}");
            report.skipped.push(line);
        }
    }
    progress.message(Stage::Configure, "rpm database");
    let in_order: Vec<RpmFile> = order.iter().map(|&i| files[i].clone()).collect();
    let writer = super::rpmdb::register(&root, &chroot, &in_order, source_date_epoch, scratch)?;
    tracing::info!("rpm database written by {writer}");
    report.database = writer.to_string();
    progress.end(Stage::Configure);
    tracing::info!(
        "RPM scriptlets, owners and database in {:.2?}",
        t0.elapsed()
    );
    Ok(report)
}

/// Runs one scriptlet, recording it in the report.
type Exec<'a> = dyn Fn(
        &mut Report,
        &Unpacked,
        &str,
        String,
        &Script,
        &[&str],
        Option<&[u8]>,
    ) -> Result<(), InstallError>
    + 'a;

/// Whether installed package `u` fires the package trigger condition `c`
/// (by name, and range when given).
fn fires(u: &Unpacked, c: &Dep) -> bool {
    let me = Dep {
        name: u.info.name.clone(),
        range: Some((Op::Eq, u.info.evr.clone())),
    };
    me.provides(c)
}

/// The paths of `u` that start with one of `t`'s prefixes (as rpm
/// matches: plain string prefixes), one per line.
fn matching_paths(u: &Unpacked, t: &Trigger) -> Vec<u8> {
    let mut out = Vec::new();
    for f in &u.info.files {
        if t.conditions.iter().any(|c| f.starts_with(&c.name)) {
            out.extend_from_slice(f.as_bytes());
            out.push(b'\n');
        }
    }
    out
}

/// Every file trigger of one kind, highest priority first (ties in
/// install order of their packages), with its owner's install position.
fn by_priority<'u>(
    up: &'u [Unpacked],
    order: &[usize],
    kind: impl Fn(&'u Unpacked) -> &'u [Trigger],
) -> Vec<(usize, &'u Unpacked, &'u Trigger)> {
    let mut all: Vec<_> = order
        .iter()
        .enumerate()
        .flat_map(|(k, &i)| kind(&up[i]).iter().map(move |t| (k, &up[i], t)))
        .collect();
    all.sort_by_key(|(_, _, t)| std::cmp::Reverse(t.priority));
    all
}

/// `%triggerin` and `%filetriggerin`, as rpm fires them when every package
/// is installed in one transaction into an empty root. A package trigger
/// runs once per installed package it names: for each pair, the first of
/// the owner's `%triggerin` scripts with a condition the package meets
/// (`$1` = `$2` = 1). A file trigger runs as its owner is installed, with
/// the matching paths of every package installed so far, its own included
/// (`$1` = 1), then once for each package installed after it that has
/// matching paths (`$1` = `$2` = 1); the paths go to standard input. rpm
/// runs them right after each package's `%post`; here they run after all
/// of them, in the same sequence.
fn run_triggers(
    up: &[Unpacked],
    order: &[usize],
    report: &mut Report,
    exec: &Exec<'_>,
) -> Result<(), InstallError> {
    for &t in order {
        let owner = &up[t];
        for &q in order {
            let hit = owner
                .triggers_in
                .iter()
                .find(|trig| trig.conditions.iter().any(|c| fires(&up[q], c)));
            if let Some(trig) = hit {
                let label = format!("{} %triggerin -- {}", owner.name, up[q].name);
                exec(
                    report,
                    owner,
                    "triggerin",
                    label,
                    &trig.script,
                    &["1", "1"],
                    None,
                )?;
            }
        }
    }
    let file_triggers = by_priority(up, order, |u| &u.file_triggers_in);
    for (k, &q) in order.iter().enumerate() {
        // First the triggers of packages installed before this one, for its
        // paths; then this package's own, for everything installed so far.
        for own in [false, true] {
            for (owner_at, owner, trig) in &file_triggers {
                let (paths, label, args): (Vec<u8>, _, &[&str]) = match (own, *owner_at) {
                    (false, at) if at < k => (
                        matching_paths(&up[q], trig),
                        format!("{} %filetriggerin ({})", owner.name, up[q].name),
                        &["1", "1"],
                    ),
                    (true, at) if at == k => (
                        order[..=k]
                            .iter()
                            .flat_map(|&p| matching_paths(&up[p], trig))
                            .collect(),
                        format!("{} %filetriggerin", owner.name),
                        &["1"],
                    ),
                    _ => continue,
                };
                if !paths.is_empty() {
                    let script = &trig.script;
                    exec(
                        report,
                        owner,
                        "filetriggerin",
                        label,
                        script,
                        args,
                        Some(&paths),
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// `%transfiletriggerin`: once each after the transaction (after
/// `%posttrans`), highest priority first, with every installed path that
/// matches on standard input (`$1` = 1).
fn run_trans_file_triggers(
    up: &[Unpacked],
    order: &[usize],
    report: &mut Report,
    exec: &Exec<'_>,
) -> Result<(), InstallError> {
    for (_, owner, trig) in by_priority(up, order, |u| &u.trans_file_triggers_in) {
        let paths: Vec<u8> = order
            .iter()
            .flat_map(|&q| matching_paths(&up[q], trig))
            .collect();
        if paths.is_empty() {
            continue;
        }
        let label = format!("{} %transfiletriggerin", owner.name);
        exec(
            report,
            owner,
            "transfiletriggerin",
            label,
            &trig.script,
            &["1"],
            Some(&paths),
        )?;
    }
    Ok(())
}
