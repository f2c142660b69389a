//! Network boot: `GET /boot/{mac}` is the node's iPXE script (dnsmasq
//! chains iPXE clients to it, see `crate::dhcp`), and
//! `GET /boot/{mac}/kernel` and `/boot/{mac}/initrd` stream those files
//! out of the node's image, assembled from its chunks.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use vnfs_node::imageconf::ImageConfig;
use vnfs_store::{Entry, EntryKind, Extent, ObjectId, ObjectKind, Store, StoreError};

use super::{Daemon, lock};
use crate::export::lookup;
use crate::mac::Mac;

/// What a boot request is about: the node's image commit and config.
struct Target {
    hostname: String,
    commit: ObjectId,
    config: ImageConfig,
}

fn target(d: &Daemon, mac: &str) -> Result<Target, String> {
    let mac = Mac::parse(mac).map_err(|e| e.to_string())?;
    let node = lock(&d.db)
        .get(mac)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("node {mac} is unknown; it is added at its first check-in"))?;
    if !node.enabled {
        return Err(format!("node {} is disabled", node.hostname));
    }
    let images = d.images().map_err(|e| e.to_string())?;
    let commit = images
        .commit(&node.vnfs)
        .and_then(ObjectId::from_hex)
        .ok_or_else(|| format!("node {} has no VNFS image in the store", node.hostname))?;
    let c = match d.store.read_commit(&commit) {
        // A commit made since the daemon last read the pack indexes.
        Err(StoreError::Missing { .. }) if d.reload_store_now() => d.store.read_commit(&commit),
        r => r,
    }
    .map_err(|e| e.to_string())?;
    let config = ImageConfig::from_metadata(&c.metadata).map_err(|e| e.to_string())?;
    Ok(Target {
        hostname: node.hostname,
        commit,
        config,
    })
}

/// `GET /boot/{mac}`: an iPXE script that loads the kernel and initrd of
/// the node's image, or one that prints why it cannot and retries.
pub async fn script(State(d): State<Arc<Daemon>>, Path(mac): Path<String>) -> Response {
    let base = format!(
        "http://{}:{}",
        d.site.conf.master_address, d.site.conf.daemon_port
    );
    let d2 = d.clone();
    let mac2 = mac.clone();
    let t = tokio::task::spawn_blocking(move || target(&d2, &mac2)).await;
    let text = match t {
        Ok(Ok(t)) => format!(
            "#!ipxe\n\
             echo vnfs: booting {host} ({commit})\n\
             kernel {base}/boot/{mac}/kernel initrd=initrd {args} vnfs.master={base} vnfs.mac={mac}\n\
             initrd --name initrd {base}/boot/{mac}/initrd\n\
             boot\n",
            host = t.hostname,
            commit = t.commit.short(),
            args = t.config.kernel_args,
        ),
        Ok(Err(why)) => format!(
            "#!ipxe\necho vnfs: {}\necho vnfs: retrying in 30 seconds\nsleep 30\nchain {base}/boot/{mac}\n",
            why.replace('\n', " ")
        ),
        Err(e) => format!("#!ipxe\necho vnfs: internal error: {e}\nsleep 30\nreboot\n"),
    };
    ([(header::CONTENT_TYPE, "text/plain")], text).into_response()
}

/// Resolves `path` in the image, following symlinks inside it.
fn resolve(store: &Store, root: &ObjectId, path: &str) -> Result<Option<Entry>, String> {
    let mut p = path.trim_start_matches('/').to_string();
    for _ in 0..16 {
        let Some(e) = lookup(store, root, p.as_bytes()).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        match &e.kind {
            EntryKind::Symlink { target } => {
                let t = String::from_utf8_lossy(target).into_owned();
                p = if t.starts_with('/') {
                    t.trim_start_matches('/').to_string()
                } else {
                    let dir = p.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                    normalise(&format!("{dir}/{t}"))
                };
            }
            EntryKind::HardLink { target } => {
                p = String::from_utf8_lossy(target).into_owned();
            }
            _ => return Ok(Some(e)),
        }
    }
    Err(format!("{path}: too many levels of symbolic links"))
}

fn normalise(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

/// The kernel or initrd entry of an image: the configured path, else the
/// Debian-style links at the root, else the newest file in /boot.
fn boot_file(store: &Store, t: &Target, which: &str) -> Result<Entry, String> {
    let c = store.read_commit(&t.commit).map_err(|e| e.to_string())?;
    let (configured, link, prefix) = match which {
        "kernel" => (&t.config.kernel, "vmlinuz", "vmlinuz-"),
        _ => (&t.config.initrd, "initrd.img", "initrd.img-"),
    };
    let mut candidates: Vec<String> = Vec::new();
    if let Some(p) = configured {
        candidates.push(p.clone());
    } else {
        candidates.push(format!("/{link}"));
        candidates.push(format!("/boot/{link}"));
        if let Ok(Some(boot)) = lookup(store, &c.tree(), b"boot")
            && let EntryKind::Dir { tree } = boot.kind
            && let Ok(bt) = store.read_tree(&tree)
        {
            let mut names: Vec<String> = bt
                .entries
                .iter()
                .map(|e| String::from_utf8_lossy(&e.name).into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect();
            names.sort_by(|a, b| crate::node::natural_cmp(b, a));
            candidates.extend(names.into_iter().map(|n| format!("/boot/{n}")));
        }
    }
    for p in &candidates {
        if let Some(e) = resolve(store, &c.tree(), p)?
            && matches!(e.kind, EntryKind::File { .. })
        {
            return Ok(e);
        }
    }
    Err(format!(
        "image of {} has no {which} (looked for {})",
        t.hostname,
        candidates.join(", ")
    ))
}

/// `GET /boot/{mac}/kernel` and `/boot/{mac}/initrd`.
pub async fn file(
    State(d): State<Arc<Daemon>>,
    Path((mac, which)): Path<(String, String)>,
) -> Response {
    if which != "kernel" && which != "initrd" {
        return (StatusCode::NOT_FOUND, "only kernel and initrd\n").into_response();
    }
    let d2 = d.clone();
    let found = tokio::task::spawn_blocking(move || {
        let t = target(&d2, &mac)?;
        boot_file(&d2.store, &t, &which)
    })
    .await;
    let entry = match found {
        Ok(Ok(e)) => e,
        Ok(Err(why)) => return (StatusCode::NOT_FOUND, format!("{why}\n")).into_response(),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    };
    let EntryKind::File { size, extents } = entry.kind else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        for x in extents {
            let b = match x {
                Extent::Data { id, .. } => d
                    .store
                    .read_raw(&id, ObjectKind::Chunk)
                    .map(Bytes::from)
                    .map_err(std::io::Error::other),
                Extent::Hole { len } => Ok(Bytes::from(vec![0u8; len as usize])),
            };
            let stop = b.is_err();
            if tx.blocking_send(b).is_err() || stop {
                return;
            }
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    r
}
