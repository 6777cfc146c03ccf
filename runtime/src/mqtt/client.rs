//! One client API over MQTT 3.1.1 and MQTT 5 (rumqttc has a client for each): the source and
//! the sink use these few operations and events, whatever `protocolVersion` says.

use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::{
    Packet as Packet5, PubAckReason, PubRecReason, SubscribeReasonCode as Code5,
};
use rumqttc::{Outgoing, Packet, QoS, SubscribeReasonCode};

/// A client of either protocol version.
#[derive(Clone)]
pub enum Client {
    /// MQTT 3.1.1.
    V4(rumqttc::AsyncClient),
    /// MQTT 5.
    V5(rumqttc::v5::AsyncClient),
}

/// The event loop of either protocol version.
pub enum Events {
    /// MQTT 3.1.1.
    V4(Box<rumqttc::EventLoop>),
    /// MQTT 5.
    V5(Box<rumqttc::v5::EventLoop>),
}

/// What the event loop reports, reduced to what Oort acts on.
#[derive(Debug)]
pub enum Ev {
    /// A session started; `resumed` when the broker kept the previous one.
    ConnAck {
        /// Whether the broker kept the previous session.
        resumed: bool,
    },
    /// A subscription was answered.
    SubAck {
        /// Whether the broker refused it.
        refused: bool,
    },
    /// A message arrived.
    Message {
        /// Its topic.
        topic: String,
        /// Its payload.
        payload: Bytes,
        /// What acknowledges it (QoS 1 or 2; only needed with manual acknowledgements).
        ack: Option<Ack>,
        /// The QoS it was delivered with (0, 1 or 2).
        qos: u8,
        /// Its packet id (0 for QoS 0).
        id: u16,
    },
    /// A publish was written, with this packet id (0 for QoS 0).
    Sent(u16),
    /// An unsubscription was written, with this packet id.
    UnsubscribeSent(u16),
    /// The acknowledgement of a received message (PUBACK, or PUBREC for QoS 2) was written to
    /// the broker, with the message's packet id.
    AckSent(u16),
    /// The PUBCOMP ending a received QoS 2 message's exchange was written, with its packet id.
    CompSent(u16),
    /// The broker answered the unsubscription with this packet id.
    Unsubscribed(u16),
    /// The broker acknowledged the publish with this packet id (PUBACK, or PUBCOMP for QoS 2).
    Acked(u16),
    /// The broker refused the publish with this packet id (an MQTT 5 PUBACK or PUBREC with a
    /// failure reason code, e.g. not authorized or quota exceeded): it did not take it.
    Refused {
        /// The publish's packet id.
        id: u16,
        /// The reason code, as the broker gave it.
        reason: String,
    },
    /// The broker or the client ended the session.
    Disconnected,
    /// Anything else (pings, ...).
    Other,
}

/// What acknowledges a received QoS 1 or 2 message: the publish as rumqttc takes it, without
/// its topic and payload.
#[derive(Debug, Clone)]
pub enum Ack {
    /// MQTT 3.1.1.
    V4(Box<rumqttc::Publish>),
    /// MQTT 5.
    V5(Box<rumqttc::v5::mqttbytes::v5::Publish>),
}

fn qos5(qos: QoS) -> QoS5 {
    match qos {
        QoS::AtMostOnce => QoS5::AtMostOnce,
        QoS::AtLeastOnce => QoS5::AtLeastOnce,
        QoS::ExactlyOnce => QoS5::ExactlyOnce,
    }
}

impl Ack {
    /// The packet id of the message it acknowledges.
    pub fn id(&self) -> u16 {
        match self {
            Self::V4(p) => p.pkid,
            Self::V5(p) => p.pkid,
        }
    }

    /// Whether the message came with QoS 2 (its PUBREC is answered by a PUBREL, then PUBCOMP).
    pub fn exactly_once(&self) -> bool {
        match self {
            Self::V4(p) => p.qos == QoS::ExactlyOnce,
            Self::V5(p) => p.qos == QoS5::ExactlyOnce,
        }
    }
}

