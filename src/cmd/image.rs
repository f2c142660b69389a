//! Image commands over the store: commit, checkout, list, log, show,
//! delete, rollback, diff.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::Args;
use vnfs_store::diff::Change;

use crate::context::Context;
use crate::interrupt;
use crate::progress::bytes;

/// `vnfs commit`
#[derive(Args, Debug)]
pub struct CommitArgs {
    /// Root directory of the image to ingest
    pub dir: PathBuf,
    /// Image name to record the new version under
    #[arg(long, short = 'n')]
    pub name: String,
    /// Commit message
    #[arg(long, short = 'm', default_value = "")]
    pub message: String,
    /// Commit time in seconds since the epoch (default: now); give it to
    /// get the same commit id for the same content
    #[arg(long, value_name = "UNIX")]
    pub timestamp: Option<i64>,
}

/// Ingests a directory as a new version of an image.
pub fn commit(a: CommitArgs, ctx: &Context) -> anyhow::Result<()> {
    if !a.dir.is_dir() {
        bail!("{} is not a directory", a.dir.display());
    }
    let store = ctx.store_or_create()?;
    // Ctrl-C stops the ingest at the next file or segment; the unfinished
    // pack is removed as the transaction is dropped.
    interrupt::catch();
    let bar = ctx.progress();
    let opts = vnfs_store::CommitOptions {
        name: a.name.clone(),
        message: a.message,
        timestamp: a.timestamp,
        ..Default::default()
    };
    let out = store
        .commit_dir(&a.dir, &opts, &bar)
        .with_context(|| format!("committing {} as {}", a.dir.display(), a.name))?;
    if ctx.json {
        return ctx.print_json(&out);
    }
    println!("{}", out.id);
    if !ctx.quiet {
        let s = &out.stats;
        eprintln!(
            "{}: {} files, {} dirs, {} other; {} ({} unchanged files skipped); wrote {} objects, {} stored",
            a.name,
            s.files,
            s.dirs,
            s.others,
            bytes(s.bytes),
            s.unchanged_files,
            s.written.objects,
            bytes(s.written.stored_bytes)
        );
    }
    Ok(())
}

/// `vnfs checkout`
#[derive(Args, Debug)]
pub struct CheckoutArgs {
    /// NAME, NAME@COMMIT or a commit id
    pub image: String,
    /// Directory to create (must be absent or empty)
    pub dir: PathBuf,
}

/// Materialises a version of an image into a directory. A checkout that
/// fails or is interrupted (Ctrl-C, SIGTERM) removes what it wrote
/// (`Store::checkout`).
pub fn checkout(a: CheckoutArgs, ctx: &Context) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let (_, id) = store.resolve(&a.image)?;
    let bar = ctx.progress();
    interrupt::catch();
    let s = store
        .checkout(&id, &a.dir, &bar)
        .with_context(|| format!("checking out {} into {}", a.image, a.dir.display()))?;
    if ctx.json {
        return ctx.print_json(&s);
    }
    if s.owners_skipped > 0 || s.devices_skipped > 0 || s.xattrs_skipped > 0 {
        eprintln!(
            "warning: not root: {} owners, {} device nodes and {} privileged xattrs could not be restored",
            s.owners_skipped, s.devices_skipped, s.xattrs_skipped
        );
    }
    if !ctx.quiet {
        eprintln!(
            "{} files, {} dirs, {} other, {} written to {}",
            s.files,
            s.dirs,
            s.others,
            bytes(s.bytes),
            a.dir.display()
        );
    }
    Ok(())
}

