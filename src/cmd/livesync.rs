//! `vnfs livesync NAME [NODES]`: moves running nodes of an image to its
//! newest commit without a reboot. Requests go into the node database; the
//! nodes pick them up at their next check-in, apply the Merkle diff and
//! report back, and this command prints each node's result.

use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use vnfs_node::imageconf::ImageConfig;
use vnfs_provisioner::export::Export;
use vnfs_provisioner::livesync::{self, Standing};
use vnfs_provisioner::{Mac, Selector};

use super::{print_table, site};
use crate::context::{Context, ExitStatus};
use crate::progress::bytes;

/// Arguments of `vnfs livesync`.
#[derive(Args, Debug)]
pub struct LivesyncArgs {
    /// Image name
    pub image: String,
    /// Nodes (ranges and globs) [default: every node set to the image]
    pub nodes: Vec<String>,
    /// Print the changed paths and bytes per node; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Seconds to wait for the nodes' reports
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub timeout: u64,
    /// Queue the requests and return without waiting
    #[arg(long)]
    pub no_wait: bool,
    #[command(flatten)]
    pub ids: crate::context::NodeIdArg,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Runs the command.
pub fn run(ctx: &Context, a: LivesyncArgs) -> anyhow::Result<()> {
    let site = site(ctx)?;
    site.require_init()?;
    let store = ctx.store()?;
    let head = store
        .get_ref(&a.image)?
        .with_context(|| format!("no image named '{}' in the store", a.image))?;
    let config = ImageConfig::from_metadata(&store.read_commit(&head)?.metadata)
        .with_context(|| format!("image {}", a.image))?;
    let skip = config
        .skip_globs()
        .with_context(|| format!("image {}: livesync.skip", a.image))?;
    let mut db = site.open_db()?;
    let nodes: Vec<_> = if a.nodes.is_empty() {
        db.nodes()?
    } else {
        db.select(
            &Selector::from_args(&a.nodes, ctx.nodeid || a.ids.nodeid)?,
            true,
        )?
    }
    .into_iter()
    .filter(|n| n.vnfs == a.image)
    .collect();
    if nodes.is_empty() {
        bail!("no node is set to VNFS '{}'", a.image);
    }
    let plans = livesync::plan(&store, &db, &nodes, &head, &skip)?;
    if a.dry_run {
        if ctx.json {
            return ctx.print_json(&plans);
        }
        for p in &plans {
            match &p.standing {
                Standing::Behind {
                    commit,
                    paths,
                    skipped,
                    bytes: b,
                } => {
                    println!(
                        "{} ({}): {} -> {}: {} paths, {} to fetch, {} skipped",
                        p.hostname,
                        p.nodeid,
                        &commit[..12],
                        head.short(),
                        paths.len(),
                        bytes(*b),
                        skipped
                    );
                    for path in paths {
                        println!("  {path}");
                    }
                }
                other => println!("{} ({}): {}", p.hostname, p.nodeid, describe(other)),
            }
        }
        return Ok(());
    }
    // Hybridized links of the new commit point into its export: build it
    // before any node switches.
    let home = std::fs::canonicalize(&ctx.home).unwrap_or_else(|_| ctx.home.clone());
    let globs = config.hybridize_globs(&home.to_string_lossy())?;
    Export::new(&ctx.home).ensure(&store, &head, &globs)?;
    let mut targets = Vec::new();
    for p in &plans {
        if matches!(p.standing, Standing::Behind { .. }) {
            targets.push(Mac::parse(&p.nodeid)?);
        } else if !ctx.quiet {
            eprintln!("{}: {}", p.hostname, describe(&p.standing));
        }
    }
    if targets.is_empty() {
        if !ctx.quiet {
            eprintln!("nothing to do");
        }
        return Ok(());
    }
    let ids = db.request_livesync(&targets, &a.image, &head.to_hex(), now())?;
    if a.no_wait {
        if !ctx.quiet {
            eprintln!(
                "{} livesync requests queued; nodes apply them at their next check-in",
                ids.len()
            );
        }
        return Ok(());
    }
    let rows = livesync::wait(&db, &ids, Duration::from_secs(a.timeout))?;
    if ctx.json {
        return ctx.print_json(&rows);
    }
    let by_mac: std::collections::HashMap<String, String> = nodes
        .iter()
        .map(|n| (n.nodeid.to_string(), n.hostname.clone()))
        .collect();
    let mut failed = 0;
    let mut table = Vec::new();
    for r in &rows {
        let report: Option<vnfs_node::proto::LivesyncReport> = serde_json::from_str(&r.report).ok();
        let result = match (r.finished, r.ok) {
            (None, _) => {
                failed += 1;
                "timed out".to_string()
            }
            (Some(_), Some(true)) => "ok".to_string(),
            _ => {
                failed += 1;
                format!(
                    "failed: {}",
                    report
                        .as_ref()
                        .map(|x| x.error.clone())
                        .unwrap_or_else(|| r.report.clone())
                )
            }
        };
        let (w, d, s, b) = report
            .map(|x| {
                (
                    x.written.to_string(),
                    x.removed.to_string(),
                    x.skipped.to_string(),
                    bytes(x.bytes),
                )
            })
            .unwrap_or_default();
        table.push(vec![
            by_mac.get(&r.nodeid).cloned().unwrap_or_default(),
            r.nodeid.clone(),
            w,
            d,
            s,
            b,
            result,
        ]);
    }
    print_table(
        &mut std::io::stdout(),
        &[
            "NODE", "NODEID", "WRITTEN", "REMOVED", "SKIPPED", "WIRE", "RESULT",
        ],
        &table,
    )?;
    if failed > 0 {
        eprintln!("error: {failed} of {} nodes did not livesync", rows.len());
        return Err(ExitStatus(1).into());
    }
    Ok(())
}

fn describe(s: &Standing) -> String {
    match s {
        Standing::Unknown => "has not reported a commit yet (not provisioned?)".into(),
        Standing::UpToDate => "up to date".into(),
        Standing::Foreign { commit } => format!(
            "runs {}, which is not in this image's history; reprovision it",
            &commit[..12.min(commit.len())]
        ),
        Standing::Behind { .. } => "behind".into(),
    }
}
