//! `SHARED` streams: several rules read one reading of a stream (one memory subscription, one
//! MQTT connection, one decode), each gets every row once, a rule that leaves or lags leaves
//! the others untouched and loses nothing, and one that joins later sees only what follows.
//! Without `SHARED`, a stream is shared where no rule could tell (a memory stream; a file,
//! stdin or MQTT stream among the rules of one run), and its counters are in `/metrics`.
//!
//! The rules run in process (`engine::run_within`, as `oort serve` runs them), reading memory
//! streams of a bus the test publishes to and writing to memory topics the test reads.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use oort::engine::{RunConfig, RunReport, Signals, Surroundings, run_within};
use oort::source::{MemoryBus, SharedSources, memory::Published};
use oort_tests::broker::{Broker, publish_all};
use serde_json::{Value as Json, json};
use tokio::sync::{mpsc, oneshot};

/// Writes `rules` (id, SQL) as a ruleset reading `streams`, each rule publishing its rows to
/// the memory topic `out/<id>`.
fn ruleset(dir: &Path, name: &str, streams: &str, rules: &[(&str, &str)]) -> RunConfig {
    std::fs::create_dir_all(dir).unwrap();
    let streams_path = dir.join(format!("{name}.sql"));
    std::fs::write(&streams_path, streams).unwrap();
    let rules: Vec<Json> = rules
        .iter()
        .map(|(id, sql)| {
            json!({"id": id, "sql": sql,
                   "actions": [{"memory": {"topic": format!("out/{id}"), "sendSingle": true}}]})
        })
        .collect();
    let rule_path = dir.join(format!("{name}.json"));
    std::fs::write(&rule_path, Json::Array(rules).to_string()).unwrap();
    oort_tests::run_config(dir, rule_path, streams_path, dir.join("data"))
}

/// A run of `config` on `bus` and `shared`, stopped by dropping or sending on its handle.
struct Running {
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<RunReport>,
}

impl Running {
    fn start(config: RunConfig, bus: &Arc<MemoryBus>, shared: &Arc<SharedSources>) -> Self {
        let (stop, stop_rx) = oneshot::channel::<()>();
        let bus = Arc::clone(bus);
        let shared = Arc::clone(shared);
        let done = tokio::spawn(async move {
            let around = Surroundings {
                bus,
                shared,
                signals: Signals::Caller,
                park_idle_sinks: false,
            };
            run_within(
                &config,
                around,
                async {
                    let _ = stop_rx.await;
                },
                std::future::pending(),
                None,
                |_, _| {},
            )
            .await
            .expect("the rules run")
        });
        Self {
            stop: Some(stop),
            done,
        }
    }

    async fn stop(mut self) -> RunReport {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), self.done)
            .await
            .expect("the run stops")
            .expect("the run task")
    }
}

/// Waits until `shared` has `n` rules on `stream`.
async fn readers(shared: &SharedSources, stream: &str, n: usize) {
    for _ in 0..3000 {
        if shared.readers(stream) == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!(
        "{} rules read `{stream}`, expected {n}",
        shared.readers(stream)
    );
}

async fn publish(bus: &MemoryBus, topic: &str, rows: impl IntoIterator<Item = Json>) {
    for row in rows {
        bus.publish(
            topic,
            Published {
                payload: Arc::from(row.to_string().into_bytes()),
                timestamp_ms: 0,
                topic: Arc::from(topic),
            },
        )
        .await;
    }
}

/// Takes `n` messages from `rx` (failing after 30 s without one).
async fn take(rx: &mut mpsc::Receiver<Published>, n: usize) -> Vec<Json> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let message = tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{} of {n} messages came", got.len()))
            .expect("the topic is open");
        got.push(serde_json::from_slice(&message.payload).unwrap());
    }
    got
}

/// Nothing more comes on `rx` for a while.
async fn nothing_more(rx: &mut mpsc::Receiver<Published>) {
    if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        panic!("an extra message: {}", String::from_utf8_lossy(&m.payload));
    }
}

fn field(rows: &[Json], name: &str) -> Vec<i64> {
    rows.iter()
        .map(|r| r[name].as_i64().unwrap_or(-1))
        .collect()
}

