//! Installing a set of `.deb` files into an empty root, fast but the way
//! dpkg would leave it: we unpack every data archive ourselves, in
//! parallel, and write the dpkg database exactly as `dpkg --unpack` does
//! (status `install ok unpacked`, `info/<pkg>.list`, md5sums, conffiles as
//! `<path>.dpkg-new` with `newconffile` hashes, maintainer scripts, trigger
//! interests). Then, inside the image, each `preinst install` runs in
//! dependency order and the image's own `dpkg --configure -a` does the
//! rest, so maintainer scripts run and `/var/lib/dpkg` is real.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::control;
use super::deb::{Deb, DebError};
use super::ownership::{self, Decisions, OwnershipError, PkgView};
use super::packages::{Relation, parse_relations};
use crate::chroot::{Chroot, ChrootError};
use crate::progress::{Progress, Stage};
use crate::unpack::{self, Claims, Root, UnpackError};

/// One package file to install.
#[derive(Debug, Clone)]
pub struct DebFile {
    /// Package name (as the lock or index says).
    pub name: String,
    /// Its sha256, checked again before unpacking.
    pub sha256: String,
    /// The cached `.deb`.
    pub path: PathBuf,
}

/// Installation failure.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Filesystem error outside archive extraction.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A cached package no longer matches its hash.
    #[error("{path}: sha256 {actual} does not match {expected} for package {name}")]
    Hash {
        /// The package.
        name: String,
        /// The file.
        path: PathBuf,
        /// Expected hash.
        expected: String,
        /// Actual hash.
        actual: String,
    },
    /// The package file is malformed.
    #[error(transparent)]
    Deb(#[from] DebError),
    /// Extraction failed.
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    /// A command inside the image failed.
    #[error(transparent)]
    Chroot(#[from] ChrootError),
    /// Two packages ship one path and dpkg would refuse it.
    #[error(transparent)]
    Ownership(#[from] OwnershipError),
    /// The control data is not usable.
    #[error("package {name}: {message}")]
    Control {
        /// The package.
        name: String,
        /// What is wrong.
        message: String,
    },
}

struct Unpacked {
    name: String,
    arch: String,
    /// `name` or `name:arch` for Multi-Arch: same packages (dpkg's info names).
    info_name: String,
    fields: Vec<(String, String)>,
    control: BTreeMap<String, Vec<u8>>,
    conffiles: Vec<String>,
    report: unpack::Report,
    deps: Vec<Vec<String>>,
    provides: Vec<String>,
    has_preinst: bool,
    version: String,
    /// `Replaces:`, for files another package also ships.
    replaces: Vec<Relation>,
    /// Pre-Depends, Depends and Recommends groups: what would break if
    /// this package disappeared.
    relations: Vec<Vec<String>>,
    /// The `.deb`, to extract members again once ownership is decided.
    deb_path: PathBuf,
}

impl Unpacked {
    fn view(&self) -> PkgView<'_> {
        PkgView {
            name: &self.name,
            version: &self.version,
            replaces: &self.replaces,
            depends: &self.relations,
            provides: &self.provides,
            paths: &self.report.paths,
        }
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.:".contains(c))
}

/// Installs `debs` into `root` (which should be empty) for `arch`.
pub fn install(
    root_path: &Path,
    debs: &[DebFile],
    arch: &str,
    source_date_epoch: i64,
    progress: &dyn Progress,
) -> Result<(), InstallError> {
    let root = Root::open(root_path).map_err(io_err(root_path))?;
    skeleton(root_path, arch)?;
    let t0 = std::time::Instant::now();
    progress.begin(Stage::Unpack, Some(debs.len() as u64));
    let claims = Claims::default();
    // Largest first, handed out one at a time (par_bridge): the kernel
    // package alone is half the bytes, and starting it last would leave
    // one core busy long after the other has finished.
    let mut by_size: Vec<(u64, &DebFile)> = debs
        .iter()
        .map(|d| (std::fs::metadata(&d.path).map_or(0, |m| m.len()), d))
        .collect();
    by_size.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.name.cmp(&b.1.name)));
    let mut unpacked: Vec<Unpacked> = by_size
        .into_iter()
        .map(|(_, d)| d)
        .par_bridge()
        .map(|d| {
            let r = unpack_one(&root, d, arch, &claims);
            progress.advance(Stage::Unpack, 1);
            r
        })
        .collect::<Result<_, _>>()?;
    unpacked.sort_by(|a, b| a.name.cmp(&b.name));
    let mut order = install_order(&unpacked);
    unpack::apply_dir_meta(
        &root,
        order.iter().flat_map(|&i| unpacked[i].report.dirs.iter()),
    )?;
    let decisions = settle_replaces(&root, &mut unpacked, &order, &claims)?;
    if !decisions.disappeared.is_empty() {
        order = install_order(&unpacked);
    }
    write_database(root_path, &unpacked)?;
    progress.end(Stage::Unpack);
    tracing::info!("unpacked {} packages in {:.2?}", debs.len(), t0.elapsed());
    let t0 = std::time::Instant::now();

    progress.begin(Stage::Configure, None);
    let policy = root_path.join("usr/sbin/policy-rc.d");
    std::fs::create_dir_all(root_path.join("usr/sbin")).map_err(io_err(&policy))?;
    write_file(&policy, b"#!/bin/sh\nexit 101\n", 0o755)?;
    let chroot = Chroot::new(root_path, Some(source_date_epoch));
    let dpkg_version = unpacked
        .iter()
        .find(|u| u.name == "dpkg")
        .map(|u| u.version.clone())
        .unwrap_or_default();
    let mut script = String::from("set -e\n");
    for &i in &order {
        let u = &unpacked[i];
        if !u.has_preinst {
            continue;
        }
        let _ = writeln!(
            script,
            "echo 'preinst {n}'; DPKG_MAINTSCRIPT_PACKAGE='{p}' DPKG_MAINTSCRIPT_ARCH='{a}' DPKG_MAINTSCRIPT_NAME=preinst DPKG_MAINTSCRIPT_PACKAGE_REFCOUNT=1 DPKG_RUNNING_VERSION='{dv}' DPKG_ADMINDIR=/var/lib/dpkg DPKG_ROOT= /var/lib/dpkg/info/{n}.preinst install || {{ echo 'preinst of {n} failed' >&2; exit 1; }}",
            n = u.info_name,
            p = u.name,
            a = u.arch,
            dv = dpkg_version,
        );
    }
    progress.message(Stage::Configure, "running preinst scripts");
    chroot.run(
        "preinst scripts",
        &["/bin/sh", "-c", &script],
        &[],
        None,
        false,
    )?;
    settle_diversions(&root, &mut unpacked, &order, &claims, &decisions)?;
    let kernel_side = kernel_dependents(&unpacked);
    if !kernel_side.is_empty() && kernel_side.len() < unpacked.len() {
        // Configuring everything but the kernel first lets dpkg settle the
        // initramfs trigger while no initramfs exists yet (a no-op); the
        // kernel's own postinst then builds the one initramfs from a fully
        // configured system. One `dpkg --configure -a` would build it twice:
        // in the kernel's postinst and again when the trigger fires.
        let first: Vec<&str> = order
            .iter()
            .filter(|i| !kernel_side.contains(i))
            .map(|&i| unpacked[i].info_name.as_str())
            .collect();
        let mut argv = vec!["dpkg", "--configure", "--force-unsafe-io"];
        argv.extend(first);
        progress.message(Stage::Configure, "dpkg --configure (all but the kernel)");
        chroot.run(
            "dpkg --configure (all but the kernel)",
            &argv,
            &[],
            None,
            false,
        )?;
    }
    progress.message(Stage::Configure, "dpkg --configure -a");
    chroot.run(
        "dpkg --configure -a",
        &["dpkg", "--configure", "-a", "--force-unsafe-io"],
        &[],
        None,
        false,
    )?;
    tracing::info!("dpkg --configure -a in {:.2?}", t0.elapsed());
    std::fs::remove_file(&policy).map_err(io_err(&policy))?;
    progress.end(Stage::Configure);
    Ok(())
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), InstallError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, data).map_err(io_err(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_err(path))
}

