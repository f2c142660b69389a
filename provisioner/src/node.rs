//! A node record, the fields `node set` may change, and their validation.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::images::Images;
use crate::ipaddr::{self, IpEntry};
use crate::mac::Mac;

/// One node: its identity (the MAC address), settings and last check-in.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Node {
    /// The NodeID: MAC address of the interface the node boots from.
    pub nodeid: Mac,
    /// Host name; also how commands name the node (not necessarily unique).
    pub hostname: String,
    /// Group (empty: none).
    pub group: String,
    /// VNFS image (empty: none).
    pub vnfs: String,
    /// Whether the node may be provisioned.
    pub enabled: bool,
    /// Debug level for its nodescripts (above 2: shell tracing).
    pub debug: u32,
    /// Free-form notes.
    pub desc: String,
    /// Static addresses (see [`crate::ipaddr`]).
    pub ipaddr: Vec<IpEntry>,
    /// Provisionary state of the last check-in (`init`, `ready`, ...).
    pub state: String,
    /// Address the node last checked in from.
    pub last_addr: String,
    /// Unix time of the last check-in.
    pub last_contact: Option<i64>,
    /// Free-form attributes (`attr.NAME`).
    pub attributes: BTreeMap<String, String>,
}

impl Node {
    /// The `key: value` pairs `node show` prints, in a fixed order.
    pub fn show_pairs(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("nodeid".to_string(), self.nodeid.to_string()),
            ("hostname".to_string(), self.hostname.clone()),
            ("group".to_string(), self.group.clone()),
            ("vnfs".to_string(), self.vnfs.clone()),
            ("enabled".to_string(), u8::from(self.enabled).to_string()),
            ("debug".to_string(), self.debug.to_string()),
            ("desc".to_string(), self.desc.clone()),
            ("ipaddr".to_string(), ipaddr::format_list(&self.ipaddr)),
            ("state".to_string(), self.state.clone()),
            ("last address".to_string(), self.last_addr.clone()),
            (
                "last contact".to_string(),
                self.last_contact.map(|t| t.to_string()).unwrap_or_default(),
            ),
        ];
        v.extend(
            self.attributes
                .iter()
                .map(|(k, val)| (format!("attr.{k}"), val.clone())),
        );
        v
    }

    /// Sort order for listings: hostnames in natural order, then NodeID.
    pub fn display_cmp(&self, other: &Node) -> Ordering {
        natural_cmp(&self.hostname, &other.hostname).then(self.nodeid.cmp(&other.nodeid))
    }
}

/// Compares strings so that digit runs compare by value (`n2` < `n10`).
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, _) => return Ordering::Less,
            (_, None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let la = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let lb = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (da, db) = (&a[..la], &b[..lb]);
                let ta = trim_zeros(da);
                let tb = trim_zeros(db);
                let ord = ta.len().cmp(&tb.len()).then(ta.cmp(tb)).then(la.cmp(&lb));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[la..];
                b = &b[lb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let z = d.iter().take_while(|&&c| c == b'0').count();
    &d[z..]
}

/// A field `node set` and `group set` may change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    /// `hostname`
    Hostname,
    /// `group`
    Group,
    /// `vnfs`
    Vnfs,
    /// `enabled`
    Enabled,
    /// `debug`
    Debug,
    /// `desc`
    Desc,
    /// `ipaddr`
    Ipaddr,
    /// `attr.NAME`: a free-form attribute; an empty value removes it.
    Attr(String),
}

/// A validated value for a [`Field`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// Text fields (hostname, group, vnfs, desc, attributes).
    Text(String),
    /// `enabled`.
    Bool(bool),
    /// `debug`.
    Number(u32),
    /// `ipaddr`.
    Addrs(Vec<IpEntry>),
}

impl Field {
    /// Parses a field name as `node set` takes it (case-insensitive, except
    /// the attribute name).
    pub fn parse(name: &str) -> Result<Field> {
        if let Some(attr) = name.strip_prefix("attr.") {
            if attr.is_empty()
                || !attr
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            {
                return Err(Error::UnknownField(name.to_string()));
            }
            return Ok(Field::Attr(attr.to_string()));
        }
        Ok(match name.to_ascii_lowercase().as_str() {
            "hostname" | "name" => Field::Hostname,
            "group" | "groupname" => Field::Group,
            "vnfs" | "vnfsname" => Field::Vnfs,
            "enabled" => Field::Enabled,
            "debug" => Field::Debug,
            "desc" | "description" => Field::Desc,
            "ipaddr" => Field::Ipaddr,
            _ => return Err(Error::UnknownField(name.to_string())),
        })
    }

