//! Node check-in (`POST /v1/checkin`) and livesync reports
//! (`POST /v1/livesync/{mac}`).
//!
//! A check-in records the state, address, time and running commit; an
//! unknown MAC is added with defaults.conf, as Perceus did. A disabled node
//! or one without an image gets a 403 with a sentence it can print. The
//! reply carries the nodescript for the state, the image's newest commit,
//! the export root for hybridized paths, and a pending livesync order.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use vnfs_node::imageconf::ImageConfig;
use vnfs_node::proto::{CheckinReply, CheckinRequest, LivesyncOrder, LivesyncReport, Refusal};
use vnfs_store::ObjectId;

use super::{Daemon, lock};
use crate::mac::Mac;
use crate::nodescript::{self, ScriptContext};
use crate::state::validate_state_name;

/// A refusal with its HTTP status.
pub struct Refused(pub StatusCode, pub Refusal);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

fn refuse(status: StatusCode, reason: &str, error: String) -> Refused {
    Refused(
        status,
        Refusal {
            reason: reason.to_string(),
            error,
        },
    )
}

fn internal(e: impl std::fmt::Display) -> Refused {
    tracing::error!("check-in: {e}");
    refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Constant-time comparison, so the secret does not leak through timing.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// `POST /v1/checkin`.
pub async fn checkin(
    State(d): State<Arc<Daemon>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    let req: CheckinRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "bad-request",
                format!("malformed check-in: {e}"),
            )
            .into_response();
        }
    };
    if let Some(want) = &d.options.secret
        && !req.secret.as_deref().is_some_and(|s| same_secret(s, want))
    {
        tracing::warn!(mac = %req.mac, peer = %peer, "check-in with a wrong or missing secret");
        return refuse(
            StatusCode::FORBIDDEN,
            "bad-secret",
            "the shared secret is missing or wrong".into(),
        )
        .into_response();
    }
    let d2 = d.clone();
    match tokio::task::spawn_blocking(move || handle(&d2, &req, peer)).await {
        Ok(Ok(reply)) => Json(reply).into_response(),
        Ok(Err(r)) => r.into_response(),
        Err(e) => internal(e).into_response(),
    }
}

/// The check-in itself (on the blocking pool: SQLite, the store, scripts).
pub fn handle(d: &Daemon, req: &CheckinRequest, peer: SocketAddr) -> Result<CheckinReply, Refused> {
    let mac = Mac::parse(&req.mac)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, "bad-request", e.to_string()))?;
    validate_state_name(&req.state)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, "bad-request", e.to_string()))?;
    if !req.commit.is_empty() && ObjectId::from_hex(&req.commit).is_none() {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "bad-request",
            format!("'{}' is not a commit id", req.commit),
        ));
    }
    let mut images = d.images().map_err(internal)?;
    let (node, activations, pending) = {
        let mut db = lock(&d.db);
        let node = match db.get(mac).map_err(internal)? {
            Some(n) => n,
            None => {
                let out = db
                    .add(&[mac], &d.site.defaults, &images)
                    .map_err(internal)?;
                for w in &out.warnings {
                    tracing::warn!(%mac, "{w}");
                }
                let n = out
                    .nodes
                    .into_iter()
                    .next()
                    .ok_or_else(|| internal(format!("node {mac} was not added")))?;
                tracing::info!(%mac, node = %n.hostname, "new node added with defaults.conf");
                n
            }
        };
        db.record_checkin(
            mac,
            &req.state,
            &peer.ip().to_string(),
            now(),
            &req.commit,
            &req.detail,
        )
        .map_err(internal)?;
        let activations = db.activations().map_err(internal)?;
        let mut pending = db.pending_livesync(mac).map_err(internal)?;
        if let Some(p) = &pending
            && p.commit == req.commit
        {
            // Already there (rebooted into it, say): nothing to order.
            let _ = db.finish_livesync(mac, p.id, true, "node already runs the commit", now());
            pending = None;
        }
        (node, activations, pending)
    };
    tracing::info!(
        %mac,
        node = %node.hostname,
        state = %req.state,
        commit = %req.commit.get(..12).unwrap_or(""),
        detail = %req.detail,
        "check-in"
    );
    if !node.enabled {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "disabled",
            format!(
                "node {} ({mac}) is disabled; enable it with `vnfs node set enabled 1 {}`",
                node.hostname, node.hostname
            ),
        ));
    }
    if node.vnfs.is_empty() {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "no-image",
            format!(
                "no VNFS image is set for node {} ({mac}); set one with `vnfs node set vnfs IMAGE {}`",
                node.hostname, node.hostname
            ),
        ));
    }
    if !images.contains(&node.vnfs) && d.reload_store() {
        images = d.images().map_err(internal)?;
    }
    let Some(commit_hex) = images.commit(&node.vnfs).map(str::to_string) else {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "no-image",
            format!(
                "node {} ({mac}) is set to VNFS '{}', which is not in the store",
                node.hostname, node.vnfs
            ),
        ));
    };
    let commit = ObjectId::from_hex(&commit_hex).ok_or_else(|| internal("bad ref"))?;
    prepare_export(d, &node.vnfs, &commit)?;
    let modules = d.site.modules();
    let ctx = ScriptContext {
        conf: &d.site.conf,
        images: &images,
        modules: &modules,
        activations: &activations,
        master_root: &d.options.master_root,
    };
    let script = nodescript::render(&ctx, &node, &req.state).map_err(internal)?;
    Ok(CheckinReply {
        hostname: node.hostname.clone(),
        image: node.vnfs.clone(),
        commit: commit_hex,
        script,
        interval_secs: d.options.interval_secs,
        export_root: d.export.root().to_string_lossy().into_owned(),
        livesync: pending.map(|p| LivesyncOrder {
            id: p.id,
            commit: p.commit,
        }),
    })
}

