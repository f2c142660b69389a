//! `vnfs group`: groups exist as soon as a node names them; `group set`
//! changes a field on every member.

use std::io::Write;

use clap::Subcommand;
use vnfs_provisioner::node::Field;
use vnfs_provisioner::pattern::PatternSet;

use super::{images, print_json, print_table, site, warn_all};
use crate::context::Context;

/// Group commands.
#[derive(Subcommand, Debug)]
pub enum GroupCmd {
    /// Set a field (desc, vnfs, enabled, debug, attr.NAME, ...) on every member of the groups
    Set {
        /// Field name (as for `node set`)
        field: String,
        /// New value
        value: String,
        /// Groups (ranges and globs)
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Groups with their member count (all groups when none are named)
    List {
        /// Groups (ranges and globs)
        groups: Vec<String>,
    },
    /// Members, enabled count and VNFS images of groups
    Show {
        /// Groups (ranges and globs)
        groups: Vec<String>,
    },
}

/// Runs a group command.
pub fn run(ctx: &Context, cmd: GroupCmd) -> anyhow::Result<()> {
    let site = site(ctx)?;
    let mut db = site.open_db()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match cmd {
        GroupCmd::Set {
            field,
            value,
            groups,
        } => {
            let field = Field::parse(&field)?;
            if field == Field::Group {
                // Renaming a group is `node set group NEW OLD-members`; keep
                // `group set` to settings so it cannot empty a group by accident.
                anyhow::bail!(
                    "group set cannot change the group field; use `vnfs node set group NEW NODES`"
                );
            }
            let pats = PatternSet::parse(&groups)?;
            let outcome = db.group_set(&pats, &field, &value, &images(ctx)?)?;
            warn_all(ctx, &outcome.warnings);
            if !ctx.quiet {
                writeln!(
                    out,
                    "Set {} = '{}' on {} node(s)",
                    field.name(),
                    value,
                    outcome.nodes.len()
                )?;
            }
        }
        GroupCmd::List { groups } => {
            let list = filtered(&db, &groups)?;
            if ctx.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|g| {
                    vec![
                        g.name.clone(),
                        g.members.len().to_string(),
                        g.enabled.to_string(),
                    ]
                })
                .collect();
            print_table(&mut out, &["GroupName", "Nodes", "Enabled"], &rows)?;
        }
        GroupCmd::Show { groups } => {
            let list = filtered(&db, &groups)?;
            if ctx.json {
                return print_json(&list);
            }
            for (i, g) in list.iter().enumerate() {
                if i > 0 {
                    writeln!(out)?;
                }
                writeln!(out, "group: {}", g.name)?;
                writeln!(out, "nodes: {}", g.members.len())?;
                writeln!(out, "enabled: {}", g.enabled)?;
                let vnfs: Vec<String> = g
                    .vnfs
                    .iter()
                    .map(|(v, n)| format!("{} ({n})", if v.is_empty() { "(none)" } else { v }))
                    .collect();
                writeln!(out, "vnfs: {}", vnfs.join(", "))?;
                writeln!(out, "members: {}", g.members.join(" "))?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

fn filtered(
    db: &vnfs_provisioner::NodeDb,
    groups: &[String],
) -> anyhow::Result<Vec<vnfs_provisioner::db::GroupInfo>> {
    let pats = PatternSet::parse(groups)?;
    Ok(db
        .groups()?
        .into_iter()
        .filter(|g| pats.is_empty() || pats.matches(&g.name))
        .collect())
}
