//! The VNFS configuration an image carries in its commit metadata under
//! [`CONFIG_KEY`]: JSON with `kernel_args`, `kernel`, `initrd`,
//! `hybridize` and `livesync_skip` (lists of [`crate::glob`] patterns).
//! The build writes it; this reader is tolerant: an absent key or field
//! means the defaults, unknown fields are ignored. A key that is present
//! but not JSON is an error, because silently dropping a livesync.skip
//! list could overwrite a node's /etc/passwd.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::glob::{self, GlobError, PathGlob};

/// Commit metadata key holding the image's VNFS configuration.
pub const CONFIG_KEY: &str = "vnfs.config";

/// The livesync.skip list used when an image names none: files the node
/// configures for itself at boot and state that lives only on the node
/// (the guide's examples: resolv.conf, and passwd after passwdfile ran).
pub const DEFAULT_LIVESYNC_SKIP: &[&str] = &[
    "/etc/passwd",
    "/etc/group",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/fstab",
    "/etc/mtab",
    "/etc/machine-id",
    "/etc/network/interfaces",
    "/etc/systemd/network",
    "/etc/modules-load.d/vnfs-modprobe.conf",
    "/etc/vnfs-confighash",
    "/var/log",
    "/var/tmp",
    "/tmp",
    "/run",
    "/proc",
    "/sys",
    "/dev",
];

/// An image's VNFS configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageConfig {
    /// Kernel command line for network boot.
    pub kernel_args: String,
    /// Path of the kernel inside the image (default: `/vmlinuz`, then
    /// the newest `/boot/vmlinuz-*`).
    pub kernel: Option<String>,
    /// Path of the initrd inside the image (default: `/initrd.img`, then
    /// the newest `/boot/initrd.img-*`).
    pub initrd: Option<String>,
    /// Paths served from the master's export instead of node memory.
    pub hybridize: Vec<String>,
    /// Paths livesync leaves alone.
    pub livesync_skip: Vec<String>,
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            kernel_args: String::new(),
            kernel: None,
            initrd: None,
            hybridize: Vec::new(),
            livesync_skip: DEFAULT_LIVESYNC_SKIP
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The metadata value is not the JSON this module reads.
    #[error("commit metadata {CONFIG_KEY} is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// A pattern does not parse.
    #[error(transparent)]
    Glob(#[from] GlobError),
    /// A hybridize pattern would replace the master's state directory
    /// (where the export is mounted) by a link into itself.
    #[error(
        "hybridize pattern '{pattern}' covers {statedir}, the master's state directory that nodes mount the export from; it must never be hybridized"
    )]
    StateDir {
        /// The pattern.
        pattern: String,
        /// The state directory.
        statedir: String,
    },
    /// A pattern that covers the whole image.
    #[error("hybridize pattern '{0}' covers the whole image")]
    WholeImage(String),
}

impl ImageConfig {
    /// Reads the configuration from a commit's metadata.
    pub fn from_metadata(meta: &BTreeMap<String, String>) -> Result<ImageConfig, ConfigError> {
        match meta.get(CONFIG_KEY) {
            None => Ok(ImageConfig::default()),
            Some(v) if v.trim().is_empty() => Ok(ImageConfig::default()),
            Some(v) => Ok(serde_json::from_str(v)?),
        }
    }

    /// The hybridize patterns, parsed and checked against the state
    /// directory the export is mounted at (`statedir`, absolute).
    pub fn hybridize_globs(&self, statedir: &str) -> Result<Vec<PathGlob>, ConfigError> {
        let globs = glob::parse_all(&self.hybridize)?;
        let statedir = statedir.trim_end_matches('/');
        for g in &globs {
            if g.matches_exact("/") || (!g.is_anchored() && g.as_str().contains("**")) {
                return Err(ConfigError::WholeImage(g.as_str().to_string()));
            }
            // Covering the state directory or an ancestor turns the mount
            // point into a symlink into the very export it should show;
            // a pattern inside it hybridizes the export into itself.
            let inside = g
                .as_str()
                .strip_prefix(statedir)
                .is_some_and(|rest| rest.starts_with('/'));
            if !statedir.is_empty() && (g.covers(statedir) || inside) {
                return Err(ConfigError::StateDir {
                    pattern: g.as_str().to_string(),
                    statedir: statedir.to_string(),
                });
            }
        }
        Ok(globs)
    }

    /// The livesync.skip patterns, parsed.
    pub fn skip_globs(&self) -> Result<Vec<PathGlob>, ConfigError> {
        Ok(glob::parse_all(&self.livesync_skip)?)
    }

    /// Encodes the configuration for commit metadata.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_means_defaults() {
        let c = ImageConfig::from_metadata(&BTreeMap::new()).unwrap();
        assert_eq!(c, ImageConfig::default());
        assert!(c.livesync_skip.iter().any(|s| s == "/etc/resolv.conf"));
        let mut m = BTreeMap::new();
        m.insert(
            CONFIG_KEY.to_string(),
            r#"{"hybridize":["/usr/share/doc"],"extra":1}"#.to_string(),
        );
        let c = ImageConfig::from_metadata(&m).unwrap();
        assert_eq!(c.hybridize, vec!["/usr/share/doc"]);
        assert_eq!(c.livesync_skip, ImageConfig::default().livesync_skip);
        m.insert(CONFIG_KEY.to_string(), "not json".into());
        assert!(ImageConfig::from_metadata(&m).is_err());
    }

    #[test]
    fn state_directory_is_refused() {
        let sd = "/var/lib/vnfs";
        for bad in [
            "/var",
            "/var/lib",
            "/var/lib/vnfs",
            "/var/lib/vnfs/export",
            "/var/*",
            "/var/l*/vnfs",
            "/",
            "/**",
        ] {
            let c = ImageConfig {
                hybridize: vec![bad.into()],
                ..ImageConfig::default()
            };
            assert!(c.hybridize_globs(sd).is_err(), "{bad} accepted");
        }
        let ok = ImageConfig {
            hybridize: vec!["/usr/share/doc".into(), "/var/cache/man".into()],
            ..ImageConfig::default()
        };
        assert_eq!(ok.hybridize_globs(sd).unwrap().len(), 2);
    }
}
