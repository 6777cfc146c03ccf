//! MQTT connections, shared by the `mqtt` source and the built-in `mqtt` sink: broker settings
//! (from eKuiper's source configuration file and `CONF_KEY`, or from sink props), the server
//! URL, TLS, and the client options handed to rumqttc.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{MqttOptions, QoS, TlsConfiguration, Transport};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::de::IgnoredAny;

mod client;

use crate::source::conf_file::{ConfFile, Section};
pub use client::{Ack, Client, Ev, Events};
use serde::Deserialize;

/// The broker when nothing names one (eKuiper's default).
pub const DEFAULT_SERVER: &str = "tcp://127.0.0.1:1883";

/// The largest MQTT packet a client of this process sends or accepts.
pub const MAX_PACKET_SIZE: usize = 16 * 1024 * 1024;

/// The longest topic MQTT can carry: its length is written as a 16-bit number.
pub const MAX_TOPIC_LEN: usize = u16::MAX as usize;

/// What a PUBLISH packet adds to its topic and payload, at most: the fixed header (5 bytes), the
/// topic's length (2), the packet id (2) and, in MQTT 5, the properties' length (4).
const PUBLISH_OVERHEAD: usize = 13;

/// Connection settings, with eKuiper's names. Every field is optional: a named configuration
/// overrides `default`, which overrides the built-in defaults.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MqttSettings {
    /// `tcp://host:port` (also `mqtt://`; `ssl://`, `tls://`, `mqtts://` for TLS).
    pub server: Option<String>,
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Client id (eKuiper spells it `clientid` in source files, `clientId` in sink props).
    #[serde(alias = "clientid")]
    pub client_id: Option<String>,
    /// QoS of the subscription or of published messages: 0, 1 or 2.
    pub qos: Option<u8>,
    /// `3.1.1` (or `4`, the default) or `5`.
    pub protocol_version: Option<String>,
    /// Client certificate (PEM) for TLS client authentication.
    pub certification_path: Option<String>,
    /// Client private key (PEM).
    pub private_key_path: Option<String>,
    /// CA certificates (PEM) to trust instead of the system's.
    pub root_ca_path: Option<String>,
    /// Skip server certificate checks: refused (see the README's security model).
    pub insecure_skip_verify: Option<bool>,
    /// eKuiper keys that do not apply here (`bufferLength`, `kubeedgeVersion`, ...): accepted.
    #[serde(flatten)]
    pub other: BTreeMap<String, IgnoredAny>,
}

impl MqttSettings {
    /// `self` with the fields `over` sets replaced.
    pub fn overlay(&self, over: &Self) -> Self {
        let pick = |a: &Option<String>, b: &Option<String>| b.clone().or_else(|| a.clone());
        Self {
            server: pick(&self.server, &over.server),
            username: pick(&self.username, &over.username),
            password: pick(&self.password, &over.password),
            client_id: pick(&self.client_id, &over.client_id),
            qos: over.qos.or(self.qos),
            protocol_version: pick(&self.protocol_version, &over.protocol_version),
            certification_path: pick(&self.certification_path, &over.certification_path),
            private_key_path: pick(&self.private_key_path, &over.private_key_path),
            root_ca_path: pick(&self.root_ca_path, &over.root_ca_path),
            insecure_skip_verify: over.insecure_skip_verify.or(self.insecure_skip_verify),
            other: BTreeMap::new(),
        }
    }

    /// The QoS, checked.
    pub fn qos(&self, default: u8) -> Result<QoS, String> {
        match self.qos.unwrap_or(default) {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Ok(QoS::ExactlyOnce),
            n => Err(format!("`qos` must be 0, 1 or 2, not {n}")),
        }
    }

    /// A client (not yet connected: polling its events connects) as `client_id` (used when
    /// none is configured), for MQTT 3.1.1 or 5 as `protocolVersion` says. Relative certificate
    /// paths start at `base_dir`.
    pub fn client(
        &self,
        client_id: &str,
        base_dir: &Path,
        capacity: usize,
    ) -> Result<(Client, Events), String> {
        self.session_client(client_id, base_dir, capacity, false)
    }

