//! Dependency resolution for RPM sources, in the spirit of dnf without a
//! SAT solver: every local file and every requested package is installed
//! with its Requires, walked depth first. A requirement already met by the
//! selection is done; otherwise its providers are ranked (the package of
//! that name first, then by name) and the highest version that satisfies
//! the range, is not excluded and conflicts with nothing selected is
//! taken. One version per name. Failures name the requirement, why each
//! provider was refused, and the chain of packages that led there.

use std::collections::{BTreeMap, BTreeSet};

use super::package::RpmPackage;
use super::rich::{self, Rich};
use super::version::{Dep, Op};

/// What to resolve.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Indices (into the package list) of local files: always installed.
    pub local: Vec<usize>,
    /// Names or capabilities (`name`, `name >= 1.0`, `/usr/bin/x`) asked for.
    pub packages: Vec<String>,
    /// Package names that must not be installed.
    pub exclude: Vec<String>,
    /// The image's architecture; `noarch` packages always fit.
    pub arch: String,
    /// Also install Recommends and Supplements where they can be.
    pub weak_deps: bool,
}

/// Why resolution failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// A requested name matches no package and nothing provides it.
    #[error("no package provides {name:?}{}", suggest(.close))]
    Unknown {
        /// The requested name.
        name: String,
        /// Similar package names that exist.
        close: Vec<String>,
    },
    /// A requirement cannot be met.
    #[error("cannot satisfy {package}'s requirement {requirement}: {}{}", .reasons.join("; "), chain_text(.chain))]
    Unsatisfiable {
        /// The package (`name-evr.arch`, or `recipe`).
        package: String,
        /// The requirement as written.
        requirement: String,
        /// Why each provider was refused (or that none exists).
        reasons: Vec<String>,
        /// Who pulled the package in, outermost first.
        chain: Vec<String>,
    },
    /// Two selected packages conflict.
    #[error("{a} conflicts with {b} ({relation}){}", chain_text(.chain))]
    Conflict {
        /// The package declaring the conflict.
        a: String,
        /// The one it conflicts with.
        b: String,
        /// The Conflicts entry.
        relation: String,
        /// How `b` got selected.
        chain: Vec<String>,
    },
    /// A request or dependency is malformed.
    #[error("{0}")]
    Malformed(String),
    /// Nothing to install.
    #[error("[source.rpm] names no files and no packages")]
    Nothing,
    /// The search tried too many candidates.
    #[error(
        "dependency resolution gave up after trying {0} candidate packages; narrow it with versioned `packages` entries or `exclude`"
    )]
    TooComplex(u32),
}

/// Most candidate packages one resolution tries (each with its own
/// requirements) before giving up: backtracking is exhaustive, and a
/// repository could make it exponential.
const MAX_ATTEMPTS: u32 = 50_000;

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

/// The packages of all sources that fit the architecture, indexed.
pub struct Universe<'a> {
    by_name: BTreeMap<&'a str, Vec<&'a RpmPackage>>,
    by_cap: BTreeMap<&'a str, Vec<&'a RpmPackage>>,
    /// Packages by the names their Obsoletes entries give.
    by_obsoleted: BTreeMap<&'a str, Vec<&'a RpmPackage>>,
    /// Candidates tried so far (see [`MAX_ATTEMPTS`]).
    attempts: std::cell::Cell<u32>,
}

