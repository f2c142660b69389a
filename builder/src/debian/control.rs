//! Debian control-file syntax (deb822): paragraphs of `Field: value` lines
//! with continuation lines, as used by Packages, Release, dpkg's status file
//! and `.sources` files.

use std::fmt;

/// One paragraph: fields in file order, with the 1-based line each starts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Paragraph {
    /// `(name, value)` pairs; a multi-line value keeps its `\n`s, with the
    /// leading space of each continuation line removed.
    pub fields: Vec<(String, String)>,
    /// Line on which the paragraph starts (1-based).
    pub line: usize,
}

impl Paragraph {
    /// The value of a field, matched case-insensitively as dpkg does.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A syntax error in a control file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line of the offending text.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for SyntaxError {}

/// Parses every paragraph of a control file. Comment lines (`#`) are skipped,
/// as deb822 `.sources` files allow; Packages files contain none.
pub fn parse(text: &str) -> Result<Vec<Paragraph>, SyntaxError> {
    let mut out = Vec::new();
    let mut cur = Paragraph::default();
    for (i, raw) in text.lines().enumerate() {
        let lineno = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            if !cur.fields.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            let Some((_, value)) = cur.fields.last_mut() else {
                return Err(SyntaxError {
                    line: lineno,
                    message: "continuation line before any field".into(),
                });
            };
            let cont = &line[1..];
            value.push('\n');
            // A lone "." stands for an empty line inside a multi-line value.
            value.push_str(if cont.trim() == "." { "" } else { cont });
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(SyntaxError {
                line: lineno,
                message: format!("expected `Field: value`, found {line:?}"),
            });
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(SyntaxError {
                line: lineno,
                message: format!("invalid field name {name:?}"),
            });
        }
        if cur.fields.is_empty() {
            cur.line = lineno;
        }
        cur.fields
            .push((name.to_string(), value.trim().to_string()));
    }
    if !cur.fields.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_and_continuations() {
        let text =
            "Package: a\nVersion: 1\nDescription: short\n long\n .\n more\n\n\n# c\nPackage: b\n";
        let p = parse(text).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].get("package"), Some("a"));
        assert_eq!(p[0].get("Description"), Some("short\nlong\n\nmore"));
        assert_eq!(p[1].line, 10);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("Package: a\nbogus line\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse(" leading\n").unwrap_err();
        assert_eq!(e.line, 1);
    }
}
