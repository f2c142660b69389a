//! Lock files (`<recipe>.lock`): the exact packages a build installed and
//! the SOURCE_DATE_EPOCH it used. A later build installs exactly this set
//! unless asked to `--update`. No mirror host is recorded: package paths
//! are relative to the archive root, which comes from the recipe or the
//! machine's apt sources at build time.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One locked package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPackage {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// Architecture (`amd64`, `all`, ...).
    pub arch: String,
    /// sha256 of the `.deb`.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Pool path relative to the archive root.
    pub path: String,
    /// The suite it was found in (selects the archive root).
    pub suite: String,
}

/// What the lock was resolved for; a recipe asking for something else
/// needs `--update`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockInputs {
    /// Suites in order.
    pub suites: Vec<String>,
    /// Components.
    pub components: Vec<String>,
    /// Variant name.
    pub variant: String,
    /// Requested packages.
    pub packages: Vec<String>,
    /// Excluded packages.
    pub exclude: Vec<String>,
    /// Debian architecture.
    pub arch: String,
}

/// A lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    /// Format version (1).
    pub lock_version: u32,
    /// Timestamp every file is clamped to.
    pub source_date_epoch: i64,
    /// What was resolved.
    pub inputs: LockInputs,
    /// Every installed package, sorted by name.
    #[serde(rename = "package")]
    pub packages: Vec<LockedPackage>,
}

/// A lock file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The content is not a valid lock.
    #[error("{path}: {message}")]
    Invalid {
        /// The lock file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Which inputs of a lock differ from what the recipe now asks for, for
/// the error that says the lock is outdated: `name: old -> new` per field.
pub fn changed_inputs<T: Serialize>(locked: &T, wanted: &T) -> String {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(locked), serde_json::to_value(wanted))
    else {
        return "inputs differ".into();
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let show = |v: Option<&serde_json::Value>| match v {
        None | Some(serde_json::Value::Null) => "(none)".to_string(),
        Some(v) => v.to_string(),
    };
    let changed: Vec<String> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}: {} -> {}", show(a.get(k)), show(b.get(k))))
        .collect();
    if changed.is_empty() {
        "inputs differ".into()
    } else {
        changed.join("; ")
    }
}

impl Lock {
    /// Reads a lock file, or `None` if it does not exist.
    pub fn read(path: &Path) -> Result<Option<Lock>, LockError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(LockError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let lock: Lock = toml::from_str(&text).map_err(|e| LockError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if lock.lock_version != 1 {
            return Err(LockError::Invalid {
                path: path.to_path_buf(),
                message: format!("unsupported lock_version {}", lock.lock_version),
            });
        }
        for p in &lock.packages {
            let why = if p.sha256.len() != 64 || !p.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                "its sha256 is not 64 hex digits"
            } else if p.path.starts_with('/') || p.path.split('/').any(|c| c == "..") {
                "its path must be relative to the mirror, without `..`"
            } else {
                continue;
            };
            return Err(LockError::Invalid {
                path: path.to_path_buf(),
                message: format!("bad entry for package {}: {why}", p.name),
            });
        }
        Ok(Some(lock))
    }

    /// The canonical text of the lock.
    pub fn to_text(&self) -> Result<String, LockError> {
        let body = toml::to_string(self).map_err(|e| LockError::Invalid {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        Ok(format!(
            "# Written by `vnfs build`. Builds install exactly these packages;\n# `vnfs build --update` resolves again.\n{body}"
        ))
    }

    /// Writes the lock atomically (temporary file, fsync, rename).
    pub fn write(&self, path: &Path) -> Result<(), LockError> {
        write_text(path, &self.to_text()?)
    }
}

/// Writes a lock's text atomically (temporary file, fsync, rename), so a
/// crash leaves the old lock or the new one, never half of either.
pub fn write_text(path: &Path, text: &str) -> Result<(), LockError> {
    let io = |source| LockError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_inputs_names_each_difference() {
        let a = LockInputs {
            suites: vec!["bookworm".into()],
            components: vec!["main".into()],
            variant: "minbase".into(),
            packages: vec!["less".into()],
            exclude: vec![],
            arch: "amd64".into(),
        };
        let mut b = a.clone();
        b.packages.push("vim-tiny".into());
        b.variant = "important".into();
        assert_eq!(
            changed_inputs(&a, &b),
            r#"packages: ["less"] -> ["less","vim-tiny"]; variant: "minbase" -> "important""#
        );
        assert_eq!(changed_inputs(&a, &a), "inputs differ");
    }

    #[test]
    fn round_trip_and_validation() {
        let lock = Lock {
            lock_version: 1,
            source_date_epoch: 1_700_000_000,
            inputs: LockInputs {
                suites: vec!["bookworm".into()],
                components: vec!["main".into()],
                variant: "minbase".into(),
                packages: vec![],
                exclude: vec![],
                arch: "amd64".into(),
            },
            packages: vec![LockedPackage {
                name: "dash".into(),
                version: "0.5.12-2".into(),
                arch: "amd64".into(),
                sha256: "a".repeat(64),
                size: 1,
                path: "pool/main/d/dash/dash_0.5.12-2_amd64.deb".into(),
                suite: "bookworm".into(),
            }],
        };
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.toml.lock");
        lock.write(&p).unwrap();
        assert_eq!(Lock::read(&p).unwrap().unwrap(), lock);
        let bad = std::fs::read_to_string(&p)
            .unwrap()
            .replace("pool/main", "../main");
        std::fs::write(&p, bad).unwrap();
        let e = Lock::read(&p).unwrap_err().to_string();
        assert!(
            e.contains("bad entry for package dash: its path must be relative"),
            "{e}"
        );
        assert!(Lock::read(&dir.path().join("none")).unwrap().is_none());
    }
}
