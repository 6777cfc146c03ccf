//! The `mqtt` source: subscribes to `DATASOURCE` (MQTT wildcards allowed; a
//! `$share/<group>/<filter>` shared subscription spreads messages across processes) and decodes
//! each message as a row. It reconnects and resubscribes when the broker goes away, and runs
//! until the rule stops.
//!
//! Under a rule with `qos` 1 or 2 it keeps a persistent session (named after the rule and the
//! stream) and acknowledges a QoS 1/2 message only once a durable checkpoint covers the chunk
//! it was read into: a crash before that makes the broker send it again, it is not lost. Its
//! position is the number of messages read. The broker sends no more than its inflight window
//! (mosquitto's `max_inflight_messages`, 20 by default) of unacknowledged messages, so the
//! source asks for a checkpoint before the interval is over when [`UNACKED_LIMIT`] messages
//! wait, or when nothing has come for [`IDLE`] while some wait (the broker may be holding the
//! rest back): acknowledgements never wait for a long `checkpointInterval`.
//!
//! A crash (or a dropped connection) can come between a durable checkpoint and the broker's
//! processing of the acknowledgements it allows; the broker then sends those messages again,
//! although the checkpoint (or this run) already read them. The source keeps them in the
//! checkpoint's [`AckLedger`] until the broker answers a marker sent after their
//! acknowledgements (an unsubscription from [`marker_filter`], never subscribed to): rumqttc
//! sends its requests in the order they were queued and a broker processes one connection's
//! packets in order, so the answer proves the acknowledgements before it were processed. A
//! message the broker sends again that the ledger holds is dropped (and acknowledged), not read
//! twice, and counted (`redelivered_dropped` in the summary).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::{Chunk, Emitter, Reading, Resources, Source, SourceContext};
use crate::checkpoint::{AckLedger, MessageIdentity, Position, Positions, Redelivered};
use crate::mqtt::{self, Ack, Client, Ev, MqttConf};

/// Unacknowledged messages at which the source asks for a checkpoint (again at each multiple).
pub(crate) const UNACKED_LIMIT: usize = 1000;

/// How long without a message, while some wait to be acknowledged, before the source asks for a
/// checkpoint.
pub(crate) const IDLE: Duration = Duration::from_millis(20);
use crate::stream::StreamDef;

struct Topic<'a>(&'a str);

impl std::fmt::Display for Topic<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "topic {}", self.0)
    }
}

/// Subscribes to a broker's topic, with the run's broker settings (`--mqtt-conf`, a
/// [`Resources`] value; the defaults without one).
pub(super) struct MqttSource;

fn conf(resources: &Resources) -> Arc<MqttConf> {
    resources.get::<MqttConf>().unwrap_or_default()
}

impl Source for MqttSource {
    fn check(&self, def: &StreamDef, resources: &Resources) -> Result<(), String> {
        let conf = conf(resources);
        let settings = conf.settings(def.options.conf_key.as_deref())?;
        settings.qos(1)?;
        settings.check(&conf.base_dir())?;
        if def.options.datasource.is_empty() {
            return Err("DATASOURCE must name the MQTT topic filter".into());
        }
        Ok(())
    }

    fn start(&self, ctx: SourceContext, tx: mpsc::Sender<Chunk>) -> Reading {
        Box::pin(async move { run(&ctx, &conf(&ctx.resources), &tx).await })
    }

    /// Only when every rule joins before the reading subscribes, and not over a broker's
    /// shared subscription (`$share/...`, `$queue/...`): a subscription of its own would make
    /// each rule a member of the group, given its part of the messages. A rule that joined a
    /// subscription made before it would miss the topic's retained messages, which the broker
    /// sends each new subscription.
    fn shares_by_default(&self, def: &StreamDef, joined_first: bool) -> bool {
        let filter = def.options.datasource.as_str();
        joined_first && !filter.starts_with("$share/") && !filter.starts_with("$queue/")
    }

