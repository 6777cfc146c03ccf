//! The foundation benchmark (`cargo xtask bench`): prints, from one run,
//!
//! 1. messages/s through the whole sink path (transform, JSON encoding, batching, `collect`)
//!    into the wasm `counter` sink and into the built-in native `nop`, at batch sizes 1, 100 and
//!    1000 with ~100-byte rows, and their ratio;
//! 2. the time to create one action instance (p50/p99), and to create, configure and open one;
//! 3. the resident memory per idle action instance, with 1,000 instances alive;
//! 4. rows/s of a file-source `SELECT ... WHERE` rule into the wasm sink, on one core;
//!
//! and further sections (`window`, `mqtt`, and `rules`: 1, 10, 100 and 500 filter rules on one
//! stream, `SHARED` and not, each size in a process of its own: the total rows/s through the
//! rules, the input rows/s, and the resident memory per busy and per idle rule).
//!
//! Figures are printed, not asserted: the tests check behaviour, this measures it.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use oort::host::bindings::WitContext;
use oort::host::{Grants, HostConfig, InstanceTag, SinkHost};
use oort::message::Message;
use oort::sink::{self, ActionEnv};
use oort::source::MemoryBus;
use oort::value::{Row, Schema, Value};
use tokio::sync::mpsc;

#[global_allocator]
static ALLOCATOR: oort::Allocator = oort::Allocator;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == SWEEP_ONE) {
        return sweep_one(&args[i + 1..]);
    }
    let quick = args.iter().any(|a| a == "--quick");
    // Sections to run (all by default): sink, start, memory, filter, reload, window, mqtt, rules.
    let chosen: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| {
            [
                "sink", "start", "memory", "filter", "reload", "window", "mqtt", "rules",
            ]
            .contains(a)
        })
        .collect();
    let run = |section: &str| chosen.is_empty() || chosen.contains(&section);
    let scale = if quick { 10 } else { 1 };
    let dir = tempfile::tempdir()?;
    oort_tests::install_all(&dir.path().join("plugins"))?;
    println!(
        "oort foundation benchmark ({} mode)\n",
        if quick { "quick" } else { "full" }
    );

    // Rule benchmarks run several times: one run on a shared machine can be far off.
    let runs = if quick { 1 } else { 5 };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        if run("sink") {
            sink_path(dir.path(), 1_000_000 / scale).await?;
        }
        if run("start") {
            instantiation(dir.path(), 5_000 / scale).await?;
        }
        if run("memory") {
            idle_memory(dir.path(), 1_000).await?;
        }
        if run("reload") {
            reload_pause(dir.path(), 100 / scale.min(10)).await?;
        }
        anyhow::Ok(())
    })?;
    if run("filter") {
        filter_rule(dir.path(), 2_000_000 / scale, runs)?;
    }
    if run("window") {
        window_rules(dir.path(), 2_000_000 / scale, runs)?;
    }
    if run("mqtt") {
        mqtt_rule(dir.path(), 500_000 / scale.min(25))?;
    }
    if run("rules") {
        rule_sweep(dir.path(), if quick { 1_000 } else { 20_000 })?;
    }
    Ok(())
}

fn host(max_instances: u32) -> anyhow::Result<SinkHost> {
    Ok(SinkHost::new(HostConfig {
        cache_dir: Some(oort_tests::cache_dir()),
        max_instances,
        ..HostConfig::default()
    })?)
}

/// The layout of the sample rows (a source shares one schema across rows of the same shape).
fn sample_schema() -> Arc<Schema> {
    static SCHEMA: std::sync::OnceLock<Arc<Schema>> = std::sync::OnceLock::new();
    Arc::clone(SCHEMA.get_or_init(|| {
        Arc::new(Schema::new(
            ["deviceId", "temperature", "humidity", "status", "seq"]
                .into_iter()
                .map(Arc::from)
                .collect(),
        ))
    }))
}

/// A row whose JSON encoding is about 100 bytes.
fn sample_row(i: i64) -> Row {
    Row::new(
        sample_schema(),
        vec![
            Value::string(format!("device-{:05}", i % 10_000)),
            Value::Float(20.0 + (i % 200) as f64 / 10.0),
            Value::Int(40 + i % 50),
            Value::string("nominal-operation"),
            Value::Int(1_000_000 + i),
        ],
        1_700_000_000_000 + i,
    )
}

