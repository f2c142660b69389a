//! `vnfs store stats|fsck|gc`: looking after the store itself.

use clap::Subcommand;

use crate::context::{Context, ExitStatus};
use crate::progress::bytes;

/// Store maintenance.
#[derive(Subcommand, Debug)]
pub enum StoreCmd {
    /// Logical and stored bytes, dedup ratio, object counts
    Stats,
    /// Verify every pack and object; name what each damaged object breaks
    /// (exit status 1 when anything is wrong)
    Fsck,
    /// Remove objects no image or version uses (waits for running commits)
    Gc,
}

/// Runs a store maintenance command.
pub fn run(cmd: StoreCmd, ctx: &Context) -> anyhow::Result<()> {
    let store = ctx.store()?;
    match cmd {
        StoreCmd::Stats => {
            let s = store.stats()?;
            if ctx.json {
                return ctx.print_json(&s);
            }
            println!("images:        {}", s.images);
            println!("versions:      {}", s.commits);
            println!("logical bytes: {}", bytes(s.logical_bytes));
            println!("stored bytes:  {}", bytes(s.stored_bytes));
            println!("dedup ratio:   {:.2}", s.dedup_ratio);
            println!(
                "objects:       {} chunks, {} trees, {} commits",
                s.chunks, s.trees, s.commit_objects
            );
        }
        StoreCmd::Fsck => {
            let bar = ctx.progress();
            let r = store.fsck(&bar)?;
            if ctx.json {
                ctx.print_json(&r)?;
            } else {
                for p in &r.problems {
                    match &p.object {
                        Some(o) => println!("BAD {o}: {}", p.what),
                        None => println!("BAD {}", p.what),
                    }
                    for b in &p.breaks {
                        println!("    breaks {b}");
                    }
                }
                println!(
                    "{} packs, {} objects, {} checked: {}",
                    r.packs,
                    r.objects,
                    bytes(r.bytes),
                    if r.problems.is_empty() {
                        "no problems".to_string()
                    } else {
                        format!("{} problems", r.problems.len())
                    }
                );
            }
            if !r.problems.is_empty() {
                return Err(ExitStatus(1).into());
            }
        }
        StoreCmd::Gc => {
            let bar = ctx.progress();
            let r = store.gc(&bar)?;
            if ctx.json {
                return ctx.print_json(&r);
            }
            println!(
                "removed {} objects, rewrote {} packs: {} -> {} ({} freed{})",
                r.removed_objects,
                r.packs_rewritten,
                bytes(r.bytes_before),
                bytes(r.bytes_after),
                bytes(r.bytes_before.saturating_sub(r.bytes_after) + r.leftover_bytes),
                match r.leftover_bytes {
                    0 => String::new(),
                    n => format!(
                        ", {} of it temporary files of interrupted commits and imports",
                        bytes(n)
                    ),
                }
            );
        }
    }
    Ok(())
}
