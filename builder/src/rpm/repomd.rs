//! A yum/dnf repository: `repodata/repomd.xml` (optionally checked against
//! a detached OpenPGP signature, `repomd.xml.asc`), then the `primary`
//! index it lists and, when there is one, the module metadata
//! (`modules.yaml`), each verified by the checksum repomd.xml gives for the
//! compressed file and, when listed, for the uncompressed one.

use std::io::Read;
use std::path::PathBuf;

use quick_xml::events::Event;
use sha2::{Digest, Sha256, Sha512};

use super::modular::ModuleMetadata;
use super::package::RpmPackage;
use super::primary;
use super::signature::Keyring;
use super::xml::{attr, push_ref};
use crate::http::{FetchError, Fetcher};

/// Failure to read a repository's metadata.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A download failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The metadata is malformed.
    #[error("{url}: {message}")]
    Parse {
        /// The file.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// A metadata file does not have the checksum repomd.xml lists.
    #[error("{url}: {kind} checksum mismatch: repomd.xml lists {expected}, got {actual}")]
    Checksum {
        /// The file.
        url: String,
        /// `sha256` etc., and whether it is the open (uncompressed) one.
        kind: String,
        /// Listed value.
        expected: String,
        /// Computed value.
        actual: String,
    },
    /// repomd.xml is not signed by the configured key.
    #[error("{url}: no valid signature from a key in {key}: {message}")]
    Signature {
        /// The signature URL.
        url: String,
        /// The key file.
        key: PathBuf,
        /// Why.
        message: String,
    },
}

/// One `<data>` record of repomd.xml.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataFile {
    /// `type` attribute (`primary`, `filelists`, ...).
    pub kind: String,
    /// `location href`, relative to the repository root.
    pub href: String,
    /// Checksum type and value of the file as stored.
    pub checksum: (String, String),
    /// Checksum type and value of the uncompressed content.
    pub open_checksum: Option<(String, String)>,
}

