//! Dependency resolution the way apt (as driven by mmdebstrap) does it:
//! one candidate per package (the highest version), a depth-first walk of
//! Pre-Depends and Depends, the first satisfiable alternative of each OR
//! group unless another alternative is already chosen, Provides for
//! virtual packages, no Recommends. The variant's base set (Essential: yes,
//! then Priority-based sets) is resolved first, as mmdebstrap installs it
//! first.

use std::collections::{BTreeMap, BTreeSet};

use super::packages::{Alternatives, Package, Priority, Relation, format_alternatives};

/// Which base package set to start from (mmdebstrap's `--variant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// Nothing but the listed packages (they must bring dpkg themselves).
    Custom,
    /// `Essential: yes` packages.
    Essential,
    /// Essential plus apt.
    Apt,
    /// Essential plus `Priority: required` plus apt (mmdebstrap/debootstrap `minbase`).
    #[serde(alias = "required")]
    Minbase,
    /// Minbase plus `Priority: important`.
    Important,
    /// Important plus `Priority: standard`.
    Standard,
}

/// What to resolve.
#[derive(Debug, Clone)]
pub struct Request {
    /// The base set.
    pub variant: Variant,
    /// Archive index (`Package::origin`) whose Essential/Priority fields
    /// define the base set: mmdebstrap narrows them to the main suite.
    pub base_origin: Option<usize>,
    /// Packages named by the recipe.
    pub packages: Vec<String>,
    /// Packages that must not be installed.
    pub exclude: Vec<String>,
    /// The native architecture.
    pub arch: String,
}

/// Why resolution failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// A requested name matches no package and nothing provides it.
    #[error("unknown package {name:?}{}{}", suggest(.close), chain_text(.chain))]
    Unknown {
        /// The requested name.
        name: String,
        /// Similar names that do exist.
        close: Vec<String>,
        /// Who asked for it, outermost first.
        chain: Vec<String>,
    },
    /// No alternative of a dependency can be installed.
    #[error("cannot satisfy {package}'s dependency {dependency}: {}{}", .reasons.join("; "), chain_text(.chain))]
    Unsatisfiable {
        /// The package whose dependency fails (`name version`).
        package: String,
        /// The OR group as written.
        dependency: String,
        /// Why each alternative fails.
        reasons: Vec<String>,
        /// Who pulled the package in, outermost first.
        chain: Vec<String>,
    },
    /// Two selected packages conflict.
    #[error("{a} conflicts with {b} ({relation}){}", chain_text(.chain))]
    Conflict {
        /// The package declaring the conflict.
        a: String,
        /// The package it conflicts with.
        b: String,
        /// The Conflicts/Breaks entry.
        relation: String,
        /// How `b` got selected.
        chain: Vec<String>,
    },
    /// The recipe both requires and excludes a package.
    #[error("package {name} is excluded by the recipe but required{}", chain_text(.chain))]
    Excluded {
        /// The package.
        name: String,
        /// Who requires it.
        chain: Vec<String>,
    },
}

fn suggest(close: &[String]) -> String {
    if close.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", close.join(", "))
    }
}

fn chain_text(chain: &[String]) -> String {
    if chain.is_empty() {
        String::new()
    } else {
        format!("; required by: {}", chain.join(" -> "))
    }
}

/// The chosen packages.
#[derive(Debug, Clone)]
pub struct Resolution<'a> {
    /// Every package to install, sorted by name.
    pub packages: Vec<&'a Package>,
    /// Names of the base (first-stage) set: Essential packages and their
    /// dependencies, as mmdebstrap installs them before the rest.
    pub essential: BTreeSet<String>,
}

/// Candidate lookup over a set of package versions.
pub struct Universe<'a> {
    candidates: BTreeMap<&'a str, &'a Package>,
    providers: BTreeMap<&'a str, Vec<&'a Package>>,
    all: &'a [Package],
}