    /// The field's name as `node show` prints it.
    pub fn name(&self) -> String {
        match self {
            Field::Hostname => "hostname".into(),
            Field::Group => "group".into(),
            Field::Vnfs => "vnfs".into(),
            Field::Enabled => "enabled".into(),
            Field::Debug => "debug".into(),
            Field::Desc => "desc".into(),
            Field::Ipaddr => "ipaddr".into(),
            Field::Attr(a) => format!("attr.{a}"),
        }
    }

    /// Checks `value` for this field; `vnfs` must name a known image.
    pub fn validate(&self, value: &str, images: &Images) -> Result<Value> {
        let bad = |reason: &str| Error::BadValue {
            field: self.name(),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        if value.chars().any(|c| c.is_control()) {
            return Err(bad("control characters (newlines, tabs) are not allowed"));
        }
        Ok(match self {
            Field::Hostname => {
                validate_hostname(value).map_err(|r| bad(&r))?;
                Value::Text(value.to_string())
            }
            Field::Group => {
                if !value.bytes().all(is_name_byte) {
                    return Err(bad(
                        "a group name may hold only letters, digits, '.', '_' and '-'",
                    ));
                }
                Value::Text(value.to_string())
            }
            Field::Vnfs => {
                if !value.is_empty() && !images.contains(value) {
                    return Err(Error::UnknownVnfs(value.to_string()));
                }
                Value::Text(value.to_string())
            }
            Field::Enabled => {
                Value::Bool(parse_bool(value).ok_or_else(|| bad("expected 1 or 0 (yes/no)"))?)
            }
            Field::Debug => Value::Number(
                value
                    .parse()
                    .map_err(|_| bad("expected a number 0 or more"))?,
            ),
            Field::Desc | Field::Attr(_) => Value::Text(value.to_string()),
            Field::Ipaddr => Value::Addrs(ipaddr::parse_list(value).map_err(|r| bad(&r))?),
        })
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._-".contains(&b)
}

/// Parses Perceus-style truth values.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// Checks a host name: RFC 1123 labels of letters, digits and '-'.
pub fn validate_hostname(h: &str) -> std::result::Result<(), String> {
    if h.is_empty() || h.len() > 253 {
        return Err("a hostname has 1 to 253 characters".into());
    }
    for label in h.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("label '{label}' must have 1 to 63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label '{label}' may not start or end with '-'"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!(
                "label '{label}' may hold only letters, digits and '-'"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        let mut v = vec!["n10", "n2", "io1", "n02", "n1", "n"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, vec!["io1", "n", "n1", "n2", "n02", "n10"]);
    }

    #[test]
    fn fields_validate() {
        let images = Images::from_names(["debian-node"]);
        assert_eq!(Field::parse("VNFS").unwrap(), Field::Vnfs);
        assert!(matches!(
            Field::parse("colour"),
            Err(Error::UnknownField(_))
        ));
        assert!(matches!(Field::parse("attr."), Err(Error::UnknownField(_))));
        assert_eq!(
            Field::parse("attr.rack").unwrap(),
            Field::Attr("rack".into())
        );
        assert!(matches!(
            Field::Vnfs.validate("nope", &images),
            Err(Error::UnknownVnfs(_))
        ));
        assert_eq!(
            Field::Vnfs.validate("debian-node", &images).unwrap(),
            Value::Text("debian-node".into())
        );
        assert_eq!(
            Field::Vnfs.validate("", &images).unwrap(),
            Value::Text(String::new())
        );
        assert!(Field::Hostname.validate("bad_name", &images).is_err());
        assert!(Field::Hostname.validate("-x", &images).is_err());
        assert!(Field::Group.validate("a/b", &images).is_err());
        assert!(Field::Enabled.validate("maybe", &images).is_err());
        assert!(Field::Debug.validate("-1", &images).is_err());
        assert!(Field::Desc.validate("two\nlines", &images).is_err());
        assert_eq!(
            Field::Enabled.validate("yes", &images).unwrap(),
            Value::Bool(true)
        );
    }
}