const MEMORY_STREAM: &str =
    "CREATE STREAM s () WITH (TYPE=\"memory\", DATASOURCE=\"in\", SHARED=\"true\");";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_on_a_shared_stream_each_get_every_row_once_from_one_decode() {
    let dir = tempfile::tempdir().unwrap();
    let bus = MemoryBus::lasting();
    let shared = SharedSources::new();
    let mut outs: BTreeMap<&str, _> = ["a", "b", "all"]
        .into_iter()
        .map(|id| (id, bus.subscribe(&format!("out/{id}"))))
        .collect();
    // Each rule reads other fields: the one decode keeps their union.
    let config = ruleset(
        dir.path(),
        "rules",
        MEMORY_STREAM,
        &[
            ("a", "SELECT a FROM s"),
            ("b", "SELECT b FROM s WHERE a % 2 = 0"),
            ("all", "SELECT * FROM s"),
        ],
    );
    let run = Running::start(config, &bus, &shared);
    readers(&shared, "s", 3).await;
    assert_eq!(shared.readings(), 1, "one reading for three rules");
    let n = 2000;
    publish(
        &bus,
        "in",
        (0..n).map(|i| json!({"a": i, "b": i * 10, "c": "x"})),
    )
    .await;
    // Read side by side: the slowest rule sets the shared reading's pace, so a rule whose
    // output nobody reads would hold back the others once its buffers are full.
    let (mut out_a, mut out_b, mut out_all) = (
        outs.remove("a").expect("subscribed"),
        outs.remove("b").expect("subscribed"),
        outs.remove("all").expect("subscribed"),
    );
    let (a, b, all) = tokio::join!(
        take(&mut out_a, n as usize),
        take(&mut out_b, n as usize / 2),
        take(&mut out_all, n as usize)
    );
    outs.extend([("a", out_a), ("b", out_b), ("all", out_all)]);
    assert_eq!(field(&a, "a"), (0..n).collect::<Vec<_>>());
    assert!(a.iter().all(|r| r.get("b").is_none()));
    assert_eq!(
        field(&b, "b"),
        (0..n)
            .filter(|i| i % 2 == 0)
            .map(|i| i * 10)
            .collect::<Vec<_>>()
    );
    assert_eq!(all[7], json!({"a": 7, "b": 70, "c": "x"}));
    for rx in outs.values_mut() {
        nothing_more(rx).await;
    }
    let hub = shared.metrics("s").expect("the shared reading runs");
    assert_eq!(hub.records_out.get(), n as u64, "each row decoded once");
    let report = run.stop().await;
    for rule in &report.rules {
        assert_eq!(
            rule.source.records_out.get(),
            n as u64,
            "rule {} counts each row it took",
            rule.id
        );
    }
    assert_eq!(shared.readings(), 0, "the reading stops with its last rule");
    drop(outs);
    assert_eq!(bus.subscriptions(), 0, "its memory subscription is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_that_joins_later_or_leaves_early_leaves_the_others_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let bus = MemoryBus::lasting();
    let shared = SharedSources::new();
    let mut stay = bus.subscribe("out/stay");
    let mut late = bus.subscribe("out/late");
    let first = Running::start(
        ruleset(
            dir.path(),
            "first",
            MEMORY_STREAM,
            &[("stay", "SELECT a FROM s")],
        ),
        &bus,
        &shared,
    );
    readers(&shared, "s", 1).await;
    publish(&bus, "in", (0..100).map(|i| json!({"a": i, "b": -i}))).await;
    assert_eq!(
        field(&take(&mut stay, 100).await, "a"),
        (0..100).collect::<Vec<_>>()
    );

    // A second rule (another run, as the server starts each rule) joins the same reading and
    // reads a field the first does not: it sees only the rows read after it joined.
    let second = Running::start(
        ruleset(
            dir.path(),
            "second",
            MEMORY_STREAM,
            &[("late", "SELECT b FROM s")],
        ),
        &bus,
        &shared,
    );
    readers(&shared, "s", 2).await;
    assert_eq!(shared.readings(), 1);
    publish(&bus, "in", (100..200).map(|i| json!({"a": i, "b": -i}))).await;
    assert_eq!(
        field(&take(&mut late, 100).await, "b"),
        (100..200).map(|i| -i).collect::<Vec<_>>()
    );
    assert_eq!(
        field(&take(&mut stay, 100).await, "a"),
        (100..200).collect::<Vec<_>>()
    );

    // It stops; the first rule goes on with every row, alone on the reading.
    let report = second.stop().await;
    assert_eq!(report.rules[0].source.records_out.get(), 100);
    readers(&shared, "s", 1).await;
    publish(&bus, "in", (200..300).map(|i| json!({"a": i, "b": -i}))).await;
    assert_eq!(
        field(&take(&mut stay, 100).await, "a"),
        (200..300).collect::<Vec<_>>()
    );
    nothing_more(&mut late).await;
    nothing_more(&mut stay).await;
    assert_eq!(shared.metrics("s").unwrap().records_out.get(), 300);
    first.stop().await;
    assert_eq!(shared.readings(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_rule_holds_the_shared_reading_back_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bus = MemoryBus::lasting();
    let shared = SharedSources::new();
    let mut fast = bus.subscribe("out/fast");
    let mut slow = bus.subscribe("out/slow");
    let run = Running::start(
        ruleset(
            dir.path(),
            "rules",
            MEMORY_STREAM,
            &[("fast", "SELECT a FROM s"), ("slow", "SELECT a FROM s")],
        ),
        &bus,
        &shared,
    );
    readers(&shared, "s", 2).await;
    // Far more rows than all the queues between the reading and the test hold.
    let n = 20_000;
    let publisher = {
        let bus = Arc::clone(&bus);
        tokio::spawn(async move { publish(&bus, "in", (0..n).map(|i| json!({"a": i}))).await })
    };
    // The slow rule's output is not read for a while: its action, then the rule, then the
    // shared reading wait; the fast rule gets no further than the queues allow.
    let fast_rows = take(&mut fast, 2000).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !publisher.is_finished(),
        "the publisher waits for the slow rule, it is not dropped"
    );
    let stalled = shared.stats();
    assert_eq!(stalled.len(), 1, "{stalled:?}");
    assert_eq!(stalled[0].rules.len(), 2);
    assert!(
        stalled[0].queued_rows > 0,
        "the slow rule's queue is full: {stalled:?}"
    );
    // Both read again (a reader that stops holds everyone back: the slowest sets the pace).
    let (slow_rows, rest) = tokio::join!(
        take(&mut slow, n as usize),
        take(&mut fast, n as usize - 2000)
    );
    publisher.await.unwrap();
    let fast_all: Vec<i64> = field(&fast_rows, "a")
        .into_iter()
        .chain(field(&rest, "a"))
        .collect();
    assert_eq!(fast_all, (0..n).collect::<Vec<_>>());
    assert_eq!(field(&slow_rows, "a"), (0..n).collect::<Vec<_>>());
    let drained = shared.stats();
    assert_eq!(drained[0].records, n as u64);
    assert_eq!(
        drained[0].queued_rows, 0,
        "every row was taken: {drained:?}"
    );
    assert!(
        drained[0].waited_us > 0,
        "the reading waited for the slow rule: {drained:?}"
    );
    run.stop().await;
}

/// A two-thread runtime, and a scratch folder whose `mqtt.yaml` points at `broker` (QoS 1).
fn mqtt_setting(broker: &Broker) -> (tokio::runtime::Runtime, tempfile::TempDir) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mqtt.yaml"),
        format!("default:\n  server: \"{}\"\n  qos: 1\n", broker.url()),
    )
    .unwrap();
    (runtime, dir)
}

