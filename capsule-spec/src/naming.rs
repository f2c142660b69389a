//! Names that come out of a capsule and end up as ref names or file names:
//! the image name, and Perceus's naming convention
//! `<os>-<version>-<release>.<state>.<arch>.vnfs`.
//!
//! Everything here is validated because a capsule is untrusted input: a name
//! with `/` or `..` must never reach a path join or a ref name.

use serde::{Deserialize, Serialize};

/// The file suffix of a capsule.
pub const SUFFIX: &str = ".vnfs";

/// Longest accepted image name or naming field, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("is empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`].
    #[error("is {0} bytes long (at most {MAX_NAME_LEN})")]
    TooLong(usize),
    /// The name contains a character outside the allowed set.
    #[error("contains {0:?}, allowed are ASCII letters, digits and {1}")]
    BadChar(char, &'static str),
    /// The name contains `..`, or starts with `.` or `-`.
    #[error("must not contain \"..\" nor start with '.' or '-'")]
    BadShape,
    /// A file name does not follow `<os>-<version>-<release>.<state>.<arch>.vnfs`.
    #[error("does not follow <os>-<version>-<release>.<state>.<arch>.vnfs")]
    NotConvention,
}

/// Checks a name made of ASCII letters, digits and the characters in
/// `extra`, that does not start with `.` or `-` and has no `..`. `/`, NUL,
/// whitespace and control characters are never in `extra`, so a valid name is
/// always a single, harmless path component.
fn check(s: &str, extra: &'static str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(s.len()));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || extra.contains(*c)))
    {
        return Err(NameError::BadChar(c, extra));
    }
    if s.contains("..") || s.starts_with('.') || s.starts_with('-') {
        return Err(NameError::BadShape);
    }
    Ok(())
}

/// Validates an image name (a ref name): letters, digits, `.`, `_`, `+`,
/// `-`; no `/`, no `..`, no `@` (the CLI's `NAME@COMMIT` separator).
pub fn validate_image_name(name: &str) -> Result<(), NameError> {
    check(name, "._+-")
}

/// The five naming-convention fields of an image, as Perceus named its
/// capsules: `centos-5.1-1.stateless.x86_64.vnfs` has os `centos`, version
/// `5.1`, release `1`, state `stateless`, arch `x86_64`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Naming {
    /// Operating system or image family, e.g. `debian-node` (may contain `-`).
    pub os: String,
    /// Version, e.g. `12.5` (no `-`).
    pub version: String,
    /// Release of this image build, e.g. `1` (no `-`).
    pub release: String,
    /// Provisioning model, e.g. `stateless` or `stateful` (no `.`).
    pub state: String,
    /// Machine architecture, e.g. `x86_64` (no `.`).
    pub arch: String,
}

impl Naming {
    /// Checks every field so that [`Naming::file_name`] parses back to the
    /// same fields and is a single safe path component. Errors name the field.
    pub fn validate(&self) -> Result<(), (&'static str, NameError)> {
        check(&self.os, "._+-").map_err(|e| ("os", e))?;
        check(&self.version, "._+~").map_err(|e| ("version", e))?;
        check(&self.release, "._+~").map_err(|e| ("release", e))?;
        check(&self.state, "_+-").map_err(|e| ("state", e))?;
        check(&self.arch, "_+-").map_err(|e| ("arch", e))?;
        Ok(())
    }

    /// The image's canonical label without the suffix:
    /// `<os>-<version>-<release>.<state>.<arch>`.
    pub fn label(&self) -> String {
        format!(
            "{}-{}-{}.{}.{}",
            self.os, self.version, self.release, self.state, self.arch
        )
    }

    /// The capsule file name: `<os>-<version>-<release>.<state>.<arch>.vnfs`.
    pub fn file_name(&self) -> String {
        format!("{}{SUFFIX}", self.label())
    }

    /// Parses a capsule file name (with or without the `.vnfs` suffix) back
    /// into fields. Splits from the right: arch and state after the last two
    /// dots, then release and version after the last two dashes, so the os
    /// part may itself contain dashes and dots (`caos-nsa-node-1.0-1...`).
    pub fn parse_file_name(name: &str) -> Result<Naming, NameError> {
        let label = name.strip_suffix(SUFFIX).unwrap_or(name);
        let (rest, arch) = label.rsplit_once('.').ok_or(NameError::NotConvention)?;
        let (rest, state) = rest.rsplit_once('.').ok_or(NameError::NotConvention)?;
        let (rest, release) = rest.rsplit_once('-').ok_or(NameError::NotConvention)?;
        let (os, version) = rest.rsplit_once('-').ok_or(NameError::NotConvention)?;
        let naming = Naming {
            os: os.to_owned(),
            version: version.to_owned(),
            release: release.to_owned(),
            state: state.to_owned(),
            arch: arch.to_owned(),
        };
        naming.validate().map_err(|(_, e)| e)?;
        Ok(naming)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perceus_names_parse() {
        for (file, os, version) in [
            ("centos-5.1-1.stateless.x86_64.vnfs", "centos", "5.1"),
            (
                "caos-nsa-node-1.0-1.stateless.x86_64.vnfs",
                "caos-nsa-node",
                "1.0",
            ),
            ("rhel-node-4.5-1.stateless.x86_64.vnfs", "rhel-node", "4.5"),
            ("gentoo-2007.0-1.statefull.x86_64.vnfs", "gentoo", "2007.0"),
        ] {
            let n = Naming::parse_file_name(file).unwrap();
            assert_eq!((n.os.as_str(), n.version.as_str()), (os, version));
            assert_eq!(n.file_name(), file);
        }
    }

    #[test]
    fn hostile_names_refused() {
        for bad in [
            "", "..", "a/b", "../etc", ".hidden", "-x", "a..b", "a b", "a@b", "é",
        ] {
            assert!(validate_image_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_image_name(&"a".repeat(MAX_NAME_LEN + 1)).is_err());
        assert!(validate_image_name("debian-node_12.5+b1").is_ok());
        let mut n = Naming::parse_file_name("centos-5.1-1.stateless.x86_64").unwrap();
        n.arch = "x86/64".into();
        assert_eq!(n.validate().unwrap_err().0, "arch");
        n.arch = "x86_64".into();
        n.version = "1-2".into();
        assert_eq!(n.validate().unwrap_err().0, "version");
        assert!(Naming::parse_file_name("nodots.vnfs").is_err());
        assert!(Naming::parse_file_name("a-..-1.s.x.vnfs").is_err());
    }
}
