//! A test sink that writes every lifecycle call to a journal file and fails on demand, so the
//! host's handling of each outcome (error kinds, traps, hangs) can be checked end to end. It can
//! also try to reach what it was not granted, to check the sandbox.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::time::Duration;

use oort_sdk::serde::Deserialize;
use oort_sdk::{Batch, Context, Sink, SinkError, export_sink, log};

/// The action's props.
#[derive(Debug, Deserialize)]
#[serde(
    crate = "oort_sdk::serde",
    rename_all = "camelCase",
    deny_unknown_fields
)]
pub struct Config {
    /// The journal file (granted by the manifest).
    pub journal: String,
    /// A file the sink may read (granted read-only when given).
    #[serde(default)]
    pub peek: Option<String>,
    /// The phase to fail in: configure, open, collect or close.
    #[serde(default)]
    pub fail_phase: Option<String>,
    /// How to fail: transient, rejected, invalid-config, trap, hang.
    #[serde(default)]
    pub fail_kind: Option<String>,
    /// Fail only in instances whose generation is below this (default: always).
    #[serde(default)]
    pub fail_generations: Option<u32>,
    /// In `collect`: fail only every Nth call of an instance (default: every call).
    #[serde(default)]
    pub fail_every: Option<u64>,
    /// At open, try to open these paths (not granted) and journal the outcome.
    #[serde(default)]
    pub escape: Vec<String>,
    /// At open, send a GET to each of these `http://host:port/path` URLs through `wasi:http`
    /// and journal the outcome.
    #[serde(default)]
    pub fetch: Vec<String>,
    /// How many times each `fetch` URL is fetched (default once); past one, the journal has a
    /// line per distinct outcome with its count (`fetch URL status 200 x1500`).
    #[serde(default)]
    pub fetch_times: Option<u32>,
    /// At open, try a TCP connection to each of these `host:port` and journal the outcome.
    #[serde(default)]
    pub connect: Vec<String>,
    /// While this (granted, read-only) file exists, every `collect` fails as transient: an
    /// outage the test switches on and off.
    #[serde(default)]
    pub down_while: Option<String>,
}

/// The sink's state.
pub struct Probe {
    config: Config,
    generation: u32,
    instance: u32,
    journal: Option<File>,
    collects: u64,
}

impl Probe {
    fn note(&mut self, line: &str) -> Result<(), SinkError> {
        if self.journal.is_none() {
            self.journal = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.config.journal)
                    .map_err(|e| SinkError::transient(format!("journal: {e}")))?,
            );
        }
        if let Some(journal) = self.journal.as_mut() {
            writeln!(
                journal,
                "{} gen={} inst={}",
                line, self.generation, self.instance
            )?;
            journal.flush()?;
        }
        Ok(())
    }

    fn maybe_fail(&mut self, phase: &str) -> Result<(), SinkError> {
        if self.config.fail_phase.as_deref() != Some(phase) {
            return Ok(());
        }
        if self
            .config
            .fail_generations
            .is_some_and(|g| self.generation >= g)
        {
            return Ok(());
        }
        if phase == "collect"
            && let Some(every) = self.config.fail_every
            && (every == 0 || !self.collects.is_multiple_of(every))
        {
            return Ok(());
        }
        let message = format!("probe fails in {phase} as asked");
        match self.config.fail_kind.as_deref().unwrap_or("transient") {
            "transient" => Err(SinkError::transient(message)),
            "rejected" => Err(SinkError::rejected(message)),
            "invalid-config" => Err(SinkError::invalid_config(message)),
            "trap" => panic!("{message}"),
            "hang" => loop {
                std::hint::spin_loop();
            },
            // Grows memory until the host's limit stops it.
            "bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            // Logs far more than the host lets through, then carries on.
            "flood" => {
                for i in 0..100_000 {
                    log::info(&format!("flood line {i}"));
                }
                println!("flood on stdout");
                Ok(())
            }
            // Tries to pass its own text for host log lines, then logs an overlong line.
            "forge" => {
                let fake = "2026-01-01T00:00:00.000000Z  WARN oort: FAKE all rows delivered";
                log::info(&format!("forged\n{fake}\r\u{1b}[2K{fake}"));
                println!("forged\r{fake}");
                log::info(&format!("long line {}", "x".repeat(100_000)));
                Ok(())
            }
            other => Err(SinkError::invalid_config(format!(
                "unknown failKind {other}"
            ))),
        }
    }
}

impl Sink for Probe {
    type Config = Config;

