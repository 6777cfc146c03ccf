//! The `oort:sink` versions: a component built against the frozen 0.1.0 WIT still loads and
//! runs beside current ones, and `oort sink inspect` says which version a component targets.

use oort_tests::guests;

use crate::common::{Run, Scratch, numbered};

fn file_stream(scratch: &Scratch, rows: usize) {
    scratch.write(
        "streams.sql",
        "CREATE STREAM s () WITH (TYPE=\"file\", DATASOURCE=\"data/in.jsonl\");",
    );
    scratch.write("data/in.jsonl", &numbered(rows));
}

#[test]
fn a_component_built_against_0_1_0_still_runs() {
    let scratch = Scratch::new();
    scratch.install("Legacy", guests::LEGACY_V010, guests::LEGACY_V010_MANIFEST);
    file_stream(&scratch, 7);
    scratch.write(
        "rule.json",
        r#"{"id":"old","sql":"SELECT n FROM s",
            "actions":[{"legacy":{"path":"out/old.jsonl"}},{"file":{"path":"out/new.jsonl"}}]}"#,
    );
    let run = scratch.run_rule(&[]);
    run.assert_ok();
    assert_eq!(run.action(0)["records_out_total"], 7, "{}", run.stdout);
    let old: Vec<serde_json::Value> = scratch
        .read("out/old.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(old.len(), 7);
    for (i, line) in old.iter().enumerate() {
        assert_eq!(line["wit"], "0.1.0");
        assert_eq!(line["m"]["n"], i);
    }
    assert_eq!(scratch.read("out/new.jsonl").lines().count(), 7);
}

#[test]
fn inspect_names_the_version_a_component_targets() {
    let scratch = Scratch::new();
    let inspect = |module: &str| {
        let run = Run::from(scratch.oort(&["sink", "inspect", module]).output().unwrap());
        run.assert_ok();
        run.stdout
    };
    let old = inspect(guests::LEGACY_V010);
    assert!(
        old.contains("wit:      oort:sink@0.1.0 (an older version"),
        "{old}"
    );
    assert!(old.contains("fits oort:sink/sink-world@0.1.0"), "{old}");
    let new = inspect(guests::FILE);
    assert!(
        new.contains("wit:      oort:sink@0.2.0 (the current version)"),
        "{new}"
    );
}
