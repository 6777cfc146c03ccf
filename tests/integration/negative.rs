//! Bad input gets a clear error naming the file, the field or the position, and exit code 1,
//! from both `oort validate` and `oort run-rule`. A sink module that is present but broken is
//! refused by `validate`; at run time it takes down its own action only (exit code 3, its
//! messages counted), not the rule.

use crate::common::{Run, Scratch};

const STREAMS: &str =
    "CREATE STREAM demo (n BIGINT) WITH (TYPE=\"file\", DATASOURCE=\"in.jsonl\");\n";

fn case(sql: &str, action: &str) -> Scratch {
    let scratch = Scratch::new();
    scratch.write("streams.sql", STREAMS);
    scratch.write("in.jsonl", "{\"n\":1}\n");
    scratch.write(
        "rule.json",
        &format!(
            r#"{{"id":"bad","sql":{},"actions":[{action}]}}"#,
            serde_json::json!(sql)
        ),
    );
    scratch
}

/// Runs both `validate` and `run-rule`; both must fail with every expected fragment.
fn fails_with(scratch: &Scratch, fragments: &[&str]) {
    let validate = Run::from(
        scratch
            .oort(&["validate", "rule.json", "--streams", "streams.sql"])
            .output()
            .unwrap(),
    );
    let run = scratch.run_rule(&[]);
    for (what, outcome) in [("validate", &validate), ("run-rule", &run)] {
        assert_eq!(
            outcome.code,
            Some(1),
            "{what} must fail:\n{}{}",
            outcome.stdout,
            outcome.stderr
        );
        for fragment in fragments {
            assert!(
                outcome.stderr.contains(fragment),
                "{what}: the error lacks {fragment:?}:\n{}",
                outcome.stderr
            );
        }
    }
}

/// `validate` refuses a broken module; `run-rule` runs the rule without that action: it logs
/// the reason, counts the action's message as failed and exits 3.
fn broken_module(scratch: &Scratch, fragments: &[&str]) {
    let validate = Run::from(
        scratch
            .oort(&["validate", "rule.json", "--streams", "streams.sql"])
            .output()
            .unwrap(),
    );
    assert_eq!(
        validate.code,
        Some(1),
        "validate must fail:\n{}",
        validate.stderr
    );
    let run = scratch.run_rule(&[]);
    assert_eq!(
        run.code,
        Some(3),
        "run-rule must exit 3:\n{}{}",
        run.stdout,
        run.stderr
    );
    for (what, text) in [("validate", &validate.stderr), ("run-rule", &run.stderr)] {
        for fragment in fragments {
            assert!(
                text.contains(fragment),
                "{what}: the error lacks {fragment:?}:\n{text}"
            );
        }
    }
    let action = run.action(0);
    assert_eq!(action["failed_total"], 1, "{action}");
    assert_eq!(action["records_out_total"], 0, "{action}");
    assert_eq!(action["balanced"], true, "{action}");
    let last = action["last_exception"].as_str().unwrap_or_default();
    assert!(last.contains("unavailable"), "{last}");
}

