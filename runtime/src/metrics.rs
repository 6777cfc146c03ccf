//! Counters per source, rule and action, named as eKuiper names its metrics
//! (`records_in_total`, `records_out_total`, `exceptions_total`, `last_exception`, ...).
//! They are plain atomics: updated by the workers, read by the summary at any time.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The last error seen, with how many there were.
#[derive(Debug, Default)]
pub struct Exceptions {
    count: Counter,
    last: Mutex<Option<String>>,
}

impl Exceptions {
    /// Records one error.
    pub fn record(&self, message: impl Into<String>) {
        self.count.add(1);
        if let Ok(mut last) = self.last.lock() {
            *last = Some(message.into());
        }
    }

    /// Records `n` errors with one message.
    pub fn record_many(&self, n: u64, message: impl Into<String>) {
        if n == 0 {
            return;
        }
        self.count.add(n);
        if let Ok(mut last) = self.last.lock() {
            *last = Some(message.into());
        }
    }

    /// `exceptions_total`.
    pub fn total(&self) -> u64 {
        self.count.get()
    }

    /// `last_exception`.
    pub fn last(&self) -> Option<String> {
        self.last.lock().ok().and_then(|l| l.clone())
    }
}

/// A source's metrics.
#[derive(Debug, Default)]
pub struct SourceMetrics {
    /// Rows decoded and handed to the rule.
    pub records_out: Counter,
    /// Messages that could not be decoded (bad JSON, a value that does not fit the schema).
    pub exceptions: Exceptions,
    /// Messages a broker sent again that were read already (before a crash, or on a dropped
    /// connection): acknowledged and dropped, not read twice.
    pub redelivered: Counter,
    /// Acknowledgements a stop could not send within its limit (the broker down or hung): the
    /// broker sends those messages again, and the next run drops them.
    pub acks_unsent_at_stop: Counter,
}

/// The rule's (query operator's) metrics.
#[derive(Debug, Default)]
pub struct RuleMetrics {
    /// Rows the query received.
    pub records_in: Counter,
    /// Messages the query produced.
    pub records_out: Counter,
    /// Rows the WHERE clause dropped.
    pub filtered: Counter,
    /// Rows whose evaluation failed.
    pub exceptions: Exceptions,
    /// Time spent evaluating, in microseconds (summed).
    pub process_time_us: Counter,
    /// Rows that arrived after the watermark had passed them (event time): counted, not windowed.
    pub late: Counter,
    /// Windows still open when the input ended (or the rule stopped), not sent: the time
    /// windows eKuiper does not fire at its end of input (all of them unless `fireAtEnd`), count
    /// windows that never filled, state windows that nothing closed.
    pub windows_open_at_end: Counter,
    /// The rows those windows held, with the rows the watermark still held back (event time)
    /// and the rows whose `delay` the rule's stop cut short.
    pub rows_held_at_end: Counter,
    /// Failures of the rule's sources (each is restarted by `restartStrategy`, or stops the
    /// rule), and the last one's message.
    pub source_failures: Exceptions,
    /// Times a source of the rule failed and was started again (`restartStrategy`).
    pub restarts: Counter,
    /// Why the rule stopped, when a source failed once its restarts were used up.
    pub stopped_by_error: Mutex<Option<String>>,
}

