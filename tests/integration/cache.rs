//! The compiled-component cache: a second load skips compilation, and a damaged entry is
//! compiled again instead of being trusted.

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