/// CPU time all threads of the process have used, in seconds (from each task's schedstat).
fn process_cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| {
            s.split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
        })
        .map(|ns| ns as f64 / 1e9)
        .sum()
}

/// Rows per wall-clock second and per CPU second of a run.
/// Rows per second over several runs: the median and range of wall-clock rates, and the median
/// rate per CPU second of the process.
fn rates(rows: usize, samples: &[(f64, f64)]) -> String {
    let median = |mut xs: Vec<f64>| {
        xs.sort_by(f64::total_cmp);
        (xs[xs.len() / 2], xs[0], xs[xs.len() - 1])
    };
    let (wall, low, high) = median(samples.iter().map(|s| rows as f64 / s.0).collect());
    let (cpu, _, _) = median(
        samples
            .iter()
            .map(|s| rows as f64 / s.1.max(1e-9))
            .collect(),
    );
    format!(
        "{wall:.0} rows/s (median of {} runs, {low:.0}-{high:.0}), {cpu:.0} rows per CPU second",
        samples.len()
    )
}

/// CPU time this thread has used, in seconds (steal time on a shared machine is not counted).
fn thread_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
        })
        .map_or(0.0, |ns| ns as f64 / 1e9)
}

/// Builds `messages` sample messages in chunks of 256, as the rule stage hands them over.
fn sample_chunks(messages: usize) -> Vec<sink::Chunk> {
    (0..messages / 256)
        .map(|c| {
            (0..256)
                .map(|i| Message::Row(sample_row((c * 256 + i) as i64)))
                .collect::<Vec<_>>()
                .into()
        })
        .collect()
}

/// Runs one action over `chunks`; returns messages per CPU second of the runtime thread and
/// the nanoseconds per message spent inside `collect`.
async fn run_action(
    dir: &Path,
    plugin: &str,
    batch_size: usize,
    chunks: &[sink::Chunk],
) -> anyhow::Result<(f64, f64)> {
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
    let sent: usize = chunks.iter().map(|c| c.len()).sum();
    // The runtime has one thread: everything the sink path does runs on it, so its CPU time is
    // the cost of the path (time the machine gives to other tenants is not counted).
    let cpu = thread_cpu_seconds();
    for chunk in chunks {
        tx.send(Arc::clone(chunk)).await?;
    }
    drop(tx);
    worker.await?;
    let elapsed = thread_cpu_seconds() - cpu;
    anyhow::ensure!(
        metrics.records_out.get() == sent as u64,
        "not every message was delivered"
    );
    let collect_ns = metrics.collect_time_ns.get() as f64 / sent as f64;
    Ok((sent as f64 / elapsed, collect_ns))
}

