//! `vnfs node`: add, set, delete, replace, list, summary, status, show and
//! import nodes. NODES arguments are host names with bracket ranges and globs
//! (`n00[00-05,06,20-40] io*`), or MAC addresses with `-i/--nodeid`.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};
use vnfs_provisioner::import::{self, Kind};
use vnfs_provisioner::node::Field;
use vnfs_provisioner::{Mac, Selector, status};

use super::{images, print_json, print_table, site, warn_all};
use crate::context::{Context, NodeIdArg};

/// Node commands.
#[derive(Subcommand, Debug)]
pub enum NodeCmd {
    /// Add nodes by MAC address, named and configured from defaults.conf
    Add {
        /// MAC addresses (NodeIDs), in the order the nodes should be numbered
        macs: Vec<String>,
        /// Also read MAC addresses from a file, one per line ('-' for stdin;
        /// '#' comments and blank lines skipped)
        #[arg(long, short = 'f', value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Set a field on nodes: hostname, group, vnfs, enabled, debug, desc,
    /// ipaddr (DEV:ADDR/MASK[/GATEWAY] ...), or attr.NAME (empty value removes)
    Set {
        /// Field name
        field: String,
        /// New value
        value: String,
        /// Nodes (ranges and globs; MAC addresses with -i)
        #[arg(required = true)]
        nodes: Vec<String>,
        #[command(flatten)]
        ids: NodeIdArg,
    },
    /// Delete nodes
    Delete {
        /// Nodes (ranges and globs; MAC addresses with -i)
        #[arg(required = true)]
        nodes: Vec<String>,
        #[command(flatten)]
        ids: NodeIdArg,
    },
    /// NEW takes OLD's identity and settings; OLD is removed (hardware swap)
    Replace {
        /// The node being replaced
        old: String,
        /// The node (usually just added) that takes its place
        new: String,
        #[command(flatten)]
        ids: NodeIdArg,
    },
    /// Host names, one per line (all nodes when none are named)
    List {
        /// Nodes (ranges and globs; MAC addresses with -i)
        nodes: Vec<String>,
        #[command(flatten)]
        ids: NodeIdArg,
    },
    /// Host name, group, enabled and VNFS of nodes
    Summary {
        /// Nodes (ranges and globs; MAC addresses with -i)
        nodes: Vec<String>,
        #[command(flatten)]
        ids: NodeIdArg,
    },
    /// Last state, address and contact of nodes; "timed out" past the node timeout
    Status {
        /// Nodes (ranges and globs; MAC addresses with -i)
        nodes: Vec<String>,
        #[command(flatten)]
        ids: NodeIdArg,
    },
    /// Every field of nodes as "key: value" lines
    Show {
        /// Nodes (ranges and globs; MAC addresses with -i)
        nodes: Vec<String>,
        #[command(flatten)]
        ids: NodeIdArg,
    },
    /// Add nodes from another tool's node list
    Import {
        /// Format of the file
        kind: ImportKind,
        /// The file to read
        file: PathBuf,
    },
}

/// Import formats.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum ImportKind {
    /// ISC dhcpd.conf host blocks (hardware ethernet, fixed-address)
    Dhcpd,
    /// /etc/ethers (MAC hostname-or-address)
    Ethers,
    /// Warewulf 4 nodes.conf (YAML)
    Warewulf,
}

impl NodeCmd {
    /// Whether `-i` was given on the command itself. clap carries it to
    /// [`Context::nodeid`] as well (one id); reading both keeps the flag
    /// working even if that propagation changed.
    fn nodeid(&self) -> bool {
        match self {
            NodeCmd::Set { ids, .. }
            | NodeCmd::Delete { ids, .. }
            | NodeCmd::Replace { ids, .. }
            | NodeCmd::List { ids, .. }
            | NodeCmd::Summary { ids, .. }
            | NodeCmd::Status { ids, .. }
            | NodeCmd::Show { ids, .. } => ids.nodeid,
            NodeCmd::Add { .. } | NodeCmd::Import { .. } => false,
        }
    }
}

