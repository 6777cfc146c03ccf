//! The command line itself: help, validate's report, the run summary and exit codes.

use crate::common::{Run, STDIN_STREAM, Scratch, numbered, wait_for};

fn demo() -> Scratch {
    let scratch = Scratch::new();
    scratch.write(
        "streams.sql",
        "CREATE STREAM demo () WITH (TYPE=\"file\", DATASOURCE=\"data/in.jsonl\");",
    );
    scratch.write("data/in.jsonl", &numbered(10));
    scratch.write(
        "rule.json",
        r#"{"id":"evens","sql":"SELECT n FROM demo WHERE n % 2 = 0",
            "actions":[{"file":{"path":"out/result.jsonl"}},{"counter":{}},{"nop":{}}]}"#,
    );
    scratch
}

#[test]
fn run_rule_prints_a_summary_and_exits_0() {
    let scratch = demo();
    let run = Run::from(
        scratch
            .oort(&["run-rule", "rule.json", "--streams", "streams.sql"])
            .output()
            .unwrap(),
    );
    run.assert_ok();
    assert!(
        run.stdout.contains("rule evens: stream demo: 10 rows read"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("5 out, 5 filtered"), "{}", run.stdout);
    let file_line = run
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("file_0"))
        .unwrap();
    let fields: Vec<&str> = file_line.split_whitespace().collect();
    assert_eq!(
        &fields[..6],
        ["file_0", "file", "5", "5", "0", "0"],
        "{file_line}"
    );
    assert_eq!(
        fields[8].len(),
        16,
        "the version is the module's hash: {file_line}"
    );
    assert_eq!(
        scratch.read("out/result.jsonl"),
        "{\"n\":0}\n{\"n\":2}\n{\"n\":4}\n{\"n\":6}\n{\"n\":8}\n"
    );
}

/// The end of the input leaves an event-time window open (eKuiper sends nothing more): the
/// summary says so, the exit code stays 0, and with `fireAtEnd` the window is sent instead.
#[test]
fn the_summary_counts_the_windows_left_open_at_the_end_of_the_input() {
    let scratch = Scratch::new();
    scratch.write(
        "streams.sql",
        "CREATE STREAM t (n bigint, ts bigint) WITH (TYPE=\"file\", DATASOURCE=\"in.jsonl\", \
         TIMESTAMP=\"ts\");",
    );
    scratch.write(
        "in.jsonl",
        "{\"n\":1,\"ts\":1000}\n{\"n\":2,\"ts\":12000}\n{\"n\":3,\"ts\":13000}\n",
    );
    let rule = |fire: bool| {
        serde_json::json!({"id": "w", "sql": "SELECT count(*) AS c FROM t GROUP BY TUMBLINGWINDOW(ss, 10)",
            "actions": [{"nop": {}}],
            "options": {"isEventTime": true, "lateTolerance": 500, "fireAtEnd": fire}})
        .to_string()
    };
    scratch.write("rule.json", &rule(false));
    let run = Run::from(
        scratch
            .oort(&["run-rule", "rule.json", "--streams", "streams.sql"])
            .output()
            .unwrap(),
    );
    run.assert_ok();
    // [0, 10000) fired; [10000, 20000) holds 12000, the watermark (12500) holds 13000.
    assert!(run.stdout.contains("query: 3 in, 1 out"), "{}", run.stdout);
    assert!(
        run.stdout.contains(
            "at the end, not sent: windows still open 1, rows held (by them and the watermark) 2, \
             as in eKuiper (rule option fireAtEnd sends the time windows at the end of \
             the input)"
        ),
        "{}",
        run.stdout
    );
    scratch.write("rule.json", &rule(true));
    let run = scratch.run_rule(&[]);
    run.assert_ok();
    let query = &run.summary()["rules"][0]["query"];
    assert_eq!(query["records_out_total"], 2, "{query}");
    assert_eq!(query["windows_open_at_end"], 0, "{query}");
    assert_eq!(query["rows_held_at_end"], 0, "{query}");
}