impl<'a> Universe<'a> {
    /// Indexes `pkgs` for `arch`: within each name, newest first (rpm order).
    pub fn new(pkgs: &'a [RpmPackage], arch: &str) -> Universe<'a> {
        let all: Vec<&RpmPackage> = pkgs
            .iter()
            .filter(|p| p.arch == arch || p.arch == "noarch")
            .collect();
        let mut by_name: BTreeMap<&str, Vec<&RpmPackage>> = BTreeMap::new();
        let mut by_cap: BTreeMap<&str, Vec<&RpmPackage>> = BTreeMap::new();
        let mut by_obsoleted: BTreeMap<&str, Vec<&RpmPackage>> = BTreeMap::new();
        for p in &all {
            for o in &p.obsoletes {
                by_obsoleted.entry(o.name.as_str()).or_default().push(p);
            }
            by_name.entry(p.name.as_str()).or_default().push(p);
            for d in &p.provides {
                by_cap.entry(d.name.as_str()).or_default().push(p);
            }
            for f in &p.files {
                by_cap.entry(f.as_str()).or_default().push(p);
            }
        }
        for v in by_name
            .values_mut()
            .chain(by_cap.values_mut())
            .chain(by_obsoleted.values_mut())
        {
            v.sort_by(|a, b| {
                a.name
                    .cmp(&b.name)
                    .then_with(|| b.evr.cmp_full(&a.evr))
                    .then_with(|| a.arch.cmp(&b.arch))
            });
            v.dedup_by(|a, b| std::ptr::eq(*a, *b));
        }
        Universe {
            by_name,
            by_cap,
            by_obsoleted,
            attempts: std::cell::Cell::new(0),
        }
    }

    /// The package dnf would install in `p`'s place for `d`: the newest
    /// version of a package that obsoletes `p`, also satisfies `d`, and is
    /// not excluded, already selected or in conflict with the selection
    /// (first by name when several do). Only each name's newest version
    /// counts, as dnf only looks at the best candidates.
    fn obsoleter(&self, p: &RpmPackage, d: &Dep, st: &State<'a>) -> Option<&'a RpmPackage> {
        let mut last_name = None;
        for &q in self.by_obsoleted.get(p.name.as_str())? {
            // Sorted by name, newest first: skip older versions.
            if last_name == Some(q.name.as_str()) {
                continue;
            }
            last_name = Some(q.name.as_str());
            if q.obsoletes(p)
                && q.satisfies(d)
                && !st.exclude.contains(&q.name)
                && !st.selected.contains_key(q.name.as_str())
                && st.conflict(q).is_none()
            {
                return Some(q);
            }
        }
        None
    }

    /// Every package version that satisfies `d`, best first: the package
    /// named like the capability, then others by name; newest first.
    fn providers(&self, d: &Dep) -> Vec<&'a RpmPackage> {
        let mut v: Vec<&RpmPackage> = self
            .by_cap
            .get(d.name.as_str())
            .map(|v| v.iter().copied().filter(|p| p.satisfies(d)).collect())
            .unwrap_or_default();
        v.sort_by(|a, b| {
            (b.name == d.name)
                .cmp(&(a.name == d.name))
                .then_with(|| a.name.cmp(&b.name))
                .then_with(|| b.evr.cmp_full(&a.evr))
        });
        v
    }

    /// Up to three package names close to `name` (edit distance).
    fn close_names(&self, name: &str) -> Vec<String> {
        let mut scored: Vec<(usize, &str)> = self
            .by_name
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
}

pub(crate) fn levenshtein(a: &str, b: &str) -> usize {
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

#[derive(Clone)]
struct State<'a> {
    selected: BTreeMap<&'a str, &'a RpmPackage>,
    parent: BTreeMap<String, String>,
    /// Shared, not copied: the state is cloned for every candidate tried,
    /// and globs can exclude thousands of names.
    exclude: std::rc::Rc<BTreeSet<String>>,
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

    fn met(&self, d: &Dep) -> bool {
        self.selected.values().any(|p| p.satisfies(d))
    }

    fn rich_met(&self, r: &Rich) -> bool {
        match r {
            Rich::Dep(d) => self.met(d),
            Rich::And(v) => v.iter().all(|r| self.rich_met(r)),
            Rich::Or(v) => v.iter().any(|r| self.rich_met(r)),
            Rich::If(then, cond, els) => {
                if self.rich_met(cond) {
                    self.rich_met(then)
                } else {
                    els.as_ref().is_none_or(|e| self.rich_met(e))
                }
            }
            Rich::Unless(then, cond, els) => {
                if self.rich_met(cond) {
                    els.as_ref().is_none_or(|e| self.rich_met(e))
                } else {
                    self.rich_met(then)
                }
            }
        }
    }

    /// The selected package that `p` conflicts with (either direction).
    fn conflict(&self, p: &RpmPackage) -> Option<(String, String, String)> {
        for s in self.selected.values() {
            if s.name == p.name {
                continue;
            }
            if let Some(c) = p.conflicts.iter().find(|c| s.satisfies(c)) {
                return Some((p.nevra(), s.nevra(), c.to_string()));
            }
            if let Some(c) = s.conflicts.iter().find(|c| p.satisfies(c)) {
                return Some((s.nevra(), p.nevra(), c.to_string()));
            }
            // One replaces the other: they are never installed together.
            if p.obsoletes(s) {
                return Some((p.nevra(), s.nevra(), format!("obsoletes {}", s.name)));
            }
            if s.obsoletes(p) {
                return Some((s.nevra(), p.nevra(), format!("obsoletes {}", p.name)));
            }
        }
        None
    }
}

/// Resolves `req`; returns the chosen packages sorted by name.
pub fn resolve<'a>(
    u: &Universe<'a>,
    pkgs: &'a [RpmPackage],
    req: &Request,
) -> Result<Vec<&'a RpmPackage>, ResolveError> {
    if req.local.is_empty() && req.packages.is_empty() {
        return Err(ResolveError::Nothing);
    }
    let mut st = State {
        selected: BTreeMap::new(),
        parent: BTreeMap::new(),
        exclude: std::rc::Rc::new(excluded_names(u, &req.exclude)?),
    };
    // Local files first: they are installed whatever else provides the same.
    for &i in &req.local {
        let Some(p) = pkgs.get(i) else { continue };
        if let Some(old) = st.selected.get(p.name.as_str()) {
            return Err(ResolveError::Malformed(format!(
                "two local files are package {}: {} and {}",
                p.name, old.location, p.location
            )));
        }
        if p.arch != req.arch && p.arch != "noarch" {
            return Err(ResolveError::Malformed(format!(
                "{} is for {}, the image is {}",
                p.location, p.arch, req.arch
            )));
        }
        if st.exclude.contains(&p.name) {
            return Err(ResolveError::Malformed(format!(
                "local file {} is package {}, which `exclude` keeps out",
                p.location, p.name
            )));
        }
        st.selected.insert(&p.name, p);
        st.parent.insert(p.name.clone(), "local file".into());
    }
    let locals: Vec<&RpmPackage> = st.selected.values().copied().collect();
    for p in locals {
        requires_of(u, &mut st, p)?;
    }
    for want in &req.packages {
        let r = rich::parse(want).map_err(ResolveError::Malformed)?;
        let Rich::Dep(d) = r else {
            return Err(ResolveError::Malformed(format!(
                "package request {want:?}: give a name, `name OP version` or a path"
            )));
        };
        if st.met(&d) {
            continue;
        }
        if u.providers(&d).is_empty() {
            return Err(ResolveError::Unknown {
                name: want.clone(),
                close: u.close_names(&d.name),
            });
        }
        satisfy(u, &mut st, &d, "recipe", &[])?;
    }
    if req.weak_deps {
        weak_deps(u, &mut st);
    }
    // Final check: conflicts declared by packages chosen before their
    // counterpart was.
    for p in st.selected.values() {
        if let Some((a, b, relation)) = st.conflict(p) {
            let bname = b.clone();
            let name = st
                .selected
                .values()
                .find(|s| s.nevra() == bname)
                .map(|s| s.name.clone())
                .unwrap_or_default();
            return Err(ResolveError::Conflict {
                a,
                b,
                relation,
                chain: st.chain(&name),
            });
        }
    }
    Ok(st.selected.values().copied().collect())
}

