//! Tables fed while the rule runs, against a real mosquitto on loopback: an MQTT table whose
//! `RETAIN_SIZE` evicts its oldest rows, and a memory table fed by another rule's memory
//! action; and a lookup table over the keyed rows memory actions keep. Each stream row is joined with the table as it is when the row comes, so the tests
//! first probe until a table row is visible, then check what the next stream rows meet.

use std::collections::BTreeMap;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oort_tests::broker::{Broker, Subscriber, publish_all};

use crate::common::{Scratch, Spawn, spawn_logged, wait_for};

/// `oort run-rule <rules> --streams streams.sql --mqtt-conf mqtt.yaml --json --log info`, once
/// its `subscriptions` MQTT sources have subscribed.
fn spawn(scratch: &Scratch, broker: &Broker, rules: &str, subscriptions: usize) -> Running {
    scratch.write(
        "mqtt.yaml",
        &format!("default:\n  qos: 1\n  server: \"{}\"\n", broker.url()),
    );
    let (child, log) = spawn_logged(
        scratch,
        &Spawn {
            rule: rules,
            args: &["--mqtt-conf", "mqtt.yaml"],
            ..Spawn::default()
        },
    );
    wait_for("the sources to subscribe", Duration::from_secs(30), || {
        log.lock().unwrap().matches("subscribed to").count() >= subscriptions
    });
    Running { child, log }
}

struct Running {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Running {
    /// SIGTERM, then the JSON summary.
    fn stop(mut self) -> serde_json::Value {
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        drop(self.child.stdin.take());
        let output = self.child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{:?}\n{}",
            output.status,
            self.log.lock().unwrap()
        );
        serde_json::from_slice(&output.stdout).expect("the JSON summary")
    }
}

/// The rows of the results received so far: `id` → every `v` it was joined with, in order.
struct Results {
    out: Subscriber,
    rows: BTreeMap<i64, Vec<serde_json::Value>>,
}

impl Results {
    fn new(broker: &Broker, id: &str) -> Self {
        Self {
            out: Subscriber::new(broker.port, id, "out/#"),
            rows: BTreeMap::new(),
        }
    }

    /// Takes results until `id` has one, or fails after 30 s.
    fn until(&mut self, id: i64) {
        let got = self.out.collect_until(Duration::from_secs(30), |got| {
            got.iter().any(|(_, payload)| {
                rows_of(payload)
                    .iter()
                    .any(|row| row["id"].as_i64() == Some(id))
            })
        });
        for (_, payload) in got {
            for row in rows_of(&payload) {
                self.rows
                    .entry(row["id"].as_i64().expect("an id"))
                    .or_default()
                    .push(row["v"].clone());
            }
        }
        assert!(self.rows.contains_key(&id), "no result for id {id}");
    }

    /// Publishes stream rows `{"id": n, "k": k}` (n from `*next`) until one meets `v` (the last
    /// table row published): the table then holds whatever was published to it before.
    fn probe(&mut self, broker: &Broker, k: i64, v: &str, next: &mut i64) {
        let started = Instant::now();
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the table never took its row"
            );
            let id = *next;
            *next += 1;
            publish_all(broker.port, "in/s", [row(id, k)]);
            let met = |got: &[(String, Vec<u8>)]| {
                got.iter()
                    .any(|(_, payload)| rows_of(payload).iter().any(|row| row["v"] == v))
            };
            if met(&self.out.collect_until(Duration::from_millis(200), met)) {
                return;
            }
        }
    }

    /// The results of ids in `range`, as `(id, v)` pairs.
    fn between(&self, range: std::ops::Range<i64>) -> Vec<(i64, serde_json::Value)> {
        self.rows
            .range(range)
            .flat_map(|(id, vs)| vs.iter().map(move |v| (*id, v.clone())))
            .collect()
    }
}

