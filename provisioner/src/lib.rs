//! Node database, range operators, modules, nodescripts, provisioning daemon
//! and node agent.
//!
//! This crate owns Perceus's management model: nodes keyed by MAC address in
//! a SQLite database ([`db`]), named from `defaults.conf` ([`naming`]) and
//! addressed with bracket ranges and globs ([`pattern`], [`select`]); groups
//! derived from the nodes; modules activated per provisionary state
//! ([`module`], [`activation`], [`state`]) and assembled into nodescripts
//! ([`nodescript`]); importers ([`import`]); the first-run questions
//! ([`init`]) and the dnsmasq configuration ([`dhcp`]).
//!
//! The node-management parts never open the image store: callers pass the
//! known images in as [`Images`]. The provisioning daemon ([`serve`]) does:
//! it serves the store's objects, records what nodes run ([`runtime`]),
//! plans livesync ([`livesync`]) and keeps the hybridization export
//! ([`export`]). The node agent is the `vnfs-node` crate beside this one.

pub mod activation;
pub mod builtin;
pub mod config;
pub mod db;
pub mod dhcp;
pub mod error;
pub mod export;
mod fsutil;
pub mod images;
pub mod import;
pub mod init;
pub mod ipaddr;
pub mod livesync;
pub mod mac;
pub mod module;
pub mod naming;
pub mod netif;
pub mod node;
pub mod nodescript;
pub mod pattern;
pub mod runtime;
pub mod schema;
pub mod select;
pub mod serve;
pub mod state;
pub mod status;

use std::path::{Path, PathBuf};

pub use db::NodeDb;
pub use error::{Error, Result};
pub use images::Images;
pub use mac::Mac;
pub use node::Node;
pub use select::Selector;

/// A vnfs installation: its home (database, imported modules) and its
/// configuration directory (vnfs.conf, defaults.conf, module configuration).
#[derive(Clone, Debug)]
pub struct Site {
    /// The vnfs home directory.
    pub home: PathBuf,
    /// The configuration directory.
    pub confdir: PathBuf,
    /// vnfs.conf, or built-in values when it does not exist yet.
    pub conf: config::VnfsConf,
    /// Whether vnfs.conf exists.
    pub initialised: bool,
    /// defaults.conf, or built-in values when it does not exist.
    pub defaults: config::Defaults,
    /// Warnings from reading the configuration.
    pub warnings: Vec<String>,
}

impl Site {
    /// Reads the configuration of the installation at `home`/`confdir`.
    pub fn load(home: &Path, confdir: &Path) -> Result<Site> {
        let mut warnings = Vec::new();
        let (conf, initialised) = match config::load_vnfs_conf(confdir)? {
            Some((c, w)) => {
                warnings.extend(w);
                (c, true)
            }
            None => (config::VnfsConf::default(), false),
        };
        let (defaults, w) = config::load_defaults(confdir)?;
        warnings.extend(w);
        Ok(Site {
            home: home.to_path_buf(),
            confdir: confdir.to_path_buf(),
            conf,
            initialised,
            defaults,
            warnings,
        })
    }

    /// The node database file (vnfs.conf `database`, relative to home).
    pub fn db_path(&self) -> PathBuf {
        self.home.join(&self.conf.database)
    }

    /// Opens the node database.
    pub fn open_db(&self) -> Result<NodeDb> {
        NodeDb::open(&self.db_path())
    }

    /// The module store.
    pub fn modules(&self) -> module::ModuleStore {
        module::ModuleStore::new(&self.home, &self.confdir)
    }

    /// Checks, before images are deleted from the store, that no node is
    /// set to any of them.
    ///
    /// A node whose image is gone is told at every init check-in to wait
    /// (exit 75) and never boots, so deleting an image in use is refused
    /// with [`Error::ImageInUse`] naming the nodes, unless `force`; then the
    /// same facts come back as warnings. A defaults.conf that names one of
    /// the images is always a warning (new nodes would get no image). No
    /// node database yet means no nodes: it is not created here.
    pub fn check_image_delete(&self, names: &[String], force: bool) -> Result<Vec<String>> {
        let mut warnings = Vec::new();
        let db_path = self.db_path();
        let db = if db_path.exists() {
            Some(NodeDb::open(&db_path)?)
        } else {
            None
        };
        for name in names {
            let users = match &db {
                Some(db) => db.nodes_using_image(name)?,
                None => Vec::new(),
            };
            if !users.is_empty() {
                let list = short_list(users.iter().map(|n| n.hostname.as_str()), 8);
                if !force {
                    return Err(Error::ImageInUse {
                        image: name.clone(),
                        count: users.len(),
                        nodes: list,
                    });
                }
                warnings.push(format!(
                    "image '{name}' is deleted although {} node(s) use it: {list}; they wait at init until they are set to another image",
                    users.len()
                ));
            }
            if self.defaults.vnfs == *name {
                warnings.push(format!(
                    "defaults.conf names image '{name}' (Vnfs Name) for new nodes; they will get no image until it is changed"
                ));
            }
        }
        Ok(warnings)
    }

    /// Fails unless `vnfs init` has written vnfs.conf.
    pub fn require_init(&self) -> Result<&config::VnfsConf> {
        if !self.initialised {
            return Err(Error::Config(format!(
                "{} does not exist: run `vnfs init` first",
                self.confdir.join(config::VNFS_CONF).display()
            )));
        }
        Ok(&self.conf)
    }
}

/// `a, b, c and 7 more`: the first `max` items of a list for a message.
fn short_list<'a>(items: impl ExactSizeIterator<Item = &'a str>, max: usize) -> String {
    let total = items.len();
    let shown: Vec<&str> = items.take(max).collect();
    let mut s = shown.join(", ");
    if total > shown.len() {
        s.push_str(&format!(" and {} more", total - shown.len()));
    }
    s
}
