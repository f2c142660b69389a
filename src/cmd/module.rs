//! `vnfs module`: import, activate, deactivate, list and pack provisioning
//! modules. A `.pmod` is a gzip-compressed tar of a module directory
//! (module.toml, scripts/STATE.sh, config/...).

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;
use vnfs_provisioner::{activation, module};

use super::{print_json, print_table, site, warn_all};
use crate::context::Context;

/// Module commands.
#[derive(Subcommand, Debug)]
pub enum ModuleCmd {
    /// Import a module from a .pmod file or a module directory
    Import {
        /// The .pmod file or directory
        path: PathBuf,
    },
    /// Activate a module for provisionary states (its default states when none are given)
    Activate {
        /// Module name
        module: String,
        /// States: init/all, ready/group/G, init/node/N, ready/vnfs/V, custom/all, ...
        states: Vec<String>,
    },
    /// Deactivate a module for the given states, or everywhere
    Deactivate {
        /// Module name
        module: String,
        /// States to deactivate (all of the module's when none are given)
        states: Vec<String>,
    },
    /// Modules with their origin and active states
    List,
    /// Pack a module directory into a .pmod file
    Pack {
        /// Module directory
        dir: PathBuf,
        /// Output file (.pmod)
        output: PathBuf,
    },
}

#[derive(serde::Serialize)]
struct Row {
    name: String,
    origin: String,
    description: String,
    default_states: Vec<String>,
    active: Vec<String>,
}

/// Runs a module command.
pub fn run(ctx: &Context, cmd: ModuleCmd) -> anyhow::Result<()> {
    let site = site(ctx)?;
    let store = site.modules();
    let mut out = std::io::stdout().lock();
    match cmd {
        ModuleCmd::Import { path } => {
            let m = store.import(&path)?;
            if !ctx.quiet {
                writeln!(
                    out,
                    "Imported module {} (states: {})",
                    m.name(),
                    m.scripts.keys().cloned().collect::<Vec<_>>().join(", ")
                )?;
            }
        }
        ModuleCmd::Activate { module, states } => {
            let mut db = site.open_db()?;
            let done = activation::activate(&mut db, &store, &module, &states)?;
            if !ctx.quiet {
                writeln!(out, "Activated {module} for {}", done.join(" "))?;
            }
            warn_all(ctx, &activation::unmatched(&db, &done)?);
        }
        ModuleCmd::Deactivate { module, states } => {
            let mut db = site.open_db()?;
            let n = activation::deactivate(&mut db, &module, &states)?;
            if !ctx.quiet {
                writeln!(out, "Deactivated {module} ({n} state(s))")?;
            }
        }
        ModuleCmd::List => {
            let db = site.open_db()?;
            let acts = db.activations()?;
            let rows: Vec<Row> = store
                .list()?
                .into_values()
                .map(|m| Row {
                    name: m.name().to_string(),
                    origin: match &m.origin {
                        module::Origin::Builtin => "builtin".into(),
                        module::Origin::Imported(_) => "imported".into(),
                    },
                    description: m.manifest.description.clone(),
                    default_states: m.manifest.default_states.clone(),
                    active: acts
                        .iter()
                        .filter(|a| a.module == m.name())
                        .map(|a| a.state.clone())
                        .collect(),
                })
                .collect();
            if ctx.json {
                return print_json(&rows);
            }
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.name.clone(),
                        r.origin.clone(),
                        if r.active.is_empty() {
                            "-".into()
                        } else {
                            r.active.join(",")
                        },
                        r.description.clone(),
                    ]
                })
                .collect();
            print_table(
                &mut out,
                &["Module", "Origin", "Active", "Description"],
                &table,
            )?;
        }
        ModuleCmd::Pack { dir, output } => {
            let m = module::Module::load_dir(&dir)?;
            module::pack(&m, &output)?;
            if !ctx.quiet {
                writeln!(out, "Packed module {} into {}", m.name(), output.display())?;
            }
        }
    }
    Ok(())
}
