//! The chaos benchmark (`cargo xtask bench chaos [--kills K] [--rows N] [--runs R] [--quick]
//! [--mqtt-only]`, the last for section 3 alone): rules with `qos: 1` and with `qos: 2` are
//! killed with SIGKILL at K random moments and started again each time, until their input is
//! done; prints
//!
//! 1. the throughput cost of checkpointing (1 s, 10 s and 300 s intervals, `qos` 1 and 2)
//!    against `qos: 0`, on uninterrupted runs over a file stream (R rounds, 3 by default, each
//!    running every setting once in turn: the median and range of wall and CPU time), and
//!    whether each run's window results are those of the `qos: 0` run;
//! 2. per `qos` (1, then 2): a file stream of N rows through a windowed aggregate (into `file`)
//!    and a plain filter (into `file`, `redis` and `mqtt`), killed K times: rows lost and
//!    duplicated per sink, window results compared with the uninterrupted `qos: 0` run,
//!    recovery time per restart (from the new process's start to its first newly delivered
//!    row) p50/p99;
//! 3. per `qos`: an MQTT stream of N QoS 1 messages (mosquitto with persistence) through a
//!    filter into `file`, killed K times while the messages are published: rows lost and
//!    duplicated, recovery. The last run goes on until the output holds every key or it has
//!    written nothing for 30 s (a resumed session first gets back what the killed run had in
//!    flight, possibly thousands of messages): only then is a missing key lost, and one more
//!    run on the same session then shows whether the broker still held it.
//!
//! Rows are counted against the input: the distinct keys (`n`) each sink holds against the
//! keys of the input the bench wrote (read back from the file), so a key the sink lacks is
//! lost whatever else it holds; every write is counted for the duplicates (the `redis` sink
//! pushes onto a list, so a row written twice is there twice), and a line that is not a row is
//! counted and printed. The `mqtt` sink speaks MQTT 5 and stamps each message with its batch's
//! number and place (`oort-sequence`, `oort-index`): under `qos: 2` the bench also counts what
//! a consumer keeping the highest pair it has seen (dropping any message at or below it) gets.
//!
//! Under `qos: 1` the `file` sink starts its file afresh at each run, so each run writes to a
//! file of its own and the files are read together; under `qos: 2` every run continues the
//! same file. Figures are printed, not asserted.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use oort_tests::broker::{Broker, publish_all};
use oort_tests::redis::{RedisServer, Reply};
use serde_json::{Value, json};

struct Args {
    rows: u64,
    kills: usize,
    /// Rounds of the throughput section.
    runs: usize,
    /// `--mqtt-only`: section 3 alone.
    mqtt_only: bool,
}

fn args() -> anyhow::Result<Args> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let quick = argv.iter().any(|a| a == "--quick");
    let mut out = Args {
        rows: if quick { 20_000 } else { 200_000 },
        kills: if quick { 5 } else { 20 },
        runs: if quick { 1 } else { 3 },
        mqtt_only: argv.iter().any(|a| a == "--mqtt-only"),
    };
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--kills" => out.kills = it.next().map(|v| v.parse()).transpose()?.unwrap_or(20),
            "--rows" => out.rows = it.next().map(|v| v.parse()).transpose()?.unwrap_or(200_000),
            "--runs" => out.runs = it.next().map(|v| v.parse()).transpose()?.unwrap_or(3),
            _ => {}
        }
    }
    anyhow::ensure!(out.rows > 0, "--rows must be above 0");
    anyhow::ensure!(out.runs > 0, "--runs must be above 0");
    Ok(out)
}

