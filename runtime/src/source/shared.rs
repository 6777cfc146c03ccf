//! Shared sources (`SHARED="true"` on a stream, as in eKuiper, and streams without `SHARED`
//! where no rule could tell: see [`super::shares`]): every running rule that reads the stream
//! gets its rows from one reading of it (one MQTT subscription, one memory topic subscription,
//! one file or stdin reader) and one decode, fanned out to the rules.
//!
//! A [`SharedSources`] (a [`Resources`] value: one per run, one for a whole `oort serve`) holds
//! a hub per stream definition and time mode (event-time rules stamp rows from `TIMESTAMP`,
//! processing-time rules do not, so the two never share rows). The first rule to join starts
//! the reading, once it polls its own reading future, so rules wired together (a `run-rule`
//! run) all join before the first row is read; a rule that joins later sees only the rows read
//! after it joined. The hub decodes the union of the fields its rules read (everything when
//! any reads `*`), widened as rules join: rows decoded before a rule joined never reach it.
//! It builds rows' metadata (`meta()`) whatever its rules read, since a rule that reads it may
//! join at any time. When the last rule leaves, the reading stops.
//!
//! Each chunk of rows is decoded once and handed to every rule as one `Arc`: the rows' values
//! are shared, and each rule copies only the row vector (the rule that gets a chunk last takes
//! it without a copy). Each rule has a bounded queue of chunks; a full queue holds the hub back
//! (and with it the others: the slowest rule sets the pace), so no row is dropped.
//!
//! Metrics: the hub's own [`SourceMetrics`] count each row and each decode error once
//! ([`SharedSources::metrics`]); each rule's source metrics count the rows and errors it took.
//! [`SharedSources::stats`] adds the rules attached, the rows waiting in the fullest rule's
//! queue and the time the reading waited for a full queue (back-pressure).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use super::{Chunk, Reading, SourceContext};
use crate::metrics::SourceMetrics;
use crate::mqtt::MqttConf;
use crate::sql::FieldsRead;

/// Chunks that may wait for one rule, shared with the others.
const QUEUE: usize = 4;

/// What the rules of a hub read: the hub's decoder keeps the union of their fields.
#[derive(Debug, Clone)]
pub(crate) struct Interest {
    /// The fields to decode.
    pub(crate) reads: FieldsRead,
    /// Raised at each join: rows decoded before it go only to the rules that were there.
    pub(crate) generation: u64,
}

/// The shared readings of a run (or of a server): one hub per shared stream.
pub struct SharedSources {
    hubs: Mutex<HashMap<String, Arc<Hub>>>,
    /// Every rule of a reading joins it before its first message (one run's rules), rather
    /// than at any time (a server's).
    joined_first: bool,
    /// Of a run: the streams (and time modes) that several of its rules read without
    /// checkpoints, the only ones a stream without `SHARED` is shared for.
    several: Mutex<HashSet<(Arc<str>, bool)>>,
}

/// What a shared reading counts, read at one time ([`SharedSources::stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedStats {
    /// The stream.
    pub stream: Arc<str>,
    /// Whether its rows carry event time (event-time rules read a reading of their own).
    pub event_time: bool,
    /// The rules attached, in the order they joined.
    pub rules: Vec<Arc<str>>,
    /// Rows decoded and handed on (each counted once, whatever the number of rules).
    pub records: u64,
    /// Messages that could not be decoded (each counted once).
    pub exceptions: u64,
    /// The last of them.
    pub last_exception: Option<String>,
    /// Rows waiting in the fullest queue of its rules (the slowest rule's backlog).
    pub queued_rows: u64,
    /// Time the reading waited for a rule's full queue, in microseconds (summed).
    pub waited_us: u64,
}

impl std::fmt::Debug for SharedSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSources").finish_non_exhaustive()
    }
}

struct Subscriber {
    id: u64,
    rule: Arc<str>,
    tx: mpsc::Sender<Arc<Chunk>>,
    reads: FieldsRead,
    /// Rows in its queue.
    queued: Arc<AtomicU64>,
}

