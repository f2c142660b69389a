//! Package-level differences between two images, from the package lists
//! the builder stores in commit metadata (`vnfs.packages`): what `vnfs
//! diff` prints before the file changes.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::Serialize;
use vnfs_capsule::manifest::Package;

use crate::debian::version::Version;

/// How a package present in both images changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The new version sorts after the old (dpkg's version ordering).
    Upgraded,
    /// The new version sorts before the old.
    Downgraded,
    /// Same version string, different package file (sha256).
    Rebuilt,
    /// The versions differ but cannot be ordered (not Debian syntax).
    Changed,
}

/// A package in both images with another version, architecture or file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangedPackage {
    /// Package name.
    pub name: String,
    /// Architecture in the old image.
    pub old_arch: String,
    /// Architecture in the new image.
    pub new_arch: String,
    /// Version in the old image.
    pub old_version: String,
    /// Version in the new image.
    pub new_version: String,
    /// Upgrade, downgrade or rebuild.
    pub direction: Direction,
}

/// Packages added, removed and changed from image A to image B; each list
/// sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PackageDiff {
    /// In B only.
    pub added: Vec<Package>,
    /// In A only.
    pub removed: Vec<Package>,
    /// In both, with a different version, architecture or sha256.
    pub changed: Vec<ChangedPackage>,
}

impl PackageDiff {
    /// Whether the two package lists are the same.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

fn direction(old: &Package, new: &Package) -> Direction {
    if old.version == new.version {
        return Direction::Rebuilt;
    }
    match (Version::parse(&old.version), Version::parse(&new.version)) {
        (Ok(a), Ok(b)) => match a.cmp(&b) {
            Ordering::Less => Direction::Upgraded,
            Ordering::Greater => Direction::Downgraded,
            // Equal but spelled differently (e.g. "0:1" and "1").
            Ordering::Equal => Direction::Rebuilt,
        },
        _ => Direction::Changed,
    }
}

/// Compares two package lists. A package is matched by name and
/// architecture; a name that appears exactly once on each side is matched
/// across architectures (e.g. `all` → `amd64`), so it shows as changed
/// rather than removed and added.
pub fn diff(a: &[Package], b: &[Package]) -> PackageDiff {
    let key = |p: &Package| (p.name.clone(), p.arch.clone());
    let old: BTreeMap<(String, String), &Package> = a.iter().map(|p| (key(p), p)).collect();
    let new: BTreeMap<(String, String), &Package> = b.iter().map(|p| (key(p), p)).collect();
    let mut out = PackageDiff::default();
    let mut removed: Vec<&Package> = Vec::new();
    let mut added: Vec<&Package> = Vec::new();
    for (k, o) in &old {
        match new.get(k) {
            Some(n) => {
                let sha_differs = matches!((&o.sha256, &n.sha256), (Some(x), Some(y)) if x != y);
                if o.version != n.version || sha_differs {
                    out.changed.push(changed(o, n));
                }
            }
            None => removed.push(o),
        }
    }
    for (k, n) in &new {
        if !old.contains_key(k) {
            added.push(n);
        }
    }
    // Pair an architecture change of a name that is unique on both sides.
    let count = |list: &[Package], name: &str| list.iter().filter(|p| p.name == name).count();
    let mut still_added = Vec::new();
    for n in added {
        let pair = removed
            .iter()
            .position(|o| o.name == n.name)
            .filter(|_| count(a, &n.name) == 1 && count(b, &n.name) == 1);
        match pair {
            Some(i) => {
                let o = removed.remove(i);
                out.changed.push(changed(o, n));
            }
            None => still_added.push(n),
        }
    }
    out.added = still_added.into_iter().cloned().collect();
    out.removed = removed.into_iter().cloned().collect();
    out.added.sort();
    out.removed.sort();
    out.changed
        .sort_by(|x, y| (&x.name, &x.new_arch).cmp(&(&y.name, &y.new_arch)));
    out
}

fn changed(o: &Package, n: &Package) -> ChangedPackage {
    ChangedPackage {
        name: n.name.clone(),
        old_arch: o.arch.clone(),
        new_arch: n.arch.clone(),
        old_version: o.version.clone(),
        new_version: n.version.clone(),
        direction: direction(o, n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, version: &str, arch: &str, sha: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            arch: arch.into(),
            sha256: Some(sha.into()),
        }
    }

    #[test]
    fn added_removed_changed() {
        let a = [
            p("bash", "5.2.15-2+b2", "amd64", "1"),
            p("gone", "1", "all", "2"),
            p("libc6", "2.36-9+deb12u7", "amd64", "3"),
            p("same", "1", "all", "4"),
            p("tzdata", "2024a-0+deb12u1", "all", "5"),
            p("rebuilt", "1", "all", "6"),
            p("moved", "1", "all", "7"),
        ];
        let b = [
            p("bash", "5.2.15-2+b2", "amd64", "1"),
            p("libc6", "2.36-9+deb12u10", "amd64", "8"),
            p("new", "2", "amd64", "9"),
            p("same", "1", "all", "4"),
            p("tzdata", "2023c-5+deb12u1", "all", "10"),
            p("rebuilt", "1", "all", "11"),
            p("moved", "1.1", "amd64", "12"),
        ];
        let d = diff(&a, &b);
        assert_eq!(d.added, [p("new", "2", "amd64", "9")]);
        assert_eq!(d.removed, [p("gone", "1", "all", "2")]);
        let summary: Vec<(&str, &str, &str, Direction)> = d
            .changed
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.old_version.as_str(),
                    c.new_version.as_str(),
                    c.direction,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "libc6",
                    "2.36-9+deb12u7",
                    "2.36-9+deb12u10",
                    Direction::Upgraded
                ),
                ("moved", "1", "1.1", Direction::Upgraded),
                ("rebuilt", "1", "1", Direction::Rebuilt),
                (
                    "tzdata",
                    "2024a-0+deb12u1",
                    "2023c-5+deb12u1",
                    Direction::Downgraded
                ),
            ]
        );
        assert_eq!(d.changed[1].old_arch, "all");
        assert_eq!(d.changed[1].new_arch, "amd64");
        assert!(diff(&a, &a).is_empty());
    }

    #[test]
    fn multi_arch_names_are_kept_apart() {
        let a = [p("libx", "1", "amd64", "1"), p("libx", "1", "i386", "2")];
        let b = [p("libx", "1", "amd64", "1")];
        let d = diff(&a, &b);
        assert_eq!(d.removed, [p("libx", "1", "i386", "2")]);
        assert!(d.added.is_empty() && d.changed.is_empty());
        let d = diff(&[], &b);
        assert_eq!(d.added.len(), 1);
    }
}
