//! `SESSIONWINDOW(unit, timeout, max)`: rows closer than `timeout` to the previous one go
//! together; a session that keeps going is cut at the first multiple of `max` it has outlasted.

use super::rows::{Buffered, Rows};
use super::{Fired, WindowPolicy, floor_to};

/// A session window.
pub(super) struct Session {
    /// The gap that ends a session.
    timeout: i64,
    /// The longest a session may last (cut at multiples of it).
    max: i64,
    event_time: bool,
    /// Processing time: when the current session started, and its last row.
    session: Option<(i64, i64)>,
}

impl Session {
    pub(super) fn new(timeout: i64, max: i64, event_time: bool) -> Self {
        Self {
            timeout,
            max,
            event_time,
            session: None,
        }
    }

    /// The first multiple of `max` that is at least `max` after a session's start `first`.
    fn tick(&self, first: i64) -> i64 {
        let t = floor_to(first, self.max) + self.max;
        if t - first >= self.max {
            t
        } else {
            t + self.max
        }
    }
}

impl WindowPolicy for Session {
    fn on_row(&mut self, rows: &mut Rows, index: usize, row: Buffered, _trigger: bool) -> bool {
        if !self.event_time {
            let first = self.session.map_or(row.ts, |(f, _)| f);
            self.session = Some((first, row.ts));
        }
        rows.insert(index, row);
        false
    }

    fn next_deadline(&self) -> Option<i64> {
        self.session
            .map(|(first, last)| (last + self.timeout).min(self.tick(first)))
    }

    fn fire_until(&mut self, rows: &mut Rows, limit: i64, _draining: bool, out: &mut Vec<Fired>) {
        let timeout = self.timeout;
        loop {
            let Some(first) = rows.first_ts() else {
                self.session = None;
                return;
            };
            // The session's end: the first gap longer than the timeout, or the first multiple
            // of `max` that is at least `max` after its start.
            let tick = self.tick(first);
            let ordered = rows.window_rows(i64::MIN, i64::MAX, true);
            let mut last = first;
            let mut end = None;
            for (_, row) in &ordered {
                let ts = row.timestamp_ms.max(first);
                if ts >= tick {
                    end = Some(tick);
                    break;
                }
                if ts - last > timeout {
                    end = Some(last + timeout);
                    break;
                }
                last = ts;
            }
            let end = end.unwrap_or((last + timeout).min(tick));
            if end > limit {
                if !self.event_time {
                    self.session = Some((first, last));
                }
                return;
            }
            let rows_of = rows.window_rows(i64::MIN, end, false);
            rows.drop_before(end);
            out.push(Fired {
                start: first,
                end,
                rows: rows_of,
            });
        }
    }
}