impl RuleMetrics {
    /// Why the rule stopped by error, if it did.
    pub fn stopped_by_error(&self) -> Option<String> {
        self.stopped_by_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// One action's metrics.
#[derive(Debug, Default)]
pub struct ActionMetrics {
    /// Messages the action received from the rule.
    pub records_in: Counter,
    /// Payloads the sink accepted.
    pub records_out: Counter,
    /// Payloads the action had to deliver: built from the messages (one per row with
    /// `sendSingle`), including those that could not be built.
    pub payloads: Counter,
    /// Payloads lost and counted: not delivered and not dead-lettered (no dead-letter output,
    /// or it failed too; payloads that could not be built; the cache dropped at stop).
    pub failed: Counter,
    /// Payloads handed to the dead-letter output.
    pub dead_lettered: Counter,
    /// Payloads the run stopped before delivering, with no cache to keep them (counted in
    /// `failed` too): a rule with checkpoints writes none after them, so its next run replays
    /// them.
    pub cut_short: Counter,
    /// Payloads in the cache now (at the end of a run: left on disk for the next run).
    pub cached: Counter,
    /// Payloads that went into the cache.
    pub cached_total: Counter,
    /// Payloads an earlier run left in the cache, found at start.
    pub cache_restored: Counter,
    /// Payloads delivered from the cache.
    pub resent: Counter,
    /// Results dropped by `omitIfEmpty`.
    pub omitted: Counter,
    /// Batches retried after a transient error.
    pub retries: Counter,
    /// Instances replaced after a trap.
    pub restarts: Counter,
    /// `collect` calls made.
    pub batches: Counter,
    /// Time spent in `collect`, in nanoseconds (summed).
    pub collect_time_ns: Counter,
    /// Errors, with the last one.
    pub exceptions: Exceptions,
    /// Guest log lines dropped because the sink logged too fast.
    pub dropped_logs: std::sync::Arc<AtomicU64>,
    /// The sink module version running (content hash), for wasm sinks.
    pub version: Mutex<Option<String>>,
    /// When that version was loaded (RFC 3339).
    pub version_loaded_at: Mutex<Option<String>>,
    /// Switches to a new build of the sink module (hot reloads), per instance.
    pub reloads: Counter,
    /// New builds refused (they failed to load, configure or open).
    pub reload_refusals: Counter,
    /// How long each switch held the action up (closing the old instance), in nanoseconds.
    pub swap_pauses_ns: Mutex<Vec<u64>>,
    /// The last reloads: builds taken over (with the swap pause) and builds refused.
    pub reload_history: Recent<Reload>,
    /// The last batches dead-lettered, with why.
    pub dead_letters: Recent<Incident>,
    /// The last instances replaced after a trap, with the trap message.
    pub traps: Recent<Incident>,
    /// The cache depth over time (the seconds in which it changed).
    pub cache_history: DepthHistory,
}

/// A depth over time, kept as one [`DepthPoint`] per second in which it changed (the last
/// [`DepthHistory::KEPT`] of them, oldest first): between two points the depth stayed at the
/// earlier point's `last`. A depth that never moves costs nothing, and a short peak inside
/// a second is kept as that second's `max`.
#[derive(Debug, Default)]
pub struct DepthHistory(Mutex<std::collections::VecDeque<DepthPoint>>);

/// One second of a [`DepthHistory`]: `[unix seconds, the highest depth in it, the depth at
/// its end]` (an array in JSON: a history holds up to [`DepthHistory::KEPT`] of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DepthPoint(pub u64, pub u64, pub u64);

impl DepthHistory {
    /// How many points (seconds with a change) are kept: five minutes of a depth that
    /// changes every second, longer for one that changes less often.
    pub const KEPT: usize = 300;

    /// Notes the depth `depth` at `unix_s`.
    pub fn record(&self, unix_s: u64, depth: u64) {
        let Ok(mut points) = self.0.lock() else {
            return;
        };
        match points.back_mut() {
            Some(DepthPoint(at, max, last)) if *at == unix_s => {
                *max = (*max).max(depth);
                *last = depth;
            }
            _ => {
                if points.len() == Self::KEPT {
                    points.pop_front();
                }
                points.push_back(DepthPoint(unix_s, depth, depth));
            }
        }
    }

    /// The points kept, oldest first.
    pub fn list(&self) -> Vec<DepthPoint> {
        self.0
            .lock()
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// The last [`Recent::KEPT`] events of one kind, oldest first: a short history for the
/// server's status documents and the console, not a log.
#[derive(Debug)]
pub struct Recent<T>(Mutex<std::collections::VecDeque<T>>);

impl<T> Default for Recent<T> {
    fn default() -> Self {
        Self(Mutex::new(std::collections::VecDeque::new()))
    }
}

impl<T: Clone> Recent<T> {
    /// How many events are kept.
    pub const KEPT: usize = 20;

    /// Adds an event, forgetting the oldest beyond [`Recent::KEPT`].
    pub fn push(&self, event: T) {
        if let Ok(mut events) = self.0.lock() {
            if events.len() == Self::KEPT {
                events.pop_front();
            }
            events.push_back(event);
        }
    }

    /// The events kept, oldest first.
    pub fn list(&self) -> Vec<T> {
        self.0
            .lock()
            .map(|e| e.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The time now, as the histories write it (RFC 3339, UTC, milliseconds).
pub fn now_rfc3339() -> String {
    chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// One reload of an action instance: a new build taken over, or one refused.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reload {
    /// When (RFC 3339).
    pub at: String,
    /// The action instance.
    pub instance: u32,
    /// The build running before (content hash, as `version`).
    pub from: String,
    /// The new build (content hash of its module).
    pub to: String,
    /// How long the switch held the action up, in microseconds (a build taken over).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_us: Option<u64>,
    /// Why the build was refused (the running one stayed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// One dead-lettered batch or trapped instance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Incident {
    /// When (RFC 3339).
    pub at: String,
    /// The rows of the batch.
    pub rows: u64,
    /// Why.
    pub message: String,
}

impl ActionMetrics {
    /// Sets the number of payloads in the cache now.
    pub fn set_cached(&self, n: u64) {
        if self.cached.0.swap(n, Ordering::Relaxed) != n {
            let unix_s = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            self.cache_history.record(unix_s, n);
        }
    }

    /// True when every payload is accounted for: `payloads + restored = out + dead-lettered +
    /// failed + cached`.
    pub fn balanced(&self) -> bool {
        self.payloads.get() + self.cache_restored.get()
            == self.records_out.get()
                + self.dead_lettered.get()
                + self.failed.get()
                + self.cached.get()
    }

    /// The version the action runs, if it is a wasm sink.
    pub fn version(&self) -> Option<String> {
        self.version.lock().ok().and_then(|v| v.clone())
    }

    /// Records how long a switch to a new build held the action up.
    pub fn record_swap_pause(&self, pause: std::time::Duration) {
        if let Ok(mut pauses) = self.swap_pauses_ns.lock() {
            pauses.push(pause.as_nanos() as u64);
        }
    }

    /// The pauses recorded so far, in nanoseconds.
    pub fn swap_pauses(&self) -> Vec<u64> {
        self.swap_pauses_ns
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    /// The longest pause recorded so far, in nanoseconds (0 before any).
    pub fn longest_swap_pause_ns(&self) -> u64 {
        self.swap_pauses_ns
            .lock()
            .ok()
            .and_then(|p| p.iter().max().copied())
            .unwrap_or(0)
    }

    /// Records the version the action now runs.
    pub fn set_version(&self, hash: &str, loaded_at: std::time::SystemTime) {
        if let Ok(mut v) = self.version.lock() {
            *v = Some(hash.to_string());
        }
        if let Ok(mut at) = self.version_loaded_at.lock() {
            *at = Some(chrono::DateTime::<chrono::Utc>::from(loaded_at).to_rfc3339());
        }
    }

    /// When the running version was loaded, if it is a wasm sink.
    pub fn version_loaded_at(&self) -> Option<String> {
        self.version_loaded_at.lock().ok().and_then(|v| v.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_depth_history_keeps_one_point_per_second_with_its_peak_and_end() {
        let history = DepthHistory::default();
        history.record(10, 5);
        history.record(10, 9);
        history.record(10, 2);
        history.record(12, 0);
        assert_eq!(history.list(), [DepthPoint(10, 9, 2), DepthPoint(12, 0, 0)]);
        for s in 0..DepthHistory::KEPT as u64 + 5 {
            history.record(100 + s, s);
        }
        let points = history.list();
        assert_eq!(points.len(), DepthHistory::KEPT);
        assert_eq!(points[0], DepthPoint(105, 5, 5));
    }

    #[test]
    fn only_a_change_of_the_cache_depth_is_recorded() {
        let metrics = ActionMetrics::default();
        metrics.set_cached(0);
        assert!(metrics.cache_history.list().is_empty());
        metrics.set_cached(3);
        metrics.set_cached(3);
        metrics.set_cached(0);
        // One point, or two when a second ended between the calls.
        let points = metrics.cache_history.list();
        assert!(matches!(points.len(), 1 | 2), "{points:?}");
        assert_eq!(points.iter().map(|p| p.1).max(), Some(3), "{points:?}");
        assert_eq!(points.last().map(|p| p.2), Some(0), "{points:?}");
    }
}
