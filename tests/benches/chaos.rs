//! The chaos benchmark (`cargo xtask bench chaos [--kills K] [--rows N] [--quick]`): rules with
//! `qos: 1` are killed with SIGKILL at K random moments and started again each time, until
//! their input is done; prints, from one run,
//!
//! 1. the throughput cost of checkpointing (1 s, 10 s and 300 s intervals) against `qos: 0`,
//!    on uninterrupted runs over a file stream;
//! 2. a file stream of N rows through a windowed aggregate (into `file`) and a plain filter
//!    (into `file`, `redis` and `mqtt`), killed K times: rows lost and duplicated per sink,
//!    window results compared with the uninterrupted `qos: 1` run, recovery time per restart
//!    (from the new process's start to its first delivered row) p50/p99;
//!    2b. the same rules under `qos: 2`, killed K times: rows lost and duplicated per sink
//!    (none duplicated at `file` and `redis`; the `mqtt` sink stays at least once for a
//!    consumer that does not drop duplicates by the MQTT 5 user properties), windows;
//! 3. an MQTT stream of N QoS 1 messages (mosquitto with persistence) through a filter into
//!    `file`, killed K times while the messages are published: rows lost and duplicated.
//!
//! Under `qos: 1` the `file` sink starts its file afresh at each run, so each run writes to a
//! file of its own and the files are read together; under `qos: 2` every run continues the
//! same file. Figures are printed, not asserted.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oort_tests::broker::{Broker, Subscriber, publish_all};
use oort_tests::redis::{RedisServer, Reply};
use serde_json::{Value, json};

struct Args {
    rows: u64,
    kills: usize,
}

