//! MQTT end to end against a real mosquitto on loopback: the source, the built-in sink, a
//! broker restart under QoS 1, a shared subscription split across two `oort` processes, and the
//! MQTT metadata `sendMetaToSink` hands a sink.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oort_tests::broker::{Broker, Subscriber, publish_all};
use oort_tests::http::HttpServer;

use crate::common::{Run, STDIN_STREAM, Scratch, Spawn, spawn_logged, wait_for};

/// `oort run-rule <rule> --streams streams.sql --json --log info <extra>`, with its log
/// collected (to wait for "subscribed").
fn spawn(scratch: &Scratch, rule: &str, extra: &[&str]) -> (Child, Arc<Mutex<String>>) {
    spawn_logged(
        scratch,
        &Spawn {
            rule,
            args: extra,
            ..Spawn::default()
        },
    )
}

fn wait_subscribed(log: &Arc<Mutex<String>>) {
    wait_for("the source to subscribe", Duration::from_secs(30), || {
        log.lock().unwrap().contains("subscribed to")
    });
}

/// SIGTERM, then the JSON summary.
fn stop(mut child: Child, log: &Arc<Mutex<String>>) -> serde_json::Value {
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{:?}\n{}",
        output.status,
        log.lock().unwrap()
    );
    serde_json::from_slice(&output.stdout).expect("the JSON summary")
}

#[test]
fn source_rule_and_mqtt_sink_round_trip_over_mqtt_5() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let scratch = Scratch::new();
    // eKuiper's configuration layout: `default`, and a section a stream picks with CONF_KEY.
    scratch.write(
        "etc/mqtt_source.yaml",
        &format!(
            "default:\n  qos: 0\n  server: \"tcp://127.0.0.1:1\"\n  bufferLength: 1024\n\
             local:\n  qos: 1\n  server: \"{}\"\n  protocolVersion: \"5\"\n",
            broker.url()
        ),
    );
    scratch.write(
        "streams.sql",
        "CREATE STREAM demo (id BIGINT, device STRING, temperature FLOAT) \
         WITH (TYPE=\"mqtt\", DATASOURCE=\"sensors/+/temp\", FORMAT=\"json\", CONF_KEY=\"local\");",
    );
    scratch.write(
        "rule.json",
        &format!(
            r#"{{"id":"r","sql":"SELECT id, device, temperature * 2 AS t2, meta(topic) AS src, meta(qos) AS q, meta(messageId) AS mid FROM demo WHERE temperature > 0",
                "actions":[{{"mqtt":{{"server":"{}","topic":"out/{{{{.device}}}}","qos":1,"protocolVersion":"5"}}}}]}}"#,
            broker.url()
        ),
    );
    let out = Subscriber::new(broker.port, "verify-round-trip", "out/#");
    let (child, log) = spawn(
        &scratch,
        "rule.json",
        &["--mqtt-conf", "etc/mqtt_source.yaml"],
    );
    wait_subscribed(&log);

    let total = 300;
    publish_all(
        broker.port,
        "sensors/hall/temp",
        (0..total).map(|i| {
            format!(
                r#"{{"id":{i},"device":"d{}","temperature":{}}}"#,
                i % 3,
                (i % 10) as f64 - 2.0
            )
            .into_bytes()
        }),
    );
    let expected: BTreeSet<i64> = (0..total).filter(|i| i % 10 > 2).collect();
    let got = out.collect_until(Duration::from_secs(30), |g| g.len() >= expected.len());
    let summary = stop(child, &log);

    let mut ids = BTreeSet::new();
    for (topic, payload) in &got {
        let row: serde_json::Value = serde_json::from_slice(payload).unwrap();
        let id = row["id"].as_i64().unwrap();
        assert_eq!(topic, &format!("out/d{}", id % 3), "{row}");
        assert_eq!(row["t2"].as_f64().unwrap(), ((id % 10) as f64 - 2.0) * 2.0);
        // eKuiper's MQTT metadata: published and subscribed with QoS 1, so each message has a
        // packet id.
        assert_eq!(row["src"], "sensors/hall/temp", "{row}");
        assert_eq!(row["q"], 1, "{row}");
        assert!(row["mid"].as_i64().is_some_and(|m| m > 0), "{row}");
        ids.insert(id);
    }
    assert_eq!(ids, expected, "{}", log.lock().unwrap());
    let action = &summary["rules"][0]["actions"][0];
    assert_eq!(action["records_out_total"], expected.len(), "{summary}");
    assert_eq!(action["failed_total"], 0, "{summary}");
}

