//! The build pipeline: recipe → (lock or resolve) → download → install →
//! steps → normalise → a finished root tree (and, once the store's commit
//! API is wired in, a commit).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cache::{Cache, CacheError, Wanted};
use crate::chroot::Chroot;
use crate::debian::inrelease::{Keyring, ReleaseError};
use crate::debian::install::{self, DebFile, InstallError};
use crate::debian::repo::{self, ArchiveSpec, RepoError};
use crate::debian::resolve::{self, ResolveError, Universe};
use crate::debian::sources::{self, SourcesError};
use crate::http::Fetcher;
use crate::lock::{Lock, LockError, LockInputs, LockedPackage};
use crate::normalize::{self, NormalizeError};
use crate::progress::{Progress, Stage};
use crate::recipe::{DEBIAN_KEYRING, DebianSource, Recipe, Source};
use crate::steps::{self, StepError};
use crate::unpack::{self, UnpackError};

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// vnfs home (package cache, temporary roots).
    pub home: PathBuf,
    /// Build into this directory (must be empty or absent) and keep it.
    pub output_dir: Option<PathBuf>,
    /// Resolve again even if a lock file exists.
    pub update: bool,
    /// Where the machine's apt configuration lives (`/etc/apt`).
    pub etc_apt: PathBuf,
    /// Commit the result to the store under `<home>/store`.
    pub commit: bool,
}

impl BuildOptions {
    /// Defaults for a home directory.
    pub fn new(home: &Path) -> BuildOptions {
        BuildOptions {
            home: home.to_path_buf(),
            output_dir: None,
            update: false,
            etc_apt: PathBuf::from("/etc/apt"),
            commit: true,
        }
    }
}