/// Parses repomd.xml.
pub fn parse_repomd(xml: &[u8], url: &str) -> Result<Vec<DataFile>, RepoError> {
    let perr = |message: String| RepoError::Parse {
        url: url.to_string(),
        message,
    };
    let mut r = quick_xml::Reader::from_reader(xml);
    r.config_mut().trim_text(true);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut cur: Option<DataFile> = None;
    let mut text = String::new();
    let mut sum_type = String::new();
    loop {
        let ev = r
            .read_event_into(&mut buf)
            .map_err(|e| perr(format!("XML error at byte {}: {e}", r.buffer_position())))?;
        match ev {
            Event::Start(e) | Event::Empty(e) => {
                text.clear();
                match e.local_name().as_ref() {
                    "data" => {
                        cur = Some(DataFile {
                            kind: attr(&e, "type").unwrap_or_default(),
                            ..DataFile::default()
                        })
                    }
                    "location" => {
                        if let Some(d) = cur.as_mut() {
                            d.href = attr(&e, "href").unwrap_or_default();
                        }
                    }
                    "checksum" | "open-checksum" => {
                        sum_type = attr(&e, "type").unwrap_or_default();
                    }
                    _ => {}
                }
            }
            Event::Text(t) => text.push_str(&t.xml10_content()),
            Event::GeneralRef(g) => push_ref(&mut text, &g),
            Event::End(e) => match (e.local_name().as_ref(), cur.as_mut()) {
                ("checksum", Some(d)) => {
                    d.checksum = (sum_type.clone(), text.trim().to_ascii_lowercase())
                }
                ("open-checksum", Some(d)) => {
                    d.open_checksum = Some((sum_type.clone(), text.trim().to_ascii_lowercase()))
                }
                ("data", Some(_)) => out.extend(cur.take()),
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok(out)
}

/// Computes `kind` over `data`, for the checksum types repositories use.
fn digest(kind: &str, data: &[u8]) -> Option<String> {
    match kind {
        "sha256" => Some(hex::encode(Sha256::digest(data))),
        "sha512" => Some(hex::encode(Sha512::digest(data))),
        _ => None,
    }
}

fn check_sum(url: &str, what: &str, sum: &(String, String), data: &[u8]) -> Result<(), RepoError> {
    let actual = digest(&sum.0, data).ok_or_else(|| RepoError::Parse {
        url: url.to_string(),
        message: format!(
            "unsupported checksum type {:?} (sha256 and sha512 are)",
            sum.0
        ),
    })?;
    if actual != sum.1 {
        return Err(RepoError::Checksum {
            url: url.to_string(),
            kind: if what.is_empty() {
                sum.0.clone()
            } else {
                format!("{} {what}", sum.0)
            },
            expected: sum.1.clone(),
            actual,
        });
    }
    Ok(())
}

/// What a repository offers: its packages and, when it has module streams,
/// their metadata.
#[derive(Debug, Clone, Default)]
pub struct RepoData {
    /// Every package `primary` lists.
    pub packages: Vec<RpmPackage>,
    /// `modules.yaml`, when repomd.xml lists one.
    pub modules: Option<ModuleMetadata>,
}

/// Reads a repository: its repomd.xml (verified against `repo_keys`, when
/// given, by its detached signature `repomd.xml.asc`), then primary and,
/// when listed, the module metadata. `base` is the repository root URL
/// without a trailing slash; packages get `origin` as their source number.
pub fn load(
    fetcher: &Fetcher,
    base: &str,
    origin: usize,
    repo_keys: Option<&Keyring>,
) -> Result<RepoData, RepoError> {
    let url = format!("{base}/repodata/repomd.xml");
    let repomd = fetcher.get(&url)?;
    if let Some(keys) = repo_keys {
        let sig_url = format!("{url}.asc");
        let sig = fetcher.get(&sig_url)?;
        keys.verify(&sig, &repomd, crate::pgpkeys::SigKind::Document)
            .map_err(|problem| RepoError::Signature {
                url: sig_url,
                key: keys.path().to_path_buf(),
                message: problem.to_string(),
            })?;
    }
    let data = parse_repomd(&repomd, &url)?;
    let primary = data
        .iter()
        .find(|d| d.kind == "primary")
        .ok_or_else(|| RepoError::Parse {
            url: url.clone(),
            message: "lists no primary metadata".into(),
        })?;
    let (purl, xml) = fetch_data(fetcher, base, &url, primary)?;
    let packages =
        primary::parse(&xml, origin).map_err(|message| RepoError::Parse { url: purl, message })?;
    let modules = match data.iter().find(|d| d.kind == "modules") {
        None => None,
        Some(d) => {
            let (murl, yaml) = fetch_data(fetcher, base, &url, d)?;
            let perr = |message: String| RepoError::Parse {
                url: murl.clone(),
                message,
            };
            let text = std::str::from_utf8(&yaml).map_err(|e| perr(e.to_string()))?;
            let mut m = ModuleMetadata::default();
            m.add_yaml(text).map_err(|e| perr(e.to_string()))?;
            Some(m)
        }
    };
    Ok(RepoData { packages, modules })
}

/// Fetches one metadata file repomd.xml lists, checks it against the
/// checksums listed there (of the file, and of its uncompressed content
/// when given) and decompresses it. Returns its URL and content.
fn fetch_data(
    fetcher: &Fetcher,
    base: &str,
    repomd_url: &str,
    d: &DataFile,
) -> Result<(String, Vec<u8>), RepoError> {
    if d.href.is_empty() || d.href.starts_with('/') || d.href.split('/').any(|c| c == "..") {
        return Err(RepoError::Parse {
            url: repomd_url.to_string(),
            message: format!("bad {} location {:?}", d.kind, d.href),
        });
    }
    let durl = format!("{base}/{}", d.href);
    let raw = fetcher.get(&durl)?;
    check_sum(&durl, "", &d.checksum, &raw)?;
    let content = decompress(&d.href, &raw).map_err(|message| RepoError::Parse {
        url: durl.clone(),
        message,
    })?;
    if let Some(open) = &d.open_checksum {
        check_sum(&durl, "(uncompressed)", open, &content)?;
    }
    Ok((durl, content))
}

/// Decompresses a metadata file by its name: `.gz`, `.xz`, `.zst` or plain.
fn decompress(name: &str, raw: &[u8]) -> Result<Vec<u8>, String> {
    if name.ends_with(".xml") || name.ends_with(".yaml") {
        return Ok(raw.to_vec());
    }
    if name.ends_with(".bz2") {
        return Err("bzip2-compressed metadata is not supported (gz, xz and zst are)".into());
    }
    let mut out = Vec::new();
    crate::debian::deb::decoder(name, raw)?
        .read_to_end(&mut out)
        .map_err(|e| format!("decompressing: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPOMD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo" xmlns:rpm="http://linux.duke.edu/metadata/rpm">
  <revision>1700000000</revision>
  <data type="primary">
    <checksum type="sha256">ABCD</checksum>
    <open-checksum type="sha256">ef01</open-checksum>
    <location href="repodata/abcd-primary.xml.gz"/>
    <size>10</size>
  </data>
  <data type="filelists">
    <checksum type="sha256">1234</checksum>
    <location href="repodata/1234-filelists.xml.gz"/>
  </data>
</repomd>"#;

    #[test]
    fn repomd_records() {
        let d = parse_repomd(REPOMD.as_bytes(), "u").unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].kind, "primary");
        assert_eq!(d[0].href, "repodata/abcd-primary.xml.gz");
        assert_eq!(d[0].checksum, ("sha256".into(), "abcd".into()));
        assert_eq!(d[0].open_checksum, Some(("sha256".into(), "ef01".into())));
        assert_eq!(d[1].open_checksum, None);
        assert!(parse_repomd(b"<repomd><data", "u").is_err());
    }

    #[test]
    fn checksums() {
        let sum = ("sha256".to_string(), hex::encode(Sha256::digest("x")));
        check_sum("u", "", &sum, b"x").unwrap();
        let e = check_sum("u", "", &sum, b"y").unwrap_err();
        assert!(matches!(e, RepoError::Checksum { .. }), "{e}");
        let md5 = ("md5".to_string(), String::new());
        assert!(
            check_sum("u", "", &md5, b"x")
                .unwrap_err()
                .to_string()
                .contains("md5")
        );
    }
}
