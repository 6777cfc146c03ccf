//! `SESSIONWINDOW(unit, max, timeout)`, in eKuiper's order: rows closer than `timeout` to the
//! previous one go together; a session ends `timeout` after its last row, or is cut at a
//! multiple of `max` that a row passes once the session has lasted longer than `max`. After a
//! cut the next session starts at the cut (its `window_start()`), else at its first row.

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
    /// Where the previous session was cut at a multiple of `max`: the next one starts there.
    cut: Option<i64>,
}

impl Session {
    pub(super) fn new(timeout: i64, max: i64, event_time: bool) -> Self {
        Self {
            timeout,
            max,
            event_time,
            session: None,
            cut: None,
        }
    }

    /// Whether a session whose first row came at `first` may be cut at `tick`: in event time
    /// when it has lasted longer than `max` by then, in processing time when at least `max`
    /// (as eKuiper's event-time and processing-time triggers do).
    fn may_cut(&self, tick: i64, first: i64) -> bool {
        let lasted = tick.saturating_sub(first);
        if self.event_time {
            lasted > self.max
        } else {
            lasted >= self.max
        }
    }

    /// The end of the session whose rows come at `times` (in order, the first one first), and
    /// whether it is a cut at a multiple of `max`. Without a gap or a cut among the rows, the
    /// end is still open: `timeout` after the last row (or, in processing time, the next tick
    /// the session may be cut at, when that comes first).
    fn end_of(&self, times: impl IntoIterator<Item = i64>) -> Option<(i64, bool)> {
        let mut times = times.into_iter();
        let first = times.next()?;
        let mut tick = floor_to(first, self.max).saturating_add(self.max);
        let mut prev = first;
        for ts in times {
            let mut end = None;
            if ts.saturating_sub(prev) > self.timeout {
                end = Some((prev.saturating_add(self.timeout), false));
            }
            if ts > tick {
                if self.may_cut(tick, first) && end.is_none_or(|(gap, _)| tick < gap) {
                    end = Some((tick, true));
                }
                tick = tick.saturating_add(self.max);
            }
            if end.is_some() {
                return end;
            }
            prev = ts;
        }
        let gap = prev.saturating_add(self.timeout);
        if !self.event_time {
            let cut = if self.may_cut(tick, first) {
                tick
            } else {
                tick.saturating_add(self.max)
            };
            if cut < gap {
                return Some((cut, true));
            }
        }
        Some((gap, false))
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
        let (first, last) = self.session?;
        let mut deadline = last.saturating_add(self.timeout);
        let mut tick = floor_to(first, self.max).saturating_add(self.max);
        if !self.may_cut(tick, first) {
            tick = tick.saturating_add(self.max);
        }
        if tick < deadline {
            deadline = tick;
        }
        Some(deadline)
    }

    fn fire_until(&mut self, rows: &mut Rows, limit: i64, _draining: bool, out: &mut Vec<Fired>) {
        loop {
            let times = rows.times();
            let Some((end, cut)) = self.end_of(times.iter().copied()) else {
                self.session = None;
                return;
            };
            if end > limit {
                if !self.event_time {
                    self.session = times.first().zip(times.last()).map(|(f, l)| (*f, *l));
                }
                return;
            }
            let first = times.first().copied().unwrap_or(end);
            let start = self.cut.take().unwrap_or(first);
            self.cut = cut.then_some(end);
            let rows_of = rows.window_rows(i64::MIN, end, false);
            rows.drop_before(end);
            out.push(Fired {
                start,
                end,
                rows: rows_of,
            });
        }
    }
}
