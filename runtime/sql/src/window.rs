//! Windows: which rows go together, and when a window fires.
//!
//! Time windows are aligned to the Unix epoch (a 10-second window ends at :00, :10, ...).
//! In processing time a row's time is its arrival; windows fire when the clock passes their end
//! (tumbling and hopping windows fire even when empty, as in eKuiper). In event time a row's
//! time is its `TIMESTAMP` field; the watermark is the smallest, over the statement's streams,
//! of the latest time seen minus `lateTolerance`; a window fires when the watermark passes its
//! end, its rows in time order; a row older than the watermark is late: counted, not windowed.
//! When every input has ended, the watermark goes to the end of time and every open window
//! fires (a count window that has not reached its count is reported, not emitted). A statement
//! runner merges its streams into time order itself and moves the watermark with
//! [`WindowOperator::advance_to`], so that lateness and firing do not depend on how the
//! streams' rows interleave on arrival.
//!
//! The [`WindowOperator`] does what every kind shares (times, lateness, the watermark); what a
//! kind decides lives in its own file under `window/`, behind the `WindowPolicy` trait.

mod aligned;
mod count;
mod hopping;
mod rows;
mod session;
mod sliding;
mod state;
mod tumbling;

use std::sync::Arc;

use rows::{Buffered, Rows};

use super::expr::Expr;
use crate::value::{Row, Schema};

/// A window's kind and sizes, in milliseconds (or rows, for count windows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// `TUMBLINGWINDOW(unit, size)`.
    Tumbling {
        /// Length.
        size: i64,
    },
    /// `HOPPINGWINDOW(unit, size, hop)`.
    Hopping {
        /// Length.
        size: i64,
        /// Distance between window ends.
        hop: i64,
    },
    /// `SLIDINGWINDOW(unit, size[, delay])`.
    Sliding {
        /// How far back from the triggering row.
        size: i64,
        /// How long after the triggering row the window closes.
        delay: i64,
    },
    /// `SESSIONWINDOW(unit, max, timeout)`.
    Session {
        /// The gap that ends a session.
        timeout: i64,
        /// The longest a session may last (cut at multiples of it).
        max: i64,
    },
    /// `COUNTWINDOW(count[, interval])`.
    Count {
        /// Rows per window.
        size: usize,
        /// Rows between two windows.
        interval: usize,
    },
    /// `STATEWINDOW(begin[, end]) [OVER (PARTITION BY ...)]`: its conditions are in
    /// [`WindowSpec::state`].
    State {
        /// One condition that both ends a window and begins the next.
        single: bool,
    },
}

impl WindowKind {
    /// The function name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Tumbling { .. } => "TUMBLINGWINDOW",
            Self::Hopping { .. } => "HOPPINGWINDOW",
            Self::Sliding { .. } => "SLIDINGWINDOW",
            Self::Session { .. } => "SESSIONWINDOW",
            Self::Count { .. } => "COUNTWINDOW",
            Self::State { .. } => "STATEWINDOW",
        }
    }
}

/// A window in a statement: its kind, the `FILTER (WHERE ...)` applied to rows before they
/// enter it, and the `OVER (WHEN ...)` condition a row must meet to trigger a sliding window.
#[derive(Debug, Clone)]
pub struct WindowSpec {
    /// Kind and sizes.
    pub kind: WindowKind,
    /// `FILTER (WHERE ...)`.
    pub filter: Option<Expr>,
    /// `OVER (WHEN ...)`.
    pub trigger: Option<Expr>,
    /// A state window's conditions and partition.
    pub state: Option<StateSpec>,
}

/// What a `STATEWINDOW` decides by. With `end`, a window begins at a row meeting `begin` and
/// ends with (and includes) the next row meeting `end`; without, a row meeting `begin` ends the
/// open window (without itself) and begins the next. Rows before a window begins are dropped.
#[derive(Debug, Clone)]
pub struct StateSpec {
    /// The condition that begins a window (or, alone, begins and ends them).
    pub begin: Expr,
    /// The condition that ends it.
    pub end: Option<Expr>,
    /// `OVER (PARTITION BY ...)`: one window state per value of these.
    pub partition: Vec<Expr>,
}

