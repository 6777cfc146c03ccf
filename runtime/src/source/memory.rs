//! The in-process bus behind eKuiper's `memory` sink and source: rules chain by publishing to a
//! topic that other rules' memory streams subscribe to (with MQTT-style `+` and `#` wildcards).
//!
//! Publishing waits for slow subscribers (back-pressure, not loss). A memory stream ends when
//! every memory action of the run has closed; with no memory action in the run, it waits for
//! messages until the run is stopped.

use std::fmt;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::{Chunk, Emitter, Reading, Resources, Source, SourceContext};
use crate::stream::StreamDef;

/// One published payload and its time.
#[derive(Debug, Clone)]
pub struct Published {
    /// The encoded payload (JSON, as the memory action's format made it).
    pub payload: Arc<[u8]>,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

struct Subscriber {
    pattern: String,
    tx: mpsc::Sender<Published>,
}

#[derive(Default)]
struct Inner {
    subscribers: Vec<Subscriber>,
    publishers: usize,
    had_publishers: bool,
}

/// The bus shared by a run's rules.
#[derive(Default)]
pub struct MemoryBus {
    inner: Mutex<Inner>,
}

impl fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBus").finish_non_exhaustive()
    }
}

/// Keeps the bus open while a memory action runs; dropping the last one ends memory streams.
#[derive(Debug)]
pub struct PublisherGuard {
    bus: Arc<MemoryBus>,
}

impl Drop for PublisherGuard {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.bus.inner.lock() {
            inner.publishers = inner.publishers.saturating_sub(1);
            if inner.publishers == 0 {
                // Dropping the senders ends every subscription once it has drained.
                inner.subscribers.clear();
            }
        }
    }
}

impl MemoryBus {
    /// A new, empty bus.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Registers a publisher (a memory action): call before any source starts.
    pub fn publisher(self: &Arc<Self>) -> PublisherGuard {
        if let Ok(mut inner) = self.inner.lock() {
            inner.publishers += 1;
            inner.had_publishers = true;
        }
        PublisherGuard {
            bus: Arc::clone(self),
        }
    }

    /// Subscribes to topics matching `pattern`.
    pub fn subscribe(&self, pattern: &str) -> mpsc::Receiver<Published> {
        let (tx, rx) = mpsc::channel(1024);
        if let Ok(mut inner) = self.inner.lock() {
            // With publishers registered and all of them gone, there is nothing to wait for.
            if !(inner.had_publishers && inner.publishers == 0) {
                inner.subscribers.push(Subscriber {
                    pattern: pattern.to_string(),
                    tx,
                });
            }
        }
        rx
    }

    /// Publishes one payload to every matching subscriber, waiting for room.
    pub async fn publish(&self, topic: &str, message: Published) {
        let targets: Vec<mpsc::Sender<Published>> = match self.inner.lock() {
            Ok(inner) => inner
                .subscribers
                .iter()
                .filter(|s| topic_matches(&s.pattern, topic))
                .map(|s| s.tx.clone())
                .collect(),
            Err(_) => Vec::new(),
        };
        for tx in targets {
            // A subscriber that went away (its rule ended) no longer needs the message.
            let _ = tx.send(message.clone()).await;
        }
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
}

async fn run(
    ctx: &SourceContext,
    mut rx: mpsc::Receiver<Published>,
    tx: &mpsc::Sender<Chunk>,
) -> Result<(), String> {
    let topic = ctx.def.options.datasource.clone();
    let mut out = Emitter::new(ctx, tx);
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
    use super::topic_matches;

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
