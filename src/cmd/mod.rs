//! One module per command group. Each exposes clap argument types and a
//! `run` function; none holds logic a library user would need.

pub mod build;
pub mod capsule;
pub mod configure;
pub mod generate;
pub mod group;
pub mod hybridize;
pub mod image;
pub mod init;
pub mod livesync;
pub mod module;
pub mod mount;
pub mod node;
pub mod nodescript;
pub mod render;
pub mod serve;
pub mod store;

use crate::context::Context;
use vnfs_provisioner::{Images, Site};

/// Loads the installation's configuration, printing its warnings.
pub fn site(ctx: &Context) -> anyhow::Result<Site> {
    let site = Site::load(&ctx.home, &ctx.confdir)?;
    warn_all(ctx, &site.warnings);
    Ok(site)
}

/// Prints warnings on stderr unless --quiet.
pub fn warn_all(ctx: &Context, warnings: &[String]) {
    if ctx.quiet {
        return;
    }
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

/// The images the store holds, for checking `vnfs` values. No store yet
/// means no images (not an error: nodes can be managed before any build).
pub fn images(ctx: &Context) -> anyhow::Result<Images> {
    if !ctx.store_dir().join("VERSION").exists() {
        return Ok(Images::default());
    }
    let store = ctx.store()?;
    let refs = store
        .list_refs()?
        .into_iter()
        .map(|(name, id)| (name, id.to_hex()));
    Ok(Images::from_refs(refs))
}

/// Prints rows as left-aligned columns (two spaces apart).
pub fn print_table(
    out: &mut impl std::io::Write,
    header: &[&str],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |out: &mut dyn std::io::Write, cells: Vec<&str>| -> std::io::Result<()> {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        writeln!(out, "{}", s.trim_end())
    };
    line(out, header.to_vec())?;
    for r in rows {
        line(out, r.iter().map(String::as_str).collect())?;
    }
    Ok(())
}

/// Prints a value as pretty JSON.
pub fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}