/// A build failure; nothing is committed and temporary roots are removed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Reading apt sources failed.
    #[error(transparent)]
    Sources(#[from] SourcesError),
    /// No mirror could be found for a suite.
    #[error(
        "no apt source for suite {suite:?} in {etc_apt}{}; set `mirror` in [source.debian]",
        match known.is_empty() {
            true => String::new(),
            false => format!(" (it has {})", known.join(", ")),
        }
    )]
    NoMirror {
        /// The suite.
        suite: String,
        /// Where we looked.
        etc_apt: PathBuf,
        /// The suites the apt sources there do have.
        known: Vec<String>,
    },
    /// InRelease verification or keyring failure.
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// Index download or parse failure.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// Dependency resolution failed.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// Lock file problem.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The lock was made for different inputs.
    #[error(
        "{path} was resolved for other inputs than the recipe now asks for ({changes}); \
         run with --update to resolve again"
    )]
    LockOutdated {
        /// The lock file.
        path: PathBuf,
        /// What differs ([`crate::lock::changed_inputs`]).
        changes: String,
    },
    /// Download failure.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Installing packages failed.
    #[error(transparent)]
    Install(#[from] InstallError),
    /// Unpacking a tar source failed.
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    /// The RPM source failed (boxed: its errors carry whole explanations).
    #[error(transparent)]
    Rpm(Box<crate::rpm::build::RpmBuildError>),
    /// A recipe step failed.
    #[error(transparent)]
    Step(#[from] StepError),
    /// Normalisation failed.
    #[error(transparent)]
    Normalize(#[from] NormalizeError),
    /// The output directory is not usable.
    #[error("{path}: {message}")]
    Output {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Other filesystem error.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Ctrl-C (or SIGTERM): the build stopped where it was.
    #[error("interrupted; nothing was committed")]
    Interrupted,
    /// Committing to the store failed (no ref was moved).
    #[error("committing to the store: {0}")]
    Store(#[from] vnfs_store::StoreError),
}

impl From<crate::rpm::build::RpmBuildError> for BuildError {
    fn from(e: crate::rpm::build::RpmBuildError) -> Self {
        BuildError::Rpm(Box::new(e))
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> BuildError + '_ {
    move |source| BuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a build produced.
#[derive(Debug)]
pub struct Built {
    /// The image name.
    pub name: String,
    /// The finished root (the output directory, or a temporary one that
    /// lives as long as this value).
    pub root: PathBuf,
    /// The temporary directory holding `root` when no output dir was given.
    pub temp: Option<tempfile::TempDir>,
    /// The lock on `temp` (its `owner.lock`), held while it lives: a later
    /// build's cleanup removes only temporary roots nobody holds.
    pub temp_lock: Option<std::fs::File>,
    /// Installed packages (empty for tar/dir sources).
    pub packages: Vec<LockedPackage>,
    /// The timestamp everything was clamped to.
    pub source_date_epoch: i64,
    /// The lock text (Debian and RPM sources).
    pub lock_text: Option<String>,
    /// Whether the lock differs from `<recipe>.lock` (or there is none):
    /// written only once the build has succeeded, so a failed build leaves
    /// the old lock, or none, behind.
    pub lock_changed: bool,
    /// Whether the lock file was (re)written.
    pub lock_written: bool,
    /// Commit metadata: packages, vnfs.config, recipe, lock, image.*.
    pub metadata: BTreeMap<String, String>,
    /// The commit, when the build was committed.
    pub commit: Option<vnfs_store::ObjectId>,
}

/// Builds `recipe` into a root directory.
pub fn build(
    recipe: &Recipe,
    opts: &BuildOptions,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<Built, BuildError> {
    let mut temp_lock = None;
    let (root, temp) = match &opts.output_dir {
        Some(d) => {
            if d.exists() {
                let mut rd = std::fs::read_dir(d).map_err(io_err(d))?;
                if rd.next().is_some() {
                    return Err(BuildError::Output {
                        path: d.clone(),
                        message: "output directory is not empty".into(),
                    });
                }
            }
            std::fs::create_dir_all(d).map_err(io_err(d))?;
            (d.clone(), None)
        }
        None => {
            let tmp_parent = opts.home.join("tmp");
            std::fs::create_dir_all(&tmp_parent).map_err(io_err(&tmp_parent))?;
            remove_orphaned_roots(&tmp_parent);
            let t = tempfile::Builder::new()
                .prefix("build-")
                .tempdir_in(&tmp_parent)
                .map_err(io_err(&tmp_parent))?;
            temp_lock = Some(claim(t.path())?);
            (t.path().join("root"), Some(t))
        }
    };
    // Commands in the image watch `stop`, which mirrors `cancel`: a
    // shared flag they can hold on to beyond this borrow.
    let stop = Arc::new(AtomicBool::new(false));
    let done = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                if cancel.load(Ordering::Relaxed) {
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        });
        let r = build_into(recipe, opts, &root, progress, cancel, &stop);
        done.store(true, Ordering::Relaxed);
        r
    });
    // Whatever failed once the user asked to stop (a command killed by
    // the terminal's Ctrl-C, say) is reported as the interruption it is.
    let result = match result {
        Err(e) if cancel.load(Ordering::Relaxed) => {
            tracing::debug!("after the interrupt: {e}");
            Err(BuildError::Interrupted)
        }
        r => r,
    };
    match result {
        Ok(mut b) => {
            b.temp = temp;
            b.temp_lock = temp_lock;
            Ok(b)
        }
        Err(e) => {
            // Leave an explicit output dir for inspection; temp dirs go.
            drop(temp);
            Err(e)
        }
    }
}

/// The lock file inside a temporary root; see [`claim`].
const OWNER_LOCK: &str = "owner.lock";

/// Locks the temporary root `dir` for this build: `owner.lock` is created
/// under another name, locked (`flock`, exclusive), then renamed into
/// place, so a cleanup that finds it unlocked knows its build has gone
/// (killed before it could clean up), wherever that build ran: a pid
/// would mean nothing to another pid namespace sharing the home.
fn claim(dir: &Path) -> Result<std::fs::File, BuildError> {
    let tmp = dir.join(".owner.lock.new");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.lock().map_err(io_err(&tmp))?;
    let lock = dir.join(OWNER_LOCK);
    std::fs::rename(&tmp, &lock).map_err(io_err(&lock))?;
    Ok(f)
}

/// Removes the temporary roots under `tmp` whose build is gone (its
/// `owner.lock` can be locked): builds killed before they could clean up
/// (SIGKILL, a dropped session's wrapper). One with anything mounted under
/// it is left alone, with a warning: removing it would reach into the
/// mounted file system. One without a lock file (from an older vnfs, or
/// being created this instant) is only mentioned once it is a day old.
fn remove_orphaned_roots(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_name().to_string_lossy().starts_with("build-") {
            continue;
        }
        let dir = e.path();
        let lock = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join(OWNER_LOCK))
        {
            Ok(f) => f,
            Err(_) => {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age.as_secs() > 86_400);
                if old {
                    tracing::warn!(
                        "{} looks left by an earlier build; remove it if no build is running",
                        dir.display()
                    );
                }
                continue;
            }
        };
        if lock.try_lock().is_err() {
            continue;
        }
        if has_mounts_under(&dir) {
            tracing::warn!(
                "{} was left by a build that was killed, and has file systems mounted in it (or the mounts could not be read): unmount them, then remove it",
                dir.display()
            );
            continue;
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => tracing::warn!("removed {}, left by a build that was killed", dir.display()),
            Err(err) => tracing::warn!(
                "{} was left by a build that was killed and could not be removed: {err}",
                dir.display()
            ),
        }
    }
}

/// Whether anything is mounted at or under `dir` (in this mount
/// namespace), or whether that cannot be told.
fn has_mounts_under(dir: &Path) -> bool {
    let (Ok(dir), Ok(info)) = (
        std::fs::canonicalize(dir),
        std::fs::read_to_string("/proc/self/mountinfo"),
    ) else {
        return true;
    };
    let dir = dir.to_string_lossy().into_owned();
    let under = format!("{dir}/");
    // The fifth field is the mount point, with space, tab, newline and
    // backslash written as octal escapes.
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| {
            m.replace("\\040", " ")
                .replace("\\011", "\t")
                .replace("\\012", "\n")
                .replace("\\134", "\\")
        })
        .any(|m| m == dir || m.starts_with(&under))
}

