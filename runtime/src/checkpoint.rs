//! Checkpoints of rules with `qos` 1 or 2: each source's position and the state of the rule's
//! operators, written durably into the embedded database the action caches use
//! (`<data dir>/checkpoints.redb`, one record per rule id), and read back when the rule starts
//! again with the same id and data directory.
//!
//! A checkpoint is taken at a barrier between two chunks of rows in the rule's query task, so it
//! matches exactly the rows the query has taken:
//! 1. every action is handed a barrier behind the results it already has, and acknowledges it
//!    once those results are delivered, dead-lettered, counted failed or written to its disk
//!    cache (its pending batch is handed on and its cache persisted first);
//! 2. then, with no row in flight, the position of each source after the last chunk taken,
//!    the rows the window still holds (open windows, join inputs, the watermark follows from
//!    them) and what the analytic and state functions remember (per call and partition key)
//!    are written in one transaction of the database, durable when it commits.
//!
//! A crash after that loses nothing: rows before the positions have their effects either in the
//! restored window or already with the actions (durable); rows after them are read again. Rows
//! between the last checkpoint and the crash are processed twice (at least once).
//!
//! The window keeps its rows, not aggregates, so the state is a list of rows; values are written
//! as JSON, with bytes tagged so that they come back as bytes. The rows the window holds carry
//! their analytic results already: a restore takes them again without running them through the
//! analytic calls, then sets the functions' state as it was. `acc_*` values are kept as the
//! bits of their floats, so they come back exactly.
//!
//! Under `qos: 2` the checkpoint also holds each action's batch numbering: the next sequence
//! number and the payloads of the batch it is filling when that batch waits for a count (an
//! action does not hand on a partial `batchSize` batch at a barrier then). A restart numbers
//! from there and cuts the rows read again into the same batches with the same numbers (the
//! cuts not made by count were recorded beside the checkpoints, see [`crate::sink::cuts`]; a
//! checkpoint drops those it covers in its own transaction), so a sink that skips numbers it has
//! written (the `file` sink's marker, the `redis` sink's `sequenceKey`) writes each row once.
//!
//! A source that acknowledges its input (MQTT) acknowledges what a checkpoint covers only once
//! it is durable, so a crash can come between the two: the broker then sends again messages the
//! checkpoint's position already counts. Each source checkpoint therefore names the messages it
//! covers whose acknowledgement the broker has not provably processed ([`MessageIdentity`]:
//! packet id and a digest of topic and payload, kept in an [`AckLedger`]); after a restart the
//! source acknowledges and drops a message the broker sends again that is one of them, instead
//! of reading it as a new one (which would also shift every later row's place and, under
//! `qos: 2`, its batch number).

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::sink::cuts::{self, CutLog, CutStore};
use crate::sql::analytic::Acc;
use crate::sql::{CallState, FunctionState, Hits};
use crate::value::{Row, Value};

/// Checkpoints by rule id, encoded as JSON.
const CHECKPOINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("checkpoints");

/// The bytes a file's identity hashes: its first block.
const HEAD_BLOCK: u64 = 4096;

/// The checkpoint store could not be used. Names the file.
#[derive(Debug, thiserror::Error)]
#[error("the checkpoint store {path}: {reason}")]
pub struct CheckpointError {
    /// The database file.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

/// Where a source has read to: everything before it was taken by the rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Bytes read (JSON-lines files).
    pub offset: u64,
    /// Messages read: lines of a JSON-lines file (blank ones included), records of a JSON array
    /// or of a CSV file.
    pub records: u64,
}

/// One message of a source that acknowledges its input: its packet id and a digest of its topic
/// and payload (a broker reuses the packet id of an acknowledged message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MessageIdentity {
    /// The packet id.
    pub id: u16,
    /// The first 8 bytes of the BLAKE3 hash of the topic, a zero byte and the payload.
    pub digest: u64,
}

impl MessageIdentity {
    /// The identity of message `id` on `topic` carrying `payload`.
    pub fn new(id: u16, topic: &str, payload: &[u8]) -> Self {
        let mut hasher = blake3::Hasher::new();
        hasher.update(topic.as_bytes());
        hasher.update(&[0]);
        hasher.update(payload);
        let mut first = [0u8; 8];
        first.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
        Self {
            id,
            digest: u64::from_le_bytes(first),
        }
    }
}

/// Where a message's acknowledgement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckState {
    /// Not sent yet (the checkpoint covering it is not durable yet).
    Unsent,
    /// Queued on this connection before the marker with this tag.
    Sent(u64),
    /// Perhaps lost (a crash, a dropped connection): the broker sends the message again, if it
    /// did not process it, before it answers the first marker of the next connection.
    Unsure,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Its place in the ledger: entries are numbered in the order they enter it.
    seq: u64,
    /// The position the message ends at.
    at: u64,
    identity: MessageIdentity,
    /// The connection it was read (or last sent again) on.
    epoch: u64,
    state: AckState,
}

