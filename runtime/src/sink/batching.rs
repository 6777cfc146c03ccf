//! Batching: the rule's messages become payloads (transform), payloads fill a batch up to
//! `batchSize` or until `lingerInterval` passes (without a batch size, whatever is waiting goes
//! at once), and each finished batch goes to the one sink instance or the pool of instance
//! workers.
//!
//! Under `qos: 2` batches are cut by count alone, so that the rows read again after a restart
//! are cut into the same batches: every `batchSize` payloads, or each message's payloads as one
//! batch without a batch size (no lingering, no taking whatever is waiting); the batch being
//! filled at a checkpoint is recorded in it ([`Batcher::pending`]) and refilled from it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::batch::Batch;
use super::connector::{DynamicProps, GrantChecks, render_over};
use super::dead_letter::DeadReason;
use super::delivery::Deliverer;
use super::delivery::Delivery;
use super::props::CommonProps;
use super::sequence::Sequencer;
use super::transform::{TransformError, Transformer};
use crate::checkpoint::PendingPayload;
use crate::host::bindings::WitDynamicProp;
use crate::message::Message;
use crate::metrics::ActionMetrics;
use crate::template::Template;

/// Largest opportunistic batch when `batchSize` is not set.
const MAX_DRAIN: usize = 4096;

/// The values of the templated props for each payload of `batch`. A value that cannot be
/// evaluated (the payload is not JSON, the template fails) is empty, with the error logged and
/// recorded: the sink sees an empty value and refuses or handles the message.
fn evaluate(
    dynamic: &[(String, Arc<Template>)],
    batch: &Batch,
    metrics: &ActionMetrics,
) -> Vec<WitDynamicProp> {
    dynamic
        .iter()
        .map(|(name, template)| WitDynamicProp {
            name: name.clone(),
            values: batch
                .payloads()
                .map(|payload| {
                    render_over(template, payload).unwrap_or_else(|e| {
                        tracing::warn!("dynamic prop `{name}`: {e}");
                        metrics
                            .exceptions
                            .record(format!("dynamic prop `{name}`: {e}"));
                        String::new()
                    })
                })
                .collect(),
        })
        .collect()
}

/// Builds an action's batches and hands them on.
pub(super) struct Batcher {
    name: Arc<str>,
    transformer: Transformer,
    metrics: Arc<ActionMetrics>,
    /// `batchSize` (0: none).
    batch_size: usize,
    /// `lingerInterval`, if set.
    linger: Option<Duration>,
    /// `qos: 2` without a batch size: each message's payloads are one batch.
    per_message: bool,
    /// When the batch being filled must go, lingering or not.
    deadline: Option<tokio::time::Instant>,
    /// The batch being filled.
    batch: Batch,
    /// The payloads of one message.
    scratch: Batch,
    errors: Vec<TransformError>,
    /// The one instance, when there is one.
    pub(super) single: Option<Deliverer>,
    /// The instance workers, when there are several.
    pub(super) pool: Option<mpsc::Sender<Batch>>,
    /// Numbers each batch handed on.
    sequencer: Arc<Sequencer>,
    /// The action's templated props, evaluated for each payload of a batch handed on.
    dynamic: DynamicProps,
    /// What the values of the templated props that grants point at must stay within, and where
    /// a message whose value is outside goes (the action's dead-letter output).
    checks: (GrantChecks, Arc<Delivery>),
}

impl Batcher {
    /// Batches for an action with these props, handed to `single` or to `pool`.
    pub(super) fn new(
        name: Arc<str>,
        common: &CommonProps,
        send_nil: bool,
        metrics: Arc<ActionMetrics>,
        single: Option<Deliverer>,
        pool: Option<mpsc::Sender<Batch>>,
        stamps: (Arc<Sequencer>, DynamicProps, (GrantChecks, Arc<Delivery>)),
    ) -> Self {
        let (sequencer, dynamic, checks) = stamps;
        Self {
            name,
            transformer: Transformer::new(common.clone(), send_nil),
            metrics,
            batch_size: common.batch_size,
            linger: (common.linger_ms > 0).then(|| Duration::from_millis(common.linger_ms)),
            per_message: false,
            deadline: None,
            batch: Batch::new(),
            scratch: Batch::new(),
            errors: Vec::new(),
            single,
            pool,
            sequencer,
            dynamic,
            checks,
        }
    }

    /// Takes out of `batch` each message whose value of a checked prop is outside its grant
    /// and dead-letters it on its own (counted failed without a dead-letter output), with the
    /// reason naming the prop and the value.
    async fn refuse_outside_grants(
        batch: &mut Batch,
        (checks, delivery): &(GrantChecks, Arc<Delivery>),
    ) {
        let mut refused: Vec<(usize, String)> = Vec::new();
        for (prop, check) in checks {
            let Some(values) = batch.dynamic_values(prop) else {
                continue;
            };
            for (index, value) in values.iter().enumerate() {
                if let Err(reason) = check.check(prop, value)
                    && !refused.iter().any(|(i, _)| *i == index)
                {
                    refused.push((index, reason));
                }
            }
        }
        if refused.is_empty() {
            return;
        }
        refused.sort_by_key(|(i, _)| *i);
        let mut kept = Batch::new();
        let mut dynamic = batch.take_dynamic();
        for (index, (payload, ts)) in batch.iter().enumerate() {
            match refused.iter().find(|(i, _)| *i == index) {
                None => kept.push(payload, ts),
                Some((_, reason)) => {
                    let mut one = Batch::new();
                    one.push(payload, ts);
                    one.set_header(batch.header().map(str::to_string));
                    delivery
                        .dead_letter(DeadReason::Rejected, &format!("rejected: {reason}"), &one)
                        .await;
                }
            }
        }
        for prop in &mut dynamic {
            let mut index = 0;
            prop.values.retain(|_| {
                index += 1;
                !refused.iter().any(|(i, _)| *i == index - 1)
            });
        }
        kept.set_header(batch.take_header());
        kept.set_dynamic(dynamic);
        *batch = kept;
    }

