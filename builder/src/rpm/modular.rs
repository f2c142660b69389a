//! Module streams (`modules.yaml`, EL 8 and 9 AppStream) and dnf's modular
//! filtering.
//!
//! A repository with modules lists, per module stream, the exact packages
//! (artifacts) that belong to it, and which stream of each module is the
//! default. dnf then hides packages by stream: a package of a stream that
//! is not active is invisible, and so is a package outside every module
//! whose name an active stream provides (the module's version wins over the
//! distribution's, whatever their versions). This module reads the metadata,
//! works out the active streams as dnf 4 does, and filters the package list
//! before dependency resolution.
//!
//! Which streams are active: those the recipe enables, the default streams
//! of the other modules (unless disabled), and the streams those need
//! (a module's `requires`), each in every context whose requirements the
//! enabled streams meet. All versions of an active context count, so an
//! older package of the stream stays installable. Checked against dnf's
//! `repoquery` in `builder/tests/rpm/modular.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

use super::package::{Origin, RpmPackage};

/// A problem with module metadata or with the modules a recipe asks for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleError {
    /// `modules.yaml` cannot be read.
    #[error("modules.yaml document {document}: {message}")]
    Parse {
        /// 1-based document number in the YAML stream.
        document: usize,
        /// What is wrong.
        message: String,
    },
    /// The recipe names a module no repository has.
    #[error("no repository has a module named {name:?}{}", close_text(.close))]
    UnknownModule {
        /// The name asked for.
        name: String,
        /// Module names that exist and look similar.
        close: Vec<String>,
    },
    /// The recipe names a stream the module does not have.
    #[error("module {name} has no stream {stream:?} (its streams: {})", .streams.join(", "))]
    UnknownStream {
        /// The module.
        name: String,
        /// The stream asked for.
        stream: String,
        /// The streams it has.
        streams: Vec<String>,
    },
    /// A module named without a stream has several and no default.
    #[error(
        "module {name} has several streams ({}) and no default; name one, e.g. \"{name}:{}\"",
        .streams.join(", "),
        .streams.last().map(String::as_str).unwrap_or("")
    )]
    NoDefault {
        /// The module.
        name: String,
        /// Its streams.
        streams: Vec<String>,
    },
    /// A stream the recipe enables cannot be: no context's requirements
    /// can be met.
    #[error("module stream {name}:{stream} cannot be enabled: {}", .reasons.join("; "))]
    Unsatisfiable {
        /// The module.
        name: String,
        /// The stream.
        stream: String,
        /// Per context, the requirement that is not met.
        reasons: Vec<String>,
    },
    /// A recipe entry is malformed or contradicts another.
    #[error("{0}")]
    Request(String),
}

fn close_text(close: &[String]) -> String {
    if close.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", close.join(", "))
    }
}

/// One module stream build (`document: modulemd`, version 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleStream {
    /// Module name (`nodejs`).
    pub name: String,
    /// Stream (`18`).
    pub stream: String,
    /// Build version; several may exist per stream.
    pub version: u64,
    /// Context: which set of dependencies this build was made for.
    pub context: String,
    /// Architecture (`x86_64`, `noarch`; empty when not given).
    pub arch: String,
    /// Alternative requirement sets: the build is usable when one of them
    /// is met. Each maps a module to the streams it accepts (empty: any;
    /// `-s`: any but `s`).
    pub requires: Vec<BTreeMap<String, Vec<String>>>,
    /// The binary and source packages of this build.
    pub artifacts: Vec<Nevra>,
}

/// `name-[epoch:]version-release.arch`, as module artifacts list them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nevra {
    /// Package name.
    pub name: String,
    /// Epoch (0 when not written).
    pub epoch: u32,
    /// Version.
    pub version: String,
    /// Release.
    pub release: String,
    /// Architecture (`src` for a source package).
    pub arch: String,
}

impl Nevra {
    /// Parses `name-[epoch:]version-release.arch`.
    pub fn parse(s: &str) -> Option<Nevra> {
        let (rest, arch) = s.rsplit_once('.')?;
        let (rest, release) = rest.rsplit_once('-')?;
        let (name, ev) = rest.rsplit_once('-')?;
        let (epoch, version) = match ev.split_once(':') {
            Some((e, v)) => (e.parse().ok()?, v),
            None => (0, ev),
        };
        if [name, version, release, arch].iter().any(|p| p.is_empty()) {
            return None;
        }
        Some(Nevra {
            name: name.into(),
            epoch,
            version: version.into(),
            release: release.into(),
            arch: arch.into(),
        })
    }

    /// The same key for a package from the repository.
    pub fn of(p: &RpmPackage) -> Nevra {
        Nevra {
            name: p.name.clone(),
            epoch: p.evr.epoch,
            version: p.evr.version.clone(),
            release: p.evr.release.clone(),
            arch: p.arch.clone(),
        }
    }
}

