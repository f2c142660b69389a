//! The `ipaddr` node field: static addresses per node and device, written
//! as Perceus's ipaddr module wrote them, `DEV:ADDR/NETMASK/GATEWAY`.
//!
//! Entries are separated by spaces or commas. The device, mask and gateway
//! are optional: `10.0.1.5` alone is an address DHCP hands out to the node
//! (dnsmasq `dhcp-host`), `eth1:192.168.5.5/24` is also written into the
//! image's network configuration by the ipaddr module. The mask may be a
//! prefix length (`/16`) or a dotted netmask (`/255.255.0.0`).

use std::fmt;
use std::net::Ipv4Addr;

/// One static address of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpEntry {
    /// Network device (`eth0`), when the address is configured statically.
    pub device: Option<String>,
    /// The address.
    pub addr: Ipv4Addr,
    /// Prefix length, when given.
    pub prefix: Option<u8>,
    /// Default gateway, when given.
    pub gateway: Option<Ipv4Addr>,
}

impl IpEntry {
    /// The dotted netmask for the prefix, when one is given.
    pub fn netmask(&self) -> Option<Ipv4Addr> {
        self.prefix.map(prefix_to_mask)
    }
}

impl fmt::Display for IpEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.device {
            write!(f, "{d}:")?;
        }
        write!(f, "{}", self.addr)?;
        if let Some(p) = self.prefix {
            write!(f, "/{p}")?;
        }
        if let Some(g) = self.gateway {
            if self.prefix.is_none() {
                write!(f, "/32")?;
            }
            write!(f, "/{g}")?;
        }
        Ok(())
    }
}

impl serde::Serialize for IpEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The dotted form of a prefix length.
pub fn prefix_to_mask(prefix: u8) -> Ipv4Addr {
    let bits = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    Ipv4Addr::from(bits)
}

fn mask_to_prefix(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// Parses an `ipaddr` value into entries; the error text says which entry
/// is wrong and why.
///
/// Callers already quote the whole value, so each part is named once: the
/// entry only when the value holds several, the piece of it only when it is
/// not the whole entry (`10.0.0.300` gives "not an IPv4 address", not the
/// address three times).
pub fn parse_list(value: &str) -> Result<Vec<IpEntry>, String> {
    let entries: Vec<&str> = value
        .split([',', ' ', '\t'])
        .filter(|s| !s.is_empty())
        .collect();
    let several = entries.len() > 1;
    entries
        .into_iter()
        .map(|e| {
            parse_entry(e).map_err(|reason| {
                if several {
                    format!("entry '{e}': {reason}")
                } else {
                    reason
                }
            })
        })
        .collect()
}

/// Formats entries back into the canonical field value.
pub fn format_list(entries: &[IpEntry]) -> String {
    entries
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses one entry; errors name the offending piece only when it is not
/// the entry itself (the caller names the entry).
fn parse_entry(s: &str) -> Result<IpEntry, String> {
    let (device, rest) = match s.split_once(':') {
        Some((d, r)) => {
            if d.is_empty()
                || !d
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
            {
                return Err(format!("bad device name '{d}'"));
            }
            (Some(d.to_string()), r)
        }
        None => (None, s),
    };
    let mut parts = rest.split('/');
    let addr_s = parts.next().unwrap_or_default();
    let addr: Ipv4Addr = addr_s.parse().map_err(|_| {
        if addr_s == s {
            "not an IPv4 address".to_string()
        } else {
            format!("'{addr_s}' is not an IPv4 address")
        }
    })?;
    let prefix = match parts.next() {
        None => None,
        Some(m) if m.contains('.') => {
            let mask: Ipv4Addr = m.parse().map_err(|_| format!("'{m}' is not a netmask"))?;
            Some(mask_to_prefix(mask).ok_or_else(|| format!("netmask {m} is not contiguous"))?)
        }
        Some(m) => match m.parse::<u8>() {
            Ok(p) if p <= 32 => Some(p),
            _ => return Err(format!("prefix '{m}' is not 0..32")),
        },
    };
    let gateway = match parts.next() {
        None => None,
        Some(g) => Some(
            g.parse::<Ipv4Addr>()
                .map_err(|_| format!("gateway '{g}' is not an IPv4 address"))?,
        ),
    };
    if parts.next().is_some() {
        return Err("too many '/' parts (DEV:ADDR/MASK/GATEWAY)".to_string());
    }
    if let (Some(d), None) = (&device, prefix) {
        return Err(format!(
            "a static address on {d} needs a mask (/24 or /255.255.255.0)"
        ));
    }
    Ok(IpEntry {
        device,
        addr,
        prefix,
        gateway,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_perceus_and_cidr_forms() {
        let l =
            parse_list("eth0:10.0.0.5/255.255.0.0/10.0.0.1, 10.0.1.9 ib0:192.168.1.5/24").unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].device.as_deref(), Some("eth0"));
        assert_eq!(l[0].prefix, Some(16));
        assert_eq!(l[0].gateway, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(l[1].device, None);
        assert_eq!(
            format_list(&l),
            "eth0:10.0.0.5/16/10.0.0.1 10.0.1.9 ib0:192.168.1.5/24"
        );
        assert_eq!(l[2].netmask(), Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(parse_list("").unwrap(), vec![]);
    }

    #[test]
    fn rejects_bad_entries() {
        for bad in [
            "10.0.0",
            "eth0:10.0.0.1/33",
            "eth0:10.0.0.1/255.0.255.0",
            ":10.0.0.1",
            "eth0:10.0.0.1/24/10.0.0",
            "eth0:10.0.0.1/24/10.0.0.1/x",
            "e th0:1.2.3.4",
            "eth0:10.0.0.1",
        ] {
            assert!(parse_list(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn errors_name_each_part_once() {
        // The caller quotes the whole value; the reason adds only what the
        // value does not already say.
        assert_eq!(parse_list("10.0.0.300").unwrap_err(), "not an IPv4 address");
        assert_eq!(
            parse_list("eth0:10.0.0.300/24").unwrap_err(),
            "'10.0.0.300' is not an IPv4 address"
        );
        assert_eq!(
            parse_list("eth0:10.0.0.1/24 eth1:10.0.0.300/24").unwrap_err(),
            "entry 'eth1:10.0.0.300/24': '10.0.0.300' is not an IPv4 address"
        );
        assert_eq!(
            parse_list("10.0.0.1, 10.0.0.300").unwrap_err(),
            "entry '10.0.0.300': not an IPv4 address"
        );
        assert_eq!(
            parse_list("eth0:10.0.0.1/33").unwrap_err(),
            "prefix '33' is not 0..32"
        );
        assert_eq!(
            parse_list("eth0:10.0.0.1/24/10.0.0").unwrap_err(),
            "gateway '10.0.0' is not an IPv4 address"
        );
    }
}
