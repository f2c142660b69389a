//! Package files read in bounded memory, whatever their size. A package
//! is read twice: once from start to end by [`scan`], which hashes it
//! (for the lock), keeps its lead and headers (the "head") and hashes its
//! payload with the digests its header declares (for the signature and
//! digest checks); then once more to unpack it, through [`Rehash`], which
//! hashes it again on the way so that a file changed between the two
//! reads is caught before its image is used. Only the head is ever held
//! whole.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::rc::Rc;

use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};

use super::layout::{Header, Layout, ReadError};

// Signature header tags: digests of the main header.
const SIGTAG_SHA1: u32 = 269;
const SIGTAG_SHA256: u32 = 273;
const SIGTAG_SHA3_256: u32 = 279;
// Main header tags: digests of the payload as stored (compressed).
pub(crate) const TAG_PAYLOADDIGEST: u32 = 5092;
const TAG_PAYLOADDIGESTALGO: u32 = 5093;
const TAG_PAYLOAD_SHA512: u32 = 5121;
const TAG_PAYLOAD_SHA3_256: u32 = 5123;

// rpm's hash algorithm numbers (OpenPGP's).
const HASH_SHA256: u32 = 8;
const HASH_SHA384: u32 = 9;
const HASH_SHA512: u32 = 10;
const HASH_SHA224: u32 = 11;

/// Reads a file from an offset with `pread`, so several readers can
/// share one open file (and so one inode, whatever is renamed over it).
pub struct At<'a> {
    file: &'a File,
    pos: u64,
}

impl<'a> At<'a> {
    /// A reader of `file` from byte `pos`.
    pub fn new(file: &'a File, pos: u64) -> At<'a> {
        At { file, pos }
    }
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// A payload digest the main header declares, and what the payload
/// hashed to.
#[derive(Debug, Clone)]
pub struct PayloadDigest {
    /// The header tag that declares it.
    pub tag: u32,
    /// The declared digest, lowercase hex.
    pub expected: String,
    /// The payload's digest with the same algorithm; `None` when the
    /// algorithm is not one rpm defines for payloads.
    pub actual: Option<String>,
    /// The algorithm number (`PAYLOADDIGESTALGO`) for messages.
    pub algo: u32,
}

/// What one read of a package file found.
#[derive(Debug)]
pub struct Scan {
    /// SHA-256 of the whole file, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// The lead and both headers, as stored.
    pub head: Vec<u8>,
    /// Where the parts lie.
    pub layout: Layout,
    /// The payload digests the main header declares.
    pub payload: Vec<PayloadDigest>,
    /// SHA-256 of the main header and payload (what a legacy signature
    /// covers), so a second read for that signature is the same bytes.
    signed_sha256: [u8; 32],
}

/// Why a package file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The file is not a well-formed RPM.
    #[error("{0}")]
    Malformed(String),
    /// Reading failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl From<ReadError> for ScanError {
    fn from(e: ReadError) -> ScanError {
        match e {
            ReadError::Malformed(m) => ScanError::Malformed(m),
            ReadError::Io { source, .. } => ScanError::Io(source),
        }
    }
}

/// Passes bytes through, hashing them.
struct Tee<R> {
    inner: R,
    hash: Sha256,
    n: u64,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
}

/// Reads the `size`-byte file `r` once, start to end.
pub fn scan(r: impl Read, size: u64) -> Result<Scan, ScanError> {
    let mut tee = Tee {
        inner: r,
        hash: Sha256::new(),
        n: 0,
    };
    let (layout, head) = Layout::read(&mut tee, size)?;
    let main = Header::at(&head, layout.header.clone()).map_err(ScanError::Malformed)?;
    let mut declared = declared_payload_digests(&main).map_err(ScanError::Malformed)?;
    let mut signed = Sha256::new();
    Digest::update(&mut signed, &head[layout.header.clone()]);
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = match tee.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        Digest::update(&mut signed, &buf[..n]);
        for (_, h) in &mut declared {
            if let Some(h) = h {
                h.update(&buf[..n]);
            }
        }
    }
    if tee.n != size {
        return Err(ScanError::Malformed(format!(
            "{} bytes read where the file had {size}: it changed while it was read",
            tee.n
        )));
    }
    let payload = declared
        .into_iter()
        .map(|(mut d, h)| {
            d.actual = h.map(|h| hex::encode(h.finalize()));
            d
        })
        .collect();
    Ok(Scan {
        sha256: hex::encode(tee.hash.finalize()),
        size,
        head,
        layout,
        payload,
        signed_sha256: signed.finalize().into(),
    })
}

