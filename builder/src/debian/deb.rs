//! `.deb` files: an `ar` archive holding `debian-binary`, `control.tar.*`
//! (the control file, maintainer scripts, md5sums, conffiles, triggers)
//! and `data.tar.*` (the files). Compression: xz, zstd, gzip or none.

use std::collections::BTreeMap;
use std::io::Read;

/// A `.deb` that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{deb}: {message}")]
pub struct DebError {
    /// The package file.
    pub deb: String,
    /// What is wrong.
    pub message: String,
}

/// The parts of a `.deb` the installer needs.
pub struct Deb<'a> {
    /// Control-archive members by name (`control`, `postinst`, `md5sums`, ...).
    pub control: BTreeMap<String, Vec<u8>>,
    data: &'a [u8],
    data_name: String,
    name: String,
}

fn err(deb: &str, message: impl Into<String>) -> DebError {
    DebError {
        deb: deb.to_string(),
        message: message.into(),
    }
}

/// Compressed members at least this large get the threaded xz decoder.
const MT_XZ_MIN: usize = 16 << 20;

/// Wraps `data` in the decompressor its member name calls for.
pub fn decoder<'a>(member: &str, data: &'a [u8]) -> Result<Box<dyn Read + 'a>, String> {
    Ok(if member.ends_with(".xz") {
        if data.len() >= MT_XZ_MIN {
            // dpkg-deb writes multi-block xz; liblzma's threaded decoder
            // spreads the blocks over the cores, which shortens the long
            // tail the kernel package (70 MB, 400 MB unpacked) otherwise is.
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
            let stream = liblzma::stream::MtStreamBuilder::new()
                .threads(threads)
                .memlimit_threading(1 << 30)
                .memlimit_stop(u64::MAX)
                .decoder()
                .map_err(|e| format!("{member}: xz decoder: {e}"))?;
            Box::new(liblzma::read::XzDecoder::new_stream(data, stream))
        } else {
            Box::new(liblzma::read::XzDecoder::new(data))
        }
    } else if member.ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::with_buffer(data).map_err(|e| e.to_string())?)
    } else if member.ends_with(".gz") {
        Box::new(flate2::read::GzDecoder::new(data))
    } else if member.ends_with(".tar") {
        Box::new(data)
    } else {
        return Err(format!("unsupported compression in member {member}"));
    })
}

impl<'a> Deb<'a> {
    /// Parses a `.deb` held in memory; `name` labels errors.
    pub fn parse(bytes: &'a [u8], name: &str) -> Result<Deb<'a>, DebError> {
        // ar: "!<arch>\n", then 60-byte headers; parsed by hand so that
        // member data can be borrowed from `bytes` without copying.
        let magic = b"!<arch>\n";
        if !bytes.starts_with(magic) {
            return Err(err(name, "not an ar archive"));
        }
        let mut pos = magic.len();
        let mut members: Vec<(String, &'a [u8])> = Vec::new();
        while pos + 60 <= bytes.len() {
            let h = &bytes[pos..pos + 60];
            if &h[58..60] != b"`\n" {
                return Err(err(name, format!("bad ar header at offset {pos}")));
            }
            let mname = String::from_utf8_lossy(&h[0..16])
                .trim_end()
                .trim_end_matches('/')
                .to_string();
            let size: usize = String::from_utf8_lossy(&h[48..58])
                .trim()
                .parse()
                .map_err(|_| err(name, format!("bad ar member size at offset {pos}")))?;
            let start = pos + 60;
            let end = start
                .checked_add(size)
                .filter(|e| *e <= bytes.len())
                .ok_or_else(|| err(name, format!("ar member {mname} is truncated")))?;
            members.push((mname, &bytes[start..end]));
            pos = end + (size & 1);
        }
        match members.first() {
            Some((n, d)) if n == "debian-binary" && d.starts_with(b"2.") => {}
            _ => return Err(err(name, "first member is not debian-binary 2.x")),
        }
        let (cname, cdata) = members
            .iter()
            .find(|(n, _)| n.starts_with("control.tar"))
            .ok_or_else(|| err(name, "no control.tar member"))?;
        let (dname, ddata) = members
            .iter()
            .find(|(n, _)| n.starts_with("data.tar"))
            .ok_or_else(|| err(name, "no data.tar member"))?;
        let mut control = BTreeMap::new();
        let mut ar = tar::Archive::new(decoder(cname, cdata).map_err(|m| err(name, m))?);
        for e in ar.entries().map_err(|e| err(name, e.to_string()))? {
            let mut e = e.map_err(|e| err(name, e.to_string()))?;
            if e.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let path = e.path().map_err(|e| err(name, e.to_string()))?;
            let Some(file) = path
                .to_string_lossy()
                .trim_start_matches("./")
                .split('/')
                .next_back()
                .map(str::to_string)
            else {
                continue;
            };
            let mut buf = Vec::new();
            e.read_to_end(&mut buf)
                .map_err(|e| err(name, e.to_string()))?;
            control.insert(file, buf);
        }
        if !control.contains_key("control") {
            return Err(err(name, "control.tar has no control file"));
        }
        Ok(Deb {
            control,
            data: ddata,
            data_name: dname.clone(),
            name: name.to_string(),
        })
    }

    /// A reader over the uncompressed data tar.
    pub fn data_reader(&self) -> Result<Box<dyn Read + 'a>, DebError> {
        decoder(&self.data_name, self.data).map_err(|m| err(&self.name, m))
    }

    /// The control file as text.
    pub fn control_text(&self) -> Result<String, DebError> {
        let c = self
            .control
            .get("control")
            .ok_or_else(|| err(&self.name, "no control file"))?;
        String::from_utf8(c.clone()).map_err(|_| err(&self.name, "control file is not UTF-8"))
    }
}
