//! The machine's apt sources, read the way apt reads them: the one-line
//! format (`sources.list`, `sources.list.d/*.list`) and deb822
//! (`sources.list.d/*.sources`). The builder takes its default mirror from
//! here so that no project file names a mirror host.

use std::path::{Path, PathBuf};

use super::control;

/// One `deb` source: a URI, a suite and its components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    /// `deb` or `deb-src`.
    pub kind: String,
    /// The archive root URI, without a trailing slash.
    pub uri: String,
    /// The suite (codename or archive name), e.g. `bookworm-updates`.
    pub suite: String,
    /// Components, e.g. `main`.
    pub components: Vec<String>,
    /// The `Signed-By`/`signed-by=` keyring, when given as a path.
    pub signed_by: Option<PathBuf>,
    /// The file it came from, for error messages.
    pub file: PathBuf,
}

/// A sources file apt would refuse.
#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    /// Reading a file failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line or paragraph is malformed.
    #[error("{path}: line {line}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Reads every apt source under `etc_apt` (normally `/etc/apt`): the main
/// `sources.list` first, then `sources.list.d/*.list` and `*.sources` in
/// file-name order, as apt does. Files with other extensions are ignored.
pub fn read_system_sources(etc_apt: &Path) -> Result<Vec<SourceEntry>, SourcesError> {
    let mut out = Vec::new();
    let main = etc_apt.join("sources.list");
    if main.exists() {
        out.extend(parse_one_line(&read(&main)?, &main)?);
    }
    let dir = etc_apt.join("sources.list.d");
    if let Ok(rd) = std::fs::read_dir(&dir) {
        let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files {
            match f.extension().and_then(|e| e.to_str()) {
                Some("list") => out.extend(parse_one_line(&read(&f)?, &f)?),
                Some("sources") => out.extend(parse_deb822(&read(&f)?, &f)?),
                _ => {}
            }
        }
    }
    Ok(out)
}

fn read(path: &Path) -> Result<String, SourcesError> {
    std::fs::read_to_string(path).map_err(|source| SourcesError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses the one-line format: `deb [opt=val ...] uri suite [component ...]`.
pub fn parse_one_line(text: &str, file: &Path) -> Result<Vec<SourceEntry>, SourcesError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let syntax = |message: String| SourcesError::Syntax {
            path: file.to_path_buf(),
            line: i + 1,
            message,
        };
        let (kind, mut rest) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| syntax(format!("incomplete source line {line:?}")))?;
        if kind != "deb" && kind != "deb-src" {
            return Err(syntax(format!("unknown source type {kind:?}")));
        }
        rest = rest.trim_start();
        let mut signed_by = None;
        if let Some(opts) = rest.strip_prefix('[') {
            let (opts, after) = opts
                .split_once(']')
                .ok_or_else(|| syntax("unterminated option list `[`".into()))?;
            for opt in opts.split_whitespace() {
                if let Some(v) = opt.strip_prefix("signed-by=") {
                    signed_by = Some(PathBuf::from(v));
                }
            }
            rest = after;
        }
        let mut words = rest.split_whitespace();
        let uri = words.next().ok_or_else(|| syntax("missing URI".into()))?;
        let suite = words.next().ok_or_else(|| syntax("missing suite".into()))?;
        out.push(SourceEntry {
            kind: kind.to_string(),
            uri: uri.trim_end_matches('/').to_string(),
            suite: suite.to_string(),
            components: words.map(str::to_string).collect(),
            signed_by,
            file: file.to_path_buf(),
        });
    }
    Ok(out)
}

/// Parses the deb822 format: paragraphs with `Types`, `URIs`, `Suites`,
/// `Components`, `Signed-By` and `Enabled`. Each URI × suite is one entry.
pub fn parse_deb822(text: &str, file: &Path) -> Result<Vec<SourceEntry>, SourcesError> {
    let paras = control::parse(text).map_err(|e| SourcesError::Syntax {
        path: file.to_path_buf(),
        line: e.line,
        message: e.message,
    })?;
    let mut out = Vec::new();
    for p in paras {
        if p.get("Enabled")
            .is_some_and(|v| v.eq_ignore_ascii_case("no"))
        {
            continue;
        }
        let syntax = |message: String| SourcesError::Syntax {
            path: file.to_path_buf(),
            line: p.line,
            message,
        };
        let types = p
            .get("Types")
            .ok_or_else(|| syntax("paragraph has no Types field".into()))?;
        let uris = p
            .get("URIs")
            .ok_or_else(|| syntax("paragraph has no URIs field".into()))?;
        let suites = p
            .get("Suites")
            .ok_or_else(|| syntax("paragraph has no Suites field".into()))?;
        let components: Vec<String> = p
            .get("Components")
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        // Signed-By is a path or an inline key block; only paths are kept.
        let signed_by = p
            .get("Signed-By")
            .filter(|v| !v.contains('\n') && v.starts_with('/'))
            .map(PathBuf::from);
        for kind in types.split_whitespace() {
            for uri in uris.split_whitespace() {
                for suite in suites.split_whitespace() {
                    out.push(SourceEntry {
                        kind: kind.to_string(),
                        uri: uri.trim_end_matches('/').to_string(),
                        suite: suite.to_string(),
                        components: components.clone(),
                        signed_by: signed_by.clone(),
                        file: file.to_path_buf(),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The first binary (`deb`) source for `suite`, as apt would list it.
pub fn find_suite<'a>(entries: &'a [SourceEntry], suite: &str) -> Option<&'a SourceEntry> {
    entries.iter().find(|e| e.kind == "deb" && e.suite == suite)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_with_options() {
        let text = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian/ bookworm main contrib # x\ndeb-src http://m.example/debian bookworm main\n";
        let e = parse_one_line(text, Path::new("s.list")).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].uri, "http://m.example/debian");
        assert_eq!(e[0].suite, "bookworm");
        assert_eq!(e[0].components, ["main", "contrib"]);
        assert_eq!(e[0].signed_by.as_deref(), Some(Path::new("/k.gpg")));
        assert_eq!(find_suite(&e, "bookworm").unwrap().kind, "deb");
    }

    #[test]
    fn deb822_expands_uris_and_suites() {
        let text = "Types: deb\n# note\nURIs: http://a.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://b.example/x\nSuites: other\nEnabled: no\n";
        let e = parse_deb822(text, Path::new("d.sources")).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].suite, "bookworm-updates");
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let err = parse_one_line("deb\n", Path::new("x.list")).unwrap_err();
        assert!(err.to_string().contains("x.list: line 1"), "{err}");
        let err = parse_deb822("URIs: x\n", Path::new("y.sources")).unwrap_err();
        assert!(err.to_string().contains("Types"), "{err}");
    }

    /// The machine's own sources must name a mirror for its release; the
    /// network tests depend on it, so a missing one is a failure.
    #[test]
    fn system_sources_are_readable() {
        let e = read_system_sources(Path::new("/etc/apt")).unwrap();
        assert!(
            e.iter().any(|e| e.kind == "deb"),
            "no deb source in /etc/apt"
        );
    }
}
