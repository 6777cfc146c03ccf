//! The in-process bus behind eKuiper's `memory` sink and source: rules chain by publishing to a
//! topic that other rules' memory streams subscribe to (with MQTT-style `+` and `#` wildcards).
//!
//! Publishing waits for slow subscribers (back-pressure, not loss). A memory stream ends when
//! every memory action of the run that publishes to a topic it matches has closed (its
//! upstream is done), so a pipeline of rules (a rule reading a memory stream and writing to a
//! memory action of its own) ends once its first rule's input ends. A memory stream no action
//! of the run can feed ends at once; with no memory action in the run at all, it waits for
//! messages until the run is stopped.
//!
//! A memory action with `table: true` also keeps the latest row of each key of its topic in the
//! bus ([`MemoryBus::table_apply`]), which lookup tables (`KIND="lookup"`) over that topic read
//! by key ([`MemoryLookup`]).
//!
//! The bus of `oort serve` ([`MemoryBus::lasting`]) is shared by every rule of the server, whose
//! rules come and go: there a memory stream never ends for want of a publisher (a rule writing
//! to its topic may be created or started later), and the subscription of a rule that stopped
//! is dropped as soon as its reader is gone, so no publisher waits for it.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use oort_sql::{Lookup, LookupKey};
use oort_value::{Row, Value};

use tokio::sync::mpsc;

use super::{Chunk, Emitter, Reading, Resources, Source, SourceContext};
use crate::stream::StreamDef;

/// One published payload, its time and the topic of the action that published it.
#[derive(Debug, Clone)]
pub struct Published {
    /// The encoded payload (JSON, as the memory action's format made it).
    pub payload: Arc<[u8]>,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The memory action's `topic` as written (a template unevaluated): the rows' metadata
    /// `{"topic": ...}`, which eKuiper's memory sink attaches and its memory source passes on.
    pub topic: Arc<str>,
}

struct Subscriber {
    pattern: String,
    tx: mpsc::Sender<Published>,
}

#[derive(Default)]
struct Inner {
    subscribers: Vec<Subscriber>,
    /// The topic of each live publisher (one entry per memory action).
    publishers: Vec<String>,
    had_publishers: bool,
    /// The server's bus: subscriptions last until their reader goes away.
    lasting: bool,
    /// Keyed tables by topic: a key (equal numbers are one key: `1` and `1.0`), and the
    /// latest row under it.
    tables: HashMap<String, HashMap<LookupKey, Row>>,
}

impl Inner {
    /// True if a live publisher writes to a topic that `pattern` matches.
    fn fed(&self, pattern: &str) -> bool {
        self.publishers.iter().any(|t| topic_matches(pattern, t))
    }

    /// Forgets the subscriptions whose reader is gone (its rule stopped or was dropped).
    fn prune(&mut self) {
        self.subscribers.retain(|s| !s.tx.is_closed());
    }
}

/// The bus shared by a run's rules (or by all the rules of a server).
#[derive(Default)]
pub struct MemoryBus {
    inner: Mutex<Inner>,
}

impl fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBus").finish_non_exhaustive()
    }
}

/// Keeps a topic's subscriptions open while a memory action runs; dropping the last guard of
/// the topics a subscription matches ends that memory stream.
#[derive(Debug)]
pub struct PublisherGuard {
    bus: Arc<MemoryBus>,
    topic: String,
}

impl Drop for PublisherGuard {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.bus.inner.lock() {
            let Inner {
                subscribers,
                publishers,
                lasting,
                ..
            } = &mut *guard;
            if let Some(i) = publishers.iter().position(|t| *t == self.topic) {
                publishers.swap_remove(i);
            }
            if *lasting {
                subscribers.retain(|s| !s.tx.is_closed());
                return;
            }
            // Dropping a sender ends its subscription once it has drained.
            subscribers.retain(|s| publishers.iter().any(|t| topic_matches(&s.pattern, t)));
        }
    }
}