/// A result message's rows: one object, or an array of them.
fn rows_of(payload: &[u8]) -> Vec<serde_json::Value> {
    match serde_json::from_slice(payload).expect("a JSON result") {
        serde_json::Value::Array(rows) => rows,
        row => vec![row],
    }
}

fn row(id: i64, k: i64) -> Vec<u8> {
    format!(r#"{{"id":{id},"k":{k}}}"#).into_bytes()
}

fn table_row(k: i64, v: &str) -> Vec<u8> {
    format!(r#"{{"k":{k},"v":"{v}"}}"#).into_bytes()
}

#[test]
fn an_mqtt_table_takes_rows_while_the_rule_runs_and_keeps_the_latest_retain_size() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let scratch = Scratch::new();
    scratch.write(
        "streams.sql",
        "CREATE STREAM demo (id BIGINT, k BIGINT) WITH (TYPE=\"mqtt\", DATASOURCE=\"in/s\");\n\
         CREATE TABLE state (k BIGINT, v STRING) WITH (TYPE=\"mqtt\", DATASOURCE=\"in/t\", \
         RETAIN_SIZE=\"2\");",
    );
    scratch.write(
        "rule.json",
        &format!(
            r#"{{"id":"r","sql":"SELECT demo.id, state.v FROM demo INNER JOIN state ON demo.k = state.k",
                "actions":[{{"mqtt":{{"server":"{}","topic":"out/r","qos":1}}}}]}}"#,
            broker.url()
        ),
    );
    let mut results = Results::new(&broker, "verify-mqtt-table");
    let running = spawn(&scratch, &broker, "rule.json", 2);
    let mut probes = 1000;

    // Three rows, RETAIN_SIZE 2: once the last is visible, the first is gone.
    publish_all(
        broker.port,
        "in/t",
        [table_row(1, "a"), table_row(2, "b"), table_row(3, "c")],
    );
    results.probe(&broker, 3, "c", &mut probes);
    publish_all(broker.port, "in/s", [row(1, 1), row(2, 2), row(3, 3)]);
    results.until(3);
    // Stream rows are taken in order: had id 1 met a row, its result would have come first.
    assert_eq!(
        results.between(0..10),
        vec![(2, "b".into()), (3, "c".into())]
    );

    // Rows keep coming while the rule runs: k 2 again, then k 4; k 3 is evicted.
    publish_all(broker.port, "in/t", [table_row(2, "b2"), table_row(4, "d")]);
    results.probe(&broker, 4, "d", &mut probes);
    publish_all(broker.port, "in/s", [row(11, 2), row(12, 3), row(13, 4)]);
    results.until(13);
    assert_eq!(
        results.between(10..20),
        vec![(11, "b2".into()), (13, "d".into())]
    );

    let summary = running.stop();
    let rule = &summary["rules"][0];
    assert_eq!(rule["actions"][0]["failed_total"], 0, "{summary}");
}

