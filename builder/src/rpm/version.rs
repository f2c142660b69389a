//! RPM versions and dependency ranges. Ordering is rpm's own (`rpmvercmp`,
//! with `~` sorting before and `^` after a release) from the `rpm-version`
//! crate; range overlap follows librpm's `rpmdsCompare`: a missing epoch is
//! 0, a release is only compared when both sides have one, and an
//! unversioned side matches anything.

use std::cmp::Ordering;
use std::fmt;

use rpm_version::Evr as CrateEvr;

/// Epoch, version, release.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
pub struct Evr {
    /// Epoch (0 when absent).
    pub epoch: u32,
    /// Upstream version.
    pub version: String,
    /// Package release; empty in a requirement that names none.
    pub release: String,
}

/// One component compared with rpmvercmp.
fn vercmp(a: &str, b: &str) -> Ordering {
    CrateEvr::new("0", a, "").cmp(&CrateEvr::new("0", b, ""))
}

impl Evr {
    /// Parses `[epoch:]version[-release]`; a non-numeric epoch is an error.
    pub fn parse(s: &str) -> Result<Evr, String> {
        let (epoch, vr) = match s.split_once(':') {
            Some((e, vr)) => (
                e.parse::<u32>()
                    .map_err(|_| format!("bad epoch in version {s:?}"))?,
                vr,
            ),
            None => (0, s),
        };
        let (version, release) = match vr.rsplit_once('-') {
            Some((v, r)) => (v, r),
            None => (vr, ""),
        };
        Ok(Evr {
            epoch,
            version: version.to_string(),
            release: release.to_string(),
        })
    }

    /// Total order of two full package versions (rpm's sort order).
    pub fn cmp_full(&self, other: &Evr) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| vercmp(&self.version, &other.version))
            .then_with(|| vercmp(&self.release, &other.release))
    }

    /// rpmdsCompare's comparison: releases only count when both have one.
    fn cmp_range(&self, other: &Evr) -> Ordering {
        let o = self
            .epoch
            .cmp(&other.epoch)
            .then_with(|| vercmp(&self.version, &other.version));
        if o == Ordering::Equal && !self.release.is_empty() && !other.release.is_empty() {
            vercmp(&self.release, &other.release)
        } else {
            o
        }
    }
}

impl fmt::Display for Evr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch != 0 {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(&self.version)?;
        if !self.release.is_empty() {
            write!(f, "-{}", self.release)?;
        }
        Ok(())
    }
}

/// The comparison of a versioned dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `=`
    Eq,
    /// `>=`
    Ge,
    /// `>`
    Gt,
}

impl Op {
    /// From primary.xml's `flags` attribute (`LT`, `LE`, `EQ`, `GE`, `GT`).
    pub fn from_xml(s: &str) -> Option<Op> {
        Some(match s {
            "LT" => Op::Lt,
            "LE" => Op::Le,
            "EQ" => Op::Eq,
            "GE" => Op::Ge,
            "GT" => Op::Gt,
            _ => return None,
        })
    }

    /// From a header's sense bits (RPMSENSE_LESS 2, GREATER 4, EQUAL 8).
    pub fn from_sense(bits: u32) -> Option<Op> {
        let (l, g, e) = (bits & 2 != 0, bits & 4 != 0, bits & 8 != 0);
        Some(match (l, g, e) {
            (true, false, false) => Op::Lt,
            (true, false, true) => Op::Le,
            (false, false, true) => Op::Eq,
            (false, true, true) => Op::Ge,
            (false, true, false) => Op::Gt,
            _ => return None,
        })
    }

    fn less(self) -> bool {
        matches!(self, Op::Lt | Op::Le)
    }
    fn greater(self) -> bool {
        matches!(self, Op::Gt | Op::Ge)
    }
    fn equal(self) -> bool {
        matches!(self, Op::Le | Op::Eq | Op::Ge)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">",
        })
    }
}

/// A Requires/Provides/Conflicts entry: a name (package, virtual
/// capability or absolute path) with an optional range.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dep {
    /// Capability name.
    pub name: String,
    /// Range, when versioned.
    pub range: Option<(Op, Evr)>,
}

impl Dep {
    /// An unversioned capability.
    pub fn any(name: &str) -> Dep {
        Dep {
            name: name.to_string(),
            range: None,
        }
    }

