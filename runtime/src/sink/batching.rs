//! Batching: the rule's messages become payloads (transform), payloads fill a batch up to
//! `batchSize` or until `lingerInterval` passes (without a batch size, whatever is waiting goes
//! at once), and each finished batch goes to the one sink instance or the pool of instance
//! workers.
//!
//! The one instance delivers a batch as a future of its own ([`Ahead`]), under every `qos`:
//! the action's loop goes on taking the rule's results while the sink works, so the rule is not
//! held up by a slow sink and, without a batch size, the next batch takes everything that
//! arrived meanwhile (up to the largest opportunistic batch) once the sink is free: the slower
//! the sink, the larger its batches, and the fewer its round trips. (Were the loop to wait for
//! the sink, what arrived would wait in the action's channel of `bufferLength` messages, then
//! hold the rule and its other actions up, and each batch would be no larger than that channel
//! held.) With a batch size, batches are cut at it. Outside `qos: 2` at most one cut batch
//! waits for the sink (a full batch while the sink is busy holds the action, and the rule
//! behind it, until the sink takes it), so what an action holds for a stuck sink stays about
//! two batches.
//!
//! Under `qos: 2`, for a sink that numbers its batches, batches are cut the same way, but each
//! cut is recorded durably before its batch is handed on ([`super::cuts`]; with `batchSize`
//! alone only how far the cuts by count may go, a block of numbers at a time, and the cuts that
//! are not by count). The batch being filled for a count at a checkpoint is recorded in it
//! ([`Batcher::pending`]) and refilled from it. A restart from that checkpoint replays the
//! recorded cuts, then cuts freely again.
//!
//! The action does not stand still while a record commits. A batch cut under `qos: 2` is
//! numbered, its record queued for the next group commit, and it joins the batches *ahead*
//! ([`Ahead`]) of the sink; the action's loop goes on taking the rule's results, and waits,
//! beside its input, for the oldest record to be durable and for the sink to be free. The one
//! instance delivers a batch as a future of its own, so the loop keeps filling the next batch
//! meanwhile too. Without a batch size the batch being filled is cut when no batch of the
//! action waits ahead of the sink (the one before is durable and the sink took it): it takes
//! what arrived while the one before waited for its record and the sink, up to the largest
//! opportunistic batch, so the slower the disk or the sink, the larger the batches, and its
//! record commits while the sink takes the batch before it. A
//! batch reaches the sink only once its record is durable, and batches reach it in the order
//! of their numbers; records become durable in that order too, so a crash at any point leaves
//! durable records for every batch the sink got, and a replay cuts those batches again. At
//! most [`MAX_AHEAD`] batches wait: then the action takes no more of the rule's results (they
//! wait in its channel, and the rule behind it) until the sink takes one. A checkpoint's
//! barrier and the end of the run deliver every batch ahead before they go on.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::batch::Batch;
use super::connector::{DynamicProps, GrantChecks, render_over};
use super::cuts::{CutLog, Durable, REACH_AHEAD, Replay};
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

/// Most batches an action keeps cut ahead of its sink under `qos: 2` (their records committing,
/// or committed and the batch waiting for the sink): while that many wait, it takes no more of
/// the rule's results, and cutting one more first waits for the sink to take the oldest.
const MAX_AHEAD: usize = 4;

/// A batch cut and numbered under `qos: 2`, waiting for its record to be durable and its turn
/// at the sink.
struct Cut {
    batch: Batch,
    sequence: u64,
    /// The record's commit, until its outcome is known.
    record: Option<Durable>,
    /// Why the record could not be committed, if it could not.
    failed: Option<String>,
}

impl Cut {
    /// Waits until the record is durable (or its commit failed). Cancel-safe.
    async fn durable(&mut self) {
        if let Some(record) = &mut self.record {
            let outcome = record.await;
            self.record = None;
            self.failed = outcome.err();
        }
    }

    /// Whether the record is durable (or its commit failed) by now, without waiting.
    fn is_durable(&mut self) -> bool {
        let Some(record) = &mut self.record else {
            return true;
        };
        match record.try_outcome() {
            Some(outcome) => {
                self.record = None;
                self.failed = outcome.err();
                true
            }
            None => false,
        }
    }
}

/// The one instance delivering a batch, given back with the emptied batch (whose buffers serve
/// a later one) when the sink took it.
type Sending = Pin<Box<dyn Future<Output = (Deliverer, Batch)> + Send>>;

