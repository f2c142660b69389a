//! Which signers are trusted, what a capsule's signature amounts to, and
//! whether the import policy accepts it.
//!
//! Trust list file: public key lines (`vnfs-ed25519 <hex> [comment]`), one
//! per line; blank lines and `#` comments ignored. The configuration names
//! the file; a missing file is an empty list.

use std::collections::BTreeMap;
use std::path::Path;

use crate::format::SignatureBlock;
use crate::keys::{KeyError, PublicKey, content_lines, verify_file_hash};

/// The set of public keys whose signatures are trusted.
#[derive(Clone, Debug, Default)]
pub struct TrustList {
    keys: BTreeMap<[u8; 32], PublicKey>,
}

impl TrustList {
    /// An empty list (trusts nobody).
    pub fn new() -> TrustList {
        TrustList::default()
    }

    /// Adds a key.
    pub fn add(&mut self, key: PublicKey) {
        self.keys.insert(*key.as_bytes(), key);
    }

    /// The trusted entry for these key bytes, with its comment.
    pub fn get(&self, key: &[u8; 32]) -> Option<&PublicKey> {
        self.keys.get(key)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The trusted keys, in key order.
    pub fn keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.values()
    }

    /// Parses a trust list; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<TrustList, KeyError> {
        let mut t = TrustList::new();
        for (line, l) in content_lines(text) {
            let key = PublicKey::parse_line(l).map_err(|reason| KeyError::Parse {
                origin: origin.into(),
                line,
                reason,
            })?;
            t.add(key);
        }
        Ok(t)
    }

    /// Loads a trust list file; a file that does not exist is an empty list.
    pub fn load(path: &Path) -> Result<TrustList, KeyError> {
        match std::fs::read_to_string(path) {
            Ok(text) => TrustList::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TrustList::new()),
            Err(source) => Err(KeyError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// The text of a trust list file without the lines of the keys
    /// `remove` picks, and those keys. Every other line (comments, blank
    /// lines, other keys) is kept as it was; `origin` names the file in
    /// errors.
    pub fn without(
        text: &str,
        origin: &str,
        mut remove: impl FnMut(&PublicKey) -> bool,
    ) -> Result<(String, Vec<PublicKey>), KeyError> {
        let mut kept = String::with_capacity(text.len());
        let mut removed = Vec::new();
        for (i, raw) in text.split_inclusive('\n').enumerate() {
            let l = raw.trim();
            if !l.is_empty() && !l.starts_with('#') {
                let key = PublicKey::parse_line(l).map_err(|reason| KeyError::Parse {
                    origin: origin.into(),
                    line: i + 1,
                    reason,
                })?;
                if remove(&key) {
                    removed.push(key);
                    continue;
                }
            }
            kept.push_str(raw);
        }
        Ok((kept, removed))
    }

    /// What a capsule's signature block (if any) means for this list, given
    /// the verified file hash.
    pub fn status(&self, block: Option<&SignatureBlock>, file_hash: &[u8; 32]) -> SignatureStatus {
        let Some(b) = block else {
            return SignatureStatus::Unsigned;
        };
        let key = self
            .get(&b.public_key)
            .cloned()
            .unwrap_or_else(|| PublicKey::from_bytes(b.public_key, ""));
        match verify_file_hash(&b.public_key, file_hash, &b.signature) {
            Err(reason) => SignatureStatus::Broken { key, reason },
            Ok(()) if self.keys.contains_key(&b.public_key) => SignatureStatus::Trusted { key },
            Ok(()) => SignatureStatus::Untrusted { key },
        }
    }
}

/// What a capsule's signature amounts to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureStatus {
    /// No signature block.
    Unsigned,
    /// A valid signature by a trusted key.
    Trusted {
        /// The signer (with the trust list's comment).
        key: PublicKey,
    },
    /// A valid signature by a key not on the trust list.
    Untrusted {
        /// The signer.
        key: PublicKey,
    },
    /// A signature that does not verify (tampered file or block).
    Broken {
        /// The key the block names.
        key: PublicKey,
        /// Why it fails.
        reason: String,
    },
}

impl SignatureStatus {
    /// Short machine-readable name: `unsigned`, `trusted`, `untrusted`, `broken`.
    pub fn name(&self) -> &'static str {
        match self {
            SignatureStatus::Unsigned => "unsigned",
            SignatureStatus::Trusted { .. } => "trusted",
            SignatureStatus::Untrusted { .. } => "untrusted",
            SignatureStatus::Broken { .. } => "broken",
        }
    }
}

impl std::fmt::Display for SignatureStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let who = |k: &PublicKey| {
            if k.comment.is_empty() {
                k.to_string()
            } else {
                format!("{k} ({})", k.comment)
            }
        };
        match self {
            SignatureStatus::Unsigned => f.write_str("unsigned"),
            SignatureStatus::Trusted { key } => {
                write!(f, "valid, signed by trusted key {}", who(key))
            }
            SignatureStatus::Untrusted { key } => {
                write!(f, "valid, but signed by untrusted key {}", who(key))
            }
            SignatureStatus::Broken { key, reason } => {
                write!(f, "BROKEN signature claiming key {}: {reason}", who(key))
            }
        }
    }
}