/// Checks the image's hybridize patterns and makes sure its export exists.
fn prepare_export(d: &Daemon, image: &str, commit: &ObjectId) -> Result<(), Refused> {
    let c = match d.store.read_commit(commit) {
        Ok(c) => c,
        Err(_) if d.reload_store() => d.store.read_commit(commit).map_err(internal)?,
        Err(e) => return Err(internal(e)),
    };
    let bad = |e: String| {
        refuse(
            StatusCode::FORBIDDEN,
            "bad-image",
            format!("image {image}: {e}"),
        )
    };
    let conf = ImageConfig::from_metadata(&c.metadata).map_err(|e| bad(e.to_string()))?;
    let globs = conf
        .hybridize_globs(&d.site.home.to_string_lossy())
        .map_err(|e| bad(e.to_string()))?;
    if globs.is_empty() || d.export.version_dir(commit).is_dir() {
        return Ok(());
    }
    let _one_builder = lock(&d.export_lock);
    let stats = d
        .export
        .ensure(&d.store, commit, &globs)
        .map_err(internal)?;
    if !stats.existed {
        tracing::info!(
            image,
            commit = %commit.short(),
            files = stats.files,
            shared = stats.shared,
            written = stats.written_bytes,
            "export built"
        );
    }
    Ok(())
}

/// `POST /v1/livesync/{mac}`: a node's report on a livesync order.
pub async fn livesync_report(
    State(d): State<Arc<Daemon>>,
    Path(mac): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(mac) = Mac::parse(&mac) else {
        return (StatusCode::BAD_REQUEST, "malformed MAC address\n").into_response();
    };
    let report: LivesyncReport = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let d2 = d.clone();
    let r = tokio::task::spawn_blocking(move || {
        let text = serde_json::to_string(&report).unwrap_or_default();
        let mut db = lock(&d2.db);
        if report.ok && !report.commit.is_empty() {
            // The node runs the new commit now, whatever it checks in with next.
            let _ = db.set_running(mac, &report.commit);
        }
        db.finish_livesync(mac, report.id, report.ok, &text, now())
            .map(|found| (found, report))
    })
    .await;
    match r {
        Ok(Ok((true, report))) => {
            tracing::info!(
                %mac,
                id = report.id,
                ok = report.ok,
                written = report.written,
                removed = report.removed,
                skipped = report.skipped,
                bytes = report.bytes,
                error = %report.error,
                "livesync report"
            );
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Ok((false, _))) => {
            (StatusCode::NOT_FOUND, "no such open livesync request\n").into_response()
        }
        Ok(Err(e)) => internal(e).into_response(),
        Err(e) => internal(e).into_response(),
    }
}
