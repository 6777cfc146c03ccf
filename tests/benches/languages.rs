//! The languages benchmark (`cargo xtask bench languages`): the same work done by a sink written
//! in Rust and by its Python, JavaScript and C counterparts, each built from source, measured in
//! one run through the real host:
//!
//! - compiling the component with no cache (what the first run of a new build pays), loading it
//!   from the compiled-artifact cache, and a fresh instance made ready (instantiated,
//!   configured, opened), p50;
//! - throughput of `collect` at 100 messages of ~40 bytes per batch.
//!
//! The file writers (Rust `file`, `python-jsonl`, `c-jsonl`) append JSON lines to a file; the log
//! writers (the Rust `my-sink` test guest, `js-log`) send each message to the host log (which
//! drops lines over its rate limit, as it would in production). Figures are printed, not
//! asserted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use oort::host::bindings::{WitBatch, WitContext};
use oort::host::{Grants, HostConfig, InstanceTag, Manifest, SinkHost};
use oort_tests::guests;
use oort_tests::languages::{self, Language};

#[global_allocator]
static ALLOCATOR: oort::Allocator = oort::Allocator;

/// One sink under test.
struct Case {
    name: String,
    wasm: PathBuf,
    manifest: PathBuf,
    props: serde_json::Value,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let named: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if !named.is_empty() && !named.iter().any(|a| *a == "languages") {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let file_props = serde_json::json!({"path": "{dir}/out.jsonl"});
    let log_props = serde_json::json!({"prefix": "> "});
    let mut cases = vec![
        Case {
            name: "Rust file".into(),
            wasm: guests::FILE.into(),
            manifest: guests::FILE_MANIFEST.into(),
            props: file_props.clone(),
        },
        Case {
            name: "Rust my-sink (log)".into(),
            wasm: guests::MY_SINK.into(),
            manifest: guests::MY_SINK_MANIFEST.into(),
            props: log_props.clone(),
        },
    ];
    for &language in Language::ALL {
        match languages::build(language) {
            Ok(wasm) => cases.push(Case {
                name: format!("{language} {}", language.folder()),
                wasm,
                manifest: language.manifest(),
                props: if language == Language::JavaScript {
                    log_props.clone()
                } else {
                    file_props.clone()
                },
            }),
            Err(e) => println!("({language}: not measured: {e})"),
        }
    }

    println!(
        "oort languages benchmark ({} mode): 100 messages of ~40 bytes per collect\n",
        if quick { "quick" } else { "full" }
    );
    println!(
        "   {:<30} {:>10} {:>10} {:>12} {:>14} {:>14} {:>12}",
        "sink", "size", "compile", "cache load", "instance p50", "messages/s", "ns/message"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let batches = if quick { 100 } else { 1000 };
    let instances = if quick { 5 } else { 20 };
    runtime.block_on(async {
        for (i, case) in cases.iter().enumerate() {
            let work = dir.path().join(format!("case{i}"));
            std::fs::create_dir_all(&work)?;
            measure(case, &work, batches, instances).await?;
        }
        anyhow::Ok(())
    })?;
    println!();
    Ok(())
}

fn tag(action: &str) -> InstanceTag {
    InstanceTag {
        rule: Arc::from("bench"),
        action: Arc::from(action),
        instance: 0,
        dropped_logs: Arc::default(),
    }
}

fn context(generation: u32) -> WitContext {
    WitContext {
        rule_id: "bench".into(),
        action: "sink_0".into(),
        instance: 0,
        format: "json".into(),
        generation,
    }
}

fn batch(n: usize, from: usize) -> WitBatch {
    let mut b = WitBatch {
        payloads: Vec::new(),
        ends: Vec::new(),
        timestamps: Vec::new(),
        header: None,
        sequence: 0,
        dynamic: Vec::new(),
    };
    for i in from..from + n {
        b.payloads.extend_from_slice(
            format!(
                r#"{{"deviceId":"d{:04}","temperature":{}.5}}"#,
                i % 1000,
                i % 40
            )
            .as_bytes(),
        );
        b.ends.push(b.payloads.len() as u32);
        b.timestamps.push(1_700_000_000_000);
    }
    b
}

async fn measure(case: &Case, work: &Path, batches: usize, instances: usize) -> anyhow::Result<()> {
    // Install beside its manifest, as in plugins/sinks/.
    let wasm = work.join("Sink.wasm");
    std::fs::copy(&case.wasm, &wasm)?;
    if case.manifest.is_file() {
        std::fs::copy(&case.manifest, work.join("Sink.json"))?;
    }
    let size = std::fs::metadata(&wasm)?.len();
    let uncached = SinkHost::new(HostConfig {
        cache_dir: None,
        max_instances: 0,
        ..HostConfig::default()
    })?;
    let started = Instant::now();
    drop(uncached.load(&wasm)?);
    let compile = started.elapsed();
    let host = SinkHost::new(HostConfig {
        cache_dir: Some(oort_tests::cache_dir()),
        max_instances: 16,
        ..HostConfig::default()
    })?;
    // Once to fill the cache, then timed.
    host.load(&wasm)?;
    let started = Instant::now();
    let plugin = host.load(&wasm)?;
    let cache_load = started.elapsed();

    let props = case
        .props
        .to_string()
        .replace("{dir}", &work.display().to_string());
    let mut props: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&props)?;
    let manifest = Manifest::beside(&wasm)?;
    let grants = Grants::resolve(&manifest, &mut props, work, true)?;
    let props = serde_json::Value::Object(props).to_string();

    let mut ready = Vec::with_capacity(instances);
    for _ in 0..instances {
        let started = Instant::now();
        let mut instance = host
            .instantiate(&plugin, tag("sink_0"), &grants)
            .await
            .map_err(anyhow::Error::msg)?;
        instance
            .configure(&context(1), &props)
            .await
            .map_err(anyhow::Error::msg)?;
        instance.open(None).await.map_err(anyhow::Error::msg)?;
        ready.push(started.elapsed());
        instance.close().await.map_err(anyhow::Error::msg)?;
    }
    ready.sort();
    let p50 = ready[ready.len() / 2];

    let mut instance = host
        .instantiate(&plugin, tag("sink_0"), &grants)
        .await
        .map_err(anyhow::Error::msg)?;
    instance
        .configure(&context(0), &props)
        .await
        .map_err(anyhow::Error::msg)?;
    instance.open(None).await.map_err(anyhow::Error::msg)?;
    let prepared: Vec<WitBatch> = (0..10).map(|i| batch(100, i * 100)).collect();
    // Warm up, then best of three rounds: the machine is shared.
    for b in &prepared {
        instance.collect(b).await.map_err(anyhow::Error::msg)?;
    }
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        for i in 0..batches {
            instance
                .collect(&prepared[i % prepared.len()])
                .await
                .map_err(anyhow::Error::msg)?;
        }
        best = best.min(started.elapsed());
    }
    instance.close().await.map_err(anyhow::Error::msg)?;
    let messages = (batches * 100) as f64;
    println!(
        "   {:<30} {:>8.1}MB {:>8.2} s {:>9.1} ms {:>11.2} ms {:>14.0} {:>12.0}",
        case.name,
        size as f64 / 1e6,
        compile.as_secs_f64(),
        cache_load.as_secs_f64() * 1e3,
        p50.as_secs_f64() * 1e3,
        messages / best.as_secs_f64(),
        best.as_secs_f64() * 1e9 / messages,
    );
    Ok(())
}
