//! `InRelease`: the clear-signed index of a suite. Its OpenPGP signature is
//! checked against a keyring before anything in it is believed; the file
//! hashes it lists then anchor every other download.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pgp::composed::CleartextSignedMessage;

use super::control;
use crate::pgpkeys::{self, SigningKey};

/// Why an InRelease file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// The keyring cannot be read or parsed.
    #[error("keyring {path}: {message}")]
    Keyring {
        /// The keyring file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The file is not a clear-signed message.
    #[error("{url}: not an OpenPGP clear-signed message: {message}")]
    NotSigned {
        /// Where it came from.
        url: String,
        /// Parser message.
        message: String,
    },
    /// No signature verifies against any key in the keyring.
    #[error("{url}: no valid signature from a key in {keyring}: {reason}")]
    BadSignature {
        /// Where it came from.
        url: String,
        /// The keyring used.
        keyring: PathBuf,
        /// Why each signature by a key of the keyring was refused, or
        /// which keys signed instead.
        reason: String,
    },
    /// The signed text is not a valid Release paragraph.
    #[error("{url}: malformed Release data: {message}")]
    Malformed {
        /// Where it came from.
        url: String,
        /// What is wrong.
        message: String,
    },
}

/// A file listed in a Release file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex sha256.
    pub sha256: String,
}

/// The verified content of an InRelease file.
#[derive(Debug, Clone)]
pub struct Release {
    /// `Suite:` (e.g. `oldstable`).
    pub suite: String,
    /// `Codename:` (e.g. `bookworm`).
    pub codename: String,
    /// `Date:` as written.
    pub date: String,
    /// Files by path relative to `dists/<suite>/`, with their sha256.
    pub files: BTreeMap<String, IndexFile>,
}

/// OpenPGP keys to check signatures against (`pgpkeys.rs` says which
/// keys and subkeys count).
pub struct Keyring {
    keys: Vec<SigningKey>,
    path: PathBuf,
}

impl Keyring {
    /// Loads a binary or armored keyring (e.g. the Debian archive keyring).
    /// Parts that may not sign (revoked, unbound subkeys) are left out.
    pub fn load(path: &Path) -> Result<Keyring, ReleaseError> {
        let keys = pgpkeys::load_file(path).map_err(|message| ReleaseError::Keyring {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(Keyring {
            keys,
            path: path.to_path_buf(),
        })
    }

    /// The file the keys came from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Verifies an InRelease file and parses the signed part. Only the text
/// covered by a good signature is parsed.
pub fn verify(data: &[u8], keyring: &Keyring, url: &str) -> Result<Release, ReleaseError> {
    let text = std::str::from_utf8(data).map_err(|e| ReleaseError::NotSigned {
        url: url.to_string(),
        message: e.to_string(),
    })?;
    let (msg, _) =
        CleartextSignedMessage::from_string(text).map_err(|e| ReleaseError::NotSigned {
            url: url.to_string(),
            message: e.to_string(),
        })?;
    // Only keys a signature names are tried, so that the reasons given
    // are about them.
    let mut reasons = Vec::new();
    let mut good = false;
    for key in &keyring.keys {
        if !msg.signatures().iter().any(|s| key.is_issuer_of(s)) {
            continue;
        }
        match key.verify_cleartext(&msg) {
            Ok(_) => {
                good = true;
                break;
            }
            Err(e) => reasons.push(e),
        }
    }
    if !good {
        let reason = match reasons.is_empty() {
            true => {
                let ids: Vec<String> = msg
                    .signatures()
                    .iter()
                    .flat_map(|s| s.issuer_key_id().into_iter().map(|i| i.to_string()))
                    .collect();
                match ids.is_empty() {
                    true => "not signed by any of its keys".to_string(),
                    false => format!("signed by key id {}, not in it", ids.join(", ")),
                }
            }
            false => reasons.join("; "),
        };
        return Err(ReleaseError::BadSignature {
            url: url.to_string(),
            keyring: keyring.path.clone(),
            reason,
        });
    }
    let signed = msg.signed_text().replace("\r\n", "\n");
    parse_release(&signed, url)
}

/// Parses Release text (already verified).
pub fn parse_release(text: &str, url: &str) -> Result<Release, ReleaseError> {
    let malformed = |message: String| ReleaseError::Malformed {
        url: url.to_string(),
        message,
    };
    let paras = control::parse(text).map_err(|e| malformed(e.to_string()))?;
    let p = paras
        .first()
        .ok_or_else(|| malformed("empty Release file".into()))?;
    let sums = p
        .get("SHA256")
        .ok_or_else(|| malformed("no SHA256 field".into()))?;
    let mut files = BTreeMap::new();
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let mut w = line.split_whitespace();
        let (Some(hash), Some(size), Some(path), None) = (w.next(), w.next(), w.next(), w.next())
        else {
            return Err(malformed(format!("bad SHA256 line {line:?}")));
        };
        let size = size
            .parse()
            .map_err(|_| malformed(format!("bad size in SHA256 line {line:?}")))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed(format!("bad hash in SHA256 line {line:?}")));
        }
        files.insert(
            path.to_string(),
            IndexFile {
                size,
                sha256: hash.to_ascii_lowercase(),
            },
        );
    }
    Ok(Release {
        suite: p.get("Suite").unwrap_or("").to_string(),
        codename: p.get("Codename").unwrap_or("").to_string(),
        date: p.get("Date").unwrap_or("").to_string(),
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sha256_list() {
        let text = "Suite: stable\nCodename: x\nSHA256:\n 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef 12 main/binary-amd64/Packages.xz\n";
        let r = parse_release(text, "u").unwrap();
        assert_eq!(r.codename, "x");
        assert_eq!(r.files["main/binary-amd64/Packages.xz"].size, 12);
        assert!(parse_release("Suite: a\n", "u").is_err());
        assert!(parse_release("SHA256:\n zz 1 p\n", "u").is_err());
    }

    #[test]
    fn unsigned_text_is_refused() {
        let keyring = Keyring::load(Path::new("/usr/share/keyrings/debian-archive-keyring.gpg"))
            .expect("debian-archive-keyring must be installed");
        let e = verify(b"Suite: x\nSHA256:\n", &keyring, "u").unwrap_err();
        assert!(matches!(e, ReleaseError::NotSigned { .. }), "{e}");
    }
}