fn args() -> anyhow::Result<Args> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let quick = argv.iter().any(|a| a == "--quick");
    let mut out = Args {
        rows: if quick { 20_000 } else { 200_000 },
        kills: if quick { 5 } else { 20 },
    };
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--kills" => out.kills = it.next().map(|v| v.parse()).transpose()?.unwrap_or(20),
            "--rows" => out.rows = it.next().map(|v| v.parse()).transpose()?.unwrap_or(200_000),
            _ => {}
        }
    }
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let dir = tempfile::Builder::new().prefix("oort-chaos-").tempdir()?;
    let root = dir.path();
    oort_tests::install_all(&root.join("plugins"))?;
    let (Some(broker), Some(redis)) = (Broker::start(), RedisServer::start(None)) else {
        anyhow::bail!("the chaos benchmark needs mosquitto and redis-server");
    };
    println!(
        "oort chaos benchmark: {} rows, {} kills (SIGKILL), qos 1\n",
        args.rows, args.kills
    );
    let input: String = (0..args.rows)
        .map(|n| format!("{{\"n\":{n},\"ts\":{}}}\n", n * 10))
        .collect();
    std::fs::write(root.join("in.jsonl"), input)?;
    std::fs::write(
        root.join("streams.sql"),
        "CREATE STREAM f (n bigint, ts bigint) WITH (TYPE=\"file\", DATASOURCE=\"in.jsonl\", \
         TIMESTAMP=\"ts\");\n\
         CREATE STREAM m (n bigint) WITH (DATASOURCE=\"in/chaos\");\n",
    )?;
    std::fs::write(
        root.join("mqtt.yaml"),
        format!("default:\n  qos: 1\n  server: \"{}\"\n", broker.url()),
    )?;
    let env = Env {
        root: root.to_path_buf(),
        broker: broker.url(),
        redis: redis.addr(),
    };

    // 1. The cost of checkpointing, on uninterrupted runs; the qos 1 @ 1 s run is the
    // reference of the window results.
    println!(
        "1. throughput of the two file rules ({} rows), uninterrupted",
        args.rows
    );
    let mut base = None;
    let mut reference = None;
    for (label, qos, interval) in [
        // Untimed: compiles the sink components into the cache the timed runs then share.
        ("warm-up", 0, "2s"),
        ("qos 0", 0, "1s"),
        ("qos 1, checkpoint every 1 s", 1, "1s"),
        ("qos 1, checkpoint every 10 s", 1, "10s"),
        ("qos 1, checkpoint every 300 s", 1, "300s"),
    ] {
        let case = format!("tp-{qos}-{interval}");
        env.write_file_rules(&case, 0, qos, interval)?;
        let started = Instant::now();
        let mut child = env.spawn(&case, "file-rules.json")?;
        let status = child.wait()?;
        let took = started.elapsed();
        anyhow::ensure!(status.success(), "{label}: oort failed ({status})");
        if label == "warm-up" {
            continue;
        }
        let rate = args.rows as f64 / took.as_secs_f64();
        let cost = base.map_or(String::new(), |b: f64| {
            format!(
                ", {:+.1} % time vs qos 0",
                (took.as_secs_f64() / b - 1.0) * 100.0
            )
        });
        println!(
            "   {label:<30} {:>7.2} s  {rate:>9.0} rows/s{cost}",
            took.as_secs_f64()
        );
        if qos == 0 {
            base = Some(took.as_secs_f64());
        }
        if qos == 1 && interval == "1s" {
            reference = Some((took, windows(&env.root.join(&case), "agg")?));
        }
    }
    let (uninterrupted, reference) = reference.expect("the qos 1 run");
    println!();

    // 2. The file rules, killed K times.
    let case = "chaos-file";
    let out = Subscriber::new(broker.port, "chaos-filter-out", &format!("chaos/{case}"));
    let (runs, recoveries, kills) = env.chaos(case, args.kills, uninterrupted, |run| {
        env.write_file_rules(case, run, 1, "1s")
    })?;
    let published = out.collect_until(Duration::from_secs(10), |_| false);
    println!(
        "2. file stream, {kills} kills in {runs} runs (the last to the end of the input), qos 1, checkpoint every 1 s"
    );
    let expected: BTreeSet<u64> = (0..args.rows).filter(|n| n % 2 == 0).collect();
    let filtered = numbers(&env.root.join(case), "filter")?;
    report_rows("filter -> file", &expected, &filtered);
    let mqtt: Vec<u64> = published
        .iter()
        .filter_map(|(_, p)| serde_json::from_slice::<Value>(p).ok())
        .filter_map(|v| v["n"].as_u64())
        .collect();
    report_rows("filter -> mqtt", &expected, &mqtt);
    let keys = match redis.command(&["KEYS", "chaos-file:*"])? {
        Reply::Array(keys) => keys
            .iter()
            .filter_map(|k| k.text()?.strip_prefix("chaos-file:")?.parse().ok())
            .collect::<Vec<u64>>(),
        other => anyhow::bail!("KEYS answered {other:?}"),
    };
    report_rows("filter -> redis (by key)", &expected, &keys);
    let got = windows(&env.root.join(case), "agg")?;
    let missing = reference.keys().filter(|w| !got.contains_key(*w)).count();
    let differ = got
        .iter()
        .filter(|(w, results)| {
            results
                .iter()
                .any(|r| Some(r) != reference.get(*w).and_then(|v| v.first()))
        })
        .count();
    let twice = got.values().filter(|r| r.len() > 1).count();
    println!(
        "   window -> file: {} windows (uninterrupted: {}), {missing} missing, {differ} with a \
         result unlike the uninterrupted run's, {twice} written more than once",
        got.len(),
        reference.len()
    );
    print_recoveries(&recoveries);
    println!();

    // 2b. The same under qos 2: each run continues the same files.
    let case = "chaos-file-qos2";
    let out = Subscriber::new(broker.port, "chaos-filter-out-2", &format!("chaos/{case}"));
    let (runs, _, kills) = env.chaos(case, args.kills, uninterrupted, |run| {
        env.write_file_rules(case, run, 2, "1s")
    })?;
    let published = out.collect_until(Duration::from_secs(10), |_| false);
    println!(
        "2b. file stream, {kills} kills in {runs} runs, qos 2 (exactly once at `file` and \
         `redis`; `mqtt` at least once, its consumer drops duplicates by MQTT 5 user properties), \
         checkpoint every 1 s"
    );
    let filtered = numbers(&env.root.join(case), "filter")?;
    report_rows("filter -> file", &expected, &filtered);
    let mqtt: Vec<u64> = published
        .iter()
        .filter_map(|(_, p)| serde_json::from_slice::<Value>(p).ok())
        .filter_map(|v| v["n"].as_u64())
        .collect();
    report_rows("filter -> mqtt", &expected, &mqtt);
    let keys = match redis.command(&["KEYS", &format!("{case}:*")])? {
        Reply::Array(keys) => keys
            .iter()
            .filter_map(|k| k.text()?.strip_prefix(&format!("{case}:"))?.parse().ok())
            .collect::<Vec<u64>>(),
        other => anyhow::bail!("KEYS answered {other:?}"),
    };
    report_rows("filter -> redis (by key)", &expected, &keys);
    let got = windows(&env.root.join(case), "agg")?;
    let missing = reference.keys().filter(|w| !got.contains_key(*w)).count();
    let twice = got.values().filter(|r| r.len() > 1).count();
    println!(
        "   window -> file: {} windows (uninterrupted: {}), {missing} missing, {twice} written \
         more than once",
        got.len(),
        reference.len()
    );
    println!();

    // 3. The MQTT stream, killed K times while the messages are published.
    let case = "chaos-mqtt";
    let rows = args.rows;
    let port = broker.port;
    let publisher = std::thread::spawn(move || {
        let payloads = (0..rows).map(|n| format!("{{\"n\":{n}}}").into_bytes());
        publish_all(port, "in/chaos", payloads);
    });
    let (runs, recoveries, kills) = env.chaos_mqtt(case, args.kills, &publisher, |run| {
        env.write_mqtt_rule(case, run)
    })?;
    publisher.join().expect("the publisher");
    println!(
        "3. MQTT stream of {rows} QoS 1 messages, {kills} kills in {runs} runs while publishing, qos 1"
    );
    let expected: BTreeSet<u64> = (0..rows).collect();
    let got = numbers(&env.root.join(case), "mqtt")?;
    report_rows("mqtt -> file", &expected, &got);
    print_recoveries(&recoveries);
    Ok(())
}

