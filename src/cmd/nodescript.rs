//! `vnfs nodescript NODE STATE`: prints exactly the script the daemon sends
//! that node when it checks in at that provisionary state.

use clap::Args;
use vnfs_provisioner::nodescript::{self, ScriptContext};
use vnfs_provisioner::{Error, Selector};

use super::{images, site, warn_all};
use crate::context::{Context, NodeIdArg};

/// Arguments of `vnfs nodescript`.
#[derive(Args, Debug)]
pub struct NodescriptArgs {
    /// The node (a host name that names one node; a MAC address with -i)
    pub node: String,
    /// Provisionary state (init, ready, or a custom state)
    pub state: String,
    #[command(flatten)]
    pub ids: NodeIdArg,
}

/// Prints the nodescript.
pub fn run(ctx: &Context, args: NodescriptArgs) -> anyhow::Result<()> {
    let site = site(ctx)?;
    let conf = site.require_init()?;
    let db = site.open_db()?;
    let sel = Selector::from_args(
        std::slice::from_ref(&args.node),
        ctx.nodeid || args.ids.nodeid,
    )?;
    let mut nodes = db.select(&sel, true)?;
    if nodes.len() != 1 {
        return Err(Error::NotOneNode {
            pattern: args.node,
            count: nodes.len(),
        }
        .into());
    }
    let node = nodes.remove(0);
    let images = images(ctx)?;
    let store = site.modules();
    let activations = db.activations()?;
    let sctx = ScriptContext {
        conf,
        images: &images,
        modules: &store,
        activations: &activations,
        master_root: std::path::Path::new("/"),
    };
    let script = nodescript::render(&sctx, &node, &args.state)?;
    // Warnings go to stderr after rendering succeeded, so stdout stays the
    // exact script the daemon would send (and a bad state is one error).
    warn_all(ctx, &nodescript::warnings(&sctx, &node, &args.state)?);
    print!("{script}");
    Ok(())
}
