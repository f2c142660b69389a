//! Capsule commands: `vnfs export`, `vnfs import`, `vnfs capsule inspect`,
//! `vnfs key generate|trust`. The work is in `vnfs_capsule::exchange`; this
//! module parses arguments, picks files and prints.
//!
//! Configuration: the trust list is `trusted-keys` in the configuration
//! directory (`--config`, default /etc/vnfs as root; public key lines, see
//! capsule-spec/SPEC.md §8); the unsigned-capsule policy is `--unsigned`,
//! else `VNFS_UNSIGNED`, else `unsigned capsules` in vnfs.conf (accept,
//! warn, reject; default warn).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use vnfs_builder::image::{Kind, Output, OutputError, OutputOptions};
use vnfs_capsule::exchange;
use vnfs_capsule::metadata::ImageMetadata;
use vnfs_capsule::{
    CapsuleError, Limits, ObjectId, ReadOptions, SecretKey, SignaturePolicy, SignatureStatus,
    TrustList, UnsignedPolicy,
};

use crate::context::Context;
use crate::interrupt;
use crate::progress::bytes;

/// `vnfs export`
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Image to export: NAME, NAME@COMMIT, or a commit id (the capsule then
    /// carries the name of the one image whose history holds it). A full
    /// capsule carries the version's whole history (every earlier version,
    /// with files later deleted); --base leaves out what another site
    /// already has
    pub image: String,
    /// Output: a file (replaced if it exists), a directory (the file is
    /// named <os>-<version>-<release>.<state>.<arch>.vnfs; an existing one
    /// is kept unless --force), or - for stdout (--json then reports on
    /// stderr). A device or FIFO is written directly; a symlink is followed
    pub output: String,
    /// Replace an existing capsule of the same name in a directory output
    #[arg(long)]
    pub force: bool,
    /// Make a delta holding only what this image or commit lacks
    #[arg(long, value_name = "NAME|COMMIT")]
    pub base: Option<String>,
    /// Sign with this secret key file (see `vnfs key generate`)
    #[arg(long, value_name = "KEYFILE")]
    pub sign: Option<PathBuf>,
    /// Chunks smaller than this travel recompressed together in solid
    /// blocks, larger ones as stored (bytes, or with a K or M suffix; 0: all
    /// single). Larger values give smaller capsules and slower exports
    #[arg(long, value_name = "SIZE", default_value_t = exchange::DEFAULT_SOLID_BELOW, value_parser = parse_size)]
    pub solid_below: u32,
    /// zstd level of the solid blocks (1-19): higher levels give smaller
    /// capsules and slower exports. Chunks copied as stored keep the
    /// store's compression
    #[arg(long, value_name = "N", default_value_t = exchange::ExportOptions::default().level,
          value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
    /// Do not check the chunks copied as stored. By default a pack the
    /// export copies at least half of is hashed whole against its name,
    /// and the chunks of other packs are decoded and checked against
    /// their ids, so a damaged store stops the export instead of shipping,
    /// and signing, the damage; skip the check only for a store `vnfs
    /// store fsck` has just checked. The importing site checks every
    /// object either way
    #[arg(long)]
    pub no_verify: bool,
}

/// Warns when a secret key file can be read by other users (as ssh
/// does; here a warning, since the key may sit on a shared mount whose
/// modes are not the owner's to set).
fn warn_if_readable_by_others(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        let mode = m.permissions().mode();
        if mode & 0o077 != 0 {
            eprintln!(
                "warning: secret key {} is readable by others (mode {:o}); anyone who reads it can sign capsules as you: chmod 600 it",
                path.display(),
                mode & 0o777
            );
        }
    }
}

/// Parses `N`, `NK` or `NM` (binary units) as a byte count.
fn parse_size(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&t[..i], &t[i..]),
        None => (t, ""),
    };
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" => 0,
        "K" | "KIB" => 10,
        "M" | "MIB" => 20,
        _ => return Err(format!("'{s}': expected a size like 16384, 16K or 1M")),
    };
    digits
        .parse::<u32>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("'{s}': expected a size like 16384, 16K or 1M (below 4G)"))
}