/// The window results of a run: each window's results (by its start), in the order found.
type Windows = BTreeMap<i64, Vec<(u64, u64)>>;

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let dir = tempfile::Builder::new().prefix("oort-chaos-").tempdir()?;
    let root = dir.path();
    oort_tests::install_all(&root.join("plugins"))?;
    let (Some(broker), Some(redis)) = (Broker::start(), RedisServer::start(None)) else {
        anyhow::bail!("the chaos benchmark needs mosquitto and redis-server");
    };
    println!(
        "oort chaos benchmark: {} rows, {} kills (SIGKILL), qos 1 and 2\n",
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
         CREATE STREAM m1 (n bigint) WITH (DATASOURCE=\"in/chaos-1\");\n\
         CREATE STREAM m2 (n bigint) WITH (DATASOURCE=\"in/chaos-2\");\n",
    )?;
    std::fs::write(
        root.join("mqtt.yaml"),
        format!("default:\n  qos: 1\n  server: \"{}\"\n", broker.url()),
    )?;
    // The keys the rules read, from the file they read (not from the loop that wrote it).
    let input_keys = input_keys(&root.join("in.jsonl"))?;
    anyhow::ensure!(
        input_keys.len() as u64 == args.rows,
        "the input holds {} distinct keys, not {}",
        input_keys.len(),
        args.rows
    );
    let env = Env {
        root: root.to_path_buf(),
        broker: broker.url(),
        port: broker.port,
        redis,
    };

    if !args.mqtt_only {
        // 1. The cost of checkpointing, on uninterrupted runs; the qos 0 run is the reference of
        // the window results. Each round runs every setting once, in turn, so that what the
        // machine does meanwhile weighs on all of them alike.
        println!(
            "1. throughput of the two file rules ({} rows), uninterrupted, {} round(s) \
             (median [range] of wall time, CPU time of the process)",
            args.rows, args.runs
        );
        const SETTINGS: [(&str, u8, &str); 7] = [
            ("qos 0", 0, "1s"),
            ("qos 1, checkpoint every 1 s", 1, "1s"),
            ("qos 1, checkpoint every 10 s", 1, "10s"),
            ("qos 1, checkpoint every 300 s", 1, "300s"),
            ("qos 2, checkpoint every 1 s", 2, "1s"),
            ("qos 2, checkpoint every 10 s", 2, "10s"),
            ("qos 2, checkpoint every 300 s", 2, "300s"),
        ];
        // Untimed: compiles the sink components into the cache the timed runs then share.
        env.run_file_rules("tp-warm-up", 0, "2s")?;
        let mut reference: Option<Windows> = None;
        let mut timed: Vec<Vec<Timed>> = vec![Vec::new(); SETTINGS.len()];
        for round in 0..args.runs {
            for (i, (label, qos, interval)) in SETTINGS.iter().enumerate() {
                let case = format!("tp-{round}-{label}").replace([' ', ','], "-");
                let run = env.run_file_rules(&case, *qos, interval)?;
                let (got, _) = windows(&env.root.join(&case), "agg")?;
                match &reference {
                    None => {
                        anyhow::ensure!(!got.is_empty(), "the qos 0 run wrote no window");
                        reference = Some(got);
                    }
                    Some(r) if *r == got => {}
                    Some(r) => println!(
                        "   {label} (round {}): windows UNLIKE qos 0's: {}",
                        round + 1,
                        compare_windows(r, &got)
                    ),
                }
                timed[i].push(run);
            }
        }
        let base = Timed::median(&timed[0]);
        for ((label, _, _), runs) in SETTINGS.iter().zip(&timed) {
            let m = Timed::median(runs);
            let (low, high) = Timed::wall_range(runs);
            let cost = if std::ptr::eq(runs, &timed[0]) {
                String::new()
            } else {
                format!(
                    ", {:+.1} % wall / {:+.1} % CPU vs qos 0",
                    (m.wall / base.wall - 1.0) * 100.0,
                    (m.cpu / base.cpu - 1.0) * 100.0
                )
            };
            println!(
                "   {label:<30} {:>6.2} s [{low:.2}-{high:.2}]  CPU {:>5.2} s  {:>9.0} rows/s{cost}",
                m.wall,
                m.cpu,
                args.rows as f64 / m.wall
            );
            if let Some(last) = runs.last() {
                println!("{}", last.batches);
            }
        }
        println!("   every run's windows are the qos 0 run's unless said above");
        let uninterrupted = Duration::from_secs_f64(Timed::median(&timed[1]).wall);
        let reference = reference.expect("the qos 0 run");
        println!();

        // 2. The file rules, killed K times, under each qos.
        let expected: BTreeSet<u64> = input_keys.iter().copied().filter(|n| n % 2 == 0).collect();
        for qos in [1, 2] {
            let case = format!("chaos-file-qos{qos}");
            let out = Stamped::subscribe(env.port, &format!("chaos/{case}"))?;
            let (runs, recoveries, kills) = env.chaos(&case, qos, args.kills, uninterrupted)?;
            let published = out.collect(&expected);
            println!(
                "2. file stream, {kills} kills in {runs} runs (the last to the end of the input), \
                 qos {qos}, checkpoint every 1 s"
            );
            let (filtered, bad) = numbers(&env.root.join(&case), "filter")?;
            report_rows("filter -> file", &expected, &filtered, bad);
            let (pushed, bad) = env.redis_list(&case)?;
            report_rows("filter -> redis (list)", &expected, &pushed, bad);
            let wire: Vec<u64> = published.iter().map(|m| m.n).collect();
            report_rows("filter -> mqtt (received)", &expected, &wire, published.bad);
            if qos >= 2 {
                let (kept, unstamped) = published.consumer();
                report_rows("filter -> mqtt (consumer)", &expected, &kept, 0);
                if unstamped > 0 {
                    println!("   ({unstamped} messages without a stamp reached the consumer)");
                }
            }
            let (got, bad) = windows(&env.root.join(&case), "agg")?;
            println!(
                "   window -> file: {} windows (uninterrupted qos 0: {}): {}{}",
                got.len(),
                reference.len(),
                compare_windows(&reference, &got),
                bad_lines(bad)
            );
            print_recoveries(&recoveries);
            println!();
        }
    }
    // 3. The MQTT stream under each qos, killed K times while the messages are published.
    let expected: BTreeSet<u64> = input_keys;
    for qos in [1, 2] {
        let case = format!("chaos-mqtt-qos{qos}");
        let rule = format!("mqtt-q{qos}");
        let stream = format!("m{qos}");
        let topic = format!("in/chaos-{qos}");
        // The rule's persistent session exists before the first message: what is published
        // before the first run subscribes is kept for it, not dropped.
        // Its client id is `oort-<rule id>-<stream>`, as the README documents.
        open_session(env.port, &format!("oort-{rule}-{stream}"), &topic)?;
        let keys: Vec<u64> = expected.iter().copied().collect();
        let port = env.port;
        let publisher = std::thread::spawn(move || {
            let payloads = keys
                .into_iter()
                .map(|n| format!("{{\"n\":{n}}}").into_bytes());
            publish_all(port, &topic, payloads);
        });
        let runs = env.chaos_mqtt(&case, &rule, qos, args.kills, &publisher, &expected)?;
        publisher.join().expect("the publisher");
        println!(
            "3. MQTT stream of {} QoS 1 messages, {} kills in {} runs while publishing, \
             qos {qos}",
            expected.len(),
            runs.kills,
            runs.runs
        );
        let (got, bad) = numbers(&env.root.join(&case), "mqtt")?;
        report_rows("mqtt -> file", &expected, &got, bad);
        for (i, last) in runs.last.iter().enumerate() {
            println!(
                "   {} run after the kills: {} keys missing at its start, {} when stopped after \
                 {:.1} s{}",
                if i == 0 { "last" } else { "a further" },
                last.missing_before,
                last.missing_after,
                last.took.as_secs_f64(),
                if last.missing_after > 0 {
                    format!(" ({:.0} s without a new row)", QUIET.as_secs_f64())
                } else {
                    String::new()
                }
            );
        }
        print_recoveries(&runs.recoveries);
        println!();
    }
    Ok(())
}