    fn replayable(&self, def: &StreamDef, resources: &Resources) -> Result<(), String> {
        let conf = conf(resources);
        let settings = conf.settings(def.options.conf_key.as_deref())?;
        if settings.qos(1)? == rumqttc::QoS::AtMostOnce {
            return Err(
                "it subscribes with qos 0: the broker would not redeliver what a crash \
                        loses (set `qos: 1` or `2` in the MQTT configuration)"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Received QoS 1/2 messages waiting for the checkpoint that covers them, by position.
struct Unacked {
    /// The messages, oldest first, with the position (messages read) each ends at.
    waiting: VecDeque<(u64, Ack)>,
    /// Where the last durable checkpoint is: messages up to it may be acknowledged.
    durable: u64,
}

impl Unacked {
    /// Acknowledges what the durable checkpoint covers, as far as the request queue takes,
    /// noting each in the ledger.
    fn ack(&mut self, client: &Client, positions: Option<&Positions>) {
        let mut ledger = positions.map(Positions::ledger);
        while let Some((at, ack)) = self.waiting.front() {
            if *at > self.durable || !client.try_ack(ack) {
                // Not covered yet, or the queue is full: the next event polled drains it.
                break;
            }
            if let Some(ledger) = ledger.as_mut() {
                ledger.ack_sent(*at);
            }
            self.waiting.pop_front();
        }
    }

    /// Waits to acknowledge the message at position `at` (which may be before others).
    fn insert(&mut self, at: u64, ack: Ack) {
        let index = self.waiting.partition_point(|(a, _)| *a <= at);
        self.waiting.insert(index, (at, ack));
    }
}

/// The filter a source's markers unsubscribe from: never subscribed to, unique to the session.
pub(crate) fn marker_filter(client_id: &str) -> String {
    format!("{client_id}/oort-ack-marker")
}

/// The markers queued, oldest first: the ledger's tag (`None` for one queued on a connection
/// that ended: it proves nothing), and its packet id once written.
struct Markers {
    filter: String,
    queued: VecDeque<(Option<u64>, Option<u16>)>,
}

impl Markers {
    /// Queues a marker if acknowledgements wait for one and none is on its way.
    fn send(&mut self, client: &Client, ledger: &mut AckLedger) {
        if self.queued.iter().any(|(tag, _)| tag.is_some()) {
            return;
        }
        if let Some(tag) = ledger.marker_wanted()
            && client.try_unsubscribe(&self.filter)
        {
            ledger.marker_sent();
            self.queued.push_back((Some(tag), None));
        }
    }

    /// An unsubscription was written (in the order they were queued).
    fn written(&mut self, id: u16) {
        if let Some(marker) = self.queued.iter_mut().find(|(_, at)| at.is_none()) {
            marker.1 = Some(id);
        }
    }

    /// The broker answered unsubscription `id`: the tag it proves, if any.
    fn answered(&mut self, id: u16) -> Option<u64> {
        let index = self.queued.iter().position(|(_, at)| *at == Some(id))?;
        self.queued.drain(..=index).filter_map(|(tag, _)| tag).max()
    }

    /// The connection ended: what was written will not be answered; what was not is sent on
    /// the next connection if the session is kept, and proves nothing there.
    fn disconnected(&mut self) {
        self.queued.retain(|(_, at)| at.is_none());
        for marker in &mut self.queued {
            marker.0 = None;
        }
    }
}

async fn durable_changed(durable: &mut Option<watch::Receiver<Position>>) -> Option<Position> {
    match durable {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(*rx.borrow_and_update()),
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

async fn run(ctx: &SourceContext, conf: &MqttConf, tx: &mpsc::Sender<Chunk>) -> Result<(), String> {
    let def = &ctx.def;
    let settings = conf.settings(def.options.conf_key.as_deref())?;
    let qos = settings.qos(1)?;
    let filter = def.options.datasource.clone();
    // Checkpoints (a rule with qos 1 or 2): a persistent session, acknowledged after them.
    let persistent = ctx.positions.is_some() && qos != rumqttc::QoS::AtMostOnce;
    let (client, mut events) = if persistent {
        let id = mqtt::session_client_id(&ctx.rule, &def.name);
        settings.session_client(&id, &conf.base_dir(), 4096, true)?
    } else {
        settings.client(&mqtt::client_id(&def.name), &conf.base_dir(), 64)?
    };
    let server = settings
        .server
        .clone()
        .unwrap_or_else(|| mqtt::DEFAULT_SERVER.into());
    let mut out = Emitter::new(ctx, tx);
    let mut read = ctx.resume.map_or(0, |p| p.records);
    let mut durable = persistent
        .then(|| ctx.positions.as_ref().map(|p| p.watch_durable()))
        .flatten();
    let mut unacked = Unacked {
        waiting: VecDeque::new(),
        durable: read,
    };
    // The ledger of acknowledgements not proven processed (with a persistent session only).
    let ledger = persistent.then_some(ctx.positions.as_deref()).flatten();
    if let Some(positions) = ledger {
        positions.ledger().restart(read);
    }
    let mut markers = Markers {
        filter: marker_filter(&mqtt::session_client_id(&ctx.rule, &def.name)),
        queued: VecDeque::new(),
    };
    let mut connected = false;
    let mut dropped_here = 0u64;
    let want_checkpoint = || {
        if let Some(positions) = &ctx.positions {
            positions.want_checkpoint();
        }
    };
    let mut failures = 0u32;
    loop {
        // Waiting rows go to the rule before waiting on the network.
        let event = if out.pending() {
            match tokio::time::timeout(Duration::from_millis(5), events.poll()).await {
                Ok(event) => event,
                Err(_) => {
                    if !out.flush().await {
                        break;
                    }
                    continue;
                }
            }
        } else {
            let idle = async {
                if unacked.waiting.is_empty() {
                    std::future::pending().await
                } else {
                    tokio::time::sleep(IDLE).await
                }
            };
            tokio::select! {
                event = events.poll() => event,
                at = durable_changed(&mut durable) => {
                    if let Some(at) = at {
                        unacked.durable = unacked.durable.max(at.records);
                        if connected {
                            unacked.ack(&client, ledger);
                            if let Some(positions) = ledger {
                                markers.send(&client, &mut positions.ledger());
                            }
                        }
                    }
                    continue;
                }
                () = idle => {
                    want_checkpoint();
                    continue;
                }
                () = tx.closed() => break,
            }
        };
        match event {
            Ok(Ev::ConnAck { resumed }) => {
                failures = 0;
                tracing::info!(stream = %def.name, %server, protocol = client.protocol(), resumed, "connected to the MQTT broker");
                connected = true;
                // What the last connection left unacknowledged, a new session has forgotten; a
                // kept one sends it again with the same packet ids, acknowledged as before.
                if !resumed {
                    unacked.waiting.clear();
                    markers.queued.clear();
                }
                // A new session has no subscription: subscribe on every connection.
                client
                    .try_subscribe(&filter, qos)
                    .map_err(|e| format!("subscribing to {filter}: {e}"))?;
                if let Some(positions) = ledger {
                    let mut ledger = positions.ledger();
                    ledger.connected(resumed);
                    // Its answer comes after all the broker sends again.
                    markers.send(&client, &mut ledger);
                }
            }
            Ok(Ev::UnsubscribeSent(id)) => markers.written(id),
            Ok(Ev::Unsubscribed(id)) => {
                if let (Some(tag), Some(positions)) = (markers.answered(id), ledger) {
                    let mut ledger = positions.ledger();
                    let resending = ledger.resending();
                    ledger.proven(tag);
                    if resending && !ledger.resending() && dropped_here > 0 {
                        tracing::info!(stream = %def.name, messages = dropped_here, "the broker sent again messages already read: acknowledged, not read twice");
                        dropped_here = 0;
                    }
                }
            }
            Ok(Ev::SubAck { refused }) => {
                if refused {
                    return Err(format!("the broker refused the subscription to {filter}"));
                }
                tracing::info!(stream = %def.name, %server, "subscribed to {filter}");
            }
            Ok(Ev::Message {
                topic,
                payload,
                ack,
                qos,
                id,
            }) => {
                let identity = ack
                    .as_ref()
                    .filter(|_| ledger.is_some())
                    .map(|_| MessageIdentity::new(id, &topic, &payload));
                if let (Some(identity), Some(positions)) = (&identity, ledger) {
                    let mut ledger = positions.ledger();
                    let again = ledger.redelivered(identity);
                    if again != Redelivered::New {
                        drop(ledger);
                        if let (Redelivered::AckAgain(at), Some(ack)) = (again, ack) {
                            unacked.insert(at, ack);
                        }
                        ctx.metrics.redelivered.add(1);
                        dropped_here += 1;
                        if connected {
                            unacked.ack(&client, Some(positions));
                        }
                        continue;
                    }
                    ledger.read(read + 1, *identity);
                }
                read += 1;
                out.at(Position {
                    offset: 0,
                    records: read,
                });
                let rows = out.rows();
                if persistent && let Some(ack) = ack {
                    unacked.waiting.push_back((read, ack));
                    if unacked.waiting.len().is_multiple_of(UNACKED_LIMIT) {
                        want_checkpoint();
                    }
                }
                out.set_mqtt_meta(&topic, qos, id);
                if !out.message(&payload, &Topic(&topic)).await {
                    break;
                }
                if out.rows() == rows
                    && unacked.waiting.back().is_some_and(|(at, _)| *at == read)
                    && let Some((_, ack)) = unacked.waiting.pop_back()
                {
                    // No row (counted as a decode error; it would fail again): nothing for a
                    // checkpoint to cover, so it is acknowledged now, or with the next ones.
                    if client.try_ack(&ack) {
                        if let Some(positions) = ledger {
                            positions.ledger().ack_sent(read);
                        }
                    } else {
                        unacked.waiting.push_back((read, ack));
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                if tx.is_closed() {
                    break;
                }
                connected = false;
                markers.disconnected();
                failures += 1;
                let wait = mqtt::backoff(failures);
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(stream = %def.name, %server, "MQTT connection failed ({e}); retrying in {wait:?}");
                }
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = tx.closed() => break,
                }
            }
        }
        if connected {
            unacked.ack(&client, ledger);
            if let Some(positions) = ledger {
                markers.send(&client, &mut positions.ledger());
            }
        }
    }
    out.flush().await;
    let _ = tokio::time::timeout(Duration::from_millis(200), client.disconnect()).await;
    Ok(())
}
