//! The rows a time window holds: one buffer per input, each in time order, and the ranges of
//! them a window takes.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::value::Row;

/// A row held by a window, with the time it counts at.
pub(super) struct Buffered {
    /// The time it counts at: its event time, or its arrival in processing time.
    pub(super) ts: i64,
    /// Arrival order, to keep rows with equal times in the order they came.
    pub(super) seq: u64,
    /// The input it came from.
    pub(super) stream: usize,
    pub(super) row: Arc<Row>,
}

/// The rows of one input, in time order. Inputs are buffered apart: each arrives (nearly) in
/// order, so adding a row is a push at the back, and a window's rows are a range of each.
#[derive(Default)]
struct StreamBuffer {
    rows: VecDeque<Buffered>,
}

impl StreamBuffer {
    fn insert(&mut self, b: Buffered) {
        if self.rows.back().is_none_or(|last| last.ts <= b.ts) {
            self.rows.push_back(b);
        } else {
            // Out of order (within the tolerance): after the rows of the same time.
            let at = self.rows.partition_point(|r| r.ts <= b.ts);
            self.rows.insert(at, b);
        }
    }

    /// Rows with `start <= ts < end` (or `<= end` when `inclusive`).
    fn range(&self, start: i64, end: i64, inclusive: bool) -> impl Iterator<Item = &Buffered> {
        let lo = self.rows.partition_point(|r| r.ts < start);
        let hi = if inclusive {
            self.rows.partition_point(|r| r.ts <= end)
        } else {
            self.rows.partition_point(|r| r.ts < end)
        };
        self.rows.range(lo..hi.max(lo))
    }

    fn drop_before(&mut self, ts: i64) {
        while self.rows.front().is_some_and(|r| r.ts < ts) {
            self.rows.pop_front();
        }
    }
}

/// The rows of a time window's inputs, one buffer per input (processing time uses the first
/// only: arrival order is the order).
pub(super) struct Rows {
    buffers: Vec<StreamBuffer>,
}

impl Rows {
    /// Buffers for `inputs` inputs (at least one).
    pub(super) fn new(inputs: usize) -> Self {
        Self {
            buffers: (0..inputs).map(|_| StreamBuffer::default()).collect(),
        }
    }

    /// How many input buffers there are.
    pub(super) fn inputs(&self) -> usize {
        self.buffers.len()
    }

    /// Adds a row to buffer `index`, in time order.
    pub(super) fn insert(&mut self, index: usize, row: Buffered) {
        self.buffers[index].insert(row);
    }

    /// The time of the latest row of buffer `index`.
    pub(super) fn last_ts(&self, index: usize) -> Option<i64> {
        self.buffers[index].rows.back().map(|r| r.ts)
    }

    /// Rows held.
    pub(super) fn len(&self) -> usize {
        self.buffers.iter().map(|b| b.rows.len()).sum()
    }

    /// Whether no row is held.
    pub(super) fn is_empty(&self) -> bool {
        self.buffers.iter().all(|b| b.rows.is_empty())
    }

    /// The earliest buffered time.
    pub(super) fn first_ts(&self) -> Option<i64> {
        self.buffers
            .iter()
            .filter_map(|b| b.rows.front().map(|r| r.ts))
            .min()
    }

    /// Every buffered time, in order.
    pub(super) fn times(&self) -> Vec<i64> {
        let mut times: Vec<i64> = self
            .buffers
            .iter()
            .flat_map(|b| b.rows.iter().map(|r| r.ts))
            .collect();
        if self.buffers.len() > 1 {
            times.sort_unstable();
        }
        times
    }

    /// The rows of `[start, end)` (`[start, end]` when `inclusive`), in time then arrival order.
    pub(super) fn window_rows(
        &self,
        start: i64,
        end: i64,
        inclusive: bool,
    ) -> Vec<(usize, Arc<Row>)> {
        let mut rows: Vec<&Buffered> = Vec::new();
        for b in &self.buffers {
            rows.extend(b.range(start, end, inclusive));
        }
        if self.buffers.len() > 1 {
            rows.sort_by_key(|b| (b.ts, b.seq));
        }
        rows.into_iter()
            .map(|b| (b.stream, Arc::clone(&b.row)))
            .collect()
    }

    /// Every row held, as `(time, arrival, input, row)`, in time then arrival order (for a
    /// checkpoint).
    pub(super) fn all(&self) -> Vec<(i64, u64, usize, Arc<Row>)> {
        let mut rows: Vec<_> = self
            .buffers
            .iter()
            .flat_map(|b| b.rows.iter())
            .map(|b| (b.ts, b.seq, b.stream, Arc::clone(&b.row)))
            .collect();
        rows.sort_by_key(|r| (r.0, r.1));
        rows
    }

    /// Forgets the rows older than `ts` (every row, for `i64::MAX`).
    pub(super) fn drop_before(&mut self, ts: i64) {
        for b in &mut self.buffers {
            if ts == i64::MAX {
                b.rows.clear();
            } else {
                b.drop_before(ts);
            }
        }
    }
}
