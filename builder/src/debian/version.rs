//! Debian version numbers (`[epoch:]upstream[-revision]`) and dpkg's ordering
//! of them, reimplemented from dpkg's `verrevcmp`.

use std::cmp::Ordering;
use std::fmt;

/// A parsed Debian version. Ordering follows `dpkg --compare-versions`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    /// The epoch (0 when absent).
    pub epoch: u64,
    /// The upstream part.
    pub upstream: String,
    /// The Debian revision ("" when absent).
    pub revision: String,
    text: String,
}

/// A version string dpkg would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version {text:?}: {reason}")]
pub struct VersionError {
    /// The text as given.
    pub text: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl Version {
    /// Parses a version as dpkg does (`parseversion`).
    pub fn parse(text: &str) -> Result<Version, VersionError> {
        let err = |reason| VersionError {
            text: text.to_string(),
            reason,
        };
        let t = text.trim();
        if t.is_empty() {
            return Err(err("empty"));
        }
        if t.contains(char::is_whitespace) {
            return Err(err("contains whitespace"));
        }
        let (epoch, rest) = match t.split_once(':') {
            Some((e, rest)) => {
                if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err("epoch is not a number"));
                }
                (e.parse::<u64>().map_err(|_| err("epoch too large"))?, rest)
            }
            None => (0, t),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((u, r)) => (u, r),
            None => (rest, ""),
        };
        if upstream.is_empty() {
            return Err(err("empty upstream version"));
        }
        if !upstream.as_bytes()[0].is_ascii_digit() {
            // dpkg only warns here; Debian archives never ship such versions,
            // but older ones exist, so accept them like dpkg does.
        }
        let ok = |c: char| c.is_ascii_alphanumeric() || ".+~-:".contains(c);
        if !upstream.chars().all(ok) {
            return Err(err("invalid character in upstream version"));
        }
        if !revision
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~".contains(c))
        {
            return Err(err("invalid character in revision"));
        }
        Ok(Version {
            epoch,
            upstream: upstream.to_string(),
            revision: revision.to_string(),
            text: t.to_string(),
        })
    }

    /// The version as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(&self.upstream, &other.upstream))
            .then_with(|| verrevcmp(&self.revision, &other.revision))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// dpkg's per-character weight: `~` sorts before everything, even the end.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(b'~') => -1,
        Some(c) => c as i32 + 256,
    }
}

/// Compares two upstream or revision strings exactly as dpkg's `verrevcmp`.
pub fn verrevcmp(a: &str, b: &str) -> Ordering {
    let a = a.as_bytes();
    let b = b.as_bytes();
    let (mut i, mut j) = (0usize, 0usize);
    let at = |s: &[u8], k: usize| s.get(k).copied();
    let is_digit = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_digit());
    while i < a.len() || j < b.len() {
        let mut first_diff: i32 = 0;
        while (i < a.len() && !is_digit(at(a, i))) || (j < b.len() && !is_digit(at(b, j))) {
            let ac = order(at(a, i));
            let bc = order(at(b, j));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while at(a, i) == Some(b'0') {
            i += 1;
        }
        while at(b, j) == Some(b'0') {
            j += 1;
        }
        while is_digit(at(a, i)) && is_digit(at(b, j)) {
            if first_diff == 0 {
                first_diff = at(a, i).unwrap_or(0) as i32 - at(b, j).unwrap_or(0) as i32;
            }
            i += 1;
            j += 1;
        }
        if is_digit(at(a, i)) {
            return Ordering::Greater;
        }
        if is_digit(at(b, j)) {
            return Ordering::Less;
        }
        if first_diff != 0 {
            return first_diff.cmp(&0);
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn known_orderings() {
        let ordered = [
            "0~rc1", "0", "0.1", "1.0~beta", "1.0", "1.0-0.1", "1.0-1", "1.0-1+b1", "1.0a",
            "1.00.1", "1.1", "1.10", "2:0.1",
        ];
        for w in ordered.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
        }
        assert_eq!(v("1.0").cmp(&v("1.00")), Ordering::Equal);
        assert_eq!(v("0:1.0").cmp(&v("1.0")), Ordering::Equal);
        assert_eq!(v("1.0-").cmp(&v("1.0")), Ordering::Equal);
        assert_eq!(v("2.36-9+deb12u4").upstream, "2.36");
        assert_eq!(v("1:2.3-4-5").revision, "5");
    }

    #[test]
    fn rejects_bad_versions() {
        assert!(Version::parse("").is_err());
        assert!(Version::parse("a:1").is_err());
        assert!(Version::parse("1 2").is_err());
        assert!(Version::parse("1.0-a_b").is_err());
    }

    fn version_strategy() -> impl Strategy<Value = String> {
        (
            prop::option::of(0u8..3),
            "[0-9][0-9a-z.+~]{0,6}",
            prop::option::of("[0-9a-z.+~]{1,5}"),
        )
            .prop_map(|(e, u, r)| {
                let mut s = String::new();
                if let Some(e) = e {
                    s.push_str(&format!("{e}:"));
                }
                s.push_str(&u);
                if let Some(r) = r {
                    s.push('-');
                    s.push_str(&r);
                }
                s
            })
    }

    proptest! {
        #[test]
        fn ordering_is_antisymmetric_and_reflexive(a in version_strategy(), b in version_strategy()) {
            let (va, vb) = (v(&a), v(&b));
            prop_assert_eq!(va.cmp(&va), Ordering::Equal);
            prop_assert_eq!(va.cmp(&vb), vb.cmp(&va).reverse());
        }

        #[test]
        fn ordering_is_transitive(a in version_strategy(), b in version_strategy(), c in version_strategy()) {
            let mut xs = [v(&a), v(&b), v(&c)];
            xs.sort();
            prop_assert!(xs[0] <= xs[2]);
        }
    }

    /// Checks our ordering against the real `dpkg --compare-versions` on
    /// random versions. dpkg is part of every Debian system this runs on; a
    /// missing dpkg is a failure, not a skip.
    #[test]
    fn agrees_with_dpkg() {
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 150,
            ..ProptestConfig::default()
        });
        runner
            .run(&(version_strategy(), version_strategy()), |(a, b)| {
                let ours = v(&a).cmp(&v(&b));
                let lt = std::process::Command::new("dpkg")
                    .args(["--compare-versions", &a, "lt", &b])
                    .status()
                    .expect("dpkg must be installed to run this test");
                let eq = std::process::Command::new("dpkg")
                    .args(["--compare-versions", &a, "eq", &b])
                    .status()
                    .expect("dpkg must be installed to run this test");
                let theirs = if lt.success() {
                    Ordering::Less
                } else if eq.success() {
                    Ordering::Equal
                } else {
                    Ordering::Greater
                };
                prop_assert_eq!(ours, theirs, "{} vs {}", a, b);
                Ok(())
            })
            .unwrap();
    }
}
