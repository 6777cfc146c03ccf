//! Windows: which rows go together, and when a window fires.
//!
//! Time windows are aligned to the Unix epoch (a 10-second window ends at :00, :10, ...).
//! In processing time a row's time is its arrival; windows fire when the clock passes their end
//! (tumbling and hopping windows fire even when empty, as in eKuiper). In event time a row's
//! time is its `TIMESTAMP` field; the watermark is the smallest, over the statement's streams,
//! of the latest time seen minus `lateTolerance`; a window fires when the watermark passes its
//! end, its rows in time order; a row older than the watermark is late: counted, not windowed.
//! When every input has ended, the watermark goes to the end of time and every open window
//! fires (a count window that has not reached its count is reported, not emitted).

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use super::expr::Expr;
use crate::value::Row;

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
    /// `SESSIONWINDOW(unit, timeout, max)`.
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

struct Buffered {
    ts: i64,
    /// Arrival order, to keep rows with equal times in the order they came.
    seq: u64,
    stream: usize,
    row: Arc<Row>,
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

/// The state of one statement's window.
pub struct WindowOperator {
    kind: WindowKind,
    event_time: bool,
    late_tolerance: i64,
    /// Rows per input, in time order.
    buffers: Vec<StreamBuffer>,
    /// Count windows: rows in arrival order.
    counted_rows: VecDeque<Buffered>,
    seq: u64,
    /// Per stream: the latest event time seen, and whether the stream has ended.
    stream_max: Vec<Option<i64>>,
    stream_done: Vec<bool>,
    watermark: i64,
    /// Tumbling and hopping: the end of the next window to fire.
    next_end: Option<i64>,
    /// Sliding: triggering rows not yet fired, as `(fire at, trigger time)`.
    triggers: VecDeque<(i64, i64)>,
    /// Session: when the current session started, and its last row.
    session: Option<(i64, i64)>,
    /// Count: rows seen.
    counted: u64,
    /// Rows that arrived after the watermark had passed them.
    pub late: u64,
    /// Tumbling windows aggregated as rows arrive: the rows are not kept, only the start of
    /// each window that has some (see [`WindowOperator::aggregate_on_arrival`]).
    panes: Option<BTreeSet<i64>>,
    /// Processing time: the last arrival time, so a clock that steps back does not reorder.
    last_arrival: i64,
}

fn floor_to(t: i64, step: i64) -> i64 {
    t.div_euclid(step) * step
}

impl WindowOperator {
    /// An operator for `kind` over `streams` inputs.
    pub fn new(kind: WindowKind, event_time: bool, late_tolerance: i64, streams: usize) -> Self {
        Self {
            kind,
            event_time,
            late_tolerance,
            buffers: (0..streams.max(1))
                .map(|_| StreamBuffer::default())
                .collect(),
            counted_rows: VecDeque::new(),
            seq: 0,
            stream_max: vec![None; streams.max(1)],
            stream_done: vec![false; streams.max(1)],
            watermark: i64::MIN,
            next_end: None,
            triggers: VecDeque::new(),
            session: None,
            counted: 0,
            late: 0,
            panes: None,
            last_arrival: i64::MIN,
        }
    }

    /// Tumbling windows only: the caller aggregates each accepted row itself (by the time
    /// [`push`](Self::push) returns), so the operator keeps no rows and fired windows come with
    /// none; only their timing and lateness are decided here.
    pub fn aggregate_on_arrival(&mut self) {
        if matches!(self.kind, WindowKind::Tumbling { .. }) {
            self.panes = Some(BTreeSet::new());
        }
    }

    /// Rows held that no window has emitted yet (after `finish`: an unfinished count window).
    pub fn pending(&self) -> usize {
        self.buffers.iter().map(|b| b.rows.len()).sum::<usize>() + self.counted_rows.len()
    }

