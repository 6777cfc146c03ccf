//! The delivery and sandbox benchmark (`cargo xtask bench delivery`): prints, from one run,
//!
//! 1. the time from a call's deadline to the trap, and from the trap to a fresh instance ready
//!    (instantiated, configured, opened), p50/p99;
//! 2. the throughput cost of the limits: `collect` into the wasm `counter` sink with no limits,
//!    with epoch deadlines, and with epoch deadlines and fuel;
//! 3. 1,000 trapping batches: rows delivered and lost, and the time each trap costs;
//! 4. a 10 s sink outage in the middle of a stream, with the cache on: rows lost, most cached,
//!    time to catch up;
//! 5. a `kill -9` of `oort` while its sink is down, with the disk cache: rows the action had
//!    cached, rows resent by the next run.
//!
//! Figures are printed, not asserted: the tests check behaviour, this measures it.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oort::host::bindings::{WitBatch, WitContext};
use oort::host::{CallFailure, Grants, HostConfig, InstanceTag, SinkHost};

#[global_allocator]
static ALLOCATOR: oort::Allocator = oort::Allocator;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let dir = tempfile::tempdir()?;
    oort_tests::install_all(&dir.path().join("plugins"))?;
    println!(
        "oort delivery benchmark ({} mode)\n",
        if quick { "quick" } else { "full" }
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        deadline_recovery(dir.path(), if quick { 10 } else { 100 }).await?;
        limits_cost(dir.path(), if quick { 200 } else { 2000 }).await?;
        anyhow::Ok(())
    })?;
    trap_storm(dir.path(), 1000)?;
    outage(
        dir.path(),
        if quick { 4 } else { 10 },
        if quick { 2_000 } else { 5_000 },
    )?;
    kill_nine(dir.path(), if quick { 5_000 } else { 50_000 })?;
    Ok(())
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn tag(action: &str) -> InstanceTag {
    InstanceTag {
        rule: Arc::from("bench"),
        action: Arc::from(action),
        instance: 0,
        dropped_logs: Arc::default(),
    }
}

fn context(action: &str, generation: u32) -> WitContext {
    WitContext {
        rule_id: "bench".into(),
        action: action.into(),
        instance: 0,
        format: "json".into(),
        generation,
    }
}

fn batch(messages: usize) -> WitBatch {
    let mut batch = oort::sink::Batch::new();
    let payload = br#"{"deviceId":"device-00042","temperature":21.5,"humidity":44,"status":"nominal-operation","seq":1}"#;
    for i in 0..messages {
        batch.push(payload, i as i64);
    }
    batch.into_wit()
}

/// 1. A probe whose first generation loops in `collect`: deadline to trap, trap to a fresh
///    instance ready.
async fn deadline_recovery(dir: &Path, samples: usize) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(50);
    let host = SinkHost::new(HostConfig {
        cache_dir: Some(oort_tests::cache_dir()),
        max_instances: 16,
        call_timeout: timeout,
        ..HostConfig::default()
    })?;
    let plugin = host.load(&dir.join("plugins/sinks/Probe.wasm"))?;
    let mut props = serde_json::json!({
        "journal": dir.join("probe-journal.txt").display().to_string(),
        "failPhase": "collect", "failKind": "hang", "failGenerations": 1,
    })
    .as_object()
    .cloned()
    .unwrap_or_default();
    let grants = Grants::resolve(&plugin.manifest, &mut props, dir, true)?;
    let props = serde_json::Value::Object(props).to_string();
    let one = batch(1);
    let (mut to_trap, mut to_fresh, mut total) = (Vec::new(), Vec::new(), Vec::new());
    let mut call_to_trap = Vec::new();
    for _ in 0..samples {
        let mut hanging = host
            .instantiate(&plugin, tag("probe_0"), &grants)
            .await
            .map_err(anyhow::Error::msg)?;
        hanging
            .configure(&context("probe_0", 0), &props)
            .await
            .map_err(anyhow::Error::msg)?;
        hanging.open(None).await.map_err(anyhow::Error::msg)?;
        let started = Instant::now();
        let failure = hanging.collect(&one).await;
        let trapped = Instant::now();
        anyhow::ensure!(
            matches!(failure, Err(CallFailure::Trap(_))),
            "the loop must trap: {failure:?}"
        );
        drop(hanging);
        let mut fresh = host
            .instantiate(&plugin, tag("probe_0"), &grants)
            .await
            .map_err(anyhow::Error::msg)?;
        fresh
            .configure(&context("probe_0", 1), &props)
            .await
            .map_err(anyhow::Error::msg)?;
        fresh.open(None).await.map_err(anyhow::Error::msg)?;
        let ready = Instant::now();
        let deadline = started + timeout;
        call_to_trap.push(trapped - started);
        to_trap.push(trapped.saturating_duration_since(deadline));
        to_fresh.push(ready - trapped);
        total.push(ready.saturating_duration_since(deadline));
    }
    println!(
        "1. a call looping past its deadline ({} ms), {samples} samples",
        timeout.as_millis()
    );
    for (what, values) in [
        ("call start -> trap", &mut call_to_trap),
        ("deadline -> trap (0: within a tick before)", &mut to_trap),
        ("trap -> fresh instance open", &mut to_fresh),
        ("deadline -> fresh instance open", &mut total),
    ] {
        println!(
            "   {what:<44} p50 {:>6.2} ms   p99 {:>6.2} ms",
            ms(percentile(values, 0.5)),
            ms(percentile(values, 0.99))
        );
    }
    println!();
    Ok(())
}