#[test]
fn a_shared_mqtt_stream_is_one_subscription_for_all_its_rules() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let (runtime, dir) = mqtt_setting(&broker);
    let rules = [
        ("m1", "SELECT n FROM readings"),
        ("m2", "SELECT n FROM readings"),
        ("m3", "SELECT n, t FROM readings"),
    ];
    let mut config = ruleset(
        dir.path(),
        "rules",
        "CREATE STREAM readings () WITH (TYPE=\"mqtt\", DATASOURCE=\"shared/in\", SHARED=\"true\");",
        &rules,
    );
    config.mqtt_conf = Some(dir.path().join("mqtt.yaml"));
    let bus = MemoryBus::lasting();
    let shared = SharedSources::new();
    let mut outs: Vec<_> = rules
        .iter()
        .map(|(id, _)| bus.subscribe(&format!("out/{id}")))
        .collect();
    let port = broker.port;
    runtime.block_on(async {
        let run = Running::start(config, &bus, &shared);
        readers(&shared, "readings", 3).await;
        // Probes until every rule has one: the subscription is in place.
        for rx in &mut outs {
            loop {
                tokio::task::spawn_blocking(move || {
                    publish_all(port, "shared/in", [br#"{"n":-1}"#.to_vec()])
                })
                .await
                .unwrap();
                if let Ok(Some(_)) =
                    tokio::time::timeout(Duration::from_millis(200), rx.recv()).await
                {
                    break;
                }
            }
        }
        // Drain the probes the other rules got.
        for rx in &mut outs {
            while let Ok(Some(_)) =
                tokio::time::timeout(Duration::from_millis(300), rx.recv()).await
            {}
        }
        let n = 500;
        tokio::task::spawn_blocking(move || {
            publish_all(
                port,
                "shared/in",
                (0..n).map(|i| json!({"n": i, "t": "x"}).to_string().into_bytes()),
            )
        })
        .await
        .unwrap();
        for rx in &mut outs {
            let got = take(rx, n as usize).await;
            assert_eq!(field(&got, "n"), (0..n).collect::<Vec<_>>());
            nothing_more(rx).await;
        }
        run.stop().await;
    });
    let log = broker.log();
    let connections = log
        .lines()
        .filter(|l| l.contains("New client connected") && l.contains("oort-readings-"))
        .count();
    assert_eq!(
        connections, 1,
        "one MQTT connection for three rules:\n{log}"
    );
}

/// Under `oort serve`, rules created over the API one by one share one reading of a `SHARED`
/// stream; stopping one leaves the others with every message.
#[test]
fn rules_created_over_the_api_share_one_subscription() {
    use crate::serve::{Server, numbers, scratch_for};
    use oort_tests::broker::Subscriber;

    let Some(broker) = Broker::start() else {
        return;
    };
    let scratch = scratch_for(&broker);
    let server = Server::start(&scratch, &["--mqtt-conf", "etc/mqtt_source.yaml"]);
    let stream = r#"{"sql":"CREATE STREAM sh () WITH (TYPE=\"mqtt\", DATASOURCE=\"sh/in\", SHARED=\"true\")"}"#;
    assert_eq!(server.call("POST", "/streams", Some(stream)).0, 201);
    let out = Subscriber::new(broker.port, "verify-shared", "sh/out/#");
    let ids = ["r1", "r2", "r3"];
    for id in ids {
        let rule = format!(
            r#"{{"id":"{id}","sql":"SELECT n FROM sh","actions":[{{"mqtt":{{"server":"{}","topic":"sh/out/{id}","qos":1}}}}]}}"#,
            broker.url()
        );
        assert_eq!(server.call("POST", "/rules", Some(&rule)).0, 201);
        server.wait_status(id, "running");
    }
    server.wait_log("subscribed to sh/in", 1);
    let by_rule = |got: &[(String, Vec<u8>)]| {
        let mut map: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (topic, payload) in got {
            let row: Json = serde_json::from_slice(payload).unwrap();
            map.entry(topic.clone())
                .or_default()
                .push(row["n"].as_i64().unwrap());
        }
        map
    };
    publish_all(broker.port, "sh/in", numbers(0..300));
    let got = out.collect_until(Duration::from_secs(30), |got| got.len() >= 900);
    let expected: Vec<i64> = (0..300).collect();
    let map = by_rule(&got);
    assert_eq!(map.len(), 3, "{:?}", map.keys());
    for (topic, ns) in &map {
        assert_eq!(ns, &expected, "{topic}");
    }

    assert_eq!(server.call("POST", "/rules/r2/stop", None).0, 200);
    server.wait_status("r2", "stopped");
    publish_all(broker.port, "sh/in", numbers(300..400));
    let got = out.collect_until(Duration::from_secs(30), |got| got.len() >= 200);
    // Anything else r2 might still send arrives with these.
    let more = out.collect_until(Duration::from_millis(500), |_| false);
    let map = by_rule(&[got, more].concat());
    let rest: Vec<i64> = (300..400).collect();
    assert_eq!(map.get("sh/out/r1"), Some(&rest));
    assert_eq!(map.get("sh/out/r3"), Some(&rest));
    assert_eq!(map.get("sh/out/r2"), None);
    let log = server.stop();
    assert_eq!(
        log.matches("subscribed to sh/in").count(),
        1,
        "one subscription for three rules:\n{log}"
    );
    let connections = broker
        .log()
        .lines()
        .filter(|l| l.contains("New client connected") && l.contains("oort-sh-"))
        .count();
    assert_eq!(connections, 1, "one MQTT connection for three rules");
}

/// Several rules of one run may read one stdin stream (each gets every line, read once): shared
/// by default, as every rule of the run joins before the first line; with `SHARED="false"` a
/// second stdin reader is refused.
#[test]
fn rules_of_a_run_share_one_stdin_stream() {
    use std::io::Write;

    use crate::common::Scratch;

    let scratch = Scratch::new();
    scratch.write(
        "streams.sql",
        "CREATE STREAM s () WITH (TYPE=\"stdin\");\nCREATE STREAM plain () WITH (TYPE=\"stdin\", SHARED=\"false\");",
    );
    scratch.write(
        "rules.json",
        r#"[{"id":"names","sql":"SELECT upper(name) AS name FROM s","actions":[{"file":{"path":"out/names.jsonl"}}]},
            {"id":"ns","sql":"SELECT n FROM s WHERE n > 1","actions":[{"file":{"path":"out/ns.jsonl"}}]}]"#,
    );
    let mut child = scratch
        .oort(&["run-rule", "rules.json", "--streams", "streams.sql"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(
            b"{\"name\":\"ada\",\"n\":1}\n{\"name\":\"bob\",\"n\":2}\n{\"name\":\"cy\",\"n\":3}\n",
        )
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        scratch.read("out/names.jsonl"),
        "{\"name\":\"ADA\"}\n{\"name\":\"BOB\"}\n{\"name\":\"CY\"}\n"
    );
    assert_eq!(scratch.read("out/ns.jsonl"), "{\"n\":2}\n{\"n\":3}\n");

    scratch.write(
        "rules.json",
        r#"[{"id":"one","sql":"SELECT n FROM plain","actions":[{"nop":{}}]},
            {"id":"two","sql":"SELECT n FROM plain","actions":[{"nop":{}}]}]"#,
    );
    let out = scratch
        .oort(&["run-rule", "rules.json", "--streams", "streams.sql"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`one`") && stderr.contains("`two`"),
        "{stderr}"
    );
}

/// Without `SHARED`, the rules of a run read a memory stream once (it keeps nothing: a rule gets
/// what is published once it is there either way); `SHARED="false"` gives each its own reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_shares_a_stream_that_does_not_say_shared_unless_it_says_false() {
    let dir = tempfile::tempdir().unwrap();
    let bus = MemoryBus::lasting();
    let shared = SharedSources::new();
    let ids = ["d1", "d2", "own1", "own2"];
    let mut outs: Vec<_> = ids
        .iter()
        .map(|id| bus.subscribe(&format!("out/{id}")))
        .collect();
    let config = ruleset(
        dir.path(),
        "rules",
        "CREATE STREAM d () WITH (TYPE=\"memory\", DATASOURCE=\"in\");\n\
         CREATE STREAM own () WITH (TYPE=\"memory\", DATASOURCE=\"in\", SHARED=\"false\");",
        &[
            ("d1", "SELECT a FROM d"),
            ("d2", "SELECT a FROM d"),
            ("own1", "SELECT a FROM own"),
            ("own2", "SELECT a FROM own"),
        ],
    );
    let run = Running::start(config, &bus, &shared);
    readers(&shared, "d", 2).await;
    assert_eq!(shared.readings(), 1, "one reading, of `d`");
    assert_eq!(shared.readers("own"), 0);
    // The test's four, two readings of their own and the shared one.
    for _ in 0..3000 {
        if bus.subscriptions() >= ids.len() + 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(bus.subscriptions(), ids.len() + 3);
    let n = 600;
    publish(&bus, "in", (0..n).map(|i| json!({"a": i}))).await;
    let got = take_all(&mut outs, n as usize).await;
    for (id, rows) in ids.iter().zip(&got) {
        assert_eq!(field(rows, "a"), (0..n).collect::<Vec<_>>(), "rule {id}");
    }
    let stats = shared.stats();
    assert_eq!(stats.len(), 1, "{stats:?}");
    assert_eq!(&*stats[0].stream, "d");
    assert_eq!(
        stats[0]
            .rules
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>(),
        ["d1", "d2"]
    );
    assert_eq!((stats[0].records, stats[0].exceptions), (n as u64, 0));
    run.stop().await;
    assert_eq!(shared.readings(), 0);
}

/// Takes `n` messages from each of `outs`, side by side (a shared reading goes at the pace of
/// its slowest rule, so its outputs are read together).
async fn take_all(outs: &mut [mpsc::Receiver<Published>], n: usize) -> Vec<Vec<Json>> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, rx) in outs.iter_mut().enumerate() {
        let mut rx = std::mem::replace(rx, mpsc::channel(1).1);
        tasks.spawn(async move {
            let rows = take(&mut rx, n).await;
            (i, rows, rx)
        });
    }
    let mut got = vec![Vec::new(); outs.len()];
    while let Some(done) = tasks.join_next().await {
        let (i, rows, rx) = done.expect("a taker");
        got[i] = rows;
        outs[i] = rx;
    }
    got
}

