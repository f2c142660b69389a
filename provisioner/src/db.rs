//! The node database: SQLite in WAL mode, keyed by MAC address. Every change
//! validates first and writes in one immediate transaction, so bad input and
//! crashes leave the database as it was. A writer that finds the database
//! busy waits for the busy timeout, then fails with [`Error::Locked`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::config::Defaults;
use crate::error::{Error, Result};
use crate::images::Images;
use crate::ipaddr::{self, IpEntry};
use crate::mac::Mac;
use crate::naming::Namer;
use crate::node::{Field, Node, Value};
use crate::schema;
use crate::select::Selector;

/// How long a writer waits for another process's lock by default.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// An open node database.
pub struct NodeDb {
    pub(crate) conn: Connection,
    path: PathBuf,
    pub(crate) timeout: Duration,
}

/// A node to add, as an importer or `node add` describes it; what is `None`
/// comes from defaults.conf.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewNode {
    /// The NodeID.
    pub mac: Option<Mac>,
    /// Host name; `None`: the next free name from the template.
    pub hostname: Option<String>,
    /// Group; `None`: the default group.
    pub group: Option<String>,
    /// VNFS; `None`: the default VNFS.
    pub vnfs: Option<String>,
    /// Description.
    pub desc: Option<String>,
    /// Static addresses.
    pub ipaddr: Vec<IpEntry>,
    /// Free-form attributes.
    pub attributes: BTreeMap<String, String>,
}

/// What a change did, and what the user should be warned about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The nodes changed (after the change), sorted for display.
    pub nodes: Vec<Node>,
    /// Warnings (duplicate hostnames, unknown default VNFS, ...).
    pub warnings: Vec<String>,
}

/// A group as derived from its members.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GroupInfo {
    /// Group name.
    pub name: String,
    /// Member host names, sorted.
    pub members: Vec<String>,
    /// How many members are enabled.
    pub enabled: usize,
    /// VNFS images used by members, with counts.
    pub vnfs: BTreeMap<String, usize>,
}

/// One module activation: a module and the provisionary state it runs in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct ActivationRow {
    /// Module name.
    pub module: String,
    /// State string as given (`init/all`, `ready/group/compute`, ...).
    pub state: String,
}

impl NodeDb {
    /// Opens (creating if needed) the database at `path` with the default
    /// busy timeout, and brings its schema up to date.
    pub fn open(path: &Path) -> Result<NodeDb> {
        NodeDb::open_with_timeout(path, DEFAULT_BUSY_TIMEOUT)
    }

