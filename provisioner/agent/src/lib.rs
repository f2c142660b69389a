//! vnfs-node: the node side of vnfs provisioning, and the wire protocol the
//! daemon shares with it.
//!
//! Always built: [`proto`] (check-in, objects, batch framing), [`delta`]
//! (livesync's delta transfer: framing and the zstd codec), [`imageconf`]
//! (an image's hybridize and livesync.skip lists from commit metadata) and
//! [`glob`] (the path patterns those lists use) and [`hybrid`] (which
//! paths of an image a node keeps in memory and which it links to the
//! master's export). With the `client` feature
//! (the default) also the agent: fetching objects over keep-alive HTTP into
//! a local object cache, assembling the root, hybridization, nodescripts,
//! livesync and the check-in loop.

pub mod delta;
pub mod glob;
pub mod hybrid;
pub mod imageconf;
pub mod proto;

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "client")]
pub mod daemon;
#[cfg(feature = "client")]
pub mod deltafetch;
#[cfg(feature = "client")]
pub mod error;
#[cfg(feature = "client")]
pub mod fetch;
#[cfg(feature = "client")]
pub mod livesync;
#[cfg(feature = "client")]
pub mod provision;
#[cfg(feature = "client")]
pub mod script;
#[cfg(feature = "client")]
pub mod state;

#[cfg(feature = "client")]
pub use error::{AgentError, Result};
