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

fn tag(action: &str) -> oort::host::InstanceTag {
    oort::host::InstanceTag {
        rule: std::sync::Arc::from("exactly-once"),
        action: std::sync::Arc::from(action),
        instance: 0,
        dropped_logs: std::sync::Arc::default(),
    }
}

/// The shipped file sink's manifest (the built module has none beside it).
fn file_manifest() -> oort::host::Manifest {
    serde_json::from_str(&std::fs::read_to_string(guests::FILE_MANIFEST).unwrap()).unwrap()
}

/// The shipped file sink loaded in a host of its own, writing to `path` in `scratch`: what
/// the tests that drive its instances by hand start from.
struct FileSink {
    host: oort::host::SinkHost,
    plugin: std::sync::Arc<oort::host::Plugin>,
    grants: oort::host::Grants,
    props: String,
}

impl FileSink {
    fn new(scratch: &Scratch, path: &str) -> Self {
        let host = oort::host::SinkHost::new(oort::host::HostConfig {
            max_instances: 0,
            ..oort::host::HostConfig::default()
        })
        .unwrap();
        let plugin = host.load(std::path::Path::new(guests::FILE)).unwrap();
        let mut props = serde_json::Map::new();
        props.insert("path".into(), path.into());
        let grants =
            oort::host::Grants::resolve(&file_manifest(), &mut props, scratch.path(), true)
                .unwrap();
        let props = serde_json::Value::Object(props).to_string();
        Self {
            host,
            plugin,
            grants,
            props,
        }
    }
}

/// The `n` of each line of the file at `rel` in `scratch`, in order.
fn numbers_in(scratch: &Scratch, rel: &str) -> Vec<u64> {
    scratch
        .read(rel)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

fn numbered_batch(sequence: u64, rows: std::ops::Range<u32>) -> oort::sink::Batch {
    let mut batch = oort::sink::Batch::new();
    for n in rows {
        batch.push(format!("{{\"n\":{n}}}").as_bytes(), 0);
    }
    batch.set_sequence(sequence);
    batch
}

/// The host's side of a crash between the sink's write and its acknowledgement: the file sink
/// wrote batch 2, the acknowledgement was lost (the host knows only batch 1 delivered), and a
/// fresh instance gets batch 2 again, then batch 3. Batch 2 is in the file once.
#[test]
fn the_file_sink_skips_a_batch_redelivered_after_a_lost_acknowledgement() {
    let scratch = Scratch::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let FileSink {
            host,
            plugin,
            grants,
            props,
        } = FileSink::new(&scratch, "out/once.jsonl");
        let context = |generation| oort::host::bindings::WitContext {
            rule_id: "exactly-once".into(),
            action: "file_0".into(),
            instance: 0,
            format: "json".into(),
            generation,
        };

        let mut first = host
            .instantiate(&plugin, tag("first"), &grants)
            .await
            .unwrap();
        first.configure(&context(0), &props).await.unwrap();
        first.open(None).await.unwrap();
        first
            .collect(numbered_batch(1, 0..2).as_wit())
            .await
            .unwrap();
        first
            .collect(numbered_batch(2, 2..4).as_wit())
            .await
            .unwrap();
        // Killed here: batch 2 is written, its acknowledgement never reached the host; and
        // batch 3 was being written: its message is in the file, the marker still says 2.
        drop(first);
        std::fs::OpenOptions::new()
            .append(true)
            .open(scratch.path().join("out/once.jsonl"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"n\":4}\n"))
            .unwrap();

        let mut second = host
            .instantiate(&plugin, tag("second"), &grants)
            .await
            .unwrap();
        second.configure(&context(1), &props).await.unwrap();
        second.open(Some(1)).await.unwrap();
        second
            .collect(numbered_batch(2, 2..4).as_wit())
            .await
            .unwrap();
        second
            .collect(numbered_batch(3, 4..5).as_wit())
            .await
            .unwrap();
        second.close().await.unwrap();

        // The next run continues the numbering (its action cache kept it): the file goes on.
        let mut next_run = host
            .instantiate(&plugin, tag("next"), &grants)
            .await
            .unwrap();
        next_run.configure(&context(0), &props).await.unwrap();
        next_run.open(Some(3)).await.unwrap();
        next_run
            .collect(numbered_batch(3, 4..5).as_wit())
            .await
            .unwrap();
        next_run
            .collect(numbered_batch(1027, 5..6).as_wit())
            .await
            .unwrap();
        next_run.close().await.unwrap();
    });
    let rows = numbers_in(&scratch, "out/once.jsonl");
    assert_eq!(rows, [0, 1, 2, 3, 4, 5], "no batch twice, none lost");

    // A run whose numbering starts afresh starts the file (and the marker) afresh too.
    rt.block_on(async {
        let FileSink {
            host,
            plugin,
            grants,
            props,
        } = FileSink::new(&scratch, "out/once.jsonl");
        let mut fresh = host
            .instantiate(&plugin, tag("fresh"), &grants)
            .await
            .unwrap();
        let context = oort::host::bindings::WitContext {
            rule_id: "exactly-once".into(),
            action: "file_0".into(),
            instance: 0,
            format: "json".into(),
            generation: 0,
        };
        fresh.configure(&context, &props).await.unwrap();
        fresh.open(None).await.unwrap();
        fresh
            .collect(numbered_batch(1, 7..8).as_wit())
            .await
            .unwrap();
        fresh.close().await.unwrap();
    });
    assert_eq!(scratch.read("out/once.jsonl").trim(), r#"{"n":7}"#);
}