/// Copies the directory `from` into `root` with `cp -a` (which keeps
/// hard links, xattrs, ACLs and devices as no hand-written copy would), and
/// stops it at once when the build is interrupted.
fn copy_tree(from: &Path, root: &Path, cancel: &AtomicBool) -> Result<(), BuildError> {
    let mut child = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(root)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(io_err(from))?;
    // Read on a thread, so a chatty cp cannot fill the pipe and stall.
    let mut stderr = child.stderr.take();
    let said = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = std::io::Read::read_to_string(e, &mut text);
        }
        text
    });
    let status = loop {
        if cancel.load(Ordering::Relaxed) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(BuildError::Interrupted);
        }
        match child.try_wait().map_err(io_err(from))? {
            Some(status) => break status,
            None => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    };
    if status.success() {
        return Ok(());
    }
    let said = said.join().unwrap_or_default();
    Err(BuildError::Io {
        path: from.to_path_buf(),
        source: std::io::Error::other(format!(
            "copying the dir source (cp -a) failed ({status}): {}",
            said.trim()
        )),
    })
}

fn check(cancel: &AtomicBool) -> Result<(), BuildError> {
    if cancel.load(Ordering::Relaxed) {
        Err(BuildError::Interrupted)
    } else {
        Ok(())
    }
}

