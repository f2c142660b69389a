//! ISC dhcpd.conf `host` blocks, as Perceus's import-isc-dhcpd.pl read them:
//!
//! ```text
//! host n0000 {
//!     hardware ethernet 00:00:00:00:00:00;
//!     fixed-address 10.0.1.0;
//! }
//! ```
//!
//! Host blocks may sit inside `group`/`subnet` blocks; other statements are
//! ignored. `option host-name "x";` overrides the declaration's name.

use std::net::Ipv4Addr;
use std::path::Path;

use super::Imported;
use crate::db::NewNode;
use crate::error::{Error, Result};
use crate::ipaddr::IpEntry;
use crate::mac::Mac;
use crate::node::validate_hostname;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Open,
    Close,
    Semi,
}

fn tokenize(path: &Path, text: &str) -> Result<Vec<(Tok, usize)>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let ln = i + 1;
        let mut chars = line.chars().peekable();
        while let Some(&c) = chars.peek() {
            match c {
                '#' => break,
                c if c.is_whitespace() => {
                    chars.next();
                }
                '{' | '}' | ';' => {
                    chars.next();
                    out.push((
                        match c {
                            '{' => Tok::Open,
                            '}' => Tok::Close,
                            _ => Tok::Semi,
                        },
                        ln,
                    ));
                }
                '"' => {
                    chars.next();
                    let mut w = String::new();
                    let mut closed = false;
                    while let Some(c) = chars.next() {
                        match c {
                            '"' => {
                                closed = true;
                                break;
                            }
                            '\\' => {
                                if let Some(n) = chars.next() {
                                    w.push(n);
                                }
                            }
                            c => w.push(c),
                        }
                    }
                    if !closed {
                        return Err(Error::Syntax {
                            path: path.to_path_buf(),
                            line: ln,
                            reason: "unterminated string".into(),
                        });
                    }
                    out.push((Tok::Word(w), ln));
                }
                _ => {
                    let mut w = String::new();
                    while let Some(&c) = chars.peek() {
                        if c.is_whitespace() || "{};#\"".contains(c) {
                            break;
                        }
                        w.push(c);
                        chars.next();
                    }
                    out.push((Tok::Word(w), ln));
                }
            }
        }
    }
    Ok(out)
}

/// Parses dhcpd.conf text.
pub fn parse(path: &Path, text: &str) -> Result<Imported> {
    let syntax = |line: usize, reason: String| Error::Syntax {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let toks = tokenize(path, text)?;
    let mut out = Imported::default();
    let mut i = 0;
    let mut depth = 0usize;
    while i < toks.len() {
        match &toks[i].0 {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| syntax(toks[i].1, "unbalanced '}'".into()))?;
            }
            Tok::Word(w) if w == "host" && matches!(toks.get(i + 2), Some((Tok::Open, _))) => {
                let line = toks[i].1;
                let decl = match toks.get(i + 1) {
                    Some((Tok::Word(n), _)) => n.clone(),
                    _ => return Err(syntax(line, "host without a name".into())),
                };
                i += 3;
                let mut stmts: Vec<(Vec<String>, usize)> = Vec::new();
                let mut cur: Vec<String> = Vec::new();
                let mut inner = 0usize;
                let mut closed = false;
                while i < toks.len() {
                    let (t, ln) = &toks[i];
                    i += 1;
                    match t {
                        Tok::Word(w) => cur.push(w.clone()),
                        Tok::Semi => {
                            if !cur.is_empty() {
                                stmts.push((std::mem::take(&mut cur), *ln));
                            }
                        }
                        Tok::Open => inner += 1,
                        Tok::Close if inner > 0 => inner -= 1,
                        Tok::Close => {
                            closed = true;
                            break;
                        }
                    }
                }
                if !closed {
                    return Err(syntax(line, format!("host {decl}: missing '}}'")));
                }
                if !cur.is_empty() {
                    return Err(syntax(
                        line,
                        format!("host {decl}: statement '{}' lacks ';'", cur.join(" ")),
                    ));
                }
                host_block(path, &decl, line, &stmts, &mut out)?;
                continue;
            }
            Tok::Word(_) | Tok::Semi => {}
        }
        i += 1;
    }
    if depth != 0 {
        return Err(syntax(
            toks.last().map(|t| t.1).unwrap_or(0),
            "unbalanced '{'".into(),
        ));
    }
    Ok(out)
}