impl<'a> Universe<'a> {
    /// Picks one candidate per name: the highest version for `arch` or
    /// `all` (apt's default policy when all archives have equal priority).
    pub fn new(all: &'a [Package], arch: &str) -> Universe<'a> {
        let mut candidates: BTreeMap<&str, &Package> = BTreeMap::new();
        for p in all.iter().filter(|p| p.arch == arch || p.arch == "all") {
            match candidates.get(p.name.as_str()) {
                Some(old) if old.version >= p.version => {}
                _ => {
                    candidates.insert(&p.name, p);
                }
            }
        }
        let mut providers: BTreeMap<&str, Vec<&Package>> = BTreeMap::new();
        for p in candidates.values() {
            for prov in &p.provides {
                providers.entry(prov.name.as_str()).or_default().push(p);
            }
        }
        Universe {
            candidates,
            providers,
            all,
        }
    }

    /// The candidate version of a real package.
    pub fn candidate(&self, name: &str) -> Option<&'a Package> {
        self.candidates.get(name).copied()
    }

    /// Up to three existing names closest to `name` (edit distance).
    pub fn close_names(&self, name: &str) -> Vec<String> {
        let mut scored: Vec<(usize, &str)> = self
            .candidates
            .keys()
            .map(|k| (levenshtein(name, k), *k))
            .filter(|(d, _)| *d <= (name.len() / 3).max(2))
            .collect();
        scored.sort();
        scored
            .into_iter()
            .take(3)
            .map(|(_, k)| k.to_string())
            .collect()
    }

    /// Candidates that satisfy one relation: the real package (if its
    /// version matches) first, then providers.
    fn solutions(&self, rel: &Relation) -> Vec<&'a Package> {
        let mut out = Vec::new();
        if let Some(p) = self.candidate(&rel.name)
            && rel
                .constraint
                .as_ref()
                .is_none_or(|(op, v)| op.matches(&p.version, v))
        {
            out.push(p);
        }
        if let Some(provs) = self.providers.get(rel.name.as_str()) {
            for p in provs {
                let ok = p.provides.iter().any(|pr| {
                    pr.name == rel.name
                        && match (&rel.constraint, &pr.constraint) {
                            (None, _) => true,
                            (Some((op, want)), Some((_, have))) => op.matches(have, want),
                            (Some(_), None) => false,
                        }
                });
                if ok && !out.iter().any(|o| std::ptr::eq(*o, *p)) {
                    out.push(p);
                }
            }
        }
        out
    }

    /// Whether package `p` satisfies `rel` (by name or Provides).
    fn satisfies(p: &Package, rel: &Relation) -> bool {
        if p.name == rel.name
            && rel
                .constraint
                .as_ref()
                .is_none_or(|(op, v)| op.matches(&p.version, v))
        {
            return true;
        }
        p.provides.iter().any(|pr| {
            pr.name == rel.name
                && match (&rel.constraint, &pr.constraint) {
                    (None, _) => true,
                    (Some((op, want)), Some((_, have))) => op.matches(have, want),
                    (Some(_), None) => false,
                }
        })
    }

    /// All package versions, for callers that need the raw list.
    pub fn all(&self) -> &'a [Package] {
        self.all
    }
}

/// Classic Levenshtein distance, for "did you mean" hints.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

struct State<'a> {
    selected: BTreeMap<&'a str, &'a Package>,
    parent: BTreeMap<String, String>,
    exclude: BTreeSet<String>,
}

impl<'a> State<'a> {
    fn chain(&self, name: &str) -> Vec<String> {
        let mut out = vec![];
        let mut cur = name.to_string();
        while let Some(p) = self.parent.get(&cur) {
            if out.len() > 64 || out.contains(p) {
                break;
            }
            out.push(p.clone());
            cur = p.clone();
        }
        out.reverse();
        out
    }