/// What to do with an unsigned capsule.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Unsigned {
    /// Import silently
    Accept,
    /// Import with a warning
    Warn,
    /// Refuse
    Reject,
}

/// `vnfs import`
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Capsule file, or - for stdin
    pub input: String,
    /// Image name to import under (default: the capsule's)
    #[arg(long, short = 'n')]
    pub name: Option<String>,
    /// Policy for unsigned capsules [default: `unsigned capsules` in
    /// vnfs.conf, else warn]
    #[arg(long, env = "VNFS_UNSIGNED", value_enum)]
    pub unsigned: Option<Unsigned>,
    /// Accept capsules with a valid signature by a key not in the trust list
    #[arg(long)]
    pub allow_untrusted: bool,
}

/// `vnfs capsule ...`
#[derive(Subcommand, Debug)]
pub enum CapsuleCmd {
    /// Show a capsule's manifest, sizes, base and signature status without
    /// importing it
    Inspect {
        /// Capsule file, or - for stdin
        file: PathBuf,
        /// Also decompress and verify every object id
        #[arg(long)]
        deep: bool,
    },
}

/// `vnfs key ...`
#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Create an ed25519 signing key: PREFIX.key (secret, mode 0600) and
    /// PREFIX.pub (public key line)
    Generate {
        /// Path prefix of the two files
        prefix: PathBuf,
        /// Comment stored with the key (who it belongs to)
        #[arg(long, short = 'c', default_value = "")]
        comment: String,
    },
    /// Add a public key file to this site's trust list (trusted-keys in the
    /// configuration directory)
    Trust {
        /// Public key file (PREFIX.pub)
        file: PathBuf,
    },
    /// List the keys this site trusts: key and comment, one per line
    List,
    /// Remove keys from this site's trust list: capsules they sign are
    /// then refused as untrusted (comments and other keys are kept)
    Untrust {
        /// A public key file (a path ending in .pub or holding a /), or a
        /// key as `vnfs key list` and `vnfs capsule inspect` show it
        /// (ed25519:HEX), or the first 8 or more hex digits of one
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
}

fn trust_path(ctx: &Context) -> PathBuf {
    ctx.confdir.join("trusted-keys")
}

fn resolve(store: &vnfs_store::Store, spec: &str) -> anyhow::Result<(Option<String>, ObjectId)> {
    let (name, id) = store.resolve(spec)?;
    Ok((name, ObjectId::from_bytes(id.0)))
}

/// The image whose history holds `commit` (for an export named by a bare
/// commit id, which should travel under its image's name, not the id), when
/// exactly one does.
fn image_holding(store: &vnfs_store::Store, commit: ObjectId) -> anyhow::Result<Option<String>> {
    let commit = vnfs_store::ObjectId(*commit.as_bytes());
    let mut holders = Vec::new();
    for (name, head) in store.list_refs()? {
        if store.history(head)?.iter().any(|(id, _)| *id == commit) {
            holders.push(name);
        }
    }
    Ok(match <[String; 1]>::try_from(holders) {
        Ok([n]) => Some(n),
        Err(_) => None,
    })
}