    /// Whether the provide `self` satisfies the requirement `req` (names
    /// must be equal; ranges must overlap, as librpm decides).
    pub fn provides(&self, req: &Dep) -> bool {
        if self.name != req.name {
            return false;
        }
        let (Some((pop, pevr)), Some((rop, revr))) = (&self.range, &req.range) else {
            return true;
        };
        match pevr.cmp_range(revr) {
            Ordering::Less => pop.greater() || rop.less(),
            Ordering::Greater => pop.less() || rop.greater(),
            Ordering::Equal => {
                (pop.equal() && rop.equal())
                    || (pop.less() && rop.less())
                    || (pop.greater() && rop.greater())
            }
        }
    }
}

impl fmt::Display for Dep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.range {
            None => f.write_str(&self.name),
            Some((op, evr)) => write!(f, "{} {op} {evr}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evr(s: &str) -> Evr {
        Evr::parse(s).unwrap()
    }

    #[test]
    fn rpmvercmp_order() {
        // Cases from rpm's own test suite (rpmvercmp.at).
        let less = [
            ("1.0", "1.0.1"),
            ("1.0~rc1", "1.0"),
            ("1.0~rc1", "1.0~rc2"),
            ("1.0~rc1~git123", "1.0~rc1"),
            ("1.0", "1.0^"),
            ("1.0^", "1.0^git1"),
            ("1.0^git1", "1.01"),
            ("1.0^20160101", "1.0.1"),
            ("1.0~rc1^git1", "1.0~rc1^git2"),
            ("1.0~rc1", "1.0~rc1^git1"),
            ("2.0", "10.0"),
            ("a", "1"),
            ("1.0a", "1.0.1"),
            ("5.5p1", "5.5p2"),
            ("5.5p1", "5.5p10"),
        ];
        for (a, b) in less {
            assert_eq!(vercmp(a, b), Ordering::Less, "{a} < {b}");
            assert_eq!(vercmp(b, a), Ordering::Greater, "{b} > {a}");
        }
        assert_eq!(vercmp("1.0", "1.0"), Ordering::Equal);
        assert_eq!(vercmp("1.0.0", "1.0.0"), Ordering::Equal);
        assert_eq!(vercmp("1_0", "1.0"), Ordering::Equal);
        assert_eq!(vercmp("001", "1"), Ordering::Equal);
    }

    #[test]
    fn epoch_wins() {
        assert_eq!(evr("1:1.0-1").cmp_full(&evr("2.0-1")), Ordering::Greater);
        assert_eq!(evr("0:2.0-1").cmp_full(&evr("2.0-1")), Ordering::Equal);
        assert_eq!(evr("1:2.0-1").to_string(), "1:2.0-1");
        assert_eq!(evr("2.0").to_string(), "2.0");
        assert!(Evr::parse("x:1").is_err());
    }

    fn dep(name: &str, op: Option<Op>, v: &str) -> Dep {
        Dep {
            name: name.into(),
            range: op.map(|o| (o, evr(v))),
        }
    }

    #[test]
    fn ranges_overlap_like_rpm() {
        let prov = dep("foo", Some(Op::Eq), "1.0-3");
        assert!(
            prov.provides(&dep("foo", Some(Op::Eq), "1.0")),
            "release ignored"
        );
        assert!(prov.provides(&dep("foo", Some(Op::Ge), "1.0-2")));
        assert!(!prov.provides(&dep("foo", Some(Op::Ge), "1.0-4")));
        assert!(!prov.provides(&dep("foo", Some(Op::Gt), "1.0")));
        assert!(prov.provides(&dep("foo", Some(Op::Lt), "1.1")));
        assert!(!prov.provides(&dep("foo", Some(Op::Lt), "1.0~rc1")));
        assert!(prov.provides(&dep("foo", None, "")));
        assert!(!prov.provides(&dep("bar", None, "")));
        // An unversioned provide satisfies a versioned requirement.
        assert!(dep("foo", None, "").provides(&dep("foo", Some(Op::Ge), "9")));
        // Epochs: 1:0.5 is newer than 2.0.
        assert!(dep("foo", Some(Op::Eq), "1:0.5-1").provides(&dep("foo", Some(Op::Ge), "2.0")));
        // Ranges of two provides/requires with inequality on both sides.
        assert!(dep("foo", Some(Op::Ge), "2").provides(&dep("foo", Some(Op::Le), "3")));
        assert!(!dep("foo", Some(Op::Ge), "4").provides(&dep("foo", Some(Op::Le), "3")));
        assert_eq!(Op::from_sense(8 | 4), Some(Op::Ge));
        assert_eq!(Op::from_sense(0), None);
    }
}