#[test]
fn a_memory_table_fed_by_another_rule_keeps_its_latest_row() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let scratch = Scratch::new();
    scratch.write(
        "streams.sql",
        "CREATE STREAM demo (id BIGINT, k BIGINT) WITH (TYPE=\"mqtt\", DATASOURCE=\"in/s\");\n\
         CREATE STREAM updates (k BIGINT, v STRING) WITH (TYPE=\"mqtt\", DATASOURCE=\"in/t\");\n\
         CREATE TABLE latest (k BIGINT, v STRING) WITH (TYPE=\"memory\", DATASOURCE=\"tables/latest\");",
    );
    // One rule writes the updates to a memory topic; the other joins with the table over it
    // (no RETAIN_SIZE: the latest row only, as in eKuiper).
    scratch.write(
        "rules.json",
        &format!(
            r#"[{{"id":"feed","sql":"SELECT k, v FROM updates",
                 "actions":[{{"memory":{{"topic":"tables/latest"}}}}]}},
                {{"id":"join","sql":"SELECT demo.id, latest.v FROM demo INNER JOIN latest ON demo.k = latest.k",
                 "actions":[{{"mqtt":{{"server":"{}","topic":"out/join","qos":1}}}}]}}]"#,
            broker.url()
        ),
    );
    let mut results = Results::new(&broker, "verify-memory-table");
    let running = spawn(&scratch, &broker, "rules.json", 2);
    let mut probes = 1000;

    publish_all(broker.port, "in/t", [table_row(1, "a")]);
    results.probe(&broker, 1, "a", &mut probes);
    publish_all(broker.port, "in/s", [row(1, 1)]);
    results.until(1);
    assert_eq!(results.between(0..10), vec![(1, "a".into())]);

    // A new row replaces it: k 1 no longer matches, k 2 meets "b" alone.
    publish_all(broker.port, "in/t", [table_row(2, "b")]);
    results.probe(&broker, 2, "b", &mut probes);
    publish_all(broker.port, "in/s", [row(11, 1), row(12, 2)]);
    results.until(12);
    assert_eq!(results.between(10..20), vec![(12, "b".into())]);

    let summary = running.stop();
    for rule in summary["rules"].as_array().expect("the rules") {
        assert_eq!(rule["actions"][0]["failed_total"], 0, "{summary}");
    }
}

#[test]
fn a_memory_lookup_table_is_looked_up_by_key_with_inserts_updates_and_deletes() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let scratch = Scratch::new();
    scratch.write(
        "streams.sql",
        "CREATE STREAM demo (id BIGINT, k BIGINT) WITH (TYPE=\"mqtt\", DATASOURCE=\"in/s\");\n\
         CREATE STREAM updates () WITH (TYPE=\"mqtt\", DATASOURCE=\"in/t\");\n\
         CREATE TABLE devices () WITH (TYPE=\"memory\", DATASOURCE=\"tables/devices\", \
         KEY=\"k\", KIND=\"lookup\");",
    );
    // One rule keeps the rows by `k` (`op` says insert, update or delete); the other looks
    // each of its rows up there.
    scratch.write(
        "rules.json",
        &format!(
            r#"[{{"id":"feed","sql":"SELECT * FROM updates",
                 "actions":[{{"memory":{{"topic":"tables/devices","table":true,"key":"k","rowkindField":"op"}}}}]}},
                {{"id":"join","sql":"SELECT demo.id, devices.v FROM demo INNER JOIN devices ON demo.k = devices.k",
                 "actions":[{{"mqtt":{{"server":"{}","topic":"out/join","qos":1}}}}]}}]"#,
            broker.url()
        ),
    );
    let mut results = Results::new(&broker, "verify-lookup-table");
    let running = spawn(&scratch, &broker, "rules.json", 2);
    let mut probes = 1000;

    // Every key is kept (not only the latest row, as a scan table without RETAIN_SIZE does).
    publish_all(broker.port, "in/t", [table_row(1, "a"), table_row(2, "b")]);
    results.probe(&broker, 2, "b", &mut probes);
    publish_all(
        broker.port,
        "in/s",
        [row(1, 1), row(2, 2), row(3, 3), row(4, 2)],
    );
    results.until(4);
    assert_eq!(
        results.between(0..10),
        vec![(1, "a".into()), (2, "b".into()), (4, "b".into())]
    );

    // A delete and an update.
    publish_all(
        broker.port,
        "in/t",
        [
            br#"{"k":1,"op":"delete"}"#.to_vec(),
            br#"{"k":2,"v":"b2","op":"update"}"#.to_vec(),
        ],
    );
    results.probe(&broker, 2, "b2", &mut probes);
    publish_all(broker.port, "in/s", [row(11, 1), row(12, 2)]);
    results.until(12);
    assert_eq!(results.between(10..20), vec![(12, "b2".into())]);

    let summary = running.stop();
    for rule in summary["rules"].as_array().expect("the rules") {
        assert_eq!(rule["actions"][0]["failed_total"], 0, "{summary}");
    }
}