    /// [`client`](Self::client), with a persistent session when `persistent`: clean start off
    /// (MQTT 5: a session that never expires), and messages acknowledged by the caller
    /// ([`Client::try_ack`]) instead of on arrival, so the broker keeps and sends again what was
    /// not acknowledged when the client went away.
    pub fn session_client(
        &self,
        client_id: &str,
        base_dir: &Path,
        capacity: usize,
        persistent: bool,
    ) -> Result<(Client, Events), String> {
        let v5 = match self.protocol_version.as_deref() {
            None | Some("3.1.1") | Some("4") => false,
            Some("5") | Some("5.0") => true,
            Some(v) => {
                return Err(format!(
                    "`protocolVersion` {v:?} is not supported: use \"3.1.1\" or \"5\""
                ));
            }
        };
        if self.insecure_skip_verify == Some(true) {
            return Err(
                "`insecureSkipVerify` is refused: give the broker's CA with `rootCaPath` instead"
                    .into(),
            );
        }
        let server = self.server.as_deref().unwrap_or(DEFAULT_SERVER);
        let url = ServerUrl::parse(server)?;
        let id = self.client_id.as_deref().unwrap_or(client_id);
        let transport = if url.tls {
            Transport::Tls(self.tls(base_dir)?)
        } else if self.root_ca_path.is_some() || self.certification_path.is_some() {
            return Err(format!(
                "TLS files are set but the server {server:?} is not `ssl://`, `tls://` or `mqtts://`"
            ));
        } else {
            Transport::Tcp
        };
        let credentials = self
            .username
            .as_ref()
            .map(|u| (u.clone(), self.password.clone().unwrap_or_default()));
        if v5 {
            let mut options = rumqttc::v5::MqttOptions::new(id, url.host.clone(), url.port);
            options.set_keep_alive(Duration::from_secs(30));
            options.set_clean_start(!persistent);
            options.set_manual_acks(persistent);
            if persistent {
                options.set_session_expiry_interval(Some(u32::MAX));
            }
            options.set_max_packet_size(Some(MAX_PACKET_SIZE as u32));
            options.set_request_channel_capacity(capacity);
            options.set_transport(transport);
            if let Some((user, password)) = credentials {
                options.set_credentials(user, password);
            }
            let (client, events) = rumqttc::v5::AsyncClient::new(options, capacity);
            Ok((Client::V5(client), Events::V5(Box::new(events))))
        } else {
            let mut options = MqttOptions::new(id, url.host.clone(), url.port);
            options.set_keep_alive(Duration::from_secs(30));
            options.set_clean_session(!persistent);
            options.set_manual_acks(persistent);
            options.set_max_packet_size(MAX_PACKET_SIZE, MAX_PACKET_SIZE);
            options.set_request_channel_capacity(capacity);
            options.set_transport(transport);
            if let Some((user, password)) = credentials {
                options.set_credentials(user, password);
            }
            let (client, events) = rumqttc::AsyncClient::new(options, capacity);
            Ok((Client::V4(client), Events::V4(Box::new(events))))
        }
    }

    /// Checks the settings without connecting.
    pub fn check(&self, base_dir: &Path) -> Result<(), String> {
        self.client("check", base_dir, 1).map(drop)
    }

