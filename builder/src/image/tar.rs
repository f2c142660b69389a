//! POSIX pax tar: ustar headers, with a pax extended header (`x`) before
//! any entry that needs one for: nanosecond or negative mtimes, names or
//! link targets longer than the ustar fields, sizes of 8 GiB or more, ids
//! above 2097151, and extended attributes as `SCHILY.xattr.NAME` records
//! (the form GNU tar's `--xattrs` and bsdtar read). Owner names are left
//! empty, so extraction uses the numeric ids.
//!
//! The root is `./`; other paths are `./`-prefixed, directories end in
//! `/`. Hard links are type `1` entries naming their first path. Holes
//! are written as zeros.

use std::io::Write;

use vnfs_store::{Entry, EntryKind, Progress, Store};

use super::walker::{Image, copy_content, show};
use super::{ImageError, RenderStats, Result};

const BLOCK: usize = 512;
const MAX_OCTAL_7: u64 = 0o7777777;
const MAX_OCTAL_11: u64 = 0o77777777777;

/// Writes the whole archive (entries and the two zero blocks) to `w`.
pub fn write(
    store: &Store,
    image: &Image,
    w: &mut dyn Write,
    progress: &dyn Progress,
) -> Result<RenderStats> {
    let mut stats = RenderStats::default();
    write_entry(w, b"./", &image.root, &mut stats)?;
    for it in &image.items {
        let mut name = b"./".to_vec();
        name.extend_from_slice(&it.path);
        if matches!(it.entry.kind, EntryKind::Dir { .. }) {
            name.push(b'/');
        }
        write_entry(w, &name, &it.entry, &mut stats)?;
        if let EntryKind::File { size, extents } = &it.entry.kind {
            copy_content(store, &it.path, *size, extents, w, progress)?;
            pad(w, *size)?;
        }
    }
    w.write_all(&[0u8; 2 * BLOCK]).map_err(out_err)?;
    Ok(stats)
}

fn write_entry(w: &mut dyn Write, name: &[u8], e: &Entry, stats: &mut RenderStats) -> Result<()> {
    stats.entries += 1;
    let mut pax = Vec::new();
    let (typ, size, link): (u8, u64, Option<Vec<u8>>) = match &e.kind {
        EntryKind::File { size, .. } => (b'0', *size, None),
        EntryKind::Dir { .. } => (b'5', 0, None),
        EntryKind::Symlink { target } => (b'2', 0, Some(target.clone())),
        EntryKind::HardLink { target } => {
            let mut t = b"./".to_vec();
            t.extend_from_slice(target);
            (b'1', 0, Some(t))
        }
        EntryKind::CharDev { .. } => (b'3', 0, None),
        EntryKind::BlockDev { .. } => (b'4', 0, None),
        EntryKind::Fifo => (b'6', 0, None),
    };
    stats.content_bytes += size;
    let binary = std::str::from_utf8(name).is_err()
        || link
            .as_deref()
            .is_some_and(|l| std::str::from_utf8(l).is_err());
    if binary {
        record(&mut pax, b"hdrcharset", b"BINARY");
    }
    if name.len() > 100 {
        record(&mut pax, b"path", name);
    }
    if let Some(l) = &link
        && l.len() > 100
    {
        record(&mut pax, b"linkpath", l);
    }
    let m = &e.meta;
    if m.mtime_nsec != 0 || m.mtime < 0 || m.mtime as u64 > MAX_OCTAL_11 {
        let v = if m.mtime < 0 && m.mtime_nsec != 0 {
            // pax times are sign + decimal fraction: -1.5 is 1.5 s before the epoch.
            let whole = -(m.mtime + 1);
            format!("-{}.{:09}", whole, 1_000_000_000 - m.mtime_nsec)
        } else {
            format!("{}.{:09}", m.mtime, m.mtime_nsec)
        };
        record(&mut pax, b"mtime", v.as_bytes());
    }
    if m.uid as u64 > MAX_OCTAL_7 {
        record(&mut pax, b"uid", m.uid.to_string().as_bytes());
    }
    if m.gid as u64 > MAX_OCTAL_7 {
        record(&mut pax, b"gid", m.gid.to_string().as_bytes());
    }
    if size > MAX_OCTAL_11 {
        record(&mut pax, b"size", size.to_string().as_bytes());
    }
    for (k, v) in &m.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(k);
        record(&mut pax, &key, v);
    }
    if !pax.is_empty() {
        let mut pname = b"./PaxHeaders/".to_vec();
        let base = name
            .strip_suffix(b"/")
            .unwrap_or(name)
            .rsplit(|&b| b == b'/')
            .next()
            .unwrap_or(b"");
        pname.extend_from_slice(&base[..base.len().min(80)]);
        let h = header(
            &pname,
            b'x',
            0o644,
            0,
            0,
            m.mtime.max(0) as u64,
            pax.len() as u64,
            None,
            (0, 0),
        );
        w.write_all(&h).map_err(out_err)?;
        w.write_all(&pax).map_err(out_err)?;
        pad(w, pax.len() as u64)?;
    }
    let dev = match &e.kind {
        EntryKind::CharDev { major, minor } | EntryKind::BlockDev { major, minor } => {
            (*major, *minor)
        }
        _ => (0, 0),
    };
    if dev.0 as u64 > MAX_OCTAL_7 || dev.1 as u64 > MAX_OCTAL_7 {
        return Err(ImageError::Unrepresentable {
            path: show(name),
            format: "tar",
            why: "device number too large for ustar".into(),
        });
    }
    let h = header(
        name,
        typ,
        m.mode & 0o7777,
        m.uid,
        m.gid,
        (m.mtime.max(0) as u64).min(MAX_OCTAL_11),
        size.min(MAX_OCTAL_11),
        link.as_deref(),
        dev,
    );
    w.write_all(&h).map_err(out_err)
}