async fn sink_path(dir: &Path, messages: usize) -> anyhow::Result<()> {
    println!(
        "1. sink path: {messages} messages of ~100 bytes, transform + encode + batch + collect"
    );
    println!("   (messages per CPU second of the runtime thread; median of 7 alternating runs)");
    println!(
        "   {:>6}  {:>16}  {:>16}  {:>11}  {:>22}",
        "batch", "wasm counter/s", "native nop/s", "wasm/native", "in collect, ns/message"
    );
    let all = sample_chunks(messages);
    let warmup = sample_chunks(4096);
    for batch in [1usize, 100, 1000] {
        let chunks = if batch == 1 {
            &all[..all.len() / 5]
        } else {
            &all[..]
        };
        // Warm up (compiles or loads the component), then alternate the two sides.
        run_action(dir, "counter", batch, &warmup).await?;
        run_action(dir, "nop", batch, &warmup).await?;
        let (mut wasm, mut native, mut wasm_ns, mut native_ns) = (vec![], vec![], vec![], vec![]);
        for _ in 0..7 {
            let (rate, ns) = run_action(dir, "counter", batch, chunks).await?;
            wasm.push(rate);
            wasm_ns.push(ns);
            let (rate, ns) = run_action(dir, "nop", batch, chunks).await?;
            native.push(rate);
            native_ns.push(ns);
        }
        for v in [&mut wasm, &mut native, &mut wasm_ns, &mut native_ns] {
            v.sort_by(f64::total_cmp);
        }
        let (wasm, native) = (wasm[3], native[3]);
        println!(
            "   {batch:>6}  {wasm:>16.0}  {native:>16.0}  {:>11.3}  {:>10.1} vs {:>6.1}",
            wasm / native,
            wasm_ns[3],
            native_ns[3]
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

/// A counter sink instance, created, configured and opened.
async fn started_instance(
    host: &SinkHost,
    plugin: &Arc<oort::host::Plugin>,
    i: u32,
) -> anyhow::Result<oort::host::WasmInstance> {
    let mut instance = host
        .instantiate(plugin, tag(i), &Grants::default())
        .await
        .map_err(anyhow::Error::msg)?;
    instance
        .configure(&context(i), "{}")
        .await
        .map_err(anyhow::Error::msg)?;
    instance.open(None).await.map_err(anyhow::Error::msg)?;
    Ok(instance)
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
        let instance = started_instance(&host, &plugin, i as u32).await?;
        full.push(t.elapsed());
        drop(instance);
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

/// Swaps builds of a sink under load and measures the pause each swap causes.
async fn reload_pause(dir: &Path, swaps: usize) -> anyhow::Result<()> {
    let plugins = dir.join("plugins");
    oort_tests::install(
        &plugins,
        "Versioned",
        oort_tests::guests::VERSIONED_V1,
        oort_tests::guests::VERSIONED_V1_MANIFEST,
    )?;
    let module = plugins.join("sinks").join("Versioned.wasm");
    let text = r#"{"id":"bench","sql":"SELECT * FROM s","actions":[{"versioned":{"path":"out/reload.jsonl","batchSize":100}}]}"#;
    let file = oort::rule::parse(text, Path::new("bench.json"), dir)?;
    let rule = &file.rules[0];
    let host = host(64)?;
    let mut env = ActionEnv::new(host.clone(), plugins.clone(), MemoryBus::new());
    let reloader = oort::reload::Reloader::new(host);
    env.reloader = Some(Arc::clone(&reloader));
    let prepared = sink::prepare(rule, &rule.actions[0], &env, true).await?;
    let metrics = Arc::clone(&prepared.metrics);
    let started = sink::start(prepared).await?;
    let (tx, rx) = mpsc::channel(4);
    let worker = tokio::spawn(sink::run(started, rx));

    // Rows flow continuously while the builds are swapped back and forth.
    let chunk = sample_chunks(256).remove(0);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeding = Arc::clone(&stop);
    let feeder = tokio::spawn(async move {
        let mut sent = 0usize;
        while !feeding.load(Ordering::Relaxed) {
            if tx.send(Arc::clone(&chunk)).await.is_err() {
                break;
            }
            sent += chunk.len();
            tokio::task::yield_now().await;
        }
        sent
    });
    for i in 0..swaps {
        let build = if i % 2 == 0 {
            oort_tests::guests::VERSIONED_V2
        } else {
            oort_tests::guests::VERSIONED_V1
        };
        let tmp = module.with_extension("partial");
        std::fs::copy(build, &tmp)?;
        std::fs::rename(&tmp, &module)?;
        let outcome = reloader.reload(&module).await;
        anyhow::ensure!(
            matches!(outcome, oort::reload::Outcome::Swapped { .. }),
            "swap {i}: {outcome:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    stop.store(true, Ordering::Relaxed);
    let sent = feeder.await?;
    worker.await?;
    let written = std::fs::read_to_string(dir.join("out/reload.jsonl"))?
        .lines()
        .count();
    let mut pauses: Vec<Duration> = metrics
        .swap_pauses()
        .into_iter()
        .map(Duration::from_nanos)
        .collect();
    anyhow::ensure!(!pauses.is_empty(), "no swap happened");
    println!(
        "5. hot reload: {} swaps of a sink's build under load (compilation excluded)",
        pauses.len()
    );
    println!(
        "   pause per swap (close the old instance, switch): p50 {:.1} us   p99 {:.1} us",
        percentile(&mut pauses, 0.5).as_secs_f64() * 1e6,
        percentile(&mut pauses, 0.99).as_secs_f64() * 1e6
    );
    println!(
        "   rows sent {sent}, delivered {}, written {written}: {} lost\n",
        metrics.records_out.get(),
        sent.saturating_sub(written)
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

/// The address range of the process's largest mapping: the pooling allocator's reservation
/// for every linear memory.
fn largest_mapping() -> (u64, u64) {
    let smaps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut best = (0u64, 0u64);
    for line in smaps.lines() {
        let range = line.split_whitespace().next().unwrap_or("");
        let mut ends = range
            .split('-')
            .map(|h| u64::from_str_radix(h, 16).unwrap_or(0));
        let (start, end) = (ends.next().unwrap_or(0), ends.next().unwrap_or(0));
        if end - start > best.1 - best.0 {
            best = (start, end);
        }
    }
    best
}

/// Resident bytes of every mapping inside `range` (memory images mapped into the pool's slots
/// split it into many mappings).
fn resident_in(range: (u64, u64)) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let mut inside = false;
    let mut total = 0u64;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16))
        {
            inside = start >= range.0 && end <= range.1;
            continue;
        }
        if inside && let Some(kb) = line.strip_prefix("Rss:") {
            total += kb
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap_or(0)
                * 1024;
        }
    }
    total
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
    let pool = largest_mapping();
    let before = rss_bytes();
    let heap_before = resident_in(pool);
    let mut alive = Vec::with_capacity(n);
    for i in 0..n {
        alive.push(started_instance(&host, &plugin, i as u32).await?);
    }
    let after = rss_bytes();
    let per = (after.saturating_sub(before)) as f64 / n as f64;
    // The pooling allocator reserves all linear memories in one mapping, by far the largest of
    // the process: its growth is the guests' own heap and stack pages.
    let heap = resident_in(pool).saturating_sub(heap_before) as f64 / n as f64;
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

/// Runs `rule` (over the streams in `streams`) on one core `runs` times; returns the last report
/// and, per run, the wall and CPU seconds the process used.
fn run_on_one_core(
    dir: &Path,
    streams: &str,
    rule: &str,
    runs: usize,
) -> anyhow::Result<(oort::engine::RunReport, Vec<(f64, f64)>)> {
    let mut samples = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs.max(1) {
        let (report, cpu) = run_once(dir, streams, rule)?;
        samples.push((report.elapsed.as_secs_f64(), cpu));
        last = Some(report);
    }
    Ok((last.expect("at least one run"), samples))
}

fn run_once(
    dir: &Path,
    streams: &str,
    rule: &str,
) -> anyhow::Result<(oort::engine::RunReport, f64)> {
    std::fs::write(dir.join("streams.sql"), streams)?;
    std::fs::write(dir.join("rule.json"), rule)?;
    let mut config = oort_tests::run_config(
        dir,
        dir.join("rule.json"),
        dir.join("streams.sql"),
        std::env::temp_dir().join("oort-bench-data"),
    );
    config.host.max_instances = 16;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let cpu = process_cpu_seconds();
    let report = runtime.block_on(oort::engine::run(&config, std::future::pending()))?;
    Ok((report, process_cpu_seconds() - cpu))
}

/// A windowed aggregate and a windowed two-stream join, from files into the wasm sink.
fn window_rules(dir: &Path, rows: usize, runs: usize) -> anyhow::Result<()> {
    // 10,000 devices, one reading each 0.1 ms of event time: 10 s windows hold 100,000 rows.
    // The rules below set `fireAtEnd`: the last window is computed and sent too.
    let mut text = String::with_capacity(rows * 90);
    for i in 0..rows {
        text.push_str(&format!(
            "{{\"deviceId\":\"device-{:05}\",\"temperature\":{:.1},\"humidity\":{},\"ts\":{}}}\n",
            i % 10_000,
            20.0 + (i % 200) as f64 / 10.0,
            40 + i % 50,
            1_700_000_000_000 + i as i64 / 10
        ));
    }
    std::fs::write(dir.join("readings.jsonl"), text)?;
    let (report, samples) = run_on_one_core(
        dir,
        "CREATE STREAM readings () WITH (TYPE=\"file\", DATASOURCE=\"readings.jsonl\", TIMESTAMP=\"ts\");",
        r#"{"id":"agg","sql":"SELECT deviceId, avg(temperature) AS t, max(humidity) AS h, count(*) AS n FROM readings GROUP BY deviceId, TUMBLINGWINDOW(ss, 10)","actions":[{"counter":{}}],"options":{"isEventTime":true,"fireAtEnd":true}}"#,
        runs,
    )?;
    let read = report.rules[0].source.records_out.get();
    anyhow::ensure!(read == rows as u64, "read {read} of {rows} rows");
    println!(
        "6. windowed aggregate (GROUP BY deviceId, TUMBLINGWINDOW(ss, 10), 10,000 groups), one core"
    );
    println!(
        "   {rows} rows, {} windows: {}",
        report.rules[0].rule.records_out.get(),
        rates(rows, &samples)
    );

    // Two streams of rows/2 rows each, 100 rows per stream per 1 s window, joined on id.
    let half = rows / 2;
    for (name, field) in [("left.jsonl", "a"), ("right.jsonl", "b")] {
        let mut text = String::with_capacity(half * 60);
        for i in 0..half {
            text.push_str(&format!(
                "{{\"id\":{},\"{field}\":{},\"ts\":{}}}\n",
                i % 100,
                i,
                1_700_000_000_000 + i as i64 * 10
            ));
        }
        std::fs::write(dir.join(name), text)?;
    }
    let (report, samples) = run_on_one_core(
        dir,
        "CREATE STREAM l () WITH (TYPE=\"file\", DATASOURCE=\"left.jsonl\", TIMESTAMP=\"ts\");\n\
         CREATE STREAM r () WITH (TYPE=\"file\", DATASOURCE=\"right.jsonl\", TIMESTAMP=\"ts\");",
        r#"{"id":"join","sql":"SELECT l.id AS id, a, b FROM l INNER JOIN r ON l.id = r.id GROUP BY TUMBLINGWINDOW(ss, 1)","actions":[{"counter":{}}],"options":{"isEventTime":true,"fireAtEnd":true}}"#,
        runs,
    )?;
    let read = report.rules[0].source.records_out.get();
    anyhow::ensure!(read == 2 * half as u64, "read {read} of {} rows", 2 * half);
    println!(
        "7. windowed join of two streams (INNER JOIN ON id, TUMBLINGWINDOW(ss, 1), 100 rows per stream per window), one core"
    );
    println!(
        "   {} rows, {} windows: {}\n",
        2 * half,
        report.rules[0].rule.records_out.get(),
        rates(2 * half, &samples)
    );
    Ok(())
}

/// Writes `rows` sample rows (see [`sample_row`]) to `path` as JSON lines.
fn write_sample_rows(path: &Path, rows: usize) -> anyhow::Result<()> {
    let mut text = String::with_capacity(rows * 110);
    for i in 0..rows {
        let row = sample_row(i as i64);
        let mut line = Vec::new();
        oort::json::write_row(&mut line, &row, &oort::json::sorted_order(row.schema()));
        text.push_str(std::str::from_utf8(&line)?);
        text.push('\n');
    }
    std::fs::write(path, text)?;
    Ok(())
}

fn filter_rule(dir: &Path, rows: usize, runs: usize) -> anyhow::Result<()> {
    let data = dir.join("rows.jsonl");
    write_sample_rows(&data, rows)?;
    let (report, samples) = run_on_one_core(
        dir,
        "CREATE STREAM readings () WITH (TYPE=\"file\", DATASOURCE=\"rows.jsonl\");",
        r#"{"id":"filter","sql":"SELECT deviceId, temperature, humidity FROM readings WHERE temperature > 25 AND humidity < 80","actions":[{"counter":{}}]}"#,
        runs,
    )?;
    let rule = &report.rules[0];
    let read = rule.source.records_out.get();
    let out = rule.actions[0].metrics.records_out.get();
    anyhow::ensure!(read == rows as u64, "read {read} of {rows} rows");
    println!("4. file source -> SELECT ... WHERE -> wasm counter sink, one core");
    println!(
        "   {rows} rows ({out} pass the filter): {}",
        rates(rows, &samples)
    );
    Ok(())
}

/// Counts the messages a QoS 0 subscriber to `filter` receives (in a background thread); waits
/// until the subscription is in place.
fn count_messages(port: u16, id: &str, filter: &str) -> anyhow::Result<Arc<AtomicUsize>> {
    let mut options = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
    options.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut connection) = rumqttc::Client::new(options, 1024);
    client.subscribe(filter, rumqttc::QoS::AtMostOnce)?;
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _client = client;
        for event in connection.iter() {
            match event {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                    let _ = ready_tx.send(());
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(_))) => {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(10))?;
    Ok(count)
}

/// Publishes `payloads` to `topic` at QoS 0 from a background thread.
fn publish_qos0(port: u16, topic: &str, payloads: Vec<Vec<u8>>) -> std::thread::JoinHandle<()> {
    let topic = topic.to_string();
    std::thread::spawn(move || {
        let mut options = rumqttc::MqttOptions::new("oort-bench-pub", "127.0.0.1", port);
        options.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut connection) = rumqttc::Client::new(options, 4096);
        let pump = std::thread::spawn(move || {
            for event in connection.iter() {
                if event.is_err() {
                    return;
                }
            }
        });
        for p in payloads {
            if client
                .publish(topic.clone(), rumqttc::QoS::AtMostOnce, false, p)
                .is_err()
            {
                break;
            }
        }
        let _ = client.disconnect();
        let _ = pump.join();
    })
}

/// Waits until `count` reaches `target` or stops growing for two seconds; returns the count and
/// when it last grew.
fn wait_count(count: &AtomicUsize, target: usize) -> (usize, Instant) {
    let mut last = (count.load(Ordering::Relaxed), Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(5));
        let now = count.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        }
        if now >= target || last.1.elapsed() > Duration::from_secs(2) {
            return last;
        }
    }
}

/// Messages/s from mosquitto through a filter rule into a wasm sink and the mqtt sink, beside
/// what the broker alone passes from one publisher to one subscriber.
fn mqtt_rule(dir: &Path, rows: usize) -> anyhow::Result<()> {
    let Some(broker) = oort_tests::broker::Broker::start() else {
        println!("8. MQTT: skipped (mosquitto is not installed)\n");
        return Ok(());
    };
    // ~100-byte rows; 70% pass the filter.
    let row = |i: usize| {
        format!(
            "{{\"deviceId\":\"device-{:05}\",\"temperature\":{:.1},\"humidity\":{},\"ts\":{}}}",
            i % 10_000,
            20.0 + (i % 10) as f64 * 2.0,
            40 + i % 30,
            1_700_000_000_000_i64 + i as i64
        )
        .into_bytes()
    };
    let payloads: Vec<Vec<u8>> = (0..rows).map(row).collect();
    let expected = (0..rows).filter(|i| i % 10 >= 3).count();
    println!(
        "8. MQTT, one rule, QoS 0, {rows} messages of ~100 bytes through mosquitto on loopback"
    );

    // The broker alone: one publisher, one subscriber.
    let alone = count_messages(broker.port, "oort-bench-alone", "bench/alone")?;
    let started = Instant::now();
    publish_qos0(broker.port, "bench/alone", payloads.clone())
        .join()
        .ok();
    let (got, at) = wait_count(&alone, rows);
    println!(
        "   broker alone (publisher -> mosquitto -> subscriber): {:.0} msg/s, {got} of {rows} delivered",
        got as f64 / at.duration_since(started).as_secs_f64()
    );

    // mosquitto -> mqtt source -> WHERE -> wasm counter + mqtt sink -> mosquitto -> subscriber.
    std::fs::write(
        dir.join("mqtt.yaml"),
        format!("default:\n  server: \"{}\"\n  qos: 0\n", broker.url()),
    )?;
    std::fs::write(
        dir.join("streams.sql"),
        "CREATE STREAM readings () WITH (TYPE=\"mqtt\", DATASOURCE=\"bench/in\");",
    )?;
    std::fs::write(
        dir.join("rule.json"),
        format!(
            r#"{{"id":"mqtt","sql":"SELECT deviceId, temperature, humidity FROM readings WHERE temperature > 25 AND humidity < 80","actions":[{{"counter":{{}}}},{{"mqtt":{{"server":"{}","topic":"bench/out","qos":0}}}}]}}"#,
            broker.url()
        ),
    )?;
    let out = count_messages(broker.port, "oort-bench-out", "bench/out")?;
    let mut config = oort_tests::run_config(
        dir,
        dir.join("rule.json"),
        dir.join("streams.sql"),
        dir.join("data"),
    );
    config.host.max_instances = 16;
    config.mqtt_conf = Some(dir.join("mqtt.yaml"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let rule = std::thread::spawn(move || -> anyhow::Result<(oort::engine::RunReport, f64)> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let cpu = process_cpu_seconds();
        let report = runtime.block_on(oort::engine::run(&config, async {
            let _ = stop_rx.await;
        }))?;
        Ok((report, process_cpu_seconds() - cpu))
    });
    // Wait until the rule's subscription is in place: probes pass the filter.
    let probe_started = Instant::now();
    while out.load(Ordering::Relaxed) == 0 {
        anyhow::ensure!(
            probe_started.elapsed() < Duration::from_secs(30),
            "the rule never subscribed"
        );
        publish_qos0(broker.port, "bench/in", vec![row(5)])
            .join()
            .ok();
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let base = out.load(Ordering::Relaxed);
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    publish_qos0(broker.port, "bench/in", payloads).join().ok();
    let published = started.elapsed();
    let (got, at) = wait_count(&out, base + expected);
    let elapsed = at.duration_since(started).as_secs_f64();
    let cpu = process_cpu_seconds() - cpu_before;
    let _ = stop_tx.send(());
    let (report, _) = rule
        .join()
        .map_err(|_| anyhow::anyhow!("the rule thread panicked"))??;
    let r = &report.rules[0];
    let read = r.source.records_out.get();
    let counted = r.actions[0].metrics.records_out.get();
    let sent = r.actions[1].metrics.records_out.get();
    let out_got = got - base;
    println!(
        "   through the rule: {:.0} msg/s in ({rows} published in {:.2} s; all outputs in {elapsed:.2} s), {:.0} msg per CPU second of the whole process (publisher and subscribers included)",
        rows as f64 / elapsed,
        published.as_secs_f64(),
        rows as f64 / cpu.max(1e-9)
    );
    println!(
        "   source read {read} (probes included), wasm counter {counted}, mqtt sink {sent}; subscriber got {out_got} of {expected} expected outputs\n"
    );
    Ok(())
}

/// The argument that makes the benchmark run one size of the rule-count sweep in this process
/// (the sweep starts one process per size, so that each starts from a fresh heap).
const SWEEP_ONE: &str = "--sweep-one";

/// `rules`: N filter rules into `nop` on one stream, with and without `SHARED`: busy (a file
/// of `rows` lines read to its end) and idle (a memory topic nobody publishes to).
fn rule_sweep(dir: &Path, rows: usize) -> anyhow::Result<()> {
    let data = dir.join("sweep.jsonl");
    write_sample_rows(&data, rows)?;
    println!(
        "9. N filter rules on one stream into `nop`, one runtime thread, one process per size: busy = a file of {rows} rows read to its end, idle = a memory topic without messages"
    );
    println!(
        "   {:>5} {:>6} | {:>12} {:>12} | {:>15} {:>13} | {:>13} {:>13}",
        "rules",
        "shared",
        "rule rows/s",
        "input rows/s",
        "peak RSS/busy",
        "beyond 1 rule",
        "RSS/idle",
        "beyond 1 rule"
    );
    let exe = std::env::current_exe()?;
    for shared in [false, true] {
        let mut one_rule = None;
        for n in [1usize, 10, 100, 500] {
            let one = |mode: &str| -> anyhow::Result<Vec<f64>> {
                let out = std::process::Command::new(&exe)
                    .args([SWEEP_ONE, mode, &n.to_string(), &shared.to_string()])
                    .arg(dir)
                    .arg(rows.to_string())
                    .stderr(std::process::Stdio::inherit())
                    .output()?;
                anyhow::ensure!(out.status.success(), "the {mode} run of {n} rules failed");
                let line = String::from_utf8(out.stdout)?;
                line.split_whitespace()
                    .map(|v| v.parse::<f64>().map_err(anyhow::Error::from))
                    .collect()
            };
            let busy = one("busy")?;
            let idle = one("idle")?;
            let (seconds, peak) = (busy[0], busy[1]);
            let idle_bytes = idle[0];
            let beyond = |total: f64, first: f64| {
                if n > 1 {
                    format!("{:.0} KiB", (total - first) / (n - 1) as f64 / 1024.0)
                } else {
                    "-".to_string()
                }
            };
            let (busy_one, idle_one) = *one_rule.get_or_insert((peak, idle_bytes));
            println!(
                "   {n:>5} {:>6} | {:>12.0} {:>12.0} | {:>11.0} KiB {:>13} | {:>9.0} KiB {:>13}",
                if shared { "yes" } else { "no" },
                (rows * n) as f64 / seconds,
                rows as f64 / seconds,
                peak / n as f64 / 1024.0,
                beyond(peak, busy_one),
                idle_bytes / n as f64 / 1024.0,
                beyond(idle_bytes, idle_one),
            );
        }
    }
    println!(
        "   (RSS: the process's growth over its resident memory before the run, divided by the rules, so with the run's fixed cost; \"beyond 1 rule\": the growth over the 1-rule run's, divided by the rules added)\n"
    );
    Ok(())
}

/// The peak resident memory since the last [`reset_peak_rss`] (`VmHWM`), in bytes.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Starts measuring the peak resident memory anew (Linux: `clear_refs` 5).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// One size of the sweep, in this process: `busy|idle N shared DIR ROWS`; prints
/// `seconds peak_growth_bytes` (busy) or `growth_bytes` (idle).
fn sweep_one(args: &[String]) -> anyhow::Result<()> {
    let [mode, n, shared, dir, rows] = args else {
        anyhow::bail!("usage: {SWEEP_ONE} busy|idle N true|false DIR ROWS");
    };
    let n: usize = n.parse()?;
    let rows: u64 = rows.parse()?;
    let dir = Path::new(dir);
    // Explicit both ways: without `SHARED`, a run shares a file or memory stream by default.
    let shared = if shared == "true" {
        ", SHARED=\"true\""
    } else {
        ", SHARED=\"false\""
    };
    let busy = mode == "busy";
    let stream = if busy {
        format!(
            "CREATE STREAM readings () WITH (TYPE=\"file\", DATASOURCE=\"sweep.jsonl\"{shared});"
        )
    } else {
        format!(
            "CREATE STREAM readings () WITH (TYPE=\"memory\", DATASOURCE=\"sweep/idle\"{shared});"
        )
    };
    let rules: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "id": format!("r{i}"),
                "sql": "SELECT deviceId, temperature FROM readings WHERE temperature > 30",
                "actions": [{"nop": {}}],
            })
        })
        .collect();
    let tag = format!("{mode}-{n}-{}", !shared.is_empty());
    std::fs::write(dir.join(format!("sweep-{tag}.sql")), stream)?;
    std::fs::write(
        dir.join(format!("sweep-{tag}.json")),
        serde_json::Value::Array(rules).to_string(),
    )?;
    let mut config = oort_tests::run_config(
        dir,
        dir.join(format!("sweep-{tag}.json")),
        dir.join(format!("sweep-{tag}.sql")),
        dir.join(format!("sweep-data-{tag}")),
    );
    config.host.max_instances = 16;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let before = rss_bytes();
    if busy {
        reset_peak_rss();
        let report = runtime.block_on(oort::engine::run(&config, std::future::pending()))?;
        let peak = peak_rss_bytes().saturating_sub(before);
        for rule in &report.rules {
            let read = rule.source.records_out.get();
            anyhow::ensure!(read == rows, "rule {} read {read} of {rows} rows", rule.id);
        }
        println!("{} {peak}", report.elapsed.as_secs_f64());
    } else {
        let during = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen = Arc::clone(&during);
        let (wired_tx, wired) = tokio::sync::oneshot::channel::<()>();
        let stop = async move {
            let _ = wired.await;
            // Every rule's tasks have started and subscribed by then.
            tokio::time::sleep(Duration::from_millis(500)).await;
            seen.store(rss_bytes(), Ordering::Relaxed);
        };
        runtime.block_on(oort::engine::run_observed(
            &config,
            stop,
            std::future::pending(),
            Some(Duration::from_secs(10)),
            move |_, _| {
                let _ = wired_tx.send(());
            },
        ))?;
        println!("{}", during.load(Ordering::Relaxed).saturating_sub(before));
    }
    Ok(())
}