    fn configure(ctx: &Context, config: Config) -> Result<Self, SinkError> {
        let mut probe = Self {
            config,
            generation: ctx.generation,
            instance: ctx.instance,
            journal: None,
            collects: 0,
        };
        // `configure` must have no side effect: nothing is journaled here.
        probe.maybe_fail("configure")?;
        Ok(probe)
    }

    fn open(&mut self) -> Result<(), SinkError> {
        // Guest stdout goes to the host's log, tagged with the rule and action.
        println!("probe opened (generation {})", self.generation);
        self.note("open")?;
        for path in self.config.escape.clone() {
            let outcome = match File::open(&path) {
                Ok(_) => "opened".to_string(),
                Err(e) => format!("refused ({})", e.kind()),
            };
            self.note(&format!("escape {path} {outcome}"))?;
        }
        for url in self.config.fetch.clone() {
            match self.config.fetch_times {
                None | Some(0 | 1) => {
                    let outcome = fetch(&url);
                    self.note(&format!("fetch {url} {outcome}"))?;
                }
                Some(times) => {
                    let mut outcomes: Vec<(String, u32)> = Vec::new();
                    for _ in 0..times {
                        let outcome = fetch(&url);
                        match outcomes.iter_mut().find(|(o, _)| *o == outcome) {
                            Some((_, n)) => *n += 1,
                            None => outcomes.push((outcome, 1)),
                        }
                    }
                    for (outcome, n) in outcomes {
                        self.note(&format!("fetch {url} {outcome} x{n}"))?;
                    }
                }
            }
        }
        for addr in self.config.connect.clone() {
            let outcome = match std::net::TcpStream::connect(addr.as_str()) {
                Ok(_) => "connected".to_string(),
                Err(e) => format!("refused ({})", e.kind()),
            };
            self.note(&format!("connect {addr} {outcome}"))?;
        }
        if let Some(peek) = self.config.peek.clone() {
            let outcome = match std::fs::read_to_string(&peek) {
                Ok(text) => format!("read {} bytes", text.len()),
                Err(e) => format!("refused ({})", e.kind()),
            };
            self.note(&format!("peek {outcome}"))?;
            let write = OpenOptions::new().append(true).open(&peek);
            self.note(&format!(
                "peek-write {}",
                if write.is_ok() { "opened" } else { "refused" }
            ))?;
            // Changing the times of a file opened read-only is a write as well.
            let touch = File::open(&peek).and_then(|file| {
                file.set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1))
            });
            self.note(&format!(
                "peek-touch {}",
                if touch.is_ok() { "changed" } else { "refused" }
            ))?;
        }
        self.maybe_fail("open")
    }

    fn collect(&mut self, batch: &Batch) -> Result<(), SinkError> {
        self.collects += 1;
        if let Some(switch) = &self.config.down_while
            && std::fs::metadata(switch).is_ok()
        {
            return Err(SinkError::transient("the target is down (outage switch)"));
        }
        self.maybe_fail("collect")?;
        let mut line = format!("collect n={}", batch.len());
        for message in batch {
            line.push(' ');
            line.push_str(message.as_str()?);
        }
        self.note(&line)?;
        log::debug(&format!("probe collected {} messages", batch.len()));
        Ok(())
    }

    fn close(&mut self) -> Result<(), SinkError> {
        self.maybe_fail("close")?;
        self.note("close")
    }
}

/// GETs `url` (`http://authority/path`) through `wasi:http`, with request options (a connect
/// timeout) as a careful client passes them: the status, or why not.
fn fetch(url: &str) -> String {
    use wasip2::http::types::{
        Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
    };
    let Some(rest) = url.strip_prefix("http://") else {
        return "bad url".into();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_method(&Method::Get);
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some(if path.is_empty() { "/" } else { path }));
    let Ok(body) = request.body() else {
        return "no body".into();
    };
    let options = RequestOptions::new();
    let _ = options.set_connect_timeout(Some(5_000_000_000));
    let pending = match wasip2::http::outgoing_handler::handle(request, Some(options)) {
        Ok(pending) => pending,
        Err(code) => return format!("refused ({code:?})"),
    };
    let _ = OutgoingBody::finish(body, None);
    pending.subscribe().block();
    match pending.get() {
        Some(Ok(Ok(response))) => format!("status {}", response.status()),
        Some(Ok(Err(code))) => format!("refused ({code:?})"),
        _ => "lost".into(),
    }
}

export_sink!(Probe);
