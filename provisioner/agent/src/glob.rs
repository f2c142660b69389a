//! Path globs for hybridize and livesync.skip lists.
//!
//! A pattern starting with `/` is matched against whole paths from the
//! image root: `*` and `?` stay within one path component, `**` crosses
//! components, `[a-z]`/`[!x]` are character classes. A pattern without `/`
//! matches a file or directory name anywhere (Perceus's livesync.skip took
//! "a file or directory name"). Either way, a pattern that names a
//! directory covers everything under it.

/// One parsed glob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathGlob {
    text: String,
    anchored: bool,
}

/// A glob that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("bad path pattern '{pattern}': {reason}")]
pub struct GlobError {
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

impl PathGlob {
    /// Parses a pattern (see the module documentation).
    pub fn parse(text: &str) -> Result<PathGlob, GlobError> {
        let t = text.trim();
        let bad = |reason: &str| GlobError {
            pattern: text.to_string(),
            reason: reason.to_string(),
        };
        if t.is_empty() {
            return Err(bad("empty pattern"));
        }
        if t.split('/').any(|c| c == "..") {
            return Err(bad("'..' is not allowed"));
        }
        if t.contains('\0') {
            return Err(bad("NUL byte"));
        }
        let mut depth = 0i32;
        for c in t.chars() {
            match c {
                '[' => depth += 1,
                ']' if depth > 0 => depth -= 1,
                _ => {}
            }
        }
        if depth != 0 {
            return Err(bad("unbalanced '['"));
        }
        let anchored = t.contains('/');
        let mut s = t.trim_end_matches('/').to_string();
        if anchored && !s.starts_with('/') {
            s.insert(0, '/');
        }
        if s.is_empty() {
            s.push('/');
        }
        Ok(PathGlob { text: s, anchored })
    }

    /// The pattern in its normal form (anchored ones start with `/`).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern is matched against whole paths.
    pub fn is_anchored(&self) -> bool {
        self.anchored
    }

    /// Whether the pattern matches exactly this path (`/usr/share/doc`,
    /// always starting with `/`), not counting its ancestors.
    pub fn matches_exact(&self, path: &str) -> bool {
        if self.anchored {
            glob_match(self.text.as_bytes(), path.as_bytes())
        } else {
            let name = path.rsplit('/').next().unwrap_or(path);
            glob_match(self.text.as_bytes(), name.as_bytes())
        }
    }

    /// Whether the path or one of its ancestors matches, i.e. whether the
    /// path is covered by the pattern.
    pub fn covers(&self, path: &str) -> bool {
        let mut end = path.len();
        loop {
            let p = &path[..end];
            if !p.is_empty() && self.matches_exact(p) {
                return true;
            }
            match p.rfind('/') {
                Some(0) | None => return false,
                Some(i) => end = i,
            }
        }
    }
}

/// Whether any of `globs` covers `path`.
pub fn any_covers(globs: &[PathGlob], path: &str) -> bool {
    globs.iter().any(|g| g.covers(path))
}

/// Parses a list of patterns; the first bad one is the error.
pub fn parse_all<S: AsRef<str>>(patterns: &[S]) -> Result<Vec<PathGlob>, GlobError> {
    patterns
        .iter()
        .map(|p| PathGlob::parse(p.as_ref()))
        .collect()
}

/// Classic glob matching with backtracking over `*` (one component) and
/// `**` (any depth).
fn glob_match(p: &[u8], s: &[u8]) -> bool {
    if p.is_empty() {
        return s.is_empty();
    }
    match p[0] {
        b'*' if p.get(1) == Some(&b'*') => {
            let rest = &p[2..];
            (0..=s.len()).any(|i| glob_match(rest, &s[i..]))
        }
        b'*' => {
            let rest = &p[1..];
            for i in 0..=s.len() {
                if glob_match(rest, &s[i..]) {
                    return true;
                }
                if i < s.len() && s[i] == b'/' {
                    return false;
                }
            }
            false
        }
        b'?' => !s.is_empty() && s[0] != b'/' && glob_match(&p[1..], &s[1..]),
        b'[' => {
            let Some(close) = p.iter().skip(2).position(|&c| c == b']').map(|i| i + 2) else {
                return !s.is_empty() && s[0] == b'[' && glob_match(&p[1..], &s[1..]);
            };
            if s.is_empty() || s[0] == b'/' {
                return false;
            }
            let (negate, class) = match p[1] {
                b'!' | b'^' => (true, &p[2..close]),
                _ => (false, &p[1..close]),
            };
            let c = s[0];
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != negate && glob_match(&p[close + 1..], &s[1..])
        }
        c => !s.is_empty() && s[0] == c && glob_match(&p[1..], &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> PathGlob {
        PathGlob::parse(s).unwrap()
    }

    #[test]
    fn anchored_patterns() {
        assert!(g("/usr/share/doc").covers("/usr/share/doc/bash/README"));
        assert!(g("/usr/share/doc").covers("/usr/share/doc"));
        assert!(!g("/usr/share/doc").covers("/usr/share/docs"));
        assert!(!g("/usr/share/doc").covers("/usr/share"));
        assert!(g("/usr/share/*").covers("/usr/share/man/man1/ls.1.gz"));
        assert!(!g("/usr/*/man").covers("/usr/a/b/man"));
        assert!(g("/usr/**/man").covers("/usr/a/b/man/x"));
        assert!(g("/usr/lib/locale/[A-D]*").covers("/usr/lib/locale/C.utf8/x"));
        assert!(!g("/usr/lib/locale/[!C]*").covers("/usr/lib/locale/C.utf8"));
        assert!(g("usr/share/doc").covers("/usr/share/doc/x"));
    }

    #[test]
    fn name_patterns() {
        assert!(g("resolv.conf").covers("/etc/resolv.conf"));
        assert!(g("*.pyc").covers("/usr/lib/python3/x.pyc"));
        assert!(g("log").covers("/var/log/syslog"));
        assert!(!g("log").covers("/var/logs"));
    }

    #[test]
    fn bad_patterns() {
        for b in ["", "  ", "/usr/../etc", "/usr/[ab"] {
            assert!(PathGlob::parse(b).is_err(), "{b:?}");
        }
    }
}