/// What a row of a state window's input says, evaluated by the statement runner.
#[derive(Debug, Clone, PartialEq)]
pub struct StateInput {
    /// It meets the begin (or single) condition.
    pub begin: bool,
    /// It meets the end condition.
    pub end: bool,
    /// Its partition key (the partition expressions' values as text).
    pub key: String,
}

/// The milliseconds in one eKuiper time unit (`DD`, `HH`, `MI`, `SS`, `MS`).
pub fn unit_ms(unit: &str) -> Option<i64> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "dd" => 86_400_000,
        "hh" => 3_600_000,
        "mi" => 60_000,
        "ss" => 1_000,
        "ms" => 1,
        _ => return None,
    })
}

/// A window that fired: its range and its rows (with the index of the stream each came from).
#[derive(Debug, Clone)]
pub struct Fired {
    /// `window_start()`.
    pub start: i64,
    /// `window_end()`.
    pub end: i64,
    /// The rows, in time order (event time) or arrival order (processing time). Shared: a row
    /// of overlapping windows is not copied.
    pub rows: Vec<(usize, Arc<Row>)>,
}

/// What one window kind decides: where a row goes, when windows are due, and which rows each
/// holds. The [`WindowOperator`] does the rest, the same for every kind: stamping rows with
/// their time, lateness, the watermark, and when to ask the policy to fire.
///
/// Adding a window kind: a file in `window/` implementing this, a line in [`policy`], and its
/// [`WindowKind`] variant with the compiler's line that parses it.
trait WindowPolicy: Send {
    /// Takes a row as it arrives, before its time is considered. A policy that windows rows by
    /// count takes it here, appends the windows it completes to `out` and returns `None`; the
    /// others hand it back to be timed.
    fn on_arrival(&mut self, row: Buffered, _out: &mut Vec<Fired>) -> Option<Buffered> {
        Some(row)
    }

    /// Processing time, when the operator holds no row to keep arrival order by: the time a
    /// row arriving at `ts` counts at. A policy that keeps rows of its own (not in [`Rows`])
    /// keeps their arrival order here.
    fn arrival(&mut self, ts: i64) -> i64 {
        ts
    }

    /// Takes a row that counts at `row.ts` (not late) for input buffer `index`. `trigger` says
    /// whether it meets a sliding window's `OVER (WHEN ...)`. Returns whether, in processing
    /// time, the windows due at `row.ts` fire at once.
    fn on_row(&mut self, rows: &mut Rows, index: usize, row: Buffered, _trigger: bool) -> bool {
        rows.insert(index, row);
        false
    }

    /// Processing time: when windows are next due.
    fn next_deadline(&self) -> Option<i64>;

    /// Fires the windows that end by `limit`. With `draining`, nothing more will come: stop
    /// once the rows are used up instead of emitting empty windows.
    fn fire_until(&mut self, rows: &mut Rows, limit: i64, draining: bool, out: &mut Vec<Fired>);

    /// Takes a row of a state window with what its conditions say; only state windows are fed
    /// this way (the others keep the row to no window).
    fn on_state(&mut self, _row: Buffered, _input: StateInput, _out: &mut Vec<Fired>) {}

    /// Rows the policy holds itself that no window has emitted yet.
    fn held(&self) -> usize {
        0
    }

    /// Windows of its own still open that no time will fire (a count window that has not
    /// filled, a state window that nothing closed).
    fn open_windows(&self) -> usize {
        usize::from(self.held() > 0)
    }

    /// Event time: whether the first window has fired (tumbling and hopping windows report its
    /// start as eKuiper does, see `aligned`).
    fn first_window_fired(&self) -> bool {
        false
    }

