//! The compiled-component cache: a second load skips compilation, a damaged or planted entry is
//! compiled again instead of being trusted, and a folder others may write to is not used.

use oort::host::{CacheOutcome, HostConfig, SinkHost};

#[test]
fn a_second_load_comes_from_the_cache_and_damage_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let config = HostConfig {
        cache_dir: Some(dir.path().join("cache")),
        max_instances: 4,
        ..HostConfig::default()
    };
    let wasm = std::path::Path::new(oort_tests::guests::COUNTER);
    let first = SinkHost::new(config.clone()).unwrap().load(wasm).unwrap();
    assert_eq!(first.cache, CacheOutcome::Compiled);
    let second = SinkHost::new(config.clone()).unwrap().load(wasm).unwrap();
    assert_eq!(second.cache, CacheOutcome::Hit);
    assert_eq!(first.hash, second.hash);

    for entry in std::fs::read_dir(dir.path().join("cache")).unwrap() {
        std::fs::write(entry.unwrap().path(), b"garbage, not a compiled component").unwrap();
    }
    let third = SinkHost::new(config).unwrap().load(wasm).unwrap();
    assert_eq!(
        third.cache,
        CacheOutcome::Compiled,
        "a damaged entry is compiled again"
    );
}

#[test]
fn without_a_cache_every_load_compiles() {
    let host = SinkHost::new(HostConfig {
        cache_dir: None,
        max_instances: 4,
        ..HostConfig::default()
    })
    .unwrap();
    let plugin = host
        .load(std::path::Path::new(oort_tests::guests::COUNTER))
        .unwrap();
    assert_eq!(plugin.cache, CacheOutcome::Disabled);
}

fn entries(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    entries.sort();
    entries
}

#[test]
fn a_tampered_or_planted_artifact_is_compiled_again_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let config = HostConfig {
        cache_dir: Some(cache.clone()),
        max_instances: 4,
        ..HostConfig::default()
    };
    let counter = std::path::Path::new(oort_tests::guests::COUNTER);
    let file = std::path::Path::new(oort_tests::guests::FILE);
    let host = SinkHost::new(config.clone()).unwrap();
    assert_eq!(host.load(counter).unwrap().cache, CacheOutcome::Compiled);
    let counter_entry = entries(&cache).pop().unwrap();
    assert_eq!(host.load(file).unwrap().cache, CacheOutcome::Compiled);
    let file_entry = entries(&cache)
        .into_iter()
        .find(|p| *p != counter_entry)
        .unwrap();

    // A well-formed artifact of another component, planted under this one's name: its header
    // is right for this engine, so only the keyed hash tells.
    std::fs::copy(&file_entry, &counter_entry).unwrap();
    let planted = SinkHost::new(config.clone())
        .unwrap()
        .load(counter)
        .unwrap();
    assert_eq!(
        planted.cache,
        CacheOutcome::Compiled,
        "a planted entry is not loaded"
    );

    // One byte changed in the middle of the code.
    let mut bytes = std::fs::read(&counter_entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&counter_entry, &bytes).unwrap();
    let tampered = SinkHost::new(config.clone())
        .unwrap()
        .load(counter)
        .unwrap();
    assert_eq!(
        tampered.cache,
        CacheOutcome::Compiled,
        "a tampered entry is not loaded"
    );
    let again = SinkHost::new(config).unwrap().load(counter).unwrap();
    assert_eq!(
        again.cache,
        CacheOutcome::Hit,
        "the recompiled entry is trusted"
    );
}

#[cfg(unix)]
#[test]
fn a_cache_folder_others_may_write_to_is_not_used() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = HostConfig {
        cache_dir: Some(cache.clone()),
        max_instances: 4,
        ..HostConfig::default()
    };
    let wasm = std::path::Path::new(oort_tests::guests::COUNTER);
    for _ in 0..2 {
        let plugin = SinkHost::new(config.clone()).unwrap().load(wasm).unwrap();
        assert_eq!(plugin.cache, CacheOutcome::Disabled);
    }
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        0,
        "nothing is written to or read from it"
    );
}

#[test]
fn a_first_load_says_it_compiles_and_a_cached_one_is_quiet() {
    let scratch = crate::common::Scratch::new();
    let cache = tempfile::tempdir().unwrap();
    scratch.write(
        "streams.sql",
        "CREATE STREAM demo () WITH (TYPE=\"file\", DATASOURCE=\"in.jsonl\");\n",
    );
    scratch.write("in.jsonl", "{\"n\": 1}\n");
    scratch.write(
        "rule.json",
        r#"{"id": "r", "sql": "SELECT n FROM demo", "actions": [{"counter": {}}]}"#,
    );
    let run = || {
        let out = scratch
            .oort(&[
                "run-rule",
                "rule.json",
                "--streams",
                "streams.sql",
                "--log",
                "info",
            ])
            .env("OORT_CACHE_DIR", cache.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let first = run();
    assert!(
        first.contains("(first load of this build; cached afterwards)")
            && first.contains("compiled "),
        "the first load says it compiles and how long it took: {first}"
    );
    let second = run();
    assert!(
        !second.contains("compiling"),
        "a load from the cache compiles nothing: {second}"
    );
}

#[test]
fn rules_of_one_process_share_an_engine_and_each_loaded_component() {
    let dir = tempfile::tempdir().unwrap();
    let config = HostConfig {
        cache_dir: Some(dir.path().join("cache")),
        max_instances: 0,
        ..HostConfig::default()
    };
    let one = SinkHost::shared(config.clone()).unwrap();
    let two = SinkHost::shared(config.clone()).unwrap();
    let other = SinkHost::shared(HostConfig {
        max_instances: 2,
        ..config.clone()
    })
    .unwrap();
    let wasm = std::path::Path::new(oort_tests::guests::COUNTER);
    let first = one.load(wasm).unwrap();
    let again = two.load(wasm).unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&first, &again),
        "a second rule of the same host gets the component already loaded"
    );
    let elsewhere = other.load(wasm).unwrap();
    assert!(
        !std::sync::Arc::ptr_eq(&first, &elsewhere),
        "another engine compiles (or maps) its own"
    );

    // A new build at the same path is loaded, not taken for the old one.
    let scratch = tempfile::tempdir().unwrap();
    let module = scratch.path().join("Sink.wasm");
    std::fs::copy(oort_tests::guests::COUNTER, &module).unwrap();
    let before = one.load(&module).unwrap();
    std::fs::copy(oort_tests::guests::FILE, &module).unwrap();
    let after = two.load(&module).unwrap();
    assert_ne!(before.hash, after.hash);
    assert!(!std::sync::Arc::ptr_eq(&before, &after));
}
