//! Nodescripts: the shell script the daemon sends a node that checks in at a
//! provisionary state. It sets the node's variables, then runs each module
//! activated for that node and state, in (order, name) order, each in its
//! own subshell with `set -e`, stopping at the first module that fails
//! (exit status 1).
//!
//! Variables every module sees: `NODE_ID`, `NODE_HOSTNAME`, `NODE_GROUP`,
//! `NODE_VNFS`, `NODE_VNFS_COMMIT`, `NODE_ENABLED`, `NODE_DEBUG`,
//! `NODE_DESC`, `NODE_IPADDR`, `NODE_STATE`, `NODE_CONFIG_HASH`,
//! `NODE_ATTR_<NAME>` (one per attribute, name upper-cased, other characters
//! `_`), `MASTER_IPADDR`, `MASTER_PORT`, `DOMAIN`, and `DESTDIR` (the root to
//! configure: `/` unless the caller sets it, as the init stage does for the
//! image it is about to boot). A debug level above [`TRACE_DEBUG_LEVEL`]
//! turns on `set -x`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use crate::config::VnfsConf;
use crate::db::ActivationRow;
use crate::error::{Error, Result, io};
use crate::images::Images;
use crate::ipaddr;
use crate::module::{Module, ModuleStore};
use crate::node::Node;
use crate::state::{StateSpec, validate_state_name};

/// Debug levels above this turn on shell tracing (`set -x`).
pub const TRACE_DEBUG_LEVEL: u32 = 2;

/// Exit status of a nodescript telling the node to check in again later
/// (node disabled, or no VNFS at init, or a VNFS the store no longer has).
pub const EXIT_RETRY: i32 = 75;

/// The provisionary states nodes use by default (Perceus: "only two states
/// are used by default"). Any other lower-case word is a custom state.
pub const STANDARD_STATES: &[&str] = &["init", "ready"];

/// Everything besides the node that goes into a nodescript.
pub struct ScriptContext<'a> {
    /// Master configuration.
    pub conf: &'a VnfsConf,
    /// Known images (for commit ids).
    pub images: &'a Images,
    /// Installed and built-in modules.
    pub modules: &'a ModuleStore,
    /// Recorded activations.
    pub activations: &'a [ActivationRow],
    /// Root of the master's filesystem for `master_file` payloads (`/`;
    /// tests point it at a scratch tree).
    pub master_root: &'a Path,
}

/// Quotes a string for POSIX sh (single quotes; `'` becomes `'\''`).
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A hash of every setting that decides how a node is provisioned; the
/// syncnodes module compares it to the one the node booted with.
pub fn config_hash(node: &Node, images: &Images) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "hostname={}", node.hostname);
    let _ = writeln!(s, "group={}", node.group);
    let _ = writeln!(s, "vnfs={}", node.vnfs);
    let _ = writeln!(s, "commit={}", images.commit(&node.vnfs).unwrap_or(""));
    let _ = writeln!(s, "enabled={}", node.enabled);
    let _ = writeln!(s, "ipaddr={}", ipaddr::format_list(&node.ipaddr));
    for (k, v) in &node.attributes {
        let _ = writeln!(s, "attr.{k}={v}");
    }
    blake3::hash(s.as_bytes()).to_hex().to_string()
}

/// The modules that run for `node` at `state`, in script order.
pub fn modules_for<'m>(
    node: &Node,
    state: &str,
    activations: &[ActivationRow],
    modules: &'m std::collections::BTreeMap<String, Module>,
) -> Result<Vec<(&'m Module, Vec<String>)>> {
    let mut hits: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for a in activations {
        let spec = StateSpec::parse(&a.state)?;
        if spec.applies(node, state) {
            hits.entry(a.module.as_str())
                .or_default()
                .push(a.state.clone());
        }
    }
    let mut out: Vec<(&Module, Vec<String>)> = Vec::new();
    for (name, why) in hits {
        match modules.get(name) {
            Some(m) if m.scripts.contains_key(state) => out.push((m, why)),
            Some(_) => {}
            None => tracing::warn!("module {name} is activated but not installed; skipped"),
        }
    }
    out.sort_by(|a, b| {
        a.0.manifest
            .order
            .cmp(&b.0.manifest.order)
            .then_with(|| a.0.name().cmp(b.0.name()))
    });
    Ok(out)
}