impl Client {
    /// `3.1.1` or `5`.
    pub fn protocol(&self) -> &'static str {
        match self {
            Self::V4(_) => "3.1.1",
            Self::V5(_) => "5",
        }
    }

    /// Queues a publish without waiting; false when the request queue is full. `user` are MQTT 5
    /// user properties (MQTT 3.1.1 has none: they are not sent).
    pub fn try_publish(
        &self,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: Vec<u8>,
        user: &[(String, String)],
    ) -> bool {
        match self {
            Self::V4(c) => c.try_publish(topic, qos, retain, payload).is_ok(),
            Self::V5(c) if user.is_empty() => {
                c.try_publish(topic, qos5(qos), retain, payload).is_ok()
            }
            Self::V5(c) => {
                let properties = rumqttc::v5::mqttbytes::v5::PublishProperties {
                    user_properties: user.to_vec(),
                    ..Default::default()
                };
                c.try_publish_with_properties(topic, qos5(qos), retain, payload, properties)
                    .is_ok()
            }
        }
    }

    /// Queues a subscription.
    pub fn try_subscribe(&self, filter: &str, qos: QoS) -> Result<(), String> {
        match self {
            Self::V4(c) => c.try_subscribe(filter, qos).map_err(|e| e.to_string()),
            Self::V5(c) => c
                .try_subscribe(filter, qos5(qos))
                .map_err(|e| e.to_string()),
        }
    }

    /// Queues an unsubscription without waiting; false when the request queue is full. Requests
    /// leave in the order they were queued (acknowledgements included).
    pub fn try_unsubscribe(&self, filter: &str) -> bool {
        match self {
            Self::V4(c) => c.try_unsubscribe(filter).is_ok(),
            Self::V5(c) => c.try_unsubscribe(filter).is_ok(),
        }
    }

    /// Queues the acknowledgement of a received message (PUBACK, or PUBREC for QoS 2) without
    /// waiting; false when the request queue is full.
    pub fn try_ack(&self, ack: &Ack) -> bool {
        match (self, ack) {
            (Self::V4(c), Ack::V4(p)) => c.try_ack(p).is_ok(),
            (Self::V5(c), Ack::V5(p)) => c.try_ack(p).is_ok(),
            // A message of another client: nothing of this session to acknowledge.
            _ => true,
        }
    }

    /// Queues a DISCONNECT without waiting (after every request queued before it); false when
    /// the request queue is full.
    pub fn try_disconnect(&self) -> bool {
        match self {
            Self::V4(c) => c.try_disconnect().is_ok(),
            Self::V5(c) => c.try_disconnect().is_ok(),
        }
    }

    /// Ends the session cleanly.
    pub async fn disconnect(&self) {
        let _ = match self {
            Self::V4(c) => c.disconnect().await.map_err(|e| e.to_string()),
            Self::V5(c) => c.disconnect().await.map_err(|e| e.to_string()),
        };
    }
}

