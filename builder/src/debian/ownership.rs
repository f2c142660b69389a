//! Who owns a path that two packages ship, and where diverted files go:
//! dpkg's rules, applied after the parallel unpack (which only records
//! who claimed what, see [`crate::unpack::Claims`]).
//!
//! What dpkg does, unpacking packages one after the other (checked
//! against dpkg 1.21 with small packages; see `tests/dpkg_semantics.rs`):
//! - a file already owned by an installed package may be overwritten only
//!   if the new package `Replaces` the owner (version constraint
//!   included); it then leaves the old owner's file list. If instead the
//!   owner `Replaces` the new package, the owner keeps the file and the
//!   new package's copy is skipped (and not listed). Otherwise it is an
//!   error ("trying to overwrite …, which is also in package …");
//! - a package all of whose files have been taken over (or are shared
//!   directories) "disappears": it is no longer installed;
//! - a diverted path (`/var/lib/dpkg/diversions`, usually added by a
//!   `preinst` with `dpkg-divert --rename`) is unpacked to the divert-to
//!   name for every package but the diverting one, and two packages
//!   shipping it do not conflict when one of them is the diverting one.
//!   File lists keep the original names.
//!
//! Packages are taken in install order (dependencies first), which stands
//! for dpkg's unpack order where that matters (two packages that
//! `Replaces` each other: the later one wins).
//!
//! Not copied: dpkg's disappearance check runs after every unpack and so
//! depends on the order of all packages; it also notes a package whose
//! only files are shared directories, or whose single file another
//! package diverted away, as disappeared once a later package covers the
//! directories. Here only packages that lost files through `Replaces` can
//! disappear, which is the case the rule exists for.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use super::packages::Relation;
use super::version::Version;
use crate::unpack::Selection;

/// Two packages ship one path and no `Replaces` or diversion settles it.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "package {second}: trying to overwrite {path}, which is also in package {first} {first_version} (neither Replaces the other and no diversion applies)"
)]
pub struct OwnershipError {
    /// The path inside the image.
    pub path: String,
    /// The package unpacked first.
    pub first: String,
    /// Its version.
    pub first_version: String,
    /// The package that tried to overwrite it.
    pub second: String,
}

/// What the ownership rules need to know of one unpacked package.
#[derive(Debug, Clone, Copy)]
pub struct PkgView<'a> {
    /// Package name.
    pub name: &'a str,
    /// Version string.
    pub version: &'a str,
    /// `Replaces:`.
    pub replaces: &'a [Relation],
    /// `Pre-Depends`, `Depends` and `Recommends` groups (names).
    pub depends: &'a [Vec<String>],
    /// Names it `Provides`.
    pub provides: &'a [String],
    /// Every member as dpkg lists it, as unpacked.
    pub paths: &'a [String],
}

/// Whether `new` Replaces `old` (dpkg's `does_replace`: by real name,
/// with the version constraint checked against `old`'s version).
pub fn replaces(new: &PkgView<'_>, old: &PkgView<'_>) -> bool {
    new.replaces.iter().any(|r| {
        r.name == old.name
            && match &r.constraint {
                None => true,
                Some((op, want)) => {
                    Version::parse(old.version).is_ok_and(|have| op.matches(&have, want))
                }
            }
    })
}

/// Unpacking `owners` in this order, who ends up with the file; `Err`
/// names the first pair that conflicts.
fn settle<'p, 'a>(owners: &[&'p PkgView<'a>]) -> Result<&'p PkgView<'a>, (usize, usize)> {
    let mut cur = 0;
    for i in 1..owners.len() {
        if replaces(owners[i], owners[cur]) {
            cur = i;
        } else if !replaces(owners[cur], owners[i]) {
            return Err((cur, i));
        }
    }
    Ok(owners[cur])
}

