//! `vnfs image NAME[@COMMIT] --format squashfs|cpio|tar -o FILE`: renders
//! a version of an image as a file system or archive. The work is in
//! `vnfs_builder::image`; this module parses arguments and prints.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use vnfs_builder::image::{self, Compression, Format, RenderOptions};

use crate::context::Context;
use crate::interrupt;
use crate::progress::bytes;

/// Image formats.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FormatArg {
    /// squashfs file system (loop-mountable; keeps xattrs, devices, hard links)
    Squashfs,
    /// newc cpio archive, usable as an initramfs (no xattrs)
    Cpio,
    /// pax tar archive with xattrs (SCHILY.xattr.*)
    Tar,
}

/// Compressors.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CompressionArg {
    /// zstd (default level 3)
    Zstd,
    /// gzip (default level 6)
    Gzip,
    /// xz with CRC32 checks (default level 6)
    Xz,
    /// none (cpio and tar only)
    None,
}

/// `vnfs image`
#[derive(Args, Debug)]
pub struct ImageArgs {
    /// Image to render: NAME or NAME@COMMIT
    pub image: String,
    /// Output format [default: from the output's extension: .sqfs or
    /// .squashfs; .cpio or .cpio.gz/.xz/.zst; .tar or .tar.gz/.tgz/.xz/.zst]
    #[arg(long, short = 'f', value_enum)]
    pub format: Option<FormatArg>,
    /// Compressor [default: zstd for squashfs; for cpio and tar, from the
    /// output's extension (.gz, .xz, .zst), else none]
    #[arg(long, short = 'c', value_enum)]
    pub compression: Option<CompressionArg>,
    /// Compression level [default: the compressor's, zstd 3]
    #[arg(long)]
    pub level: Option<i32>,
    /// Compression threads for squashfs (0: one per core)
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Output file, or - for stdout (cpio and tar; --json then reports on
    /// stderr). A regular file is written under a temporary name and
    /// renamed into place; a device or FIFO is written directly; a symlink
    /// is followed
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: PathBuf,
}

/// The format an output file's name asks for, if its extension names one.
fn format_of(name: &str) -> Option<FormatArg> {
    let name = &name.to_ascii_lowercase();
    let stem = [".gz", ".xz", ".zst", ".zstd"]
        .iter()
        .find_map(|c| name.strip_suffix(c))
        .unwrap_or(name);
    if name.ends_with(".sqfs") || name.ends_with(".squashfs") {
        Some(FormatArg::Squashfs)
    } else if stem.ends_with(".cpio") {
        Some(FormatArg::Cpio)
    } else if stem.ends_with(".tar") || name.ends_with(".tgz") {
        Some(FormatArg::Tar)
    } else {
        None
    }
}

/// The extension after a format's (`bz2` in `node.cpio.bz2`), when the
/// name would name a format but for a compressor vnfs does not write.
fn unknown_compression(lower: &str) -> Option<&str> {
    [".cpio.", ".tar."]
        .iter()
        .find_map(|f| lower.rsplit_once(f).map(|(_, ext)| ext))
        .filter(|ext| !ext.is_empty() && !ext.contains('/'))
}

/// The format's name in messages.
fn format_name(f: Format) -> &'static str {
    match f {
        Format::Squashfs => "squashfs",
        Format::Cpio => "cpio",
        Format::Tar => "tar",
    }
}

/// Where the output's name says another format or compression than the
/// image will have (`node.cpio.gz` holding xz data misleads the next tool
/// that goes by the name): what to warn about. A name without such an
/// extension says nothing.
fn name_mismatch(name: &str, format: Format, compression: Compression) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(named) = format_of(name) {
        let named = match named {
            FormatArg::Squashfs => Format::Squashfs,
            FormatArg::Cpio => Format::Cpio,
            FormatArg::Tar => Format::Tar,
        };
        if named != format {
            out.push(format!(
                "{name} will hold a {} image; its name says {}",
                format_name(format),
                format_name(named)
            ));
        }
    }
    if format != Format::Squashfs {
        let said = [
            (".gz", Compression::Gzip, "gzip"),
            (".tgz", Compression::Gzip, "gzip"),
            (".xz", Compression::Xz, "xz"),
            (".zst", Compression::Zstd, "zstd"),
            (".zstd", Compression::Zstd, "zstd"),
        ]
        .into_iter()
        .find(|(ext, _, _)| name.to_ascii_lowercase().ends_with(ext));
        let actual = match compression {
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::None => "uncompressed",
        };
        match said {
            Some((_, c, what)) if c != compression => out.push(format!(
                "{name} will hold {actual} data; its name says {what}"
            )),
            None if compression != Compression::None && format_of(name).is_some() => out.push(
                format!("{name} will hold {actual} data; its name has no compression extension"),
            ),
            _ => {}
        }
    }
    out
}

