//! The capsule manifest: what image this is (name, naming fields), how it is
//! provisioned (the VNFS configuration), how it was made (recipe, lock,
//! package list), and which commits it carries (head, history, delta base).
//!
//! Encoding: compact JSON, UTF-8, fields in the declared order, produced by
//! [`Manifest::encode`]. That encoding is canonical: the reader re-encodes
//! what it parsed and refuses bytes that differ, so one manifest has exactly
//! one byte form and the same inputs always give the same capsule.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::id::ObjectId;
use crate::naming::{Naming, validate_image_name};

/// Longest accepted free-text field (kernel args, a pattern, a message).
pub const MAX_TEXT_LEN: usize = 64 * 1024;

/// The VNFS configuration of an image (Perceus's per-VNFS `config`,
/// `hybridize`, `livesync.skip` and nodescripts).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VnfsConfig {
    /// Kernel command line given to nodes booting this image.
    pub kernel_args: String,
    /// Glob patterns of paths served from the master instead of node memory.
    pub hybridize: Vec<String>,
    /// Glob patterns of paths that `livesync` never touches.
    pub livesync_skip: Vec<String>,
    /// Names of the nodescripts this image expects to run.
    pub nodescripts: Vec<String>,
}

/// One installed package, as the build recorded it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Package {
    /// Package name.
    pub name: String,
    /// Package version.
    pub version: String,
    /// Package architecture.
    pub arch: String,
    /// SHA-256 of the package file, hex, when known.
    pub sha256: Option<String>,
}

/// History metadata of one commit in the capsule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitInfo {
    /// The commit's object id.
    pub id: ObjectId,
    /// Its root tree.
    pub tree: ObjectId,
    /// Its parents (empty for a first version).
    pub parents: Vec<ObjectId>,
    /// Commit time, seconds since the Unix epoch.
    pub timestamp: i64,
    /// Commit message.
    pub message: String,
    /// Free-form metadata the commit carries (sorted by key).
    pub metadata: BTreeMap<String, String>,
}

/// Everything a capsule says about the image it carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Image name (the ref name it is imported under by default).
    pub name: String,
    /// Perceus naming-convention fields.
    pub naming: Naming,
    /// VNFS configuration.
    pub config: VnfsConfig,
    /// The recipe text, when the image was built from one.
    pub recipe: Option<String>,
    /// The lock file text, when the image was built from a recipe.
    pub lock: Option<String>,
    /// Installed packages, sorted.
    pub packages: Vec<Package>,
    /// The commit the name points to after import; its commit object is in
    /// the capsule.
    pub head: ObjectId,
    /// For a delta capsule, the commit whose objects the capsule leaves out.
    pub base: Option<ObjectId>,
    /// History metadata, newest first (the first entry, if any, is `head`).
    pub history: Vec<CommitInfo>,
}

