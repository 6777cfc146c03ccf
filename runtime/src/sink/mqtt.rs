//! The built-in `mqtt` sink: publishes each message to a topic (fixed, or a template over the
//! message), with eKuiper's props.
//!
//! A batch counts as delivered only when the broker has acknowledged every message of it (QoS 1
//! and 2; QoS 0 once written). While the broker is away the sink waits for it to come back, up to
//! `deliveryTimeout`, and republishes what was not acknowledged: a broker restart slows the rule
//! down (back-pressure) instead of losing rows. Past the timeout the batch fails as `transient`
//! and the action's retries apply. Delivery is at least once: a message whose acknowledgement
//! was lost with the connection is sent again.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS};
use serde::Deserialize;
use serde_json::{Map, Value as Json};
use tokio::sync::{oneshot, watch};

use crate::host::CallFailure;
use crate::mqtt::{self, MqttSettings};
use crate::template::Template;

/// The sink's props (eKuiper's names).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Props {
    topic: String,
    #[serde(default)]
    retained: bool,
    server: Option<String>,
    username: Option<String>,
    password: Option<String>,
    #[serde(alias = "clientid")]
    client_id: Option<String>,
    qos: Option<u8>,
    protocol_version: Option<String>,
    certification_path: Option<String>,
    private_key_path: Option<String>,
    root_ca_path: Option<String>,
    insecure_skip_verify: Option<bool>,
    /// How long a batch waits for an absent broker (ms or a duration like `"30s"`).
    delivery_timeout: Option<Json>,
}

/// A checked `mqtt` action: how to make its connections.
#[derive(Debug, Clone)]
pub struct MqttSpec {
    settings: MqttSettings,
    topic: Topic,
    qos: QoS,
    retained: bool,
    delivery_timeout: Duration,
}

#[derive(Debug, Clone)]
enum Topic {
    Fixed(String),
    Template(Arc<Template>),
}

impl MqttSpec {
    /// Checks the props (without connecting).
    pub fn parse(props: &Map<String, Json>) -> Result<Self, String> {
        let p: Props =
            serde_json::from_value(Json::Object(props.clone())).map_err(|e| e.to_string())?;
        if p.topic.is_empty() {
            return Err("`topic` must not be empty".into());
        }
        let topic = if p.topic.contains("{{") {
            Topic::Template(Arc::new(
                Template::parse(&p.topic).map_err(|e| format!("`topic`: {e}"))?,
            ))
        } else {
            if p.topic.contains(['+', '#']) {
                return Err(format!(
                    "`topic` {:?}: wildcards cannot be published to",
                    p.topic
                ));
            }
            Topic::Fixed(p.topic)
        };
        let delivery_timeout = match &p.delivery_timeout {
            None => Duration::from_secs(60),
            Some(Json::Number(n)) => Duration::from_millis(n.as_u64().unwrap_or(0)),
            Some(Json::String(s)) => Duration::from_millis(
                crate::rule::parse_duration_ms(s)
                    .ok_or_else(|| format!("`deliveryTimeout` {s:?} is not a duration"))?,
            ),
            Some(other) => return Err(format!("`deliveryTimeout` {other} is not a duration")),
        };
        let settings = MqttSettings {
            server: p.server,
            username: p.username,
            password: p.password,
            client_id: p.client_id,
            qos: p.qos,
            protocol_version: p.protocol_version,
            certification_path: p.certification_path,
            private_key_path: p.private_key_path,
            root_ca_path: p.root_ca_path,
            insecure_skip_verify: p.insecure_skip_verify,
            other: Default::default(),
        };
        let qos = settings.qos(1)?;
        settings.options("check", Path::new("."))?;
        Ok(Self {
            settings,
            topic,
            qos,
            retained: p.retained,
            delivery_timeout,
        })
    }

    /// Connects one instance (the connection is made in the background; `collect` waits for it).
    pub fn start(&self, what: &str, base_dir: &Path) -> Result<MqttSink, CallFailure> {
        let options = self
            .settings
            .options(&mqtt::client_id(what), base_dir)
            .map_err(CallFailure::InvalidConfig)?;
        let (client, events) = AsyncClient::new(options, 1024);
        let shared = Arc::new(Shared {
            waiters: Mutex::new(Waiters::default()),
            state: watch::channel(State::Connecting(String::new())).0,
        });
        let server = self
            .settings
            .server
            .clone()
            .unwrap_or_else(|| mqtt::DEFAULT_SERVER.into());
        let task = tokio::spawn(drive(events, Arc::clone(&shared), server.clone()));
        Ok(MqttSink {
            spec: self.clone(),
            client,
            shared,
            task,
            server,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Connecting(String),
    Connected,
}

/// Publishes waiting for their acknowledgement: in request order until the event loop gives
/// them a packet id, then by id.
#[derive(Default)]
struct Waiters {
    queued: VecDeque<oneshot::Sender<()>>,
    by_id: HashMap<u16, oneshot::Sender<()>>,
}

struct Shared {
    waiters: Mutex<Waiters>,
    state: watch::Sender<State>,
}

/// Runs the connection: reconnects with backoff, and resolves acknowledgements. A lost
/// connection fails every unacknowledged publish (their senders drop), so `collect` sends them
/// again on the next connection.
async fn drive(mut events: rumqttc::EventLoop, shared: Arc<Shared>, server: String) {
    let mut failures = 0u32;
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                failures = 0;
                tracing::debug!(%server, "mqtt sink connected");
                shared.state.send_replace(State::Connected);
            }
            Ok(Event::Outgoing(Outgoing::Publish(id))) => {
                if let Ok(mut w) = shared.waiters.lock() {
                    if id == 0 {
                        // QoS 0: done once written.
                        if let Some(tx) = w.queued.pop_front() {
                            let _ = tx.send(());
                        }
                    } else if !w.by_id.contains_key(&id)
                        && let Some(tx) = w.queued.pop_front()
                    {
                        w.by_id.insert(id, tx);
                    }
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => complete(&shared, ack.pkid),
            Ok(Event::Incoming(Packet::PubComp(ack))) => complete(&shared, ack.pkid),
            Ok(Event::Incoming(Packet::Disconnect)) | Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                lost(&shared, "disconnected".into());
            }
            Ok(_) => {}
            Err(rumqttc::ConnectionError::RequestsDone) => {
                lost(&shared, "closed".into());
                return;
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(%server, "mqtt sink: connection failed ({e}); retrying");
                }
                lost(&shared, e.to_string());
                tokio::time::sleep(mqtt::backoff(failures)).await;
            }
        }
    }
}