struct HubState {
    subscribers: Vec<Subscriber>,
    next_id: u64,
    /// The reading, made when the hub was created and run once a rule polls.
    pending: Option<(Reading, mpsc::Receiver<Chunk>)>,
    /// The running reading and its fan-out.
    task: Option<tokio::task::JoinHandle<()>>,
    /// How the reading ended (or that it was stopped), once it has.
    ended: Option<Result<(), String>>,
}

struct Hub {
    key: String,
    stream: Arc<str>,
    state: Mutex<HubState>,
    interest: watch::Sender<Interest>,
    metrics: Arc<SourceMetrics>,
    event_time: bool,
    /// Time spent waiting for a full queue, in nanoseconds.
    waited_ns: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The union of what `subscribers` read.
fn union(subscribers: &[Subscriber]) -> FieldsRead {
    let mut names = std::collections::BTreeSet::new();
    for s in subscribers {
        match &s.reads {
            FieldsRead::All => return FieldsRead::All,
            FieldsRead::Only(these) => names.extend(these.iter().cloned()),
        }
    }
    FieldsRead::Only(names)
}

impl SharedSources {
    /// The shared readings of one run, whose rules all join a reading before it reads its
    /// first message (the rules of a `run-rule` run are wired before any reads): there a file
    /// or stdin stream is shared by default too.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            hubs: Mutex::default(),
            joined_first: true,
            several: Mutex::default(),
        })
    }

    /// The shared readings of a server, whose rules join and leave at any time.
    pub fn lasting() -> Arc<Self> {
        Arc::new(Self {
            hubs: Mutex::default(),
            joined_first: false,
            several: Mutex::default(),
        })
    }

    /// Whether every rule joins a reading before its first message.
    pub fn joined_first(&self) -> bool {
        self.joined_first
    }

    /// Notes that several rules of the run read `stream` in this time mode (without
    /// checkpoints): in a run, a stream without `SHARED` is shared only then, as one rule
    /// alone gains nothing from a shared reading.
    pub fn read_by_several(&self, stream: Arc<str>, event_time: bool) {
        lock(&self.several).insert((stream, event_time));
    }

    /// Whether a stream without `SHARED` is worth sharing: in a run, when several of its rules
    /// read it; on a server, whose rules come and go, always.
    pub(crate) fn worth_sharing(&self, stream: &Arc<str>, event_time: bool) -> bool {
        !self.joined_first || lock(&self.several).contains(&(Arc::clone(stream), event_time))
    }

    /// The counters of every shared reading, by stream (then processing time first).
    pub fn stats(&self) -> Vec<SharedStats> {
        let hubs: Vec<Arc<Hub>> = lock(&self.hubs).values().cloned().collect();
        let mut all: Vec<SharedStats> = hubs
            .iter()
            .map(|hub| {
                let state = lock(&hub.state);
                SharedStats {
                    stream: Arc::clone(&hub.stream),
                    event_time: hub.event_time,
                    rules: state
                        .subscribers
                        .iter()
                        .map(|s| Arc::clone(&s.rule))
                        .collect(),
                    records: hub.metrics.records_out.get(),
                    exceptions: hub.metrics.exceptions.total(),
                    last_exception: hub.metrics.exceptions.last(),
                    queued_rows: state
                        .subscribers
                        .iter()
                        .map(|s| s.queued.load(Ordering::Relaxed))
                        .max()
                        .unwrap_or(0),
                    waited_us: hub.waited_ns.load(Ordering::Relaxed) / 1000,
                }
            })
            .collect();
        all.sort_by(|a, b| (&a.stream, a.event_time).cmp(&(&b.stream, b.event_time)));
        all
    }

    /// How many shared readings run (or wait for their first rule to poll).
    pub fn readings(&self) -> usize {
        lock(&self.hubs).len()
    }

    /// How many rules read the shared stream `stream` (over all its hubs).
    pub fn readers(&self, stream: &str) -> usize {
        lock(&self.hubs)
            .values()
            .filter(|h| &*h.stream == stream)
            .map(|h| lock(&h.state).subscribers.len())
            .sum()
    }

    /// The counters of the shared reading of `stream` (each row counted once), if one runs.
    pub fn metrics(&self, stream: &str) -> Option<Arc<SourceMetrics>> {
        lock(&self.hubs)
            .values()
            .find(|h| &*h.stream == stream)
            .map(|h| Arc::clone(&h.metrics))
    }

    /// Joins the shared reading of `ctx`'s stream (starting it if none runs) and returns the
    /// rule's reading: it hands the rule its chunks until the shared reading ends (with its
    /// outcome) or the rule stops listening.
    pub(crate) fn join(self: &Arc<Self>, ctx: SourceContext, tx: mpsc::Sender<Chunk>) -> Reading {
        let key = format!(
            "{}\u{0}{:?}\u{0}{:?}\u{0}{}\u{0}{:?}\u{0}{:?}",
            ctx.def.name,
            ctx.def.options,
            ctx.def.columns,
            ctx.def.base_dir.display(),
            ctx.event_time,
            ctx.resources.get::<MqttConf>(),
        );
        let (sub_tx, sub_rx) = mpsc::channel(QUEUE);
        let queued = Arc::new(AtomicU64::new(0));
        let (hub, id, generation) = {
            let mut hubs = lock(&self.hubs);
            let live = hubs
                .get(&key)
                .filter(|h| lock(&h.state).ended.is_none())
                .cloned();
            let hub = match live {
                Some(hub) => hub,
                None => {
                    let hub = Hub::new(key.clone(), &ctx);
                    hubs.insert(key, Arc::clone(&hub));
                    hub
                }
            };
            let mut state = lock(&hub.state);
            let id = state.next_id;
            state.next_id += 1;
            state.subscribers.push(Subscriber {
                id,
                rule: Arc::clone(&ctx.rule),
                tx: sub_tx,
                reads: ctx.reads.clone(),
                queued: Arc::clone(&queued),
            });
            let reads = union(&state.subscribers);
            let mut generation = 0;
            hub.interest.send_modify(|i| {
                i.reads = reads;
                i.generation += 1;
                generation = i.generation;
            });
            drop(state);
            (hub, id, generation)
        };
        let leave = Leave {
            sources: Arc::clone(self),
            hub: Arc::clone(&hub),
            id,
        };
        Box::pin(async move {
            let leave = leave;
            leave.hub.run(&leave.sources);
            forward(&ctx, sub_rx, &queued, &tx, generation).await;
            let outcome = lock(&leave.hub.state).ended.clone();
            drop(leave);
            outcome.unwrap_or(Ok(()))
        })
    }
}