/// The messages a source that acknowledges its input has read and whose acknowledgement the
/// broker has not provably processed: what a checkpoint names (see the module documentation).
///
/// A broker processes one connection's packets in order, so the answer to a request sent after
/// some acknowledgements (a *marker*: the source unsubscribes from a filter it never subscribed
/// to) proves they were processed: those messages leave the ledger, which therefore holds no
/// more than the broker has in flight. On a connection that resumes a session, the broker first
/// sends again what it has not seen acknowledged; a message that is one of the ledger's, read on
/// an earlier connection, is dropped, not read again. Those whose acknowledgement was perhaps
/// lost and that did not come again before the answer to that connection's first marker were
/// processed: they leave too. Hand-written: it is this protocol's own bookkeeping.
///
/// A resumed session can bring back thousands of messages at once (everything in flight when the
/// last run died), so each one costs a hash lookup and a binary search, not a walk of the ledger.
#[derive(Debug, Default)]
pub struct AckLedger {
    /// Oldest first (positions and `seq` never decrease).
    entries: VecDeque<Entry>,
    /// The `seq` of the next entry.
    next_seq: u64,
    /// The entries of each identity, by `seq`, oldest first.
    by_identity: HashMap<MessageIdentity, Vec<u64>>,
    /// Entries made [`Unsent`](AckState::Unsent) again by [`redelivered`](Self::redelivered), in
    /// that order: the ones [`ack_sent`](Self::ack_sent) marks first (entries that left since
    /// or changed state are skipped).
    again: VecDeque<u64>,
    /// Entries whose acknowledgement waits for the next marker (`Sent(next_tag)`).
    before_marker: usize,
    /// Connections so far.
    epoch: u64,
    /// The tag of the next marker.
    next_tag: u64,
    /// The marker whose answer ends the broker's sending again on this connection.
    window: Option<u64>,
}

/// What to do with a message a broker sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redelivered {
    /// A new message: read it.
    New,
    /// Already read, its acknowledgement still waiting for a checkpoint: drop it.
    Waiting,
    /// Already read and covered by a durable checkpoint: acknowledge it again (as the message
    /// at this position) and drop it.
    AckAgain(u64),
}

impl AckLedger {
    /// The ledger of a run restored at position `at` from a checkpoint naming `identities`.
    pub fn restored(at: u64, identities: &[MessageIdentity]) -> Self {
        let mut ledger = Self::default();
        for &identity in identities {
            ledger.push(at, identity, 0, AckState::Unsure);
        }
        ledger
    }

    fn push(&mut self, at: u64, identity: MessageIdentity, epoch: u64, state: AckState) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.entries.push_back(Entry {
            seq,
            at,
            identity,
            epoch,
            state,
        });
        self.by_identity.entry(identity).or_default().push(seq);
    }

    fn entry_mut(&mut self, seq: u64) -> Option<&mut Entry> {
        let index = self.entries.binary_search_by_key(&seq, |e| e.seq).ok()?;
        self.entries.get_mut(index)
    }

    /// Keeps the entries `keep` holds (and the index of them).
    fn retain(&mut self, keep: impl FnMut(&Entry) -> bool) {
        let before = self.entries.len();
        self.entries.retain(keep);
        if self.entries.len() != before {
            self.by_identity.clear();
            for entry in &self.entries {
                self.by_identity
                    .entry(entry.identity)
                    .or_default()
                    .push(entry.seq);
            }
        }
    }

    /// The source starts (again) at position `at`: what it read after it, it reads again; the
    /// acknowledgements of what it read before went with the old connection.
    pub fn restart(&mut self, at: u64) {
        self.retain(|e| e.at <= at);
        for entry in &mut self.entries {
            entry.state = AckState::Unsure;
        }
        self.again.clear();
        self.before_marker = 0;
    }

    /// The source read `identity`, ending at position `at`.
    pub fn read(&mut self, at: u64, identity: MessageIdentity) {
        let epoch = self.epoch;
        self.push(at, identity, epoch, AckState::Unsent);
    }

    /// The acknowledgement of the message at position `at` was queued.
    pub fn ack_sent(&mut self, at: u64) {
        let tag = self.next_tag;
        // A message sent again is acknowledged again in the order it came.
        while let Some(&seq) = self.again.front() {
            match self.entry_mut(seq) {
                Some(entry) if entry.state == AckState::Unsent => {
                    if entry.at != at {
                        break;
                    }
                    entry.state = AckState::Sent(tag);
                    self.again.pop_front();
                    self.before_marker += 1;
                    return;
                }
                _ => {
                    self.again.pop_front();
                }
            }
        }
        let from = self.entries.partition_point(|e| e.at < at);
        if let Some(entry) = self
            .entries
            .range_mut(from..)
            .take_while(|e| e.at == at)
            .find(|e| e.state == AckState::Unsent)
        {
            entry.state = AckState::Sent(tag);
            self.before_marker += 1;
        }
    }

    /// A connection started; `resumed` when the broker kept the session (else it sends nothing
    /// again, and nothing needs proving).
    pub fn connected(&mut self, resumed: bool) {
        self.epoch += 1;
        self.before_marker = 0;
        if !resumed {
            self.entries.clear();
            self.by_identity.clear();
            self.again.clear();
            self.window = None;
            return;
        }
        for entry in &mut self.entries {
            if let AckState::Sent(_) = entry.state {
                entry.state = AckState::Unsure;
            }
        }
        self.window = Some(self.next_tag);
    }

    /// Whether the broker may still be sending messages again on this connection.
    pub fn resending(&self) -> bool {
        self.window.is_some()
    }

    /// A message arrived while the broker may be sending messages again: whether it is one
    /// read before.
    pub fn redelivered(&mut self, identity: &MessageIdentity) -> Redelivered {
        if self.window.is_none() {
            return Redelivered::New;
        }
        let epoch = self.epoch;
        let next_tag = self.next_tag;
        let Some(seqs) = self.by_identity.get(identity) else {
            return Redelivered::New;
        };
        let found = seqs.iter().copied().find(|&seq| {
            self.entries
                .binary_search_by_key(&seq, |e| e.seq)
                .is_ok_and(|i| self.entries[i].epoch < epoch)
        });
        let Some(entry) = found.and_then(|seq| self.entry_mut(seq)) else {
            return Redelivered::New;
        };
        entry.epoch = epoch;
        let was = entry.state;
        if was == AckState::Unsent {
            return Redelivered::Waiting;
        }
        entry.state = AckState::Unsent;
        let (seq, at) = (entry.seq, entry.at);
        if was == AckState::Sent(next_tag) {
            self.before_marker -= 1;
        }
        self.again.push_back(seq);
        Redelivered::AckAgain(at)
    }

    /// The tag of a marker to send now, if acknowledgements (or the end of sending again) wait
    /// for one; [`marker_sent`](Self::marker_sent) once it is queued.
    pub fn marker_wanted(&self) -> Option<u64> {
        let tag = self.next_tag;
        (self.window == Some(tag) || self.before_marker > 0).then_some(tag)
    }

    /// The marker [`marker_wanted`](Self::marker_wanted) named was queued.
    pub fn marker_sent(&mut self) {
        self.next_tag += 1;
        self.before_marker = 0;
    }

    /// The broker answered marker `tag`: it processed every acknowledgement queued before it,
    /// and has sent again all it was going to.
    pub fn proven(&mut self, tag: u64) {
        let window_over = self.window.is_some_and(|w| w <= tag);
        if window_over {
            self.window = None;
        }
        self.retain(|e| match e.state {
            AckState::Sent(t) => t > tag,
            AckState::Unsure => !window_over,
            AckState::Unsent => true,
        });
    }

    /// What a checkpoint at position `at` names.
    pub fn covered(&self, at: u64) -> Vec<MessageIdentity> {
        self.entries
            .iter()
            .take_while(|e| e.at <= at)
            .map(|e| e.identity)
            .collect()
    }

    /// Messages in the ledger.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the ledger is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The positions a source has sent chunks up to, one per chunk in the order they were sent, for