    fn group_satisfied(&self, alts: &Alternatives) -> bool {
        alts.iter().any(|r| {
            self.selected
                .get(r.name.as_str())
                .is_some_and(|p| Universe::satisfies(p, r))
                || self.selected.values().any(|p| {
                    p.provides.iter().any(|pr| pr.name == r.name) && Universe::satisfies(p, r)
                })
        })
    }

    /// Whether installing `p` would conflict with something selected.
    fn conflicts_with_selected(&self, p: &Package) -> bool {
        let hits = |rels: &[Alternatives], other: &Package| {
            rels.iter()
                .flatten()
                .any(|r| r.name != p.name && Universe::satisfies(other, r))
        };
        self.selected.values().any(|s| {
            hits(&p.conflicts, s) || hits(&p.breaks, s) || {
                let back = |rels: &[Alternatives]| {
                    rels.iter()
                        .flatten()
                        .any(|r| r.name != s.name && Universe::satisfies(p, r))
                };
                back(&s.conflicts) || back(&s.breaks)
            }
        })
    }
}

/// Resolves `req` against `u`.
pub fn resolve<'a>(u: &Universe<'a>, req: &Request) -> Result<Resolution<'a>, ResolveError> {
    let mut st = State {
        selected: BTreeMap::new(),
        parent: BTreeMap::new(),
        exclude: req.exclude.iter().cloned().collect(),
    };
    let in_base = |p: &Package| {
        req.base_origin.is_none_or(|o| p.origin == o) && (p.arch == req.arch || p.arch == "all")
    };
    // Stage 1: the essential set, as mmdebstrap's first apt call.
    let mut essential_names: BTreeSet<&str> = BTreeSet::new();
    if req.variant != Variant::Custom {
        for p in u.all().iter().filter(|p| p.essential && in_base(p)) {
            essential_names.insert(&p.name);
        }
    }
    for name in &essential_names {
        install_name(u, &mut st, name, "essential set")?;
    }
    let essential: BTreeSet<String> = st.selected.keys().map(|s| s.to_string()).collect();
    // Stage 2: the recipe's packages first, then the priority set (the
    // order mmdebstrap hands them to apt).
    let mut targets: Vec<(String, &str)> =
        req.packages.iter().map(|p| (p.clone(), "recipe")).collect();
    let max_prio = match req.variant {
        Variant::Minbase => Some(Priority::Required),
        Variant::Important => Some(Priority::Important),
        Variant::Standard => Some(Priority::Standard),
        _ => None,
    };
    if let Some(max) = max_prio {
        let mut names: BTreeSet<&str> = BTreeSet::new();
        for p in u
            .all()
            .iter()
            .filter(|p| in_base(p) && !p.essential && p.priority <= max)
        {
            names.insert(&p.name);
        }
        targets.extend(names.into_iter().map(|n| (n.to_string(), "priority set")));
    }
    if matches!(
        req.variant,
        Variant::Apt | Variant::Minbase | Variant::Important | Variant::Standard
    ) {
        targets.push(("apt".to_string(), "variant"));
    }
    for (name, why) in &targets {
        install_name(u, &mut st, name, why)?;
    }
    // Final consistency check: no selected package conflicts with another.
    for p in st.selected.values() {
        for rel in p.conflicts.iter().chain(&p.breaks).flatten() {
            for other in st.selected.values() {
                if other.name != p.name && Universe::satisfies(other, rel) {
                    return Err(ResolveError::Conflict {
                        a: p.label(),
                        b: other.label(),
                        relation: rel.to_string(),
                        chain: st.chain(&other.name),
                    });
                }
            }
        }
    }
    Ok(Resolution {
        packages: st.selected.values().copied().collect(),
        essential,
    })
}

