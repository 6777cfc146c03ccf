//! Sources: where a stream's rows come from. Each source decodes its messages into rows, fits
//! them to the stream's declared columns, stamps their time, and hands them to the rule in
//! chunks over a bounded channel (so a slow rule slows the source down; nothing is dropped).
//! A message that cannot be decoded is counted and logged with its position, never skipped
//! silently.

pub mod conf_file;
mod decode;
mod file;
pub mod lookup_cache;
pub mod memory;
mod mqtt;
pub mod redis;
mod shared;
mod stdin;

use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;

pub use crate::mqtt::{MqttConf, MqttSettings};
pub use decode::{DecodeError, Decoder};
pub use memory::MemoryBus;
pub(crate) use mqtt::ACKS_AT_STOP;
pub use shared::SharedSources;

use crate::checkpoint::{Position, Positions};
use crate::clock::Clock;
use crate::metrics::SourceMetrics;
use crate::sql::FieldsRead;
use crate::stream::{Format, SourceType, StreamDef, StreamKind};
use crate::value::{Row, Value};

/// Rows handed to the rule at a time, at most.
pub const CHUNK_ROWS: usize = 256;

/// A chunk of rows, and the messages among them that could not be decoded (in order: with
/// `sendError`, a rule sends each as an error message where it came, as eKuiper does).
#[derive(Debug, Default, Clone)]
pub struct Chunk {
    /// The rows, in input order: behind an `Arc`, so that the rules of a shared source all read
    /// the one decoded copy (a rule that needs rows of its own takes them with
    /// [`Chunk::into_rows`], without a copy when it is the only reader).
    pub rows: Arc<Vec<Row>>,
    /// `(i, why)`: a message that gave no row came after the first `i` rows.
    pub errors: Vec<(usize, String)>,
    /// Of a shared source: which rules it is for (those that joined before it was decoded).
    pub generation: u64,
}

impl Chunk {
    /// A chunk of `rows`, without decode errors.
    pub fn of_rows(rows: Vec<Row>) -> Self {
        Self {
            rows: Arc::new(rows),
            ..Self::default()
        }
    }

    /// The rows, owned: taken as they are when no other reader holds them, copied otherwise.
    pub fn into_rows(self) -> Vec<Row> {
        Arc::try_unwrap(self.rows).unwrap_or_else(|shared| (*shared).clone())
    }
}

/// A stream definition cannot be used as a source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream `{stream}` ({origin}): {message}")]
pub struct SourceError {
    /// The stream.
    pub stream: String,
    /// Where it is defined.
    pub origin: String,
    /// What is wrong.
    pub message: String,
}

/// A source reading to the end of its input; `Err` says why it stopped early.
pub type Reading = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One type of source (`TYPE=`): what it checks before a rule starts, and how it reads.
///
/// Adding a source type: a file in `source/` implementing this, and a line in [`SOURCES`] (and
/// its `TYPE=` value in the stream parser).
pub trait Source: Sync {
    /// Checks the stream's options, without reading (no file is opened, no broker connected).
    /// The message says what is wrong; the caller names the stream.
    fn check(&self, def: &StreamDef, resources: &Resources) -> Result<(), String>;

    /// Prepares reading and returns the future that reads to the end of the input (or until
    /// `tx` closes), sending chunks of rows. Whatever must not miss a message published after
    /// this call (a subscription) is made here, before the future runs.
    fn start(&self, ctx: SourceContext, tx: mpsc::Sender<Chunk>) -> Reading;

    /// Whether its rows name their own values (a CSV file's header line), so that
    /// `FORMAT="delimited"` needs no declared columns.
    fn names_values(&self, _def: &StreamDef) -> bool {
        false
    }

    /// Whether a table (`CREATE TABLE`) can read from it.
    fn serves_tables(&self) -> bool {
        true
    }

    /// Whether a table over it is read whole before the rule's streams start (a file), rather
    /// than fed while the rule runs (a memory or MQTT topic).
    fn reads_tables_whole(&self) -> bool {
        false
    }

