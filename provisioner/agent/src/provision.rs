//! `vnfs-node provision`: check in as `init`, fetch the image commit's
//! trees and the chunks the cache lacks, assemble the node's view of the
//! image into the root with the store's checkout (exact owners, modes,
//! xattrs, devices, hard links, holes), run the init nodescript, check in
//! as `ready`.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use vnfs_store::{NoProgress, ObjectId, Store};

use crate::client::{Master, Retry};
use crate::error::{AgentError, Result, io};
use crate::fetch::{self, FetchStats};
use crate::hybrid;
use crate::imageconf::ImageConfig;
use crate::proto::{CheckinReply, CheckinRequest};
use crate::script::{self, ScriptOutcome};
use crate::state::NodeState;

/// How to provision.
#[derive(Clone, Debug)]
pub struct Options {
    /// Master base URL.
    pub master: String,
    /// Directory to assemble the root in (absent or empty).
    pub root: PathBuf,
    /// Object cache directory kept across boots (`None`: a temporary one).
    pub cache: Option<PathBuf>,
    /// NodeID.
    pub mac: String,
    /// Shared secret, if the site uses one.
    pub secret: Option<String>,
    /// Parallel connections for chunks.
    pub threads: usize,
    /// Retry policy.
    pub retry: Retry,
}

/// What a provisioning run did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Report {
    /// The node's host name.
    pub hostname: String,
    /// Image name.
    pub image: String,
    /// Image commit.
    pub commit: String,
    /// Node view commit.
    pub view: String,
    /// Cache hits and transfers.
    pub fetch: FetchStats,
    /// Bytes on the wire, both directions.
    pub wire_bytes: u64,
    /// HTTP requests made.
    pub requests: u64,
    /// Requests retried.
    pub retries: u64,
    /// Top-most hybridized paths.
    pub hybridized: usize,
    /// File bytes kept in the node's root.
    pub local_bytes: u64,
    /// File bytes left on the master's export.
    pub remote_bytes: u64,
    /// Files written into the root.
    pub files: u64,
    /// Seconds from start to `ready`.
    pub seconds: f64,
}

/// Opens (creating) the object cache inside a cache directory.
pub fn open_cache(dir: &Path) -> Result<Store> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    Ok(Store::open_or_create(&dir.join("store"))?)
}

/// Parses a commit id sent by the master.
pub fn parse_commit(master: &Master, hex: &str) -> Result<ObjectId> {
    ObjectId::from_hex(hex).ok_or_else(|| AgentError::Protocol {
        url: format!("{}/v1/checkin", master.base()),
        reason: format!("'{hex}' is not a commit id"),
    })
}

/// Fetches `commit` and its trees into the cache and writes the node's
/// view of it (chunks are left to the caller, which knows which it needs).
/// Shared by provisioning and livesync.
pub fn prepare_view(
    master: &Master,
    cache: &Store,
    image: &str,
    commit: &ObjectId,
    export_root: &str,
    stats: &mut FetchStats,
) -> Result<(hybrid::NodeView, ImageConfig)> {
    let c = fetch::commit(master, cache, commit)?;
    fetch::trees(master, cache, &c.tree(), stats)?;
    let config = ImageConfig::from_metadata(&c.metadata).map_err(|source| AgentError::Config {
        image: image.to_string(),
        source,
    })?;
    let globs = config
        .hybridize_globs(export_root)
        .map_err(|source| AgentError::Config {
            image: image.to_string(),
            source,
        })?;
    let w = cache.writer()?;
    let view = hybrid::node_view(cache, Some(&w), commit, &globs, export_root)?;
    w.flush()?;
    Ok((view, config))
}

fn check_root(root: &Path) -> Result<()> {
    match std::fs::read_dir(root) {
        Ok(mut rd) => match rd.next() {
            Some(_) => Err(AgentError::Invalid(format!(
                "{} is not empty: provision into an empty or new directory",
                root.display()
            ))),
            None => Ok(()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(root)(e)),
    }
}

/// Provisions a root. See the module documentation.
pub fn provision(o: &Options) -> Result<Report> {
    let start = Instant::now();
    check_root(&o.root)?;
    let temp;
    let cache_dir = match &o.cache {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("vnfs-node-cache.")
                .tempdir()
                .map_err(io(std::env::temp_dir()))?;
            temp.path().to_path_buf()
        }
    };
    let cache = open_cache(&cache_dir)?;
    let master = Master::new(&o.master, o.retry);
    let before = NodeState::load(&cache_dir)?;
    let reply: CheckinReply = master.checkin(&CheckinRequest {
        mac: o.mac.clone(),
        state: "init".into(),
        commit: before.map(|s| s.commit).unwrap_or_default(),
        secret: o.secret.clone(),
        detail: String::new(),
    })?;
    let commit = parse_commit(&master, &reply.commit)?;
    let mut stats = FetchStats::default();
    let prepared = prepare_view(
        &master,
        &cache,
        &reply.image,
        &commit,
        &reply.export_root,
        &mut stats,
    )
    .and_then(|(view, _)| {
        fetch::chunks(&master, &cache, &view.chunks, o.threads, &mut stats)?;
        Ok(view)
    });
    let view = match prepared {
        Ok(v) => v,
        Err(e) => {
            report_failure(&master, o, &e);
            return Err(e);
        }
    };
    let co = cache.checkout(&view.commit, &o.root, &NoProgress)?;
    match script::run(&reply.script, "init", &o.root)? {
        ScriptOutcome::Done => {}
        ScriptOutcome::Retry => {
            return Err(AgentError::Invalid(format!(
                "the init nodescript for {} asks to wait (exit {})",
                reply.hostname,
                script::EXIT_RETRY
            )));
        }
    }
    let state = NodeState {
        master: o.master.clone(),
        mac: o.mac.clone(),
        root: std::fs::canonicalize(&o.root).unwrap_or_else(|_| o.root.clone()),
        image: reply.image.clone(),
        commit: commit.to_hex(),
        view: view.commit.to_hex(),
        export_root: reply.export_root.clone(),
    };
    if o.cache.is_some() {
        state.save(&cache_dir)?;
    }
    master.checkin(&CheckinRequest {
        mac: o.mac.clone(),
        state: "ready".into(),
        commit: commit.to_hex(),
        secret: o.secret.clone(),
        detail: String::new(),
    })?;
    Ok(Report {
        hostname: reply.hostname,
        image: reply.image,
        commit: commit.to_hex(),
        view: view.commit.to_hex(),
        fetch: stats,
        wire_bytes: master.counters.wire_bytes(),
        requests: master.counters.requests.load(Ordering::Relaxed),
        retries: master.counters.retries.load(Ordering::Relaxed),
        hybridized: view.hybridized.len(),
        local_bytes: view.local_bytes,
        remote_bytes: view.remote_bytes,
        files: co.files,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Tells the master (best effort) that provisioning failed and why, so
/// `vnfs node status` shows it; a corrupt chunk is named there.
fn report_failure(master: &Master, o: &Options, e: &AgentError) {
    let quick = Retry {
        give_up_after: std::time::Duration::from_secs(2),
        ..Retry::default()
    };
    let _ = Master::new(master.base(), quick).checkin(&CheckinRequest {
        mac: o.mac.clone(),
        state: "error".into(),
        commit: String::new(),
        secret: o.secret.clone(),
        detail: e.to_string(),
    });
}