fn install_name<'a>(
    u: &Universe<'a>,
    st: &mut State<'a>,
    name: &str,
    why: &str,
) -> Result<(), ResolveError> {
    if st.selected.contains_key(name) {
        return Ok(());
    }
    let rel = Relation {
        name: name.to_string(),
        arch: None,
        constraint: None,
    };
    if st.group_satisfied(&vec![rel.clone()]) && u.candidate(name).is_none() {
        return Ok(());
    }
    let sols = u.solutions(&rel);
    let Some(p) = pick(sols, &rel, st) else {
        if st.exclude.contains(name) {
            return Err(ResolveError::Excluded {
                name: name.to_string(),
                chain: vec![why.to_string()],
            });
        }
        return Err(ResolveError::Unknown {
            name: name.to_string(),
            close: u.close_names(name),
            chain: vec![why.to_string()],
        });
    };
    if st.exclude.contains(&p.name) {
        return Err(ResolveError::Excluded {
            name: p.name.clone(),
            chain: vec![why.to_string()],
        });
    }
    st.parent.insert(p.name.clone(), why.to_string());
    mark(u, st, p)
}

/// Orders the solutions of one relation like apt's provider comparison:
/// the real package first, then already chosen, essential, by priority
/// and name; excluded and conflicting ones are dropped.
fn pick<'a>(mut sols: Vec<&'a Package>, rel: &Relation, st: &State<'a>) -> Option<&'a Package> {
    sols.retain(|p| !st.exclude.contains(&p.name));
    if let Some(p) = sols
        .iter()
        .find(|p| st.selected.contains_key(p.name.as_str()))
    {
        return Some(p);
    }
    sols.retain(|p| !st.conflicts_with_selected(p));
    sols.sort_by(|a, b| {
        (b.name == rel.name)
            .cmp(&(a.name == rel.name))
            .then(b.essential.cmp(&a.essential))
            .then(a.priority.cmp(&b.priority))
            .then(a.name.cmp(&b.name))
    });
    sols.first().copied()
}

