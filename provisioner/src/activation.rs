//! `module activate|deactivate`: checks a module and its states before the
//! activation is recorded in the node database.

use crate::db::NodeDb;
use crate::error::{Error, Result};
use crate::module::ModuleStore;
use crate::state::{Scope, StateSpec};

/// Activates `module` for `states` (its default states when none are
/// given). Every state must parse and the module must have a script for
/// its base state; nothing is recorded otherwise. Returns the states
/// recorded, canonicalised.
pub fn activate(
    db: &mut NodeDb,
    store: &ModuleStore,
    module: &str,
    states: &[String],
) -> Result<Vec<String>> {
    let m = store.get(module)?;
    let wanted: Vec<String> = if states.is_empty() {
        if m.manifest.default_states.is_empty() {
            return Err(Error::Module {
                module: module.to_string(),
                reason: "has no default states; name one (e.g. init/all)".into(),
            });
        }
        m.manifest.default_states.clone()
    } else {
        states.to_vec()
    };
    let mut canon = Vec::new();
    for s in &wanted {
        let spec = StateSpec::parse(s)?;
        if !m.scripts.contains_key(&spec.state) {
            return Err(Error::Module {
                module: module.to_string(),
                reason: format!(
                    "has no script for state '{}' (it has: {})",
                    spec.state,
                    m.scripts.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            });
        }
        canon.push(spec.to_string());
    }
    canon.sort();
    canon.dedup();
    db.activate(module, &canon)?;
    Ok(canon)
}

/// Warnings for activation states whose node, group or VNFS pattern
/// matches no node in the database now.
///
/// Such an activation is kept, not refused: Perceus's own guide activates
/// modules for groups before any node is in them
/// (`init/group/anothergroup`), and nodes join at their first check-in,
/// named from defaults.conf, so a pattern may rightly wait for nodes that
/// do not exist yet. But a typo looks exactly the same, so the user is
/// told. `STATE/all` always applies and is never reported.
pub fn unmatched(db: &NodeDb, states: &[String]) -> Result<Vec<String>> {
    let nodes = db.nodes()?;
    let mut out = Vec::new();
    for s in states {
        let spec = StateSpec::parse(s)?;
        let what = match &spec.scope {
            Scope::All => continue,
            Scope::Group(p) => format!("no node is in a group matching '{}'", p.as_str()),
            Scope::Vnfs(p) => format!("no node is set to a VNFS matching '{}'", p.as_str()),
            Scope::Node(p) => format!("no node's name or NodeID matches '{}'", p.as_str()),
        };
        if !nodes.iter().any(|n| spec.applies(n, &spec.state)) {
            out.push(format!(
                "{spec}: {what} yet; the activation is kept and applies to nodes that match later"
            ));
        }
    }
    Ok(out)
}

/// Deactivates `module` for `states`, or everywhere when none are given.
/// A state that was not active is an error (nothing is changed).
pub fn deactivate(db: &mut NodeDb, module: &str, states: &[String]) -> Result<usize> {
    let active: Vec<String> = db
        .activations()?
        .into_iter()
        .filter(|a| a.module == module)
        .map(|a| a.state)
        .collect();
    if active.is_empty() {
        return Err(Error::Module {
            module: module.to_string(),
            reason: "is not active".into(),
        });
    }
    let mut canon = Vec::new();
    for s in states {
        let c = StateSpec::parse(s)?.to_string();
        if !active.contains(&c) {
            return Err(Error::Module {
                module: module.to_string(),
                reason: format!("is not active for {c} (active: {})", active.join(", ")),
            });
        }
        canon.push(c);
    }
    db.deactivate(module, &canon)
}