/// The directories and files dpkg expects before the first package.
fn skeleton(root: &Path, arch: &str) -> Result<(), InstallError> {
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
        "var/lib/dpkg/alternatives",
        "var/lib/dpkg/parts",
        "var/cache/apt/archives/partial",
        "var/lib/apt/lists/partial",
        "etc/apt/apt.conf.d",
        "etc/apt/preferences.d",
        "etc/apt/sources.list.d",
        "etc/apt/trusted.gpg.d",
        "etc/dpkg/dpkg.cfg.d",
        "var/log/apt",
        "tmp",
    ] {
        let p = root.join(d);
        std::fs::create_dir_all(&p).map_err(io_err(&p))?;
    }
    let tmp = root.join("tmp");
    write_perm(&tmp, 0o1777)?;
    for (f, content) in [
        ("var/lib/dpkg/status", String::new()),
        ("var/lib/dpkg/available", String::new()),
        ("var/lib/dpkg/arch", format!("{arch}\n")),
        ("var/lib/dpkg/info/format", "1\n".to_string()),
        ("var/lib/dpkg/triggers/Unincorp", String::new()),
        (
            "etc/fstab",
            "# UNCONFIGURED FSTAB FOR BASE SYSTEM\n".to_string(),
        ),
    ] {
        write_file(&root.join(f), content.as_bytes(), 0o644)?;
    }
    Ok(())
}

