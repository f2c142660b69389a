//! Binary package stanzas from `Packages` indexes (and `.deb` control files):
//! names, versions, relationship fields and where the file lives.

use std::fmt;

use super::control::Paragraph;
use super::version::Version;

/// A version comparison in a relationship.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<<`
    Lt,
    /// `<=` (and the obsolete `<`)
    Le,
    /// `=`
    Eq,
    /// `>=` (and the obsolete `>`)
    Ge,
    /// `>>`
    Gt,
}

impl Op {
    /// Whether `have` satisfies `have OP want`.
    pub fn matches(self, have: &Version, want: &Version) -> bool {
        use std::cmp::Ordering::*;
        let o = have.cmp(want);
        match self {
            Op::Lt => o == Less,
            Op::Le => o != Greater,
            Op::Eq => o == Equal,
            Op::Ge => o != Less,
            Op::Gt => o == Greater,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">>",
        }
    }
}

/// One alternative of a relationship: `name[:arch] [(op version)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Package (or virtual package) name.
    pub name: String,
    /// Architecture qualifier (`any`, `native`, an arch), if any.
    pub arch: Option<String>,
    /// Version constraint, if any.
    pub constraint: Option<(Op, Version)>,
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(a) = &self.arch {
            write!(f, ":{a}")?;
        }
        if let Some((op, v)) = &self.constraint {
            write!(f, " ({} {v})", op.as_str())?;
        }
        Ok(())
    }
}

/// An OR group: any one alternative satisfies it.
pub type Alternatives = Vec<Relation>;

/// Formats an OR group as Debian writes it.
pub fn format_alternatives(alts: &[Relation]) -> String {
    alts.iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// A relationship field dpkg would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad relationship {text:?}: {reason}")]
pub struct RelationError {
    /// The offending text.
    pub text: String,
    /// What is wrong.
    pub reason: String,
}

/// Parses a relationship field (`Depends`, `Pre-Depends`, `Provides`, ...)
/// for architecture `arch`: alternatives restricted to other architectures
/// (`[!amd64]`) are dropped, build profiles (`<...>`) ignored.
pub fn parse_relations(text: &str, arch: &str) -> Result<Vec<Alternatives>, RelationError> {
    let mut out = Vec::new();
    for group in text.split(',') {
        let group = group.trim();
        if group.is_empty() {
            continue;
        }
        let mut alts = Vec::new();
        for alt in group.split('|') {
            if let Some(r) = parse_one(alt.trim(), arch)? {
                alts.push(r);
            }
        }
        if !alts.is_empty() {
            out.push(alts);
        }
    }
    Ok(out)
}

fn parse_one(text: &str, arch: &str) -> Result<Option<Relation>, RelationError> {
    let err = |reason: &str| RelationError {
        text: text.to_string(),
        reason: reason.to_string(),
    };
    let mut rest = text;
    // Drop build profiles (`<...>` outside the version parentheses).
    let mut depth = 0i32;
    if let Some(i) = rest.char_indices().find_map(|(i, c)| {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            '<' if depth == 0 => return Some(i),
            _ => {}
        }
        None
    }) {
        rest = rest[..i].trim();
    }
    // Architecture restriction list.
    if let Some(i) = rest.find('[') {
        let list = rest[i + 1..]
            .split(']')
            .next()
            .ok_or_else(|| err("unterminated ["))?;
        let archs: Vec<&str> = list.split_whitespace().collect();
        let negated = archs.iter().all(|a| a.starts_with('!'));
        let hit = archs
            .iter()
            .any(|a| a.trim_start_matches('!') == arch || a.trim_start_matches('!') == "any");
        if negated == hit {
            return Ok(None);
        }
        rest = rest[..i].trim();
    }
    let (name_part, constraint) = match rest.find('(') {
        Some(i) => {
            let inner = rest[i + 1..]
                .strip_suffix(')')
                .or_else(|| rest[i + 1..].split(')').next())
                .ok_or_else(|| err("unterminated ("))?
                .trim();
            let (op, ver) = if let Some(v) = inner.strip_prefix(">=") {
                (Op::Ge, v)
            } else if let Some(v) = inner.strip_prefix("<=") {
                (Op::Le, v)
            } else if let Some(v) = inner.strip_prefix(">>") {
                (Op::Gt, v)
            } else if let Some(v) = inner.strip_prefix("<<") {
                (Op::Lt, v)
            } else if let Some(v) = inner.strip_prefix('=') {
                (Op::Eq, v)
            } else if let Some(v) = inner.strip_prefix('>') {
                (Op::Ge, v)
            } else if let Some(v) = inner.strip_prefix('<') {
                (Op::Le, v)
            } else {
                return Err(err("unknown version operator"));
            };
            let ver = Version::parse(ver.trim()).map_err(|e| err(&e.to_string()))?;
            (rest[..i].trim(), Some((op, ver)))
        }
        None => (rest.trim(), None),
    };
    if name_part.is_empty() {
        return Err(err("missing package name"));
    }
    let (name, q) = match name_part.split_once(':') {
        Some((n, a)) => (n, Some(a.to_string())),
        None => (name_part, None),
    };
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
    {
        return Err(err("invalid package name"));
    }
    Ok(Some(Relation {
        name: name.to_string(),
        arch: q,
        constraint,
    }))
}

