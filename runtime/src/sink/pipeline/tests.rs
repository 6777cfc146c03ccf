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
use crate::checkpoint::ActionCheckpoint;
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
        let action = PreparedAction {
            name: Arc::from("fake_0"),
            plugin: "fake".into(),
            rule: Arc::from("rule"),
            common,
            spec: ConnectorSpec::Nop { log: false },
            metrics: Arc::clone(&metrics),
            send_nil: false,
            cache_path: None,
            dead_letter: None,
        };
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
        self.tx
            .as_ref()
            .expect("input open")
            .send(chunk)
            .await
            .expect("the action runs");
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
    // Four rows cached, the fifth waiting for room, the sixth in the channel.
    assert_eq!(accepted, 6);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(
        tx.try_send(rows(6..7)).is_err(),
        "the input is still held back"
    );
    assert_eq!(action.metrics.cached.get(), 4);
    assert_eq!(action.metrics.records_in.get(), 5);
    assert_eq!(action.metrics.records_out.get(), 0);

    sink.then(Step::Ok);
    for i in 6..10 {
        tx.send(rows(i..i + 1)).await.expect("the action runs");
    }
    drop(tx);
    let m = action.finish().await;

    assert_counts(&m, [10, 10, 0, 0, 0]);
    assert_eq!((m.cached_total.get(), m.resent.get()), (4, 4));
    assert_eq!(sink.delivered(), payloads(0..10));
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

/// An action under `qos: 2` with these props, resuming from `resume`, taking `chunks` (an
/// empty one is a barrier): each call's sequence number and payloads, and the barriers'
/// acknowledgements.
async fn exactly_once_run(
    props: serde_json::Value,
    resume: Option<ActionCheckpoint>,
    chunks: Vec<Chunk>,
) -> (Vec<(u64, Vec<String>)>, Vec<ActionCheckpoint>) {
    let sink = FakeSink::new([], Step::Ok);
    let (common, _) =
        props::split(props.as_object().expect("props are an object")).expect("the props are valid");
    let metrics = Arc::new(ActionMetrics::default());
    let sequencer = Arc::new(crate::sink::sequence::Sequencer::fresh());
    let mut pending = crate::sink::Batch::new();
    match &resume {
        Some(from) => {
            sequencer.pin(from.next_sequence, from.delivered);
            for p in &from.pending {
                pending.push(&p.bytes().expect("base64"), p.ts);
            }
        }
        None => sequencer.pin_here(),
    }
    let (acks_tx, mut acks) = mpsc::unbounded_channel();
    let started = StartedAction {
        action: PreparedAction {
            name: Arc::from("fake_0"),
            plugin: "fake".into(),
            rule: Arc::from("rule"),
            common,
            spec: ConnectorSpec::Nop { log: false },
            metrics: Arc::clone(&metrics),
            send_nil: false,
            cache_path: None,
            dead_letter: None,
        },
        connectors: vec![sink.connector()],
        cache: None,
        sequencer,
        dead_letter: None,
        stop: watch::channel(false).1,
        abort: watch::channel(false).1,
        barriers: Some((0, acks_tx)),
        drain_timeout: None,
        exactly_once: true,
        pending,
    };
    let (tx, rx) = mpsc::channel(8);
    let task = tokio::spawn(run(started, rx));
    for chunk in chunks {
        tx.send(chunk).await.expect("the action runs");
    }
    drop(tx);
    task.await.expect("the action does not panic");
    let mut states = Vec::new();
    while let Ok((_, state)) = acks.try_recv() {
        states.push(state);
    }
    let calls = sink
        .calls()
        .into_iter()
        .map(|c| (c.sequence, c.payloads))
        .collect();
    (calls, states)
}

fn barrier() -> Chunk {
    Arc::from(Vec::<Message>::new())
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
    // A checkpoint after row 4: the batch being filled is not handed on, the checkpoint holds it.
    let (before, states) =
        exactly_once_run(props.clone(), None, vec![rows(0..4), barrier(), rows(4..5)]).await;
    let at = states
        .into_iter()
        .next()
        .expect("the barrier was acknowledged");
    assert_eq!(
        (at.next_sequence, at.pending.len(), at.exactly_once),
        (2, 1, true)
    );
    assert_eq!(before[0], (1, payloads(0..3)));
    // The run that crashed had handed on more; the restart resumes at the checkpoint: rows
    // 4.. are read again and cut as the uninterrupted run cut them.
    let (after, _) = exactly_once_run(props, Some(at), vec![rows(4..8)]).await;
    assert_eq!(after, whole[1..].to_vec());
}

#[tokio::test(start_paused = true)]
async fn under_qos_2_without_a_batch_size_each_message_is_a_batch() {
    let (calls, _) =
        exactly_once_run(json!({}), None, vec![rows(0..2), barrier(), rows(2..3)]).await;
    assert_eq!(
        calls,
        vec![
            (1, payloads(0..1)),
            (2, payloads(1..2)),
            (3, payloads(2..3)),
        ]
    );
}