type Hasher = Option<Box<dyn sha2::digest::DynDigest>>;

/// The payload digests `main` declares, each with a hasher for its
/// algorithm (none when rpm defines no such algorithm).
fn declared_payload_digests(main: &Header<'_>) -> Result<Vec<(PayloadDigest, Hasher)>, String> {
    let mut out = Vec::new();
    if let Some(expected) = main.first_string(TAG_PAYLOADDIGEST)? {
        // rpm 6 packages drop the algorithm tag: their digest is SHA-256.
        let algo = main.int32(TAG_PAYLOADDIGESTALGO)?.unwrap_or(HASH_SHA256);
        let h: Hasher = match algo {
            HASH_SHA256 => Some(Box::new(Sha256::new())),
            HASH_SHA384 => Some(Box::new(Sha384::new())),
            HASH_SHA512 => Some(Box::new(Sha512::new())),
            HASH_SHA224 => Some(Box::new(Sha224::new())),
            _ => None,
        };
        out.push((declared(TAG_PAYLOADDIGEST, expected, algo), h));
    }
    if let Some(expected) = main.first_string(TAG_PAYLOAD_SHA512)? {
        let h: Hasher = Some(Box::new(Sha512::new()));
        out.push((declared(TAG_PAYLOAD_SHA512, expected, HASH_SHA512), h));
    }
    if let Some(expected) = main.first_string(TAG_PAYLOAD_SHA3_256)? {
        let h: Hasher = Some(Box::new(sha3::Sha3_256::new()));
        // OpenPGP's number for SHA3-256.
        out.push((declared(TAG_PAYLOAD_SHA3_256, expected, 12), h));
    }
    Ok(out)
}

fn declared(tag: u32, expected: &str, algo: u32) -> PayloadDigest {
    PayloadDigest {
        tag,
        expected: expected.to_ascii_lowercase(),
        actual: None,
        algo,
    }
}

/// The main header and payload read again from the file, for a legacy
/// signature: at the end, it fails unless they are the bytes [`scan`] read.
/// A failure is also kept in `trouble`: the signature check reports
/// whatever its data reader returns as a bad signature, and a read error
/// or a changed file is not the package's fault.
pub struct SignedRange<'a> {
    file: At<'a>,
    hash: Sha256,
    expected: [u8; 32],
    trouble: &'a RefCell<Option<String>>,
}

impl Read for SignedRange<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf).inspect_err(|e| {
            *self.trouble.borrow_mut() = Some(e.to_string());
        })?;
        if n == 0 {
            let actual: [u8; 32] = self.hash.clone().finalize().into();
            if actual != self.expected {
                let m = "the package file changed while it was being checked";
                *self.trouble.borrow_mut() = Some(m.to_string());
                return Err(io::Error::other(m));
            }
        }
        Digest::update(&mut self.hash, &buf[..n]);
        Ok(n)
    }
}

