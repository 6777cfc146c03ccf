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
//!
//! At a stop the source's task is cancelled, and its session passes to [`close`]: once the
//! rule's last checkpoint is taken it acknowledges what that checkpoint covers, disconnects and
//! waits for the broker to close the connection, within [`ACKS_AT_STOP`]; the rule waits for it.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::{Chunk, Emitter, Reading, Resources, Source, SourceContext};
use crate::checkpoint::{AckLedger, MessageIdentity, Position, Positions, Redelivered};
use crate::metrics::SourceMetrics;
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
    /// The QoS 2 messages whose PUBREC was queued and whose PUBCOMP was not written yet (the
    /// broker's PUBREL comes between), by packet id: a stop waits for them, as a PUBREL that
    /// comes to the next connection would be one the client never knew of.
    open: HashSet<u16>,
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
            if ack.exactly_once() {
                self.open.insert(ack.id());
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
    // Checkpoints (a rule with qos 1 or 2): a persistent session, acknowledged after them.
    let persistent = ctx.positions.is_some() && qos != rumqttc::QoS::AtMostOnce;
    let (client, events) = if persistent {
        let id = mqtt::session_client_id(&ctx.rule, &def.name);
        settings.session_client(&id, &conf.base_dir(), 4096, true)?
    } else {
        settings.client(&mqtt::client_id(&def.name), &conf.base_dir(), 64)?
    };
    let server = settings
        .server
        .clone()
        .unwrap_or_else(|| mqtt::DEFAULT_SERVER.into());
    let read = ctx.resume.map_or(0, |p| p.records);
    let durable = persistent
        .then(|| ctx.positions.as_ref().map(|p| p.watch_durable()))
        .flatten();
    let mut guard = Closer {
        session: Some(Session {
            client,
            events,
            unacked: Unacked {
                waiting: VecDeque::new(),
                durable: read,
                open: HashSet::new(),
            },
            durable,
            connected: false,
        }),
        positions: ctx.positions.clone().filter(|_| persistent),
        stream: def.name.to_string(),
        metrics: Arc::clone(&ctx.metrics),
    };
    let Some(session) = guard.session.as_mut() else {
        return Ok(());
    };
    let result = pump(ctx, tx, session, qos, &server, persistent, read).await;
    if result.is_err() {
        // A failed source is started again (or the rule stops) from the last checkpoint: what
        // this connection leaves unacknowledged the broker sends again, and the ledger drops.
        guard.session = None;
    }
    if !persistent && let Some(session) = guard.session.take() {
        let _ = tokio::time::timeout(Duration::from_millis(200), session.client.disconnect()).await;
    }
    // With a persistent session, dropping the guard hands the session over to acknowledge
    // what the rule's last checkpoint covers.
    result
}

/// How long a stopped source, once the rule's last checkpoint is durable, takes at most to
/// write the acknowledgements it allows and its DISCONNECT to the broker.
pub(crate) const ACKS_AT_STOP: Duration = Duration::from_secs(2);

/// The connection and what waits on it to be acknowledged.
struct Session {
    client: Client,
    events: mqtt::Events,
    unacked: Unacked,
    /// Follows the last durable checkpoint (with a persistent session).
    durable: Option<watch::Receiver<Position>>,
    connected: bool,
}

/// Owns a persistent session while the source reads: when the source stops (its task
/// cancelled at a stop of the run or the rule, or its rows no longer wanted), hands the session
/// over to [`close`], which the rule waits for after its last checkpoint.
struct Closer {
    session: Option<Session>,
    positions: Option<Arc<Positions>>,
    stream: String,
    /// Where [`close`] counts the acknowledgements it could not send.
    metrics: Arc<SourceMetrics>,
}

