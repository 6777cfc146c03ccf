//! `TUMBLINGWINDOW(unit, size)`: back-to-back windows of `size`, each row in exactly one. When
//! the statement aggregates each row as it arrives, the window keeps no rows, only which
//! windows (panes) have some, and decides timing and lateness alone.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::aligned::{Aligned, Store};
use super::rows::{Buffered, Rows};
use super::{Fired, WindowPolicy, floor_to};
use crate::value::Row;

/// A tumbling window.
pub(super) struct Tumbling {
    size: i64,
    aligned: Aligned,
    /// Aggregated on arrival: the rows are not kept, only the start of each window that has
    /// some (see [`WindowOperator::aggregate_on_arrival`](super::WindowOperator::aggregate_on_arrival)).
    panes: Option<Panes>,
    /// Processing time with panes: the last arrival time, so a clock that steps back does not
    /// reorder.
    last_arrival: i64,
}

/// The starts of the windows that have rows, for a window aggregated on arrival.
struct Panes {
    size: i64,
    starts: BTreeSet<i64>,
}

impl Store for Panes {
    fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    fn first_ts(&self) -> Option<i64> {
        self.starts.first().copied()
    }

    fn window_rows(&self, _start: i64, _end: i64) -> Vec<(usize, Arc<Row>)> {
        // The caller has aggregated the rows already.
        Vec::new()
    }

    fn drop_before(&mut self, ts: i64) {
        // A window's rows are all older than `ts` once its end is.
        while self
            .starts
            .first()
            .is_some_and(|&s| s.saturating_add(self.size) <= ts)
        {
            self.starts.pop_first();
        }
    }
}

impl Tumbling {
    pub(super) fn new(size: i64, event_time: bool) -> Self {
        Self {
            size,
            aligned: Aligned::new(size, size, event_time),
            panes: None,
            last_arrival: i64::MIN,
        }
    }
}

impl WindowPolicy for Tumbling {
    fn arrival(&mut self, ts: i64) -> i64 {
        if self.panes.is_none() {
            return ts;
        }
        self.last_arrival = ts.max(self.last_arrival);
        self.last_arrival
    }

    fn on_row(&mut self, rows: &mut Rows, index: usize, row: Buffered, _trigger: bool) -> bool {
        self.aligned.on_row(row.ts);
        match &mut self.panes {
            Some(panes) => {
                // Rows mostly come in time order: most belong to the latest pane.
                let start = floor_to(row.ts, self.size);
                if panes.starts.last() != Some(&start) {
                    panes.starts.insert(start);
                }
            }
            None => rows.insert(index, row),
        }
        false
    }

    fn next_deadline(&self) -> Option<i64> {
        self.aligned.next_end()
    }

    fn first_window_fired(&self) -> bool {
        self.aligned.first_fired()
    }

    fn set_first_window_fired(&mut self) {
        self.aligned.set_first_fired();
    }

    fn fire_until(&mut self, rows: &mut Rows, limit: i64, draining: bool, out: &mut Vec<Fired>) {
        match &mut self.panes {
            Some(panes) => self.aligned.fire_until(panes, limit, draining, out),
            None => self.aligned.fire_until(rows, limit, draining, out),
        }
    }

    fn aggregate_on_arrival(&mut self) {
        self.panes = Some(Panes {
            size: self.size,
            starts: BTreeSet::new(),
        });
    }
}