/// Writes a capsule of an image.
pub fn export(a: ExportArgs, ctx: &Context) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let (name, head) = resolve(&store, &a.image)?;
    let name = match name {
        Some(n) => n,
        None => image_holding(&store, head)?.unwrap_or_else(|| a.image.clone()),
    };
    let base = a
        .base
        .as_deref()
        .map(|b| resolve(&store, b).map(|(_, id)| id))
        .transpose()
        .context("resolving --base")?;
    if base == Some(head) {
        anyhow::bail!(
            "--base {} is the version being exported ({}): a delta over it would hold nothing; \
             name an older version, or leave out --base for a full capsule",
            a.base.as_deref().unwrap_or_default(),
            &head.to_hex()[..12]
        );
    }
    // Loaded first: a wrong file (a .pub, a directory) is named as such
    // before any warning about its mode.
    let key = a.sign.as_deref().map(SecretKey::load).transpose()?;
    if let Some(path) = a.sign.as_deref() {
        warn_if_readable_by_others(path);
    }
    let layout = exchange::ExportOptions {
        solid_below: a.solid_below,
        level: a.level,
        verify: !a.no_verify,
        ..exchange::ExportOptions::default()
    };
    let mut written = None;
    let report = if a.output == "-" {
        let out = std::io::stdout().lock();
        let (r, mut out) =
            exchange::export_with(&store, &name, head, base, key.as_ref(), out, &layout)
                .map_err(|e| write_error(e, "standard output"))?;
        out.flush().context("writing standard output")?;
        r
    } else {
        let (path, in_dir) = output_path(&a, &store, head, &name)?;
        let shown = path.display().to_string();
        if Kind::of(&path).map_err(output_error)?.is_temporary() {
            // Only then: a direct write has nothing to clean up, and
            // Ctrl-C should end it at once even when it is blocked.
            interrupt::catch();
        }
        let out = Output::create(
            &path,
            OutputOptions {
                // A name the user gave is theirs to replace; the
                // conventional name in a directory may be an earlier
                // capsule (a full one, about to be lost to a delta).
                replace: !in_dir || a.force,
                cancel: Some(interrupt::flag()),
            },
        )
        .map_err(output_error)?;
        let (r, out) = exchange::export_with(&store, &name, head, base, key.as_ref(), out, &layout)
            .map_err(|e| write_error(e, &shown))?;
        out.commit().map_err(output_error)?;
        if !ctx.quiet && !ctx.json {
            eprintln!("wrote {shown}");
        }
        written = Some(path);
        r
    };
    // Warned even with -q: the store is damaged, though not what was copied.
    for d in &report.damaged_packs {
        eprintln!(
            "warning: pack {} is damaged ({}), though every object this export copied from it checked out; run `vnfs store fsck`",
            d.path.display(),
            d.why
        );
    }
    if ctx.json {
        // The file written, which is the conventional name only when the
        // output was a directory; `path` is null for standard output, and
        // the report then goes to stderr, after the capsule's bytes.
        let mut v = serde_json::to_value(&report)?;
        if let (Some(p), Some(obj)) = (&written, v.as_object_mut()) {
            if let Some(n) = p.file_name() {
                obj.insert("file_name".into(), n.to_string_lossy().into_owned().into());
            }
            obj.insert("path".into(), p.display().to_string().into());
        } else if let Some(obj) = v.as_object_mut() {
            obj.insert("path".into(), serde_json::Value::Null);
        }
        return ctx.print_report(&v, written.is_none());
    }
    if !ctx.quiet {
        eprintln!(
            "{}{}: {} objects ({} small ones in {} solid blocks), {} stored ({} raw), capsule {}{}",
            name,
            base.map(|b| format!(" (delta over {})", &b.to_hex()[..12]))
                .unwrap_or_default(),
            report.objects,
            report.objects + report.blocks - report.records,
            report.blocks,
            bytes(report.stored_bytes),
            bytes(report.raw_bytes),
            bytes(report.capsule_bytes),
            report
                .signed_by
                .as_deref()
                .map(|k| format!(", signed by {k}"))
                .unwrap_or_default(),
        );
    }
    Ok(())
}

/// The file to write, and whether it is in a directory the user named: the
/// output as given, or in a directory the conventional name of the image's
/// capsule, known before the export starts (it is the name the export's
/// manifest will carry), so that an existing capsule is refused before
/// anything is written.
fn output_path(
    a: &ExportArgs,
    store: &vnfs_store::Store,
    head: ObjectId,
    name: &str,
) -> anyhow::Result<(PathBuf, bool)> {
    let target = PathBuf::from(&a.output);
    if !(a.output.ends_with('/') || target.is_dir()) {
        return Ok((target, false));
    }
    let commit = store.read_commit(&vnfs_store::ObjectId(*head.as_bytes()))?;
    let naming = ImageMetadata::from_commit(&commit.metadata, name)?.naming;
    Ok((target.join(naming.file_name()), true))
}

/// An output that cannot be opened or finished, told the way the user can
/// act on it.
fn output_error(e: OutputError) -> anyhow::Error {
    match e {
        OutputError::Exists { path } => anyhow::anyhow!(
            "{} already exists (an earlier export?): give --force to replace it, \
             or name the output file",
            path.display()
        ),
        e => e.into(),
    }
}

