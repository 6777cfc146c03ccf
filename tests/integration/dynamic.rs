//! Dynamic props as eKuiper has them, end to end: the `file` sink's templated `path` (one file
//! per distinct value, inside the folder the grant covers), its rolling props, gzip and zstd.

use std::collections::BTreeSet;

use crate::common::Scratch;

/// A file stream of `rows` rows `{"n": i, "device": "d<i % devices>"}`.
fn devices(scratch: &Scratch, rows: usize, devices: usize) {
    scratch.write(
        "streams.sql",
        "CREATE STREAM s () WITH (TYPE=\"file\", DATASOURCE=\"data/in.jsonl\");",
    );
    let lines: String = (0..rows)
        .map(|i| format!("{{\"n\":{i},\"device\":\"d{}\"}}\n", i % devices))
        .collect();
    scratch.write("data/in.jsonl", &lines);
}

/// The file names in `rel`, without the sequence markers.
fn files_in(scratch: &Scratch, rel: &str) -> BTreeSet<String> {
    std::fs::read_dir(scratch.path().join(rel))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".seq"))
        .collect()
}

fn ns(text: &str) -> Vec<u64> {
    text.lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn a_templated_path_writes_one_file_per_value() {
    let scratch = Scratch::new();
    // More devices than the sink keeps open at once: closed files are appended to when their
    // device comes again.
    devices(&scratch, 120, 20);
    scratch.write(
        "rule.json",
        r#"{"id":"dyn","sql":"SELECT n, device FROM s",
            "actions":[{"file":{"path":"out/{{.device}}.jsonl","batchSize":7}}]}"#,
    );
    let run = scratch.run_rule(&[]);
    run.assert_ok();
    assert_eq!(run.action(0)["records_out_total"], 120, "{}", run.stdout);
    let expected: BTreeSet<String> = (0..20).map(|d| format!("d{d}.jsonl")).collect();
    assert_eq!(files_in(&scratch, "out"), expected);
    for d in 0..20u64 {
        let want: Vec<u64> = (0..120).filter(|n| n % 20 == d).collect();
        assert_eq!(ns(&scratch.read(&format!("out/d{d}.jsonl"))), want, "d{d}");
    }
    // A second run starts each file afresh.
    scratch.run_rule(&[]).assert_ok();
    assert_eq!(ns(&scratch.read("out/d3.jsonl")), [3, 23, 43, 63, 83, 103]);
}

#[test]
fn a_path_evaluating_outside_the_folder_is_dead_lettered_not_written() {
    let scratch = Scratch::new();
    scratch.write(
        "streams.sql",
        "CREATE STREAM s () WITH (TYPE=\"file\", DATASOURCE=\"data/in.jsonl\");",
    );
    scratch.write(
        "data/in.jsonl",
        "{\"n\":0,\"device\":\"a\"}\n{\"n\":1,\"device\":\"../escape\"}\n{\"n\":2,\"device\":\"b\"}\n",
    );
    scratch.write(
        "rule.json",
        r#"{"id":"esc","sql":"SELECT n, device FROM s",
            "actions":[{"file":{"path":"out/{{.device}}.jsonl","batchSize":1,
                                "deadLetter":"dead/letters.jsonl"}}]}"#,
    );
    let run = scratch.run_rule(&[]);
    let action = run.action(0);
    assert_eq!(action["records_out_total"], 2, "{action}");
    assert_eq!(action["dead_letter_total"], 1, "{action}");
    let dead = scratch.read("dead/letters.jsonl");
    assert!(
        dead.contains("prop `path`") && dead.contains("not a file directly in"),
        "{dead}"
    );
    assert!(dead.contains("escape"), "{dead}");
    assert!(!scratch.path().join("escape.jsonl").exists());
    assert_eq!(
        files_in(&scratch, "out"),
        BTreeSet::from(["a.jsonl".to_string(), "b.jsonl".to_string()])
    );
}

#[test]
fn a_template_in_the_folder_part_is_refused_naming_the_prop() {
    let scratch = Scratch::new();
    devices(&scratch, 2, 2);
    scratch.write(
        "rule.json",
        r#"{"id":"bad","sql":"SELECT n, device FROM s",
            "actions":[{"file":{"path":"out/{{.device}}/data.jsonl"}}]}"#,
    );
    let run = scratch.run_rule(&[]);
    assert_ne!(run.code, Some(0), "{}", run.stdout);
    assert!(
        run.stderr.contains("prop `path`")
            && run.stderr.contains("holds a template in its folder part"),
        "{}",
        run.stderr
    );
}

