//! The web console benchmark (`cargo xtask bench console`): a real `oort serve` (release build;
//! `cargo test -p oort-tests --bench console -- --quick` runs it on the debug build) with N
//! rules (default 1,000) all running and rows flowing into every one, printing from one run:
//!
//! 1. the CPU time the server's HTTP thread (`oort-http`, where live updates are built and
//!    sent) spends with no console open, then with one list stream (`/events/rules`) open, as
//!    % of a core and per update; the thread's own CPU time, so neither the rules' work nor
//!    other processes count;
//! 2. the bytes of each update (the first holds every rule, the next what changed);
//! 3. the first contentful paint of `/ui` in headless Chromium over several runs, each in a
//!    fresh browser (cold) and again after `about:blank` (warm), with the time the rules list
//!    was drawn and the machine's load average.
//!
//! `--rules N` changes N, `--runs R` the paint runs (default 5), `--quick` uses 200 rules, 10 s
//! windows and 3 runs. Figures are printed, not asserted.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use oort_tests::broker::{Broker, publish_all};
use oort_tests::browser::Browser;
use oort_tests::console::{UpdateCost, first_event, load_average, paint};
use serde_json::{Value as Json, json};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let value = |name: &str| -> anyhow::Result<Option<usize>> {
        Ok(args
            .iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|n| n.parse())
            .transpose()?)
    };
    let rules = value("--rules")?.unwrap_or(if quick { 200 } else { 1000 });
    let runs = value("--runs")?.unwrap_or(if quick { 3 } else { 5 });
    let window = Duration::from_secs(if quick { 10 } else { 20 });
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!("web console benchmark ({rules} rules, {build} build)\n");

    let dir = tempfile::tempdir()?;
    let root = dir.path();
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
        &json!({"sql": "CREATE STREAM s (n bigint) WITH (DATASOURCE=\"bench/console\")"}),
    )?;
    let mut set = serde_json::Map::new();
    for i in 0..rules {
        let id = format!("rule{i:04}");
        let rule = json!({"id": id, "sql": "SELECT n FROM s", "actions": [{"nop": {}}]});
        set.insert(id, json!(rule.to_string()));
    }
    std::fs::write(
        root.join("ruleset.json"),
        json!({ "rules": set }).to_string(),
    )?;
    server.ok(
        "POST",
        "/ruleset/import",
        &json!({ "file": root.join("ruleset.json") }),
    )?;

    // Rows into every rule, 10 every 200 ms, until every rule has counted some.
    let flowing = Arc::new(AtomicBool::new(true));
    let publisher = {
        let flowing = Arc::clone(&flowing);
        let port = broker.port;
        std::thread::spawn(move || {
            let mut n = 0;
            while flowing.load(Ordering::Relaxed) {
                publish_all(
                    port,
                    "bench/console",
                    (n..n + 10).map(|n| format!("{{\"n\":{n}}}").into_bytes()),
                );
                n += 10;
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let started = Instant::now();
    loop {
        let listed = first_event(server.port, "/events/rules");
        let counting = listed["rules"].as_object().map_or(0, |all| {
            all.values()
                .filter(|r| r[0] == "Running" && r[1].as_u64().is_some_and(|n| n > 0))
                .count()
        });
        if counting == rules {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "only {counting} of {rules} rules running and reading rows"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    println!(
        "{rules} rules running and reading rows after {:.1} s\n",
        started.elapsed().as_secs_f64()
    );

    // 1 and 2: the update's cost and size.
    let cost = UpdateCost::measure(server.pid(), server.port, "/events/rules", window);
    println!(
        "== live updates, one list stream open, {rules} rules (every rule changes each second)"
    );
    println!("{}", cost.summary());
    println!("load average (1, 5, 15 min): {}\n", load_average());

    // 3: the first paint, cold and warm.
    let ui = format!("http://127.0.0.1:{}/ui", server.port);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    println!("== first contentful paint of /ui, {runs} runs, each in a fresh Chromium");
    for run in 1..=runs {
        let visits = runtime.block_on(async {
            let browser = Browser::start()
                .await
                .ok_or_else(|| anyhow::anyhow!("chromium and chromedriver are not installed"))?;
            browser.client.goto(&ui).await?;
            let first = paint(&browser).await;
            browser.client.goto("about:blank").await?;
            browser.client.goto(&ui).await?;
            let second = paint(&browser).await;
            browser.close().await;
            anyhow::Ok([first, second])
        })?;
        let [first, second] = visits;
        println!(
            "run {run}: cold {:.0} ms (list drawn {:.0} ms), warm {:.0} ms (list drawn {:.0} ms); \
             load average {}",
            first.first_contentful_ms,
            first.list_ms,
            second.first_contentful_ms,
            second.list_ms,
            load_average()
        );
        cold.push(first.first_contentful_ms);
        warm.push(second.first_contentful_ms);
    }
    println!(
        "cold: {}; warm: {} (target: 300 ms)",
        spread(&mut cold),
        spread(&mut warm)
    );
    flowing.store(false, Ordering::Relaxed);
    publisher.join().expect("the publisher");
    Ok(())
}

/// `min a, median b, max c ms`.
fn spread(ms: &mut [f64]) -> String {
    ms.sort_by(f64::total_cmp);
    match ms {
        [] => "no run".into(),
        [..] => format!(
            "min {:.0}, median {:.0}, max {:.0} ms",
            ms[0],
            ms[ms.len() / 2],
            ms[ms.len() - 1]
        ),
    }
}

/// An `oort serve` on a free loopback port (release when this benchmark is).
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(root: &Path) -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(oort_tests::oort_bin())
            .current_dir(root)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--data-dir", "data", "--mqtt-conf", "etc/mqtt_source.yaml"])
            .env("OORT_CACHE_DIR", oort_tests::cache_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "the server never listened");
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(Self { child, port })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A call over a fresh connection; fails unless the answer is a 2xx.
    fn ok(&self, method: &str, path: &str, body: &Json) -> anyhow::Result<()> {
        let body = body.to_string();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        let status: u16 = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        anyhow::ensure!((200..300).contains(&status), "{method} {path}: {answer}");
        Ok(())
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
