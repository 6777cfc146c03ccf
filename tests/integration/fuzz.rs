//! The chaos guest through the real `oort` binary, seed after seed, beside a healthy file
//! action: `oort` never panics and finishes with a summary, its peak RSS stays under
//! instances × `maxMemory` + a fixed margin, and the healthy action delivers every row.
//! `cargo xtask fuzz` runs it for longer (`OORT_FUZZ_SECONDS`, `OORT_FUZZ_SEED`).

use std::fs::File;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{Run, Scratch, numbered};

const ROWS: usize = 40;
/// Both actions' `maxMemory`.
const MAX_MEMORY: u64 = 32 << 20;
/// Instances in the process: the chaos sink's and the file sink's.
const INSTANCES: u64 = 2;
/// What `oort` itself (a debug build: code, engine, compiled sinks, buffers) may hold beside
/// its instances' memories.
const MARGIN: u64 = 384 << 20;
/// The longest one run may take.
const RUN_LIMIT: Duration = Duration::from_secs(150);

/// What one seed's run gave.
struct Figures {
    seed: u64,
    peak_rss: u64,
    wall: Duration,
    traps: u64,
}

/// The peak RSS (`VmHWM`) of a live process, in bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
}

fn run_seed(seed: u64) -> Figures {
    let scratch = Scratch::new();
    scratch.install(
        "Chaos",
        oort_tests::guests::CHAOS,
        oort_tests::guests::CHAOS_MANIFEST,
    );
    scratch.write(
        "streams.sql",
        "CREATE STREAM demo () WITH (TYPE=\"file\", DATASOURCE=\"in.jsonl\");\n",
    );
    scratch.write("in.jsonl", &numbered(ROWS));
    let collector = oort_tests::http::HttpServer::start();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("localhost:{}", listener.local_addr().unwrap().port());
    let rule = json!({"id": "r", "sql": "SELECT n FROM demo", "actions": [
        {"chaos": {"seed": seed, "scratch": "out/chaos.bin", "url": collector.url("/c"),
                   "addr": addr, "batchSize": 2, "maxMemory": MAX_MEMORY,
                   "retryCount": 1, "retryInterval": 0, "callTimeout": "2s"}},
        {"file": {"path": "out/good.jsonl", "maxMemory": MAX_MEMORY}}
    ]});
    scratch.write("rule.json", &rule.to_string());
    let out = scratch.path().join("stdout.txt");
    let err = scratch.path().join("stderr.txt");
    let start = Instant::now();
    let mut child = scratch
        .oort(&[
            "run-rule",
            "rule.json",
            "--json",
            "--streams",
            "streams.sql",
        ])
        .stdout(Stdio::from(File::create(&out).unwrap()))
        .stderr(Stdio::from(File::create(&err).unwrap()))
        .spawn()
        .expect("running oort");
    let mut peak = 0;
    let status = loop {
        if let Some(rss) = peak_rss(child.id()) {
            peak = peak.max(rss);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            panic!(
                "seed {seed}: oort still running after {RUN_LIMIT:?}:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let wall = start.elapsed();
    let run = Run {
        code: status.code(),
        stdout: std::fs::read_to_string(&out).unwrap(),
        stderr: String::from_utf8_lossy(&std::fs::read(&err).unwrap()).into_owned(),
    };
    let tail = || {
        let s = &run.stderr;
        s[s.floor_char_boundary(s.len().saturating_sub(4000))..].to_string()
    };
    // The panic hook's line (a guest's own panic message is a log line of the host's).
    assert!(
        !run.stderr
            .lines()
            .any(|l| l.starts_with("thread '") && l.contains("panicked at")),
        "seed {seed}: oort panicked:\n{}",
        tail()
    );
    // 0, or 3 when the chaos sink's rejected or failed rows leave the run not all delivered:
    // never a panic's 101 or a signal.
    assert!(
        matches!(run.code, Some(0 | 3)),
        "seed {seed}: exit code {:?}:\n{}",
        run.code,
        tail()
    );
    assert_eq!(
        scratch.read("out/good.jsonl"),
        numbered(ROWS),
        "seed {seed}: the healthy action delivers every row:\n{}",
        tail()
    );
    let good = run.action(1);
    assert_eq!(good["records_out_total"], ROWS, "seed {seed}: {good}");
    let chaos = run.action(0);
    assert_eq!(
        chaos["balanced"], true,
        "seed {seed}: every row accounted for: {chaos}"
    );
    let bound = INSTANCES * MAX_MEMORY + MARGIN;
    assert!(
        peak < bound,
        "seed {seed}: peak RSS {} MiB over {} MiB",
        peak >> 20,
        bound >> 20
    );
    let traps = chaos["restarts_total"].as_u64().unwrap_or(0);
    Figures {
        seed,
        peak_rss: peak,
        wall,
        traps,
    }
}

/// A few seeds for `OORT_FUZZ_SECONDS` (at least three runs), from `OORT_FUZZ_SEED`.
#[test]
fn the_chaos_guest_never_breaks_the_host() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    // Built first: the budget and each run's limit are for `oort`, not for building it.
    oort_tests::oort_bin();
    let budget = Duration::from_secs(env("OORT_FUZZ_SECONDS", 0));
    let first = env("OORT_FUZZ_SEED", 1);
    let start = Instant::now();
    let mut seed = first;
    let mut all = Vec::new();
    while all.len() < 3 || start.elapsed() < budget {
        let f = run_seed(seed);
        println!(
            "fuzz: seed {:>6}  peak RSS {:>4} MiB  wall {:>6.2} s  instance restarts {}",
            f.seed,
            f.peak_rss >> 20,
            f.wall.as_secs_f64(),
            f.traps
        );
        all.push(f);
        seed += 1;
    }
    let worst = all.iter().map(|f| f.peak_rss).max().unwrap_or(0);
    println!(
        "fuzz: {} seeds from {first} in {:.1} s; worst peak RSS {} MiB (bound {} MiB: {INSTANCES} \
         instances × {} MiB + {} MiB)",
        all.len(),
        start.elapsed().as_secs_f64(),
        worst >> 20,
        (INSTANCES * MAX_MEMORY + MARGIN) >> 20,
        MAX_MEMORY >> 20,
        MARGIN >> 20
    );
}