    /// Restoring a checkpoint taken after the first window fired.
    fn set_first_window_fired(&mut self) {}

    /// The rows the policy holds itself, in arrival order, when pushing them again rebuilds its
    /// state; `None` when they do not (or it holds none of its own).
    fn own_rows(&self) -> Option<Vec<(usize, Arc<Row>)>> {
        None
    }

    /// Whether its state counts rows (a count window), which held rows alone cannot rebuild.
    fn counts_rows(&self) -> bool {
        false
    }

    /// The caller aggregates accepted rows itself: see [`WindowOperator::aggregate_on_arrival`].
    /// Only tumbling windows take it up (and then keep their rows out of [`Rows`]); the other
    /// kinds keep their rows as before.
    fn aggregate_on_arrival(&mut self) {}
}

/// The policy of a window kind.
fn policy(kind: WindowKind, event_time: bool) -> Box<dyn WindowPolicy> {
    match kind {
        WindowKind::Tumbling { size } => Box::new(tumbling::Tumbling::new(size, event_time)),
        WindowKind::Hopping { size, hop } => Box::new(hopping::Hopping::new(size, hop, event_time)),
        WindowKind::Sliding { size, delay } => {
            Box::new(sliding::Sliding::new(size, delay, event_time))
        }
        WindowKind::Session { timeout, max } => {
            Box::new(session::Session::new(timeout, max, event_time))
        }
        WindowKind::Count { size, interval } => Box::new(count::Count::new(size, interval)),
        WindowKind::State { single } => Box::new(state::State::new(single)),
    }
}

/// The state of one statement's window.
pub struct WindowOperator {
    event_time: bool,
    late_tolerance: i64,
    /// What the window kind decides.
    policy: Box<dyn WindowPolicy>,
    /// Rows per input, in time order.
    rows: Rows,
    seq: u64,
    /// Per stream: the latest event time seen, and whether the stream has ended.
    stream_max: Vec<Option<i64>>,
    stream_done: Vec<bool>,
    watermark: i64,
    /// Event time: the caller merges the streams and says how far the watermark has gone
    /// ([`advance_to`](WindowOperator::advance_to)); the operator does not compute it.
    external: bool,
    /// Rows that arrived after the watermark had passed them.
    pub late: u64,
    /// What [`push_time`](WindowOperator::push_time) hands the policy for a row it does not
    /// keep.
    no_row: Option<Arc<Row>>,
}

/// `t` rounded down to a multiple of `step`.
fn floor_to(t: i64, step: i64) -> i64 {
    t.div_euclid(step).saturating_mul(step)
}

/// The largest time (ms, either side of the epoch) a window counts a row at: about 146 million
/// years, far from where a window's length could overflow it.
const TIME_LIMIT: i64 = 1 << 62;

impl WindowOperator {
    /// An operator for `kind` over `streams` inputs.
    pub fn new(kind: WindowKind, event_time: bool, late_tolerance: i64, streams: usize) -> Self {
        Self {
            event_time,
            late_tolerance,
            policy: policy(kind, event_time),
            rows: Rows::new(streams.max(1)),
            seq: 0,
            stream_max: vec![None; streams.max(1)],
            stream_done: vec![false; streams.max(1)],
            watermark: i64::MIN,
            external: false,
            late: 0,
            no_row: None,
        }
    }

    /// Event time: the caller merges the streams into time order and moves the watermark with
    /// [`advance_to`](Self::advance_to); rows and ended streams no longer move it.
    pub fn watermark_from_caller(&mut self) {
        self.external = true;
    }

    /// Event time, with [`watermark_from_caller`](Self::watermark_from_caller): every row up to
    /// `time` (included) has been pushed; fires the windows that this completes.
    pub fn advance_to(&mut self, time: i64, out: &mut Vec<Fired>) {
        if self.event_time && time > self.watermark {
            self.watermark = time;
            self.fire_until(time, false, out);
        }
    }