/// 2. `collect` of 1,000-message batches (and of single messages) into the counter sink, with
///    no limits, epoch deadlines, and epoch deadlines plus fuel.
async fn limits_cost(dir: &Path, calls: usize) -> anyhow::Result<()> {
    println!("2. cost of the limits: collect into the wasm counter sink, ~100-byte messages");
    let configs = [
        ("no limits", false, 0),
        ("epoch deadline", true, 0),
        (
            "epoch deadline + fuel",
            true,
            oort::host::DEFAULT_FUEL_PER_CALL,
        ),
    ];
    let big = batch(1000);
    let one = batch(1);
    let mut base = None;
    for (name, epoch, fuel) in configs {
        let host = SinkHost::new(HostConfig {
            cache_dir: Some(oort_tests::cache_dir()),
            max_instances: 16,
            epoch_deadlines: epoch,
            fuel_per_call: fuel,
            ..HostConfig::default()
        })?;
        let plugin = host.load(&dir.join("plugins/sinks/Counter.wasm"))?;
        let mut instance = host
            .instantiate(&plugin, tag("counter_0"), &Grants::default())
            .await
            .map_err(anyhow::Error::msg)?;
        instance
            .configure(&context("counter_0", 0), "{}")
            .await
            .map_err(anyhow::Error::msg)?;
        instance.open(None).await.map_err(anyhow::Error::msg)?;
        // Best of three rounds: the machine is shared.
        let mut per_message = f64::MAX;
        let mut per_call = f64::MAX;
        for _ in 0..3 {
            let started = Instant::now();
            for _ in 0..calls {
                instance.collect(&big).await.map_err(anyhow::Error::msg)?;
            }
            per_message =
                per_message.min(started.elapsed().as_secs_f64() * 1e9 / (calls * 1000) as f64);
            let started = Instant::now();
            for _ in 0..calls * 10 {
                instance.collect(&one).await.map_err(anyhow::Error::msg)?;
            }
            per_call = per_call.min(started.elapsed().as_secs_f64() * 1e9 / (calls * 10) as f64);
        }
        let base = *base.get_or_insert(per_message);
        println!(
            "   {name:<24} {per_message:>6.1} ns/message at batch 1000 ({:>5.1} M msg/s, {:>+5.1} %)   {:>6.0} ns per call at batch 1",
            1e3 / per_message,
            (per_message / base - 1.0) * 100.0,
            per_call
        );
    }
    println!();
    Ok(())
}

fn write_case(dir: &Path, streams: &str, rule: &serde_json::Value) -> anyhow::Result<()> {
    std::fs::write(dir.join("streams.sql"), streams)?;
    std::fs::write(dir.join("rule.json"), rule.to_string())?;
    Ok(())
}

fn run_in_process(dir: &Path) -> anyhow::Result<oort::engine::RunReport> {
    let mut config = oort_tests::run_config(
        dir,
        dir.join("rule.json"),
        dir.join("streams.sql"),
        dir.join("data"),
    );
    config.host.max_instances = 16;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(oort::engine::run(&config, std::future::pending()))?)
}