/// Where the benchmark runs and the servers it uses.
struct Env {
    root: PathBuf,
    broker: String,
    redis: String,
}

impl Env {
    /// The rules over the file stream: a 1 s event-time tumbling window into `file`, and a
    /// filter into `file`, `redis` and `mqtt`. Run `run` writes files of its own.
    fn write_file_rules(
        &self,
        case: &str,
        run: usize,
        qos: u8,
        interval: &str,
    ) -> anyhow::Result<()> {
        let options = json!({"qos": qos, "checkpointInterval": interval, "isEventTime": true,
                             "lateTolerance": 0});
        // Under qos 2 every run continues the same files (their markers skip what an earlier
        // run wrote); under 1 each run writes its own.
        let run = if qos >= 2 {
            "all".to_string()
        } else {
            run.to_string()
        };
        let rules = json!([
            {
                "id": "agg",
                "sql": "SELECT window_start() AS ws, count(*) AS c, sum(n) AS s FROM f \
                        GROUP BY TUMBLINGWINDOW(ss, 1)",
                "actions": [{"file": {"path": format!("out/agg-{run}.jsonl")}}],
                "options": options,
            },
            {
                "id": "filter",
                "sql": "SELECT n FROM f WHERE n % 2 = 0",
                "actions": [
                    {"file": {"path": format!("out/filter-{run}.jsonl")}},
                    {"redis": {"addr": self.redis, "key": format!("{case}:{{{{.n}}}}")}},
                    {"mqtt": {"server": self.broker, "topic": format!("chaos/{case}"), "qos": 1}},
                ],
                "options": {"qos": qos, "checkpointInterval": interval},
            }
        ]);
        let dir = self.root.join(case);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("file-rules.json"), rules.to_string())?;
        Ok(())
    }

    fn write_mqtt_rule(&self, case: &str, run: usize) -> anyhow::Result<()> {
        let rule = json!({
            "id": "mqtt",
            "sql": "SELECT n FROM m",
            "actions": [{"file": {"path": format!("out/mqtt-{run}.jsonl")}}],
            "options": {"qos": 1, "checkpointInterval": "1s"},
        });
        let dir = self.root.join(case);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("mqtt-rule.json"), rule.to_string())?;
        Ok(())
    }

    /// `oort run-rule` of a case folder (its data directory is its own).
    fn spawn(&self, case: &str, rules: &str) -> anyhow::Result<Child> {
        let dir = self.root.join(case);
        let child = Command::new(oort_tests::oort_bin())
            .current_dir(&dir)
            .args([
                "run-rule",
                rules,
                "--streams",
                self.root.join("streams.sql").to_str().unwrap_or_default(),
                "--mqtt-conf",
                self.root.join("mqtt.yaml").to_str().unwrap_or_default(),
                "--data-dir",
                "data",
                "--json",
            ])
            .env("OORT_CACHE_DIR", oort_tests::cache_dir())
            .env("OORT_PLUGINS", self.root.join("plugins"))
            .env("OORT_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        Ok(child)
    }

    /// Runs the file rules of `case` until one run reaches the end of the input, killing the
    /// first `kills` runs at a random moment (spread over about the uninterrupted run's time).
    /// Returns the runs, the recovery times and the kills made.
    fn chaos(
        &self,
        case: &str,
        kills: usize,
        uninterrupted: Duration,
        write: impl Fn(usize) -> anyhow::Result<()>,
    ) -> anyhow::Result<(usize, Vec<Duration>, usize)> {
        let mut recoveries = Vec::new();
        let mut killed = 0;
        let spread = uninterrupted.mul_f64(2.0 / kills.max(1) as f64);
        for run in 0.. {
            write(run)?;
            let kill_at = (killed < kills).then(|| spread.mul_f64(rand::random::<f64>()));
            let first = self.dir_out(case, "filter", run);
            let outcome = self.run_once(case, "file-rules.json", kill_at, &first, || false)?;
            if run > 0
                && let Some(r) = outcome.first_row
            {
                recoveries.push(r);
            }
            if outcome.killed {
                killed += 1;
            } else {
                return Ok((run + 1, recoveries, killed));
            }
        }
        unreachable!()
    }

    /// Runs the MQTT rule of `case`, killing it `kills` times at random moments while the
    /// publisher runs; then lets a last run take what is left and stops it with SIGTERM once
    /// nothing new arrived for 3 s.
    fn chaos_mqtt(
        &self,
        case: &str,
        kills: usize,
        publisher: &std::thread::JoinHandle<()>,
        write: impl Fn(usize) -> anyhow::Result<()>,
    ) -> anyhow::Result<(usize, Vec<Duration>, usize)> {
        let mut recoveries = Vec::new();
        let mut killed = 0;
        for run in 0.. {
            write(run)?;
            let last = killed >= kills || publisher.is_finished();
            let kill_at =
                (!last).then(|| Duration::from_millis(200 + rand::random::<u64>() % 1500));
            let first = self.dir_out(case, "mqtt", run);
            let outcome = self.run_once(case, "mqtt-rule.json", kill_at, &first, || {
                last && publisher.is_finished()
            })?;
            if run > 0
                && let Some(r) = outcome.first_row
            {
                recoveries.push(r);
            }
            if outcome.killed {
                killed += 1;
            } else {
                return Ok((run + 1, recoveries, killed));
            }
        }
        unreachable!()
    }

    fn dir_out(&self, case: &str, rule: &str, run: usize) -> PathBuf {
        self.root.join(case).join(format!("out/{rule}-{run}.jsonl"))
    }

    /// One run: SIGKILL at `kill_at`; when `quiet_stop` holds and `first` has not grown for
    /// 3 s, SIGTERM (an unbounded input). Notes when `first` got its first row.
    fn run_once(
        &self,
        case: &str,
        rules: &str,
        kill_at: Option<Duration>,
        first: &Path,
        quiet_stop: impl Fn() -> bool,
    ) -> anyhow::Result<Outcome> {
        let started = Instant::now();
        let mut child = self.spawn(case, rules)?;
        let log = collect(&mut child);
        let mut first_row = None;
        let mut size = 0;
        let mut grew = Instant::now();
        let mut termed = false;
        loop {
            if let Some(status) = child.try_wait()? {
                let log = log.lock().map(|l| l.clone()).unwrap_or_default();
                anyhow::ensure!(
                    status.success() || termed || status.code() == Some(3),
                    "{case}: oort failed ({status}):\n{log}"
                );
                return Ok(Outcome {
                    killed: false,
                    first_row,
                });
            }
            let now = std::fs::metadata(first).map(|m| m.len()).unwrap_or(0);
            if now > 0 && first_row.is_none() {
                first_row = Some(started.elapsed());
            }
            if now != size {
                size = now;
                grew = Instant::now();
            }
            if let Some(at) = kill_at
                && started.elapsed() >= at
            {
                child.kill()?;
                child.wait()?;
                return Ok(Outcome {
                    killed: true,
                    first_row,
                });
            }
            if !termed && quiet_stop() && grew.elapsed() > Duration::from_secs(3) {
                Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status()?;
                termed = true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

struct Outcome {
    killed: bool,
    first_row: Option<Duration>,
}

/// Keeps a child's stderr (errors only are logged) for the message of a failed run.
fn collect(child: &mut Child) -> Arc<Mutex<String>> {
    let log = Arc::new(Mutex::new(String::new()));
    if let Some(stderr) = child.stderr.take() {
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut log) = sink.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
    }
    log
}

/// The lines of every run's `out/<rule>-*.jsonl` of a case; a line a kill cut short is not a
/// row (it was not delivered).
fn lines(case: &Path, rule: &str) -> anyhow::Result<Vec<Value>> {
    let mut rows = Vec::new();
    let out = case.join("out");
    let Ok(entries) = std::fs::read_dir(&out) else {
        return Ok(rows);
    };
    for entry in entries {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if !(name.starts_with(&format!("{rule}-")) && name.ends_with(".jsonl")) {
            continue;
        }
        for line in std::fs::read_to_string(&path)?.lines() {
            match serde_json::from_str(line) {
                Ok(Value::Array(items)) => rows.extend(items),
                Ok(row) => rows.push(row),
                Err(_) => {}
            }
        }
    }
    Ok(rows)
}

fn numbers(case: &Path, rule: &str) -> anyhow::Result<Vec<u64>> {
    Ok(lines(case, rule)?
        .iter()
        .filter_map(|v| v["n"].as_u64())
        .collect())
}

/// Each window's results (by its start), in the order found.
fn windows(case: &Path, rule: &str) -> anyhow::Result<BTreeMap<i64, Vec<(u64, u64)>>> {
    let mut out: BTreeMap<i64, Vec<(u64, u64)>> = BTreeMap::new();
    for row in lines(case, rule)? {
        let (Some(ws), Some(c), Some(s)) =
            (row["ws"].as_i64(), row["c"].as_u64(), row["s"].as_u64())
        else {
            continue;
        };
        out.entry(ws).or_default().push((c, s));
    }
    Ok(out)
}

fn report_rows(what: &str, expected: &BTreeSet<u64>, got: &[u64]) {
    let distinct: BTreeSet<u64> = got.iter().copied().collect();
    let lost = expected.difference(&distinct).count();
    let duplicates = got.len() - distinct.len();
    let unexpected = distinct.difference(expected).count();
    println!(
        "   {what:<26} expected {:>7}, delivered {:>7}: lost {lost}, duplicates {duplicates}{}",
        expected.len(),
        got.len(),
        if unexpected > 0 {
            format!(", {unexpected} not expected")
        } else {
            String::new()
        }
    );
}

fn print_recoveries(recoveries: &[Duration]) {
    if recoveries.is_empty() {
        println!("   recovery: no restart delivered a row");
        return;
    }
    let mut sorted = recoveries.to_vec();
    sorted.sort();
    let at = |p: f64| sorted[((sorted.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "   recovery (process start to its first delivered row) over {} restarts: p50 {:.0} ms, p99 {:.0} ms",
        sorted.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3
    );
}
