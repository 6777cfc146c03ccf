//! Redis lookup tables against a real `redis-server` on loopback: a stream joined with a
//! `string` and a `list` table, a missing key, a redis that is down when the rule starts or
//! goes away while it runs, and eKuiper's lookup cache options. Results go to the `log`
//! action, read back from the run's log.

use std::io::Write;
use std::time::Duration;

use oort_tests::redis::RedisServer;
use serde_json::{Value, json};

use crate::common::{Scratch, Spawn, spawn_logged, wait_for};

/// The rows the rule's `log` action printed, in order (a message is a list of rows, or an
/// error object).
fn logged(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|line| line.split_once("sink result for rule r: ").map(|(_, m)| m))
        .flat_map(|m| {
            let message = serde_json::Deserializer::from_str(m)
                .into_iter::<Value>()
                .next()
                .and_then(Result::ok)
                .unwrap_or_else(|| panic!("not JSON: {m}"));
            match message {
                Value::Array(rows) => rows,
                other => vec![other],
            }
        })
        .collect()
}

/// How every test here runs the rule in `rule.json`.
const RUN_RULE: &[&str] = &[
    "run-rule",
    "rule.json",
    "--streams",
    "streams.sql",
    "--redis-conf",
    "redis.yaml",
    "--json",
    "--log",
    "info",
];

/// `oort run-rule` of `sql` over `streams.sql` and `redis.yaml`, to its end: its exit code,
/// log and JSON summary.
fn run(scratch: &Scratch, sql: &str) -> (Option<i32>, String, Value) {
    scratch.write(
        "rule.json",
        &json!({"id": "r", "sql": sql, "actions": [{"log": {}}], "options": {"sendError": true}})
            .to_string(),
    );
    let out = scratch.oort(RUN_RULE).output().expect("running oort");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let summary = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), log, summary)
}

fn set(redis: &RedisServer, db: u32, args: &[&str]) {
    let reply = redis.command_in(db, args).expect("a redis command");
    assert!(reply.text().is_some(), "{args:?}: {reply:?}");
}