/// Every module stream and default stream of the recipe's repositories.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleMetadata {
    /// Module stream builds.
    pub streams: Vec<ModuleStream>,
    /// Default stream per module (`modulemd-defaults`).
    pub defaults: BTreeMap<String, String>,
}

/// The fields vnfs reads from a modulemd or modulemd-defaults document;
/// the rest (profiles, descriptions, components, ...) is ignored.
/// Scalars are read as their text, so an unquoted stream `5.30` stays
/// `5.30`.
#[derive(Deserialize)]
struct Document {
    document: String,
    version: u64,
    #[serde(default)]
    data: Data,
}

#[derive(Deserialize, Default)]
struct Data {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    stream: Option<String>,
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    context: Option<String>,
    #[serde(default)]
    arch: Option<String>,
    #[serde(default)]
    dependencies: Vec<Dependencies>,
    #[serde(default)]
    artifacts: Option<Artifacts>,
    /// modulemd-defaults: the module it is for.
    #[serde(default)]
    module: Option<String>,
}

#[derive(Deserialize, Default)]
struct Dependencies {
    #[serde(default)]
    requires: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize, Default)]
struct Artifacts {
    #[serde(default)]
    rpms: Vec<String>,
}

impl ModuleMetadata {
    /// Parses a `modules.yaml` stream and adds what it holds. Documents
    /// other than `modulemd` (version 2) and `modulemd-defaults` (version
    /// 1), such as translations and obsoletes, are skipped.
    pub fn add_yaml(&mut self, text: &str) -> Result<(), ModuleError> {
        for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            let document = i + 1;
            let perr = |message: String| ModuleError::Parse { document, message };
            let doc = Document::deserialize(de).map_err(|e| perr(e.to_string()))?;
            match (doc.document.as_str(), doc.version) {
                ("modulemd", 2) => {
                    let d = doc.data;
                    let missing = |what: &str| perr(format!("modulemd without {what}"));
                    // A name becomes a file name in the image
                    // (/etc/dnf/modules.d/NAME.module) and a recipe key.
                    if let Some(n) = &d.name
                        && (n.starts_with('.')
                            || n.contains(|c: char| c == '/' || c == ':' || c.is_whitespace()))
                    {
                        return Err(perr(format!("bad module name {n:?}")));
                    }
                    let d = Data {
                        name: d.name.filter(|n| !n.is_empty()),
                        stream: d.stream.filter(|s| !s.is_empty()),
                        ..d
                    };
                    let artifacts = d.artifacts.map(|a| a.rpms).unwrap_or_default();
                    let artifacts = artifacts
                        .iter()
                        .map(|a| Nevra::parse(a).ok_or_else(|| perr(format!("bad artifact {a:?}"))))
                        .collect::<Result<_, _>>()?;
                    let requires = d.dependencies.into_iter().map(|x| x.requires).collect();
                    self.streams.push(ModuleStream {
                        name: d.name.ok_or_else(|| missing("a name"))?,
                        stream: d.stream.ok_or_else(|| missing("a stream"))?,
                        version: d.version.unwrap_or(0),
                        context: d.context.unwrap_or_default(),
                        arch: d.arch.unwrap_or_default(),
                        requires,
                        artifacts,
                    });
                }
                ("modulemd", v) => {
                    return Err(perr(format!(
                        "modulemd version {v} is not supported (version 2 is)"
                    )));
                }
                ("modulemd-defaults", 1) => {
                    let module = doc
                        .data
                        .module
                        .ok_or_else(|| perr("modulemd-defaults without a module".into()))?;
                    // A defaults document without a stream only sets
                    // profiles: the module has no default stream.
                    if let Some(s) = doc.data.stream.filter(|s| !s.is_empty()) {
                        self.defaults.insert(module, s);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether there is nothing modular at all.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// The streams of `name` whose builds fit `arch`, sorted.
    fn streams_of(&self, name: &str, arch: &str) -> Vec<String> {
        let set: BTreeSet<&str> = self
            .streams
            .iter()
            .filter(|m| m.name == name && fits(m, arch))
            .map(|m| m.stream.as_str())
            .collect();
        set.into_iter().map(str::to_string).collect()
    }
}

/// Whether a build is for the image's architecture.
fn fits(m: &ModuleStream, arch: &str) -> bool {
    m.arch.is_empty() || m.arch == "noarch" || m.arch == arch
}

/// What a recipe asks of the modules.
#[derive(Debug, Clone, Default)]
pub struct ModuleRequest {
    /// `name` or `name:stream` to enable (dnf's `module enable`).
    pub enable: Vec<String>,
    /// Module names to disable (dnf's `module disable`): no stream of it
    /// is active, and its packages outside modules become visible.
    pub disable: Vec<String>,
    /// dnf's `module_platform_id` (`platform:el9`): the platform stream
    /// builds' `platform` requirements are checked against. Unset: those
    /// requirements count as met.
    pub platform: Option<String>,
    /// The image's architecture.
    pub arch: String,
}

/// How a module stream came to be enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// The recipe names it.
    Recipe,
    /// An enabled stream requires it.
    Dependency,
    /// The repository's default stream.
    Default,
}

/// The outcome of [`select`]: what dnf would have enabled and which stream
/// builds are active.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Enabled streams by module, with why.
    pub enabled: BTreeMap<String, (String, Reason)>,
    /// Disabled modules.
    pub disabled: BTreeSet<String>,
    /// Indices into [`ModuleMetadata::streams`] of the active builds.
    pub active: BTreeSet<usize>,
    /// Default streams that cannot be active (their requirements are not
    /// met); dnf reports these and leaves the module inactive.
    pub warnings: Vec<String>,
}

impl Selection {
    /// The module states dnf keeps in `/etc/dnf/modules.d` for what the
    /// recipe enabled (and what those needed) or disabled, sorted by name.
    pub fn states(&self) -> Vec<ModuleState> {
        let mut v: Vec<ModuleState> = self
            .enabled
            .iter()
            .filter(|(_, (_, r))| *r != Reason::Default)
            .map(|(n, (s, _))| ModuleState {
                name: n.clone(),
                stream: s.clone(),
                state: "enabled".into(),
            })
            .chain(self.disabled.iter().map(|n| ModuleState {
                name: n.clone(),
                stream: String::new(),
                state: "disabled".into(),
            }))
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

/// One module's state as dnf records it, kept in the lock so that a
/// locked build (which reads no metadata) writes the same files.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleState {
    /// Module name.
    pub name: String,
    /// Enabled stream (empty when disabled).
    pub stream: String,
    /// `enabled` or `disabled`.
    pub state: String,
}

/// Splits `name[:stream]`.
fn split_spec(spec: &str) -> Result<(&str, Option<&str>), ModuleError> {
    let (name, stream) = match spec.split_once(':') {
        Some((n, s)) => (n, Some(s)),
        None => (spec, None),
    };
    let bad = |s: &str| s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == ':');
    if bad(name) || stream.is_some_and(bad) {
        return Err(ModuleError::Request(format!(
            "modules entry {spec:?} must be \"name\" or \"name:stream\""
        )));
    }
    Ok((name, stream))
}

/// Checks the recipe's entries' syntax and that no module is both enabled
/// and disabled (before any metadata is read).
pub fn validate(enable: &[String], disable: &[String]) -> Result<(), ModuleError> {
    let mut enabled = BTreeSet::new();
    for e in enable {
        let (name, _) = split_spec(e)?;
        if !enabled.insert(name) {
            return Err(ModuleError::Request(format!(
                "modules names {name} twice (one stream per module can be enabled)"
            )));
        }
    }
    for d in disable {
        let (name, stream) = split_spec(d)?;
        if stream.is_some() {
            return Err(ModuleError::Request(format!(
                "disable_modules entry {d:?}: a module is disabled as a whole; write {name:?}"
            )));
        }
        if enabled.contains(name) {
            return Err(ModuleError::Request(format!(
                "module {name} is both in modules and in disable_modules"
            )));
        }
    }
    Ok(())
}

/// Whether `stream` is among `accepted` (empty: any; `-s` entries exclude).
fn accepts(accepted: &[String], stream: &str) -> bool {
    let (neg, pos): (Vec<&String>, Vec<&String>) =
        accepted.iter().partition(|s| s.starts_with('-'));
    if neg.iter().any(|s| &s[1..] == stream) {
        return false;
    }
    pos.is_empty() || pos.iter().any(|s| *s == stream)
}

/// Decides which streams are enabled and which builds are active, as dnf
/// does for a fresh installation with the recipe's `module enable` and
/// `module disable` requests.
pub fn select(meta: &ModuleMetadata, req: &ModuleRequest) -> Result<Selection, ModuleError> {
    validate(&req.enable, &req.disable)?;
    let names: BTreeSet<&str> = meta
        .streams
        .iter()
        .filter(|m| fits(m, &req.arch))
        .map(|m| m.name.as_str())
        .collect();
    let mut sel = Selection::default();
    let unknown = |name: &str| ModuleError::UnknownModule {
        name: name.into(),
        close: close_names(&names, name),
    };
    for d in &req.disable {
        if !names.contains(d.as_str()) {
            return Err(unknown(d));
        }
        sel.disabled.insert(d.clone());
    }
    for e in &req.enable {
        let (name, stream) = split_spec(e)?;
        if !names.contains(name) {
            return Err(unknown(name));
        }
        let streams = meta.streams_of(name, &req.arch);
        let stream = match stream {
            Some(s) if streams.iter().any(|x| x == s) => s.to_string(),
            Some(s) => {
                return Err(ModuleError::UnknownStream {
                    name: name.into(),
                    stream: s.into(),
                    streams,
                });
            }
            None => match (meta.defaults.get(name), streams.as_slice()) {
                (Some(d), _) if streams.contains(d) => d.clone(),
                (_, [only]) => only.clone(),
                _ => {
                    return Err(ModuleError::NoDefault {
                        name: name.into(),
                        streams,
                    });
                }
            },
        };
        sel.enabled.insert(name.into(), (stream, Reason::Recipe));
    }
    for (name, stream) in &meta.defaults {
        if names.contains(name.as_str())
            && !sel.disabled.contains(name)
            && !sel.enabled.contains_key(name)
            && meta.streams_of(name, &req.arch).contains(stream)
        {
            sel.enabled
                .insert(name.clone(), (stream.clone(), Reason::Default));
        }
    }
    pull_dependencies(meta, req, &mut sel);
    // A default stream without a usable build is dropped, as dnf leaves
    // it; streams that relied on it are then checked again.
    let unmet = loop {
        let unmet = activate(meta, req, &mut sel);
        let dropped: Vec<String> = sel
            .enabled
            .iter()
            .filter(|(n, (_, r))| *r == Reason::Default && unmet.contains_key(*n))
            .map(|(n, _)| n.clone())
            .collect();
        if dropped.is_empty() {
            break unmet;
        }
        for n in dropped {
            if let Some((stream, _)) = sel.enabled.remove(&n) {
                sel.warnings.push(format!(
                    "default stream {n}:{stream} is left inactive: {}",
                    unmet[&n].join("; ")
                ));
            }
        }
    };
    if let Some((name, reasons)) = unmet.into_iter().next() {
        let stream = sel.enabled[&name].0.clone();
        return Err(ModuleError::Unsatisfiable {
            name,
            stream,
            reasons,
        });
    }
    Ok(sel)
}

/// Marks active every build of an enabled stream whose requirements the
/// enabled streams meet. Returns, for each enabled stream left without an
/// active build, why each of its builds is not usable.
fn activate(
    meta: &ModuleMetadata,
    req: &ModuleRequest,
    sel: &mut Selection,
) -> BTreeMap<String, Vec<String>> {
    sel.active.clear();
    let mut why: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, m) in meta.streams.iter().enumerate() {
        if !fits(m, &req.arch) || sel.enabled.get(&m.name).map(|(s, _)| s) != Some(&m.stream) {
            continue;
        }
        match unmet_requirement(m, req, sel) {
            None => {
                sel.active.insert(i);
            }
            Some(need) => {
                let reasons = why.entry(m.name.clone()).or_default();
                let r = format!("context {} needs {need}", m.context);
                if !reasons.contains(&r) {
                    reasons.push(r);
                }
            }
        }
    }
    let active: BTreeSet<&str> = sel
        .active
        .iter()
        .map(|&i| meta.streams[i].name.as_str())
        .collect();
    why.retain(|name, _| !active.contains(name.as_str()));
    why
}

/// Enables the streams enabled streams require, until nothing changes: for
/// a stream none of whose builds is usable yet, the first build (newest
/// version, then context name) whose missing modules can each be given one
/// stream (their default if accepted, else their only accepted stream)
/// gets them.
fn pull_dependencies(meta: &ModuleMetadata, req: &ModuleRequest, sel: &mut Selection) {
    let mut order: Vec<&ModuleStream> =
        meta.streams.iter().filter(|m| fits(m, &req.arch)).collect();
    order.sort_by(|a, b| {
        b.version
            .cmp(&a.version)
            .then_with(|| a.context.cmp(&b.context))
    });
    loop {
        let mut added = Vec::new();
        let mut because = Reason::Dependency;
        // Recipe streams first, then dependencies, then defaults: the
        // streams a user asked for pick their dependencies' streams.
        let mut enabled: Vec<(&String, &(String, Reason))> = sel.enabled.iter().collect();
        enabled.sort_by_key(|(_, (_, r))| *r);
        'streams: for (name, (stream, reason)) in enabled {
            let builds: Vec<&&ModuleStream> = order
                .iter()
                .filter(|m| m.name == *name && m.stream == *stream)
                .collect();
            if builds
                .iter()
                .any(|m| unmet_requirement(m, req, sel).is_none())
            {
                continue;
            }
            for m in builds {
                if let Some(extra) = missing_streams(meta, m, req, sel) {
                    added = extra;
                    // What a default stream needs is as implicit as the
                    // default itself: dnf records no state for it.
                    because = match reason {
                        Reason::Default => Reason::Default,
                        _ => Reason::Dependency,
                    };
                    break 'streams;
                }
            }
        }
        if added.is_empty() {
            return;
        }
        for (n, s) in added {
            sel.enabled.insert(n, (s, because));
        }
    }
}

