//! Which nodes a command line names: host name patterns by default, NodeIDs
//! (MAC addresses, exact or globbed) with `-i/--nodeid`, everything when no
//! argument is given.

use crate::error::{Error, Result};
use crate::mac::Mac;
use crate::node::Node;
use crate::pattern::{Pattern, PatternSet};

/// One NodeID argument.
#[derive(Clone, Debug)]
pub enum IdPattern {
    /// An exact MAC address (any spelling).
    Exact(Mac),
    /// A glob over the colon form (`00:11:22:*`), case-insensitive.
    Glob(Pattern),
}

/// Nodes named on a command line.
#[derive(Clone, Debug)]
pub enum Selector {
    /// No argument: every node.
    All,
    /// Host name patterns.
    Names(PatternSet),
    /// NodeIDs (`-i/--nodeid`).
    Ids(Vec<(String, IdPattern)>),
}

impl Selector {
    /// Builds a selector from command line arguments.
    pub fn from_args<S: AsRef<str>>(args: &[S], by_nodeid: bool) -> Result<Selector> {
        if args.is_empty() {
            return Ok(Selector::All);
        }
        if !by_nodeid {
            return PatternSet::parse(args).map(Selector::Names);
        }
        let mut ids = Vec::new();
        for a in args {
            let a = a.as_ref();
            let p = if a.contains(['*', '?']) {
                IdPattern::Glob(Pattern::parse(a)?)
            } else {
                IdPattern::Exact(Mac::parse(a)?)
            };
            ids.push((a.to_string(), p));
        }
        Ok(Selector::Ids(ids))
    }

    /// The arguments as the user wrote them, for messages.
    pub fn describe(&self) -> String {
        match self {
            Selector::All => "*".into(),
            Selector::Names(p) => p.0.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(" "),
            Selector::Ids(ids) => ids
                .iter()
                .map(|(s, _)| s.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// Filters `nodes` (keeping their order). With `strict`, every argument
    /// must match at least one node.
    pub fn apply(&self, nodes: Vec<Node>, strict: bool) -> Result<Vec<Node>> {
        match self {
            Selector::All => Ok(nodes),
            Selector::Names(set) => {
                let mut hit = vec![false; set.0.len()];
                let out: Vec<Node> = nodes
                    .into_iter()
                    .filter(|n| {
                        let mut any = false;
                        for (i, p) in set.0.iter().enumerate() {
                            if p.matches(&n.hostname) {
                                hit[i] = true;
                                any = true;
                            }
                        }
                        any
                    })
                    .collect();
                check(strict, &hit, |i| set.0[i].as_str().to_string())?;
                Ok(out)
            }
            Selector::Ids(ids) => {
                let mut hit = vec![false; ids.len()];
                let out: Vec<Node> = nodes
                    .into_iter()
                    .filter(|n| {
                        let text = n.nodeid.to_string();
                        let mut any = false;
                        for (i, (_, p)) in ids.iter().enumerate() {
                            let m = match p {
                                IdPattern::Exact(m) => *m == n.nodeid,
                                IdPattern::Glob(g) => g.matches_ignore_case(&text),
                            };
                            if m {
                                hit[i] = true;
                                any = true;
                            }
                        }
                        any
                    })
                    .collect();
                check(strict, &hit, |i| ids[i].0.clone())?;
                Ok(out)
            }
        }
    }
}

fn check(strict: bool, hit: &[bool], name: impl Fn(usize) -> String) -> Result<()> {
    if strict && let Some(i) = hit.iter().position(|h| !h) {
        return Err(Error::NoMatch(name(i)));
    }
    Ok(())
}
