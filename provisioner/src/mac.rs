//! MAC addresses, the NodeID that keys every node.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A 48-bit Ethernet address. Displays as upper-case colon-separated hex
/// (`00:1A:2B:3C:4D:5E`), the form Perceus printed as the NodeID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// Parses `00:11:22:33:44:55`, `00-11-22-33-44-55` or `001122334455`,
    /// in either case; single-digit groups (`0:1:2:3:4:5`, as some dhcpd
    /// files and `ethers` write them) are accepted too.
    pub fn parse(s: &str) -> Result<Mac> {
        let bad = || Error::BadMac(s.to_string());
        let t = s.trim();
        let mut out = [0u8; 6];
        let groups: Vec<&str> = if t.contains(':') {
            t.split(':').collect()
        } else if t.contains('-') {
            t.split('-').collect()
        } else if t.len() == 12 {
            (0..6).map(|i| &t[i * 2..i * 2 + 2]).collect()
        } else {
            return Err(bad());
        };
        if groups.len() != 6 {
            return Err(bad());
        }
        for (slot, g) in out.iter_mut().zip(&groups) {
            if g.is_empty() || g.len() > 2 || !g.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            *slot = u8::from_str_radix(g, 16).map_err(|_| bad())?;
        }
        Ok(Mac(out))
    }

    /// The address with hyphens and lower case (`00-1a-2b-3c-4d-5e`), the
    /// form iPXE's `${mac:hexhyp}` produces and boot URLs carry.
    pub fn hyphenated(&self) -> String {
        self.0
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join("-")
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl serde::Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl FromStr for Mac {
    type Err = Error;
    fn from_str(s: &str) -> Result<Mac> {
        Mac::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_spellings() {
        let want = "00:1A:2B:3C:4D:5E";
        for s in [
            "00:1a:2b:3c:4d:5e",
            "00-1A-2B-3C-4D-5E",
            "001a2b3c4d5e",
            " 00:1A:2B:3C:4D:5E ",
        ] {
            assert_eq!(Mac::parse(s).unwrap().to_string(), want, "{s}");
        }
        assert_eq!(
            Mac::parse("0:1:2:a:b:c").unwrap().to_string(),
            "00:01:02:0A:0B:0C"
        );
        assert_eq!(
            Mac::parse("00:1a:2b:3c:4d:5e").unwrap().hyphenated(),
            "00-1a-2b-3c-4d-5e"
        );
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "00:11:22:33:44",
            "00:11:22:33:44:55:66",
            "00:11:22:33:44:5g",
            "001:1:22:33:44:55",
            "00:11:22:33:44:",
            "0011223344",
            "00:11-22:33:44:55",
            "zz:11:22:33:44:55",
        ] {
            assert!(
                matches!(Mac::parse(s), Err(Error::BadMac(_))),
                "{s:?} accepted"
            );
        }
    }
}