/// For a build some of whose requirement sets name modules not enabled
/// yet: the streams to enable so that one set is met, if each missing
/// module has exactly one fitting choice. `None` when no set can be met
/// that way.
fn missing_streams(
    meta: &ModuleMetadata,
    m: &ModuleStream,
    req: &ModuleRequest,
    sel: &Selection,
) -> Option<Vec<(String, String)>> {
    let sets: Vec<BTreeMap<String, Vec<String>>> = if m.requires.is_empty() {
        vec![BTreeMap::new()]
    } else {
        m.requires.clone()
    };
    'sets: for set in &sets {
        let mut extra = Vec::new();
        for (module, accepted) in set {
            if module == "platform" {
                if !platform_ok(req, accepted) {
                    continue 'sets;
                }
                continue;
            }
            if let Some((s, _)) = sel.enabled.get(module) {
                if !accepts(accepted, s) {
                    continue 'sets;
                }
                continue;
            }
            if sel.disabled.contains(module) {
                continue 'sets;
            }
            let streams = meta.streams_of(module, &req.arch);
            let choice = match meta.defaults.get(module) {
                Some(d) if streams.contains(d) && accepts(accepted, d) => Some(d.clone()),
                _ => {
                    let fitting: Vec<&String> =
                        streams.iter().filter(|s| accepts(accepted, s)).collect();
                    match fitting.as_slice() {
                        [one] => Some((*one).clone()),
                        _ => None,
                    }
                }
            };
            match choice {
                Some(s) => extra.push((module.clone(), s)),
                None => continue 'sets,
            }
        }
        if !extra.is_empty() {
            return Some(extra);
        }
    }
    None
}