/// A commit time as `YYYY-MM-DD HH:MM:SS` (UTC).
pub(crate) fn date(ts: i64) -> String {
    // Civil date from days since the epoch (Howard Hinnant's algorithm):
    // avoids a date crate for one line of output.
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Lists images with their newest commit.
pub fn list(ctx: &Context) -> anyhow::Result<()> {
    let store = match ctx.store() {
        Ok(s) => s,
        Err(_) if !ctx.store_dir().exists() => {
            // No images, but say where we looked: a mistyped --home or
            // VNFS_HOME would otherwise look like an empty store.
            if ctx.json {
                println!("[]");
            } else if !ctx.quiet {
                eprintln!(
                    "no store at {} yet (vnfs build or vnfs commit creates it)",
                    ctx.store_dir().display()
                );
            }
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let mut rows = Vec::new();
    for (name, id) in store.list_refs()? {
        let c = store.read_commit(&id)?;
        rows.push(serde_json::json!({
            "name": name, "commit": id.to_hex(), "timestamp": c.timestamp, "message": c.message,
        }));
        if !ctx.json {
            println!(
                "{:<40} {}  {}  {}",
                name,
                id.short(),
                date(c.timestamp),
                c.message
            );
        }
    }
    if ctx.json {
        ctx.print_json(&rows)?;
    }
    Ok(())
}

/// `vnfs log`
#[derive(Args, Debug)]
pub struct LogArgs {
    /// Image name (or NAME@COMMIT to start from an older version)
    pub image: String,
}

/// Prints an image's history, newest first.
pub fn log(a: LogArgs, ctx: &Context) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let (_, id) = store.resolve(&a.image)?;
    let mut rows = Vec::new();
    for (id, c) in store.history(id)? {
        if ctx.json {
            rows.push(serde_json::json!({
                "commit": id.to_hex(), "parents": c.parents.iter().map(|p| p.to_hex()).collect::<Vec<_>>(),
                "timestamp": c.timestamp, "message": c.message, "metadata": c.metadata,
            }));
        } else {
            println!(
                "commit {id}\nDate:   {}\n\n    {}\n",
                date(c.timestamp),
                c.message
            );
        }
    }
    if ctx.json {
        ctx.print_json(&rows)?;
    }
    Ok(())
}

/// `vnfs show`
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// NAME, NAME@COMMIT or a commit id
    pub image: String,
    /// List the installed packages (name, version, architecture)
    #[arg(long)]
    pub packages: bool,
}

/// Prints figures and metadata of one version.
pub fn show(a: ShowArgs, ctx: &Context) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let (name, id) = store.resolve(&a.image)?;
    let c = store.read_commit(&id)?;
    let s = store.summarize(&id)?;
    if ctx.json {
        return ctx.print_json(&serde_json::json!({
            "name": name, "commit": id.to_hex(), "parents": c.parents.iter().map(|p| p.to_hex()).collect::<Vec<_>>(),
            "timestamp": c.timestamp, "message": c.message, "metadata": c.metadata, "summary": s,
        }));
    }
    if let Some(n) = &name {
        println!("image:         {n}");
    }
    println!("commit:        {id}");
    for p in &c.parents {
        println!("parent:        {p}");
    }
    println!("date:          {}", date(c.timestamp));
    println!("message:       {}", c.message);
    // Counted as commit and checkout count them: files, directories with
    // the root, and everything else.
    println!(
        "entries:       {} files, {} dirs, {} other",
        s.files,
        s.dirs + 1,
        s.others
    );
    println!("logical size:  {}", bytes(s.logical_bytes));
    println!("chunks:        {}", s.chunks);
    println!("stored:        {}", bytes(s.stored_bytes));
    println!(
        "unique:        {} (not shared with any other image or version)",
        bytes(s.unique_bytes)
    );
    let packages = vnfs_capsule::metadata::ImageMetadata::from_commit(
        &c.metadata,
        name.as_deref().unwrap_or(""),
    )
    .map(|m| m.packages)
    .unwrap_or_default();
    if !packages.is_empty() {
        println!(
            "packages:      {}{}",
            packages.len(),
            if a.packages {
                ""
            } else {
                " (--packages lists them)"
            }
        );
    }
    if a.packages {
        for p in &packages {
            println!("  {:<36} {:<32} {}", p.name, p.version, p.arch);
        }
    }
    if let Some(built) = c.metadata.get(vnfs_builder::edited::EDITED_SINCE) {
        println!(
            "edited:        through `vnfs mount` since {}; the recipe and lock below describe that version",
            built.get(..12).unwrap_or(built)
        );
    }
    for (k, v) in &c.metadata {
        if k == vnfs_capsule::metadata::PACKAGES {
            continue;
        }
        if v.contains('\n') || v.len() > 100 {
            println!("{k}: ({} bytes; see --json)", v.len());
        } else {
            println!("{k}: {v}");
        }
    }
    Ok(())
}

/// `vnfs delete`
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Image names to delete (space is given back by `vnfs store gc`)
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Delete even an image that is mounted (its edits would come back as
    /// a new version at `vnfs umount`) or that nodes are set to (they then
    /// wait at init until they are given another)
    #[arg(long)]
    pub force: bool,
}

/// Removes image names.
pub fn delete(a: DeleteArgs, ctx: &Context) -> anyhow::Result<()> {
    let store = ctx.store()?;
    // Checked for every name before any is deleted.
    if !a.force {
        for (_, st) in vnfs_fusefs::state::list(&ctx.home)? {
            if a.names.contains(&st.name) {
                anyhow::bail!(
                    "{} is mounted at {}: commit or drop its edits first (`vnfs umount {}`, \
                     or `vnfs umount --discard {}`), or give --force",
                    st.name,
                    st.dir.display(),
                    st.name,
                    st.name
                );
            }
        }
    }
    super::warn_all(
        ctx,
        &super::site(ctx)?.check_image_delete(&a.names, a.force)?,
    );
    for n in &a.names {
        let id = store.delete_ref(n)?;
        if !ctx.quiet {
            eprintln!(
                "deleted {n} (was {}); run `vnfs store gc` to free its space",
                id.short()
            );
        }
    }
    Ok(())
}

