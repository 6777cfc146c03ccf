//! The cache side of delivery: keeping what the sink could not take, resending it oldest first
//! once it is due, holding new messages back while the cache is full, and draining it at the end
//! of the input.

use std::sync::Arc;
use std::time::Duration;

use super::batch::Batch;
use super::cache::{ActionCache, CacheConfig};
use super::dead_letter::DeadReason;
use super::delivery::{Deliverer, Delivery, Undelivered, sleep_until_or_soon, stopped};

/// An action's cache and when to resend from it.
pub(super) struct CacheState {
    pub(super) cache: ActionCache,
    /// A worker is resending the head right now (the head stays cached until it is delivered).
    resending: bool,
    /// Earliest time of the next resend.
    next_resend: tokio::time::Instant,
    /// Failed resends in a row (for the backoff).
    failures: u32,
}

impl CacheState {
    pub(super) fn new(cache: ActionCache) -> Self {
        Self {
            cache,
            resending: false,
            next_resend: tokio::time::Instant::now(),
            failures: 0,
        }
    }
}

/// What a resend did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resend {
    /// Nothing to resend (empty, or another worker is at it).
    Idle,
    /// Not yet: the next resend is due later.
    NotDue,
    /// The head left the cache (delivered or dead-lettered).
    Done,
    /// The sink is still failing: the head stays.
    Failed,
}

/// How new batches and resends share the sink while something is cached (`resendAlterQueue`,
/// `resendPriority`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ResendOrder {
    /// New batches queue behind the cache, keeping the order (no `resendAlterQueue`).
    Queue,
    /// Priority 1: what is due is resent before each new batch.
    CacheFirst,
    /// Priority 0: one resend, then the new batch.
    Alternate,
    /// Priority -1: resends only while no new batch waits.
    WhenIdle,
}

impl ResendOrder {
    fn of(config: &CacheConfig) -> Self {
        match (config.alter_queue, config.priority) {
            (false, _) => Self::Queue,
            (true, 1) => Self::CacheFirst,
            (true, 0) => Self::Alternate,
            (true, _) => Self::WhenIdle,
        }
    }
}

/// The cache as a new batch finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CacheStatus {
    /// Nothing is cached.
    pub(super) empty: bool,
    /// Another batch fits.
    pub(super) room: bool,
    /// How the new batch and the cache share the sink.
    pub(super) order: ResendOrder,
}

impl Delivery {
    /// Keeps a batch the sink could not take now; if the cache itself fails, dead-letters it.
    pub(super) async fn cache_push(&self, batch: Batch, message: &str) {
        let Some(state) = &self.cache else {
            return self
                .dead_letter(DeadReason::Transient, message, &batch)
                .await;
        };
        let n = batch.len() as u64;
        let mut state = state.lock().await;
        let was_empty = state.cache.is_empty();
        let kept = batch.clone();
        match state.cache.push(batch) {
            Ok(()) => {
                self.metrics.cached_total.add(n);
                self.metrics.set_cached(state.cache.len());
                tracing::debug!(
                    action = %self.name,
                    "cached {n} messages; {} in the cache, {} of them on disk",
                    state.cache.len(),
                    state.cache.disk_len()
                );
                if was_empty {
                    tracing::warn!(
                        action = %self.name,
                        "sink unavailable, caching its messages until it recovers: {message}"
                    );
                    state.next_resend = tokio::time::Instant::now() + self.resend_wait(0, &state);
                }
            }
            Err(e) => {
                drop(state);
                let why = format!("{message}; and the cache failed: {e}");
                self.dead_letter(DeadReason::Transient, &why, &kept).await;
            }
        }
    }

    /// The wait before the next resend after `failures` failed ones in a row.
    fn resend_wait(&self, failures: u32, state: &CacheState) -> Duration {
        let interval = Duration::from_millis(state.cache.config().resend_interval_ms);
        if failures == 0 {
            interval
        } else {
            // Back off while the sink stays down, but probe at least once a second so the
            // cache drains soon after it recovers.
            interval.max(self.resend.delay(failures))
        }
    }

    /// The cache's state, if the action has one.
    pub(super) async fn cache_status(&self) -> Option<CacheStatus> {
        let state = self.cache.as_ref()?.lock().await;
        Some(CacheStatus {
            empty: state.cache.is_empty(),
            room: state.cache.has_room(),
            order: ResendOrder::of(state.cache.config()),
        })
    }

    /// When the next resend is due, if anything is cached.
    pub(super) async fn next_resend(&self) -> Option<tokio::time::Instant> {
        let state = self.cache.as_ref()?.lock().await;
        (!state.cache.is_empty() && !state.resending).then_some(state.next_resend)
    }
}

impl Deliverer {
    /// Back-pressure: resends until the cache has room again (or the run stops).
    pub(super) async fn wait_for_room(&mut self) {
        let shared = Arc::clone(&self.shared);
        let mut warned = false;
        while !shared.stopping() {
            if shared.cache_status().await.is_none_or(|s| s.room) {
                return;
            }
            if !warned {
                warned = true;
                tracing::warn!(
                    action = %shared.name,
                    "the cache is full: holding new messages back until the sink recovers"
                );
            }
            match self.resend_one().await {
                Resend::Done => {}
                _ => {
                    let at = shared.next_resend().await;
                    tokio::select! {
                        () = sleep_until_or_soon(at) => {}
                        () = stopped(shared.stop.clone()) => {}
                    }
                }
            }
        }
    }