#[test]
fn the_json_summary_uses_ekuiper_metric_names() {
    let run = demo().run_rule(&[]);
    run.assert_ok();
    let summary = run.summary();
    assert_eq!(summary["rules"][0]["source"]["records_out_total"], 10);
    assert_eq!(summary["rules"][0]["query"]["filtered_total"], 5);
    for action in summary["rules"][0]["actions"].as_array().unwrap() {
        assert_eq!(action["records_in_total"], 5, "{action}");
        assert_eq!(action["records_out_total"], 5, "{action}");
    }
    assert_eq!(summary["all_delivered"], true);
}

#[test]
fn validate_checks_without_running() {
    let scratch = demo();
    let run = Run::from(
        scratch
            .oort(&["validate", "rule.json", "--streams", "streams.sql"])
            .output()
            .unwrap(),
    );
    run.assert_ok();
    assert!(
        run.stdout.contains("rule evens: ok (reads stream demo)"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("file_0 -> file ("), "{}", run.stdout);
    assert!(
        run.stdout.contains("nop_2 -> nop (built in)"),
        "{}",
        run.stdout
    );
    assert!(
        !scratch.path().join("out").exists(),
        "validate writes nothing"
    );
}

#[test]
fn stdin_rows_flow_through() {
    use std::io::Write;
    let scratch = Scratch::new();
    scratch.write("streams.sql", STDIN_STREAM);
    scratch.write(
        "rule.json",
        r#"{"id":"r","sql":"SELECT upper(name) AS name FROM s","actions":[{"file":{"path":"out/result.jsonl"}}]}"#,
    );
    let mut child = scratch
        .oort(&["run-rule", "rule.json", "--streams", "streams.sql"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"{\"name\":\"ada\"}\n{\"name\":\"bob\"}\n")
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        scratch.read("out/result.jsonl"),
        "{\"name\":\"ADA\"}\n{\"name\":\"BOB\"}\n"
    );
}

#[test]
fn functions_lists_the_sql_functions() {
    let out = Scratch::new().oort(&["functions"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("| abs |") || text.contains("| `abs` |"),
        "{text}"
    );
}

#[test]
fn a_run_that_loses_rows_exits_3() {
    let scratch = demo();
    scratch.write("data/in.jsonl", "{\"n\":1}\nnot json\n{\"n\":2}\n");
    let run = scratch.run_rule(&[]);
    assert_eq!(run.code, Some(3));
    let source = &run.summary()["rules"][0]["source"];
    assert_eq!(source["exceptions_total"], 1);
    assert!(
        source["last_exception"]
            .as_str()
            .unwrap()
            .contains("in.jsonl:2: invalid JSON"),
        "{source}"
    );
}

#[test]
fn a_large_json_lines_file_is_streamed_with_exact_line_numbers() {
    // Several read chunks, CRLF line ends, blank lines, a bad line far in, no final newline.
    let scratch = demo();
    let mut text = String::new();
    let total = 40_000;
    for n in 0..total {
        match n {
            25_000 => text.push_str("{\"n\": oops}\r\n"),
            30_000 => text.push_str("\r\n"),
            _ => text.push_str(&format!("{{\"n\":{n},\"pad\":\"{:020}\"}}\r\n", n)),
        }
    }
    text.push_str("{\"n\":40000}");
    scratch.write("data/in.jsonl", &text);
    let run = scratch.run_rule(&[]);
    assert_eq!(run.code, Some(3), "{}", run.stderr);
    let source = &run.summary()["rules"][0]["source"];
    assert_eq!(source["records_out_total"], total - 2 + 1, "{source}");
    assert_eq!(source["exceptions_total"], 1, "{source}");
    assert!(
        source["last_exception"]
            .as_str()
            .unwrap()
            .contains("in.jsonl:25001: invalid JSON"),
        "{source}"
    );
    let out = scratch.read("out/result.jsonl");
    let evens = out.lines().count();
    // Evens of 0..=40000 without 25000 and 30000.
    assert_eq!(evens, 20_001 - 2, "{}", &out[out.len() - 40..]);
    assert!(out.ends_with("{\"n\":40000}\n"));
}

#[test]
fn the_readme_sink_builds_and_runs() {
    let scratch = Scratch::new();
    oort_tests::install(
        &scratch.path().join("plugins"),
        "MySink",
        oort_tests::guests::MY_SINK,
        oort_tests::guests::MY_SINK_MANIFEST,
    )
    .unwrap();
    scratch.write(
        "streams.sql",
        "CREATE STREAM demo () WITH (TYPE=\"file\", DATASOURCE=\"in.jsonl\");",
    );
    scratch.write("in.jsonl", &numbered(2));
    scratch.write(
        "rule.json",
        r#"{"id":"readme","sql":"SELECT n FROM demo","actions":[{"mySink":{"prefix":">> "}}]}"#,
    );
    let (ok, stderr) = scratch.run_logged("info");
    assert!(ok, "{stderr}");
    assert!(stderr.contains(r#"sink: >> {"n":0}"#), "{stderr}");
    assert!(stderr.contains(r#"sink: >> {"n":1}"#), "{stderr}");

    // The README shows this very sink.
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("guests/my-sink/src/lib.rs"),
    )
    .unwrap();
    let body: String = source.lines().skip(1).map(|l| format!("{l}\n")).collect();
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .unwrap();
    assert!(
        readme.contains(&body),
        "the README's sink example differs from tests/guests/my-sink"
    );
    assert!(
        body.lines().filter(|l| !l.trim().is_empty()).count() < 20,
        "the example stays under 20 lines"
    );
}

#[test]
fn several_instances_share_an_action() {
    let scratch = Scratch::new();
    scratch.write(
        "streams.sql",
        "CREATE STREAM demo () WITH (TYPE=\"file\", DATASOURCE=\"in.jsonl\");",
    );
    scratch.write("in.jsonl", &numbered(50));
    scratch.write(
        "rule.json",
        r#"{"id":"r","sql":"SELECT n FROM demo","actions":[{"probe":{"journal":"out/j.txt","concurrency":2,"batchSize":5}}]}"#,
    );
    let run = scratch.run_rule(&[]);
    run.assert_ok();
    assert_eq!(run.action(0)["records_out_total"], 50);
    assert_eq!(run.action(0)["failed_total"], 0);
    assert_eq!(run.action(0)["batches_total"], 10);
    // Both instances were started (one after the other, before any row): the journal's first
    // lines. (Later lines may interleave: the two instances append to one file concurrently.)
    let journal = scratch.read("out/j.txt");
    let mut first: Vec<&str> = journal.lines().take(2).collect();
    first.sort();
    assert_eq!(
        first,
        ["open gen=0 inst=0", "open gen=0 inst=1"],
        "{journal}"
    );
}

#[test]
fn sigterm_stops_an_unbounded_source_and_flushes() {
    use std::io::Write;
    let scratch = Scratch::new();
    scratch.write("streams.sql", STDIN_STREAM);
    scratch.write(
        "rule.json",
        r#"{"id":"r","sql":"SELECT n FROM s","actions":[{"file":{"path":"out/result.jsonl"}}]}"#,
    );
    let mut child = scratch.spawn_rule(&["--json"]);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"{\"n\":1}\n{\"n\":2}\n").unwrap();
    stdin.flush().unwrap();
    // Wait until both rows are through, then stop it while stdin is still open.
    let out = scratch.path().join("out/result.jsonl");
    wait_for("both rows", std::time::Duration::from_secs(20), || {
        std::fs::read_to_string(&out).map_or(0, |t| t.lines().count()) >= 2
    });
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    drop(stdin);
    assert!(output.status.success(), "{:?}", output.status);
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["interrupted"], true);
    assert_eq!(summary["rules"][0]["actions"][0]["records_out_total"], 2);
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "{\"n\":1}\n{\"n\":2}\n"
    );
}

#[test]
fn the_readme_lists_every_sql_function() {
    let out = Scratch::new().oort(&["functions"]).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .unwrap();
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| `")).collect();
    assert!(rows.len() > 100, "{table}");
    for row in rows {
        assert!(readme.contains(row), "README lacks the function row {row}");
    }
}

#[test]
fn several_rule_files_a_folder_and_an_array_run_together() {
    let scratch = demo();
    let rule = |id: &str, n: u32| {
        format!(
            r#"{{"id":"{id}","sql":"SELECT n FROM demo WHERE n < {n}","actions":[{{"file":{{"path":"out/{id}.jsonl"}}}}]}}"#
        )
    };
    scratch.write("more/b.json", &rule("b", 2));
    scratch.write("more/c.json", &rule("c", 3));
    scratch.write(
        "array.json",
        &format!("[{}, {}]", rule("d", 4), rule("e", 5)),
    );
    // No `id`: the file name is the id.
    scratch.write(
        "lows.json",
        r#"{"sql":"SELECT n FROM demo WHERE n < 1","actions":[{"file":{"path":"out/lows.jsonl"}}]}"#,
    );
    let run = Run::from(
        scratch
            .oort(&[
                "run-rule",
                "rule.json",
                "more",
                "array.json",
                "lows.json",
                "-s",
                "streams.sql",
                "--json",
                "--log",
                "info",
            ])
            .output()
            .unwrap(),
    );
    run.assert_ok();
    let ids: Vec<_> = run.summary()["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["evens", "b", "c", "d", "e", "lows"]);
    // Relative paths in a rule's props start at its file's folder.
    for (path, rows) in [
        ("more/out/b.jsonl", 2),
        ("more/out/c.jsonl", 3),
        ("out/d.jsonl", 4),
        ("out/e.jsonl", 5),
        ("out/lows.jsonl", 1),
    ] {
        assert_eq!(scratch.read(path).lines().count(), rows, "{path}");
    }
    assert!(
        run.stderr
            .contains("the rule has no `id`: it is `lows`, after the file name"),
        "{}",
        run.stderr
    );

    // The same id twice in one run is refused, naming both files.
    scratch.write("more/dup.json", &rule("evens", 1));
    let run = Run::from(
        scratch
            .oort(&["run-rule", "rule.json", "more", "-s", "streams.sql"])
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("dup.json: rule `evens`: field `id`: a rule with this id is also in")
            && run.stderr.contains("rule.json"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_unbounded_run_logs_its_counters_periodically_and_on_sigusr1() {
    use std::io::Write;
    let scratch = Scratch::new();
    scratch.write("streams.sql", STDIN_STREAM);
    scratch.write(
        "rule.json",
        r#"{"id":"r","sql":"SELECT n FROM s","actions":[{"file":{"path":"out/result.jsonl"}}]}"#,
    );
    let spawn = |extra: &[&str]| {
        let mut args = vec![
            "run-rule",
            "rule.json",
            "-s",
            "streams.sql",
            "--log",
            "info",
        ];
        args.extend(extra);
        scratch
            .oort(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut child = spawn(&["--progress", "200ms"]);
    let log = crate::common::collect_stderr(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"{\"n\":1}\n{\"n\":2}\n").unwrap();
    stdin.flush().unwrap();
    let progress = "progress after";
    let with_rows = "rule r: 2 rows read, 2 out, 0 errors; file_0 2 in, 2 out, 0 failed";
    wait_for(
        "a periodic progress line with both rows",
        std::time::Duration::from_secs(20),
        || log.lock().unwrap().contains(with_rows),
    );
    let ticks = log.lock().unwrap().matches(progress).count();
    wait_for(
        "another periodic line",
        std::time::Duration::from_secs(20),
        || log.lock().unwrap().matches(progress).count() > ticks,
    );
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");

    // Without --progress nothing is logged until SIGUSR1 asks.
    let mut child = spawn(&[]);
    let log = crate::common::collect_stderr(&mut child);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"{\"n\":1}\n").unwrap();
    stdin.flush().unwrap();
    let out = scratch.path().join("out/result.jsonl");
    wait_for("the row", std::time::Duration::from_secs(20), || {
        std::fs::read_to_string(&out).is_ok_and(|t| t.lines().count() == 1)
    });
    assert!(
        !log.lock().unwrap().contains(progress),
        "{}",
        log.lock().unwrap()
    );
    let signalled = std::process::Command::new("kill")
        .args(["-USR1", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    wait_for(
        "the progress line SIGUSR1 asked for",
        std::time::Duration::from_secs(20),
        || log.lock().unwrap().contains("rule r: 1 rows read, 1 out"),
    );
    drop(stdin);
    assert!(child.wait().unwrap().success());
}