/// `run-rule`: the rules of a run read a file without `SHARED` once (every rule joins before
/// the first line), but a rule with `qos` 1 reads it apart, with a position of its own, where
/// `SHARED="true"` refuses it.
#[test]
fn a_run_reads_a_file_once_for_its_rules_and_apart_for_a_checkpointed_one() {
    use crate::common::Scratch;

    let scratch = Scratch::new();
    let lines: String = (0..1000).map(|n| format!("{{\"n\":{n}}}\n")).collect();
    scratch.write("in.jsonl", &lines);
    scratch.write(
        "streams.sql",
        "CREATE STREAM s () WITH (TYPE=\"file\", DATASOURCE=\"in.jsonl\");\n\
         CREATE STREAM forced () WITH (TYPE=\"file\", DATASOURCE=\"in.jsonl\", SHARED=\"true\");",
    );
    scratch.write(
        "rule.json",
        r#"[{"id":"a","sql":"SELECT n FROM s","actions":[{"nop":{}}]},
            {"id":"b","sql":"SELECT n FROM s WHERE n % 2 = 0","actions":[{"nop":{}}]},
            {"id":"c","sql":"SELECT n FROM s","actions":[{"nop":{}}],"options":{"qos":1}}]"#,
    );
    let run = scratch.run_rule(&["--log", "info"]);
    run.assert_ok();
    let summary = run.summary();
    for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
        let rule = &summary["rules"][i];
        assert_eq!(rule["id"], id);
        assert_eq!(rule["source"]["records_out_total"], 1000, "{rule}");
    }
    assert_eq!(summary["rules"][1]["query"]["records_out_total"], 500);
    assert_eq!(
        run.stderr.matches("shared source started").count(),
        1,
        "one shared reading, of `a` and `b`:\n{}",
        run.stderr
    );

    scratch.write(
        "rule.json",
        r#"[{"id":"c","sql":"SELECT n FROM forced","actions":[{"nop":{}}],"options":{"qos":1}}]"#,
    );
    let refused = scratch.run_rule(&[]);
    assert_ne!(refused.code, Some(0));
    assert!(
        refused.stderr.contains("the stream is SHARED"),
        "{}",
        refused.stderr
    );
}

