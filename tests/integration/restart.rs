//! `restartStrategy`: a rule whose source fails is started again after the strategy's wait,
//! without losing a row (qos 1), and stops by error once its restarts are used up (exit code 4;
//! `Stopped: <reason>` in `oort serve`, with the restarts in its status and metrics).

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Scratch, Spawn, collect_stderr, spawn_rule, wait_for};

/// A JSON array of `{"n": i}` for `0..count`.
fn array(count: usize) -> String {
    let rows: Vec<Value> = (0..count).map(|n| json!({ "n": n })).collect();
    Value::Array(rows).to_string()
}

fn setup(scratch: &Scratch, attempts: u32, delay_ms: u64) {
    scratch.write(
        "streams.sql",
        "CREATE STREAM s (n bigint) WITH (TYPE=\"file\", DATASOURCE=\"in.json\", FORMAT=\"json\");",
    );
    let rule = json!({
        "id": "r",
        "sql": "SELECT n FROM s",
        "actions": [{"file": {"path": "out/result.jsonl"}}],
        "options": {"qos": 1, "checkpointInterval": "1s",
                    "restartStrategy": {"attempts": attempts, "delay": delay_ms,
                                        "multiplier": 1, "jitterFactor": 0}}
    });
    scratch.write("rule.json", &rule.to_string());
}

fn spawn(scratch: &Scratch) -> std::process::Child {
    spawn_rule(scratch, &Spawn::default())
}

#[test]
fn a_source_that_fails_is_restarted_and_no_row_is_lost() {
    let scratch = Scratch::new();
    setup(&scratch, 5, 1000);
    const ROWS: usize = 1000;
    let whole = array(ROWS);
    // A producer is still writing the file: the source fails on the cut-off array.
    scratch.write("in.json", &whole[..whole.len() / 2]);
    let mut child = spawn(&scratch);
    let log = collect_stderr(&mut child);
    let restarts = |n: usize| {
        let log = std::sync::Arc::clone(&log);
        move || log.lock().unwrap().matches("restarting it").count() >= n
    };
    wait_for("the first restart", Duration::from_secs(60), restarts(1));
    // Then the file disappears for a while: the restarted source fails again.
    std::fs::rename(
        scratch.path().join("in.json"),
        scratch.path().join("away.json"),
    )
    .unwrap();
    wait_for("the second restart", Duration::from_secs(60), restarts(2));
    // It comes back, complete.
    scratch.write("in.json", &whole);
    std::fs::remove_file(scratch.path().join("away.json")).unwrap();
    let out = child.wait_with_output().expect("oort's output");
    let log = log.lock().unwrap().clone();
    assert!(out.status.success(), "{:?}\n{log}", out.status);
    assert!(
        log.contains("expected a JSON array") && log.contains("cannot read"),
        "both failures are logged:\n{log}"
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("the JSON summary");
    assert_eq!(summary["rules"][0]["restarts_total"], 2, "{summary}");
    assert_eq!(summary["rules"][0]["stopped_by_error"], Value::Null);
    assert_eq!(summary["rules"][0]["source_failures_total"], 2, "{summary}");
    assert_eq!(summary["all_delivered"], true, "{summary}");
    let written: Vec<u64> = scratch
        .read("out/result.jsonl")
        .lines()
        .map(|line| {
            let row: Value = serde_json::from_str(line).unwrap();
            row["n"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(
        written,
        (0..ROWS as u64).collect::<Vec<_>>(),
        "every row once, in order"
    );
}

#[test]
fn a_rule_whose_restarts_are_used_up_stops_by_error() {
    let scratch = Scratch::new();
    setup(&scratch, 2, 10);
    scratch.write("in.json", "[{\"n\":1},");
    let child = spawn(&scratch);
    let out = child.wait_with_output().expect("oort's output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert_eq!(stderr.matches("restarting it").count(), 2, "{stderr}");
    assert!(
        stderr.contains("error: rule `r` stopped by error:"),
        "{stderr}"
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("the JSON summary");
    let rule = &summary["rules"][0];
    assert_eq!(rule["restarts_total"], 2, "{summary}");
    assert!(
        rule["stopped_by_error"]
            .as_str()
            .is_some_and(|why| why.contains("expected a JSON array")),
        "{summary}"
    );
    assert_eq!(rule["source_failures_total"], 3, "{summary}");
    assert_eq!(summary["all_delivered"], false, "{summary}");

    // Without a restartStrategy (attempts 0), the first failure stops the rule.
    setup(&scratch, 0, 10);
    let out = spawn(&scratch).wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["rules"][0]["restarts_total"], 0, "{summary}");
}

#[test]
fn oort_serve_shows_the_restarts_then_stopped_with_the_reason() {
    let scratch = Scratch::new();
    scratch.write("data/in.json", "[{\"n\":1},");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = scratch
        .oort(&["serve", "--listen", &listen, "--log", "info"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting oort serve");
    let log = collect_stderr(&mut server);
    let call = |method: &str, path: &str, body: Option<&str>| -> String {
        let url = format!("http://{listen}{path}");
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-s", "-S", "-X", method, &url]);
        if let Some(body) = body {
            cmd.args(["-H", "Content-Type: application/json", "-d", body]);
        }
        let out = cmd.output().expect("running curl");
        String::from_utf8(out.stdout).unwrap()
    };
    wait_for("the server to listen", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    call(
        "POST",
        "/streams",
        Some(
            r#"{"sql":"CREATE STREAM s (n bigint) WITH (TYPE=\"file\", DATASOURCE=\"in.json\")"}"#,
        ),
    );
    let rule = json!({
        "id": "r",
        "sql": "SELECT n FROM s",
        "actions": [{"nop": {}}],
        "options": {"restartStrategy": {"attempts": 2, "delay": 10, "jitterFactor": 0}}
    });
    call("POST", "/rules", Some(&rule.to_string()));
    let mut status = Value::Null;
    wait_for("the rule to stop", Duration::from_secs(30), || {
        status = serde_json::from_str(&call("GET", "/rules/r/status", None)).unwrap();
        status["status"] == "stopped"
    });
    let log = log.lock().unwrap().clone();
    assert_eq!(status["restarts"], 2, "{status}\n{log}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(message.contains("expected a JSON array"), "{status}");
    let rules: Value = serde_json::from_str(&call("GET", "/rules", None)).unwrap();
    assert_eq!(rules[0]["status"], format!("Stopped: {message}"), "{rules}");
    let metrics = call("GET", "/metrics", None);
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"oort_rule_restarts_total{rule="r"} 2"#),
        "{metrics}"
    );
    let _ = server.kill();
    let _ = server.wait();
}