/// Hands a rule the chunks of its hub decoded since it joined, until the hub ends or the rule
/// stops listening.
async fn forward(
    ctx: &SourceContext,
    mut rx: mpsc::Receiver<Arc<Chunk>>,
    queued: &AtomicU64,
    tx: &mpsc::Sender<Chunk>,
    joined: u64,
) {
    loop {
        let shared = tokio::select! {
            chunk = rx.recv() => match chunk {
                Some(chunk) => chunk,
                None => return,
            },
            () = tx.closed() => return,
        };
        queued.fetch_sub(shared.rows.len() as u64, Ordering::Relaxed);
        if shared.generation < joined {
            continue;
        }
        let chunk = Arc::try_unwrap(shared).unwrap_or_else(|shared| (*shared).clone());
        let rows = chunk.rows.len() as u64;
        for (_, message) in &chunk.errors {
            ctx.metrics.exceptions.record(message.clone());
        }
        if tx.send(chunk).await.is_err() {
            return;
        }
        ctx.metrics.records_out.add(rows);
    }
}

/// A rule's place in a hub: leaving (the rule's reading ends or is dropped) stops the hub's
/// reading when no rule is left.
struct Leave {
    sources: Arc<SharedSources>,
    hub: Arc<Hub>,
    id: u64,
}

