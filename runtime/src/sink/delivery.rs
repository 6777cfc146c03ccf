//! Delivering one batch to one sink instance and acting on the outcome: retry a transient error
//! with backoff, replace a trapped instance and try again, then cache what is still
//! undelivered or hand it to the dead-letter output (or count it failed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::batch::Batch;
use super::cache::ActionCache;
use super::connector::Connector;
use super::dead_letter::{DeadLetter, DeadReason};
use super::props::CommonProps;
use super::resend::{CacheState, Resend, ResendOrder};
use super::sequence::Sequencer;
use super::{MAX_RESEND_BACKOFF, MAX_RETRY_BACKOFF, MAX_TRAPS_PER_BATCH};
use crate::backoff::Backoff;
use crate::host::CallFailure;
use crate::metrics::ActionMetrics;

/// What an action's instance workers share: the cache, the dead-letter output, the stop signal.
pub(super) struct Delivery {
    pub(super) rule: Arc<str>,
    pub(super) name: Arc<str>,
    pub(super) metrics: Arc<ActionMetrics>,
    pub(super) retry_count: u32,
    /// Waits between the retries of one batch (`retryInterval`, doubling).
    pub(super) retry: Backoff,
    /// Waits between resends while the sink keeps failing (at most [`MAX_RESEND_BACKOFF`]).
    pub(super) resend: Backoff,
    pub(super) cache: Option<tokio::sync::Mutex<CacheState>>,
    /// The action's batch numbering: acknowledged batches are recorded there.
    pub(super) sequencer: Arc<Sequencer>,
    pub(super) dead_letter: Option<tokio::sync::Mutex<DeadLetter>>,
    pub(super) stop: watch::Receiver<bool>,
    /// Set when the stop's grace period is over: nothing more goes to the sink.
    pub(super) abort: watch::Receiver<bool>,
    /// `--drain-timeout`: at the end of the input, how long the cache's resends may go on
    /// failing before what is left stays cached (`None`: `retryCount` failures).
    pub(super) drain_timeout: Option<Duration>,
}

/// The run's stop signals as an action sees them.
pub(super) struct StopSignals {
    /// Set at the first Ctrl-C or SIGTERM: stop waiting for a failing sink.
    pub(super) stop: watch::Receiver<bool>,
    /// Set when the grace period is over or a second signal came: give up on the sink.
    pub(super) abort: watch::Receiver<bool>,
}

/// How one attempt to hand a batch to the sink ended, when it did not deliver it.
pub(super) struct Undelivered {
    pub(super) reason: DeadReason,
    pub(super) message: String,
}

impl Delivery {
    /// The shared state of an action with these props, cache and dead-letter output.
    pub(super) fn new(
        rule: Arc<str>,
        name: Arc<str>,
        metrics: Arc<ActionMetrics>,
        common: &CommonProps,
        cache: Option<ActionCache>,
        dead_letter: Option<DeadLetter>,
        signals: StopSignals,
    ) -> Self {
        let StopSignals { stop, abort } = signals;
        let retry_interval = Duration::from_millis(common.retry_interval_ms.max(1));
        Self {
            rule,
            name,
            metrics,
            retry_count: common.retry_count,
            retry: Backoff::new(retry_interval, MAX_RETRY_BACKOFF),
            resend: Backoff::new(retry_interval, MAX_RESEND_BACKOFF),
            cache: cache.map(|cache| tokio::sync::Mutex::new(CacheState::new(cache))),
            sequencer: Arc::new(Sequencer::fresh()),
            dead_letter: dead_letter.map(tokio::sync::Mutex::new),
            stop,
            abort,
            drain_timeout: None,
        }
    }

    /// The same, numbering its batches with `sequencer` (the action's).
    pub(super) fn with_sequencer(mut self, sequencer: Arc<Sequencer>) -> Self {
        self.sequencer = sequencer;
        self
    }

    pub(super) fn stopping(&self) -> bool {
        *self.stop.borrow() || self.aborting()
    }

    /// True once the stop's grace period is over (or a second signal came).
    pub(super) fn aborting(&self) -> bool {
        *self.abort.borrow()
    }

    /// Accounts for a batch the run stopped before it was delivered: kept in the cache if the
    /// action has one, counted failed otherwise.
    pub(super) async fn cut_short(&self, batch: &Batch) {
        let n = batch.len() as u64;
        if self.cache.is_some() {
            self.cache_push(batch.clone(), STOPPED).await;
            return;
        }
        tracing::error!(action = %self.name, messages = n, "batch not delivered: {STOPPED}");
        self.metrics.failed.add(n);
        self.metrics.cut_short.add(n);
        self.metrics.exceptions.record(STOPPED);
    }

