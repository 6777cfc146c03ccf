//! A chaos test sink: driven by a seed, every call makes random calls to every host function a
//! sink can reach (the host log, MQTT publish, files, `wasi:http`, `wasi:sockets` and its
//! resolver, clocks, random, stdout and stderr) with random sizes and arguments, and now and
//! then traps (a panic, `unreachable`, an abort, a huge allocation) or fails the batch. The
//! generator is a hand-written splitmix64: a few lines, and the sequence must depend on the
//! seed alone (not on a crate's version).

use std::io::{Read, Write};

use oort_sdk::mqtt::{Qos, publish};
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
    /// Drives every choice.
    pub seed: u64,
    /// A granted file to write, read and touch.
    #[serde(default)]
    pub scratch: Option<String>,
    /// A granted `http://host:port/path` to send requests to.
    #[serde(default)]
    pub url: Option<String>,
    /// A granted `host:port` to connect to.
    #[serde(default)]
    pub addr: Option<String>,
    /// Random calls per sink call.
    #[serde(default = "ops")]
    pub ops: u32,
    /// One call in this many traps or fails (never an instance's first `collect`).
    #[serde(default = "trap_one_in")]
    pub trap_one_in: u64,
}

fn ops() -> u32 {
    12
}

fn trap_one_in() -> u64 {
    8
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A size, most often small, sometimes up to `2^max_bits`.
    fn size(&mut self, max_bits: u64) -> usize {
        let bits = self.below(max_bits + 1);
        self.below(1 << bits) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// Random text of a random size up to `2^max_bits`.
    fn some_text(&mut self, max_bits: u64) -> String {
        let len = self.size(max_bits);
        self.text(len)
    }

    /// Random bytes, a random number up to `2^max_bits`.
    fn some_bytes(&mut self, max_bits: u64) -> Vec<u8> {
        let len = self.size(max_bits);
        self.bytes(len)
    }

    /// Random text: printable, control characters, newlines, multi-byte characters.
    fn text(&mut self, len: usize) -> String {
        const PIECES: &[&str] = &[
            "a",
            "Z",
            "/",
            "+",
            "#",
            "\n",
            "\r",
            "\u{0}",
            "\u{1b}[31m",
            "é",
            "\u{1F600}",
            " ",
            "%",
            "\"",
        ];
        let mut s = String::with_capacity(len);
        while s.len() < len {
            s.push_str(PIECES[self.below(PIECES.len() as u64) as usize]);
        }
        s
    }
}

/// The `unreachable` instruction (an abort where the crate is checked for the host).
fn unreachable_trap() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort()
}

/// The sink's state.
pub struct Chaos {
    config: Config,
    rng: Rng,
    collects: u64,
}

impl Chaos {
    /// One sink call: random host calls, then perhaps a trap or a failure.
    fn call(&mut self, may_trap: bool) -> Result<(), SinkError> {
        for _ in 0..self.config.ops {
            self.one_op();
        }
        if may_trap && self.rng.below(self.config.trap_one_in) == 0 {
            match self.rng.below(6) {
                0 => panic!("chaos: a panic"),
                1 => unreachable_trap(),
                2 => std::process::abort(),
                3 => {
                    // More than any memory limit: the host refuses the growth, the guest traps.
                    let huge = vec![1u8; 1 << 31];
                    log::info(&format!("chaos: allocated {}", huge.len()));
                }
                4 => return Err(SinkError::rejected(self.rng.some_text(16))),
                _ => return Err(SinkError::transient(self.rng.some_text(12))),
            }
        }
        Ok(())
    }

    fn one_op(&mut self) {
        let rng = &mut self.rng;
        match rng.below(10) {
            0 => {
                let message = rng.some_text(16);
                match rng.below(5) {
                    0 => log::trace(&message),
                    1 => log::debug(&message),
                    2 => log::info(&message),
                    3 => log::warn(&message),
                    _ => log::error(&message),
                }
            }
            1 => {
                let topic = rng.some_text(17);
                let payload = rng.some_bytes(18);
                let qos = if rng.below(2) == 0 {
                    Qos::AtMostOnce
                } else {
                    Qos::AtLeastOnce
                };
                let _ = publish(&topic, &payload, qos, rng.below(2) == 0);
            }
            2 => self.files(),
            3 => self.http(),
            4 => self.sockets(),
            5 => {
                let _ = wasip2::clocks::wall_clock::now();
                let _ = wasip2::clocks::monotonic_clock::now();
                let ns = rng.below(2_000_000);
                wasip2::clocks::monotonic_clock::subscribe_duration(ns).block();
            }
            6 => {
                let len = rng.size(20) as u64;
                let got = wasip2::random::random::get_random_bytes(len);
                assert_eq!(got.len() as u64, len, "random bytes of the length asked");
                let _ = wasip2::random::insecure::get_insecure_random_bytes(rng.size(12) as u64);
                let _ = wasip2::random::insecure_seed::insecure_seed();
            }
            7 => {
                let text = rng.some_text(14);
                if rng.below(2) == 0 {
                    println!("{text}");
                } else {
                    eprintln!("{text}");
                }
            }
            8 => {
                let _ = std::env::vars().count();
                let _ = std::env::args().count();
                let mut buf = [0u8; 16];
                let _ = std::io::stdin().read(&mut buf);
            }
            _ => {
                // Linear memory, within or past the limit (a failed growth is an OOM trap).
                let v = vec![7u8; rng.size(24)];
                std::hint::black_box(&v);
            }
        }
    }

