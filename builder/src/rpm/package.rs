//! What the resolver knows about one RPM: identity, where to get it and its
//! dependency data. Built from a repository's primary.xml or from a local
//! file's header.

use std::path::{Path, PathBuf};

use super::pkgfile;
use super::signature::{GpgCheck, GpgCheckError, PackageSigError};
use super::version::{Dep, Evr, Op};

/// Where a package comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Repository number `n` of the recipe; `location` is relative to its
    /// base URL.
    Repo(usize),
    /// A local file named by the recipe.
    Local(PathBuf),
}

/// One package version.
#[derive(Debug, Clone)]
pub struct RpmPackage {
    /// Name.
    pub name: String,
    /// Epoch, version, release.
    pub evr: Evr,
    /// Architecture (`x86_64`, `noarch`, ...).
    pub arch: String,
    /// sha256 of the package file (lower-case hex).
    pub sha256: String,
    /// Size of the package file.
    pub size: u64,
    /// Path relative to the repository root (repo packages) or the file
    /// name (local packages).
    pub location: String,
    /// Which source it is in.
    pub origin: Origin,
    /// Build time (Unix seconds), for the default SOURCE_DATE_EPOCH.
    pub build_time: i64,
    /// Provides, including the implicit `name = evr`.
    pub provides: Vec<Dep>,
    /// Requires (rpmlib() ones dropped); rich dependencies kept as written.
    pub requires: Vec<Dep>,
    /// Conflicts.
    pub conflicts: Vec<Dep>,
    /// Obsoletes: packages (by name and range) this one replaces.
    pub obsoletes: Vec<Dep>,
    /// Recommends (weak dependencies); rich ones kept as written.
    pub recommends: Vec<Dep>,
    /// Supplements (reverse weak dependencies: this package wants to come
    /// in when these are installed); rich ones kept as written.
    pub supplements: Vec<Dep>,
    /// Files the index lists (all of them for local packages; primary.xml
    /// only lists `/etc/*`, `*bin/*` and `/usr/lib/sendmail`).
    pub files: Vec<String>,
}

impl RpmPackage {
    /// `name-[epoch:]version-release.arch`.
    pub fn nevra(&self) -> String {
        format!("{}-{}.{}", self.name, self.evr, self.arch)
    }

    /// Whether this package satisfies `req` by a Provides or a file it ships.
    pub fn satisfies(&self, req: &Dep) -> bool {
        if req.name.starts_with('/') && self.files.contains(&req.name) {
            return true;
        }
        self.provides.iter().any(|p| p.provides(req))
    }

    /// Whether this package obsoletes `other` (an Obsoletes entry naming
    /// it, with a range its version falls in).
    pub fn obsoletes(&self, other: &RpmPackage) -> bool {
        let them = Dep {
            name: other.name.clone(),
            range: Some((Op::Eq, other.evr.clone())),
        };
        self.name != other.name && self.obsoletes.iter().any(|o| them.provides(o))
    }

    /// Adds `name = evr` when the index did not list it (rpm always
    /// provides it).
    pub fn add_self_provide(&mut self) {
        let me = Dep {
            name: self.name.clone(),
            range: Some((Op::Eq, self.evr.clone())),
        };
        if !self
            .provides
            .iter()
            .any(|p| p.name == self.name && p.range.is_some())
        {
            self.provides.push(me);
        }
    }
}