/// The package names `exclude` keeps out: names, or globs (`kernel*`,
/// as dnf's `excludepkgs` takes them) matched against every package name
/// the repositories and files offer. An entry that matches nothing is
/// reported (a typo would otherwise keep nothing out).
fn excluded_names(u: &Universe<'_>, exclude: &[String]) -> Result<BTreeSet<String>, ResolveError> {
    let mut out = BTreeSet::new();
    for e in exclude {
        let matched = if e.contains(['*', '?', '[']) {
            let pat = glob::Pattern::new(e)
                .map_err(|err| ResolveError::Malformed(format!("exclude {e:?}: {err}")))?;
            let names: Vec<&str> = u
                .by_name
                .keys()
                .copied()
                .filter(|n| pat.matches(n))
                .collect();
            out.extend(names.iter().map(|n| n.to_string()));
            !names.is_empty()
        } else {
            out.insert(e.clone());
            u.by_name.contains_key(e.as_str())
        };
        if !matched {
            tracing::warn!("exclude {e:?} matches no package the sources offer");
        }
    }
    Ok(out)
}

/// Walks `p`'s Requires.
fn requires_of<'a>(
    u: &Universe<'a>,
    st: &mut State<'a>,
    p: &'a RpmPackage,
) -> Result<(), ResolveError> {
    for d in &p.requires {
        if d.name.starts_with('(') {
            let r = rich::parse(&d.name)
                .map_err(|m| ResolveError::Malformed(format!("{}: {m}", p.nevra())))?;
            rich_require(u, st, &r, p, &d.name)?;
        } else if !st.met(d) {
            let mut chain = st.chain(&p.name);
            chain.push(p.name.clone());
            satisfy(u, st, d, &p.nevra(), &chain)?;
            // Record who pulled the provider in.
            if let Some(s) = st.selected.values().find(|s| s.satisfies(d)) {
                st.parent
                    .entry(s.name.clone())
                    .or_insert_with(|| p.name.clone());
            }
        }
    }
    Ok(())
}

fn rich_require<'a>(
    u: &Universe<'a>,
    st: &mut State<'a>,
    r: &Rich,
    p: &'a RpmPackage,
    text: &str,
) -> Result<(), ResolveError> {
    if st.rich_met(r) {
        return Ok(());
    }
    let mut chain = st.chain(&p.name);
    chain.push(p.name.clone());
    match r {
        Rich::Dep(d) => {
            satisfy(u, st, d, &p.nevra(), &chain)?;
            if let Some(s) = st.selected.values().find(|s| s.satisfies(d)) {
                st.parent
                    .entry(s.name.clone())
                    .or_insert_with(|| p.name.clone());
            }
            Ok(())
        }
        Rich::And(v) => v.iter().try_for_each(|r| rich_require(u, st, r, p, text)),
        Rich::Or(v) => {
            let mut reasons = Vec::new();
            for alt in v {
                match rich_require(u, st, alt, p, text) {
                    Ok(()) => return Ok(()),
                    Err(e) => reasons.push(e.to_string()),
                }
            }
            Err(ResolveError::Unsatisfiable {
                package: p.nevra(),
                requirement: text.to_string(),
                reasons,
                chain,
            })
        }
        Rich::If(then, cond, els) => {
            if st.rich_met(cond) {
                rich_require(u, st, then, p, text)
            } else if let Some(e) = els {
                rich_require(u, st, e, p, text)
            } else {
                Ok(())
            }
        }
        Rich::Unless(then, cond, els) => {
            if !st.rich_met(cond) {
                rich_require(u, st, then, p, text)
            } else if let Some(e) = els {
                rich_require(u, st, e, p, text)
            } else {
                Ok(())
            }
        }
    }
}