fn host_block(
    path: &Path,
    decl: &str,
    line: usize,
    stmts: &[(Vec<String>, usize)],
    out: &mut Imported,
) -> Result<()> {
    let syntax = |line: usize, reason: String| Error::Syntax {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut mac = None;
    let mut name = decl.to_string();
    let mut addr: Option<Ipv4Addr> = None;
    for (words, ln) in stmts {
        match words
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["hardware", "ethernet", m] => {
                mac = Some(Mac::parse(m).map_err(|e| syntax(*ln, format!("host {decl}: {e}")))?);
            }
            ["hardware", ..] => {
                return Err(syntax(
                    *ln,
                    format!("host {decl}: expected 'hardware ethernet MAC;'"),
                ));
            }
            ["fixed-address", rest @ ..] => {
                let first = rest.join(" ");
                let first = first
                    .split(',')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                match first.parse::<Ipv4Addr>() {
                    Ok(a) => addr = Some(a),
                    Err(_) => out.warnings.push(format!(
                        "{}:{ln}: host {decl}: fixed-address '{first}' is not an IPv4 address; ignored",
                        path.display()
                    )),
                }
            }
            ["option", "host-name", n] => name = (*n).to_string(),
            _ => {}
        }
    }
    let Some(mac) = mac else {
        out.warnings.push(format!(
            "{}:{line}: host {decl} has no 'hardware ethernet'; skipped",
            path.display()
        ));
        return Ok(());
    };
    validate_hostname(&name)
        .map_err(|r| syntax(line, format!("host {decl}: hostname '{name}': {r}")))?;
    out.nodes.push(NewNode {
        mac: Some(mac),
        hostname: Some(name),
        ipaddr: addr
            .map(|a| {
                vec![IpEntry {
                    device: None,
                    addr: a,
                    prefix: None,
                    gateway: None,
                }]
            })
            .unwrap_or_default(),
        ..NewNode::default()
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_guide_block_and_nested_ones() {
        let text = r#"
# from the Perceus guide
host n0000 {
    hardware ethernet 00:00:00:00:00:00;
    fixed-address 10.0.1.0;
}
subnet 10.0.0.0 netmask 255.255.0.0 {
  option routers 10.0.0.1;
  group {
    host io1 { hardware ethernet 00:11:22:33:44:55; fixed-address 10.0.2.1; option host-name "io-1"; }
  }
  host nomac { fixed-address 10.0.9.9; }
  host byname { hardware ethernet 0:1:2:3:4:5; fixed-address n7.example.org; }
}
"#;
        let got = parse(Path::new("dhcpd.conf"), text).unwrap();
        let names: Vec<_> = got
            .nodes
            .iter()
            .map(|n| n.hostname.clone().unwrap())
            .collect();
        assert_eq!(names, ["n0000", "io-1", "byname"]);
        assert_eq!(got.nodes[0].mac.unwrap().to_string(), "00:00:00:00:00:00");
        assert_eq!(got.nodes[0].ipaddr[0].addr, Ipv4Addr::new(10, 0, 1, 0));
        assert!(got.nodes[2].ipaddr.is_empty());
        assert_eq!(got.warnings.len(), 2, "{:?}", got.warnings);
        assert!(got.warnings[0].contains("dhcpd.conf:12") && got.warnings[0].contains("nomac"));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse(
            Path::new("d.conf"),
            "host a {\n hardware ethernet 00:11:22:33:44:zz;\n}\n",
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("d.conf:2: host a: malformed MAC"),
            "{e}"
        );
        let e = parse(
            Path::new("d.conf"),
            "host a {\n hardware ethernet 00:11:22:33:44:55;\n",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("d.conf:1: host a: missing '}'"),
            "{e}"
        );
        let e = parse(Path::new("d.conf"), "}\n").unwrap_err();
        assert!(e.to_string().contains("unbalanced"), "{e}");
        let e = parse(
            Path::new("d.conf"),
            "host a_b { hardware ethernet 00:11:22:33:44:55; }\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("d.conf:1"), "{e}");
    }
}