impl Scan {
    /// Reads the main header and payload of `file` (the file scanned)
    /// again, checked against this scan at the end; a read error or a
    /// changed file is noted in `trouble`.
    pub fn signed_range<'a>(
        &self,
        file: &'a File,
        trouble: &'a RefCell<Option<String>>,
    ) -> SignedRange<'a> {
        SignedRange {
            file: At::new(file, self.layout.header.start as u64),
            hash: Sha256::new(),
            expected: self.signed_sha256,
            trouble,
        }
    }

    /// The payload digest a signed header vouches for (`PAYLOADDIGEST`).
    pub fn signed_payload_digest(&self) -> Option<&PayloadDigest> {
        self.payload.iter().find(|d| d.tag == TAG_PAYLOADDIGEST)
    }

    /// Checks the package's own digests, for a package no signature
    /// covers: at least one digest of the main header (SHA-1, SHA-256 or
    /// SHA3-256 in the signature header, as stored) and every payload
    /// digest present. Packages older than payload digests (rpm 4.14)
    /// have only the header's, as with rpm.
    pub fn check_digests(&self) -> Result<(), String> {
        let sig = Header::at(&self.head, self.layout.signature.clone())?;
        let header = &self.head[self.layout.header.clone()];
        let mut any = false;
        for (tag, name) in [
            (SIGTAG_SHA1, "SHA-1"),
            (SIGTAG_SHA256, "SHA-256"),
            (SIGTAG_SHA3_256, "SHA3-256"),
        ] {
            let Some(expected) = sig.first_string(tag)? else {
                continue;
            };
            any = true;
            let actual = match tag {
                SIGTAG_SHA1 => hex::encode(sha1::Sha1::digest(header)),
                SIGTAG_SHA256 => hex::encode(Sha256::digest(header)),
                _ => hex::encode(sha3::Sha3_256::digest(header)),
            };
            if actual != expected.to_ascii_lowercase() {
                return Err(format!(
                    "header {name} digest mismatch: the header hashes to {actual}, it should be {expected}"
                ));
            }
        }
        if !any {
            return Err("the package carries no digest of its header".into());
        }
        for d in &self.payload {
            d.check().map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

impl PayloadDigest {
    /// Whether the payload hashed to what the header declares.
    pub fn check(&self) -> Result<(), DigestProblem> {
        match &self.actual {
            None => Err(DigestProblem::Unsupported(self.algo)),
            Some(a) if *a != self.expected => Err(DigestProblem::Mismatch {
                expected: self.expected.clone(),
                actual: a.clone(),
            }),
            Some(_) => Ok(()),
        }
    }
}

/// Why a payload digest does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestProblem {
    /// The header names an algorithm rpm does not define for payloads.
    #[error("payload digest algorithm {0} is not supported (SHA-224/256/384/512 are)")]
    Unsupported(u32),
    /// The payload hashes to something else.
    #[error("payload digest mismatch: the payload hashes to {actual}, its header says {expected}")]
    Mismatch {
        /// What the header declares.
        expected: String,
        /// What the payload hashes to.
        actual: String,
    },
}

/// The second read of a package: the head from memory, the payload from
/// the file, all of it hashed again. Shared (the `rpm` crate owns the
/// reader it unpacks from) so the hash can be finished afterwards.
#[derive(Clone)]
pub struct Rehash {
    state: Rc<RefCell<RehashState>>,
}

struct RehashState {
    file: File,
    pos: u64,
    hash: Sha256,
}

impl Rehash {
    /// Starts after `head` (already read and hashed by [`scan`], and
    /// hashed here again) at `file`'s byte `head.len()`.
    pub fn new(file: File, head: &[u8]) -> Rehash {
        let mut hash = Sha256::new();
        hash.update(head);
        Rehash {
            state: Rc::new(RefCell::new(RehashState {
                file,
                pos: head.len() as u64,
                hash,
            })),
        }
    }

    /// Reads what the unpacking left unread and returns the SHA-256 of
    /// the whole file as this second read saw it.
    pub fn finish(self) -> io::Result<String> {
        let mut buf = vec![0u8; 256 << 10];
        loop {
            match self.read_shared(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let s = self.state.borrow();
        Ok(hex::encode(s.hash.clone().finalize()))
    }

    fn read_shared(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s = self.state.borrow_mut();
        let n = s.file.read_at(buf, s.pos)?;
        s.pos += n as u64;
        s.hash.update(&buf[..n]);
        Ok(n)
    }
}

impl Read for Rehash {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_shared(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A package built by the `rpm` crate (which writes SHA-256 header and
    /// payload digests), with `content` as its one file.
    fn package(content: &[u8]) -> Vec<u8> {
        let pkg = ::rpm::PackageBuilder::new("p", "1", "MIT", "x86_64", "test")
            .with_file_contents(
                content.to_vec(),
                ::rpm::FileOptions::new("/usr/share/p/data"),
            )
            .unwrap()
            .build()
            .unwrap();
        let mut out = Vec::new();
        pkg.write(&mut out).unwrap();
        out
    }

    #[test]
    fn a_scan_hashes_the_file_and_checks_its_digests() {
        let f = package(&vec![7u8; 1 << 20]);
        let s = scan(&f[..], f.len() as u64).unwrap();
        assert_eq!(s.sha256, hex::encode(Sha256::digest(&f)));
        assert_eq!(s.size, f.len() as u64);
        assert_eq!(s.head, f[..s.layout.header.end]);
        assert!(
            !s.payload.is_empty(),
            "the rpm crate writes a payload digest"
        );
        s.check_digests().unwrap();
        // The rpm crate parses the head alone: the metadata needs no payload.
        let m = ::rpm::PackageMetadata::parse(&mut &s.head[..]).unwrap();
        assert_eq!(m.get_name().unwrap(), "p");
    }

    #[test]
    fn a_flipped_byte_fails_the_digest_check() {
        let f = package(b"hello world, hello world, hello world");
        let s = scan(&f[..], f.len() as u64).unwrap();
        // In the payload.
        let mut bad = f.clone();
        *bad.last_mut().unwrap() ^= 1;
        let e = scan(&bad[..], bad.len() as u64)
            .unwrap()
            .check_digests()
            .unwrap_err();
        assert!(e.contains("payload digest mismatch"), "{e}");
        // In the main header's data (its last byte).
        let mut bad = f.clone();
        bad[s.layout.header.end - 1] ^= 1;
        let e = scan(&bad[..], bad.len() as u64)
            .unwrap()
            .check_digests()
            .unwrap_err();
        assert!(e.contains("header SHA-") && e.contains("mismatch"), "{e}");
    }

    #[test]
    fn a_file_shorter_than_its_declared_size_is_refused() {
        let f = package(b"data");
        // The size given (from fstat) and the bytes read disagree: the file
        // changed while it was read.
        let e = scan(&f[..f.len() - 1], f.len() as u64).unwrap_err();
        assert!(e.to_string().contains("changed while"), "{e}");
        let e = scan(&f[..50], f.len() as u64).unwrap_err();
        assert!(e.to_string().contains("ends inside"), "{e}");
    }

    #[test]
    fn the_second_read_hashes_the_same_file_or_notices_a_change() {
        // Content that does not compress, so the payload is large.
        let mut x = 1u32;
        let content: Vec<u8> = (0..300_000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 24) as u8
            })
            .collect();
        let f = package(&content);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.rpm");
        std::fs::write(&path, &f).unwrap();
        let file = File::open(&path).unwrap();
        let s = scan(At::new(&file, 0), f.len() as u64).unwrap();
        // Read part of the payload, as an unpacker stopping at the cpio
        // trailer would; finish reads the rest.
        let mut r = Rehash::new(file.try_clone().unwrap(), &s.head);
        let mut some = [0u8; 1000];
        r.read_exact(&mut some).unwrap();
        assert_eq!(r.finish().unwrap(), s.sha256);
        // The signed range read again for a legacy signature: the same
        // bytes read to the end.
        let trouble = RefCell::new(None);
        let mut again = Vec::new();
        s.signed_range(&file, &trouble)
            .read_to_end(&mut again)
            .unwrap();
        assert!(trouble.borrow().is_none());
        assert_eq!(again, f[s.layout.header.start..]);
        // Rewritten in place between the reads.
        let r = Rehash::new(file.try_clone().unwrap(), &s.head);
        let mut changed = f.clone();
        *changed.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &changed).unwrap();
        assert_ne!(r.finish().unwrap(), s.sha256);
        let e = s
            .signed_range(&file, &trouble)
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert!(e.to_string().contains("changed"), "{e}");
        assert!(
            trouble
                .borrow()
                .as_deref()
                .is_some_and(|m| m.contains("changed"))
        );
    }
}