/// One uninterrupted run: wall and CPU seconds, and its actions' batches.
#[derive(Clone)]
struct Timed {
    wall: f64,
    cpu: f64,
    batches: String,
}

impl Timed {
    /// The median wall and CPU times of `runs` (each taken on its own).
    fn median(runs: &[Timed]) -> Timed {
        let mid = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        Timed {
            wall: mid(runs.iter().map(|r| r.wall).collect()),
            cpu: mid(runs.iter().map(|r| r.cpu).collect()),
            batches: String::new(),
        }
    }

    /// The shortest and longest wall time of `runs`.
    fn wall_range(runs: &[Timed]) -> (f64, f64) {
        runs.iter().fold((f64::INFINITY, 0.0_f64), |(lo, hi), r| {
            (lo.min(r.wall), hi.max(r.wall))
        })
    }
}

/// User and system CPU seconds of every child process waited for so far: `cutime` and
/// `cstime` of `/proc/self/stat`, in the kernel's `USER_HZ` ticks (100 a second on Linux).
fn children_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces) start at the state, field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let field = |n: usize| -> f64 {
        rest.split_whitespace()
            .nth(n - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (field(16) + field(17)) / 100.0
}

/// The distinct `n` of every line of the input file.
/// Per action of a run's JSON summary: its batches, their mean size and the time its sink
/// took over them (`file_0 61 × 164 in 0.21 s`), on one line.
fn batches(summary: &[u8]) -> String {
    let Ok(summary) = serde_json::from_slice::<Value>(summary) else {
        return "      (no JSON summary)".into();
    };
    let mut parts = Vec::new();
    for rule in summary["rules"].as_array().into_iter().flatten() {
        for action in rule["actions"].as_array().into_iter().flatten() {
            let batches = action["batches_total"].as_u64().unwrap_or(0);
            let rows = action["records_out_total"].as_u64().unwrap_or(0);
            let collect = action["collect_time_us"].as_u64().unwrap_or(0) as f64 / 1e6;
            parts.push(format!(
                "{}/{} {batches} × {:.0} in {collect:.2} s",
                rule["id"].as_str().unwrap_or("?"),
                action["name"].as_str().unwrap_or("?"),
                rows as f64 / batches.max(1) as f64,
            ));
        }
    }
    format!("      batches: {}", parts.join(", "))
}

fn input_keys(path: &Path) -> anyhow::Result<BTreeSet<u64>> {
    let mut keys = BTreeSet::new();
    for (i, line) in std::fs::read_to_string(path)?.lines().enumerate() {
        let row: Value = serde_json::from_str(line)?;
        let n = row["n"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("{}:{}: no n", path.display(), i + 1))?;
        keys.insert(n);
    }
    Ok(keys)
}

/// Creates (or keeps) the persistent session `id` subscribed to `filter` with QoS 1, and
/// leaves it: the broker queues what is published to `filter` for it from now on.
fn open_session(port: u16, id: &str, filter: &str) -> anyhow::Result<()> {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_clean_session(false);
    let (client, mut connection) = Client::new(options, 16);
    client.subscribe(filter, QoS::AtLeastOnce)?;
    for event in connection.iter() {
        match event? {
            Event::Incoming(Packet::SubAck(_)) => {
                client.disconnect()?;
            }
            Event::Outgoing(rumqttc::Outgoing::Disconnect) => return Ok(()),
            _ => {}
        }
    }
    anyhow::bail!("the session {id} was not set up")
}

/// One message the `mqtt` sink published: its row's `n` and its stamp (`oort-sequence`,
/// `oort-index`), if it has one.
struct Received {
    n: u64,
    stamp: Option<(u64, u64)>,
}

/// A message as an MQTT 5 subscriber gets it: its payload and its user properties.
type Delivery = (Vec<u8>, Vec<(String, String)>);

impl Received {
    /// A payload with its user properties; `None` when the payload is not a row.
    fn parse((payload, user): &Delivery) -> Option<Self> {
        let n = serde_json::from_slice::<Value>(payload).ok()?["n"].as_u64()?;
        let get = |key: &str| -> Option<u64> {
            user.iter()
                .find(|(k, _)| k == key)
                .and_then(|(_, v)| v.parse().ok())
        };
        Some(Self {
            n,
            stamp: get("oort-sequence").zip(get("oort-index")),
        })
    }
}

/// What an MQTT 5 subscriber received, in order; `bad` counts the payloads that are not a row.
struct Published {
    messages: Vec<Received>,
    bad: usize,
}

impl std::ops::Deref for Published {
    type Target = [Received];
    fn deref(&self) -> &[Received] {
        &self.messages
    }
}

impl Published {
    /// What a consumer that keeps the highest stamp it has seen, and drops every message at or
    /// below it, passes on; and how many messages had no stamp (they pass).
    fn consumer(&self) -> (Vec<u64>, usize) {
        let mut highest = None;
        let mut kept = Vec::new();
        let mut unstamped = 0;
        for m in &self.messages {
            match m.stamp {
                Some(stamp) if highest.is_some_and(|h| stamp <= h) => {}
                Some(stamp) => {
                    highest = Some(stamp);
                    kept.push(m.n);
                }
                None => {
                    unstamped += 1;
                    kept.push(m.n);
                }
            }
        }
        (kept, unstamped)
    }
}

/// An MQTT 5 subscriber (QoS 1) that keeps every message with its user properties.
struct Stamped {
    /// `None` once the subscription is acknowledged, then each message.
    rx: mpsc::Receiver<Option<Delivery>>,
    client: rumqttc::v5::Client,
}

impl Stamped {
    fn subscribe(port: u16, filter: &str) -> anyhow::Result<Self> {
        use rumqttc::v5::mqttbytes::QoS;
        use rumqttc::v5::mqttbytes::v5::Packet;
        use rumqttc::v5::{Client, Event, MqttOptions};
        let mut options = MqttOptions::new(format!("chaos-{filter}"), "127.0.0.1", port);
        options.set_max_packet_size(Some(16 << 20));
        let (client, mut connection) = Client::new(options, 1024);
        client.subscribe(filter, QoS::AtLeastOnce)?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for event in connection.iter() {
                let sent = match event {
                    Ok(Event::Incoming(Packet::SubAck(_))) => tx.send(None),
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let user = p.properties.map(|p| p.user_properties).unwrap_or_default();
                        tx.send(Some((p.payload.to_vec(), user)))
                    }
                    Ok(_) => Ok(()),
                    Err(_) => return,
                };
                if sent.is_err() {
                    return;
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(None) => Ok(Self { rx, client }),
            _ => anyhow::bail!("the subscription to {filter} was not acknowledged"),
        }
    }

    /// The messages received until every key of `expected` came or nothing came for 5 s.
    fn collect(self, expected: &BTreeSet<u64>) -> Published {
        let mut out = Published {
            messages: Vec::new(),
            bad: 0,
        };
        let mut seen = BTreeSet::new();
        while seen.len() < expected.len() {
            let Ok(Some(message)) = self.rx.recv_timeout(Duration::from_secs(5)) else {
                break;
            };
            match Received::parse(&message) {
                Some(m) => {
                    if expected.contains(&m.n) {
                        seen.insert(m.n);
                    }
                    out.messages.push(m);
                }
                None => out.bad += 1,
            }
        }
        // Duplicates still on their way after the last new key.
        while let Ok(Some(message)) = self.rx.recv_timeout(Duration::from_millis(500)) {
            match Received::parse(&message) {
                Some(m) => out.messages.push(m),
                None => out.bad += 1,
            }
        }
        let _ = self.client.try_disconnect();
        out
    }
}

/// Where the benchmark runs and the servers it uses.
struct Env {
    root: PathBuf,
    broker: String,
    port: u16,
    redis: RedisServer,
}

/// The file a rule's `file` action writes in run `run`: its own under `qos: 1` (the sink
/// starts its file afresh each run), one for all runs under `qos: 2` (each run continues it;
/// the sink's marker skips what an earlier run wrote).
fn out_file(rule: &str, run: usize, qos: u8) -> String {
    if qos >= 2 {
        format!("out/{rule}-all.jsonl")
    } else {
        format!("out/{rule}-{run}.jsonl")
    }
}

impl Env {
    /// Runs the two file rules of `case` under `qos` once, uninterrupted, timed.
    fn run_file_rules(&self, case: &str, qos: u8, interval: &str) -> anyhow::Result<Timed> {
        self.write_file_rules(case, 0, qos, interval)?;
        let cpu_before = children_cpu();
        let started = Instant::now();
        let output = self.spawn(case, "file-rules.json")?.wait_with_output()?;
        let wall = started.elapsed().as_secs_f64();
        let cpu = children_cpu() - cpu_before;
        anyhow::ensure!(
            output.status.success(),
            "{case}: oort failed ({})",
            output.status
        );
        Ok(Timed {
            wall,
            cpu,
            batches: batches(&output.stdout),
        })
    }

    /// The rules over the file stream: a 1 s event-time tumbling window into `file`, and a
    /// filter into `file`, `redis` (pushed onto the list `case`) and `mqtt` (MQTT 5, so each
    /// message carries its stamp).
    fn write_file_rules(
        &self,
        case: &str,
        run: usize,
        qos: u8,
        interval: &str,
    ) -> anyhow::Result<()> {
        // `fireAtEnd`: the last window too, as the uninterrupted run compared with sends it.
        let options = json!({"qos": qos, "checkpointInterval": interval, "isEventTime": true,
                             "lateTolerance": 0, "fireAtEnd": true});
        let rules = json!([
            {
                "id": "agg",
                "sql": "SELECT window_start() AS ws, count(*) AS c, sum(n) AS s FROM f \
                        GROUP BY TUMBLINGWINDOW(ss, 1)",
                "actions": [{"file": {"path": out_file("agg", run, qos)}}],
                "options": options,
            },
            {
                "id": "filter",
                "sql": "SELECT n FROM f WHERE n % 2 = 0",
                "actions": [
                    {"file": {"path": out_file("filter", run, qos)}},
                    // Each case is a deployment of its own (its own data directory, so its
                    // own numbering): its sequence marker must be its own too, or a case whose
                    // first run is killed before its first write would resume against the
                    // marker an earlier case left under the same rule and action.
                    {"redis": {"addr": self.redis.addr(), "key": case, "dataType": "list",
                               "sequenceKey": format!("oort:seq:{case}")}},
                    {"mqtt": {"server": self.broker, "topic": format!("chaos/{case}"), "qos": 1,
                              "protocolVersion": "5"}},
                ],
                "options": {"qos": qos, "checkpointInterval": interval},
            }
        ]);
        let dir = self.root.join(case);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("file-rules.json"), rules.to_string())?;
        Ok(())
    }

    /// The rule over MQTT stream `m<qos>`: every row into `file`.
    fn write_mqtt_rule(&self, case: &str, rule: &str, run: usize, qos: u8) -> anyhow::Result<()> {
        let rule = json!({
            "id": rule,
            "sql": format!("SELECT n FROM m{qos}"),
            "actions": [{"file": {"path": out_file("mqtt", run, qos)}}],
            "options": {"qos": qos, "checkpointInterval": "1s"},
        });
        let dir = self.root.join(case);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("mqtt-rule.json"), rule.to_string())?;
        Ok(())
    }

    /// Every row the `redis` sink pushed onto the list `case` (a row pushed twice is there
    /// twice), and how many items are not a row.
    fn redis_list(&self, case: &str) -> anyhow::Result<(Vec<u64>, usize)> {
        let Reply::Array(items) = self.redis.command(&["LRANGE", case, "0", "-1"])? else {
            anyhow::bail!("LRANGE {case} did not answer a list");
        };
        let mut rows = Vec::new();
        let mut bad = 0;
        for item in &items {
            match item
                .text()
                .and_then(|t| serde_json::from_str::<Value>(t).ok())
                .and_then(|v| v["n"].as_u64())
            {
                Some(n) => rows.push(n),
                None => bad += 1,
            }
        }
        Ok((rows, bad))
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
            // The JSON summary (a few KiB): read by the throughput runs, left in the pipe by
            // the runs that are killed.
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        Ok(child)
    }

    /// Runs the file rules of `case` under `qos` (a checkpoint every second) until one run
    /// reaches the end of the input, killing the first `kills` runs at a random moment (spread
    /// over about the uninterrupted run's time). Returns the runs, the recovery times and the
    /// kills made.
    fn chaos(
        &self,
        case: &str,
        qos: u8,
        kills: usize,
        uninterrupted: Duration,
    ) -> anyhow::Result<(usize, Vec<Duration>, usize)> {
        let mut recoveries = Vec::new();
        let mut killed = 0;
        let spread = uninterrupted.mul_f64(2.0 / kills.max(1) as f64);
        for run in 0.. {
            self.write_file_rules(case, run, qos, "1s")?;
            let kill_at = (killed < kills).then(|| spread.mul_f64(rand::random::<f64>()));
            let first = self.root.join(case).join(out_file("filter", run, qos));
            let outcome = self.run_once(case, "file-rules.json", kill_at, &first, |_| false)?;
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

    /// Runs the MQTT rule `rule` of `case` under `qos`, killing it `kills` times at random
    /// moments while the publisher runs; then lets a last run take what is left: it is stopped
    /// with SIGTERM once the output holds every key of `expected`, or once it has written
    /// nothing for [`QUIET`] (what is missing then is lost). If keys are missing, one more run
    /// on the same data directory and broker session shows whether the broker still held them.
    fn chaos_mqtt(
        &self,
        case: &str,
        rule: &str,
        qos: u8,
        kills: usize,
        publisher: &std::thread::JoinHandle<()>,
        expected: &BTreeSet<u64>,
    ) -> anyhow::Result<MqttRuns> {
        let mut recoveries = Vec::new();
        let mut killed = 0;
        let mut last_runs = Vec::new();
        for run in 0.. {
            self.write_mqtt_rule(case, rule, run, qos)?;
            let last = killed >= kills || publisher.is_finished();
            let kill_at =
                (!last).then(|| Duration::from_millis(200 + rand::random::<u64>() % 1500));
            let first = self.root.join(case).join(out_file("mqtt", run, qos));
            let mut missing = if last {
                Some(Missing::new(expected, &self.root.join(case), &first)?)
            } else {
                None
            };
            let before = missing.as_ref().map_or(0, |m| m.keys.len());
            let started = Instant::now();
            let outcome =
                self.run_once(
                    case,
                    "mqtt-rule.json",
                    kill_at,
                    &first,
                    |quiet| match missing.as_mut() {
                        Some(m) if publisher.is_finished() => m.follow() == 0 || quiet > QUIET,
                        _ => false,
                    },
                )?;
            if run > 0
                && let Some(r) = outcome.first_row
            {
                recoveries.push(r);
            }
            if outcome.killed {
                killed += 1;
                continue;
            }
            let left = missing.map_or(0, |mut m| {
                m.follow();
                m.keys.len()
            });
            last_runs.push(LastRun {
                missing_before: before,
                missing_after: left,
                took: started.elapsed(),
            });
            if left == 0 || last_runs.len() == 2 {
                return Ok(MqttRuns {
                    runs: run + 1,
                    recoveries,
                    kills: killed,
                    last: last_runs,
                });
            }
        }
        unreachable!()
    }

    /// One run: SIGKILL at `kill_at`; SIGTERM (an unbounded input) once `stop` holds, given how
    /// long `first` has not grown (since the start if it has not yet). Notes when `first` first
    /// grew past its size at the start (the run's first delivered row: under `qos: 2` the file
    /// holds earlier runs' rows).
    fn run_once(
        &self,
        case: &str,
        rules: &str,
        kill_at: Option<Duration>,
        first: &Path,
        mut stop: impl FnMut(Duration) -> bool,
    ) -> anyhow::Result<Outcome> {
        let size_of = || std::fs::metadata(first).map(|m| m.len()).unwrap_or(0);
        let before = size_of();
        let started = Instant::now();
        let mut child = self.spawn(case, rules)?;
        let log = collect(&mut child);
        let mut first_row = None;
        let mut size = before;
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
            let now = size_of();
            if now > before && first_row.is_none() {
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
            if !termed && stop(grew.elapsed()) {
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

/// How long the last run of the MQTT case may write nothing before the keys still missing
/// count as lost: far above a restart's time on a loaded machine.
const QUIET: Duration = Duration::from_secs(30);

/// The runs of the MQTT case: how many, the recovery times, the kills made, and the last runs.
struct MqttRuns {
    runs: usize,
    recoveries: Vec<Duration>,
    kills: usize,
    last: Vec<LastRun>,
}

/// A run of the MQTT case after the kills: the keys missing from the output when it started
/// and when it stopped, and how long it ran.
struct LastRun {
    missing_before: usize,
    missing_after: usize,
    took: Duration,
}

/// The keys a case's output lacks, followed as a run appends rows to its file.
struct Missing {
    keys: BTreeSet<u64>,
    path: PathBuf,
    /// Where the lines not read yet start.
    offset: u64,
    /// The file's size when last looked at.
    size: u64,
}

impl Missing {
    /// The keys of `expected` no output file of the case (`mqtt` rule) holds; the run about to
    /// start appends to `path`.
    fn new(expected: &BTreeSet<u64>, case: &Path, path: &Path) -> anyhow::Result<Self> {
        let (got, _) = numbers(case, "mqtt")?;
        let got: BTreeSet<u64> = got.into_iter().collect();
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            keys: expected.difference(&got).copied().collect(),
            path: path.to_path_buf(),
            offset: size,
            size,
        })
    }

    /// Reads the whole lines appended since the last call; the keys still missing.
    fn follow(&mut self) -> usize {
        use std::io::{Read, Seek, SeekFrom};
        let size = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        if size == self.size {
            return self.keys.len();
        }
        self.size = size;
        let mut bytes = Vec::new();
        let read = std::fs::File::open(&self.path).and_then(|mut f| {
            f.seek(SeekFrom::Start(self.offset))?;
            f.read_to_end(&mut bytes)
        });
        if read.is_err() {
            return self.keys.len();
        }
        let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
            return self.keys.len();
        };
        self.offset += end as u64 + 1;
        for line in bytes[..end].split(|&b| b == b'\n') {
            let rows = match serde_json::from_slice(line) {
                Ok(Value::Array(items)) => items,
                Ok(row) => vec![row],
                Err(_) => continue,
            };
            for row in rows {
                if let Some(n) = row["n"].as_u64() {
                    self.keys.remove(&n);
                }
            }
        }
        self.keys.len()
    }
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

/// The rows of every `out/<rule>-*.jsonl` of a case (a line holding an array is a window's
/// rows), and how many lines are not a row (a write a kill cut short: not delivered).
fn lines(case: &Path, rule: &str) -> anyhow::Result<(Vec<Value>, usize)> {
    let mut rows = Vec::new();
    let mut bad = 0;
    let out = case.join("out");
    let Ok(entries) = std::fs::read_dir(&out) else {
        return Ok((rows, bad));
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
                Err(_) => bad += 1,
            }
        }
    }
    Ok((rows, bad))
}

/// The `n` of every row a rule wrote, and how many lines or rows are not one.
fn numbers(case: &Path, rule: &str) -> anyhow::Result<(Vec<u64>, usize)> {
    let (rows, mut bad) = lines(case, rule)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        match row["n"].as_u64() {
            Some(n) => out.push(n),
            None => bad += 1,
        }
    }
    Ok((out, bad))
}

