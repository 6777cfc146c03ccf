//! The delivery pipeline end to end against scripted sinks, with tokio's clock paused: retries
//! and their backoff, the cache (memory and disk) and its resend, dead letters, back-pressure
//! and a stop, each asserting exact counts and that every payload is accounted for.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::run;
use crate::backoff::Backoff;
use crate::checkpoint::{ActionCheckpoint, Checkpoint, CheckpointStore};
use crate::message::Message;
use crate::metrics::ActionMetrics;
use crate::sink::fake::{FakeSink, Step};
use crate::sink::{
    ActionCache, Chunk, ConnectorSpec, DeadLetter, MAX_RETRY_BACKOFF, PreparedAction,
    StartedAction, props,
};
use crate::value::{Row, Value};

const MS: Duration = Duration::from_millis(1);

/// A chunk of one row per number, `{"n": i}`, stamped `i`.
fn rows(numbers: std::ops::Range<i64>) -> Chunk {
    numbers
        .map(|i| Message::Row(Row::from_pairs(vec![(Arc::from("n"), Value::from(i))], i)))
        .collect()
}

/// The payloads of those rows.
fn payloads(numbers: std::ops::Range<i64>) -> Vec<String> {
    numbers.map(|i| format!("{{\"n\":{i}}}")).collect()
}

/// A fresh folder for one test's disk cache.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("oort-pipeline-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The action `fake_0` of rule `rule` with these props, counted in `metrics`.
fn fake_action(common: props::CommonProps, metrics: &Arc<ActionMetrics>) -> PreparedAction {
    PreparedAction {
        name: Arc::from("fake_0"),
        plugin: "fake".into(),
        rule: Arc::from("rule"),
        common,
        spec: ConnectorSpec::Nop { log: false },
        metrics: Arc::clone(metrics),
        send_nil: false,
        cache_path: None,
        dead_letter: None,
    }
}

/// Sends `chunk` into a running action's input (`None` once the test closed it).
async fn send_to(tx: Option<&mpsc::Sender<Chunk>>, chunk: Chunk) {
    tx.expect("input open")
        .send(chunk)
        .await
        .expect("the action runs");
}

/// An action running against scripted sinks.
struct Action {
    tx: Option<mpsc::Sender<Chunk>>,
    stop: watch::Sender<bool>,
    /// The end of the stop's grace period.
    abort: watch::Sender<bool>,
    metrics: Arc<ActionMetrics>,
    run: tokio::task::JoinHandle<()>,
}

impl Action {
    /// Starts an action with these props (`enableCache` puts its disk cache in `cache_dir`)
    /// delivering to `sinks` (one per instance), dead letters to `dead`, reading a channel of
    /// `capacity` chunks.
    fn start(
        props: serde_json::Value,
        sinks: &[&FakeSink],
        dead: Option<&FakeSink>,
        cache_dir: Option<&std::path::Path>,
        capacity: usize,
    ) -> Self {
        Self::start_draining(props, sinks, dead, cache_dir, capacity, None)
    }

    /// [`start`](Self::start), with a drain timeout (`--drain-timeout`).
    fn start_draining(
        props: serde_json::Value,
        sinks: &[&FakeSink],
        dead: Option<&FakeSink>,
        cache_dir: Option<&std::path::Path>,
        capacity: usize,
        drain_timeout: Option<Duration>,
    ) -> Self {
        let (common, _) = props::split(props.as_object().expect("props are an object"))
            .expect("the props are valid");
        let cache = common.cache.clone().map(|config| {
            let dir = cache_dir.expect("a cached action needs a folder");
            ActionCache::open(&dir.join("fake_0.redb"), config).expect("the cache opens")
        });
        let metrics = Arc::new(ActionMetrics::default());
        let action = fake_action(common, &metrics);
        let dead_letter = dead.map(|sink| DeadLetter::Action {
            name: "fake_0_deadletter".into(),
            connector: Box::new(sink.connector()),
            retry_count: 0,
            backoff: Backoff::new(MS, MAX_RETRY_BACKOFF),
        });
        let (stop, stop_rx) = watch::channel(false);
        let (abort, abort_rx) = watch::channel(false);
        let started = StartedAction {
            action,
            connectors: sinks.iter().map(|s| s.connector()).collect(),
            cache,
            sequencer: Arc::new(crate::sink::sequence::Sequencer::fresh()),
            dead_letter,
            stop: stop_rx,
            abort: abort_rx,
            barriers: None,
            drain_timeout,
            exactly_once: false,
            pending: crate::sink::Batch::new(),
            cuts: None,
            replay: Default::default(),
        };
        let (tx, rx) = mpsc::channel(capacity);
        Self {
            tx: Some(tx),
            stop,
            abort,
            metrics,
            run: tokio::spawn(run(started, rx)),
        }
    }

    async fn send(&self, chunk: Chunk) {
        send_to(self.tx.as_ref(), chunk).await;
    }

    /// Closes the input and waits for the action to finish.
    async fn finish(mut self) -> Arc<ActionMetrics> {
        drop(self.tx.take());
        self.run.await.expect("the action does not panic");
        self.metrics
    }
}

/// Asserts the counters: `[payloads, out, dead-lettered, failed, cached]`, and that they add up.
fn assert_counts(m: &ActionMetrics, [payloads, out, dead, failed, cached]: [u64; 5]) {
    let got = [
        m.payloads.get(),
        m.records_out.get(),
        m.dead_lettered.get(),
        m.failed.get(),
        m.cached.get(),
    ];
    assert_eq!(
        got,
        [payloads, out, dead, failed, cached],
        "[payloads, out, dead-lettered, failed, cached]"
    );
    assert!(m.balanced(), "{m:?}");
}

/// The waits between consecutive calls.
fn gaps(sink: &FakeSink) -> Vec<Duration> {
    let calls = sink.calls();
    calls.windows(2).map(|w| w[1].at - w[0].at).collect()
}