/// Under `oort serve`, rules created one by one share a memory stream without `SHARED`, not a
/// file stream (a rule started later would get only the rest of the file); `GET /metrics` and
/// each rule's status show the shared reading's counters, by stream.
#[test]
fn a_server_shares_memory_streams_by_default_and_serves_their_counters() {
    use crate::common::{Scratch, wait_for};
    use crate::serve::Server;

    let scratch = Scratch::new();
    let n = 300;
    let lines: String = (0..n).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    scratch.write("data/rows.jsonl", &lines);
    let server = Server::start(&scratch, &[]);
    server.create_stream(r#"CREATE STREAM rows () WITH (TYPE="file", DATASOURCE="rows.jsonl")"#);
    server.create_stream(r#"CREATE STREAM relay () WITH (TYPE="memory", DATASOURCE="relay/in")"#);
    for id in ["r1", "r2"] {
        let rule =
            format!(r#"{{"id":"{id}","sql":"SELECT n FROM relay","actions":[{{"nop":{{}}}}]}}"#);
        assert_eq!(server.call("POST", "/rules", Some(&rule)).0, 201);
        server.wait_status(id, "running");
    }
    let metric = |text: &str, name: &str, stream: &str| -> Option<u64> {
        let prefix = format!("{name}{{stream=\"{stream}\",time=\"processing\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.parse().expect("a number"))
    };
    let (status, text) = server.call("GET", "/metrics", None);
    assert_eq!(status, 200);
    assert_eq!(
        metric(&text, "oort_shared_source_rules", "relay"),
        Some(2),
        "{text}"
    );
    // The feed: a rule reading the file into the memory topic.
    let feed = r#"{"id":"feed","sql":"SELECT n FROM rows","actions":[{"memory":{"topic":"relay/in","sendSingle":true}}]}"#;
    assert_eq!(server.call("POST", "/rules", Some(feed)).0, 201);
    let taken = |id: &str| {
        server.json("GET", &format!("/rules/{id}/status"), None).1
            ["source_relay_0_records_out_total"]
            .as_u64()
    };
    wait_for(
        "both rules to take every row",
        Duration::from_secs(30),
        || taken("r1") == Some(n) && taken("r2") == Some(n),
    );
    let (_, text) = server.call("GET", "/metrics", None);
    for (name, value) in [
        ("oort_shared_source_rules", 2),
        ("oort_shared_source_records_in_total", n),
        ("oort_shared_source_records_out_total", n),
        ("oort_shared_source_exceptions_total", 0),
        ("oort_shared_source_buffer_length", 0),
    ] {
        assert_eq!(
            metric(&text, name, "relay"),
            Some(value),
            "{name} in:\n{text}"
        );
    }
    assert!(
        metric(
            &text,
            "oort_shared_source_backpressure_wait_us_total",
            "relay"
        )
        .is_some(),
        "{text}"
    );
    assert_eq!(
        metric(&text, "oort_shared_source_rules", "rows"),
        None,
        "a file stream is read apart under the server:\n{text}"
    );
    let (_, status) = server.json("GET", "/rules/r1/status", None);
    assert_eq!(status["op_relay_shared_0_records_in_total"], n, "{status}");
    assert_eq!(status["op_relay_shared_0_records_out_total"], n, "{status}");
    assert_eq!(status["op_relay_shared_0_exceptions_total"], 0, "{status}");
    assert_eq!(status["op_relay_shared_0_rules"], 2, "{status}");
    assert_eq!(status["op_relay_shared_0_buffer_length"], 0, "{status}");
    let (_, feed_status) = server.json("GET", "/rules/feed/status", None);
    assert!(
        feed_status.get("op_rows_shared_0_rules").is_none(),
        "{feed_status}"
    );

    assert_eq!(server.call("POST", "/rules/r2/stop", None).0, 200);
    server.wait_status("r2", "stopped");
    let (_, text) = server.call("GET", "/metrics", None);
    assert_eq!(
        metric(&text, "oort_shared_source_rules", "relay"),
        Some(1),
        "{text}"
    );
    assert_eq!(server.call("POST", "/rules/r1/stop", None).0, 200);
    server.wait_status("r1", "stopped");
    let (_, text) = server.call("GET", "/metrics", None);
    assert_eq!(
        metric(&text, "oort_shared_source_rules", "relay"),
        None,
        "the reading stopped with its last rule:\n{text}"
    );
    server.stop();
}

/// Without `SHARED`, the rules of a run read an MQTT stream over one connection, but each has
/// its own subscription to a broker's shared subscription (`$share/...`), as each is a member of
/// the group.
#[test]
fn a_run_shares_an_mqtt_stream_but_not_a_brokers_shared_subscription() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let (runtime, dir) = mqtt_setting(&broker);
    let mut config = ruleset(
        dir.path(),
        "rules",
        "CREATE STREAM plain () WITH (TYPE=\"mqtt\", DATASOURCE=\"dflt/in\");\n\
         CREATE STREAM grouped () WITH (TYPE=\"mqtt\", DATASOURCE=\"$share/g/dflt/in\");",
        &[
            ("p1", "SELECT n FROM plain"),
            ("p2", "SELECT n FROM plain"),
            ("g1", "SELECT n FROM grouped"),
            ("g2", "SELECT n FROM grouped"),
        ],
    );
    config.mqtt_conf = Some(dir.path().join("mqtt.yaml"));
    let bus = MemoryBus::lasting();
    let shared = SharedSources::new();
    let connections = |stream: &str| {
        broker
            .log()
            .lines()
            .filter(|l| {
                l.contains("New client connected") && l.contains(&format!("oort-{stream}-"))
            })
            .count()
    };
    runtime.block_on(async {
        let run = Running::start(config, &bus, &shared);
        readers(&shared, "plain", 2).await;
        assert_eq!(shared.readers("grouped"), 0);
        for _ in 0..3000 {
            if connections("plain") >= 1 && connections("grouped") >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        run.stop().await;
    });
    assert_eq!(connections("plain"), 1, "{}", broker.log());
    assert_eq!(connections("grouped"), 2, "{}", broker.log());
}
