//! The server benchmark (`cargo xtask bench serve`): a real `oort serve` (release build) driven
//! over HTTP, printing from one run:
//!
//! 1. N filter rules (default 1,000) created over the API, each with a wasm `file` sink:
//!    create+start latency p50/p99, server RSS before and after (once it stops falling), RSS per
//!    idle rule;
//! 2. `GET /metrics` with those rules: the first scrape apart, then 100 more: time p50/p99/max,
//!    the CPU time the server's HTTP thread spent on each, size;
//! 3. a plugin update used by 100 running rules under a steady MQTT input (real mosquitto):
//!    time of the update call, time until every rule runs the new build, per-action swap pause
//!    p50/p99 (from the server's log), rows lost. The pause is also given as the server logs
//!    it apart: its own CPU time, and how many pauses had the thread descheduled by the kernel
//!    (a run-queue wait, which depends on the machine's load, not on the swap), with the load
//!    average;
//! 4. a restart of the server with the N rules persisted: time until every rule runs again.
//!
//! `--rules N` changes N, `--quick` uses 100. `--runs K` makes K plugin updates in a row (the
//! builds alternate), each with its own figures, then the figures of all their swaps together;
//! `--swaps-only` runs section 3 alone. Figures are printed, not asserted.
//!
//! Requests go over a fresh connection each, written by hand (HTTP/1.1, `Connection: close`):
//! the server is what is measured, and a client library's pooling would hide what a `curl`
//! or an eKuiper manager pays per call.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oort_tests::broker::{Broker, publish_all};
use oort_tests::guests;
use serde_json::{Value as Json, json};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let swaps_only = args.iter().any(|a| a == "--swaps-only");
    let value = |name: &str| -> anyhow::Result<Option<usize>> {
        Ok(args
            .iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|n| n.parse())
            .transpose()?)
    };
    let rules = value("--rules")?.unwrap_or(if quick { 100 } else { 1000 });
    let updates = value("--runs")?.unwrap_or(1).max(1);
    if swaps_only {
        println!("oort serve benchmark: {updates} plugin updates\n");
    } else {
        println!("oort serve benchmark ({rules} rules)\n");
    }

    let dir = tempfile::tempdir()?;
    let root = dir.path();
    oort_tests::install_all(&root.join("plugins"))?;
    oort_tests::install(
        &root.join("plugins"),
        "Versioned",
        guests::VERSIONED_V1,
        guests::VERSIONED_V1_MANIFEST,
    )?;
    std::fs::create_dir_all(root.join("out"))?;
    let broker = Broker::start().ok_or_else(|| anyhow::anyhow!("mosquitto is not installed"))?;
    std::fs::create_dir_all(root.join("etc"))?;
    std::fs::write(
        root.join("etc/mqtt_source.yaml"),
        format!("default:\n  qos: 1\n  server: \"{}\"\n", broker.url()),
    )?;

    let server = Server::start(root)?;
    server.ok(
        "POST",
        "/streams",
        &json!({"sql": "CREATE STREAM idle () WITH (TYPE=\"memory\", DATASOURCE=\"idle\")"}),
    )?;
    server.ok(
        "POST",
        "/streams",
        &json!({"sql": "CREATE STREAM live () WITH (TYPE=\"mqtt\", DATASOURCE=\"bench/live\")"}),
    )?;
    if swaps_only {
        plugin_updates(&server, root, &broker, 100, updates)?;
        return Ok(());
    }
    let rss_before = server.idle_rss_kib();

    // 1. Create and start N idle filter rules.
    let mut latencies = Vec::with_capacity(rules);
    let started = Instant::now();
    let mut rss_tenth = rss_before;
    for i in 0..rules {
        if i == rules / 10 {
            server.wait_running(i, Duration::from_secs(600))?;
            rss_tenth = server.idle_rss_kib();
        }
        let rule = json!({
            "id": format!("r{i}"),
            "sql": "SELECT deviceId, temperature FROM idle WHERE temperature > 30",
            "actions": [{"file": {"path": root.join(format!("out/r{i}.jsonl"))}}],
        });
        let t = Instant::now();
        server.ok("POST", "/rules", &rule)?;
        latencies.push(t.elapsed());
    }
    let created_in = started.elapsed();
    let all_running = server.wait_running(rules, Duration::from_secs(600))?;
    let rss_after = server.idle_rss_kib();
    println!("== {rules} filter rules, each with a wasm `file` sink, created over the API");
    println!(
        "create+start (POST /rules answered): p50 {:.2} ms, p99 {:.2} ms; all {rules} created in {:.1} s, all running after {:.1} s",
        ms(percentile(&mut latencies, 0.5)),
        ms(percentile(&mut latencies, 0.99)),
        created_in.as_secs_f64(),
        all_running.as_secs_f64()
    );
    let tenth = rules / 10;
    println!(
        "server RSS: {:.1} MiB empty, {:.1} MiB with the rules: {:.0} KiB per idle rule \
         ({:.0} KiB each past the first {tenth}, whose share holds the one-time costs)\n",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        (rss_after.saturating_sub(rss_before)) as f64 / rules as f64,
        (rss_after.saturating_sub(rss_tenth)) as f64 / (rules - tenth).max(1) as f64
    );

    // 2. /metrics with N rules: the first scrape apart (it may pay one-time costs), then enough
    // scrapes for a p99, with the CPU time the server's HTTP thread spent on each.
    let mut times = Vec::new();
    let mut cpu = Vec::new();
    let mut size = 0;
    let load_before = loadavg();
    for _ in 0..=METRICS_SCRAPES {
        let cpu_before = server.http_cpu();
        let t = Instant::now();
        let (status, body) = server.call("GET", "/metrics", None)?;
        times.push(t.elapsed());
        cpu.push(server.http_cpu().saturating_sub(cpu_before));
        anyhow::ensure!(status == 200, "GET /metrics: {status}");
        size = body.len();
    }
    let (first, first_cpu) = (times.remove(0), cpu.remove(0));
    println!(
        "== GET /metrics with {rules} rules ({:.0} KiB)",
        size as f64 / 1024.0
    );
    println!(
        "first scrape {:.1} ms (its CPU time {:.1} ms); the next {METRICS_SCRAPES}: p50 {:.1} ms, \
         p99 {:.1} ms, max {:.1} ms; CPU time p50 {:.1} ms, p99 {:.1} ms; load average {load_before} \
         before, {} after\n",
        ms(first),
        ms(first_cpu),
        ms(percentile(&mut times, 0.5)),
        ms(percentile(&mut times, 0.99)),
        ms(percentile(&mut times, 1.0)),
        ms(percentile(&mut cpu, 0.5)),
        ms(percentile(&mut cpu, 0.99)),
        loadavg()
    );

    // 3. A plugin update under load, used by 100 rules.
    plugin_updates(&server, root, &broker, 100, updates)?;

    // 4. Restart with the rules persisted (plus the 100 of step 3).
    let total = rules + 100;
    drop(server);
    let t = Instant::now();
    let server = Server::start(root)?;
    let listening = t.elapsed();
    let running = server.wait_running(total, Duration::from_secs(600))?;
    println!("== restart with {total} persisted rules (components cached)");
    println!(
        "listening after {:.2} s, every rule running after {:.2} s",
        listening.as_secs_f64(),
        (listening + running).as_secs_f64()
    );
    Ok(())
}