#[test]
fn a_missing_plugin_names_the_files_looked_for() {
    let scratch = case("SELECT n FROM demo", r#"{"mySink":{}}"#);
    fails_with(
        &scratch,
        &[
            "action `mySink_0`: unknown sink `mySink`",
            "MySink.wasm",
            "mySink.wasm",
        ],
    );
}

#[test]
fn a_malformed_module_is_refused() {
    let scratch = case("SELECT n FROM demo", r#"{"broken":{}}"#);
    scratch.write("plugins/sinks/Broken.wasm", "this is not wasm");
    broken_module(&scratch, &["Broken.wasm: not a WebAssembly file"]);

    // A component cut in half.
    let bytes = std::fs::read(oort_tests::guests::FILE).unwrap();
    std::fs::write(
        scratch.path().join("plugins/sinks/Broken.wasm"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    broken_module(&scratch, &["Broken.wasm: invalid component"]);

    // A core module (the smallest one) instead of a component.
    std::fs::write(
        scratch.path().join("plugins/sinks/Broken.wasm"),
        b"\0asm\x01\0\0\0",
    )
    .unwrap();
    broken_module(&scratch, &["a core WebAssembly module, not a component"]);
}

#[test]
fn a_component_of_the_wrong_world_is_refused() {
    let scratch = case("SELECT n FROM demo", r#"{"notASink":{}}"#);
    broken_module(
        &scratch,
        &[
            "NotASink.wasm: not an oort:sink component",
            "oort:sink/sink",
        ],
    );
}

#[test]
fn bad_sink_props_are_reported_by_the_sink() {
    let scratch = case(
        "SELECT n FROM demo",
        r#"{"file":{"path":"out/r.txt","fileType":"xml"}}"#,
    );
    fails_with(
        &scratch,
        &[
            "action `file_0`: configure failed: invalid config",
            "unknown variant `xml`",
        ],
    );
    let scratch = case("SELECT n FROM demo", r#"{"file":{"pth":"out/r.txt"}}"#);
    fails_with(
        &scratch,
        &[
            "action `file_0`",
            "prop `path` must be a string naming a file",
            "(given: `pth`; did you mean `path`?)",
        ],
    );
    let scratch = case(
        "SELECT n FROM demo",
        r#"{"file":{"path":"out/r.txt","sendSingle":"yes"}}"#,
    );
    fails_with(
        &scratch,
        &["action `file_0`: prop `sendSingle`: expected true or false"],
    );
}

#[test]
fn bad_props_name_the_prop_value_and_type_and_suggest_a_spelling() {
    let scratch = case("SELECT n FROM demo", r#"{"mqtt":{"topic":"t","qos":"1"}}"#);
    fails_with(
        &scratch,
        &[
            r#"action `mqtt_0`: props of the `mqtt` sink: prop `qos`: invalid type: string "1", expected u8"#,
        ],
    );
    let scratch = case(
        "SELECT n FROM demo",
        r#"{"mqtt":{"topic":"t","retaind":true}}"#,
    );
    fails_with(
        &scratch,
        &[
            "action `mqtt_0`",
            "unknown field `retaind`",
            "(did you mean `retained`?)",
        ],
    );
    let scratch = case(
        "SELECT n FROM demo",
        r#"{"file":{"path":"out/r.txt","fileTyp":"lines"}}"#,
    );
    fails_with(
        &scratch,
        &[
            "action `file_0`: configure failed: invalid config: prop `fileTyp`",
            "(did you mean `fileType`?)",
        ],
    );
    let scratch = case(
        "SELECT n FROM demo",
        r#"{"file":{"path":"out/r.txt","sendSingel":true}}"#,
    );
    fails_with(
        &scratch,
        &[
            "action `file_0`",
            "`sendSingel` is not a common prop: did you mean `sendSingle`?",
        ],
    );
}

#[test]
fn bad_sql_gives_the_position() {
    let scratch = case("SELECT n FROM demo WHERE n >", r#"{"log":{}}"#);
    fails_with(
        &scratch,
        &["rule.json: rule `bad`: field `sql`: line 1, column"],
    );
    let scratch = case("SELECT nope FROM demo", r#"{"log":{}}"#);
    fails_with(
        &scratch,
        &["field `sql`: line 1, column 8: unknown field `nope` in stream `demo`"],
    );
    let scratch = case("SELECT frobnicate(n) FROM demo", r#"{"log":{}}"#);
    fails_with(
        &scratch,
        &["line 1, column 8: unknown function `frobnicate`"],
    );
}

#[test]
fn an_unknown_stream_is_named() {
    let scratch = case("SELECT n FROM nowhere", r#"{"log":{}}"#);
    fails_with(&scratch, &["line 1, column 15: unknown stream `nowhere`"]);
}

#[test]
fn a_broken_rule_file_names_the_field() {
    let scratch = case("SELECT n FROM demo", r#"{"log":{}}"#);
    scratch.write(
        "rule.json",
        r#"{"id":"bad","sql":"SELECT n FROM demo","actions":[{"log":{}}],"optoins":{}}"#,
    );
    fails_with(&scratch, &["rule.json: the rule: unknown field `optoins`"]);
    scratch.write("rule.json", r#"{"id":"bad","sql":"SELECT n FROM demo","actions":[{"log":{}}],"options":{"bufferLenght":5}}"#);
    fails_with(
        &scratch,
        &["field `options.bufferLenght`: unknown rule option"],
    );
}

#[test]
fn a_broken_stream_definition_gives_the_position() {
    let scratch = case("SELECT n FROM demo", r#"{"log":{}}"#);
    scratch.write(
        "streams.sql",
        "CREATE STREAM demo (n BIGNUM) WITH (TYPE=\"file\", DATASOURCE=\"in.jsonl\")",
    );
    fails_with(
        &scratch,
        &["streams.sql: line 1, column 23: unknown column type `BIGNUM`"],
    );
    scratch.write(
        "streams.sql",
        "CREATE STREAM demo () WITH (TYPE=\"file\", DATASOURCE=\"missing.jsonl\")",
    );
    fails_with(&scratch, &["stream `demo`", "missing.jsonl does not exist"]);
}