/// A crash between the first batch's write and its marker: the marker a fresh run wrote when it
/// started the file still says "nothing, at length 0", and the restarted run (its numbering
/// continued: nothing acknowledged yet) gets batch 1 again. The file is cut back to length 0
/// first, so batch 1 is in it once.
#[test]
fn the_file_sink_cuts_an_unmarked_first_batch_back_to_the_empty_file() {
    let scratch = Scratch::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let FileSink {
            host,
            plugin,
            grants,
            props,
        } = FileSink::new(&scratch, "out/first.jsonl");
        let context = oort::host::bindings::WitContext {
            rule_id: "exactly-once".into(),
            action: "file_0".into(),
            instance: 0,
            format: "json".into(),
            generation: 0,
        };
        let mut first = host
            .instantiate(&plugin, tag("first"), &grants)
            .await
            .unwrap();
        first.configure(&context, &props).await.unwrap();
        first.open(None).await.unwrap();
        // Killed while writing batch 1: its rows reached the file, its marker did not.
        drop(first);
        std::fs::OpenOptions::new()
            .append(true)
            .open(scratch.path().join("out/first.jsonl"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"n\":0}\n{\"n\":1}\n"))
            .unwrap();

        let mut restarted = host
            .instantiate(&plugin, tag("restarted"), &grants)
            .await
            .unwrap();
        restarted.configure(&context, &props).await.unwrap();
        restarted.open(Some(0)).await.unwrap();
        for (sequence, rows) in [(1, 0..2), (2, 2..4)] {
            restarted
                .collect(numbered_batch(sequence, rows).as_wit())
                .await
                .unwrap();
        }
        restarted.close().await.unwrap();
    });
    let rows = numbers_in(&scratch, "out/first.jsonl");
    assert_eq!(rows, [0, 1, 2, 3], "batch 1 once");
}