fn build_into(
    recipe: &Recipe,
    opts: &BuildOptions,
    root: &Path,
    progress: &dyn Progress,
    cancel: &AtomicBool,
    stop: &Arc<AtomicBool>,
) -> Result<Built, BuildError> {
    // Anything modified after this instant was made by the build, not
    // shipped by a package: its timestamp is set to SOURCE_DATE_EPOCH.
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64 - 1);
    let mut built = Built {
        name: recipe.image.full_name(),
        root: root.to_path_buf(),
        temp: None,
        temp_lock: None,
        packages: Vec::new(),
        source_date_epoch: 0,
        lock_text: None,
        lock_changed: false,
        lock_written: false,
        metadata: BTreeMap::new(),
        commit: None,
    };
    let mut source_metadata = BTreeMap::new();
    match &recipe.source {
        Source::Debian(d) => {
            let fetcher = Fetcher::default().stopping_on(stop.clone());
            build_debian(
                recipe, d, opts, root, progress, cancel, &fetcher, &mut built,
            )?
        }
        Source::Rpm(r) => {
            let b = crate::rpm::build::build(
                recipe,
                r,
                &opts.home,
                opts.update,
                root,
                progress,
                cancel,
                &Fetcher::default().stopping_on(stop.clone()),
            )?;
            built.packages = b.packages;
            built.source_date_epoch = b.source_date_epoch;
            built.lock_text = Some(b.lock_text);
            built.lock_changed = b.lock_changed;
            source_metadata = b.metadata;
        }
        Source::Tar(t) => {
            let path = recipe.host_path(&t.path);
            let data = std::fs::read(&path).map_err(io_err(&path))?;
            built.source_date_epoch = env_epoch().unwrap_or_else(|| mtime_of(&path));
            let kind = if data.starts_with(&[0x1f, 0x8b]) {
                "x.gz"
            } else if data.starts_with(&[0xfd, b'7', b'z', b'X', b'Z']) {
                "x.xz"
            } else if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                "x.zst"
            } else if data.get(257..262) == Some(&b"ustar"[..]) {
                "x.tar"
            } else {
                // Every tar writer in use (GNU, pax, docker export) puts
                // the ustar magic in the first header.
                return Err(BuildError::Io {
                    path,
                    source: std::io::Error::other(
                        "not a tar archive (no ustar header), nor one compressed with gzip, xz or zstd",
                    ),
                });
            };
            let reader = crate::debian::deb::decoder(kind, &data).map_err(|m| BuildError::Io {
                path: path.clone(),
                source: std::io::Error::other(m),
            })?;
            progress.begin(Stage::Unpack, None);
            let r = unpack::Root::open(root).map_err(io_err(root))?;
            let rep = unpack::unpack_tar(
                &r,
                reader,
                &path.display().to_string(),
                &unpack::Options::default(),
            )?;
            unpack::apply_dir_meta(&r, rep.dirs.iter())?;
            unpack::apply_dir_xattrs(&r, rep.dir_xattrs.iter())?;
            progress.end(Stage::Unpack);
        }
        Source::Dir(dsrc) => {
            let path = recipe.host_path(&dsrc.path);
            built.source_date_epoch = env_epoch().unwrap_or_else(|| mtime_of(&path));
            if !path.is_dir() {
                return Err(BuildError::Io {
                    source: std::io::Error::other(match path.exists() {
                        true => "the dir source is not a directory",
                        false => "the dir source does not exist",
                    }),
                    path,
                });
            }
            progress.begin(Stage::Unpack, None);
            copy_tree(&path, root, cancel)?;
            progress.end(Stage::Unpack);
        }
    }
    check(cancel)?;
    progress.begin(Stage::Configure, Some(recipe.steps.len() as u64));
    let chroot = Chroot::new(root, Some(built.source_date_epoch)).with_cancel(stop.clone());
    let recipe_dir = recipe.path.parent().unwrap_or(Path::new("."));
    steps::apply(root, &recipe.steps, recipe_dir, &chroot)?;
    progress.end(Stage::Configure);
    check(cancel)?;
    progress.begin(Stage::Commit, None);
    progress.message(Stage::Commit, "normalising");
    let t0 = std::time::Instant::now();
    normalize::clean(root)?;
    normalize::clamp_mtimes(root, built.source_date_epoch, started)?;
    tracing::info!("normalised in {:.2?}", t0.elapsed());
    built.metadata = metadata(recipe, &built);
    built.metadata.extend(source_metadata);
    check(cancel)?;
    // Once the steps have passed, before the commit: a lock that cannot be
    // written then fails the build before anything is committed.
    if let (true, Some(text)) = (built.lock_changed, &built.lock_text) {
        crate::lock::write_text(&recipe.lock_path(), text)?;
        built.lock_written = true;
    }
    if opts.commit {
        let t0 = std::time::Instant::now();
        progress.message(Stage::Commit, "committing");
        let store = vnfs_store::Store::open_or_create(&opts.home.join("store"))?;
        let out = store.commit_dir(
            root,
            &vnfs_store::CommitOptions {
                name: built.name.clone(),
                // What the build holds, not when it ran: the date is the
                // packages' (SOURCE_DATE_EPOCH), so the commit is the same
                // wherever it is rebuilt.
                message: format!(
                    "vnfs build: {}, {} package{}, lock {}",
                    built.name,
                    built.packages.len(),
                    if built.packages.len() == 1 { "" } else { "s" },
                    built
                        .lock_text
                        .as_deref()
                        .map(
                            |t| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(t.as_bytes()))
                                [..12]
                                .to_string()
                        )
                        .unwrap_or_else(|| "none".into())
                ),
                timestamp: Some(built.source_date_epoch),
                metadata: built.metadata.clone(),
                parent: None,
            },
            &StoreProgress(progress),
        )?;
        tracing::info!("committed {} in {:.2?}", out.id, t0.elapsed());
        built.commit = Some(out.id);
    }
    progress.end(Stage::Commit);
    Ok(built)
}