/// `sendMetaToSink`: each result carries its MQTT message's metadata as `__meta`, in the
/// payload and for a dynamic prop (`{{.__meta.topic}}`), as eKuiper's projection adds it.
#[test]
fn send_meta_to_sink_hands_each_message_s_mqtt_metadata_to_the_sink() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let scratch = Scratch::new();
    scratch.write(
        "etc/mqtt.yaml",
        &format!("default:\n  server: \"{}\"\n  qos: 1\n", broker.url()),
    );
    scratch.write(
        "streams.sql",
        "CREATE STREAM demo (id BIGINT) WITH (TYPE=\"mqtt\", DATASOURCE=\"sensors/+\");",
    );
    scratch.write(
        "rule.json",
        &format!(
            r#"{{"id":"r","sql":"SELECT id FROM demo","options":{{"sendMetaToSink":true}},
                "actions":[{{"mqtt":{{"server":"{}","topic":"copy/{{{{.__meta.topic}}}}","qos":1}}}}]}}"#,
            broker.url()
        ),
    );
    let out = Subscriber::new(broker.port, "verify-send-meta", "copy/#");
    let (child, log) = spawn(&scratch, "rule.json", &["--mqtt-conf", "etc/mqtt.yaml"]);
    wait_subscribed(&log);
    publish_all(
        broker.port,
        "sensors/a",
        (0..3).map(|i| format!(r#"{{"id":{i}}}"#).into_bytes()),
    );
    let got = out.collect_until(Duration::from_secs(30), |g| g.len() >= 3);
    stop(child, &log);
    assert_eq!(got.len(), 3, "{}", log.lock().unwrap());
    for (topic, payload) in &got {
        let row: serde_json::Value = serde_json::from_slice(payload).unwrap();
        assert_eq!(topic, "copy/sensors/a", "{row}");
        let meta = &row["__meta"];
        assert_eq!(meta["topic"], "sensors/a", "{row}");
        assert!(
            meta["qos"].is_i64() && meta.get("messageId").is_some(),
            "{row}"
        );
        assert_eq!(row.as_object().map(|o| o.len()), Some(2), "{row}");
    }
}

#[test]
fn qos1_delivery_survives_a_broker_restart() {
    let Some(mut broker) = Broker::start() else {
        return;
    };
    let scratch = Scratch::new();
    scratch.write("streams.sql", STDIN_STREAM);
    scratch.write(
        "rule.json",
        &format!(
            r#"{{"id":"r","sql":"SELECT n FROM s",
                "actions":[{{"mqtt":{{"server":"{}","topic":"out/n","qos":1,"deliveryTimeout":"60s"}}}}]}}"#,
            broker.url()
        ),
    );
    // A persistent session: the broker keeps what arrives while this subscriber is away.
    let out = Subscriber::new(broker.port, "verify-restart", "out/n");
    let (mut child, log) = spawn(&scratch, "rule.json", &[]);
    let mut stdin = child.stdin.take().unwrap();
    let total = 3000;
    let (half_tx, half_rx) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        for n in 0..total {
            writeln!(stdin, "{{\"n\":{n}}}").unwrap();
            if n % 50 == 0 {
                stdin.flush().unwrap();
                std::thread::sleep(Duration::from_millis(10));
            }
            if n == total / 3 {
                let _ = half_tx.send(());
            }
        }
        // stdin closes here: the run ends once everything is delivered.
    });
    half_rx.recv().unwrap();
    broker.stop();
    std::thread::sleep(Duration::from_millis(1500));
    broker.restart();
    writer.join().unwrap();

    let output = child.wait_with_output().unwrap();
    let log = log.lock().unwrap().clone();
    assert!(output.status.success(), "{:?}\n{log}", output.status);
    assert!(
        log.contains("mqtt sink: connection failed"),
        "the broker went away while the rule ran: {log}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let action = &summary["rules"][0]["actions"][0];
    assert_eq!(action["records_out_total"], total, "{summary}");
    assert_eq!(action["failed_total"], 0, "{summary}");

    let got = out.collect_until(Duration::from_secs(30), |g| {
        g.iter()
            .map(|(_, p)| p.clone())
            .collect::<BTreeSet<_>>()
            .len()
            >= total
    });
    let distinct: BTreeSet<i64> = got
        .iter()
        .map(|(_, p)| {
            serde_json::from_slice::<serde_json::Value>(p).unwrap()["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    // The broker kept the subscriber's session (and what was queued for it) over the restart.
    assert_eq!(
        out.fresh_sessions(),
        1,
        "the broker forgot the subscriber's session:\n{}",
        broker.log()
    );
    // At least once: every row arrived (a message whose acknowledgement died with the
    // connection may arrive twice).
    assert_eq!(
        distinct,
        (0..total as i64).collect::<BTreeSet<_>>(),
        "{log}"
    );
}

#[test]
fn a_shared_subscription_splits_messages_across_processes() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let scratch = Scratch::new();
    scratch.write(
        "streams.sql",
        "CREATE STREAM s () WITH (TYPE=\"mqtt\", DATASOURCE=\"$share/oort/in/t\");",
    );
    scratch.write(
        "etc/mqtt.yaml",
        &format!("default:\n  server: \"{}\"\n  qos: 1\n", broker.url()),
    );
    for name in ["a", "b"] {
        scratch.write(
            &format!("{name}.json"),
            &format!(
                r#"{{"id":"{name}","sql":"SELECT n FROM s","actions":[{{"file":{{"path":"out/{name}.jsonl"}}}}]}}"#
            ),
        );
    }
    let (a, log_a) = spawn(&scratch, "a.json", &["--mqtt-conf", "etc/mqtt.yaml"]);
    let (b, log_b) = spawn(&scratch, "b.json", &["--mqtt-conf", "etc/mqtt.yaml"]);
    wait_subscribed(&log_a);
    wait_subscribed(&log_b);

    let total = 400usize;
    publish_all(
        broker.port,
        "in/t",
        (0..total).map(|n| format!("{{\"n\":{n}}}").into_bytes()),
    );
    let lines = |name: &str| -> Vec<i64> {
        std::fs::read_to_string(scratch.path().join(format!("out/{name}.jsonl")))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["n"]
                    .as_i64()
                    .unwrap()
            })
            .collect()
    };
    wait_for("every message", Duration::from_secs(30), || {
        lines("a").len() + lines("b").len() >= total
    });
    stop(a, &log_a);
    stop(b, &log_b);

    let (got_a, got_b) = (lines("a"), lines("b"));
    assert!(
        !got_a.is_empty() && !got_b.is_empty(),
        "the broker gave every message to one process: {} and {}",
        got_a.len(),
        got_b.len()
    );
    let mut all: Vec<i64> = got_a.into_iter().chain(got_b).collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..total as i64).collect::<Vec<_>>(),
        "each message exactly once"
    );
}