#[test]
fn a_stream_is_joined_with_redis_string_and_list_tables() {
    let Some(redis) = RedisServer::start(Some("s3cret")) else {
        return;
    };
    set(&redis, 0, &["SET", "1", r#"{"kind":"pump","limit":50}"#]);
    set(&redis, 0, &["SET", "2", r#"{"kind":"fan","limit":80}"#]);
    set(
        &redis,
        2,
        &["RPUSH", "pump", r#"{"part":"seal"}"#, r#"{"part":"rotor"}"#],
    );
    let scratch = Scratch::new();
    scratch.write(
        "redis.yaml",
        &format!(
            "default:\n  addr: \"{}\"\n  password: s3cret\n  datatype: string\n\
             parts:\n  datatype: list\n",
            redis.addr()
        ),
    );
    scratch.write(
        "demo.jsonl",
        "{\"id\":1,\"v\":60}\n{\"id\":2,\"v\":60}\n{\"id\":3,\"v\":60}\n{\"id\":1.0,\"v\":40}\n",
    );
    scratch.write(
        "streams.sql",
        "CREATE STREAM demo () WITH (TYPE=\"file\", DATASOURCE=\"demo.jsonl\");\n\
         CREATE TABLE kinds () WITH (TYPE=\"redis\", KIND=\"lookup\", DATASOURCE=\"0\");\n\
         CREATE TABLE parts () WITH (TYPE=\"redis\", KIND=\"lookup\", DATASOURCE=\"2\", CONF_KEY=\"parts\");",
    );

    // `string`: GET the key (the value's text: `1.0` is the key "1"); a missing key (3) joins
    // nothing in an inner join.
    let (code, log, summary) = run(
        &scratch,
        "SELECT demo.id, kinds.kind, demo.v > kinds.limit AS alarm FROM demo \
         INNER JOIN kinds ON demo.id = kinds.id",
    );
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(
        logged(&log),
        vec![
            json!({"id": 1, "kind": "pump", "alarm": true}),
            json!({"id": 2, "kind": "fan", "alarm": false}),
            json!({"id": 1, "kind": "pump", "alarm": false}),
        ],
        "{log}"
    );
    assert_eq!(
        summary["rules"][0]["query"]["exceptions_total"], 0,
        "{summary}"
    );

    // A left join keeps the row of a missing key.
    let (code, log, _) = run(
        &scratch,
        "SELECT demo.id, kinds.kind FROM demo LEFT JOIN kinds ON demo.id = kinds.id WHERE demo.v > 50",
    );
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(
        logged(&log),
        vec![
            json!({"id": 1, "kind": "pump"}),
            json!({"id": 2, "kind": "fan"}),
            json!({"id": 3}),
        ],
        "{log}"
    );

    // `list`: each element of the list is a row, in database 2.
    let (code, log, _) = run(
        &scratch,
        "SELECT demo.id, kinds.kind, parts.part FROM demo \
         INNER JOIN kinds ON demo.id = kinds.id INNER JOIN parts ON kinds.kind = parts.kind \
         WHERE demo.v > 50",
    );
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(
        logged(&log),
        vec![
            json!({"id": 1, "kind": "pump", "part": "seal"}),
            json!({"id": 1, "kind": "pump", "part": "rotor"}),
        ],
        "{log}"
    );
}

#[test]
fn a_redis_that_is_down_stops_the_rule_from_starting_naming_the_table_and_address() {
    let scratch = Scratch::new();
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    scratch.write(
        "redis.yaml",
        &format!("default:\n  addr: \"127.0.0.1:{port}\"\n"),
    );
    scratch.write("demo.jsonl", "{\"id\":1}\n");
    scratch.write(
        "streams.sql",
        "CREATE STREAM demo () WITH (TYPE=\"file\", DATASOURCE=\"demo.jsonl\");\n\
         CREATE TABLE kinds () WITH (TYPE=\"redis\", KIND=\"lookup\", DATASOURCE=\"0\");",
    );
    let (code, log, _) = run(
        &scratch,
        "SELECT demo.id, kinds.kind FROM demo INNER JOIN kinds ON demo.id = kinds.id",
    );
    assert_ne!(code, Some(0), "{log}");
    assert!(
        log.contains("lookup table `kinds`") && log.contains(&format!("127.0.0.1:{port}")),
        "{log}"
    );

    // Bad settings are refused before anything connects, naming what is wrong.
    scratch.write(
        "streams.sql",
        "CREATE STREAM demo () WITH (TYPE=\"file\", DATASOURCE=\"demo.jsonl\");\n\
         CREATE TABLE kinds () WITH (TYPE=\"redis\", KIND=\"lookup\", DATASOURCE=\"16\");",
    );
    let (code, log, _) = run(
        &scratch,
        "SELECT demo.id FROM demo INNER JOIN kinds ON demo.id = kinds.id",
    );
    assert_ne!(code, Some(0), "{log}");
    assert!(log.contains("kinds") && log.contains("0 to 15"), "{log}");
}

/// A rule over stdin joined with three redis tables, one per cache setting; rows are written
/// to it one batch at a time while redis changes under it.
#[test]
fn lookups_follow_the_cache_options_and_a_redis_gone_away_fails_the_row() {
    let Some(redis) = RedisServer::start(None) else {
        return;
    };
    set(&redis, 0, &["SET", "1", r#"{"v":"a"}"#]);
    let scratch = Scratch::new();
    scratch.write(
        "redis.yaml",
        &format!(
            "default:\n  addr: \"{}\"\n\
             cached:\n  lookup:\n    cache: true\n    cacheTtl: \"1h\"\n    cacheMissingKey: true\n\
             hits:\n  lookup:\n    cache: true\n    cacheTtl: 3600000\n",
            redis.addr()
        ),
    );
    scratch.write(
        "streams.sql",
        "CREATE STREAM s () WITH (TYPE=\"stdin\");\n\
         CREATE TABLE live () WITH (TYPE=\"redis\", KIND=\"lookup\", DATASOURCE=\"0\");\n\
         CREATE TABLE cached () WITH (TYPE=\"redis\", KIND=\"lookup\", DATASOURCE=\"0\", CONF_KEY=\"cached\");\n\
         CREATE TABLE hits () WITH (TYPE=\"redis\", KIND=\"lookup\", DATASOURCE=\"0\", CONF_KEY=\"hits\");",
    );
    scratch.write(
        "rule.json",
        &json!({
            "id": "r",
            "sql": "SELECT s.id, live.v AS live, cached.v AS cached, hits.v AS hits FROM s \
                    LEFT JOIN live ON s.id = live.id LEFT JOIN cached ON s.id = cached.id \
                    LEFT JOIN hits ON s.id = hits.id",
            "actions": [{"log": {}}],
            "options": {"sendError": true}
        })
        .to_string(),
    );
    let (mut child, log) = spawn_logged(
        &scratch,
        &Spawn {
            args: &["--redis-conf", "redis.yaml"],
            ..Spawn::default()
        },
    );
    let mut stdin = child.stdin.take().unwrap();
    let mut send = |line: &str, results: usize| {
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        wait_for(
            &format!("{results} results"),
            Duration::from_secs(30),
            || logged(&log.lock().unwrap()).len() >= results,
        );
    };
    // Key 1 is found and key 2 is missing; both are remembered by `cached`, only the hit by
    // `hits`.
    send(r#"{"id":1}"#, 1);
    send(r#"{"id":2}"#, 2);
    set(&redis, 0, &["SET", "1", r#"{"v":"b"}"#]);
    set(&redis, 0, &["SET", "2", r#"{"v":"c"}"#]);
    send(r#"{"id":1}"#, 3);
    send(r#"{"id":2}"#, 4);
    // Redis goes away: an uncached key fails its row (sent as an error with `sendError`, and
    // counted); nothing is dropped silently.
    drop(redis);
    send(r#"{"id":3}"#, 5);
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let log = log.lock().unwrap().clone();
    let results = logged(&log);
    assert_eq!(
        results[..4],
        [
            json!({"id": 1, "live": "a", "cached": "a", "hits": "a"}),
            json!({"id": 2}),
            json!({"id": 1, "live": "b", "cached": "a", "hits": "a"}),
            json!({"id": 2, "live": "c", "hits": "c"}),
        ],
        "{log}"
    );
    let error = results[4]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("lookup table `live`") && error.contains("127.0.0.1:"),
        "{results:?}"
    );
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        summary["rules"][0]["query"]["exceptions_total"], 1,
        "{summary}"
    );
    // A row that failed is not delivered: the run says so in its exit code.
    assert_eq!(output.status.code(), Some(3), "{log}");
}
