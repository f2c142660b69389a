//! Provisioning modules. A module is a directory:
//!
//! ```text
//! module.toml        name, description, default_states, order, payloads
//! scripts/STATE.sh   the node-side shell for provisionary state STATE
//! config/...         default configuration, copied (never over existing
//!                    files) into CONFDIR/modules/NAME on import
//! ```
//!
//! Payloads are data the master puts into the nodescript as shell variables:
//! `master_file` copies a file of the master (masterauth's /etc/passwd),
//! `layered` concatenates the `all`, `group/G`, `vnfs/V` and `node/N`
//! fragments of the module's configuration directory, in that order (the
//! passwdfile model of Perceus).
//!
//! The built-in modules (hostname, masterauth, passwdfile, groupfile, ipaddr,
//! modprobe, syncnodes) are compiled in; an imported module of the same name
//! takes precedence. Imported modules live in HOME/modules/NAME.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, io};
use crate::state::validate_state_name;

/// `module.toml`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Module name (also its directory name once imported).
    pub name: String,
    /// One-line description.
    #[serde(default)]
    pub description: String,
    /// States used by `module activate MOD` without states.
    #[serde(default)]
    pub default_states: Vec<String>,
    /// Position in the nodescript (lower first; ties by name).
    #[serde(default = "default_order")]
    pub order: i32,
    /// Data from the master passed to the scripts.
    #[serde(default)]
    pub payload: Vec<Payload>,
}

fn default_order() -> i32 {
    50
}

/// One payload variable.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    /// Shell variable name (`VNFS_PASSWD`).
    pub var: String,
    /// A file on the master, copied verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_file: Option<String>,
    /// A directory inside the module's configuration directory ("" for the
    /// directory itself) holding `all`, `group/G`, `vnfs/V`, `node/N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layered: Option<String>,
}

/// Where a module comes from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Origin {
    /// Compiled into vnfs.
    Builtin,
    /// Imported into the home directory.
    Imported(PathBuf),
}

/// A loaded, validated module.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Module {
    /// Its manifest.
    pub manifest: Manifest,
    /// Node-side script per base state.
    pub scripts: BTreeMap<String, String>,
    /// Default configuration files (relative path → contents).
    pub config: BTreeMap<String, Vec<u8>>,
    /// Where it was loaded from.
    pub origin: Origin,
}

/// Biggest module (all files together) accepted from a .pmod.
const MAX_MODULE_BYTES: u64 = 16 << 20;
/// Most files accepted from a .pmod.
const MAX_MODULE_FILES: usize = 1000;

fn merr(module: &str, reason: impl Into<String>) -> Error {
    Error::Module {
        module: module.to_string(),
        reason: reason.into(),
    }
}

/// Checks a module name: a lower-case word usable as a directory name.
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(merr(
            name,
            "a module name is a lower-case word (letters, digits, '_', '-')",
        ));
    }
    Ok(())
}

impl Module {
    /// Builds a module from its files (relative path → bytes) and validates it.
    pub fn from_files(
        label: &str,
        files: BTreeMap<String, Vec<u8>>,
        origin: Origin,
    ) -> Result<Module> {
        let toml_bytes = files
            .get("module.toml")
            .ok_or_else(|| merr(label, "no module.toml"))?;
        let toml_text =
            std::str::from_utf8(toml_bytes).map_err(|_| merr(label, "module.toml is not UTF-8"))?;
        let manifest: Manifest =
            toml::from_str(toml_text).map_err(|e| merr(label, format!("module.toml: {e}")))?;
        validate_name(&manifest.name)?;
        let name = manifest.name.clone();
        for s in &manifest.default_states {
            crate::state::StateSpec::parse(s)
                .map_err(|e| merr(&name, format!("default_states: {e}")))?;
        }
        for p in &manifest.payload {
            let ok_var = p.var.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
                && p.var
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if !ok_var || p.var.starts_with("NODE_") || p.var.starts_with("MASTER_") {
                return Err(merr(
                    &name,
                    format!(
                        "payload variable '{}' must be upper case and not start with NODE_ or MASTER_",
                        p.var
                    ),
                ));
            }
            match (&p.master_file, &p.layered) {
                (Some(f), None) if Path::new(f).is_absolute() => {}
                (Some(f), None) => {
                    return Err(merr(
                        &name,
                        format!("payload {}: master_file '{f}' must be absolute", p.var),
                    ));
                }
                (None, Some(l)) if safe_rel(l) || l.is_empty() => {}
                (None, Some(l)) => {
                    return Err(merr(
                        &name,
                        format!(
                            "payload {}: layered '{l}' must be a relative path without '..'",
                            p.var
                        ),
                    ));
                }
                _ => {
                    return Err(merr(
                        &name,
                        format!(
                            "payload {} needs exactly one of master_file and layered",
                            p.var
                        ),
                    ));
                }
            }
        }
        let mut scripts = BTreeMap::new();
        let mut config = BTreeMap::new();
        for (path, bytes) in files {
            if path == "module.toml" {
                continue;
            }
            if let Some(s) = path.strip_prefix("scripts/") {
                let state = s.strip_suffix(".sh").ok_or_else(|| {
                    merr(&name, format!("{path}: scripts are named scripts/STATE.sh"))
                })?;
                validate_state_name(state).map_err(|e| merr(&name, format!("{path}: {e}")))?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| merr(&name, format!("{path} is not UTF-8")))?;
                scripts.insert(state.to_string(), text);
            } else if let Some(c) = path.strip_prefix("config/") {
                config.insert(c.to_string(), bytes);
            } else {
                return Err(merr(
                    &name,
                    format!("unexpected file '{path}' (expected module.toml, scripts/, config/)"),
                ));
            }
        }
        if scripts.is_empty() {
            return Err(merr(&name, "no scripts/STATE.sh"));
        }
        for s in &manifest.default_states {
            let base = s.split('/').next().unwrap_or_default();
            if !scripts.contains_key(base) {
                return Err(merr(
                    &name,
                    format!("default state {s} has no scripts/{base}.sh"),
                ));
            }
        }
        Ok(Module {
            manifest,
            scripts,
            config,
            origin,
        })
    }

    /// Loads a module directory.
    pub fn load_dir(dir: &Path) -> Result<Module> {
        let label = dir.display().to_string();
        let files = read_tree(dir, &label)?;
        Module::from_files(&label, files, Origin::Imported(dir.to_path_buf()))
            .map_err(|e| name_file(e, &label))
    }

    /// The module's name.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// The module as its files, for packing or installing.
    pub fn files(&self) -> Result<BTreeMap<String, Vec<u8>>> {
        let mut out = BTreeMap::new();
        let toml = toml::to_string(&self.manifest).map_err(|e| merr(self.name(), e.to_string()))?;
        out.insert("module.toml".to_string(), toml.into_bytes());
        for (s, text) in &self.scripts {
            out.insert(format!("scripts/{s}.sh"), text.clone().into_bytes());
        }
        for (c, b) in &self.config {
            out.insert(format!("config/{c}"), b.clone());
        }
        Ok(out)
    }
}

