//! Shared pieces of Oort's tests and benchmarks: the `oort` binary they run, the guests built
//! from source by `build.rs`, the scratch folder runs happen in, and the conformance harness
//! every shipped sink must pass.

pub mod broker;
pub mod browser;
pub mod cargo_env;
pub mod conformance;
pub mod console;
pub mod http;
pub mod languages;
pub mod redis;
pub mod scratch;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The wasm components built from source for the tests (paths to `.wasm` files).
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// The `oort` binary of the runtime package, built once per test process (`cargo build -p oort
/// --bin oort`, release when the tests or benchmarks are optimised builds), so every run of the
/// tests uses a binary built from the current sources. Cargo puts it in its usual target
/// folder (`CARGO_TARGET_DIR` is honoured).
pub fn oort_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("tests/ is inside the workspace");
        let mut build = escargot::CargoBuild::new()
            .manifest_path(workspace.join("Cargo.toml"))
            .package("oort")
            .bin("oort")
            .current_release();
        // Cargo gives a test process the variables of the package under test; this build must
        // not see them (see `cargo_env`).
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(cargo_env::set_by_cargo) {
                build = build.env_remove(key);
            }
        }
        build
            .run()
            .unwrap_or_else(|e| panic!("building the oort binary: {e}"))
            .path()
            .to_path_buf()
    })
}

/// The compiled-component cache shared by every test (safe to share: entries are keyed by the
/// module's content and the engine's configuration).
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("OORT_TEST_CACHE"))
}

/// A run of the rules in `rules` over the streams in `streams`, in process: plugins from
/// `dir/plugins`, the shared component cache, the system clock, disk caches and checkpoints
/// under `data_dir`; the rest as `oort run-rule` defaults it.
pub fn run_config(
    dir: &Path,
    rules: PathBuf,
    streams: PathBuf,
    data_dir: PathBuf,
) -> oort::engine::RunConfig {
    oort::engine::RunConfig {
        rule_paths: vec![rules],
        stream_paths: vec![streams],
        plugins_dir: dir.join("plugins"),
        only_rule: None,
        host: oort::host::HostConfig {
            cache_dir: Some(cache_dir()),
            ..oort::host::HostConfig::default()
        },
        clock: oort::clock::Clock::System,
        watch: false,
        mqtt_conf: None,
        redis_conf: None,
        data_dir,
        progress_every: None,
        reset_checkpoints: false,
        drain_timeout: None,
        replay: None,
    }
}

/// Copies a built component (and its manifest, if any) into `plugins/sinks/<name>.wasm`.
pub fn install(plugins: &Path, name: &str, wasm: &str, manifest: &str) -> std::io::Result<()> {
    let dir = plugins.join("sinks");
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(wasm, dir.join(format!("{name}.wasm")))?;
    if Path::new(manifest).is_file() {
        std::fs::copy(manifest, dir.join(format!("{name}.json")))?;
    }
    Ok(())
}

/// Installs every shipped sink and the test guests into `plugins/sinks/`.
pub fn install_all(plugins: &Path) -> std::io::Result<()> {
    for sink in guests::ShippedSink::ALL {
        let (wasm, manifest) = sink.files();
        install(plugins, sink.plugin_name(), wasm, manifest)?;
    }
    install(plugins, "Probe", guests::PROBE, guests::PROBE_MANIFEST)?;
    install(
        plugins,
        "MqttRelay",
        guests::MQTT_RELAY,
        guests::MQTT_RELAY_MANIFEST,
    )?;
    install(
        plugins,
        "NotASink",
        guests::NOT_A_SINK,
        guests::NOT_A_SINK_MANIFEST,
    )?;
    Ok(())
}