/// Whether the platform requirement is met (always, when no platform is
/// configured).
fn platform_ok(req: &ModuleRequest, accepted: &[String]) -> bool {
    match &req.platform {
        None => true,
        Some(p) => {
            let stream = p.strip_prefix("platform:").unwrap_or(p);
            accepts(accepted, stream)
        }
    }
}

/// The first requirement of `m` the enabled streams do not meet, as
/// `module:[streams]`; `None` when some requirement set is met.
fn unmet_requirement(m: &ModuleStream, req: &ModuleRequest, sel: &Selection) -> Option<String> {
    if m.requires.is_empty() {
        return None;
    }
    let mut first = None;
    for set in &m.requires {
        let bad = set.iter().find(|(module, accepted)| {
            if module.as_str() == "platform" {
                return !platform_ok(req, accepted);
            }
            match sel.enabled.get(*module) {
                Some((s, _)) => !accepts(accepted, s),
                None => true,
            }
        });
        match bad {
            None => return None,
            Some((module, accepted)) => {
                first.get_or_insert_with(|| format!("{module}:[{}]", accepted.join(", ")));
            }
        }
    }
    first
}

/// Up to three module names close to `name`.
fn close_names(names: &BTreeSet<&str>, name: &str) -> Vec<String> {
    let mut scored: Vec<(usize, &str)> = names
        .iter()
        .map(|n| (super::resolve::levenshtein(name, n), *n))
        .filter(|(d, _)| *d <= (name.len() / 3).max(2))
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, n)| n.into()).collect()
}