    /// Whether it reads the process's standard input, which only one rule of a run can (or the
    /// rules of one `SHARED` stream).
    fn reads_stdin(&self) -> bool {
        false
    }

    /// Whether a rule with `qos` 1 or 2 can read it: its input must be replayable from a
    /// checkpointed position. The message says why not.
    fn replayable(&self, _def: &StreamDef, _resources: &Resources) -> Result<(), String> {
        Err("this source cannot be replayed from a checkpoint".into())
    }

    /// Whether the rules on a stream that does not say `SHARED` may get their rows from one
    /// reading of it, no rule able to tell the difference. `joined_first`: every rule of the
    /// reading joins it before its first message is read (the rules of one `run-rule` run),
    /// rather than at any time (`oort serve`, where rules come and go).
    fn shares_by_default(&self, _def: &StreamDef, _joined_first: bool) -> bool {
        false
    }
}

/// A source type's entry in [`SOURCES`].
pub struct SourceDef {
    /// The `TYPE=` value that names it (lower case).
    pub name: &'static str,
    /// The parsed `TYPE=` value.
    pub source_type: SourceType,
    /// The implementation.
    pub source: &'static dyn Source,
}

/// Every source type, by the `TYPE=` value that names it.
pub static SOURCES: &[SourceDef] = &[
    SourceDef {
        name: "file",
        source_type: SourceType::File,
        source: &file::FileSource,
    },
    SourceDef {
        name: "stdin",
        source_type: SourceType::Stdin,
        source: &stdin::StdinSource,
    },
    SourceDef {
        name: "memory",
        source_type: SourceType::Memory,
        source: &memory::MemorySource,
    },
    SourceDef {
        name: "mqtt",
        source_type: SourceType::Mqtt,
        source: &mqtt::MqttSource,
    },
    SourceDef {
        name: "redis",
        source_type: SourceType::Redis,
        source: &redis::RedisSource,
    },
];

/// The source a stream reads from, by its `TYPE=`.
pub fn of(def: &StreamDef) -> Option<&'static dyn Source> {
    SOURCES
        .iter()
        .find(|s| s.source_type == def.options.source_type)
        .map(|s| s.source)
}

/// What sources of a run share, one value per type (the memory bus, the MQTT broker
/// settings): each source type takes what it needs, so a new one adds no field anywhere. The
/// map is `http`'s `Extensions`, a type map the runtime depends on already.
#[derive(Debug, Clone, Default)]
pub struct Resources(Arc<http::Extensions>);

impl Resources {
    /// These resources and `value`, replacing a value of the same type.
    pub fn with<T: Send + Sync + 'static>(mut self, value: Arc<T>) -> Self {
        Arc::make_mut(&mut self.0).insert(value);
        self
    }

    /// The value of type `T`, if there is one.
    pub fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.0.get::<Arc<T>>().cloned()
    }
}

/// Everything a running source needs.
#[derive(Clone)]
pub struct SourceContext {
    /// The stream's definition.
    pub def: Arc<StreamDef>,
    /// Where its counters go.
    pub metrics: Arc<SourceMetrics>,
    /// The clock that stamps processing time.
    pub clock: Clock,
    /// Whether rows take their time from the `TIMESTAMP` field.
    pub event_time: bool,
    /// What the run's sources share.
    pub resources: Resources,
    /// The id of the rule reading it (an MQTT session is named after it).
    pub rule: Arc<str>,
    /// With checkpoints (`qos` 1 or 2): where the source records the position each chunk it
    /// sends ends at.
    pub positions: Option<Arc<Positions>>,
    /// Where to start reading: a checkpoint's position (a source that cannot seek starts at
    /// the beginning).
    pub resume: Option<Position>,
    /// The fields the rule's statement reads: a decoder may skip the others.
    pub reads: FieldsRead,
    /// Whether the statement reads the rows' source metadata (`meta(...)`): only then does a
    /// source build it, once per message or file, shared by its rows.
    pub meta: bool,
    /// Of a shared source: the fields its rules read, which grow as rules join (then it
    /// overrides `reads`).
    pub(crate) interest: Option<tokio::sync::watch::Receiver<shared::Interest>>,
}

