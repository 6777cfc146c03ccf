//! Stopping a run whose sink is stuck (or whose statement sleeps in `delay`): the first Ctrl-C
//! gives delivery a grace period, a second
//! stops at once; either way the summary prints and every payload is accounted for.

use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Scratch, Spawn, collect_stderr, numbered, spawn_rule, wait_for};

/// How long past the grace period a stop may take (process exit, summary).
const MARGIN: Duration = Duration::from_secs(5);

/// A rule reading three rows from a file into one `action`, started with `--grace <grace>`.
fn start(action: Value, grace: &str) -> (Scratch, Child, std::sync::Arc<std::sync::Mutex<String>>) {
    let scratch = Scratch::new();
    scratch.write(
        "streams.sql",
        "CREATE STREAM demo () WITH (TYPE=\"file\", DATASOURCE=\"in.jsonl\");\n",
    );
    scratch.write("in.jsonl", &numbered(3));
    let rule = json!({"id": "r", "sql": "SELECT * FROM demo", "actions": [action]});
    scratch.write("rule.json", &rule.to_string());
    let mut child = spawn_rule(
        &scratch,
        &Spawn {
            args: &["--grace", grace],
            ..Spawn::default()
        },
    );
    let log = collect_stderr(&mut child);
    (scratch, child, log)
}

fn interrupt(child: &Child) {
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("running kill");
    assert!(sent.success());
}

/// Waits at most `limit` for the process to end; returns its exit code and JSON summary.
fn ended_within(
    mut child: Child,
    limit: Duration,
    log: &std::sync::Mutex<String>,
) -> (Option<i32>, Value) {
    let start = Instant::now();
    while child.try_wait().expect("waiting for oort").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "oort still ran {limit:?} after the stop:\n{}",
                log.lock().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("oort's output");
    let summary = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("no JSON summary ({e}):\n{}", log.lock().unwrap()));
    (output.status.code(), summary)
}

/// Stops a run whose only action is stuck, with one signal (the grace period runs out) or two.
fn stop_stuck(action: Value, signals: u32) {
    let grace = if signals == 1 { "1s" } else { "10m" };
    let (_scratch, child, log) = start(action, grace);
    wait_for("the input to end", Duration::from_secs(60), || {
        log.lock().unwrap().contains("the input has ended")
    });
    let stopped = Instant::now();
    interrupt(&child);
    if signals == 2 {
        wait_for("the stop to begin", Duration::from_secs(10), || {
            log.lock()
                .unwrap()
                .contains("stopping: draining the actions")
        });
        interrupt(&child);
    }
    let limit = if signals == 1 {
        Duration::from_secs(1) + MARGIN
    } else {
        MARGIN
    };
    let (code, summary) = ended_within(child, limit, &log);
    assert!(stopped.elapsed() < limit);
    let action = &summary["rules"][0]["actions"][0];
    assert_eq!(code, Some(3), "undelivered rows: exit 3\n{summary}");
    assert_eq!(action["payloads_total"], 3, "{action}");
    assert_eq!(action["failed_total"], 3, "{action}");
    assert_eq!(action["balanced"], true, "{action}");
    assert!(
        action["last_exception"]
            .as_str()
            .is_some_and(|e| e.contains("stopped before the batch was delivered")),
        "{action}"
    );
}

#[test]
fn a_stop_ends_a_run_stuck_on_an_absent_mqtt_broker_after_the_grace_period() {
    stop_stuck(
        json!({"mqtt": {"server": "tcp://127.0.0.1:1", "topic": "t"}}),
        1,
    );
}

#[test]
fn a_second_signal_ends_a_run_stuck_on_an_absent_mqtt_broker_at_once() {
    stop_stuck(
        json!({"mqtt": {"server": "tcp://127.0.0.1:1", "topic": "t"}}),
        2,
    );
}

/// A loopback HTTP server that accepts connections and never answers.
fn silent_server() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let url = format!(
        "http://{}/hook",
        listener.local_addr().expect("its address")
    );
    (listener, url)
}

#[test]
fn a_stop_ends_a_run_whose_wasm_sink_waits_in_collect() {
    // The rest sink waits for an answer (up to its timeout, below the call timeout).
    let (_server, url) = silent_server();
    stop_stuck(
        json!({"rest": {"url": url, "timeout": "5m", "callTimeout": "10m"}}),
        1,
    );
}

#[test]
fn a_second_signal_ends_a_run_whose_wasm_sink_waits_in_collect_at_once() {
    let (_server, url) = silent_server();
    stop_stuck(
        json!({"rest": {"url": url, "timeout": "5m", "callTimeout": "10m"}}),
        2,
    );
}

#[test]
fn a_stop_ends_the_retries_of_a_redis_action_whose_server_is_down() {
    // A closed port fails at once; long retries keep the batch in the sink.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let addr = closed.local_addr().expect("its address").to_string();
    drop(closed);
    stop_stuck(
        json!({"redis": {"addr": addr, "key": "k", "retryCount": 1000, "retryInterval": "10s"}}),
        1,
    );
}

#[test]
fn a_stop_cuts_a_delay_short_and_its_rows_are_held_not_sent() {
    // An hour's delay on the row: only the stop's cut ends the run (the grace period, ten
    // minutes, would not).
    let scratch = Scratch::new();
    scratch.write(
        "streams.sql",
        "CREATE STREAM demo () WITH (TYPE=\"file\", DATASOURCE=\"in.jsonl\");\n",
    );
    scratch.write("in.jsonl", &numbered(1));
    let rule = json!({
        "id": "r",
        "sql": "SELECT delay(3600000, n) AS n FROM demo",
        "actions": [{"nop": {}}],
    });
    scratch.write("rule.json", &rule.to_string());
    let mut child = spawn_rule(
        &scratch,
        &Spawn {
            args: &["--grace", "10m"],
            log: "oort=debug",
            ..Spawn::default()
        },
    );
    let log = collect_stderr(&mut child);
    // The row is in the evaluation (asleep, or about to be: a sleep begun after the stop is cut
    // as well).
    wait_for("the delay", Duration::from_secs(60), || {
        log.lock()
            .unwrap()
            .contains("evaluating a statement that calls delay")
    });
    let stopped = Instant::now();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("running kill");
    assert!(sent.success());
    let (code, summary) = ended_within(child, MARGIN, &log);
    assert!(stopped.elapsed() < MARGIN);
    let query = &summary["rules"][0]["query"];
    assert_eq!(query["records_in_total"], 1, "{summary}");
    assert_eq!(query["records_out_total"], 0, "{summary}");
    assert_eq!(query["exceptions_total"], 0, "{summary}");
    assert_eq!(query["rows_held_at_end"], 1, "{summary}");
    assert_eq!(
        summary["rules"][0]["actions"][0]["records_in_total"], 0,
        "{summary}"
    );
    assert_eq!(code, Some(0), "{summary}");
    assert!(
        log.lock()
            .unwrap()
            .contains("the rule stopped during a delay"),
        "{}",
        log.lock().unwrap()
    );
}