/// Ownership of the paths several packages ship, decided before any
/// maintainer script runs.
#[derive(Debug, Default, Clone)]
pub struct Decisions {
    /// Contested path → the package that keeps it (by `Replaces`).
    pub owner: BTreeMap<String, String>,
    /// Contested paths no `Replaces` settles, with their packages in
    /// install order: legal only if a diversion covers them (known once
    /// the `preinst` scripts have run).
    pub open: BTreeMap<String, Vec<String>>,
    /// Packages completely replaced by others, which dpkg would no longer
    /// list as installed.
    pub disappeared: BTreeSet<String>,
}

impl Decisions {
    /// The packages that keep `path` in their file lists, given the
    /// packages that claimed it while unpacking.
    pub fn keepers(&self, path: &str, claimed: Vec<String>) -> Vec<String> {
        match self.owner.get(path) {
            Some(o) => vec![o.clone()],
            None => claimed
                .into_iter()
                .filter(|p| !self.disappeared.contains(p))
                .collect(),
        }
    }

    /// Whether `pkg` lost `path` to another package.
    pub fn lost(&self, pkg: &str, path: &str) -> bool {
        self.owner.get(path).is_some_and(|o| o != pkg)
    }
}

/// Decides every contested path by `Replaces`, then which packages
/// disappear. `order` lists indexes into `pkgs` in install order;
/// `contested` comes from [`crate::unpack::Claims::contested`].
pub fn decide(
    pkgs: &[PkgView<'_>],
    order: &[usize],
    contested: &[(String, Vec<String>)],
) -> Decisions {
    let rank: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(r, &i)| (pkgs[i].name, r))
        .collect();
    let by_name: HashMap<&str, &PkgView<'_>> = pkgs.iter().map(|p| (p.name, p)).collect();
    let mut d = Decisions::default();
    for (path, owners) in contested {
        let mut os: Vec<&PkgView<'_>> = owners
            .iter()
            .filter_map(|o| by_name.get(o.as_str()).copied())
            .collect();
        os.sort_by_key(|p| rank.get(p.name).copied().unwrap_or(usize::MAX));
        match settle(&os) {
            Ok(w) => {
                d.owner.insert(path.clone(), w.name.to_string());
            }
            Err(_) => {
                d.open.insert(
                    path.clone(),
                    os.iter().map(|p| p.name.to_string()).collect(),
                );
            }
        }
    }
    if !d.owner.is_empty() {
        d.disappeared = disappearing(pkgs, &rank, &d);
    }
    d
}

