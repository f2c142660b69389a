//! The RPM source of `vnfs build`: lock or resolve, fetch into the shared
//! package cache, install into the root.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::install::{self, Expected, InstallError, RpmFile};
use super::lock::{RpmLock, RpmLockInputs, RpmLocked};
use super::modular::{self, ModuleError, ModuleMetadata, ModuleRequest, ModuleState};
use super::package::{self, LocalError, Origin, RpmPackage};
use super::repomd::{self, RepoError};
use super::resolve::{self, Request, ResolveError, Universe};
use super::signature::{GpgCheck, KeyError, Keyring};
use super::source::{RpmRepo, RpmSource, expand_dnf_variables};
use crate::cache::{Cache, CacheError, Wanted};
use crate::http::Fetcher;
use crate::lock::{LockError, LockedPackage};
use crate::progress::{Progress, Stage};
use crate::recipe::Recipe;

/// Failure of the RPM part of a build.
#[derive(Debug, thiserror::Error)]
pub enum RpmBuildError {
    /// A `files` glob is invalid or matches nothing.
    #[error("[source.rpm] files: {0}")]
    Files(String),
    /// A local RPM cannot be used.
    #[error(transparent)]
    Local(#[from] LocalError),
    /// A `gpgkey` file cannot be read.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Repository metadata could not be read or verified.
    #[error("repo {id}: {source}")]
    Repo {
        /// The repository id.
        id: String,
        /// The cause.
        source: RepoError,
    },
    /// Dependency resolution failed.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The module streams cannot be worked out.
    #[error("module streams: {0}")]
    Modules(ModuleError),
    /// Lock file problem.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The lock was made for other inputs.
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
    /// The lock names a repository the recipe no longer has.
    #[error(
        "{path}: package {package} comes from repo {repo:?}, which the recipe does not define; run with --update"
    )]
    UnknownRepo {
        /// The lock file.
        path: PathBuf,
        /// The package.
        package: String,
        /// The repository id.
        repo: String,
    },
    /// A lock entry names a local file the recipe does not list.
    #[error(
        "{path}: package {package} is the local file {location}, which the recipe's `files` do not match; run with --update"
    )]
    LockLocal {
        /// The lock file.
        path: PathBuf,
        /// The package.
        package: String,
        /// The file the lock names.
        location: String,
    },
    /// Download failure.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Installing failed.
    #[error(transparent)]
    Install(#[from] InstallError),
    /// Ctrl-C.
    #[error("interrupted")]
    Interrupted,
}

/// What the RPM source produced for the generic pipeline.
#[derive(Debug)]
pub struct RpmBuilt {
    /// Installed packages in the generic form (version = `[epoch:]version-release`,
    /// path = location, suite = repository id or `local`).
    pub packages: Vec<LockedPackage>,
    /// The timestamp everything is clamped to.
    pub source_date_epoch: i64,
    /// The lock text.
    pub lock_text: String,
    /// Whether the lock file differs from `lock_text` (or is missing): the
    /// build writes it once it has succeeded.
    pub lock_changed: bool,
    /// Extra commit metadata (`vnfs.rpm.scriptlets_ran`, `vnfs.rpm.scriptlets_skipped`, `vnfs.rpm.warnings`).
    pub metadata: BTreeMap<String, String>,
}

fn check(cancel: &AtomicBool) -> Result<(), RpmBuildError> {
    if cancel.load(Ordering::Relaxed) {
        Err(RpmBuildError::Interrupted)
    } else {
        Ok(())
    }
}

/// The repository root as a URL: URLs are kept, paths become `file://`
/// URLs relative to the recipe.
pub fn repo_url(recipe: &Recipe, baseurl: &str) -> String {
    // dnf's variables, so that a .repo file's baseurl can be pasted in.
    let b = expand_dnf_variables(baseurl.trim(), &recipe.image.arch, &recipe.image.version);
    let b = b.trim_end_matches('/');
    if b.contains("://") {
        return b.to_string();
    }
    let p = recipe.host_path(Path::new(b));
    let p = std::path::absolute(&p).unwrap_or(p);
    format!("file://{}", p.display())
}

