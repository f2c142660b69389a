//! Warewulf 4 `nodes.conf` (YAML). Each entry under `nodes:` becomes a node:
//! the name is the hostname, the primary network device's `hwaddr` the
//! NodeID, `container name` (4.0-4.5) or `image name` (4.6) the VNFS, the
//! first profile other than `default` the group, `comment` the description,
//! every device with an address an `ipaddr` entry, and `tags`/`keys` the
//! attributes. Node profiles are not merged in: vnfs has groups instead.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use serde_yaml_ng::Value;

use super::Imported;
use crate::db::NewNode;
use crate::error::{Error, Result};
use crate::ipaddr::{self, IpEntry};
use crate::mac::Mac;
use crate::node::validate_hostname;

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping().and_then(|m| m.get(key))
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn truthy(v: Option<&Value>) -> bool {
    text(v).is_some_and(|s| {
        s.eq_ignore_ascii_case("true") || s == "1" || s.eq_ignore_ascii_case("yes")
    })
}

/// Parses nodes.conf text.
pub fn parse(path: &Path, text_in: &str) -> Result<Imported> {
    let doc: Value = serde_yaml_ng::from_str(text_in).map_err(|e| Error::Syntax {
        path: path.to_path_buf(),
        line: e.location().map(|l| l.line()).unwrap_or(0),
        reason: format!("not valid YAML: {e}"),
    })?;
    let bad = |reason: String| Error::Syntax {
        path: path.to_path_buf(),
        line: 0,
        reason,
    };
    let mut out = Imported::default();
    let Some(nodes) = get(&doc, "nodes") else {
        return Err(bad(
            "no 'nodes:' section (is this a Warewulf 4 nodes.conf?)".into(),
        ));
    };
    let nodes = match nodes {
        Value::Mapping(m) => m,
        Value::Null => return Ok(out),
        _ => return Err(bad("'nodes:' is not a mapping of node names".into())),
    };
    // Mapping order is file order; sort for deterministic naming.
    let mut entries: Vec<(String, &Value)> = Vec::new();
    for (k, v) in nodes {
        let name = text(Some(k)).ok_or_else(|| bad("a node name is not a string".into()))?;
        entries.push((name, v));
    }
    entries.sort_by(|a, b| crate::node::natural_cmp(&a.0, &b.0));
    for (name, node) in entries {
        let ctx = |reason: String| bad(format!("node {name}: {reason}"));
        validate_hostname(&name).map_err(|r| ctx(format!("hostname: {r}")))?;
        let mut devices: Vec<(String, &Value)> = match get(node, "network devices") {
            Some(Value::Mapping(m)) => m
                .iter()
                .filter_map(|(k, v)| text(Some(k)).map(|k| (k, v)))
                .collect(),
            _ => Vec::new(),
        };
        devices.sort_by(|a, b| a.0.cmp(&b.0));
        let primary_name = text(get(node, "primary network"));
        let primary = devices
            .iter()
            .find(|(n, _)| Some(n) == primary_name.as_ref())
            .or_else(|| {
                devices
                    .iter()
                    .find(|(_, d)| truthy(get(d, "primary")) || truthy(get(d, "default")))
            })
            .or_else(|| devices.iter().find(|(n, _)| n == "default"))
            .or_else(|| {
                devices
                    .iter()
                    .find(|(_, d)| text(get(d, "hwaddr")).is_some())
            });
        let Some(hw) = primary.and_then(|(_, d)| text(get(d, "hwaddr"))) else {
            out.warnings.push(format!(
                "{}: node {name} has no hwaddr on its primary network device; skipped",
                path.display()
            ));
            continue;
        };
        let mac = Mac::parse(&hw).map_err(|e| ctx(e.to_string()))?;
        let mut addrs = Vec::new();
        // The primary device first: its address is the one DHCP hands out.
        let mut ordered: Vec<&(String, &Value)> = Vec::new();
        if let Some(p) = primary {
            ordered.push(p);
        }
        ordered.extend(devices.iter().filter(|d| Some(*d) != primary));
        for (netname, d) in ordered {
            let Some(a) = text(get(d, "ipaddr")) else {
                continue;
            };
            let addr: Ipv4Addr = a
                .parse()
                .map_err(|_| ctx(format!("network {netname}: ipaddr '{a}' is not IPv4")))?;
            let dev = text(get(d, "device")).unwrap_or_else(|| netname.clone());
            let mut spec = format!("{dev}:{addr}");
            let mask = text(get(d, "netmask")).unwrap_or_else(|| "255.255.255.0".to_string());
            spec.push('/');
            spec.push_str(&mask);
            if let Some(g) = text(get(d, "gateway")) {
                spec.push('/');
                spec.push_str(&g);
            }
            let mut e: Vec<IpEntry> =
                ipaddr::parse_list(&spec).map_err(|r| ctx(format!("network {netname}: {r}")))?;
            addrs.append(&mut e);
        }
        let vnfs = text(get(node, "image name")).or_else(|| text(get(node, "container name")));
        let group = match get(node, "profiles") {
            Some(Value::Sequence(s)) => s
                .iter()
                .filter_map(|p| text(Some(p)))
                .find(|p| p != "default"),
            _ => None,
        };
        let mut attributes = BTreeMap::new();
        for key in ["tags", "keys"] {
            if let Some(Value::Mapping(m)) = get(node, key) {
                for (k, v) in m {
                    if let (Some(k), Some(v)) = (text(Some(k)), text(Some(v))) {
                        attributes.insert(k, v);
                    }
                }
            }
        }
        out.nodes.push(NewNode {
            mac: Some(mac),
            hostname: Some(name.clone()),
            group,
            vnfs,
            desc: text(get(node, "comment")),
            ipaddr: addrs,
            attributes,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES_CONF: &str = r#"WW_INTERNAL: 45
nodeprofiles:
  default:
    comment: This profile is automatically included for each node
nodes:
  node10:
    profiles:
    - default
    - compute
    comment: rack 3
    container name: rocky-9
    network devices:
      default:
        device: wwnet0
        hwaddr: e6:92:39:49:7b:03
        ipaddr: 192.168.3.21
        netmask: 255.255.255.0
        gateway: 192.168.3.1
      ib:
        device: ib0
        ipaddr: 10.10.3.21
        netmask: 255.255.0.0
    tags:
      rack: "3"
  node2:
    image name: debian-node
    network devices:
      lan:
        device: eth0
        hwaddr: 9A:77:29:73:14:F1
        primary: "true"
  nomac:
    network devices:
      default:
        device: eth0
"#;

    #[test]
    fn reads_nodes_devices_and_tags() {
        let got = parse(Path::new("nodes.conf"), NODES_CONF).unwrap();
        assert_eq!(got.nodes.len(), 2);
        let n2 = &got.nodes[0];
        assert_eq!(n2.hostname.as_deref(), Some("node2"));
        assert_eq!(n2.vnfs.as_deref(), Some("debian-node"));
        assert_eq!(n2.mac.unwrap().to_string(), "9A:77:29:73:14:F1");
        let n10 = &got.nodes[1];
        assert_eq!(n10.group.as_deref(), Some("compute"));
        assert_eq!(n10.desc.as_deref(), Some("rack 3"));
        assert_eq!(n10.vnfs.as_deref(), Some("rocky-9"));
        assert_eq!(
            ipaddr::format_list(&n10.ipaddr),
            "wwnet0:192.168.3.21/24/192.168.3.1 ib0:10.10.3.21/16"
        );
        assert_eq!(n10.attributes.get("rack").map(String::as_str), Some("3"));
        assert_eq!(got.warnings.len(), 1);
        assert!(got.warnings[0].contains("nomac"));
    }

    #[test]
    fn bad_yaml_names_the_line() {
        let e = parse(
            Path::new("nodes.conf"),
            "nodes:\n  n1:\n    comment: [unclosed\n",
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("nodes.conf:"), "{e}");
        assert!(!e.to_string().starts_with("nodes.conf:0"), "{e}");
        let e = parse(Path::new("nodes.conf"), "foo: 1\n").unwrap_err();
        assert!(e.to_string().contains("no 'nodes:'"), "{e}");
        let e = parse(
            Path::new("nodes.conf"),
            "nodes:\n  n1:\n    network devices:\n      default:\n        hwaddr: nope\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("node n1: malformed MAC"), "{e}");
    }
}