/// Checks that a stream can be read, without reading it (for mqtt streams: that its broker
/// settings are complete, without connecting).
pub fn check(def: &StreamDef, resources: &Resources) -> Result<(), SourceError> {
    let fail = |message: String| SourceError {
        stream: def.name.to_string(),
        origin: def.origin.clone(),
        message,
    };
    let source = of(def).ok_or_else(|| fail(no_source(def.options.source_type)))?;
    if def.options.format == Format::Delimited && def.columns.is_none() && !source.names_values(def)
    {
        return Err(fail(
            "FORMAT=\"delimited\" needs declared columns to name the values".into(),
        ));
    }
    source.check(def, resources).map_err(fail)
}

/// Checks that a stream can be read by a rule with `qos` 1 or 2 (replayed from a checkpoint).
pub fn check_replayable(
    def: &StreamDef,
    resources: &Resources,
    qos: u8,
) -> Result<(), SourceError> {
    let fail = |message: String| SourceError {
        stream: def.name.to_string(),
        origin: def.origin.clone(),
        message: format!("the rule has qos {qos}, but {message}"),
    };
    if def.options.shared == Some(true) {
        return Err(fail(
            "the stream is SHARED: one reading serves every rule on it, so no rule's \
             checkpoint can hold a position of its own to replay from (drop SHARED from the \
             stream, or run the rule with qos 0)"
                .into(),
        ));
    }
    let source = of(def).ok_or_else(|| fail(no_source(def.options.source_type)))?;
    source.replayable(def, resources).map_err(fail)
}

fn no_source(source_type: SourceType) -> String {
    format!("no source reads TYPE {source_type:?}")
}

/// Prepares a source and returns the future that runs it to the end of its input (or until
/// `tx` closes), sending chunks of rows. Subscriptions (memory topics) are made here, before
/// the future runs, so no message published after this call can be missed.
pub fn start(
    ctx: SourceContext,
    tx: mpsc::Sender<Chunk>,
) -> impl Future<Output = ()> + Send + 'static {
    let name = ctx.def.name.clone();
    let metrics = Arc::clone(&ctx.metrics);
    let reading = read(ctx, tx);
    async move {
        if let Err(message) = reading.await {
            tracing::error!(stream = %name, "source failed: {message}");
            metrics.exceptions.record(message);
        }
    }
}

/// Like [`start`], but the future's error says why the source stopped early, for the caller
/// to log, count and act on (a rule restarts a failed source by its `restartStrategy`).
///
/// A stream (not a table) joins the run's shared reading of it, when the run has
/// [`SharedSources`] among its resources and [`shares`] says so.
pub fn read(ctx: SourceContext, tx: mpsc::Sender<Chunk>) -> Reading {
    read_at(ctx, tx, true)
}

/// [`read`] for a rule's source started again after it failed (`restartStrategy`): the other
/// rules of a run may have started their reading again before it, so a stream shared only
/// because every rule joins before its first message is now read apart.
pub fn read_again(ctx: SourceContext, tx: mpsc::Sender<Chunk>) -> Reading {
    read_at(ctx, tx, false)
}

fn read_at(ctx: SourceContext, tx: mpsc::Sender<Chunk>, first: bool) -> Reading {
    if let Some(shared) = ctx.resources.get::<SharedSources>()
        && shares(&ctx, shared.joined_first() && first)
        && (ctx.def.options.shared.is_some() || shared.worth_sharing(&ctx.def.name, ctx.event_time))
    {
        return shared.join(ctx, tx);
    }
    read_own(ctx, tx)
}