/// What modular filtering left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filtered {
    /// Packages of streams that are not active.
    pub inactive: usize,
    /// Packages outside modules whose name an active stream provides.
    pub shadowed: usize,
}

/// Applies dnf's modular filtering to the repositories' packages: keeps a
/// package of an active build, drops one of an inactive build, and drops
/// one outside modules whose name an active build provides. Local files
/// and packages of repositories `exempt` says so of (dnf's
/// `module_hotfixes`) are kept.
pub fn filter(
    packages: Vec<RpmPackage>,
    meta: &ModuleMetadata,
    sel: &Selection,
    exempt: impl Fn(usize) -> bool,
) -> (Vec<RpmPackage>, Filtered) {
    let mut include = BTreeSet::new();
    let mut exclude = BTreeSet::new();
    let mut active_names = BTreeSet::new();
    for (i, m) in meta.streams.iter().enumerate() {
        let active = sel.active.contains(&i);
        for a in &m.artifacts {
            if active {
                include.insert(a);
                if a.arch != "src" && a.arch != "nosrc" {
                    active_names.insert(a.name.as_str());
                }
            } else {
                exclude.insert(a);
            }
        }
    }
    let mut stats = Filtered::default();
    let kept = packages
        .into_iter()
        .filter(|p| {
            let Origin::Repo(r) = p.origin else {
                return true;
            };
            if exempt(r) {
                return true;
            }
            let key = Nevra::of(p);
            if include.contains(&key) {
                true
            } else if exclude.contains(&key) {
                stats.inactive += 1;
                false
            } else if active_names.contains(p.name.as_str()) {
                stats.shadowed += 1;
                false
            } else {
                true
            }
        })
        .collect();
    (kept, stats)
}