/// What a person asking for the nodescript of `node` at `state` should be
/// told beside the script: a custom state no module is active for (the
/// script then only sets variables, which is legal but usually a typo), and
/// an init script that only tells the node to wait because its image is not
/// in the store.
pub fn warnings(ctx: &ScriptContext<'_>, node: &Node, state: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    if validate_state_name(state).is_err() {
        // render() reports the bad name; nothing to add here.
        return Ok(out);
    }
    if !STANDARD_STATES.contains(&state) {
        let all = ctx.modules.list()?;
        if modules_for(node, state, ctx.activations, &all)?.is_empty() {
            let elsewhere: BTreeSet<&str> = ctx
                .activations
                .iter()
                .filter(|a| StateSpec::parse(&a.state).is_ok_and(|sp| sp.state == state))
                .map(|a| a.module.as_str())
                .collect();
            let hint = if elsewhere.is_empty() {
                format!(
                    "no module is activated for '{state}' at all (typo? standard states: {}; \
                     activate one with `vnfs module activate MODULE {state}/all`)",
                    STANDARD_STATES.join(", ")
                )
            } else {
                format!(
                    "modules active for '{state}' on other nodes: {}",
                    elsewhere.into_iter().collect::<Vec<_>>().join(", ")
                )
            };
            out.push(format!(
                "no module runs for node {} at custom state '{state}', so its script only sets variables; {hint}",
                node.hostname
            ));
        }
    }
    if state == "init" && node.enabled && !node.vnfs.is_empty() && !ctx.images.contains(&node.vnfs)
    {
        out.push(format!(
            "node {} is set to VNFS '{}', which is not in the store; its init script tells it to check in later (exit {EXIT_RETRY}); \
             set another image with `vnfs node set vnfs IMAGE {}`",
            node.hostname, node.vnfs, node.hostname
        ));
    }
    Ok(out)
}

/// Reads the payload files of a module for a node.
fn payload_value(
    ctx: &ScriptContext<'_>,
    m: &Module,
    p: &crate::module::Payload,
    node: &Node,
) -> Result<String> {
    if let Some(f) = &p.master_file {
        let path = ctx.master_root.join(f.trim_start_matches('/'));
        return std::fs::read_to_string(&path).map_err(io(&path));
    }
    let base = ctx
        .modules
        .config_of(m.name())
        .join(p.layered.as_deref().unwrap_or(""));
    let mut parts = vec![base.join("all")];
    if !node.group.is_empty() {
        parts.push(base.join("group").join(&node.group));
    }
    if !node.vnfs.is_empty() {
        parts.push(base.join("vnfs").join(&node.vnfs));
    }
    parts.push(base.join("node").join(&node.hostname));
    let mut out = String::new();
    for part in parts {
        match std::fs::read_to_string(&part) {
            Ok(t) => {
                out.push_str(&t);
                if !t.is_empty() && !t.ends_with('\n') {
                    out.push('\n');
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&part)(e)),
        }
    }
    Ok(out)
}

