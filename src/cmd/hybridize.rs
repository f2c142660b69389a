//! `vnfs hybridize NAME`: checks an image's hybridize patterns, brings its
//! export tree up to date and reports what nodes keep in memory and what
//! they reach over the export.

use anyhow::Context as _;
use clap::Args;
use vnfs_node::imageconf::ImageConfig;
use vnfs_provisioner::export::{self, Export};

use crate::context::Context;
use crate::progress::bytes;

/// Arguments of `vnfs hybridize`.
#[derive(Args, Debug)]
pub struct HybridizeArgs {
    /// Image (NAME, NAME@COMMIT or a commit id)
    pub image: String,
    /// Report only; do not build the export
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(serde::Serialize)]
struct Report {
    image: String,
    commit: String,
    patterns: Vec<String>,
    hybridized: Vec<String>,
    local_files: u64,
    local_bytes: u64,
    remote_files: u64,
    remote_bytes: u64,
    export_dir: String,
    export: Option<export::ExportStats>,
    export_usage: export::ExportUsage,
}

/// Runs the command.
pub fn run(ctx: &Context, a: HybridizeArgs) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let (_, commit) = store.resolve(&a.image)?;
    let c = store.read_commit(&commit)?;
    let config =
        ImageConfig::from_metadata(&c.metadata).with_context(|| format!("image {}", a.image))?;
    let home = std::fs::canonicalize(&ctx.home).unwrap_or_else(|_| ctx.home.clone());
    let globs = config
        .hybridize_globs(&home.to_string_lossy())
        .with_context(|| format!("image {}: refusing its hybridize list", a.image))?;
    let ex = Export::new(&ctx.home);
    let view = export::plan(&store, &commit, &globs, &ex.root().to_string_lossy())?;
    let built = if a.dry_run || globs.is_empty() {
        None
    } else {
        Some(ex.ensure(&store, &commit, &globs)?)
    };
    let r = Report {
        image: a.image.clone(),
        commit: commit.to_hex(),
        patterns: config.hybridize.clone(),
        hybridized: view.hybridized.clone(),
        local_files: view.local_files,
        local_bytes: view.local_bytes,
        remote_files: view.remote_files,
        remote_bytes: view.remote_bytes,
        export_dir: ex.version_dir(&commit).display().to_string(),
        export: built,
        export_usage: ex.usage()?,
    };
    if ctx.json {
        return ctx.print_json(&r);
    }
    let total = (r.local_bytes + r.remote_bytes).max(1);
    println!("image:          {} ({})", r.image, commit.short());
    if r.patterns.is_empty() {
        println!("hybridize:      (none: the whole image is kept in node memory)");
    } else {
        println!("hybridize:      {}", r.patterns.join(" "));
    }
    println!(
        "node memory:    {} in {} files ({:.1}%)",
        bytes(r.local_bytes),
        r.local_files,
        100.0 * r.local_bytes as f64 / total as f64
    );
    println!(
        "served remotely: {} in {} files ({:.1}%), {} links on each node",
        bytes(r.remote_bytes),
        r.remote_files,
        100.0 * r.remote_bytes as f64 / total as f64,
        r.hybridized.len()
    );
    if let Some(s) = &r.export {
        println!(
            "export:         {} ({} files; {} shared with other versions, {} written)",
            r.export_dir,
            s.files,
            s.shared,
            bytes(s.written_bytes)
        );
    }
    println!(
        "export total:   {} distinct files, {}, {} links",
        r.export_usage.contents,
        bytes(r.export_usage.bytes),
        r.export_usage.links
    );
    Ok(())
}
