//! The node database schema and its migrations. `PRAGMA user_version` holds
//! the number of migrations applied; each runs in its own transaction, so a
//! database is always at one version or the next, never in between.

use rusqlite::Connection;

/// Migrations in order; index + 1 is the schema version they produce.
/// Append only: never edit a migration that has shipped.
pub const MIGRATIONS: &[&str] = &[
    // 1: nodes keyed by MAC, free-form attributes, module activations.
    "CREATE TABLE nodes (
        nodeid       TEXT PRIMARY KEY NOT NULL,
        hostname     TEXT NOT NULL,
        grp          TEXT NOT NULL DEFAULT '',
        vnfs         TEXT NOT NULL DEFAULT '',
        enabled      INTEGER NOT NULL DEFAULT 0,
        debug        INTEGER NOT NULL DEFAULT 0,
        descr        TEXT NOT NULL DEFAULT '',
        ipaddr       TEXT NOT NULL DEFAULT '',
        state        TEXT NOT NULL DEFAULT '',
        last_addr    TEXT NOT NULL DEFAULT '',
        last_contact INTEGER
     );
     CREATE INDEX nodes_hostname ON nodes(hostname);
     CREATE INDEX nodes_grp ON nodes(grp);
     CREATE TABLE attributes (
        nodeid TEXT NOT NULL REFERENCES nodes(nodeid) ON DELETE CASCADE ON UPDATE CASCADE,
        key    TEXT NOT NULL,
        value  TEXT NOT NULL,
        PRIMARY KEY (nodeid, key)
     );
     CREATE TABLE activations (
        module TEXT NOT NULL,
        state  TEXT NOT NULL,
        PRIMARY KEY (module, state)
     );",
    // 2: what each node runs (reported at check-in) and livesync requests.
    "CREATE TABLE running (
        nodeid    TEXT PRIMARY KEY NOT NULL REFERENCES nodes(nodeid) ON DELETE CASCADE ON UPDATE CASCADE,
        commit_id TEXT NOT NULL DEFAULT '',
        detail    TEXT NOT NULL DEFAULT ''
     );
     CREATE TABLE livesync (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        nodeid    TEXT NOT NULL REFERENCES nodes(nodeid) ON DELETE CASCADE ON UPDATE CASCADE,
        image     TEXT NOT NULL,
        commit_id TEXT NOT NULL,
        requested INTEGER NOT NULL,
        finished  INTEGER,
        ok        INTEGER,
        report    TEXT NOT NULL DEFAULT ''
     );
     CREATE INDEX livesync_node ON livesync(nodeid, finished);",
];

/// The schema version this build writes.
pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

/// Reads the schema version of an open database.
pub fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Applies the migrations past `from`, one transaction each.
pub fn migrate(conn: &mut Connection, from: i64) -> rusqlite::Result<()> {
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from.max(0) as usize) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