fn write_perm(p: &Path, mode: u32) -> Result<(), InstallError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(io_err(p))
}

fn unpack_one(
    root: &Root,
    d: &DebFile,
    arch: &str,
    claims: &Claims,
) -> Result<Unpacked, InstallError> {
    let bytes = std::fs::read(&d.path).map_err(io_err(&d.path))?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != d.sha256 {
        return Err(InstallError::Hash {
            name: d.name.clone(),
            path: d.path.clone(),
            expected: d.sha256.clone(),
            actual,
        });
    }
    let label = format!("{} ({})", d.name, d.path.display());
    let deb = Deb::parse(&bytes, &label)?;
    let ctl_err = |message: String| InstallError::Control {
        name: d.name.clone(),
        message,
    };
    let text = deb.control_text()?;
    let paras = control::parse(&text).map_err(|e| ctl_err(e.to_string()))?;
    let p = paras
        .first()
        .ok_or_else(|| ctl_err("empty control file".into()))?;
    let name = p.get("Package").unwrap_or_default().to_string();
    if name != d.name || !valid_name(&name) {
        return Err(ctl_err(format!("control file names package {name:?}")));
    }
    let pkg_arch = p.get("Architecture").unwrap_or_default().to_string();
    let version = p.get("Version").unwrap_or_default().to_string();
    let multi_same = p.get("Multi-Arch") == Some("same");
    let info_name = if multi_same {
        format!("{name}:{pkg_arch}")
    } else {
        name.clone()
    };
    let conffiles: Vec<String> = deb
        .control
        .get("conffiles")
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        // "remove-on-upgrade" entries are flags on existing conffiles.
        .filter(|l| l.starts_with('/'))
        .map(str::to_string)
        .collect();
    let conff_set: BTreeSet<String> = conffiles.iter().cloned().collect();
    let report = unpack::unpack_tar(
        root,
        deb.data_reader()?,
        &name,
        &unpack::Options {
            conffiles: Some(&conff_set),
            claims: Some(claims),
            md5sums: !deb.control.contains_key("md5sums"),
        },
    )?;
    let rel = |f: &str| {
        parse_relations(p.get(f).unwrap_or(""), arch).map_err(|e| ctl_err(format!("{f}: {e}")))
    };
    let deps = rel("Pre-Depends")?
        .into_iter()
        .chain(rel("Depends")?)
        .map(|g| g.into_iter().map(|r| r.name).collect())
        .collect();
    let provides = rel("Provides")?
        .into_iter()
        .flatten()
        .map(|r| r.name)
        .collect();
    // Fields only the ownership rules read: a malformed one is ignored
    // (with a warning) rather than failing a build that never needs it.
    let lenient = |f: &str| {
        rel(f).unwrap_or_else(|e| {
            tracing::warn!("{e}; ignoring the field");
            Vec::new()
        })
    };
    let replaces = lenient("Replaces").into_iter().flatten().collect();
    let relations = rel("Pre-Depends")?
        .into_iter()
        .chain(rel("Depends")?)
        .chain(lenient("Recommends"))
        .map(|g| g.into_iter().map(|r| r.name).collect())
        .collect();
    Ok(Unpacked {
        replaces,
        relations,
        deb_path: d.path.clone(),
        has_preinst: deb.control.contains_key("preinst"),
        control: deb.control.clone(),
        fields: p.fields.clone(),
        name,
        arch: pkg_arch,
        info_name,
        conffiles,
        report,
        deps,
        provides,
        version,
    })
}

