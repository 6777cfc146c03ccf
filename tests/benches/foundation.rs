//! The foundation benchmark (`cargo xtask bench`): prints, from one run,
//!
//! 1. messages/s through the whole sink path (transform, JSON encoding, batching, `collect`)
//!    into the wasm `counter` sink and into the built-in native `nop`, at batch sizes 1, 100 and
//!    1000 with ~100-byte rows, and their ratio;
//! 2. the time to create one action instance (p50/p99), and to create, configure and open one;
//! 3. the resident memory per idle action instance, with 1,000 instances alive;
//! 4. rows/s of a file-source `SELECT ... WHERE` rule into the wasm sink, on one core.
//!
//! Figures are printed, not asserted: the tests check behaviour, this measures it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use oort::clock::Clock;
use oort::engine::RunConfig;
use oort::host::bindings::WitContext;
use oort::host::{Grants, HostConfig, InstanceTag, SinkHost};
use oort::message::Message;
use oort::sink::{self, ActionEnv};
use oort::source::MemoryBus;
use oort::value::{Row, Value};
use tokio::sync::mpsc;

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let dir = tempfile::tempdir()?;
    oort_tests::install_all(&dir.path().join("plugins"))?;
    println!(
        "oort foundation benchmark ({} mode)\n",
        if quick { "quick" } else { "full" }
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        sink_path(dir.path(), 1_000_000 / scale).await?;
        instantiation(dir.path(), 5_000 / scale).await?;
        idle_memory(dir.path(), 1_000).await?;
        anyhow::Ok(())
    })?;
    filter_rule(dir.path(), 2_000_000 / scale)?;
    Ok(())
}

fn host(max_instances: u32) -> anyhow::Result<SinkHost> {
    Ok(SinkHost::new(HostConfig {
        cache_dir: Some(oort_tests::cache_dir()),
        max_instances,
        ..HostConfig::default()
    })?)
}

/// A row whose JSON encoding is about 100 bytes.
fn sample_row(i: i64) -> Row {
    Row::from_pairs(
        vec![
            (
                "deviceId".into(),
                Value::string(format!("device-{:05}", i % 10_000)),
            ),
            (
                "temperature".into(),
                Value::Float(20.0 + (i % 200) as f64 / 10.0),
            ),
            ("humidity".into(), Value::Int(40 + i % 50)),
            ("status".into(), Value::string("nominal-operation")),
            ("seq".into(), Value::Int(1_000_000 + i)),
        ],
        1_700_000_000_000 + i,
    )
}

async fn run_action(
    dir: &Path,
    plugin: &str,
    batch_size: usize,
    messages: usize,
) -> anyhow::Result<f64> {
    let text = format!(
        r#"{{"id":"bench","sql":"SELECT * FROM s","actions":[{{"{plugin}":{{"batchSize":{batch_size},"bufferLength":4096}}}}]}}"#
    );
    let file = oort::rule::parse(&text, Path::new("bench.json"), dir)?;
    let rule = &file.rules[0];
    let env = ActionEnv::new(host(64)?, dir.join("plugins"), MemoryBus::new());
    let prepared = sink::prepare(rule, &rule.actions[0], &env, true).await?;
    let metrics = Arc::clone(&prepared.metrics);
    let started = sink::start(prepared).await?;
    let (tx, rx) = mpsc::channel(16);
    let worker = tokio::spawn(sink::run(started, rx));
    let chunks: Vec<sink::Chunk> = (0..messages / 256)
        .map(|c| {
            (0..256)
                .map(|i| Message::Row(sample_row((c * 256 + i) as i64)))
                .collect::<Vec<_>>()
                .into()
        })
        .collect();
    let sent = chunks.len() * 256;
    let t = Instant::now();
    for chunk in chunks {
        tx.send(chunk).await?;
    }
    drop(tx);
    worker.await?;
    let elapsed = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        metrics.records_out.get() == sent as u64,
        "not every message was delivered"
    );
    Ok(sent as f64 / elapsed)
}

