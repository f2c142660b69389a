//! OpenPGP checks of RPM sources, as dnf makes them: a repository's
//! detached `repomd.xml.asc` (`repo_gpgcheck`) and each package's header
//! signature (`gpgcheck`), against the keys of a recipe's `gpgkey` file.
//!
//! A package is checked from its file's bytes as stored: rpm's
//! header-only signature (signature tag RSA or DSA) covers the main
//! header exactly as written, magic included, and the payload is then
//! covered by the digest that signed header holds (`PAYLOADDIGEST`).
//! Nothing is re-serialised, so a header the `rpm` crate would write
//! differently still verifies as rpm verifies it. The file's parts are
//! found by `layout.rs`.

use std::path::{Path, PathBuf};

use pgp::composed::{Deserializable, DetachedSignature};
use pgp::packet::Signature;
use std::cell::RefCell;
use std::fs::File;
use std::io::Read;

use super::layout::Header;
use super::pkgfile::{DigestProblem, Scan};
use crate::pgpkeys::{self, SigKind, SigningKey};

// Signature header tags.
const SIGTAG_DSA: u32 = 267;
const SIGTAG_RSA: u32 = 268;
const SIGTAG_OPENPGP: u32 = 278;
const SIGTAG_PGP: u32 = 1002;
const SIGTAG_GPG: u32 = 1005;

/// A key file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("gpgkey {path}: {message}")]
pub struct KeyError {
    /// The key file.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

/// Why a signature (or what it covers) was not accepted. Says nothing of
/// the key file or the package: the errors that carry it name them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigProblem {
    /// No signature rpm 4 reads.
    #[error("not signed")]
    NotSigned,
    /// Only rpm 6's `OPENPGP` signature tag, which is not read here.
    #[error("signed only in rpm 6's OPENPGP signature tag, which is not supported")]
    OnlyOpenPgpTag,
    /// The issuer is not among the keys.
    #[error("signed by key id {0}, which is not in the key file")]
    UnknownKey(String),
    /// A key the signature names is there, but the signature is wrong for
    /// the data.
    #[error("signature does not verify (key id {id}): {message}")]
    BadSignature {
        /// The issuer.
        id: String,
        /// The OpenPGP library's reason.
        message: String,
    },
    /// The header is signed but does not bind the payload.
    #[error("the signed header has no payload digest")]
    NoPayloadDigest,
    /// The payload is not the one the signed header describes.
    #[error("payload digest mismatch: the signed header says {expected}, the payload is {actual}")]
    PayloadDigest {
        /// From the header.
        expected: String,
        /// Computed.
        actual: String,
    },
    /// The file or signature cannot be read.
    #[error("{0}")]
    Malformed(String),
}

/// A package that failed `gpgcheck`.
#[derive(Debug, thiserror::Error)]
pub struct PackageSigError {
    /// How the build names the package (file, or NEVRA and repository).
    pub package: String,
    /// The key file it was checked against.
    pub key: PathBuf,
    /// What is wrong.
    pub problem: SigProblem,
}

impl std::fmt::Display for PackageSigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (p, k) = (&self.package, self.key.display());
        match &self.problem {
            SigProblem::NotSigned => write!(
                f,
                "{p}: not signed; gpgcheck requires a header signature by a key in {k}"
            ),
            SigProblem::OnlyOpenPgpTag => write!(
                f,
                "{p}: its only signature is in rpm 6's OPENPGP tag, which is not read here; gpgcheck requires an RSA or DSA header signature by a key in {k}"
            ),
            SigProblem::UnknownKey(id) => {
                write!(f, "{p}: signed by a key not in {k} (key id {id})")
            }
            SigProblem::BadSignature { id, message } => write!(
                f,
                "{p}: signature does not verify with key id {id} from {k}: {message}"
            ),
            SigProblem::NoPayloadDigest => write!(
                f,
                "{p}: the header is signed by a key in {k} but has no payload digest, so the payload would go unverified; refused"
            ),
            SigProblem::PayloadDigest { expected, actual } => write!(
                f,
                "{p}: payload digest mismatch: the header signed by a key in {k} says {expected}, the payload is {actual}"
            ),
            SigProblem::Malformed(m) => {
                write!(f, "{p}: cannot check its signature against {k}: {m}")
            }
        }
    }
}

/// The signing keys of one `gpgkey` file (`pgpkeys.rs` says which keys
/// and subkeys count).
#[derive(Debug)]
pub struct Keyring {
    path: PathBuf,
    keys: Vec<SigningKey>,
}

