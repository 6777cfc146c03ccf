//! The `oort:sink/mqtt` interface: publishing through the host's pooled broker connections, only
//! to the broker and topic filters the action grants. A message is checked before it is queued
//! (topic length and characters, packet size): one action's bad publish is rejected alone and
//! never breaks the connection the process's other sinks share.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasData, Linker};

use super::bindings::error_to_v0_1;
use super::bindings::oort::sink::mqtt::{self, Qos};
use super::bindings::oort::sink::types::SinkError;
use super::bindings::v0_1::oort::sink::{mqtt as v0_1, types as v0_1_types};
use super::grants::MqttGrant;
use super::guest_str::{cap_guest_string_at, capped};

/// How much of a refused topic an error message quotes.
const QUOTED_TOPIC: usize = 256;

/// How long one `mqtt.publish` waits for an absent broker before it fails as `transient`.
const MQTT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// The state of one instance's `mqtt` interface: what it may publish to, if anything.
#[derive(Default)]
pub struct MqttCtx {
    access: Option<MqttAccess>,
}

/// What an instance may publish to over MQTT: the pooled connection to its granted broker, and
/// the granted topic filters.
struct MqttAccess {
    conn: Arc<crate::mqtt::Connection>,
    topics: Vec<String>,
}

impl MqttCtx {
    /// The context for an action's MQTT grant: a connection to its broker from the process's
    /// pool; with no grant, every publish is rejected.
    pub fn new(grant: Option<&MqttGrant>) -> Result<Self, String> {
        let access = match grant {
            Some(grant) => Some(MqttAccess {
                conn: crate::mqtt::pooled(&grant.server)?,
                topics: grant.topics.clone(),
            }),
            None => None,
        };
        Ok(Self { access })
    }
}

impl MqttCtx {
    /// The access that lets this instance publish `payload_len` bytes to `topic`, or why it
    /// may not.
    fn granted(&self, topic: &str, payload_len: usize) -> Result<&MqttAccess, SinkError> {
        let Some(access) = &self.access else {
            return Err(SinkError::Rejected(
                "this sink has no MQTT grant: its manifest must name the props holding the broker and topics".into(),
            ));
        };
        crate::mqtt::check_publish(topic, payload_len).map_err(|why| {
            // The reason first: the guest's own error text is capped on its way back.
            SinkError::Rejected(format!(
                "cannot publish: {why} (topic {:?})",
                cap_guest_string_at(topic.to_owned(), QUOTED_TOPIC)
            ))
        })?;
        check_topic(&access.topics, topic)?;
        Ok(access)
    }
}

/// Whether a sink granted the topic filters `granted` may publish to `topic`.
fn check_topic(granted: &[String], topic: &str) -> Result<(), SinkError> {
    if topic.is_empty() || topic.contains(['+', '#']) {
        return Err(SinkError::Rejected(format!(
            "cannot publish to {topic:?}: a topic has no wildcards"
        )));
    }
    if !granted.iter().any(|f| crate::mqtt::topic_matches(f, topic)) {
        return Err(SinkError::Rejected(format!(
            "topic {:?} is not granted to this action (granted: {})",
            capped(topic),
            granted.join(", ")
        )));
    }
    Ok(())
}

impl mqtt::Host for MqttCtx {
    async fn publish(
        &mut self,
        topic: String,
        payload: Vec<u8>,
        qos: Qos,
        retain: bool,
    ) -> Result<(), SinkError> {
        let access = self.granted(&topic, payload.len())?;
        let qos = match qos {
            Qos::AtMostOnce => rumqttc::QoS::AtMostOnce,
            Qos::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
            Qos::ExactlyOnce => rumqttc::QoS::ExactlyOnce,
        };
        let conn = Arc::clone(&access.conn);
        conn.publish(vec![(topic, &payload)], qos, retain, MQTT_PUBLISH_TIMEOUT)
            .await
            .map_err(|e| match e {
                crate::mqtt::PublishError::Refused(_)
                | crate::mqtt::PublishError::RefusedByBroker(_) => {
                    SinkError::Rejected(e.to_string())
                }
                crate::mqtt::PublishError::Unavailable(_) => SinkError::Transient(e.to_string()),
            })
    }
}

impl v0_1::Host for MqttCtx {
    async fn publish(
        &mut self,
        topic: String,
        payload: Vec<u8>,
        qos: v0_1::Qos,
        retain: bool,
    ) -> Result<(), v0_1_types::SinkError> {
        let qos = match qos {
            v0_1::Qos::AtMostOnce => Qos::AtMostOnce,
            v0_1::Qos::AtLeastOnce => Qos::AtLeastOnce,
            v0_1::Qos::ExactlyOnce => Qos::ExactlyOnce,
        };
        mqtt::Host::publish(self, topic, payload, qos, retain)
            .await
            .map_err(error_to_v0_1)
    }
}

/// A store whose instances may publish over MQTT: gives the `mqtt` interface its context.
pub trait MqttView: Send {
    /// The instance's MQTT context.
    fn mqtt(&mut self) -> &mut MqttCtx;
}

/// The [`HasData`] of the `mqtt` interface: its bindings see only an [`MqttCtx`].
pub struct Mqtt;

impl HasData for Mqtt {
    type Data<'a> = &'a mut MqttCtx;
}

/// Links `oort:sink/mqtt`, at both versions.
pub fn add_to_linker<T: MqttView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    mqtt::add_to_linker::<T, Mqtt>(linker, T::mqtt)?;
    v0_1::add_to_linker::<T, Mqtt>(linker, T::mqtt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(result: Result<(), SinkError>) -> String {
        match result {
            Err(SinkError::Rejected(message)) => message,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn without_a_grant_every_topic_is_rejected() {
        let message = rejected(MqttCtx::default().granted("a/b", 1).map(|_| ()));
        assert!(message.contains("no MQTT grant"), "{message}");
    }

    #[test]
    fn only_granted_topics_without_wildcards_pass() {
        let granted = ["sensors/+/temp".to_string(), "alerts/#".to_string()];
        assert!(check_topic(&granted, "sensors/k1/temp").is_ok());
        assert!(check_topic(&granted, "alerts/fire/now").is_ok());
        for wild in ["sensors/+/temp", "alerts/#", ""] {
            let message = rejected(check_topic(&granted, wild));
            assert!(message.contains("a topic has no wildcards"), "{message}");
        }
        let message = rejected(check_topic(&granted, "sensors/k1/humidity"));
        assert!(
            message.contains("not granted to this action (granted: sensors/+/temp, alerts/#)"),
            "{message}"
        );
    }
}