/// A failed export, with a write error naming the output (the capsule
/// writer knows only the offset). After Ctrl-C the cause is the interrupt.
fn write_error(e: exchange::ExchangeError, output: &str) -> anyhow::Error {
    if interrupt::requested() {
        return anyhow::anyhow!("interrupted; {output} was not written");
    }
    match e {
        exchange::ExchangeError::Capsule(CapsuleError::Io { offset, source }) => {
            anyhow::Error::new(source).context(format!("writing {output} (at byte {offset})"))
        }
        e => e.into(),
    }
}

/// The unsigned-capsule policy: the flag (or its environment variable),
/// else vnfs.conf (read only then, so a flag works without one), else warn.
fn unsigned_policy(flag: Option<Unsigned>, ctx: &Context) -> anyhow::Result<UnsignedPolicy> {
    use vnfs_provisioner::config::{self, UnsignedCapsules};
    Ok(match flag {
        Some(Unsigned::Accept) => UnsignedPolicy::Accept,
        Some(Unsigned::Warn) => UnsignedPolicy::Warn,
        Some(Unsigned::Reject) => UnsignedPolicy::Reject,
        None => match config::load_vnfs_conf(&ctx.confdir)? {
            None => UnsignedPolicy::Warn,
            Some((conf, warnings)) => {
                // A misspelt key (`unsigned capsule = reject`) is only a
                // warning to the parser; dropped, the site would silently
                // get the default policy.
                super::warn_all(ctx, &warnings);
                match conf.unsigned_capsules {
                    UnsignedCapsules::Accept => UnsignedPolicy::Accept,
                    UnsignedCapsules::Warn => UnsignedPolicy::Warn,
                    UnsignedCapsules::Reject => UnsignedPolicy::Reject,
                }
            }
        },
    })
}

/// A reader that fails once Ctrl-C, SIGTERM or SIGHUP has arrived.
struct Interruptible<R>(R);

impl<R: std::io::Read> std::io::Read for Interruptible<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if interrupt::requested() {
            // Not ErrorKind::Interrupted: readers retry that one.
            return Err(std::io::Error::other("interrupted"));
        }
        self.0.read(buf)
    }
}

/// Standard input read on a thread of its own and handed over in pieces,
/// so that a reader waiting for a stalled pipe still notices Ctrl-C (which
/// fails the next read, as [`Interruptible`] does). The thread may stay
/// blocked in its read after an interrupt; it ends with the process.
struct StdinPoller {
    pieces: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    current: Vec<u8>,
    at: usize,
    done: bool,
    failed: Option<String>,
}

impl StdinPoller {
    /// Pieces read ahead of the import.
    const AHEAD: usize = 8;
    /// Largest read: four times what one read of a pipe returns at most.
    const PIECE: usize = 256 << 10;
    /// How long a read waits before it looks at the interrupt flag again.
    const POLL: std::time::Duration = std::time::Duration::from_millis(50);

    fn start() -> StdinPoller {
        let (tx, rx) = std::sync::mpsc::sync_channel(Self::AHEAD);
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0; Self::PIECE];
            loop {
                let n = match std::io::Read::read(&mut stdin, &mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                // An empty piece is the end of input; a gone receiver, the
                // end of the import.
                if tx.send(Ok(buf[..n].to_vec())).is_err() || n == 0 {
                    return;
                }
            }
        });
        StdinPoller {
            pieces: rx,
            current: Vec::new(),
            at: 0,
            done: false,
            failed: None,
        }
    }
}