/// Scrapes of `/metrics` measured after the first.
const METRICS_SCRAPES: usize = 100;

/// What the server logged of one swap (`sink now runs the new build`), in microseconds.
#[derive(Debug, Clone, Copy)]
struct Swap {
    pause: u64,
    cpu: u64,
    descheduled: u64,
    waited: u64,
}

impl Swap {
    fn parse(line: &str) -> Option<Self> {
        let field = |name: &str| -> Option<u64> {
            line.split(&format!(" {name}="))
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        };
        Some(Self {
            pause: field("pause_us")?,
            cpu: field("cpu_us")?,
            descheduled: field("descheduled_us")?,
            waited: field("waited_us")?,
        })
    }
}

/// `updates` plugin updates in a row, each used by the same `rules` running rules under a
/// steady MQTT input: the figures of each, then of all their swaps together.
fn plugin_updates(
    server: &Server,
    root: &Path,
    broker: &Broker,
    rules: usize,
    updates: usize,
) -> anyhow::Result<()> {
    let out = |i: usize| root.join(format!("out/u{i}.jsonl"));
    let running_before = server.running();
    for i in 0..rules {
        server.ok(
            "POST",
            "/rules",
            &json!({
                "id": format!("u{i}"),
                "sql": "SELECT n FROM live",
                "actions": [{"versioned": {"path": out(i)}}],
            }),
        )?;
    }
    server.wait_running(running_before + rules, Duration::from_secs(300))?;
    // Every rule's subscription is live once each has written a warm-up row.
    let lines = |i: usize| -> Vec<Json> {
        std::fs::read_to_string(out(i))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while (0..rules).any(|i| lines(i).is_empty()) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the rules never got a warm-up row; the server's log ends with:\n{}",
            tail(&server.log(), 30)
        );
        publish_all(broker.port, "bench/live", [br#"{"n":-1}"#.to_vec()]);
        std::thread::sleep(Duration::from_millis(200));
    }

    // The builds, each with its manifest beside it as the API expects; they alternate.
    let builds = [
        (guests::VERSIONED_V2, guests::VERSIONED_V2_MANIFEST, "v2"),
        (guests::VERSIONED_V1, guests::VERSIONED_V1_MANIFEST, "v1"),
    ];
    for (wasm, manifest, name) in builds {
        let dir = root.join("upload").join(name);
        std::fs::create_dir_all(&dir)?;
        std::fs::copy(wasm, dir.join("Versioned.wasm"))?;
        std::fs::copy(manifest, dir.join("Versioned.json"))?;
    }

    let messages = 3000usize;
    let mut all: Vec<Swap> = Vec::new();
    let (mut lost_all, mut duplicated_all) = (0usize, 0usize);
    for update in 0..updates {
        let (_, _, name) = builds[update % builds.len()];
        let upload = root.join("upload").join(name).join("Versioned.wasm");
        // Each update's messages are numbered apart from the others'.
        let first = (update * messages) as i64;
        let load_before = loadavg();
        // A steady input (about 500 messages/s) with the update in its middle.
        let port = broker.port;
        let publisher = std::thread::spawn(move || {
            for chunk in (0..messages as i64).collect::<Vec<_>>().chunks(50) {
                publish_all(
                    port,
                    "bench/live",
                    chunk
                        .iter()
                        .map(|n| format!("{{\"n\":{}}}", first + n).into_bytes()),
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        std::thread::sleep(Duration::from_secs(2));
        let log_before = server.log().len();
        let swaps_before = server.log_count("sink now runs the new build");
        let t = Instant::now();
        let (status, answer) = server.call(
            "PUT",
            "/plugins/sinks/Versioned",
            Some(&json!({"name": "Versioned", "file": format!("file://{}", upload.display())})),
        )?;
        let answered = t.elapsed();
        anyhow::ensure!(status == 200, "plugin update: {status} {answer}");
        let deadline = Instant::now() + Duration::from_secs(120);
        while server.log_count("sink now runs the new build") < swaps_before + rules {
            anyhow::ensure!(
                Instant::now() < deadline,
                "not every rule took the new build"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let all_swapped = t.elapsed();
        publisher.join().expect("the publisher");

        // Every numbered message of this update in every rule's output, once it is through.
        let numbered = |i: usize| -> Vec<i64> {
            lines(i)
                .iter()
                .filter_map(|l| l["m"]["n"].as_i64())
                .filter(|n| (first..first + messages as i64).contains(n))
                .collect()
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while (0..rules).any(|i| numbered(i).len() < messages) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        let (mut lost, mut duplicated) = (0usize, 0usize);
        for i in 0..rules {
            let mut got = numbered(i);
            let count = got.len();
            got.sort_unstable();
            got.dedup();
            duplicated += count - got.len();
            lost += messages - got.len();
        }
        lost_all += lost;
        duplicated_all += duplicated;
        let swaps: Vec<Swap> = server.log()[log_before..]
            .lines()
            .filter(|l| l.contains("sink now runs the new build"))
            .filter_map(Swap::parse)
            .collect();
        println!(
            "== plugin update {} of {updates} ({name}) used by {rules} running rules, \
             {messages} MQTT messages (QoS 1) flowing; load average {load_before} before, {} after",
            update + 1,
            loadavg()
        );
        println!(
            "update answered after {:.0} ms, every rule on the new build after {:.0} ms",
            ms(answered),
            ms(all_swapped)
        );
        print_swaps(&swaps);
        println!(
            "rows lost: {lost} of {}, duplicated: {duplicated}\n",
            messages * rules
        );
        all.extend(swaps);
    }
    if updates > 1 {
        println!("== all {updates} plugin updates together");
        print_swaps(&all);
        println!(
            "rows lost: {lost_all} of {}, duplicated: {duplicated_all}\n",
            messages * rules * updates
        );
    }
    Ok(())
}

/// The swap pause's figures: wall time as the action saw it, the swap's own CPU time, and the
/// pauses in which the kernel took the thread away (descheduled over 0.1 ms).
fn print_swaps(swaps: &[Swap]) {
    let us = |f: fn(&Swap) -> u64, of: &[Swap]| -> Vec<Duration> {
        of.iter().map(|s| Duration::from_micros(f(s))).collect()
    };
    let mut pause = us(|s| s.pause, swaps);
    let mut cpu = us(|s| s.cpu, swaps);
    let (descheduled, undisturbed): (Vec<Swap>, Vec<Swap>) =
        swaps.iter().partition(|s| s.descheduled > 100);
    let mut undisturbed = us(|s| s.pause, &undisturbed);
    let over_1ms: Vec<&Swap> = swaps.iter().filter(|s| s.pause > 1000).collect();
    let over_1ms_descheduled = over_1ms.iter().filter(|s| s.descheduled > 100).count();
    let over_1ms_waited = over_1ms.iter().filter(|s| s.waited > 100).count();
    println!(
        "swap pause per action: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({} swaps)",
        ms(percentile(&mut pause, 0.5)),
        ms(percentile(&mut pause, 0.99)),
        ms(percentile(&mut pause, 1.0)),
        swaps.len()
    );
    println!(
        "  its CPU time: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        ms(percentile(&mut cpu, 0.5)),
        ms(percentile(&mut cpu, 0.99)),
        ms(percentile(&mut cpu, 1.0)),
    );
    println!(
        "  descheduled by the kernel (over 0.1 ms) in {} of {} pauses (max {:.3} ms); \
         the others: p50 {:.3} ms, p99 {:.3} ms",
        descheduled.len(),
        swaps.len(),
        descheduled.iter().map(|s| s.descheduled).max().unwrap_or(0) as f64 / 1e3,
        ms(percentile(&mut undisturbed, 0.5)),
        ms(percentile(&mut undisturbed, 0.99)),
    );
    println!(
        "  over 1 ms: {} pauses, {over_1ms_descheduled} of them descheduled, {over_1ms_waited} \
         waited between polls (I/O, a worker) over 0.1 ms",
        over_1ms.len()
    );
}

/// The machine's 1-minute load average.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A release `oort serve` on a free loopback port, its log collected.
struct Server {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
}

impl Server {
    fn start(root: &Path) -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut child = Command::new(oort_tests::oort_bin())
            .current_dir(root)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--log",
                "info",
            ])
            .args(["--data-dir", "data", "--plugins", "plugins"])
            .args(["--mqtt-conf", "etc/mqtt_source.yaml"])
            .env("OORT_CACHE_DIR", oort_tests::cache_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let log = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&log);
        let stderr = child.stderr.take().expect("piped");
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "the server never listened");
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(Self { child, port, log })
    }

    fn call(&self, method: &str, path: &str, body: Option<&Json>) -> anyhow::Result<(u16, String)> {
        let body = body.map(Json::to_string).unwrap_or_default();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("{method} {path}: no status in {answer:?}"))?;
        let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        Ok((status, body.to_string()))
    }

    fn ok(&self, method: &str, path: &str, body: &Json) -> anyhow::Result<()> {
        let (status, text) = self.call(method, path, Some(body))?;
        anyhow::ensure!(
            (200..300).contains(&status),
            "{method} {path}: {status} {text}"
        );
        Ok(())
    }

    fn running(&self) -> usize {
        self.call("GET", "/rules", None)
            .ok()
            .and_then(|(_, body)| serde_json::from_str::<Json>(&body).ok())
            .and_then(|list| {
                list.as_array()
                    .map(|l| l.iter().filter(|r| r["status"] == "Running").count())
            })
            .unwrap_or(0)
    }

    /// Waits until `n` rules run; how long that took.
    fn wait_running(&self, n: usize, limit: Duration) -> anyhow::Result<Duration> {
        let t = Instant::now();
        while self.running() < n {
            anyhow::ensure!(
                t.elapsed() < limit,
                "only {} of {n} rules running",
                self.running()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(t.elapsed())
    }

    /// The RSS once the rules idle: the server gives freed heap pages back every 2 s, so this
    /// waits until RSS has not fallen for three seconds in a row (30 s at most).
    fn idle_rss_kib(&self) -> u64 {
        let mut last = self.rss_kib();
        let mut steady = 0;
        for _ in 0..30 {
            std::thread::sleep(Duration::from_secs(1));
            let now = self.rss_kib();
            steady = if now + 64 >= last { steady + 1 } else { 0 };
            last = now.min(last);
            if steady >= 3 {
                break;
            }
        }
        last
    }

    fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// The CPU time the server's HTTP thread (`oort-http`, which answers every call) has run
    /// so far, from the kernel's scheduler statistics (nanoseconds, unlike `/proc/.../stat`).
    fn http_cpu(&self) -> Duration {
        let tasks = format!("/proc/{}/task", self.child.id());
        std::fs::read_dir(&tasks)
            .into_iter()
            .flatten()
            .flatten()
            .find(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| c.trim() == "oort-http")
            })
            .and_then(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .map(Duration::from_nanos)
            .unwrap_or_default()
    }

    fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn log_count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