/// The batches cut ahead of the sink (oldest first; under `qos: 2` waiting for their records
/// too) and the delivery in progress, which holds the action's one instance meanwhile (see
/// [`Batcher`]).
#[derive(Default)]
pub(super) struct Ahead {
    cuts: VecDeque<Cut>,
    sending: Option<Sending>,
    /// An emptied batch whose buffers the next batch cut fills.
    spare: Option<Batch>,
    /// What the delivery in progress gave back when it ended, until the batcher takes it.
    returned: Option<(Deliverer, Batch)>,
}

/// What the action's loop waits for beside its input while batches are ahead.
pub(super) enum AheadEvent {
    /// The oldest record still committing is durable.
    Durable,
    /// The sink took the batch in progress: its instance is free.
    Sent,
}

impl Ahead {
    /// The next event; never while nothing is ahead. Cancel-safe: the action's loop waits for
    /// it beside its input.
    pub(super) async fn next(&mut self) -> AheadEvent {
        let Self { cuts, sending, .. } = self;
        // A batch whose record is durable waits for a free sink: act now.
        let waiting = sending.is_none() && cuts.front().is_some_and(|cut| cut.record.is_none());
        let sent = async {
            match sending.as_mut() {
                Some(delivery) => delivery.await,
                None => std::future::pending().await,
            }
        };
        let durable = async {
            if waiting {
                return;
            }
            match cuts.iter_mut().find(|cut| cut.record.is_some()) {
                Some(cut) => cut.durable().await,
                None => std::future::pending().await,
            }
        };
        let event = tokio::select! {
            returned = sent => {
                self.sending = None;
                self.returned = Some(returned);
                AheadEvent::Sent
            }
            () = durable => AheadEvent::Durable,
        };
        event
    }

    /// Whether as many batches wait as the action keeps ahead.
    pub(super) fn is_full(&self) -> bool {
        self.cuts.len() >= MAX_AHEAD
    }