impl Drop for Closer {
    fn drop(&mut self) {
        let (Some(session), Some(positions)) = (self.session.take(), self.positions.take()) else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let stream = std::mem::take(&mut self.stream);
            let metrics = Arc::clone(&self.metrics);
            let task = runtime.spawn(close(session, Arc::clone(&positions), stream, metrics));
            positions.closing(task);
        }
    }
}

/// What a stopped source does with its session: keeps the connection until the rule's last
/// checkpoint, then writes the acknowledgements of what the last durable checkpoint covers
/// (PUBACK; for QoS 2 PUBREC, and PUBCOMP once the broker's PUBREL comes) and a DISCONNECT,
/// and waits for the broker to close the connection, within [`ACKS_AT_STOP`]. Messages that
/// come meanwhile are not read: the broker sends them again to the next run. What it could not
/// acknowledge the broker sends again too, and the next run drops (the checkpoint's ledger
/// names them).
async fn close(
    mut session: Session,
    positions: Arc<Positions>,
    stream: String,
    metrics: Arc<SourceMetrics>,
) {
    let mut last = positions.watch_last();
    let mut durable = session.durable.take();
    let mut failures = 0u32;
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let events = &mut session.events;
        let poll = async {
            if let Some(at) = retry_at {
                tokio::time::sleep_until(at).await;
            }
            events.poll().await
        };
        tokio::select! {
            _ = last.wait_for(|last| *last) => break,
            at = durable_changed(&mut durable) => {
                if let Some(at) = at {
                    session.unacked.durable = session.unacked.durable.max(at.records);
                }
            }
            event = poll => {
                retry_at = None;
                match event {
                    Ok(Ev::ConnAck { resumed }) => {
                        failures = 0;
                        session.connected = true;
                        if !resumed {
                            session.unacked.waiting.clear();
                            session.unacked.open.clear();
                        }
                    }
                    Ok(Ev::CompSent(id)) => {
                        session.unacked.open.remove(&id);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        session.connected = false;
                        failures += 1;
                        retry_at = Some(tokio::time::Instant::now() + mqtt::backoff(failures));
                    }
                }
            }
        }
    }
    if let Some(durable) = &durable {
        session.unacked.durable = session.unacked.durable.max(durable.borrow().records);
    }
    let covered = |session: &Session| {
        let durable = session.unacked.durable;
        session
            .unacked
            .waiting
            .iter()
            .take_while(|(at, _)| *at <= durable)
            .count()
    };
    let total = covered(&session);
    // Acknowledgements queued, not yet seen written, by packet id.
    let mut pending: Vec<u16> = Vec::new();
    let mut disconnecting = false;
    let mut disconnected = false;
    let flushed = tokio::time::timeout(ACKS_AT_STOP, async {
        // A connection that failed before is tried once more: a kept session takes them.
        loop {
            if session.connected {
                let durable = session.unacked.durable;
                while let Some((at, ack)) = session.unacked.waiting.front() {
                    if *at > durable || !session.client.try_ack(ack) {
                        break;
                    }
                    positions.ledger().ack_sent(*at);
                    pending.push(ack.id());
                    if ack.exactly_once() {
                        session.unacked.open.insert(ack.id());
                    }
                    session.unacked.waiting.pop_front();
                }
                if !disconnecting
                    && pending.is_empty()
                    && session.unacked.open.is_empty()
                    && covered(&session) == 0
                {
                    disconnecting = session.client.try_disconnect();
                }
            }
            match session.events.poll().await {
                Ok(Ev::ConnAck { resumed }) => {
                    session.connected = true;
                    if !resumed {
                        // A new session: the broker forgot those messages, nothing to send.
                        session.unacked.waiting.clear();
                        session.unacked.open.clear();
                        pending.clear();
                    }
                }
                Ok(Ev::AckSent(id)) => {
                    if let Some(i) = pending.iter().position(|p| *p == id) {
                        pending.remove(i);
                    }
                }
                Ok(Ev::CompSent(id)) => {
                    session.unacked.open.remove(&id);
                }
                // Written: the broker closes the connection once it has processed what came
                // before. Until then the source reads on (what comes is not read, and sent
                // again next run): a socket closed with unread input is reset, and a reset can
                // discard what the broker had not yet processed.
                Ok(Ev::Disconnected) if disconnecting => disconnected = true,
                Ok(_) => {}
                Err(_) if disconnected => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    // Not written, or (QoS 2) written without the exchange completed.
    let open = &session.unacked.open;
    let unsent =
        open.len() + pending.iter().filter(|id| !open.contains(id)).count() + covered(&session);
    if !matches!(flushed, Ok(Ok(()))) && !disconnected {
        metrics.acks_unsent_at_stop.add(unsent as u64);
    }
    match flushed {
        Ok(Ok(())) => tracing::info!(
            stream = %stream,
            acknowledged = total,
            "stopped: the messages the last checkpoint covers are acknowledged; disconnected from the MQTT broker"
        ),
        Ok(Err(e)) => tracing::warn!(
            stream = %stream,
            unsent,
            "stopping: {unsent} acknowledgements of messages the last checkpoint covers not sent \
             (the MQTT connection failed: {e}); the broker sends them again and the next run drops them"
        ),
        Err(_) if disconnected => tracing::warn!(
            stream = %stream,
            acknowledged = total,
            "stopping: the MQTT broker did not close the connection within {ACKS_AT_STOP:?} of \
             the DISCONNECT: what it had not processed of the acknowledgements before it, it \
             sends again, and the next run drops"
        ),
        Err(_) => tracing::warn!(
            stream = %stream,
            unsent,
            "stopping: {unsent} acknowledgements of messages the last checkpoint covers not sent \
             within {ACKS_AT_STOP:?}; the broker sends them again and the next run drops them"
        ),
    }
}

/// Reads messages into rows until the rule no longer wants them or the source fails.
async fn pump(
    ctx: &SourceContext,
    tx: &mpsc::Sender<Chunk>,
    session: &mut Session,
    qos: rumqttc::QoS,
    server: &str,
    persistent: bool,
    mut read: u64,
) -> Result<(), String> {
    let def = &ctx.def;
    let filter = def.options.datasource.clone();
    let Session {
        client,
        events,
        unacked,
        durable,
        connected,
    } = session;
    let client = &*client;
    let mut out = Emitter::new(ctx, tx);
    // The ledger of acknowledgements not proven processed (with a persistent session only).
    let ledger = persistent.then_some(ctx.positions.as_deref()).flatten();
    if let Some(positions) = ledger {
        positions.ledger().restart(read);
    }
    let mut markers = Markers {
        filter: marker_filter(&mqtt::session_client_id(&ctx.rule, &def.name)),
        queued: VecDeque::new(),
    };
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
                at = durable_changed(durable) => {
                    if let Some(at) = at {
                        unacked.durable = unacked.durable.max(at.records);
                        if *connected {
                            unacked.ack(client, ledger);
                            if let Some(positions) = ledger {
                                markers.send(client, &mut positions.ledger());
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
                *connected = true;
                // What the last connection left unacknowledged, a new session has forgotten; a
                // kept one sends it again with the same packet ids, acknowledged as before.
                if !resumed {
                    unacked.waiting.clear();
                    unacked.open.clear();
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
                    markers.send(client, &mut ledger);
                }
            }
            Ok(Ev::UnsubscribeSent(id)) => markers.written(id),
            Ok(Ev::CompSent(id)) => {
                unacked.open.remove(&id);
            }
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
                        if *connected {
                            unacked.ack(client, Some(positions));
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
                        if ack.exactly_once() {
                            unacked.open.insert(ack.id());
                        }
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
                *connected = false;
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
        if *connected {
            unacked.ack(client, ledger);
            if let Some(positions) = ledger {
                markers.send(client, &mut positions.ledger());
            }
        }
    }
    out.flush().await;
    Ok(())
}