/// Forwards the store's progress to the build's Commit stage.
struct StoreProgress<'a>(&'a dyn Progress);

impl vnfs_store::Progress for StoreProgress<'_> {
    fn phase(&self, name: &str, total: Option<u64>, _bytes: bool) {
        self.0.begin(Stage::Commit, total);
        self.0.message(Stage::Commit, name);
    }
    fn advance(&self, n: u64) {
        self.0.advance(Stage::Commit, n);
    }
}

/// `$SOURCE_DATE_EPOCH`, when set to a number.
pub(crate) fn env_epoch() -> Option<i64> {
    std::env::var("SOURCE_DATE_EPOCH").ok()?.trim().parse().ok()
}

fn mtime_of(p: &Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).map(|m| m.mtime()).unwrap_or(0)
}

/// The commit metadata for a build: the VNFS keys capsules and the
/// provisioner read (`vnfs_capsule::metadata`), plus the image name and
/// the SOURCE_DATE_EPOCH used.
fn metadata(recipe: &Recipe, built: &Built) -> BTreeMap<String, String> {
    use vnfs_capsule::manifest::{Package, VnfsConfig};
    use vnfs_capsule::metadata::ImageMetadata;
    use vnfs_capsule::naming::Naming;
    let i = &recipe.image;
    let state = serde_json::to_value(i.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut packages: Vec<Package> = built
        .packages
        .iter()
        .map(|p| Package {
            name: p.name.clone(),
            version: p.version.clone(),
            arch: p.arch.clone(),
            sha256: Some(p.sha256.clone()),
        })
        .collect();
    packages.sort();
    let meta = ImageMetadata {
        naming: Naming {
            os: i.os.clone(),
            version: i.version.clone(),
            release: i.release.clone(),
            state,
            arch: i.arch.clone(),
        },
        config: VnfsConfig {
            kernel_args: recipe.vnfs.kernel_args.clone(),
            hybridize: recipe.vnfs.hybridize.clone(),
            livesync_skip: recipe.vnfs.livesync_skip.clone(),
            nodescripts: recipe.vnfs.nodescripts.clone(),
        },
        packages,
        recipe: Some(recipe.text.clone()),
        lock: built.lock_text.clone(),
    };
    let mut m = BTreeMap::new();
    meta.to_commit(&mut m);
    m.insert("vnfs.image".into(), i.full_name());
    m.insert(
        "vnfs.source_date_epoch".into(),
        built.source_date_epoch.to_string(),
    );
    m
}

/// The archive root URI for each suite of a Debian source.
fn archives(d: &DebianSource, etc_apt: &Path) -> Result<Vec<ArchiveSpec>, BuildError> {
    let system = if d.mirror.is_none() {
        sources::read_system_sources(etc_apt)?
    } else {
        Vec::new()
    };
    std::iter::once(&d.suite)
        .chain(&d.extra_suites)
        .map(|suite| {
            let uri = match &d.mirror {
                Some(m) => m.trim_end_matches('/').to_string(),
                None => sources::find_suite(&system, suite)
                    .map(|e| e.uri.clone())
                    .ok_or_else(|| {
                        let mut known: Vec<String> = system
                            .iter()
                            .filter(|e| e.kind == "deb")
                            .map(|e| e.suite.clone())
                            .collect();
                        known.sort();
                        known.dedup();
                        BuildError::NoMirror {
                            suite: suite.clone(),
                            etc_apt: etc_apt.to_path_buf(),
                            known,
                        }
                    })?,
            };
            Ok(ArchiveSpec {
                uri,
                suite: suite.clone(),
                components: d.components.clone(),
            })
        })
        .collect()
}

fn variant_name(v: resolve::Variant) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[allow(clippy::too_many_arguments)]
fn build_debian(
    recipe: &Recipe,
    d: &DebianSource,
    opts: &BuildOptions,
    root: &Path,
    progress: &dyn Progress,
    cancel: &AtomicBool,
    fetcher: &Fetcher,
    built: &mut Built,
) -> Result<(), BuildError> {
    let arch = recipe.image.debian_arch();
    let archives = archives(d, &opts.etc_apt)?;
    let inputs = LockInputs {
        suites: archives.iter().map(|a| a.suite.clone()).collect(),
        components: d.components.clone(),
        variant: variant_name(d.variant),
        packages: d.packages.clone(),
        exclude: d.exclude.clone(),
        arch: arch.clone(),
    };
    let lock_path = recipe.lock_path();
    let existing = if opts.update {
        None
    } else {
        Lock::read(&lock_path)?
    };
    let t0 = std::time::Instant::now();
    progress.begin(Stage::Resolve, None);
    let lock = match &existing {
        Some(l) if l.inputs == inputs => l.clone(),
        Some(l) => {
            return Err(BuildError::LockOutdated {
                path: lock_path,
                changes: crate::lock::changed_inputs(&l.inputs, &inputs),
            });
        }
        None => {
            progress.message(Stage::Resolve, "fetching indexes");
            let keyring_path = d
                .keyring
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEBIAN_KEYRING));
            let keyring = Keyring::load(&keyring_path)?;
            let index = repo::load_index(fetcher, &archives, &arch, &keyring)?;
            check(cancel)?;
            progress.message(Stage::Resolve, "resolving");
            let universe = Universe::new(&index.packages, &arch);
            let res = resolve::resolve(
                &universe,
                &resolve::Request {
                    variant: d.variant,
                    base_origin: Some(0),
                    packages: d.packages.clone(),
                    exclude: d.exclude.clone(),
                    arch: arch.clone(),
                },
            )?;
            let sde = env_epoch()
                .or_else(|| index.releases.first().and_then(|r| parse_rfc2822(&r.date)))
                .unwrap_or(0);
            Lock {
                lock_version: 1,
                source_date_epoch: sde,
                inputs: inputs.clone(),
                packages: res
                    .packages
                    .iter()
                    .map(|p| LockedPackage {
                        name: p.name.clone(),
                        version: p.version.to_string(),
                        arch: p.arch.clone(),
                        sha256: p.sha256.clone(),
                        size: p.size,
                        path: p.filename.clone(),
                        suite: index.archives[p.origin].suite.clone(),
                    })
                    .collect(),
            }
        }
    };
    progress.end(Stage::Resolve);
    check(cancel)?;
    let uri_of: BTreeMap<&str, &str> = archives
        .iter()
        .map(|a| (a.suite.as_str(), a.uri.as_str()))
        .collect();
    let wanted: Vec<Wanted> = lock
        .packages
        .iter()
        .map(|p| Wanted {
            url: format!(
                "{}/{}",
                uri_of.get(p.suite.as_str()).copied().unwrap_or(""),
                p.path
            ),
            sha256: p.sha256.clone(),
            size: p.size,
        })
        .collect();
    tracing::info!(
        "resolved {} packages in {:.2?}",
        lock.packages.len(),
        t0.elapsed()
    );
    let t0 = std::time::Instant::now();
    let cache = Cache::new(&opts.home);
    let from_lock = existing.as_ref() == Some(&lock);
    let lock_file = recipe.lock_path();
    let named_by = from_lock.then_some(lock_file.as_path());
    let paths = cache.ensure(fetcher, &wanted, progress, cancel, named_by)?;
    tracing::info!("downloads done in {:.2?}", t0.elapsed());
    check(cancel)?;
    let debs: Vec<DebFile> = lock
        .packages
        .iter()
        .zip(paths)
        .map(|(p, path)| DebFile {
            name: p.name.clone(),
            sha256: p.sha256.clone(),
            path,
        })
        .collect();
    install::install(root, &debs, &arch, lock.source_date_epoch, progress)?;
    // apt inside the image uses the same archives.
    let mut list = String::new();
    for a in &archives {
        list.push_str(&format!(
            "deb {} {} {}\n",
            a.uri,
            a.suite,
            a.components.join(" ")
        ));
    }
    let sl = root.join("etc/apt/sources.list");
    std::fs::write(&sl, list).map_err(io_err(&sl))?;
    built.source_date_epoch = lock.source_date_epoch;
    built.packages = lock.packages.clone();
    let text = lock.to_text()?;
    built.lock_changed = existing.as_ref() != Some(&lock);
    built.lock_text = Some(text);
    Ok(())
}