    fn tls(&self, base_dir: &Path) -> Result<TlsConfiguration, String> {
        let read = |p: &str| -> Result<Vec<u8>, String> {
            let path = base_dir.join(p);
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        let mut roots = rustls::RootCertStore::empty();
        match &self.root_ca_path {
            Some(p) => {
                let pem = read(p)?;
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| format!("{p}: not a PEM certificate: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("{p}: unusable certificate: {e}"))?;
                }
            }
            None => {
                let found = system_ca_certificates();
                for cert in found {
                    let _ = roots.add(cert);
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots);
        let config = match (&self.certification_path, &self.private_key_path) {
            (Some(cert), Some(key)) => {
                let certs = CertificateDer::pem_slice_iter(&read(cert)?)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("{cert}: not a PEM certificate: {e}"))?;
                let key_der = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| match e {
                    pem::Error::NoItemsFound => format!("{key}: no private key in it"),
                    e => format!("{key}: not a PEM key: {e}"),
                })?;
                builder
                    .with_client_auth_cert(certs, key_der)
                    .map_err(|e| format!("TLS client certificate: {e}"))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(
                    "`certificationPath` and `privateKeyPath` go together (client authentication)"
                        .into(),
                );
            }
        };
        Ok(TlsConfiguration::Rustls(Arc::new(config)))
    }
}

/// The system's CA certificates, from the usual Debian/Red Hat bundle paths, or from the file
/// `SSL_CERT_FILE` names instead (OpenSSL's variable), so a private CA can be trusted.
pub fn system_ca_certificates() -> Vec<CertificateDer<'static>> {
    if let Some(path) = std::env::var_os("SSL_CERT_FILE").filter(|p| !p.is_empty()) {
        return match std::fs::read(&path) {
            Ok(pem) => CertificateDer::pem_slice_iter(&pem)
                .filter_map(Result::ok)
                .collect(),
            Err(e) => {
                tracing::warn!(
                    "SSL_CERT_FILE {}: cannot read: {e}; no CA is trusted",
                    Path::new(&path).display()
                );
                Vec::new()
            }
        };
    }
    for path in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ] {
        if let Ok(pem) = std::fs::read(path) {
            return CertificateDer::pem_slice_iter(&pem)
                .filter_map(Result::ok)
                .collect();
        }
    }
    Vec::new()
}

/// A broker address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Whether the connection uses TLS.
    pub tls: bool,
}

impl ServerUrl {
    /// Parses `scheme://host[:port]`.
    pub fn parse(server: &str) -> Result<Self, String> {
        let (scheme, rest) = server
            .split_once("://")
            .ok_or_else(|| format!("server {server:?} must look like tcp://host:port"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "tcp" | "mqtt" => false,
            "ssl" | "tls" | "mqtts" => true,
            other => {
                return Err(format!(
                    "server {server:?}: scheme {other:?} is not supported (tcp, mqtt, ssl, tls, mqtts)"
                ));
            }
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("server {server:?}: bad port {p:?}"))?,
            ),
            _ => (rest, if tls { 8883 } else { 1883 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("server {server:?} has no host"));
        }
        Ok(Self {
            host: host.to_string(),
            port,
            tls,
        })
    }
}

/// eKuiper's MQTT source configuration file: `default` and named sections (`CONF_KEY`).
pub type MqttConf = ConfFile<MqttSettings>;

impl Section for MqttSettings {
    const OPTION: &'static str = "--mqtt-conf";

    fn laid_under(&self, over: &Self) -> Self {
        self.overlay(over)
    }
}

/// A message to publish: its topic, its payload and its MQTT 5 user properties.
type Outgoing<'a> = (String, &'a [u8], Vec<(String, String)>);

/// The MQTT 5 user property holding the number of the batch a published message was in.
pub const SEQUENCE_PROPERTY: &str = "oort-sequence";

/// The MQTT 5 user property holding a published message's place in its batch (from 0).
pub const INDEX_PROPERTY: &str = "oort-index";

/// A client id unique to this process: `oort-<what>-<pid>-<random>`.
pub fn client_id(what: &str) -> String {
    let clean: String = what
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    format!(
        "oort-{clean}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// The client id of a rule's persistent MQTT session on `stream`: `oort-<rule>-<stream>`, the
/// same on every run so that the broker hands the session back. MQTT 3.1.1 brokers need not
/// accept ids over 23 bytes; mosquitto and EMQX do (set `clientid` for one that does not).
pub fn session_client_id(rule: &str, stream: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(60)
            .collect()
    };
    format!("oort-{}-{}", clean(rule), clean(stream))
}

/// How long to wait before reconnecting after `failures` failed attempts in a row.
pub fn backoff(failures: u32) -> Duration {
    RECONNECT.delay(failures.saturating_add(1))
}

/// Reconnect waits: 200 ms after the first failure, doubling up to 3 s, jittered.
const RECONNECT: crate::backoff::Backoff =
    crate::backoff::Backoff::new(Duration::from_millis(100), Duration::from_secs(3));

/// Whether `filter` is a valid MQTT topic filter (`+` and `#` only as whole levels, `#` last).
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, level)| match *level {
        "#" => i == levels.len() - 1,
        "+" => true,
        l => !l.contains(['+', '#']),
    })
}

