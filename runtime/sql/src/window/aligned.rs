//! Windows aligned to the Unix epoch, one every `hop` and `size` long: what tumbling
//! (`hop == size`) and hopping windows share. In processing time they fire even when empty,
//! as in eKuiper; a process that fell far behind skips the empty windows rather than emit each.

use std::sync::Arc;

use super::rows::Rows;
use super::{Fired, floor_to};
use crate::value::Row;

/// Where aligned windows find their rows: the operator's [`Rows`], or tumbling panes that
/// keep only which windows have rows.
pub(super) trait Store {
    /// Whether nothing is held.
    fn is_empty(&self) -> bool;
    /// The earliest time held.
    fn first_ts(&self) -> Option<i64>;
    /// The rows of `[start, end)`, in time then arrival order.
    fn window_rows(&self, start: i64, end: i64) -> Vec<(usize, Arc<Row>)>;
    /// Forgets what is older than `ts`.
    fn drop_before(&mut self, ts: i64);
}

impl Store for Rows {
    fn is_empty(&self) -> bool {
        Rows::is_empty(self)
    }

    fn first_ts(&self) -> Option<i64> {
        Rows::first_ts(self)
    }

    fn window_rows(&self, start: i64, end: i64) -> Vec<(usize, Arc<Row>)> {
        Rows::window_rows(self, start, end, false)
    }

    fn drop_before(&mut self, ts: i64) {
        Rows::drop_before(self, ts);
    }
}

/// The most empty windows emitted one after another before a row.
const MAX_EMPTY_RUN: i64 = 10_000;

/// Epoch-aligned windows of `size`, ending every `hop`.
pub(super) struct Aligned {
    size: i64,
    hop: i64,
    event_time: bool,
    /// A hopping window (reports its first event-time window's start as eKuiper does).
    hopping: bool,
    /// The end of the next window to fire.
    next_end: Option<i64>,
    /// Event time: the first row's time, until the first window fires.
    first_ts: Option<i64>,
    /// Event time: a window has fired.
    fired: bool,
}

impl Aligned {
    pub(super) fn new(size: i64, hop: i64, event_time: bool) -> Self {
        Self {
            size,
            hop,
            event_time,
            hopping: false,
            next_end: None,
            first_ts: None,
            fired: false,
        }
    }

    /// The same, for a hopping window.
    pub(super) fn hopping(mut self) -> Self {
        self.hopping = true;
        self
    }

    /// A row counts at `ts`: in processing time, the first row sets the first window's end; in
    /// event time, the first row's time is the first window's reported start.
    pub(super) fn on_row(&mut self, ts: i64) {
        if !self.event_time && self.next_end.is_none() {
            self.next_end = Some(floor_to(ts, self.hop) + self.hop);
        }
        if self.event_time && !self.fired && self.first_ts.is_none() {
            self.first_ts = Some(ts);
        }
    }

    /// `window_start()` of the window `[start, end)`. eKuiper's event-time window reports the
    /// first window's start as the time of the first row it took (tumbling) or that time less
    /// the hop (hopping), or `end - size` when that is not after the epoch; every later window
    /// starts where its range does. The first window's rows are those of its aligned range all
    /// the same, and no row before the first one exists.
    fn reported_start(&mut self, start: i64, end: i64) -> i64 {
        if !self.event_time || std::mem::replace(&mut self.fired, true) {
            return start;
        }
        match self.first_ts.take() {
            Some(first) => {
                let reported = if self.hopping {
                    first.saturating_sub(self.hop)
                } else {
                    first
                };
                if reported <= 0 {
                    end - self.size
                } else {
                    reported
                }
            }
            None => start,
        }
    }

    /// Whether the first window has fired.
    pub(super) fn first_fired(&self) -> bool {
        self.fired
    }

    /// The first window has fired (before a checkpoint this state is restored from).
    pub(super) fn set_first_fired(&mut self) {
        self.fired = true;
        self.first_ts = None;
    }

    /// The end of the next window to fire.
    pub(super) fn next_end(&self) -> Option<i64> {
        self.next_end
    }

    /// Fires the windows that end by `limit` (see
    /// [`WindowPolicy::fire_until`](super::WindowPolicy::fire_until)).
    pub(super) fn fire_until(
        &mut self,
        store: &mut impl Store,
        limit: i64,
        draining: bool,
        out: &mut Vec<Fired>,
    ) {
        let (size, hop) = (self.size, self.hop);
        let next = match self.next_end {
            Some(end) => end,
            None => match store.first_ts() {
                Some(first) => floor_to(first, hop) + hop,
                None => return,
            },
        };
        let mut end = next;
        while end <= limit {
            if draining {
                // Rows older than this window's start are in no window left to fire: rows in
                // the gap between two windows when the hop is longer than the size.
                store.drop_before(end - size);
                if store.is_empty() {
                    break;
                }
            }
            // Far behind (a process that slept): skip empty windows rather than emit each.
            if store.is_empty() && end + hop <= limit && !self.event_time {
                end = floor_to(limit, hop) + hop;
                continue;
            }
            // A gap of more than `MAX_EMPTY_RUN` empty windows before the next row (after a
            // row with a time far in the past) is skipped rather than emitted window by window.
            if let Some(first) = store.first_ts() {
                let first_end = floor_to(first, hop).saturating_add(hop);
                if first_end.saturating_sub(end) > hop.saturating_mul(MAX_EMPTY_RUN) {
                    end = first_end;
                    continue;
                }
            }
            let start = end - size;
            let rows = store.window_rows(start, end);
            let start = self.reported_start(start, end);
            out.push(Fired { start, end, rows });
            // The next window starts at end + hop - size: older rows are done.
            store.drop_before(end + hop - size);
            end += hop;
            if self.event_time && store.is_empty() {
                break;
            }
        }
        // Event time: once every row is used up the next row aligns the windows again, but only
        // at the end of the input; before then a row about to come may still fall in between.
        self.next_end = if self.event_time && store.is_empty() && draining {
            None
        } else {
            Some(end)
        };
    }
}