/// Whether a rule reads `ctx`'s stream through the shared reading of it: always with
/// `SHARED="true"`, never with `SHARED="false"` or for a table. Without `SHARED`, where no rule
/// could tell the difference: not for a rule with checkpoints (`qos` 1 or 2, which needs a
/// source position of its own), and otherwise as the source type says
/// ([`Source::shares_by_default`]; `joined_first`: every rule joins the reading before its
/// first message).
pub(crate) fn shares(ctx: &SourceContext, joined_first: bool) -> bool {
    if ctx.def.kind != StreamKind::Stream {
        return false;
    }
    match ctx.def.options.shared {
        Some(asked) => asked,
        None => {
            ctx.positions.is_none()
                && ctx.resume.is_none()
                && of(&ctx.def).is_some_and(|s| s.shares_by_default(&ctx.def, joined_first))
        }
    }
}

/// The stream's own reading, for one rule (or for a shared source's hub).
fn read_own(ctx: SourceContext, tx: mpsc::Sender<Chunk>) -> Reading {
    match of(&ctx.def) {
        Some(source) => source.start(ctx, tx),
        None => {
            let message = no_source(ctx.def.options.source_type);
            Box::pin(async move { Err(message) })
        }
    }
}

/// Batches decoded rows into chunks and sends them, counting decode errors.
pub(crate) struct Emitter<'a> {
    ctx: &'a SourceContext,
    decoder: Decoder,
    tx: &'a mpsc::Sender<Chunk>,
    /// The rows of the pending chunk, and its decode errors.
    rows_pending: Vec<Row>,
    errors: Vec<(usize, String)>,
    now_ms: i64,
    closed: bool,
    /// Where the input has been read to, including the rows in `chunk`.
    position: Position,
    /// Rows decoded and kept so far.
    rows: u64,
    /// The source's metadata of the current message or file, given to each of its rows.
    meta: Option<Arc<Value>>,
    /// Of a shared source: what its rules read, and the generation of the rows decoded now.
    interest: Option<tokio::sync::watch::Receiver<shared::Interest>>,
    generation: u64,
}

impl<'a> Emitter<'a> {
    pub(crate) fn new(ctx: &'a SourceContext, tx: &'a mpsc::Sender<Chunk>) -> Self {
        let mut interest = ctx.interest.clone();
        let (reads, generation) = match interest.as_mut() {
            Some(rx) => {
                let now = rx.borrow_and_update();
                (now.reads.clone(), now.generation)
            }
            None => (ctx.reads.clone(), 0),
        };
        Self {
            ctx,
            decoder: Decoder::reading(&ctx.def, ctx.event_time, &reads),
            interest,
            generation,
            tx,
            // Allocated with the first row: an idle stream holds no chunk.
            rows_pending: Vec::new(),
            errors: Vec::new(),
            now_ms: ctx.clock.now_ms(),
            closed: false,
            position: ctx.resume.unwrap_or_default(),
            rows: 0,
            meta: None,
        }
    }