    /// Accounts for a batch that replays a recorded cut (`qos: 2`) and was not complete when
    /// the run stopped: it is not handed on (smaller than recorded, under its number, the sink
    /// would skip the rest of it). The checkpoint holds its payloads and the next run hands
    /// them on; this run counts them cut short (and failed).
    pub(super) fn held_for_replay(&self, batch: &Batch, recorded: usize) {
        let n = batch.len() as u64;
        tracing::warn!(
            action = %self.name,
            messages = n,
            recorded,
            "batch not handed on: the run stopped before it held the payloads recorded for it; \
             the checkpoint keeps them and the next run hands them on"
        );
        self.metrics.failed.add(n);
        self.metrics.cut_short.add(n);
        self.metrics
            .exceptions
            .record("a batch replayed after a restart was not complete at the stop");
    }

    /// Hands a batch that cannot be delivered to the dead-letter output, or counts it failed.
    pub(super) async fn dead_letter(&self, reason: DeadReason, message: &str, batch: &Batch) {
        let n = batch.len() as u64;
        let action = &*self.name;
        let Some(dead) = &self.dead_letter else {
            tracing::error!(
                action,
                messages = n,
                "batch not delivered ({}): {message}",
                reason.name()
            );
            self.metrics.failed.add(n);
            self.metrics.exceptions.record(message.to_string());
            return;
        };
        let mut dead = dead.lock().await;
        match dead.send(&self.rule, action, reason, message, batch).await {
            Ok(()) => {
                tracing::warn!(
                    action,
                    messages = n,
                    "batch sent to the {} ({}): {message}",
                    dead.describe(),
                    reason.name()
                );
                self.metrics.dead_lettered.add(n);
                self.metrics.exceptions.record(message.to_string());
                self.metrics.dead_letters.push(crate::metrics::Incident {
                    at: crate::metrics::now_rfc3339(),
                    rows: n,
                    message: format!("{}: {message}", reason.name()),
                });
            }
            Err(why) => {
                tracing::error!(
                    action,
                    messages = n,
                    "batch not delivered ({}: {message}) and the {} refused it: {why}",
                    reason.name(),
                    dead.describe()
                );
                self.metrics.failed.add(n);
                self.metrics
                    .exceptions
                    .record(format!("{message}; dead letter failed: {why}"));
            }
        }
    }
}

/// Delivers batches to one connector, applying the outcome rules.
pub(super) struct Deliverer {
    pub(super) connector: Connector,
    pub(super) shared: Arc<Delivery>,
}

