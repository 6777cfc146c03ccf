//! The sandbox and the delivery rules, checked with the `probe` test sink: what a sink may
//! reach, and what the host does with each way a sink can fail.

use serde_json::{Value, json};

use crate::common::{Scratch, numbered};

const STREAMS: &str = "CREATE STREAM demo () WITH (TYPE=\"file\", DATASOURCE=\"in.jsonl\");\n";

/// A scratch folder with 4 input rows and a rule sending them one per batch to the probe.
fn probe_case(props: Value) -> Scratch {
    let scratch = Scratch::new();
    scratch.write("streams.sql", STREAMS);
    scratch.write("in.jsonl", &numbered(4));
    let mut props = props;
    props["journal"] = json!("out/journal.txt");
    props["batchSize"] = json!(1);
    props["retryInterval"] = json!(1);
    let rule = json!({"id": "r", "sql": "SELECT n FROM demo", "actions": [{"probe": props}]});
    scratch.write("rule.json", &rule.to_string());
    scratch
}

#[test]
fn a_sink_reaches_only_the_files_its_props_name() {
    let scratch = probe_case(json!({}));
    scratch.write("secret.txt", "top secret");
    scratch.write("peek.txt", "you may read me");
    let secret = scratch.path().join("secret.txt").display().to_string();
    let sibling = scratch
        .path()
        .join("out")
        .join("other.txt")
        .display()
        .to_string();
    std::fs::create_dir_all(scratch.path().join("out")).unwrap();
    std::fs::write(&sibling, "not granted either").unwrap();
    let rule = json!({"id": "r", "sql": "SELECT n FROM demo", "actions": [{"probe": {
        "journal": "out/journal.txt",
        "peek": "peek.txt",
        "escape": ["/etc/passwd", secret, sibling, "/"]
    }}]});
    scratch.write("rule.json", &rule.to_string());
    scratch.run_rule(&[]).assert_ok();
    let journal = scratch.read("out/journal.txt");
    for path in ["/etc/passwd", &secret, &sibling] {
        assert!(
            journal.contains(&format!("escape {path} refused")),
            "{path} must be refused:\n{journal}"
        );
    }
    assert!(
        !journal.contains("opened gen"),
        "nothing ungranted opens:\n{journal}"
    );
    assert!(
        journal.contains("peek read 15 bytes"),
        "a read grant reads:\n{journal}"
    );
    assert!(
        journal.contains("peek-write refused"),
        "a read grant does not write:\n{journal}"
    );
}

#[test]
fn a_trapping_instance_is_replaced_and_the_batch_delivered_again() {
    let scratch =
        probe_case(json!({"failPhase": "collect", "failKind": "trap", "failGenerations": 1}));
    let run = scratch.run_rule(&[]);
    run.assert_ok();
    let action = run.action(0);
    assert_eq!(action["records_out_total"], 4);
    assert_eq!(action["failed_total"], 0);
    assert_eq!(action["restarts_total"], 1);
    let journal = scratch.read("out/journal.txt");
    assert!(journal.contains("open gen=0"), "{journal}");
    assert!(journal.contains("open gen=1"), "{journal}");
    assert_eq!(journal.matches("collect n=1").count(), 4, "{journal}");
    assert!(
        journal
            .lines()
            .filter(|l| l.starts_with("collect"))
            .all(|l| l.ends_with("gen=1 inst=0")),
        "{journal}"
    );
}

#[test]
fn transient_errors_are_retried_until_delivered() {
    let scratch =
        probe_case(json!({"failPhase": "collect", "failKind": "transient", "failEvery": 2}));
    let run = scratch.run_rule(&[]);
    run.assert_ok();
    let action = run.action(0);
    assert_eq!(action["records_out_total"], 4);
    assert_eq!(action["failed_total"], 0);
    assert!(action["retries_total"].as_u64().unwrap() >= 2, "{action}");
}