/// Expands the recipe's `files` globs (relative to the recipe), sorted.
fn local_files(recipe: &Recipe, src: &RpmSource) -> Result<Vec<(String, PathBuf)>, RpmBuildError> {
    let mut out = Vec::new();
    for g in &src.files {
        let pattern = recipe.host_path(Path::new(g));
        let paths = glob::glob(&pattern.to_string_lossy())
            .map_err(|e| RpmBuildError::Files(format!("{g:?}: {e}")))?;
        let mut found: Vec<PathBuf> = paths
            .collect::<Result<_, _>>()
            .map_err(|e| RpmBuildError::Files(format!("{g:?}: {e}")))?;
        if found.is_empty() {
            return Err(RpmBuildError::Files(format!(
                "{g:?} matches no file (looked for {})",
                pattern.display()
            )));
        }
        found.sort();
        let base = recipe.path.parent().unwrap_or(Path::new("."));
        for p in found {
            // Record paths under the recipe's directory relative to it, so
            // the lock does not depend on where the checkout lives.
            let loc = p
                .strip_prefix(base)
                .ok()
                .filter(|_| !base.as_os_str().is_empty())
                .map_or_else(|| p.display().to_string(), |r| r.display().to_string());
            if !out.iter().any(|(l, _)| *l == loc) {
                out.push((loc, p));
            }
        }
    }
    Ok(out)
}

/// The recipe's key files, each read once: per repository (when it
/// checks anything) and for the local files.
struct Keys {
    repos: Vec<Option<Arc<Keyring>>>,
    local: Option<Arc<Keyring>>,
}

impl Keys {
    fn load(recipe: &Recipe, src: &RpmSource) -> Result<Keys, KeyError> {
        // dnf writes key files as file:// URLs, with its variables; a
        // path on this machine is what is meant.
        let load = |k: &PathBuf| {
            let k = match k.to_str() {
                Some(s) => {
                    let s = expand_dnf_variables(s, &recipe.image.arch, &recipe.image.version);
                    PathBuf::from(s.strip_prefix("file://").unwrap_or(&s))
                }
                None => k.clone(),
            };
            Keyring::load(&recipe.host_path(&k)).map(Arc::new)
        };
        Ok(Keys {
            repos: src
                .repos
                .iter()
                .map(|r| {
                    r.gpgkey
                        .as_ref()
                        .filter(|_| r.verified())
                        .map(load)
                        .transpose()
                })
                .collect::<Result<_, _>>()?,
            local: src.gpgkey.as_ref().map(load).transpose()?,
        })
    }

    /// The check of a local file, named by its path.
    fn local_check(&self, path: &Path) -> Option<GpgCheck> {
        self.local.as_ref().map(|k| GpgCheck {
            keys: k.clone(),
            package: path.display().to_string(),
        })
    }
}

/// What the header of a locked package must say.
fn expected(p: &super::lock::RpmLocked) -> Expected {
    Expected {
        epoch: p.epoch,
        version: p.version.clone(),
        release: p.release.clone(),
        arch: p.arch.clone(),
    }
}

/// A repository's packages without those its own `exclude` names (exact
/// names or globs, checked when the recipe was read).
fn filter_repo(r: &RpmRepo, pk: Vec<RpmPackage>) -> Vec<RpmPackage> {
    if r.exclude.is_empty() {
        return pk;
    }
    let pats: Vec<glob::Pattern> = r
        .exclude
        .iter()
        .filter_map(|e| glob::Pattern::new(e).ok())
        .collect();
    let before = pk.len();
    let kept: Vec<RpmPackage> = pk
        .into_iter()
        .filter(|p| !pats.iter().any(|g| g.matches(&p.name)))
        .collect();
    tracing::info!(
        "repo {}: exclude leaves out {} packages",
        r.id,
        before - kept.len()
    );
    kept
}