impl Keyring {
    /// Reads an OpenPGP key file: armored or binary, one or several keys,
    /// public or secret (the public part is used). Parts that may not
    /// sign are left out, each with a warning.
    pub fn load(path: &Path) -> Result<Keyring, KeyError> {
        let keys = pgpkeys::load_file(path).map_err(|message| KeyError {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(Keyring {
            path: path.to_path_buf(),
            keys,
        })
    }

    /// The key file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Verifies an OpenPGP signature (binary or armored) over `data` by a
    /// key or subkey of this file allowed to sign.
    pub fn verify(&self, sig: &[u8], data: &[u8], kind: SigKind) -> Result<(), SigProblem> {
        self.verify_with(sig, &mut || data, kind)
    }

    /// [`Keyring::verify`] over data `data` reads afresh for each
    /// candidate key (a file streamed rather than held in memory).
    fn verify_with<R: Read>(
        &self,
        sig: &[u8],
        data: &mut impl FnMut() -> R,
        kind: SigKind,
    ) -> Result<(), SigProblem> {
        let sig = DetachedSignature::from_reader_single(sig)
            .map(|(s, _)| s.signature)
            .map_err(|e| SigProblem::Malformed(format!("not an OpenPGP signature: {e}")))?;
        self.verify_parsed(&sig, data, kind)
    }

    fn verify_parsed<R: Read>(
        &self,
        sig: &Signature,
        data: &mut impl FnMut() -> R,
        kind: SigKind,
    ) -> Result<(), SigProblem> {
        let id = issuer(sig);
        pgpkeys::check_signature(sig, kind).map_err(|message| SigProblem::BadSignature {
            id: id.clone(),
            message,
        })?;
        let mut failure = None;
        for key in self.keys.iter().filter(|k| k.is_issuer_of(sig)) {
            match key.verify(sig, data(), kind) {
                Ok(()) => return Ok(()),
                Err(message) => failure = Some(message),
            }
        }
        match failure {
            Some(message) => Err(SigProblem::BadSignature { id, message }),
            None => Err(SigProblem::UnknownKey(id)),
        }
    }

    /// Checks an RPM file as dnf's `gpgcheck` does: a header signature by
    /// one of these keys, and the payload against the signed header's
    /// digest. A package with only the legacy header+payload signature is
    /// checked by that signature instead. `scan` is the file read once;
    /// `signed` reads it again from the main header to the end, for legacy
    /// signatures (one read per signature and candidate key).
    pub fn verify_rpm<R: Read>(
        &self,
        scan: &Scan,
        mut signed: impl FnMut() -> R,
    ) -> Result<(), SigProblem> {
        let malformed = SigProblem::Malformed;
        let sig = Header::at(&scan.head, scan.layout.signature.clone()).map_err(malformed)?;
        let sigs = |tags: [u32; 2]| -> Result<Vec<&[u8]>, SigProblem> {
            tags.into_iter()
                .filter_map(|t| sig.bin(t).transpose())
                .collect::<Result<_, _>>()
                .map_err(malformed)
        };
        let header_only = sigs([SIGTAG_RSA, SIGTAG_DSA])?;
        let legacy = sigs([SIGTAG_PGP, SIGTAG_GPG])?;
        if header_only.is_empty() && legacy.is_empty() {
            return Err(if sig.has(SIGTAG_OPENPGP) {
                SigProblem::OnlyOpenPgpTag
            } else {
                SigProblem::NotSigned
            });
        }
        // Every signature present must verify, as rpm requires: rpm v3
        // signatures over the main header and the payload, header-only
        // ones over the main header.
        for s in &legacy {
            self.verify_with(s, &mut signed, SigKind::Binary)?;
        }
        if header_only.is_empty() {
            return Ok(());
        }
        let header = &scan.head[scan.layout.header.clone()];
        for s in header_only {
            self.verify(s, header, SigKind::Binary)?;
        }
        let digest = scan
            .signed_payload_digest()
            .ok_or(SigProblem::NoPayloadDigest)?;
        digest.check().map_err(|e| match e {
            DigestProblem::Unsupported(_) => SigProblem::Malformed(e.to_string()),
            DigestProblem::Mismatch { expected, actual } => {
                SigProblem::PayloadDigest { expected, actual }
            }
        })
    }
}

/// The issuer a signature names, for messages: its key id, else the end
/// of its fingerprint.
fn issuer(sig: &Signature) -> String {
    if let Some(id) = sig.issuer_key_id().first() {
        return id.to_string();
    }
    match sig.issuer_fingerprint().first() {
        Some(fp) => {
            let h = hex::encode(fp.as_bytes());
            h[h.len().saturating_sub(16)..].to_string()
        }
        None => "(none given)".into(),
    }
}

/// What a package must be signed by, and how its errors name it.
#[derive(Debug, Clone)]
pub struct GpgCheck {
    /// The keys.
    pub keys: std::sync::Arc<Keyring>,
    /// The package as messages name it.
    pub package: String,
}

impl GpgCheck {
    /// Checks the package `file` that `scan` read ([`Keyring::verify_rpm`];
    /// a legacy signature reads it again, checked against the scan).
    pub fn verify(&self, scan: &Scan, file: &File) -> Result<(), GpgCheckError> {
        // The signature check reports whatever its data reader returns as
        // a bad signature; what went wrong reading is kept here instead.
        let trouble = RefCell::new(None);
        self.keys
            .verify_rpm(scan, || scan.signed_range(file, &trouble))
            .map_err(|problem| match trouble.take() {
                Some(m) => GpgCheckError::Read(m),
                None => GpgCheckError::Signature(PackageSigError {
                    package: self.package.clone(),
                    key: self.keys.path().to_path_buf(),
                    problem,
                }),
            })
    }
}

/// Why a package file did not pass `gpgcheck`.
#[derive(Debug, thiserror::Error)]
pub enum GpgCheckError {
    /// Its signature is missing or bad.
    #[error(transparent)]
    Signature(#[from] PackageSigError),
    /// Reading it again failed, or it changed meanwhile: not the
    /// signature's fault.
    #[error("{0}")]
    Read(String),
}
