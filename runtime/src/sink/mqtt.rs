//! The built-in `mqtt` sink: publishes each message to a topic (fixed, or a template over the
//! message), with eKuiper's props.
//!
//! A batch counts as delivered only when the broker has acknowledged every message of it (QoS 1
//! and 2; QoS 0 once written). While the broker is away the sink waits for it to come back, up to
//! `deliveryTimeout`, and republishes what was not acknowledged: a broker restart slows the rule
//! down (back-pressure) instead of losing rows. Past the timeout the batch fails as `transient`
//! and the action's retries apply. Delivery is at least once: a message whose acknowledgement
//! was lost with the connection is sent again.
//!
//! With MQTT 5 (`protocolVersion` `"5"`) each message carries the user properties
//! `oort-sequence` (its batch's number) and `oort-index` (its place in the batch): a message
//! published again (a lost acknowledgement, a restart that replays rows) carries the same pair,
//! and under the rule's `qos: 2` the same rows get the same pair after a crash, so a consumer
//! that keeps the highest pair it has seen drops every duplicate. The broker cannot do that for
//! it: MQTT's QoS 2 removes duplicates within one session, not across a crash of the publisher.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::QoS;
use serde::Deserialize;
use serde_json::{Map, Value as Json};

use super::props::{COMMON_KEYS, decode};
use crate::host::CallFailure;
use crate::mqtt::{self, Connection, MqttSettings, PublishError};
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
        let p: Props = decode(props, COMMON_KEYS).map_err(|e| e.to_string())?;
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
        settings.check(Path::new("."))?;
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
        let conn = Connection::connect(&self.settings, &mqtt::client_id(what), base_dir)
            .map_err(CallFailure::InvalidConfig)?;
        Ok(MqttSink {
            spec: self.clone(),
            conn,
        })
    }
}

/// One instance of an `mqtt` action: its own connection.
pub struct MqttSink {
    spec: MqttSpec,
    conn: Connection,
}

impl std::fmt::Debug for MqttSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSink")
            .field("server", &self.conn.server)
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

    /// Publishes every payload of batch `sequence` and waits until the broker has them all.
    pub async fn collect<'a>(
        &mut self,
        payloads: impl Iterator<Item = &'a [u8]>,
        sequence: u64,
    ) -> Result<(), CallFailure> {
        let mut todo: Vec<(String, &[u8])> = Vec::new();
        for p in payloads {
            todo.push((self.topic(p)?, p));
        }
        self.conn
            .publish_numbered(
                todo,
                (sequence != 0).then_some(sequence),
                self.spec.qos,
                self.spec.retained,
                self.spec.delivery_timeout,
            )
            .await
            .map_err(|e| match e {
                // A message no broker would take goes to the dead letters, not round the retries.
                PublishError::Refused(_) | PublishError::RefusedByBroker(_) => {
                    CallFailure::Rejected(e.to_string())
                }
                PublishError::Unavailable(_) => CallFailure::Transient(e.to_string()),
            })
    }

    /// Disconnects cleanly.
    pub async fn close(&mut self) {
        self.conn.close().await;
    }
}