    fn files(&mut self) {
        let rng = &mut self.rng;
        let path = match (&self.config.scratch, rng.below(4)) {
            (Some(path), 0..=2) => path.clone(),
            _ => ["/etc/passwd", "../escape", ".", "/", "x/../../y"][rng.below(5) as usize]
                .to_string(),
        };
        match rng.below(4) {
            0 => {
                let _ = std::fs::write(&path, rng.some_bytes(18));
            }
            1 => {
                let _ = std::fs::read(&path);
            }
            2 => {
                if let Ok(file) = std::fs::OpenOptions::new().append(true).open(&path) {
                    let _ = file.set_modified(std::time::SystemTime::UNIX_EPOCH);
                    let _ = file.set_len(rng.size(16) as u64);
                }
            }
            _ => {
                let _ = std::fs::read_dir(&path).map(|d| d.count());
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    fn http(&mut self) {
        use wasip2::http::outgoing_handler::handle;
        use wasip2::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
        let rng = &mut self.rng;
        // Without an `http` grant `wasi:http` is not linked: calling it traps, now and then.
        if self.config.url.is_none() && rng.below(20) != 0 {
            return;
        }
        let fields = Fields::new();
        for _ in 0..rng.size(8) {
            let name = rng.some_text(10);
            let value = rng.some_bytes(14);
            let _ = fields.append(&name, &value);
        }
        let request = OutgoingRequest::new(fields);
        let _ = request.set_method(&Method::Post);
        let _ = request.set_scheme(Some(&Scheme::Http));
        let (authority, path) = match &self.config.url {
            Some(url) => {
                let rest = url.trim_start_matches("http://");
                let split = rest.find('/').unwrap_or(rest.len());
                (rest[..split].to_string(), rest[split..].to_string())
            }
            None => ("127.0.0.1:9".to_string(), "/".to_string()),
        };
        let authority = if rng.below(4) == 0 {
            rng.some_text(8)
        } else {
            authority
        };
        let _ = request.set_authority(Some(&authority));
        let _ = request.set_path_with_query(Some(if path.is_empty() { "/" } else { &path }));
        let Ok(body) = request.body() else {
            return;
        };
        if let Ok(stream) = body.write() {
            let mut left = rng.size(18);
            while left > 0 {
                let Ok(permit) = stream.check_write() else {
                    break;
                };
                if permit == 0 {
                    // Unsent, the body drains nowhere: waiting would only run into the deadline.
                    break;
                }
                let n = left.min(permit as usize).min(4096);
                if stream.write(&rng.bytes(n)).is_err() {
                    break;
                }
                left -= n;
            }
        }
        if rng.below(3) == 0 {
            // Dropped unsent.
            return;
        }
        match handle(request, None) {
            Ok(pending) => {
                let _ = OutgoingBody::finish(body, None);
                if rng.below(2) == 0 {
                    let timeout = wasip2::clocks::monotonic_clock::subscribe_duration(50_000_000);
                    let ready = pending.subscribe();
                    wasip2::io::poll::poll(&[&ready, &timeout]);
                    drop(ready);
                    let _ = pending.get();
                }
            }
            Err(_) => drop(body),
        }
    }

    fn sockets(&mut self) {
        let rng = &mut self.rng;
        // Without a `sockets` grant `wasi:sockets` is not linked: calling it traps, now and then.
        if self.config.addr.is_none() && rng.below(20) != 0 {
            return;
        }
        let network = wasip2::sockets::instance_network::instance_network();
        let name = match (&self.config.addr, rng.below(3)) {
            (Some(addr), 0) => addr
                .rsplit_once(':')
                .map_or(addr.clone(), |(h, _)| h.into()),
            _ => rng.some_text(9),
        };
        if let Ok(stream) = wasip2::sockets::ip_name_lookup::resolve_addresses(&network, &name)
            && rng.below(2) == 0
        {
            stream.subscribe().block();
            while let Ok(Some(_)) = stream.resolve_next_address() {}
        }
        let target = match (&self.config.addr, rng.below(3)) {
            (Some(addr), 0 | 1) => addr.clone(),
            _ => format!("127.0.0.1:{}", rng.below(65536)),
        };
        if let Ok(mut stream) = std::net::TcpStream::connect(target.as_str()) {
            let _ = stream.write_all(&rng.some_bytes(16));
        }
    }
}

impl Sink for Chaos {
    type Config = Config;

    fn configure(_ctx: &Context, config: Config) -> Result<Self, SinkError> {
        Ok(Self {
            rng: Rng(config.seed),
            config,
            collects: 0,
        })
    }

    fn open(&mut self) -> Result<(), SinkError> {
        self.call(false)
    }

    fn collect(&mut self, batch: &Batch) -> Result<(), SinkError> {
        // The batch mixes in, so a replacement instance (which starts from the seed again)
        // does not replay the calls that trapped.
        for b in batch.payloads() {
            self.rng.0 = self.rng.0.rotate_left(5) ^ u64::from(*b);
        }
        self.collects += 1;
        self.call(self.collects > 1)
    }

    fn close(&mut self) -> Result<(), SinkError> {
        self.call(false)
    }
}

export_sink!(Chaos);