/// Writes dnf's module state files (`/etc/dnf/modules.d/NAME.module`) into
/// the image, so that dnf run there later sees the streams the image was
/// built with. Written through the image root (steps' `write_inside`), so
/// a symlink the packages ship cannot lead the write out of the image.
pub fn write_states(root: &Path, states: &[ModuleState]) -> std::io::Result<()> {
    if states.is_empty() {
        return Ok(());
    }
    let root = crate::unpack::Root::open(root)?;
    for s in states {
        let text = format!(
            "[{n}]\nname={n}\nstream={}\nprofiles=\nstate={}\n",
            s.stream,
            s.state,
            n = s.name
        );
        let path = format!("etc/dnf/modules.d/{}.module", s.name);
        crate::steps::write_inside(&root, &path, text.as_bytes(), 0o644, 0, 0)
            .map_err(|e| std::io::Error::other(format!("{path}: {e}")))?;
    }
    Ok(())
}

impl ModuleMetadata {
    /// Merges another repository's module metadata: every stream build is
    /// kept; for a module with defaults in several repositories, the first
    /// repository's default stream holds.
    pub fn merge(&mut self, other: ModuleMetadata) {
        self.streams.extend(other.streams);
        for (name, stream) in other.defaults {
            self.defaults.entry(name).or_insert(stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(
        name: &str,
        stream: &str,
        ctx: &str,
        requires: &[(&str, &[&str])],
        rpms: &[&str],
    ) -> String {
        let req: Vec<String> = requires
            .iter()
            .map(|(m, s)| format!("{m}: [{}]", s.join(", ")))
            .collect();
        let arts: Vec<String> = rpms.iter().map(|r| format!("      - {r}\n")).collect();
        format!(
            "---\ndocument: modulemd\nversion: 2\ndata:\n  name: {name}\n  stream: \"{stream}\"\n  version: 1\n  context: {ctx}\n  arch: x86_64\n  summary: s\n  description: d\n  license:\n    module: [MIT]\n  dependencies:\n  - requires: {{{}}}\n  profiles:\n    common:\n      rpms: [x]\n  artifacts:\n    rpms:\n{}...\n",
            req.join(", "),
            arts.concat()
        )
    }

    fn defaults(module: &str, stream: &str) -> String {
        format!(
            "---\ndocument: modulemd-defaults\nversion: 1\ndata:\n  module: {module}\n  stream: {stream}\n  profiles:\n    {stream}: [common]\n...\n"
        )
    }

    /// A default stream whose only build needs another platform.
    fn qux_default_for_el8() -> String {
        [
            stream(
                "qux",
                "2",
                "c8",
                &[("platform", &["el8"])],
                &["qux-0:2-1.x86_64"],
            ),
            defaults("qux", "2"),
        ]
        .concat()
    }

    fn meta(docs: &[String]) -> ModuleMetadata {
        let mut m = ModuleMetadata::default();
        m.add_yaml(&docs.concat()).unwrap();
        m
    }

    fn req(enable: &[&str], disable: &[&str]) -> ModuleRequest {
        ModuleRequest {
            enable: enable.iter().map(|s| s.to_string()).collect(),
            disable: disable.iter().map(|s| s.to_string()).collect(),
            platform: Some("platform:el9".into()),
            arch: "x86_64".into(),
        }
    }

    fn enabled(s: &Selection) -> Vec<String> {
        s.enabled
            .iter()
            .map(|(n, (st, _))| format!("{n}:{st}"))
            .collect()
    }

    #[test]
    fn nevra_parsing() {
        let n = Nevra::parse("nodejs-1:18.10.0-1.module+el9.1.0+16866+0fab0cf7.x86_64").unwrap();
        assert_eq!(
            (
                n.name.as_str(),
                n.epoch,
                n.version.as_str(),
                n.arch.as_str()
            ),
            ("nodejs", 1, "18.10.0", "x86_64")
        );
        assert_eq!(n.release, "1.module+el9.1.0+16866+0fab0cf7");
        let n = Nevra::parse("python3-pip-wheel-21.2.3-6.el9.noarch").unwrap();
        assert_eq!((n.name.as_str(), n.epoch), ("python3-pip-wheel", 0));
        for bad in ["", "x", "a-1.x86_64", "a-x:1-2.noarch", "-1-2.noarch"] {
            assert_eq!(Nevra::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_real_shaped_documents_and_keeps_stream_text() {
        let yaml = "---\ndocument: modulemd\nversion: 2\ndata:\n  name: perl\n  stream: 5.30\n  version: 8030020200415133624\n  context: 466ea64f\n  arch: x86_64\n  dependencies:\n  - buildrequires: {platform: [el8.3.0]}\n    requires: {platform: [el8]}\n  artifacts:\n    rpms:\n    - perl-4:5.30.1-452.module_el8.3.0+406+78614513.x86_64\n    - perl-4:5.30.1-452.module_el8.3.0+406+78614513.src\n...\n---\ndocument: modulemd-defaults\nversion: 1\ndata:\n  module: perl\n  stream: 5.26\n...\n---\ndocument: modulemd-translations\nversion: 1\ndata:\n  module: perl\n  stream: 5.30\n  modified: 202001011200\n  translations: {}\n...\n---\ndocument: modulemd-defaults\nversion: 1\ndata:\n  module: noprofiledefault\n...\n";
        let mut m = ModuleMetadata::default();
        m.add_yaml(yaml).unwrap();
        assert_eq!(m.streams.len(), 1);
        let s = &m.streams[0];
        assert_eq!(
            (s.stream.as_str(), s.version),
            ("5.30", 8030020200415133624)
        );
        assert_eq!(s.artifacts.len(), 2);
        assert_eq!(s.requires[0]["platform"], ["el8"]);
        assert_eq!(m.defaults.get("perl").map(String::as_str), Some("5.26"));
        assert!(!m.defaults.contains_key("noprofiledefault"));
    }

    #[test]
    fn malformed_documents_are_refused_with_their_number() {
        let mut m = ModuleMetadata::default();
        let e = m
            .add_yaml("---\ndocument: modulemd\nversion: 2\ndata:\n  stream: x\n...\n")
            .unwrap_err();
        assert!(
            e.to_string().contains("document 1") && e.to_string().contains("name"),
            "{e}"
        );
        let e = m
            .add_yaml("---\ndocument: modulemd\nversion: 1\ndata: {}\n...\n")
            .unwrap_err();
        assert!(e.to_string().contains("version 1"), "{e}");
        let bad_name = stream("../etc", "1", "c", &[], &[]);
        let e = m.add_yaml(&bad_name).unwrap_err();
        assert!(e.to_string().contains("bad module name"), "{e}");
        let bad_artifact = stream("a", "1", "c", &[], &["nonsense"]);
        let e = m.add_yaml(&bad_artifact).unwrap_err();
        assert!(e.to_string().contains("nonsense"), "{e}");
    }

    #[test]
    fn defaults_recipe_streams_and_dependencies() {
        let m = meta(&[
            stream(
                "foo",
                "2",
                "a",
                &[("platform", &["el9"])],
                &["foo-0:2.0-1.x86_64"],
            ),
            stream(
                "foo",
                "3",
                "a",
                &[("platform", &["el9"])],
                &["foo-0:3.0-1.x86_64"],
            ),
            defaults("foo", "2"),
            stream(
                "libx",
                "7",
                "a",
                &[("platform", &["el9"])],
                &["libx-0:7-1.x86_64"],
            ),
            stream(
                "usex",
                "1",
                "a",
                &[("platform", &["el9"]), ("libx", &["7"])],
                &["usex-0:1-1.x86_64"],
            ),
        ]);
        let s = select(&m, &req(&[], &[])).unwrap();
        assert_eq!(enabled(&s), ["foo:2"]);
        assert!(
            s.states().is_empty(),
            "a default stream needs no state file"
        );
        let s = select(&m, &req(&["foo:3", "usex"], &[])).unwrap();
        assert_eq!(enabled(&s), ["foo:3", "libx:7", "usex:1"]);
        assert_eq!(s.enabled["libx"].1, Reason::Dependency);
        assert_eq!(s.states().len(), 3);
        let s = select(&m, &req(&[], &["foo"])).unwrap();
        assert!(enabled(&s).is_empty());
        assert_eq!(s.states()[0].state, "disabled");
        // What a default stream needs is enabled without a state file.
        let with_default = meta(&[
            stream("libx", "7", "a", &[], &["libx-0:7-1.x86_64"]),
            stream(
                "usex",
                "1",
                "a",
                &[("libx", &["7"])],
                &["usex-0:1-1.x86_64"],
            ),
            defaults("usex", "1"),
        ]);
        let s = select(&with_default, &req(&[], &[])).unwrap();
        assert_eq!(enabled(&s), ["libx:7", "usex:1"]);
        assert!(s.states().is_empty(), "{:?}", s.states());
    }

    #[test]
    fn contexts_follow_the_enabled_dependency() {
        let m = meta(&[
            stream("libx", "7", "a", &[], &["libx-0:7-1.x86_64"]),
            stream("libx", "8", "a", &[], &["libx-0:8-1.x86_64"]),
            stream(
                "pyx",
                "1",
                "ca",
                &[("libx", &["7"])],
                &["pyx-0:1.0-1.x86_64"],
            ),
            stream(
                "pyx",
                "1",
                "cb",
                &[("libx", &["8"])],
                &["pyx-0:1.1-1.x86_64"],
            ),
        ]);
        let contexts = |s: &Selection| -> Vec<String> {
            s.active
                .iter()
                .map(|&i| &m.streams[i])
                .filter(|b| b.name == "pyx")
                .map(|b| b.context.clone())
                .collect()
        };
        // Each context names one stream of libx: the first context (by
        // name, at equal versions) brings its stream in.
        let s = select(&m, &req(&["pyx"], &[])).unwrap();
        assert_eq!(enabled(&s), ["libx:7", "pyx:1"]);
        assert_eq!(contexts(&s), ["ca"]);
        // A stream the recipe enables decides the context.
        let s = select(&m, &req(&["pyx", "libx:8"], &[])).unwrap();
        assert_eq!(contexts(&s), ["cb"]);
        // A disabled dependency leaves the stream without a usable context.
        let e = select(&m, &req(&["pyx"], &["libx"])).unwrap_err();
        assert!(matches!(e, ModuleError::Unsatisfiable { .. }), "{e}");
    }

    #[test]
    fn an_unmeetable_default_is_left_inactive_but_an_asked_stream_is_an_error() {
        let m = meta(&[qux_default_for_el8()]);
        let s = select(&m, &req(&[], &[])).unwrap();
        assert!(s.enabled.is_empty());
        assert!(s.warnings[0].contains("platform:[el8]"), "{:?}", s.warnings);
        let e = select(&m, &req(&["qux:2"], &[])).unwrap_err();
        assert!(e.to_string().contains("platform:[el8]"), "{e}");
        // Without a configured platform, platform requirements count as met.
        let mut r = req(&[], &[]);
        r.platform = None;
        assert_eq!(enabled(&select(&m, &r).unwrap()), ["qux:2"]);
    }

    #[test]
    fn a_stream_that_needs_a_dropped_default_is_not_active() {
        let m = meta(&[
            qux_default_for_el8(),
            stream(
                "onqux",
                "1",
                "a",
                &[("qux", &["2"])],
                &["onqux-0:1-1.x86_64"],
            ),
            defaults("onqux", "1"),
        ]);
        let s = select(&m, &req(&[], &[])).unwrap();
        assert!(s.enabled.is_empty() && s.active.is_empty(), "{s:?}");
        assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
        let e = select(&m, &req(&["onqux"], &[])).unwrap_err();
        assert!(
            e.to_string().contains("onqux:1") && e.to_string().contains("qux:[2]"),
            "{e}"
        );
    }

    #[test]
    fn requests_are_checked() {
        let m = meta(&[
            stream("nodejs", "18", "a", &[], &[]),
            stream("nodejs", "20", "a", &[], &[]),
        ]);
        let e = select(&m, &req(&["nodjs"], &[])).unwrap_err();
        assert!(e.to_string().contains("did you mean nodejs"), "{e}");
        let e = select(&m, &req(&["nodejs:16"], &[])).unwrap_err();
        assert!(e.to_string().contains("18, 20"), "{e}");
        let e = select(&m, &req(&["nodejs"], &[])).unwrap_err();
        assert!(e.to_string().contains("no default"), "{e}");
        for (en, dis) in [
            (&["nodejs:18", "nodejs:20"][..], &[][..]),
            (&["nodejs"], &["nodejs"]),
            (&[], &["nodejs:18"]),
            (&["no:de:js"], &[]),
            (&["nodejs:"], &[]),
        ] {
            assert!(
                validate(
                    &en.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                    &dis.iter().map(|s| s.to_string()).collect::<Vec<_>>()
                )
                .is_err()
            );
        }
    }

    #[test]
    fn negative_and_empty_stream_lists() {
        assert!(accepts(&[], "x"));
        assert!(accepts(&["-8".into()], "7"));
        assert!(!accepts(&["-8".into()], "8"));
        assert!(accepts(&["7".into(), "8".into()], "8"));
        assert!(!accepts(&["7".into()], "8"));
    }
}
