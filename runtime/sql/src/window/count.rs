//! `COUNTWINDOW(count[, interval])`: windows of the last `count` rows, one every `interval`
//! rows, by arrival alone: time plays no part, so nothing fires on the clock.

use std::collections::VecDeque;
use std::sync::Arc;

use super::rows::{Buffered, Rows};
use super::{Fired, WindowPolicy};

/// A count window.
pub(super) struct Count {
    /// Rows per window.
    size: usize,
    /// Rows between two windows.
    interval: usize,
    /// The rows a later window may still take, in arrival order.
    rows: VecDeque<Buffered>,
    /// Rows seen.
    counted: u64,
    /// Rows that arrived since the last window fired (at the end: rows no window took).
    since_fire: usize,
}

impl Count {
    pub(super) fn new(size: usize, interval: usize) -> Self {
        Self {
            size,
            interval,
            rows: VecDeque::new(),
            counted: 0,
            since_fire: 0,
        }
    }
}

impl WindowPolicy for Count {
    fn on_arrival(&mut self, row: Buffered, out: &mut Vec<Fired>) -> Option<Buffered> {
        let ts = row.ts;
        self.rows.push_back(row);
        self.counted += 1;
        self.since_fire += 1;
        if self.counted.is_multiple_of(self.interval as u64) && self.rows.len() >= self.size {
            let from = self.rows.len() - self.size;
            let rows = self
                .rows
                .iter()
                .skip(from)
                .map(|b| (b.stream, Arc::clone(&b.row)))
                .collect();
            // The next window, `interval` rows on, takes only the last `size - interval` of these.
            let keep = self.size.saturating_sub(self.interval);
            self.rows.drain(..self.rows.len() - keep);
            self.since_fire = 0;
            out.push(Fired {
                start: ts,
                end: ts,
                rows,
            });
        }
        None
    }

    fn next_deadline(&self) -> Option<i64> {
        None
    }

    fn fire_until(
        &mut self,
        _rows: &mut Rows,
        _limit: i64,
        _draining: bool,
        _out: &mut Vec<Fired>,
    ) {
        // Count windows fire as rows arrive, never on time.
    }

    fn counts_rows(&self) -> bool {
        true
    }

    fn held(&self) -> usize {
        self.since_fire
    }
}
