//! `/etc/ethers` (ethers(5)): `MAC hostname-or-IP` per line, `#` comments.
//! A host name names the node; an IPv4 address becomes its DHCP address and
//! the name comes from defaults.conf.

use std::net::Ipv4Addr;
use std::path::Path;

use super::Imported;
use crate::db::NewNode;
use crate::error::{Error, Result};
use crate::ipaddr::IpEntry;
use crate::mac::Mac;
use crate::node::validate_hostname;

/// Parses ethers text.
pub fn parse(path: &Path, text: &str) -> Result<Imported> {
    let mut out = Imported::default();
    for (i, raw) in text.lines().enumerate() {
        let ln = i + 1;
        let syntax = |reason: String| Error::Syntax {
            path: path.to_path_buf(),
            line: ln,
            reason,
        };
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [mac, who] = fields.as_slice() else {
            return Err(syntax(format!(
                "expected 'MAC hostname-or-address', found '{line}'"
            )));
        };
        let mac = Mac::parse(mac).map_err(|e| syntax(e.to_string()))?;
        let mut n = NewNode {
            mac: Some(mac),
            ..NewNode::default()
        };
        if let Ok(a) = who.parse::<Ipv4Addr>() {
            n.ipaddr.push(IpEntry {
                device: None,
                addr: a,
                prefix: None,
                gateway: None,
            });
        } else {
            // ethers names may be fully qualified; the node's name is the host part.
            let short = who.split('.').next().unwrap_or(who);
            validate_hostname(short).map_err(|r| syntax(format!("hostname '{who}': {r}")))?;
            n.hostname = Some(short.to_string());
        }
        out.nodes.push(n);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses() {
        let got = parse(
            Path::new("ethers"),
            "# ethers\n08:00:20:00:61:CA  n0001.cluster\n08:00:20:00:61:cb 10.0.1.2 # by address\n\n",
        )
        .unwrap();
        assert_eq!(got.nodes.len(), 2);
        assert_eq!(got.nodes[0].hostname.as_deref(), Some("n0001"));
        assert_eq!(got.nodes[1].hostname, None);
        assert_eq!(got.nodes[1].ipaddr[0].addr, Ipv4Addr::new(10, 0, 1, 2));
        assert_eq!(got.nodes[1].mac.unwrap().to_string(), "08:00:20:00:61:CB");
    }

    #[test]
    fn bad_lines() {
        let e = parse(
            Path::new("/etc/ethers"),
            "08:00:20:00:61:CA n1\n08:00:20:00:61 n2\n",
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("/etc/ethers:2: malformed MAC"),
            "{e}"
        );
        let e = parse(Path::new("e"), "08:00:20:00:61:CA\n").unwrap_err();
        assert!(e.to_string().starts_with("e:1: expected"), "{e}");
    }
}