/// A manifest that could not be encoded or fails validation. `field` is a
/// JSON-path-like name of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("manifest field {field}: {reason}")]
pub struct ManifestError {
    /// Which field, e.g. `naming.arch` or `config.hybridize[3]`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> ManifestError {
    ManifestError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Free text: bounded and free of control characters other than tab and
/// newline, so it prints safely.
fn check_text(field: &str, s: &str, allow_newline: bool) -> Result<(), ManifestError> {
    if s.len() > MAX_TEXT_LEN {
        return Err(err(
            field,
            format!("{} bytes long (at most {MAX_TEXT_LEN})", s.len()),
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|&c| c.is_control() && c != '\t' && !(allow_newline && c == '\n'))
    {
        return Err(err(field, format!("contains control character {c:?}")));
    }
    Ok(())
}

/// A path pattern (hybridize, livesync.skip): text without `..` components,
/// because a node applies these under its root.
fn check_pattern(field: &str, s: &str) -> Result<(), ManifestError> {
    check_text(field, s, false)?;
    if s.is_empty() {
        return Err(err(field, "is empty"));
    }
    if s.split('/').any(|c| c == "..") {
        return Err(err(field, "has a \"..\" component"));
    }
    Ok(())
}

impl Manifest {
    /// Checks every field a hostile capsule could abuse: names are single
    /// safe path components, patterns have no `..`, text has no control
    /// characters, the history starts at `head`.
    pub fn validate(&self) -> Result<(), ManifestError> {
        validate_image_name(&self.name).map_err(|e| err("name", e.to_string()))?;
        self.naming
            .validate()
            .map_err(|(f, e)| err(format!("naming.{f}"), e.to_string()))?;
        check_text("config.kernel_args", &self.config.kernel_args, false)?;
        for (i, p) in self.config.hybridize.iter().enumerate() {
            check_pattern(&format!("config.hybridize[{i}]"), p)?;
        }
        for (i, p) in self.config.livesync_skip.iter().enumerate() {
            check_pattern(&format!("config.livesync_skip[{i}]"), p)?;
        }
        for (i, n) in self.config.nodescripts.iter().enumerate() {
            validate_image_name(n)
                .map_err(|e| err(format!("config.nodescripts[{i}]"), e.to_string()))?;
        }
        for (i, p) in self.packages.iter().enumerate() {
            let f = format!("packages[{i}]");
            check_text(&f, &p.name, false)?;
            check_text(&f, &p.version, false)?;
            check_text(&f, &p.arch, false)?;
            if let Some(h) = &p.sha256
                && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(err(format!("{f}.sha256"), "is not 64 hex digits"));
            }
        }
        if !self.packages.is_sorted() {
            return Err(err("packages", "is not sorted"));
        }
        for (i, c) in self.history.iter().enumerate() {
            check_text(&format!("history[{i}].message"), &c.message, true)?;
            for (k, v) in &c.metadata {
                check_text(&format!("history[{i}].metadata"), k, false)?;
                check_text(&format!("history[{i}].metadata.{k}"), v, true)?;
            }
        }
        if let Some(first) = self.history.first()
            && first.id != self.head
        {
            return Err(err(
                "history[0].id",
                format!("is {} but head is {}", first.id, self.head),
            ));
        }
        if self.base == Some(self.head) {
            return Err(err("base", "equals head"));
        }
        Ok(())
    }

    /// The canonical encoding (compact JSON, declared field order). Fails
    /// only if the manifest does not validate.
    pub fn encode(&self) -> Result<Vec<u8>, ManifestError> {
        self.validate()?;
        serde_json::to_vec(self).map_err(|e| err("(manifest)", e.to_string()))
    }

    /// Parses and validates manifest bytes. When `canonical` is set the
    /// bytes must be exactly what [`Manifest::encode`] would produce (the
    /// rule for capsules of this format's minor version); a capsule from a
    /// newer minor version may carry fields this reader does not know, which
    /// are then ignored.
    pub fn decode(bytes: &[u8], canonical: bool) -> Result<Manifest, ManifestError> {
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| err("(manifest)", e.to_string()))?;
        m.validate()?;
        if canonical {
            let again = serde_json::to_vec(&m).map_err(|e| err("(manifest)", e.to_string()))?;
            if again != bytes {
                return Err(err(
                    "(manifest)",
                    "is not in canonical form (compact JSON, declared field order, no unknown fields)",
                ));
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::id::ObjectKind;

    /// A small valid manifest for tests across the crate.
    pub(crate) fn sample() -> Manifest {
        let head = ObjectKind::Commit.id_of(b"head");
        Manifest {
            name: "debian-node".into(),
            naming: Naming::parse_file_name("debian-node-12-1.stateless.x86_64.vnfs").unwrap(),
            config: VnfsConfig {
                kernel_args: "quiet console=ttyS0".into(),
                hybridize: vec!["/usr/share/doc/*".into()],
                livesync_skip: vec!["/etc/resolv.conf".into()],
                nodescripts: vec!["50-network".into()],
            },
            recipe: Some("[image]\nname = \"debian-node\"\n".into()),
            lock: None,
            packages: vec![Package {
                name: "bash".into(),
                version: "5.2.15-2+b7".into(),
                arch: "amd64".into(),
                sha256: None,
            }],
            head,
            base: None,
            history: vec![CommitInfo {
                id: head,
                tree: ObjectKind::Tree.id_of(b"root"),
                parents: vec![],
                timestamp: 1_700_000_000,
                message: "first\nversion".into(),
                metadata: BTreeMap::from([("k".into(), "v".into())]),
            }],
        }
    }

    #[test]
    fn encode_decode_canonical() {
        let m = sample();
        let bytes = m.encode().unwrap();
        assert_eq!(Manifest::decode(&bytes, true).unwrap(), m);
        // Same value, different bytes: refused in canonical mode only.
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let pretty = serde_json::to_vec_pretty(&v).unwrap();
        assert!(Manifest::decode(&pretty, true).is_err());
        assert_eq!(Manifest::decode(&pretty, false).unwrap(), m);
        v["future_field"] = serde_json::json!(1);
        let extended = serde_json::to_vec(&v).unwrap();
        assert!(Manifest::decode(&extended, true).is_err());
        assert!(Manifest::decode(&extended, false).is_ok());
    }

    #[test]
    fn hostile_fields_named() {
        let mut m = sample();
        m.name = "../../etc".into();
        assert_eq!(m.validate().unwrap_err().field, "name");
        let mut m = sample();
        m.config.hybridize.push("/usr/../../etc".into());
        assert_eq!(m.validate().unwrap_err().field, "config.hybridize[1]");
        let mut m = sample();
        m.config.nodescripts = vec!["a/b".into()];
        assert_eq!(m.validate().unwrap_err().field, "config.nodescripts[0]");
        let mut m = sample();
        m.config.kernel_args = "a\nb".into();
        assert_eq!(m.validate().unwrap_err().field, "config.kernel_args");
        let mut m = sample();
        m.history[0].id = ObjectKind::Commit.id_of(b"other");
        assert_eq!(m.validate().unwrap_err().field, "history[0].id");
        let mut m = sample();
        m.naming.state = "..".into();
        assert_eq!(m.validate().unwrap_err().field, "naming.state");
    }
}