#[test]
fn an_unknown_conf_key_is_named_before_connecting() {
    let scratch = Scratch::new();
    scratch.write(
        "etc/mqtt.yaml",
        "default:\n  server: \"tcp://127.0.0.1:1883\"\n",
    );
    scratch.write(
        "streams.sql",
        "CREATE STREAM s () WITH (TYPE=\"mqtt\", DATASOURCE=\"t\", CONF_KEY=\"prod\");",
    );
    scratch.write(
        "rule.json",
        r#"{"id":"r","sql":"SELECT * FROM s","actions":[{"mqtt":{"topic":"o"}}]}"#,
    );
    let out = scratch
        .oort(&[
            "validate",
            "rule.json",
            "--streams",
            "streams.sql",
            "--mqtt-conf",
            "etc/mqtt.yaml",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("CONF_KEY \"prod\"") && err.contains("etc/mqtt.yaml"),
        "{err}"
    );
}

#[test]
fn a_wasm_sink_publishes_through_the_host_only_to_granted_topics() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let scratch = Scratch::new();
    scratch.write("streams.sql", STDIN_STREAM);
    // Two relays with the same grant (`granted/#`): one publishes inside it, one outside.
    scratch.write(
        "rule.json",
        &format!(
            r#"{{"id":"r","sql":"SELECT n FROM s","actions":[
                {{"MqttRelay":{{"server":"{url}","topics":["granted/#"],"publishTo":"granted/relay"}}}},
                {{"MqttRelay":{{"server":"{url}","topics":"granted/#","publishTo":"secret/relay","retryCount":0}}}}]}}"#,
            url = broker.url()
        ),
    );
    let granted = Subscriber::new(broker.port, "verify-granted", "granted/#");
    let secret = Subscriber::new(broker.port, "verify-secret", "secret/#");
    let run = run_on_rows(&scratch, 20);
    // The refused action's rows are counted as failed: the run reports undelivered rows.
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    let ok = run.action(0);
    assert_eq!(
        (
            ok["records_out_total"].as_u64(),
            ok["failed_total"].as_u64()
        ),
        (Some(20), Some(0)),
        "{ok}"
    );
    let refused = run.action(1);
    assert_eq!(refused["failed_total"], 20, "{refused}");
    assert!(
        refused["last_exception"]
            .as_str()
            .unwrap_or_default()
            .contains("topic \"secret/relay\" is not granted to this action (granted: granted/#)"),
        "{refused}"
    );
    let got = granted.collect_until(Duration::from_secs(10), |g| g.len() >= 20);
    assert_eq!(got.len(), 20);
    assert!(got.iter().all(|(t, _)| t == "granted/relay"));
    assert!(
        secret
            .collect_until(Duration::from_millis(300), |_| false)
            .is_empty()
    );
}