#[tokio::test(start_paused = true)]
async fn a_transient_error_is_retried_with_backoff_until_it_goes_through() {
    let sink = FakeSink::new([Step::Transient, Step::Transient], Step::Ok);
    let action = Action::start(
        json!({"retryCount": 3, "retryInterval": 100}),
        &[&sink],
        None,
        None,
        8,
    );
    action.send(rows(0..2)).await;
    let m = action.finish().await;

    assert_counts(&m, [2, 2, 0, 0, 0]);
    assert_eq!((m.retries.get(), m.batches.get()), (2, 3));
    assert_eq!(sink.delivered(), payloads(0..2));
    // Each retry waits its backoff: 100 ms, then 200 ms, less at most a quarter of jitter.
    let policy = Backoff::new(100 * MS, MAX_RETRY_BACKOFF);
    let gaps = gaps(&sink);
    assert_eq!(gaps.len(), 2);
    for (retry, gap) in (1..).zip(gaps) {
        assert!(
            (policy.floor(retry)..=policy.ceiling(retry)).contains(&gap),
            "retry {retry} waited {gap:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn exhausted_retries_cache_the_batches_and_they_are_resent_in_order_on_recovery() {
    let dir = temp_dir("resend");
    let sink = FakeSink::new([], Step::Transient);
    // Two messages stay in memory, older ones go to disk a message at a time.
    let action = Action::start(
        json!({"retryCount": 1, "retryInterval": 10, "batchSize": 2, "enableCache": true,
               "memoryCacheThreshold": 2, "bufferPageSize": 1}),
        &[&sink],
        None,
        Some(&dir),
        8,
    );
    for i in 0..3 {
        action.send(rows(i * 2..i * 2 + 2)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(action.metrics.cached.get(), 6);
    assert_eq!(action.metrics.records_out.get(), 0);
    assert!(action.metrics.balanced());

    sink.then(Step::Ok);
    // Resends are probed at least once a second while the sink is down.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(action.metrics.cached.get(), 0);
    action.send(rows(6..8)).await;
    let m = action.finish().await;

    assert_counts(&m, [8, 8, 0, 0, 0]);
    assert_eq!((m.cached_total.get(), m.resent.get()), (6, 6));
    assert_eq!(sink.delivered(), payloads(0..8));
    std::fs::remove_dir_all(dir).unwrap();
}

/// At the end of the input, a sink that is down: the cache is resent until the drain timeout.
async fn drain_with_a_sink_back_after(
    timeout: Option<Duration>,
    back_after: Duration,
) -> Arc<ActionMetrics> {
    let dir = temp_dir(&format!("drain-{timeout:?}"));
    let sink = FakeSink::new([], Step::Transient);
    let action = Action::start_draining(
        json!({"retryCount": 1, "retryInterval": 10, "enableCache": true}),
        &[&sink],
        None,
        Some(&dir),
        8,
        timeout,
    );
    action.send(rows(0..4)).await;
    let steer = sink.clone();
    tokio::spawn(async move {
        tokio::time::sleep(back_after).await;
        steer.then(Step::Ok);
    });
    let m = action.finish().await;
    std::fs::remove_dir_all(dir).unwrap();
    m
}

#[tokio::test(start_paused = true)]
async fn at_the_end_a_sink_that_is_down_is_waited_for_until_the_drain_timeout() {
    // Back within the timeout: everything is delivered.
    let m =
        drain_with_a_sink_back_after(Some(Duration::from_secs(30)), Duration::from_secs(20)).await;
    assert_counts(&m, [4, 4, 0, 0, 0]);
    // Back after it: the rows stay cached for the next run.
    let m =
        drain_with_a_sink_back_after(Some(Duration::from_secs(5)), Duration::from_secs(60)).await;
    assert_counts(&m, [4, 0, 0, 0, 4]);
    // Without one, `retryCount` failed resends end the wait.
    let m = drain_with_a_sink_back_after(None, Duration::from_secs(20)).await;
    assert_counts(&m, [4, 0, 0, 0, 4]);
}

#[tokio::test(start_paused = true)]
async fn a_rejected_batch_goes_to_the_dead_letter_output_at_once() {
    let sink = FakeSink::new([Step::Rejected], Step::Ok);
    let dead = FakeSink::new([], Step::Ok);
    let action = Action::start(
        json!({"batchSize": 2, "retryCount": 3}),
        &[&sink],
        Some(&dead),
        None,
        8,
    );
    action.send(rows(0..4)).await;
    let m = action.finish().await;

    assert_counts(&m, [4, 2, 2, 0, 0]);
    assert_eq!(m.retries.get(), 0);
    assert_eq!(dead.delivered(), payloads(0..2));
    assert_eq!(sink.delivered(), payloads(2..4));
}

#[tokio::test(start_paused = true)]
async fn a_batch_that_traps_the_sink_three_times_is_poison() {
    // The first batch goes through on its third try; the second traps three times.
    let sink = FakeSink::new(
        [
            Step::Trap,
            Step::Trap,
            Step::Ok,
            Step::Trap,
            Step::Trap,
            Step::Trap,
        ],
        Step::Ok,
    );
    let dead = FakeSink::new([], Step::Ok);
    let action = Action::start(json!({"batchSize": 2}), &[&sink], Some(&dead), None, 8);
    action.send(rows(0..6)).await;
    let m = action.finish().await;

    assert_counts(&m, [6, 4, 2, 0, 0]);
    assert_eq!((m.restarts.get(), m.batches.get()), (5, 7));
    assert_eq!(dead.delivered(), payloads(2..4));
    assert_eq!(sink.delivered(), [payloads(0..2), payloads(4..6)].concat());
}

#[tokio::test(start_paused = true)]
async fn without_cache_or_dead_letter_an_undeliverable_batch_counts_failed() {
    let sink = FakeSink::new([Step::Transient, Step::Transient, Step::Rejected], Step::Ok);
    let action = Action::start(
        json!({"batchSize": 2, "retryCount": 1, "retryInterval": 10}),
        &[&sink],
        None,
        None,
        8,
    );
    action.send(rows(0..6)).await;
    let m = action.finish().await;

    // Transient twice (one retry): failed; rejected: failed; the last batch goes through.
    assert_counts(&m, [6, 2, 0, 4, 0]);
    assert_eq!((m.retries.get(), m.batches.get()), (1, 4));
    assert_eq!(sink.delivered(), payloads(4..6));
    assert_eq!(m.exceptions.total(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_full_cache_stops_the_input_being_read_until_the_sink_recovers() {
    let dir = temp_dir("backpressure");
    let sink = FakeSink::new([], Step::Transient);
    // Room for two messages in memory and two on disk.
    let action = Action::start(
        json!({"batchSize": 1, "retryCount": 0, "retryInterval": 10, "enableCache": true,
               "memoryCacheThreshold": 2, "maxDiskCache": 2, "bufferPageSize": 1}),
        &[&sink],
        None,
        Some(&dir),
        1,
    );
    let tx = action.tx.clone().expect("input open");
    let mut accepted = 0;
    for i in 0..20 {
        if tx.try_send(rows(i..i + 1)).is_err() {
            break;
        }
        accepted += 1;
        tokio::time::sleep(MS).await;
    }
    // Four rows cached, the fifth waiting for room, the sixth cut and waiting for the sink to
    // take it (one batch, not more, waits ahead of the sink outside `qos: 2`), the seventh in
    // the channel.
    assert_eq!(accepted, 7);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(
        tx.try_send(rows(7..8)).is_err(),
        "the input is still held back"
    );
    assert_eq!(action.metrics.cached.get(), 4);
    assert_eq!(action.metrics.records_in.get(), 6);
    assert_eq!(action.metrics.records_out.get(), 0);

    sink.then(Step::Ok);
    for i in 7..11 {
        tx.send(rows(i..i + 1)).await.expect("the action runs");
    }
    drop(tx);
    let m = action.finish().await;

    assert_counts(&m, [11, 11, 0, 0, 0]);
    assert_eq!((m.cached_total.get(), m.resent.get()), (4, 4));
    assert_eq!(sink.delivered(), payloads(0..11));
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_stop_while_the_sink_fails_keeps_the_rows_in_the_disk_cache() {
    let dir = temp_dir("stop");
    let sink = FakeSink::new([], Step::Transient);
    let action = Action::start(
        json!({"batchSize": 2, "retryCount": 5, "retryInterval": 1000, "enableCache": true}),
        &[&sink],
        None,
        Some(&dir),
        8,
    );
    action.send(rows(0..4)).await;
    // The first batch is in its retries (1 s, 2 s, ...) when the run stops.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stopped_at = Instant::now();
    action.stop.send(true).expect("the action listens");
    let m = action.finish().await;

    assert!(
        Instant::now() - stopped_at < Duration::from_secs(1),
        "a stop cuts the retries short"
    );
    assert_counts(&m, [4, 0, 0, 0, 4]);
    let config = props::split(json!({"enableCache": true}).as_object().unwrap())
        .unwrap()
        .0
        .cache
        .unwrap();
    let mut cache = ActionCache::open(&dir.join("fake_0.redb"), config).unwrap();
    let mut kept = Vec::new();
    while let Some(batch) = cache.front().unwrap() {
        kept.extend(
            batch
                .payloads()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
        );
        cache.pop_front().unwrap();
    }
    assert_eq!(kept, payloads(0..4));
    drop(cache);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Starts an action whose sink hangs in `collect`, stops the run, then ends the grace period;
/// returns the counters and how long the action took to finish after the grace period.
async fn stop_a_stuck_sink(
    props: serde_json::Value,
    cache_dir: Option<&std::path::Path>,
) -> (Arc<ActionMetrics>, Duration) {
    let sink = FakeSink::new([], Step::Slow(Duration::from_secs(3600)));
    let action = Action::start(props, &[&sink], None, cache_dir, 8);
    action.send(rows(0..4)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    action.stop.send(true).expect("the action listens");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let grace_over = Instant::now();
    action.abort.send(true).expect("the action listens");
    let m = action.finish().await;
    (m, Instant::now() - grace_over)
}

#[tokio::test(start_paused = true)]
async fn past_the_grace_period_a_stuck_sink_is_abandoned_and_its_rows_count_failed() {
    let (m, took) = stop_a_stuck_sink(json!({"batchSize": 2}), None).await;
    assert!(took < Duration::from_secs(1), "the action took {took:?}");
    assert_counts(&m, [4, 0, 0, 4, 0]);
    let last = m.exceptions.last().unwrap_or_default();
    assert!(
        last.contains("stopped before the batch was delivered"),
        "{last}"
    );
}

#[tokio::test(start_paused = true)]
async fn past_the_grace_period_a_stuck_sink_leaves_its_rows_in_the_cache() {
    let dir = temp_dir("stuck");
    let (m, took) =
        stop_a_stuck_sink(json!({"batchSize": 2, "enableCache": true}), Some(&dir)).await;
    assert!(took < Duration::from_secs(1), "the action took {took:?}");
    assert_counts(&m, [4, 0, 0, 0, 4]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn past_the_grace_period_retries_of_an_uncached_action_stop() {
    let sink = FakeSink::new([], Step::Transient);
    let action = Action::start(
        json!({"retryCount": 10, "retryInterval": "10s"}),
        &[&sink],
        None,
        None,
        8,
    );
    action.send(rows(0..3)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    action.stop.send(true).expect("the action listens");
    let grace_over = Instant::now();
    action.abort.send(true).expect("the action listens");
    let m = action.finish().await;
    assert!(Instant::now() - grace_over < Duration::from_secs(1));
    assert_counts(&m, [3, 0, 0, 3, 0]);
}

#[tokio::test(start_paused = true)]
async fn a_batch_lingers_until_it_is_full_or_its_time_is_up() {
    let sink = FakeSink::new([], Step::Ok);
    let action = Action::start(
        json!({"batchSize": 3, "lingerInterval": 50}),
        &[&sink],
        None,
        None,
        8,
    );
    let start = Instant::now();
    action.send(rows(0..4)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let m = action.finish().await;

    assert_counts(&m, [4, 4, 0, 0, 0]);
    let calls = sink.calls();
    let sizes: Vec<_> = calls.iter().map(|c| c.payloads.len()).collect();
    assert_eq!(sizes, [3, 1]);
    assert_eq!(calls[0].at - start, Duration::ZERO);
    assert_eq!(calls[1].at - start, 50 * MS);
}

/// Without `batchSize`, a slow sink does not hold the action up: while it takes one batch,
/// the rows that arrive join the next, which takes them all once the sink is free. Were the
/// action to wait for the sink, each batch would be no larger than its channel holds (here 4
/// chunks of 8 rows), and the rows behind would wait in the rule.
#[tokio::test(start_paused = true)]
async fn a_slow_sink_gets_fewer_larger_batches_holding_what_arrived_while_it_worked() {
    let sink = FakeSink::new([], Step::Slow(20 * MS));
    let action = Action::start(json!({}), &[&sink], None, None, 4);
    // 200 chunks of 8 rows, one a millisecond: 1,600 rows in 200 ms.
    for i in 0..200 {
        action.send(rows(i * 8..i * 8 + 8)).await;
        tokio::time::sleep(MS).await;
    }
    let m = action.finish().await;

    assert_counts(&m, [1600, 1600, 0, 0, 0]);
    assert_eq!(
        sink.delivered(),
        payloads(0..1600),
        "every row once, in order"
    );
    let sizes: Vec<usize> = sink.calls().iter().map(|c| c.payloads.len()).collect();
    // The first batch holds the first chunk; each one after holds the 20 ms the one before
    // took: 20 chunks of 8 rows.
    assert!(
        sizes.len() <= 14,
        "{} batches for 1,600 rows into a sink taking 20 ms a batch: {sizes:?}",
        sizes.len()
    );
    assert!(
        sizes[1..sizes.len() - 1].iter().all(|&n| n >= 120),
        "each batch but the first and last holds what arrived during the one before: {sizes:?}"
    );
    let numbers: Vec<u64> = sink.calls().iter().map(|c| c.sequence).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
}

#[tokio::test(start_paused = true)]
async fn several_instances_take_batches_side_by_side() {
    let slow = Step::Slow(100 * MS);
    let sinks = [FakeSink::new([], slow), FakeSink::new([], slow)];
    let action = Action::start(
        json!({"batchSize": 1, "concurrency": 2}),
        &[&sinks[0], &sinks[1]],
        None,
        None,
        8,
    );
    let start = Instant::now();
    action.send(rows(0..4)).await;
    let m = action.finish().await;

    assert_counts(&m, [4, 4, 0, 0, 0]);
    assert_eq!(
        Instant::now() - start,
        200 * MS,
        "two at a time, 100 ms each"
    );
    let mut delivered = [sinks[0].delivered(), sinks[1].delivered()].concat();
    delivered.sort();
    assert_eq!(delivered, payloads(0..4));
    assert!(sinks.iter().all(|s| s.calls().len() == 2));
}

/// An action under `qos: 2` recording its cuts in a checkpoint store, delivering to a scripted
/// sink: a test feeds it, then ends its input or kills it.
struct OnceAction {
    tx: Option<mpsc::Sender<Chunk>>,
    stop: watch::Sender<bool>,
    acks: mpsc::UnboundedReceiver<crate::sink::BarrierAck>,
    metrics: Arc<ActionMetrics>,
    sink: FakeSink,
    run: tokio::task::JoinHandle<()>,
}

/// What a run of a [`OnceAction`] did: each call's sequence number and payloads, and the
/// barriers' acknowledgements.
type OnceRun = (Vec<(u64, Vec<String>)>, Vec<ActionCheckpoint>);

impl OnceAction {
    /// Starts the action with these props, resuming from `resume` (replaying the cuts `store`
    /// recorded from its next number on, as [`crate::sink::start_from`] does).
    fn start(
        store: &CheckpointStore,
        props: serde_json::Value,
        resume: Option<&ActionCheckpoint>,
        sink: FakeSink,
    ) -> Self {
        Self::start_as(store, "fake_0", props, resume, sink)
    }

    /// [`Self::start`] for the action named `name` of the rule.
    fn start_as(
        store: &CheckpointStore,
        name: &str,
        props: serde_json::Value,
        resume: Option<&ActionCheckpoint>,
        sink: FakeSink,
    ) -> Self {
        let (common, _) = props::split(props.as_object().expect("props are an object"))
            .expect("the props are valid");
        let metrics = Arc::new(ActionMetrics::default());
        let sequencer = Arc::new(crate::sink::sequence::Sequencer::fresh());
        let mut pending = crate::sink::Batch::new();
        let cuts = store.cut_log("rule", name);
        let replay = cuts
            .resume(resume.map(|from| from.next_sequence))
            .expect("the cuts are readable");
        match resume {
            Some(from) => {
                sequencer.pin(from.next_sequence, from.delivered);
                for p in &from.pending {
                    pending.push(&p.bytes().expect("base64"), p.ts);
                }
            }
            None => sequencer.pin_here(),
        }
        let (acks_tx, acks) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let mut action = fake_action(common, &metrics);
        action.name = Arc::from(name);
        let started = StartedAction {
            action,
            connectors: vec![sink.connector()],
            cache: None,
            sequencer,
            dead_letter: None,
            stop: stop_rx,
            abort: watch::channel(false).1,
            barriers: Some((0, acks_tx)),
            drain_timeout: None,
            exactly_once: true,
            pending,
            cuts: Some(cuts),
            replay,
        };
        let (tx, rx) = mpsc::channel(64);
        Self {
            tx: Some(tx),
            stop,
            acks,
            metrics,
            sink,
            run: tokio::spawn(run(started, rx)),
        }
    }

    async fn send(&self, chunk: Chunk) {
        send_to(self.tx.as_ref(), chunk).await;
    }

    /// Sends each chunk `gap` after the one before.
    async fn feed(&self, chunks: Vec<Chunk>, gap: Duration) {
        for chunk in chunks {
            self.send(chunk).await;
            tokio::time::sleep(gap).await;
        }
    }

    fn outcome(mut self) -> OnceRun {
        let mut states = Vec::new();
        while let Ok((_, state)) = self.acks.try_recv() {
            states.push(state);
        }
        let calls = self
            .sink
            .calls()
            .into_iter()
            .map(|c| (c.sequence, c.payloads))
            .collect();
        (calls, states)
    }

    /// Ends the input and waits for the action to finish.
    async fn finish(mut self) -> OnceRun {
        drop(self.tx.take());
        (&mut self.run).await.expect("the action does not panic");
        self.outcome()
    }

    /// Lets the action settle what it was given, then kills it (as a `kill -9` would: nothing
    /// more is written).
    async fn crash(self) -> OnceRun {
        tokio::time::sleep(100 * MS).await;
        self.kill().await
    }

    /// Kills the action where it is.
    async fn kill(mut self) -> OnceRun {
        self.run.abort();
        let _ = (&mut self.run).await;
        self.outcome()
    }
}

/// A checkpoint store in a fresh folder.
fn checkpoint_store(test: &str) -> (PathBuf, CheckpointStore) {
    let dir = temp_dir(test);
    let store = CheckpointStore::open(&dir).expect("the store opens");
    (dir, store)
}

/// Writes a checkpoint holding `state` (as the rule does once the barrier is acknowledged):
/// the cuts it covers are dropped.
fn checkpointed(store: &CheckpointStore, state: &ActionCheckpoint) {
    let checkpoint = Checkpoint {
        sources: Vec::new(),
        held: Vec::new(),
        actions: vec![state.clone()],
        functions: None,
    };
    store
        .save("rule", &checkpoint)
        .expect("the checkpoint is written");
}

/// An action under `qos: 2` with these props (and a fresh store), resuming from `resume`,
/// taking `chunks` (an empty one is a barrier), then the end of its input.
async fn exactly_once_run(
    props: serde_json::Value,
    resume: Option<ActionCheckpoint>,
    chunks: Vec<Chunk>,
) -> OnceRun {
    let (dir, store) = checkpoint_store("once");
    let action = OnceAction::start(&store, props, resume.as_ref(), FakeSink::new([], Step::Ok));
    for chunk in chunks {
        action.send(chunk).await;
    }
    let run = action.finish().await;
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
    run
}

fn barrier() -> Chunk {
    Arc::from(Vec::<Message>::new())
}

/// Calls from the checkpoint `at` on (numbered at or above its next number).
fn from_checkpoint(calls: &[(u64, Vec<String>)], at: &ActionCheckpoint) -> Vec<(u64, Vec<String>)> {
    calls
        .iter()
        .filter(|(sequence, _)| *sequence >= at.next_sequence)
        .cloned()
        .collect()
}

#[tokio::test(start_paused = true)]
async fn under_qos_2_a_replay_from_a_checkpoint_cuts_the_same_batches_with_the_same_numbers() {
    let props = json!({"batchSize": 3});
    // Uninterrupted: 0..8 in batches of 3.
    let (whole, _) = exactly_once_run(props.clone(), None, vec![rows(0..4), rows(4..8)]).await;
    assert_eq!(
        whole,
        vec![
            (1, payloads(0..3)),
            (2, payloads(3..6)),
            (3, payloads(6..8)),
        ]
    );
    // A checkpoint after row 4: the batch being filled is not handed on, the checkpoint holds
    // it. Then the run is killed.
    let (dir, store) = checkpoint_store("replay-count");
    let before = OnceAction::start(&store, props.clone(), None, FakeSink::new([], Step::Ok));
    before
        .feed(vec![rows(0..4), barrier(), rows(4..5)], MS)
        .await;
    let (calls, states) = before.crash().await;
    let at = states
        .into_iter()
        .next()
        .expect("the barrier was acknowledged");
    assert_eq!(
        (at.next_sequence, at.pending.len(), at.exactly_once),
        (2, 1, true)
    );
    assert_eq!(calls, vec![(1, payloads(0..3))]);
    checkpointed(&store, &at);
    // The restart resumes at the checkpoint: rows 4.. are read again and cut as the
    // uninterrupted run cut them.
    let after = OnceAction::start(&store, props, Some(&at), FakeSink::new([], Step::Ok));
    after.send(rows(4..8)).await;
    let (again, _) = after.finish().await;
    assert_eq!(again, whole[1..].to_vec());
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

/// Under `qos: 2` with a batch size, the end of the run hands on the partial batch the last
/// checkpoint holds: that cut is recorded, so a run resuming from that checkpoint (its input
/// having grown) cuts the same batch again, not a full one the sink would skip.
#[tokio::test(start_paused = true)]
async fn under_qos_2_the_partial_batch_handed_on_at_the_end_is_cut_the_same_after_a_restart() {
    let props = json!({"batchSize": 3});
    let (dir, store) = checkpoint_store("replay-end");
    let first = OnceAction::start(&store, props.clone(), None, FakeSink::new([], Step::Ok));
    first.feed(vec![rows(0..4), barrier()], MS).await;
    let (calls, states) = first.finish().await;
    assert_eq!(calls, vec![(1, payloads(0..3)), (2, payloads(3..4))]);
    let at = states
        .last()
        .cloned()
        .expect("the barrier was acknowledged");
    assert_eq!((at.next_sequence, at.pending.len()), (2, 1));
    checkpointed(&store, &at);
    // The next run (the file grew by rows 4..8) starts from that checkpoint.
    let next = OnceAction::start(&store, props, Some(&at), FakeSink::new([], Step::Ok));
    next.send(rows(4..8)).await;
    let (again, _) = next.finish().await;
    assert_eq!(
        again,
        vec![
            (2, payloads(3..4)),
            (3, payloads(4..7)),
            (4, payloads(7..8)),
        ],
        "batch 2 is the one the sink has; rows 4.. follow it"
    );
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

/// Without a batch size, batches take whatever is waiting when the sink is free: a slow sink
/// makes them larger, a fast one smaller. Killed after delivering (before the next checkpoint),
/// the restart gets its rows at another pace, yet cuts them where the first run did.
#[tokio::test(start_paused = true)]
async fn under_qos_2_cuts_made_by_what_was_waiting_are_replayed_after_a_kill() {
    let (dir, store) = checkpoint_store("replay-free");
    let slow = FakeSink::new([], Step::Slow(5 * MS));
    let first = OnceAction::start(&store, json!({}), None, slow);
    let mut chunks = vec![rows(0..3), barrier()];
    chunks.extend((3..40).map(|i| rows(i..i + 1)));
    first.feed(chunks, MS).await;
    let (calls, states) = first.crash().await;
    let at = states
        .last()
        .cloned()
        .expect("the barrier was acknowledged");
    assert!(at.pending.is_empty(), "without a batch size nothing waits");
    let after: Vec<_> = from_checkpoint(&calls, &at);
    let delivered: Vec<String> = after.iter().flat_map(|(_, p)| p.clone()).collect();
    assert_eq!(delivered, payloads(3..40));
    assert!(
        after.len() > 2 && after.iter().any(|(_, p)| p.len() > 1),
        "the slow sink made batches of what was waiting: {after:?}"
    );
    checkpointed(&store, &at);
    // The restart reads rows 3.. at once, into a fast sink.
    let next = OnceAction::start(&store, json!({}), Some(&at), FakeSink::new([], Step::Ok));
    next.send(rows(3..40)).await;
    next.send(rows(40..42)).await;
    let (again, _) = next.finish().await;
    let replayed = &again[..after.len()];
    assert_eq!(replayed, &after[..], "the same batches, the same numbers");
    // Then it cuts freely again, numbering on.
    let rest: Vec<String> = again[after.len()..]
        .iter()
        .flat_map(|(_, p)| p.clone())
        .collect();
    assert_eq!(rest, payloads(40..42));
    assert_eq!(again[after.len()].0, after.last().unwrap().0 + 1);
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

/// With `batchSize` and `lingerInterval`, a batch that lingers out goes partial: every cut is
/// recorded, and a restart that gets its rows at another pace cuts the same: until the last
/// recorded cut, as recorded, never by time.
#[tokio::test(start_paused = true)]
async fn under_qos_2_cuts_made_by_a_linger_are_replayed_after_a_kill() {
    let props = json!({"batchSize": 4, "lingerInterval": 10});
    let (dir, store) = checkpoint_store("replay-linger");
    let first = OnceAction::start(&store, props.clone(), None, FakeSink::new([], Step::Ok));
    first.send(barrier()).await;
    // 0..6 at once (a batch of 4, two linger out), 6 and 7 apart (each lingers out), 8..13.
    first
        .feed(
            vec![rows(0..6), rows(6..7), rows(7..8), rows(8..13)],
            20 * MS,
        )
        .await;
    let (calls, states) = first.crash().await;
    let at = states
        .first()
        .cloned()
        .expect("the barrier was acknowledged");
    assert_eq!(
        calls,
        vec![
            (1, payloads(0..4)),
            (2, payloads(4..6)),
            (3, payloads(6..7)),
            (4, payloads(7..8)),
            (5, payloads(8..12)),
            (6, payloads(12..13)),
        ]
    );
    assert_eq!(
        store
            .cut_log("rule", "fake_0")
            .resume(Some(1))
            .unwrap()
            .cuts,
        std::collections::BTreeMap::from([(1, 4), (2, 2), (3, 1), (4, 1), (5, 4), (6, 1)]),
        "every cut is recorded: those by count too, for a restart not to linger where the \
         first run cut by count"
    );
    checkpointed(&store, &at);
    // The restart gets rows 0..3, then nothing for longer than the linger: the batch waits
    // for its count all the same (it was cut by count before), and the rest are cut as
    // recorded.
    let next = OnceAction::start(&store, props, Some(&at), FakeSink::new([], Step::Ok));
    next.feed(vec![rows(0..3), rows(3..13)], 30 * MS).await;
    let (again, _) = next.finish().await;
    assert_eq!(again, calls);
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

/// Killed after a cut was recorded but before the sink took its batch (it hangs in the sink):
/// the restart delivers that batch as it was cut, under its number, then goes on.
#[tokio::test(start_paused = true)]
async fn under_qos_2_a_kill_between_the_record_and_the_delivery_replays_the_recorded_cut() {
    let (dir, store) = checkpoint_store("replay-undelivered");
    let hangs = FakeSink::new(
        [Step::Ok, Step::Slow(5 * MS), Step::Slow(5 * MS)],
        Step::Slow(Duration::from_secs(3600)),
    );
    let first = OnceAction::start(&store, json!({}), None, hangs);
    first.send(barrier()).await;
    first
        .feed((0..20).map(|i| rows(i..i + 1)).collect(), MS)
        .await;
    let (calls, states) = first.crash().await;
    let at = states
        .first()
        .cloned()
        .expect("the barrier was acknowledged");
    // The last call is the batch the sink never finished taking.
    let (hung_sequence, hung) = calls.last().cloned().expect("calls were made");
    assert!(
        hung.len() > 1,
        "rows waited behind the slow calls: {calls:?}"
    );
    let cut: Vec<String> = calls.iter().flat_map(|(_, p)| p.clone()).collect();
    checkpointed(&store, &at);
    let next = OnceAction::start(&store, json!({}), Some(&at), FakeSink::new([], Step::Ok));
    next.send(rows(0..25)).await;
    let (again, _) = next.finish().await;
    assert_eq!(&again[..calls.len()], &calls[..]);
    assert_eq!(again[calls.len() - 1], (hung_sequence, hung));
    let rest: Vec<String> = again[calls.len()..]
        .iter()
        .flat_map(|(_, p)| p.clone())
        .collect();
    assert_eq!(cut.len() + rest.len(), 25, "every row once after the cuts");
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

/// While a batch's record commits (held here), the batch stays off the sink and the action
/// goes on taking the rule's results into the next batch. Killed then, a restart cuts the same
/// batches as far as the sink has them, whether the record was durable before the kill or not.
#[tokio::test(start_paused = true)]
#[expect(
    clippy::await_holding_lock,
    reason = "the guard holds the commits of a blocking thread, not this task"
)]
async fn under_qos_2_a_kill_while_a_record_commits_and_the_next_batch_fills_replays_the_same_batches()
 {
    let (dir, store) = checkpoint_store("replay-committing");
    let first = OnceAction::start(&store, json!({}), None, FakeSink::new([], Step::Ok));
    first.send(barrier()).await;
    first.send(rows(0..2)).await;
    // Batch 1's record commits (time stands still while it does), then the sink takes it.
    tokio::time::sleep(10 * MS).await;
    let log = store.cut_log("rule", "fake_0");
    let gate = log.hold_commits();
    // Row 2 is cut as batch 2, whose record cannot commit; the rest come after.
    for chunk in [rows(2..3), rows(3..4), rows(4..6), rows(6..7)] {
        first.send(chunk).await;
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(
        first.metrics.records_in.get(),
        7,
        "the action took the rows that came while the record committed"
    );
    let (calls, states) = first.kill().await;
    assert_eq!(
        calls,
        vec![(1, payloads(0..2))],
        "batch 2 does not reach the sink before its record is durable"
    );
    let at = states
        .first()
        .cloned()
        .expect("the barrier was acknowledged");
    assert_eq!(at.next_sequence, 1);
    // The database as the kill left it (the record of batch 2 not committed)...
    let uncommitted = temp_dir("replay-committing-killed");
    std::fs::create_dir_all(&uncommitted).unwrap();
    std::fs::copy(
        dir.join("checkpoints.redb"),
        uncommitted.join("checkpoints.redb"),
    )
    .unwrap();
    // ... and as it is had the commit ended just before the kill.
    drop(gate);
    tokio::time::sleep(10 * MS).await;
    let each_row_once = |again: &[(u64, Vec<String>)]| {
        let mut written: Vec<String> = calls.iter().flat_map(|(_, p)| p.clone()).collect();
        // The sink skips what is not above the last number it wrote.
        written.extend(
            again
                .iter()
                .filter(|(sequence, _)| *sequence > 1)
                .flat_map(|(_, p)| p.clone()),
        );
        assert_eq!(written, payloads(0..10));
    };
    checkpointed(&store, &at);
    let next = OnceAction::start(&store, json!({}), Some(&at), FakeSink::new([], Step::Ok));
    next.send(rows(0..10)).await;
    let (again, _) = next.finish().await;
    assert_eq!(
        again,
        vec![
            (1, payloads(0..2)),
            (2, payloads(2..3)),
            (3, payloads(3..10))
        ]
    );
    each_row_once(&again);
    drop(store);
    let killed = CheckpointStore::open(&uncommitted).expect("the copy opens");
    checkpointed(&killed, &at);
    let next = OnceAction::start(&killed, json!({}), Some(&at), FakeSink::new([], Step::Ok));
    next.send(rows(0..10)).await;
    let (again, _) = next.finish().await;
    assert_eq!(again, vec![(1, payloads(0..2)), (2, payloads(2..10))]);
    each_row_once(&again);
    drop(killed);
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(uncommitted);
}

/// Two actions of a run record their cuts in one store. Left to themselves their records would
/// alternate, one per commit (one action's record commits while the other's waits); the
/// committer waits for the action its last commit answered, so the waiting record and that
/// action's next share a commit. Killed while both batches of that commit hang in their sinks,
/// a restart cuts each action's batches again as recorded: every row is written once.
#[tokio::test(start_paused = true)]
#[expect(
    clippy::await_holding_lock,
    reason = "the guard holds the commits of a blocking thread, not this task"
)]
async fn under_qos_2_two_actions_records_share_a_commit_and_a_kill_before_delivery_replays_both() {
    let (dir, store) = checkpoint_store("grouped");
    let log = store.cut_log("rule", "a");
    // However long the machine takes to wake an action, the committer waits for its answer.
    log.store().gather_for(Duration::from_secs(60));
    let hang = || Step::Slow(Duration::from_secs(3600));
    let a = OnceAction::start_as(
        &store,
        "a",
        json!({}),
        None,
        FakeSink::new([Step::Ok], hang()),
    );
    let b = OnceAction::start_as(&store, "b", json!({}), None, FakeSink::new([], hang()));
    a.send(barrier()).await;
    b.send(barrier()).await;
    tokio::time::sleep(10 * MS).await;
    let settle = || async {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    };
    let gate = log.hold_commits();
    // Batch a1's record commits (held); b1's waits behind it; a's next rows wait meanwhile.
    a.send(rows(0..2)).await;
    while log.store().groups().is_empty() {
        settle().await;
        std::thread::sleep(MS);
    }
    b.send(rows(10..13)).await;
    settle().await;
    a.send(rows(2..5)).await;
    settle().await;
    assert_eq!(a.metrics.records_in.get(), 5);
    drop(gate);
    tokio::time::sleep(10 * MS).await;
    // Later rows: batches cut and recorded behind the hung ones.
    a.send(rows(5..7)).await;
    b.send(rows(13..15)).await;
    tokio::time::sleep(10 * MS).await;
    let groups = log.store().groups();
    let record = |action: &str, sequence| (action.to_string(), sequence);
    assert_eq!(
        groups[..2],
        [vec![record("a", 1)], vec![record("b", 1), record("a", 2)]],
        "b1 waited for a's next record: {groups:?}"
    );
    let (calls_a, states_a) = a.kill().await;
    let (calls_b, states_b) = b.kill().await;
    assert_eq!(
        calls_a,
        vec![(1, payloads(0..2)), (2, payloads(2..5))],
        "a2 hangs in the sink"
    );
    assert_eq!(calls_b, vec![(1, payloads(10..13))], "b1 hangs in the sink");
    let at_a = states_a.first().cloned().expect("a's barrier");
    let at_b = states_b.first().cloned().expect("b's barrier");
    checkpointed(&store, &at_a);
    checkpointed(&store, &at_b);
    // The restart reads every row at once: each action cuts its recorded batches again, under
    // their numbers, then the rest.
    let a = OnceAction::start_as(
        &store,
        "a",
        json!({}),
        Some(&at_a),
        FakeSink::new([], Step::Ok),
    );
    let b = OnceAction::start_as(
        &store,
        "b",
        json!({}),
        Some(&at_b),
        FakeSink::new([], Step::Ok),
    );
    a.send(rows(0..8)).await;
    b.send(rows(10..16)).await;
    let (again_a, _) = a.finish().await;
    let (again_b, _) = b.finish().await;
    assert_eq!(again_a[..2], calls_a[..]);
    assert_eq!(again_b[..1], calls_b[..]);
    let once = |again: &[(u64, Vec<String>)], expected: Vec<String>| {
        let written: Vec<String> = again.iter().flat_map(|(_, p)| p.clone()).collect();
        assert_eq!(written, expected);
    };
    once(&again_a, payloads(0..8));
    once(&again_b, payloads(10..16));
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

/// A checkpoint drops the cuts it covers: a restart from a later checkpoint replays only those
/// after it.
#[tokio::test(start_paused = true)]
async fn under_qos_2_a_checkpoint_drops_the_cuts_it_covers() {
    let (dir, store) = checkpoint_store("replay-dropped");
    let first = OnceAction::start(&store, json!({}), None, FakeSink::new([], Step::Ok));
    first
        .feed(vec![rows(0..2), rows(2..3), barrier(), rows(3..5)], MS)
        .await;
    let (calls, states) = first.crash().await;
    assert_eq!(
        calls,
        vec![
            (1, payloads(0..2)),
            (2, payloads(2..3)),
            (3, payloads(3..5))
        ]
    );
    let at = states
        .first()
        .cloned()
        .expect("the barrier was acknowledged");
    assert_eq!(at.next_sequence, 3);
    let log = store.cut_log("rule", "fake_0");
    checkpointed(&store, &at);
    assert_eq!(
        log.resume(Some(1)).unwrap().cuts,
        std::collections::BTreeMap::from([(3, 2)])
    );
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

/// A stop while a recorded cut is replayed and its batch is not complete: the batch is not
/// handed on smaller (the sink would skip the rest under its number); the checkpoint holds it.
#[tokio::test(start_paused = true)]
async fn under_qos_2_a_stop_keeps_an_incomplete_replayed_batch_for_the_next_run() {
    let (dir, store) = checkpoint_store("replay-stop");
    let first = OnceAction::start(&store, json!({}), None, FakeSink::new([], Step::Ok));
    first.feed(vec![barrier(), rows(0..5)], MS).await;
    let (calls, states) = first.crash().await;
    assert_eq!(calls, vec![(1, payloads(0..5))]);
    let at = states
        .first()
        .cloned()
        .expect("the barrier was acknowledged");
    checkpointed(&store, &at);
    // The restart is stopped after rows 0..3: at its last checkpoint it holds them.
    let stopped = OnceAction::start(&store, json!({}), Some(&at), FakeSink::new([], Step::Ok));
    stopped.feed(vec![rows(0..3), barrier()], MS).await;
    stopped.stop.send(true).expect("the action listens");
    let metrics = Arc::clone(&stopped.metrics);
    let (calls, states) = stopped.finish().await;
    assert_eq!(calls, vec![], "nothing handed on");
    assert_eq!(metrics.cut_short.get(), 3);
    let held = states
        .last()
        .cloned()
        .expect("the barrier was acknowledged");
    assert_eq!((held.next_sequence, held.pending.len()), (1, 3));
    checkpointed(&store, &held);
    let next = OnceAction::start(&store, json!({}), Some(&held), FakeSink::new([], Step::Ok));
    next.send(rows(3..6)).await;
    let (again, _) = next.finish().await;
    assert_eq!(again, vec![(1, payloads(0..5)), (2, payloads(5..6))]);
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}

/// With `batchSize` alone, cuts by count are not recorded one by one, only how far they may
/// have gone: a restart stopped before it got there keeps its incomplete batch for the next run
/// (the first run handed on a full one under that number), and one that ends its input records
/// its last cut.
#[tokio::test(start_paused = true)]
async fn under_qos_2_with_a_batch_size_a_stop_short_of_an_earlier_run_s_reach_keeps_its_batch() {
    let props = json!({"batchSize": 3});
    let (dir, store) = checkpoint_store("replay-reach");
    let first = OnceAction::start(&store, props.clone(), None, FakeSink::new([], Step::Ok));
    first.feed(vec![barrier(), rows(0..9)], MS).await;
    let (calls, states) = first.crash().await;
    assert_eq!(
        calls,
        vec![
            (1, payloads(0..3)),
            (2, payloads(3..6)),
            (3, payloads(6..9))
        ]
    );
    assert!(
        store
            .cut_log("rule", "fake_0")
            .resume(Some(1))
            .unwrap()
            .cuts
            .is_empty(),
        "cuts by count are not recorded"
    );
    let at = states
        .first()
        .cloned()
        .expect("the barrier was acknowledged");
    checkpointed(&store, &at);
    // The restart is stopped with rows 0..4 read: batch 2 holds one row; the first run handed
    // on three under that number.
    let stopped = OnceAction::start(
        &store,
        props.clone(),
        Some(&at),
        FakeSink::new([], Step::Ok),
    );
    stopped.feed(vec![rows(0..4), barrier()], MS).await;
    stopped.stop.send(true).expect("the action listens");
    let metrics = Arc::clone(&stopped.metrics);
    let (calls, states) = stopped.finish().await;
    assert_eq!(calls, vec![(1, payloads(0..3))]);
    assert_eq!(metrics.cut_short.get(), 1);
    let held = states
        .last()
        .cloned()
        .expect("the barrier was acknowledged");
    assert_eq!((held.next_sequence, held.pending.len()), (2, 1));
    checkpointed(&store, &held);
    // The next run reads to the end of a longer input: the last, partial batch is recorded.
    let next = OnceAction::start(
        &store,
        props.clone(),
        Some(&held),
        FakeSink::new([], Step::Ok),
    );
    next.send(rows(4..10)).await;
    let (again, _) = next.finish().await;
    assert_eq!(
        again,
        vec![
            (2, payloads(3..6)),
            (3, payloads(6..9)),
            (4, payloads(9..10))
        ]
    );
    assert_eq!(
        store
            .cut_log("rule", "fake_0")
            .resume(Some(2))
            .unwrap()
            .cuts,
        std::collections::BTreeMap::from([(4, 1)])
    );
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
}
