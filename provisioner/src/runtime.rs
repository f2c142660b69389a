//! What the daemon records about running nodes, beside the node settings:
//! the commit each node reported at its last check-in, and livesync
//! requests with their results. `vnfs livesync` writes requests, the
//! daemon hands them to nodes at check-in and stores their reports, and
//! the command reads the reports back; SQLite's WAL lets all of that run
//! concurrently with check-ins.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use crate::db::NodeDb;
use crate::error::{Error, Result};

use crate::mac::Mac;

/// A livesync request as stored.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LivesyncRow {
    /// Request id.
    pub id: i64,
    /// NodeID.
    pub nodeid: String,
    /// Image name.
    pub image: String,
    /// Commit the node is to move to.
    pub commit: String,
    /// Unix time of the request.
    pub requested: i64,
    /// Unix time of the node's report (`None`: pending).
    pub finished: Option<i64>,
    /// Whether the node reported success.
    pub ok: Option<bool>,
    /// The node's report (JSON), or why the request was closed.
    pub report: String,
}

impl NodeDb {
    /// Records a check-in: state, address, time, and the commit the node
    /// runs (empty: unknown) with any detail it sent. An unknown NodeID is
    /// an error (the daemon adds unknown nodes first).
    pub fn record_checkin(
        &mut self,
        mac: Mac,
        state: &str,
        addr: &str,
        unix_time: i64,
        commit: &str,
        detail: &str,
    ) -> Result<()> {
        let id = mac.to_string();
        let (path, timeout) = (self.path().to_path_buf(), self.timeout);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| crate::db::map_err(&path, timeout, e))?;
        let n = tx
            .execute(
                "UPDATE nodes SET state = ?2, last_addr = ?3, last_contact = ?4 WHERE nodeid = ?1",
                params![id, state, addr, unix_time],
            )
            .map_err(|e| crate::db::map_err(&path, timeout, e))?;
        if n == 0 {
            return Err(Error::UnknownNode(id));
        }
        tx.execute(
            "INSERT INTO running (nodeid, commit_id, detail) VALUES (?1, ?2, ?3)
             ON CONFLICT(nodeid) DO UPDATE SET
               commit_id = CASE WHEN ?2 = '' THEN commit_id ELSE ?2 END,
               detail = ?3",
            params![id, commit, detail],
        )
        .map_err(|e| crate::db::map_err(&path, timeout, e))?;
        tx.commit()
            .map_err(|e| crate::db::map_err(&path, timeout, e))?;
        Ok(())
    }

    /// Records the commit a node runs (after a livesync it reported).
    pub fn set_running(&mut self, mac: Mac, commit: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO running (nodeid, commit_id) VALUES (?1, ?2)
                 ON CONFLICT(nodeid) DO UPDATE SET commit_id = ?2",
                params![mac.to_string(), commit],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The commit a node last reported and the detail it sent.
    pub fn running(&self, mac: Mac) -> Result<Option<(String, String)>> {
        self.conn
            .query_row(
                "SELECT commit_id, detail FROM running WHERE nodeid = ?1",
                params![mac.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Opens livesync requests for `nodes` to move to `commit` of `image`,
    /// closing any request still pending for them. Returns the new ids in
    /// the order of `nodes`.
    pub fn request_livesync(
        &mut self,
        nodes: &[Mac],
        image: &str,
        commit: &str,
        unix_time: i64,
    ) -> Result<Vec<i64>> {
        let (path, timeout) = (self.path().to_path_buf(), self.timeout);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| crate::db::map_err(&path, timeout, e))?;
        let mut ids = Vec::with_capacity(nodes.len());
        for m in nodes {
            let id = m.to_string();
            tx.execute(
                "UPDATE livesync SET finished = ?2, ok = 0, report = 'superseded by a newer request'
                 WHERE nodeid = ?1 AND finished IS NULL",
                params![id, unix_time],
            )
            .map_err(|e| crate::db::map_err(&path, timeout, e))?;
            tx.execute(
                "INSERT INTO livesync (nodeid, image, commit_id, requested) VALUES (?1, ?2, ?3, ?4)",
                params![id, image, commit, unix_time],
            )
            .map_err(|e| crate::db::map_err(&path, timeout, e))?;
            ids.push(tx.last_insert_rowid());
        }
        tx.commit()
            .map_err(|e| crate::db::map_err(&path, timeout, e))?;
        Ok(ids)
    }

    /// The pending livesync request of a node, if any.
    pub fn pending_livesync(&self, mac: Mac) -> Result<Option<LivesyncRow>> {
        self.conn
            .query_row(
                "SELECT id, nodeid, image, commit_id, requested, finished, ok, report FROM livesync
                 WHERE nodeid = ?1 AND finished IS NULL ORDER BY id DESC LIMIT 1",
                params![mac.to_string()],
                row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Records a node's report on request `id`. Reports for requests that
    /// are not the node's, or already closed, are ignored (returns false).
    pub fn finish_livesync(
        &mut self,
        mac: Mac,
        id: i64,
        ok: bool,
        report: &str,
        unix_time: i64,
    ) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "UPDATE livesync SET finished = ?3, ok = ?4, report = ?5
                 WHERE id = ?1 AND nodeid = ?2 AND finished IS NULL",
                params![id, mac.to_string(), unix_time, i64::from(ok), report],
            )
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    /// Livesync requests by id.
    pub fn livesync_rows(&self, ids: &[i64]) -> Result<Vec<LivesyncRow>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, nodeid, image, commit_id, requested, finished, ok, report FROM livesync WHERE id = ?1",
            )
            .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(r) = st
                .query_row(params![id], row)
                .optional()
                .map_err(|e| self.err(e))?
            {
                out.push(r);
            }
        }
        Ok(out)
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LivesyncRow> {
    Ok(LivesyncRow {
        id: r.get(0)?,
        nodeid: r.get(1)?,
        image: r.get(2)?,
        commit: r.get(3)?,
        requested: r.get(4)?,
        finished: r.get(5)?,
        ok: r.get::<_, Option<i64>>(6)?.map(|v| v != 0),
        report: r.get(7)?,
    })
}
