//! No row is lost without being counted: dead-letter outputs, the action cache across an
//! outage, a restart, a `kill -9` and a SIGTERM, and back-pressure when the cache is full. The
//! `probe` test sink fails on demand; its `downWhile` file is an outage switch.

use std::io::Write;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{
    Run, STDIN_STREAM, Scratch, Spawn, collect_stderr, numbered, spawn_rule, wait_for,
};

const FILE_STREAM: &str = "CREATE STREAM demo () WITH (TYPE=\"file\", DATASOURCE=\"in.jsonl\");\n";

/// A rule reading `demo` (or stdin) into the probe with `props` (plus its journal).
fn rule(scratch: &Scratch, stream: &str, props: Value) {
    let mut props = props;
    props["journal"] = json!("out/journal.txt");
    let from = if stream == STDIN_STREAM { "s" } else { "demo" };
    scratch.write("streams.sql", stream);
    let rule =
        json!({"id": "r", "sql": format!("SELECT n FROM {from}"), "actions": [{"probe": props}]});
    scratch.write("rule.json", &rule.to_string());
}

/// The `n` of every message the probe delivered, in delivery order.
fn delivered(scratch: &Scratch) -> Vec<u64> {
    let Ok(journal) = std::fs::read_to_string(scratch.path().join("out/journal.txt")) else {
        return Vec::new();
    };
    journal
        .lines()
        .filter(|l| l.starts_with("collect"))
        .flat_map(|l| {
            l.split(' ')
                .filter(|w| w.starts_with('{'))
                .map(|w| {
                    let v: Value = serde_json::from_str(w).unwrap();
                    v["n"].as_u64().unwrap()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Starts `oort run-rule --json --log debug` with stdin piped, collecting its log.
fn spawn(scratch: &Scratch) -> (Child, Arc<Mutex<String>>) {
    let mut child = spawn_rule(
        scratch,
        &Spawn {
            log: "oort=debug",
            stdin: true,
            ..Spawn::default()
        },
    );
    let log = collect_stderr(&mut child);
    (child, log)
}

fn finish(child: Child, log: &Arc<Mutex<String>>) -> Run {
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: log.lock().unwrap().clone(),
    }
}

fn assert_balanced(action: &Value) {
    assert_eq!(
        action["balanced"], true,
        "every payload accounted for: {action}"
    );
}

#[test]
fn rejected_batches_go_to_the_dead_letter_file() {
    let scratch = Scratch::new();
    scratch.write("in.jsonl", &numbered(4));
    rule(
        &scratch,
        FILE_STREAM,
        json!({"failPhase": "collect", "failKind": "rejected", "batchSize": 1,
               "deadLetter": "dead/letters.jsonl"}),
    );
    let run = scratch.run_rule(&[]);
    assert_eq!(
        run.code,
        Some(3),
        "dead-lettered rows were not delivered: exit 3"
    );
    let action = run.action(0);
    assert_eq!(action["dead_letter_total"], 4, "{action}");
    assert_eq!(action["failed_total"], 0, "{action}");
    assert_balanced(&action);
    let letters: Vec<Value> = scratch
        .read("dead/letters.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 4);
    for (i, letter) in letters.iter().enumerate() {
        assert_eq!(letter["payload"], json!({"n": i}), "{letter}");
        assert_eq!(letter["reason"], "rejected");
        assert_eq!(letter["rule"], "r");
        assert_eq!(letter["action"], "probe_0");
        assert!(
            letter["error"]
                .as_str()
                .unwrap()
                .contains("probe fails in collect")
        );
    }
}

#[test]
fn poison_batches_go_to_a_dead_letter_action() {
    let scratch = Scratch::new();
    scratch.write("in.jsonl", &numbered(3));
    rule(
        &scratch,
        FILE_STREAM,
        json!({"failPhase": "collect", "failKind": "trap", "batchSize": 1,
               "deadLetter": {"file": {"path": "dead/poison.jsonl"}}}),
    );
    let run = scratch.run_rule(&[]);
    assert_eq!(run.code, Some(3));
    let action = run.action(0);
    assert_eq!(action["dead_letter_total"], 3, "{action}");
    assert_eq!(
        action["restarts_total"], 9,
        "three traps per batch: {action}"
    );
    assert_balanced(&action);
    assert_eq!(scratch.read("dead/poison.jsonl"), numbered(3));
}

#[test]
fn an_outage_is_cached_and_resent_in_order_when_the_sink_recovers() {
    let scratch = Scratch::new();
    scratch.write("down.flag", "");
    rule(
        &scratch,
        STDIN_STREAM,
        json!({"downWhile": "down.flag", "enableCache": true, "memoryCacheThreshold": 8,
               "bufferPageSize": 4, "retryCount": 1, "retryInterval": 5, "batchSize": 5,
               "lingerInterval": 10, "resendInterval": 10}),
    );
    let (mut child, log) = spawn(&scratch);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(numbered(50).as_bytes()).unwrap();
    stdin.flush().unwrap();
    wait_for("all 50 rows cached", Duration::from_secs(30), || {
        log.lock().unwrap().contains("50 in the cache")
    });
    assert!(delivered(&scratch).is_empty(), "the sink is down");
    std::fs::remove_file(scratch.path().join("down.flag")).unwrap();
    wait_for("the cache resent", Duration::from_secs(30), || {
        delivered(&scratch).len() >= 50
    });
    drop(stdin);
    let run = finish(child, &log);
    run.assert_ok();
    assert_eq!(
        delivered(&scratch),
        (0..50).collect::<Vec<_>>(),
        "in order, once"
    );
    let action = run.action(0);
    assert_eq!(action["records_out_total"], 50, "{action}");
    assert_eq!(action["resent_total"], 50, "{action}");
    assert_eq!(action["cached"], 0, "{action}");
    assert_eq!(action["failed_total"], 0, "{action}");
    assert_balanced(&action);
    assert!(
        log.lock()
            .unwrap()
            .contains("cache resent: the sink is caught up")
    );
}

#[test]
fn the_disk_cache_survives_a_restart_and_is_resent_first() {
    let scratch = Scratch::new();
    scratch.write("down.flag", "");
    scratch.write("in.jsonl", &numbered(20));
    let props = json!({"downWhile": "down.flag", "enableCache": true, "memoryCacheThreshold": 5,
                       "bufferPageSize": 2, "retryCount": 1, "retryInterval": 1, "batchSize": 3});
    rule(&scratch, FILE_STREAM, props.clone());
    // The sink stays down: 0 leaves its rows cached at once, without waiting for it.
    let first = scratch.run_rule(&["--drain-timeout", "0"]);
    assert_eq!(
        first.code,
        Some(3),
        "rows left in the cache: exit 3\n{}",
        first.stderr
    );
    let action = first.action(0);
    assert_eq!(action["cached"], 20, "{action}");
    assert_eq!(action["records_out_total"], 0, "{action}");
    assert_balanced(&action);
    assert!(scratch.path().join("data/cache/r/probe_0.redb").is_file());

    // The target is back; the next run has new rows too: the old ones go first.
    std::fs::remove_file(scratch.path().join("down.flag")).unwrap();
    scratch.write("in.jsonl", "{\"n\":20}\n{\"n\":21}\n");
    let second = scratch.run_rule(&[]);
    second.assert_ok();
    let action = second.action(0);
    assert_eq!(action["cache_restored_total"], 20, "{action}");
    assert_eq!(action["records_out_total"], 22, "{action}");
    assert_eq!(action["cached"], 0, "{action}");
    assert_balanced(&action);
    assert_eq!(delivered(&scratch), (0..22).collect::<Vec<_>>());
}

#[test]
fn kill_9_loses_nothing_that_reached_the_disk_cache() {
    let scratch = Scratch::new();
    scratch.write("down.flag", "");
    // memoryCacheThreshold 0: every cached batch is on disk before the next one is taken.
    rule(
        &scratch,
        STDIN_STREAM,
        json!({"downWhile": "down.flag", "enableCache": true, "memoryCacheThreshold": 0,
               "retryCount": 0, "batchSize": 1}),
    );
    let (mut child, log) = spawn(&scratch);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(numbered(30).as_bytes()).unwrap();
    stdin.flush().unwrap();
    wait_for("30 rows on disk", Duration::from_secs(30), || {
        log.lock()
            .unwrap()
            .contains("30 in the cache, 30 of them on disk")
    });
    child.kill().unwrap(); // SIGKILL: no shutdown code runs.
    child.wait().unwrap();
    drop(stdin);

    std::fs::remove_file(scratch.path().join("down.flag")).unwrap();
    rule(
        &scratch,
        FILE_STREAM,
        json!({"downWhile": "down.flag", "enableCache": true, "memoryCacheThreshold": 0,
               "retryCount": 0, "batchSize": 1}),
    );
    scratch.write("in.jsonl", "");
    let run = scratch.run_rule(&[]);
    run.assert_ok();
    let action = run.action(0);
    assert_eq!(action["cache_restored_total"], 30, "{action}");
    assert_balanced(&action);
    assert_eq!(delivered(&scratch), (0..30).collect::<Vec<_>>());
}

#[test]
fn sigterm_does_not_wait_for_a_dead_sink_and_keeps_its_rows() {
    let scratch = Scratch::new();
    scratch.write("down.flag", "");
    rule(
        &scratch,
        STDIN_STREAM,
        json!({"downWhile": "down.flag", "enableCache": true, "retryCount": 1000,
               "retryInterval": 1000, "batchSize": 1}),
    );
    let (mut child, log) = spawn(&scratch);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(numbered(3).as_bytes()).unwrap();
    stdin.flush().unwrap();
    // The first batch is being retried (1000 times, 1 s apart); the others wait behind it.
    wait_for("a retry", Duration::from_secs(30), || {
        log.lock()
            .unwrap()
            .contains("transient sink error, retrying")
    });
    let started = std::time::Instant::now();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let run = finish(child, &log);
    drop(stdin);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a stop must not wait out the retries"
    );
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    assert_eq!(run.summary()["interrupted"], true);
    let action = run.action(0);
    assert_balanced(&action);
    assert_eq!(action["failed_total"], 0, "{action}");
    assert_eq!(action["cached"], 3, "{action}");
}

#[test]
fn a_full_cache_holds_the_source_back_instead_of_dropping() {
    let scratch = Scratch::new();
    scratch.write("down.flag", "");
    scratch.write("in.jsonl", &numbered(200));
    rule(
        &scratch,
        FILE_STREAM,
        json!({"downWhile": "down.flag", "enableCache": true, "memoryCacheThreshold": 2,
               "maxDiskCache": 3, "bufferPageSize": 1, "retryCount": 0, "batchSize": 1,
               "bufferLength": 1}),
    );
    let (child, log) = spawn(&scratch);
    wait_for("the cache to fill", Duration::from_secs(30), || {
        log.lock().unwrap().contains("the cache is full")
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(delivered(&scratch).is_empty());
    std::fs::remove_file(scratch.path().join("down.flag")).unwrap();
    let run = finish(child, &log);
    run.assert_ok();
    let action = run.action(0);
    assert_eq!(action["records_out_total"], 200, "{action}");
    assert!(action["cached_total"].as_u64().unwrap() <= 10, "{action}");
    assert_balanced(&action);
    assert_eq!(delivered(&scratch), (0..200).collect::<Vec<_>>());
}

#[test]
fn the_alternate_queue_sends_new_rows_while_the_cache_is_resent() {
    let scratch = Scratch::new();
    scratch.write("down.flag", "");
    rule(
        &scratch,
        STDIN_STREAM,
        json!({"downWhile": "down.flag", "enableCache": true, "resendAlterQueue": true,
               "resendPriority": 0, "resendIndicatorField": "resent", "retryCount": 0,
               "batchSize": 1, "resendInterval": 10}),
    );
    let (mut child, log) = spawn(&scratch);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(numbered(5).as_bytes()).unwrap();
    stdin.flush().unwrap();
    wait_for("5 cached", Duration::from_secs(30), || {
        log.lock().unwrap().contains("5 in the cache")
    });
    std::fs::remove_file(scratch.path().join("down.flag")).unwrap();
    stdin
        .write_all(
            (5..10)
                .map(|i| format!("{{\"n\":{i}}}\n"))
                .collect::<String>()
                .as_bytes(),
        )
        .unwrap();
    stdin.flush().unwrap();
    wait_for("all 10", Duration::from_secs(30), || {
        delivered(&scratch).len() >= 10
    });
    drop(stdin);
    let run = finish(child, &log);
    run.assert_ok();
    let mut got = delivered(&scratch);
    got.sort_unstable();
    assert_eq!(got, (0..10).collect::<Vec<_>>());
    let journal = scratch.read("out/journal.txt");
    assert_eq!(
        journal.matches("\"resent\":true").count(),
        5,
        "resent rows carry the indicator field:\n{journal}"
    );
    assert_balanced(&run.action(0));
}

/// A write of the `file` sink that fails part-way (the file size limit of the process,
/// `RLIMIT_FSIZE`, with `SIGXFSZ` ignored: the write puts what fits under the limit into the
/// file, then fails with `EFBIG`) leaves no partial batch behind: the batch is retried, each
/// time cut back to where it started in the file, and once the limit is raised it is written
/// whole. Every row once, in order, and no torn line.
#[test]
fn a_write_that_fails_part_way_is_cut_back_and_written_whole_on_retry() {
    const TOTAL: u64 = 20_000;
    // 200 blocks of 512 bytes: about 100 KB, where the rows written come to about 250 KB.
    const LIMIT_BLOCKS: u64 = 200;
    let scratch = Scratch::new();
    scratch.write("in.jsonl", &numbered(TOTAL as usize));
    scratch.write("streams.sql", FILE_STREAM);
    let rule = json!({
        "id": "r",
        "sql": "SELECT n FROM demo",
        "actions": [{"file": {"path": "out/rows.jsonl", "retryCount": 1000,
                              "retryInterval": 20}}],
    });
    scratch.write("rule.json", &rule.to_string());
    // The shell sets the limit (soft only, so it can be raised again) and ignores SIGXFSZ (an
    // ignored signal stays ignored across `exec`); then it becomes `oort`.
    let mut child = std::process::Command::new("sh")
        .current_dir(scratch.path())
        .args([
            "-c",
            &format!("trap '' XFSZ; ulimit -S -f {LIMIT_BLOCKS}; exec \"$0\" \"$@\""),
        ])
        .arg(oort_tests::oort_bin())
        .args([
            "run-rule",
            "rule.json",
            "--streams",
            "streams.sql",
            "--json",
        ])
        .env("OORT_CACHE_DIR", oort_tests::cache_dir())
        .env("OORT_PLUGINS", scratch.path().join("plugins"))
        // The retries are logged at debug.
        .env("OORT_LOG", "warn,oort::sink=debug")
        .env_remove("XDG_CACHE_HOME")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting oort under a file size limit");
    let log = collect_stderr(&mut child);
    let output = scratch.path().join("out/rows.jsonl");
    let size = || std::fs::metadata(&output).map_or(0, |m| m.len());
    // A write fails at the limit, and the batch is retried: twice, so that one retry failed too.
    wait_for("a write to fail twice", Duration::from_secs(60), || {
        log.lock()
            .unwrap()
            .matches("transient sink error, retrying")
            .count()
            >= 2
    });
    let before = scratch.read("out/rows.jsonl");
    assert!(
        before.len() as u64 <= LIMIT_BLOCKS * 512,
        "the limit did not hold: {} bytes",
        before.len()
    );
    assert!(
        before.is_empty() || before.ends_with('\n'),
        "a torn line is left while the batch is retried: {:?}",
        &before[before.len().saturating_sub(20)..]
    );
    assert!(
        child.try_wait().expect("oort's status").is_none(),
        "oort ended under the limit:\n{}",
        log.lock().unwrap()
    );
    let raised = std::process::Command::new("prlimit")
        .args(["--pid", &child.id().to_string(), "--fsize=unlimited"])
        .status()
        .expect("prlimit");
    assert!(raised.success());
    // The retries back off (up to 30 s apart): the next one writes the batch.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("oort's status").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "oort did not end with the limit raised (the file holds {} bytes):\n{}",
                size(),
                log.lock().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let run = finish(child, &log);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let summary: Value = serde_json::from_str(&run.stdout).expect("the JSON summary");
    let action = &summary["rules"][0]["actions"][0];
    assert_balanced(action);
    assert!(
        action["retries_total"].as_u64().unwrap_or(0) > 0,
        "no write failed: {action}"
    );

    let text = scratch.read("out/rows.jsonl");
    let torn: Vec<&str> = text
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).map_or(true, |v| v["n"].as_u64().is_none()))
        .collect();
    assert!(
        torn.is_empty(),
        "torn lines: {:?}",
        &torn[..torn.len().min(3)]
    );
    let rows: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(rows.len() as u64, TOTAL, "rows lost or written twice");
    assert!(
        rows.iter().copied().eq(0..TOTAL),
        "rows out of order, lost or written twice"
    );
}