/// `vnfs rollback`
#[derive(Args, Debug)]
pub struct RollbackArgs {
    /// Image name
    pub name: String,
    /// Version to go back to (commit id or prefix; default: the previous one)
    pub commit: Option<String>,
}

/// Moves an image back to an earlier version, recorded as a new commit.
pub fn rollback(a: RollbackArgs, ctx: &Context) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let target = match &a.commit {
        Some(c) => Some(store.resolve(&format!("{}@{c}", a.name))?.1),
        None => None,
    };
    let id = store.rollback(&a.name, target)?;
    println!("{id}");
    Ok(())
}

/// `vnfs diff`
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// Old version: NAME, NAME@COMMIT or a commit id
    pub a: String,
    /// New version
    pub b: String,
    /// Only compare the package lists (both versions must have been built
    /// from packages)
    #[arg(long)]
    pub packages: bool,
}

/// The package list a commit's metadata carries (`vnfs.packages`), or
/// `None` for a commit made from a plain directory.
fn package_list(
    c: &vnfs_store::Commit,
    spec: &str,
) -> anyhow::Result<Option<Vec<vnfs_capsule::manifest::Package>>> {
    if !c.metadata.contains_key(vnfs_capsule::metadata::PACKAGES) {
        return Ok(None);
    }
    let m = vnfs_capsule::metadata::ImageMetadata::from_commit(&c.metadata, "")
        .with_context(|| format!("reading the package list of {spec}"))?;
    Ok(Some(m.packages))
}

/// Prints the package section of `vnfs diff`.
fn print_package_diff(
    out: &mut impl std::io::Write,
    d: &vnfs_builder::pkgdiff::PackageDiff,
) -> std::io::Result<()> {
    writeln!(
        out,
        "packages: {} added, {} removed, {} changed",
        d.added.len(),
        d.removed.len(),
        d.changed.len()
    )?;
    for p in &d.added {
        writeln!(out, "+ {} {} ({})", p.name, p.version, p.arch)?;
    }
    for p in &d.removed {
        writeln!(out, "- {} {} ({})", p.name, p.version, p.arch)?;
    }
    for c in &d.changed {
        let arch = if c.old_arch == c.new_arch {
            c.new_arch.clone()
        } else {
            format!("{} -> {}", c.old_arch, c.new_arch)
        };
        let what = serde_json::to_value(c.direction)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        writeln!(
            out,
            "~ {} {} -> {} ({arch}; {what})",
            c.name, c.old_version, c.new_version
        )?;
    }
    Ok(())
}

/// Prints what changed between two versions: the package lists first
/// (when both were built from packages), then the paths.
pub fn diff(a: DiffArgs, ctx: &Context) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let (_, ia) = store.resolve(&a.a)?;
    let (_, ib) = store.resolve(&a.b)?;
    let pa = package_list(&store.read_commit(&ia)?, &a.a)?;
    let pb = package_list(&store.read_commit(&ib)?, &a.b)?;
    let pkgs = match (&pa, &pb) {
        (Some(x), Some(y)) => Some(vnfs_builder::pkgdiff::diff(x, y)),
        _ => None,
    };
    if a.packages && pkgs.is_none() {
        let which = if pa.is_none() { &a.a } else { &a.b };
        bail!("{which} has no package list (it was not built from packages)");
    }
    let d = if a.packages {
        None
    } else {
        Some(store.diff(&ia, &ib)?)
    };
    if ctx.json {
        let mut v = match &d {
            Some(d) => serde_json::to_value(d)?,
            None => serde_json::json!({}),
        };
        if let Some(obj) = v.as_object_mut() {
            obj.insert("packages".into(), serde_json::to_value(&pkgs)?);
        }
        return ctx.print_json(&v);
    }
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Some(p) = &pkgs {
        print_package_diff(&mut out, p)?;
    }
    let Some(d) = d else {
        return Ok(());
    };
    for e in &d.entries {
        let path = String::from_utf8_lossy(&e.path_bytes);
        let path = if path.starts_with('/') {
            path.into_owned()
        } else {
            format!("/{path}")
        };
        writeln!(out, "{} {:<8} {}", e.change.letter(), e.kind, path)?;
    }
    let count = |c: Change| d.entries.iter().filter(|e| e.change == c).count();
    writeln!(
        out,
        "{} added, {} removed, {} modified, {} metadata-only; {} in {} chunks needed by B that A lacks",
        count(Change::Added),
        count(Change::Removed),
        count(Change::Modified),
        count(Change::Metadata),
        bytes(d.new_bytes),
        d.new_chunks
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::date;

    #[test]
    fn dates_before_and_after_the_unsigned_32_bit_range() {
        assert_eq!(date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(date(-315_619_200), "1960-01-01 00:00:00 UTC");
        assert_eq!(date(-1), "1969-12-31 23:59:59 UTC");
        assert_eq!(date(1 << 33), "2242-03-16 12:56:32 UTC");
        assert_eq!(date(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }
}