/// the query task to take one each time it takes a chunk; and, back the other way, the position
/// the last durable checkpoint covers (a source that acknowledges its input, MQTT, acknowledges
/// up to it) and a way for the source to ask for a checkpoint before the interval is over.
#[derive(Debug)]
pub struct Positions {
    sent: Mutex<VecDeque<Position>>,
    durable: tokio::sync::watch::Sender<Position>,
    wanted: Arc<tokio::sync::Notify>,
    ledger: Mutex<AckLedger>,
    /// Raised once the rule takes no more checkpoints (the last one, at its end, was taken).
    last: tokio::sync::watch::Sender<bool>,
    /// What a stopped source left running to acknowledge what the last checkpoint covers.
    closing: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Default for Positions {
    fn default() -> Self {
        Self::new(Arc::default())
    }
}

impl Positions {
    /// Positions whose source asks for checkpoints on `wanted` (one per rule).
    pub fn new(wanted: Arc<tokio::sync::Notify>) -> Self {
        Self {
            sent: Mutex::default(),
            durable: tokio::sync::watch::Sender::new(Position::default()),
            wanted,
            ledger: Mutex::default(),
            last: tokio::sync::watch::Sender::new(false),
            closing: Mutex::default(),
        }
    }

    /// The rule takes no more checkpoints: the last durable one is final.
    pub fn no_more_checkpoints(&self) {
        self.last.send_replace(true);
    }

    /// Follows whether the rule takes more checkpoints ([`no_more_checkpoints`](Self::no_more_checkpoints)).
    pub fn watch_last(&self) -> tokio::sync::watch::Receiver<bool> {
        self.last.subscribe()
    }

    /// A stopped source left `task` to acknowledge what the last checkpoint covers.
    pub fn closing(&self, task: tokio::task::JoinHandle<()>) {
        self.closing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
    }

    /// Waits for what the stopped source left running ([`closing`](Self::closing)) to end.
    pub async fn closed(&self) {
        let tasks = std::mem::take(&mut *self.closing.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
    }

    /// The ledger of the messages read whose acknowledgement is not proven processed (a source
    /// that acknowledges its input keeps it; a checkpoint names what it covers).
    pub fn ledger(&self) -> std::sync::MutexGuard<'_, AckLedger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The source is about to send a chunk ending at `position`.
    pub fn sent(&self, position: Position) {
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(position);
    }

    /// The query task took the next chunk: where it ended.
    pub fn taken(&self) -> Option<Position> {
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }

    /// A checkpoint holding `position` is durable: what the source read up to it may be
    /// acknowledged.
    pub fn durable(&self, position: Position) {
        self.durable.send_replace(position);
    }

    /// Follows the position the last durable checkpoint covers.
    pub fn watch_durable(&self) -> tokio::sync::watch::Receiver<Position> {
        self.durable.subscribe()
    }

    /// Asks the rule for a checkpoint now (requests made before it is taken count once).
    pub fn want_checkpoint(&self) {
        self.wanted.notify_one();
    }

    /// Forgets positions of chunks never taken (a failed source's, before it starts again).
    pub fn clear(&self) {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Which file a position is in: a file replaced or rewritten since is not read from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    /// The inode number.
    pub inode: u64,
    /// Its size when the position was taken (it may grow, not shrink).
    pub size: u64,
    /// blake3 of its first block (up to 4 KiB, at most `size` bytes), in hex.
    pub head: String,
}

impl FileIdentity {
    /// The identity of the file at `path` now.
    pub fn of(path: &Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        let size = meta.len();
        Ok(Self {
            inode: inode(&meta),
            size,
            head: head_hash(path, size.min(HEAD_BLOCK))?,
        })
    }

    /// Whether the file at `path` is still this one, and holds `offset` bytes; the message
    /// names the file and what changed.
    pub fn check(&self, path: &Path, offset: u64) -> Result<(), String> {
        let shown = path.display();
        let changed = |what: String| {
            format!(
                "{shown} is not the file the checkpoint was taken in ({what}); run with \
                 --reset-checkpoints to read it from the start"
            )
        };
        let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
        if inode(&meta) != self.inode {
            return Err(changed("another inode: it was replaced".into()));
        }
        if meta.len() < self.size.max(offset) {
            return Err(changed(format!(
                "it is {} bytes, it was {}: it was truncated",
                meta.len(),
                self.size.max(offset)
            )));
        }
        let head =
            head_hash(path, self.size.min(HEAD_BLOCK)).map_err(|e| format!("{shown}: {e}"))?;
        if head != self.head {
            return Err(changed("its first bytes differ: it was rewritten".into()));
        }
        Ok(())
    }
}

#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_meta: &std::fs::Metadata) -> u64 {
    0
}

fn head_hash(path: &Path, len: u64) -> std::io::Result<String> {
    let mut head = Vec::with_capacity(len as usize);
    std::fs::File::open(path)?
        .take(len)
        .read_to_end(&mut head)?;
    Ok(blake3::hash(&head).to_hex().to_string())
}

/// One source of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceCheckpoint {
    /// The stream.
    pub stream: String,
    /// Where it had read to.
    pub position: Position,
    /// For a file source: which file.
    #[serde(default)]
    pub file: Option<FileIdentity>,
    /// For a source that acknowledges its input: the messages up to `position` whose
    /// acknowledgement the broker had not provably processed (it may send them again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub covered: Vec<MessageIdentity>,
}

/// A row the window held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldRow {
    /// The source it came from (its index in the statement).
    pub source: usize,
    /// Its time.
    pub ts: i64,
    /// Its fields, in order.
    pub fields: Vec<(String, Json)>,
}