/// What to do with a capsule that carries no signature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnsignedPolicy {
    /// Accept silently.
    Accept,
    /// Accept, and return a warning for the user (the default).
    #[default]
    Warn,
    /// Refuse.
    Reject,
}

/// The import policy: broken signatures are always refused; untrusted
/// signers are refused unless `allow_untrusted`; unsigned capsules follow
/// `unsigned`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignaturePolicy {
    /// What to do with unsigned capsules.
    pub unsigned: UnsignedPolicy,
    /// Accept valid signatures by keys not on the trust list (default no).
    pub allow_untrusted: bool,
}

/// Outcome of a policy check that accepted the capsule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted with nothing to say.
    Accept,
    /// Accepted; show this warning to the user.
    AcceptWithWarning(String),
}

impl SignaturePolicy {
    /// Applies the policy. `Err` carries the refusal message.
    pub fn check(&self, status: &SignatureStatus) -> Result<Verdict, String> {
        match status {
            SignatureStatus::Trusted { .. } => Ok(Verdict::Accept),
            SignatureStatus::Broken { .. } => Err(format!("refusing capsule: {status}")),
            SignatureStatus::Untrusted { key } if self.allow_untrusted => {
                Ok(Verdict::AcceptWithWarning(format!(
                    "capsule is signed by {key}, which is not in the trust list"
                )))
            }
            SignatureStatus::Untrusted { key } => Err(format!(
                "refusing capsule signed by {key}, which is not in the trust list \
                 (trust the signer's public key file with `vnfs key trust FILE.pub`, \
                 or accept it once with --allow-untrusted)"
            )),
            SignatureStatus::Unsigned => match self.unsigned {
                UnsignedPolicy::Accept => Ok(Verdict::Accept),
                UnsignedPolicy::Warn => Ok(Verdict::AcceptWithWarning(
                    "capsule is not signed; its origin cannot be checked".into(),
                )),
                UnsignedPolicy::Reject => {
                    Err("refusing unsigned capsule (policy requires a signature)".into())
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;

    #[test]
    fn statuses_and_policy() {
        let signer = SecretKey::from_seed([1; 32], "site-a");
        let other = SecretKey::from_seed([2; 32], "");
        let trust = TrustList::parse(
            &format!("# trusted\n\n{}\n", signer.public().to_line()),
            "trusted-keys",
        )
        .unwrap();
        let hash = [5u8; 32];
        let block = |k: &SecretKey, h: &[u8; 32]| SignatureBlock {
            public_key: *k.public().as_bytes(),
            signature: k.sign_file_hash(h),
        };
        let p = SignaturePolicy::default();
        let s = trust.status(Some(&block(&signer, &hash)), &hash);
        assert_eq!(s.name(), "trusted");
        assert_eq!(p.check(&s), Ok(Verdict::Accept));
        let s = trust.status(Some(&block(&other, &hash)), &hash);
        assert_eq!(s.name(), "untrusted");
        assert!(p.check(&s).is_err());
        let lax = SignaturePolicy {
            allow_untrusted: true,
            ..p
        };
        assert!(matches!(lax.check(&s), Ok(Verdict::AcceptWithWarning(_))));
        let s = trust.status(Some(&block(&signer, &[6u8; 32])), &hash);
        assert_eq!(s.name(), "broken");
        assert!(lax.check(&s).is_err());
        let s = trust.status(None, &hash);
        assert!(matches!(p.check(&s), Ok(Verdict::AcceptWithWarning(_))));
        let strict = SignaturePolicy {
            unsigned: UnsignedPolicy::Reject,
            ..p
        };
        assert!(strict.check(&s).is_err());
    }

    #[test]
    fn without_removes_only_the_picked_key_lines() {
        let a = SecretKey::from_seed([1; 32], "site-a").public();
        let b = SecretKey::from_seed([2; 32], "site-b").public();
        let text = format!("# trusted\n{}\n\n  {}  \n# end", a.to_line(), b.to_line());
        let (kept, removed) = TrustList::without(&text, "keys", |k| k == &b).unwrap();
        assert_eq!(kept, format!("# trusted\n{}\n\n# end", a.to_line()));
        assert_eq!(removed, vec![b.clone()]);
        let list = TrustList::parse(&kept, "keys").unwrap();
        assert!(list.get(a.as_bytes()).is_some() && list.get(b.as_bytes()).is_none());
        let (same, none) = TrustList::without(&text, "keys", |_| false).unwrap();
        assert_eq!((same, none), (text.clone(), vec![]));
        let e = TrustList::without("x\n", "keys", |_| true).unwrap_err();
        assert!(e.to_string().contains("keys line 1"), "{e}");
    }

    #[test]
    fn bad_trust_line_named() {
        let e = TrustList::parse("vnfs-ed25519 00\n", "keys").unwrap_err();
        assert!(e.to_string().contains("keys line 1"), "{e}");
        assert!(
            TrustList::load(Path::new("/nonexistent/x"))
                .unwrap()
                .is_empty()
        );
    }
}