impl MemoryBus {
    /// A new, empty bus for one run: its memory streams end with their publishers.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A new, empty bus for a server: its memory streams wait for publishers that may come
    /// later, and end only when their own rule stops.
    pub fn lasting() -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                lasting: true,
                ..Inner::default()
            }),
        })
    }

    /// How many subscriptions the bus holds (readers that went away are not counted).
    pub fn subscriptions(&self) -> usize {
        self.inner.lock().map_or(0, |mut inner| {
            inner.prune();
            inner.subscribers.len()
        })
    }

    /// Registers a publisher (a memory action writing to `topic`): call before any source
    /// starts.
    pub fn publisher(self: &Arc<Self>, topic: &str) -> PublisherGuard {
        if let Ok(mut inner) = self.inner.lock() {
            inner.publishers.push(topic.to_string());
            inner.had_publishers = true;
        }
        PublisherGuard {
            bus: Arc::clone(self),
            topic: topic.to_string(),
        }
    }

    /// Subscribes to topics matching `pattern`.
    pub fn subscribe(&self, pattern: &str) -> mpsc::Receiver<Published> {
        let (tx, rx) = mpsc::channel(1024);
        if let Ok(mut inner) = self.inner.lock() {
            inner.prune();
            // With publishers registered and none of them (still) writing to a matching
            // topic, there is nothing to wait for (on a server's bus, one may come later).
            if inner.lasting || !inner.had_publishers || inner.fed(pattern) {
                inner.subscribers.push(Subscriber {
                    pattern: pattern.to_string(),
                    tx,
                });
            }
        }
        rx
    }

    /// Sets (or, with `None`, deletes) the row under `key` in the keyed table of `topic`.
    pub fn table_apply(&self, topic: &str, key: LookupKey, row: Option<Row>) {
        if let Ok(mut inner) = self.inner.lock() {
            let table = inner.tables.entry(topic.to_string()).or_default();
            match row {
                Some(row) => {
                    table.insert(key, row);
                }
                None => {
                    table.remove(&key);
                }
            }
        }
    }

    /// The row under `key` in the keyed table of `topic`.
    pub fn table_get(&self, topic: &str, key: &LookupKey) -> Option<Row> {
        let inner = self.inner.lock().ok()?;
        inner.tables.get(topic)?.get(key).cloned()
    }

    /// Publishes one payload to every matching subscriber, waiting for room.
    pub async fn publish(&self, topic: &str, message: Published) {
        let targets: Vec<mpsc::Sender<Published>> = match self.inner.lock() {
            Ok(mut inner) => {
                inner.prune();
                inner
                    .subscribers
                    .iter()
                    .filter(|s| topic_matches(&s.pattern, topic))
                    .map(|s| s.tx.clone())
                    .collect()
            }
            Err(_) => Vec::new(),
        };
        for tx in targets {
            // A subscriber that went away (its rule ended) no longer needs the message; one
            // that goes away while the publisher waits for room wakes it at once.
            let _ = tx.send(message.clone()).await;
        }
    }
}

/// A lookup table over a memory topic's keyed table (fed by memory actions with `table: true`).
pub struct MemoryLookup {
    /// The bus.
    pub bus: Arc<MemoryBus>,
    /// The topic (`DATASOURCE`).
    pub topic: String,
}

impl Lookup for MemoryLookup {
    fn get(&self, key: &Value) -> Result<Vec<Row>, String> {
        let Some(key) = LookupKey::of(key) else {
            return Ok(Vec::new());
        };
        Ok(self.bus.table_get(&self.topic, &key).into_iter().collect())
    }
}

/// MQTT topic matching: `+` is one level, `#` (last) is any number of levels.
pub fn topic_matches(pattern: &str, topic: &str) -> bool {
    let mut p = pattern.split('/');
    let mut t = topic.split('/');
    loop {
        match (p.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

struct At<'a>(&'a str);

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "memory topic {}", self.0)
    }
}

/// Reads a topic of the run's [`MemoryBus`] (a [`Resources`] value).
pub(super) struct MemorySource;

impl Source for MemorySource {
    fn check(&self, _def: &StreamDef, _resources: &Resources) -> Result<(), String> {
        Ok(())
    }

    fn start(&self, ctx: SourceContext, tx: mpsc::Sender<Chunk>) -> Reading {
        // Subscribed before the future runs: nothing published from now on is missed.
        let Some(bus) = ctx.resources.get::<MemoryBus>() else {
            return Box::pin(async { Err("no memory bus".to_string()) });
        };
        let rx = bus.subscribe(&ctx.def.options.datasource);
        Box::pin(async move { run(&ctx, rx, &tx).await })
    }

    fn replayable(&self, _def: &StreamDef, _resources: &Resources) -> Result<(), String> {
        Err("a memory topic keeps nothing to replay after a crash".into())
    }

    /// Always: a topic keeps nothing, so a rule gets what is published once it is there,
    /// whether it subscribes itself or joins a reading subscribed before; and a publisher
    /// waits for the slowest subscriber either way.
    fn shares_by_default(&self, _def: &StreamDef, _joined_first: bool) -> bool {
        true
    }
}