/// An MQTT 5 broker that refuses a publish says so in its acknowledgement (here: not
/// authorized by its ACL). Those messages are not delivered: the batch is rejected and counted
/// failed, never counted out.
#[test]
fn a_publish_the_broker_refuses_over_mqtt_5_is_failed_not_delivered() {
    let Some(broker) = Broker::start_with_acl("topic readwrite allowed/#\n") else {
        return;
    };
    let scratch = Scratch::new();
    scratch.write("streams.sql", STDIN_STREAM);
    scratch.write(
        "rule.json",
        &format!(
            r#"{{"id":"r","sql":"SELECT n FROM s","actions":[
                {{"mqtt":{{"server":"{url}","topic":"allowed/out","qos":1,"protocolVersion":"5"}}}},
                {{"mqtt":{{"server":"{url}","topic":"denied/out","qos":1,"protocolVersion":"5","retryCount":0}}}}]}}"#,
            url = broker.url()
        ),
    );
    let allowed = Subscriber::new(broker.port, "verify-allowed", "allowed/#");
    let run = run_on_rows(&scratch, 20);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    let ok = run.action(0);
    assert_eq!(
        (
            ok["records_out_total"].as_u64(),
            ok["failed_total"].as_u64()
        ),
        (Some(20), Some(0)),
        "{ok}"
    );
    let refused = run.action(1);
    assert_eq!(
        (
            refused["records_out_total"].as_u64(),
            refused["failed_total"].as_u64()
        ),
        (Some(0), Some(20)),
        "{refused}"
    );
    let why = refused["last_exception"].as_str().unwrap_or_default();
    assert!(
        why.contains("refused the message on `denied/out`: NotAuthorized"),
        "{refused}"
    );
    let got = allowed.collect_until(Duration::from_secs(10), |g| g.len() >= 20);
    assert_eq!(got.len(), 20);
}

/// Runs the scratch's rule (`--json`) on `{"n": 0}` to `{"n": count - 1}` on stdin.
fn run_on_rows(scratch: &Scratch, count: usize) -> Run {
    Run::from({
        let mut child = scratch.spawn_rule(&["--json"]);
        let mut stdin = child.stdin.take().unwrap();
        for n in 0..count {
            writeln!(stdin, "{{\"n\":{n}}}").unwrap();
        }
        drop(stdin);
        child.wait_with_output().unwrap()
    })
}

/// The numbers the `file` sink wrote to `rel` (a line is a row or an array of rows); a last
/// line a kill cut short is not a row (it was not delivered).
fn numbers_written(scratch: &Scratch, rel: &str) -> Vec<i64> {
    let text = std::fs::read_to_string(scratch.path().join(rel)).unwrap_or_default();
    let mut numbers = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let value: serde_json::Value = match serde_json::from_str(line) {
            Ok(value) => value,
            Err(_) if lines.peek().is_none() => break,
            Err(e) => panic!("{rel}: a bad line in the middle ({e}): {line}"),
        };
        let rows = match value {
            serde_json::Value::Array(rows) => rows,
            row => vec![row],
        };
        numbers.extend(rows.iter().map(|r| r["n"].as_i64().expect("n")));
    }
    numbers
}