/// dnf's modular filtering of the repositories' packages, for the streams
/// the recipe enables and disables and the repositories' defaults.
/// Returns the module states the image records.
fn apply_modules(
    src: &RpmSource,
    inputs: &RpmLockInputs,
    modules: &ModuleMetadata,
    all: &mut Vec<RpmPackage>,
) -> Result<Vec<ModuleState>, RpmBuildError> {
    if modules.is_empty() {
        if !src.modules.is_empty() || !src.disable_modules.is_empty() {
            return Err(RpmBuildError::Modules(ModuleError::Request(
                "[source.rpm] modules or disable_modules is set, but no repository has module metadata (modules.yaml)".into(),
            )));
        }
        return Ok(Vec::new());
    }
    let request = ModuleRequest {
        enable: src.modules.clone(),
        disable: src.disable_modules.clone(),
        platform: src.module_platform_id.clone(),
        arch: inputs.arch.clone(),
    };
    let selection = modular::select(modules, &request).map_err(RpmBuildError::Modules)?;
    for w in &selection.warnings {
        tracing::warn!("{w}");
    }
    let streams: Vec<String> = selection
        .enabled
        .iter()
        .map(|(n, (s, _))| format!("{n}:{s}"))
        .collect();
    tracing::info!("active module streams: {}", streams.join(", "));
    let exempt: Vec<bool> = src.repos.iter().map(|r| r.module_hotfixes).collect();
    let (kept, filtered) = modular::filter(std::mem::take(all), modules, &selection, |i| {
        exempt.get(i).copied().unwrap_or(false)
    });
    tracing::info!(
        "modular filtering leaves out {} packages of inactive streams and {} that active streams replace",
        filtered.inactive,
        filtered.shadowed
    );
    *all = kept;
    Ok(selection.states())
}