/// Extracts members of an unpacked package's `.deb` again, to the places
/// `sel` names.
fn reextract(root: &Root, u: &Unpacked, sel: &unpack::Selection) -> Result<(), InstallError> {
    let bytes = std::fs::read(&u.deb_path).map_err(io_err(&u.deb_path))?;
    let label = format!("{} ({})", u.name, u.deb_path.display());
    let deb = Deb::parse(&bytes, &label)?;
    let conff: BTreeSet<String> = u.conffiles.iter().cloned().collect();
    unpack::extract_selected(root, deb.data_reader()?, &u.name, Some(&conff), sel)?;
    Ok(())
}

/// Decides by `Replaces` who owns each path several packages shipped
/// (see [`ownership`]): losers drop it from their file lists, a winner
/// whose copy was skipped while unpacking extracts it now, and completely
/// replaced packages disappear. Paths no `Replaces` settles wait for the
/// diversions the `preinst` scripts may add ([`settle_diversions`]).
fn settle_replaces(
    root: &Root,
    pkgs: &mut Vec<Unpacked>,
    order: &[usize],
    claims: &Claims,
) -> Result<Decisions, InstallError> {
    let contested = claims.contested();
    if contested.is_empty() && pkgs.iter().all(|u| u.report.skipped.is_empty()) {
        return Ok(Decisions::default());
    }
    let views: Vec<PkgView<'_>> = pkgs.iter().map(Unpacked::view).collect();
    let d = ownership::decide(&views, order, &contested);
    let rank: BTreeMap<String, usize> = order
        .iter()
        .enumerate()
        .map(|(r, &i)| (pkgs[i].name.clone(), r))
        .collect();
    for u in pkgs.iter_mut() {
        let name = u.name.clone();
        // A file kept by an earlier package that Replaces this one was
        // never unpacked by dpkg ("Replaced by files in installed
        // package"), so it is not in this package's md5sums either.
        let mine = rank.get(&name).copied().unwrap_or(usize::MAX);
        let skipped_by_dpkg: BTreeSet<&str> = d
            .owner
            .iter()
            .filter(|(p, w)| {
                **w != name
                    && u.report.paths.contains(p)
                    && rank.get(*w).copied().unwrap_or(usize::MAX) < mine
            })
            .map(|(p, _)| p.trim_start_matches('/'))
            .collect();
        if !skipped_by_dpkg.is_empty() {
            u.report.md5sums = u
                .report
                .md5sums
                .lines()
                .filter(|l| {
                    l.split_once("  ")
                        .is_none_or(|(_, p)| !skipped_by_dpkg.contains(p))
                })
                .map(|l| format!("{l}\n"))
                .collect();
        }
        u.report.paths.retain(|p| !d.lost(&name, p));
    }
    for u in pkgs.iter() {
        let sel: unpack::Selection = u
            .report
            .skipped
            .iter()
            .filter(|p| !d.lost(&u.name, p) && !d.open.contains_key(p.as_str()))
            .map(|p| (p.clone(), p.clone()))
            .collect();
        if !sel.is_empty() {
            reextract(root, u, &sel)?;
        }
    }
    for name in &d.disappeared {
        tracing::info!("{name} is completely replaced and disappears, as dpkg would note");
    }
    pkgs.retain(|u| !d.disappeared.contains(&u.name));
    Ok(d)
}