/// A rule with `qos: 1` reading `in/n` into `out/<file>`, checkpointing every `interval`.
fn write_checkpointed_rule(scratch: &Scratch, broker: &Broker, file: &str, interval: &str) {
    scratch.write(
        "etc/mqtt.yaml",
        &format!("default:\n  server: \"{}\"\n  qos: 1\n", broker.url()),
    );
    scratch.write(
        "streams.sql",
        "CREATE STREAM s (n BIGINT) WITH (TYPE=\"mqtt\", DATASOURCE=\"in/n\");",
    );
    scratch.write(
        "rule.json",
        &serde_json::json!({
            "id": "numbers",
            "sql": "SELECT n FROM s",
            "actions": [{"file": {"path": format!("out/{file}")}}],
            "options": {"qos": 1, "checkpointInterval": interval}
        })
        .to_string(),
    );
}

/// The distinct numbers the server was sent (answered 2xx), each row one request.
fn numbers_received(server: &HttpServer) -> BTreeSet<i64> {
    server
        .delivered()
        .iter()
        .filter_map(|body| serde_json::from_str::<serde_json::Value>(body).ok())
        .filter_map(|row| row["n"].as_i64())
        .collect()
}

/// The messages are published in one burst into the rule's session and the sink is slow (a
/// `rest` sink to a server that takes a while to answer, behind a buffer large enough for the
/// whole burst), so at the kill most of them are inside `oort`: received from the broker but not
/// yet delivered. Acknowledged on receipt, they would be lost; acknowledged once a checkpoint
/// covers them, the broker sends them again to the restarted rule.
#[test]
fn a_kill_9_loses_no_qos1_message() {
    let Some(broker) = Broker::start() else {
        return;
    };
    const TOTAL: i64 = 5_000;
    let scratch = Scratch::new();
    let server = HttpServer::start();
    server.slow_down(Duration::from_millis(1));
    scratch.write(
        "etc/mqtt.yaml",
        &format!("default:\n  server: \"{}\"\n  qos: 1\n", broker.url()),
    );
    scratch.write(
        "streams.sql",
        "CREATE STREAM s (n BIGINT) WITH (TYPE=\"mqtt\", DATASOURCE=\"in/n\");",
    );
    scratch.write(
        "rule.json",
        &serde_json::json!({
            "id": "numbers",
            "sql": "SELECT n FROM s",
            "actions": [{"rest": {"url": server.url("/rows"), "method": "post",
                                  "bufferLength": 2 * TOTAL, "batchSize": 100}}],
            "options": {"qos": 1, "checkpointInterval": "100ms"}
        })
        .to_string(),
    );
    let (mut first, log) = spawn(&scratch, "rule.json", &["--mqtt-conf", "etc/mqtt.yaml"]);
    wait_subscribed(&log);
    publish_all(
        broker.port,
        "in/n",
        (0..TOTAL).map(|n| format!("{{\"n\":{n}}}").into_bytes()),
    );
    wait_for(
        "a fifth of the rows at the sink, and a checkpoint",
        Duration::from_secs(120),
        || {
            numbers_received(&server).len() >= TOTAL as usize / 5
                && log.lock().unwrap().contains("checkpoint written")
        },
    );
    first.kill().expect("kill -9");
    first.wait().expect("waiting for oort");
    let before = numbers_received(&server).len();
    assert!(
        before < TOTAL as usize,
        "every row was delivered before the kill: it tests nothing"
    );

    // Same rule id and data folder: the broker kept the session and what was not acknowledged.
    let (second, log2) = spawn(&scratch, "rule.json", &["--mqtt-conf", "etc/mqtt.yaml"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while std::time::Instant::now() < deadline && numbers_received(&server).len() < TOTAL as usize {
        std::thread::sleep(Duration::from_millis(50));
    }
    let summary = stop(second, &log2);
    let log2 = log2.lock().unwrap().clone();
    let got = numbers_received(&server);
    let missing: Vec<i64> = (0..TOTAL).filter(|n| !got.contains(n)).collect();
    eprintln!(
        "kill -9 with {before} of {TOTAL} rows at the sink; {} requests in all; {} missing",
        server.delivered().len(),
        missing.len()
    );
    assert!(
        log2.contains("resumed=true"),
        "the broker did not keep the rule's session:\n{log2}\n{}",
        broker.log()
    );
    assert!(
        missing.is_empty(),
        "{} numbers lost across the kill, e.g. {:?}\n{log2}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert_eq!(
        summary["rules"][0]["actions"][0]["failed_total"], 0,
        "{summary}"
    );
}

#[test]
fn a_long_checkpoint_interval_does_not_stall_the_broker_s_inflight_window() {
    // mosquitto's default window: 20 unacknowledged messages, then it sends no more.
    let Some(broker) = Broker::start_with_inflight(20) else {
        return;
    };
    const TOTAL: usize = 2000;
    let scratch = Scratch::new();
    write_checkpointed_rule(&scratch, &broker, "all.jsonl", "1h");
    let (child, log) = spawn(&scratch, "rule.json", &["--mqtt-conf", "etc/mqtt.yaml"]);
    wait_subscribed(&log);
    publish_all(
        broker.port,
        "in/n",
        (0..TOTAL).map(|n| format!("{{\"n\":{n}}}").into_bytes()),
    );
    // Acknowledged only after checkpoints: without the early ones, 20 rows in an hour.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while numbers_written(&scratch, "out/all.jsonl").len() < TOTAL {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {TOTAL} rows after 60 s:\n{}",
            numbers_written(&scratch, "out/all.jsonl").len(),
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stop(child, &log);
    let got: BTreeSet<i64> = numbers_written(&scratch, "out/all.jsonl")
        .into_iter()
        .collect();
    assert_eq!(got, (0..TOTAL as i64).collect::<BTreeSet<_>>());
    let checkpoints = log.lock().unwrap().matches("checkpoint written").count();
    assert!(checkpoints > 1, "{checkpoints} checkpoints");
}

/// Under MQTT 5 the `mqtt` sink stamps each message with its batch's number and its place in
/// the batch (user properties `oort-sequence`, `oort-index`), the pair a consumer drops
/// duplicates by: here it follows the rows exactly.
#[test]
fn the_mqtt_sink_stamps_each_message_with_its_batch_number_and_place_under_mqtt_5() {
    use rumqttc::v5::mqttbytes::QoS as QoS5;
    use rumqttc::v5::mqttbytes::v5::Packet as Packet5;
    use rumqttc::v5::{Client as Client5, Event as Event5, MqttOptions as Options5};

    let Some(broker) = Broker::start() else {
        return;
    };
    let scratch = Scratch::new();
    const ROWS: i64 = 22;
    scratch.write(
        "streams.sql",
        "CREATE STREAM s (n bigint) WITH (TYPE=\"file\", DATASOURCE=\"in.jsonl\");",
    );
    scratch.write("in.jsonl", &crate::common::numbered(ROWS as usize));
    scratch.write(
        "rule.json",
        &format!(
            r#"{{"id":"stamped","sql":"SELECT n FROM s","options":{{"qos":2}},
                "actions":[{{"mqtt":{{"server":"{}","topic":"stamped","qos":1,
                             "protocolVersion":"5","batchSize":4}}}}]}}"#,
            broker.url()
        ),
    );

    let (client, mut connection) =
        Client5::new(Options5::new("verify-stamps", "127.0.0.1", broker.port), 64);
    client.subscribe("stamped", QoS5::AtLeastOnce).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(Event5::Incoming(Packet5::SubAck(_))) => {
                    let _ = tx.send(None);
                }
                Ok(Event5::Incoming(Packet5::Publish(p))) => {
                    let user = p.properties.map(|p| p.user_properties).unwrap_or_default();
                    if tx.send(Some((p.payload.to_vec(), user))).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), None);

    let run = scratch.run_rule(&[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for _ in 0..ROWS {
        let (payload, user) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("every row is published")
            .expect("a message");
        let n = serde_json::from_slice::<serde_json::Value>(&payload).unwrap()["n"]
            .as_i64()
            .unwrap();
        let get = |key: &str| -> i64 {
            user.iter()
                .find(|(k, _)| k == key)
                .unwrap_or_else(|| panic!("no {key} on row {n}: {user:?}"))
                .1
                .parse()
                .unwrap()
        };
        // Batches of 4 numbered from 1: row n is in batch n / 4 + 1, at n % 4.
        assert_eq!(
            (get("oort-sequence"), get("oort-index")),
            (n / 4 + 1, n % 4),
            "row {n}"
        );
    }
    drop(client);
}

/// A stop is not the end of the input: a rule over MQTT stopped with SIGTERM sends none of its
/// open windows (as eKuiper, even with `fireAtEnd`), counts them, and under `qos: 1` its
/// checkpoint keeps their rows, so the next run fires the window with them.
#[test]
fn a_stop_fires_no_open_window_and_the_next_run_resumes_it() {
    let Some(broker) = Broker::start() else {
        return;
    };
    let scratch = Scratch::new();
    scratch.write(
        "etc/mqtt_source.yaml",
        &format!("default:\n  qos: 1\n  server: \"{}\"\n", broker.url()),
    );
    scratch.write(
        "streams.sql",
        "CREATE STREAM m (n BIGINT, ts BIGINT) \
         WITH (TYPE=\"mqtt\", DATASOURCE=\"win/in\", TIMESTAMP=\"ts\");",
    );
    let rule = serde_json::json!({
        "id": "win",
        "sql": "SELECT count(*) AS c, sum(n) AS s, window_end() AS we FROM m \
                GROUP BY TUMBLINGWINDOW(ss, 10)",
        "actions": [{"file": {"path": "out/result.jsonl"}}],
        "options": {"isEventTime": true, "lateTolerance": 5000, "qos": 1,
                    "checkpointInterval": "50ms", "fireAtEnd": true}
    });
    scratch.write("rule.json", &rule.to_string());
    let result = scratch.path().join("out/result.jsonl");
    let lines = || {
        std::fs::read_to_string(&result)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let publish = |rows: &[(i64, i64)]| {
        publish_all(
            broker.port,
            "win/in",
            rows.iter()
                .map(|(n, ts)| format!(r#"{{"n":{n},"ts":{ts}}}"#).into_bytes()),
        );
    };
    let args = ["--mqtt-conf", "etc/mqtt_source.yaml"];

    let (child, log) = spawn(&scratch, "rule.json", &args);
    wait_subscribed(&log);
    // The watermark (21000 - 5000) passes [0, 10000); [10000, 20000) holds 16000, and the
    // watermark holds 21000 back: were it released at the stop, [10000, 20000) would fire.
    publish(&[(1, 1000), (2, 2000), (3, 16000), (4, 21000)]);
    wait_for("the first window", Duration::from_secs(30), || {
        !lines().is_empty()
    });
    let summary = stop(child, &log);
    assert_eq!(
        lines(),
        [serde_json::json!([{"c": 2, "s": 3, "we": 10000}])],
        "{}",
        log.lock().unwrap()
    );
    let query = &summary["rules"][0]["query"];
    assert_eq!(query["windows_open_at_end"], 2, "{summary}");
    assert_eq!(query["rows_held_at_end"], 2, "{summary}");
    assert!(
        log.lock()
            .unwrap()
            .contains("the rule stopped with windows open (2) and rows held (2): not sent"),
        "{}",
        log.lock().unwrap()
    );

    let (child, log) = spawn(&scratch, "rule.json", &args);
    wait_subscribed(&log);
    assert!(
        log.lock()
            .unwrap()
            .contains("restoring the window's rows from the checkpoint"),
        "{}",
        log.lock().unwrap()
    );
    publish(&[(5, 17000), (6, 31000)]);
    // The file sink starts its file afresh: this run's windows only.
    wait_for("the resumed window", Duration::from_secs(30), || {
        !lines().is_empty()
    });
    let summary = stop(child, &log);
    assert_eq!(
        lines(),
        [serde_json::json!([{"c": 2, "s": 8, "we": 20000}])],
        "the restored row 16000 and 17000: {}",
        log.lock().unwrap()
    );
    assert_eq!(
        summary["rules"][0]["query"]["windows_open_at_end"], 2,
        "{summary}"
    );
}