impl Events {
    /// The next event; an error means the connection is gone (polling again reconnects).
    pub async fn poll(&mut self) -> Result<Ev, String> {
        match self {
            Self::V4(events) => {
                let event = events.poll().await.map_err(|e| e.to_string())?;
                Ok(match event {
                    rumqttc::Event::Incoming(Packet::ConnAck(ack)) => {
                        if ack.session_present {
                            owed_releases_v4(events);
                        }
                        Ev::ConnAck {
                            resumed: ack.session_present,
                        }
                    }
                    rumqttc::Event::Incoming(Packet::SubAck(ack)) => Ev::SubAck {
                        refused: ack
                            .return_codes
                            .iter()
                            .any(|c| matches!(c, SubscribeReasonCode::Failure)),
                    },
                    rumqttc::Event::Incoming(Packet::Publish(mut p)) => Ev::Message {
                        qos: p.qos as u8,
                        id: p.pkid,
                        // The acknowledgement keeps only the packet id and QoS.
                        topic: std::mem::take(&mut p.topic),
                        payload: std::mem::take(&mut p.payload),
                        ack: (p.qos != QoS::AtMostOnce).then(|| Ack::V4(Box::new(p))),
                    },
                    rumqttc::Event::Incoming(Packet::PubAck(ack)) => Ev::Acked(ack.pkid),
                    rumqttc::Event::Incoming(Packet::PubComp(ack)) => Ev::Acked(ack.pkid),
                    rumqttc::Event::Incoming(Packet::Disconnect)
                    | rumqttc::Event::Outgoing(Outgoing::Disconnect) => Ev::Disconnected,
                    rumqttc::Event::Outgoing(Outgoing::Publish(id)) => Ev::Sent(id),
                    rumqttc::Event::Outgoing(Outgoing::Unsubscribe(id)) => Ev::UnsubscribeSent(id),
                    rumqttc::Event::Outgoing(Outgoing::PubAck(id) | Outgoing::PubRec(id)) => {
                        Ev::AckSent(id)
                    }
                    rumqttc::Event::Outgoing(Outgoing::PubComp(id)) => Ev::CompSent(id),
                    rumqttc::Event::Incoming(Packet::UnsubAck(ack)) => Ev::Unsubscribed(ack.pkid),
                    _ => Ev::Other,
                })
            }
            Self::V5(events) => {
                let event = events.poll().await.map_err(|e| e.to_string())?;
                Ok(match event {
                    rumqttc::v5::Event::Incoming(Packet5::ConnAck(ack)) => {
                        if ack.session_present {
                            owed_releases_v5(events);
                        }
                        Ev::ConnAck {
                            resumed: ack.session_present,
                        }
                    }
                    rumqttc::v5::Event::Incoming(Packet5::SubAck(ack)) => Ev::SubAck {
                        refused: ack
                            .return_codes
                            .iter()
                            .any(|c| !matches!(c, Code5::Success(_))),
                    },
                    rumqttc::v5::Event::Incoming(Packet5::Publish(mut p)) => Ev::Message {
                        qos: p.qos as u8,
                        id: p.pkid,
                        topic: String::from_utf8_lossy(&std::mem::take(&mut p.topic)).into_owned(),
                        payload: std::mem::take(&mut p.payload),
                        ack: (p.qos != QoS5::AtMostOnce).then(|| {
                            p.properties = None;
                            Ack::V5(Box::new(p))
                        }),
                    },
                    rumqttc::v5::Event::Incoming(Packet5::PubAck(ack)) => match ack.reason {
                        PubAckReason::Success | PubAckReason::NoMatchingSubscribers => {
                            Ev::Acked(ack.pkid)
                        }
                        reason => Ev::Refused {
                            id: ack.pkid,
                            reason: format!("{reason:?}"),
                        },
                    },
                    rumqttc::v5::Event::Incoming(Packet5::PubRec(rec))
                        if !matches!(
                            rec.reason,
                            PubRecReason::Success | PubRecReason::NoMatchingSubscribers
                        ) =>
                    {
                        Ev::Refused {
                            id: rec.pkid,
                            reason: format!("{:?}", rec.reason),
                        }
                    }
                    rumqttc::v5::Event::Incoming(Packet5::PubComp(ack)) => Ev::Acked(ack.pkid),
                    rumqttc::v5::Event::Incoming(Packet5::Disconnect(_))
                    | rumqttc::v5::Event::Outgoing(Outgoing::Disconnect) => Ev::Disconnected,
                    rumqttc::v5::Event::Outgoing(Outgoing::Publish(id)) => Ev::Sent(id),
                    rumqttc::v5::Event::Outgoing(Outgoing::Unsubscribe(id)) => {
                        Ev::UnsubscribeSent(id)
                    }
                    rumqttc::v5::Event::Outgoing(Outgoing::PubAck(id) | Outgoing::PubRec(id)) => {
                        Ev::AckSent(id)
                    }
                    rumqttc::v5::Event::Outgoing(Outgoing::PubComp(id)) => Ev::CompSent(id),
                    rumqttc::v5::Event::Incoming(Packet5::UnsubAck(ack)) => {
                        Ev::Unsubscribed(ack.pkid)
                    }
                    _ => Ev::Other,
                })
            }
        }
    }
}

// A resumed session may hold QoS 2 messages this client answered with PUBREC before it
// stopped (a `kill -9`, a lost connection) and the broker released (PUBREL) without getting the
// PUBCOMP: the broker sends those PUBRELs again at once. rumqttc answers a PUBREL only for a
// packet id whose PUBLISH it saw on this connection, and takes any other for a protocol error
// that drops the connection; the broker then sends the same PUBRELs on every reconnection, and
// the source never gets further (rumqtt issue #664). MQTT wants the PUBREL answered with
// PUBCOMP either way, so on a resumed session every packet id is made one whose release the
// client expects. rumqttc offers no call for that; handing its state an incoming QoS 2
// PUBLISH of each id does it, and the notices that records are dropped again: nothing is
// sent, and no message reaches the source. Marking an id that no PUBREL comes for is
// harmless: a later PUBLISH of that id marks it again, and its PUBREL clears it.

/// The packet ids a resumed MQTT 3.1.1 session may release: all of them (see above).
fn owed_releases_v4(events: &mut rumqttc::EventLoop) {
    let before = events.state.events.len();
    for pkid in 1..=u16::MAX {
        let mut publish = rumqttc::Publish::new(String::new(), QoS::ExactlyOnce, Vec::new());
        publish.pkid = pkid;
        // Cannot fail for a QoS 2 PUBLISH: it only records the id (and, with automatic
        // acknowledgements, returns a PUBREC, which is not sent).
        let _ = events
            .state
            .handle_incoming_packet(Packet::Publish(publish));
    }
    events.state.events.truncate(before);
}

/// The same for an MQTT 5 session.
fn owed_releases_v5(events: &mut rumqttc::v5::EventLoop) {
    let before = events.state.events.len();
    for pkid in 1..=u16::MAX {
        let mut publish =
            rumqttc::v5::mqttbytes::v5::Publish::new("oort", QoS5::ExactlyOnce, Bytes::new(), None);
        publish.pkid = pkid;
        let _ = events
            .state
            .handle_incoming_packet(Packet5::Publish(publish));
    }
    events.state.events.truncate(before);
}
