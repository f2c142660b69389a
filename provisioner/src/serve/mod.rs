//! `vnfs serve`: the provisioning daemon. HTTP on axum/tokio:
//! node check-in ([`checkin`]), objects by id and in streamed batches
//! ([`objects`]), livesync's delta transfer ([`delta`]), per-node iPXE scripts, kernels and initrds ([`boot`]),
//! and livesync reports ([`checkin::livesync_report`]). The wire types are
//! in `vnfs_node::proto`, shared with the agent.
//!
//! State shared by the handlers is in [`Daemon`]: the site configuration,
//! the store (read concurrently; its index is reloaded when an object or
//! image appears that it does not know yet, so `vnfs commit` next to a
//! running daemon just works), the node database behind a mutex (SQLite
//! calls are short and run on the blocking pool), and the export tree.

pub mod boot;
pub mod checkin;
pub mod conn;
pub mod delta;
pub mod objects;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use vnfs_store::Store;

use crate::Site;
use crate::db::NodeDb;
use crate::error::{Error, Result};
use crate::export::Export;
use crate::images::Images;

/// Settings of a daemon run beyond vnfs.conf.
#[derive(Clone, Debug)]
pub struct Options {
    /// Shared secret nodes must send (`None`: none required).
    pub secret: Option<String>,
    /// Check-in interval told to nodes in `ready`.
    pub interval_secs: u64,
    /// Root of the master filesystem for module payloads (`/`).
    pub master_root: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            secret: None,
            interval_secs: 60,
            master_root: PathBuf::from("/"),
        }
    }
}

/// Everything the handlers share.
pub struct Daemon {
    /// The installation.
    pub site: Site,
    /// The image store.
    pub store: Store,
    /// The node database.
    pub db: Mutex<NodeDb>,
    /// The hybridization export.
    pub export: Export,
    /// Run options.
    pub options: Options,
    last_reload: Mutex<Instant>,
    export_lock: Mutex<()>,
    delta_slots: delta::Slots,
    delta_cache: Mutex<delta::FrameCache>,
}

/// Shortest pause between two store index reloads triggered by misses: a
/// client asking for objects that do not exist must not make the daemon
/// re-read every pack index on each request.
const RELOAD_EVERY: Duration = Duration::from_millis(500);

impl Daemon {
    /// Opens the store (creating an empty one) and the node database.
    pub fn open(site: Site, options: Options) -> Result<Daemon> {
        let store_dir = site.home.join("store");
        let store = Store::open_or_create(&store_dir)
            .map_err(|e| Error::Config(format!("store {}: {e}", store_dir.display())))?;
        let db = site.open_db()?;
        let export = Export::new(&site.home);
        Ok(Daemon {
            site,
            store,
            db: Mutex::new(db),
            export,
            options,
            last_reload: Mutex::new(Instant::now() - RELOAD_EVERY),
            export_lock: Mutex::new(()),
            delta_slots: delta::Slots::default(),
            delta_cache: Mutex::new(delta::FrameCache::default()),
        })
    }

    /// Re-reads the store's pack indexes unless that happened very
    /// recently. Returns whether it did.
    pub fn reload_store(&self) -> bool {
        let mut last = lock(&self.last_reload);
        if last.elapsed() < RELOAD_EVERY {
            return false;
        }
        *last = Instant::now();
        drop(last);
        match self.store.reload_index() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("reloading the store index: {e}");
                false
            }
        }
    }

    /// Re-reads the store's pack indexes now: for a commit that a ref
    /// names, so it must be there (written by `vnfs commit` since the last
    /// reload), unlike an id a client made up.
    pub fn reload_store_now(&self) -> bool {
        *lock(&self.last_reload) = Instant::now();
        match self.store.reload_index() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("reloading the store index: {e}");
                false
            }
        }
    }

    /// The images in the store, by name with their newest commit.
    pub fn images(&self) -> Result<Images> {
        let refs = self
            .store
            .list_refs()
            .map_err(|e| Error::Config(format!("store: {e}")))?;
        Ok(Images::from_refs(
            refs.into_iter().map(|(n, id)| (n, id.to_hex())),
        ))
    }
}

/// Locks a mutex, recovering from a panicked holder.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The daemon's routes.
pub fn router(d: Arc<Daemon>) -> Router {
    Router::new()
        .route("/v1/checkin", post(checkin::checkin))
        .route("/v1/livesync/{mac}", post(checkin::livesync_report))
        .route("/v1/object/{kind}/{id}", get(objects::object))
        .route("/v1/objects/{kind}", post(objects::batch))
        .route("/v1/delta/{kind}", post(delta::delta))
        .route("/boot/{mac}", get(boot::script))
        .route("/boot/{mac}/{file}", get(boot::file))
        .with_state(d)
}

/// Serves on `listener` until `shutdown` completes, then stops accepting
/// and lets requests in flight finish (see [`conn`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    d: Arc<Daemon>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    conn::serve(listener, d, shutdown).await
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot watch SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// Binds `addr` and serves until SIGINT/SIGTERM, on a runtime with
/// `workers` threads (0: one per core).
pub fn run(site: Site, options: Options, addr: SocketAddr, workers: usize) -> Result<()> {
    let d = Arc::new(Daemon::open(site, options)?);
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    // Check-ins queue on one database mutex and batch reads are short: a
    // few blocking threads do the work; the default (512) would grow a
    // thread per waiting node under a boot storm and cost memory for nothing.
    rt.max_blocking_threads(16);
    if workers > 0 {
        rt.worker_threads(workers);
    }
    let rt = rt
        .build()
        .map_err(|e| Error::Config(format!("tokio runtime: {e}")))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Config(format!("cannot listen on {addr}: {e}")))?;
        tracing::info!(
            listen = %addr,
            home = %d.site.home.display(),
            export = %d.export.root().display(),
            "vnfs serve started"
        );
        serve(listener, d, shutdown_signal())
            .await
            .map_err(|e| Error::Config(format!("serving on {addr}: {e}")))
    })
}
