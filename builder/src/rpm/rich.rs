//! Rich (boolean) dependencies, e.g. `(foo >= 2 or bar)`,
//! `(pkgA if pkgB else pkgC)`: parsed into a tree the resolver evaluates
//! against its current selection.

use super::version::{Dep, Evr, Op};

/// A parsed dependency expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rich {
    /// A plain capability.
    Dep(Dep),
    /// All must hold (`and`, `with`).
    And(Vec<Rich>),
    /// One must hold.
    Or(Vec<Rich>),
    /// `(a if b [else c])`: `a` is needed when `b` is installed, else `c`.
    If(Box<Rich>, Box<Rich>, Option<Box<Rich>>),
    /// `(a unless b [else c])`: `a` is needed unless `b` is installed.
    Unless(Box<Rich>, Box<Rich>, Option<Box<Rich>>),
}

fn tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' | ')' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                out.push(c.to_string());
            }
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn op(s: &str) -> Option<Op> {
    Some(match s {
        "<" => Op::Lt,
        "<=" => Op::Le,
        "=" | "==" => Op::Eq,
        ">=" => Op::Ge,
        ">" => Op::Gt,
        _ => return None,
    })
}

/// Parses `name`, `name op evr` or a parenthesised rich expression.
pub fn parse(s: &str) -> Result<Rich, String> {
    let toks = tokens(s);
    let mut pos = 0;
    let r = term(&toks, &mut pos, s)?;
    if pos != toks.len() {
        return Err(format!("trailing text in dependency {s:?}"));
    }
    Ok(r)
}

fn term(t: &[String], pos: &mut usize, src: &str) -> Result<Rich, String> {
    let bad = || format!("malformed rich dependency {src:?}");
    let tok = t.get(*pos).ok_or_else(bad)?;
    if tok == "(" {
        *pos += 1;
        let first = term(t, pos, src)?;
        let mut parts = vec![first];
        let mut kind: Option<String> = None;
        let mut else_part = None;
        loop {
            let tok = t.get(*pos).ok_or_else(bad)?.clone();
            *pos += 1;
            if tok == ")" {
                break;
            }
            if tok == "else" {
                else_part = Some(Box::new(term(t, pos, src)?));
                continue;
            }
            if !["and", "or", "if", "unless", "with", "without"].contains(&tok.as_str()) {
                return Err(bad());
            }
            if kind.as_deref().is_some_and(|k| k != tok) {
                return Err(format!("mixed operators without parentheses in {src:?}"));
            }
            kind = Some(tok);
            parts.push(term(t, pos, src)?);
        }
        return Ok(match kind.as_deref() {
            None => parts.remove(0),
            Some("and") | Some("with") => Rich::And(parts),
            // `without` narrows a match; as a requirement, the first part is what counts.
            Some("without") => parts.remove(0),
            Some("or") => Rich::Or(parts),
            Some("if") | Some("unless") if parts.len() == 2 => {
                let cond = Box::new(parts.remove(1));
                let then = Box::new(parts.remove(0));
                if kind.as_deref() == Some("if") {
                    Rich::If(then, cond, else_part)
                } else {
                    Rich::Unless(then, cond, else_part)
                }
            }
            _ => return Err(bad()),
        });
    }
    if tok == ")" {
        return Err(bad());
    }
    let name = tok.clone();
    *pos += 1;
    if let Some(o) = t.get(*pos).and_then(|s| op(s)) {
        let v = t.get(*pos + 1).ok_or_else(bad)?;
        *pos += 2;
        return Ok(Rich::Dep(Dep {
            name,
            range: Some((o, Evr::parse(v)?)),
        }));
    }
    Ok(Rich::Dep(Dep { name, range: None }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_expressions() {
        assert_eq!(parse("foo").unwrap(), Rich::Dep(Dep::any("foo")));
        let r = parse("(foo >= 1.2 or (bar and baz))").unwrap();
        let Rich::Or(parts) = r else { panic!("{r:?}") };
        assert_eq!(
            parts[0],
            Rich::Dep(Dep {
                name: "foo".into(),
                range: Some((Op::Ge, Evr::parse("1.2").unwrap()))
            })
        );
        assert!(matches!(&parts[1], Rich::And(v) if v.len() == 2));
        let r = parse("(a if b else c)").unwrap();
        assert!(matches!(r, Rich::If(_, _, Some(_))), "{r:?}");
        assert!(parse("(a or b and c)").is_err());
        assert!(parse("(a or").is_err());
        assert!(parse("(a) b").is_err());
    }
}