/// Debian priorities, most important first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// `required`
    Required,
    /// `important`
    Important,
    /// `standard`
    Standard,
    /// `optional`
    Optional,
    /// `extra` or missing
    Extra,
}

impl Priority {
    fn parse(s: &str) -> Priority {
        match s {
            "required" => Priority::Required,
            "important" => Priority::Important,
            "standard" => Priority::Standard,
            "optional" => Priority::Optional,
            _ => Priority::Extra,
        }
    }
}

/// One binary package version from an index.
#[derive(Debug, Clone)]
pub struct Package {
    /// `Package:`
    pub name: String,
    /// `Version:`
    pub version: Version,
    /// `Architecture:` (`all` or the native architecture).
    pub arch: String,
    /// `Multi-Arch:` (empty when absent).
    pub multi_arch: String,
    /// `Essential: yes`
    pub essential: bool,
    /// `Priority:`
    pub priority: Priority,
    /// `Pre-Depends:`
    pub pre_depends: Vec<Alternatives>,
    /// `Depends:`
    pub depends: Vec<Alternatives>,
    /// `Provides:` (each a single relation, optionally `(= version)`).
    pub provides: Vec<Relation>,
    /// `Conflicts:`
    pub conflicts: Vec<Alternatives>,
    /// `Breaks:`
    pub breaks: Vec<Alternatives>,
    /// `Filename:` (pool path relative to the archive root).
    pub filename: String,
    /// `Size:`
    pub size: u64,
    /// `SHA256:`
    pub sha256: String,
    /// Index of the archive (mirror + suite) the stanza came from.
    pub origin: usize,
}

/// A stanza the builder cannot use.
#[derive(Debug, Clone, thiserror::Error)]
#[error("package stanza at line {line} ({name}): {message}")]
pub struct StanzaError {
    /// 1-based line of the stanza in its file.
    pub line: usize,
    /// The package name, when known.
    pub name: String,
    /// What is wrong.
    pub message: String,
}

impl Package {
    /// Builds a package from a Packages-file stanza. `arch` selects
    /// architecture restrictions in relationship fields.
    pub fn from_paragraph(
        p: &Paragraph,
        arch: &str,
        origin: usize,
    ) -> Result<Package, StanzaError> {
        let name = p.get("Package").unwrap_or("").to_string();
        let err = |message: String| StanzaError {
            line: p.line,
            name: name.clone(),
            message,
        };
        if name.is_empty() {
            return Err(err("no Package field".into()));
        }
        let field = |f: &str| p.get(f).unwrap_or("");
        let version = Version::parse(field("Version")).map_err(|e| err(e.to_string()))?;
        let rel = |f: &str| parse_relations(field(f), arch).map_err(|e| err(format!("{f}: {e}")));
        let provides = rel("Provides")?.into_iter().flatten().collect();
        let size = match p.get("Size") {
            Some(s) => s.parse().map_err(|_| err(format!("bad Size {s:?}")))?,
            None => 0,
        };
        Ok(Package {
            version,
            arch: field("Architecture").to_string(),
            multi_arch: field("Multi-Arch").to_string(),
            essential: field("Essential").eq_ignore_ascii_case("yes"),
            priority: Priority::parse(field("Priority")),
            pre_depends: rel("Pre-Depends")?,
            depends: rel("Depends")?,
            provides,
            conflicts: rel("Conflicts")?,
            breaks: rel("Breaks")?,
            filename: field("Filename").to_string(),
            size,
            sha256: field("SHA256").to_ascii_lowercase(),
            origin,
            name,
        })
    }

    /// `name version arch`, for messages.
    pub fn label(&self) -> String {
        format!("{} {} ({})", self.name, self.version, self.arch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debian::control;

    #[test]
    fn relations_with_alternatives_and_arches() {
        let r = parse_relations(
            "libc6 (>= 2.34), a | b:any (<< 2~), c [!amd64], d [amd64 i386], e <!nocheck>",
            "amd64",
        )
        .unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r[0][0].name, "libc6");
        assert_eq!(r[1].len(), 2);
        assert_eq!(r[1][1].arch.as_deref(), Some("any"));
        assert_eq!(r[1][1].constraint.as_ref().unwrap().0, Op::Lt);
        assert_eq!(r[2][0].name, "d");
        assert_eq!(r[3][0].name, "e");
        assert_eq!(format_alternatives(&r[1]), "a | b:any (<< 2~)");
        assert!(parse_relations("a (~ 1)", "amd64").is_err());
        assert!(parse_relations("A", "amd64").is_err());
    }

    #[test]
    fn stanza_to_package() {
        let p = control::parse(
            "Package: dash\nVersion: 0.5.12-2\nArchitecture: amd64\nEssential: yes\nPriority: required\nPre-Depends: libc6 (>= 2.34)\nProvides: sh\nFilename: pool/main/d/dash/dash_0.5.12-2_amd64.deb\nSize: 93000\nSHA256: AB\n",
        )
        .unwrap();
        let pkg = Package::from_paragraph(&p[0], "amd64", 0).unwrap();
        assert!(pkg.essential);
        assert_eq!(pkg.priority, Priority::Required);
        assert_eq!(pkg.provides[0].name, "sh");
        assert_eq!(pkg.sha256, "ab");
        let bad = control::parse("Package: x\nVersion: !\n").unwrap();
        let e = Package::from_paragraph(&bad[0], "amd64", 0).unwrap_err();
        assert!(e.to_string().contains("line 1 (x)"), "{e}");
    }
}