/// Renders the image.
pub fn run(a: ImageArgs, ctx: &Context) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let (_, commit) = store.resolve(&a.image)?;
    let out_name = a.output.to_string_lossy().into_owned();
    let lower = out_name.to_ascii_lowercase();
    let format = match a.format.or_else(|| format_of(&out_name)) {
        Some(FormatArg::Squashfs) => Format::Squashfs,
        Some(FormatArg::Cpio) => Format::Cpio,
        Some(FormatArg::Tar) => Format::Tar,
        None if lower.contains(".sqfs.") || lower.contains(".squashfs.") => anyhow::bail!(
            "{out_name}: a squashfs image compresses its contents itself (--compression); \
             name the file .sqfs or .squashfs"
        ),
        None => match unknown_compression(&lower) {
            Some(ext) => anyhow::bail!(
                "{out_name}: vnfs image compresses with zstd, gzip or xz (.zst, .gz, .xz), \
                 not .{ext}; or give --format and --compression"
            ),
            None => anyhow::bail!(
                "which format? {out_name} has no extension that names one: \
                 give --format squashfs, cpio or tar"
            ),
        },
    };
    let compression = match a.compression {
        Some(CompressionArg::Zstd) => Compression::Zstd,
        Some(CompressionArg::Gzip) => Compression::Gzip,
        Some(CompressionArg::Xz) => Compression::Xz,
        Some(CompressionArg::None) => Compression::None,
        None if format == Format::Squashfs => Compression::Zstd,
        None if lower.ends_with(".gz") || lower.ends_with(".tgz") => Compression::Gzip,
        None if lower.ends_with(".xz") => Compression::Xz,
        None if lower.ends_with(".zst") || lower.ends_with(".zstd") => Compression::Zstd,
        None => Compression::None,
    };
    if !ctx.quiet {
        for w in name_mismatch(&out_name, format, compression) {
            eprintln!("warning: {w}");
        }
    }
    let opts = RenderOptions {
        format,
        compression,
        level: a.level,
        threads: a.threads,
    };
    let bar = ctx.progress();
    let to_stdout = out_name == "-";
    let stats = if to_stdout {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
        let s = image::render_stream(&store, &commit, &opts, &mut out, &bar).map_err(on_stdout)?;
        out.flush().context(STDOUT)?;
        s
    } else {
        to_file(&store, &commit, &opts, &a.output, &bar)?
    };
    if ctx.json {
        return ctx.print_report(&stats, to_stdout);
    }
    if !ctx.quiet {
        eprintln!(
            "{}: {} entries, {} of content, image {}",
            if to_stdout { "<stdout>" } else { &out_name },
            stats.entries,
            bytes(stats.content_bytes),
            bytes(stats.image_bytes)
        );
        if stats.xattrs_dropped > 0 {
            eprintln!(
                "warning: {} extended attributes cannot be stored in {} and were left out{}",
                stats.xattrs_dropped,
                format_name(format),
                stats
                    .xattr_dropped_first
                    .as_deref()
                    .map(|f| format!(", the first at {f}"))
                    .unwrap_or_default()
            );
            if stats.acls_dropped > 0 {
                eprintln!(
                    "warning: {} of them are POSIX ACLs: without them, a file's group permission is the ACL's mask, which may grant more than the ACL did; tar keeps ACLs (extract with tar --xattrs --xattrs-include='*')",
                    stats.acls_dropped
                );
            }
        }
        if stats.mtimes_clamped > 0 {
            eprintln!(
                "warning: {} modification times lie outside what {} can store (1970 to 2106) and were clamped to its range{}",
                stats.mtimes_clamped,
                format_name(format),
                stats
                    .mtime_clamped_first
                    .as_ref()
                    .map(|(path, t)| format!(", the first at {path} ({})", super::image::date(*t)))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Renders into the file, device or FIFO at `path` (see
/// `vnfs_builder::image::output`). A temporary file is removed on any
/// failure, and on Ctrl-C or SIGTERM, which are caught only then: a
/// direct write has nothing to clean up, and Ctrl-C should end it at once.
fn to_file(
    store: &vnfs_store::Store,
    commit: &vnfs_store::ObjectId,
    opts: &RenderOptions,
    path: &Path,
    bar: &crate::progress::Bar,
) -> anyhow::Result<image::RenderStats> {
    image::check_destination(opts, path)?;
    if image::Kind::of(path)?.is_temporary() {
        interrupt::catch();
    }
    let mut out = image::Output::create(
        path,
        image::OutputOptions {
            replace: true,
            cancel: Some(interrupt::flag()),
        },
    )?;
    let stats = image::render_into(store, commit, opts, &mut out, bar)?;
    out.commit()?;
    Ok(stats)
}

const STDOUT: &str = "writing the image to standard output";

/// Names standard output in a write error that names the placeholder.
fn on_stdout(e: image::ImageError) -> anyhow::Error {
    match e {
        image::ImageError::Io { path, source } if path == Path::new(image::OUTPUT) => {
            anyhow::Error::new(source).context(STDOUT)
        }
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_say_another_format_or_compression_are_warned_about() {
        let (c, t, s) = (Format::Cpio, Format::Tar, Format::Squashfs);
        let warns = |n, f, z| name_mismatch(n, f, z);
        assert!(warns("node.cpio.gz", c, Compression::Gzip).is_empty());
        assert!(warns("node.tgz", t, Compression::Gzip).is_empty());
        assert!(warns("node.sqfs", s, Compression::Xz).is_empty());
        assert!(warns("node.img", c, Compression::Xz).is_empty());
        assert!(warns("-", t, Compression::Zstd).is_empty());
        assert_eq!(
            warns("node.cpio.gz", c, Compression::Xz),
            ["node.cpio.gz will hold xz data; its name says gzip"]
        );
        assert_eq!(
            warns("node.tar", t, Compression::Zstd),
            ["node.tar will hold zstd data; its name has no compression extension"]
        );
        assert_eq!(
            warns("node.sqfs", t, Compression::None),
            ["node.sqfs will hold a tar image; its name says squashfs"]
        );
        assert_eq!(warns("node.tar.zst", c, Compression::Zstd).len(), 1);
        assert!(warns("NODE.CPIO.GZ", c, Compression::Gzip).is_empty());
    }

    #[test]
    fn a_compressor_vnfs_does_not_write_is_named() {
        assert_eq!(unknown_compression("node.cpio.bz2"), Some("bz2"));
        assert_eq!(unknown_compression("x.tar.lz4"), Some("lz4"));
        assert_eq!(unknown_compression("node.img"), None);
        assert_eq!(unknown_compression("node.cpio"), None);
        assert!(format_of("NODE.CPIO.GZ").is_some());
    }
}