fn resolve_lock(
    recipe: &Recipe,
    src: &RpmSource,
    keys: &Keys,
    inputs: &RpmLockInputs,
    fetcher: &Fetcher,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<RpmLock, RpmBuildError> {
    let mut all: Vec<RpmPackage> = Vec::new();
    progress.message(Stage::Resolve, "reading local RPMs");
    for (loc, path) in local_files(recipe, src)? {
        all.push(package::read_local(
            &path,
            &loc,
            keys.local_check(&path).as_ref(),
        )?);
    }
    let local: Vec<usize> = (0..all.len()).collect();
    let mut modules = ModuleMetadata::default();
    for (i, r) in src.repos.iter().enumerate() {
        check(cancel)?;
        progress.message(Stage::Resolve, &format!("fetching repo {}", r.id));
        let repo_keys = keys
            .repos
            .get(i)
            .and_then(Option::as_deref)
            .filter(|_| r.repo_gpgcheck);
        let data = repomd::load(fetcher, &repo_url(recipe, &r.baseurl), i, repo_keys).map_err(
            |source| RpmBuildError::Repo {
                id: r.id.clone(),
                source,
            },
        )?;
        let pk = filter_repo(r, data.packages);
        tracing::info!("repo {}: {} packages", r.id, pk.len());
        all.extend(pk);
        if let Some(m) = data.modules {
            tracing::info!("repo {}: {} module stream builds", r.id, m.streams.len());
            modules.merge(m);
        }
    }
    check(cancel)?;
    let module_states = apply_modules(src, inputs, &modules, &mut all)?;
    progress.message(Stage::Resolve, "resolving");
    let universe = Universe::new(&all, &inputs.arch);
    let chosen = resolve::resolve(
        &universe,
        &all,
        &Request {
            local,
            packages: src.packages.clone(),
            exclude: src.exclude.clone(),
            arch: inputs.arch.clone(),
            weak_deps: inputs.weak_deps,
        },
    )?;
    // Default timestamp: the newest build time among the chosen packages,
    // which only depends on the package set (not on when the repository
    // metadata was generated).
    let sde = crate::build::env_epoch()
        .unwrap_or_else(|| chosen.iter().map(|p| p.build_time).max().unwrap_or(0));
    Ok(RpmLock {
        lock_version: 1,
        source: "rpm".into(),
        source_date_epoch: sde,
        inputs: inputs.clone(),
        modules: module_states,
        packages: chosen
            .iter()
            .map(|p| RpmLocked {
                name: p.name.clone(),
                epoch: p.evr.epoch,
                version: p.evr.version.clone(),
                release: p.evr.release.clone(),
                arch: p.arch.clone(),
                sha256: p.sha256.clone(),
                size: p.size,
                location: p.location.clone(),
                repo: match p.origin {
                    Origin::Repo(i) => src.repos.get(i).map(|r| r.id.clone()),
                    Origin::Local(_) => None,
                },
            })
            .collect(),
    })
}

/// Builds the RPM source of `recipe` into `root`.
#[allow(clippy::too_many_arguments)]
pub fn build(
    recipe: &Recipe,
    src: &RpmSource,
    home: &Path,
    update: bool,
    root: &Path,
    progress: &dyn Progress,
    cancel: &AtomicBool,
    fetcher: &Fetcher,
) -> Result<RpmBuilt, RpmBuildError> {
    let inputs = RpmLockInputs {
        repos: src.repos.iter().map(|r| r.id.clone()).collect(),
        files: src.files.clone(),
        packages: src.packages.clone(),
        exclude: src.exclude.clone(),
        arch: recipe.image.arch.clone(),
        weak_deps: src.weak_deps,
        // Where a URL depends on the version, so does the lock.
        releasever: src
            .repos
            .iter()
            .any(|r| r.baseurl.contains("$releasever"))
            .then(|| recipe.image.version.clone()),
        repo_exclude: src
            .repos
            .iter()
            .filter(|r| !r.exclude.is_empty())
            .map(|r| (r.id.clone(), r.exclude.clone()))
            .collect(),
        modules: src.modules.clone(),
        disable_modules: src.disable_modules.clone(),
        module_platform_id: src.module_platform_id.clone(),
        module_hotfixes: src
            .repos
            .iter()
            .filter(|r| r.module_hotfixes)
            .map(|r| r.id.clone())
            .collect(),
    };
    let lock_path = recipe.lock_path();
    let keys = Keys::load(recipe, src)?;
    let existing = if update {
        None
    } else {
        RpmLock::read(&lock_path)?
    };
    let t0 = std::time::Instant::now();
    progress.begin(Stage::Resolve, None);
    let lock = match &existing {
        Some(l) if l.inputs == inputs => l.clone(),
        Some(l) => {
            return Err(RpmBuildError::LockOutdated {
                path: lock_path,
                changes: crate::lock::changed_inputs(&l.inputs, &inputs),
            });
        }
        None => resolve_lock(recipe, src, &keys, &inputs, fetcher, progress, cancel)?,
    };
    progress.end(Stage::Resolve);
    tracing::info!(
        "resolved {} RPMs in {:.2?}",
        lock.packages.len(),
        t0.elapsed()
    );
    check(cancel)?;

    // Repository packages go through the sha256-keyed cache; local files
    // are used in place (their hash is checked again before unpacking,
    // and their signature where the recipe asks for one).
    let mut wanted = Vec::new();
    let mut files: Vec<RpmFile> = Vec::new();
    let mut from_cache = Vec::new();
    let mut local_listed: Option<BTreeSet<String>> = None;
    for p in &lock.packages {
        match &p.repo {
            Some(id) => {
                let (index, repo) = src
                    .repos
                    .iter()
                    .enumerate()
                    .find(|(_, r)| r.id == *id)
                    .ok_or_else(|| RpmBuildError::UnknownRepo {
                        path: lock_path.clone(),
                        package: p.name.clone(),
                        repo: id.clone(),
                    })?;
                let gpgcheck = keys
                    .repos
                    .get(index)
                    .and_then(Option::as_ref)
                    .filter(|_| repo.gpgcheck())
                    .map(|k| GpgCheck {
                        keys: k.clone(),
                        package: format!(
                            "package {}-{}.{} from repo {id}",
                            p.name,
                            p.evr(),
                            p.arch
                        ),
                    });
                wanted.push(Wanted {
                    url: format!("{}/{}", repo_url(recipe, &repo.baseurl), p.location),
                    sha256: p.sha256.clone(),
                    size: p.size,
                });
                from_cache.push(files.len());
                files.push(RpmFile {
                    name: p.name.clone(),
                    sha256: p.sha256.clone(),
                    expect: expected(p),
                    path: PathBuf::new(),
                    gpgcheck,
                });
            }
            None => {
                // Only a file the recipe's `files` match: an edited lock
                // must not bring in another file (and with it, no
                // signature check the recipe asks for).
                let listed = match &local_listed {
                    Some(l) => l,
                    None => local_listed.insert(
                        local_files(recipe, src)?
                            .into_iter()
                            .map(|(loc, _)| loc)
                            .collect::<BTreeSet<String>>(),
                    ),
                };
                if !listed.contains(&p.location) {
                    return Err(RpmBuildError::LockLocal {
                        path: lock_path.clone(),
                        package: p.name.clone(),
                        location: p.location.clone(),
                    });
                }
                let path = recipe.host_path(Path::new(&p.location));
                files.push(RpmFile {
                    name: p.name.clone(),
                    sha256: p.sha256.clone(),
                    expect: expected(p),
                    gpgcheck: keys.local_check(&path),
                    path,
                })
            }
        }
    }
    let cache = Cache::new(home);
    let from_lock = existing.as_ref() == Some(&lock);
    let named_by = from_lock.then_some(lock_path.as_path());
    let paths = cache.ensure(fetcher, &wanted, progress, cancel, named_by)?;
    for (i, path) in from_cache.into_iter().zip(paths) {
        files[i].path = path;
    }
    check(cancel)?;
    // Scratch space for the rpm database step, on the package cache's file
    // system (copies there can be hard links).
    let scratch = home.join("tmp");
    std::fs::create_dir_all(&scratch).map_err(|source| {
        RpmBuildError::Install(InstallError::Io {
            path: scratch.clone(),
            source,
        })
    })?;
    let report = install::install(root, &files, lock.source_date_epoch, &scratch, progress)?;
    modular::write_states(root, &lock.modules).map_err(|source| {
        RpmBuildError::Install(InstallError::Io {
            path: root.join("etc/dnf/modules.d"),
            source,
        })
    })?;

    let mut metadata = BTreeMap::new();
    let join = |v: &[String]| v.join("\n");
    if !report.ran.is_empty() {
        metadata.insert("vnfs.rpm.scriptlets_ran".to_string(), join(&report.ran));
    }
    if !report.skipped.is_empty() {
        metadata.insert(
            "vnfs.rpm.scriptlets_skipped".to_string(),
            join(&report.skipped),
        );
    }
    let mut warnings = report.warnings.clone();
    // The Debian path refuses an unsigned archive; RPM repositories and
    // local files that no signature covers are allowed (many local
    // mirrors and site packages are unsigned), but it is said on every
    // build and recorded with the image.
    let mut unverified: Vec<String> = src
        .repos
        .iter()
        .filter(|r| !r.verified())
        .map(|r| format!(
            "repository {} is not verified: neither gpgcheck (package signatures) nor repo_gpgcheck (a signed repomd.xml) applies, so its packages are only checked against its own metadata",
            r.id
        ))
        .collect();
    if !src.files.is_empty() && src.gpgkey.is_none() {
        unverified.push(
            "local RPM files are not verified: [source.rpm] has no gpgkey, so their signatures are not checked, only the digests inside each file".to_string(),
        );
    }
    for w in unverified {
        tracing::warn!("{w}");
        warnings.push(w);
    }
    if !warnings.is_empty() {
        metadata.insert("vnfs.rpm.warnings".to_string(), join(&warnings));
    }
    metadata.insert("vnfs.rpm.database".to_string(), report.database.clone());
    if !lock.modules.is_empty() {
        let states: Vec<String> = lock
            .modules
            .iter()
            .map(|m| match m.stream.as_str() {
                "" => format!("{} {}", m.name, m.state),
                s => format!("{}:{s} {}", m.name, m.state),
            })
            .collect();
        metadata.insert("vnfs.rpm.modules".to_string(), join(&states));
    }
    if let Some(lua) = &report.lua {
        metadata.insert("vnfs.rpm.lua".to_string(), lua.clone());
    }
    let text = lock.to_text()?;
    let lock_changed = existing.as_ref() != Some(&lock);
    Ok(RpmBuilt {
        packages: lock
            .packages
            .iter()
            .map(|p| LockedPackage {
                name: p.name.clone(),
                version: p.evr(),
                arch: p.arch.clone(),
                sha256: p.sha256.clone(),
                size: p.size,
                path: p.location.clone(),
                suite: p.repo.clone().unwrap_or_else(|| "local".into()),
            })
            .collect(),
        source_date_epoch: lock.source_date_epoch,
        lock_text: text,
        lock_changed,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_urls_take_dnfs_variables_and_recipe_relative_paths() {
        let r = Recipe::parse(
            "[image]\nos = \"rocky\"\nversion = \"9\"\nrelease = \"1\"\narch = \"aarch64\"\n\n[source.rpm]\npackages = [\"bash\"]\n\n[[source.rpm.repo]]\nid = \"b\"\nbaseurl = \"x\"\n",
            Path::new("/srv/recipes/r.toml"),
        )
        .unwrap();
        assert_eq!(
            repo_url(
                &r,
                "https://m.example/rocky/$releasever/BaseOS/$basearch/os/"
            ),
            "https://m.example/rocky/9/BaseOS/aarch64/os"
        );
        assert_eq!(repo_url(&r, "repos/base"), "file:///srv/recipes/repos/base");
    }
}