/// Adds the Recommends of everything selected, as dnf does with
/// `install_weak_deps`: each one that is not met yet and can be installed
/// (with its own requirements) is; one that cannot is left out, without
/// an error. Repeated until nothing more is added (a recommended package
/// may recommend others). Rich Recommends (`(a if b)`, `(a or b)`) are
/// evaluated against the selection as it stands: a condition not met
/// (yet) asks for nothing, an alternative already selected meets it.
/// Then the packages whose Supplements hold for the selection. Stops
/// when the search budget is spent.
fn weak_deps<'a>(u: &Universe<'a>, st: &mut State<'a>) {
    // A recommendation that failed is tried again only once the selection
    // has grown since (something new may have made it possible).
    let mut failed_at: BTreeMap<(String, String), usize> = BTreeMap::new();
    // Packages with Supplements, newest first per name, each entry parsed
    // once (a distribution has thousands).
    let mut supplementing: Vec<(&RpmPackage, Vec<Rich>)> = Vec::new();
    for versions in u.by_name.values() {
        for p in versions.iter().filter(|p| !p.supplements.is_empty()) {
            let entries: Vec<Rich> = p
                .supplements
                .iter()
                .filter_map(|d| match rich::parse(&d.name) {
                    Ok(Rich::Dep(_)) | Err(_) if !d.name.starts_with('(') => {
                        Some(Rich::Dep(d.clone()))
                    }
                    Ok(r) => Some(r),
                    Err(e) => {
                        tracing::info!("{}: Supplements {d} not understood: {e}", p.nevra());
                        None
                    }
                })
                .collect();
            supplementing.push((p, entries));
        }
    }
    loop {
        let mut added = false;
        let selected: Vec<&RpmPackage> = st.selected.values().copied().collect();
        for p in selected {
            for d in &p.recommends {
                let rich = if d.name.starts_with('(') {
                    match rich::parse(&d.name) {
                        Ok(r) => Some(r),
                        Err(e) => {
                            tracing::info!("{}: recommended {d} left out: {e}", p.name);
                            continue;
                        }
                    }
                } else {
                    None
                };
                let met = match &rich {
                    Some(r) => st.rich_met(r),
                    None => st.met(d) || u.providers(d).is_empty(),
                };
                if met {
                    continue;
                }
                let key = (p.name.clone(), d.to_string());
                if failed_at.get(&key) == Some(&st.selected.len()) {
                    continue;
                }
                let saved = st.clone();
                let who = format!("{} (recommends)", p.name);
                let tried = match &rich {
                    Some(r) => rich_require(u, st, r, p, &d.name),
                    None => satisfy(u, st, d, &who, std::slice::from_ref(&p.name)),
                };
                match tried {
                    Ok(()) => added = true,
                    Err(e @ ResolveError::TooComplex(_)) => {
                        *st = saved;
                        return out_of_budget(&e);
                    }
                    Err(e) => {
                        tracing::info!("{}: recommended {d} left out: {e}", p.name);
                        *st = saved;
                        failed_at.insert(key, st.selected.len());
                    }
                }
            }
        }
        // Supplements: a package that says it supplements what is
        // selected comes in too, as dnf installs reverse weak
        // dependencies (its newest version that does).
        for (p, entries) in &supplementing {
            if st.selected.contains_key(p.name.as_str()) || st.exclude.contains(&p.name) {
                continue;
            }
            if !entries.iter().any(|r| strictly_met(st, r)) {
                continue;
            }
            let key = (p.name.clone(), "(supplements)".to_string());
            if failed_at.get(&key) == Some(&st.selected.len()) {
                continue;
            }
            let saved = st.clone();
            let d = Dep {
                name: p.name.clone(),
                range: Some((Op::Eq, p.evr.clone())),
            };
            let who = format!("{} (supplements)", p.name);
            match satisfy(u, st, &d, &who, &[]) {
                Ok(()) => added = true,
                Err(e @ ResolveError::TooComplex(_)) => {
                    *st = saved;
                    return out_of_budget(&e);
                }
                Err(e) => {
                    tracing::info!("{}: supplementing package left out: {e}", p.nevra());
                    *st = saved;
                    failed_at.insert(key, st.selected.len());
                }
            }
        }
        if !added {
            return;
        }
    }
}

/// Whether a Supplements entry holds for the selection. Stricter than
/// libsolv, deliberately: `(a if b)` holds only when `b` and `a` are
/// selected (a condition not met supplements nothing), where libsolv
/// reads it as `a or not b`.
fn strictly_met(st: &State<'_>, r: &Rich) -> bool {
    match r {
        Rich::Dep(d) => st.met(d),
        Rich::And(v) => v.iter().all(|r| strictly_met(st, r)),
        Rich::Or(v) => v.iter().any(|r| strictly_met(st, r)),
        Rich::If(then, cond, els) => match strictly_met(st, cond) {
            true => strictly_met(st, then),
            false => els.as_ref().is_some_and(|e| strictly_met(st, e)),
        },
        Rich::Unless(then, cond, els) => match strictly_met(st, cond) {
            false => strictly_met(st, then),
            true => els.as_ref().is_some_and(|e| strictly_met(st, e)),
        },
    }
}