/// A relative path of normal components only.
fn safe_rel(p: &str) -> bool {
    !p.is_empty()
        && Path::new(p)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// Reads every regular file below `dir` (no symlinks followed).
fn read_tree(dir: &Path, label: &str) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    let mut total = 0u64;
    while let Some(rel) = stack.pop() {
        let abs = dir.join(&rel);
        for entry in std::fs::read_dir(&abs).map_err(io(&abs))? {
            let entry = entry.map_err(io(&abs))?;
            let ft = entry.file_type().map_err(io(entry.path()))?;
            let r = rel.join(entry.file_name());
            let rs = r
                .to_str()
                .ok_or_else(|| merr(label, format!("{} is not a UTF-8 path", r.display())))?
                .to_string();
            if ft.is_dir() {
                stack.push(r);
            } else if ft.is_file() {
                let bytes = std::fs::read(entry.path()).map_err(io(entry.path()))?;
                total += bytes.len() as u64;
                if total > MAX_MODULE_BYTES || out.len() >= MAX_MODULE_FILES {
                    return Err(merr(label, "module is too big"));
                }
                out.insert(rs, bytes);
            } else {
                return Err(merr(
                    label,
                    format!("{rs} is not a regular file or directory"),
                ));
            }
        }
    }
    Ok(out)
}

/// Packs a module directory into a `.pmod`: a gzip-compressed tar of the
/// module's files at the archive root, sorted, with zeroed times and owners,
/// so the same module always packs to the same bytes.
pub fn pack(module: &Module, out: &Path) -> Result<()> {
    let files = module.files()?;
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::best(),
    ));
    let mut dirs = std::collections::BTreeSet::new();
    for path in files.keys() {
        let mut p = Path::new(path).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(d.to_path_buf());
            p = d.parent();
        }
    }
    let ioe = |e| io(out)(e);
    for d in &dirs {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(0);
        tar.append_data(&mut h, d, std::io::empty()).map_err(ioe)?;
    }
    for (path, bytes) in &files {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(bytes.len() as u64);
        h.set_mtime(0);
        tar.append_data(&mut h, path, bytes.as_slice())
            .map_err(ioe)?;
    }
    let gz = tar.into_inner().map_err(ioe)?;
    let bytes = gz.finish().map_err(ioe)?;
    crate::fsutil::write_atomic(out, &bytes)
}