fn complete(shared: &Shared, id: u16) {
    if let Ok(mut w) = shared.waiters.lock()
        && let Some(tx) = w.by_id.remove(&id)
    {
        let _ = tx.send(());
    }
}

fn lost(shared: &Shared, why: String) {
    if let Ok(mut w) = shared.waiters.lock() {
        w.queued.clear();
        w.by_id.clear();
    }
    shared.state.send_replace(State::Connecting(why));
}

/// One instance of an `mqtt` action: its own connection.
pub struct MqttSink {
    spec: MqttSpec,
    client: AsyncClient,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
    server: String,
}

impl std::fmt::Debug for MqttSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSink")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl MqttSink {
    fn topic(&self, payload: &[u8]) -> Result<String, CallFailure> {
        match &self.spec.topic {
            Topic::Fixed(t) => Ok(t.clone()),
            Topic::Template(t) => {
                let value = crate::json::parse_value(payload).map_err(|e| {
                    CallFailure::Rejected(format!("the topic template needs a JSON message: {e}"))
                })?;
                // A list (a window result) gives its first row to the template.
                let dot = match &value {
                    crate::value::Value::Array(items) if !items.is_empty() => items[0].clone(),
                    _ => value,
                };
                let topic = t
                    .render_to_string(&dot)
                    .map_err(|e| CallFailure::Rejected(format!("topic template: {e}")))?;
                if topic.is_empty() || topic.contains(['+', '#']) {
                    return Err(CallFailure::Rejected(format!(
                        "topic template gave {topic:?}, which cannot be published to"
                    )));
                }
                Ok(topic)
            }
        }
    }

    /// Publishes every payload and waits until the broker has them all.
    pub async fn collect<'a>(
        &mut self,
        payloads: impl Iterator<Item = &'a [u8]>,
    ) -> Result<(), CallFailure> {
        let mut todo: Vec<(String, &[u8])> = Vec::new();
        for p in payloads {
            todo.push((self.topic(p)?, p));
        }
        let deadline = tokio::time::Instant::now() + self.spec.delivery_timeout;
        let mut state = self.shared.state.subscribe();
        while !todo.is_empty() {
            // Wait for a connection.
            let connected =
                tokio::time::timeout_at(deadline, state.wait_for(|s| *s == State::Connected))
                    .await
                    .map(|r| r.is_ok());
            match connected {
                Ok(true) => {}
                Ok(false) => {
                    return Err(CallFailure::Transient("the connection ended".into()));
                }
                Err(_) => {
                    let why = match &*state.borrow() {
                        State::Connecting(why) => why.clone(),
                        State::Connected => String::new(),
                    };
                    return Err(CallFailure::Transient(format!(
                        "broker {} unreachable for {:?} ({why}); {} messages not delivered",
                        self.server,
                        self.spec.delivery_timeout,
                        todo.len()
                    )));
                }
            }
            let mut acks = Vec::with_capacity(todo.len());
            for (topic, payload) in &todo {
                let (tx, rx) = oneshot::channel();
                let mut tx = Some(tx);
                // The waiter is queued in the same order the request enters the event loop.
                loop {
                    let sent = {
                        let mut w = self
                            .shared
                            .waiters
                            .lock()
                            .map_err(|_| CallFailure::Transient("poisoned".into()))?;
                        match self.client.try_publish(
                            topic.clone(),
                            self.spec.qos,
                            self.spec.retained,
                            payload.to_vec(),
                        ) {
                            Ok(()) => {
                                w.queued.extend(tx.take());
                                true
                            }
                            Err(_) => false,
                        }
                    };
                    if sent {
                        break;
                    }
                    // The request queue is full: let the event loop drain it.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    if tokio::time::Instant::now() >= deadline {
                        return Err(CallFailure::Transient(format!(
                            "broker {} did not take the messages within {:?}",
                            self.server, self.spec.delivery_timeout
                        )));
                    }
                }
                acks.push(rx);
            }
            // Wait for every acknowledgement; those lost with the connection go again.
            let mut again = Vec::new();
            for ((topic, payload), rx) in todo.drain(..).zip(acks) {
                match tokio::time::timeout_at(deadline, rx).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => again.push((topic, payload)),
                    Err(_) => {
                        return Err(CallFailure::Transient(format!(
                            "broker {} did not acknowledge within {:?}",
                            self.server, self.spec.delivery_timeout
                        )));
                    }
                }
            }
            todo = again;
        }
        Ok(())
    }

    /// Disconnects cleanly.
    pub async fn close(&mut self) {
        let _ = self.client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.task).await;
        self.task.abort();
    }
}

impl Drop for MqttSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}