    /// Tumbling windows only: the caller aggregates each accepted row itself (by the time
    /// [`push`](Self::push) returns), so the operator keeps no rows and fired windows come with
    /// none; only their timing and lateness are decided here.
    pub fn aggregate_on_arrival(&mut self) {
        self.policy.aggregate_on_arrival();
    }

    /// Rows held that no window has emitted yet (after `finish`: an unfinished count window).
    pub fn pending(&self) -> usize {
        self.rows.len() + self.policy.held()
    }

    /// Event time: whether the first tumbling or hopping window has fired (a checkpoint keeps
    /// it, as the first window's reported start differs from the later ones').
    pub fn first_window_fired(&self) -> bool {
        self.policy.first_window_fired()
    }

    /// Restoring a checkpoint taken after the first window fired.
    pub fn set_first_window_fired(&mut self) {
        self.policy.set_first_window_fired();
    }

    /// Windows open that [`finish`](Self::finish) does not fire: a count window that has not
    /// filled, state windows that nothing closed.
    pub fn open_windows(&self) -> usize {
        self.policy.open_windows()
    }

    /// The rows held for windows still to fire, with the input each came from, in time then
    /// arrival order: with the clock, the state a checkpoint keeps. Pushing them again, in this
    /// order, into a new operator of the same kind rebuilds that state (the watermark follows
    /// from them). `None` for a count window, whose state also counts rows already gone.
    pub fn held_rows(&self) -> Option<Vec<(usize, Arc<Row>)>> {
        if let Some(rows) = self.policy.own_rows() {
            return Some(rows);
        }
        if self.policy.held() > 0 || self.policy.counts_rows() {
            return None;
        }
        Some(
            self.rows
                .all()
                .into_iter()
                .map(|(_, _, stream, row)| (stream, row))
                .collect(),
        )
    }

    /// Adds a row (already past the window's `FILTER`). `trigger` says whether it meets the
    /// sliding window's `OVER (WHEN ...)`. Windows this completes are appended to `out`. Returns
    /// the time the row counts at in a time window, or `None` when it is late (or counted).
    pub fn push(
        &mut self,
        stream: usize,
        row: Arc<Row>,
        trigger: bool,
        out: &mut Vec<Fired>,
    ) -> Option<i64> {
        let ts = row.timestamp_ms;
        self.push_at(stream, ts, row, trigger, out)
    }

    /// A tumbling window aggregated on arrival (see
    /// [`aggregate_on_arrival`](Self::aggregate_on_arrival)): takes a row of time
    /// `timestamp_ms` that the caller aggregates itself, as [`push`](Self::push) takes a row,
    /// without the row (the operator would not keep it).
    pub fn push_time(
        &mut self,
        stream: usize,
        timestamp_ms: i64,
        trigger: bool,
        out: &mut Vec<Fired>,
    ) -> Option<i64> {
        let row = Arc::clone(self.no_row.get_or_insert_with(|| {
            Arc::new(Row::new(Arc::new(Schema::new(Vec::new())), Vec::new(), 0))
        }));
        self.push_at(stream, timestamp_ms, row, trigger, out)
    }

    fn push_at(
        &mut self,
        stream: usize,
        timestamp_ms: i64,
        row: Arc<Row>,
        trigger: bool,
        out: &mut Vec<Fired>,
    ) -> Option<i64> {
        self.seq += 1;
        let arrived = Buffered {
            // Clamped so that adding a window's length (at most 100 years) cannot overflow.
            ts: timestamp_ms.clamp(-TIME_LIMIT, TIME_LIMIT),
            seq: self.seq,
            stream,
            row,
        };
        let mut row = self.policy.on_arrival(arrived, out)?;
        if self.event_time {
            if row.ts < self.watermark {
                self.late += 1;
                return None;
            }
            let last = self.stream_max.len() - 1;
            let max = &mut self.stream_max[stream.min(last)];
            *max = Some(max.map_or(row.ts, |m| m.max(row.ts)));
        } else if let Some(last) = self.rows.last_ts(0) {
            // Arrival order: a clock that steps back does not reorder rows.
            row.ts = row.ts.max(last);
        } else {
            row.ts = self.policy.arrival(row.ts);
        }
        let ts = row.ts;
        let index = if self.event_time {
            stream.min(self.rows.inputs() - 1)
        } else {
            // Processing time is arrival order: one buffer for every input.
            0
        };
        let fire_now = self.policy.on_row(&mut self.rows, index, row, trigger);
        if self.event_time {
            if !self.external {
                self.update_watermark();
                self.fire_until(self.watermark, false, out);
            }
        } else if fire_now {
            self.fire_until(ts, false, out);
        }
        Some(ts)
    }