/// Stops adding weak dependencies when the search budget is spent: those
/// not added yet are left out, and the build says so.
fn out_of_budget(e: &ResolveError) {
    tracing::warn!("weak dependencies: {e}; the remaining Recommends and Supplements are left out");
}

fn satisfy<'a>(
    u: &Universe<'a>,
    st: &mut State<'a>,
    d: &Dep,
    who: &str,
    chain: &[String],
) -> Result<(), ResolveError> {
    let mut reasons = Vec::new();
    let provs = u.providers(d);
    if provs.is_empty() {
        // Say what exists under that name, if anything, so that a version
        // mismatch reads as one.
        match u.by_name.get(d.name.as_str()) {
            Some(v) => {
                let have: Vec<String> = v.iter().map(|p| p.evr.to_string()).collect();
                reasons.push(format!(
                    "{} is only available as {}",
                    d.name,
                    have.join(", ")
                ));
            }
            None => reasons.push(format!("nothing provides {}", d.name)),
        }
    }
    let mut first_failure = None;
    for p in provs {
        if st.exclude.contains(&p.name) {
            reasons.push(format!("{} is excluded by the recipe", p.nevra()));
            continue;
        }
        if let Some(s) = st.selected.get(p.name.as_str()) {
            let by = st.chain(&s.name).join(" -> ");
            reasons.push(format!(
                "{} would be needed but {} is already selected (required by: {by})",
                p.nevra(),
                s.nevra(),
            ));
            continue;
        }
        if let Some((a, b, rel)) = st.conflict(p) {
            reasons.push(format!("{a} conflicts with {b} ({rel})"));
            continue;
        }
        // dnf installs the replacement instead; `p` only when the
        // replacement cannot be installed. Either is tried with its
        // requirements, and the selection rolled back when that fails, so
        // the next candidate gets its chance (backtracking).
        let replacement = u.obsoleter(p, d, st);
        for c in replacement.into_iter().chain(std::iter::once(p)) {
            let tried = u.attempts.get() + 1;
            if tried > MAX_ATTEMPTS {
                return Err(ResolveError::TooComplex(MAX_ATTEMPTS));
            }
            u.attempts.set(tried);
            let saved = st.clone();
            match install(u, st, c, who, chain) {
                Ok(()) => return Ok(()),
                Err(e @ ResolveError::TooComplex(_)) => return Err(e),
                Err(e) => {
                    *st = saved;
                    if !std::ptr::eq(c, p) {
                        reasons.push(format!(
                            "{} is obsoleted by {}, which cannot be installed: {e}",
                            p.nevra(),
                            c.nevra()
                        ));
                    }
                    // The best candidate's failure explains best.
                    first_failure.get_or_insert(e);
                }
            }
        }
    }
    if let Some(e) = first_failure {
        return Err(e);
    }
    reasons.dedup();
    Err(ResolveError::Unsatisfiable {
        package: who.to_string(),
        requirement: d.to_string(),
        reasons,
        chain: chain.to_vec(),
    })
}

/// Selects `p` and satisfies its requirements.
fn install<'a>(
    u: &Universe<'a>,
    st: &mut State<'a>,
    p: &'a RpmPackage,
    who: &str,
    chain: &[String],
) -> Result<(), ResolveError> {
    st.selected.insert(&p.name, p);
    st.parent
        .entry(p.name.clone())
        .or_insert_with(|| chain.last().cloned().unwrap_or_else(|| who.to_string()));
    requires_of(u, st, p)
}

