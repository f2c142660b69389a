//! ed25519 key files for signing capsules.
//!
//! Formats (one line each, UTF-8, `#` starts a comment line; see SPEC.md):
//! - secret key file: `vnfs-ed25519-secret <64 hex digits of the 32-byte seed> [comment]`
//! - public key line: `vnfs-ed25519 <64 hex digits of the public key> [comment]`
//!
//! A public key file holds one public key line, so `cat site-a.pub >>
//! trusted-keys` is how a key becomes trusted.

use std::fmt;
use std::io::Write;
use std::path::Path;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

/// Keyword that starts a secret key line.
pub const SECRET_KEYWORD: &str = "vnfs-ed25519-secret";
/// Keyword that starts a public key line.
pub const PUBLIC_KEYWORD: &str = "vnfs-ed25519";

/// A key file or line that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line does not parse.
    #[error("{origin} line {line}: {reason}")]
    Parse {
        /// File name or other origin of the text.
        origin: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The operating system gave no randomness.
    #[error("no randomness for key generation: {0}")]
    Random(String),
}

/// A public ed25519 key with an optional comment (who it belongs to).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey {
    bytes: [u8; 32],
    /// Free text after the key on its line.
    pub comment: String,
}

impl PublicKey {
    /// Wraps 32 key bytes.
    pub fn from_bytes(bytes: [u8; 32], comment: impl Into<String>) -> PublicKey {
        PublicKey {
            bytes,
            comment: comment.into(),
        }
    }

    /// The raw key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The key as a public key line (`vnfs-ed25519 <hex> [comment]`).
    pub fn to_line(&self) -> String {
        let mut s = format!("{PUBLIC_KEYWORD} {}", hex::encode(self.bytes));
        if !self.comment.is_empty() {
            s.push(' ');
            s.push_str(&self.comment);
        }
        s
    }

    /// Parses one public key line.
    pub fn parse_line(line: &str) -> Result<PublicKey, String> {
        let (bytes, comment) = parse_key_line(line, PUBLIC_KEYWORD)?;
        Ok(PublicKey { bytes, comment })
    }
}

/// Shown as `ed25519:<hex>`, the form error messages and `inspect` use.
impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ed25519:{}", hex::encode(self.bytes))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// `keyword <64 hex> [comment]` → (bytes, comment).
fn parse_key_line(line: &str, keyword: &str) -> Result<([u8; 32], String), String> {
    let line = line.trim();
    let mut parts = line.splitn(3, char::is_whitespace);
    let kw = parts.next().unwrap_or_default();
    if kw != keyword {
        // The other kind of key file is the usual mix-up: say so.
        let hint = match kw {
            SECRET_KEYWORD => " (this is a secret key; its public key is the .pub file beside it)",
            PUBLIC_KEYWORD => {
                " (this is a public key; signing needs the secret key file, usually the .key beside it)"
            }
            _ => "",
        };
        return Err(format!(
            "expected \"{keyword} <64 hex digits> [comment]\"{hint}"
        ));
    }
    let key = parts.next().unwrap_or_default();
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(key, &mut bytes).map_err(|_| "key is not 64 hex digits".to_string())?;
    let comment = parts.next().unwrap_or_default().trim().to_string();
    Ok((bytes, comment))
}

/// Non-empty, non-comment lines with their 1-based numbers.
pub(crate) fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// A secret signing key.
pub struct SecretKey {
    key: SigningKey,
    /// Free text after the key on its line.
    pub comment: String,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        write!(f, "SecretKey(public {})", self.public())
    }
}

