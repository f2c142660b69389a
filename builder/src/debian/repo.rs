//! A Debian archive as the builder sees it: for each (mirror, suite), a
//! verified InRelease, then the `Packages` indexes it vouches for.

use std::io::Read;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::control;
use super::inrelease::{self, Keyring, Release, ReleaseError};
use super::packages::{Package, StanzaError};
use crate::http::{FetchError, Fetcher};

/// One archive to read: a mirror root, a suite and its components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSpec {
    /// The archive root URI (no trailing slash).
    pub uri: String,
    /// The suite, e.g. `bookworm`.
    pub suite: String,
    /// Components, e.g. `main`.
    pub components: Vec<String>,
}

/// Failure to read an archive's indexes.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A download failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The InRelease file was refused.
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// The signed index lists no Packages file for a component.
    #[error("{url}: lists no Packages index for {component}/binary-{arch}")]
    NoIndex {
        /// The InRelease URL.
        url: String,
        /// The component.
        component: String,
        /// The architecture.
        arch: String,
    },
    /// A Packages file does not match the hash in InRelease.
    #[error(
        "{url}: does not match the sha256 in the signed InRelease (expected {expected}, got {actual})"
    )]
    IndexHash {
        /// The Packages URL.
        url: String,
        /// Hash from InRelease.
        expected: String,
        /// Hash of what arrived.
        actual: String,
    },
    /// Decompression or parsing failed.
    #[error("{url}: {message}")]
    Parse {
        /// The Packages URL.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// A stanza is unusable.
    #[error("{url}: {source}")]
    Stanza {
        /// The Packages URL.
        url: String,
        /// The stanza error.
        source: StanzaError,
    },
}

/// The packages of every configured archive.
#[derive(Debug)]
pub struct Index {
    /// The archives in configuration order; `Package::origin` indexes this.
    pub archives: Vec<ArchiveSpec>,
    /// Their verified Release data, same order.
    pub releases: Vec<Release>,
    /// All packages for the native architecture (and `all`).
    pub packages: Vec<Package>,
}

/// Fetches and verifies the indexes of `archives` for `arch`.
pub fn load_index(
    fetcher: &Fetcher,
    archives: &[ArchiveSpec],
    arch: &str,
    keyring: &Keyring,
) -> Result<Index, RepoError> {
    let releases: Vec<Release> = archives
        .par_iter()
        .map(|a| {
            let url = format!("{}/dists/{}/InRelease", a.uri, a.suite);
            let data = fetcher.get(&url)?;
            Ok(inrelease::verify(&data, keyring, &url)?)
        })
        .collect::<Result<_, RepoError>>()?;
    let mut jobs = Vec::new();
    for (i, a) in archives.iter().enumerate() {
        for c in &a.components {
            jobs.push((i, c.clone()));
        }
    }
    let parts: Vec<Vec<Package>> = jobs
        .par_iter()
        .map(|(i, comp)| load_packages(fetcher, &archives[*i], &releases[*i], comp, arch, *i))
        .collect::<Result<_, RepoError>>()?;
    Ok(Index {
        archives: archives.to_vec(),
        releases,
        packages: parts.into_iter().flatten().collect(),
    })
}

fn load_packages(
    fetcher: &Fetcher,
    archive: &ArchiveSpec,
    release: &Release,
    component: &str,
    arch: &str,
    origin: usize,
) -> Result<Vec<Package>, RepoError> {
    let base = format!("{}/dists/{}", archive.uri, archive.suite);
    let stem = format!("{component}/binary-{arch}/Packages");
    let (name, meta) = ["xz", "gz", ""]
        .iter()
        .map(|ext| {
            if ext.is_empty() {
                stem.clone()
            } else {
                format!("{stem}.{ext}")
            }
        })
        .find_map(|n| release.files.get(&n).map(|m| (n, m.clone())))
        .ok_or_else(|| RepoError::NoIndex {
            url: format!("{base}/InRelease"),
            component: component.to_string(),
            arch: arch.to_string(),
        })?;
    let url = format!("{base}/{name}");
    let data = fetcher.get(&url)?;
    let actual = hex::encode(Sha256::digest(&data));
    if actual != meta.sha256 || data.len() as u64 != meta.size {
        return Err(RepoError::IndexHash {
            url,
            expected: meta.sha256,
            actual,
        });
    }
    let text = decompress(&data, &name).map_err(|e| RepoError::Parse {
        url: url.clone(),
        message: e.to_string(),
    })?;
    parse_packages(&text, arch, origin).map_err(|e| match e {
        ParseError::Syntax(m) => RepoError::Parse { url, message: m },
        ParseError::Stanza(source) => RepoError::Stanza { url, source },
    })
}

/// Why a Packages text was refused.
#[derive(Debug)]
pub enum ParseError {
    /// Control-file syntax.
    Syntax(String),
    /// An unusable stanza.
    Stanza(StanzaError),
}

/// Parses a whole Packages file.
pub fn parse_packages(text: &str, arch: &str, origin: usize) -> Result<Vec<Package>, ParseError> {
    let paras = control::parse(text).map_err(|e| ParseError::Syntax(e.to_string()))?;
    paras
        .iter()
        .map(|p| Package::from_paragraph(p, arch, origin).map_err(ParseError::Stanza))
        .collect()
}

/// Decompresses by file-name extension (`.xz`, `.gz`, none).
pub fn decompress(data: &[u8], name: &str) -> std::io::Result<String> {
    let mut out = String::new();
    if name.ends_with(".xz") {
        liblzma::read::XzDecoder::new(data).read_to_string(&mut out)?;
    } else if name.ends_with(".gz") {
        flate2::read::GzDecoder::new(data).read_to_string(&mut out)?;
    } else {
        out = String::from_utf8(data.to_vec())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    }
    Ok(out)
}