/// After the `preinst` scripts: puts every diverted path where
/// `/var/lib/dpkg/diversions` says (the diverting package's copy at the
/// original name, the other package's at the divert-to name), and fails
/// on a path two packages ship that neither `Replaces` nor a diversion
/// settles.
fn settle_diversions(
    root: &Root,
    pkgs: &mut [Unpacked],
    order: &[usize],
    claims: &Claims,
    d: &Decisions,
) -> Result<(), InstallError> {
    let diversions =
        ownership::read_diversions(root.path()).map_err(|source| InstallError::Io {
            path: root.path().join("var/lib/dpkg/diversions"),
            source,
        })?;
    if diversions.is_empty() && d.open.is_empty() {
        return Ok(());
    }
    let placement = {
        let views: Vec<PkgView<'_>> = pkgs.iter().map(Unpacked::view).collect();
        ownership::place_diverted(&views, order, d, &|p| claims.owners(p), &diversions)?
    };
    for path in &placement.clear {
        for name in [path.clone(), format!("{path}.dpkg-new")] {
            remove_non_dir(root, &name)?;
        }
    }
    for u in pkgs.iter() {
        if let Some(sel) = placement.extract.get(&u.name) {
            reextract(root, u, sel)?;
        }
    }
    let info = root.path().join("var/lib/dpkg/info");
    for u in pkgs.iter_mut() {
        if let Some(gone) = placement.unlisted.get(&u.name) {
            u.report.paths.retain(|p| !gone.contains(p));
            write_list(&info, u)?;
        }
    }
    Ok(())
}

/// Removes `path` (inside the root) unless it is absent or a directory.
fn remove_non_dir(root: &Root, path: &str) -> Result<(), InstallError> {
    use rustix::fs::{AtFlags, FileType};
    let rel = path.trim_start_matches('/');
    let (parent, file) = rel.rsplit_once('/').unwrap_or(("", rel));
    let host = root.path().join(rel);
    let err = |e: rustix::io::Errno| InstallError::Io {
        path: host.clone(),
        source: e.into(),
    };
    let pfd = match root.open_dir(parent) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(e) => return Err(err(e)),
    };
    match rustix::fs::statat(&pfd, file, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::Directory => {
            rustix::fs::unlinkat(&pfd, file, AtFlags::empty()).map_err(err)
        }
        Ok(_) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(err(e)),
    }
}

/// Writes `info/<pkg>.list`: every path the package owns, in archive order.
fn write_list(info: &Path, u: &Unpacked) -> Result<(), InstallError> {
    let mut list = u.report.paths.join("\n");
    list.push('\n');
    write_file(
        &info.join(format!("{}.list", u.info_name)),
        list.as_bytes(),
        0o644,
    )
}