/// Each window's results (by its start), in the order found, and how many lines or rows are
/// not a window result.
fn windows(case: &Path, rule: &str) -> anyhow::Result<(Windows, usize)> {
    let mut out = Windows::new();
    let (rows, mut bad) = lines(case, rule)?;
    for row in rows {
        let (Some(ws), Some(c), Some(s)) =
            (row["ws"].as_i64(), row["c"].as_u64(), row["s"].as_u64())
        else {
            bad += 1;
            continue;
        };
        out.entry(ws).or_default().push((c, s));
    }
    Ok((out, bad))
}

/// The windows of `got` against the reference run's: missing, not in the reference, with a
/// result unlike the reference's, written more than once.
fn compare_windows(reference: &Windows, got: &Windows) -> String {
    let missing = reference.keys().filter(|w| !got.contains_key(*w)).count();
    let extra = got.keys().filter(|w| !reference.contains_key(*w)).count();
    let differ = got
        .iter()
        .filter(|(w, results)| {
            reference
                .get(*w)
                .is_some_and(|r| results.iter().any(|x| Some(x) != r.first()))
        })
        .count();
    let twice = got.values().filter(|r| r.len() > 1).count();
    format!(
        "{missing} missing, {extra} not in the reference, {differ} with a result unlike the \
         reference's, {twice} written more than once"
    )
}

fn bad_lines(bad: usize) -> String {
    if bad > 0 {
        format!(", {bad} lines not a row")
    } else {
        String::new()
    }
}

/// Prints what a sink holds against the input's keys `expected`: the keys it lacks (lost),
/// the writes beyond one per key (duplicates), keys the input does not have, and `bad`
/// (lines, items or messages that are not a row).
fn report_rows(what: &str, expected: &BTreeSet<u64>, got: &[u64], bad: usize) {
    let distinct: BTreeSet<u64> = got.iter().copied().collect();
    let lost = expected.difference(&distinct).count();
    let duplicates = got.len() - distinct.len();
    let unexpected = distinct.difference(expected).count();
    println!(
        "   {what:<26} expected {:>7}, delivered {:>7}, distinct {:>7}: lost {lost}, \
         duplicates {duplicates}{}{}",
        expected.len(),
        got.len(),
        distinct.len(),
        if unexpected > 0 {
            format!(", {unexpected} not in the input")
        } else {
            String::new()
        },
        bad_lines(bad)
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
        "   recovery (process start to its first newly delivered row) over {} restarts: p50 \
         {:.0} ms, p99 {:.0} ms",
        sorted.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3
    );
}