/// Whether `topic` (no wildcards) matches `filter`.
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Why a message cannot be published, checked before it is queued: sent, it would break the
/// session (a topic over 65,535 bytes has its length cut to 16 bits, and the broker reads
/// another topic; a packet over the limit is an error of the connection; brokers close the
/// session on U+0000), failing every message of everyone sharing the connection.
pub fn check_publish(topic: &str, payload_len: usize) -> Result<(), String> {
    if topic.is_empty() {
        return Err("the topic is empty".into());
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(format!(
            "the topic is {} bytes long; MQTT allows at most {MAX_TOPIC_LEN}",
            topic.len()
        ));
    }
    if let Some((at, c)) = topic.char_indices().find(|(_, c)| c.is_control()) {
        return Err(format!(
            "the topic holds the control character U+{:04X} at byte {at}",
            u32::from(c)
        ));
    }
    if topic.contains(['+', '#']) {
        return Err("a topic has no wildcards".into());
    }
    let size = topic.len() + payload_len + PUBLISH_OVERHEAD;
    if size > MAX_PACKET_SIZE {
        return Err(format!(
            "a {payload_len}-byte payload makes a {size}-byte packet; the limit is {MAX_PACKET_SIZE}"
        ));
    }
    Ok(())
}

/// Why a publish did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The broker could not be reached, or did not acknowledge, in time.
    #[error("{0}")]
    Unavailable(String),
    /// A message cannot be published (see [`check_publish`]): nothing was sent.
    #[error("cannot publish: {0}")]
    Refused(String),
    /// The broker refused a message it was sent (an MQTT 5 reason code): it will refuse it
    /// again, so the batch is rejected (messages before it in the batch may have gone).
    #[error("{0}")]
    RefusedByBroker(String),
}

/// Who waits for one publish's answer: `Ok` once acknowledged, the broker's reason when it
/// refused the message; dropped when the session is lost (the message goes again).
type Waiter = tokio::sync::oneshot::Sender<Result<(), String>>;

#[derive(Debug, Clone, PartialEq)]
enum State {
    Connecting(String),
    Connected,
    Closed,
}

/// The current session's client, and the publishes waiting for their acknowledgement: in
/// request order until the event loop gives them a packet id, then by id.
#[derive(Default)]
struct Session {
    client: Option<Client>,
    queued: std::collections::VecDeque<Waiter>,
    by_id: std::collections::HashMap<u16, Waiter>,
}

struct Shared {
    session: std::sync::Mutex<Session>,
    state: tokio::sync::watch::Sender<State>,
}

/// One connection to a broker for publishing. Every session is a fresh client: when a
/// connection is lost, the publishes not yet acknowledged fail (and [`publish`](Self::publish)
/// sends them again on the next session), so no acknowledgement of an old session can be taken
/// for a new message.
pub struct Connection {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
    /// The broker URL.
    pub server: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Starts connecting (in the background) with `settings`.
    pub fn connect(
        settings: &MqttSettings,
        client_id: &str,
        base_dir: &Path,
    ) -> Result<Self, String> {
        settings.check(base_dir)?;
        let shared = Arc::new(Shared {
            session: std::sync::Mutex::new(Session::default()),
            state: tokio::sync::watch::channel(State::Connecting(String::new())).0,
        });
        let server = settings
            .server
            .clone()
            .unwrap_or_else(|| DEFAULT_SERVER.into());
        let session = NewSession {
            settings: settings.clone(),
            client_id: client_id.to_string(),
            base_dir: base_dir.to_path_buf(),
        };
        let task = tokio::spawn(drive(session, Arc::clone(&shared), server.clone()));
        Ok(Self {
            shared,
            task,
            server,
        })
    }

    /// Publishes every `(topic, payload)` and waits until the broker has them all. While the
    /// broker is away it waits for it, until `timeout`.
    pub async fn publish(
        &self,
        todo: Vec<(String, &[u8])>,
        qos: QoS,
        retain: bool,
        timeout: Duration,
    ) -> Result<(), PublishError> {
        self.publish_numbered(todo, None, qos, retain, timeout)
            .await
    }

