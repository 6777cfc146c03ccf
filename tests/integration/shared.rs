//! `SHARED` streams: several rules read one reading of a stream (one memory subscription, one
//! MQTT connection, one decode), each gets every row once, a rule that leaves or lags leaves
//! the others untouched and loses nothing, and one that joins later sees only what follows.
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
    run.stop().await;
}

#[test]
fn a_shared_mqtt_stream_is_one_subscription_for_all_its_rules() {
    let Some(broker) = Broker::start() else {
        return;
    };
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

/// Several rules of one run may read one `SHARED` stdin stream (each gets every line, read
/// once); without `SHARED` a second stdin reader is refused.
#[test]
fn rules_of_a_run_share_one_stdin_stream() {
    use std::io::Write;

    use crate::common::Scratch;

    let scratch = Scratch::new();
    scratch.write(
        "streams.sql",
        "CREATE STREAM s () WITH (TYPE=\"stdin\", SHARED=\"true\");\nCREATE STREAM plain () WITH (TYPE=\"stdin\");",
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
