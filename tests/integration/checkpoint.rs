//! Rules with `qos` 1 and 2: checkpoints survive `kill -9`; a file source resumes at its offset, a
//! window open at the checkpoint resumes with its rows, and under `qos: 2` the `file` and
//! `redis` sinks write each row once.

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Scratch, collect_stderr, numbered, wait_for};
use oort_tests::redis::{RedisServer, Reply};

fn spawn(scratch: &Scratch, extra: &[&str]) -> Child {
    let mut args = vec![
        "run-rule",
        "rule.json",
        "--streams",
        "streams.sql",
        "--json",
        "--log",
        "info",
    ];
    args.extend(extra);
    scratch
        .oort(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting oort")
}

/// Runs to the end; returns the JSON summary and the log.
fn run_to_end(scratch: &Scratch, extra: &[&str]) -> (Value, String) {
    let mut child = spawn(scratch, extra);
    let log = collect_stderr(&mut child);
    let out = child.wait_with_output().expect("oort's output");
    let log = log.lock().unwrap().clone();
    assert!(out.status.success(), "oort failed:\n{log}");
    let summary = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON summary ({e}):\n{log}"));
    (summary, log)
}

/// Starts a run, waits for a checkpoint that `wanted` accepts (its log line), and kills the
/// process with SIGKILL; returns that log line.
fn kill_after_checkpoint(scratch: &Scratch, wanted: impl Fn(&str) -> bool) -> String {
    let mut child = spawn(scratch, &[]);
    let log = collect_stderr(&mut child);
    let mut line = String::new();
    wait_for("a checkpoint", Duration::from_secs(120), || {
        let log = log.lock().unwrap();
        if let Some(found) = log
            .lines()
            .find(|l| l.contains("checkpoint written") && wanted(l))
        {
            line = found.to_string();
            return true;
        }
        assert!(
            !log.contains("the input has ended"),
            "the input ended before a checkpoint worth killing at:\n{log}"
        );
        false
    });
    child.kill().expect("kill -9");
    let status = child.wait().expect("waiting for oort");
    assert!(!status.success(), "oort was killed, not finished");
    line
}

/// A `key=value` field of a log line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line
        .find(&format!("{key}="))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        + key.len()
        + 1;
    line[start..].split_whitespace().next().unwrap_or_default()
}

/// Writes `rule.json`: rule `rows` running `sql` into `action` with `options`.
fn write_rule(scratch: &Scratch, sql: &str, action: Value, options: Value) {
    let rule = json!({"id": "rows", "sql": sql, "actions": [action], "options": options});
    scratch.write("rule.json", &rule.to_string());
}

/// The action writing every row to `out/result.jsonl`.
fn result_file() -> Value {
    json!({"file": {"path": "out/result.jsonl"}})
}

