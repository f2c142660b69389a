//! `node status`: each node's last provisionary state, address and time
//! since its last check-in, flagged "timed out" past the node timeout.

use crate::node::Node;

/// One line of `node status`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StatusRow {
    /// Host name.
    pub hostname: String,
    /// NodeID.
    pub nodeid: String,
    /// Last provisionary state (empty: never checked in).
    pub state: String,
    /// Address of the last check-in.
    pub address: String,
    /// Seconds since the last check-in (`None`: never).
    pub seconds_ago: Option<i64>,
    /// Whether the node has been silent for longer than the node timeout.
    pub timed_out: bool,
}

/// Builds the status rows at `now` (Unix seconds) with `timeout` seconds.
pub fn rows(nodes: &[Node], now: i64, timeout: u64) -> Vec<StatusRow> {
    nodes
        .iter()
        .map(|n| {
            let ago = n.last_contact.map(|t| (now - t).max(0));
            StatusRow {
                hostname: n.hostname.clone(),
                nodeid: n.nodeid.to_string(),
                state: n.state.clone(),
                address: n.last_addr.clone(),
                seconds_ago: ago,
                timed_out: ago.is_some_and(|a| a as u64 > timeout),
            }
        })
        .collect()
}

/// Formats an elapsed time as Perceus did (`00:00:22`), with days in front
/// when there are any (`3d 04:05:06`); `never` for no contact.
pub fn format_elapsed(secs: Option<i64>) -> String {
    let Some(s) = secs else {
        return "never".into();
    };
    let (d, h, m, sec) = (s / 86400, (s / 3600) % 24, (s / 60) % 60, s % 60);
    if d > 0 {
        format!("{d}d {h:02}:{m:02}:{sec:02}")
    } else {
        format!("{h:02}:{m:02}:{sec:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed() {
        assert_eq!(format_elapsed(Some(22)), "00:00:22");
        assert_eq!(
            format_elapsed(Some(3 * 86400 + 4 * 3600 + 5 * 60 + 6)),
            "3d 04:05:06"
        );
        assert_eq!(format_elapsed(None), "never");
    }
}
