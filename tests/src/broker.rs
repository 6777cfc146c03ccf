//! A real MQTT broker (Debian's `mosquitto`) on a free loopback port, for tests and benchmarks,
//! and a small client to publish to it and collect what it delivers.

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

/// A mosquitto process with its own configuration and persistence folder; killed on drop.
pub struct Broker {
    child: Option<Child>,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    dir: tempfile::TempDir,
}

/// Where mosquitto is, if installed (`apt-get install -y mosquitto`).
pub fn mosquitto() -> Option<PathBuf> {
    [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

impl Broker {
    /// Starts a broker, or returns `None` (after saying why) when mosquitto is not installed
    /// and this is not CI. Under `CI=true` a missing broker is a failure: CI installs it.
    pub fn start() -> Option<Self> {
        Self::start_with_inflight(1000)
    }

    /// [`start`](Self::start), sending each client at most `max_inflight` QoS 1/2 messages it
    /// has not acknowledged (mosquitto's default is 20).
    pub fn start_with_inflight(max_inflight: u32) -> Option<Self> {
        Self::start_configured(max_inflight, None)
    }

    /// [`start`](Self::start) with an access control list: anonymous clients may only do what
    /// `acl` (mosquitto's `acl_file` syntax, e.g. `topic readwrite allowed/#`) lets them.
    pub fn start_with_acl(acl: &str) -> Option<Self> {
        Self::start_configured(1000, Some(acl))
    }

    fn start_configured(max_inflight: u32, acl: Option<&str>) -> Option<Self> {
        if mosquitto().is_none() {
            assert!(
                std::env::var("CI").is_err(),
                "mosquitto is not installed (apt-get install -y mosquitto); CI must install it"
            );
            eprintln!("SKIPPED: mosquitto is not installed (apt-get install -y mosquitto)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::Builder::new()
            .prefix("oort-broker-")
            .tempdir()
            .expect("a temporary folder");
        // Started by root, mosquitto switches to the `mosquitto` user, which cannot write in
        // this folder (root's, mode 0700): its sessions would not survive a restart. It keeps
        // the identity of whoever runs the tests instead, as it does for any other user.
        let user = if is_root(dir.path()) {
            "user root\n"
        } else {
            ""
        };
        let acl = match acl {
            Some(acl) => {
                let path = dir.path().join("acl");
                std::fs::write(&path, acl).expect("writing the ACL file");
                format!("acl_file {}\n", path.display())
            }
            None => String::new(),
        };
        std::fs::write(
            dir.path().join("mosquitto.conf"),
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\n{user}{acl}persistence true\n\
                 persistence_location {dir}/\nmax_queued_messages 1000000\nmax_inflight_messages {max_inflight}\n\
                 log_dest file {dir}/mosquitto.log\nlog_type error\nlog_type warning\n\
                 log_type notice\nlog_type information\n",
                dir = dir.path().display()
            ),
        )
        .expect("writing mosquitto.conf");
        let mut broker = Self {
            child: None,
            port,
            dir,
        };
        broker.run();
        Some(broker)
    }

    fn run(&mut self) {
        let child = Command::new(mosquitto().expect("mosquitto"))
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting mosquitto");
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "mosquitto did not listen on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The mosquitto process's id while it runs (to pause it with SIGSTOP: a broker that holds
    /// its connections open and answers nothing).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `tcp://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// Stops the broker (SIGTERM, so it saves its persistent sessions), waits for it, and checks
    /// that it saved them: a broker that forgets its sessions loses what it had accepted.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
            let log = self.log();
            assert!(
                self.dir.path().join("mosquitto.db").is_file()
                    && !log.contains("Error saving in-memory database"),
                "mosquitto did not save its sessions in {} when stopped:\n{log}",
                self.dir.path().display()
            );
        }
    }

    /// What mosquitto logged so far (errors, warnings, connections).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// Starts it again on the same port, with the sessions it saved.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether this process runs as root: it owns `mine`, a file it just created, as uid 0.
fn is_root(mine: &Path) -> bool {
    std::fs::metadata(mine).is_ok_and(|m| m.uid() == 0)
}

/// A subscriber with a persistent session (it gets what was published while it was away),
/// collecting payloads in a background thread that reconnects.
pub struct Subscriber {
    rx: mpsc::Receiver<(String, Vec<u8>)>,
    client: Client,
    fresh_sessions: Arc<AtomicUsize>,
}

impl Subscriber {
    /// Subscribes to `filter` with QoS 1 as client `id`, and waits until the subscription is in
    /// place.
    pub fn new(port: u16, id: &str, filter: &str) -> Self {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_clean_session(false);
        options.set_keep_alive(Duration::from_secs(5));
        options.set_max_packet_size(16 << 20, 16 << 20);
        let (client, mut connection) = Client::new(options, 1024);
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let sub = client.clone();
        let filter = filter.to_string();
        let fresh_sessions = Arc::new(AtomicUsize::new(0));
        let fresh = Arc::clone(&fresh_sessions);
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        if !ack.session_present {
                            fresh.fetch_add(1, Ordering::SeqCst);
                            let _ = sub.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send((p.topic.clone(), p.payload.to_vec())).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(rumqttc::ConnectionError::RequestsDone) => return,
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the subscription was not acknowledged");
        Self {
            rx,
            client,
            fresh_sessions,
        }
    }

    /// How many times the broker started this subscriber on a new session (one when it kept
    /// the session from the first connection on: its queued messages were never dropped).
    pub fn fresh_sessions(&self) -> usize {
        self.fresh_sessions.load(Ordering::SeqCst)
    }

    /// Collects messages until `done` says so or `limit` passes; returns them.
    pub fn collect_until(
        &self,
        limit: Duration,
        mut done: impl FnMut(&[(String, Vec<u8>)]) -> bool,
    ) -> Vec<(String, Vec<u8>)> {
        let started = Instant::now();
        let mut got = Vec::new();
        while !done(&got) && started.elapsed() < limit {
            if let Ok(m) = self.rx.recv_timeout(Duration::from_millis(50)) {
                got.push(m);
                while let Ok(m) = self.rx.try_recv() {
                    got.push(m);
                }
            }
        }
        got
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.client.try_disconnect();
    }
}

/// Publishes `payloads` to `topic` with QoS 1 and returns once the broker has acknowledged all.
pub fn publish_all(port: u16, topic: &str, payloads: impl IntoIterator<Item = Vec<u8>>) {
    let mut options = MqttOptions::new(
        format!("oort-test-pub-{}", std::process::id()),
        "127.0.0.1",
        port,
    );
    options.set_max_packet_size(16 << 20, 16 << 20);
    options.set_inflight(1000);
    let (client, mut connection) = Client::new(options, 1024);
    let payloads: Vec<Vec<u8>> = payloads.into_iter().collect();
    let total = payloads.len();
    if total == 0 {
        return;
    }
    let topic = topic.to_string();
    let publisher = std::thread::spawn(move || {
        for p in payloads {
            client
                .publish(topic.clone(), QoS::AtLeastOnce, false, p)
                .expect("publishing");
        }
        client
    });
    let mut acked = 0;
    let started = Instant::now();
    for event in connection.iter() {
        if let Ok(Event::Incoming(Packet::PubAck(_))) = event {
            acked += 1;
            if acked == total {
                break;
            }
        }
        if let Err(e) = event {
            panic!("publishing to the broker failed: {e}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "publishing took too long"
        );
    }
    let client = publisher.join().expect("the publisher thread");
    let _ = client.disconnect();
}