impl SecretKey {
    /// A new key from the operating system's randomness.
    pub fn generate(comment: impl Into<String>) -> Result<SecretKey, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(SecretKey::from_seed(seed, comment))
    }

    /// A key from its 32-byte seed (deterministic; for tests and restores).
    pub fn from_seed(seed: [u8; 32], comment: impl Into<String>) -> SecretKey {
        SecretKey {
            key: SigningKey::from_bytes(&seed),
            comment: comment.into(),
        }
    }

    /// The matching public key, carrying the same comment.
    pub fn public(&self) -> PublicKey {
        PublicKey::from_bytes(self.key.verifying_key().to_bytes(), self.comment.clone())
    }

    /// Signs a capsule's file hash (with the capsule signature context).
    pub fn sign_file_hash(&self, file_hash: &[u8; 32]) -> [u8; 64] {
        self.key
            .sign(&crate::format::signature_message(file_hash))
            .to_bytes()
    }

    /// The secret key file's text.
    pub fn to_file_text(&self) -> String {
        let mut s = String::from("# vnfs capsule signing key (ed25519). Keep this file private.\n");
        s.push_str(SECRET_KEYWORD);
        s.push(' ');
        s.push_str(&hex::encode(self.key.to_bytes()));
        if !self.comment.is_empty() {
            s.push(' ');
            s.push_str(&self.comment);
        }
        s.push('\n');
        s
    }

    /// Parses a secret key file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<SecretKey, KeyError> {
        let mut lines = content_lines(text);
        let Some((n, line)) = lines.next() else {
            return Err(KeyError::Parse {
                origin: origin.into(),
                line: 1,
                reason: "no key line".into(),
            });
        };
        let (seed, comment) =
            parse_key_line(line, SECRET_KEYWORD).map_err(|reason| KeyError::Parse {
                origin: origin.into(),
                line: n,
                reason,
            })?;
        if let Some((n, _)) = lines.next() {
            return Err(KeyError::Parse {
                origin: origin.into(),
                line: n,
                reason: "a secret key file holds one key".into(),
            });
        }
        Ok(SecretKey::from_seed(seed, comment))
    }

    /// Loads a secret key file.
    pub fn load(path: &Path) -> Result<SecretKey, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        SecretKey::parse(&text, &path.display().to_string())
    }

    /// Writes the secret key to `secret` (created new, mode 0600) and the
    /// public key line to `public` (created new). Neither file is ever
    /// overwritten: an existing public key may be in trust lists already,
    /// so both paths are checked before anything is written.
    pub fn save(&self, secret: &Path, public: &Path) -> Result<(), KeyError> {
        let io = |p: &Path| {
            let path = p.display().to_string();
            move |source| KeyError::Io { path, source }
        };
        let exists = |p: &Path| {
            io(p)(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "already exists; remove it or choose another name",
            ))
        };
        for p in [secret, public] {
            if p.symlink_metadata().is_ok() {
                return Err(exists(p));
            }
        }
        let create = |p: &Path, mode: u32| {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
            opts.open(p).map_err(io(p))
        };
        let mut f = create(secret, 0o600)?;
        f.write_all(self.to_file_text().as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io(secret))?;
        let mut f = create(public, 0o644)?;
        f.write_all(format!("{}\n", self.public().to_line()).as_bytes())
            .map_err(io(public))?;
        Ok(())
    }
}

/// Verifies an ed25519 capsule signature strictly (no malleable forms).
/// `Err` carries the reason, e.g. an invalid public key point.
pub fn verify_file_hash(
    public_key: &[u8; 32],
    file_hash: &[u8; 32],
    signature: &[u8; 64],
) -> Result<(), String> {
    let key = VerifyingKey::from_bytes(public_key).map_err(|e| format!("bad public key: {e}"))?;
    let sig = ed25519_dalek::Signature::from_bytes(signature);
    key.verify_strict(&crate::format::signature_message(file_hash), &sig)
        .map_err(|_| "signature does not verify".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip_and_sign() {
        let k = SecretKey::generate("site-a admin").unwrap();
        let text = k.to_file_text();
        let k2 = SecretKey::parse(&text, "k").unwrap();
        assert_eq!(k.public(), k2.public());
        assert_eq!(k2.comment, "site-a admin");
        let p = PublicKey::parse_line(&k.public().to_line()).unwrap();
        assert_eq!(p, k.public());
        let h = [9u8; 32];
        let sig = k.sign_file_hash(&h);
        assert!(verify_file_hash(p.as_bytes(), &h, &sig).is_ok());
        assert!(verify_file_hash(p.as_bytes(), &[8u8; 32], &sig).is_err());
        assert!(!format!("{k:?}").contains(&hex::encode(k.key.to_bytes())));
    }

    #[test]
    fn bad_key_lines_name_the_line() {
        let e = SecretKey::parse("# c\n\nvnfs-ed25519-secret zz\n", "f.key").unwrap_err();
        assert!(e.to_string().starts_with("f.key line 3:"), "{e}");
        assert!(PublicKey::parse_line("ssh-ed25519 AAAA").is_err());
    }

    #[test]
    fn save_refuses_to_overwrite_and_is_private() {
        let d = tempfile::tempdir().unwrap();
        let k = SecretKey::generate("").unwrap();
        let (s, p) = (d.path().join("a.key"), d.path().join("a.pub"));
        k.save(&s, &p).unwrap();
        assert!(k.save(&s, &p).is_err());
        assert_eq!(SecretKey::load(&s).unwrap().public(), k.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&s).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // An existing public key file (perhaps trusted somewhere) is not
        // replaced, and nothing is written then.
        let (s2, p2) = (d.path().join("b.key"), d.path().join("b.pub"));
        std::fs::write(&p2, "kept\n").unwrap();
        let e = k.save(&s2, &p2).unwrap_err().to_string();
        assert!(e.contains("b.pub") && e.contains("already exists"), "{e}");
        assert!(!s2.exists());
        assert_eq!(std::fs::read_to_string(&p2).unwrap(), "kept\n");
        // The other kind of key file is named as such.
        let e = SecretKey::load(&p).unwrap_err().to_string();
        assert!(e.contains("this is a public key"), "{e}");
        let secret_text = std::fs::read_to_string(&s).unwrap();
        let line = secret_text.lines().find(|l| !l.starts_with('#')).unwrap();
        let e = PublicKey::parse_line(line).unwrap_err();
        assert!(e.contains("this is a secret key"), "{e}");
    }
}