async fn run(
    ctx: &SourceContext,
    mut rx: mpsc::Receiver<Published>,
    tx: &mpsc::Sender<Chunk>,
) -> Result<(), String> {
    let topic = ctx.def.options.datasource.clone();
    let mut out = Emitter::new(ctx, tx);
    let mut meta_topic: Option<Arc<str>> = None;
    loop {
        let message = match rx.try_recv() {
            Ok(m) => m,
            Err(mpsc::error::TryRecvError::Empty) => {
                // Nothing waiting: hand over what we have before sleeping.
                if !out.flush().await {
                    return Ok(());
                }
                match rx.recv().await {
                    Some(m) => m,
                    None => break,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        if meta_topic.as_deref() != Some(&*message.topic) {
            out.set_topic_meta(&message.topic);
            meta_topic = Some(Arc::clone(&message.topic));
        }
        // A window result published without `sendSingle` is a JSON array of rows.
        let first = message.payload.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'[') {
            match crate::json::RowDecoder::new().decode_array(&message.payload, ctx.clock.now_ms())
            {
                Ok(rows) => {
                    for row in rows {
                        if !out.row(row).await {
                            return Ok(());
                        }
                    }
                }
                Err(e) => out.error(format!("{}: invalid JSON array: {e}", At(&topic))),
            }
        } else if !out.message(&message.payload, &At(&topic)).await {
            return Ok(());
        }
    }
    out.flush().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(n: u8) -> Published {
        Published {
            topic: Arc::from("a/x"),
            payload: Arc::from(vec![n]),
            timestamp_ms: 0,
        }
    }

    #[tokio::test]
    async fn a_stream_ends_when_its_upstream_publishers_are_done() {
        let bus = MemoryBus::new();
        // Rule 1 writes a/x; rule 2 reads a/+ and writes b; rule 3 reads b.
        let first = bus.publisher("a/x");
        let second = bus.publisher("b");
        let mut reads_a = bus.subscribe("a/+");
        let mut reads_b = bus.subscribe("b");
        let mut reads_nothing = bus.subscribe("c");
        assert!(reads_nothing.recv().await.is_none(), "no action feeds `c`");
        bus.publish("a/x", published(1)).await;
        drop(first);
        assert_eq!(reads_a.recv().await.map(|m| m.payload[0]), Some(1));
        assert!(
            reads_a.recv().await.is_none(),
            "a/+ ends once its only publisher is done, although `b`'s publisher lives"
        );
        bus.publish("b", published(2)).await;
        drop(second);
        assert_eq!(reads_b.recv().await.map(|m| m.payload[0]), Some(2));
        assert!(reads_b.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_lasting_bus_waits_for_publishers_and_forgets_readers_that_went_away() {
        let bus = MemoryBus::lasting();
        // The reader comes first, and a publisher of another topic does not end it.
        let mut reader = bus.subscribe("a/+");
        let other = bus.publisher("b");
        drop(other);
        let writer = bus.publisher("a/x");
        bus.publish("a/x", published(1)).await;
        drop(writer);
        assert_eq!(reader.recv().await.map(|m| m.payload[0]), Some(1));
        // The writer stopped and comes back: the reader still gets its rows.
        let writer = bus.publisher("a/x");
        bus.publish("a/x", published(2)).await;
        assert_eq!(reader.recv().await.map(|m| m.payload[0]), Some(2));
        assert!(
            reader.try_recv().is_err(),
            "nothing more, and the stream has not ended"
        );
        // A reader that goes away with a full queue neither blocks the writer nor stays.
        let full = bus.subscribe("a/x");
        for n in 0..1024 {
            bus.publish("a/x", published(n as u8)).await;
        }
        assert_eq!(bus.subscriptions(), 2);
        let blocked = bus.publish("a/x", published(9));
        tokio::pin!(blocked);
        assert!(
            futures_util::FutureExt::now_or_never(blocked.as_mut()).is_none(),
            "the full reader holds the writer back"
        );
        drop(full);
        drop(reader);
        blocked.await;
        assert_eq!(bus.subscriptions(), 0);
        drop(writer);
    }

    #[test]
    fn matches_mqtt_wildcards() {
        assert!(topic_matches("a/b", "a/b"));
        assert!(topic_matches("a/+", "a/b"));
        assert!(!topic_matches("a/+", "a/b/c"));
        assert!(topic_matches("a/#", "a/b/c"));
        assert!(topic_matches("#", "x"));
        assert!(!topic_matches("a/b", "a/c"));
    }
}