#[test]
fn rolling_by_count_names_each_file_with_its_time() {
    let scratch = Scratch::new();
    devices(&scratch, 25, 1);
    scratch.write(
        "rule.json",
        r#"{"id":"roll","sql":"SELECT n FROM s",
            "actions":[{"file":{"path":"out/r.jsonl","rollingCount":10,
                                "rollingNamePattern":"suffix"}}]}"#,
    );
    scratch.run_rule(&[]).assert_ok();
    let files: Vec<String> = files_in(&scratch, "out").into_iter().collect();
    assert_eq!(files.len(), 3, "{files:?}");
    let mut all = Vec::new();
    for (i, name) in files.iter().enumerate() {
        let stamp = name
            .strip_prefix("r-")
            .and_then(|n| n.strip_suffix(".jsonl"))
            .unwrap_or_else(|| panic!("{name}"));
        assert!(stamp.parse::<u64>().unwrap() > 1_600_000_000_000, "{name}");
        let rows = ns(&scratch.read(&format!("out/{name}")));
        assert_eq!(rows.len(), if i < 2 { 10 } else { 5 }, "{name}");
        all.extend(rows);
    }
    assert_eq!(all, (0..25).collect::<Vec<_>>());
}

#[test]
fn gzip_files_read_back_whole_with_a_templated_path_and_prefix_rolling() {
    let scratch = Scratch::new();
    devices(&scratch, 40, 2);
    scratch.write(
        "rule.json",
        r#"{"id":"gz","sql":"SELECT n, device FROM s",
            "actions":[{"file":{"path":"out/{{.device}}.jsonl.gz","rollingCount":15,
                                "rollingNamePattern":"prefix","compressAlgorithm":"gzip",
                                "batchSize":4}}]}"#,
    );
    scratch.run_rule(&[]).assert_ok();
    let files = files_in(&scratch, "out");
    assert_eq!(files.len(), 4, "two files per device: {files:?}");
    for d in 0..2u64 {
        let mut rows = Vec::new();
        for name in files
            .iter()
            .filter(|n| n.ends_with(&format!("-d{d}.jsonl.gz")))
        {
            let out = std::process::Command::new("gzip")
                .args(["-dc"])
                .arg(scratch.path().join("out").join(name))
                .output()
                .unwrap();
            assert!(out.status.success(), "{name}: {out:?}");
            rows.extend(ns(&String::from_utf8(out.stdout).unwrap()));
        }
        assert_eq!(rows, (0..40).filter(|n| n % 2 == d).collect::<Vec<_>>());
    }
}

#[test]
fn zstd_files_read_back_whole_across_batches_and_reopening() {
    let scratch = Scratch::new();
    devices(&scratch, 40, 2);
    // Rolling by count without a name pattern closes each file after 7 messages and reopens
    // it for the next: each batch is one frame, and reopening appends more.
    scratch.write(
        "rule.json",
        r#"{"id":"zs","sql":"SELECT n, device FROM s",
            "actions":[{"file":{"path":"out/{{.device}}.jsonl.zst","rollingCount":7,
                                "compressAlgorithm":"zstd","batchSize":4}}]}"#,
    );
    scratch.run_rule(&[]).assert_ok();
    let files = files_in(&scratch, "out");
    assert_eq!(files.len(), 2, "one file per device: {files:?}");
    for d in 0..2u64 {
        let path = scratch.path().join("out").join(format!("d{d}.jsonl.zst"));
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes[..4], [0x28, 0xb5, 0x2f, 0xfd], "zstd's magic number");
        let out = std::process::Command::new("zstd")
            .args(["-dc"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: {out:?}", path.display());
        let rows = ns(&String::from_utf8(out.stdout).unwrap());
        assert_eq!(rows, (0..40).filter(|n| n % 2 == d).collect::<Vec<_>>());
    }
    // A compressed JSON array could not be reopened: refused, as with gzip.
    scratch.write(
        "rule.json",
        r#"{"id":"zs","sql":"SELECT n FROM s",
            "actions":[{"file":{"path":"out/all.json","fileType":"json","compressAlgorithm":"zstd"}}]}"#,
    );
    let run = scratch.run_rule(&[]);
    assert_ne!(run.code, Some(0), "{}", run.stdout);
    assert!(
        run.stderr
            .contains("`compressAlgorithm` zstd needs `fileType` lines or csv"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_unknown_compression_is_refused_naming_it() {
    let scratch = Scratch::new();
    devices(&scratch, 2, 1);
    scratch.write(
        "rule.json",
        r#"{"id":"z","sql":"SELECT n FROM s",
            "actions":[{"file":{"path":"out/z.jsonl","compressAlgorithm":"lz4"}}]}"#,
    );
    let run = scratch.run_rule(&[]);
    assert_ne!(run.code, Some(0), "{}", run.stdout);
    assert!(
        run.stderr.contains("`compressAlgorithm` \"lz4\""),
        "{}",
        run.stderr
    );
}