    /// [`NodeDb::open`] with an explicit busy timeout.
    pub fn open_with_timeout(path: &Path, timeout: Duration) -> Result<NodeDb> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(crate::error::io(dir))?;
        }
        let db_err = |source| Error::Db {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(db_err)?;
        conn.busy_timeout(timeout).map_err(db_err)?;
        let mut db_ = NodeDb {
            conn,
            path: path.to_path_buf(),
            timeout,
        };
        db_.setup()?;
        Ok(db_)
    }

    fn setup(&mut self) -> Result<()> {
        let path = self.path.clone();
        let timeout = self.timeout;
        let map = move |e: rusqlite::Error| map_err(&path, timeout, e);
        // journal_mode returns a row, so it is queried rather than executed.
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(&map)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!("{}: journal mode is {mode}, not WAL", self.path.display());
        }
        self.conn
            .execute_batch("PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL;")
            .map_err(&map)?;
        let found = schema::version(&self.conn).map_err(&map)?;
        if found > schema::latest() {
            return Err(Error::SchemaTooNew {
                path: self.path.clone(),
                found,
                known: schema::latest(),
            });
        }
        if found < schema::latest() {
            schema::migrate(&mut self.conn, found).map_err(&map)?;
        }
        Ok(())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version on disk.
    pub fn schema_version(&self) -> Result<i64> {
        schema::version(&self.conn).map_err(|e| self.err(e))
    }

    pub(crate) fn err(&self, e: rusqlite::Error) -> Error {
        map_err(&self.path, self.timeout, e)
    }

    /// The nodes whose `vnfs` is `image`, in [`NodeDb::nodes`] order.
    pub fn nodes_using_image(&self, image: &str) -> Result<Vec<Node>> {
        // Reading every node costs milliseconds at 10,000 nodes, and keeps
        // one place (nodes()) that turns rows into nodes.
        Ok(self
            .nodes()?
            .into_iter()
            .filter(|n| n.vnfs == image)
            .collect())
    }

    /// Every node, sorted by hostname (natural order) then NodeID.
    pub fn nodes(&self) -> Result<Vec<Node>> {
        let mut attrs: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        {
            let mut st = self
                .conn
                .prepare_cached("SELECT nodeid, key, value FROM attributes")
                .map_err(|e| self.err(e))?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .map_err(|e| self.err(e))?;
            for row in rows {
                let (id, k, v) = row.map_err(|e| self.err(e))?;
                attrs.entry(id).or_default().insert(k, v);
            }
        }
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT nodeid, hostname, grp, vnfs, enabled, debug, descr, ipaddr, state, last_addr, last_contact FROM nodes",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, String>(8)?,
                    r.get::<_, String>(9)?,
                    r.get::<_, Option<i64>>(10)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (
                id,
                hostname,
                group,
                vnfs,
                enabled,
                debug,
                desc,
                ip,
                state,
                last_addr,
                last_contact,
            ) = row.map_err(|e| self.err(e))?;
            // Rows are only written through validated paths; a bad one means
            // the file was edited by hand, which deserves a named error.
            let nodeid = Mac::parse(&id).map_err(|_| {
                Error::Config(format!(
                    "{}: node row with malformed nodeid '{id}'",
                    self.path.display()
                ))
            })?;
            let ipaddr = ipaddr::parse_list(&ip).map_err(|r| {
                Error::Config(format!(
                    "{}: node {hostname}: ipaddr: {r}",
                    self.path.display()
                ))
            })?;
            out.push(Node {
                attributes: attrs.remove(&id).unwrap_or_default(),
                nodeid,
                hostname,
                group,
                vnfs,
                enabled: enabled != 0,
                debug: u32::try_from(debug).unwrap_or(0),
                desc,
                ipaddr,
                state,
                last_addr,
                last_contact,
            });
        }
        out.sort_by(Node::display_cmp);
        Ok(out)
    }

    /// The nodes a selector names. With `strict`, a pattern that matches no
    /// node is an error (commands that change nodes use this, so a typo
    /// never passes silently).
    pub fn select(&self, sel: &Selector, strict: bool) -> Result<Vec<Node>> {
        let all = self.nodes()?;
        sel.apply(all, strict)
    }

    /// Looks a node up by NodeID.
    pub fn get(&self, mac: Mac) -> Result<Option<Node>> {
        Ok(self.nodes()?.into_iter().find(|n| n.nodeid == mac))
    }

    /// Adds nodes by MAC address, named and configured from `defaults`.
    pub fn add(&mut self, macs: &[Mac], defaults: &Defaults, images: &Images) -> Result<Outcome> {
        let recs: Vec<NewNode> = macs
            .iter()
            .map(|m| NewNode {
                mac: Some(*m),
                ..NewNode::default()
            })
            .collect();
        self.add_records(&recs, defaults, images)
    }

    /// Adds nodes described by an importer or by `node add`. All are added
    /// or none: a duplicate MAC or a bad value aborts the whole request.
    pub fn add_records(
        &mut self,
        recs: &[NewNode],
        defaults: &Defaults,
        images: &Images,
    ) -> Result<Outcome> {
        let namer = Namer::new(defaults)?;
        let existing = self.nodes()?;
        let by_mac: HashMap<Mac, &Node> = existing.iter().map(|n| (n.nodeid, n)).collect();
        let mut taken: HashSet<String> = existing.iter().map(|n| n.hostname.clone()).collect();
        let mut seen = HashSet::new();
        let mut warnings = Vec::new();
        if !defaults.vnfs.is_empty() && !images.contains(&defaults.vnfs) {
            warnings.push(format!(
                "defaults.conf names VNFS '{}', which is not in the store; new nodes get no VNFS",
                defaults.vnfs
            ));
        }
        let mut next = defaults.first_node;
        let mut rows = Vec::with_capacity(recs.len());
        for r in recs {
            let mac = r
                .mac
                .ok_or_else(|| Error::Config("a node to add has no MAC address".into()))?;
            if let Some(n) = by_mac.get(&mac) {
                return Err(Error::DuplicateMac {
                    mac: mac.to_string(),
                    hostname: n.hostname.clone(),
                });
            }
            if !seen.insert(mac) {
                return Err(Error::RepeatedMac(mac.to_string()));
            }
            let hostname = match &r.hostname {
                Some(h) => {
                    Field::Hostname.validate(h, images)?;
                    if !taken.insert(h.clone()) {
                        warnings.push(format!(
                            "hostname '{h}' ({mac}) is already used by another node; address them with -i/--nodeid MAC"
                        ));
                    }
                    h.clone()
                }
                None => namer.next_free(&mut taken, &mut next)?,
            };
            let group = r.group.clone().unwrap_or_else(|| defaults.group.clone());
            Field::Group.validate(&group, images)?;
            let vnfs = match &r.vnfs {
                Some(v) if !v.is_empty() && !images.contains(v) => {
                    warnings.push(format!(
                        "{hostname}: VNFS '{v}' is not in the store; left unset"
                    ));
                    String::new()
                }
                Some(v) => v.clone(),
                None if images.contains(&defaults.vnfs) => defaults.vnfs.clone(),
                None => String::new(),
            };
            let desc = r.desc.clone().unwrap_or_default();
            Field::Desc.validate(&desc, images)?;
            for (k, v) in &r.attributes {
                Field::parse(&format!("attr.{k}"))?.validate(v, images)?;
            }
            rows.push((mac, hostname, group, vnfs, desc, r));
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| map_err(&self.path, self.timeout, e))?;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO nodes (nodeid, hostname, grp, vnfs, enabled, descr, ipaddr) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(|e| map_err(&self.path, self.timeout, e))?;
            let mut ins_attr = tx
                .prepare_cached("INSERT INTO attributes (nodeid, key, value) VALUES (?1, ?2, ?3)")
                .map_err(|e| map_err(&self.path, self.timeout, e))?;
            for (mac, hostname, group, vnfs, desc, r) in &rows {
                let id = mac.to_string();
                ins.execute(params![
                    id,
                    hostname,
                    group,
                    vnfs,
                    i64::from(defaults.enabled),
                    desc,
                    ipaddr::format_list(&r.ipaddr)
                ])
                .map_err(|e| map_err(&self.path, self.timeout, e))?;
                for (k, v) in &r.attributes {
                    ins_attr
                        .execute(params![id, k, v])
                        .map_err(|e| map_err(&self.path, self.timeout, e))?;
                }
            }
        }
        tx.commit()
            .map_err(|e| map_err(&self.path, self.timeout, e))?;
        let added: HashSet<Mac> = rows.iter().map(|r| r.0).collect();
        let mut nodes: Vec<Node> = self
            .nodes()?
            .into_iter()
            .filter(|n| added.contains(&n.nodeid))
            .collect();
        nodes.sort_by(Node::display_cmp);
        Ok(Outcome { nodes, warnings })
    }

    /// Sets one field on every selected node (`node set FIELD VALUE NODES`).
    pub fn set(
        &mut self,
        sel: &Selector,
        field: &Field,
        value: &str,
        images: &Images,
    ) -> Result<Outcome> {
        let value = field.validate(value, images)?;
        let targets = self.select(sel, true)?;
        self.set_on(&targets, field, &value)
    }

    fn set_on(&mut self, targets: &[Node], field: &Field, value: &Value) -> Result<Outcome> {
        let (path, timeout) = (self.path.clone(), self.timeout);
        let m = |e| map_err(&path, timeout, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(m)?;
        {
            let sql = match field {
                Field::Hostname => "UPDATE nodes SET hostname = ?2 WHERE nodeid = ?1",
                Field::Group => "UPDATE nodes SET grp = ?2 WHERE nodeid = ?1",
                Field::Vnfs => "UPDATE nodes SET vnfs = ?2 WHERE nodeid = ?1",
                Field::Enabled => "UPDATE nodes SET enabled = ?2 WHERE nodeid = ?1",
                Field::Debug => "UPDATE nodes SET debug = ?2 WHERE nodeid = ?1",
                Field::Desc => "UPDATE nodes SET descr = ?2 WHERE nodeid = ?1",
                Field::Ipaddr => "UPDATE nodes SET ipaddr = ?2 WHERE nodeid = ?1",
                Field::Attr(_) => match value {
                    Value::Text(t) if t.is_empty() => {
                        "DELETE FROM attributes WHERE nodeid = ?1 AND key = ?3"
                    }
                    _ => {
                        "INSERT INTO attributes (nodeid, key, value) VALUES (?1, ?3, ?2)
                          ON CONFLICT (nodeid, key) DO UPDATE SET value = excluded.value"
                    }
                },
            };
            let mut st = tx.prepare_cached(sql).map_err(m)?;
            let key = match field {
                Field::Attr(a) => a.clone(),
                _ => String::new(),
            };
            for n in targets {
                let id = n.nodeid.to_string();
                let uses_key = matches!(field, Field::Attr(_));
                let v: rusqlite::types::Value = match value {
                    Value::Text(t) => t.clone().into(),
                    Value::Bool(b) => i64::from(*b).into(),
                    Value::Number(x) => i64::from(*x).into(),
                    Value::Addrs(a) => ipaddr::format_list(a).into(),
                };
                if uses_key {
                    if matches!(value, Value::Text(t) if t.is_empty()) {
                        st.execute(params![id, rusqlite::types::Null, key])
                            .map_err(m)?;
                    } else {
                        st.execute(params![id, v, key]).map_err(m)?;
                    }
                } else {
                    st.execute(params![id, v]).map_err(m)?;
                }
            }
        }
        tx.commit().map_err(m)?;
        let ids: HashSet<Mac> = targets.iter().map(|n| n.nodeid).collect();
        let all = self.nodes()?;
        let mut warnings = Vec::new();
        if let (Field::Hostname, Value::Text(h)) = (field, value) {
            let holders: Vec<&Node> = all.iter().filter(|n| &n.hostname == h).collect();
            if holders.len() > 1 {
                let macs: Vec<String> = holders.iter().map(|n| n.nodeid.to_string()).collect();
                warnings.push(format!(
                    "hostname '{h}' is now shared by {} nodes ({}); the name no longer identifies one node, address them with -i/--nodeid MAC",
                    holders.len(),
                    macs.join(", ")
                ));
            }
        }
        Ok(Outcome {
            nodes: all
                .into_iter()
                .filter(|n| ids.contains(&n.nodeid))
                .collect(),
            warnings,
        })
    }

    /// Deletes the selected nodes; returns them.
    pub fn delete(&mut self, sel: &Selector) -> Result<Vec<Node>> {
        let targets = self.select(sel, true)?;
        let (path, timeout) = (self.path.clone(), self.timeout);
        let m = |e| map_err(&path, timeout, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(m)?;
        {
            let mut st = tx
                .prepare_cached("DELETE FROM nodes WHERE nodeid = ?1")
                .map_err(m)?;
            for n in &targets {
                st.execute(params![n.nodeid.to_string()]).map_err(m)?;
            }
        }
        tx.commit().map_err(m)?;
        Ok(targets)
    }

    /// `node replace OLD NEW`: NEW's hardware takes OLD's identity and every
    /// setting (hostname, group, vnfs, enabled, debug, desc, ipaddr,
    /// attributes); OLD's record is removed. NEW keeps its own check-in
    /// state, which belongs to the hardware.
    pub fn replace(&mut self, old: &Selector, new: &Selector) -> Result<Node> {
        let old_n = one(self.select(old, true)?, old)?;
        let new_n = one(self.select(new, true)?, new)?;
        if old_n.nodeid == new_n.nodeid {
            return Err(Error::Config(format!(
                "cannot replace node {} ({}) with itself",
                old_n.hostname, old_n.nodeid
            )));
        }
        let (path, timeout) = (self.path.clone(), self.timeout);
        let m = |e| map_err(&path, timeout, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(m)?;
        let (o, n) = (old_n.nodeid.to_string(), new_n.nodeid.to_string());
        tx.execute("DELETE FROM attributes WHERE nodeid = ?1", params![n])
            .map_err(m)?;
        tx.execute(
            "UPDATE attributes SET nodeid = ?2 WHERE nodeid = ?1",
            params![o, n],
        )
        .map_err(m)?;
        tx.execute(
            "UPDATE nodes SET (hostname, grp, vnfs, enabled, debug, descr, ipaddr) =
               (SELECT hostname, grp, vnfs, enabled, debug, descr, ipaddr FROM nodes WHERE nodeid = ?1)
             WHERE nodeid = ?2",
            params![o, n],
        )
        .map_err(m)?;
        tx.execute("DELETE FROM nodes WHERE nodeid = ?1", params![o])
            .map_err(m)?;
        tx.commit().map_err(m)?;
        self.get(new_n.nodeid)?
            .ok_or_else(|| Error::UnknownNode(new_n.nodeid.to_string()))
    }

    /// Groups, derived from the nodes that name them, sorted by name.
    pub fn groups(&self) -> Result<Vec<GroupInfo>> {
        let mut map: BTreeMap<String, GroupInfo> = BTreeMap::new();
        for n in self.nodes()? {
            let g = map.entry(n.group.clone()).or_insert_with(|| GroupInfo {
                name: n.group.clone(),
                members: Vec::new(),
                enabled: 0,
                vnfs: BTreeMap::new(),
            });
            g.members.push(n.hostname.clone());
            g.enabled += usize::from(n.enabled);
            *g.vnfs.entry(n.vnfs.clone()).or_default() += 1;
        }
        Ok(map.into_values().filter(|g| !g.name.is_empty()).collect())
    }

    /// `group set FIELD VALUE GROUPS`: sets the field on every member of the
    /// groups the patterns match. A pattern matching no group is an error.
    pub fn group_set(
        &mut self,
        groups: &crate::pattern::PatternSet,
        field: &Field,
        value: &str,
        images: &Images,
    ) -> Result<Outcome> {
        let value = field.validate(value, images)?;
        let all = self.nodes()?;
        for p in &groups.0 {
            if !all
                .iter()
                .any(|n| !n.group.is_empty() && p.matches(&n.group))
            {
                return Err(Error::Config(format!("no group matches '{}'", p.as_str())));
            }
        }
        let targets: Vec<Node> = all
            .into_iter()
            .filter(|n| !n.group.is_empty() && groups.matches(&n.group))
            .collect();
        self.set_on(&targets, field, &value)
    }

    /// Records a check-in: the daemon calls this when a node reports a
    /// provisionary state.
    pub fn record_contact(
        &mut self,
        mac: Mac,
        state: &str,
        addr: &str,
        unix_time: i64,
    ) -> Result<()> {
        let changed = self
            .conn
            .execute(
                "UPDATE nodes SET state = ?2, last_addr = ?3, last_contact = ?4 WHERE nodeid = ?1",
                params![mac.to_string(), state, addr, unix_time],
            )
            .map_err(|e| self.err(e))?;
        if changed == 0 {
            return Err(Error::UnknownNode(mac.to_string()));
        }
        Ok(())
    }

    /// All module activations, sorted.
    pub fn activations(&self) -> Result<Vec<ActivationRow>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT module, state FROM activations ORDER BY module, state")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                Ok(ActivationRow {
                    module: r.get(0)?,
                    state: r.get(1)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    /// Records activations of `module` (already validated by the caller).
    pub fn activate(&mut self, module: &str, states: &[String]) -> Result<()> {
        let (path, timeout) = (self.path.clone(), self.timeout);
        let m = |e| map_err(&path, timeout, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(m)?;
        for s in states {
            tx.execute(
                "INSERT OR IGNORE INTO activations (module, state) VALUES (?1, ?2)",
                params![module, s],
            )
            .map_err(m)?;
        }
        tx.commit().map_err(m)
    }

    /// Removes activations of `module`: the given states, or all of them.
    /// Returns how many were removed.
    pub fn deactivate(&mut self, module: &str, states: &[String]) -> Result<usize> {
        let (path, timeout) = (self.path.clone(), self.timeout);
        let m = |e| map_err(&path, timeout, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(m)?;
        let mut n = 0;
        if states.is_empty() {
            n += tx
                .execute("DELETE FROM activations WHERE module = ?1", params![module])
                .map_err(m)?;
        }
        for s in states {
            n += tx
                .execute(
                    "DELETE FROM activations WHERE module = ?1 AND state = ?2",
                    params![module, s],
                )
                .map_err(m)?;
        }
        tx.commit().map_err(m)?;
        Ok(n)
    }

    /// How many nodes there are (cheap, for summaries).
    pub fn count(&self) -> Result<usize> {
        let n: Option<i64> = self
            .conn
            .query_row("SELECT count(*) FROM nodes", [], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(n.unwrap_or(0) as usize)
    }
}

fn one(mut nodes: Vec<Node>, sel: &Selector) -> Result<Node> {
    if nodes.len() != 1 {
        return Err(Error::NotOneNode {
            pattern: sel.describe(),
            count: nodes.len(),
        });
    }
    nodes.pop().ok_or_else(|| Error::NoMatch(sel.describe()))
}

/// Turns SQLite's busy/locked failures into [`Error::Locked`].
pub(crate) fn map_err(path: &Path, timeout: Duration, e: rusqlite::Error) -> Error {
    if let rusqlite::Error::SqliteFailure(f, _) = &e
        && matches!(
            f.code,
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
        )
    {
        return Error::Locked {
            path: path.to_path_buf(),
            waited_ms: timeout.as_millis() as u64,
        };
    }
    Error::Db {
        path: path.to_path_buf(),
        source: e,
    }
}