/// Parses an RFC 2822 date as found in Release files
/// (`Sat, 11 Jul 2026 10:16:37 UTC`) to Unix seconds.
pub fn parse_rfc2822(s: &str) -> Option<i64> {
    let s = s.split_once(',').map_or(s, |(_, r)| r).trim();
    let mut w = s.split_whitespace();
    let day: i64 = w.next()?.parse().ok()?;
    let mon = w.next()?;
    let year: i64 = w.next()?.parse().ok()?;
    let hms: Vec<i64> = w
        .next()?
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let zone = w.next().unwrap_or("UTC");
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == mon)? as i64
        + 1;
    let offset = match zone {
        "UTC" | "GMT" | "Z" => 0,
        z if z.len() == 5 => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let h: i64 = z.get(1..3)?.parse().ok()?;
            let m: i64 = z.get(3..5)?.parse().ok()?;
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(
        days * 86_400 + hms.first()? * 3600 + hms.get(1)? * 60 + hms.get(2).copied().unwrap_or(0)
            - offset,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_dates() {
        assert_eq!(parse_rfc2822("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(
            parse_rfc2822("Sat, 10 Jun 2023 08:53:33 UTC"),
            Some(1_686_387_213)
        );
        assert_eq!(
            parse_rfc2822("Sat, 10 Jun 2023 10:53:33 +0200"),
            Some(1_686_387_213)
        );
        assert_eq!(parse_rfc2822("garbage"), None);
    }
}