impl Drop for Leave {
    fn drop(&mut self) {
        let mut hubs = lock(&self.sources.hubs);
        let mut state = lock(&self.hub.state);
        state.subscribers.retain(|s| s.id != self.id);
        if !state.subscribers.is_empty() || state.ended.is_some() {
            return;
        }
        state.ended = Some(Ok(()));
        state.pending = None;
        if let Some(task) = state.task.take() {
            task.abort();
        }
        drop(state);
        if hubs
            .get(&self.hub.key)
            .is_some_and(|h| Arc::ptr_eq(h, &self.hub))
        {
            hubs.remove(&self.hub.key);
        }
        tracing::debug!(stream = %self.hub.stream, "the last rule left the shared source: stopped");
    }
}

impl Hub {
    /// A hub for `ctx`'s stream, its reading made (a memory topic is subscribed now) but not
    /// yet running.
    fn new(key: String, ctx: &SourceContext) -> Arc<Self> {
        let metrics = Arc::new(SourceMetrics::default());
        let (interest, interest_rx) = watch::channel(Interest {
            reads: FieldsRead::Only(Default::default()),
            generation: 0,
        });
        let mut own = ctx.clone();
        own.metrics = Arc::clone(&metrics);
        own.rule = format!("shared-{}", ctx.def.name).into();
        own.positions = None;
        own.resume = None;
        own.meta = true;
        own.interest = Some(interest_rx);
        let (tx, rx) = mpsc::channel(QUEUE);
        let reading = super::read_own(own, tx);
        Arc::new(Self {
            key,
            stream: Arc::clone(&ctx.def.name),
            state: Mutex::new(HubState {
                subscribers: Vec::new(),
                next_id: 0,
                pending: Some((reading, rx)),
                task: None,
                ended: None,
            }),
            interest,
            metrics,
            event_time: ctx.event_time,
            waited_ns: AtomicU64::new(0),
        })
    }

    /// Runs the reading and its fan-out, if not running already.
    fn run(self: &Arc<Self>, sources: &Arc<SharedSources>) {
        let mut state = lock(&self.state);
        let Some((reading, rx)) = state.pending.take() else {
            return;
        };
        tracing::info!(stream = %self.stream, "shared source started");
        let hub = Arc::clone(self);
        let sources = Arc::clone(sources);
        state.task = Some(tokio::spawn(async move {
            let outcome = hub.fan_out(reading, rx).await;
            if let Err(message) = &outcome {
                tracing::error!(stream = %hub.stream, "shared source failed: {message}");
                hub.metrics.exceptions.record(message.clone());
            }
            let mut hubs = lock(&sources.hubs);
            if hubs.get(&hub.key).is_some_and(|h| Arc::ptr_eq(h, &hub)) {
                hubs.remove(&hub.key);
            }
            let mut state = lock(&hub.state);
            state.ended.get_or_insert(outcome);
            // Each rule's queue ends once drained: its reading returns the outcome.
            state.subscribers.clear();
        }));
    }

    /// Reads to the end, handing every chunk to every rule that is there when it comes.
    async fn fan_out(
        &self,
        mut reading: Reading,
        mut rx: mpsc::Receiver<Chunk>,
    ) -> Result<(), String> {
        let mut outcome = None;
        loop {
            tokio::select! {
                done = &mut reading, if outcome.is_none() => outcome = Some(done),
                chunk = rx.recv() => match chunk {
                    Some(chunk) => {
                        let chunk = Arc::new(chunk);
                        let rows = chunk.rows.len() as u64;
                        let targets: Vec<_> = lock(&self.state)
                            .subscribers
                            .iter()
                            .map(|s| (s.tx.clone(), Arc::clone(&s.queued)))
                            .collect();
                        for (target, queued) in targets {
                            queued.fetch_add(rows, Ordering::Relaxed);
                            // A rule that left no longer needs it.
                            match target.try_send(Arc::clone(&chunk)) {
                                Err(mpsc::error::TrySendError::Full(chunk)) => {
                                    let since = Instant::now();
                                    let _ = target.send(chunk).await;
                                    let waited = u64::try_from(since.elapsed().as_nanos())
                                        .unwrap_or(u64::MAX);
                                    self.waited_ns.fetch_add(waited, Ordering::Relaxed);
                                }
                                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                            }
                        }
                    }
                    None => break,
                },
            }
        }
        match outcome {
            Some(done) => done,
            None => reading.await,
        }
    }
}