/// Runs a node command.
pub fn run(ctx: &Context, cmd: NodeCmd) -> anyhow::Result<()> {
    let nodeid = ctx.nodeid || cmd.nodeid();
    let site = site(ctx)?;
    let mut db = site.open_db()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match cmd {
        NodeCmd::Add { macs, file } => {
            let mut all = Vec::new();
            for m in &macs {
                all.push(Mac::parse(m)?);
            }
            if let Some(f) = file {
                let reader: Box<dyn BufRead> = if f.as_os_str() == "-" {
                    Box::new(std::io::stdin().lock())
                } else {
                    Box::new(std::io::BufReader::new(
                        std::fs::File::open(&f)
                            .with_context(|| format!("opening {}", f.display()))?,
                    ))
                };
                for (i, line) in reader.lines().enumerate() {
                    let line = line.with_context(|| format!("reading {}", f.display()))?;
                    let t = line.split('#').next().unwrap_or_default().trim();
                    if t.is_empty() {
                        continue;
                    }
                    all.push(Mac::parse(t).with_context(|| format!("{}:{}", f.display(), i + 1))?);
                }
            }
            if all.is_empty() {
                anyhow::bail!("no MAC address given (as arguments or with --file)");
            }
            let outcome = db.add(&all, &site.defaults, &images(ctx)?)?;
            warn_all(ctx, &outcome.warnings);
            if !ctx.quiet {
                for n in &outcome.nodes {
                    writeln!(out, "Added {} ({})", n.hostname, n.nodeid)?;
                }
            }
        }
        NodeCmd::Set {
            field,
            value,
            nodes,
            ..
        } => {
            let field = Field::parse(&field)?;
            let sel = Selector::from_args(&nodes, nodeid)?;
            let outcome = db.set(&sel, &field, &value, &images(ctx)?)?;
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
        NodeCmd::Delete { nodes, .. } => {
            let sel = Selector::from_args(&nodes, nodeid)?;
            let gone = db.delete(&sel)?;
            if !ctx.quiet {
                for n in &gone {
                    writeln!(out, "Deleted {} ({})", n.hostname, n.nodeid)?;
                }
            }
        }
        NodeCmd::Replace { old, new, .. } => {
            let o = Selector::from_args(&[old], nodeid)?;
            let n = Selector::from_args(&[new], nodeid)?;
            let node = db.replace(&o, &n)?;
            if !ctx.quiet {
                writeln!(
                    out,
                    "{} is now {} ({})",
                    o.describe(),
                    node.hostname,
                    node.nodeid
                )?;
            }
        }
        NodeCmd::List { nodes, .. } => {
            let list = select(ctx, &db, &nodes, nodeid)?;
            if ctx.json {
                let names: Vec<&str> = list.iter().map(|n| n.hostname.as_str()).collect();
                return print_json(&names);
            }
            for n in &list {
                writeln!(out, "{}", n.hostname)?;
            }
        }
        NodeCmd::Summary { nodes, .. } => {
            let list = select(ctx, &db, &nodes, nodeid)?;
            if ctx.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|n| {
                    vec![
                        n.hostname.clone(),
                        n.group.clone(),
                        u8::from(n.enabled).to_string(),
                        n.vnfs.clone(),
                    ]
                })
                .collect();
            print_table(
                &mut out,
                &["HostName", "GroupName", "Enabled", "Vnfs"],
                &rows,
            )?;
        }
        NodeCmd::Status { nodes, .. } => {
            let list = select(ctx, &db, &nodes, nodeid)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            let rows = status::rows(&list, now, site.conf.node_timeout);
            if ctx.json {
                return print_json(&rows);
            }
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let mut last = status::format_elapsed(r.seconds_ago);
                    if r.timed_out {
                        last.push_str(" (timed out)");
                    }
                    vec![
                        r.hostname.clone(),
                        if r.state.is_empty() {
                            "unknown".into()
                        } else {
                            r.state.clone()
                        },
                        r.address.clone(),
                        last,
                    ]
                })
                .collect();
            print_table(
                &mut out,
                &["HostName", "Status", "IpAddr", "Last Contact"],
                &table,
            )?;
        }
        NodeCmd::Show { nodes, .. } => {
            let list = select(ctx, &db, &nodes, nodeid)?;
            if ctx.json {
                return print_json(&list);
            }
            for (i, n) in list.iter().enumerate() {
                if i > 0 {
                    writeln!(out)?;
                }
                for (k, v) in n.show_pairs() {
                    writeln!(out, "{k}: {v}")?;
                }
            }
        }
        NodeCmd::Import { kind, file } => {
            let kind = match kind {
                ImportKind::Dhcpd => Kind::Dhcpd,
                ImportKind::Ethers => Kind::Ethers,
                ImportKind::Warewulf => Kind::Warewulf,
            };
            let got = import::read(kind, &file)?;
            warn_all(ctx, &got.warnings);
            if got.nodes.is_empty() {
                anyhow::bail!("{}: no nodes found", file.display());
            }
            let outcome = db.add_records(&got.nodes, &site.defaults, &images(ctx)?)?;
            warn_all(ctx, &outcome.warnings);
            if !ctx.quiet {
                for n in &outcome.nodes {
                    writeln!(out, "Added {} ({})", n.hostname, n.nodeid)?;
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// Nodes for the listing commands: a pattern that matches nothing is a
/// warning there, not an error.
fn select(
    ctx: &Context,
    db: &vnfs_provisioner::NodeDb,
    args: &[String],
    nodeid: bool,
) -> anyhow::Result<Vec<vnfs_provisioner::Node>> {
    let sel = Selector::from_args(args, nodeid)?;
    match db.select(&sel, true) {
        Ok(v) => Ok(v),
        Err(vnfs_provisioner::Error::NoMatch(p)) => {
            warn_all(ctx, &[format!("no node matches '{p}'")]);
            Ok(db.select(&sel, false)?)
        }
        Err(e) => Err(e.into()),
    }
}