    /// [`publish`](Self::publish), each message of batch `sequence` (when given) carrying the
    /// MQTT 5 user properties `oort-sequence` (the batch's number) and `oort-index` (its place
    /// in the batch), by which a consumer recognises a message published again.
    pub async fn publish_numbered(
        &self,
        todo: Vec<(String, &[u8])>,
        sequence: Option<u64>,
        qos: QoS,
        retain: bool,
        timeout: Duration,
    ) -> Result<(), PublishError> {
        let mut todo: Vec<Outgoing<'_>> = todo
            .into_iter()
            .enumerate()
            .map(|(index, (topic, payload))| {
                let user = sequence.map_or_else(Vec::new, |sequence| {
                    vec![
                        (SEQUENCE_PROPERTY.to_string(), sequence.to_string()),
                        (INDEX_PROPERTY.to_string(), index.to_string()),
                    ]
                });
                (topic, payload, user)
            })
            .collect();
        // One bad message fails the call before anything is queued, not the shared session.
        for (topic, payload, _) in &todo {
            check_publish(topic, payload.len()).map_err(PublishError::Refused)?;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut state = self.shared.state.subscribe();
        while !todo.is_empty() {
            let connected = tokio::time::timeout_at(
                deadline,
                state.wait_for(|s| matches!(s, State::Connected | State::Closed)),
            )
            .await
            .map(|r| r.is_ok_and(|s| *s == State::Connected));
            match connected {
                Ok(true) => {}
                Ok(false) => {
                    return Err(PublishError::Unavailable("the connection is closed".into()));
                }
                Err(_) => {
                    let why = match &*state.borrow() {
                        State::Connecting(why) => why.clone(),
                        _ => String::new(),
                    };
                    return Err(PublishError::Unavailable(format!(
                        "broker {} unreachable for {timeout:?} ({why}); {} messages not delivered",
                        self.server,
                        todo.len()
                    )));
                }
            }
            let mut acks = Vec::with_capacity(todo.len());
            for (topic, payload, user) in &todo {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let mut tx = Some(tx);
                loop {
                    let sent = {
                        let mut session = self
                            .shared
                            .session
                            .lock()
                            .map_err(|_| PublishError::Unavailable("poisoned".into()))?;
                        // The waiter is queued in the order the request enters the event loop,
                        // on the session it is sent with. No session: the loop below fails it.
                        let ok = match &session.client {
                            Some(client) => {
                                client.try_publish(topic, qos, retain, payload.to_vec(), user)
                            }
                            None => true,
                        };
                        if ok && session.client.is_some() {
                            session.queued.extend(tx.take());
                        }
                        ok
                    };
                    if sent {
                        break;
                    }
                    // The request queue is full: let the event loop drain it.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    if tokio::time::Instant::now() >= deadline {
                        return Err(PublishError::Unavailable(format!(
                            "broker {} did not take the messages within {timeout:?}",
                            self.server
                        )));
                    }
                }
                acks.push(rx);
            }
            // Wait for every acknowledgement; those lost with the session go again.
            let mut again = Vec::new();
            let mut refused = None;
            for ((topic, payload, user), rx) in todo.drain(..).zip(acks) {
                match tokio::time::timeout_at(deadline, rx).await {
                    Ok(Ok(Ok(()))) => {}
                    Ok(Ok(Err(reason))) => {
                        refused.get_or_insert(format!(
                            "broker {} refused the message on `{topic}`: {reason}",
                            self.server
                        ));
                    }
                    Ok(Err(_)) => again.push((topic, payload, user)),
                    Err(_) => {
                        return Err(PublishError::Unavailable(format!(
                            "broker {} did not acknowledge within {timeout:?}",
                            self.server
                        )));
                    }
                }
            }
            if let Some(why) = refused {
                return Err(PublishError::RefusedByBroker(why));
            }
            todo = again;
        }
        Ok(())
    }