impl HeldRow {
    /// Encodes `row` from source `source`.
    pub fn new(source: usize, row: &Row) -> Self {
        Self {
            source,
            ts: row.timestamp_ms,
            fields: row
                .iter()
                .map(|(k, v)| (k.to_string(), encode(v)))
                .collect(),
        }
    }

    /// The row back.
    pub fn row(&self) -> (usize, Row) {
        let pairs = self
            .fields
            .iter()
            .map(|(k, v)| (Arc::from(k.as_str()), decode(v)))
            .collect();
        (self.source, Row::from_pairs(pairs, self.ts))
    }
}

/// The key that marks bytes in an encoded value (an object with only this key).
const BYTES_TAG: &str = "$oort.bytes";

fn encode(v: &Value) -> Json {
    match v {
        Value::Bytes(b) => serde_json::json!({ BYTES_TAG: oort_value::base64::encode(b) }),
        Value::Array(items) => Json::Array(items.iter().map(encode).collect()),
        Value::Object(map) => Json::Object(
            map.iter()
                .map(|(k, v)| (k.to_string(), encode(v)))
                .collect(),
        ),
        other => other.to_json(),
    }
}

fn decode(v: &Json) -> Value {
    match v {
        Json::Object(map) if map.len() == 1 && map.contains_key(BYTES_TAG) => {
            let text = map[BYTES_TAG].as_str().unwrap_or_default();
            match oort_value::base64::decode_padded(text) {
                Some(bytes) => Value::Bytes(Arc::from(bytes)),
                None => Value::string(text),
            }
        }
        Json::Array(items) => Value::array(items.iter().map(decode).collect()),
        Json::Object(map) => Value::object(
            map.iter()
                .map(|(k, v)| (Arc::from(k.as_str()), decode(v)))
                .collect(),
        ),
        other => Value::from_json(other.clone()),
    }
}

/// What a rule's analytic and state functions (`lag`, `latest`, `changed_col(s)`,
/// `had_changed`, `acc_*`, `last_hit_*`, `last_agg_hit_*`) remembered at a checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionsCheckpoint {
    /// How many of the held rows (the first ones) carry their analytic results already.
    pub prepared: usize,
    /// Per analytic call, in the statement's order.
    pub calls: Vec<CallCheckpoint>,
    /// Per `changed_cols` item: the last value of each column.
    pub changed_cols: Vec<Vec<(String, Json)>>,
    /// `last_hit_count()`, `last_hit_time()`.
    pub hits: [i64; 2],
    /// `last_agg_hit_count()`, `last_agg_hit_time()`.
    pub agg_hits: [i64; 2],
    /// An event-time tumbling or hopping window had fired its first window (whose start it
    /// reports as eKuiper does); absent in a checkpoint of an earlier version.
    #[serde(default)]
    pub first_window_fired: bool,
}

/// One analytic call's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallCheckpoint {
    /// The function (`lag`, ...), to tell a checkpoint of another statement.
    pub function: String,
    /// Its state per `PARTITION BY` key.
    pub partitions: Vec<(String, PartitionState)>,
}

/// One call's state for one partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PartitionState {
    /// `lag`: the values kept, oldest first, the offset and the default.
    Lag {
        /// The values kept.
        queue: Vec<Json>,
        /// How many rows back.
        offset: u64,
        /// The answer while fewer than `offset` were kept.
        default: Json,
    },
    /// `latest`, `changed_col`: the remembered value.
    Last {
        /// The value.
        value: Json,
    },
    /// `had_changed`: the remembered value of each argument.
    Each {
        /// The values.
        values: Vec<Json>,
    },
    /// `acc_*`.
    Acc {
        /// The accumulated value, if any.
        value: Option<AccCheckpoint>,
        /// Whether an accumulation started by `begin` is running.
        begun: bool,
    },
}