/// Runs `oort`, which must refuse the rule; returns what it said.
fn refused(scratch: &Scratch) -> String {
    let out = spawn(scratch, &[]).wait_with_output().unwrap();
    assert!(!out.status.success(), "oort ran the rule");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `err` refuses rule `rows`'s checkpoint for `why` and points to `--reset-checkpoints`.
fn assert_refused_naming_the_checkpoint(err: &str, why: &str) {
    assert!(
        err.contains("rule `rows`: checkpoint:")
            && err.contains(why)
            && err.contains("--reset-checkpoints"),
        "{err}"
    );
}

/// How many rows the rule's source read, from a run's JSON summary.
fn rows_read(summary: &Value) -> u64 {
    summary["rules"][0]["source"]["records_out_total"]
        .as_u64()
        .unwrap_or_else(|| panic!("no rows read in {summary}"))
}

/// How many lines the file at `path` holds (0 when there is none yet).
fn lines_in(path: &std::path::Path) -> usize {
    std::fs::read(path)
        .map(|bytes| bytes.iter().filter(|&&b| b == b'\n').count())
        .unwrap_or(0)
}

/// The rows the `file` sink wrote (it starts its file afresh each run). A window result is a
/// line holding an array of rows. A line a kill cut short is not a row (it was not delivered).
fn outputs(scratch: &Scratch) -> Vec<Value> {
    let text = scratch.read("out/result.jsonl");
    let mut rows = Vec::new();
    for line in text.lines() {
        match serde_json::from_str(line) {
            Ok(Value::Array(items)) => rows.extend(items),
            Ok(row) => rows.push(row),
            Err(e) => assert!(
                text.ends_with(line),
                "a bad line in the middle ({e}): {line}"
            ),
        }
    }
    rows
}

#[test]
fn a_kill_in_the_middle_of_a_tumbling_window_resumes_with_the_same_window_results() {
    let scratch = Scratch::new();
    scratch.write(
        "streams.sql",
        "CREATE STREAM s (ts bigint, v bigint) WITH (TYPE=\"file\", DATASOURCE=\"in.jsonl\", \
         TIMESTAMP=\"ts\");",
    );
    // 100 rows in each 1-second window, 400,000 rows: long enough to be killed in the middle.
    const ROWS: i64 = 400_000;
    let input: String = (0..ROWS)
        .map(|i| format!("{{\"ts\":{},\"v\":{}}}\n", i * 10, i % 7))
        .collect();
    scratch.write("in.jsonl", &input);
    let rule = json!({
        "id": "windows",
        "sql": "SELECT window_start() AS ws, count(*) AS n, sum(v) AS s FROM s \
                GROUP BY TUMBLINGWINDOW(ss, 1)",
        "actions": [{"file": {"path": "out/result.jsonl"}}],
        // The last window too, at the end of the input.
        "options": {"qos": 1, "checkpointInterval": "50ms", "isEventTime": true,
                    "lateTolerance": 0, "fireAtEnd": true}
    });
    scratch.write("rule.json", &rule.to_string());
    // Killed right after a checkpoint that holds part of an open window: not none of its rows,
    // and not all 100 (a whole window still waiting for the next window's first row to fire).
    let line = kill_after_checkpoint(&scratch, |l| {
        let held: usize = field(l, "held_rows").parse().unwrap_or(0);
        (1..100).contains(&held) && !l.contains("positions=s@0:")
    });
    let held: usize = field(&line, "held_rows").parse().unwrap();
    assert!(held > 0 && held < 100, "{line}");
    let mut written = outputs(&scratch);
    let before = written.len();

    let (summary, log) = run_to_end(&scratch, &[]);
    written.extend(outputs(&scratch));
    assert!(
        log.contains("restoring the window's rows from the checkpoint"),
        "{log}"
    );
    let read = rows_read(&summary);
    assert!(
        read < ROWS as u64,
        "the second run resumed, it read {read} rows"
    );

    // Every window once at least, each whole; one written twice (at least once) is identical.
    let mut windows: BTreeMap<i64, Value> = BTreeMap::new();
    for out in written {
        let ws = out["ws"].as_i64().unwrap();
        if let Some(seen) = windows.insert(ws, out.clone()) {
            assert_eq!(seen, out, "window {ws} written twice, differently");
        }
    }
    assert!(before > 0, "the first run wrote windows before the kill");
    assert_eq!(windows.len() as i64, ROWS / 100);
    for (ws, out) in &windows {
        let first = ws / 10;
        let sum: i64 = (first..first + 100).map(|i| i % 7).sum();
        assert_eq!(out, &json!({"ws": ws, "n": 100, "s": sum}), "window {ws}");
    }
}

fn numbered_rule(scratch: &Scratch, count: usize) {
    scratch.write(
        "streams.sql",
        "CREATE STREAM s (n bigint) WITH (TYPE=\"file\", DATASOURCE=\"in.jsonl\");",
    );
    scratch.write("in.jsonl", &numbered(count));
    write_rule(
        scratch,
        "SELECT n FROM s",
        result_file(),
        json!({"qos": 1, "checkpointInterval": 20}),
    );
}

/// [`numbered_rule`] over 10 rows, run to the end once.
fn ten_rows_run(scratch: &Scratch) {
    numbered_rule(scratch, 10);
    let (summary, _) = run_to_end(scratch, &[]);
    assert_eq!(rows_read(&summary), 10);
}

#[test]
fn a_file_source_resumes_at_its_offset_after_a_kill() {
    let scratch = Scratch::new();
    const ROWS: usize = 300_000;
    numbered_rule(&scratch, ROWS);
    let line = kill_after_checkpoint(&scratch, |l| !l.contains("positions=s@0:"));
    // positions=s@<records>:<offset>
    let at = field(&line, "positions");
    let records: usize = at[2..at.find(':').unwrap()].parse().unwrap();
    assert!(records > 0 && records < ROWS, "{line}");
    let mut written = outputs(&scratch);

    let (summary, _) = run_to_end(&scratch, &[]);
    written.extend(outputs(&scratch));
    let read = rows_read(&summary) as usize;
    assert!(
        read <= ROWS - records,
        "what was checkpointed is not read again: {read} rows read after a checkpoint at {records}"
    );
    let mut seen = vec![0u32; ROWS];
    for out in written {
        seen[out["n"].as_u64().unwrap() as usize] += 1;
    }
    let lost: Vec<usize> = (0..ROWS).filter(|&n| seen[n] == 0).collect();
    assert!(
        lost.is_empty(),
        "{} rows lost, first {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );

    // The rule's input grows: a third run reads only the new lines.
    std::fs::OpenOptions::new()
        .append(true)
        .open(scratch.path().join("in.jsonl"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"n\":-1}\n{\"n\":-2}\n"))
        .unwrap();
    let (summary, _) = run_to_end(&scratch, &[]);
    assert_eq!(rows_read(&summary), 2);
}

#[test]
fn a_changed_file_is_an_error_naming_it_unless_checkpoints_are_reset() {
    let scratch = Scratch::new();
    ten_rows_run(&scratch);
    let (summary, _) = run_to_end(&scratch, &[]);
    assert_eq!(rows_read(&summary), 0, "a finished input is not read again");

    scratch.write("in.jsonl", &numbered(3));
    let err = refused(&scratch);
    assert_refused_naming_the_checkpoint(
        &err,
        "in.jsonl is not the file the checkpoint was taken in",
    );
    let (summary, _) = run_to_end(&scratch, &["--reset-checkpoints"]);
    assert_eq!(rows_read(&summary), 3);
}

#[test]
fn a_qos_1_rule_on_stdin_is_refused_with_the_reason() {
    let scratch = Scratch::new();
    scratch.write("streams.sql", crate::common::STDIN_STREAM);
    scratch.write(
        "rule.json",
        r#"{"id":"r","sql":"SELECT * FROM s","actions":[{"log":{}}],"options":{"qos":1}}"#,
    );
    let out = scratch
        .oort(&["run-rule", "rule.json", "--streams", "streams.sql"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the rule has qos 1, but stdin cannot be replayed"),
        "{err}"
    );
}

/// The numbers the `file` sink wrote to `out/result.jsonl`, each with how often; and the lines
/// that are not a row (a write a kill cut short).
fn counted(scratch: &Scratch, rows: usize) -> (Vec<u32>, Vec<String>) {
    let path = scratch.path().join("out/result.jsonl");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut seen = vec![0u32; rows];
    let mut bad = Vec::new();
    for line in text.lines() {
        match serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|row| row["n"].as_u64())
        {
            Some(n) => seen[n as usize] += 1,
            None => bad.push(line.to_string()),
        }
    }
    (seen, bad)
}

/// Runs a 50,000-row file stream under `qos` into the `file` sink (batches of 7, a cache so
/// that its numbering is kept between runs), stops `oort` each time the output passes one of
/// `kills` rows and restarts it until a run ends: how often each number was written, the bad
/// lines, and how many stops landed. Under `qos: 2` a checkpoint every 5 ms and every stop a
/// `kill -9`; under `qos: 1` [`Stops::AfterACleanStop`], so that rows are delivered twice.
fn killed_and_restarted(qos: u8, kills: &[usize]) -> (Vec<u32>, Vec<String>, usize) {
    let action = json!({"file": {"path": "out/result.jsonl", "batchSize": 7, "enableCache": true}});
    killed_and_restarted_into(action, qos, kills)
}

/// [`killed_and_restarted`] into `action` (writing `out/result.jsonl`).
fn killed_and_restarted_into(
    action: Value,
    qos: u8,
    kills: &[usize],
) -> (Vec<u32>, Vec<String>, usize) {
    let scratch = Scratch::new();
    let output = scratch.path().join("out/result.jsonl");
    let lines = || lines_in(&output);
    let stops = if qos == 1 {
        Stops::AfterACleanStop
    } else {
        Stops::Killed
    };
    let landed = kill_and_restart(
        &scratch,
        "SELECT n FROM s",
        action,
        (qos, stops),
        kills,
        &lines,
    );
    let (seen, bad) = counted(&scratch, KILLED_ROWS);
    (seen, bad, landed)
}

/// The rows of the input stream.
const KILLED_ROWS: usize = 50_000;

/// Runs `sql` over a 50,000-row file stream under `qos` into `action`, stops `oort` as `stops`
/// says each time `written` (rows in the output) passes one of `kills`, restarts it until a run
/// ends; returns how many stops landed.
fn kill_and_restart(
    scratch: &Scratch,
    sql: &str,
    action: Value,
    (qos, stops): (u8, Stops),
    kills: &[usize],
    written: &dyn Fn() -> usize,
) -> usize {
    scratch.write(
        "streams.sql",
        "CREATE STREAM s (n bigint) WITH (TYPE=\"file\", DATASOURCE=\"in.jsonl\");",
    );
    scratch.write("in.jsonl", &numbered(KILLED_ROWS));
    write_rule(
        scratch,
        sql,
        action,
        json!({"qos": qos, "checkpointInterval": match stops {
            Stops::Killed => 5,
            Stops::AfterACleanStop => 3_600_000,
        }}),
    );
    let mut landed = 0;
    for (kill, &at) in kills.iter().enumerate() {
        let mut child = spawn(scratch, &[]);
        let log = collect_stderr(&mut child);
        let started = std::time::Instant::now();
        let finished = loop {
            if let Some(status) = child.try_wait().expect("polling oort") {
                assert!(status.success(), "oort failed:\n{}", log.lock().unwrap());
                break true;
            }
            if written() >= at {
                break false;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "no progress:\n{}",
                log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(1));
        };
        if finished {
            break;
        }
        if kill == 0 && stops == Stops::AfterACleanStop {
            let term = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("kill -TERM");
            assert!(term.success());
        } else {
            child.kill().expect("kill -9");
        }
        child.wait().expect("waiting for oort");
        landed += 1;
    }
    let (summary, log) = run_to_end(scratch, &[]);
    assert!(
        log.contains("resuming from the checkpoint") || landed == 0,
        "the last run resumed:\n{log}"
    );
    assert_eq!(summary["rules"][0]["actions"][0]["failed_total"], 0);
    landed
}

const KILLS: [usize; 4] = [6_000, 17_000, 29_000, 41_000];

/// How the runs of [`kill_and_restart`] take checkpoints and stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stops {
    /// A checkpoint every 5 ms; every stop is a `kill -9`.
    Killed,
    /// No checkpoint but at a stop: the first stop is a SIGTERM, whose checkpoint covers what
    /// was delivered, the others are `kill -9`s. Whatever a killed run delivered is then past
    /// the last checkpoint for certain, so at least once must deliver it again (with a
    /// checkpoint every 5 ms, a kill may land just after one that covers every delivered row,
    /// and nothing is delivered twice: at least once allows that, so a test of duplicates
    /// cannot rest on it).
    AfterACleanStop,
}

#[test]
fn under_qos_2_the_file_sink_writes_every_row_once_across_kills() {
    assert_every_row_once(killed_and_restarted(2, &KILLS));
}

/// Without a batch size each batch takes the rows waiting when the sink is free, and with
/// `lingerInterval` a batch goes when its time is up: such cuts are recorded before the sink
/// sees them and replayed after a kill, so each row is still written once.
#[test]
fn under_qos_2_batches_cut_by_what_was_waiting_or_by_time_are_written_once_across_kills() {
    let free = json!({"file": {"path": "out/result.jsonl"}});
    assert_every_row_once(killed_and_restarted_into(free, 2, &KILLS));
    let lingering = json!({"file": {"path": "out/result.jsonl", "batchSize": 500,
                                    "lingerInterval": 1}});
    assert_every_row_once(killed_and_restarted_into(lingering, 2, &KILLS));
}

/// At least two kills landed, no row is missing or written twice, no line is broken.
fn assert_every_row_once((seen, bad, landed): (Vec<u32>, Vec<String>, usize)) {
    assert!(
        landed >= 2,
        "only {landed} kills landed before the input ended"
    );
    let lost: Vec<usize> = (0..seen.len()).filter(|&n| seen[n] == 0).collect();
    let twice: Vec<usize> = (0..seen.len()).filter(|&n| seen[n] > 1).collect();
    assert!(
        lost.is_empty() && twice.is_empty() && bad.is_empty(),
        "{landed} kills: {} lost (first {:?}), {} written twice (first {:?}), bad lines {:?}",
        lost.len(),
        &lost[..lost.len().min(5)],
        twice.len(),
        &twice[..twice.len().min(5)],
        &bad[..bad.len().min(3)]
    );
}

#[test]
fn under_qos_1_the_same_kills_write_rows_twice() {
    let (seen, _, landed) = killed_and_restarted(1, &KILLS);
    assert!(
        landed >= 2,
        "only {landed} kills landed before the input ended"
    );
    assert!(seen.iter().all(|&n| n > 0), "qos 1 loses nothing");
    let twice = seen.iter().filter(|&&n| n > 1).count();
    assert!(
        twice > 0,
        "at least once: rows after the last checkpoint are written again"
    );
}

#[test]
fn qos_2_refuses_several_instances_naming_the_prop() {
    let scratch = Scratch::new();
    numbered_rule(&scratch, 3);
    write_rule(
        &scratch,
        "SELECT n FROM s",
        json!({"file": {"path": "out/result.jsonl", "concurrency": 2}}),
        json!({"qos": 2}),
    );
    let err = refused(&scratch);
    assert!(
        err.contains("action `file_0`: prop `concurrency`") && err.contains("qos 2"),
        "{err}"
    );
}

/// Runs the kills of [`kill_and_restart`] with the `redis` sink pushing every row onto one list
/// in batches of 5,000 (each row padded to some 1 KB, so that a batch takes a while to write and
/// the kills, at list lengths inside a batch, land in the middle of one): how often each number
/// is in the list, and how many kills landed.
fn killed_and_restarted_into_redis(qos: u8) -> Option<(Vec<u32>, usize)> {
    let redis = RedisServer::start(None)?;
    let scratch = Scratch::new();
    let length = || {
        redis
            .command(&["LLEN", "rows"])
            .ok()
            .and_then(|reply| reply.text().and_then(|t| t.parse().ok()))
            .unwrap_or(0)
    };
    let action = json!({"redis": {"addr": redis.addr(), "key": "rows", "dataType": "list",
                                  "batchSize": 5000, "enableCache": true}});
    let sql = format!("SELECT n, '{}' AS pad FROM s", "x".repeat(1000));
    let stops = if qos == 1 {
        Stops::AfterACleanStop
    } else {
        Stops::Killed
    };
    let landed = kill_and_restart(&scratch, &sql, action, (qos, stops), &KILLS, &length);
    let Reply::Array(items) = redis.command(&["LRANGE", "rows", "0", "-1"]).unwrap() else {
        panic!("LRANGE answers an array");
    };
    let mut seen = vec![0u32; KILLED_ROWS];
    for item in items {
        let row: Value = serde_json::from_str(item.text().expect("a row")).expect("a JSON row");
        seen[row["n"].as_u64().expect("n") as usize] += 1;
    }
    eprintln!(
        "qos {qos}, {landed} kills: {} rows missing, {} pushed more than once",
        seen.iter().filter(|&&n| n == 0).count(),
        seen.iter().filter(|&&n| n > 1).count()
    );
    Some((seen, landed))
}

/// Under `qos: 2` the `redis` sink applies each batch with its sequence marker in one
/// transaction: a kill in the middle of a batch leaves none of it, and no batch is applied
/// twice.
#[test]
fn under_qos_2_the_redis_sink_writes_every_row_once_across_kills() {
    let Some((seen, landed)) = killed_and_restarted_into_redis(2) else {
        return;
    };
    assert!(
        landed >= 2,
        "only {landed} kills landed before the input ended"
    );
    let lost: Vec<usize> = (0..seen.len()).filter(|&n| seen[n] == 0).collect();
    let twice: Vec<usize> = (0..seen.len()).filter(|&n| seen[n] > 1).collect();
    assert!(
        lost.is_empty() && twice.is_empty(),
        "{landed} kills: {} lost (first {:?}), {} written twice (first {:?})",
        lost.len(),
        &lost[..lost.len().min(5)],
        twice.len(),
        &twice[..twice.len().min(5)],
    );
}

/// The same kills under `qos: 1`: nothing is lost, but rows after the last checkpoint are
/// pushed again (so the test above can tell exactly once from at least once).
#[test]
fn under_qos_1_the_redis_sink_writes_rows_twice_across_kills() {
    let Some((seen, landed)) = killed_and_restarted_into_redis(1) else {
        return;
    };
    assert!(
        landed >= 2,
        "only {landed} kills landed before the input ended"
    );
    assert!(seen.iter().all(|&n| n > 0), "qos 1 loses nothing");
    let twice = seen.iter().filter(|&&n| n > 1).count();
    assert!(
        twice > 0,
        "at least once: rows after the last checkpoint are pushed again"
    );
}

/// The rows the `file` sink wrote to `out/result.jsonl`, in order.
fn rows_written(scratch: &Scratch) -> Vec<Value> {
    scratch
        .read("out/result.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("a bad line ({e}): {l}")))
        .collect()
}

/// Under `qos: 2`, a rule whose analytic functions remember earlier rows (`lag`, `latest`,
/// `changed_col`, `had_changed`, `acc_*`, per partition) is killed four times and restarted:
/// it writes exactly what a run that was never killed writes.
#[test]
fn under_qos_2_analytic_functions_resume_with_their_state_across_kills() {
    let sql = "SELECT n, lag(n) AS prev, lag(n, 2, -1) OVER (PARTITION BY n % 3) AS prev3, \
               latest(n) OVER (PARTITION BY n % 2) AS odd, changed_col(true, n / 1000) AS k, \
               had_changed(true, n / 500) AS h, acc_sum(n) AS total, \
               acc_count(n, n % 100 = 0, n % 100 = 50) AS run, last_hit_count() AS hits \
               FROM s WHERE n % 7 != 3";
    let action =
        || json!({"file": {"path": "out/result.jsonl", "batchSize": 7, "enableCache": true}});

    let reference = Scratch::new();
    assert_eq!(
        kill_and_restart(&reference, sql, action(), (2, Stops::Killed), &[], &|| 0),
        0
    );
    let expected = rows_written(&reference);
    assert_eq!(
        expected.len(),
        (0..KILLED_ROWS).filter(|n| n % 7 != 3).count()
    );

    let scratch = Scratch::new();
    let output = scratch.path().join("out/result.jsonl");
    let lines = || lines_in(&output);
    let landed = kill_and_restart(&scratch, sql, action(), (2, Stops::Killed), &KILLS, &lines);
    assert!(
        landed >= 2,
        "only {landed} kills landed before the input ended"
    );
    let written = rows_written(&scratch);
    let first_difference = written.iter().zip(&expected).position(|(a, b)| a != b);
    assert!(
        written.len() == expected.len() && first_difference.is_none(),
        "{landed} kills: {} rows written, {} expected; first difference at {first_difference:?}: \
         {:?} instead of {:?}",
        written.len(),
        expected.len(),
        first_difference.map(|i| &written[i]),
        first_difference.map(|i| &expected[i]),
    );
}

/// Turns the rule into one using `lag` (same id, same stream) and runs it: `oort` must refuse
/// it; returns what it said.
fn refused_with_lag(scratch: &Scratch) -> String {
    write_rule(
        scratch,
        "SELECT n, lag(n) AS prev FROM s",
        result_file(),
        json!({"qos": 1, "checkpointInterval": 20}),
    );
    refused(scratch)
}

/// A checkpoint taken while the rule had other analytic functions is refused, naming the
/// rule, the checkpoint and the functions.
#[test]
fn a_checkpoint_of_other_analytic_functions_is_refused_naming_them() {
    let scratch = Scratch::new();
    ten_rows_run(&scratch);
    let err = refused_with_lag(&scratch);
    assert_refused_naming_the_checkpoint(
        &err,
        "checkpoints.redb (rule `rows`): it holds the state of the analytic \
                             functions none, the rule now has `lag`",
    );
    let (summary, _) = run_to_end(&scratch, &["--reset-checkpoints"]);
    assert_eq!(rows_read(&summary), 10);
}

/// A checkpoint an earlier version wrote (it kept no state for analytic functions) is refused
/// for a rule that uses them, naming the rule, the checkpoint file and the function; a rule
/// without them resumes from it as before.
#[test]
fn a_checkpoint_without_function_state_is_refused_for_a_rule_using_lag() {
    let scratch = Scratch::new();
    ten_rows_run(&scratch);
    // What an earlier version wrote: the same checkpoint without `functions`.
    let strip = || {
        let store = oort::checkpoint::CheckpointStore::open(&scratch.path().join("data")).unwrap();
        let mut last = store.load("rows").unwrap().expect("a checkpoint");
        assert!(last.functions.is_some());
        last.functions = None;
        store.save("rows", &last).unwrap();
    };
    strip();
    std::fs::OpenOptions::new()
        .append(true)
        .open(scratch.path().join("in.jsonl"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"n\":10}\n"))
        .unwrap();
    let (summary, _) = run_to_end(&scratch, &[]);
    assert_eq!(
        rows_read(&summary),
        1,
        "a rule without analytic functions resumes from an earlier version's checkpoint"
    );
    strip();
    let err = refused_with_lag(&scratch);
    assert_refused_naming_the_checkpoint(
        &err,
        "checkpoints.redb holds a checkpoint of rule `rows` written by an earlier \
                 version, which kept no state for `lag`",
    );
}

/// A stop whose grace period runs out leaves batches undelivered (and, without a cache, not
/// kept): no checkpoint may cover them, so the next run replays and delivers them.
#[test]
fn a_stop_that_runs_out_of_time_writes_no_checkpoint_past_undelivered_rows() {
    const TOTAL: i64 = 300;
    let scratch = Scratch::new();
    numbered_rule(&scratch, TOTAL as usize);
    let server = oort_tests::http::HttpServer::start();
    server.slow_down(Duration::from_millis(50));
    let rest = json!({"rest": {"url": server.url("/rows"), "method": "post",
                               "sendSingle": true, "bufferLength": 1000}});
    write_rule(
        &scratch,
        "SELECT n FROM s",
        rest,
        json!({"qos": 1, "checkpointInterval": "50ms"}),
    );
    let mut child = spawn(&scratch, &["--grace", "300ms"]);
    let log = collect_stderr(&mut child);
    wait_for("rows at the sink", Duration::from_secs(60), || {
        server.delivered().len() >= 5
    });
    let termed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(termed.success());
    child.wait().expect("waiting for oort");
    let first = log.lock().unwrap().clone();
    assert!(
        first.contains("batch not delivered"),
        "the stop was meant to cut batches short:\n{first}"
    );
    let before = server.delivered().len();
    assert!(
        before < TOTAL as usize,
        "all {before} rows went out before the stop"
    );
    // The next run, with a sink that answers at once, delivers every row left.
    server.slow_down(Duration::ZERO);
    run_to_end(&scratch, &[]);
    let got: std::collections::BTreeSet<i64> = server
        .delivered()
        .iter()
        .filter_map(|body| serde_json::from_str::<Value>(body).ok())
        .filter_map(|row| row["n"].as_i64())
        .collect();
    let missing: Vec<i64> = (0..TOTAL).filter(|n| !got.contains(n)).collect();
    assert!(missing.is_empty(), "rows never delivered: {missing:?}");
    assert!(first.contains("checkpoint not written"), "{first}");
}

/// Under `qos: 2` an MQTT stream into the `file` sink, killed with SIGKILL right after each of
/// three checkpoints (while the source acknowledges what the checkpoint covers: some of those
/// acknowledgements are lost with the process, so the broker sends the messages again), writes
/// every message once: the restarted source drops what the checkpoint already counted.
#[test]
fn under_qos_2_an_mqtt_stream_writes_every_message_once_across_kills_after_checkpoints() {
    mqtt_stream_killed_after_checkpoints("3.1.1", 1);
}

/// The same with the messages published and subscribed at QoS 2: a kill between the source's
/// PUBREC and its PUBCOMP leaves exchanges the broker completes on the next connection (it
/// sends PUBREL again for them), which the restarted source must take without losing its
/// connection.
#[test]
fn under_qos_2_an_mqtt_stream_subscribed_at_qos_2_writes_every_message_once_across_kills() {
    mqtt_stream_killed_after_checkpoints("3.1.1", 2);
}

/// The same over MQTT 5.
#[test]
fn under_qos_2_an_mqtt_5_stream_subscribed_at_qos_2_writes_every_message_once_across_kills() {
    mqtt_stream_killed_after_checkpoints("5", 2);
}

/// The same over MQTT 5 (whose broker answers the source's markers "no subscription existed").
#[test]
fn under_qos_2_an_mqtt_5_stream_writes_every_message_once_across_kills_after_checkpoints() {
    mqtt_stream_killed_after_checkpoints("5", 1);
}

/// Runs the kills above with MQTT `protocol`, the messages published and subscribed at `qos`,
/// and checks every message was written once.
fn mqtt_stream_killed_after_checkpoints(protocol: &str, qos: u8) {
    use oort_tests::broker::Broker;
    let Some(broker) = Broker::start() else {
        return;
    };
    const TOTAL: usize = 20_000;
    let scratch = Scratch::new();
    mqtt_rule_with(
        &scratch,
        &broker,
        qos,
        protocol,
        json!({"qos": 2, "checkpointInterval": "1s"}),
    );
    let mqtt = ["--mqtt-conf", "etc/mqtt.yaml"];
    let mut publisher = None;
    let mut kills = 0;
    // Messages the restarted runs dropped as sent again (what the test is about: printed).
    let mut dropped = 0;
    let dropped_in = |log: &str| -> u64 {
        log.lines()
            .filter(|l| l.contains("sent again messages already read"))
            .map(|l| field(l, "messages").parse::<u64>().unwrap_or(0))
            .sum()
    };
    while kills < 3 {
        let mut child = spawn(&scratch, &mqtt);
        let log = collect_stderr(&mut child);
        let started = std::time::Instant::now();
        while !log.lock().unwrap().contains("subscribed to") {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "after {kills} kills, no subscription:\n{}",
                log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let port = broker.port;
        publisher
            .get_or_insert_with(|| std::thread::spawn(move || publish_numbered(port, qos, TOTAL)));
        // The first checkpoint covering rows, polled tightly: the kill lands while the
        // acknowledgements it allows are on their way.
        let started = std::time::Instant::now();
        let covered = loop {
            if let Some(line) = log
                .lock()
                .unwrap()
                .lines()
                .find(|l| l.contains("checkpoint written") && !l.contains("positions=s@0:"))
            {
                break Some(line.to_string());
            }
            if lines_in(&scratch.path().join("out/result.jsonl")) >= TOTAL {
                break None;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "no checkpoint:\n{}",
                log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_micros(200));
        };
        child.kill().expect("kill -9");
        child.wait().expect("waiting for oort");
        dropped += dropped_in(&log.lock().unwrap());
        if covered.is_none() {
            break;
        }
        kills += 1;
    }
    assert!(
        kills >= 2,
        "only {kills} kills landed before every row was written"
    );
    if let Some(publisher) = publisher {
        publisher.join().expect("the publisher");
    }

    let mut child = spawn(&scratch, &mqtt);
    let log = collect_stderr(&mut child);
    let output = scratch.path().join("out/result.jsonl");
    let started = std::time::Instant::now();
    let mut size = 0;
    let mut grew = std::time::Instant::now();
    // Until every row is there, and no more comes for a second (a duplicate would).
    while lines_in(&output) < TOTAL || grew.elapsed() < Duration::from_secs(1) {
        let now = lines_in(&output);
        if now != size {
            size = now;
            grew = std::time::Instant::now();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{size} of {TOTAL} rows written:\n{}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill -9");
    child.wait().expect("waiting for oort");
    dropped += dropped_in(&log.lock().unwrap());
    eprintln!("{kills} kills; the restarted runs dropped {dropped} messages sent again");
    let (seen, bad) = counted(&scratch, TOTAL);
    let lost: Vec<usize> = (0..TOTAL).filter(|&n| seen[n] == 0).collect();
    let twice: Vec<usize> = (0..TOTAL).filter(|&n| seen[n] > 1).collect();
    assert!(
        lost.is_empty() && twice.is_empty() && bad.is_empty(),
        "{kills} kills: {} lost (first {:?}), {} written twice (first {:?}), bad lines {:?}",
        lost.len(),
        &lost[..lost.len().min(5)],
        twice.len(),
        &twice[..twice.len().min(5)],
        &bad[..bad.len().min(3)]
    );
}

/// eKuiper's `TestTableJoinCheckpoint` (`internal/topo/topotest/checkpoint_test.go`, case
/// `TestCheckpointRule2`): a stream joined with a file table under `qos` 1 and a
/// `checkpointInterval` of 600 ms reads the first three rows of the mock stream `demo`, stops,
/// and starts again over the same data directory with the rest. eKuiper's test stops its rule
/// at a point of its mock clock; here the first run reads a file holding those three rows to
/// its end (where Oort takes a checkpoint) and the second run the file with the rest appended.
/// eKuiper sends `[row 2 ⋈ name2, the same]` and `[row 4 ⋈ name3, the same]` after its restart
/// (its last checkpoint came before row 2, which it reads again, and it restores the table's
/// rows from the checkpoint and reads the table's file again, so each table row is there
/// twice); Oort reads only what came after its checkpoint and reads the table afresh, without
/// keeping it in checkpoints, so each joined row is there once (`tests/rules/EKUIPER.md`).
#[test]
fn ekuiper_table_join_checkpoint_resumes_after_the_checkpointed_rows() {
    let scratch = Scratch::new();
    let demo = [
        r#"{"color":"red","size":3,"ts":1541152486013}"#,
        r#"{"color":"blue","size":6,"ts":1541152486822}"#,
        r#"{"color":"blue","size":2,"ts":1541152487632}"#,
        r#"{"color":"yellow","size":4,"ts":1541152488442}"#,
        r#"{"color":"red","size":1,"ts":1541152489252}"#,
    ];
    scratch.write(
        "streams.sql",
        "CREATE STREAM demo ( color STRING, size BIGINT, ts BIGINT ) WITH (DATASOURCE=\"demo.jsonl\", TYPE=\"file\", FORMAT=\"json\");\n\
         CREATE TABLE table1 ( name STRING, size BIGINT, id BIGINT ) WITH (DATASOURCE=\"lookup.json\", TYPE=\"file\", FORMAT=\"json\", STRICT_VALIDATION=\"true\");",
    );
    // eKuiper's test/lookup.json.
    scratch.write(
        "lookup.json",
        r#"[{"id":1541152486013,"name":"name1","size":2},{"id":1541152487632,"name":"name2","size":6},{"id":1541152489252,"name":"name3","size":4}]"#,
    );
    scratch.write("demo.jsonl", &format!("{}\n", demo[..3].join("\n")));
    write_rule(
        &scratch,
        "SELECT * FROM demo INNER JOIN table1 on demo.ts = table1.id",
        result_file(),
        json!({"qos": 1, "checkpointInterval": 600, "sendError": true, "bufferLength": 100}),
    );
    // The stream's rows the query took (the source's count holds the table's rows too).
    let stream_rows = |summary: &Value| summary["rules"][0]["query"]["records_in_total"].as_u64();
    let (summary, log) = run_to_end(&scratch, &[]);
    assert_eq!(stream_rows(&summary), Some(3));
    assert!(log.contains("checkpoint written"), "{log}");
    assert_eq!(
        rows_written(&scratch),
        [
            json!([{"color":"red","id":1541152486013_i64,"name":"name1","size":3,"ts":1541152486013_i64}]),
            json!([{"color":"blue","id":1541152487632_i64,"name":"name2","size":2,"ts":1541152487632_i64}]),
        ]
    );

    std::fs::OpenOptions::new()
        .append(true)
        .open(scratch.path().join("demo.jsonl"))
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, format!("{}\n", demo[3..].join("\n")).as_bytes())
        })
        .unwrap();
    let (summary, _) = run_to_end(&scratch, &[]);
    assert_eq!(
        stream_rows(&summary),
        Some(2),
        "the checkpointed rows are not read again"
    );
    assert_eq!(
        rows_written(&scratch),
        [
            json!([{"color":"red","id":1541152489252_i64,"name":"name3","size":1,"ts":1541152489252_i64}])
        ]
    );
}

/// SIGTERM to `child`; waits for it to end, which must be a success; returns how long it took.
fn terminate(child: &mut Child, log: &std::sync::Arc<std::sync::Mutex<String>>) -> Duration {
    let started = std::time::Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(killed.success());
    let status = child.wait().expect("waiting for oort");
    let took = started.elapsed();
    assert!(status.success(), "{status:?}\n{}", log.lock().unwrap());
    took
}

/// Writes an MQTT configuration (`default` section) for `broker` with `qos`, a stream `s` over
/// topic `in/n`, and rule `rows` (id) writing `n` to the result file under `qos: 1`, whose only
/// checkpoints are the ones its MQTT source asks for and the one at its stop.
fn mqtt_rule(scratch: &Scratch, broker: &oort_tests::broker::Broker, qos: u8, protocol: &str) {
    mqtt_rule_with(
        scratch,
        broker,
        qos,
        protocol,
        json!({"qos": 1, "checkpointInterval": "600s"}),
    );
}

/// [`mqtt_rule`] with the rule's `options`.
fn mqtt_rule_with(
    scratch: &Scratch,
    broker: &oort_tests::broker::Broker,
    qos: u8,
    protocol: &str,
    options: Value,
) {
    scratch.write(
        "etc/mqtt.yaml",
        &format!(
            "default:\n  server: \"{}\"\n  qos: {qos}\n  protocolVersion: \"{protocol}\"\n",
            broker.url()
        ),
    );
    scratch.write(
        "streams.sql",
        "CREATE STREAM s (n BIGINT) WITH (TYPE=\"mqtt\", DATASOURCE=\"in/n\");",
    );
    write_rule(scratch, "SELECT n FROM s", result_file(), options);
}

/// Starts rule `rows` over MQTT and waits until its source has subscribed.
fn spawn_subscribed(scratch: &Scratch) -> (Child, std::sync::Arc<std::sync::Mutex<String>>) {
    let mut child = spawn(scratch, &["--mqtt-conf", "etc/mqtt.yaml"]);
    let log = collect_stderr(&mut child);
    wait_for("the source to subscribe", Duration::from_secs(60), || {
        log.lock().unwrap().contains("subscribed to")
    });
    (child, log)
}

/// A SIGTERM acknowledges what the rule's last checkpoint covers before the source disconnects:
/// the broker keeps none of the messages the stopped run wrote in the rule's session. The stop
/// lands while messages flow (with up to the broker's inflight window of them read and not yet
/// acknowledged); then a client taking over the rule's persistent session must get every
/// message the run did not write, and none that it wrote.
#[test]
fn a_sigterm_acknowledges_what_the_last_checkpoint_covers() {
    stopped_mid_flow_leaves_nothing_written_in_the_session("3.1.1", 1);
}

/// The same with QoS 2 messages: each PUBREC written, the stop waits for the broker's PUBREL
/// and writes the PUBCOMP before it disconnects.
#[test]
fn a_sigterm_completes_the_qos_2_exchanges_of_what_the_last_checkpoint_covers() {
    stopped_mid_flow_leaves_nothing_written_in_the_session("3.1.1", 2);
}

/// The same over MQTT 5.
#[test]
fn a_sigterm_acknowledges_what_the_last_checkpoint_covers_over_mqtt_5() {
    stopped_mid_flow_leaves_nothing_written_in_the_session("5", 1);
}

/// Publishes `{"n": 0}` to `{"n": total - 1}` to `in/n` with `qos`: at QoS 2 until the broker
/// completed every exchange, else as [`publish_all`](oort_tests::broker::publish_all) does.
fn publish_numbered(port: u16, qos: u8, total: usize) {
    if qos == 2 {
        publish_qos_2(port, total);
    } else {
        oort_tests::broker::publish_all(
            port,
            "in/n",
            (0..total).map(|n| format!("{{\"n\":{n}}}").into_bytes()),
        );
    }
}

/// Publishes `{"n": 0}` to `{"n": total - 1}` to `in/n` with QoS 2, until the broker completed
/// every exchange.
fn publish_qos_2(port: u16, total: usize) {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let mut options = MqttOptions::new("oort-test-pub-qos2", "127.0.0.1", port);
    options.set_inflight(1000);
    let (client, mut connection) = Client::new(options, 1024);
    std::thread::spawn(move || {
        for n in 0..total {
            client
                .publish("in/n", QoS::ExactlyOnce, false, format!("{{\"n\":{n}}}"))
                .expect("publishing");
        }
    });
    let mut completed = 0;
    for event in connection.iter() {
        match event {
            Ok(Event::Incoming(Packet::PubComp(_))) => {
                completed += 1;
                if completed == total {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => panic!("publishing to the broker failed: {e}"),
        }
    }
}

fn stopped_mid_flow_leaves_nothing_written_in_the_session(protocol: &str, qos: u8) {
    use oort_tests::broker::Broker;
    use rumqttc::{Client, Event, MqttOptions, Packet};
    let Some(broker) = Broker::start() else {
        return;
    };
    const TOTAL: usize = 20_000;
    let scratch = Scratch::new();
    mqtt_rule(&scratch, &broker, qos, protocol);
    let (mut child, log) = spawn_subscribed(&scratch);
    let port = broker.port;
    let publisher = std::thread::spawn(move || publish_numbered(port, qos, TOTAL));
    let output = scratch.path().join("out/result.jsonl");
    wait_for("rows written", Duration::from_secs(120), || {
        lines_in(&output) >= 2_000
    });
    terminate(&mut child, &log);
    let log = log.lock().unwrap().clone();
    publisher.join().expect("the publisher");
    let (seen, bad) = counted(&scratch, TOTAL);
    assert!(bad.is_empty(), "bad lines {:?}", &bad[..bad.len().min(3)]);
    let written = seen.iter().filter(|&&c| c > 0).count();
    assert!(
        written < TOTAL,
        "the stop landed after every message was written"
    );

    // The rule's session, taken over: what it holds comes now (sent again first).
    let mut options = MqttOptions::new("oort-rows-s", "127.0.0.1", port);
    options.set_clean_session(false);
    options.set_max_packet_size(16 << 20, 16 << 20);
    let (client, mut connection) = Client::new(options, 64);
    let mut got = vec![0u32; TOTAL];
    let mut missing = TOTAL - written;
    let started = std::time::Instant::now();
    let mut resumed = None;
    while missing > 0 && started.elapsed() < Duration::from_secs(60) {
        match connection.recv_timeout(Duration::from_millis(100)) {
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => resumed = Some(ack.session_present),
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                let row: Value = serde_json::from_slice(&p.payload).expect("a payload");
                let n = row["n"].as_u64().expect("n") as usize;
                if seen[n] == 0 && got[n] == 0 {
                    missing -= 1;
                }
                got[n] += 1;
            }
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => panic!("the session's client: {e}"),
        }
    }
    let _ = client.try_disconnect();
    assert_eq!(resumed, Some(true), "the rule's session was not kept");
    let again: Vec<usize> = (0..TOTAL).filter(|&n| seen[n] > 0 && got[n] > 0).collect();
    let lost: Vec<usize> = (0..TOTAL)
        .filter(|&n| seen[n] == 0 && got[n] == 0)
        .collect();
    eprintln!(
        "written before the stop: {written}; left in the session: {}; sent again: {}",
        TOTAL - written,
        again.len()
    );
    assert!(
        again.is_empty() && lost.is_empty(),
        "{} messages the stopped run wrote were still in its session (first {:?}); {} lost \
         (first {:?})\n{log}",
        again.len(),
        &again[..again.len().min(5)],
        lost.len(),
        &lost[..lost.len().min(5)],
    );
    assert!(
        log.contains("stopped: the messages the last checkpoint covers are acknowledged"),
        "{log}"
    );
}

/// A stop while the broker holds the connection open and answers nothing (paused with SIGSTOP)
/// does not wait on it past the acknowledgements' limit (2 s), and says how many
/// acknowledgements were not sent (in the log, and counted in the summary). Under QoS 2 a PUBREC waits for the broker's PUBREL: none
/// comes.
#[test]
fn a_stop_with_the_broker_hung_ends_within_the_acknowledgement_limit() {
    use oort_tests::broker::Broker;
    use rumqttc::{Client, MqttOptions, QoS};
    let Some(broker) = Broker::start() else {
        return;
    };
    let scratch = Scratch::new();
    mqtt_rule(&scratch, &broker, 2, "3.1.1");
    let (mut child, log) = spawn_subscribed(&scratch);
    let mut options = MqttOptions::new("oort-test-pub-qos2", "127.0.0.1", broker.port);
    options.set_inflight(100);
    let (client, mut connection) = Client::new(options, 1024);
    std::thread::spawn(move || for _ in connection.iter() {});
    std::thread::spawn(move || {
        for n in 0..1_000_000 {
            if client
                .publish("in/n", QoS::ExactlyOnce, false, format!("{{\"n\":{n}}}"))
                .is_err()
            {
                return;
            }
        }
    });
    let output = scratch.path().join("out/result.jsonl");
    wait_for("rows written", Duration::from_secs(120), || {
        lines_in(&output) >= 500
    });
    let pid = broker.pid().expect("the broker runs").to_string();
    let paused = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .expect("kill -STOP");
    assert!(paused.success());
    let took = terminate(&mut child, &log);
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
    let log = log.lock().unwrap().clone();
    eprintln!("the stop took {took:?}");
    let line = log
        .lines()
        .find(|l| {
            l.contains("acknowledgements of messages the last checkpoint covers not sent within 2s")
        })
        .unwrap_or_else(|| panic!("no line on the acknowledgements not sent:\n{log}"));
    let unsent: u64 = field(line, "unsent").parse().expect("a count");
    // Counted in the summary as logged.
    let mut stdout = String::new();
    std::io::Read::read_to_string(
        &mut child.stdout.take().expect("oort's stdout"),
        &mut stdout,
    )
    .expect("oort's summary");
    let summary: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("no JSON summary ({e}):\n{log}"));
    assert!(unsent > 0, "{line}");
    assert_eq!(
        summary["rules"][0]["source"]["acks_unsent_at_stop_total"], unsent,
        "{line}"
    );
    assert!(
        took < Duration::from_secs(5),
        "the stop took {took:?} with the broker hung\n{log}"
    );
}
