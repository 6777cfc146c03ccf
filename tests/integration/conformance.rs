//! Every shipped sink passes the conformance harness (see `oort_tests::conformance`).

use std::path::Path;

use oort::host::{HostConfig, SinkHost};
use oort_tests::conformance;
use oort_tests::guests::ShippedSink;

fn host() -> SinkHost {
    SinkHost::new(HostConfig {
        cache_dir: Some(oort_tests::cache_dir()),
        max_instances: 16,
        ..HostConfig::default()
    })
    .expect("the engine")
}

#[tokio::test]
async fn every_shipped_sink_conforms() {
    let host = host();
    for &sink in ShippedSink::ALL {
        let dir = tempfile::tempdir().expect("a temporary folder");
        // The manifest is read from beside the module, as in plugins/sinks/.
        oort_tests::install(
            dir.path(),
            sink.plugin_name(),
            sink.files().0,
            sink.files().1,
        )
        .expect("install");
        let wasm = dir
            .path()
            .join("sinks")
            .join(format!("{}.wasm", sink.plugin_name()));
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).expect("a work folder");
        conformance::check(&host, &wasm, &conformance::spec(sink), &work)
            .await
            .unwrap_or_else(|e| panic!("sink {sink:?} fails the conformance harness: {e:#}"));
    }
}

#[tokio::test]
async fn the_harness_catches_a_sink_that_does_not_flush() {
    // The counter spec checks nothing on disk, so run the file sink's checks against it: a
    // harness that cannot fail would pass this.
    let host = host();
    let dir = tempfile::tempdir().expect("a temporary folder");
    oort_tests::install(
        dir.path(),
        "Counter",
        oort_tests::guests::COUNTER,
        oort_tests::guests::COUNTER_MANIFEST,
    )
    .expect("install");
    let wasm = dir.path().join("sinks").join("Counter.wasm");
    let mut spec = conformance::spec(ShippedSink::File);
    spec.props = serde_json::json!({});
    let result = conformance::check(&host, Path::new(&wasm), &spec, dir.path()).await;
    assert!(
        result.is_err(),
        "a sink that writes nothing must fail the file checks"
    );
}