impl Deliverer {
    /// Calls the sink until the batch is delivered or the outcome rules give up on it:
    /// transient errors are retried `retries` times with backoff, a trap replaces the
    /// instance and tries again, up to [`MAX_TRAPS_PER_BATCH`] times.
    pub(super) async fn attempt(&mut self, batch: &Batch, retries: u32) -> Result<(), Undelivered> {
        let shared = Arc::clone(&self.shared);
        let metrics = &shared.metrics;
        let n = batch.len() as u64;
        let action = &*shared.name;
        if let Some(reason) = self.connector.unavailable() {
            return Err(Undelivered {
                reason: DeadReason::Unavailable,
                message: format!("the sink is unavailable: {reason}"),
            });
        }
        let mut retried = 0u32;
        let mut traps = 0u32;
        loop {
            if shared.aborting() {
                return Err(stopped_undelivered());
            }
            let started = Instant::now();
            // Past the stop's grace period the call is abandoned where it is.
            let result = tokio::select! {
                result = self.connector.collect(batch) => result,
                () = stopped(shared.abort.clone()) => return Err(stopped_undelivered()),
            };
            metrics.batches.add(1);
            metrics
                .collect_time_ns
                .add(started.elapsed().as_nanos() as u64);
            let failure = match result {
                Ok(()) => {
                    metrics.records_out.add(n);
                    shared.sequencer.acknowledge(batch.sequence());
                    return Ok(());
                }
                Err(failure) => failure,
            };
            match failure {
                // While stopping, a cached action keeps the batch instead of waiting.
                CallFailure::Transient(message)
                    if retried < retries && !(shared.stopping() && shared.cache.is_some()) =>
                {
                    retried += 1;
                    metrics.retries.add(1);
                    let delay = shared.retry.delay(retried);
                    tracing::debug!(
                        action,
                        retry = retried,
                        ?delay,
                        "transient sink error, retrying: {message}"
                    );
                    // A stop cuts the wait short for a cached action (the batch then goes to the
                    // cache); the end of the grace period cuts it short for any.
                    let cut = if shared.cache.is_some() {
                        shared.stop.clone()
                    } else {
                        shared.abort.clone()
                    };
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = stopped(cut) => {}
                    }
                }
                CallFailure::Trap(message) if traps + 1 < MAX_TRAPS_PER_BATCH => {
                    traps += 1;
                    metrics.restarts.add(1);
                    metrics.exceptions.record(format!("trapped: {message}"));
                    metrics.traps.push(crate::metrics::Incident {
                        at: crate::metrics::now_rfc3339(),
                        rows: n,
                        message: message.clone(),
                    });
                    tracing::warn!(
                        action,
                        "sink instance trapped; replacing it and delivering the batch again: {message}"
                    );
                }
                CallFailure::Trap(message) => {
                    metrics.restarts.add(1);
                    metrics.traps.push(crate::metrics::Incident {
                        at: crate::metrics::now_rfc3339(),
                        rows: n,
                        message: message.clone(),
                    });
                    return Err(Undelivered {
                        reason: DeadReason::Poison,
                        message: format!(
                            "poison batch: it trapped the sink {MAX_TRAPS_PER_BATCH} times; last: {message}"
                        ),
                    });
                }
                CallFailure::Transient(message) => {
                    return Err(Undelivered {
                        reason: DeadReason::Transient,
                        message: format!(
                            "transient error, gave up after {retried} retries: {message}"
                        ),
                    });
                }
                CallFailure::Rejected(message) => {
                    return Err(Undelivered {
                        reason: DeadReason::Rejected,
                        message: format!("rejected: {message}"),
                    });
                }
                CallFailure::InvalidConfig(message) => {
                    return Err(Undelivered {
                        reason: DeadReason::InvalidConfig,
                        message: format!("invalid config reported by collect: {message}"),
                    });
                }
            }
        }
    }

    /// Delivers a new batch: straight to the sink, or behind what is cached. Applies
    /// back-pressure while the cache is full.
    pub(super) async fn deliver(&mut self, batch: &Batch) {
        if batch.is_empty() {
            return;
        }
        let shared = Arc::clone(&self.shared);
        if shared.aborting() {
            shared.cut_short(batch).await;
            return;
        }
        if let Some(status) = shared.cache_status().await {
            if !status.room {
                self.wait_for_room().await;
            }
            if !status.empty {
                match status.order {
                    // In order: behind the cache. Resend what is due meanwhile.
                    ResendOrder::Queue => {
                        while self.resend_one().await == Resend::Done {}
                        if shared.cache_status().await.is_some_and(|s| !s.empty) {
                            shared
                                .cache_push(batch.clone(), "queued behind the cache")
                                .await;
                            return;
                        }
                    }
                    ResendOrder::CacheFirst => while self.resend_one().await == Resend::Done {},
                    ResendOrder::Alternate => {
                        self.resend_one().await;
                    }
                    ResendOrder::WhenIdle => {}
                }
            }
        }
        match self.attempt(batch, shared.retry_count).await {
            Ok(()) => {}
            Err(_) if shared.aborting() => shared.cut_short(batch).await,
            Err(Undelivered {
                reason: DeadReason::Transient | DeadReason::Unavailable,
                message,
            }) if shared.cache.is_some() => {
                shared.metrics.exceptions.record(message.clone());
                shared.cache_push(batch.clone(), &message).await;
            }
            Err(Undelivered { reason, message }) => {
                shared.dead_letter(reason, &message, batch).await;
            }
        }
    }

    /// Closes the sink instance (it flushes what it buffers).
    /// Skipped past the stop's grace period: a sink stuck in a call may be stuck in `close`.
    pub(super) async fn close(&mut self) {
        let shared = Arc::clone(&self.shared);
        if shared.aborting() {
            return;
        }
        let closed = tokio::select! {
            closed = self.connector.close() => closed,
            () = stopped(shared.abort.clone()) => return,
        };
        if let Err(failure) = closed {
            tracing::error!(action = %self.shared.name, "close failed: {failure}");
            self.shared
                .metrics
                .exceptions
                .record(format!("close: {failure}"));
        }
    }
}

/// Why a batch cut short by the end of the stop's grace period was not delivered.
const STOPPED: &str = "the run was stopped before the batch was delivered";

fn stopped_undelivered() -> Undelivered {
    Undelivered {
        reason: DeadReason::Transient,
        message: STOPPED.to_string(),
    }
}

/// Completes when the run is stopping (never, for a run that cannot be stopped).
pub(super) async fn stopped(mut stop: watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Sleeps until `at` (or a moment, without one).
pub(super) async fn sleep_until_or_soon(at: Option<tokio::time::Instant>) {
    let at = at.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_millis(10));
    tokio::time::sleep_until(at).await;
}
