//! The web console's figures, measured the same way by the integration test and the `console`
//! benchmark: the CPU time the server's HTTP thread spends on live updates, the bytes of each
//! update, and the first paint of `/ui` in headless Chromium.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::browser::Browser;

/// The name of the thread `oort serve` answers HTTP on (the live updates are built and sent
/// there).
pub const HTTP_THREAD: &str = "oort-http";

/// The CPU time (user and system) the thread `name` of process `pid` has used so far: from
/// `/proc/<pid>/task/<tid>/schedstat` (nanoseconds), else from its `stat` (clock ticks);
/// `None` when no thread has that name.
pub fn thread_cpu(pid: u32, name: &str) -> Option<Duration> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for task in tasks.flatten() {
        let dir = task.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        if let Some(ns) = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        {
            return Some(Duration::from_nanos(ns));
        }
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        // The fields after the command name (in parentheses, it may hold spaces).
        let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
        let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // USER_HZ is 100 on Linux.
        return Some(Duration::from_millis(ticks * 10));
    }
    None
}

/// What one list stream costs the server: the HTTP thread's CPU time over a window with no
/// stream open, then over as long a window with one open, and the size of each event read.
#[derive(Debug, Clone)]
pub struct UpdateCost {
    /// The length of each window.
    pub window: Duration,
    /// The HTTP thread's CPU time in the window with no stream open.
    pub closed: Duration,
    /// The same with the stream open.
    pub open: Duration,
    /// The size in bytes of each event read, the first (everything) first.
    pub events: Vec<usize>,
}

impl UpdateCost {
    /// Measures `path` (e.g. `/events/rules`) of the server `pid` listening on `port`.
    pub fn measure(pid: u32, port: u16, path: &str, window: Duration) -> Self {
        let cpu = || thread_cpu(pid, HTTP_THREAD).expect("the server's HTTP thread");
        let start = cpu();
        std::thread::sleep(window);
        let closed = cpu() - start;
        let start = cpu();
        let events = event_sizes(port, path, window);
        let open = cpu() - start;
        Self {
            window,
            closed,
            open,
            events,
        }
    }

    /// The HTTP thread's CPU in % of a core, with no stream open.
    pub fn closed_percent(&self) -> f64 {
        100.0 * self.closed.as_secs_f64() / self.window.as_secs_f64()
    }

    /// The same with the stream open.
    pub fn open_percent(&self) -> f64 {
        100.0 * self.open.as_secs_f64() / self.window.as_secs_f64()
    }

    /// What the stream adds, in % of a core.
    pub fn updates_percent(&self) -> f64 {
        (self.open_percent() - self.closed_percent()).max(0.0)
    }

    /// What the stream adds per event sent.
    pub fn per_event(&self) -> Duration {
        self.open.saturating_sub(self.closed) / self.events.len().max(1) as u32
    }

    /// The mean size of the events after the first.
    pub fn steady_bytes(&self) -> usize {
        let steady = self.events.get(1..).unwrap_or_default();
        steady.iter().sum::<usize>() / steady.len().max(1)
    }

    /// One line for the figures.
    pub fn summary(&self) -> String {
        format!(
            "HTTP thread CPU {:.2}% of a core with no console, {:.2}% with the list stream open: \
             live updates {:.2}% ({:.2} ms per update, {:.0} s windows); {} events, the first {} \
             bytes, then {} bytes on average",
            self.closed_percent(),
            self.open_percent(),
            self.updates_percent(),
            self.per_event().as_secs_f64() * 1e3,
            self.window.as_secs_f64(),
            self.events.len(),
            self.events.first().copied().unwrap_or(0),
            self.steady_bytes(),
        )
    }
}

/// Opens `GET path` as a server-sent event stream, each read waiting at most `timeout`.
fn open_events(port: u16, path: &str, timeout: Duration) -> TcpStream {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).expect("connecting to the server");
    write!(
        socket,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    )
    .expect("sending the request");
    socket
        .set_read_timeout(Some(timeout))
        .expect("a read timeout");
    socket
}

/// Reads `GET path` as server-sent events for `window`; the size in bytes of each event.
pub fn event_sizes(port: u16, path: &str, window: Duration) -> Vec<usize> {
    let mut socket = open_events(port, path, Duration::from_millis(200));
    let start = Instant::now();
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    while start.elapsed() < window {
        match socket.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    // Chunked transfer: the events are the `event: ...` blocks inside the chunks.
    body.split("event: ")
        .skip(1)
        .map(|e| {
            let end = e.find("\n\n").map_or(e.len(), |i| i + 2);
            "event: ".len() + end
        })
        .collect()
}

/// The first server-sent event of `path`, its data as JSON.
pub fn first_event(port: u16, path: &str) -> Json {
    let socket = open_events(port, path, Duration::from_secs(10));
    for line in BufReader::new(socket).lines() {
        let line = line.expect("an event within 10 s");
        if let Some(data) = line.strip_prefix("data: ") {
            return serde_json::from_str(data).expect("an event's data is JSON");
        }
    }
    panic!("{path}: no event");
}

/// A first paint of the console, as the browser saw it.
#[derive(Debug, Clone)]
pub struct Paint {
    /// First contentful paint, ms from the navigation's start.
    pub first_contentful_ms: f64,
    /// The rules list drawn from the first event, ms from the navigation's start.
    pub list_ms: f64,
    /// Where the time went: the page's answer and parse, each request made for it.
    pub detail: String,
}

/// The paint timings of the page the browser shows (once the list is drawn).
pub async fn paint(browser: &Browser) -> Paint {
    let got = browser
        .until(
            "the paint timings",
            r#"const fcp = performance.getEntriesByName('first-contentful-paint')[0];
               const list = performance.getEntriesByName('oort-rules-rendered')[0];
               if (!fcp || !list) return null;
               const ms = (x) => x.toFixed(1);
               const n = performance.getEntriesByType('navigation')[0];
               const parts = [`page: request ${ms(n.requestStart)}, answer ${ms(n.responseStart)}-${ms(n.responseEnd)} (${n.encodedBodySize} bytes), parsed ${ms(n.domInteractive)}`];
               for (const r of performance.getEntriesByType('resource')) {
                 parts.push(`${new URL(r.name).pathname}: ${ms(r.startTime)}-${ms(r.responseEnd)} (${r.encodedBodySize} bytes)`);
               }
               return [fcp.startTime, list.startTime, parts.join('; ')]"#,
        )
        .await;
    Paint {
        first_contentful_ms: got[0].as_f64().expect("a paint time"),
        list_ms: got[1].as_f64().expect("a list time"),
        detail: got[2].as_str().unwrap_or_default().to_owned(),
    }
}

/// The machine's load average (1, 5 and 15 minutes), as `/proc/loadavg` has it.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split(' ')
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