    /// Starts from a checkpoint's unfinished batch; `exactly_once` (`qos: 2`) cuts batches by
    /// count alone.
    pub(super) fn resume(&mut self, pending: Batch, exactly_once: bool) {
        self.per_message = exactly_once && self.batch_size == 0;
        if exactly_once {
            self.linger = None;
        }
        for (payload, ts) in &pending {
            self.batch.push(payload, ts);
        }
    }

    /// The payloads of the batch being filled (for a checkpoint).
    pub(super) fn pending(&self) -> Vec<PendingPayload> {
        self.batch
            .iter()
            .map(|(payload, ts)| PendingPayload::new(payload, ts))
            .collect()
    }

    /// When the batch being filled must go (its linger ends), if it is waiting for more.
    pub(super) fn deadline(&self) -> Option<tokio::time::Instant> {
        self.deadline
    }

    /// The linger ended: the batch goes as it is.
    pub(super) async fn linger_ended(&mut self) {
        self.deadline = None;
        self.flush().await;
    }

    /// Transforms a chunk of the rule's messages into the batch, handing it on each time it
    /// reaches `batchSize`.
    pub(super) async fn add(&mut self, chunk: &[Message]) {
        let metrics = Arc::clone(&self.metrics);
        metrics.records_in.add(chunk.len() as u64);
        // Counted once per chunk: the loop below runs for every row.
        let mut payloads = 0u64;
        for message in chunk {
            self.scratch.clear();
            let ts = message.timestamp_ms();
            let scratch = &mut self.scratch;
            let produced =
                self.transformer
                    .transform(message, &mut |p| scratch.push(p, ts), &mut self.errors);
            metrics.omitted.add(u64::from(produced.omitted));
            payloads += u64::from(produced.payloads);
            for err in self.errors.drain(..) {
                tracing::warn!(action = %self.name, "cannot build the payload: {err}");
                payloads += 1;
                metrics.failed.add(1);
                metrics.exceptions.record(err.to_string());
            }
            for (payload, ts) in &self.scratch {
                self.batch.push(payload, ts);
                if self.batch_size > 0 && self.batch.len() >= self.batch_size {
                    Self::hand_on(
                        &mut self.batch,
                        &self.transformer,
                        &mut self.single,
                        self.pool.as_ref(),
                        &self.sequencer,
                        (&self.dynamic, &self.checks),
                        &metrics,
                    )
                    .await;
                    self.deadline = None;
                }
            }
            if self.per_message && !self.batch.is_empty() {
                self.flush().await;
            }
        }
        metrics.payloads.add(payloads);
    }

    /// True when no more waiting chunks should join the batch before it is handed on.
    pub(super) fn is_full(&self) -> bool {
        self.batch_size > 0 || self.batch.len() >= MAX_DRAIN
    }

    /// The chunks that were waiting are in: without a batch size the batch goes now; with one,
    /// an unfinished batch starts lingering.
    pub(super) async fn drained(&mut self) {
        if self.batch_size == 0 {
            self.flush().await;
        } else if self.deadline.is_none() && !self.batch.is_empty() {
            self.deadline = self.linger.map(|l| tokio::time::Instant::now() + l);
        }
    }

    /// Hands on the batch being filled, whatever its size.
    pub(super) async fn flush(&mut self) {
        Self::hand_on(
            &mut self.batch,
            &self.transformer,
            &mut self.single,
            self.pool.as_ref(),
            &self.sequencer,
            (&self.dynamic, &self.checks),
            &self.metrics,
        )
        .await;
    }

    /// Sets the batch's header, numbers it, and delivers it through the one instance, or queues it for the
    /// instance workers.
    async fn hand_on(
        batch: &mut Batch,
        transformer: &Transformer,
        single: &mut Option<Deliverer>,
        pool: Option<&mpsc::Sender<Batch>>,
        sequencer: &Sequencer,
        (dynamic, checks): (&DynamicProps, &(GrantChecks, Arc<Delivery>)),
        metrics: &ActionMetrics,
    ) {
        batch.set_header(transformer.header());
        if batch.is_empty() {
            return;
        }
        if !dynamic.is_empty() {
            batch.set_dynamic(evaluate(dynamic, batch, metrics));
            if !checks.0.is_empty() {
                Self::refuse_outside_grants(batch, checks).await;
                if batch.is_empty() {
                    batch.clear();
                    return;
                }
            }
        }
        batch.set_sequence(sequencer.issue());
        if let Some(single) = single {
            single.deliver(batch).await;
            batch.clear();
        } else if let Some(pool) = pool {
            let full = std::mem::take(batch);
            if let Err(lost) = pool.send(full).await {
                let n = lost.0.len() as u64;
                tracing::error!(
                    messages = n,
                    "the sink workers stopped early: batch not delivered"
                );
                metrics.failed.add(n);
                metrics.exceptions.record("the sink workers stopped early");
            }
        }
    }
}