/// Reads a `.pmod` into memory and validates it. Only regular files and
/// directories with plain relative paths are accepted; anything else (links,
/// devices, `..`, absolute paths, oversized archives) is an error, so a
/// hostile archive cannot write outside the module directory.
pub fn read_pmod(path: &Path) -> Result<Module> {
    let label = path.display().to_string();
    let f = std::fs::File::open(path).map_err(io(path))?;
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let corrupt = |e: std::io::Error| {
        merr(
            &label,
            format!("not a readable .pmod (gzip-compressed tar): {e}"),
        )
    };
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    for entry in ar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let p = entry.path().map_err(corrupt)?.into_owned();
        let ps = p
            .to_str()
            .ok_or_else(|| merr(&label, format!("{} is not a UTF-8 path", p.display())))?
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                if !ps.is_empty() && ps != "." && !safe_rel(&ps) {
                    return Err(merr(&label, format!("unsafe path '{ps}' in archive")));
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if !safe_rel(&ps) {
                    return Err(merr(&label, format!("unsafe path '{ps}' in archive")));
                }
                total += entry.size();
                if total > MAX_MODULE_BYTES || files.len() >= MAX_MODULE_FILES {
                    return Err(merr(&label, "archive is too big"));
                }
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut bytes).map_err(corrupt)?;
                files.insert(ps, bytes);
            }
            other => {
                return Err(merr(
                    &label,
                    format!("'{ps}' is a {other:?} entry; only files and directories are allowed"),
                ));
            }
        }
    }
    if files.is_empty() {
        return Err(merr(&label, "empty archive"));
    }
    // Accept archives that wrap everything in one top directory (NAME/...).
    if !files.contains_key("module.toml") {
        let tops: std::collections::BTreeSet<&str> = files
            .keys()
            .filter_map(|k| k.split_once('/').map(|(t, _)| t))
            .collect();
        if tops.len() == 1 {
            let top = tops.into_iter().next().unwrap_or_default().to_string();
            files = files
                .into_iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix(&format!("{top}/"))
                        .map(|r| (r.to_string(), v))
                })
                .collect();
        }
    }
    Module::from_files(&label, files, Origin::Imported(path.to_path_buf()))
        .map_err(|e| name_file(e, &label))
}

/// Adds the archive's file name to errors that only name the module.
fn name_file(e: Error, label: &str) -> Error {
    match e {
        Error::Module { module, reason } if module != label => Error::Module {
            module: format!("{module} ({label})"),
            reason,
        },
        e => e,
    }
}

/// The module collection: built-in modules plus those imported into
/// `HOME/modules`, and the configuration directory `CONFDIR/modules`.
#[derive(Clone, Debug)]
pub struct ModuleStore {
    /// HOME/modules: imported modules.
    pub dir: PathBuf,
    /// CONFDIR/modules: per-module configuration directories.
    pub config_dir: PathBuf,
}

impl ModuleStore {
    /// The module store for a home and configuration directory.
    pub fn new(home: &Path, confdir: &Path) -> ModuleStore {
        ModuleStore {
            dir: home.join("modules"),
            config_dir: confdir.join("modules"),
        }
    }

    /// Every module, by name (imported ones shadow built-ins).
    pub fn list(&self) -> Result<BTreeMap<String, Module>> {
        let mut out: BTreeMap<String, Module> = crate::builtin::modules()?
            .into_iter()
            .map(|m| (m.name().to_string(), m))
            .collect();
        if self.dir.is_dir() {
            for e in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
                let e = e.map_err(io(&self.dir))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || !e.path().is_dir() {
                    continue;
                }
                let m = Module::load_dir(&e.path())?;
                if m.name() != name {
                    return Err(merr(
                        &name,
                        format!("{} declares name '{}'", e.path().display(), m.name()),
                    ));
                }
                out.insert(name, m);
            }
        }
        Ok(out)
    }

    /// One module by name.
    pub fn get(&self, name: &str) -> Result<Module> {
        validate_name(name)?;
        self.list()?
            .remove(name)
            .ok_or_else(|| merr(name, "no such module (see `vnfs module list`)"))
    }

    /// The configuration directory of a module.
    pub fn config_of(&self, name: &str) -> PathBuf {
        self.config_dir.join(name)
    }

    /// Imports a `.pmod` file or a module directory: installs it as
    /// HOME/modules/NAME (replacing an older copy in one rename) and copies
    /// its default configuration where none exists yet.
    pub fn import(&self, src: &Path) -> Result<Module> {
        let module = if src.is_dir() {
            Module::load_dir(src)?
        } else {
            read_pmod(src)?
        };
        let name = module.name().to_string();
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let staging = tempfile::Builder::new()
            .prefix(".import-")
            .tempdir_in(&self.dir)
            .map_err(io(&self.dir))?;
        for (rel, bytes) in module.files()? {
            let p = staging.path().join(&rel);
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d).map_err(io(d))?;
            }
            std::fs::write(&p, bytes).map_err(io(&p))?;
        }
        let dest = self.dir.join(&name);
        let old = self.dir.join(format!(".old-{name}"));
        if dest.exists() {
            let _ = std::fs::remove_dir_all(&old);
            std::fs::rename(&dest, &old).map_err(io(&dest))?;
        }
        let staged = staging.keep();
        if let Err(e) = std::fs::rename(&staged, &dest) {
            // Put the previous version back rather than leave none.
            let _ = std::fs::rename(&old, &dest);
            let _ = std::fs::remove_dir_all(&staged);
            return Err(io(&dest)(e));
        }
        let _ = std::fs::remove_dir_all(&old);
        let cfg = self.config_of(&name);
        for (rel, bytes) in &module.config {
            let p = cfg.join(rel);
            if p.exists() {
                continue;
            }
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d).map_err(io(d))?;
            }
            std::fs::write(&p, bytes).map_err(io(&p))?;
        }
        Module::load_dir(&dest)
    }
}