    /// Sets the metadata of the rows that follow, when the statement reads it.
    fn set_meta(&mut self, entries: impl FnOnce() -> Vec<(&'static str, Value)>) {
        if self.ctx.meta {
            let map = entries()
                .into_iter()
                .map(|(k, v)| (Arc::from(k), v))
                .collect();
            self.meta = Some(Arc::new(Value::object(map)));
        }
    }

    /// The rows that follow come from the file `DATASOURCE` names (eKuiper's `meta(file)`).
    pub(crate) fn set_file_meta(&mut self, file: &str) {
        self.set_meta(|| vec![("file", Value::string(file))]);
    }

    /// The rows that follow were published by a memory action to its `topic` (eKuiper's
    /// memory sink attaches `{"topic": ...}`, which its memory source passes on).
    pub(crate) fn set_topic_meta(&mut self, topic: &str) {
        self.set_meta(|| vec![("topic", Value::string(topic))]);
    }

    /// The rows that follow come from this MQTT message (eKuiper's `meta(topic)`,
    /// `meta(qos)`, `meta(messageId)`).
    pub(crate) fn set_mqtt_meta(&mut self, topic: &str, qos: u8, id: u16) {
        self.set_meta(|| {
            vec![
                ("topic", Value::string(topic)),
                ("qos", Value::Int(i64::from(qos))),
                ("messageId", Value::Int(i64::from(id))),
            ]
        });
    }

    /// The input has been read up to `position` (call it before handing on the message that
    /// ends there).
    pub(crate) fn at(&mut self, position: Position) {
        self.position = position;
    }

    /// Of a shared source, when a rule has joined since the last message: hands on the rows
    /// decoded before (they are not for that rule) and decodes what the rules now read.
    async fn follow_interest(&mut self) -> bool {
        if !self
            .interest
            .as_ref()
            .is_some_and(|rx| rx.has_changed().unwrap_or(false))
        {
            return true;
        }
        if !self.flush().await {
            return false;
        }
        if let Some(rx) = self.interest.as_mut() {
            let now = rx.borrow_and_update().clone();
            self.decoder = Decoder::reading(&self.ctx.def, self.ctx.event_time, &now.reads);
            self.generation = now.generation;
        }
        true
    }

    /// Decodes one message; `position` names it in error messages (`file:line`).
    pub(crate) async fn message(
        &mut self,
        bytes: &[u8],
        position: &(dyn std::fmt::Display + Sync),
    ) -> bool {
        if !self.follow_interest().await {
            return false;
        }
        match self.decoder.decode(bytes, self.now_ms) {
            // Decoded for the rules of this generation: no second look at the interest, which
            // may change meanwhile and would tag the row with a generation it was not decoded for.
            Ok(row) => self.keep(row).await,
            Err(err) => {
                self.error(format!("{position}: {err}"));
                !self.closed
            }
        }
    }

    /// Adds an already decoded row.
    pub(crate) async fn row(&mut self, row: Row) -> bool {
        if !self.follow_interest().await {
            return false;
        }
        self.keep(row).await
    }

    /// Finishes a row decoded for the current generation and adds it to the pending chunk.
    async fn keep(&mut self, row: Row) -> bool {
        match self.decoder.finish(row) {
            Ok(mut row) => {
                if self.meta.is_some() {
                    row.set_meta(self.meta.clone());
                }
                self.rows += 1;
                if self.rows_pending.capacity() == 0 {
                    self.rows_pending.reserve_exact(CHUNK_ROWS);
                }
                self.rows_pending.push(row);
            }
            Err(err) => self.error(err.to_string()),
        }
        if self.rows_pending.len() >= CHUNK_ROWS {
            return self.flush().await;
        }
        !self.closed
    }

    /// How many rows were decoded and kept so far (a message that gave none was counted as an
    /// error).
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// Whether decoded rows (or decode errors) wait to be sent.
    pub(crate) fn pending(&self) -> bool {
        !self.rows_pending.is_empty() || !self.errors.is_empty()
    }

    /// A message that gives no row: counted and logged, and handed on in its place among the
    /// rows (the rule sends it as an error message with `sendError`).
    pub(crate) fn error(&mut self, message: String) {
        tracing::warn!(stream = %self.ctx.def.name, "cannot decode a message: {message}");
        self.ctx.metrics.exceptions.record(message.clone());
        self.errors.push((self.rows_pending.len(), message));
    }

    /// Sends the pending chunk; false once the rule has stopped listening.
    pub(crate) async fn flush(&mut self) -> bool {
        if self.pending() && !self.closed {
            let chunk = Chunk {
                rows: Arc::new(std::mem::take(&mut self.rows_pending)),
                errors: std::mem::take(&mut self.errors),
                generation: self.generation,
            };
            let n = chunk.rows.len() as u64;
            if let Some(positions) = &self.ctx.positions {
                positions.sent(self.position);
            }
            if self.tx.send(chunk).await.is_err() {
                self.closed = true;
            } else {
                self.ctx.metrics.records_out.add(n);
            }
        }
        self.now_ms = self.ctx.clock.now_ms();
        !self.closed
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{Resources, SOURCES, check};
    use crate::stream::{StreamDef, parse_streams};

    fn stream(options: &str) -> StreamDef {
        let text = format!("CREATE STREAM s () WITH ({options})");
        parse_streams(&text, "streams.sql", Path::new("/no/such/folder"))
            .unwrap()
            .remove(0)
    }

    fn message(options: &str) -> Option<String> {
        check(&stream(options), &Resources::default())
            .err()
            .map(|e| e.message)
    }

    #[test]
    fn every_source_is_named_as_the_stream_parser_reads_it() {
        for def in SOURCES {
            let parsed = stream(&format!("TYPE=\"{}\", DATASOURCE=\"t\"", def.name));
            assert_eq!(parsed.options.source_type, def.source_type, "{}", def.name);
        }
    }

    #[test]
    fn checks_each_type_s_options() {
        assert_eq!(
            message("TYPE=\"file\", DATASOURCE=\"in.jsonl\"").as_deref(),
            Some(
                "DATASOURCE /no/such/folder/in.jsonl does not exist (relative paths start at the \
                 folder of the file that defines the stream)"
            )
        );
        assert_eq!(
            message("TYPE=\"mqtt\", DATASOURCE=\"\"").as_deref(),
            Some("DATASOURCE must name the MQTT topic filter")
        );
        assert_eq!(message("TYPE=\"mqtt\", DATASOURCE=\"a/#\""), None);
        assert_eq!(message("TYPE=\"memory\", DATASOURCE=\"a/#\""), None);
        assert_eq!(message("TYPE=\"stdin\""), None);
    }

    #[test]
    fn a_checkpointed_rule_reads_only_what_can_be_replayed() {
        let replay = |options: &str, resources: &Resources| {
            super::check_replayable(&stream(options), resources, 1)
                .err()
                .map(|e| e.message)
        };
        let none = Resources::default();
        let stdin = replay("TYPE=\"stdin\"", &none).unwrap();
        assert!(
            stdin.starts_with("the rule has qos 1, but stdin cannot be replayed"),
            "{stdin}"
        );
        let memory = replay("TYPE=\"memory\", DATASOURCE=\"t\"", &none).unwrap();
        assert!(memory.contains("memory topic keeps nothing"), "{memory}");
        assert_eq!(
            replay("TYPE=\"file\", DATASOURCE=\"in.jsonl\"", &none),
            None
        );
        assert_eq!(replay("TYPE=\"mqtt\", DATASOURCE=\"a/#\"", &none), None);
        let conf =
            crate::mqtt::MqttConf::parse("default:\n  qos: 0\n", Path::new("etc/mqtt_source.yaml"))
                .unwrap();
        let qos0 = Resources::default().with(std::sync::Arc::new(conf));
        let mqtt = replay("TYPE=\"mqtt\", DATASOURCE=\"a/#\"", &qos0).unwrap();
        assert!(mqtt.contains("subscribes with qos 0"), "{mqtt}");
        let shared = replay("TYPE=\"mqtt\", DATASOURCE=\"a/#\", SHARED=\"true\"", &none).unwrap();
        assert!(
            shared.starts_with("the rule has qos 1, but the stream is SHARED"),
            "{shared}"
        );
    }

    #[test]
    fn delimited_rows_need_columns_unless_a_csv_header_names_them() {
        let needs = "FORMAT=\"delimited\" needs declared columns to name the values";
        let stdin = message("TYPE=\"stdin\", FORMAT=\"delimited\"");
        assert_eq!(stdin.as_deref(), Some(needs));
        let lines = message("TYPE=\"file\", DATASOURCE=\"in.txt\", FORMAT=\"delimited\"");
        assert_eq!(lines.as_deref(), Some(needs));
        let csv = message("TYPE=\"file\", DATASOURCE=\"in.csv\", FORMAT=\"delimited\"");
        assert!(csv.is_some_and(|m| m.ends_with("does not exist (relative paths start at the folder of the file that defines the stream)")));
    }
}
