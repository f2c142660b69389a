//! The lock file of an RPM recipe (`<recipe>.lock`): every installed
//! package's name, epoch, version, release, arch, sha256, size, location
//! and repository id, and the SOURCE_DATE_EPOCH used. As for Debian, no
//! repository URL is recorded: locations are relative to the `baseurl` the
//! recipe gives at build time.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::lock::LockError;

/// One locked package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpmLocked {
    /// Name.
    pub name: String,
    /// Epoch (0 when the package has none).
    pub epoch: u32,
    /// Version.
    pub version: String,
    /// Release.
    pub release: String,
    /// Architecture.
    pub arch: String,
    /// sha256 of the package file.
    pub sha256: String,
    /// Its size.
    pub size: u64,
    /// Path relative to the repository root, or the local file as the
    /// recipe's `files` matched it.
    pub location: String,
    /// Repository id; absent for local files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
}

impl RpmLocked {
    /// `[epoch:]version-release`.
    pub fn evr(&self) -> String {
        if self.epoch == 0 {
            format!("{}-{}", self.version, self.release)
        } else {
            format!("{}:{}-{}", self.epoch, self.version, self.release)
        }
    }
}

/// What the lock was resolved for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpmLockInputs {
    /// Repository ids in order.
    pub repos: Vec<String>,
    /// Local file globs.
    pub files: Vec<String>,
    /// Requested packages.
    pub packages: Vec<String>,
    /// Excluded packages.
    pub exclude: Vec<String>,
    /// Architecture.
    pub arch: String,
    /// Weak dependencies installed too (absent, and false, in locks made
    /// before the option existed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub weak_deps: bool,
    /// The image version, when a repository's `baseurl` uses
    /// `$releasever` (absent otherwise, and in older locks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub releasever: Option<String>,
    /// Per-repository excludes, by repository id (absent when none).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub repo_exclude: std::collections::BTreeMap<String, Vec<String>>,
    /// Module streams enabled by the recipe (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<String>,
    /// Modules disabled by the recipe (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disable_modules: Vec<String>,
    /// dnf's `module_platform_id`, when the recipe sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_platform_id: Option<String>,
    /// Repositories exempt from modular filtering (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub module_hotfixes: Vec<String>,
}

/// An RPM lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpmLock {
    /// Format version (1).
    pub lock_version: u32,
    /// Always `rpm` (a Debian lock has no such key, so neither parses as
    /// the other).
    pub source: String,
    /// Timestamp every file is clamped to.
    pub source_date_epoch: i64,
    /// What was resolved.
    pub inputs: RpmLockInputs,
    /// Module states dnf would record for the recipe's `modules` and
    /// `disable_modules` (and the streams those needed), written into the
    /// image's `/etc/dnf/modules.d`.
    #[serde(default, rename = "module", skip_serializing_if = "Vec::is_empty")]
    pub modules: Vec<super::modular::ModuleState>,
    /// Every installed package, sorted by name.
    #[serde(rename = "package")]
    pub packages: Vec<RpmLocked>,
}

fn hexok(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl RpmLock {
    /// Reads a lock file, or `None` if it does not exist.
    pub fn read(path: &Path) -> Result<Option<RpmLock>, LockError> {
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
        let invalid = |message: String| LockError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let lock: RpmLock = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if lock.lock_version != 1 || lock.source != "rpm" {
            return Err(invalid(format!(
                "not an RPM lock of version 1 (lock_version {}, source {:?})",
                lock.lock_version, lock.source
            )));
        }
        for p in &lock.packages {
            let bad_loc = p.repo.is_some()
                && (p.location.starts_with('/') || p.location.split('/').any(|c| c == ".."));
            let why = if !hexok(&p.sha256) {
                "its sha256 is not 64 hex digits"
            } else if p.location.is_empty() {
                "it has no location"
            } else if bad_loc {
                "its location must be relative to its repository, without `..`"
            } else {
                continue;
            };
            return Err(invalid(format!("bad entry for package {}: {why}", p.name)));
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
        crate::lock::write_text(path, &self.to_text()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_validation() {
        let lock = RpmLock {
            lock_version: 1,
            source: "rpm".into(),
            source_date_epoch: 1_700_000_000,
            inputs: RpmLockInputs {
                repos: vec!["base".into()],
                files: vec!["rpms/*.rpm".into()],
                packages: vec!["bash".into()],
                exclude: vec![],
                arch: "x86_64".into(),
                weak_deps: false,
                releasever: None,
                repo_exclude: Default::default(),
                modules: vec![],
                disable_modules: vec![],
                module_platform_id: None,
                module_hotfixes: vec![],
            },
            modules: vec![],
            packages: vec![
                RpmLocked {
                    name: "bash".into(),
                    epoch: 0,
                    version: "5.2".into(),
                    release: "1".into(),
                    arch: "x86_64".into(),
                    sha256: "a".repeat(64),
                    size: 1,
                    location: "Packages/b/bash-5.2-1.x86_64.rpm".into(),
                    repo: Some("base".into()),
                },
                RpmLocked {
                    name: "local".into(),
                    epoch: 2,
                    version: "1".into(),
                    release: "1".into(),
                    arch: "noarch".into(),
                    sha256: "b".repeat(64),
                    size: 1,
                    location: "/srv/rpms/local-1-1.noarch.rpm".into(),
                    repo: None,
                },
            ],
        };
        assert_eq!(lock.packages[1].evr(), "2:1-1");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.toml.lock");
        lock.write(&p).unwrap();
        assert_eq!(RpmLock::read(&p).unwrap().unwrap(), lock);
        // weak_deps is written only when set: locks made before the option
        // read (and compare) the same.
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(!text.contains("weak_deps"), "{text}");
        let mut weak = lock.clone();
        weak.inputs.weak_deps = true;
        weak.write(&p).unwrap();
        assert!(
            std::fs::read_to_string(&p)
                .unwrap()
                .contains("weak_deps = true")
        );
        assert_eq!(RpmLock::read(&p).unwrap().unwrap(), weak);
        // Module inputs and states are written only when there are some,
        // and read back.
        assert!(!text.contains("module"), "{text}");
        let mut modular = lock.clone();
        modular.inputs.modules = vec!["nodejs:18".into()];
        modular.inputs.module_platform_id = Some("platform:el9".into());
        modular.modules = vec![super::super::modular::ModuleState {
            name: "nodejs".into(),
            stream: "18".into(),
            state: "enabled".into(),
        }];
        modular.write(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.contains("[[module]]") && text.contains("modules = [\"nodejs:18\"]"),
            "{text}"
        );
        assert_eq!(RpmLock::read(&p).unwrap().unwrap(), modular);
        // A Debian lock is not an RPM lock.
        let deb = std::fs::read_to_string(&p)
            .unwrap()
            .replace("source = \"rpm\"\n", "");
        std::fs::write(&p, deb).unwrap();
        assert!(RpmLock::read(&p).is_err());
        lock.write(&p).unwrap();
        let bad = std::fs::read_to_string(&p)
            .unwrap()
            .replace("Packages/b", "../b");
        std::fs::write(&p, bad).unwrap();
        assert!(RpmLock::read(&p).is_err());
        assert!(RpmLock::read(&dir.path().join("none")).unwrap().is_none());
    }
}
