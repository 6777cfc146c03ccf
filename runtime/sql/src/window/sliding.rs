//! `SLIDINGWINDOW(unit, size[, delay])`: each triggering row (one that meets `OVER (WHEN ...)`,
//! or every row without it) fires a window of the `size` before it, closed `delay` after it.

use std::collections::VecDeque;

use super::rows::{Buffered, Rows};
use super::{Fired, WindowPolicy};

/// A sliding window.
pub(super) struct Sliding {
    /// How far back from the triggering row.
    size: i64,
    /// How long after the triggering row the window closes.
    delay: i64,
    event_time: bool,
    /// Triggering rows not yet fired, as `(fire at, trigger time)`.
    triggers: VecDeque<(i64, i64)>,
}

impl Sliding {
    pub(super) fn new(size: i64, delay: i64, event_time: bool) -> Self {
        Self {
            size,
            delay,
            event_time,
            triggers: VecDeque::new(),
        }
    }
}

impl WindowPolicy for Sliding {
    fn on_row(&mut self, rows: &mut Rows, index: usize, row: Buffered, trigger: bool) -> bool {
        let ts = row.ts;
        rows.insert(index, row);
        if trigger {
            self.triggers.push_back((ts + self.delay, ts));
            if self.event_time {
                self.triggers.make_contiguous().sort_by_key(|t| t.0);
            }
        }
        // Without a delay, the row's own window is due at once.
        self.delay == 0
    }

    fn next_deadline(&self) -> Option<i64> {
        self.triggers.front().map(|t| t.0)
    }

    fn fire_until(&mut self, rows: &mut Rows, limit: i64, draining: bool, out: &mut Vec<Fired>) {
        let (size, delay) = (self.size, self.delay);
        while let Some(&(fire_at, t)) = self.triggers.front() {
            if fire_at > limit {
                break;
            }
            self.triggers.pop_front();
            let (start, end) = (t - size, t + delay);
            let rows = rows.window_rows(start, end, delay == 0);
            out.push(Fired { start, end, rows });
        }
        // Rows older than every pending trigger's reach are no longer needed.
        let keep_from = self.triggers.front().map_or(
            if draining {
                i64::MAX
            } else {
                limit.saturating_sub(size)
            },
            |&(_, t)| t - size,
        );
        rows.drop_before(keep_from);
    }
}