/// dpkg checks after each unpack whether an installed package L has been
/// completely replaced: every path of L (but `/.`) is in the package just
/// unpacked (W) or listed by a third package unpacked before W, and
/// nothing installed depends on L. With W ranging over the packages after
/// L, a path is covered from the rank of its first other lister on.
fn disappearing(
    pkgs: &[PkgView<'_>],
    rank: &HashMap<&str, usize>,
    d: &Decisions,
) -> BTreeSet<String> {
    // Path → lowest rank of a package other than its loser that lists it
    // after the decisions (losers still list it at the time dpkg checks,
    // but they are the L in question).
    let mut first_lister: HashMap<&str, Vec<(usize, &str)>> = HashMap::new();
    for p in pkgs {
        let r = rank.get(p.name).copied().unwrap_or(usize::MAX);
        for path in p.paths {
            if d.lost(p.name, path) {
                continue;
            }
            first_lister.entry(path).or_default().push((r, p.name));
        }
    }
    let last = pkgs.len().saturating_sub(1);
    // Only packages that lost something can have been replaced; a
    // directories-only package is left alone (dpkg's outcome for it
    // depends on unpack order details this builder does not copy).
    let losers: BTreeSet<&str> = d
        .owner
        .iter()
        .flat_map(|(path, w)| {
            pkgs.iter()
                .filter(move |p| p.name != w && p.paths.iter().any(|x| x == path))
                .map(|p| p.name)
        })
        .collect();
    let mut gone: BTreeSet<String> = BTreeSet::new();
    for l in pkgs.iter().filter(|p| losers.contains(p.name)) {
        let lr = rank.get(l.name).copied().unwrap_or(usize::MAX);
        let mut needed_from = 0usize;
        let mut covered = true;
        for path in l.paths.iter().filter(|p| p.as_str() != "/.") {
            match first_lister.get(path.as_str()).and_then(|v| {
                v.iter()
                    .filter(|(_, n)| *n != l.name)
                    .map(|(r, _)| *r)
                    .min()
            }) {
                Some(r) => needed_from = needed_from.max(r),
                None => {
                    covered = false;
                    break;
                }
            }
        }
        if !covered || needed_from.max(lr.saturating_add(1)) > last {
            continue;
        }
        // Nothing that stays may depend on L (by name or what L provides)
        // without another package satisfying the dependency.
        let satisfies =
            |p: &PkgView<'_>, name: &str| p.name == name || p.provides.iter().any(|v| v == name);
        let needed = pkgs.iter().filter(|p| p.name != l.name).any(|p| {
            p.depends.iter().any(|group| {
                group.iter().any(|n| satisfies(l, n))
                    && !group.iter().any(|n| {
                        pkgs.iter()
                            .any(|o| o.name != l.name && !gone.contains(o.name) && satisfies(o, n))
                    })
            })
        });
        if !needed {
            gone.insert(l.name.to_string());
        }
    }
    gone
}

/// One diversion: `from` is found at `to` for every package but `by`
/// (`:` for a local diversion, which applies to all packages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diversion {
    /// The diverted path.
    pub from: String,
    /// Where other packages' copy goes.
    pub to: String,
    /// The package allowed to keep `from`.
    pub by: String,
}

/// Reads `<root>/var/lib/dpkg/diversions` (groups of three lines: from,
/// to, package); no file means no diversions.
pub fn read_diversions(root: &Path) -> std::io::Result<Vec<Diversion>> {
    let p = root.join("var/lib/dpkg/diversions");
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let lines: Vec<&str> = text.lines().collect();
    if !lines.len().is_multiple_of(3) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{}: {} lines, not groups of three",
                p.display(),
                lines.len()
            ),
        ));
    }
    Ok(lines
        .chunks(3)
        .map(|c| Diversion {
            from: c[0].to_string(),
            to: c[1].to_string(),
            by: c[2].to_string(),
        })
        .collect())
}

/// What the diversions and still-open paths require once the `preinst`
/// scripts have run: members to extract again (package → member →
/// destination), non-directory paths to clear first, and paths that
/// leave a package's file list.
#[derive(Debug, Default, Clone)]
pub struct Placement {
    /// Package → (listed member → destination path).
    pub extract: BTreeMap<String, Selection>,
    /// Paths (and their `.dpkg-new` twins) to remove before extracting.
    pub clear: BTreeSet<String>,
    /// Package → paths it no longer lists.
    pub unlisted: BTreeMap<String, BTreeSet<String>>,
}

