//! Publishing to an MQTT broker through the host: no sockets in the sink, and only to the
//! broker and topics the action grants (the sink's manifest names the props holding them:
//! `{"grants": {"mqtt": {"server": "server", "topics": "topics"}}}`).

use crate::__private::bindings::oort::sink::mqtt::{self as host, Qos as WitQos};
use crate::__private::bindings::oort::sink::types::SinkError as WitError;
use crate::SinkError;

/// Delivery guarantee of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Qos {
    /// Sent once, never acknowledged.
    AtMostOnce,
    /// Acknowledged by the broker; may arrive twice.
    #[default]
    AtLeastOnce,
    /// Acknowledged in two steps; arrives once.
    ExactlyOnce,
}

/// Publishes `payload` to `topic` and returns once the broker has it. A topic outside the
/// grant is [`SinkError::Rejected`]; a broker that cannot be reached in time is
/// [`SinkError::Transient`] (the host retries the batch).
pub fn publish(topic: &str, payload: &[u8], qos: Qos, retain: bool) -> Result<(), SinkError> {
    let qos = match qos {
        Qos::AtMostOnce => WitQos::AtMostOnce,
        Qos::AtLeastOnce => WitQos::AtLeastOnce,
        Qos::ExactlyOnce => WitQos::ExactlyOnce,
    };
    host::publish(topic, payload, qos, retain).map_err(|e| match e {
        WitError::InvalidConfig(m) => SinkError::InvalidConfig(m),
        WitError::Transient(m) => SinkError::Transient(m),
        WitError::Rejected(m) => SinkError::Rejected(m),
    })
}