    /// Disconnects cleanly (after what was acknowledged) and stops reconnecting.
    pub async fn close(&mut self) {
        self.shared.state.send_replace(State::Closed);
        let client = self
            .shared
            .session
            .lock()
            .ok()
            .and_then(|mut s| s.client.take());
        if let Some(client) = client {
            let _ = client.disconnect().await;
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.task).await;
        }
        self.task.abort();
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a new session is made from.
struct NewSession {
    settings: MqttSettings,
    client_id: String,
    base_dir: PathBuf,
}

/// Runs the connection: one fresh client per session, reconnecting with backoff, and resolves
/// acknowledgements. A lost session fails every unacknowledged publish (their senders drop).
async fn drive(new: NewSession, shared: Arc<Shared>, server: String) {
    let mut failures = 0u32;
    loop {
        if *shared.state.borrow() == State::Closed {
            return;
        }
        let (client, mut events) = match new.settings.client(&new.client_id, &new.base_dir, 1024) {
            Ok(pair) => pair,
            Err(why) => {
                lost(&shared, why);
                return;
            }
        };
        if let Ok(mut session) = shared.session.lock() {
            session.client = Some(client);
        }
        let why = loop {
            match events.poll().await {
                Ok(Ev::ConnAck { .. }) => {
                    failures = 0;
                    tracing::debug!(%server, "mqtt: connected");
                    shared.state.send_if_modified(|s| {
                        let connect = matches!(s, State::Connecting(_));
                        if connect {
                            *s = State::Connected;
                        }
                        connect
                    });
                }
                Ok(Ev::Sent(id)) => {
                    if let Ok(mut session) = shared.session.lock() {
                        if id == 0 {
                            // QoS 0: done once written.
                            if let Some(tx) = session.queued.pop_front() {
                                let _ = tx.send(Ok(()));
                            }
                        } else if let Some(tx) = session.queued.pop_front() {
                            session.by_id.insert(id, tx);
                        }
                    }
                }
                Ok(Ev::Acked(id)) => complete(&shared, id, Ok(())),
                Ok(Ev::Refused { id, reason }) => {
                    complete(&shared, id, Err(reason));
                }
                Ok(Ev::Disconnected) => break "disconnected".to_string(),
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        lost(&shared, why.clone());
        if *shared.state.borrow() == State::Closed {
            return;
        }
        failures += 1;
        if failures == 1 || failures.is_power_of_two() {
            tracing::warn!(%server, "mqtt sink: connection failed ({why}); retrying");
        }
        tokio::time::sleep(backoff(failures)).await;
    }
}

/// Answers the waiter of the publish with packet id `id`.
fn complete(shared: &Shared, id: u16, answer: Result<(), String>) {
    if let Ok(mut session) = shared.session.lock()
        && let Some(tx) = session.by_id.remove(&id)
    {
        let _ = tx.send(answer);
    }
}

/// The session ended: its waiters fail (their messages go again), and its client is dropped
/// with every request it still held.
fn lost(shared: &Shared, why: String) {
    if let Ok(mut session) = shared.session.lock() {
        session.client = None;
        session.queued.clear();
        session.by_id.clear();
    }
    shared.state.send_if_modified(|s| {
        if *s == State::Closed {
            false
        } else {
            *s = State::Connecting(why);
            true
        }
    });
}

/// Connections shared by every sink instance of the process that publishes through the host,
/// one per broker URL, kept while some instance uses them.
static POOL: std::sync::LazyLock<std::sync::Mutex<BTreeMap<String, std::sync::Weak<Connection>>>> =
    std::sync::LazyLock::new(Default::default);

/// The pooled connection to `server` (made on first use).
pub fn pooled(server: &str) -> Result<Arc<Connection>, String> {
    let mut pool = POOL
        .lock()
        .map_err(|_| "the MQTT pool is poisoned".to_string())?;
    if let Some(conn) = pool.get(server).and_then(std::sync::Weak::upgrade) {
        return Ok(conn);
    }
    let settings = MqttSettings {
        server: Some(server.to_string()),
        ..MqttSettings::default()
    };
    let conn = Arc::new(Connection::connect(
        &settings,
        &client_id("pool"),
        Path::new("."),
    )?);
    pool.retain(|_, weak| weak.strong_count() > 0);
    pool.insert(server.to_string(), Arc::downgrade(&conn));
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_filters() {
        assert!(valid_filter("a/+/c") && valid_filter("a/#") && valid_filter("#"));
        assert!(!valid_filter("a/#/c") && !valid_filter("a+/b") && !valid_filter(""));
        assert!(topic_matches("a/+/c", "a/b/c") && !topic_matches("a/+/c", "a/b/d"));
        assert!(topic_matches("a/#", "a") && topic_matches("a/#", "a/b/c"));
        assert!(!topic_matches("a/b", "a/b/c") && !topic_matches("a/b/c", "a/b"));
        assert!(topic_matches("granted/x", "granted/x") && !topic_matches("granted/x", "secret/x"));
    }

    #[test]
    fn only_topics_and_payloads_a_session_survives_are_published() {
        assert!(check_publish("plant/k1/alerts", 10).is_ok());
        let long = format!("plant/cmd{}/alerts", "x".repeat(65_529));
        assert_eq!(long.len(), 65_545);
        for (topic, payload, why) in [
            ("", 1, "empty"),
            (long.as_str(), 1, "65545 bytes long"),
            ("plant/a\0b/alerts", 1, "U+0000 at byte 7"),
            ("plant/a\rb/alerts", 1, "U+000D"),
            ("plant/+/alerts", 1, "wildcards"),
            ("plant/k1/alerts", 17_000_000, "the limit is 16777216"),
        ] {
            let err = check_publish(topic, payload).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        let most = MAX_PACKET_SIZE - PUBLISH_OVERHEAD - 3;
        assert!(check_publish("a/b", most).is_ok());
        assert!(check_publish("a/b", most + 1).is_err());
    }

    #[test]
    fn server_urls() {
        let u = ServerUrl::parse("tcp://127.0.0.1:1883").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.tls), ("127.0.0.1", 1883, false));
        let u = ServerUrl::parse("ssl://broker.example").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.tls),
            ("broker.example", 8883, true)
        );
        let u = ServerUrl::parse("mqtt://[::1]:1884").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 1884));
        assert!(
            ServerUrl::parse("127.0.0.1:1883")
                .unwrap_err()
                .contains("tcp://")
        );
        assert!(ServerUrl::parse("ws://h:1").unwrap_err().contains("ws"));
        assert!(
            ServerUrl::parse("tcp://h:x")
                .unwrap_err()
                .contains("bad port")
        );
    }

    #[test]
    fn conf_keys_overlay_default() {
        let conf = MqttConf::parse(
            "default:\n  qos: 1\n  server: \"tcp://127.0.0.1:1883\"\n  bufferLength: 1024\n\
             demo_conf:\n  qos: 0\n  server: \"tcp://10.0.0.6:1883\"\n  username: u\n",
            Path::new("etc/mqtt_source.yaml"),
        )
        .unwrap();
        let d = conf.settings(None).unwrap();
        assert_eq!(
            (d.qos, d.server.as_deref()),
            (Some(1), Some("tcp://127.0.0.1:1883"))
        );
        let n = conf.settings(Some("demo_conf")).unwrap();
        assert_eq!(
            (n.qos, n.server.as_deref(), n.username.as_deref()),
            (Some(0), Some("tcp://10.0.0.6:1883"), Some("u"))
        );
        let e = conf.settings(Some("nope")).unwrap_err();
        assert!(e.contains("nope") && e.contains("demo_conf"), "{e}");
        assert!(
            MqttConf::default()
                .settings(Some("x"))
                .unwrap_err()
                .contains("--mqtt-conf")
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let s = MqttSettings {
            protocol_version: Some("3.1".into()),
            ..Default::default()
        };
        assert!(
            s.check(Path::new("."))
                .unwrap_err()
                .contains("protocolVersion")
        );
        let s = MqttSettings {
            qos: Some(3),
            ..Default::default()
        };
        assert!(s.qos(1).unwrap_err().contains("qos"));
        let s = MqttSettings {
            server: Some("tcp://h:1".into()),
            root_ca_path: Some("ca.pem".into()),
            ..Default::default()
        };
        assert!(s.check(Path::new(".")).unwrap_err().contains("TLS"));
    }
}