#[test]
fn rejected_batches_are_counted_as_failed() {
    let scratch = probe_case(json!({"failPhase": "collect", "failKind": "rejected"}));
    let run = scratch.run_rule(&[]);
    assert_eq!(
        run.code,
        Some(3),
        "undelivered rows give exit 3:\n{}",
        run.stderr
    );
    let action = run.action(0);
    assert_eq!(action["records_out_total"], 0);
    assert_eq!(action["failed_total"], 4);
    assert_eq!(action["retries_total"], 0);
    assert!(
        action["last_exception"]
            .as_str()
            .unwrap()
            .contains("rejected: probe fails in collect")
    );
    assert_eq!(run.summary()["all_delivered"], false);
}

#[test]
fn a_poison_batch_is_given_up_after_three_traps() {
    let scratch = probe_case(json!({"failPhase": "collect", "failKind": "trap"}));
    let run = scratch.run_rule(&[]);
    assert_eq!(run.code, Some(3));
    let action = run.action(0);
    assert_eq!(action["failed_total"], 4);
    assert_eq!(
        action["restarts_total"], 12,
        "three traps per batch: {action}"
    );
    assert!(
        action["last_exception"]
            .as_str()
            .unwrap()
            .contains("poison batch")
    );
}

#[test]
fn a_hanging_call_is_interrupted_at_its_deadline() {
    let scratch =
        probe_case(json!({"failPhase": "collect", "failKind": "hang", "failGenerations": 1}));
    let run = scratch.run_rule(&["--call-timeout-ms", "300"]);
    run.assert_ok();
    let action = run.action(0);
    assert_eq!(action["records_out_total"], 4);
    assert_eq!(action["restarts_total"], 1);
    assert!(
        action["last_exception"]
            .as_str()
            .unwrap()
            .contains("deadline"),
        "{action}"
    );
}

#[test]
fn invalid_config_stops_the_rule_before_a_row_is_read() {
    let scratch = probe_case(json!({"failPhase": "configure", "failKind": "invalid-config"}));
    let run = scratch.run_rule(&[]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains(
            "action `probe_0`: configure failed: invalid config: probe fails in configure"
        ),
        "{}",
        run.stderr
    );
    assert!(
        !scratch.path().join("out/journal.txt").exists(),
        "nothing ran"
    );
}

#[test]
fn a_sink_that_cannot_open_stops_the_rule() {
    let scratch = probe_case(json!({"failPhase": "open", "failKind": "rejected"}));
    let run = scratch.run_rule(&[]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .contains("open failed: rejected: probe fails in open"),
        "{}",
        run.stderr
    );
}

#[test]
fn guest_output_is_logged_with_rule_and_action() {
    let scratch = probe_case(json!({}));
    let (_, stderr) = scratch.run_logged("info");
    let line = stderr
        .lines()
        .find(|l| l.contains("probe opened (generation 0)"))
        .unwrap_or_else(|| panic!("the guest's stdout is logged:\n{stderr}"));
    assert!(
        line.contains("rule=\"r\"") || line.contains("rule=r"),
        "{line}"
    );
    assert!(line.contains("probe_0"), "{line}");
}

#[test]
fn an_explicit_grant_in_the_rule_opens_exactly_that_file() {
    let scratch = probe_case(json!({}));
    scratch.write("extra.txt", "granted by the operator");
    scratch.write("other.txt", "not granted");
    let extra = scratch.path().join("extra.txt").display().to_string();
    let other = scratch.path().join("other.txt").display().to_string();
    let rule = json!({"id": "r", "sql": "SELECT n FROM demo", "actions": [{"probe": {
        "journal": "out/journal.txt",
        "escape": [extra, other],
        "grants": {"files": [{"path": "extra.txt", "access": "read"}]}
    }}]});
    scratch.write("rule.json", &rule.to_string());
    scratch.run_rule(&[]).assert_ok();
    let journal = scratch.read("out/journal.txt");
    assert!(
        journal.contains(&format!("escape {extra} opened")),
        "{journal}"
    );
    assert!(
        journal.contains(&format!("escape {other} refused")),
        "{journal}"
    );

    // Grants are for sandboxed sinks: a built-in sink refuses them, naming the prop.
    let rule = json!({"id": "r", "sql": "SELECT n FROM demo", "actions": [{"log": {
        "grants": {"sockets": ["127.0.0.1:1"]}
    }}]});
    scratch.write("rule.json", &rule.to_string());
    let run = scratch.run_rule(&[]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("prop `grants`"), "{}", run.stderr);
}
