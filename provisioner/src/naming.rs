//! Naming new nodes from the `Node Name` template of defaults.conf: the next
//! free number from First Node, padded to the `#` count or, when First Node +
//! Total Nodes needs more digits, to that many (`n####` with First Node 1 and
//! Total Nodes 10000 gives `n00001`, as in the magazine test drive).

use std::collections::HashSet;

use crate::config::Defaults;
use crate::error::{Error, Result};

/// Checks a `Node Name` template: one contiguous run of `#`, and otherwise
/// characters a hostname may hold.
pub fn validate_template(t: &str) -> std::result::Result<(), String> {
    let first = t
        .find('#')
        .ok_or("needs '#' placeholders for the node number")?;
    let run = t[first..].chars().take_while(|&c| c == '#').count();
    if t[first + run..].contains('#') {
        return Err("the '#' placeholders must be contiguous".into());
    }
    let rest: String = t.chars().filter(|&c| c != '#').collect();
    if !rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(format!("'{t}' may hold only letters, digits, '-' and '#'"));
    }
    Ok(())
}

/// Generates names from a template.
#[derive(Clone, Debug)]
pub struct Namer {
    prefix: String,
    suffix: String,
    width: usize,
    first: u64,
    total: u64,
}

impl Namer {
    /// Prepares the namer for `defaults`.
    pub fn new(d: &Defaults) -> Result<Namer> {
        validate_template(&d.node_name)
            .map_err(|reason| Error::Config(format!("defaults.conf: Node Name: {reason}")))?;
        let first_hash = d.node_name.find('#').unwrap_or(0);
        let hashes = d.node_name.chars().filter(|&c| c == '#').count();
        let last = d.first_node.saturating_add(d.total_nodes.saturating_sub(1));
        Ok(Namer {
            prefix: d.node_name[..first_hash].to_string(),
            suffix: d.node_name[first_hash + hashes..].to_string(),
            width: hashes.max(last.to_string().len()),
            first: d.first_node,
            total: d.total_nodes,
        })
    }

    /// The name of node number `n`.
    pub fn name(&self, n: u64) -> String {
        format!("{}{:0w$}{}", self.prefix, n, self.suffix, w = self.width)
    }

    /// The lowest free name, skipping `taken`; marks it taken.
    pub fn next_free(&self, taken: &mut HashSet<String>, from: &mut u64) -> Result<String> {
        let end = self.first.saturating_add(self.total);
        let mut n = (*from).max(self.first);
        while n < end {
            let name = self.name(n);
            n += 1;
            if taken.insert(name.clone()) {
                *from = n;
                return Ok(name);
            }
        }
        Err(Error::NamesExhausted {
            first: self.first,
            total: self.total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults(name: &str, first: u64, total: u64) -> Defaults {
        Defaults {
            node_name: name.into(),
            first_node: first,
            total_nodes: total,
            ..Defaults::default()
        }
    }

    #[test]
    fn padding_follows_the_guide() {
        assert_eq!(
            Namer::new(&defaults("n####", 0, 10000)).unwrap().name(15),
            "n0015"
        );
        // The magazine: n#### with First Node 1, Total Nodes 10000 -> n00001.
        assert_eq!(
            Namer::new(&defaults("n####", 1, 10000)).unwrap().name(1),
            "n00001"
        );
        assert_eq!(
            Namer::new(&defaults("n##", 0, 1000)).unwrap().name(7),
            "n007"
        );
        assert_eq!(
            Namer::new(&defaults("node##-ib", 1, 10)).unwrap().name(3),
            "node03-ib"
        );
    }

    #[test]
    fn next_free_skips_taken_and_stops_at_total() {
        let namer = Namer::new(&defaults("n#", 0, 3)).unwrap();
        let mut taken: HashSet<String> = ["n0".to_string(), "n2".to_string()].into();
        let mut from = 0;
        assert_eq!(namer.next_free(&mut taken, &mut from).unwrap(), "n1");
        assert!(matches!(
            namer.next_free(&mut taken, &mut from),
            Err(Error::NamesExhausted { first: 0, total: 3 })
        ));
    }

    #[test]
    fn bad_templates() {
        assert!(validate_template("node").is_err());
        assert!(validate_template("n#x#").is_err());
        assert!(validate_template("n_##").is_err());
        assert!(validate_template("rack1-n###").is_ok());
    }
}