/// The `n` of every message the probe journaled, in delivery order.
fn journaled(path: &Path) -> Vec<u64> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| l.starts_with("collect"))
        .flat_map(|l| {
            l.split(' ')
                .filter(|w| w.starts_with('{'))
                .filter_map(|w| serde_json::from_str::<serde_json::Value>(w).ok())
                .filter_map(|v| v["n"].as_u64())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn lost(expected: u64, got: &[u64]) -> (u64, u64) {
    let mut unique = got.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let missing = (0..expected)
        .filter(|n| unique.binary_search(n).is_err())
        .count() as u64;
    (missing, got.len() as u64 - unique.len() as u64)
}

/// 3. Every batch traps its instance once (a panic on every second call of an instance).
fn trap_storm(dir: &Path, traps: usize) -> anyhow::Result<()> {
    let case = dir.join("traps");
    std::fs::create_dir_all(&case)?;
    let _ = std::fs::remove_file(case.join("journal.txt"));
    std::os::unix::fs::symlink(dir.join("plugins"), case.join("plugins")).ok();
    let rows = traps + 1;
    let text: String = (0..rows).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    std::fs::write(case.join("in.jsonl"), text)?;
    write_case(
        &case,
        "CREATE STREAM demo () WITH (TYPE=\"file\", DATASOURCE=\"in.jsonl\");",
        &serde_json::json!({"id": "traps", "sql": "SELECT n FROM demo", "actions": [{"probe": {
            "journal": "journal.txt", "failPhase": "collect", "failKind": "trap",
            "failEvery": 2, "batchSize": 1}}]}),
    )?;
    let report = run_in_process(&case)?;
    let action = &report.rules[0].actions[0].metrics;
    let got = journaled(&case.join("journal.txt"));
    let (missing, duplicates) = lost(rows as u64, &got);
    println!("3. {rows} one-row batches, each after the first trapping its instance once");
    println!(
        "   traps {}, delivered {}, lost {missing}, duplicates {duplicates}, failed {}, {:.2} ms per trap and recovery ({:.2} s in all)",
        action.restarts.get(),
        action.records_out.get(),
        action.failed.get(),
        report.elapsed.as_secs_f64() * 1e3 / action.restarts.get().max(1) as f64,
        report.elapsed.as_secs_f64()
    );
    println!();
    Ok(())
}

/// Starts `oort run-rule` on `case` with stdin piped and a debug log collected.
fn spawn_oort(case: &Path) -> anyhow::Result<(std::process::Child, Arc<Mutex<String>>)> {
    let mut child = Command::new(oort_tests::oort_bin())
        .current_dir(case)
        .args([
            "run-rule",
            "rule.json",
            "--streams",
            "streams.sql",
            "--json",
            "--log",
            "oort=debug",
        ])
        .env("OORT_CACHE_DIR", oort_tests::cache_dir())
        .env("OORT_PLUGINS", case.join("plugins"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let log = Arc::new(Mutex::new(String::new()));
    let spawned = Instant::now();
    let stderr = child.stderr.take().expect("piped");
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(mut log) = sink.lock() {
                // Keep only what the benchmark reads: cache levels, catching up, warnings;
                // each with the moment it was seen (ms since the process started).
                if line.contains("in the cache")
                    || line.contains("caught up")
                    || line.contains("WARN")
                {
                    log.push_str(&format!("@{} ", spawned.elapsed().as_millis()));
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        }
    });
    Ok((child, log))
}

fn probe_case(
    dir: &Path,
    name: &str,
    props: serde_json::Value,
) -> anyhow::Result<std::path::PathBuf> {
    let case = dir.join(name);
    let _ = std::fs::remove_dir_all(&case);
    std::fs::create_dir_all(&case)?;
    std::os::unix::fs::symlink(dir.join("plugins"), case.join("plugins"))?;
    let mut props = props;
    props["journal"] = serde_json::json!("journal.txt");
    write_case(
        &case,
        "CREATE STREAM s () WITH (TYPE=\"stdin\");",
        &serde_json::json!({"id": name, "sql": "SELECT n FROM s", "actions": [{"probe": props}]}),
    )?;
    Ok(case)
}

/// The largest "N in the cache" the log reported.
fn most_cached(log: &str) -> u64 {
    log.lines()
        .filter_map(|l| {
            let at = l.find(" in the cache")?;
            let head = &l[..at];
            head.rsplit(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .max()
        .unwrap_or(0)
}

/// 4. Rows streamed at `rate`/s for `outage * 2` s; the sink is down for `outage` s in the
///    middle.
fn outage(dir: &Path, outage: u64, rate: u64) -> anyhow::Result<()> {
    let case = probe_case(
        dir,
        "outage",
        serde_json::json!({"downWhile": "down.flag", "enableCache": true, "batchSize": 100,
                           "lingerInterval": 20, "retryCount": 2, "retryInterval": 50}),
    )?;
    let t0 = Instant::now();
    let (mut child, log) = spawn_oort(&case)?;
    let mut stdin = child.stdin.take().expect("piped");
    let total_secs = outage * 2;
    let rows = rate * total_secs;
    let started = Instant::now();
    let mut down_at = None;
    let mut up_at = None;
    for i in 0..rows {
        let due = Duration::from_secs_f64(i as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        let t = started.elapsed();
        if down_at.is_none() && t >= Duration::from_secs(outage / 2) {
            std::fs::write(case.join("down.flag"), "")?;
            down_at = Some(Instant::now());
        }
        if up_at.is_none() && t >= Duration::from_secs(outage / 2 + outage) {
            std::fs::remove_file(case.join("down.flag"))?;
            up_at = Some(Instant::now());
        }
        writeln!(stdin, "{{\"n\":{i}}}")?;
    }
    stdin.flush()?;
    drop(stdin);
    let out = child.wait_with_output()?;
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let action = &summary["rules"][0]["actions"][0];
    let got = journaled(&case.join("journal.txt"));
    let (missing, duplicates) = lost(rows, &got);
    let log = log.lock().map(|l| l.clone()).unwrap_or_default();
    println!(
        "4. a {outage} s sink outage in a {total_secs} s stream of {rate} rows/s ({rows} rows), cache on"
    );
    println!(
        "   lost {missing}, duplicates {duplicates}, cached at most {} rows ({} in all, {} resent), failed {}, balanced {}",
        most_cached(&log),
        action["cached_total"],
        action["resent_total"],
        action["failed_total"],
        action["balanced"],
    );
    // When the log said the cache was empty again, after the sink came back.
    let up_ms = up_at.map(|up| up.duration_since(t0).as_millis() as u64);
    let caught_up_ms = log
        .lines()
        .filter(|l| l.contains("caught up"))
        .filter_map(|l| l.strip_prefix('@')?.split(' ').next()?.parse::<u64>().ok())
        .find(|&ms| up_ms.is_some_and(|up| ms >= up));
    if let (Some(up), Some(done), Some(down)) = (up_ms, caught_up_ms, down_at) {
        println!(
            "   the cache was empty again {:.2} s after the sink came back (outage measured {:.1} s)",
            (done - up) as f64 / 1e3,
            up_at.unwrap_or(down).duration_since(down).as_secs_f64()
        );
    }
    println!();
    Ok(())
}

/// 5. `kill -9` while the sink is down and rows stream in; the next run resends the disk cache.
fn kill_nine(dir: &Path, rows: u64) -> anyhow::Result<()> {
    let props = serde_json::json!({"downWhile": "down.flag", "enableCache": true,
                                    "memoryCacheThreshold": 0, "bufferPageSize": 100,
                                    "batchSize": 100, "lingerInterval": 20, "retryCount": 0});
    let case = probe_case(dir, "kill", props.clone())?;
    std::fs::write(case.join("down.flag"), "")?;
    let (mut child, log) = spawn_oort(&case)?;
    let mut stdin = child.stdin.take().expect("piped");
    let started = Instant::now();
    for i in 0..rows {
        writeln!(stdin, "{{\"n\":{i}}}")?;
    }
    stdin.flush()?;
    // Mid-stream: as soon as half the rows are cached, SIGKILL.
    while most_cached(&log.lock().map(|l| l.clone()).unwrap_or_default()) < rows / 2 {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the rows never reached the cache"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill()?;
    child.wait()?;
    drop(stdin);
    let cached_before = most_cached(&log.lock().map(|l| l.clone()).unwrap_or_default());

    // The next run: the sink is back, no new input.
    std::fs::remove_file(case.join("down.flag"))?;
    let (mut child, _log) = spawn_oort(&case)?;
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let action = &summary["rules"][0]["actions"][0];
    let got = journaled(&case.join("journal.txt"));
    let restored = action["cache_restored_total"].as_u64().unwrap_or(0);
    let (missing_of_cached, _) = lost(cached_before, &got);
    println!("5. kill -9 of oort while its sink is down ({rows} rows piped in, disk cache on)");
    println!(
        "   cached when killed (last logged) {cached_before}; restored by the next run {restored}; delivered {}; \
         lost of the cached rows {missing_of_cached}; rows still in the pipe or the rule at the kill {}",
        got.len(),
        rows.saturating_sub(restored)
    );
    Ok(())
}