    /// Adds a row of a state window (already past the window's `FILTER`), with what its
    /// conditions say. Windows this ends are appended to `out`. Returns `false` when the row is
    /// late (event time), and then counted.
    pub fn push_state(
        &mut self,
        stream: usize,
        row: Arc<Row>,
        input: StateInput,
        out: &mut Vec<Fired>,
    ) -> bool {
        self.seq += 1;
        let ts = row.timestamp_ms.clamp(-TIME_LIMIT, TIME_LIMIT);
        if self.event_time {
            if ts < self.watermark {
                self.late += 1;
                return false;
            }
            let last = self.stream_max.len() - 1;
            let max = &mut self.stream_max[stream.min(last)];
            *max = Some(max.map_or(ts, |m| m.max(ts)));
            if !self.external {
                self.update_watermark();
            }
        }
        let row = Buffered {
            ts,
            seq: self.seq,
            stream,
            row,
        };
        self.policy.on_state(row, input, out);
        true
    }

    /// An input stream ended (event time: it no longer holds the watermark back).
    pub fn end_stream(&mut self, stream: usize, out: &mut Vec<Fired>) {
        if let Some(done) = self.stream_done.get_mut(stream) {
            *done = true;
        }
        if self.event_time && !self.external {
            self.update_watermark();
            self.fire_until(self.watermark, false, out);
        }
    }

    /// Processing time: fires what is due at `now`.
    pub fn advance(&mut self, now: i64, out: &mut Vec<Fired>) {
        if !self.event_time {
            self.fire_until(now, false, out);
        }
    }

    /// Processing time: when `advance` next has something to do.
    pub fn next_deadline(&self) -> Option<i64> {
        if self.event_time {
            return None;
        }
        self.policy.next_deadline()
    }

    /// All inputs ended: fires every open time window (not a count window that has not
    /// filled, nor a state window that nothing closed: see [`open_windows`](Self::open_windows)).
    pub fn finish(&mut self, out: &mut Vec<Fired>) {
        self.watermark = i64::MAX;
        self.fire_until(i64::MAX, true, out);
    }

    fn update_watermark(&mut self) {
        let mut low = i64::MAX;
        for (max, done) in self.stream_max.iter().zip(&self.stream_done) {
            match (max, done) {
                (_, true) => {}
                (Some(m), false) => low = low.min(*m),
                // A stream that has sent nothing yet holds everything back.
                (None, false) => low = i64::MIN,
            }
        }
        let wm = if low == i64::MAX || low == i64::MIN {
            low
        } else {
            low.saturating_sub(self.late_tolerance)
        };
        self.watermark = self.watermark.max(wm);
    }