    /// Nothing cut waits and the sink has no batch in progress.
    fn is_idle(&self) -> bool {
        self.cuts.is_empty() && self.sending.is_none()
    }
}

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
    /// `qos: 2`, for a sink that numbers its batches: where cuts are recorded.
    cuts: Option<CutLog>,
    /// The recorded cuts still to replay: sequence number → payloads.
    replay: BTreeMap<u64, u64>,
    /// With `batchSize` alone: the highest number an earlier run may have handed on cut by
    /// count (up to it, batches are cut by count or as recorded, nothing else).
    earlier_reach: u64,
    /// With `batchSize` alone: the highest number this run has recorded as reachable.
    reach: u64,
    /// When the batch being filled must go, lingering or not.
    deadline: Option<tokio::time::Instant>,
    /// The batch being filled.
    batch: Batch,
    /// Batches cut whose turn at the sink has not come (under `qos: 2`, or whose records
    /// commit), and the delivery in progress.
    pub(super) ahead: Ahead,
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
            cuts: None,
            replay: BTreeMap::new(),
            earlier_reach: 0,
            reach: 0,
            deadline: None,
            batch: Batch::new(),
            ahead: Ahead::default(),
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

    /// Starts from a checkpoint's unfinished batch. Under `qos: 2` (for a sink that numbers its
    /// batches) cuts are recorded in `cuts` (see [`super::cuts`]), and `replay` holds those
    /// recorded from the checkpoint's next number on.
    pub(super) fn resume(&mut self, pending: Batch, cuts: Option<CutLog>, replay: Replay) {
        if cuts.is_some() {
            self.replay = replay.cuts;
            if self.count_only() {
                self.earlier_reach = replay.reach;
                self.reach = replay.reach;
            }
        }
        self.cuts = cuts;
        for (payload, ts) in &pending {
            self.batch.push(payload, ts);
        }
    }

    /// `batchSize` without `lingerInterval`: batches are cut by count, which repeats by itself,
    /// so such cuts are not recorded one by one (only how far they may have gone, a block of
    /// numbers at a time).
    fn count_only(&self) -> bool {
        self.batch_size > 0 && self.linger.is_none()
    }

    /// Whether this run is still cutting batches an earlier run may have handed on: then they
    /// are cut as recorded or by count, never by time or at a barrier. Where every cut is
    /// recorded (without `batchSize`, or with `lingerInterval`) the recorded cuts follow one
    /// another: the first number without one ends the replay.
    fn replaying(&mut self) -> bool {
        if self.replay.is_empty() && self.earlier_reach == 0 {
            return false;
        }
        let next = self.sequencer.next();
        while self
            .replay
            .first_key_value()
            .is_some_and(|(&s, _)| s < next)
        {
            self.replay.pop_first();
        }
        if !self.count_only() {
            if !self.replay.contains_key(&next) {
                self.replay.clear();
            }
            return !self.replay.is_empty();
        }
        if next > self.earlier_reach {
            self.earlier_reach = 0;
        }
        !self.replay.is_empty() || self.earlier_reach > 0
    }

    /// While replaying, the size the batch being filled is cut at: its recorded size, or
    /// `batchSize` when it was cut by count.
    fn replayed(&mut self) -> Option<usize> {
        if !self.replaying() {
            return None;
        }
        let size = match self.replay.get(&self.sequencer.next()) {
            Some(&n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => self.batch_size,
        };
        Some(size)
    }

    /// Whether the batch being filled waits for a count (a recorded cut, or `batchSize` alone
    /// under `qos: 2`) that a checkpoint keeps it for, rather than going at a barrier.
    fn waits_for_count(&mut self) -> bool {
        self.cuts.is_some() && (self.count_only() || self.replaying())
    }

    /// With `batchSize` alone under `qos: 2`: before the batch numbered next is handed on,
    /// makes sure the durable reach covers it (reserving [`REACH_AHEAD`] numbers at a time).
    async fn reserve_reach(&mut self) {
        let Some(cuts) = &self.cuts else { return };
        let next = self.sequencer.next();
        if next <= self.reach {
            return;
        }
        let upto = next + REACH_AHEAD - 1;
        match cuts.reach(upto).await {
            Ok(()) => self.reach = upto,
            Err(e) => {
                tracing::error!(action = %self.name, "the reach of the batches cut by count could not be recorded: {e}");
                self.metrics
                    .exceptions
                    .record(format!("recording batch cuts: {e}"));
            }
        }
    }

    /// Hands on the batch being filled while it holds a recorded cut's payloads.
    async fn cut_replayed(&mut self) {
        while let Some(size) = self.replayed()
            && !self.batch.is_empty()
            && self.batch.len() >= size
        {
            if self.batch.len() > size {
                // Only a rule whose results differ from one reading to the next gets here.
                tracing::warn!(
                    action = %self.name,
                    recorded = size,
                    payloads = self.batch.len(),
                    "the rows read again after the checkpoint gave more payloads than the batch \
                     recorded before the restart: they go in one batch"
                );
            }
            self.hand_on(false).await;
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
        if !self.replaying() {
            self.flush().await;
        }
    }

    /// Transforms a chunk of the rule's messages into the batch, handing it on each time it
    /// reaches `batchSize` (or the size of the recorded cut it replays).
    pub(super) async fn add(&mut self, chunk: &[Message]) {
        let metrics = Arc::clone(&self.metrics);
        metrics.records_in.add(chunk.len() as u64);
        self.cut_replayed().await;
        // Counted once per chunk: the loop below runs for every row.
        let mut payloads = 0u64;
        let mut scratch = std::mem::take(&mut self.scratch);
        for message in chunk {
            scratch.clear();
            let ts = message.timestamp_ms();
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
            for (payload, ts) in &scratch {
                self.batch.push(payload, ts);
                match self.replayed() {
                    Some(size) => {
                        if self.batch.len() >= size {
                            self.cut_replayed().await;
                        }
                    }
                    None => {
                        if self.batch_size > 0 && self.batch.len() >= self.batch_size {
                            if self.count_only() {
                                // By count: repeatable without a record of its own.
                                self.reserve_reach().await;
                                self.hand_on(false).await;
                            } else {
                                self.flush().await;
                            }
                            self.deadline = None;
                        }
                    }
                }
            }
        }
        self.scratch = scratch;
        metrics.payloads.add(payloads);
    }

    /// True when no more waiting chunks should join the batch before it is handed on.
    pub(super) fn is_full(&self) -> bool {
        self.batch_size > 0 || self.batch.len() >= MAX_DRAIN
    }

    /// The chunks that were waiting are in: without a batch size the batch goes now; with one,
    /// an unfinished batch starts lingering. A batch replaying a recorded cut waits for its
    /// payloads.
    pub(super) async fn drained(&mut self) {
        self.cut_replayed().await;
        if self.replaying() {
            return;
        }
        if self.batch_size == 0 {
            // While the batch before waits for the sink (under `qos: 2`, or for its record),
            // this one takes more of what arrives, up to the largest opportunistic batch. Under
            // `qos: 2` it is cut as soon as no batch waits ahead, so that its record commits
            // while the sink takes the one before; with no record to commit it waits for the
            // sink to be free.
            if self.nothing_ahead() || self.batch.len() >= MAX_DRAIN {
                self.flush().await;
            }
        } else if self.deadline.is_none() && !self.batch.is_empty() {
            self.deadline = self.linger.map(|l| tokio::time::Instant::now() + l);
        }
    }

    /// Without a batch size, whether the batch being filled may be cut now: under `qos: 2`
    /// when no batch waits ahead of the sink (its record then commits while the sink takes the
    /// batch before), otherwise when the sink is free too.
    fn nothing_ahead(&self) -> bool {
        if self.cuts.is_some() {
            self.ahead.cuts.is_empty()
        } else {
            self.ahead.is_idle()
        }
    }

    /// A checkpoint's barrier: what was handed on is settled by now. The batch being filled
    /// goes too, unless it waits for a count (under `qos: 2`): then the checkpoint holds it.
    pub(super) async fn at_barrier(&mut self) {
        if !self.waits_for_count() {
            self.flush().await;
        }
        self.settle().await;
    }

    /// Acts on what the action's loop saw happen to the batches ahead: a free sink takes the
    /// next batch whose record is durable; without a batch size, once no batch waits ahead of
    /// the sink, what arrived meanwhile is cut and its record starts (it commits while the sink
    /// takes the batch before it). With no record to start, the action tells the committer so:
    /// a group commit waiting for its next record goes without it.
    pub(super) async fn ahead_event(&mut self, event: AheadEvent) {
        if let AheadEvent::Sent = event
            && let Some((deliverer, batch)) = self.ahead.returned.take()
        {
            self.single = Some(deliverer);
            self.ahead.spare = Some(batch);
        }
        self.send_durable().await;
        let cuts_freely = self.batch_size == 0 && !self.batch.is_empty() && !self.replaying();
        if cuts_freely && self.nothing_ahead() {
            self.flush().await;
        } else if let Some(cuts) = &self.cuts {
            cuts.pass();
        }
    }

    /// Starts the delivery of the oldest batch ahead if the sink is free and its record is
    /// durable.
    async fn send_durable(&mut self) {
        if self.ahead.sending.is_none()
            && let Some(cut) = self.ahead.cuts.front_mut()
            && cut.is_durable()
        {
            self.send_front().await;
        }
    }

    /// Delivers every batch ahead, waiting for their records and the sink.
    async fn settle(&mut self) {
        while !self.ahead.is_idle() {
            self.make_room(0).await;
        }
    }

    /// Waits until at most `keep` batches are ahead, delivering them in order (with `keep` 0,
    /// until the sink has taken them all). A batch the sink is taking meanwhile is not waited
    /// for unless room must be made: the action goes on while the sink works.
    async fn make_room(&mut self, keep: usize) {
        loop {
            if self.ahead.cuts.len() <= keep && (keep > 0 || self.ahead.sending.is_none()) {
                return;
            }
            if let Some(sending) = self.ahead.sending.take() {
                let (deliverer, batch) = sending.await;
                self.single = Some(deliverer);
                self.ahead.spare = Some(batch);
            }
            if self.ahead.cuts.len() <= keep {
                return;
            }
            if let Some(cut) = self.ahead.cuts.front_mut() {
                cut.durable().await;
                // Making room, the action has no record to queue now.
                if let Some(cuts) = &self.cuts {
                    cuts.pass();
                }
            }
            self.send_front().await;
        }
    }

    /// Starts the delivery of the oldest batch ahead, whose record is durable (the sink is
    /// free).
    async fn send_front(&mut self) {
        let Some(mut cut) = self.ahead.cuts.pop_front() else {
            return;
        };
        if let Some(e) = cut.failed.take() {
            let sequence = cut.sequence;
            tracing::error!(
                action = %self.name,
                sequence,
                "the batch's cut could not be recorded: after a crash before the next \
                 checkpoint its rows may be written twice or not at all: {e}"
            );
            self.metrics
                .exceptions
                .record(format!("recording a batch cut: {e}"));
        }
        if !self.prepare(&mut cut.batch, cut.sequence).await {
            return;
        }
        match self.single.take() {
            Some(mut single) => {
                let mut batch = cut.batch;
                self.ahead.sending = Some(Box::pin(async move {
                    single.deliver(&batch).await;
                    batch.clear();
                    (single, batch)
                }));
            }
            None => self.send_to_pool(cut.batch).await,
        }
    }

    /// The end of the run: the batch being filled goes, whatever its size. While replaying,
    /// an incomplete batch stays with the checkpoint when the run was stopped: an earlier run
    /// may have handed on a larger one under its number, which the sink would then skip (the
    /// next run refills it from the checkpoint and cuts it at its size); its payloads are
    /// counted cut short. At the end of the input it goes: as recorded if it replays a recorded
    /// cut (its rows came fewer than before the restart, which only a rule whose results differ
    /// from one reading to the next does), recorded if it is cut by count (no earlier run can
    /// have had more rows for it than the whole input).
    pub(super) async fn finish(&mut self) {
        self.cut_last().await;
        self.settle().await;
    }

    async fn cut_last(&mut self) {
        self.cut_replayed().await;
        if let Some(size) = self.replayed()
            && !self.batch.is_empty()
        {
            let delivery = Arc::clone(&self.checks.1);
            if delivery.stopping() {
                delivery.held_for_replay(&self.batch, size);
                self.batch.clear();
                return;
            }
            if self.replay.contains_key(&self.sequencer.next()) {
                tracing::warn!(
                    action = %self.name,
                    recorded = size,
                    payloads = self.batch.len(),
                    "the input ended before the rows read again filled the batch recorded \
                     before the restart: it goes as it is"
                );
                self.hand_on(false).await;
                return;
            }
        }
        self.flush().await;
    }

    /// Hands on the batch being filled, whatever its size, recording the cut under `qos: 2`.
    pub(super) async fn flush(&mut self) {
        let record = self.cuts.is_some();
        self.hand_on(record).await;
    }

    /// Sets the batch's header and numbers it. Without a record to make durable and with
    /// nothing ahead of it, it is delivered at once; else its record starts (when `record`) and
    /// it waits ahead of the sink for its record and its turn (see [`Ahead`]).
    async fn hand_on(&mut self, record: bool) {
        self.batch.set_header(self.transformer.header());
        if self.batch.is_empty() {
            self.send_durable().await;
            return;
        }
        // Numbered as cut, before any payload is taken out: a replay takes the same ones out.
        let sequence = self.sequencer.issue();
        let record = match &self.cuts {
            Some(cuts) if record => Some(cuts.start_record(sequence, self.batch.len() as u64)),
            _ => None,
        };
        if record.is_none() && self.ahead.is_idle() && self.single.is_none() {
            // The instance workers take it from their queue.
            let mut batch = std::mem::take(&mut self.batch);
            if self.prepare(&mut batch, sequence).await {
                self.send_to_pool(batch).await;
            }
            return;
        }
        // Under `qos: 2` batches wait ahead while their records commit; otherwise nothing is
        // gained by cutting more than the sink can take, so a batch is cut only once the sink
        // took the one before: with a stuck sink the action holds the batch in the sink and one
        // full batch, and the rule behind it waits (what `bufferLength` bounds stays bounded).
        let keep = if self.cuts.is_some() {
            MAX_AHEAD - 1
        } else {
            0
        };
        self.make_room(keep).await;
        let next = self.ahead.spare.take().unwrap_or_default();
        self.ahead.cuts.push_back(Cut {
            batch: std::mem::replace(&mut self.batch, next),
            sequence,
            record,
            failed: None,
        });
        self.send_durable().await;
    }

    /// Makes batch `sequence` ready for the sink: numbers it, evaluates its templated props and
    /// takes out the payloads outside the grants (dead-lettered). False when none is left.
    async fn prepare(&mut self, batch: &mut Batch, sequence: u64) -> bool {
        if !self.dynamic.is_empty() {
            batch.set_dynamic(evaluate(&self.dynamic, batch, &self.metrics));
            if !self.checks.0.is_empty() {
                Self::refuse_outside_grants(batch, &self.checks).await;
                if batch.is_empty() {
                    return false;
                }
            }
        }
        batch.set_sequence(sequence);
        true
    }

    /// Queues `batch` for the instance workers.
    async fn send_to_pool(&mut self, batch: Batch) {
        let Some(pool) = &self.pool else { return };
        if let Err(lost) = pool.send(batch).await {
            let n = lost.0.len() as u64;
            tracing::error!(
                messages = n,
                "the sink workers stopped early: batch not delivered"
            );
            self.metrics.failed.add(n);
            self.metrics
                .exceptions
                .record("the sink workers stopped early");
        }
    }
}
