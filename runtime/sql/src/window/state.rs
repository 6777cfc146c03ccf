//! `STATEWINDOW(begin[, end]) [OVER (PARTITION BY ...)]`: windows opened and closed by
//! conditions on the rows, not by time, one state per partition (as eKuiper).
//!
//! With two conditions, a row meeting `begin` opens a window (rows before are dropped); every
//! row after it is added, and the first one meeting `end` closes the window, itself included.
//! With one, a row meeting it opens a window; the next row meeting it closes the window
//! (without itself) and opens the next one with itself. The window's range runs from the
//! opening row's time to the closing row's. A window still open at the end of the input is not
//! sent (nothing closed it): its rows are reported as pending.

use std::collections::HashMap;
use std::sync::Arc;

use super::rows::{Buffered, Rows};
use super::{Fired, StateInput, WindowPolicy};
use crate::value::Row;

/// One partition's window.
#[derive(Default)]
struct Open {
    /// The opening row's time.
    start: i64,
    /// The rows of the open window, in arrival order (empty: no window is open).
    rows: Vec<Buffered>,
}

/// A state window: one open window (or none) per partition key.
pub(super) struct State {
    /// One condition (`STATEWINDOW(cond)`) rather than a begin and an end.
    single: bool,
    partitions: HashMap<String, Open>,
}

impl State {
    pub(super) fn new(single: bool) -> Self {
        Self {
            single,
            partitions: HashMap::new(),
        }
    }
}

fn fired(open: &mut Open, end: i64) -> Fired {
    let rows = std::mem::take(&mut open.rows)
        .into_iter()
        .map(|b| (b.stream, b.row))
        .collect();
    Fired {
        start: open.start,
        end,
        rows,
    }
}

impl WindowPolicy for State {
    fn on_arrival(&mut self, row: Buffered, _out: &mut Vec<Fired>) -> Option<Buffered> {
        // Rows come through `on_state`, with their conditions.
        Some(row)
    }

    fn on_state(&mut self, row: Buffered, input: StateInput, out: &mut Vec<Fired>) {
        let open = self.partitions.entry(input.key).or_default();
        let ts = row.ts;
        if open.rows.is_empty() {
            if input.begin {
                open.start = ts;
                open.rows.push(row);
            }
        } else if self.single {
            if input.begin {
                out.push(fired(open, ts));
                open.start = ts;
            }
            open.rows.push(row);
        } else {
            open.rows.push(row);
            if input.end {
                out.push(fired(open, ts));
            }
        }
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
        // State windows close on rows, never on time.
    }

    fn held(&self) -> usize {
        self.partitions.values().map(|p| p.rows.len()).sum()
    }

    fn open_windows(&self) -> usize {
        self.partitions
            .values()
            .filter(|p| !p.rows.is_empty())
            .count()
    }

    fn counts_rows(&self) -> bool {
        true
    }

    fn own_rows(&self) -> Option<Vec<(usize, Arc<Row>)>> {
        let mut rows: Vec<&Buffered> = self.partitions.values().flat_map(|p| &p.rows).collect();
        rows.sort_by_key(|b| b.seq);
        Some(
            rows.into_iter()
                .map(|b| (b.stream, Arc::clone(&b.row)))
                .collect(),
        )
    }
}
