//! Provisionary states and the sub-states modules are activated for:
//! `init/all`, `ready/group/compute`, `init/node/n0000`, `ready/vnfs/V`.
//! The base state is any lower-case word (`init` and `ready` are used by
//! default; custom ones such as `boot` or `maint` work the same way). The
//! name after `group/`, `vnfs/` and `node/` may be a range or glob pattern.

use std::fmt;

use crate::error::{Error, Result};
use crate::node::Node;
use crate::pattern::Pattern;

/// Which nodes in a state an activation applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every node.
    All,
    /// Nodes whose group matches.
    Group(Pattern),
    /// Nodes whose VNFS matches.
    Vnfs(Pattern),
    /// Nodes whose hostname (or NodeID) matches.
    Node(Pattern),
}

/// A parsed activation state such as `ready/group/compute`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateSpec {
    /// Base provisionary state (`init`, `ready`, ...).
    pub state: String,
    /// Which nodes in that state.
    pub scope: Scope,
}

/// Checks a base state name: a lower-case word.
pub fn validate_state_name(s: &str) -> Result<()> {
    if s.is_empty()
        || !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(Error::BadState {
            state: s.to_string(),
            reason: "a state is a lower-case word (letters, digits, '_', '-')".into(),
        });
    }
    Ok(())
}

impl StateSpec {
    /// Parses `STATE/all`, `STATE/group/G`, `STATE/vnfs/V` or `STATE/node/N`.
    pub fn parse(s: &str) -> Result<StateSpec> {
        let bad = |reason: &str| Error::BadState {
            state: s.to_string(),
            reason: reason.to_string(),
        };
        let mut parts = s.splitn(3, '/');
        let state = parts.next().unwrap_or_default();
        validate_state_name(state).map_err(|_| bad("the state must be a lower-case word"))?;
        let kind = parts.next().ok_or_else(|| bad("missing sub-state"))?;
        let arg = parts.next();
        let pat = |a: Option<&str>| -> Result<Pattern> {
            let a = a
                .filter(|a| !a.is_empty())
                .ok_or_else(|| bad("missing name after the sub-state"))?;
            if a.contains('/') {
                return Err(bad("a name may not contain '/'"));
            }
            Pattern::parse(a)
        };
        let scope = match kind {
            "all" if arg.is_none() => Scope::All,
            "all" => return Err(bad("'all' takes no name")),
            "group" => Scope::Group(pat(arg)?),
            "vnfs" => Scope::Vnfs(pat(arg)?),
            "node" => Scope::Node(pat(arg)?),
            _ => return Err(bad("unknown sub-state")),
        };
        Ok(StateSpec {
            state: state.to_string(),
            scope,
        })
    }

    /// Whether this activation applies to `node` checking in at `state`.
    pub fn applies(&self, node: &Node, state: &str) -> bool {
        if self.state != state {
            return false;
        }
        match &self.scope {
            Scope::All => true,
            Scope::Group(p) => !node.group.is_empty() && p.matches(&node.group),
            Scope::Vnfs(p) => !node.vnfs.is_empty() && p.matches(&node.vnfs),
            Scope::Node(p) => {
                p.matches(&node.hostname) || p.matches_ignore_case(&node.nodeid.to_string())
            }
        }
    }
}

impl fmt::Display for StateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            Scope::All => write!(f, "{}/all", self.state),
            Scope::Group(p) => write!(f, "{}/group/{}", self.state, p.as_str()),
            Scope::Vnfs(p) => write!(f, "{}/vnfs/{}", self.state, p.as_str()),
            Scope::Node(p) => write!(f, "{}/node/{}", self.state, p.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_guide_states() {
        for s in [
            "init/all",
            "init/node/node0000",
            "init/group/anothergroup",
            "ready/group/newgroup",
            "ready/vnfs/debian-node",
            "maint/node/n00[00-10]",
        ] {
            assert_eq!(StateSpec::parse(s).unwrap().to_string(), s);
        }
        for s in [
            "init",
            "init/",
            "Init/all",
            "init/all/x",
            "init/group/",
            "init/rack/1",
            "/all",
            "init/node/n[5-2]",
        ] {
            assert!(StateSpec::parse(s).is_err(), "{s} accepted");
        }
    }
}