fn mark<'a>(u: &Universe<'a>, st: &mut State<'a>, p: &'a Package) -> Result<(), ResolveError> {
    if st.selected.contains_key(p.name.as_str()) {
        return Ok(());
    }
    st.selected.insert(&p.name, p);
    for group in p.pre_depends.iter().chain(&p.depends) {
        if st.group_satisfied(group) {
            continue;
        }
        let mut reasons = Vec::new();
        let mut chosen = None;
        for rel in group {
            let sols = u.solutions(rel);
            if sols.is_empty() {
                reasons.push(match u.candidate(&rel.name) {
                    Some(c) => format!("{} has version {}", rel.name, c.version),
                    None => format!("no package provides {}", rel.name),
                });
                continue;
            }
            match pick(sols.clone(), rel, st) {
                Some(s) => {
                    chosen = Some(s);
                    break;
                }
                None => {
                    let names: Vec<String> = sols.iter().map(|s| s.name.clone()).collect();
                    reasons.push(format!(
                        "{} is excluded or conflicts with the selection",
                        names.join(", ")
                    ));
                }
            }
        }
        let Some(s) = chosen else {
            let mut chain = st.chain(&p.name);
            chain.push(p.name.clone());
            return Err(ResolveError::Unsatisfiable {
                package: format!("{} {}", p.name, p.version),
                dependency: format_alternatives(group),
                reasons,
                chain,
            });
        };
        st.parent
            .entry(s.name.clone())
            .or_insert_with(|| p.name.clone());
        mark(u, st, s)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debian::repo::parse_packages;

    /// A tiny archive in Packages syntax.
    const FIXTURE: &str = "\
Package: base
Version: 1
Architecture: amd64
Essential: yes
Priority: required
Pre-Depends: libc (>= 2)
Depends: helper | alt-helper

Package: libc
Version: 2.1
Architecture: amd64
Priority: required

Package: libc
Version: 1.0
Architecture: amd64
Priority: required

Package: helper
Version: 1
Architecture: all
Priority: optional

Package: alt-helper
Version: 1
Architecture: all
Priority: optional

Package: apt
Version: 2
Architecture: amd64
Priority: required
Depends: libc

Package: tool
Version: 3
Architecture: amd64
Priority: optional
Depends: mta, libc (>= 3) | helper
Recommends: fancy

Package: fancy
Version: 1
Architecture: amd64
Priority: optional

Package: postfix
Version: 1
Architecture: amd64
Priority: optional
Provides: mta
Conflicts: mta

Package: exim
Version: 1
Architecture: amd64
Priority: extra
Provides: mta

Package: broken
Version: 1
Architecture: amd64
Priority: optional
Depends: libc (>= 9) | nothing-here

Package: needsbroken
Version: 1
Architecture: amd64
Priority: optional
Depends: broken

Package: other-arch
Version: 1
Architecture: arm64
Priority: required
";

    fn names(r: &Resolution) -> Vec<String> {
        r.packages.iter().map(|p| p.name.clone()).collect()
    }

    fn req(variant: Variant, pkgs: &[&str], exclude: &[&str]) -> Request {
        Request {
            variant,
            base_origin: None,
            packages: pkgs.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            arch: "amd64".into(),
        }
    }

    #[test]
    fn minbase_is_essential_required_and_apt() {
        let pkgs = parse_packages(FIXTURE, "amd64", 0).unwrap();
        let u = Universe::new(&pkgs, "amd64");
        let r = resolve(&u, &req(Variant::Minbase, &[], &[])).unwrap();
        assert_eq!(names(&r), ["apt", "base", "helper", "libc"]);
        assert_eq!(r.packages[3].version.as_str(), "2.1");
        assert!(r.essential.contains("helper") && !r.essential.contains("apt"));
        let r = resolve(&u, &req(Variant::Essential, &[], &[])).unwrap();
        assert_eq!(names(&r), ["base", "helper", "libc"]);
    }

    #[test]
    fn virtual_alternatives_and_no_recommends() {
        let pkgs = parse_packages(FIXTURE, "amd64", 0).unwrap();
        let u = Universe::new(&pkgs, "amd64");
        let r = resolve(&u, &req(Variant::Custom, &["tool"], &[])).unwrap();
        // mta: postfix (priority optional beats extra); libc (>= 3) fails, so helper.
        assert_eq!(names(&r), ["helper", "postfix", "tool"]);
        // Excluding the preferred provider picks the other; excluding the
        // first alternative is fine too.
        let r = resolve(&u, &req(Variant::Custom, &["tool"], &["postfix"])).unwrap();
        assert_eq!(names(&r), ["exim", "helper", "tool"]);
        // An already chosen alternative wins over the first one.
        let r = resolve(&u, &req(Variant::Essential, &[], &["helper"])).unwrap();
        assert_eq!(names(&r), ["alt-helper", "base", "libc"]);
    }

    #[test]
    fn explains_failures() {
        let pkgs = parse_packages(FIXTURE, "amd64", 0).unwrap();
        let u = Universe::new(&pkgs, "amd64");
        let e = resolve(&u, &req(Variant::Custom, &["toll"], &[])).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("unknown package \"toll\"") && msg.contains("tool"),
            "{msg}"
        );
        let e = resolve(&u, &req(Variant::Custom, &["needsbroken"], &[])).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("broken 1's dependency libc (>= 9) | nothing-here")
                && msg.contains("libc has version 2.1")
                && msg.contains("no package provides nothing-here")
                && msg.contains("recipe -> needsbroken -> broken"),
            "{msg}"
        );
        let e = resolve(&u, &req(Variant::Minbase, &[], &["libc"])).unwrap_err();
        assert!(e.to_string().contains("libc"), "{e}");
        assert!(resolve(&u, &req(Variant::Custom, &["other-arch"], &[])).is_err());
    }

    #[test]
    fn edit_distance() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "ab"), 2);
    }
}
