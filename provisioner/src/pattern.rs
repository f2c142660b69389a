//! Node and group name patterns: Perceus's bracket range operators
//! (`n00[00-05,06,20-40]`, `n[0010-1023]`) combined with shell globs
//! (`io*`, `n?1`).
//!
//! Patterns are matched, never expanded, so `n[0-999999999]` costs nothing.
//! A range's lower bound sets its zero padding, as `sprintf("%0*d")` did in
//! Perceus: `n[08-10]` matches `n08`, `n09` and `n10`, and a number that
//! outgrows the padding is written in full (`n00[99-100]` matches `n0099` and
//! `n00100`).

use crate::error::{Error, Result};

/// The longest number a range bound may have; keeps values inside `u64`.
const MAX_DIGITS: usize = 18;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Span {
    lo: u64,
    hi: u64,
    width: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Lit(char),
    Star,
    Any,
    Range(Vec<Span>),
}

/// A parsed name pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    tokens: Vec<Token>,
}

impl Pattern {
    /// Parses a pattern; malformed ranges (`n[5-2]`, `n[1-3`, `n[]`,
    /// `n[a-b]`) are errors naming the pattern.
    pub fn parse(text: &str) -> Result<Pattern> {
        let bad = |reason: String| Error::BadPattern {
            pattern: text.to_string(),
            reason,
        };
        if text.is_empty() {
            return Err(bad("empty pattern".into()));
        }
        let mut tokens = Vec::new();
        let mut chars = text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '*' => tokens.push(Token::Star),
                '?' => tokens.push(Token::Any),
                ']' => return Err(bad(format!("unbalanced ']' at offset {at}"))),
                '[' => {
                    let mut body = String::new();
                    let mut closed = false;
                    for (_, c) in chars.by_ref() {
                        match c {
                            ']' => {
                                closed = true;
                                break;
                            }
                            '[' => return Err(bad(format!("nested '[' in range at offset {at}"))),
                            c => body.push(c),
                        }
                    }
                    if !closed {
                        return Err(bad(format!("unbalanced '[' at offset {at}")));
                    }
                    tokens.push(Token::Range(parse_range(&body).map_err(bad)?));
                }
                c => tokens.push(Token::Lit(c)),
            }
        }
        Ok(Pattern {
            text: text.to_string(),
            tokens,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the pattern has no range or glob: it names one thing.
    pub fn is_literal(&self) -> bool {
        self.tokens.iter().all(|t| matches!(t, Token::Lit(_)))
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        let chars: Vec<char> = name.chars().collect();
        match_from(&self.tokens, &chars)
    }

    /// Same as [`Pattern::matches`] but ignoring ASCII case (for MAC globs).
    pub fn matches_ignore_case(&self, name: &str) -> bool {
        let lowered = Pattern {
            text: self.text.clone(),
            tokens: self
                .tokens
                .iter()
                .map(|t| match t {
                    Token::Lit(c) => Token::Lit(c.to_ascii_lowercase()),
                    t => t.clone(),
                })
                .collect(),
        };
        lowered.matches(&name.to_ascii_lowercase())
    }
}

fn parse_range(body: &str) -> std::result::Result<Vec<Span>, String> {
    if body.trim().is_empty() {
        return Err("empty range '[]'".into());
    }
    let mut spans = Vec::new();
    for item in body.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!("empty item in range '[{body}]'"));
        }
        let (lo_s, hi_s) = match item.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (item, item),
        };
        let lo = number(lo_s, item)?;
        let hi = number(hi_s, item)?;
        if lo > hi {
            return Err(format!(
                "descending range {item} (write the low bound first)"
            ));
        }
        spans.push(Span {
            lo,
            hi,
            width: lo_s.len(),
        });
    }
    Ok(spans)
}

fn number(s: &str, item: &str) -> std::result::Result<u64, String> {
    if s.is_empty() {
        return Err(format!("missing bound in range item '{item}'"));
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{s}' in range item '{item}' is not a number"));
    }
    if s.len() > MAX_DIGITS {
        return Err(format!("'{s}' has more than {MAX_DIGITS} digits"));
    }
    s.parse::<u64>().map_err(|e| format!("'{s}': {e}"))
}