#[test]
fn a_dynamic_prop_reaches_the_sink_evaluated_for_each_message() {
    let scratch = Scratch::new();
    scratch.install(
        "Versioned",
        guests::VERSIONED_V1,
        guests::VERSIONED_V1_MANIFEST,
    );
    scratch.write(
        "streams.sql",
        "CREATE STREAM s () WITH (TYPE=\"file\", DATASOURCE=\"data/in.jsonl\");",
    );
    scratch.write(
        "data/in.jsonl",
        "{\"n\":0,\"device\":\"a\"}\n{\"n\":1,\"device\":\"b\"}\n{\"n\":2,\"device\":\"a\"}\n",
    );
    scratch.write(
        "rule.json",
        r#"{"id":"dyn","sql":"SELECT n, device FROM s",
            "actions":[{"versioned":{"path":"out/d.jsonl","tag":"{{.device}}-{{.n}}.csv"}}]}"#,
    );
    scratch.run_rule(&[]).assert_ok();
    let tags: Vec<String> = scratch
        .read("out/d.jsonl")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["tag"].as_str().unwrap_or("<none>").to_string()
        })
        .collect();
    assert_eq!(tags, ["a-0.csv", "b-1.csv", "a-2.csv"]);
}

#[test]
fn a_template_in_a_prop_that_is_not_dynamic_is_refused() {
    let scratch = Scratch::new();
    file_stream(&scratch, 2);
    scratch.write(
        "rule.json",
        r#"{"id":"bad","sql":"SELECT n FROM s",
            "actions":[{"log":{}},{"file":{"path":"out/x.csv","fileType":"{{.kind}}"}}]}"#,
    );
    let run = scratch.run_rule(&[]);
    assert_ne!(run.code, Some(0), "{}", run.stdout);
    assert!(
        run.stderr.contains(
            "action `file_1`: prop `fileType`: holds a template (`{{...}}`), but this prop is \
             not dynamic"
        ),
        "{}",
        run.stderr
    );
    assert!(
        !scratch.path().join("out/x.csv").exists(),
        "the rule does not start"
    );
}

/// The same for the shipped redis sink, whose marker is a key beside the data: a list batch
/// redelivered after a lost acknowledgement is not pushed twice.
#[test]
fn the_redis_sink_skips_a_batch_redelivered_after_a_lost_acknowledgement() {
    let Some(redis) = oort_tests::redis::RedisServer::start(None) else {
        return;
    };
    let scratch = Scratch::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let host = oort::host::SinkHost::new(oort::host::HostConfig {
            max_instances: 0,
            ..oort::host::HostConfig::default()
        })
        .unwrap();
        let plugin = host.load(std::path::Path::new(guests::REDIS)).unwrap();
        let manifest: oort::host::Manifest =
            serde_json::from_str(&std::fs::read_to_string(guests::REDIS_MANIFEST).unwrap())
                .unwrap();
        let mut props: serde_json::Map<String, serde_json::Value> = serde_json::from_value(
            serde_json::json!({"addr": redis.addr(), "key": "rows", "dataType": "list"}),
        )
        .unwrap();
        let grants =
            oort::host::Grants::resolve(&manifest, &mut props, scratch.path(), true).unwrap();
        let props = serde_json::Value::Object(props).to_string();
        let context = |generation| oort::host::bindings::WitContext {
            rule_id: "once".into(),
            action: "redis_0".into(),
            instance: 0,
            format: "json".into(),
            generation,
        };
        let mut first = host
            .instantiate(&plugin, tag("first"), &grants)
            .await
            .unwrap();
        first.configure(&context(0), &props).await.unwrap();
        first.open(None).await.unwrap();
        first
            .collect(numbered_batch(1, 0..2).as_wit())
            .await
            .unwrap();
        first
            .collect(numbered_batch(2, 2..4).as_wit())
            .await
            .unwrap();
        drop(first);
        let mut second = host
            .instantiate(&plugin, tag("second"), &grants)
            .await
            .unwrap();
        second.configure(&context(1), &props).await.unwrap();
        second.open(Some(1)).await.unwrap();
        second
            .collect(numbered_batch(2, 2..4).as_wit())
            .await
            .unwrap();
        second
            .collect(numbered_batch(3, 4..5).as_wit())
            .await
            .unwrap();
        second.close().await.unwrap();
    });
    let reply = redis.command(&["LLEN", "rows"]).unwrap();
    assert_eq!(reply.text(), Some("5"), "no batch twice, none lost");
    let marker = redis.command(&["GET", "oort:seq:once:redis_0"]).unwrap();
    assert_eq!(marker.text(), Some("3"));
}
