//! `vnfs-node daemon`: the running node's side. Checks in as `ready` at
//! the interval the master gives, runs the `ready` nodescript, applies a
//! livesync when the master orders one, and reports the result.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::client::Master;
use crate::error::{AgentError, Result};
use crate::livesync;
use crate::proto::CheckinRequest;
use crate::script::{self, ScriptOutcome};
use crate::state::NodeState;

/// How the daemon runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The cache directory `provision` used (holds the node state).
    pub cache: PathBuf,
    /// Shared secret, if the site uses one.
    pub secret: Option<String>,
    /// Check-in interval; `None`: what the master says.
    pub interval: Option<Duration>,
    /// Stop after this many check-ins (`None`: run until killed).
    pub iterations: Option<u64>,
    /// Parallel connections for livesync chunk fetches.
    pub threads: usize,
    /// Whether to run the `ready` nodescripts.
    pub run_scripts: bool,
    /// Set to stop the loop after the current check-in.
    pub stop: Arc<AtomicBool>,
}

/// Runs the check-in loop.
pub fn run(master: &Master, o: &Options) -> Result<()> {
    let mut state = NodeState::load(&o.cache)?.ok_or_else(|| {
        AgentError::Invalid(format!(
            "{} holds no node state: run `vnfs-node provision --cache {}` first",
            o.cache.display(),
            o.cache.display()
        ))
    })?;
    let mut n = 0u64;
    loop {
        let reply = master.checkin(&CheckinRequest {
            mac: state.mac.clone(),
            state: "ready".into(),
            commit: state.commit.clone(),
            secret: o.secret.clone(),
            detail: String::new(),
        })?;
        if let Some(order) = &reply.livesync
            && order.commit != state.commit
        {
            tracing::info!("livesync {} to {}", order.id, order.commit);
            let report = livesync::apply(master, &o.cache, &mut state, order, o.threads);
            if !report.ok {
                tracing::error!("livesync {} failed: {}", order.id, report.error);
            }
            let url = format!("{}/v1/livesync/{}", master.base(), state.mac);
            let body =
                serde_json::to_vec(&report).map_err(|e| AgentError::Invalid(e.to_string()))?;
            let (status, text) = master.post(&url, "application/json", &body)?;
            if status >= 300 {
                tracing::warn!("{url}: HTTP {status}: {}", String::from_utf8_lossy(&text));
            }
        }
        if o.run_scripts {
            match script::run(&reply.script, "ready", &state.root) {
                Ok(ScriptOutcome::Done | ScriptOutcome::Retry) => {}
                Err(e) => tracing::error!("{e}"),
            }
        }
        n += 1;
        if o.iterations.is_some_and(|max| n >= max) || o.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let pause = o
            .interval
            .unwrap_or(Duration::from_secs(reply.interval_secs.max(1)));
        // Sleep in short steps so a stop request is seen promptly.
        let until = std::time::Instant::now() + pause;
        while std::time::Instant::now() < until && !o.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50).min(pause));
        }
    }
}
