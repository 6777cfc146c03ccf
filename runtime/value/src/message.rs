//! What a rule hands its actions: one row, the rows of one window result, or an error report.

use std::sync::Arc;

use crate::value::Row;

/// One message from a rule to its actions (eKuiper's sink data).
#[derive(Debug, Clone)]
pub enum Message {
    /// One result row (a rule without a window).
    Row(Row),
    /// The rows of one window result, in order; `sendSingle` splits it into rows.
    Rows(Arc<Vec<Row>>),
    /// An evaluation error, sent when the rule's `sendError` option is on.
    Error {
        /// What went wrong.
        message: Arc<str>,
        /// When, in milliseconds since the Unix epoch.
        timestamp_ms: i64,
    },
}

impl Message {
    /// Milliseconds since the Unix epoch: the row's time, or the window's last row's.
    pub fn timestamp_ms(&self) -> i64 {
        match self {
            Self::Row(r) => r.timestamp_ms,
            Self::Rows(rows) => rows.last().map_or(0, |r| r.timestamp_ms),
            Self::Error { timestamp_ms, .. } => *timestamp_ms,
        }
    }

    /// How many result rows it carries.
    pub fn row_count(&self) -> usize {
        match self {
            Self::Row(_) => 1,
            Self::Rows(rows) => rows.len(),
            Self::Error { .. } => 0,
        }
    }
}