    fn is_empty(&self) -> bool {
        self.buffers.iter().all(|b| b.rows.is_empty())
            && self.panes.as_ref().is_none_or(BTreeSet::is_empty)
    }

    /// The earliest buffered time.
    fn first_ts(&self) -> Option<i64> {
        self.buffers
            .iter()
            .filter_map(|b| b.rows.front().map(|r| r.ts))
            .chain(self.panes.as_ref().and_then(|p| p.first().copied()))
            .min()
    }

    /// The rows of `[start, end)` (`[start, end]` when `inclusive`), in time then arrival order.
    fn window_rows(&self, start: i64, end: i64, inclusive: bool) -> Vec<(usize, Arc<Row>)> {
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

    /// Forgets the rows older than `ts`.
    fn drop_before(&mut self, ts: i64) {
        if let (Some(panes), WindowKind::Tumbling { size }) = (self.panes.as_mut(), self.kind) {
            // A window's rows are all older than `ts` once its end is.
            while panes.first().is_some_and(|&s| s.saturating_add(size) <= ts) {
                panes.pop_first();
            }
        }
        for b in &mut self.buffers {
            if ts == i64::MAX {
                b.rows.clear();
            } else {
                b.drop_before(ts);
            }
        }
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
        let mut ts = row.timestamp_ms;
        self.seq += 1;
        let seq = self.seq;
        if let WindowKind::Count { size, interval } = self.kind {
            self.counted_rows.push_back(Buffered {
                ts,
                seq,
                stream,
                row,
            });
            self.counted += 1;
            if self.counted.is_multiple_of(interval as u64) && self.counted_rows.len() >= size {
                let from = self.counted_rows.len() - size;
                let rows = self
                    .counted_rows
                    .iter()
                    .skip(from)
                    .map(|b| (b.stream, Arc::clone(&b.row)))
                    .collect();
                // Only the last size - 1 rows can belong to a later window.
                self.counted_rows.drain(..from + 1);
                out.push(Fired {
                    start: ts,
                    end: ts,
                    rows,
                });
            }
            return None;
        }
        if self.event_time {
            if ts < self.watermark {
                self.late += 1;
                return None;
            }
            let last = self.stream_max.len() - 1;
            let max = &mut self.stream_max[stream.min(last)];
            *max = Some(max.map_or(ts, |m| m.max(ts)));
        } else if let Some(last) = self.buffers[0].rows.back() {
            // Arrival order: a clock that steps back does not reorder rows.
            ts = ts.max(last.ts);
        } else if self.panes.is_some() {
            ts = ts.max(self.last_arrival);
            self.last_arrival = ts;
        }
        let index = if self.event_time {
            stream.min(self.buffers.len() - 1)
        } else {
            // Processing time is arrival order: one buffer for every input.
            0
        };
        match (self.panes.as_mut(), self.kind) {
            (Some(panes), WindowKind::Tumbling { size }) => {
                panes.insert(floor_to(ts, size));
            }
            _ => self.buffers[index].insert(Buffered {
                ts,
                seq,
                stream,
                row,
            }),
        }
        if !self.event_time
            && let (None, WindowKind::Tumbling { size: hop } | WindowKind::Hopping { hop, .. }) =
                (self.next_end, self.kind)
        {
            self.next_end = Some(floor_to(ts, hop) + hop);
        }
        match self.kind {
            WindowKind::Sliding { delay, .. } if trigger => {
                self.triggers.push_back((ts + delay, ts));
                if self.event_time {
                    self.triggers.make_contiguous().sort_by_key(|t| t.0);
                }
            }
            WindowKind::Session { .. } if !self.event_time => {
                let first = self.session.map_or(ts, |(f, _)| f);
                self.session = Some((first, ts));
            }
            _ => {}
        }
        if self.event_time {
            self.update_watermark();
            self.fire_until(self.watermark, false, out);
        } else if let WindowKind::Sliding { delay: 0, .. } = self.kind {
            self.fire_until(ts, false, out);
        }
        Some(ts)
    }

    /// An input stream ended (event time: it no longer holds the watermark back).
    pub fn end_stream(&mut self, stream: usize, out: &mut Vec<Fired>) {
        if let Some(done) = self.stream_done.get_mut(stream) {
            *done = true;
        }
        if self.event_time {
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
        match self.kind {
            WindowKind::Tumbling { .. } | WindowKind::Hopping { .. } => self.next_end,
            WindowKind::Sliding { .. } => self.triggers.front().map(|t| t.0),
            WindowKind::Session { timeout, max } => self.session.map(|(first, last)| {
                let tick = floor_to(first, max) + max;
                let tick = if tick - first >= max {
                    tick
                } else {
                    tick + max
                };
                (last + timeout).min(tick)
            }),
            WindowKind::Count { .. } => None,
        }
    }

    /// All inputs ended: fires every open window.
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

    /// Fires the windows that end by `limit`. With `draining`, nothing more will come: stop once
    /// the rows are used up instead of emitting empty windows.
    fn fire_until(&mut self, limit: i64, draining: bool, out: &mut Vec<Fired>) {
        match self.kind {
            WindowKind::Tumbling { size } => self.fire_aligned(size, size, limit, draining, out),
            WindowKind::Hopping { size, hop } => self.fire_aligned(size, hop, limit, draining, out),
            WindowKind::Sliding { size, delay } => {
                while let Some(&(fire_at, t)) = self.triggers.front() {
                    if fire_at > limit {
                        break;
                    }
                    self.triggers.pop_front();
                    let (start, end) = (t - size, t + delay);
                    let rows = self.window_rows(start, end, delay == 0);
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
                self.drop_before(keep_from);
            }
            WindowKind::Session { timeout, max } => self.fire_sessions(timeout, max, limit, out),
            WindowKind::Count { .. } => {}
        }
    }

    fn fire_aligned(
        &mut self,
        size: i64,
        hop: i64,
        limit: i64,
        draining: bool,
        out: &mut Vec<Fired>,
    ) {
        let next = match self.next_end {
            Some(end) => end,
            None => match self.first_ts() {
                Some(first) => floor_to(first, hop) + hop,
                None => return,
            },
        };
        let mut end = next;
        while end <= limit {
            if draining && self.is_empty() {
                break;
            }
            // Far behind (a process that slept): skip empty windows rather than emit each.
            if self.is_empty() && end + hop <= limit && !self.event_time {
                end = floor_to(limit, hop) + hop;
                continue;
            }
            let start = end - size;
            let rows = self.window_rows(start, end, false);
            out.push(Fired { start, end, rows });
            // The next window starts at end + hop - size: older rows are done.
            self.drop_before(end + hop - size);
            end += hop;
            if self.event_time && self.is_empty() {
                break;
            }
        }
        self.next_end = if self.event_time && self.is_empty() {
            None
        } else {
            Some(end)
        };
    }

    fn fire_sessions(&mut self, timeout: i64, max: i64, limit: i64, out: &mut Vec<Fired>) {
        loop {
            let Some(first) = self.first_ts() else {
                self.session = None;
                return;
            };
            // The session's end: the first gap longer than the timeout, or the first multiple
            // of `max` that is at least `max` after its start.
            let tick = {
                let t = floor_to(first, max) + max;
                if t - first >= max { t } else { t + max }
            };
            let ordered = self.window_rows(i64::MIN, i64::MAX, true);
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
            let rows = self.window_rows(i64::MIN, end, false);
            self.drop_before(end);
            out.push(Fired {
                start: first,
                end,
                rows,
            });
        }
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
        assert_eq!((out[0].start, out[0].end), (0, 10));
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
        // A session that keeps going is cut at the first multiple of `max` it has outlasted.
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
        assert_eq!(ranges, [(0, 100, 34), (102, 254, 50)]);
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
}