fn attr_var(k: &str) -> String {
    k.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Renders the nodescript for `node` checking in at `state`.
pub fn render(ctx: &ScriptContext<'_>, node: &Node, state: &str) -> Result<String> {
    validate_state_name(state).map_err(|_| Error::BadState {
        state: state.to_string(),
        reason: "a provisionary state is a lower-case word such as init or ready".into(),
    })?;
    let all = ctx.modules.list()?;
    let chosen = modules_for(node, state, ctx.activations, &all)?;
    let mut s = String::new();
    let _ = writeln!(s, "#!/bin/sh");
    let _ = writeln!(
        s,
        "# vnfs nodescript: node {} ({}) at state {state}",
        node.hostname, node.nodeid
    );
    let names: Vec<&str> = chosen.iter().map(|(m, _)| m.name()).collect();
    let _ = writeln!(
        s,
        "# modules: {}",
        if names.is_empty() {
            "(none)".to_string()
        } else {
            names.join(" ")
        }
    );
    let _ = writeln!(s, "set -e");
    let vars: Vec<(String, String)> = {
        let mut v = vec![
            ("NODE_ID".to_string(), node.nodeid.to_string()),
            ("NODE_HOSTNAME".to_string(), node.hostname.clone()),
            ("NODE_GROUP".to_string(), node.group.clone()),
            ("NODE_VNFS".to_string(), node.vnfs.clone()),
            (
                "NODE_VNFS_COMMIT".to_string(),
                ctx.images.commit(&node.vnfs).unwrap_or("").to_string(),
            ),
            (
                "NODE_ENABLED".to_string(),
                u8::from(node.enabled).to_string(),
            ),
            ("NODE_DEBUG".to_string(), node.debug.to_string()),
            ("NODE_DESC".to_string(), node.desc.clone()),
            ("NODE_IPADDR".to_string(), ipaddr::format_list(&node.ipaddr)),
            ("NODE_STATE".to_string(), state.to_string()),
            (
                "NODE_CONFIG_HASH".to_string(),
                config_hash(node, ctx.images),
            ),
            (
                "MASTER_IPADDR".to_string(),
                ctx.conf.master_address.to_string(),
            ),
            ("MASTER_PORT".to_string(), ctx.conf.daemon_port.to_string()),
            ("DOMAIN".to_string(), ctx.conf.domain.clone()),
        ];
        let attrs: BTreeSet<(String, String)> = node
            .attributes
            .iter()
            .map(|(k, val)| (format!("NODE_ATTR_{}", attr_var(k)), val.clone()))
            .collect();
        v.extend(attrs);
        v
    };
    for (k, v) in &vars {
        let _ = writeln!(s, "{k}={}", sh_quote(v));
    }
    let _ = writeln!(s, "DESTDIR=\"${{DESTDIR:-/}}\"");
    let names: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
    let _ = writeln!(s, "export {} DESTDIR", names.join(" "));
    if node.debug > TRACE_DEBUG_LEVEL {
        let _ = writeln!(s, "set -x");
    }
    if state == "init" && !node.enabled {
        let _ = writeln!(
            s,
            "echo \"vnfs: node $NODE_HOSTNAME is not enabled; waiting\" >&2"
        );
        let _ = writeln!(s, "exit {EXIT_RETRY}");
        return Ok(s);
    }
    if state == "init" && node.vnfs.is_empty() {
        let _ = writeln!(
            s,
            "echo \"vnfs: no VNFS image defined for node $NODE_HOSTNAME\" >&2"
        );
        let _ = writeln!(s, "exit {EXIT_RETRY}");
        return Ok(s);
    }
    // An image deleted after nodes were set to it leaves them pointing at
    // nothing: running the modules would configure a root that will never
    // be fetched, so the node is told to wait exactly as without an image.
    if state == "init" && !ctx.images.contains(&node.vnfs) {
        let _ = writeln!(
            s,
            "echo \"vnfs: VNFS image '$NODE_VNFS' of node $NODE_HOSTNAME is not in the master's store (deleted?)\" >&2"
        );
        let _ = writeln!(s, "exit {EXIT_RETRY}");
        return Ok(s);
    }
    for (m, why) in chosen {
        let _ = writeln!(s);
        let _ = writeln!(s, "# ---- module {} ({}) ----", m.name(), why.join(", "));
        // errexit is ignored inside a subshell whose status is tested (as
        // with `( ... ) || x`), so the status is read afterwards instead.
        let _ = writeln!(s, "set +e");
        let _ = writeln!(s, "(");
        let _ = writeln!(s, "set -e");
        for p in &m.manifest.payload {
            let value = payload_value(ctx, m, p, node)?;
            let _ = writeln!(s, "{}={}", p.var, sh_quote(&value));
        }
        let body = m.scripts.get(state).map(String::as_str).unwrap_or("");
        s.push_str(body);
        if !body.ends_with('\n') {
            s.push('\n');
        }
        let _ = writeln!(s, ")");
        let _ = writeln!(s, "vnfs_rc=$?");
        let _ = writeln!(s, "set -e");
        let _ = writeln!(
            s,
            "[ \"$vnfs_rc\" -eq 0 ] || {{ echo \"vnfs: module {} failed at state {state} (status $vnfs_rc)\" >&2; exit 1; }}",
            m.name()
        );
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
        assert_eq!(sh_quote(""), "''");
    }
}