/// An accumulated value; floats are kept as their bits, so they come back exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AccCheckpoint {
    /// `acc_count`.
    Count {
        /// The count.
        n: i64,
    },
    /// `acc_sum`, `acc_min`, `acc_max`.
    Float {
        /// The value's bits.
        bits: u64,
    },
    /// `acc_avg`.
    Avg {
        /// The sum's bits.
        sum_bits: u64,
        /// The count.
        count: i64,
    },
}

impl FunctionsCheckpoint {
    /// Encodes a runner's function state.
    pub fn new(state: &FunctionState) -> Self {
        let partition = |s: &CallState| match s {
            CallState::Lag {
                queue,
                offset,
                default,
            } => PartitionState::Lag {
                queue: queue.iter().map(encode).collect(),
                offset: *offset as u64,
                default: encode(default),
            },
            CallState::Last(v) => PartitionState::Last { value: encode(v) },
            CallState::Each(values) => PartitionState::Each {
                values: values.iter().map(encode).collect(),
            },
            CallState::Acc { value, begun } => PartitionState::Acc {
                value: value.map(|acc| match acc {
                    Acc::Count(n) => AccCheckpoint::Count { n },
                    Acc::Float(x) => AccCheckpoint::Float { bits: x.to_bits() },
                    Acc::Avg { sum, count } => AccCheckpoint::Avg {
                        sum_bits: sum.to_bits(),
                        count,
                    },
                }),
                begun: *begun,
            },
        };
        Self {
            prepared: state.prepared,
            calls: state
                .calls
                .iter()
                .map(|(function, partitions)| CallCheckpoint {
                    function: function.clone(),
                    partitions: partitions
                        .iter()
                        .map(|(k, s)| (k.clone(), partition(s)))
                        .collect(),
                })
                .collect(),
            changed_cols: state
                .changed_cols
                .iter()
                .map(|cols| {
                    cols.iter()
                        .map(|(k, v)| (k.to_string(), encode(v)))
                        .collect()
                })
                .collect(),
            hits: [state.hits.count, state.hits.time],
            agg_hits: [state.agg_hits.count, state.agg_hits.time],
            first_window_fired: state.first_window_fired,
        }
    }

    /// The function state back.
    pub fn state(&self) -> FunctionState {
        let partition = |s: &PartitionState| match s {
            PartitionState::Lag {
                queue,
                offset,
                default,
            } => CallState::Lag {
                queue: queue.iter().map(decode).collect(),
                offset: usize::try_from(*offset).unwrap_or(usize::MAX),
                default: decode(default),
            },
            PartitionState::Last { value } => CallState::Last(decode(value)),
            PartitionState::Each { values } => CallState::Each(values.iter().map(decode).collect()),
            PartitionState::Acc { value, begun } => CallState::Acc {
                value: value.map(|acc| match acc {
                    AccCheckpoint::Count { n } => Acc::Count(n),
                    AccCheckpoint::Float { bits } => Acc::Float(f64::from_bits(bits)),
                    AccCheckpoint::Avg { sum_bits, count } => Acc::Avg {
                        sum: f64::from_bits(sum_bits),
                        count,
                    },
                }),
                begun: *begun,
            },
        };
        FunctionState {
            prepared: self.prepared,
            calls: self
                .calls
                .iter()
                .map(|c| {
                    let partitions = c
                        .partitions
                        .iter()
                        .map(|(k, s)| (k.clone(), partition(s)))
                        .collect();
                    (c.function.clone(), partitions)
                })
                .collect(),
            changed_cols: self
                .changed_cols
                .iter()
                .map(|cols| {
                    cols.iter()
                        .map(|(k, v)| (Arc::from(k.as_str()), decode(v)))
                        .collect()
                })
                .collect(),
            hits: Hits {
                count: self.hits[0],
                time: self.hits[1],
            },
            agg_hits: Hits {
                count: self.agg_hits[0],
                time: self.agg_hits[1],
            },
            first_window_fired: self.first_window_fired,
        }
    }
}

/// A payload of the batch an action was filling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingPayload {
    /// The payload, in base64.
    pub payload: String,
    /// Its time (ms).
    pub ts: i64,
}

impl PendingPayload {
    /// Encodes one payload.
    pub fn new(payload: &[u8], ts: i64) -> Self {
        Self {
            payload: oort_value::base64::encode(payload),
            ts,
        }
    }

    /// The payload back; `None` if it is not base64 (the checkpoint was altered).
    pub fn bytes(&self) -> Option<Vec<u8>> {
        oort_value::base64::decode_padded(&self.payload)
    }
}

/// An action's batch numbering at a checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionCheckpoint {
    /// The action (`<plugin>_<index>`).
    pub action: String,
    /// Whether the numbering is pinned to the rows (`qos: 2`): the next batch gets
    /// `next_sequence` in any run that resumes from here.
    pub exactly_once: bool,
    /// The number the next batch gets.
    pub next_sequence: u64,
    /// The highest number the sink had acknowledged.
    pub delivered: u64,
    /// The payloads of the batch being filled, not yet handed on (`qos: 2` only).
    pub pending: Vec<PendingPayload>,
}

/// A rule's checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The rule's streams (not its tables, which are read whole each time), in the
    /// statement's order.
    pub sources: Vec<SourceCheckpoint>,
    /// The rows its window held.
    pub held: Vec<HeldRow>,
    /// Its actions' numbering, in the rule's order (empty in a checkpoint of an earlier
    /// version).
    #[serde(default)]
    pub actions: Vec<ActionCheckpoint>,
    /// What its analytic and state functions remembered (`None` in a checkpoint of a version
    /// that kept no such state).
    #[serde(default)]
    pub functions: Option<FunctionsCheckpoint>,
}