/// Places every diverted path shipped by a package, and checks that each
/// open path is covered by a diversion. `claimed` gives the packages that
/// claimed a path while unpacking; `order` as for [`decide`].
pub fn place_diverted(
    pkgs: &[PkgView<'_>],
    order: &[usize],
    d: &Decisions,
    claimed: &dyn Fn(&str) -> Vec<String>,
    diversions: &[Diversion],
) -> Result<Placement, OwnershipError> {
    let rank: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(r, &i)| (pkgs[i].name, r))
        .collect();
    let by_name: HashMap<&str, &PkgView<'_>> = pkgs.iter().map(|p| (p.name, p)).collect();
    let conflict = |path: &str, a: &str, b: &str| OwnershipError {
        path: path.to_string(),
        first: a.to_string(),
        first_version: by_name
            .get(a)
            .map(|p| p.version.to_string())
            .unwrap_or_default(),
        second: b.to_string(),
    };
    let divs: HashMap<&str, &Diversion> = diversions.iter().map(|v| (v.from.as_str(), v)).collect();
    let mut out = Placement::default();
    for (path, owners) in &d.open {
        if !divs.contains_key(path.as_str()) {
            return Err(conflict(path, &owners[0], &owners[1]));
        }
    }
    for v in diversions {
        let keepers = d.keepers(&v.from, claimed(&v.from));
        if keepers.is_empty() {
            continue;
        }
        let mut others: Vec<&PkgView<'_>> = keepers
            .iter()
            .filter(|k| **k != v.by)
            .filter_map(|k| by_name.get(k.as_str()).copied())
            .collect();
        others.sort_by_key(|p| rank.get(p.name).copied().unwrap_or(usize::MAX));
        let diverted_owner = match others.len() {
            0 => None,
            _ => match settle(&others) {
                Ok(w) => Some(w.name),
                Err((a, b)) => return Err(conflict(&v.from, others[a].name, others[b].name)),
            },
        };
        let to_claimed = claimed(&v.to);
        if let Some(w) = diverted_owner {
            // The divert-to name must not be another package's file.
            if let Some(q) = to_claimed.first() {
                return Err(conflict(&v.to, q, w));
            }
            for o in &others {
                if o.name != w {
                    out.unlisted
                        .entry(o.name.to_string())
                        .or_default()
                        .insert(v.from.clone());
                }
            }
            out.extract
                .entry(w.to_string())
                .or_default()
                .insert(v.from.clone(), v.to.clone());
        }
        if keepers.contains(&v.by) {
            out.extract
                .entry(v.by.clone())
                .or_default()
                .insert(v.from.clone(), v.from.clone());
        }
        // Whatever a `dpkg-divert --rename` moved is put back in place.
        out.clear.insert(v.from.clone());
        if to_claimed.is_empty() {
            out.clear.insert(v.to.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debian::packages::parse_relations;

    struct P {
        name: &'static str,
        version: &'static str,
        replaces: Vec<Relation>,
        depends: Vec<Vec<String>>,
        paths: Vec<String>,
    }

    fn p(name: &'static str, replaces: &str, paths: &[&str]) -> P {
        P {
            name,
            version: "1.0",
            replaces: parse_relations(replaces, "amd64")
                .unwrap()
                .into_iter()
                .flatten()
                .collect(),
            depends: Vec::new(),
            paths: paths.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn views(ps: &[P]) -> Vec<PkgView<'_>> {
        ps.iter()
            .map(|p| PkgView {
                name: p.name,
                version: p.version,
                replaces: &p.replaces,
                depends: &p.depends,
                provides: &[],
                paths: &p.paths,
            })
            .collect()
    }

    fn contest(path: &str, owners: &[&str]) -> (String, Vec<String>) {
        (
            path.to_string(),
            owners.iter().map(|s| s.to_string()).collect(),
        )
    }

    #[test]
    fn replaces_decides_either_way_and_versions_count() {
        let ps = [
            p("a", "", &["/.", "/usr", "/usr/f", "/usr/only-a"]),
            p("b", "a", &["/.", "/usr", "/usr/f"]),
            p("c", "a (<< 1.0)", &["/.", "/usr", "/usr/g"]),
            p("d", "", &["/.", "/usr", "/usr/g"]),
        ];
        let v = views(&ps);
        // Claim order does not matter, only install order and Replaces.
        for order in [[0, 1, 2, 3], [1, 0, 3, 2]] {
            let d = decide(
                &v,
                &order,
                &[
                    contest("/usr/f", &["b", "a"]),
                    contest("/usr/g", &["c", "d"]),
                ],
            );
            assert_eq!(d.owner["/usr/f"], "b");
            assert_eq!(d.open["/usr/g"].len(), 2);
            assert!(d.lost("a", "/usr/f") && !d.lost("b", "/usr/f"));
            assert!(d.disappeared.is_empty());
        }
    }

    #[test]
    fn mutual_replaces_the_later_wins_and_losers_disappear() {
        let ps = [
            p("d", "e", &["/.", "/usr", "/usr/f"]),
            p("e", "d", &["/.", "/usr", "/usr/f"]),
        ];
        let v = views(&ps);
        let d = decide(&v, &[0, 1], &[contest("/usr/f", &["d", "e"])]);
        assert_eq!(d.owner["/usr/f"], "e");
        assert_eq!(d.disappeared, ["d".to_string()].into());
        let d = decide(&v, &[1, 0], &[contest("/usr/f", &["d", "e"])]);
        assert_eq!(d.owner["/usr/f"], "d");
        assert_eq!(d.disappeared, ["e".to_string()].into());
    }

    #[test]
    fn a_package_something_depends_on_does_not_disappear() {
        let mut ps = [
            p("h", "", &["/.", "/usr", "/usr/f"]),
            p("i", "h", &["/.", "/usr", "/usr/f"]),
            p("user", "", &["/.", "/usr", "/usr/u"]),
        ];
        ps[2].depends = vec![vec!["h".to_string()]];
        let v = views(&ps);
        let d = decide(&v, &[0, 1, 2], &[contest("/usr/f", &["h", "i"])]);
        assert!(d.disappeared.is_empty());
        let d = decide(&v[..2], &[0, 1], &[contest("/usr/f", &["h", "i"])]);
        assert_eq!(d.disappeared, ["h".to_string()].into());
    }

    #[test]
    fn diversions_place_each_copy() {
        let ps = [
            p("a", "", &["/.", "/usr", "/usr/f"]),
            p("c", "", &["/.", "/usr", "/usr/f"]),
            p("x", "", &["/.", "/usr", "/usr/f"]),
        ];
        let v = views(&ps);
        let order = [0, 1, 2];
        let d = decide(&v, &order, &[contest("/usr/f", &["a", "c"])]);
        assert!(d.open.contains_key("/usr/f"));
        let claimed = |p: &str| {
            if p == "/usr/f" {
                vec!["a".to_string(), "c".to_string()]
            } else {
                vec![]
            }
        };
        // Without a diversion: the dpkg error.
        let e = place_diverted(&v, &order, &d, &claimed, &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "package c: trying to overwrite /usr/f, which is also in package a 1.0 (neither Replaces the other and no diversion applies)"
        );
        let div = Diversion {
            from: "/usr/f".into(),
            to: "/usr/f.distrib".into(),
            by: "c".into(),
        };
        let pl = place_diverted(&v, &order, &d, &claimed, std::slice::from_ref(&div)).unwrap();
        assert_eq!(pl.extract["c"]["/usr/f"], "/usr/f");
        assert_eq!(pl.extract["a"]["/usr/f"], "/usr/f.distrib");
        assert!(pl.unlisted.is_empty());
        // Two non-diverting packages still need Replaces between them.
        let claimed3 = |p: &str| {
            if p == "/usr/f" {
                vec!["a".to_string(), "c".to_string(), "x".to_string()]
            } else {
                vec![]
            }
        };
        let d = decide(&v, &order, &[contest("/usr/f", &["a", "c", "x"])]);
        let e = place_diverted(&v, &order, &d, &claimed3, std::slice::from_ref(&div)).unwrap_err();
        assert_eq!((e.first.as_str(), e.second.as_str()), ("a", "x"));
    }

    #[test]
    fn diversions_file_format() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_diversions(dir.path()).unwrap().is_empty());
        let f = dir.path().join("var/lib/dpkg/diversions");
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, "/bin/sh\n/bin/sh.distrib\ndash\n/x\n/y\n:\n").unwrap();
        let v = read_diversions(dir.path()).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].by, ":");
        std::fs::write(&f, "/bin/sh\n/bin/sh.distrib\n").unwrap();
        assert!(read_diversions(dir.path()).is_err());
    }
}