    /// Resends the oldest cached batch if it is due; it leaves the cache once delivered or
    /// dead-lettered.
    pub(super) async fn resend_one(&mut self) -> Resend {
        let shared = Arc::clone(&self.shared);
        let Some(state) = &shared.cache else {
            return Resend::Idle;
        };
        let (mut batch, indicator) = {
            let mut state = state.lock().await;
            if state.resending || state.cache.is_empty() {
                return Resend::Idle;
            }
            if tokio::time::Instant::now() < state.next_resend {
                return Resend::NotDue;
            }
            let front = match state.cache.front() {
                Ok(Some(front)) => front,
                Ok(None) => return Resend::Idle,
                Err(e) => {
                    tracing::error!(action = %shared.name, "{e}");
                    shared.metrics.exceptions.record(e.to_string());
                    state.failures += 1;
                    state.next_resend =
                        tokio::time::Instant::now() + shared.resend_wait(state.failures, &state);
                    return Resend::Failed;
                }
            };
            state.resending = true;
            (front, state.cache.config().indicator_field.clone())
        };
        if let Some(field) = &indicator {
            mark_resent(&mut batch, field);
        }
        if batch.sequence() == 0 && !shared.sequencer.is_pinned() {
            // Cached by a version that did not number batches (under qos 2 it stays unnumbered:
            // the numbers follow the rows).
            batch.set_sequence(shared.sequencer.issue());
        }
        let outcome = self.attempt(&batch, 0).await;
        let mut state = state.lock().await;
        state.resending = false;
        let result = match outcome {
            Ok(()) => {
                shared.metrics.resent.add(batch.len() as u64);
                Resend::Done
            }
            Err(Undelivered {
                reason: DeadReason::Transient | DeadReason::Unavailable,
                ..
            }) => {
                state.failures += 1;
                state.next_resend =
                    tokio::time::Instant::now() + shared.resend_wait(state.failures, &state);
                return Resend::Failed;
            }
            Err(Undelivered { reason, message }) => {
                drop(state);
                shared.dead_letter(reason, &message, &batch).await;
                state = shared.cache.as_ref().expect("checked above").lock().await;
                Resend::Done
            }
        };
        if let Err(e) = state.cache.pop_front() {
            // It was delivered but stays cached: it will be sent again (at least once).
            tracing::error!(action = %shared.name, "{e}");
            shared.metrics.exceptions.record(e.to_string());
        }
        state.failures = 0;
        state.next_resend = tokio::time::Instant::now() + shared.resend_wait(0, &state);
        shared.metrics.set_cached(state.cache.len());
        if state.cache.is_empty() {
            tracing::info!(action = %shared.name, "cache resent: the sink is caught up");
        }
        result
    }

    /// At the end of the input: resends what is cached, retrying like a batch (`retryCount`,
    /// `retryInterval`); what remains stays in the disk cache for the next run.
    pub(super) async fn drain_cache(&mut self) {
        let shared = Arc::clone(&self.shared);
        if shared.cache.is_none() {
            return;
        }
        let mut failures = 0u32;
        // With a drain timeout, a sink that is down is waited for until then.
        let deadline = shared
            .drain_timeout
            .map(|timeout| tokio::time::Instant::now() + timeout);
        let gave_up = |failures: u32| match deadline {
            Some(deadline) => tokio::time::Instant::now() >= deadline,
            None => failures >= shared.retry_count,
        };
        loop {
            match self.resend_one().await {
                Resend::Done => failures = 0,
                Resend::Idle => return,
                Resend::Failed if shared.stopping() || gave_up(failures) => return,
                Resend::Failed => failures += 1,
                Resend::NotDue => {
                    if shared.stopping() {
                        return;
                    }
                    let at = shared.next_resend().await;
                    sleep_until_or_soon(at).await;
                }
            }
        }
    }
}

/// Sets `field: true` in every JSON object of a resent batch (`resendIndicatorField`).
fn mark_resent(batch: &mut Batch, field: &str) {
    let mut out = Batch::new();
    out.set_header(batch.take_header());
    for (bytes, ts) in &*batch {
        let marked = match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(serde_json::Value::Object(mut map)) => {
                map.insert(field.to_string(), serde_json::Value::Bool(true));
                serde_json::to_vec(&map).ok()
            }
            Ok(serde_json::Value::Array(mut items)) => {
                for item in &mut items {
                    if let serde_json::Value::Object(map) = item {
                        map.insert(field.to_string(), serde_json::Value::Bool(true));
                    }
                }
                serde_json::to_vec(&items).ok()
            }
            _ => None,
        };
        out.push(marked.as_deref().unwrap_or(bytes), ts);
    }
    out.set_sequence(batch.sequence());
    out.set_dynamic(batch.take_dynamic());
    *batch = out;
}