    /// Fires the windows that end by `limit` (see [`WindowPolicy::fire_until`]).
    fn fire_until(&mut self, limit: i64, draining: bool, out: &mut Vec<Fired>) {
        self.policy.fire_until(&mut self.rows, limit, draining, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    fn row(ts: i64) -> Row {
        Row::from_pairs(vec![(Arc::from("ts"), Value::Int(ts))], ts)
    }

    fn ts_of(f: &Fired) -> Vec<i64> {
        f.rows.iter().map(|(_, r)| r.timestamp_ms).collect()
    }

    fn feed(op: &mut WindowOperator, times: &[i64]) -> Vec<Fired> {
        let mut out = Vec::new();
        for &t in times {
            op.push(0, Arc::new(row(t)), true, &mut out);
        }
        out
    }

    #[test]
    fn tumbling_event_time_fires_as_the_watermark_passes() {
        // With a tolerance of 5, 3 after 5 is still in time; 8 after 25 is not.
        let mut op = WindowOperator::new(WindowKind::Tumbling { size: 10 }, true, 5, 1);
        let mut out = feed(&mut op, &[1, 5, 3, 12]);
        assert!(out.is_empty(), "the watermark (7) has not passed 10");
        out.extend(feed(&mut op, &[25]));
        assert_eq!(out.len(), 2);
        // The first window reports the first row's time as its start (as eKuiper), and holds
        // the rows of its aligned range.
        assert_eq!((out[0].start, out[0].end), (1, 10));
        assert_eq!((out[1].start, out[1].end), (10, 20));
        assert_eq!(ts_of(&out[0]), [1, 3, 5]);
        assert_eq!(ts_of(&out[1]), [12]);
        op.push(0, Arc::new(row(8)), true, &mut out);
        assert_eq!(op.late, 1, "8 is behind the watermark (20)");
        op.finish(&mut out);
        assert_eq!(ts_of(&out[2]), [25]);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn hopping_windows_overlap() {
        let mut op = WindowOperator::new(WindowKind::Hopping { size: 20, hop: 10 }, true, 0, 1);
        let mut out = feed(&mut op, &[1, 11, 21]);
        op.finish(&mut out);
        let ranges: Vec<_> = out.iter().map(|f| (f.start, f.end, ts_of(f))).collect();
        assert_eq!(
            ranges,
            [
                (-10, 10, vec![1]),
                (0, 20, vec![1, 11]),
                (10, 30, vec![11, 21]),
                (20, 40, vec![21])
            ]
        );
    }

    #[test]
    fn sliding_windows_fire_on_each_row() {
        let mut op = WindowOperator::new(WindowKind::Sliding { size: 10, delay: 0 }, true, 0, 1);
        let mut out = feed(&mut op, &[1, 5, 12, 30]);
        op.finish(&mut out);
        let sets: Vec<_> = out.iter().map(ts_of).collect();
        assert_eq!(sets, [vec![1], vec![1, 5], vec![5, 12], vec![30]]);
    }

    #[test]
    fn sessions_close_on_a_gap_or_at_max() {
        let mut op = WindowOperator::new(
            WindowKind::Session {
                timeout: 5,
                max: 100,
            },
            true,
            0,
            1,
        );
        let mut out = feed(&mut op, &[1, 3, 6, 20, 22, 95, 99, 103]);
        op.finish(&mut out);
        let sessions: Vec<_> = out.iter().map(|f| (f.start, f.end, ts_of(f))).collect();
        // 95..103 is not cut at 100: the session had not lasted `max` by then.
        assert_eq!(
            sessions,
            [
                (1, 11, vec![1, 3, 6]),
                (20, 27, vec![20, 22]),
                (95, 108, vec![95, 99, 103])
            ]
        );
        // A session that keeps going is cut at a multiple of `max` that a row passes once it has
        // lasted longer than `max` (eKuiper's event-time trigger); the next starts at the cut.
        let mut op = WindowOperator::new(
            WindowKind::Session {
                timeout: 5,
                max: 100,
            },
            true,
            0,
            1,
        );
        let times: Vec<i64> = (0..=250).step_by(3).collect();
        let mut out = feed(&mut op, &times);
        op.finish(&mut out);
        let ranges: Vec<_> = out.iter().map(|f| (f.start, f.end, f.rows.len())).collect();
        assert_eq!(ranges, [(0, 200, 67), (200, 254, 17)]);
    }

    #[test]
    fn count_windows_tumble_and_slide() {
        let mut op = WindowOperator::new(
            WindowKind::Count {
                size: 3,
                interval: 3,
            },
            false,
            0,
            1,
        );
        let out = feed(&mut op, &[1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(
            out.iter().map(ts_of).collect::<Vec<_>>(),
            [vec![1, 2, 3], vec![4, 5, 6]]
        );
        let mut op = WindowOperator::new(
            WindowKind::Count {
                size: 3,
                interval: 2,
            },
            false,
            0,
            1,
        );
        let out = feed(&mut op, &[1, 2, 3, 4, 5, 6]);
        assert_eq!(
            out.iter().map(ts_of).collect::<Vec<_>>(),
            [vec![2, 3, 4], vec![4, 5, 6]]
        );
    }

    #[test]
    fn the_watermark_waits_for_every_stream_and_the_tolerance() {
        let mut op = WindowOperator::new(WindowKind::Tumbling { size: 10 }, true, 5, 2);
        let mut out = Vec::new();
        op.push(0, Arc::new(row(1)), true, &mut out);
        op.push(0, Arc::new(row(30)), true, &mut out);
        assert!(out.is_empty(), "stream 1 has sent nothing");
        op.push(1, Arc::new(row(14)), true, &mut out);
        assert_eq!(out.len(), 0, "watermark 14 - 5 = 9");
        op.push(1, Arc::new(row(16)), true, &mut out);
        assert_eq!(out.len(), 1, "watermark 11 passes 10");
        op.end_stream(1, &mut out);
        op.finish(&mut out);
        assert_eq!(
            out.iter().map(ts_of).collect::<Vec<_>>(),
            [vec![1], vec![14, 16], vec![], vec![30]]
        );
    }

    #[test]
    fn processing_time_windows_fire_on_the_clock() {
        let mut op = WindowOperator::new(WindowKind::Tumbling { size: 10 }, false, 0, 1);
        let mut out = feed(&mut op, &[101, 104]);
        assert_eq!(op.next_deadline(), Some(110));
        op.advance(109, &mut out);
        assert!(out.is_empty());
        op.advance(110, &mut out);
        assert_eq!(out.iter().map(ts_of).collect::<Vec<_>>(), [vec![101, 104]]);
        op.advance(120, &mut out);
        assert_eq!(out.len(), 2, "an empty window fires too");
        assert!(out[1].rows.is_empty());
    }

    #[test]
    fn panes_keep_the_timing_without_the_rows() {
        let mut op = WindowOperator::new(WindowKind::Tumbling { size: 10 }, false, 0, 1);
        op.aggregate_on_arrival();
        let mut out = Vec::new();
        assert_eq!(op.push(0, Arc::new(row(105)), true, &mut out), Some(105));
        assert_eq!(
            op.push(0, Arc::new(row(103)), true, &mut out),
            Some(105),
            "a clock that steps back does not reorder"
        );
        assert_eq!(op.pending(), 0);
        assert_eq!(op.next_deadline(), Some(110));
        op.advance(110, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].start, out[0].end), (100, 110));
        assert!(out[0].rows.is_empty(), "the caller aggregated them");
    }

    #[test]
    fn processing_time_deadlines_follow_the_kind() {
        let deadline = |kind| {
            let mut op = WindowOperator::new(kind, false, 0, 1);
            feed(&mut op, &[101]);
            op.next_deadline()
        };
        let hopping = WindowKind::Hopping { size: 20, hop: 10 };
        assert_eq!(deadline(hopping), Some(110));
        let sliding = WindowKind::Sliding { size: 10, delay: 3 };
        assert_eq!(deadline(sliding), Some(104));
        let session = WindowKind::Session {
            timeout: 5,
            max: 100,
        };
        assert_eq!(deadline(session), Some(106));
        let count = WindowKind::Count {
            size: 2,
            interval: 2,
        };
        assert_eq!(deadline(count), None);
    }
}