/// The packages that ship a kernel image (`/boot/vmlinuz-*`) and every
/// package that depends on one of them, directly or not: the set that must
/// be configured after the rest for the initramfs to be built once.
fn kernel_dependents(pkgs: &[Unpacked]) -> BTreeSet<usize> {
    let mut set: BTreeSet<usize> = pkgs
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            p.report
                .paths
                .iter()
                .any(|f| f.starts_with("/boot/vmlinuz-"))
        })
        .map(|(i, _)| i)
        .collect();
    loop {
        let names: BTreeSet<&str> = set
            .iter()
            .flat_map(|&i| {
                std::iter::once(pkgs[i].name.as_str())
                    .chain(pkgs[i].provides.iter().map(String::as_str))
            })
            .collect();
        let before = set.len();
        for (i, p) in pkgs.iter().enumerate() {
            if p.deps.iter().flatten().any(|n| names.contains(n.as_str())) {
                set.insert(i);
            }
        }
        if set.len() == before {
            return set;
        }
    }
}

/// Dependency order (dependencies first), deterministic; cycles are cut
/// where the walk meets them, as dpkg does.
fn install_order(pkgs: &[Unpacked]) -> Vec<usize> {
    let mut by_name: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, p) in pkgs.iter().enumerate() {
        by_name.insert(&p.name, i);
    }
    for (i, p) in pkgs.iter().enumerate() {
        for v in &p.provides {
            by_name.entry(v).or_insert(i);
        }
    }
    let mut state = vec![0u8; pkgs.len()];
    let mut out = Vec::with_capacity(pkgs.len());
    fn visit(
        i: usize,
        pkgs: &[Unpacked],
        by_name: &BTreeMap<&str, usize>,
        state: &mut [u8],
        out: &mut Vec<usize>,
    ) {
        if state[i] != 0 {
            return;
        }
        state[i] = 1;
        for group in &pkgs[i].deps {
            if let Some(&j) = group.iter().find_map(|n| by_name.get(n.as_str())) {
                visit(j, pkgs, by_name, state, out);
            }
        }
        state[i] = 2;
        out.push(i);
    }
    for i in 0..pkgs.len() {
        visit(i, pkgs, &by_name, &mut state, &mut out);
    }
    out
}

