//! The metadata of a version made by editing an image (`vnfs mount`):
//! its package list read again from the image's dpkg database, so that
//! `vnfs show`, `vnfs diff` and capsules name what is installed, and a
//! mark that the recipe and lock it carries describe an earlier version.

use std::collections::{BTreeMap, HashMap};

use vnfs_capsule::manifest::Package;
use vnfs_capsule::metadata::{LOCK, PACKAGES, RECIPE};

use crate::debian::control;

/// Metadata key naming the version the recipe and lock describe: the one
/// an edited image was built as, before its first edit.
pub const EDITED_SINCE: &str = "vnfs.edited_since";

/// The packages dpkg's `status` file records as installed, sorted. A
/// package the `previous` list has with the same version and architecture
/// keeps its file hash; one installed by the edit has none (dpkg does not
/// record which file it came from).
pub fn dpkg_packages(status: &str, previous: &[Package]) -> Result<Vec<Package>, String> {
    let known: HashMap<(&str, &str, &str), &Option<String>> = previous
        .iter()
        .map(|p| ((&*p.name, &*p.version, &*p.arch), &p.sha256))
        .collect();
    let mut out = Vec::new();
    for para in control::parse(status).map_err(|e| e.to_string())? {
        let field = |name: &str| {
            para.get(name)
                .ok_or_else(|| format!("the paragraph at line {} has no {name} field", para.line))
        };
        let name = field("Package")?;
        // "want flag state": only fully installed packages count, as with
        // `dpkg-query -W` on a healthy system (half-installed ones are
        // what `dpkg --audit` reports).
        if field("Status")?.split_whitespace().nth(2) != Some("installed") {
            continue;
        }
        let version = field("Version")?;
        let arch = field("Architecture")?;
        out.push(Package {
            name: name.to_string(),
            version: version.to_string(),
            arch: arch.to_string(),
            sha256: known.get(&(name, version, arch)).and_then(|s| (*s).clone()),
        });
    }
    out.sort();
    Ok(out)
}

/// What edits did to dpkg's status file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusEdit<'a> {
    /// Untouched.
    Unchanged,
    /// Rewritten; its new text.
    Changed(&'a str),
    /// Deleted.
    Removed,
}

/// Updates the metadata a new version inherits from the mounted
/// `mounted` (hex id) after edits: `status` is what they did to the
/// image's dpkg status file, `rpmdb_changed` whether they changed an rpm
/// database. Returns warnings for the user.
pub fn refresh(
    meta: &mut BTreeMap<String, String>,
    mounted: &str,
    status: StatusEdit<'_>,
    rpmdb_changed: bool,
) -> Vec<String> {
    let mut warnings = Vec::new();
    if meta.contains_key(RECIPE) || meta.contains_key(LOCK) {
        meta.entry(EDITED_SINCE.to_string())
            .or_insert_with(|| mounted.to_string());
    }
    let previous: Vec<Package> = meta
        .get(PACKAGES)
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default();
    if status == StatusEdit::Removed && meta.contains_key(PACKAGES) {
        meta.remove(PACKAGES);
        warnings.push(
            "the edits deleted the image's /var/lib/dpkg/status: the new version has no package list"
                .to_string(),
        );
    } else if let StatusEdit::Changed(text) = status {
        match dpkg_packages(text, &previous) {
            Ok(list) => {
                meta.insert(
                    PACKAGES.to_string(),
                    serde_json::to_string(&list).unwrap_or_default(),
                );
            }
            Err(e) => {
                meta.remove(PACKAGES);
                warnings.push(format!(
                    "the image's /var/lib/dpkg/status cannot be read ({e}); \
                     the new version has no package list"
                ));
            }
        }
    } else if rpmdb_changed && meta.contains_key(PACKAGES) {
        // vnfs reads only dpkg's database: a list kept from before would
        // name packages the edit may have changed.
        meta.remove(PACKAGES);
        warnings.push(
            "the edits changed the image's rpm database, which vnfs does not read: \
             the new version has no package list"
                .to_string(),
        );
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str, sha: Option<&str>) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            sha256: sha.map(str::to_string),
        }
    }

    const STATUS: &str = "Package: hello\nStatus: install ok installed\nVersion: 2.10-3\nArchitecture: amd64\n\n\
Package: base-files\nStatus: install ok installed\nVersion: 12.4\nArchitecture: amd64\n\n\
Package: gone\nStatus: deinstall ok config-files\nVersion: 1\nArchitecture: amd64\n\n\
Package: broken\nStatus: install reinstreq half-installed\nVersion: 1\nArchitecture: amd64\n";

    #[test]
    fn installed_packages_keep_known_hashes() {
        let previous = [
            pkg("base-files", "12.4", Some("aa")),
            pkg("gone", "1", Some("bb")),
        ];
        let list = dpkg_packages(STATUS, &previous).unwrap();
        assert_eq!(
            list,
            [
                pkg("base-files", "12.4", Some("aa")),
                pkg("hello", "2.10-3", None)
            ]
        );
        // Another version of a known package is not the known file.
        let other = dpkg_packages(STATUS, &[pkg("base-files", "12.3", Some("aa"))]).unwrap();
        assert_eq!(other[0].sha256, None);
    }

    #[test]
    fn refresh_replaces_the_list_and_marks_a_built_image() {
        let mut meta = BTreeMap::new();
        meta.insert(RECIPE.to_string(), "[image]".to_string());
        meta.insert(
            PACKAGES.to_string(),
            serde_json::to_string(&[pkg("base-files", "12.4", Some("aa"))]).unwrap(),
        );
        assert!(refresh(&mut meta, "c1", StatusEdit::Changed(STATUS), false).is_empty());
        let list: Vec<Package> = serde_json::from_str(&meta[PACKAGES]).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(meta[EDITED_SINCE], "c1");
        // A second edit keeps the first edited version's mark.
        refresh(&mut meta, "c2", StatusEdit::Unchanged, false);
        assert_eq!(meta[EDITED_SINCE], "c1");
        // An rpm database changed: the list is dropped, with a warning.
        let w = refresh(&mut meta, "c3", StatusEdit::Unchanged, true);
        assert!(!meta.contains_key(PACKAGES));
        assert!(w[0].contains("rpm database"), "{w:?}");
        // A status file that does not parse: no list, a warning.
        meta.insert(PACKAGES.to_string(), "[]".to_string());
        let w = refresh(&mut meta, "c4", StatusEdit::Changed("Package: x\n"), false);
        assert!(!meta.contains_key(PACKAGES));
        assert!(w[0].contains("no Status field"), "{w:?}");
        // The status file deleted: no list, a warning.
        meta.insert(PACKAGES.to_string(), "[]".to_string());
        let w = refresh(&mut meta, "c5", StatusEdit::Removed, false);
        assert!(!meta.contains_key(PACKAGES));
        assert!(w[0].contains("deleted"), "{w:?}");
    }

    #[test]
    fn an_image_not_built_from_a_recipe_is_not_marked() {
        let mut meta = BTreeMap::new();
        refresh(&mut meta, "c1", StatusEdit::Changed(STATUS), false);
        assert!(!meta.contains_key(EDITED_SINCE));
        assert!(meta.contains_key(PACKAGES));
    }
}