/// The checkpoints of a data directory, and the batch cuts recorded under `qos: 2` since the
/// last one of each rule (see [`crate::sink::cuts`]).
pub struct CheckpointStore {
    path: PathBuf,
    db: Arc<Database>,
    cuts: Arc<CutStore>,
}

impl std::fmt::Debug for CheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl CheckpointStore {
    /// Opens (or creates) `<data_dir>/checkpoints.redb`.
    pub fn open(data_dir: &Path) -> Result<Self, CheckpointError> {
        let path = data_dir.join("checkpoints.redb");
        let fail = |reason: String| CheckpointError {
            path: path.clone(),
            reason,
        };
        std::fs::create_dir_all(data_dir).map_err(|e| fail(e.to_string()))?;
        let db = Database::create(&path).map_err(|e| fail(e.to_string()))?;
        let txn = db.begin_write().map_err(|e| fail(e.to_string()))?;
        txn.open_table(CHECKPOINTS)
            .map_err(|e| fail(e.to_string()))?;
        txn.commit().map_err(|e| fail(e.to_string()))?;
        let db = Arc::new(db);
        let cuts = Arc::new(CutStore::new(Arc::clone(&db)));
        Ok(Self { path, db, cuts })
    }

    /// Where action `action` of rule `rule` records its batch cuts under `qos: 2`.
    pub fn cut_log(&self, rule: &str, action: &str) -> CutLog {
        self.cuts.log(rule, action)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fail(&self, reason: impl ToString) -> CheckpointError {
        CheckpointError {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    /// Rule `rule`'s last checkpoint, if it has one.
    pub fn load(&self, rule: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(e))?;
        let table = txn.open_table(CHECKPOINTS).map_err(|e| self.fail(e))?;
        let Some(bytes) = table.get(rule).map_err(|e| self.fail(e))? else {
            return Ok(None);
        };
        serde_json::from_slice(bytes.value())
            .map(Some)
            .map_err(|e| self.fail(format!("rule `{rule}`: unreadable checkpoint: {e}")))
    }

    /// Replaces rule `rule`'s checkpoint, dropping the batch cuts it covers (numbered below
    /// an action's next number); durable when this returns. It is written in a group commit of
    /// the batch cuts ([`CutStore`]), with the cuts waiting then. Blocks: call it on a blocking
    /// thread.
    pub fn save(&self, rule: &str, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let bytes = serde_json::to_vec(checkpoint).map_err(|e| self.fail(e))?;
        let covered: Vec<(String, u64)> = checkpoint
            .actions
            .iter()
            .filter(|action| action.exactly_once && !action.action.is_empty())
            .map(|action| (action.action.clone(), action.next_sequence))
            .collect();
        let name = rule.to_string();
        // In the transaction of the next group commit, beside the batch cuts waiting.
        self.cuts
            .write_blocking(
                rule,
                Box::new(move |txn| {
                    let mut table = txn.open_table(CHECKPOINTS)?;
                    table.insert(name.as_str(), bytes.as_slice())?;
                    for (action, next) in &covered {
                        cuts::drop_covered(txn, &name, action, *next)?;
                    }
                    Ok(())
                }),
            )
            .map_err(|e| self.fail(e))
    }

    /// Forgets rule `rule`'s checkpoint and its recorded batch cuts (`--reset-checkpoints`).
    pub fn remove(&self, rule: &str) -> Result<(), CheckpointError> {
        let txn = self.db.begin_write().map_err(|e| self.fail(e))?;
        {
            let mut table = txn.open_table(CHECKPOINTS).map_err(|e| self.fail(e))?;
            table.remove(rule).map_err(|e| self.fail(e))?;
        }
        cuts::forget_rule(&txn, rule).map_err(|e| self.fail(e))?;
        txn.commit().map_err(|e| self.fail(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: u16, n: u64) -> MessageIdentity {
        MessageIdentity::new(id, "in/n", format!("{{\"n\":{n}}}").as_bytes())
    }

    /// A message leaves the ledger only once the broker answered a marker queued after its
    /// acknowledgement, however many checkpoints pass before that.
    #[test]
    fn an_acknowledged_message_stays_named_until_a_later_marker_is_answered() {
        let mut ledger = AckLedger::default();
        ledger.connected(false);
        for n in 1..=4 {
            ledger.read(n, message(n as u16, n));
        }
        assert_eq!(ledger.marker_wanted(), None, "nothing acknowledged yet");
        // A checkpoint at 2 is durable: 1 and 2 are acknowledged, then a marker is queued.
        ledger.ack_sent(1);
        ledger.ack_sent(2);
        let tag = ledger
            .marker_wanted()
            .expect("a marker for the acknowledgements");
        ledger.marker_sent();
        // More acknowledgements after the marker are not proven by it.
        ledger.ack_sent(3);
        // Many checkpoints may be written meanwhile: they still name 1 and 2.
        assert_eq!(ledger.covered(2), vec![message(1, 1), message(2, 2)]);
        assert_eq!(ledger.covered(3).len(), 3);
        ledger.proven(tag);
        assert_eq!(ledger.covered(4), vec![message(3, 3), message(4, 4)]);
        let next = ledger.marker_wanted().expect("a marker for 3");
        assert!(next > tag);
        ledger.marker_sent();
        ledger.proven(next);
        assert_eq!(ledger.covered(4), vec![message(4, 4)]);
        assert_eq!(ledger.marker_wanted(), None);
    }

    /// After a restore, a message the broker sends again that the checkpoint named is
    /// acknowledged again and dropped; one it never sends again leaves once the first marker of
    /// the connection is answered; a new message with another identity is read.
    #[test]
    fn a_restored_ledger_drops_what_is_sent_again_and_forgets_the_rest_after_the_first_marker() {
        let mut ledger = AckLedger::restored(10, &[message(9, 9), message(10, 10)]);
        // A checkpoint written right after the restore names them still.
        assert_eq!(ledger.covered(10), vec![message(9, 9), message(10, 10)]);
        ledger.connected(true);
        assert!(ledger.resending());
        let window = ledger
            .marker_wanted()
            .expect("the connection's first marker");
        ledger.marker_sent();
        assert_eq!(
            ledger.redelivered(&message(10, 10)),
            Redelivered::AckAgain(10)
        );
        assert_eq!(
            ledger.redelivered(&message(10, 10)),
            Redelivered::New,
            "once only"
        );
        assert_eq!(ledger.redelivered(&message(11, 11)), Redelivered::New);
        ledger.read(11, message(11, 11));
        ledger.ack_sent(10);
        ledger.proven(window);
        assert!(!ledger.resending());
        // 9 never came again: its acknowledgement was processed. 10's new one was queued
        // after the marker, so it waits for the next.
        assert_eq!(ledger.covered(11), vec![message(10, 10), message(11, 11)]);
        assert_eq!(ledger.redelivered(&message(10, 10)), Redelivered::New);
        let tag = ledger.marker_wanted().expect("a marker for 10");
        ledger.marker_sent();
        ledger.proven(tag);
        assert_eq!(ledger.covered(11), vec![message(11, 11)]);
    }

    /// A dropped connection makes the broker send again what it had not seen acknowledged:
    /// a message whose acknowledgement was queued is acknowledged again, one still waiting for
    /// its checkpoint is dropped (its acknowledgement still waits); a new session forgets all.
    #[test]
    fn a_resumed_connection_drops_what_this_run_read_and_a_new_session_forgets_it() {
        let mut ledger = AckLedger::default();
        ledger.connected(false);
        ledger.read(1, message(1, 1));
        ledger.read(2, message(2, 2));
        ledger.ack_sent(1);
        ledger.connected(true);
        assert_eq!(ledger.redelivered(&message(2, 2)), Redelivered::Waiting);
        assert_eq!(ledger.redelivered(&message(1, 1)), Redelivered::AckAgain(1));
        ledger.connected(false);
        assert!(ledger.is_empty());
        assert!(!ledger.resending());
    }

    /// A source that failed starts again at the rule's position: what it read after it is read
    /// again, what it read before is acknowledged again when the broker sends it.
    #[test]
    fn a_restarted_source_reads_again_what_it_read_past_its_position() {
        let mut ledger = AckLedger::default();
        ledger.connected(false);
        ledger.read(1, message(1, 1));
        ledger.read(2, message(2, 2));
        ledger.restart(1);
        assert_eq!(ledger.covered(2), vec![message(1, 1)]);
        ledger.connected(true);
        assert_eq!(ledger.redelivered(&message(2, 2)), Redelivered::New);
        assert_eq!(ledger.redelivered(&message(1, 1)), Redelivered::AckAgain(1));
    }

    /// A resumed session brings back everything the last run had in flight, all named by the
    /// checkpoint: each is found by its identity, not by walking the ledger (20,000 took 11.8 s
    /// in a debug build that way, 0.08 s now; the bound leaves a loaded machine 40 times that).
    #[test]
    fn thousands_of_messages_sent_again_after_a_restore_are_dropped_in_linear_time() {
        let n = 20_000u64;
        let sent: Vec<MessageIdentity> = (0..n)
            .map(|i| message((i % 65_535 + 1) as u16, i))
            .collect();
        let mut ledger = AckLedger::restored(50_000, &sent);
        ledger.connected(true);
        let window = ledger
            .marker_wanted()
            .expect("the connection's first marker");
        ledger.marker_sent();
        let started = std::time::Instant::now();
        for identity in &sent {
            assert_eq!(ledger.redelivered(identity), Redelivered::AckAgain(50_000));
            ledger.ack_sent(50_000);
            assert!(ledger.marker_wanted().is_some());
        }
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_secs(3),
            "{n} messages sent again took {took:?}"
        );
        assert_eq!(ledger.covered(50_000).len(), n as usize);
        ledger.proven(window);
        let tag = ledger
            .marker_wanted()
            .expect("a marker for the acknowledgements");
        ledger.marker_sent();
        ledger.proven(tag);
        assert!(ledger.is_empty());
    }

    /// Two entries with one identity (a broker reusing a packet id for the same payload) are
    /// each dropped once, oldest first; a third arrival is new.
    #[test]
    fn entries_sharing_an_identity_are_dropped_once_each() {
        let mut ledger = AckLedger::restored(7, &[message(1, 1), message(2, 2), message(1, 1)]);
        ledger.connected(true);
        ledger.marker_sent();
        assert_eq!(ledger.redelivered(&message(1, 1)), Redelivered::AckAgain(7));
        assert_eq!(ledger.redelivered(&message(1, 1)), Redelivered::AckAgain(7));
        assert_eq!(ledger.redelivered(&message(1, 1)), Redelivered::New);
        // One acknowledged again; the answer ends the window: 2, never sent again, leaves,
        // and so does the acknowledged copy. The other waits for its acknowledgement.
        ledger.ack_sent(7);
        let tag = ledger.marker_wanted().expect("a marker");
        ledger.marker_sent();
        ledger.proven(tag);
        assert_eq!(ledger.covered(7), vec![message(1, 1)]);
        ledger.ack_sent(7);
        let tag = ledger.marker_wanted().expect("a marker for the other");
        ledger.marker_sent();
        ledger.proven(tag);
        assert!(ledger.is_empty());
    }

    /// A message acknowledged on this connection that the broker sends again (it was in flight
    /// before the reconnection) waits for its new acknowledgement: no marker is wanted for the
    /// old one.
    #[test]
    fn an_acknowledgement_overtaken_by_its_message_sent_again_wants_no_marker() {
        let mut ledger = AckLedger::default();
        ledger.connected(false);
        ledger.read(1, message(1, 1));
        ledger.connected(true);
        assert!(ledger.marker_wanted().is_some(), "the window's marker");
        ledger.marker_sent();
        ledger.ack_sent(1);
        assert!(ledger.marker_wanted().is_some());
        assert_eq!(ledger.redelivered(&message(1, 1)), Redelivered::AckAgain(1));
        assert_eq!(ledger.marker_wanted(), None);
        ledger.ack_sent(1);
        assert!(ledger.marker_wanted().is_some());
    }

    #[test]
    fn a_checkpoint_survives_the_store_being_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let row = Row::from_pairs(
            vec![
                (Arc::from("n"), Value::Int(3)),
                (Arc::from("f"), Value::Float(1.0)),
                (Arc::from("b"), Value::Bytes(Arc::from(&b"\x00\x01"[..]))),
                (Arc::from("s"), Value::string("x")),
                (
                    Arc::from("a"),
                    Value::array(vec![Value::Null, Value::Bool(true)]),
                ),
            ],
            42,
        );
        let checkpoint = Checkpoint {
            sources: vec![SourceCheckpoint {
                stream: "s".into(),
                position: Position {
                    offset: 10,
                    records: 2,
                },
                file: None,
                covered: vec![MessageIdentity::new(7, "in/n", b"{\"n\":1}")],
            }],
            held: vec![HeldRow::new(1, &row)],
            actions: vec![ActionCheckpoint {
                action: "file_0".into(),
                exactly_once: true,
                next_sequence: 7,
                delivered: 5,
                pending: vec![PendingPayload::new(b"{\"n\":1}", 3)],
            }],
            functions: Some(FunctionsCheckpoint::new(&FunctionState {
                prepared: 1,
                calls: vec![
                    (
                        "lag".into(),
                        vec![(
                            "k".into(),
                            CallState::Lag {
                                queue: [Value::Int(1), Value::Bytes(Arc::from(&b"\xff"[..]))]
                                    .into(),
                                offset: 2,
                                default: Value::Null,
                            },
                        )],
                    ),
                    (
                        "acc_avg".into(),
                        vec![(
                            "self".into(),
                            CallState::Acc {
                                value: Some(Acc::Avg {
                                    sum: 0.1 + 0.2,
                                    count: 3,
                                }),
                                begun: true,
                            },
                        )],
                    ),
                ],
                changed_cols: vec![vec![(Arc::from("a"), Value::Float(1.5))]],
                hits: Hits { count: 4, time: 9 },
                agg_hits: Hits::default(),
                first_window_fired: true,
            })),
        };
        {
            let store = CheckpointStore::open(dir.path()).unwrap();
            assert_eq!(store.load("r").unwrap(), None);
            store.save("r", &checkpoint).unwrap();
        }
        let store = CheckpointStore::open(dir.path()).unwrap();
        let back = store.load("r").unwrap().unwrap();
        assert_eq!(back, checkpoint);
        assert_eq!(
            back.actions[0].pending[0].bytes().as_deref(),
            Some(&b"{\"n\":1}"[..])
        );
        let functions = back.functions.as_ref().unwrap().state();
        assert_eq!(
            FunctionsCheckpoint::new(&functions),
            *checkpoint.functions.as_ref().unwrap()
        );
        assert_eq!(functions.calls[0].1[0].0, "k");
        assert_eq!(
            functions.calls[1].1[0].1,
            CallState::Acc {
                value: Some(Acc::Avg {
                    sum: 0.1 + 0.2,
                    count: 3
                }),
                begun: true
            },
            "floats come back exactly"
        );
        let (source, again) = back.held[0].row();
        assert_eq!(source, 1);
        assert_eq!(again.timestamp_ms, 42);
        assert_eq!(
            format!("{:?}", again.values()),
            format!("{:?}", row.values())
        );
        store.remove("r").unwrap();
        assert_eq!(store.load("r").unwrap(), None);
    }

    #[test]
    fn a_file_that_changed_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(&path, "{\"n\":1}\n{\"n\":2}\n").unwrap();
        let id = FileIdentity::of(&path).unwrap();
        assert_eq!(id.check(&path, 8), Ok(()));
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"n\":3}\n"))
            .unwrap();
        assert_eq!(id.check(&path, 8), Ok(()), "appending keeps the identity");
        std::fs::write(&path, "{\"n\":9}\n").unwrap();
        let err = id.check(&path, 8).unwrap_err();
        assert!(
            err.contains("in.jsonl is not the file") && err.contains("truncated"),
            "{err}"
        );
        std::fs::write(&path, "{\"n\":9}\n{\"n\":8}\n").unwrap();
        let err = id.check(&path, 8).unwrap_err();
        assert!(
            err.contains("rewritten") && err.contains("--reset-checkpoints"),
            "{err}"
        );
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "{\"n\":1}\n{\"n\":2}\n").unwrap();
        let err = id.check(&path, 8);
        // A new file may reuse the inode; then its identical contents make it the same file.
        assert!(err.is_ok() || err.unwrap_err().contains("replaced"));
    }
}