/// Writes `/var/lib/dpkg/{status,info/*,triggers/*}` as `dpkg --unpack`
/// leaves them.
fn write_database(root: &Path, pkgs: &[Unpacked]) -> Result<(), InstallError> {
    let info = root.join("var/lib/dpkg/info");
    let mut status = String::new();
    let mut file_triggers: BTreeSet<String> = BTreeSet::new();
    let mut explicit: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in pkgs {
        for (member, data) in &p.control {
            if member == "control" {
                continue;
            }
            if !member
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(InstallError::Control {
                    name: p.name.clone(),
                    message: format!("control member {member:?} has an invalid name"),
                });
            }
            let mode = if ["preinst", "postinst", "prerm", "postrm", "config"]
                .contains(&member.as_str())
            {
                0o755
            } else {
                0o644
            };
            write_file(&info.join(format!("{}.{member}", p.info_name)), data, mode)?;
            if member == "triggers" {
                for line in String::from_utf8_lossy(data).lines() {
                    let line = line.split('#').next().unwrap_or("").trim();
                    let mut w = line.split_whitespace();
                    let (Some(kind), Some(name)) = (w.next(), w.next()) else {
                        continue;
                    };
                    let who = match kind {
                        "interest" | "interest-await" => p.info_name.clone(),
                        "interest-noawait" => format!("{}/noawait", p.info_name),
                        _ => continue,
                    };
                    if name.starts_with('/') {
                        file_triggers.insert(format!("{name} {who}"));
                    } else {
                        explicit.entry(name.to_string()).or_default().insert(who);
                    }
                }
            }
        }
        write_list(&info, p)?;
        // dpkg records what it unpacked when the package ships no md5sums
        // (lost or diverted files included, under their original names).
        if !p.control.contains_key("md5sums") {
            write_file(
                &info.join(format!("{}.md5sums", p.info_name)),
                p.report.md5sums.as_bytes(),
                0o644,
            )?;
        }
        // The status stanza: control fields plus Status and Conffiles.
        let _ = writeln!(status, "Package: {}", p.name);
        let _ = writeln!(status, "Status: install ok unpacked");
        for (k, v) in &p.fields {
            if k.eq_ignore_ascii_case("Package") || k.eq_ignore_ascii_case("Status") {
                continue;
            }
            let mut lines = v.split('\n');
            let first = lines.next().unwrap_or("");
            if first.is_empty() {
                let _ = writeln!(status, "{k}:");
            } else {
                let _ = writeln!(status, "{k}: {first}");
            }
            for l in lines {
                if l.is_empty() {
                    status.push_str(" .\n");
                } else {
                    let _ = writeln!(status, " {l}");
                }
            }
        }
        if !p.conffiles.is_empty() {
            status.push_str("Conffiles:\n");
            for c in &p.conffiles {
                let _ = writeln!(status, " {c} newconffile");
            }
        }
        status.push('\n');
    }
    write_file(&root.join("var/lib/dpkg/status"), status.as_bytes(), 0o644)?;
    let trig = root.join("var/lib/dpkg/triggers");
    if !file_triggers.is_empty() {
        let mut s = file_triggers.into_iter().collect::<Vec<_>>().join("\n");
        s.push('\n');
        write_file(&trig.join("File"), s.as_bytes(), 0o644)?;
    }
    for (name, who) in explicit {
        if name.contains('/') || name.starts_with('.') {
            continue;
        }
        let mut s = who.into_iter().collect::<Vec<_>>().join("\n");
        s.push('\n');
        write_file(&trig.join(&name), s.as_bytes(), 0o644)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, deps: &[&[&str]], provides: &[&str], files: &[&str]) -> Unpacked {
        Unpacked {
            name: name.into(),
            arch: "amd64".into(),
            info_name: name.into(),
            fields: Vec::new(),
            control: BTreeMap::new(),
            conffiles: Vec::new(),
            report: unpack::Report {
                paths: files.iter().map(|f| f.to_string()).collect(),
                ..Default::default()
            },
            deps: deps
                .iter()
                .map(|g| g.iter().map(|n| n.to_string()).collect())
                .collect(),
            provides: provides.iter().map(|p| p.to_string()).collect(),
            has_preinst: false,
            version: "1".into(),
            replaces: Vec::new(),
            relations: Vec::new(),
            deb_path: PathBuf::new(),
        }
    }

    #[test]
    fn kernel_and_its_dependents_are_configured_last() {
        let pkgs = vec![
            pkg("libc6", &[], &[], &["/usr/lib/libc.so.6"]),
            pkg(
                "linux-image-6.1",
                &[&["kmod"]],
                &["linux-image"],
                &["/boot/vmlinuz-6.1"],
            ),
            pkg("linux-image-amd64", &[&["linux-image-6.1"]], &[], &[]),
            // Depends on the kernel only through a virtual package.
            pkg("firmware-helper", &[&["other", "linux-image"]], &[], &[]),
            pkg("kmod", &[&["libc6"]], &[], &["/usr/bin/kmod"]),
            pkg("meta", &[&["linux-image-amd64"], &["kmod"]], &[], &[]),
        ];
        let names: Vec<&str> = kernel_dependents(&pkgs)
            .into_iter()
            .map(|i| pkgs[i].name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "linux-image-6.1",
                "linux-image-amd64",
                "firmware-helper",
                "meta"
            ]
        );
    }

    #[test]
    fn no_kernel_means_nothing_deferred() {
        let pkgs = vec![pkg("libc6", &[], &[], &["/usr/lib/libc.so.6"])];
        assert!(kernel_dependents(&pkgs).is_empty());
    }
}