/// A local RPM that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// Unreadable, or not a usable binary RPM.
    #[error("{path}: {message}")]
    Unusable {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// It fails the recipe's signature check.
    #[error(transparent)]
    Signature(#[from] PackageSigError),
}

/// Whether a Requires entry is rpm's own business, not a package's:
/// `rpmlib(...)` features, `config(...)` (self-provided), and built-in
/// scriptlet interpreters such as `<lua>`.
pub fn is_internal(name: &str) -> bool {
    name.starts_with("rpmlib(") || name.starts_with("config(") || name.starts_with('<')
}

fn deps(list: Vec<::rpm::Dependency>, what: &str) -> Result<Vec<Dep>, String> {
    list.into_iter()
        .filter(|d| !is_internal(&d.name) && !d.flags.contains(::rpm::DependencyFlags::RPMLIB))
        .map(|d| {
            let range = match Op::from_sense(d.flags.bits()) {
                Some(op) if !d.version.is_empty() => Some((
                    op,
                    Evr::parse(&d.version).map_err(|m| format!("{what} {}: {m}", d.name))?,
                )),
                _ => None,
            };
            Ok(Dep {
                name: d.name,
                range,
            })
        })
        .collect()
}

/// Builds the resolver's view of a package from its header.
pub fn from_metadata(
    m: &::rpm::PackageMetadata,
    sha256: String,
    size: u64,
    location: &str,
    origin: Origin,
) -> Result<RpmPackage, String> {
    if m.is_source_package() {
        return Err("is a source RPM".into());
    }
    let field = |r: Result<&str, ::rpm::Error>, what: &str| {
        r.map(str::to_string).map_err(|e| format!("no {what}: {e}"))
    };
    let list = |r: Result<Vec<::rpm::Dependency>, ::rpm::Error>, what: &str| {
        r.map_err(|e| format!("{what}: {e}"))
            .and_then(|l| deps(l, what))
    };
    let mut p = RpmPackage {
        name: field(m.get_name(), "name")?,
        evr: Evr {
            epoch: m.get_epoch().unwrap_or(0),
            version: field(m.get_version(), "version")?,
            release: field(m.get_release(), "release")?,
        },
        arch: field(m.get_arch(), "arch")?,
        sha256,
        size,
        location: location.to_string(),
        origin,
        build_time: m.get_build_time().map_or(0, |t| t as i64),
        provides: list(m.get_provides(), "Provides")?,
        requires: list(m.get_requires(), "Requires")?,
        conflicts: list(m.get_conflicts(), "Conflicts")?,
        obsoletes: list(m.get_obsoletes(), "Obsoletes")?,
        recommends: list(m.get_recommends(), "Recommends")?,
        supplements: list(m.get_supplements(), "Supplements")?,
        files: m
            .get_file_paths()
            .map_err(|e| format!("file list: {e}"))?
            .into_iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect(),
    };
    p.add_self_provide();
    Ok(p)
}

/// Reads a local RPM's header (and checks its internal digests, or its
/// signature) for the resolver. `location` is how the recipe names the file. With `check`,
/// its signature is verified first, so an unsigned or altered file is
/// refused as such before anything else reads it.
pub fn read_local(
    path: &Path,
    location: &str,
    check: Option<&GpgCheck>,
) -> Result<RpmPackage, LocalError> {
    let err = |message: String| LocalError::Unusable {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let size = file.metadata().map_err(|e| err(e.to_string()))?.len();
    // Read once, in bounded memory: the payload is hashed, never kept.
    let scan = pkgfile::scan(pkgfile::At::new(&file, 0), size).map_err(|e| err(e.to_string()))?;
    // A verified signature covers the header and, through its payload
    // digest, the payload; without one, the package's own digests must hold.
    match check {
        Some(c) => c.verify(&scan, &file).map_err(|e| match e {
            GpgCheckError::Signature(s) => s.into(),
            GpgCheckError::Read(m) => err(m),
        })?,
        None => scan
            .check_digests()
            .map_err(|e| err(format!("digest check failed: {e}")))?,
    }
    let metadata = ::rpm::PackageMetadata::parse(&mut &scan.head[..])
        .map_err(|e| err(format!("not a readable RPM: {e}")))?;
    from_metadata(
        &metadata,
        scan.sha256,
        scan.size,
        location,
        Origin::Local(path.to_path_buf()),
    )
    .map_err(err)
}