async fn sink_path(dir: &Path, messages: usize) -> anyhow::Result<()> {
    println!(
        "1. sink path: {messages} messages of ~100 bytes, transform + encode + batch + collect"
    );
    println!(
        "   {:>6}  {:>16}  {:>16}  {:>10}",
        "batch", "wasm counter/s", "native nop/s", "wasm/native"
    );
    for batch in [1usize, 100, 1000] {
        let n = if batch == 1 { messages / 5 } else { messages };
        // Warm up (compiles or loads the component) and then measure each side.
        run_action(dir, "counter", batch, 4096).await?;
        let wasm = run_action(dir, "counter", batch, n).await?;
        let native = run_action(dir, "nop", batch, n).await?;
        println!(
            "   {batch:>6}  {wasm:>16.0}  {native:>16.0}  {:>10.3}",
            wasm / native
        );
    }
    println!();
    Ok(())
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn tag(i: u32) -> InstanceTag {
    InstanceTag {
        rule: Arc::from("bench"),
        action: Arc::from("counter_0"),
        instance: i,
        dropped_logs: Arc::default(),
    }
}

fn context(i: u32) -> WitContext {
    WitContext {
        rule_id: "bench".into(),
        action: "counter_0".into(),
        instance: i,
        format: "json".into(),
        generation: 0,
    }
}

async fn instantiation(dir: &Path, n: usize) -> anyhow::Result<()> {
    let host = host(64)?;
    let plugin = host.load(&dir.join("plugins/sinks/Counter.wasm"))?;
    let grants = Grants::default();
    let mut bare = Vec::with_capacity(n);
    let mut full = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let instance = host
            .instantiate(&plugin, tag(i as u32), &grants)
            .await
            .map_err(anyhow::Error::msg)?;
        bare.push(t.elapsed());
        drop(instance);
        let t = Instant::now();
        let mut instance = host
            .instantiate(&plugin, tag(i as u32), &grants)
            .await
            .map_err(anyhow::Error::msg)?;
        instance
            .configure(&context(i as u32), "{}")
            .await
            .map_err(anyhow::Error::msg)?;
        instance.open().await.map_err(anyhow::Error::msg)?;
        full.push(t.elapsed());
    }
    println!(
        "2. action instance start, {n} samples (pooling allocator, pre-instantiated component)"
    );
    println!(
        "   instantiate:                 p50 {:>8.1} us   p99 {:>8.1} us",
        percentile(&mut bare, 0.5).as_secs_f64() * 1e6,
        percentile(&mut bare, 0.99).as_secs_f64() * 1e6
    );
    println!(
        "   instantiate+configure+open:  p50 {:>8.1} us   p99 {:>8.1} us\n",
        percentile(&mut full, 0.5).as_secs_f64() * 1e6,
        percentile(&mut full, 0.99).as_secs_f64() * 1e6
    );
    Ok(())
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Resident bytes of the process's largest mapping (from /proc/self/smaps).
fn largest_mapping_rss() -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let mut best = (0u64, 0u64);
    let mut size = 0u64;
    for line in smaps.lines() {
        let mut parts = line.split_whitespace();
        match parts.next() {
            Some("Size:") => size = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            Some("Rss:") => {
                let rss: u64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                if size > best.0 {
                    best = (size, rss);
                }
            }
            _ => {}
        }
    }
    best.1 * 1024
}

async fn idle_memory(dir: &Path, n: usize) -> anyhow::Result<()> {
    let host = host(n as u32 + 16)?;
    let plugin = host.load(&dir.join("plugins/sinks/Counter.wasm"))?;
    let grants = Grants::default();
    // One instance first, so one-time costs (code, first pages) are not counted per instance.
    let mut warm = host
        .instantiate(&plugin, tag(0), &grants)
        .await
        .map_err(anyhow::Error::msg)?;
    warm.configure(&context(0), "{}")
        .await
        .map_err(anyhow::Error::msg)?;
    let before = rss_bytes();
    let heap_before = largest_mapping_rss();
    let mut alive = Vec::with_capacity(n);
    for i in 0..n {
        let mut instance = host
            .instantiate(&plugin, tag(i as u32), &grants)
            .await
            .map_err(anyhow::Error::msg)?;
        instance
            .configure(&context(i as u32), "{}")
            .await
            .map_err(anyhow::Error::msg)?;
        instance.open().await.map_err(anyhow::Error::msg)?;
        alive.push(instance);
    }
    let after = rss_bytes();
    let per = (after.saturating_sub(before)) as f64 / n as f64;
    // The pooling allocator reserves all linear memories in one mapping, by far the largest of
    // the process: its growth is the guests' own heap and stack pages.
    let heap = largest_mapping_rss().saturating_sub(heap_before) as f64 / n as f64;
    println!("3. idle action instances: {n} alive, configured and opened");
    println!(
        "   resident memory per instance:      {:>8.1} KiB",
        per / 1024.0
    );
    println!(
        "   of which the guest's linear memory: {:>8.1} KiB",
        heap / 1024.0
    );
    println!(
        "   beyond the guest's memory:         {:>8.1} KiB\n",
        (per - heap).max(0.0) / 1024.0
    );
    drop(alive);
    Ok(())
}

fn filter_rule(dir: &Path, rows: usize) -> anyhow::Result<()> {
    let data = dir.join("rows.jsonl");
    let mut text = String::with_capacity(rows * 110);
    for i in 0..rows {
        let row = sample_row(i as i64);
        let mut line = Vec::new();
        oort::json::write_row(&mut line, &row, &oort::json::sorted_order(row.schema()));
        text.push_str(std::str::from_utf8(&line)?);
        text.push('\n');
    }
    std::fs::write(&data, text)?;
    std::fs::write(
        dir.join("streams.sql"),
        "CREATE STREAM readings () WITH (TYPE=\"file\", DATASOURCE=\"rows.jsonl\");",
    )?;
    std::fs::write(
        dir.join("rule.json"),
        r#"{"id":"filter","sql":"SELECT deviceId, temperature, humidity FROM readings WHERE temperature > 25 AND humidity < 80","actions":[{"counter":{}}]}"#,
    )?;
    let config = RunConfig {
        rule_path: dir.join("rule.json"),
        stream_paths: vec![dir.join("streams.sql")],
        plugins_dir: dir.join("plugins"),
        only_rule: None,
        host: HostConfig {
            cache_dir: Some(oort_tests::cache_dir()),
            max_instances: 16,
            ..HostConfig::default()
        },
        clock: Clock::System,
    };
    // One core: a single-threaded runtime runs source, query and sink stages in turn.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(oort::engine::run(&config, std::future::pending()))?;
    let rule = &report.rules[0];
    let read = rule.source.records_out.get();
    let out = rule.actions[0].2.records_out.get();
    anyhow::ensure!(read == rows as u64, "read {read} of {rows} rows");
    println!("4. file source -> SELECT ... WHERE -> wasm counter sink, one core");
    println!(
        "   {rows} rows ({out} pass the filter) in {:.3} s: {:.0} rows/s",
        report.elapsed.as_secs_f64(),
        rows as f64 / report.elapsed.as_secs_f64()
    );
    Ok(())
}