/// One ustar header block. Fields too long are truncated here; the pax
/// header written before it carries the full value.
#[allow(clippy::too_many_arguments)]
fn header(
    name: &[u8],
    typ: u8,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
    size: u64,
    link: Option<&[u8]>,
    dev: (u32, u32),
) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], mode as u64);
    octal(&mut h[108..116], (uid as u64).min(MAX_OCTAL_7));
    octal(&mut h[116..124], (gid as u64).min(MAX_OCTAL_7));
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], mtime);
    h[156] = typ;
    if let Some(l) = link {
        let n = l.len().min(100);
        h[157..157 + n].copy_from_slice(&l[..n]);
    }
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    if typ == b'3' || typ == b'4' {
        octal(&mut h[329..337], dev.0 as u64);
        octal(&mut h[337..345], dev.1 as u64);
    }
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| b as u64).sum();
    octal(&mut h[148..155], sum);
    h[155] = b' ';
    h
}

/// Zero-padded octal with a trailing NUL, filling `field`.
fn octal(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    let s = s.as_bytes();
    field[..digits].copy_from_slice(&s[s.len() - digits..]);
    field[digits] = 0;
}

/// Appends one pax record `LEN KEY=VALUE\n`, LEN counting itself.
fn record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    loop {
        let total = body + len.to_string().len();
        if total == len {
            break;
        }
        len = total;
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn pad(w: &mut dyn Write, len: u64) -> Result<()> {
    let n = (BLOCK - (len % BLOCK as u64) as usize) % BLOCK;
    w.write_all(&[0u8; BLOCK][..n]).map_err(out_err)
}

fn out_err(source: std::io::Error) -> ImageError {
    ImageError::Io {
        path: super::OUTPUT.into(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        for vlen in [0usize, 1, 5, 6, 7, 90, 95, 96, 97, 990, 995, 996, 1000] {
            let mut out = Vec::new();
            record(&mut out, b"path", &vec![b'a'; vlen]);
            let sp = out.iter().position(|&b| b == b' ').unwrap();
            let n: usize = std::str::from_utf8(&out[..sp]).unwrap().parse().unwrap();
            assert_eq!(n, out.len(), "value length {vlen}");
        }
    }
}
