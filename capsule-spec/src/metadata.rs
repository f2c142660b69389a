//! Where the VNFS metadata lives in a store commit: keys of the commit's
//! metadata map, and how they become manifest fields.
//!
//! Keys (values are UTF-8 text):
//! - `vnfs.naming`: JSON of [`Naming`];
//! - `vnfs.config`: JSON of [`VnfsConfig`];
//! - `vnfs.packages`: JSON list of [`Package`];
//! - `vnfs.recipe`, `vnfs.lock`: the recipe and lock text.
//!
//! A commit without them (e.g. made by `vnfs commit` from a directory)
//! still exports: naming then comes from the image name when it follows the
//! Perceus convention, and from fixed defaults otherwise.

use std::collections::BTreeMap;

use crate::manifest::{Package, VnfsConfig};
use crate::naming::Naming;

/// Key of the naming fields.
pub const NAMING: &str = "vnfs.naming";
/// Key of the VNFS configuration.
pub const CONFIG: &str = "vnfs.config";
/// Key of the package list.
pub const PACKAGES: &str = "vnfs.packages";
/// Key of the recipe text.
pub const RECIPE: &str = "vnfs.recipe";
/// Key of the lock text.
pub const LOCK: &str = "vnfs.lock";

/// The manifest fields a commit's metadata provides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageMetadata {
    /// Naming fields.
    pub naming: Naming,
    /// VNFS configuration.
    pub config: VnfsConfig,
    /// Packages, sorted.
    pub packages: Vec<Package>,
    /// Recipe text.
    pub recipe: Option<String>,
    /// Lock text.
    pub lock: Option<String>,
}

/// A metadata value that does not parse; names the key.
#[derive(Debug, Clone, thiserror::Error)]
#[error("commit metadata {key}: {reason}")]
pub struct MetadataError {
    /// The metadata key.
    pub key: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn json<T: serde::de::DeserializeOwned>(
    map: &BTreeMap<String, String>,
    key: &'static str,
) -> Result<Option<T>, MetadataError> {
    map.get(key)
        .map(|v| serde_json::from_str(v))
        .transpose()
        .map_err(|e| MetadataError {
            key,
            reason: e.to_string(),
        })
}

/// Naming for an image without `vnfs.naming`: parsed from the image name
/// if it follows the convention, else `<name>-0-1.stateless.unknown`. The
/// defaults are fixed (not the exporting host's architecture) so the same
/// commit exports to the same bytes everywhere.
pub fn default_naming(image_name: &str) -> Naming {
    Naming::parse_file_name(image_name).unwrap_or_else(|_| Naming {
        os: image_name.to_owned(),
        version: "0".into(),
        release: "1".into(),
        state: "stateless".into(),
        arch: "unknown".into(),
    })
}

impl ImageMetadata {
    /// Reads the VNFS keys of a commit's metadata map.
    pub fn from_commit(
        map: &BTreeMap<String, String>,
        image_name: &str,
    ) -> Result<ImageMetadata, MetadataError> {
        let mut packages: Vec<Package> = json(map, PACKAGES)?.unwrap_or_default();
        packages.sort();
        Ok(ImageMetadata {
            naming: json(map, NAMING)?.unwrap_or_else(|| default_naming(image_name)),
            config: json(map, CONFIG)?.unwrap_or_default(),
            packages,
            recipe: map.get(RECIPE).cloned(),
            lock: map.get(LOCK).cloned(),
        })
    }

    /// Writes the VNFS keys into a commit's metadata map (for the builder).
    pub fn to_commit(&self, map: &mut BTreeMap<String, String>) {
        map.insert(NAMING.into(), enc(&self.naming));
        map.insert(CONFIG.into(), enc(&self.config));
        map.insert(PACKAGES.into(), enc(&self.packages));
        if let Some(r) = &self.recipe {
            map.insert(RECIPE.into(), r.clone());
        }
        if let Some(l) = &self.lock {
            map.insert(LOCK.into(), l.clone());
        }
    }
}

/// JSON text of a plain struct (serialising these cannot fail).
fn enc<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_defaults() {
        let m = ImageMetadata {
            naming: Naming::parse_file_name("debian-node-12-1.stateless.x86_64").unwrap(),
            config: VnfsConfig {
                kernel_args: "quiet".into(),
                ..VnfsConfig::default()
            },
            packages: vec![],
            recipe: Some("r".into()),
            lock: None,
        };
        let mut map = BTreeMap::new();
        m.to_commit(&mut map);
        assert_eq!(ImageMetadata::from_commit(&map, "x").unwrap(), m);
        let d =
            ImageMetadata::from_commit(&BTreeMap::new(), "centos-5.1-1.stateless.x86_64").unwrap();
        assert_eq!(d.naming.os, "centos");
        let d = ImageMetadata::from_commit(&BTreeMap::new(), "node").unwrap();
        assert_eq!(d.naming.file_name(), "node-0-1.stateless.unknown.vnfs");
        map.insert(CONFIG.into(), "{".into());
        assert_eq!(
            ImageMetadata::from_commit(&map, "x").unwrap_err().key,
            CONFIG
        );
    }
}