/// Installation order: requirements before the packages needing them,
/// deterministic; cycles are cut where the walk meets them, as rpm does.
pub fn install_order(pkgs: &[&RpmPackage]) -> Vec<usize> {
    let mut state = vec![0u8; pkgs.len()];
    let mut out = Vec::with_capacity(pkgs.len());
    fn visit(i: usize, pkgs: &[&RpmPackage], state: &mut [u8], out: &mut Vec<usize>) {
        if state[i] != 0 {
            return;
        }
        state[i] = 1;
        for d in &pkgs[i].requires {
            let names: Vec<&str> = if d.name.starts_with('(') {
                // Every capability the expression mentions orders before.
                d.name
                    .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
                    .filter(|w| !w.is_empty())
                    .collect()
            } else {
                vec![d.name.as_str()]
            };
            for n in names {
                let dep = Dep::any(n);
                if let Some(j) = pkgs.iter().position(|p| p.satisfies(&dep))
                    && j != i
                {
                    visit(j, pkgs, state, out);
                }
            }
        }
        state[i] = 2;
        out.push(i);
    }
    for i in 0..pkgs.len() {
        visit(i, pkgs, &mut state, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpm::package::Origin;
    use crate::rpm::version::{Evr, Op};

    fn pkg(name: &str, evr: &str, requires: &[&str], provides: &[&str]) -> RpmPackage {
        let dep = |s: &&str| match rich::parse(s).unwrap() {
            Rich::Dep(d) => d,
            _ => Dep::any(s),
        };
        let mut p = RpmPackage {
            name: name.into(),
            evr: Evr::parse(evr).unwrap(),
            arch: "x86_64".into(),
            sha256: "0".repeat(64),
            size: 1,
            location: format!("{name}.rpm"),
            origin: Origin::Repo(0),
            build_time: 0,
            provides: provides.iter().map(dep).collect(),
            requires: requires
                .iter()
                .map(|s| {
                    if s.starts_with('(') {
                        Dep::any(s)
                    } else {
                        dep(s)
                    }
                })
                .collect(),
            conflicts: vec![],
            obsoletes: vec![],
            recommends: vec![],
            supplements: vec![],
            files: vec![],
        };
        p.add_self_provide();
        p
    }

    fn names(v: &[&RpmPackage]) -> Vec<String> {
        v.iter().map(|p| p.nevra()).collect()
    }

    fn req(p: &[&str]) -> Request {
        Request {
            packages: p.iter().map(|s| s.to_string()).collect(),
            arch: "x86_64".into(),
            ..Request::default()
        }
    }

    /// [`req`] with weak dependencies.
    fn weak(p: &[&str]) -> Request {
        Request {
            weak_deps: true,
            ..req(p)
        }
    }

    #[test]
    fn recommends_are_added_when_asked_for_and_possible() {
        let dep = |s: &str| match rich::parse(s).unwrap() {
            Rich::Dep(d) => d,
            _ => unreachable!(),
        };
        let mut app = pkg("app", "1.0-1", &[], &[]);
        app.recommends = vec![dep("app-docs"), dep("app-extra"), dep("app-gone")];
        let mut docs = pkg("app-docs", "1.0-1", &[], &[]);
        docs.recommends = vec![dep("manpager")];
        let all = vec![
            app,
            docs,
            // Cannot be installed: its requirement does not exist.
            pkg("app-extra", "1.0-1", &["nowhere"], &[]),
            pkg("manpager", "1.0-1", &[], &[]),
        ];
        let u = Universe::new(&all, "x86_64");
        let got = resolve(&u, &all, &req(&["app"])).unwrap();
        assert_eq!(names(&got), ["app-1.0-1.x86_64"], "off by default");
        let mut r = weak(&["app"]);
        let got = resolve(&u, &all, &r).unwrap();
        // Recommends of recommended packages too; the impossible one and
        // the missing one are left out without an error.
        assert_eq!(
            names(&got),
            [
                "app-1.0-1.x86_64",
                "app-docs-1.0-1.x86_64",
                "manpager-1.0-1.x86_64"
            ]
        );
        r.exclude = vec!["app-d?cs".into()];
        let got = resolve(&u, &all, &r).unwrap();
        assert_eq!(names(&got), ["app-1.0-1.x86_64"]);
    }

    #[test]
    fn rich_recommends_follow_their_conditions() {
        let mut app = pkg("app", "1.0-1", &[], &[]);
        app.recommends = vec![
            Dep::any("(app-gtk if gui)"),
            Dep::any("(app-tui unless gui)"),
            Dep::any("(tool-a or tool-b)"),
            Dep::any("(app-docs and manpager)"),
            Dep::any("(broken"),
        ];
        let all = vec![
            app,
            pkg("gui", "1.0-1", &[], &[]),
            pkg("app-gtk", "1.0-1", &[], &[]),
            pkg("app-tui", "1.0-1", &[], &[]),
            // Cannot be installed: the other alternative is taken.
            pkg("tool-a", "1.0-1", &["nowhere"], &[]),
            pkg("tool-b", "1.0-1", &[], &[]),
            // One half of an `and` missing: neither half goes in.
            pkg("app-docs", "1.0-1", &[], &[]),
        ];
        let u = Universe::new(&all, "x86_64");
        let r = weak(&["app"]);
        let got = resolve(&u, &all, &r).unwrap();
        assert_eq!(
            names(&got),
            [
                "app-1.0-1.x86_64",
                "app-tui-1.0-1.x86_64",
                "tool-b-1.0-1.x86_64"
            ]
        );
        let r = weak(&["app", "gui"]);
        let got = resolve(&u, &all, &r).unwrap();
        assert_eq!(
            names(&got),
            [
                "app-1.0-1.x86_64",
                "app-gtk-1.0-1.x86_64",
                "gui-1.0-1.x86_64",
                "tool-b-1.0-1.x86_64"
            ]
        );
    }

    #[test]
    fn an_excluded_local_file_is_an_error() {
        let mut local = pkg("tool", "1.0-1", &[], &[]);
        local.origin = Origin::Local("tool-1.0-1.rpm".into());
        let all = vec![local];
        let u = Universe::new(&all, "x86_64");
        let r = Request {
            local: vec![0],
            exclude: vec!["to*".into()],
            ..req(&[])
        };
        let e = resolve(&u, &all, &r).unwrap_err().to_string();
        assert!(e.contains("which `exclude` keeps out"), "{e}");
    }

    #[test]
    fn supplementing_packages_come_in_with_what_they_supplement() {
        let mut lang = pkg("app-langpack", "1.0-1", &[], &[]);
        lang.supplements = vec![Dep::any("app")];
        let mut gtk = pkg("app-gtk-theme", "1.0-1", &[], &[]);
        gtk.supplements = vec![Dep::any("(app and gui)")];
        // A condition not met supplements nothing.
        let mut odd = pkg("app-odd", "1.0-1", &[], &[]);
        odd.supplements = vec![Dep::any("(app if nothere)")];
        // Cannot be installed: left out without an error.
        let mut broken = pkg("app-broken", "1.0-1", &["nowhere"], &[]);
        broken.supplements = vec![Dep::any("app")];
        let all = vec![
            pkg("app", "1.0-1", &[], &[]),
            pkg("gui", "1.0-1", &[], &[]),
            lang,
            gtk,
            odd,
            broken,
        ];
        let u = Universe::new(&all, "x86_64");
        let got = resolve(&u, &all, &req(&["app"])).unwrap();
        assert_eq!(names(&got), ["app-1.0-1.x86_64"], "off by default");
        let r = weak(&["app"]);
        let got = resolve(&u, &all, &r).unwrap();
        assert_eq!(
            names(&got),
            ["app-1.0-1.x86_64", "app-langpack-1.0-1.x86_64"]
        );
        let r = weak(&["app", "gui"]);
        let got = resolve(&u, &all, &r).unwrap();
        assert_eq!(
            names(&got),
            [
                "app-1.0-1.x86_64",
                "app-gtk-theme-1.0-1.x86_64",
                "app-langpack-1.0-1.x86_64",
                "gui-1.0-1.x86_64"
            ]
        );
    }

    #[test]
    fn a_dead_end_candidate_is_undone_and_the_next_one_tried() {
        let all = vec![
            pkg("app", "1.0-1", &["lib"], &[]),
            // The newest lib needs something nobody has: the older one is
            // taken instead, as is another provider of a capability.
            pkg("lib", "2.0-1", &["unobtainium"], &[]),
            pkg("lib", "1.0-1", &["helper"], &[]),
            pkg("helper", "1.0-1", &[], &[]),
            pkg("aaa-server", "1.0-1", &["unobtainium"], &["server"]),
            pkg("bbb-server", "1.0-1", &[], &["server"]),
        ];
        let u = Universe::new(&all, "x86_64");
        let got = resolve(&u, &all, &req(&["app", "server"])).unwrap();
        assert_eq!(
            names(&got),
            [
                "app-1.0-1.x86_64",
                "bbb-server-1.0-1.x86_64",
                "helper-1.0-1.x86_64",
                "lib-1.0-1.x86_64"
            ]
        );
        // When every candidate fails, the best one's failure is reported.
        let all = vec![
            pkg("app", "1.0-1", &["lib"], &[]),
            pkg("lib", "2.0-1", &["unobtainium"], &[]),
            pkg("lib", "1.0-1", &["unobtainium >= 2"], &[]),
        ];
        let u = Universe::new(&all, "x86_64");
        let e = resolve(&u, &all, &req(&["app"])).unwrap_err().to_string();
        assert!(
            e.contains("lib-2.0-1.x86_64's requirement unobtainium"),
            "{e}"
        );
    }

    #[test]
    fn obsoleted_packages_give_way_to_their_replacement() {
        let mut new = pkg("newtool", "2.0-1", &[], &["oldtool = 2.0"]);
        new.obsoletes
            .push(match rich::parse("oldtool < 2.0").unwrap() {
                Rich::Dep(d) => d,
                _ => unreachable!(),
            });
        let all = vec![
            pkg("oldtool", "1.0-1", &[], &[]),
            new,
            pkg("app", "1.0-1", &["oldtool"], &[]),
        ];
        let u = Universe::new(&all, "x86_64");
        // Asked for by name or needed by another package: the replacement.
        let got = resolve(&u, &all, &req(&["oldtool"])).unwrap();
        assert_eq!(names(&got), ["newtool-2.0-1.x86_64"]);
        let got = resolve(&u, &all, &req(&["app"])).unwrap();
        assert_eq!(names(&got), ["app-1.0-1.x86_64", "newtool-2.0-1.x86_64"]);
        // With the replacement excluded, the old package is still there.
        let mut r = req(&["oldtool"]);
        r.exclude = vec!["newtool".into()];
        let got = resolve(&u, &all, &r).unwrap();
        assert_eq!(names(&got), ["oldtool-1.0-1.x86_64"]);
        // Both at once cannot be installed: one replaces the other.
        let e = resolve(&u, &all, &req(&["newtool", "oldtool < 2.0"])).unwrap_err();
        assert!(e.to_string().contains("obsolete"), "{e}");
    }

    #[test]
    fn obsoletes_choose_the_replacement_and_fall_back_to_the_original() {
        let dep = |s: &str| match rich::parse(s).unwrap() {
            Rich::Dep(d) => d,
            _ => unreachable!(),
        };
        // Two providers of a capability, the first obsoleted by a third:
        // the replacement is installed, not the next provider by name.
        let mut zreplacement = pkg("zreplacement", "2.0-1", &[], &["feature"]);
        zreplacement.obsoletes = vec![dep("afirst")];
        let all = vec![
            pkg("afirst", "1.0-1", &[], &["feature"]),
            pkg("balt", "1.0-1", &[], &["feature"]),
            zreplacement,
        ];
        let u = Universe::new(&all, "x86_64");
        let got = resolve(&u, &all, &req(&["feature"])).unwrap();
        assert_eq!(names(&got), ["zreplacement-2.0-1.x86_64"]);

        // Two packages obsoleting each other: one of them is installed.
        let mut a = pkg("a", "1.0-1", &[], &["both"]);
        a.obsoletes = vec![dep("b")];
        let mut b = pkg("b", "1.0-1", &[], &["both"]);
        b.obsoletes = vec![dep("a")];
        let all = vec![a, b];
        let u = Universe::new(&all, "x86_64");
        assert_eq!(resolve(&u, &all, &req(&["both"])).unwrap().len(), 1);

        // A replacement that cannot be installed leaves the original.
        let mut broken = pkg("znewer", "2.0-1", &["missing-lib"], &["thing"]);
        broken.obsoletes = vec![dep("aolder")];
        let all = vec![pkg("aolder", "1.0-1", &[], &["thing"]), broken];
        let u = Universe::new(&all, "x86_64");
        let got = resolve(&u, &all, &req(&["thing"])).unwrap();
        assert_eq!(names(&got), ["aolder-1.0-1.x86_64"]);
    }

    #[test]
    fn versions_virtuals_and_files() {
        let mut sh = pkg("bash", "5.2-1", &[], &["/bin/sh"]);
        sh.files.push("/usr/bin/bash".into());
        let all = vec![
            pkg(
                "app",
                "1.0-1",
                &["libfoo >= 2", "/usr/bin/bash", "webserver"],
                &[],
            ),
            pkg("libfoo", "1.9-1", &[], &[]),
            pkg("libfoo", "2.1-1", &[], &[]),
            pkg("libfoo", "3.0~rc1-1", &["libbar"], &[]),
            pkg("nginx", "1.0-1", &[], &["webserver"]),
            sh,
        ];
        let u = Universe::new(&all, "x86_64");
        // 3.0~rc1 is newest but needs a missing libbar: it is undone and
        // 2.1 taken instead.
        let got = resolve(&u, &all, &req(&["app"])).unwrap();
        assert_eq!(
            names(&got),
            [
                "app-1.0-1.x86_64",
                "bash-5.2-1.x86_64",
                "libfoo-2.1-1.x86_64",
                "nginx-1.0-1.x86_64"
            ]
        );
        let order = install_order(&got);
        assert_eq!(order.last(), Some(&0), "app goes last");
    }

    #[test]
    fn explained_failures() {
        let all = vec![
            pkg("a", "1-1", &["b = 1.0"], &[]),
            pkg("b", "2.0-1", &[], &[]),
            pkg("c", "1-1", &["missing-lib"], &[]),
        ];
        let u = Universe::new(&all, "x86_64");
        let e = resolve(&u, &all, &req(&["a"])).unwrap_err().to_string();
        assert!(e.contains("requirement b = 1.0"), "{e}");
        assert!(e.contains("b is only available as 2.0-1"), "{e}");
        let e = resolve(&u, &all, &req(&["c"])).unwrap_err().to_string();
        assert!(e.contains("nothing provides missing-lib"), "{e}");
        let e = resolve(&u, &all, &req(&["bb"])).unwrap_err();
        assert!(
            matches!(&e, ResolveError::Unknown { close, .. } if close.contains(&"b".to_string())),
            "{e}"
        );
        // A version already chosen by the recipe cannot be replaced.
        let all = vec![
            pkg("a", "1-1", &["b < 2"], &[]),
            pkg("b", "2.0-1", &[], &[]),
            pkg("b", "1.0-1", &[], &[]),
        ];
        let u = Universe::new(&all, "x86_64");
        let e = resolve(&u, &all, &req(&["b", "a"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("b-1.0-1.x86_64 would be needed but b-2.0-1.x86_64 is already selected"),
            "{e}"
        );
        let got = resolve(&u, &all, &req(&["a"])).unwrap();
        assert_eq!(names(&got), ["a-1-1.x86_64", "b-1.0-1.x86_64"]);
        // Excluded.
        let mut r = req(&["a"]);
        r.exclude = vec!["b".into()];
        let e = resolve(&u, &all, &r).unwrap_err().to_string();
        assert!(e.contains("excluded"), "{e}");
    }

    #[test]
    fn rich_and_conflicts() {
        let mut x = pkg("x", "1-1", &["(y or z)", "(w if z)"], &[]);
        x.conflicts.push(Dep {
            name: "y".into(),
            range: Some((Op::Lt, Evr::parse("5").unwrap())),
        });
        let all = vec![
            x,
            pkg("y", "1-1", &[], &[]),
            pkg("z", "1-1", &[], &[]),
            pkg("w", "1-1", &[], &[]),
        ];
        let u = Universe::new(&all, "x86_64");
        // y conflicts with x, so z is chosen, which brings w.
        let got = resolve(&u, &all, &req(&["x"])).unwrap();
        assert_eq!(
            names(&got),
            ["w-1-1.x86_64", "x-1-1.x86_64", "z-1-1.x86_64"]
        );
        let e = resolve(&u, &all, &req(&["y", "x"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("conflicts with y-1-1.x86_64"), "{e}");
    }
}