impl std::io::Read for StdinPoller {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::sync::mpsc::RecvTimeoutError;
        while self.at == self.current.len() && !self.done {
            if interrupt::requested() {
                return Err(std::io::Error::other("interrupted"));
            }
            match self.pieces.recv_timeout(Self::POLL) {
                Ok(Ok(piece)) => {
                    self.current = piece;
                    self.at = 0;
                    self.done = self.current.is_empty();
                }
                Ok(Err(e)) => {
                    // Said again to a caller that reads on, not an end.
                    self.failed = Some(e.to_string());
                    self.done = true;
                    return Err(e);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.done = true,
            }
        }
        if interrupt::requested() {
            return Err(std::io::Error::other("interrupted"));
        }
        if let Some(why) = &self.failed {
            return Err(std::io::Error::other(why.clone()));
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Imports a capsule.
pub fn import(a: ImportArgs, ctx: &Context) -> anyhow::Result<()> {
    // Into a home without a store, a file that is no capsule at all (the
    // wrong file named) is refused before the store is created for it.
    if a.input != "-" && !ctx.store_dir().exists() {
        let f = std::fs::File::open(&a.input).with_context(|| format!("opening {}", a.input))?;
        vnfs_capsule::CapsuleReader::open(std::io::BufReader::new(f), ReadOptions::default())
            .with_context(|| format!("importing {}", a.input))?;
    }
    let store = ctx.store_or_create()?;
    let opts = ReadOptions {
        limits: Limits::default(),
        trust: TrustList::load(&trust_path(ctx))?,
        policy: SignaturePolicy {
            unsigned: unsigned_policy(a.unsigned, ctx)?,
            allow_untrusted: a.allow_untrusted,
        },
    };
    let report = if a.input == "-" {
        // A read blocked on a pipe would not see a caught signal, so stdin
        // is read on a thread of its own and the import waits for it in
        // short steps: Ctrl-C stops the import even when the sender has
        // stalled, and its unfinished pack is removed.
        interrupt::catch();
        exchange::import(&store, StdinPoller::start(), a.name.as_deref(), opts)
            .context("importing standard input")?
    } else {
        let f = std::fs::File::open(&a.input).with_context(|| format!("opening {}", a.input))?;
        // Ctrl-C ends the input (the reader sees a failed read), so the
        // import stops before any ref moves and its unfinished pack is
        // removed with the transaction.
        interrupt::catch();
        exchange::import(&store, Interruptible(f), a.name.as_deref(), opts)
            .with_context(|| format!("importing {}", a.input))?
    };
    if let Some(w) = &report.warning {
        eprintln!("warning: {w}");
    }
    if ctx.json {
        return ctx.print_json(&report);
    }
    // The commit the name points at, which a script takes as the image's.
    println!("{}", report.newer.as_deref().unwrap_or(&report.head));
    if !ctx.quiet {
        eprintln!(
            "{}: {} objects added, {} already present; {}",
            report.name,
            report.added,
            report.present,
            if report.moved {
                "image updated".to_string()
            } else if let Some(n) = &report.newer {
                format!(
                    "image unchanged: it is at a later version ({}) whose history holds this one; use {}@{} to refer to it",
                    &n[..12],
                    report.name,
                    &report.head[..12]
                )
            } else {
                "image unchanged".to_string()
            }
        );
    }
    Ok(())
}

/// `vnfs capsule ...`
pub fn capsule(c: CapsuleCmd, ctx: &Context) -> anyhow::Result<()> {
    match c {
        CapsuleCmd::Inspect { file, deep } => {
            let stdin = file.as_os_str() == "-";
            let shown = match stdin {
                true => "standard input".to_string(),
                false => file.display().to_string(),
            };
            let trust = TrustList::load(&trust_path(ctx))?;
            let i = if stdin {
                vnfs_capsule::inspect_stream(
                    std::io::stdin().lock(),
                    Limits::default(),
                    &trust,
                    deep,
                )
            } else {
                let f = std::fs::File::open(&file)
                    .with_context(|| format!("opening {}", file.display()))?;
                vnfs_capsule::inspect(std::io::BufReader::new(f), Limits::default(), &trust, deep)
            }
            .with_context(|| format!("inspecting {shown}"))?;
            let signer = match &i.signature {
                SignatureStatus::Unsigned => None,
                SignatureStatus::Trusted { key }
                | SignatureStatus::Untrusted { key }
                | SignatureStatus::Broken { key, .. } => Some(key.to_string()),
            };
            if ctx.json {
                return ctx.print_json(&serde_json::json!({
                    "file": if stdin { None } else { Some(&file) },
                    "format": format!("{}.{}", i.header.major, i.header.minor),
                    "bytes": i.file_len,
                    "objects": i.stats,
                    "signature": i.signature.name(),
                    "signer": signer,
                    "verified_objects": i.deep,
                    "file_hash": hex_of(&i.trailer.file_hash),
                    "manifest": i.manifest,
                }));
            }
            let m = &i.manifest;
            println!("file:       {shown} ({})", bytes(i.file_len));
            println!("format:     {}.{}", i.header.major, i.header.minor);
            println!("image:      {} ({})", m.name, m.naming.label());
            println!("head:       {}", m.head);
            match m.base {
                Some(b) => println!("base:       {b} (delta)"),
                None => println!("base:       none (full capsule)"),
            }
            for (what, k) in [
                ("chunks", i.stats.chunks),
                ("trees", i.stats.trees),
                ("commits", i.stats.commits),
            ] {
                println!("{what:<11} {:>8}  {} raw", k.count, bytes(k.raw));
            }
            let single = i.stats.total().stored - i.stats.blocks.stored;
            println!(
                "records:    {:>8}  {} stored: {} single objects, {} blocks holding {} small objects",
                i.trailer.record_count,
                bytes(i.stats.total().stored),
                bytes(single),
                i.stats.blocks.count,
                i.stats.blocks.members
            );
            println!("signature:  {}", i.signature);
            println!(
                "verified:   checksum{}",
                if i.deep {
                    " and every object id"
                } else {
                    " (--deep also checks every object id)"
                }
            );
            if !m.config.kernel_args.is_empty() {
                println!("kernel args: {}", m.config.kernel_args);
            }
            println!("packages:   {}", m.packages.len());
            for c in m.history.iter().take(10) {
                println!(
                    "  {} {} {}",
                    &c.id.to_hex()[..12],
                    super::image::date(c.timestamp),
                    c.message.lines().next().unwrap_or("")
                );
            }
            Ok(())
        }
    }
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `vnfs key ...`
pub fn key(c: KeyCmd, ctx: &Context) -> anyhow::Result<()> {
    match c {
        KeyCmd::Generate { prefix, comment } => {
            if prefix.as_os_str().to_string_lossy().ends_with('/') || prefix.is_dir() {
                bail!(
                    "{} is a directory: give a path prefix for the two files, e.g. {}",
                    prefix.display(),
                    prefix.join("site").display()
                );
            }
            let k = SecretKey::generate(comment)?;
            let (sk, pk) = (prefix.with_extension("key"), prefix.with_extension("pub"));
            k.save(&sk, &pk)?;
            if !ctx.quiet {
                eprintln!(
                    "secret key: {} (keep private)\npublic key: {}",
                    sk.display(),
                    pk.display()
                );
            }
            println!("{}", k.public().to_line());
            Ok(())
        }
        KeyCmd::Trust { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let list = TrustList::parse(&text, &file.display().to_string())?;
            if list.is_empty() {
                bail!("{} holds no public key line", file.display());
            }
            std::fs::create_dir_all(&ctx.confdir)?;
            let path = trust_path(ctx);
            let _lock = lock_trust_list(&path)?;
            let current = TrustList::load(&path)?;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            for line in text.lines().filter(|l| {
                l.trim_start()
                    .starts_with(vnfs_capsule::keys::PUBLIC_KEYWORD)
            }) {
                let k = vnfs_capsule::PublicKey::parse_line(line).map_err(anyhow::Error::msg)?;
                if current.get(k.as_bytes()).is_none() {
                    writeln!(f, "{}", k.to_line())?;
                    if !ctx.quiet {
                        eprintln!("trusting {k}");
                    }
                }
            }
            f.sync_all()?;
            Ok(())
        }
        KeyCmd::List => {
            let path = trust_path(ctx);
            let list = TrustList::load(&path)?;
            if ctx.json {
                let keys: Vec<_> = list
                    .keys()
                    .map(|k| serde_json::json!({"key": k.to_string(), "comment": k.comment}))
                    .collect();
                return ctx.print_json(&serde_json::json!({"file": path, "keys": keys}));
            }
            if list.is_empty() && !ctx.quiet {
                eprintln!(
                    "no trusted keys in {} (add one with `vnfs key trust FILE.pub`)",
                    path.display()
                );
            }
            for k in list.keys() {
                println!("{k}  {}", k.comment);
            }
            Ok(())
        }
        KeyCmd::Untrust { keys } => untrust(&keys, ctx),
    }
}

/// `vnfs key untrust`: every KEY must name exactly one trusted key (or, for
/// a key file, each key in it must be trusted); then the trust list is
/// rewritten without them, atomically, so a failure keeps it whole.
fn untrust(specs: &[String], ctx: &Context) -> anyhow::Result<()> {
    let path = trust_path(ctx);
    let _lock = lock_trust_list(&path)?;
    let list = TrustList::load(&path)?;
    let mut picked: Vec<[u8; 32]> = Vec::new();
    for spec in specs {
        for key in keys_named(spec, &list)? {
            if !picked.contains(&key) {
                picked.push(key);
            }
        }
    }
    // A trust list kept elsewhere and linked here is rewritten where it is.
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let (kept, removed) = TrustList::without(&text, &path.display().to_string(), |k| {
        picked.contains(k.as_bytes())
    })?;
    replace_file(&path, kept.as_bytes())?;
    if !ctx.quiet {
        for k in removed {
            eprintln!("no longer trusting {k} {}", k.comment);
        }
    }
    Ok(())
}

/// Holds `<trust list>.lock` locked (`flock`, exclusive) until dropped:
/// `key trust` appends to the list and `key untrust` replaces it with a
/// new file, so without the lock a key trusted meanwhile would be appended
/// to the replaced file and lost. A file of its own, beside the file a
/// symlinked list points at, opened for writing: NFS emulates `flock`
/// with POSIX locks, which need that. `None` when the list's directory
/// does not exist (there is no list to change yet).
fn lock_trust_list(path: &Path) -> anyhow::Result<Option<std::fs::File>> {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut name = real.clone().into_os_string();
    name.push(".lock");
    let lock = PathBuf::from(name);
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anyhow::Error::new(e).context(format!("opening {}", lock.display()))),
    };
    f.lock()
        .with_context(|| format!("locking {}", lock.display()))?;
    Ok(Some(f))
}

/// The trusted keys `spec` names: those of a public key file, or the one
/// whose hex starts with `spec` (after an optional `ed25519:`).
fn keys_named(spec: &str, list: &TrustList) -> anyhow::Result<Vec<[u8; 32]>> {
    // A path (`.pub`, or with a slash) is a key file; anything else a key.
    let file = std::path::Path::new(spec);
    if spec.ends_with(".pub") || spec.contains('/') {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let keys = TrustList::parse(&text, &file.display().to_string())?;
        if keys.is_empty() {
            bail!("{} holds no public key line", file.display());
        }
        let mut out = Vec::new();
        for k in keys.keys() {
            if list.get(k.as_bytes()).is_none() {
                bail!("{k} (from {}) is not trusted here", file.display());
            }
            out.push(*k.as_bytes());
        }
        return Ok(out);
    }
    let hex = spec
        .strip_prefix("ed25519:")
        .unwrap_or(spec)
        .to_ascii_lowercase();
    if hex.len() < 8 || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!(
            "'{spec}' is neither a public key file nor a key: give the key as `vnfs key list` shows it (ed25519:HEX) or 8 or more of its first hex digits"
        );
    }
    let matching: Vec<_> = list
        .keys()
        .filter(|k| hex_of(k.as_bytes()).starts_with(&hex))
        .collect();
    match matching[..] {
        [k] => Ok(vec![*k.as_bytes()]),
        [] => bail!("no trusted key starts with {hex} (`vnfs key list` shows them)"),
        _ => bail!(
            "{hex} is the start of {} trusted keys: {}; give more digits",
            matching.len(),
            matching
                .iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Replaces `path` with `data`: a new file beside it (same mode), synced,
/// then renamed over it, so the old contents stay whole until the new ones
/// are complete.
fn replace_file(path: &std::path::Path, data: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o644);
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        match path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) => std::fs::File::open(dir)?.sync_all(),
            None => Ok(()),
        }
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("rewriting {}", path.display()));
    }
    Ok(())
}