fn match_from(tokens: &[Token], name: &[char]) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return name.is_empty();
    };
    match first {
        Token::Lit(c) => name.first() == Some(c) && match_from(rest, &name[1..]),
        Token::Any => !name.is_empty() && match_from(rest, &name[1..]),
        Token::Star => (0..=name.len()).any(|skip| match_from(rest, &name[skip..])),
        Token::Range(spans) => {
            let run = name.iter().take_while(|c| c.is_ascii_digit()).count();
            (1..=run.min(MAX_DIGITS)).any(|len| {
                let digits: String = name[..len].iter().collect();
                let Ok(value) = digits.parse::<u64>() else {
                    return false;
                };
                spans.iter().any(|s| {
                    value >= s.lo && value <= s.hi && format!("{value:0w$}", w = s.width) == digits
                }) && match_from(rest, &name[len..])
            })
        }
    }
}

/// A set of patterns, as given on a command line (`n00[00-05] io*`).
#[derive(Clone, Debug)]
pub struct PatternSet(pub Vec<Pattern>);

impl PatternSet {
    /// Parses every argument; the first malformed one is the error.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<PatternSet> {
        args.iter()
            .map(|a| Pattern::parse(a.as_ref()))
            .collect::<Result<Vec<_>>>()
            .map(PatternSet)
    }

    /// True when no pattern was given (commands then mean "all").
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether any pattern matches `name`.
    pub fn matches(&self, name: &str) -> bool {
        self.0.iter().any(|p| p.matches(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, name: &str) -> bool {
        Pattern::parse(p).unwrap().matches(name)
    }

    #[test]
    fn guide_examples() {
        // perceus node set vnfs X n00[00-05,06,20-40] io*
        let p = Pattern::parse("n00[00-05,06,20-40]").unwrap();
        let hits: Vec<String> = (0..100)
            .map(|i| format!("n{i:04}"))
            .filter(|n| p.matches(n))
            .collect();
        let mut want: Vec<String> = (0..=6).map(|i| format!("n{i:04}")).collect();
        want.extend((20..=40).map(|i| format!("n{i:04}")));
        assert_eq!(hits, want);
        // perceus node delete n000[0-2]
        assert!(m("n000[0-2]", "n0002") && !m("n000[0-2]", "n0003"));
        // perceus node set group compute n[0010-1023]
        assert!(m("n[0010-1023]", "n0010") && m("n[0010-1023]", "n1023"));
        assert!(
            !m("n[0010-1023]", "n0009") && !m("n[0010-1023]", "n10") && !m("n[0010-1023]", "n1024")
        );
        // perceus node list n00[00-97,99-199] n1*
        assert!(m("n00[00-97,99-199]", "n0097") && !m("n00[00-97,99-199]", "n0098"));
        assert!(m("n00[00-97,99-199]", "n0099") && m("n00[00-97,99-199]", "n00150"));
        assert!(m("n1*", "n1999") && !m("n1*", "n0199"));
        // the magazine: n0000[1-9]
        assert!(m("n0000[1-9]", "n00001") && !m("n0000[1-9]", "n00010"));
    }

    #[test]
    fn globs_and_padding() {
        assert!(m("io*", "io") && m("io*", "io12") && !m("io*", "xio"));
        assert!(m("n?1", "na1") && !m("n?1", "n1"));
        assert!(m("*", "anything") && m("*", ""));
        assert!(m("n[8-10]", "n8") && m("n[8-10]", "n10") && !m("n[8-10]", "n08"));
        assert!(m("n[08-10]", "n08") && m("n[08-10]", "n10"));
        assert!(m("r[1-2]n[01-02]", "r2n01") && !m("r[1-2]n[01-02]", "r3n01"));
        assert!(m("n[1-3]*", "n2-eth0"));
        assert!(m("n[5]", "n5"));
        assert!(Pattern::parse("n0001").unwrap().is_literal());
        assert!(!Pattern::parse("n[1-2]").unwrap().is_literal());
        assert!(
            Pattern::parse("n[0-999999999999]")
                .unwrap()
                .matches("n123456789")
        );
    }

    #[test]
    fn malformed_ranges_are_errors() {
        for (p, why) in [
            ("n[5-2]", "descending"),
            ("n[1-3", "unbalanced '['"),
            ("n1-3]", "unbalanced ']'"),
            ("n[]", "empty range"),
            ("n[1-3,]", "empty item"),
            ("n[-3]", "missing bound"),
            ("n[1-]", "missing bound"),
            ("n[a-b]", "not a number"),
            ("n[[1-2]]", "nested"),
            ("", "empty pattern"),
            ("n[1234567890123456789]", "more than"),
        ] {
            match Pattern::parse(p) {
                Err(Error::BadPattern { pattern, reason }) => {
                    assert_eq!(pattern, p);
                    assert!(reason.contains(why), "{p}: {reason}");
                }
                other => panic!("{p}: {other:?}"),
            }
        }
    }
}
